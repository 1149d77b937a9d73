//! Drawing. One `render(f, &App, Rect)` per pane; nothing here changes state.
//! [`viewport`] computes the panes' sizes from the same layout before a frame,
//! so paging and scrolling know them without the renderers writing back.
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
//!   `s`: the sessions table, then one session (see `sessions.rs`), and the
//!   diff of two requests (see `diff.rs`), each in the whole middle
//! ```

mod bars;
mod detail;
pub mod diff;
mod header;
mod overlay;
pub mod sessions;
pub mod table;

use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::Frame;

use super::app::{App, Focus, Input};
use super::model::Viewport;
use crate::capture::sanitize::sanitize;

/// Where each pane goes on a screen of `area`.
struct Areas {
    head: Rect,
    /// The table (the whole middle while the list has focus).
    list: Rect,
    /// The detail pane, where it is (or would be) while a flow is open.
    detail: Rect,
    /// Everything between the header and the bars (the sessions and diff views).
    main: Rect,
    bar: Rect,
    foot: Rect,
}

fn areas(area: Rect, app: &App) -> Areas {
    let bar_rows = match app.input {
        Input::Filter if app.filter_error.is_some() => 2,
        Input::Filter | Input::Search => 1,
        Input::None if !app.filter().is_all() => 1,
        Input::None => 0,
    };
    let [head, main, bar, foot] = Layout::vertical([
        Constraint::Length(header::rows(app)),
        Constraint::Min(3),
        Constraint::Length(bar_rows),
        Constraint::Length(1),
    ])
    .areas(area);
    let [top, detail] =
        Layout::vertical([Constraint::Percentage(35), Constraint::Percentage(65)]).areas(main);
    let list = if app.focus == Focus::Detail {
        top
    } else {
        main
    };
    Areas {
        head,
        list,
        detail,
        main,
        bar,
        foot,
    }
}

/// The panes' sizes on a screen of `area` in the app's current state; hand
/// it to [`App::prepare`] before drawing.
pub fn viewport(area: Rect, app: &App) -> Viewport {
    let a = areas(area, app);
    let body = detail::content_area(a.detail);
    Viewport {
        table_rows: table::rows_in(a.list),
        body_rows: usize::from(body.height),
        body_width: usize::from(body.width),
        width: area.width,
        sessions_rows: sessions::list_rows_in(a.main),
        turn_rows: usize::from(sessions::session_areas(a.main).turns.height),
        diff_rows: usize::from(diff::diff_areas(a.main).rows.height),
        diff_width: diff::text_width(a.main, app.diff.as_ref()),
        help_overflow: overlay::help_overflow(area),
    }
}

/// Draw the whole screen. Call [`App::prepare`] with [`viewport`] first.
pub fn draw(f: &mut Frame, app: &App) {
    let area = f.area();
    let a = areas(area, app);
    header::render(f, app, a.head);
    match app.focus {
        Focus::List => table::render(f, app, a.list),
        Focus::Detail => {
            table::render(f, app, a.list);
            detail::render(f, app, a.detail);
        }
        Focus::Sessions => sessions::render_list(f, app, a.main),
        Focus::Session => sessions::render_session(f, app, a.main),
        Focus::Diff => diff::render(f, app, a.main),
    }
    bars::render_bar(f, app, a.bar);
    bars::render_footer(f, app, a.foot);
    overlay::render(f, app, area);
}

/// Untrusted text made safe for the terminal, owned for a `Span`.
fn clean(s: &str) -> String {
    sanitize(s).into_owned()
}

/// `1.2 KB`-style sizes.
pub fn human_size(n: u64) -> String {
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
pub fn human_ms(ms: f64) -> String {
    if ms < 1000.0 {
        format!("{ms:.0} ms")
    } else {
        format!("{:.2} s", ms / 1000.0)
    }
}
