//! The Sessions view: the sessions table, and one session opened.
//!
//! ```text
//! ├─ Session <id> · agent · requests · conversations · cost · cache hit · misses · errors ─┤
//! │ #0 main · 7 req      │ #0 main · 7 requests · $0.12                                   │
//! │  └ #1 subagent · 2   │ ▸ #1 10:20:30 claude-sonnet-4-5 1.8s in 12 …  first_request    │
//! │                      │     ✗ first_request · wrote 8,200 tokens · miss $0.0277        │
//! │ (conversation tree)  │     user  the tests fail, fix them                             │
//! │                      │     → Read file_path=src/lib.rs · result in #2 after 1.2s      │
//! ├─ Timeline ───────────────────────────────────┬─ Rate limits ─────────────────────────┤
//! │ █ █▒ ✕█ █      ▒ █   (one bar per request)   │ requests 45/50 · reset …              │
//! │ 10:20:30        8m02s             10:28:32   │ input-tokens 71000/80000              │
//! │ █ hit ▒ miss ✕ error ▁ no cache              │ input-tokens-remaining ▇▆▅▄▃▂         │
//! │ tokens per turn · max 9,210  ▁▂▃▅▇           │ 429 ×0 · 529 ×1                       │
//! ```
//!
//! Pure renderers: the turns on screen were parsed by `prepare`, the rest is
//! drawn from the session model.

use chrono::{DateTime, Utc};
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Cell, Paragraph, Row, Sparkline, Table, TableState};
use ratatui::Frame;

use super::clean;
use crate::llm::session::{Kind, Session, Turn, Verdict};
use crate::tui::app::App;
use crate::tui::columns::{count, usd};
use crate::tui::model::sessions::{span, verdict_text, OpenSession, SessionRow, TurnLine};
use crate::tui::summary::group;

/// Rows of the timeline and rate-limit panel (its top border included).
const PANEL_ROWS: u16 = 8;
/// Widest the conversation tree gets.
const TREE_WIDTH: u16 = 34;

/// Session rows that fit in a table drawn into `area`.
pub fn list_rows_in(area: Rect) -> usize {
    super::table::rows_in(area)
}

/// Where the parts of an open session go in `area`.
pub struct SessionAreas {
    pub title: Rect,
    pub tree: Rect,
    /// The turns pane's heading row.
    pub turns_head: Rect,
    /// The turns themselves.
    pub turns: Rect,
    pub timeline: Rect,
    pub limits: Rect,
}

/// The layout of an open session drawn into `area`.
pub fn session_areas(area: Rect) -> SessionAreas {
    let [title, main, panel] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Min(3),
        Constraint::Length(PANEL_ROWS),
    ])
    .areas(area);
    let tree_w = TREE_WIDTH.min(main.width / 3);
    let [tree, _gap, turns] = Layout::horizontal([
        Constraint::Length(tree_w),
        Constraint::Length(1),
        Constraint::Min(10),
    ])
    .areas(main);
    let [turns_head, turns] =
        Layout::vertical([Constraint::Length(1), Constraint::Min(1)]).areas(turns);
    let [timeline, limits] =
        Layout::horizontal([Constraint::Percentage(60), Constraint::Percentage(40)])
            .spacing(1)
            .areas(panel);
    SessionAreas {
        title,
        tree,
        turns_head,
        turns,
        timeline,
        limits,
    }
}

fn bold() -> Style {
    Style::new().add_modifier(Modifier::BOLD)
}

fn dim() -> Style {
    Style::new().fg(Color::DarkGray)
}

