//! The Sessions view's state: the flows held grouped by session id and built
//! into [`Session`] models, the table's selection, and the session opened
//! with its conversation tree, the turns around the selection (only what is
//! new in each) and its rate-limit history.
//!
//! Cheap to keep live: nothing is done while the flow list's generation
//! stands still; when it moves, only the flows analysed since the last look
//! (the list's log) are placed in their sessions, and only those sessions are
//! built again. The text of a turn is parsed from its bodies only when the
//! turn comes on screen.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde_json::Value;
use uuid::Uuid;

use super::flows::{Entry, FlowList};
use crate::llm::session::{self, Conversation, Exchange, Session, Turn, Verdict};
use crate::llm::stream::BlockKind;
use crate::llm::PriceTable;
use crate::tui::summary::group;

/// Characters kept of one line of message text.
const TEXT_CHARS: usize = 400;
/// Message lines shown per turn before the rest is counted.
const MAX_TEXT_LINES: usize = 8;
/// Turn blocks kept parsed; beyond it the cache starts over.
const MAX_BLOCKS: usize = 512;
/// A refresh that took longer than this is not repeated for
/// [`PACE`] times its length: while a burst of traffic keeps changing big
/// sessions, the view lags a little instead of spending every frame building.
const SLOW_REFRESH: Duration = Duration::from_millis(15);
/// How many times a slow refresh's length the paced refresh waits.
const PACE: u32 = 5;
/// Rate-limit headers followed over a session, most telling first.
const SERIES: &[&str] = &[
    "anthropic-ratelimit-unified-5h-utilization",
    "anthropic-ratelimit-unified-7d-utilization",
    "anthropic-ratelimit-tokens-remaining",
    "anthropic-ratelimit-input-tokens-remaining",
    "anthropic-ratelimit-output-tokens-remaining",
    "anthropic-ratelimit-requests-remaining",
    "x-ratelimit-remaining-tokens",
    "x-ratelimit-remaining-requests",
];

/// One row of the sessions table.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionRow {
    pub session_id: String,
    pub agent: Option<String>,
    /// The models asked for, in order of first use.
    pub models: Vec<String>,
    pub first_seen: DateTime<Utc>,
    pub last_seen: DateTime<Utc>,
    pub requests: u64,
    pub conversations: usize,
    /// Every prompt token: fresh input, cache reads and cache writes.
    pub tokens_in: u64,
    pub tokens_out: u64,
    pub cost_usd: f64,
    /// Cache reads ÷ prompt tokens.
    pub cache_hit: f64,
    /// Requests whose cache verdict is a miss, and what the misses cost.
    pub misses: usize,
    pub miss_cost_usd: f64,
    pub errors: u64,
    /// Requests whose bodies the list no longer holds (memory budget): their
    /// conversations and text cannot be told apart.
    pub without_bodies: usize,
}

impl SessionRow {
    fn of(s: &Session, without_bodies: usize) -> Self {
        let mut models: Vec<String> = Vec::new();
        let mut misses = 0;
        for t in s.conversations.iter().flat_map(|c| &c.requests) {
            if let Some(m) = &t.model {
                if !models.contains(m) {
                    models.push(m.clone());
                }
            }
            misses += usize::from(t.cache.verdict.is_miss());
        }
        let t = &s.totals;
        Self {
            session_id: s.session_id.clone(),
            agent: s.agent.clone(),
            models,
            first_seen: s.first_seen,
            last_seen: s.last_seen,
            requests: t.requests,
            conversations: s.conversations.len(),
            tokens_in: t.input_tokens + t.cache_read_tokens + t.cache_creation_tokens,
            tokens_out: t.output_tokens,
            cost_usd: t.cost_usd,
            cache_hit: t.cache_hit_ratio(),
            misses,
            miss_cost_usd: t.miss_cost_usd,
            errors: t.errors,
            without_bodies,
        }
    }

    /// Wall time from the first request to the last response.
    pub fn duration_s(&self) -> f64 {
        (self.last_seen - self.first_seen).num_milliseconds().max(0) as f64 / 1000.0
    }
}

#[derive(Debug)]
struct Built {
    session: Arc<Session>,
    row: SessionRow,
}

/// The entries of one session, and whether its model is stale.
#[derive(Debug, Default)]
struct Group {
    entries: Vec<usize>,
    dirty: bool,
}

/// The sessions held, the table's selection and the open session.
#[derive(Debug, Default)]
pub struct Sessions {
    generation: Option<u64>,
    /// The flow list's epoch and how far into its log of analysed entries
    /// the groups have read.
    epoch: Option<u64>,
    read: usize,
    groups: HashMap<String, Group>,
    /// Entries already placed in a group (by entry index).
    placed: Vec<bool>,
    /// When the last refresh ran and how long it took, when it was slow.
    slow: Option<(Instant, Duration)>,
    built: HashMap<String, Built>,
    /// Session ids, most recently active first.
    order: Vec<String>,
    /// Selected row of the table.
    pub selected: usize,
    /// First row the table shows.
    pub offset: usize,
    /// The session opened with `Enter`.
    pub open: Option<OpenSession>,
}

