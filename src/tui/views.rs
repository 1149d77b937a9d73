//! The Sessions, Session and Diff views' share of [`App::update`] and
//! [`App::prepare`], and the flow marks behind `d`. Kept apart from `app.rs`
//! so the flow list's routing stays readable; the state itself lives in
//! `model/sessions.rs` and `model/diff.rs`.

use uuid::Uuid;

use super::app::{Action, App, Focus, Overlay};
use super::model::diff::{DiffDoc, Side};
use super::model::sessions::verdict_text;

/// Columns a diff moves sideways per key.
const HSTEP: isize = 8;
/// Turns `PgUp` / `PgDn` move in a session.
const TURN_PAGE: isize = 10;

impl App {
    /// Take `action` when it belongs to these views or marks; hand it back otherwise.
    pub(super) fn route(&mut self, action: Action) -> Option<Action> {
        if self.overlay != Overlay::None {
            return Some(action);
        }
        match action {
            Action::OpenSessions => {
                self.sessions.refresh(&self.flows);
                self.focus = Focus::Sessions;
                self.flows.follow = false;
                return None;
            }
            Action::ToggleMark => {
                self.toggle_mark();
                return None;
            }
            Action::DiffMarked => {
                self.diff_marked();
                return None;
            }
            _ => {}
        }
        match self.focus {
            Focus::List | Focus::Detail => Some(action),
            Focus::Sessions => self.sessions_update(action),
            Focus::Session => self.session_update(action),
            Focus::Diff => self.diff_update(action),
        }
    }

    /// Before a frame: the sessions follow the flows held, the panes scroll
    /// to their selection, the turns on screen are parsed.
    pub(super) fn prepare_views(&mut self) {
        let view = self.view;
        match self.focus {
            Focus::Sessions | Focus::Session => {
                self.sessions.refresh_paced(&self.flows);
                if self.focus == Focus::Session && self.sessions.open.is_none() {
                    self.focus = Focus::Sessions;
                }
                let s = &mut self.sessions;
                s.offset = super::ui::table::scroll_into_view(
                    s.offset,
                    (!s.is_empty()).then_some(s.selected),
                    view.sessions_rows.max(1),
                    s.len(),
                );
                if let Some(open) = &mut s.open {
                    open.prepare(&self.flows, view.turn_rows);
                }
            }
            Focus::Diff => {
                if let Some(d) = &mut self.diff {
                    d.prepare(view.diff_rows, view.diff_width);
                }
            }
            Focus::List | Focus::Detail => {}
        }
    }

    fn sessions_update(&mut self, action: Action) -> Option<Action> {
        let page = self.view.sessions_rows.max(2) as isize - 1;
        let s = &mut self.sessions;
        match action {
            Action::Up => s.step(-1),
            Action::Down => s.step(1),
            Action::PageUp => s.step(-page),
            Action::PageDown => s.step(page),
            Action::Top => s.step(isize::MIN / 2),
            Action::Bottom => s.step(isize::MAX / 2),
            Action::Open => {
                s.refresh(&self.flows);
                if s.open_selected(&self.flows) {
                    self.focus = Focus::Session;
                } else {
                    self.say("no session yet: flows with a session id appear here");
                }
            }
            Action::Back => self.focus = Focus::List,
            other => return Some(other),
        }
        None
    }

    fn session_update(&mut self, action: Action) -> Option<Action> {
        let Some(open) = self.sessions.open.as_mut() else {
            self.focus = Focus::Sessions;
            return Some(action);
        };
        match action {
            Action::Up => open.step_turn(-1),
            Action::Down => open.step_turn(1),
            Action::PageUp => open.step_turn(-TURN_PAGE),
            Action::PageDown => open.step_turn(TURN_PAGE),
            Action::Top => open.step_turn(isize::MIN / 2),
            Action::Bottom => open.step_turn(isize::MAX / 2),
            Action::NextTab => open.cycle_conversation(true),
            Action::PrevTab => open.cycle_conversation(false),
            Action::Open => self.diff_turn(),
            Action::Back => {
                self.sessions.open = None;
                self.focus = Focus::Sessions;
            }
            other => return Some(other),
        }
        None
    }