/// Draw the sessions table into `area`.
pub fn render_list(f: &mut Frame, app: &App, area: Rect) {
    let s = &app.sessions;
    let title = Line::from(vec![Span::styled(
        format!(" Sessions {} ", s.len()),
        bold(),
    )]);
    let block = Block::new().borders(Borders::TOP).title(title);
    let inner = block.inner(area);
    f.render_widget(block, area);
    if s.is_empty() {
        f.render_widget(
            Line::styled(
                "  no sessions yet: LLM requests with a session id (x-claude-code-session-id, Claude Code's metadata.user_id) appear here",
                dim(),
            ),
            inner,
        );
        return;
    }
    let rows_fit = list_rows_in(area);
    let offset = s.offset;
    let right = |t: String| Cell::from(Line::from(t).right_aligned());
    let rows: Vec<Row> = (offset..(offset + rows_fit).min(s.len()))
        .filter_map(|i| s.row(i))
        .map(|r: &SessionRow| {
            let errors = if r.errors > 0 {
                Cell::from(Line::from(r.errors.to_string()).right_aligned())
                    .style(Style::new().fg(Color::Red))
            } else {
                right("0".into())
            };
            let misses = if r.misses > 0 {
                format!("{} {}", r.misses, usd(r.miss_cost_usd))
            } else {
                "0".into()
            };
            Row::new(vec![
                Cell::from(r.first_seen.format("%m-%d %H:%M").to_string()),
                Cell::from(clean(&short_id(&r.session_id))),
                Cell::from(clean(r.agent.as_deref().unwrap_or("—"))),
                Cell::from(clean(&r.models.join(", "))).style(Style::new().fg(Color::Magenta)),
                right(r.requests.to_string()),
                right(r.conversations.to_string()),
                right(format!("{}/{}", count(r.tokens_in), count(r.tokens_out))),
                right(usd(r.cost_usd)),
                right(format!("{:.1}%", r.cache_hit * 100.0)),
                right(misses),
                errors,
                right(span(r.duration_s())),
            ])
        })
        .collect();
    let widths = [
        Constraint::Length(11),
        Constraint::Length(9),
        Constraint::Length(18),
        Constraint::Fill(1),
        Constraint::Length(4),
        Constraint::Length(4),
        Constraint::Length(10),
        Constraint::Length(7),
        Constraint::Length(6),
        Constraint::Length(11),
        Constraint::Length(3),
        Constraint::Length(8),
    ];
    let header = Row::new(
        [
            "start UTC",
            "session",
            "agent",
            "models",
            "req",
            "conv",
            "tokens",
            "cost",
            "hit",
            "misses",
            "err",
            "duration",
        ]
        .map(|h| match h {
            "req" | "conv" | "tokens" | "cost" | "hit" | "misses" | "err" | "duration" => {
                Cell::from(Line::from(h).right_aligned())
            }
            _ => Cell::from(h),
        }),
    )
    .style(dim().add_modifier(Modifier::BOLD));
    let table = Table::new(rows, widths)
        .header(header)
        .row_highlight_style(Style::new().add_modifier(Modifier::REVERSED))
        .column_spacing(1);
    let mut state = TableState::default().with_selected(Some(s.selected.saturating_sub(offset)));
    f.render_stateful_widget(table, inner, &mut state);
}

/// `5d1c2f7e…` for a long id.
fn short_id(id: &str) -> String {
    if id.chars().count() > 9 {
        let head: String = id.chars().take(8).collect();
        format!("{head}…")
    } else {
        id.to_string()
    }
}

/// Draw the open session into `area`.
pub fn render_session(f: &mut Frame, app: &App, area: Rect) {
    let Some(open) = app.sessions.open.as_ref() else {
        return;
    };
    let a = session_areas(area);
    let s = &open.session;
    f.render_widget(title(s, app), a.title);
    tree(f, open, a.tree);
    turns(f, open, a.turns_head, a.turns);
    timeline(f, open, a.timeline);
    limits(f, open, a.limits);
}