impl Sessions {
    /// Sessions in the table.
    pub fn len(&self) -> usize {
        self.order.len()
    }

    /// True when no flow held carries a session id.
    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }

    /// The `i`-th row of the table.
    pub fn row(&self, i: usize) -> Option<&SessionRow> {
        self.order
            .get(i)
            .and_then(|id| self.built.get(id))
            .map(|b| &b.row)
    }

    /// The table row of a session.
    pub fn row_of(&self, id: &str) -> Option<&SessionRow> {
        self.built.get(id).map(|b| &b.row)
    }

    /// The built model of a session.
    pub fn session(&self, id: &str) -> Option<&Arc<Session>> {
        self.built.get(id).map(|b| &b.session)
    }

    /// The selected row.
    pub fn selected_row(&self) -> Option<&SessionRow> {
        self.row(self.selected)
    }

    /// Bring the models up to date with the flows held: nothing to do while
    /// the list's generation is unchanged; else only sessions whose flows
    /// changed are built again. The selection stays on its session; the open
    /// session follows its new model (or closes when its flows are gone).
    pub fn refresh(&mut self, flows: &FlowList) {
        if self.generation == Some(flows.generation()) {
            return;
        }
        let started = Instant::now();
        self.rebuild(flows);
        let took = started.elapsed();
        self.slow = (took > SLOW_REFRESH).then_some((started, took));
    }

    /// [`refresh`](Self::refresh) before a frame: after a slow one, the next
    /// waits [`PACE`] times as long (the models stay as they were meanwhile).
    pub fn refresh_paced(&mut self, flows: &FlowList) {
        if let Some((at, took)) = self.slow {
            if at.elapsed() < took * PACE {
                return;
            }
        }
        self.refresh(flows);
    }

    fn rebuild(&mut self, flows: &FlowList) {
        self.generation = Some(flows.generation());
        let entries = flows.entries();
        let (epoch, log) = flows.analysed_log();
        if self.epoch == Some(epoch) {
            let from = self.read.min(log.len());
            let fresh: Vec<usize> = log[from..].to_vec();
            self.place(entries, fresh);
        } else {
            // Entries moved (cleared, or history prepended): start over.
            self.epoch = Some(epoch);
            self.read = 0;
            self.groups.clear();
            self.placed.clear();
            self.built.clear();
            self.place(entries, 0..entries.len());
        }
        self.read = log.len();
        let prices = PriceTable::shared();
        for (id, g) in &mut self.groups {
            if !std::mem::take(&mut g.dirty) {
                continue;
            }
            let ex: Vec<Exchange<'_>> = g
                .entries
                .iter()
                .filter_map(|&i| {
                    let e = entries.get(i)?;
                    e.llm.as_deref().map(|analysis| Exchange {
                        flow: &e.flow,
                        analysis,
                    })
                })
                .collect();
            let bare = ex.iter().filter(|x| x.flow.request_body.is_empty()).count();
            let session = Arc::new(session::build(id, &ex, prices));
            let row = SessionRow::of(&session, bare);
            self.built.insert(id.clone(), Built { session, row });
        }
        let keep = self.order.get(self.selected).cloned();
        self.order = self.built.keys().cloned().collect();
        let built = &self.built;
        self.order.sort_by(|a, b| {
            let (x, y) = (&built[a].row, &built[b].row);
            y.last_seen.cmp(&x.last_seen).then_with(|| a.cmp(b))
        });
        self.selected = keep
            .and_then(|k| self.order.iter().position(|id| *id == k))
            .unwrap_or(0);
        if let Some(open) = &mut self.open {
            match self.built.get(&open.session.session_id) {
                Some(b) if !Arc::ptr_eq(&b.session, &open.session) => {
                    open.replace(Arc::clone(&b.session), flows);
                }
                Some(_) => {}
                None => self.open = None,
            }
        }
    }

    /// Put these entries in their sessions' groups and mark those stale.
    fn place(&mut self, entries: &[Entry], which: impl IntoIterator<Item = usize>) {
        if self.placed.len() < entries.len() {
            self.placed.resize(entries.len(), false);
        }
        for i in which {
            let Some(id) = entries
                .get(i)
                .and_then(|e| e.llm.as_deref())
                .and_then(|a| a.session_id.as_deref())
            else {
                continue;
            };
            let g = match self.groups.get_mut(id) {
                Some(g) => g,
                None => self.groups.entry(id.to_string()).or_default(),
            };
            g.dirty = true;
            if !std::mem::replace(&mut self.placed[i], true) {
                g.entries.push(i);
            } else if !g.entries.contains(&i) {
                // Analysed again under another session id (not expected):
                // out of the group it was in, into this one.
                g.entries.push(i);
                for (other, h) in &mut self.groups {
                    if other != id && h.entries.contains(&i) {
                        h.entries.retain(|x| *x != i);
                        h.dirty = true;
                    }
                }
            }
        }
        self.groups.retain(|_, g| !g.entries.is_empty());
        self.built.retain(|id, _| self.groups.contains_key(id));
    }

    /// Move the table's selection by `delta` rows.
    pub fn step(&mut self, delta: isize) {
        let last = self.order.len().saturating_sub(1);
        self.selected = self.selected.saturating_add_signed(delta).min(last);
    }

    /// Open the selected session; false when there is none.
    pub fn open_selected(&mut self, flows: &FlowList) -> bool {
        let Some(s) = self
            .order
            .get(self.selected)
            .and_then(|id| self.built.get(id))
        else {
            return false;
        };
        self.open = Some(OpenSession::new(Arc::clone(&s.session), flows));
        true
    }
}