    fn diff_update(&mut self, action: Action) -> Option<Action> {
        let rows = self.view.diff_rows;
        let page = rows.max(2) as isize - 1;
        let Some(d) = self.diff.as_mut() else {
            self.focus = self.diff_back;
            return Some(action);
        };
        match action {
            Action::Up => d.scroll_by(-1, rows),
            Action::Down => d.scroll_by(1, rows),
            Action::PageUp => d.scroll_by(-page, rows),
            Action::PageDown => d.scroll_by(page, rows),
            Action::Top => d.scroll_by(isize::MIN / 2, rows),
            Action::Bottom => d.scroll_by(isize::MAX / 2, rows),
            Action::ScrollLeft => d.hscroll_by(-HSTEP),
            Action::ScrollRight => d.hscroll_by(HSTEP),
            Action::NextHit | Action::PrevHit => {
                if !d.cycle_hunk(matches!(action, Action::NextHit), rows) {
                    self.say("the two requests are the same");
                }
            }
            Action::Back => {
                self.diff = None;
                self.focus = self.diff_back;
            }
            other => return Some(other),
        }
        None
    }

    /// The flow Space and `d` act on here: the selected flow, or the selected turn's.
    fn target(&self) -> Option<Uuid> {
        match self.focus {
            Focus::List | Focus::Detail => self.flows.selected_entry().map(|e| e.flow.id),
            Focus::Session => self
                .sessions
                .open
                .as_ref()
                .and_then(|o| o.selected_turn())
                .map(|t| t.trace_id),
            Focus::Sessions | Focus::Diff => None,
        }
    }

    fn toggle_mark(&mut self) {
        let Some(id) = self.target() else {
            return;
        };
        if let Some(i) = self.marks.iter().position(|m| *m == id) {
            self.marks.remove(i);
        } else {
            self.marks.push(id);
            if self.marks.len() > 2 {
                self.marks.remove(0);
            }
        }
        let n = self.marks.len();
        self.say(match n {
            0 => "no flow marked".to_string(),
            1 => "1 flow marked: mark another (Space) or select one, then d diffs".to_string(),
            _ => "2 flows marked: d diffs their requests".to_string(),
        });
    }

    fn diff_marked(&mut self) {
        let pair = match (self.marks.as_slice(), self.target()) {
            ([a, b], _) => (*a, *b),
            ([a], Some(t)) if *a != t => (*a, t),
            _ => {
                self.say("mark two flows with Space, then press d to diff their requests");
                return;
            }
        };
        let start = |id: &Uuid| self.flows.entry(id).map(|e| e.flow.start_time);
        let (a, b) = if start(&pair.0) <= start(&pair.1) {
            pair
        } else {
            (pair.1, pair.0)
        };
        self.open_diff(a, b, None, None);
    }

    /// `Enter` on a turn: its request against the previous one of its conversation.
    fn diff_turn(&mut self) {
        let Some(open) = self.sessions.open.as_ref() else {
            return;
        };
        let (Some(cur), Some(prev)) = (open.selected_turn(), open.previous_turn()) else {
            self.say("the first request of its conversation: nothing before it to diff (Space marks two flows for d)");
            return;
        };
        let n = open.turn + 1;
        let names = (format!("turn #{} ", n - 1), format!("turn #{n} "));
        let note = format!("turn #{n}: {}", verdict_text(cur));
        let (a, b) = (prev.trace_id, cur.trace_id);
        self.open_diff(a, b, Some(note), Some(names));
    }

    fn open_diff(
        &mut self,
        earlier: Uuid,
        later: Uuid,
        note: Option<String>,
        names: Option<(String, String)>,
    ) {
        let (Some(x), Some(y)) = (self.flows.entry(&earlier), self.flows.entry(&later)) else {
            self.say("that flow is no longer held (cleared?)");
            return;
        };
        let bare = [x, y]
            .into_iter()
            .find(|e| e.flow.request_body.is_empty())
            .map(|e| (e.flow.id, e.trimmed));
        if let Some((id, trimmed)) = bare {
            let why = if trimmed {
                "not kept in memory (over the TUI body budget; `ccproxy export` has it)"
            } else {
                "empty"
            };
            self.say(format!(
                "the request body of {id} is {why}: nothing to diff"
            ));
            return;
        }
        let (na, nb) = names.unwrap_or_default();
        let title = |name: String, e: &super::app::Entry| {
            let flow = &e.flow;
            let id = flow.id.simple().to_string();
            format!(
                "{name}{} {} {} …{}",
                flow.start_time.format("%H:%M:%S%.3f"),
                flow.method,
                flow.path,
                &id[id.len() - 8..]
            )
        };
        let left = Side::of(title(na, x), &x.flow.request_body);
        let right = Side::of(title(nb, y), &y.flow.request_body);
        self.diff = Some(DiffDoc::build(left, right, note));
        if self.focus != Focus::Diff {
            self.diff_back = self.focus;
        }
        self.focus = Focus::Diff;
    }
}