fn title(s: &Session, app: &App) -> Line<'static> {
    let t = &s.totals;
    let row = app.sessions.row_of(&s.session_id);
    let mut spans = vec![
        Span::styled(format!("Session {} ", clean(&s.session_id)), bold()),
        Span::raw(format!(
            "· {} · {} · {} requests · {} conversation{} ",
            clean(s.agent.as_deref().unwrap_or("unknown agent")),
            span((s.last_seen - s.first_seen).num_milliseconds() as f64 / 1000.0),
            t.requests,
            s.conversations.len(),
            if s.conversations.len() == 1 { "" } else { "s" },
        )),
    ];
    if t.errors > 0 {
        spans.push(Span::styled(
            format!("· errors {} ", t.errors),
            Style::new().fg(Color::Red),
        ));
    }
    if let Some(r) = row.filter(|r| r.misses > 0) {
        spans.push(Span::styled(
            format!("· cache misses {} ({}) ", r.misses, usd(r.miss_cost_usd)),
            Style::new().fg(Color::Yellow),
        ));
    }
    spans.push(Span::raw(format!(
        "· cache hit {:.1}% · {} ",
        t.cache_hit_ratio() * 100.0,
        usd(t.cost_usd)
    )));
    if let Some(r) = row.filter(|r| r.without_bodies > 0) {
        spans.push(Span::styled(
            format!("· {} without bodies in memory ", r.without_bodies),
            Style::new().fg(Color::Yellow),
        ));
    }
    Line::from(spans)
}

fn tree(f: &mut Frame, open: &OpenSession, area: Rect) {
    let s = &open.session;
    let mut lines = vec![Line::styled(
        "Conversations",
        dim().add_modifier(Modifier::BOLD),
    )];
    for (pos, (c, depth)) in open.tree.iter().enumerate() {
        let Some(conv) = s.conversations.get(*c) else {
            continue;
        };
        let cost: f64 = conv.requests.iter().filter_map(|t| t.cost_usd).sum();
        let lead = if *depth == 0 {
            String::new()
        } else {
            format!("{}└ ", "  ".repeat(depth - 1))
        };
        let kind = match conv.kind {
            Kind::Main => "main",
            Kind::Subagent => "subagent",
        };
        let text = format!(
            "{lead}#{c} {kind} · {} req · {}",
            conv.requests.len(),
            usd(cost)
        );
        let style = if pos == open.tree_pos {
            bold().fg(Color::Cyan)
        } else {
            Style::new()
        };
        let mark = if pos == open.tree_pos { "▸ " } else { "  " };
        lines.push(Line::styled(format!("{mark}{text}"), style));
    }
    f.render_widget(Paragraph::new(lines), area);
}

fn turns(f: &mut Frame, open: &OpenSession, head: Rect, area: Rect) {
    let Some(conv) = open.conversation() else {
        return;
    };
    let cost: f64 = conv.requests.iter().filter_map(|t| t.cost_usd).sum();
    let mut heading = vec![Span::styled(
        format!(
            "#{} {} · {} requests · {}",
            conv.conversation_id,
            conv.kind.as_str(),
            conv.requests.len(),
            usd(cost)
        ),
        bold(),
    )];
    if let Some(p) = &conv.parent {
        let at = open
            .place(&p.trace_id)
            .map_or_else(String::new, |(c, t)| format!(" in #{c} turn #{}", t + 1));
        heading.push(Span::styled(
            format!(" · opened by {}{at}", clean(&p.tool_use_id)),
            dim(),
        ));
    }
    f.render_widget(Line::from(heading), head);
    let rows = usize::from(area.height);
    let mut lines: Vec<Line> = Vec::with_capacity(rows);
    for (i, t) in conv.requests.iter().enumerate().skip(open.top) {
        if lines.len() >= rows {
            break;
        }
        let selected = i == open.turn;
        let block = open.block(i).unwrap_or(&[TurnLine::Head]);
        for l in block {
            lines.push(turn_line(l, t, i, selected));
        }
    }
    lines.truncate(rows);
    f.render_widget(Paragraph::new(lines), area);
}

