//! The detail pane: tabs, then headers as a table and the body (only the
//! visible window is formatted), or the timing and connection facts.

use std::fmt::Write as _;

use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Paragraph, Tabs};
use ratatui::Frame;

use super::{clean, human_ms, human_size};
use crate::flow::{Flow, Headers};
use crate::tui::app::{App, Entry, Tab};

/// Where the body (or timing) lines go in a detail pane drawn into `area`.
pub fn content_area(area: Rect) -> Rect {
    let inner = Block::new().borders(Borders::TOP).inner(area);
    let [_, content] = Layout::vertical([Constraint::Length(1), Constraint::Min(1)]).areas(inner);
    content
}

/// Draw the detail pane of the selected flow.
pub fn render(f: &mut Frame, app: &App, area: Rect) {
    let Some(entry) = app.selected_entry() else {
        return;
    };
    let d = &app.detail;
    let block = Block::new().borders(Borders::TOP);
    let inner = block.inner(area);
    f.render_widget(block, area);
    let [tabs_row, _] = Layout::vertical([Constraint::Length(1), Constraint::Min(1)]).areas(inner);
    let content = content_area(area);

    let selected = Tab::ALL.iter().position(|t| *t == d.tab).unwrap_or(0);
    let tabs = Tabs::new(Tab::ALL.iter().map(|t| t.title()))
        .select(selected)
        .highlight_style(
            Style::new()
                .fg(Color::Cyan)
                .add_modifier(Modifier::BOLD | Modifier::UNDERLINED),
        );
    let [tabs_area, info_area] =
        Layout::horizontal([Constraint::Min(40), Constraint::Length(34)]).areas(tabs_row);
    f.render_widget(tabs, tabs_area);
    let total = app.detail_rows();
    if let (Some(mode), true) = (app.body_mode(), d.tab != Tab::Timing) {
        let info = format!(
            "[{}] {}/{} ",
            mode.label(),
            (d.scroll + 1).min(total),
            total
        );
        f.render_widget(
            Line::styled(info, Style::new().fg(Color::DarkGray)).right_aligned(),
            info_area,
        );
    }

    let height = usize::from(content.height);
    let width = usize::from(content.width);
    if d.tab == Tab::Timing {
        f.render_widget(Paragraph::new(timing_lines(&entry.flow)), content);
        return;
    }
    let head = head_lines(entry, d.tab);
    let hit_style = Style::new().bg(Color::Rgb(70, 60, 0));
    let current_hit = d.hits.get(d.hit).copied();
    let mut lines = Vec::with_capacity(height);
    for row in d.scroll..(d.scroll + height).min(total) {
        if let Some(l) = head.get(row) {
            lines.push(l.clone());
            continue;
        }
        let i = row - head.len();
        let Some(doc) = d.doc() else { break };
        let mut line = doc.line(i, width);
        if d.hits.binary_search(&i).is_ok() {
            line = line.patch_style(if current_hit == Some(i) {
                Style::new().bg(Color::Yellow).fg(Color::Black)
            } else {
                hit_style
            });
        }
        lines.push(line);
    }
    f.render_widget(Paragraph::new(lines), content);
}

