//! Drawing. One `render(f, &App, Rect)` per pane; nothing here changes state
//! except the scroll hints the panes leave in `App`'s cells.
//!
//! ```text
//! ┌──────────────────────────────────────────────────────────────────┐
//! │ header: mode · listeners · source                                │ 2 rows
//! │         flows by type · req/s · storage (queue, spool) · missed  │
//! ├─ Flows n/m [follow] ─────────────────────────────────────────────┤
//! │ time  type  method  status  host  path  duration  size           │ the rest
//! │ … only the rows on screen are built …                            │ (35% when a
//! ├─ Request │ Response │ Timing & connection ─────────── [json] ────┤  flow is open)
//! │ request/status line, headers as a table, ── body ──              │ 65%
//! │ … only the visible body lines are formatted …                    │
//! ├──────────────────────────────────────────────────────────────────┤
//! │ / filter bar (green: applied; red: error with ^ at the column)   │ 0-2 rows
//! │ footer: keys that apply now · last notice                        │ 1 row
//! └──────────────────────────────────────────────────────────────────┘
//!   overlays: `?` help and `y` curl float centred above everything
//! ```

mod bars;
mod detail;
mod header;
mod overlay;
mod table;

use ratatui::layout::{Constraint, Layout};
use ratatui::Frame;

use super::app::{App, Focus, Input};
use crate::capture::sanitize::sanitize;

/// Draw the whole screen. Call [`App::prepare`] first so the body is current.
pub fn draw(f: &mut Frame, app: &App) {
    let area = f.area();
    let bar_rows = match app.input {
        Input::Filter if app.filter_error.is_some() => 2,
        Input::Filter | Input::Search => 1,
        Input::None if !app.filter.is_all() => 1,
        Input::None => 0,
    };
    let [head, main, bar, foot] = Layout::vertical([
        Constraint::Length(2),
        Constraint::Min(3),
        Constraint::Length(bar_rows),
        Constraint::Length(1),
    ])
    .areas(area);
    header::render(f, app, head);
    if app.focus == Focus::Detail {
        let [list, body] =
            Layout::vertical([Constraint::Percentage(35), Constraint::Percentage(65)]).areas(main);
        table::render(f, app, list);
        detail::render(f, app, body);
    } else {
        table::render(f, app, main);
    }
    bars::render_bar(f, app, bar);
    bars::render_footer(f, app, foot);
    overlay::render(f, app, area);
}

/// Untrusted text made safe for the terminal, owned for a `Span`.
fn clean(s: &str) -> String {
    sanitize(s).into_owned()
}

/// `1.2 KB`-style sizes.
fn human_size(n: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KB", "MB", "GB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// `12 ms`, `1.35 s`.
fn human_ms(ms: f64) -> String {
    if ms < 1000.0 {
        format!("{ms:.0} ms")
    } else {
        format!("{:.2} s", ms / 1000.0)
    }
}
