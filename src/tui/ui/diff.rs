//! The diff view: two request bodies side by side, only the rows on screen
//! formatted, the changed part of a changed line highlighted.
//!
//! ```text
//! ├─ Diff · 14 rows differ · change 1/3 ──────────────────────────────────┤
//! │ turn #7: prefix_changed at system · wrote 9,000 tokens · miss $0.0338  │
//! │ turn #6 10:20:44.000 POST /v1/messages │ turn #7 10:20:50.000 POST … │
//! │  12   "text": "Today is 2026-03-04"    │  12 ~ "text": "Today is 2026-03-05" │
//! │  13 - removed line                     │     │
//! │     │                                  │  13 + added line              │
//! ```

use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders};
use ratatui::Frame;

use super::clean;
use crate::tui::app::App;
use crate::tui::model::diff::{DiffDoc, Row, RowKind};

/// Where the rows go, and each side's text width, for a diff drawn into `area`.
pub struct DiffAreas {
    pub note: Rect,
    pub titles: Rect,
    pub rows: Rect,
}

/// The layout of the diff view in `area`.
pub fn diff_areas(area: Rect) -> DiffAreas {
    let inner = Block::new().borders(Borders::TOP).inner(area);
    let [note, titles, rows] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(1),
        Constraint::Min(1),
    ])
    .areas(inner);
    DiffAreas { note, titles, rows }
}

/// Columns of one side: half the width less the separator.
fn side_width(area: Rect) -> usize {
    usize::from(area.width.saturating_sub(1)) / 2
}

/// Width of the line numbers of a document.
fn gutter(d: &DiffDoc) -> usize {
    d.left
        .lines
        .len()
        .max(d.right.lines.len())
        .max(1)
        .to_string()
        .len()
}

/// Columns of text on each side (after the line number and the marker).
pub fn text_width(area: Rect, d: Option<&DiffDoc>) -> usize {
    let g = d.map_or(3, gutter);
    side_width(diff_areas(area).rows).saturating_sub(g + 3)
}

/// Draw the diff into `area`.
pub fn render(f: &mut Frame, app: &App, area: Rect) {
    let Some(doc) = app.diff.as_ref() else {
        return;
    };
    let changed = doc.changed_rows();
    let mut title = vec![Span::styled(
        " Diff of the request bodies ",
        Style::new().add_modifier(Modifier::BOLD),
    )];
    title.push(Span::raw(if doc.hunks.is_empty() {
        "· identical ".to_string()
    } else {
        format!(
            "· {changed} rows differ · change {}/{} ",
            doc.hunk + 1,
            doc.hunks.len()
        )
    }));
    title.push(Span::styled(
        format!(
            "· rows {}-{} of {} ",
            (doc.scroll + 1).min(doc.rows.len()),
            (doc.scroll + usize::from(diff_areas(area).rows.height)).min(doc.rows.len()),
            doc.rows.len()
        ),
        Style::new().fg(Color::DarkGray),
    ));
    if doc.hscroll > 0 {
        title.push(Span::styled(
            format!("· from column {} ", doc.hscroll + 1),
            Style::new().fg(Color::DarkGray),
        ));
    }
    let block = Block::new().borders(Borders::TOP).title(Line::from(title));
    f.render_widget(block, area);
    let parts = diff_areas(area);
    if let Some(n) = &doc.note {
        f.render_widget(
            Line::styled(clean(n), Style::new().fg(Color::Yellow)),
            parts.note,
        );
    }
    let side = side_width(parts.rows);
    let head = Style::new().fg(Color::Cyan).add_modifier(Modifier::BOLD);
    f.render_widget(
        Line::from(vec![
            Span::styled(fit(&clean(&doc.left.title), side), head),
            Span::styled("│", Style::new().fg(Color::DarkGray)),
            Span::styled(fit(&clean(&doc.right.title), side), head),
        ]),
        parts.titles,
    );
    let g = gutter(doc);
    let cols = Cols {
        g,
        tw: side.saturating_sub(g + 3),
        w: side,
        hscroll: doc.hscroll,
    };
    let height = usize::from(parts.rows.height);
    for (k, row) in doc.rows.iter().skip(doc.scroll).take(height).enumerate() {
        let line = row_line(doc, row, cols);
        let at = Rect::new(parts.rows.x, parts.rows.y + k as u16, parts.rows.width, 1);
        f.render_widget(line, at);
    }
}