/// First line, headers, separator: exactly `App::header_rows` lines.
fn head_lines(entry: &Entry, tab: Tab) -> Vec<Line<'static>> {
    let f = &entry.flow;
    let (first, headers, size, cut) = if tab == Tab::Request {
        (
            Line::from(vec![
                Span::styled(clean(&f.method), Style::new().add_modifier(Modifier::BOLD)),
                Span::raw(format!(" {} {}", clean(&f.url), clean(&f.http_version))),
            ]),
            &f.request_headers,
            f.request_body_size,
            f.request_body.len() as u64,
        )
    } else {
        {
            let status = match f.status_code {
                Some(c) => format!(
                    "{c} {}",
                    http::StatusCode::from_u16(c)
                        .ok()
                        .and_then(|s| s.canonical_reason())
                        .unwrap_or("")
                ),
                None if f.error_type.is_some() => "no response".to_string(),
                None => "waiting for the response…".to_string(),
            };
            (
                Line::from(vec![
                    Span::raw(format!("{} ", clean(&f.http_version))),
                    Span::styled(status, Style::new().add_modifier(Modifier::BOLD)),
                ]),
                &f.response_headers,
                if f.is_complete() {
                    f.response_body_size
                } else {
                    entry.live.len() as u64
                },
                if f.is_complete() {
                    f.response_body.len() as u64
                } else {
                    entry.live.len() as u64
                },
            )
        }
    };
    let mut out = vec![first];
    if let (Tab::Response, Some(a)) = (tab, f.llm.as_deref()) {
        // The analysis first: what a reader of an LLM exchange looks for.
        let rows = crate::tui::summary::rows(a);
        let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
        for (k, v) in rows {
            let style = if k == "api error" {
                Style::new().fg(Color::Red)
            } else {
                Style::new()
            };
            out.push(Line::from(vec![
                Span::styled(format!("{k:>width$}  "), Style::new().fg(Color::Magenta)),
                Span::styled(clean(&v), style),
            ]));
        }
        out.push(Line::styled(
            "── headers ──",
            Style::new().fg(Color::DarkGray),
        ));
    }
    out.extend(header_table(headers));
    let mut sep = format!("── body {}", human_size(size));
    if entry.trimmed {
        sep.push_str(" (not kept in memory: over the TUI body budget; `ccproxy export` has it)");
    } else if cut < size {
        let _ = write!(sep, " (captured {})", human_size(cut));
    }
    if tab == Tab::Response && !f.is_complete() {
        sep.push_str(" · streaming");
    }
    sep.push_str(" ──");
    out.push(Line::styled(sep, Style::new().fg(Color::DarkGray)));
    out
}

fn header_table(headers: &Headers) -> Vec<Line<'static>> {
    let width = headers
        .iter()
        .map(|(n, _)| n.chars().count())
        .max()
        .unwrap_or(0)
        .min(32);
    headers
        .iter()
        .map(|(n, v)| {
            Line::from(vec![
                Span::styled(
                    format!("{:>width$}  ", clean(n)),
                    Style::new().fg(Color::Cyan),
                ),
                Span::raw(clean(v)),
            ])
        })
        .collect()
}

fn timing_lines(f: &Flow) -> Vec<Line<'static>> {
    let key = Style::new().fg(Color::Cyan);
    let ts = |t: chrono::DateTime<chrono::Utc>| t.format("%Y-%m-%d %H:%M:%S%.3f UTC").to_string();
    let ms = |m: Option<f64>| m.map_or_else(|| "—".to_string(), human_ms);
    let mut rows: Vec<(&str, String)> = vec![
        ("start", ts(f.start_time)),
        ("first byte", ms(f.ttfb_ms)),
        (
            "end",
            f.end_time.map_or_else(|| "in flight".to_string(), ts),
        ),
        ("duration", ms(f.duration_ms)),
        ("direction", f.direction.as_str().to_string()),
        ("client", f.client_ip.clone().unwrap_or_else(|| "—".into())),
        (
            "server",
            match (&f.server_ip, f.server_port) {
                (Some(ip), Some(p)) => format!("{ip}:{p}"),
                (Some(ip), None) => ip.clone(),
                (None, Some(p)) => format!("{}:{p}", f.host),
                (None, None) => f.host.clone(),
            },
        ),
        (
            "TLS",
            if f.is_https {
                "yes (intercepted)"
            } else {
                "no"
            }
            .to_string(),
        ),
        ("protocol", f.http_version.clone()),
        ("type", f.traffic_type.as_str().to_string()),
        (
            "request",
            format!(
                "{} captured of {}",
                human_size(f.request_body.len() as u64),
                human_size(f.request_body_size)
            ),
        ),
        (
            "response",
            format!(
                "{} captured of {}",
                human_size(f.response_body.len() as u64),
                human_size(f.response_body_size)
            ),
        ),
        (
            "session",
            f.session_id.clone().unwrap_or_else(|| "—".into()),
        ),
        ("trace id", f.id.to_string()),
    ];
    if f.error_type.is_some() || f.error_message.is_some() {
        rows.push((
            "error",
            format!(
                "{}: {}",
                f.error_type.map_or("error", |k| k.as_str()),
                f.error_message.as_deref().unwrap_or("")
            ),
        ));
    }
    rows.into_iter()
        .map(|(k, v)| {
            let style = if k == "error" {
                Style::new().fg(Color::Red)
            } else {
                Style::new()
            };
            Line::from(vec![
                Span::styled(format!("{k:>12}  "), key),
                Span::styled(clean(&v), style),
            ])
        })
        .collect()
}
