//! TUI state. [`App::update`] applies one [`Action`] synchronously and does no
//! I/O; anything that needs the outside world (clipboard, files, database) is
//! queued as an [`Effect`] for the event loop to carry out.

use std::cell::Cell;
use std::collections::{HashMap, VecDeque};
use std::fmt::Write as _;
use std::sync::Arc;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use ratatui::style::{Color, Style};
use tui_textarea::{CursorMove, TextArea};
use uuid::Uuid;

use super::body::{BodyDoc, BodyMode};
use super::filter::{self, Filter, FilterError};
use crate::engine::{EngineStatus, Feed};
use crate::flow::{Flow, FlowEvent, TrafficType};

/// Largest live body kept per in-flight flow (the completed flow carries the final copy).
const MAX_LIVE_BODY: usize = 64 << 20;
/// Body bytes the list keeps in memory by default; older bodies beyond it are dropped.
pub const BODY_BUDGET: usize = 64 << 20;
/// Flows asked for per history page.
pub const HISTORY_PAGE: i64 = 500;

/// Everything the user or the world can do to the state.
#[derive(Debug, Clone)]
pub enum Action {
    /// Something from the engine feed.
    Feed(Feed),
    /// Time passes (header rate, clock).
    Tick(DateTime<Utc>),
    /// Previous flow, or scroll the body up (past the top: load older flows).
    Up,
    /// Next flow, or scroll the body down.
    Down,
    /// First flow / top of the body.
    Top,
    /// Last flow / end of the body.
    Bottom,
    /// A screenful up.
    PageUp,
    /// A screenful down.
    PageDown,
    /// Open the selected flow's detail.
    Open,
    /// Close the overlay, the input or the detail.
    Back,
    /// Next detail tab.
    NextTab,
    /// Previous detail tab.
    PrevTab,
    /// `F`: follow the newest flow.
    ToggleFollow,
    /// Open the filter bar.
    StartFilter,
    /// A key typed into the filter bar.
    FilterKey(tui_textarea::Input),
    /// Keep the filter and close the bar.
    FilterSubmit,
    /// Restore the filter from before the bar opened.
    FilterCancel,
    /// Open the body search bar.
    StartSearch,
    /// A key typed into the body search bar.
    SearchKey(tui_textarea::Input),
    /// Run the search and jump to the first match below.
    SearchSubmit,
    /// Drop the search.
    SearchCancel,
    /// `n`: next match.
    NextHit,
    /// `N`: previous match.
    PrevHit,
    /// `?`.
    ToggleHelp,
    /// `y`: curl command to the clipboard and on screen.
    CopyCurl,
    /// `b`: save the body of the open tab (response in the list).
    SaveBody,
    /// `w`: the filtered flows as HAR.
    ExportHar,
    /// `c`: forget every flow shown.
    Clear,
    /// `m`: next body view.
    CycleMode,
    /// `Q`.
    Quit,
    /// A page of stored flows arrived (newest first, as `Reader::page` returns them).
    History { flows: Vec<Flow>, exhausted: bool },
    /// Stored history became reachable: load the newest page.
    HistoryAvailable,
    /// One line to show in the footer (results of effects).
    Notice(String),
}

/// Work for the event loop: the outside world.
#[derive(Debug, Clone)]
pub enum Effect {
    /// Put this text on the clipboard (OSC 52).
    Copy(String),
    /// Write a body to a file named `name` in the save directory.
    SaveBody { name: String, bytes: Bytes },
    /// Write these flows as HAR.
    ExportHar(Vec<Arc<Flow>>),
    /// Load a page of flows older than `before` (the newest when `None`).
    LoadOlder { before: Option<DateTime<Utc>> },
}

/// Which pane has the keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Focus {
    /// The flow table.
    List,
    /// The detail pane of the selected flow.
    Detail,
}

/// Detail tabs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tab {
    /// Request line, headers, body.
    Request,
    /// Status line, headers, body (live while streaming).
    Response,
    /// Times, addresses, TLS, error.
    Timing,
}

impl Tab {
    /// All tabs in order.
    pub const ALL: [Self; 3] = [Self::Request, Self::Response, Self::Timing];

    /// Title in the tab bar.
    pub fn title(self) -> &'static str {
        match self {
            Self::Request => "Request",
            Self::Response => "Response",
            Self::Timing => "Timing & connection",
        }
    }
}