/// `s` cut or padded to exactly `w` columns.
fn fit(s: &str, w: usize) -> String {
    let mut out: String = s.chars().take(w).collect();
    let n = out.chars().count();
    out.extend(std::iter::repeat_n(' ', w - n));
    out
}

/// The changed middle of two lines: the char ranges between their common
/// start and their common end.
fn changed_spans(a: &str, b: &str) -> ((usize, usize), (usize, usize)) {
    let (ca, cb): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    let pre = ca.iter().zip(&cb).take_while(|(x, y)| x == y).count();
    let max_suf = ca.len().min(cb.len()) - pre;
    let suf = ca
        .iter()
        .rev()
        .zip(cb.iter().rev())
        .take(max_suf)
        .take_while(|(x, y)| x == y)
        .count();
    ((pre, ca.len() - suf), (pre, cb.len() - suf))
}

/// The columns of one side: line number width, text width, whole width,
/// and the first text column shown.
#[derive(Clone, Copy)]
struct Cols {
    g: usize,
    tw: usize,
    w: usize,
    hscroll: usize,
}

/// One side of a row: line number, marker, the visible text with its changed part marked.
fn side_spans(
    text: Option<&str>,
    number: Option<usize>,
    (marker, base): (&'static str, Style),
    changed: Option<(usize, usize)>,
    cols: Cols,
) -> Vec<Span<'static>> {
    let Cols { g, tw, w, hscroll } = cols;
    let dim = Style::new().fg(Color::DarkGray);
    let Some(text) = text else {
        return vec![Span::styled(fit("", w), dim)];
    };
    let num = number.map_or_else(String::new, |n| (n + 1).to_string());
    let mut spans = vec![
        Span::styled(format!("{num:>g$} "), dim),
        Span::styled(format!("{marker} "), base.add_modifier(Modifier::BOLD)),
    ];
    let chars: Vec<char> = text.chars().skip(hscroll).take(tw).collect();
    let (from, to) = changed.map_or((usize::MAX, usize::MAX), |(a, b)| {
        (a.saturating_sub(hscroll), b.saturating_sub(hscroll))
    });
    let strong = base.add_modifier(Modifier::REVERSED);
    let mut run = String::new();
    let mut run_hot = false;
    for (i, c) in chars.iter().enumerate() {
        let hot = i >= from && i < to;
        if hot != run_hot && !run.is_empty() {
            let st = if run_hot { strong } else { base };
            spans.push(Span::styled(clean(&std::mem::take(&mut run)), st));
        }
        run_hot = hot;
        run.push(*c);
    }
    let used = chars.len();
    if !run.is_empty() {
        let st = if run_hot { strong } else { base };
        spans.push(Span::styled(clean(&run), st));
    }
    spans.push(Span::raw(" ".repeat(tw - used)));
    spans
}

fn row_line(doc: &DiffDoc, row: &Row, cols: Cols) -> Line<'static> {
    let (left, right) = doc.texts(row);
    let (cl, cr) = match (row.kind, left, right) {
        (RowKind::Changed, Some(old), Some(new)) => {
            let (lspan, rspan) = changed_spans(old, new);
            (Some(lspan), Some(rspan))
        }
        _ => (None, None),
    };
    let (lm, rm, ls, rs) = match row.kind {
        RowKind::Same => (" ", " ", Style::new(), Style::new()),
        RowKind::Changed => (
            "~",
            "~",
            Style::new().fg(Color::Red),
            Style::new().fg(Color::Green),
        ),
        RowKind::Removed => ("-", " ", Style::new().fg(Color::Red), Style::new()),
        RowKind::Added => (" ", "+", Style::new(), Style::new().fg(Color::Green)),
    };
    let mut spans = side_spans(left, row.left, (lm, ls), cl, cols);
    spans.push(Span::styled("│", Style::new().fg(Color::DarkGray)));
    spans.extend(side_spans(right, row.right, (rm, rs), cr, cols));
    Line::from(spans)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_changed_middle_is_found_from_both_ends() {
        assert_eq!(
            changed_spans("date 2026-03-04 ok", "date 2026-03-05 ok"),
            ((14, 15), (14, 15))
        );
        assert_eq!(changed_spans("abc", "abXc"), ((2, 2), (2, 3)));
        assert_eq!(changed_spans("same", "same"), ((4, 4), (4, 4)));
    }
}
