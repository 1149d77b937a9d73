//! Sessions: the flows of one agent session grouped into conversations (the
//! main agent and its subagents), each request a turn with only its new
//! messages, tool calls paired with their results across requests, and a
//! diagnosis of every prompt-cache miss (where the prefix broke, or why else).
//!
//! Pure: built from captured flows and their [`Analysis`]. Prompts are
//! compared through one hash per block (tools, system, each message) over
//! its bytes without the `cache_control` breakpoints; the blocks are found by
//! [`super::span`] without building JSON values, and a turn's body is only
//! scanned past what it shares with the previous turn's.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use super::span::{self, Spans};
use super::{Analysis, Api, PriceTable};
use crate::flow::Flow;

/// Default prompt-cache lifetime (Anthropic): 5 minutes.
pub const TTL_DEFAULT_S: u64 = 300;
/// Extended prompt-cache lifetime: 1 hour.
pub const TTL_EXTENDED_S: u64 = 3600;
/// The `anthropic-beta` value that turns on the 1-hour TTL.
pub const EXTENDED_TTL_BETA: &str = "extended-cache-ttl-2025-04-11";
/// Characters of each side kept in a divergence excerpt.
pub const EXCERPT_CHARS: usize = 120;

/// One captured exchange and its analysis: the input of [`build`].
#[derive(Debug, Clone, Copy)]
pub struct Exchange<'a> {
    pub flow: &'a Flow,
    pub analysis: &'a Analysis,
}

/// The model of one agent session.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Session {
    pub session_id: String,
    /// The client program (`claude-code 1.0.x`), from the first request that names one.
    pub agent: Option<String>,
    pub first_seen: DateTime<Utc>,
    pub last_seen: DateTime<Utc>,
    /// Main agent first, then subagents and side calls in order of appearance.
    pub conversations: Vec<Conversation>,
    pub totals: Totals,
}

/// Sums over every request of a session.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct Totals {
    pub requests: u64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cache_read_tokens: u64,
    pub cache_creation_tokens: u64,
    /// Sum of the priced requests (unpriced ones count 0).
    pub cost_usd: f64,
    /// Requests with an HTTP status ≥ 400, a transport error or an API error.
    pub errors: u64,
    /// Sum of the priced cache misses.
    pub miss_cost_usd: f64,
}

impl Totals {
    /// `cache_read ÷ (input + cache_read + cache_creation)`; 0 without input.
    pub fn cache_hit_ratio(&self) -> f64 {
        let all = self.input_tokens + self.cache_read_tokens + self.cache_creation_tokens;
        if all == 0 {
            0.0
        } else {
            self.cache_read_tokens as f64 / all as f64
        }
    }
}

/// Main agent or subagent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Main,
    Subagent,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Main => "main",
            Self::Subagent => "subagent",
        }
    }
}

/// The request whose response opened a subagent (its `Task` / `Agent` call).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Parent {
    /// Conversation holding the calling request.
    pub conversation_id: usize,
    pub trace_id: Uuid,
    /// The `tool_use.id` of the call.
    pub tool_use_id: String,
}

/// One conversation: requests sharing a system prompt or first message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Conversation {
    /// Index in [`Session::conversations`].
    pub conversation_id: usize,
    pub kind: Kind,
    /// For a subagent: the call that opened it, when found.
    pub parent: Option<Parent>,
    pub api: Api,
    pub requests: Vec<Turn>,
}

/// One request of a conversation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Turn {
    /// Index of the exchange in the slice given to [`build`].
    pub index: usize,
    pub trace_id: Uuid,
    pub start_time: DateTime<Utc>,
    pub end_time: Option<DateTime<Utc>>,
    pub model: Option<String>,
    pub status: Option<u16>,
    /// The request failed (status ≥ 400, transport or API error).
    pub error: bool,
    /// Messages in the request.
    pub message_count: usize,
    /// Index of the first message beyond the previous request's prefix.
    pub first_new: usize,
    /// How many messages are new (`message_count - first_new`).
    pub new_messages: usize,
    /// Tool calls of the response, each with the request that carried its result.
    pub tool_calls: Vec<ToolLink>,
    pub usage: super::Usage,
    pub cost_usd: Option<f64>,
    pub cache: CacheDiag,
}

/// A tool call and where its result went.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolLink {
    pub id: String,
    pub name: String,
    /// The request carrying the `tool_result`, when seen.
    pub result_trace_id: Option<Uuid>,
    /// How long the tool ran on the client: this response's end → that request's start.
    pub run_ms: Option<f64>,
    /// The client marked the result as an error.
    pub is_error: bool,
}