/// What floats above the panes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Overlay {
    /// Nothing.
    None,
    /// `?`: every binding.
    Help,
    /// The curl command just copied.
    Curl(String),
}

/// Which bar is taking text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Input {
    /// Keys are commands.
    None,
    /// The `/` filter bar.
    Filter,
    /// The body search bar.
    Search,
}

/// One row of the list.
#[derive(Debug, Clone)]
pub struct Entry {
    /// The latest state of the flow.
    pub flow: Arc<Flow>,
    /// Response bytes received live while in flight.
    pub live: Vec<u8>,
    /// The bodies were dropped to stay within the memory budget.
    pub trimmed: bool,
}

impl Entry {
    fn new(flow: Arc<Flow>) -> Self {
        Self {
            flow,
            live: Vec::new(),
            trimmed: false,
        }
    }
}

fn body_len(f: &Flow) -> usize {
    f.request_body.len() + f.response_body.len()
}

/// History loading state.
#[derive(Debug, Clone, Copy, Default)]
pub struct History {
    /// A Reader is connected.
    pub available: bool,
    /// A page request is out.
    pub loading: bool,
    /// No older flows remain (or the list was cleared).
    pub exhausted: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct DocKey {
    id: Uuid,
    tab: Tab,
    mode: BodyMode,
}

/// The whole TUI state.
pub struct App {
    entries: Vec<Entry>,
    index: HashMap<Uuid, usize>,
    visible: Vec<usize>,
    /// Selected entry (index into the entries, not the visible list).
    selected: Option<usize>,
    /// Keep the newest flow selected as flows arrive (`F`).
    pub follow: bool,
    /// Which pane has the keys.
    pub focus: Focus,
    /// The open detail tab.
    pub tab: Tab,
    /// `None`: chosen from the content type.
    mode_override: Option<BodyMode>,
    /// First detail row shown (headers, then body lines).
    pub scroll: usize,
    doc: Option<(DocKey, BodyDoc)>,
    /// The filter applied to the list (the last valid expression).
    pub filter: Filter,
    filter_before: Filter,
    /// The `/` bar's text.
    pub filter_input: TextArea<'static>,
    /// Why the bar's text does not parse, shown in red with its column.
    pub filter_error: Option<FilterError>,
    /// The body search bar's text.
    pub search_input: TextArea<'static>,
    /// The body search query.
    pub search: String,
    /// Body lines that contain the query.
    pub hits: Vec<usize>,
    /// The current match (index into `hits`).
    pub hit: usize,
    /// What floats above the panes.
    pub overlay: Overlay,
    /// Which bar takes typed text.
    pub input: Input,
    /// The engine's latest status (header).
    pub status: Option<EngineStatus>,
    /// Events this view missed because it fell behind.
    pub lagged: u64,
    counts: [u64; 4],
    started: u64,
    samples: VecDeque<(DateTime<Utc>, u64)>,
    /// Requests per second over the last few seconds.
    pub rate: f64,
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
    /// Most body bytes held; the oldest completed flows lose their bodies beyond it.
    pub body_budget: usize,
    body_bytes: usize,
    body_order: VecDeque<Uuid>,
    /// Set by the renderers: first row shown, rows and columns available.
    pub table_offset: Cell<usize>,
    pub table_height: Cell<usize>,
    pub body_height: Cell<usize>,
    pub body_width: Cell<usize>,
}

impl App {
    /// An empty list. With `history`, the newest stored page is requested at once.
    pub fn new(source: &str, history: bool, now: DateTime<Utc>) -> Self {
        let mut app = Self {
            entries: Vec::new(),
            index: HashMap::new(),
            visible: Vec::new(),
            selected: None,
            follow: true,
            focus: Focus::List,
            tab: Tab::Response,
            mode_override: None,
            scroll: 0,
            doc: None,
            filter: Filter::all(),
            filter_before: Filter::all(),
            filter_input: TextArea::default(),
            filter_error: None,
            search_input: TextArea::default(),
            search: String::new(),
            hits: Vec::new(),
            hit: 0,
            overlay: Overlay::None,
            input: Input::None,
            status: None,
            lagged: 0,
            counts: [0; 4],
            started: 0,
            samples: VecDeque::new(),
            rate: 0.0,
            notice: None,
            notice_at: now,
            now,
            history: History {
                available: history,
                ..History::default()
            },
            source: source.to_string(),
            effects: Vec::new(),
            quit: false,
            body_budget: BODY_BUDGET,
            body_bytes: 0,
            body_order: VecDeque::new(),
            table_offset: Cell::new(0),
            table_height: Cell::new(10),
            body_height: Cell::new(10),
            body_width: Cell::new(100),
        };
        if history {
            app.history.loading = true;
            app.effects.push(Effect::LoadOlder { before: None });
        }
        app
    }

