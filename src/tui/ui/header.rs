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
use crate::tui::columns::{count, type_color, usd};

/// Rows the header takes: a third one with the token, cost and cache
/// totals of the visible flows when any of them was analysed.
pub fn rows(app: &App) -> u16 {
    if app.flows.visible_totals().analysed > 0 {
        3
    } else {
        2
    }
}

/// Draw the header rows (see [`rows`]).
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
    let mut lines = vec![Line::from(top)];
    let t = app.flows.visible_totals();
    if t.analysed > 0 {
        let mut top = vec![Span::styled(
            format!(" analysed {} ", t.analysed),
            bold.fg(Color::Magenta),
        )];
        let llm = Style::new().fg(Color::Magenta);
        top.push(Span::styled(
            format!(
                "· tokens in {} · cache read {} · cache write {} · out {} ",
                count(t.input),
                count(t.cache_read),
                count(t.cache_creation),
                count(t.output)
            ),
            llm,
        ));
        let unpriced = if t.unpriced > 0 {
            format!(" (+{} unpriced)", t.unpriced)
        } else {
            String::new()
        };
        top.push(Span::styled(
            format!("· {}{unpriced} ", usd(t.cost_usd)),
            llm,
        ));
        if let Some(rate) = t.cache_hit_rate() {
            top.push(Span::styled(
                format!("· cache hit {:.1}% ", rate * 100.0),
                llm,
            ));
        }
        lines.push(Line::from(top));
    }

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
        Paragraph::new({
            lines.insert(1, Line::from(bottom));
            lines
        }),
        area,
    );
}