/// Where a request's prompt first differs from the previous request's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Divergence {
    Tools,
    System,
    /// `messages[index]`, at content block `block` when the message has blocks.
    Message {
        index: usize,
        block: Option<usize>,
    },
}

impl std::fmt::Display for Divergence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Tools => f.write_str("tools"),
            Self::System => f.write_str("system"),
            Self::Message { index, .. } => write!(f, "messages[{index}]"),
        }
    }
}

impl Serialize for Divergence {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Divergence {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        match s.as_str() {
            "tools" => Ok(Self::Tools),
            "system" => Ok(Self::System),
            _ => s
                .strip_prefix("messages[")
                .and_then(|r| r.strip_suffix(']'))
                .and_then(|n| n.parse().ok())
                .map(|index| Self::Message { index, block: None })
                .ok_or_else(|| serde::de::Error::custom(format!("bad divergence {s:?}"))),
        }
    }
}

/// Why a request did or did not read its prefix from the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// It read its prefix from the cache.
    Hit,
    /// A miss: the prompt changed within the previously cached prefix.
    PrefixChanged,
    /// A miss: the gap since the previous request exceeded the cache TTL.
    TtlExpired,
    /// A miss: a different model than the previous request.
    ModelChanged,
    /// A miss on the first request of its conversation.
    FirstRequest,
    /// A miss with no cause found (same prefix, within the TTL).
    Unexplained,
    /// No cache activity reported (no breakpoints, or not an API with a cache).
    Uncached,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Hit => "hit",
            Self::PrefixChanged => "prefix_changed",
            Self::TtlExpired => "ttl_expired",
            Self::ModelChanged => "model_changed",
            Self::FirstRequest => "first_request",
            Self::Unexplained => "unexplained",
            Self::Uncached => "uncached",
        }
    }

    /// The verdicts that mean the cache was written instead of read.
    pub fn is_miss(self) -> bool {
        !matches!(self, Self::Hit | Self::Uncached)
    }
}

/// The cache diagnosis of one request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CacheDiag {
    pub verdict: Verdict,
    /// Where the prompt first differs from the previous request's (`None` for
    /// the first request, or when the previous prompt is a prefix of this one).
    pub diverged_at: Option<Divergence>,
    /// The content block within `messages[i]` where it differs.
    pub diverged_block: Option<usize>,
    /// Short excerpts of the previous and this request at the divergence.
    pub before: Option<String>,
    pub after: Option<String>,
    /// Tokens written to the cache (`cache_creation`).
    pub tokens_written: u64,
    /// Tokens read from the cache.
    pub tokens_read: u64,
    /// Priced cost of the miss: written × (write price − read price); `None`
    /// for a non-miss or an unpriced model.
    pub miss_cost_usd: Option<f64>,
    /// Seconds since the previous request of the conversation ended.
    pub gap_s: Option<f64>,
    /// The cache lifetime in force for this request.
    pub ttl_s: u64,
}

/// The comparable shape of one request's prompt: one hash per part (the
/// tools, the system prompt, each message) over its bytes without the
/// `cache_control` breakpoints, and where those parts are in the body.
#[derive(Debug, Default)]
struct Prompt<'a> {
    body: &'a [u8],
    spans: Option<Spans>,
    tools: u64,
    system: u64,
    messages: Vec<u64>,
    /// Per message: one of its breakpoints asks for the 1-hour TTL.
    message_ttl: Vec<bool>,
    tools_ttl: bool,
    system_ttl: bool,
    first: u64,
    extended_ttl: bool,
}

/// The hash of a part the request does not have.
const ABSENT: u64 = 0x9e37_79b9_7f4a_7c15;

fn header_ttl(flow: &Flow) -> bool {
    flow.request_headers
        .iter()
        .any(|(k, v)| k.eq_ignore_ascii_case("anthropic-beta") && v.contains(EXTENDED_TTL_BETA))
}