fn verdict_style(t: &Turn) -> Style {
    if t.error {
        return Style::new().fg(Color::Red);
    }
    match t.cache.verdict {
        Verdict::Hit => Style::new().fg(Color::Green),
        Verdict::Uncached => dim(),
        _ => Style::new().fg(Color::Yellow),
    }
}

fn turn_line(line: &TurnLine, t: &Turn, i: usize, selected: bool) -> Line<'static> {
    let pad = "    ";
    match line {
        TurnLine::Head => {
            let u = &t.usage;
            let dur = t.end_time.map_or_else(
                || "…".into(),
                |e| span_ms((e - t.start_time).num_milliseconds()),
            );
            let verdict = if t.error {
                format!(
                    "error {}",
                    t.status.map_or_else(String::new, |s| s.to_string())
                )
            } else {
                t.cache.verdict.as_str().to_string()
            };
            let mark = if selected { "▸ " } else { "  " };
            let head = format!(
                "{mark}#{:<3} {} {} {dur:>6}  in {} read {} write {} out {}  {}  ",
                i + 1,
                t.start_time.format("%H:%M:%S"),
                clean(t.model.as_deref().unwrap_or("—")),
                count(u.input.unwrap_or(0)),
                count(u.cache_read.unwrap_or(0)),
                count(u.cache_creation.unwrap_or(0)),
                count(u.output.unwrap_or(0)),
                t.cost_usd.map_or_else(|| "—".into(), usd),
            );
            let style = if selected {
                bold().add_modifier(Modifier::REVERSED)
            } else {
                bold()
            };
            Line::from(vec![
                Span::styled(head, style),
                Span::styled(verdict, verdict_style(t).add_modifier(Modifier::BOLD)),
            ])
        }
        TurnLine::Miss => Line::styled(
            format!("{pad}✗ {}", clean(&verdict_text(t))),
            Style::new().fg(Color::Yellow),
        ),
        TurnLine::Before(s) => Line::styled(
            format!("{pad}  − …{}", clean(s)),
            Style::new().fg(Color::Red),
        ),
        TurnLine::After(s) => Line::styled(
            format!("{pad}  + …{}", clean(s)),
            Style::new().fg(Color::Green),
        ),
        TurnLine::Error(s) => {
            Line::styled(format!("{pad}✗ {}", clean(s)), Style::new().fg(Color::Red))
        }
        TurnLine::User(s) => Line::from(vec![
            Span::styled(format!("{pad}user      "), Style::new().fg(Color::Blue)),
            Span::raw(clean(s)),
        ]),
        TurnLine::ToolResult { id, text, error } => Line::from(vec![
            Span::styled(
                format!("{pad}← result  {} ", clean(id)),
                if *error {
                    Style::new().fg(Color::Red)
                } else {
                    Style::new().fg(Color::Cyan)
                },
            ),
            Span::styled(clean(text), dim()),
        ]),
        TurnLine::Assistant(s) => Line::from(vec![
            Span::styled(format!("{pad}assistant "), Style::new().fg(Color::Magenta)),
            Span::raw(clean(s)),
        ]),
        TurnLine::Thinking(s) => Line::styled(
            format!("{pad}thinking  {}", clean(s)),
            dim().add_modifier(Modifier::ITALIC),
        ),
        TurnLine::Call {
            index,
            input,
            result_turn,
        } => {
            let Some(c) = t.tool_calls.get(*index) else {
                return Line::default();
            };
            let result = match (result_turn, c.run_ms) {
                (Some(turn), Some(ms)) => {
                    format!(" · result in #{} after {}", turn + 1, span_ms(ms as i64))
                }
                (Some(turn), None) => format!(" · result in #{}", turn + 1),
                (None, _) => " · no result seen".to_string(),
            };
            let err = if c.is_error { " (error)" } else { "" };
            Line::from(vec![
                Span::styled(
                    format!("{pad}→ {} ", clean(&c.name)),
                    Style::new().fg(Color::Cyan),
                ),
                Span::raw(clean(input)),
                Span::styled(format!("{result}{err}"), dim()),
            ])
        }
        TurnLine::Note(s) => Line::styled(format!("{pad}{}", clean(s)), dim()),
    }
}