/// One line of a turn as the turns pane shows it, top to bottom.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TurnLine {
    /// Number, time, model, tokens, cost and the cache verdict.
    Head,
    /// Why the cache missed and what it cost (misses only).
    Miss,
    /// The previous request at the divergence.
    Before(String),
    /// This request at the divergence.
    After(String),
    /// The request failed: status and the API's message.
    Error(String),
    /// New user text.
    User(String),
    /// A tool result the request carries back.
    ToolResult {
        id: String,
        text: String,
        error: bool,
    },
    /// What the model answered.
    Assistant(String),
    /// The model's reasoning.
    Thinking(String),
    /// A tool call of the response (index into [`Turn::tool_calls`]) with
    /// its input and the turn that carried its result.
    Call {
        index: usize,
        input: String,
        result_turn: Option<usize>,
    },
    /// Something the view could not show, and why.
    Note(String),
}

/// What the rate-limit panel shows of a session.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Limits {
    /// The latest response's rate-limit figures, shortened (`requests 47/50`).
    pub latest: Vec<String>,
    /// When that response started.
    pub latest_at: Option<DateTime<Utc>>,
    /// The header followed over the session (utilisation in %, or remaining).
    pub series_name: Option<String>,
    /// Its value per request that reported it, in time order.
    pub series: Vec<u64>,
    /// Responses with status 429 (rate limited).
    pub too_many: usize,
    /// Responses with status 529 (overloaded).
    pub overloaded: usize,
}

impl Limits {
    fn of(s: &Session, flows: &FlowList) -> Self {
        let mut turns: Vec<&Turn> = s.conversations.iter().flat_map(|c| &c.requests).collect();
        turns.sort_by_key(|t| (t.start_time, t.index));
        let mut out = Self::default();
        let analyses: Vec<(&Turn, &crate::llm::Analysis)> = turns
            .iter()
            .filter_map(|t| Some((*t, flows.entry(&t.trace_id)?.llm.as_deref()?)))
            .collect();
        for t in &turns {
            out.too_many += usize::from(t.status == Some(429));
            out.overloaded += usize::from(t.status == Some(529));
        }
        if let Some((t, a)) = analyses.iter().rev().find(|(_, a)| !a.ratelimit.is_empty()) {
            out.latest = shorten(&a.ratelimit);
            out.latest_at = Some(t.start_time);
        }
        let name = SERIES
            .iter()
            .find(|n| analyses.iter().any(|(_, a)| a.ratelimit.contains_key(**n)));
        if let Some(name) = name {
            let pct = name.contains("utilization");
            out.series = analyses
                .iter()
                .filter_map(|(_, a)| a.ratelimit.get(*name)?.trim().parse::<f64>().ok())
                .map(|v| if pct { (v * 100.0).round() } else { v }.max(0.0) as u64)
                .collect();
            let short = name
                .trim_start_matches("anthropic-ratelimit-")
                .trim_start_matches("x-ratelimit-");
            out.series_name = Some(if pct {
                format!("{short} %")
            } else {
                short.to_string()
            });
        }
        out
    }
}

/// Rate-limit headers as short lines: `requests 47/50 · reset …` per kind,
/// then the others by name.
fn shorten(r: &crate::llm::RateLimit) -> Vec<String> {
    let mut out = Vec::new();
    let mut used: Vec<&str> = Vec::new();
    for kind in ["requests", "tokens", "input-tokens", "output-tokens"] {
        let find = |what: &str| {
            r.iter().find(|(k, _)| {
                k.as_str() == format!("anthropic-ratelimit-{kind}-{what}")
                    || k.as_str() == format!("x-ratelimit-{what}-{kind}")
            })
        };
        let (rem, lim, reset) = (find("remaining"), find("limit"), find("reset"));
        if rem.is_none() && lim.is_none() {
            continue;
        }
        let v =
            |x: Option<(&String, &String)>| x.map_or_else(|| "?".to_string(), |(_, v)| v.clone());
        let mut line = format!("{kind} {}/{}", v(rem), v(lim));
        if let Some((_, r)) = reset {
            let _ = write!(line, " · reset {r}");
        }
        out.push(line);
        used.extend(
            [rem, lim, reset]
                .into_iter()
                .flatten()
                .map(|(k, _)| k.as_str()),
        );
    }
    for (k, v) in r {
        if !used.contains(&k.as_str()) {
            let short = k
                .trim_start_matches("anthropic-ratelimit-")
                .trim_start_matches("x-ratelimit-");
            out.push(format!("{short} {v}"));
        }
    }
    out
}