impl<'a> Prompt<'a> {
    /// The prompt of `flow`, reusing what its body shares with `base` (the
    /// previous request of the same conversation, when known).
    fn of(flow: &'a Flow, base: Option<&Prompt<'_>>) -> Self {
        let body: &'a [u8] = &flow.request_body;
        let header = header_ttl(flow);
        let scanned = match base.and_then(|p| Some((p, p.spans.as_ref()?))) {
            Some((p, s)) => span::rescan(p.body, s, body).map(|(s, r)| (s, Some((p, r)))),
            None => span::scan(body, span::REQUEST).map(|s| (s, None)),
        };
        let Some((spans, reuse)) = scanned else {
            let ttl = memchr::memmem::find(body, b"\"ttl\":\"1h\"").is_some();
            return Prompt {
                body,
                tools: ABSENT,
                system: ABSENT,
                first: ABSENT,
                extended_ttl: header || ttl,
                ..Prompt::default()
            };
        };
        let part = |r: &Option<std::ops::Range<usize>>| {
            r.as_ref()
                .map_or((ABSENT, false), |r| span::canonical_hash(&body[r.clone()]))
        };
        let (kept, base) = match reuse {
            Some((p, r)) => (r, Some(p)),
            None => (span::Reuse::default(), None),
        };
        let keep = |same: bool, theirs: Option<(u64, bool)>, r: &Option<std::ops::Range<usize>>| {
            if same {
                theirs.unwrap_or_else(|| part(r))
            } else {
                part(r)
            }
        };
        let (tools, tools_ttl) = keep(
            kept.tools,
            base.map(|p| (p.tools, p.tools_ttl)),
            &spans.tools,
        );
        let (system, system_ttl) = keep(
            kept.system,
            base.map(|p| (p.system, p.system_ttl)),
            &spans.system,
        );
        let n = spans.elements.len();
        let mut messages = Vec::with_capacity(n);
        let mut message_ttl = Vec::with_capacity(n);
        if let Some(p) = base {
            messages.extend_from_slice(&p.messages[..kept.elements]);
            message_ttl.extend_from_slice(&p.message_ttl[..kept.elements]);
        }
        for r in &spans.elements[messages.len()..] {
            let (h, ttl) = span::canonical_hash(&body[r.clone()]);
            messages.push(h);
            message_ttl.push(ttl);
        }
        // Some clients (OpenAI chat) put the system prompt in messages[0].
        let first = messages.first().copied().unwrap_or(ABSENT);
        Prompt {
            body,
            tools,
            system,
            first,
            extended_ttl: header || tools_ttl || system_ttl || message_ttl.iter().any(|&t| t),
            tools_ttl,
            system_ttl,
            messages,
            message_ttl,
            spans: Some(spans),
        }
    }

    fn bytes(&self, r: Option<&std::ops::Range<usize>>) -> Option<&'a [u8]> {
        r.and_then(|r| self.body.get(r.clone()))
    }

    fn message(&self, i: usize) -> Option<&'a [u8]> {
        self.bytes(self.spans.as_ref()?.elements.get(i))
    }

    /// The text of the first user message (what a subagent opens with).
    fn opening_text(&self) -> Option<String> {
        let spans = self.spans.as_ref()?;
        spans.elements.iter().find_map(|r| {
            let m: Value = serde_json::from_slice(&self.body[r.clone()]).ok()?;
            (m.get("role").and_then(Value::as_str) == Some("user")).then(|| message_text(&m))
        })
    }
}

/// The plain text of a message (its text blocks joined).
pub fn message_text(m: &Value) -> String {
    match m.get("content").or_else(|| m.get("parts")) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(blocks)) => blocks
            .iter()
            .filter_map(|b| b.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join("\n"),
        _ => String::new(),
    }
}

/// `s` from byte `from` (moved back to a character boundary, and to the
/// start of a JSON escape it would split), at most [`EXCERPT_CHARS`] long.
fn cut(s: &str, from: usize) -> String {
    let b = s.as_bytes();
    let mut start = from.min(s.len());
    while !s.is_char_boundary(start) {
        start -= 1;
    }
    for back in 1..=start.min(5) {
        let p = start - back;
        if b[p] == b'\\' {
            let len = if b.get(p + 1) == Some(&b'u') { 6 } else { 2 };
            if !span::escaped(b, p) && p + len > start {
                start = p;
            }
            break;
        }
    }
    s[start..].chars().take(EXCERPT_CHARS).collect()
}

/// Excerpts of both sides (without their breakpoints) from a little before
/// their first differing byte.
fn excerpts(a: Option<&[u8]>, b: Option<&[u8]>) -> (String, String) {
    let text = |v: Option<&[u8]>| {
        v.map_or_else(
            || "(none)".to_string(),
            |v| String::from_utf8_lossy(&span::canonical_bytes(v)).into_owned(),
        )
    };
    let (a, b) = (text(a), text(b));
    let at = span::common_prefix(a.as_bytes(), b.as_bytes());
    let from = at.saturating_sub(24);
    (cut(&a, from), cut(&b, from))
}

/// The content blocks of a message's bytes.
fn blocks(m: &[u8]) -> Option<Vec<&[u8]>> {
    let s = span::scan(m, span::MESSAGE)?;
    s.open?;
    Some(s.elements.into_iter().map(|r| &m[r]).collect())
}

