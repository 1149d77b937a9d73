//! The detail pane's state: the open tab, the scroll position, the body view
//! mode and document, and the body search. Pure: it is handed the selected
//! entry and the pane's size, and never draws.

use bytes::Bytes;
use tui_textarea::{CursorMove, TextArea};
use uuid::Uuid;

use super::flows::Entry;
use crate::tui::body::{BodyDoc, BodyMode};

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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct DocKey {
    id: Uuid,
    tab: Tab,
    mode: BodyMode,
}

/// Everything the detail pane shows besides the flow itself.
pub struct Detail {
    /// The open tab.
    pub tab: Tab,
    /// `None`: chosen from the content type.
    mode_override: Option<BodyMode>,
    /// First detail row shown (headers, then body lines).
    pub scroll: usize,
    doc: Option<(DocKey, BodyDoc)>,
    /// The body search bar's text.
    pub search_input: TextArea<'static>,
    /// The body search query.
    pub search: String,
    /// Body lines that contain the query.
    pub hits: Vec<usize>,
    /// The current match (index into `hits`).
    pub hit: usize,
}

impl Default for Detail {
    fn default() -> Self {
        Self {
            tab: Tab::Response,
            mode_override: None,
            scroll: 0,
            doc: None,
            search_input: TextArea::default(),
            search: String::new(),
            hits: Vec::new(),
            hit: 0,
        }
    }
}

impl Detail {
    /// The prepared body of the open tab, if any.
    pub fn doc(&self) -> Option<&BodyDoc> {
        self.doc.as_ref().map(|(_, d)| d)
    }

    /// Forget the document (the pane closed).
    pub fn close(&mut self) {
        self.doc = None;
    }

    /// Back to the top of a fresh body: scroll, view mode, search hits, document.
    pub fn reset(&mut self) {
        self.scroll = 0;
        self.mode_override = None;
        self.hits.clear();
        self.hit = 0;
        self.doc = None;
    }

    /// Next (or previous) tab.
    pub fn cycle_tab(&mut self, forward: bool) {
        let i = Tab::ALL.iter().position(|t| *t == self.tab).unwrap_or(0);
        let n = Tab::ALL.len();
        let next = if forward { i + 1 } else { i + n - 1 };
        self.tab = Tab::ALL[next % n];
        self.reset();
    }

    /// The body mode in effect for the open tab.
    pub fn body_mode(&self, e: Option<&Entry>) -> Option<BodyMode> {
        let (ct, body) = tab_body(e?, self.tab)?;
        Some(
            self.mode_override
                .unwrap_or_else(|| BodyMode::detect(ct, &body)),
        )
    }

    /// `m`: the next body view.
    pub fn cycle_mode(&mut self, e: Option<&Entry>) {
        if let Some(m) = self.body_mode(e) {
            self.mode_override = Some(m.next());
            self.scroll = 0;
            self.hits.clear();
        }
    }

    /// Rows of the header table above the body in the open tab.
    pub fn header_rows(&self, e: Option<&Entry>) -> usize {
        e.map_or(0, |e| match self.tab {
            Tab::Request => e.flow.request_headers.len() + 2,
            Tab::Response => {
                e.flow.response_headers.len()
                    + 2
                    + e.flow
                        .llm
                        .as_deref()
                        .map_or(0, |a| crate::tui::summary::rows(a).len() + 1)
            }
            Tab::Timing => 0,
        })
    }

    /// Total scrollable rows of the open tab.
    pub fn rows(&self, e: Option<&Entry>) -> usize {
        match self.tab {
            Tab::Timing => 0,
            _ => self.header_rows(e) + self.doc().map_or(0, BodyDoc::line_count),
        }
    }

    /// Scroll by `delta` rows within a pane `height` rows high.
    pub fn scroll_by(&mut self, e: Option<&Entry>, delta: isize, height: usize) {
        let max = self.rows(e).saturating_sub(height.max(1));
        self.scroll = self.scroll.saturating_add_signed(delta).min(max);
    }

    /// Bring the body document up to date for `e` (cheap when nothing changed).
    pub fn prepare(&mut self, e: Option<&Entry>, width: usize) {
        let Some((entry, (ct, body))) = e.and_then(|e| Some((e, tab_body(e, self.tab)?))) else {
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
        let width = width.max(20);
        match &mut self.doc {
            Some((k, doc)) if *k == key => doc.update(&body, width),
            _ => self.doc = Some((key, BodyDoc::build(&body, key.mode, width))),
        }
    }

    /// Open the search bar on the current query.
    pub fn start_search(&mut self) {
        self.search_input = TextArea::new(vec![self.search.clone()]);
        self.search_input.move_cursor(CursorMove::End);
    }

    /// A key typed into the search bar: the query follows the text.
    pub fn search_key(&mut self, key: tui_textarea::Input) {
        self.search_input.input(key);
        self.search = self.search_input.lines().join(" ");
    }

    /// Drop the query and its hits.
    pub fn cancel_search(&mut self) {
        self.search.clear();
        self.hits.clear();
    }

    /// Find the query's lines in the prepared document.
    pub fn run_search(&mut self) {
        self.hits = self
            .doc()
            .map(|d| d.search(&self.search))
            .unwrap_or_default();
        self.hit = self.hit.min(self.hits.len().saturating_sub(1));
    }

    /// Make the first hit at or below the scroll position current.
    pub fn first_hit_below(&mut self, e: Option<&Entry>) {
        let head = self.header_rows(e);
        let first = self.hits.iter().position(|&h| h + head >= self.scroll);
        self.hit = first.unwrap_or(0);
    }

    /// `n` / `N`: the next or previous hit, wrapping; false when there are none.
    pub fn cycle_hit(&mut self, forward: bool) -> bool {
        if self.hits.is_empty() {
            return false;
        }
        let n = self.hits.len();
        self.hit = if forward {
            (self.hit + 1) % n
        } else {
            (self.hit + n - 1) % n
        };
        true
    }

    /// Scroll the current hit into view; the line to tell the user, if any.
    pub fn jump_to_hit(&mut self, e: Option<&Entry>, height: usize) -> Option<String> {
        if let Some(&line) = self.hits.get(self.hit) {
            let target = self.header_rows(e) + line;
            let max = self.rows(e).saturating_sub(height.max(1));
            self.scroll = target.saturating_sub(2).min(max);
            Some(format!(
                "match {}/{} for “{}”",
                self.hit + 1,
                self.hits.len(),
                self.search
            ))
        } else if !self.search.is_empty() {
            Some(format!("no match for “{}”", self.search))
        } else {
            None
        }
    }
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
            crate::tui::websocket::message_list(&f.ws_messages),
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

/// The file `b` writes for a tab's body: its name (the flow id's tail, the
/// side, an extension from the content) and bytes; `Ok(None)` when the tab
/// has no body, `Err` with what to tell the user when it is empty.
pub fn saved_body(e: &Entry, tab: Tab) -> Result<Option<(String, Bytes)>, &'static str> {
    let Some((ct, bytes)) = tab_body(e, tab) else {
        return Ok(None);
    };
    if bytes.is_empty() {
        return Err("this body is empty: nothing to save");
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
    Ok(Some((
        format!("{}-{side}.{ext}", &id[id.len() - 12..]),
        bytes,
    )))
}