/// The opened session: its model, the conversation tree and the turns pane.
#[derive(Debug)]
pub struct OpenSession {
    pub session: Arc<Session>,
    /// Conversations in tree order (each subagent under the conversation
    /// that called it) with their depth.
    pub tree: Vec<(usize, usize)>,
    /// Selected row of the tree.
    pub tree_pos: usize,
    /// Selected turn of the selected conversation.
    pub turn: usize,
    /// First turn the pane shows.
    pub top: usize,
    /// trace id → (conversation, turn).
    places: HashMap<Uuid, (usize, usize)>,
    blocks: HashMap<Uuid, Vec<TurnLine>>,
    /// The rate-limit panel.
    pub limits: Limits,
}

impl OpenSession {
    fn new(session: Arc<Session>, flows: &FlowList) -> Self {
        let mut open = Self {
            tree: tree(&session),
            places: places(&session),
            limits: Limits::of(&session, flows),
            session,
            tree_pos: 0,
            turn: 0,
            top: 0,
            blocks: HashMap::new(),
        };
        open.turn = open
            .conversation()
            .map_or(0, |c| c.requests.len().saturating_sub(1));
        open
    }

    /// A new model of the same session (a flow joined): keep the selection.
    fn replace(&mut self, session: Arc<Session>, flows: &FlowList) {
        let conv = self.tree.get(self.tree_pos).map(|(c, _)| *c);
        let follow = self
            .conversation()
            .is_some_and(|c| self.turn + 1 >= c.requests.len());
        self.tree = tree(&session);
        let places = places(&session);
        // Keep the parsed lines of every turn the new model did not change.
        let (old, old_places) = (Arc::clone(&self.session), std::mem::take(&mut self.places));
        self.blocks.retain(|id, _| {
            let before = turn_at(&old, &old_places, id);
            before.is_some() && before == turn_at(&session, &places, id)
        });
        self.places = places;
        self.limits = Limits::of(&session, flows);
        self.session = session;
        self.tree_pos = conv
            .and_then(|c| self.tree.iter().position(|(x, _)| *x == c))
            .unwrap_or(0);
        let n = self.conversation().map_or(0, |c| c.requests.len());
        self.turn = if follow {
            n.saturating_sub(1)
        } else {
            self.turn.min(n.saturating_sub(1))
        };
    }

    /// The selected conversation.
    pub fn conversation(&self) -> Option<&Conversation> {
        let (c, _) = self.tree.get(self.tree_pos)?;
        self.session.conversations.get(*c)
    }

    /// The selected turn.
    pub fn selected_turn(&self) -> Option<&Turn> {
        self.conversation()?.requests.get(self.turn)
    }

    /// The turn before the selected one in its conversation.
    pub fn previous_turn(&self) -> Option<&Turn> {
        self.conversation()?.requests.get(self.turn.checked_sub(1)?)
    }

    /// Where a request sits: (conversation, turn).
    pub fn place(&self, id: &Uuid) -> Option<(usize, usize)> {
        self.places.get(id).copied()
    }

    /// The lines of a turn of the selected conversation, when prepared.
    pub fn block(&self, turn: usize) -> Option<&[TurnLine]> {
        let t = self.conversation()?.requests.get(turn)?;
        self.blocks.get(&t.trace_id).map(Vec::as_slice)
    }

    /// Select another turn (by `delta`) of the selected conversation.
    pub fn step_turn(&mut self, delta: isize) {
        let last = self
            .conversation()
            .map_or(0, |c| c.requests.len().saturating_sub(1));
        self.turn = self.turn.saturating_add_signed(delta).min(last);
    }

    /// Select the next (or previous) conversation of the tree, at its first turn.
    pub fn cycle_conversation(&mut self, forward: bool) {
        let n = self.tree.len().max(1);
        self.tree_pos = if forward {
            (self.tree_pos + 1) % n
        } else {
            (self.tree_pos + n - 1) % n
        };
        self.turn = 0;
        self.top = 0;
    }