    /// Effects queued by the last updates, oldest first.
    pub fn take_effects(&mut self) -> Vec<Effect> {
        std::mem::take(&mut self.effects)
    }

    /// All flows held (filtered or not).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when no flow is held.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Flows passing the filter.
    pub fn visible_len(&self) -> usize {
        self.visible.len()
    }

    /// The `i`-th visible entry.
    pub fn visible_entry(&self, i: usize) -> Option<&Entry> {
        self.visible.get(i).and_then(|&e| self.entries.get(e))
    }

    /// Position of the selection in the visible list.
    pub fn selected_pos(&self) -> Option<usize> {
        let sel = self.selected?;
        match self.visible.binary_search(&sel) {
            Ok(p) => Some(p),
            Err(p) => (!self.visible.is_empty()).then(|| p.min(self.visible.len() - 1)),
        }
    }

    /// The selected entry, when it passes the filter.
    pub fn selected_entry(&self) -> Option<&Entry> {
        self.visible_entry(self.selected_pos()?)
    }

    /// Flows held, by traffic type in [`TrafficType::ALL`] order.
    pub fn counts(&self) -> [u64; 4] {
        self.counts
    }

    /// The prepared body of the open tab, if any.
    pub fn doc(&self) -> Option<&BodyDoc> {
        self.doc.as_ref().map(|(_, d)| d)
    }

    /// The body mode in effect for the open tab.
    pub fn body_mode(&self) -> Option<BodyMode> {
        let e = self.selected_entry()?;
        let (ct, body) = tab_body(e, self.tab)?;
        Some(
            self.mode_override
                .unwrap_or_else(|| BodyMode::detect(ct, &body)),
        )
    }

    /// Rows of the header table above the body in the open tab.
    pub fn header_rows(&self) -> usize {
        self.selected_entry().map_or(0, |e| match self.tab {
            Tab::Request => e.flow.request_headers.len() + 2,
            Tab::Response => e.flow.response_headers.len() + 2,
            Tab::Timing => 0,
        })
    }

    /// Total scrollable rows of the open tab.
    pub fn detail_rows(&self) -> usize {
        match self.tab {
            Tab::Timing => 0,
            _ => self.header_rows() + self.doc().map_or(0, BodyDoc::line_count),
        }
    }

    /// Bring the body document up to date (call before drawing; cheap when nothing changed).
    pub fn prepare(&mut self) {
        if self.focus != Focus::Detail || self.tab == Tab::Timing {
            self.doc = None;
            return;
        }
        let Some(entry) = self.selected_entry() else {
            self.doc = None;
            return;
        };
        let Some((ct, body)) = tab_body(entry, self.tab) else {
            self.doc = None;
            return;
        };
        let key = DocKey {
            id: entry.flow.id,
            tab: self.tab,
            mode: self
                .mode_override
                .unwrap_or_else(|| BodyMode::detect(ct, &body)),
        };
        let width = self.body_width.get().max(20);
        match &mut self.doc {
            Some((k, doc)) if *k == key => doc.update(&body, width),
            _ => self.doc = Some((key, BodyDoc::build(&body, key.mode, width))),
        }
    }