/// `850ms`, `1.8s`, `7m02s`.
fn span_ms(ms: i64) -> String {
    if ms < 1000 {
        format!("{}ms", ms.max(0))
    } else if ms < 60_000 {
        format!("{:.1}s", ms as f64 / 1000.0)
    } else {
        span(ms as f64 / 1000.0)
    }
}

/// How a request shows on the timeline, worst first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Mark {
    Uncached,
    Hit,
    Miss,
    Error,
}

impl Mark {
    fn of(t: &Turn) -> Self {
        if t.error {
            Self::Error
        } else if t.cache.verdict.is_miss() {
            Self::Miss
        } else if t.cache.verdict == Verdict::Hit {
            Self::Hit
        } else {
            Self::Uncached
        }
    }

    fn glyph(self) -> (&'static str, Style) {
        match self {
            Self::Hit => ("█", Style::new().fg(Color::Green)),
            Self::Miss => ("▒", Style::new().fg(Color::Yellow)),
            Self::Error => ("✕", Style::new().fg(Color::Red)),
            Self::Uncached => ("▁", dim()),
        }
    }
}

/// One column per slice of wall time from the first request to the last
/// response; a request covers the columns from its start to its end, and a
/// column shows the worst of the requests in it.
fn bars(s: &Session, width: usize) -> Vec<Option<Mark>> {
    let mut cols = vec![None; width];
    if width == 0 {
        return cols;
    }
    let t0 = s.first_seen;
    let total = (s.last_seen - t0).num_milliseconds().max(1) as f64;
    let at = |t: DateTime<Utc>| {
        let x = (t - t0).num_milliseconds().max(0) as f64 / total * (width - 1) as f64;
        (x.round() as usize).min(width - 1)
    };
    for t in s.conversations.iter().flat_map(|c| &c.requests) {
        let m = Mark::of(t);
        let (a, b) = (at(t.start_time), at(t.end_time.unwrap_or(t.start_time)));
        for c in &mut cols[a..=b.max(a)] {
            if c.is_none_or(|x| x < m) {
                *c = Some(m);
            }
        }
    }
    cols
}

/// `values` squeezed into `width` buckets (the largest of each), or as they are when they fit.
fn squeeze(values: &[u64], width: usize) -> Vec<u64> {
    if values.len() <= width || width == 0 {
        return values.to_vec();
    }
    (0..width)
        .map(|i| {
            let (a, b) = (i * values.len() / width, (i + 1) * values.len() / width);
            values[a..b.max(a + 1)].iter().copied().max().unwrap_or(0)
        })
        .collect()
}

