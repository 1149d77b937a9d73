//! Overlays: the `?` help with every binding, and the `y` curl command.

use ratatui::layout::{Constraint, Flex, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Clear, Paragraph, Wrap};
use ratatui::Frame;

use super::clean;
use crate::flow::filter::OPERATORS;
use crate::tui::app::{App, Overlay};
use crate::tui::bindings;

/// Draw the open overlay, if any, centred in `area`.
pub fn render(f: &mut Frame, app: &App, area: Rect) {
    match &app.overlay {
        Overlay::None => {}
        Overlay::Help => help(f, area, app.help_scroll),
        Overlay::Curl(cmd) => {
            let rect = centred(area, 90, 12);
            f.render_widget(Clear, rect);
            let block = Block::bordered()
                .title(" curl (copied to the clipboard via OSC 52) ")
                .border_style(Style::new().fg(Color::Cyan));
            f.render_widget(
                Paragraph::new(clean(cmd))
                    .wrap(Wrap { trim: false })
                    .block(block),
                rect,
            );
        }
    }
}

/// Columns of the help overlay.
const HELP_WIDTH: u16 = 100;

/// How many lines of the help overlay do not fit in `area` (how far it scrolls).
pub fn help_overflow(area: Rect) -> usize {
    (help_lines(area).len() + 2).saturating_sub(usize::from(area.height))
}

fn help(f: &mut Frame, area: Rect, scroll: usize) {
    let lines = help_lines(area);
    let height = lines.len() as u16 + 2;
    let rect = centred(area, HELP_WIDTH, height);
    let hidden = (lines.len() + 2).saturating_sub(usize::from(rect.height));
    let scroll = scroll.min(hidden);
    let title = if hidden > 0 {
        format!(
            " keys (Esc closes · j/k scroll, {} more lines) ",
            hidden - scroll
        )
    } else {
        " keys (Esc closes) ".to_string()
    };
    f.render_widget(Clear, rect);
    let block = Block::bordered()
        .title(title)
        .border_style(Style::new().fg(Color::Cyan));
    f.render_widget(
        Paragraph::new(lines)
            .scroll((u16::try_from(scroll).unwrap_or(u16::MAX), 0))
            .block(block),
        rect,
    );
}

fn help_lines(area: Rect) -> Vec<Line<'static>> {
    let key = Style::new().fg(Color::Cyan).add_modifier(Modifier::BOLD);
    let mut lines: Vec<Line> = bindings::help()
        .map(|(k, what)| {
            Line::from(vec![
                Span::styled(format!("{k:>10}  "), key),
                Span::raw(what),
            ])
        })
        .collect();
    lines.push(Line::default());
    lines.push(Line::styled(
        " filter language (/):",
        Style::new().add_modifier(Modifier::BOLD),
    ));
    // As many operators to a line as fit inside the borders.
    let room = usize::from(HELP_WIDTH.min(area.width)).saturating_sub(4);
    let mut line = String::new();
    for (op, what) in OPERATORS {
        let item = format!("{op} {what}");
        let len = line.chars().count();
        if len > 0 && len + 3 + item.chars().count() > room {
            lines.push(Line::raw(format!("  {}", std::mem::take(&mut line))));
        }
        if !line.is_empty() {
            line.push_str(" · ");
        }
        line.push_str(&item);
    }
    if !line.is_empty() {
        lines.push(Line::raw(format!("  {line}")));
    }
    lines
}

fn centred(area: Rect, width: u16, height: u16) -> Rect {
    let [v] = Layout::vertical([Constraint::Length(height.min(area.height))])
        .flex(Flex::Center)
        .areas(area);
    let [h] = Layout::horizontal([Constraint::Length(width.min(area.width))])
        .flex(Flex::Center)
        .areas(v);
    h
}
