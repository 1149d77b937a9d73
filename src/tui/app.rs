//! TUI state. [`App::update`] applies one [`Action`] synchronously and does no
//! I/O; anything that needs the outside world (clipboard, files, database) is
//! queued as an [`Effect`] for the event loop to carry out. The flows live in
//! a [`FlowList`], the detail pane in a [`Detail`]; this file routes actions
//! between them and keeps what the header and bars show. The Sessions and
//! Diff views and the marks are routed in `views.rs`.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use ratatui::style::{Color, Style};
use tui_textarea::{CursorMove, TextArea};

pub use super::action::{Action, Effect};
use super::body::BodyMode;
use super::columns::{self, ColumnId};
use super::curl::curl_command;
use super::model::detail::{saved_body, Detail};
pub use super::model::detail::{tab_body, Tab};
use super::model::diff::DiffDoc;
pub use super::model::flows::{Entry, FlowList, BODY_BUDGET};
use super::model::sessions::Sessions;
pub use super::model::{Focus, History, Input, Overlay};
use super::model::{Rate, Viewport};
use crate::engine::status::{EngineStatus, Feed};
use crate::flow::filter::{self, Filter, FilterError};
use crate::flow::FlowEvent;

/// Flows asked for per history page.
pub const HISTORY_PAGE: usize = 500;

/// The whole TUI state.
pub struct App {
    /// Every flow held, the filter, the selection.
    pub flows: FlowList,
    /// The detail pane: tab, scroll, body view, search.
    pub detail: Detail,
    /// Which pane has the keys.
    pub focus: Focus,
    filter_before: Filter,
    /// The `/` bar's text.
    pub filter_input: TextArea<'static>,
    /// Why the bar's text does not parse, shown in red with its column.
    pub filter_error: Option<FilterError>,
    /// What floats above the panes.
    pub overlay: Overlay,
    /// Lines the help overlay is scrolled down by (clamped when drawn).
    pub help_scroll: usize,
    /// Which bar takes typed text.
    pub input: Input,
    /// The table's columns, in order.
    pub columns: Vec<ColumnId>,
    /// Show the LLM columns (`t`); `None`: when the terminal is wide enough.
    pub llm_columns: Option<bool>,
    /// First visible row shown by the table.
    pub table_offset: usize,
    /// Pane sizes from the last layout.
    pub view: Viewport,
    /// The engine's latest status (header).
    pub status: Option<EngineStatus>,
    /// Events this view missed because it fell behind.
    pub lagged: u64,
    /// Requests per second (header).
    pub rate: Rate,
    /// The latest one-line message (effects' results, hints).
    pub notice: Option<String>,
    notice_at: DateTime<Utc>,
    /// The clock, advanced by `Tick` only (tests stay deterministic).
    pub now: DateTime<Utc>,
    /// Stored-history paging state.
    pub history: History,
    /// Where the feed comes from (`attached`, `in-process`).
    pub source: String,
    effects: Vec<Effect>,
    /// Set by `Q`: the loop ends.
    pub quit: bool,
    /// The Sessions view: models built from the flows held, the open session.
    pub sessions: Sessions,
    /// The diff view's document, while it is open.
    pub diff: Option<DiffDoc>,
    /// Where `Esc` leaves the diff view for.
    pub diff_back: Focus,
    /// Flows marked with Space for `d` (at most two, oldest mark first).
    pub marks: Vec<uuid::Uuid>,
}

impl App {
    /// The LLM columns show: as toggled with `t`, else from the screen width.
    pub fn llm_columns_shown(&self) -> bool {
        self.llm_columns
            .unwrap_or(self.view.width >= columns::LLM_MIN_WIDTH)
    }

    /// An empty list. With `history`, the newest stored page is requested at once.
    pub fn new(source: &str, history: bool, now: DateTime<Utc>) -> Self {
        let mut app = Self {
            flows: FlowList::default(),
            detail: Detail::default(),
            focus: Focus::List,
            filter_before: Filter::all(),
            filter_input: TextArea::default(),
            filter_error: None,
            overlay: Overlay::None,
            help_scroll: 0,
            input: Input::None,
            columns: columns::DEFAULT.to_vec(),
            llm_columns: None,
            table_offset: 0,
            view: Viewport::default(),
            status: None,
            lagged: 0,
            rate: Rate::default(),
            notice: None,
            notice_at: now,
            now,
            history: History::default(),
            source: source.to_string(),
            effects: Vec::new(),
            quit: false,
            sessions: Sessions::default(),
            diff: None,
            diff_back: Focus::List,
            marks: Vec::new(),
        };
        if history {
            app.update(Action::HistoryAvailable);
        }
        app
    }

    /// Effects queued by the last updates, oldest first.
    pub fn take_effects(&mut self) -> Vec<Effect> {
        std::mem::take(&mut self.effects)
    }

    /// All flows held (filtered or not).
    pub fn len(&self) -> usize {
        self.flows.len()
    }

    /// True when no flow is held.
    pub fn is_empty(&self) -> bool {
        self.flows.is_empty()
    }

    /// Flows passing the filter.
    pub fn visible_len(&self) -> usize {
        self.flows.visible_len()
    }