/// Where `cur` first differs from `prev`, with both excerpts.
fn diverge(prev: &Prompt<'_>, cur: &Prompt<'_>) -> Option<(Divergence, String, String)> {
    let (ps, cs) = (prev.spans.as_ref(), cur.spans.as_ref());
    if prev.tools != cur.tools {
        let (a, b) = excerpts(
            prev.bytes(ps.and_then(|s| s.tools.as_ref())),
            cur.bytes(cs.and_then(|s| s.tools.as_ref())),
        );
        return Some((Divergence::Tools, a, b));
    }
    if prev.system != cur.system {
        let (a, b) = excerpts(
            prev.bytes(ps.and_then(|s| s.system.as_ref())),
            cur.bytes(cs.and_then(|s| s.system.as_ref())),
        );
        return Some((Divergence::System, a, b));
    }
    let i = prev
        .messages
        .iter()
        .zip(&cur.messages)
        .position(|(a, b)| a != b)?;
    let (pm, cm) = (prev.message(i), cur.message(i));
    let (pb, cb) = (pm.and_then(blocks), cm.and_then(blocks));
    let block = match (&pb, &cb) {
        (Some(a), Some(b)) => Some(
            a.iter()
                .zip(b)
                .position(|(x, y)| span::canonical_hash(x).0 != span::canonical_hash(y).0)
                .unwrap_or_else(|| a.len().min(b.len())),
        ),
        _ => None,
    };
    let (a, b) = match block {
        Some(j) => excerpts(
            pb.as_ref().and_then(|v| v.get(j).copied()),
            cb.as_ref().and_then(|v| v.get(j).copied()),
        ),
        None => excerpts(pm, cm),
    };
    Some((Divergence::Message { index: i, block }, a, b))
}

fn is_error(flow: &Flow, a: &Analysis) -> bool {
    flow.status_code.is_some_and(|s| s >= 400) || flow.error_message.is_some() || a.error.is_some()
}

fn miss_cost(prices: &PriceTable, model: Option<&str>, usage: &super::Usage) -> Option<f64> {
    let (_, entry) = prices.lookup(model?)?;
    let p = entry.price(usage.prompt_total());
    let write = p.cache_write.unwrap_or(p.input);
    let read = p.cache_read.unwrap_or(p.input);
    Some(usage.cache_creation.unwrap_or(0) as f64 * (write - read).max(0.0) / 1_000_000.0)
}

/// Per conversation while building: the last prompt and the identity keys.
struct Open<'a> {
    api: Api,
    first: u64,
    system: u64,
    tools: u64,
    last: Prompt<'a>,
    last_model: Option<String>,
    last_end: DateTime<Utc>,
}