    /// Apply one action.
    pub fn update(&mut self, action: Action) {
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
                if self.selected_entry().is_some() {
                    self.focus = Focus::Detail;
                    self.follow = false;
                    self.reset_body();
                }
            }
            Action::Back => self.back(),
            Action::NextTab | Action::PrevTab => {
                let i = Tab::ALL.iter().position(|t| *t == self.tab).unwrap_or(0);
                let n = Tab::ALL.len();
                let next = if matches!(action, Action::NextTab) {
                    i + 1
                } else {
                    i + n - 1
                };
                self.tab = Tab::ALL[next % n];
                self.reset_body();
            }
            Action::ToggleFollow => {
                self.follow = !self.follow;
                if self.follow {
                    self.select_last();
                }
            }
            Action::StartFilter => {
                self.input = Input::Filter;
                self.filter_before = self.filter.clone();
                self.filter_input = TextArea::new(vec![self.filter.source().to_string()]);
                self.filter_input.move_cursor(CursorMove::End);
                self.filter_error = None;
                self.style_filter();
            }
            Action::FilterKey(key) => {
                self.filter_input.input(key);
                let text = self.filter_input.lines().join(" ");
                match filter::parse(&text) {
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
                let before = self.filter_before.clone();
                self.set_filter(before);
            }
            Action::StartSearch => {
                if self.focus == Focus::Detail && self.tab != Tab::Timing {
                    self.input = Input::Search;
                    self.search_input = TextArea::new(vec![self.search.clone()]);
                    self.search_input.move_cursor(CursorMove::End);
                }
            }
            Action::SearchKey(key) => {
                self.search_input.input(key);
                self.search = self.search_input.lines().join(" ");
                self.run_search();
            }
            Action::SearchSubmit => {
                self.input = Input::None;
                self.run_search();
                let first = self
                    .hits
                    .iter()
                    .position(|&h| h + self.header_rows() >= self.scroll);
                self.hit = first.unwrap_or(0);
                self.jump_to_hit();
            }
            Action::SearchCancel => {
                self.input = Input::None;
                self.search.clear();
                self.hits.clear();
            }
            Action::NextHit | Action::PrevHit => {
                if !self.hits.is_empty() {
                    let n = self.hits.len();
                    self.hit = if matches!(action, Action::NextHit) {
                        (self.hit + 1) % n
                    } else {
                        (self.hit + n - 1) % n
                    };
                    self.jump_to_hit();
                }
            }
            Action::ToggleHelp => {
                self.overlay = if self.overlay == Overlay::Help {
                    Overlay::None
                } else {
                    Overlay::Help
                };
            }
            Action::CopyCurl => {
                if let Some(e) = self.selected_entry() {
                    let cmd = curl_command(&e.flow);
                    self.effects.push(Effect::Copy(cmd.clone()));
                    self.overlay = Overlay::Curl(cmd);
                }
            }
            Action::SaveBody => self.save_body(),
            Action::ExportHar => {
                let flows: Vec<Arc<Flow>> = self
                    .visible
                    .iter()
                    .filter_map(|&i| self.entries.get(i))
                    .map(|e| Arc::clone(&e.flow))
                    .collect();
                if flows.is_empty() {
                    self.say("nothing to export: no flow passes the filter");
                } else {
                    self.effects.push(Effect::ExportHar(flows));
                }
            }
            Action::Clear => {
                self.entries.clear();
                self.index.clear();
                self.visible.clear();
                self.selected = None;
                self.counts = [0; 4];
                self.body_bytes = 0;
                self.body_order.clear();
                self.focus = Focus::List;
                self.doc = None;
                self.history.exhausted = true;
                self.table_offset.set(0);
                self.say("list cleared");
            }
            Action::CycleMode => {
                if self.focus == Focus::Detail {
                    if let Some(m) = self.body_mode() {
                        self.mode_override = Some(m.next());
                        self.scroll = 0;
                        self.hits.clear();
                    }
                }
            }
            Action::Quit => self.quit = true,
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
                    self.started += 1;
                    self.upsert(Arc::clone(flow));
                }
                FlowEvent::Responded { flow } => self.upsert(Arc::clone(flow)),
                FlowEvent::Completed { flow } => {
                    self.upsert(Arc::clone(flow));
                    if let Some(&i) = self.index.get(&flow.id) {
                        self.entries[i].live = Vec::new();
                    }
                }
                FlowEvent::ResponseChunk { id, data } => {
                    if let Some(&i) = self.index.get(id) {
                        let entry = &mut self.entries[i];
                        if !entry.flow.is_complete() && entry.live.len() < MAX_LIVE_BODY {
                            entry.live.extend_from_slice(data);
                        }
                    }
                }
            },
        }
    }

    fn upsert(&mut self, flow: Arc<Flow>) {
        let passes = self.filter.matches(&flow);
        if let Some(&i) = self.index.get(&flow.id) {
            let old = std::mem::replace(&mut self.entries[i].flow, Arc::clone(&flow));
            self.entries[i].trimmed = false;
            self.body_bytes =
                self.body_bytes - body_len(&old).min(self.body_bytes) + body_len(&flow);
            let old_i = type_index(old.traffic_type);
            self.counts[old_i] = self.counts[old_i].saturating_sub(1);
            self.counts[type_index(flow.traffic_type)] += 1;
            match (self.visible.binary_search(&i), passes) {
                (Ok(p), false) => {
                    self.visible.remove(p);
                }
                (Err(p), true) => self.visible.insert(p, i),
                _ => {}
            }
            self.enforce_budget();
            return;
        }
        let i = self.entries.len();
        self.counts[type_index(flow.traffic_type)] += 1;
        self.index.insert(flow.id, i);
        self.body_bytes += body_len(&flow);
        self.body_order.push_back(flow.id);
        self.entries.push(Entry::new(flow));
        self.enforce_budget();
        if passes {
            self.visible.push(i);
        }
        if self.follow || self.selected.is_none() {
            self.select_last();
        }
    }

    /// Drop the bodies of the oldest completed flows until the budget holds.
    fn enforce_budget(&mut self) {
        let keep = self.selected;
        let mut skipped = Vec::new();
        while self.body_bytes > self.body_budget {
            let Some(id) = self.body_order.pop_front() else {
                break;
            };
            let Some(&i) = self.index.get(&id) else {
                continue;
            };
            let entry = &mut self.entries[i];
            if !entry.flow.is_complete() || Some(i) == keep {
                skipped.push(id);
                continue;
            }
            let size = body_len(&entry.flow);
            if size == 0 {
                continue;
            }
            let mut light = Flow::clone(&entry.flow);
            light.request_body = Bytes::new();
            light.response_body = Bytes::new();
            entry.flow = Arc::new(light);
            entry.trimmed = true;
            self.body_bytes -= size.min(self.body_bytes);
        }
        for id in skipped.into_iter().rev() {
            self.body_order.push_front(id);
        }
    }

    /// Body bytes held right now.
    pub fn body_bytes(&self) -> usize {
        self.body_bytes
    }

    fn say(&mut self, text: impl Into<String>) {
        self.notice = Some(text.into());
        self.notice_at = self.now;
    }

    fn tick(&mut self, now: DateTime<Utc>) {
        self.now = now;
        if self.notice.is_some() && (now - self.notice_at).num_seconds() >= 8 {
            self.notice = None;
        }
        self.samples.push_back((now, self.started));
        while self
            .samples
            .front()
            .is_some_and(|(t, _)| (now - *t).num_milliseconds() > 5_000)
        {
            self.samples.pop_front();
        }
        self.rate = match (self.samples.front(), self.samples.back()) {
            (Some((t0, n0)), Some((t1, n1))) if t1 > t0 => {
                (n1 - n0) as f64 / ((*t1 - *t0).num_milliseconds() as f64 / 1000.0)
            }
            _ => 0.0,
        };
    }

    fn page(&self) -> usize {
        match self.focus {
            Focus::List => self.table_height.get().max(2) - 1,
            Focus::Detail => self.body_height.get().max(2) - 1,
        }
    }

    fn step(&mut self, delta: isize) {
        if self.focus == Focus::Detail && self.overlay == Overlay::None {
            let max = self
                .detail_rows()
                .saturating_sub(self.body_height.get().max(1));
            self.scroll = self.scroll.saturating_add_signed(delta).min(max);
            return;
        }
        if self.visible.is_empty() {
            self.want_older();
            return;
        }
        let pos = self.selected_pos().unwrap_or(0);
        let last = self.visible.len() - 1;
        if delta < 0 && pos == 0 {
            self.want_older();
        }
        let next = pos.saturating_add_signed(delta).min(last);
        self.selected = Some(self.visible[next]);
        self.follow = next == last && delta > 0 && self.follow;
    }

    fn want_older(&mut self) {
        let h = self.history;
        if h.available && !h.loading && !h.exhausted {
            self.history.loading = true;
            let before = self.entries.first().map(|e| e.flow.start_time);
            self.effects.push(Effect::LoadOlder { before });
            self.say("loading older flows…");
        }
    }

    fn select_last(&mut self) {
        self.selected = self.visible.last().copied().or(self.selected);
    }

    fn back(&mut self) {
        if self.overlay != Overlay::None {
            self.overlay = Overlay::None;
        } else if self.focus == Focus::Detail {
            self.focus = Focus::List;
            self.doc = None;
        } else if !self.filter.is_all() {
            self.set_filter(Filter::all());
        }
    }

    fn reset_body(&mut self) {
        self.scroll = 0;
        self.mode_override = None;
        self.hits.clear();
        self.hit = 0;
        self.doc = None;
    }

    fn set_filter(&mut self, f: Filter) {
        self.filter = f;
        self.refilter();
    }

    /// Re-apply the filter to every flow held.
    pub fn refilter(&mut self) {
        let filter = &self.filter;
        self.visible = if filter.is_all() {
            (0..self.entries.len()).collect()
        } else {
            visible_in(filter, &self.entries)
        };
        if self.follow {
            self.select_last();
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
        self.prepare();
        self.hits = self
            .doc()
            .map(|d| d.search(&self.search))
            .unwrap_or_default();
        self.hit = self.hit.min(self.hits.len().saturating_sub(1));
    }

    fn jump_to_hit(&mut self) {
        if let Some(&line) = self.hits.get(self.hit) {
            let target = self.header_rows() + line;
            let max = self
                .detail_rows()
                .saturating_sub(self.body_height.get().max(1));
            self.scroll = target.saturating_sub(2).min(max);
            self.say(format!(
                "match {}/{} for “{}”",
                self.hit + 1,
                self.hits.len(),
                self.search
            ));
        } else if !self.search.is_empty() {
            self.say(format!("no match for “{}”", self.search));
        }
    }

    fn save_body(&mut self) {
        let Some(e) = self.selected_entry() else {
            return;
        };
        let tab = if self.focus == Focus::Detail && self.tab == Tab::Request {
            Tab::Request
        } else {
            Tab::Response
        };
        let Some((ct, bytes)) = tab_body(e, tab) else {
            return;
        };
        if bytes.is_empty() {
            self.say("this body is empty: nothing to save");
            return;
        }
        let ext = match BodyMode::detect(ct, &bytes) {
            BodyMode::Json => "json",
            BodyMode::Sse => "sse",
            BodyMode::Text => "txt",
            BodyMode::Hex => "bin",
        };
        let id = e.flow.id.simple().to_string();
        let side = if tab == Tab::Request {
            "request"
        } else {
            "response"
        };
        let name = format!("{}-{side}.{ext}", &id[id.len() - 12..]);
        self.effects.push(Effect::SaveBody { name, bytes });
    }

    fn merge_history(&mut self, flows: Vec<Flow>, exhausted: bool) {
        self.history.loading = false;
        self.history.exhausted |= exhausted;
        let mut older: Vec<Entry> = flows
            .into_iter()
            .filter(|f| !self.index.contains_key(&f.id))
            .map(|f| Entry::new(Arc::new(f)))
            .collect();
        if older.is_empty() {
            self.history.exhausted = true;
            self.say("no older flows stored");
            return;
        }
        older.sort_by_key(|e| e.flow.start_time);
        let k = older.len();
        for e in older.iter().rev() {
            self.counts[type_index(e.flow.traffic_type)] += 1;
            self.body_bytes += body_len(&e.flow);
            self.body_order.push_front(e.flow.id);
        }
        older.append(&mut self.entries);
        self.entries = older;
        self.index = self
            .entries
            .iter()
            .enumerate()
            .map(|(i, e)| (e.flow.id, i))
            .collect();
        self.selected = self.selected.map(|s| s + k);
        self.table_offset.set(self.table_offset.get() + k);
        self.refilter();
        if self.selected.is_none() {
            self.select_last();
        }
        self.enforce_budget();
        self.say(format!("loaded {k} stored flows"));
    }
}