    /// The `i`-th visible entry.
    pub fn visible_entry(&self, i: usize) -> Option<&Entry> {
        self.flows.visible_entry(i)
    }

    /// Position of the selection in the visible list.
    pub fn selected_pos(&self) -> Option<usize> {
        self.flows.selected_pos()
    }

    /// The selected entry, when it passes the filter.
    pub fn selected_entry(&self) -> Option<&Entry> {
        self.flows.selected_entry()
    }

    /// The filter applied to the list.
    pub fn filter(&self) -> &Filter {
        self.flows.filter()
    }

    /// Apply `filter` to the list (what the `/` bar does on each valid key).
    pub fn set_filter(&mut self, filter: Filter) {
        self.flows.set_filter(filter);
    }

    /// The body mode in effect for the open tab.
    pub fn body_mode(&self) -> Option<BodyMode> {
        self.detail.body_mode(self.flows.selected_entry())
    }

    /// Total scrollable rows of the open tab.
    pub fn detail_rows(&self) -> usize {
        self.detail.rows(self.flows.selected_entry())
    }

    /// Take the layout of the frame about to be drawn: keep the selection in
    /// the table's view and bring the body document up to date.
    pub fn prepare(&mut self, view: Viewport) {
        self.view = view;
        self.help_scroll = self.help_scroll.min(view.help_overflow);
        self.table_offset = super::ui::table::scroll_into_view(
            self.table_offset,
            self.flows.selected_pos(),
            view.table_rows.max(1),
            self.flows.visible_len(),
        );
        self.refresh_doc();
        self.prepare_views();
    }

    fn refresh_doc(&mut self) {
        let open = (self.focus == Focus::Detail)
            .then(|| self.flows.selected_entry())
            .flatten();
        self.detail.prepare(open, self.view.body_width);
    }

    /// Apply one action.
    pub fn update(&mut self, action: Action) {
        let Some(action) = self.route(action) else {
            return;
        };
        match action {
            Action::Feed(feed) => self.feed(feed),
            Action::Tick(now) => self.tick(now),
            Action::Up => self.step(-1),
            Action::Down => self.step(1),
            Action::PageUp => self.step(-(self.page() as isize)),
            Action::PageDown => self.step(self.page() as isize),
            Action::Top => self.step(isize::MIN / 2),
            Action::Bottom => self.step(isize::MAX / 2),
            Action::Open => {
                if self.flows.selected_entry().is_some() {
                    self.focus = Focus::Detail;
                    self.flows.follow = false;
                    self.detail.reset();
                }
            }
            Action::Back => self.back(),
            Action::NextTab => self.detail.cycle_tab(true),
            Action::PrevTab => self.detail.cycle_tab(false),
            Action::ToggleLlmColumns => {
                self.llm_columns = Some(!self.llm_columns_shown());
            }
            Action::ToggleFollow => {
                self.flows.follow = !self.flows.follow;
                if self.flows.follow {
                    self.flows.select_last();
                }
            }
            Action::StartFilter => {
                self.input = Input::Filter;
                self.filter_before = self.filter().clone();
                self.filter_input = TextArea::new(vec![self.filter().source().to_string()]);
                self.filter_input.move_cursor(CursorMove::End);
                self.filter_error = None;
                self.style_filter();
            }
            Action::FilterKey(key) => {
                self.filter_input.input(key);
                match filter::parse(&self.filter_input.lines().join(" ")) {
                    Ok(f) => {
                        self.filter_error = None;
                        self.set_filter(f);
                    }
                    Err(e) => self.filter_error = Some(e),
                }
                self.style_filter();
            }
            Action::FilterSubmit => {
                self.input = Input::None;
                self.filter_error = None;
            }
            Action::FilterCancel => {
                self.input = Input::None;
                self.filter_error = None;
                self.set_filter(self.filter_before.clone());
            }
            Action::StartSearch => {
                if self.focus == Focus::Detail && self.detail.tab != Tab::Timing {
                    self.input = Input::Search;
                    self.detail.start_search();
                }
            }
            Action::SearchKey(key) => {
                self.detail.search_key(key);
                self.run_search();
            }
            Action::SearchSubmit => {
                self.input = Input::None;
                self.run_search();
                self.detail.first_hit_below(self.flows.selected_entry());
                self.jump_to_hit();
            }
            Action::SearchCancel => {
                self.input = Input::None;
                self.detail.cancel_search();
            }
            Action::NextHit | Action::PrevHit => {
                if self.detail.cycle_hit(matches!(action, Action::NextHit)) {
                    self.jump_to_hit();
                }
            }
            Action::ToggleHelp => {
                self.help_scroll = 0;
                self.overlay = if self.overlay == Overlay::Help {
                    Overlay::None
                } else {
                    Overlay::Help
                };
            }
            Action::CopyCurl => {
                let cmd = self.flows.selected_entry().map(|e| curl_command(&e.flow));
                if let Some(cmd) = cmd {
                    self.effects.push(Effect::Copy(cmd.clone()));
                    self.overlay = Overlay::Curl(cmd);
                }
            }
            Action::SaveBody => self.save_body(),
            Action::ExportHar => {
                let flows = self.flows.visible_flows();
                if flows.is_empty() {
                    self.say("nothing to export: no flow passes the filter");
                } else {
                    self.effects.push(Effect::ExportHar(flows));
                }
            }
            Action::Clear => {
                self.flows.clear();
                self.focus = Focus::List;
                self.detail.close();
                self.history.exhausted = true;
                self.table_offset = 0;
                self.say("list cleared");
            }
            Action::CycleMode => {
                if self.focus == Focus::Detail {
                    self.detail.cycle_mode(self.flows.selected_entry());
                }
            }
            Action::Quit => self.quit = true,
            // Handled by `route` in every focus.
            Action::OpenSessions
            | Action::ToggleMark
            | Action::DiffMarked
            | Action::ScrollLeft
            | Action::ScrollRight => {}
            Action::History { flows, exhausted } => self.merge_history(flows, exhausted),
            Action::Notice(n) => self.say(n),
            Action::HistoryAvailable => {
                if !self.history.available {
                    self.history.available = true;
                    self.history.loading = true;
                    self.effects.push(Effect::LoadOlder { before: None });
                }
            }
        }
    }

