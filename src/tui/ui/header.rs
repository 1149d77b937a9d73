//! The header: what runs, how busy it is, where flows are stored.

use ratatui::layout::Rect;
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;
use ratatui::Frame;

use super::{clean, human_size};
use crate::engine::status::StorageState;
use crate::flow::TrafficType;
use crate::tui::app::App;
use crate::tui::columns::type_color;

/// Draw the two header rows.
pub fn render(f: &mut Frame, app: &App, area: Rect) {
    let bold = Style::new().add_modifier(Modifier::BOLD);
    let dim = Style::new().fg(Color::DarkGray);
    let mut top = vec![Span::styled(
        " ccproxy ",
        bold.fg(Color::Black).bg(Color::Cyan),
    )];
    match &app.status {
        Some(s) => {
            top.push(Span::styled(format!(" {} ", clean(&s.mode)), bold));
            if let Some(r) = &s.reverse {
                top.push(Span::raw(format!("· reverse {} ", clean(r))));
            }
            if let Some(fw) = &s.forward {
                top.push(Span::raw(format!("· forward {} ", clean(fw))));
            }
            if let Some(g) = &s.gateway {
                top.push(Span::raw(format!("· gateway :{} ", g.port)));
            }
        }
        None => top.push(Span::styled(" waiting for engine status ", dim)),
    }
    top.push(Span::styled(format!("· {}", clean(&app.source)), dim));

    let counts = app.flows.counts();
    let mut bottom = vec![Span::styled(format!(" flows {} ", app.len()), bold)];
    for (t, n) in TrafficType::ALL.iter().zip(counts) {
        bottom.push(Span::styled(
            format!("{t} {n} "),
            Style::new().fg(type_color(*t)),
        ));
    }
    bottom.push(Span::raw(format!("· {:.1} req/s ", app.rate.per_sec)));
    if let Some(s) = &app.status {
        let st = &s.storage;
        let (label, color) = match st.state {
            StorageState::Connected => ("stored", Color::Green),
            StorageState::Spooling => ("spooling", Color::Yellow),
            StorageState::Off => ("memory only", Color::DarkGray),
        };
        bottom.push(Span::raw("· "));
        bottom.push(Span::styled(label, Style::new().fg(color)));
        bottom.push(Span::raw(format!(
            " queue {} spool {} ",
            st.queued,
            human_size(st.spool_bytes)
        )));
        if st.dropped > 0 {
            bottom.push(Span::styled(
                format!("dropped {} ", st.dropped),
                Style::new().fg(Color::Red),
            ));
        }
    }
    if app.lagged > 0 {
        bottom.push(Span::styled(
            format!("· missed {} ", app.lagged),
            Style::new().fg(Color::Red).add_modifier(Modifier::BOLD),
        ));
    }
    f.render_widget(
        Paragraph::new(vec![Line::from(top), Line::from(bottom)]),
        area,
    );
}
