//! The flow table: only the rows on screen are built, whatever the list size,
//! from the columns the app lists (see [`crate::tui::columns`]).

use ratatui::layout::Rect;
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Cell, Row, Table, TableState};
use ratatui::Frame;

use crate::tui::app::App;
use crate::tui::columns::{self, Column};

fn block(app: &App) -> Block<'static> {
    let mut title = vec![Span::styled(
        format!(" Flows {}/{} ", app.visible_len(), app.len()),
        Style::new().add_modifier(Modifier::BOLD),
    )];
    if app.flows.follow {
        title.push(Span::styled("[follow] ", Style::new().fg(Color::Green)));
    }
    if app.history.loading {
        title.push(Span::styled(
            "[loading history] ",
            Style::new().fg(Color::Yellow),
        ));
    }
    if !app.marks.is_empty() {
        title.push(Span::styled(
            format!("[{} marked: d diffs] ", app.marks.len()),
            Style::new().fg(Color::Yellow),
        ));
    }
    Block::new().borders(Borders::TOP).title(Line::from(title))
}

/// Flow rows that fit in a table drawn into `area` (below the header row).
pub fn rows_in(area: Rect) -> usize {
    let inner = Block::new().borders(Borders::TOP).inner(area);
    usize::from(inner.height.saturating_sub(1)).max(1)
}

/// The table's first row so that the selected row `pos` is on screen,
/// moving as little as possible from `offset`.
pub fn scroll_into_view(offset: usize, pos: Option<usize>, rows: usize, shown: usize) -> usize {
    let mut offset = offset.min(shown.saturating_sub(rows));
    if let Some(p) = pos {
        if p < offset {
            offset = p;
        } else if p >= offset + rows {
            offset = p + 1 - rows;
        }
    }
    offset
}

/// Draw the table into `area`.
pub fn render(f: &mut Frame, app: &App, area: Rect) {
    let shown = app.visible_len();
    let block = block(app);
    let inner = block.inner(area);
    f.render_widget(block, area);

    let rows_fit = rows_in(area);
    let pos = app.selected_pos();
    let offset = scroll_into_view(app.table_offset, pos, rows_fit, shown);

    if shown == 0 {
        let msg = if app.is_empty() {
            "  no flows yet: send traffic through the proxy"
        } else {
            "  no flow passes the filter (Esc clears it)"
        };
        f.render_widget(Line::styled(msg, Style::new().fg(Color::DarkGray)), inner);
        return;
    }
    let cols: Vec<&Column> = columns::with_llm(&app.columns, app.llm_columns_shown())
        .iter()
        .filter_map(|id| columns::column(*id))
        .collect();
    let rows: Vec<Row> = (offset..(offset + rows_fit).min(shown))
        .filter_map(|i| app.visible_entry(i))
        .map(|e| {
            let marked = app.marks.contains(&e.flow.id);
            Row::new(cols.iter().enumerate().map(|(i, c)| {
                let (mut text, style) = (c.cell)(e);
                if marked && i == 0 {
                    // The first cell gives up its first character to the mark.
                    text = std::iter::once('◆').chain(text.chars().skip(1)).collect();
                }
                Cell::from(text).style(style)
            }))
            .style(if marked {
                Style::new().fg(Color::Yellow)
            } else {
                Style::new()
            })
        })
        .collect();
    let header = Row::new(cols.iter().map(|c| c.header)).style(
        Style::new()
            .fg(Color::DarkGray)
            .add_modifier(Modifier::BOLD),
    );
    let table = Table::new(rows, cols.iter().map(|c| c.width))
        .header(header)
        .row_highlight_style(Style::new().add_modifier(Modifier::REVERSED))
        .column_spacing(1);
    let mut state = TableState::default().with_selected(pos.map(|p| p - offset));
    f.render_stateful_widget(table, inner, &mut state);
}