    fn feed(&mut self, feed: Feed) {
        match feed {
            Feed::Lagged(n) => self.lagged += n,
            Feed::Status(s) => self.status = Some(*s),
            Feed::Event(ev) => match &*ev {
                FlowEvent::Started { flow } => {
                    self.rate.started();
                    self.flows.upsert(Arc::clone(flow));
                }
                FlowEvent::Responded { flow } | FlowEvent::RequestBody { flow } => {
                    self.flows.upsert(Arc::clone(flow));
                }
                FlowEvent::Completed { flow } => self.flows.complete(Arc::clone(flow)),
                FlowEvent::ResponseChunk { id, data } => self.flows.append_live(id, data),
            },
        }
    }

    /// Show one line in the footer.
    pub(crate) fn say(&mut self, text: impl Into<String>) {
        self.notice = Some(text.into());
        self.notice_at = self.now;
    }

    fn tick(&mut self, now: DateTime<Utc>) {
        self.now = now;
        if self.notice.is_some() && (now - self.notice_at).num_seconds() >= 8 {
            self.notice = None;
        }
        self.rate.tick(now);
    }

    fn page(&self) -> usize {
        let rows = match self.focus {
            Focus::List => self.view.table_rows,
            Focus::Detail => self.view.body_rows,
            Focus::Sessions => self.view.sessions_rows,
            Focus::Session => 6,
            Focus::Diff => self.view.diff_rows,
        };
        rows.max(2) - 1
    }

    fn step(&mut self, delta: isize) {
        if self.overlay == Overlay::Help {
            self.help_scroll = self.help_scroll.saturating_add_signed(delta);
            return;
        }
        if self.focus == Focus::Detail && self.overlay == Overlay::None {
            let sel = self.flows.selected_entry();
            self.detail.scroll_by(sel, delta, self.view.body_rows);
            return;
        }
        if self.flows.step(delta) {
            self.want_older();
        }
    }

    fn want_older(&mut self) {
        let h = self.history;
        if h.available && !h.loading && !h.exhausted {
            self.history.loading = true;
            let before = self.flows.oldest_start();
            self.effects.push(Effect::LoadOlder { before });
            self.say("loading older flows…");
        }
    }

    fn back(&mut self) {
        if self.overlay != Overlay::None {
            self.overlay = Overlay::None;
        } else if self.focus == Focus::Detail {
            self.focus = Focus::List;
            self.detail.close();
        } else if !self.filter().is_all() {
            self.set_filter(Filter::all());
        }
    }

    fn style_filter(&mut self) {
        let color = if self.filter_error.is_some() {
            Color::Red
        } else {
            Color::Green
        };
        self.filter_input.set_style(Style::new().fg(color));
        self.filter_input.set_cursor_line_style(Style::new());
    }

    fn run_search(&mut self) {
        self.refresh_doc();
        self.detail.run_search();
    }

    fn jump_to_hit(&mut self) {
        let sel = self.flows.selected_entry();
        if let Some(text) = self.detail.jump_to_hit(sel, self.view.body_rows) {
            self.say(text);
        }
    }

    fn save_body(&mut self) {
        let Some(e) = self.flows.selected_entry() else {
            return;
        };
        let tab = if self.focus == Focus::Detail && self.detail.tab == Tab::Request {
            Tab::Request
        } else {
            Tab::Response
        };
        match saved_body(e, tab) {
            Ok(Some((name, bytes))) => self.effects.push(Effect::SaveBody { name, bytes }),
            Ok(None) => {}
            Err(why) => self.say(why),
        }
    }

    fn merge_history(&mut self, flows: Vec<crate::flow::Flow>, exhausted: bool) {
        self.history.loading = false;
        self.history.exhausted |= exhausted;
        let k = self.flows.merge_history(flows);
        if k == 0 {
            self.history.exhausted = true;
            self.say("no older flows stored");
            return;
        }
        self.table_offset += k;
        self.say(format!("loaded {k} stored flows"));
    }
}