/// Build the model of one session from its exchanges (any order).
pub fn build(session_id: &str, exchanges: &[Exchange<'_>], prices: &PriceTable) -> Session {
    /// How many open conversations a request's body is compared with to find
    /// the one it continues.
    const CANDIDATES: usize = 32;
    let mut order: Vec<usize> = (0..exchanges.len()).collect();
    order.sort_by_key(|&i| (exchanges[i].flow.start_time, i));
    let mut conversations: Vec<Conversation> = Vec::new();
    let mut open: Vec<Open> = Vec::new();
    let mut totals = Totals::default();
    let mut agent = None;
    // tool_use id → (conversation, turn, response end)
    let mut calls: HashMap<String, (usize, usize, Option<DateTime<Utc>>)> = HashMap::new();
    // Task/Agent prompt → (conversation, trace id, tool_use id)
    let mut task_prompts: Vec<(String, usize, Uuid, String)> = Vec::new();
    let (mut first_seen, mut last_seen) = (None::<DateTime<Utc>>, None::<DateTime<Utc>>);

    for &i in &order {
        let Exchange { flow, analysis: a } = exchanges[i];
        // The conversation this request most likely continues: the one whose
        // last body shares the longest prefix with it.
        let base = open
            .iter()
            .rev()
            .take(CANDIDATES)
            .map(|o| {
                (
                    span::common_prefix(o.last.body, &flow.request_body),
                    &o.last,
                )
            })
            .max_by_key(|(n, _)| *n)
            .map(|(_, p)| p);
        let prompt = Prompt::of(flow, base);
        first_seen = Some(first_seen.map_or(flow.start_time, |t| t.min(flow.start_time)));
        let end = flow.end_time.unwrap_or(flow.start_time);
        last_seen = Some(last_seen.map_or(end, |t| t.max(end)));
        if agent.is_none() {
            agent = a.agent.as_ref().map(ToString::to_string);
        }
        // Join the latest conversation of the same API whose opening message
        // matches and that shares the system prompt or the tools (a mid-session
        // system change stays in its conversation; a title call does not).
        let found = open.iter().rposition(|o| {
            o.api == a.api
                && o.first == prompt.first
                && (o.system == prompt.system || o.tools == prompt.tools)
        });
        let usage = a.usage;
        let (written, read) = (
            usage.cache_creation.unwrap_or(0),
            usage.cache_read.unwrap_or(0),
        );
        let cached = written > 0 || read > 0;
        let miss = written > 0 && written >= read;
        let ttl_s = if prompt.extended_ttl {
            TTL_EXTENDED_S
        } else {
            TTL_DEFAULT_S
        };
        let mut diag = CacheDiag {
            verdict: Verdict::Uncached,
            diverged_at: None,
            diverged_block: None,
            before: None,
            after: None,
            tokens_written: written,
            tokens_read: read,
            miss_cost_usd: None,
            gap_s: None,
            ttl_s,
        };
        let model = a.model.clone().or_else(|| a.response_model.clone());
        let (conv, first_new) = if let Some(c) = found {
            let o = &open[c];
            let prefix = o
                .last
                .messages
                .iter()
                .zip(&prompt.messages)
                .take_while(|(x, y)| x == y)
                .count();
            let gap = (flow.start_time - o.last_end).num_milliseconds() as f64 / 1000.0;
            diag.gap_s = Some(gap.max(0.0));
            let div = diverge(&o.last, &prompt);
            let within = match div.as_ref().map(|d| d.0) {
                Some(Divergence::Tools | Divergence::System) => true,
                Some(Divergence::Message { index, .. }) => index < o.last.messages.len(),
                None => false,
            };
            if let Some((d, before, after)) = div {
                diag.diverged_at = Some(d);
                if let Divergence::Message { block, .. } = d {
                    diag.diverged_block = block;
                }
                diag.before = Some(before);
                diag.after = Some(after);
            }
            diag.verdict = if !miss {
                if cached {
                    Verdict::Hit
                } else {
                    Verdict::Uncached
                }
            } else if o.last_model.is_some() && model.is_some() && o.last_model != model {
                Verdict::ModelChanged
            } else if within {
                Verdict::PrefixChanged
            } else if gap > ttl_s as f64 {
                Verdict::TtlExpired
            } else {
                Verdict::Unexplained
            };
            (c, prefix)
        } else {
            let id = conversations.len();
            let kind = if conversations.iter().any(|c| c.kind == Kind::Main) {
                Kind::Subagent
            } else {
                Kind::Main
            };
            let parent = (kind == Kind::Subagent)
                .then(|| {
                    let text = prompt.opening_text()?;
                    let text = text.trim();
                    task_prompts
                        .iter()
                        .rev()
                        .find(|(p, ..)| !p.is_empty() && (text == p || text.contains(p.as_str())))
                        .map(|(_, c, t, u)| Parent {
                            conversation_id: *c,
                            trace_id: *t,
                            tool_use_id: u.clone(),
                        })
                })
                .flatten();
            conversations.push(Conversation {
                conversation_id: id,
                kind,
                parent,
                api: a.api,
                requests: Vec::new(),
            });
            open.push(Open {
                api: a.api,
                first: prompt.first,
                system: prompt.system,
                tools: prompt.tools,
                last: Prompt::default(),
                last_model: None,
                last_end: flow.start_time,
            });
            diag.verdict = if !cached {
                Verdict::Uncached
            } else if miss {
                Verdict::FirstRequest
            } else {
                Verdict::Hit
            };
            (id, 0)
        };
        if diag.verdict.is_miss() {
            diag.miss_cost_usd = miss_cost(prices, model.as_deref(), &usage);
            totals.miss_cost_usd += diag.miss_cost_usd.unwrap_or(0.0);
        }
        // Pair the results this request carries with earlier calls.
        for r in &a.tool_results {
            if let Some(&(c, t, end)) = calls.get(&r.tool_use_id) {
                if let Some(link) = conversations[c].requests[t]
                    .tool_calls
                    .iter_mut()
                    .find(|l| l.id == r.tool_use_id && l.result_trace_id.is_none())
                {
                    link.result_trace_id = Some(flow.id);
                    link.is_error = r.is_error;
                    link.run_ms = end.map(|e| {
                        ((flow.start_time - e).num_microseconds().unwrap_or(0) as f64 / 1000.0)
                            .max(0.0)
                    });
                }
            }
        }
        let turn_ix = conversations[conv].requests.len();
        for tc in &a.tool_calls {
            calls.insert(tc.id.clone(), (conv, turn_ix, flow.end_time));
            if matches!(tc.name.as_str(), "Task" | "Agent") {
                if let Some(p) = tc.input.get("prompt").and_then(Value::as_str) {
                    task_prompts.push((p.trim().to_string(), conv, flow.id, tc.id.clone()));
                }
            }
        }
        let error = is_error(flow, a);
        totals.requests += 1;
        totals.input_tokens += usage.input.unwrap_or(0);
        totals.output_tokens += usage.output.unwrap_or(0);
        totals.cache_read_tokens += read;
        totals.cache_creation_tokens += written;
        totals.cost_usd += a.cost_usd.unwrap_or(0.0);
        totals.errors += u64::from(error);
        let message_count = prompt.messages.len();
        conversations[conv].requests.push(Turn {
            index: i,
            trace_id: flow.id,
            start_time: flow.start_time,
            end_time: flow.end_time,
            model: model.clone(),
            status: flow.status_code,
            error,
            message_count,
            first_new: first_new.min(message_count),
            new_messages: message_count.saturating_sub(first_new),
            tool_calls: a
                .tool_calls
                .iter()
                .map(|tc| ToolLink {
                    id: tc.id.clone(),
                    name: tc.name.clone(),
                    result_trace_id: None,
                    run_ms: None,
                    is_error: false,
                })
                .collect(),
            usage,
            cost_usd: a.cost_usd,
            cache: diag,
        });
        let o = &mut open[conv];
        // Keep the previous prompt's parsed value only for the excerpts.
        o.last = prompt;
        o.last_model = model;
        o.last_end = end;
    }
    let now = Utc::now();
    Session {
        session_id: session_id.to_string(),
        agent,
        first_seen: first_seen.unwrap_or(now),
        last_seen: last_seen.unwrap_or(now),
        conversations,
        totals,
    }
}

/// Group exchanges by their analysis' session id and build each session,
/// most recent first. Exchanges without a session id are left out.
pub fn group(exchanges: &[Exchange<'_>], prices: &PriceTable) -> Vec<Session> {
    let mut by: HashMap<&str, Vec<Exchange<'_>>> = HashMap::new();
    for e in exchanges {
        if let Some(s) = e.analysis.session_id.as_deref() {
            by.entry(s).or_default().push(*e);
        }
    }
    let mut out: Vec<Session> = by
        .into_iter()
        .map(|(id, ex)| build(id, &ex, prices))
        .collect();
    out.sort_by(|a, b| {
        b.last_seen
            .cmp(&a.last_seen)
            .then(a.session_id.cmp(&b.session_id))
    });
    out
}

/// The new messages of a turn, parsed from its flow's request body.
pub fn new_messages(flow: &Flow, turn: &Turn) -> Vec<Value> {
    let body = &flow.request_body;
    span::scan(body, span::REQUEST)
        .map(|s| {
            s.elements
                .iter()
                .skip(turn.first_new)
                .filter_map(|r| serde_json::from_slice(&body[r.clone()]).ok())
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::Direction;
    use crate::llm::{ToolCall, ToolResultRef, Usage};
    use serde_json::json;

    struct Fx {
        flows: Vec<Flow>,
        analyses: Vec<Analysis>,
        t: DateTime<Utc>,
    }

    impl Fx {
        fn new() -> Self {
            Self {
                flows: Vec::new(),
                analyses: Vec::new(),
                t: DateTime::UNIX_EPOCH + chrono::Duration::days(20_000),
            }
        }

        /// One request: `after_s` after the previous one ended; lasts 2 s.
        #[allow(clippy::too_many_arguments)]
        fn push(
            &mut self,
            after_s: i64,
            system: &str,
            messages: &Value,
            read: u64,
            written: u64,
            calls: &[(&str, &str, Value)],
            results: &[&str],
        ) {
            let mut f = Flow::new(
                Direction::Reverse,
                "POST",
                "http://x/v1/messages",
                "x",
                "/v1/messages",
            );
            f.start_time = self.t + chrono::Duration::seconds(after_s);
            f.end_time = Some(f.start_time + chrono::Duration::seconds(2));
            self.t = f.start_time + chrono::Duration::seconds(2);
            f.status_code = Some(200);
            let body = json!({
                "model": "claude-sonnet-4-5",
                "system": [{"type": "text", "text": system, "cache_control": {"type": "ephemeral"}}],
                "tools": [{"name": "Read", "input_schema": {}}, {"name": "Task", "input_schema": {}, "cache_control": {"type": "ephemeral"}}],
                "messages": messages,
            });
            f.request_body = serde_json::to_vec(&body).unwrap_or_default().into();
            let a = Analysis {
                model: Some("claude-sonnet-4-5".into()),
                session_id: Some("s1".into()),
                usage: Usage {
                    input: Some(10),
                    output: Some(50),
                    cache_read: Some(read),
                    cache_creation: Some(written),
                    ..Usage::default()
                },
                tool_calls: calls
                    .iter()
                    .map(|(id, name, input)| ToolCall {
                        id: (*id).into(),
                        name: (*name).into(),
                        input: input.clone(),
                    })
                    .collect(),
                tool_results: results
                    .iter()
                    .map(|id| ToolResultRef {
                        tool_use_id: (*id).into(),
                        is_error: false,
                    })
                    .collect(),
                ..Analysis::default()
            };
            self.flows.push(f);
            self.analyses.push(a);
        }

        fn build(&self) -> Session {
            let ex: Vec<Exchange<'_>> = self
                .flows
                .iter()
                .zip(&self.analyses)
                .map(|(flow, analysis)| Exchange { flow, analysis })
                .collect();
            build("s1", &ex, &PriceTable::bundled())
        }
    }

    fn user(t: &str) -> Value {
        json!({"role": "user", "content": [{"type": "text", "text": t}]})
    }
    fn asst_tool(id: &str, name: &str) -> Value {
        json!({"role": "assistant", "content": [{"type": "tool_use", "id": id, "name": name, "input": {}}]})
    }
    fn result(id: &str) -> Value {
        json!({"role": "user", "content": [{"type": "tool_result", "tool_use_id": id, "content": "ok"}]})
    }

    fn claude_code() -> Fx {
        let mut fx = Fx::new();
        let m1 = vec![user("fix the bug")];
        fx.push(
            0,
            "You are Claude Code",
            &json!(m1),
            0,
            5000,
            &[("toolu_1", "Read", json!({}))],
            &[],
        );
        let mut m2 = m1.clone();
        m2.extend([asst_tool("toolu_1", "Read"), result("toolu_1")]);
        fx.push(
            3,
            "You are Claude Code",
            &json!(m2),
            5000,
            200,
            &[("toolu_2", "Task", json!({"prompt": "search the repo"}))],
            &["toolu_1"],
        );
        // Subagent: other system prompt, opened by the Task prompt.
        fx.push(
            1,
            "You are a search agent",
            &json!([user("search the repo")]),
            0,
            3000,
            &[],
            &[],
        );
        let mut m3 = m2.clone();
        m3.extend([asst_tool("toolu_2", "Task"), result("toolu_2")]);
        fx.push(
            1,
            "You are Claude Code",
            &json!(m3),
            5200,
            100,
            &[],
            &["toolu_2"],
        );
        // The system prompt changes: the whole prefix is written again.
        let mut m4 = m3.clone();
        m4.push(user("and now?"));
        fx.push(
            1,
            "You are Claude Code (date changed)",
            &json!(m4),
            0,
            5400,
            &[],
            &[],
        );
        // A gap beyond the 5 minute TTL.
        let mut m5 = m4.clone();
        m5.push(user("still there?"));
        fx.push(
            400,
            "You are Claude Code (date changed)",
            &json!(m5),
            0,
            5500,
            &[],
            &[],
        );
        fx
    }

    #[test]
    fn conversations_turns_and_tools() {
        let s = claude_code().build();
        assert_eq!(s.conversations.len(), 2);
        let main = &s.conversations[0];
        let sub = &s.conversations[1];
        assert_eq!(main.kind, Kind::Main);
        assert_eq!(sub.kind, Kind::Subagent);
        assert_eq!(main.requests.len(), 5);
        let parent = sub
            .parent
            .as_ref()
            .map(|p| (p.trace_id, p.tool_use_id.as_str()));
        assert_eq!(parent, Some((main.requests[1].trace_id, "toolu_2")));
        assert_eq!(main.requests[1].new_messages, 2);
        assert_eq!(main.requests[1].first_new, 1);
        let read = &main.requests[0].tool_calls[0];
        assert_eq!(read.result_trace_id, Some(main.requests[1].trace_id));
        assert_eq!(read.run_ms, Some(3000.0));
        assert_eq!(s.totals.requests, 6);
        assert_eq!(s.totals.cache_read_tokens, 10_200);
    }

    #[test]
    fn cache_verdicts() {
        let s = claude_code().build();
        let main = &s.conversations[0];
        let v: Vec<&str> = main
            .requests
            .iter()
            .map(|t| t.cache.verdict.as_str())
            .collect();
        assert_eq!(
            v,
            [
                "first_request",
                "hit",
                "hit",
                "prefix_changed",
                "ttl_expired"
            ]
        );
        let broken = &main.requests[3].cache;
        assert_eq!(broken.diverged_at, Some(Divergence::System));
        assert!(broken
            .after
            .as_deref()
            .is_some_and(|a| a.contains("date changed")));
        assert!(broken.miss_cost_usd.is_some_and(|c| c > 0.0));
        assert_eq!(main.requests[4].cache.diverged_at, None);
        assert_eq!(
            s.conversations[1].requests[0].cache.verdict,
            Verdict::FirstRequest
        );
        let json = serde_json::to_value(broken).unwrap_or_default();
        assert_eq!(json["diverged_at"], "system");
    }

    #[test]
    fn message_divergence_names_the_block() {
        let mut fx = Fx::new();
        let a = vec![user("one"), asst_tool("t1", "Read"), result("t1")];
        fx.push(0, "S", &json!(a), 0, 4000, &[], &[]);
        let mut b = a.clone();
        b[2] = json!({"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "changed"}]});
        fx.push(1, "S", &json!(b), 0, 4000, &[], &[]);
        let s = fx.build();
        let c = &s.conversations[0].requests[1].cache;
        assert_eq!(c.verdict, Verdict::PrefixChanged);
        assert_eq!(
            c.diverged_at,
            Some(Divergence::Message {
                index: 2,
                block: Some(0)
            })
        );
        assert_eq!(
            c.diverged_at.map(|d| d.to_string()).as_deref(),
            Some("messages[2]")
        );
    }

    #[test]
    fn extended_ttl_keeps_the_gap_a_hit_cause() {
        let mut fx = Fx::new();
        fx.push(0, "S", &json!([user("x")]), 0, 4000, &[], &[]);
        fx.push(600, "S", &json!([user("x"), user("y")]), 0, 4000, &[], &[]);
        fx.flows[1]
            .request_headers
            .push(("anthropic-beta".into(), EXTENDED_TTL_BETA.into()));
        let s = fx.build();
        let c = &s.conversations[0].requests[1].cache;
        assert_eq!(c.ttl_s, TTL_EXTENDED_S);
        assert_eq!(c.verdict, Verdict::Unexplained);
    }

    /// Claude Code marks the last block of the newest message as a cache
    /// breakpoint, so the mark moves every turn: that is not a prefix change.
    #[test]
    fn moving_breakpoints_are_not_a_prefix_change() {
        let marked = |t: &str| json!({"role": "user", "content": [{"type": "text", "text": t, "cache_control": {"type": "ephemeral", "ttl": "1h"}}]});
        let mut fx = Fx::new();
        fx.push(0, "S", &json!([marked("a")]), 0, 4000, &[], &[]);
        fx.push(
            1,
            "S",
            &json!([user("a"), user("b"), marked("c")]),
            4000,
            100,
            &[],
            &[],
        );
        // A miss on the same prefix, long after the 5-minute TTL but within the
        // 1-hour one a breakpoint asked for.
        fx.push(
            900,
            "S",
            &json!([user("a"), user("b"), user("c"), marked("d")]),
            100,
            4100,
            &[],
            &[],
        );
        let s = fx.build();
        let turns = &s.conversations[0].requests;
        assert_eq!(s.conversations.len(), 1);
        assert_eq!((turns[1].first_new, turns[1].new_messages), (1, 2));
        assert_eq!(turns[1].cache.verdict, Verdict::Hit);
        assert_eq!(turns[1].cache.diverged_at, None);
        assert_eq!(turns[2].cache.ttl_s, TTL_EXTENDED_S);
        assert_eq!(turns[2].cache.diverged_at, None);
        assert_eq!(turns[2].cache.verdict, Verdict::Unexplained);
    }

    #[test]
    fn excerpts_do_not_start_inside_an_escape() {
        let a = "{\"text\":\"line one\\nline two\\u00e9 and more text here ... A\"}";
        let b = "{\"text\":\"line one\\nline two\\u00e9 and more text here ... B\"}";
        let at = a.len() - 3;
        for from in at - 30..at {
            let (x, _) = excerpts(Some(a.as_bytes()), Some(b.as_bytes()));
            let cut_at = cut(a, from);
            assert!(
                !cut_at.starts_with('n') || !a[..from].ends_with('\\'),
                "{from}: {cut_at}"
            );
            for tail in ["u00e9", "00e9", "0e9", "e9 "] {
                assert!(!cut_at.starts_with(tail), "{from}: {cut_at}");
            }
            assert!(x.ends_with("A\"}"), "{x}");
        }
    }
}
