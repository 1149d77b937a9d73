//! The flow table: only the rows on screen are built, whatever the list size.

use ratatui::layout::{Constraint, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Cell, Row, Table, TableState};
use ratatui::Frame;

use super::header::type_color;
use super::{clean, human_ms, human_size};
use crate::flow::Flow;
use crate::tui::app::App;

/// Draw the table into `area`.
pub fn render(f: &mut Frame, app: &App, area: Rect) {
    let shown = app.visible_len();
    let mut title = vec![Span::styled(
        format!(" Flows {shown}/{} ", app.len()),
        Style::new().add_modifier(Modifier::BOLD),
    )];
    if app.follow {
        title.push(Span::styled("[follow] ", Style::new().fg(Color::Green)));
    }
    if app.history.loading {
        title.push(Span::styled(
            "[loading history] ",
            Style::new().fg(Color::Yellow),
        ));
    }
    let block = Block::new().borders(Borders::TOP).title(Line::from(title));
    let inner = block.inner(area);
    f.render_widget(block, area);

    let rows_fit = usize::from(inner.height.saturating_sub(1)).max(1);
    app.table_height.set(rows_fit);
    let pos = app.selected_pos();
    let mut offset = app.table_offset.get().min(shown.saturating_sub(rows_fit));
    if let Some(p) = pos {
        if p < offset {
            offset = p;
        } else if p >= offset + rows_fit {
            offset = p + 1 - rows_fit;
        }
    }
    app.table_offset.set(offset);

    if shown == 0 {
        let msg = if app.is_empty() {
            "  no flows yet: send traffic through the proxy"
        } else {
            "  no flow passes the filter (Esc clears it)"
        };
        f.render_widget(Line::styled(msg, Style::new().fg(Color::DarkGray)), inner);
        return;
    }
    let rows: Vec<Row> = (offset..(offset + rows_fit).min(shown))
        .filter_map(|i| app.visible_entry(i))
        .map(|e| row(&e.flow, e.live.len()))
        .collect();
    let widths = [
        Constraint::Length(12),
        Constraint::Length(5),
        Constraint::Length(7),
        Constraint::Length(6),
        Constraint::Length(24),
        Constraint::Fill(1),
        Constraint::Length(8),
        Constraint::Length(9),
    ];
    let header = Row::new([
        "time UTC", "type", "method", "status", "host", "path", "duration", "size",
    ])
    .style(
        Style::new()
            .fg(Color::DarkGray)
            .add_modifier(Modifier::BOLD),
    );
    let table = Table::new(rows, widths)
        .header(header)
        .row_highlight_style(Style::new().add_modifier(Modifier::REVERSED))
        .column_spacing(1);
    let mut state = TableState::default().with_selected(pos.map(|p| p - offset));
    f.render_stateful_widget(table, inner, &mut state);
}

fn row(flow: &Flow, live_bytes: usize) -> Row<'static> {
    let (status, status_style) = status_cell(flow);
    let duration = match flow.duration_ms {
        Some(ms) => human_ms(ms),
        None => "…".to_string(),
    };
    let size = if flow.is_complete() {
        human_size(flow.response_body_size)
    } else if live_bytes > 0 {
        format!("{}…", human_size(live_bytes as u64))
    } else {
        String::new()
    };
    Row::new(vec![
        Cell::from(flow.start_time.format("%H:%M:%S%.3f").to_string()),
        Cell::from(flow.traffic_type.as_str())
            .style(Style::new().fg(type_color(flow.traffic_type))),
        Cell::from(clean(&flow.method)),
        Cell::from(status).style(status_style),
        Cell::from(clean(&flow.host)),
        Cell::from(clean(&flow.path)),
        Cell::from(duration),
        Cell::from(size),
    ])
}

/// Status text and colour: pending, error, or the code coloured by class.
pub fn status_cell(flow: &Flow) -> (String, Style) {
    if flow.error_type.is_some() {
        let text = flow
            .status_code
            .map_or_else(|| "ERR".to_string(), |c| c.to_string());
        return (
            text,
            Style::new().fg(Color::Red).add_modifier(Modifier::BOLD),
        );
    }
    match flow.status_code {
        None => ("…".to_string(), Style::new().fg(Color::Yellow)),
        Some(c) => {
            let color = match c {
                200..=299 => Color::Green,
                300..=399 => Color::Cyan,
                400..=499 => Color::Yellow,
                _ => Color::Red,
            };
            let pending = if flow.is_complete() { "" } else { "…" };
            (format!("{c}{pending}"), Style::new().fg(color))
        }
    }
}