fn type_index(t: TrafficType) -> usize {
    TrafficType::ALL.iter().position(|x| *x == t).unwrap_or(3)
}

/// Content type and bytes of a tab's body (the live bytes while a response streams).
pub fn tab_body(e: &Entry, tab: Tab) -> Option<(Option<&str>, Bytes)> {
    let f = &e.flow;
    match tab {
        Tab::Request => Some((
            f.request_content_type
                .as_deref()
                .or_else(|| f.request_header("content-type")),
            f.request_body.clone(),
        )),
        Tab::Response if !f.ws_messages.is_empty() => Some((
            Some("text/plain"),
            super::websocket::message_list(&f.ws_messages),
        )),
        Tab::Response => {
            let body = if f.is_complete() || e.live.is_empty() {
                f.response_body.clone()
            } else {
                Bytes::copy_from_slice(&e.live)
            };
            Some((
                f.response_content_type
                    .as_deref()
                    .or_else(|| f.response_header("content-type")),
                body,
            ))
        }
        Tab::Timing => None,
    }
}

/// The flow as a curl command line (headers as captured: secrets stay redacted).
pub fn curl_command(f: &Flow) -> String {
    let mut parts = vec!["curl".to_string()];
    if f.method != "GET" {
        parts.push(format!("-X {}", shell_quote(&f.method)));
    }
    parts.push(shell_quote(&f.url));
    for (name, value) in &f.request_headers {
        if matches!(
            name.as_str(),
            "host" | "content-length" | "transfer-encoding"
        ) {
            continue;
        }
        parts.push(format!("-H {}", shell_quote(&format!("{name}: {value}"))));
    }
    if !f.request_body.is_empty() {
        match std::str::from_utf8(&f.request_body) {
            Ok(text) => parts.push(format!("--data-raw {}", shell_quote(text))),
            Err(_) => parts.push("--data-binary @body.bin".to_string()),
        }
    }
    parts.join(" ")
}