    /// Before a frame whose turns pane is `rows` high: parse the blocks that
    /// come on screen and scroll so the selected turn shows whole.
    pub fn prepare(&mut self, flows: &FlowList, rows: usize) {
        let Some(conv) = self.conversation() else {
            return;
        };
        let conv_id = conv.conversation_id;
        let n = conv.requests.len();
        if n == 0 {
            return;
        }
        self.turn = self.turn.min(n - 1);
        self.top = self.top.min(self.turn);
        if self.blocks.len() > MAX_BLOCKS {
            self.blocks.clear();
        }
        let rows = rows.max(1);
        self.ensure(flows, conv_id, self.turn);
        // Move the top down until the selected turn fits below it.
        loop {
            let mut used = 0;
            for t in self.top..=self.turn {
                self.ensure(flows, conv_id, t);
                used += self.height(conv_id, t);
            }
            if used <= rows || self.top == self.turn {
                break;
            }
            self.top += 1;
        }
        // Parse what fills the rest of the pane.
        let mut used = 0;
        let mut t = self.top;
        while t < n && used < rows {
            self.ensure(flows, conv_id, t);
            used += self.height(conv_id, t);
            t += 1;
        }
    }

    fn height(&self, conv: usize, turn: usize) -> usize {
        self.session.conversations[conv]
            .requests
            .get(turn)
            .and_then(|t| self.blocks.get(&t.trace_id))
            .map_or(1, Vec::len)
    }

    fn ensure(&mut self, flows: &FlowList, conv: usize, turn: usize) {
        let Some(t) = self.session.conversations[conv].requests.get(turn) else {
            return;
        };
        if self.blocks.contains_key(&t.trace_id) {
            return;
        }
        let lines = block(t, flows.entry(&t.trace_id), &self.places);
        self.blocks.insert(t.trace_id, lines);
    }
}

fn turn_at<'s>(
    s: &'s Session,
    places: &HashMap<Uuid, (usize, usize)>,
    id: &Uuid,
) -> Option<&'s Turn> {
    let &(c, i) = places.get(id)?;
    s.conversations.get(c)?.requests.get(i)
}

fn tree(s: &Session) -> Vec<(usize, usize)> {
    let parent = |c: &Conversation| c.parent.as_ref().map(|p| p.conversation_id);
    let mut out = Vec::with_capacity(s.conversations.len());
    let mut seen = vec![false; s.conversations.len()];
    fn walk(
        s: &Session,
        c: usize,
        depth: usize,
        out: &mut Vec<(usize, usize)>,
        seen: &mut [bool],
        parent: &dyn Fn(&Conversation) -> Option<usize>,
    ) {
        if std::mem::replace(&mut seen[c], true) {
            return;
        }
        out.push((c, depth));
        for child in &s.conversations {
            if parent(child) == Some(c) && child.conversation_id != c {
                walk(s, child.conversation_id, depth + 1, out, seen, parent);
            }
        }
    }
    for c in &s.conversations {
        // Roots: no parent, or a parent that is not in the session.
        let root = parent(c).is_none_or(|p| p >= s.conversations.len());
        if root {
            walk(s, c.conversation_id, 0, &mut out, &mut seen, &parent);
        }
    }
    // A cycle of parents (not expected) leaves some unseen: list them at the top level.
    for c in 0..s.conversations.len() {
        if !seen[c] {
            walk(s, c, 0, &mut out, &mut seen, &parent);
        }
    }
    out
}

fn places(s: &Session) -> HashMap<Uuid, (usize, usize)> {
    s.conversations
        .iter()
        .flat_map(|c| {
            c.requests
                .iter()
                .enumerate()
                .map(move |(i, t)| (t.trace_id, (c.conversation_id, i)))
        })
        .collect()
}

/// The first line of `s`, whitespace folded, at most [`TEXT_CHARS`]
/// characters, with `(+n lines)` when there is more.
pub fn one_line(s: &str) -> String {
    let mut lines = s.lines().map(str::trim).filter(|l| !l.is_empty());
    let first = lines.next().unwrap_or("");
    let rest = lines.count();
    let mut out: String = first.chars().take(TEXT_CHARS).collect();
    if first.chars().nth(TEXT_CHARS).is_some() {
        out.push('…');
    }
    if rest > 0 {
        let _ = write!(out, " (+{rest} lines)");
    }
    out
}

fn text_of(content: Option<&Value>) -> String {
    match content {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(parts)) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join("\n"),
        Some(other) => other.to_string(),
        None => String::new(),
    }
}

/// The user side of the new messages: text and tool results (the assistant
/// messages among them repeat the previous turn's response).
fn user_lines(messages: &[Value], out: &mut Vec<TurnLine>) {
    for m in messages {
        let role = m.get("role").and_then(Value::as_str).unwrap_or("");
        if role == "assistant" || role == "model" {
            continue;
        }
        match m.get("content").or_else(|| m.get("parts")) {
            Some(Value::String(s)) => out.push(TurnLine::User(one_line(s))),
            Some(Value::Array(blocks)) => {
                for b in blocks {
                    match b.get("type").and_then(Value::as_str) {
                        Some("tool_result") => out.push(TurnLine::ToolResult {
                            id: b
                                .get("tool_use_id")
                                .and_then(Value::as_str)
                                .unwrap_or("")
                                .to_string(),
                            text: one_line(&text_of(b.get("content"))),
                            error: b.get("is_error").and_then(Value::as_bool) == Some(true),
                        }),
                        Some("text") | None => {
                            let t = b.get("text").and_then(Value::as_str).unwrap_or("");
                            if !t.trim().is_empty() {
                                out.push(TurnLine::User(one_line(t)));
                            }
                        }
                        Some(other) => out.push(TurnLine::User(format!("[{other}]"))),
                    }
                }
            }
            _ => {}
        }
    }
}

