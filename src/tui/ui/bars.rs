//! The filter / search bar and the footer.

use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Style};
use ratatui::text::{Line, Span};
use ratatui::Frame;

use super::clean;
use crate::tui::app::{App, Input};
use crate::tui::bindings;

/// The bar above the footer: filter editing (green or red), search, or the active filter.
pub fn render_bar(f: &mut Frame, app: &App, area: Rect) {
    if area.height == 0 {
        return;
    }
    let [first, second] = Layout::vertical([Constraint::Length(1), Constraint::Min(0)]).areas(area);
    let prefix = |text: &'static str, color: Color| Span::styled(text, Style::new().fg(color));
    match app.input {
        Input::Filter => {
            let color = if app.filter_error.is_some() {
                Color::Red
            } else {
                Color::Green
            };
            let [label, field] =
                Layout::horizontal([Constraint::Length(8), Constraint::Min(1)]).areas(first);
            f.render_widget(Line::from(prefix(" filter ", color)), label);
            f.render_widget(&app.filter_input, field);
            if let Some(e) = &app.filter_error {
                let caret = format!("{}^ {}", " ".repeat(8 + e.pos), e);
                f.render_widget(
                    Line::styled(clean(&caret), Style::new().fg(Color::Red)),
                    second,
                );
            }
        }
        Input::Search => {
            let [label, field] =
                Layout::horizontal([Constraint::Length(8), Constraint::Min(1)]).areas(first);
            f.render_widget(Line::from(prefix(" search ", Color::Yellow)), label);
            f.render_widget(&app.detail.search_input, field);
        }
        Input::None => {
            f.render_widget(
                Line::from(vec![
                    prefix(" filter ", Color::Green),
                    Span::styled(clean(app.filter().source()), Style::new().fg(Color::Green)),
                ]),
                first,
            );
        }
    }
}

/// Keys that apply now, and the latest notice.
pub fn render_footer(f: &mut Frame, app: &App, area: Rect) {
    let mut spans = Vec::new();
    if let Some(n) = &app.notice {
        spans.push(Span::styled(
            format!(" {}", clean(n)),
            Style::new().fg(Color::Yellow),
        ));
        spans.push(Span::raw(" │"));
    }
    spans.push(Span::styled(
        format!(" {}", bindings::hints(app)),
        Style::new().fg(Color::DarkGray),
    ));
    f.render_widget(Line::from(spans), area);
}