fn timeline(f: &mut Frame, open: &OpenSession, area: Rect) {
    let block = Block::new()
        .borders(Borders::TOP)
        .title(Span::styled(" Timeline ", bold()));
    let inner = block.inner(area);
    f.render_widget(block, area);
    let session = &open.session;
    let w = usize::from(inner.width.saturating_sub(1));
    let [bar_row, axis, legend, label, spark] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(1),
        Constraint::Length(1),
        Constraint::Length(1),
        Constraint::Min(1),
    ])
    .areas(inner);
    let spans: Vec<Span> = bars(session, w)
        .into_iter()
        .map(|mark| match mark {
            Some(mark) => {
                let (glyph, style) = mark.glyph();
                Span::styled(glyph, style)
            }
            None => Span::raw(" "),
        })
        .collect();
    f.render_widget(Line::from(spans), bar_row);
    let s = session;
    let secs = (s.last_seen - s.first_seen).num_milliseconds() as f64 / 1000.0;
    let (from, to) = (
        s.first_seen.format("%H:%M:%S").to_string(),
        s.last_seen.format("%H:%M:%S").to_string(),
    );
    let mid = span(secs);
    let gap = w.saturating_sub(from.len() + to.len() + mid.len()) / 2;
    let axis_text = format!(
        "{from}{}{mid}{}{to}",
        " ".repeat(gap),
        " ".repeat(w.saturating_sub(from.len() + to.len() + mid.len() + gap))
    );
    f.render_widget(Line::styled(axis_text, dim()), axis);
    let mut legend_spans = Vec::new();
    for (m, name) in [
        (Mark::Hit, " hit  "),
        (Mark::Miss, " miss  "),
        (Mark::Error, " error  "),
        (Mark::Uncached, " no cache  "),
    ] {
        let (g, st) = m.glyph();
        legend_spans.push(Span::styled(g, st));
        legend_spans.push(Span::styled(name, dim()));
    }
    if w > 0 {
        legend_spans.push(Span::styled(
            format!(
                "· 1 column ≈ {}",
                span_ms((secs * 1000.0 / w as f64) as i64)
            ),
            dim(),
        ));
    }
    f.render_widget(Line::from(legend_spans), legend);
    let tokens: Vec<u64> = open
        .conversation()
        .map(|c| {
            c.requests
                .iter()
                .map(|t| t.usage.prompt_total() + t.usage.output.unwrap_or(0))
                .collect()
        })
        .unwrap_or_default();
    let max = tokens.iter().copied().max().unwrap_or(0);
    let conv = open.conversation().map_or(0, |c| c.conversation_id);
    f.render_widget(
        Line::styled(
            format!("tokens per turn · #{conv} · max {}", group(max)),
            dim(),
        ),
        label,
    );
    f.render_widget(
        Sparkline::default()
            .data(squeeze(&tokens, usize::from(spark.width)))
            .style(Style::new().fg(Color::Magenta)),
        spark,
    );
}

fn limits(f: &mut Frame, open: &OpenSession, area: Rect) {
    let block = Block::new()
        .borders(Borders::TOP)
        .title(Span::styled(" Rate limits ", bold()));
    let inner = block.inner(area);
    f.render_widget(block, area);
    let l = &open.limits;
    let [body, series, counts] = Layout::vertical([
        Constraint::Min(1),
        Constraint::Length(1),
        Constraint::Length(1),
    ])
    .areas(inner);
    let mut lines = Vec::new();
    if l.latest.is_empty() {
        lines.push(Line::styled(
            "no rate-limit headers in this session's responses",
            dim(),
        ));
    } else {
        if let Some(t) = l.latest_at {
            lines.push(Line::styled(
                format!("latest · {}", t.format("%H:%M:%S")),
                dim(),
            ));
        }
        lines.extend(l.latest.iter().map(|x| Line::raw(clean(x))));
    }
    f.render_widget(Paragraph::new(lines), body);
    if let Some(name) = &l.series_name {
        let label = format!("{} ", clean(name));
        let [la, sp] = Layout::horizontal([
            Constraint::Length(label.chars().count() as u16),
            Constraint::Min(1),
        ])
        .areas(series);
        f.render_widget(Line::styled(label, dim()), la);
        f.render_widget(
            Sparkline::default()
                .data(squeeze(&l.series, usize::from(sp.width)))
                .style(Style::new().fg(Color::Cyan)),
            sp,
        );
    }
    let style = if l.too_many + l.overloaded > 0 {
        Style::new().fg(Color::Red)
    } else {
        dim()
    };
    f.render_widget(
        Line::styled(
            format!("429 ×{} · 529 ×{}", l.too_many, l.overloaded),
            style,
        ),
        counts,
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn squeeze_keeps_the_peaks() {
        assert_eq!(squeeze(&[1, 9, 2, 3], 2), [9, 3]);
        assert_eq!(squeeze(&[1, 2], 5), [1, 2]);
    }

    #[test]
    fn durations_read_short() {
        assert_eq!(span_ms(850), "850ms");
        assert_eq!(span_ms(1_800), "1.8s");
        assert_eq!(span_ms(422_000), "7m02s");
    }
}