/// Every line of one turn (see [`TurnLine`]).
fn block(t: &Turn, entry: Option<&Entry>, places: &HashMap<Uuid, (usize, usize)>) -> Vec<TurnLine> {
    let mut out = vec![TurnLine::Head];
    let c = &t.cache;
    if c.verdict.is_miss() {
        out.push(TurnLine::Miss);
        if let (Some(b), Some(a)) = (&c.before, &c.after) {
            out.push(TurnLine::Before(one_line(b)));
            out.push(TurnLine::After(one_line(a)));
        }
    }
    let analysis = entry.and_then(|e| e.llm.as_deref());
    if t.error {
        let mut why = match (
            t.status,
            entry.and_then(|e| e.flow.error_message.as_deref()),
        ) {
            (_, Some(m)) => m.to_string(),
            (Some(s), None) => format!("HTTP {s}"),
            (None, None) => "failed".to_string(),
        };
        if let Some(e) = analysis.and_then(|a| a.error.as_deref()) {
            let _ = write!(why, " · {e}");
        }
        out.push(TurnLine::Error(one_line(&why)));
    }
    let Some(e) = entry.filter(|e| !e.flow.request_body.is_empty()) else {
        out.push(TurnLine::Note(
            "bodies not in memory (over the TUI body budget): `ccproxy session ID` reads them from the database".into(),
        ));
        return out;
    };
    let mut text = Vec::new();
    let new = session::new_messages(&e.flow, t);
    if new.is_empty() {
        text.push(TurnLine::Note(
            "no new message (a retry of the same prompt)".into(),
        ));
    }
    user_lines(&new, &mut text);
    if let Some(a) = analysis {
        for b in crate::llm::reply(&e.flow, a.api).blocks {
            match b.kind {
                BlockKind::Text if !b.text.trim().is_empty() => {
                    text.push(TurnLine::Assistant(one_line(&b.text)));
                }
                BlockKind::Thinking if !b.text.trim().is_empty() => {
                    text.push(TurnLine::Thinking(one_line(&b.text)));
                }
                _ => {}
            }
        }
    }
    if text.len() > MAX_TEXT_LINES {
        let more = text.len() - (MAX_TEXT_LINES - 1);
        text.truncate(MAX_TEXT_LINES - 1);
        text.push(TurnLine::Note(format!("… {more} more lines")));
    }
    out.extend(text);
    for (index, link) in t.tool_calls.iter().enumerate() {
        let input = analysis
            .and_then(|a| a.tool_calls.iter().find(|c| c.id == link.id))
            .map(|c| one_line(&compact(&c.input)))
            .unwrap_or_default();
        out.push(TurnLine::Call {
            index,
            input,
            result_turn: link
                .result_trace_id
                .and_then(|id| places.get(&id))
                .map(|(_, turn)| *turn),
        });
    }
    out
}

/// `7m02s`, `42s`, `1h05m`.
pub fn span(secs: f64) -> String {
    let s = secs.max(0.0).round() as u64;
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
    }
}

/// The cache verdict of a turn in words: what happened, where the prefix
/// broke or why, and what the miss cost.
pub fn verdict_text(t: &Turn) -> String {
    let c = &t.cache;
    let mut out = c.verdict.as_str().to_string();
    match c.verdict {
        Verdict::Hit => {
            return format!("hit · read {} tokens from the cache", group(c.tokens_read));
        }
        Verdict::Uncached => return "uncached: no cache figures reported".to_string(),
        Verdict::PrefixChanged => {
            if let Some(d) = c.diverged_at {
                let _ = write!(out, " at {d}");
                if let Some(b) = c.diverged_block {
                    let _ = write!(out, " block {b}");
                }
            }
        }
        Verdict::TtlExpired => {
            if let Some(g) = c.gap_s {
                let _ = write!(
                    out,
                    ": {} since the previous response > TTL {}",
                    span(g),
                    span(c.ttl_s as f64)
                );
            }
        }
        Verdict::Unexplained => out.push_str(": same prefix, within the TTL"),
        Verdict::ModelChanged | Verdict::FirstRequest => {}
    }
    let _ = write!(out, " · wrote {} tokens", group(c.tokens_written));
    if let Some(m) = c.miss_cost_usd {
        let _ = write!(out, " · miss ${m:.4}");
    }
    out
}