/// POSIX-shell quoting; control characters become `$'\xHH'` escapes so the
/// command is faithful yet safe to paste into a terminal.
fn shell_quote(s: &str) -> String {
    if s.chars().any(char::is_control) {
        let mut out = String::from("$'");
        for c in s.chars() {
            match c {
                '\'' => out.push_str("\\'"),
                '\\' => out.push_str("\\\\"),
                c if c.is_control() => {
                    let mut buf = [0u8; 4];
                    for b in c.encode_utf8(&mut buf).bytes() {
                        let _ = write!(out, "\\x{b:02x}");
                    }
                }
                c => out.push(c),
            }
        }
        out.push('\'');
        return out;
    }
    if !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./:=@%+,".contains(&b))
    {
        return s.to_string();
    }
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// Indices of the entries that pass `filter`, in order.
///
/// A long list is split across the cores: re-filtering 100,000 flows by body or
/// header is a scan of ~130 MB, and halving it keeps typing in `/` responsive.
fn visible_in(filter: &Filter, entries: &[Entry]) -> Vec<usize> {
    const PER_THREAD_MIN: usize = 8_192;
    let keep = |base: usize, part: &[Entry]| -> Vec<usize> {
        part.iter()
            .enumerate()
            .filter(|(_, e)| filter.matches(&e.flow))
            .map(|(i, _)| base + i)
            .collect()
    };
    let threads = std::thread::available_parallelism()
        .map_or(1, std::num::NonZeroUsize::get)
        .min(entries.len() / PER_THREAD_MIN)
        .max(1);
    if threads == 1 {
        return keep(0, entries);
    }
    let chunk = entries.len().div_ceil(threads);
    std::thread::scope(|scope| {
        let handles: Vec<_> = entries
            .chunks(chunk)
            .enumerate()
            .map(|(n, part)| scope.spawn(move || keep(n * chunk, part)))
            .collect();
        let mut out = Vec::new();
        for h in handles {
            // A panic in a worker is a bug in `matches`; surface it on this thread.
            match h.join() {
                Ok(part) => out.extend(part),
                Err(panic) => std::panic::resume_unwind(panic),
            }
        }
        out
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn curl_quotes_and_skips_hop_headers() {
        let mut f = Flow::new(
            crate::flow::Direction::Forward,
            "POST",
            "https://h/p?a=1&b='2'",
            "h",
            "/p",
        );
        f.request_headers = vec![
            ("host".into(), "h".into()),
            ("x-api-key".into(), "sk-…abcd".into()),
        ];
        f.request_body = Bytes::from_static(b"{\"it's\":1}");
        assert_eq!(
            curl_command(&f),
            r#"curl -X POST 'https://h/p?a=1&b='\''2'\''' -H 'x-api-key: sk-…abcd' --data-raw '{"it'\''s":1}'"#
        );
        assert_eq!(shell_quote("a\x1b[2J'b"), r"$'a\x1b[2J\'b'");
    }
}