/// A tool input as `key=value` pairs (strings unquoted), else its JSON.
fn compact(v: &Value) -> String {
    match v {
        Value::Object(o) => o
            .iter()
            .map(|(k, x)| match x {
                Value::String(s) => format!("{k}={s}"),
                other => format!("{k}={other}"),
            })
            .collect::<Vec<_>>()
            .join(" "),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::{Direction, Flow};
    use crate::llm::{Analysis, ToolCall, Usage};
    use serde_json::json;

    fn flow(n: i64, session: &str, body: &Value, read: u64, written: u64) -> Arc<Flow> {
        let mut f = Flow::new(
            Direction::Reverse,
            "POST",
            "http://x/v1/messages",
            "x",
            "/v1/messages",
        );
        f.id = Uuid::from_u128(1000 + n as u128);
        f.start_time = DateTime::<Utc>::UNIX_EPOCH + chrono::Duration::seconds(1_000_000 + n * 10);
        f.end_time = Some(f.start_time + chrono::Duration::seconds(2));
        f.status_code = Some(if n == 3 { 529 } else { 200 });
        f.request_body = serde_json::to_vec(body).unwrap_or_default().into();
        let mut a = Analysis {
            model: Some("claude-sonnet-4-5".into()),
            session_id: Some(session.into()),
            usage: Usage {
                input: Some(10),
                output: Some(20),
                cache_read: Some(read),
                cache_creation: Some(written),
                ..Usage::default()
            },
            tool_calls: vec![ToolCall {
                id: format!("toolu_{n}"),
                name: "Read".into(),
                input: json!({"file_path": "src/lib.rs"}),
            }],
            ..Analysis::default()
        };
        a.ratelimit.insert(
            "anthropic-ratelimit-requests-remaining".into(),
            (50 - n).to_string(),
        );
        a.ratelimit
            .insert("anthropic-ratelimit-requests-limit".into(), "50".into());
        f.llm = Some(Arc::new(a));
        Arc::new(f)
    }

    fn body(system: &str, messages: &[Value]) -> Value {
        json!({"model": "claude-sonnet-4-5", "system": system, "messages": messages})
    }

    fn user(t: &str) -> Value {
        json!({"role": "user", "content": [{"type": "text", "text": t}]})
    }

    fn list() -> FlowList {
        let mut l = FlowList::default();
        let m1 = vec![user("fix the bug")];
        let mut m2 = m1.clone();
        m2.push(json!({"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "Read", "input": {}}]}));
        m2.push(json!({"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "fn add() {}\nmore"}]}));
        l.complete(flow(1, "s1", &body("S", &m1), 0, 5000));
        l.complete(flow(2, "s1", &body("S", &m2), 5000, 100));
        l.complete(flow(5, "s2", &body("T", &[user("hello")]), 0, 0));
        l
    }

    #[test]
    fn refresh_builds_only_what_changed_and_keeps_the_selection() {
        let mut l = list();
        let mut s = Sessions::default();
        s.refresh(&l);
        assert_eq!(s.len(), 2);
        // Most recent first.
        assert_eq!(s.row(0).map(|r| r.session_id.as_str()), Some("s2"));
        let row = s.row(1).cloned().unwrap_or_else(|| panic!("s1"));
        assert_eq!(row.requests, 2);
        assert_eq!(row.tokens_in, 10 + 5000 + 10 + 5000 + 100);
        assert_eq!(row.misses, 1);
        s.step(1);
        let before = s.session("s2").cloned();
        l.complete(flow(7, "s1", &body("S", &[user("fix the bug")]), 0, 0));
        s.refresh(&l);
        assert!(
            s.session("s2")
                .zip(before.as_ref())
                .is_some_and(|(a, b)| Arc::ptr_eq(a, b)),
            "an untouched session is not rebuilt"
        );
        assert_eq!(s.session("s1").map(|x| x.totals.requests), Some(3));
        // s1 is now the most recent: the selection moved with it.
        assert_eq!(s.selected_row().map(|r| r.session_id.as_str()), Some("s1"));
        // A flow seen in flight first joins when it completes.
        let done = flow(8, "s1", &body("S", &[user("fix the bug")]), 0, 0);
        let mut pending = Flow::clone(&done);
        pending.end_time = None;
        pending.llm = None;
        l.upsert(Arc::new(pending));
        s.refresh(&l);
        assert_eq!(s.session("s1").map(|x| x.totals.requests), Some(3));
        l.complete(done);
        s.refresh(&l);
        assert_eq!(s.session("s1").map(|x| x.totals.requests), Some(4));
        let again = s.session("s1").cloned();
        s.refresh(&l);
        assert!(s
            .session("s1")
            .zip(again.as_ref())
            .is_some_and(|(a, b)| Arc::ptr_eq(a, b)));
        l.clear();
        s.refresh(&l);
        assert!(s.is_empty());
    }

    #[test]
    fn open_session_turns_show_what_is_new() {
        let l = list();
        let mut s = Sessions::default();
        s.refresh(&l);
        s.step(1);
        assert!(s.open_selected(&l));
        let open = s.open.as_mut().unwrap_or_else(|| panic!("open"));
        assert_eq!(open.turn, 1, "opens at the newest turn");
        open.prepare(&l, 40);
        let first = open.block(0).map(<[TurnLine]>::to_vec).unwrap_or_default();
        assert_eq!(first[0], TurnLine::Head);
        assert_eq!(first[1], TurnLine::Miss, "first_request is a miss");
        assert!(first.contains(&TurnLine::User("fix the bug".into())));
        let second = open.block(1).map(<[TurnLine]>::to_vec).unwrap_or_default();
        assert!(
            second.contains(&TurnLine::ToolResult {
                id: "toolu_1".into(),
                text: "fn add() {} (+1 lines)".into(),
                error: false
            }),
            "{second:?}"
        );
        assert!(
            !second.iter().any(|l| matches!(l, TurnLine::User(_))),
            "{second:?}"
        );
        assert!(second.iter().any(|l| matches!(
            l,
            TurnLine::Call { index: 0, input, .. } if input == "file_path=src/lib.rs"
        )));
        assert_eq!(
            open.previous_turn().map(|t| t.trace_id),
            Some(Uuid::from_u128(1001))
        );
        assert_eq!(open.limits.latest, ["requests 48/50"]);
        assert_eq!(open.limits.series, [49, 48]);
    }

    #[test]
    fn a_small_pane_scrolls_to_the_selected_turn() {
        let l = list();
        let mut s = Sessions::default();
        s.refresh(&l);
        s.step(1);
        s.open_selected(&l);
        let open = s.open.as_mut().unwrap_or_else(|| panic!("open"));
        open.prepare(&l, 3);
        assert_eq!(open.top, 1);
        open.step_turn(-5);
        open.prepare(&l, 3);
        assert_eq!((open.turn, open.top), (0, 0));
    }

    #[test]
    fn limits_count_overloads_and_follow_the_live_session() {
        let mut l = list();
        let mut s = Sessions::default();
        s.refresh(&l);
        s.step(1);
        s.open_selected(&l);
        l.complete(flow(3, "s1", &body("S", &[user("fix the bug")]), 0, 0));
        s.refresh(&l);
        let open = s.open.as_ref().unwrap_or_else(|| panic!("open"));
        assert_eq!(open.session.totals.requests, 3);
        assert_eq!(open.limits.overloaded, 1);
        assert_eq!(open.turn, 2, "the newest turn stays selected");
    }

    #[test]
    fn subagents_sit_under_their_parent() {
        use crate::llm::session::{Kind, Parent, Totals};
        let conv = |id: usize, parent: Option<usize>| Conversation {
            conversation_id: id,
            kind: if parent.is_some() {
                Kind::Subagent
            } else {
                Kind::Main
            },
            parent: parent.map(|p| Parent {
                conversation_id: p,
                trace_id: Uuid::nil(),
                tool_use_id: String::new(),
            }),
            api: crate::llm::Api::AnthropicMessages,
            requests: Vec::new(),
        };
        let s = Session {
            session_id: "x".into(),
            agent: None,
            first_seen: DateTime::<Utc>::UNIX_EPOCH,
            last_seen: DateTime::<Utc>::UNIX_EPOCH,
            conversations: vec![
                conv(0, None),
                conv(1, None),
                conv(2, Some(0)),
                conv(3, Some(2)),
            ],
            totals: Totals::default(),
        };
        assert_eq!(tree(&s), [(0, 0), (2, 1), (3, 2), (1, 0)]);
    }

    #[test]
    fn after_a_slow_refresh_the_paced_one_waits() {
        let mut l = list();
        let mut s = Sessions::default();
        s.refresh(&l);
        // As if the last refresh had just taken a minute.
        s.slow = Some((Instant::now(), Duration::from_secs(60)));
        l.complete(flow(7, "s1", &body("S", &[user("fix the bug")]), 0, 0));
        s.refresh_paced(&l);
        assert_eq!(s.session("s1").map(|x| x.totals.requests), Some(2));
        s.refresh(&l);
        assert_eq!(s.session("s1").map(|x| x.totals.requests), Some(3));
        assert!(s.slow.is_none(), "a quick refresh clears the pace");
    }

    #[test]
    fn verdicts_read_as_words() {
        let l = list();
        let mut s = Sessions::default();
        s.refresh(&l);
        let session = s.session("s1").cloned().unwrap_or_else(|| panic!("s1"));
        let turns = &session.conversations[0].requests;
        let first = verdict_text(&turns[0]);
        assert!(
            first.starts_with("first_request · wrote 5,000 tokens · miss $0.017"),
            "{first}"
        );
        assert_eq!(
            verdict_text(&turns[1]),
            "hit · read 5,000 tokens from the cache"
        );
        assert_eq!(span(437.0), "7m17s");
        assert_eq!(span(42.4), "42s");
        assert_eq!(span(3_900.0), "1h05m");
    }

    #[test]
    fn one_line_folds_and_counts() {
        assert_eq!(one_line("\n  a  \nb\nc"), "a (+2 lines)");
        assert_eq!(one_line(&"x".repeat(500)).chars().count(), TEXT_CHARS + 1);
    }
}
