//! The Flow (one captured exchange), the events that describe it as it
//! happens, and the FlowHub that fans them out to viewers and the store.
//!
//! Viewers subscribe to a `broadcast` channel: they may lag and skip, and the
//! lag is counted. The store gets completed flows through a [`FlowSink`],
//! which must never lose one (the storage layer spools on overflow). Nothing
//! here ever waits: the proxy calls into the hub on its hot path.
//!
//! `hub` fans events out; `filter` is the query language (TUI `/`, `export
//! --filter`); `har` turns flows into HAR 1.2; `history` is what a viewer needs
//! from stored flows, so it does not depend on the store.

pub mod analysis;
pub mod filter;
pub mod har;
pub mod history;
pub mod hub;
pub mod websocket;

use std::fmt;
use std::sync::Arc;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

pub use hub::{FlowHub, HubCounters, HubSnapshot, LiveReceiver, QuietReceiver};
pub use websocket::{WsFrom, WsMessage, WsOpcode};

/// Which listener saw the exchange.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// Client → reverse listener (port 4000) → gateway or provider.
    Reverse,
    /// Forward proxy (port 8081): absolute-form, CONNECT, origin-form.
    Forward,
}

impl Direction {
    /// The lowercase name stored in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Reverse => "reverse",
            Self::Forward => "forward",
        }
    }
}

/// The seed's classification: llm → mcp → other (localhost) → web.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TrafficType {
    Llm,
    Mcp,
    Web,
    Other,
}

impl TrafficType {
    /// All types, in display order.
    pub const ALL: [Self; 4] = [Self::Llm, Self::Mcp, Self::Web, Self::Other];

    /// The lowercase name stored in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Llm => "llm",
            Self::Mcp => "mcp",
            Self::Web => "web",
            Self::Other => "other",
        }
    }

    /// Parse the stored name.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == s)
    }
}

impl fmt::Display for TrafficType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why an exchange failed (stored in `error_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// TCP connect refused or unreachable.
    Connect,
    /// Name resolution failed.
    Dns,
    /// Upstream TLS handshake or certificate verification failed.
    Tls,
    /// Upstream did not answer in time.
    Timeout,
    /// Upstream reset or closed the connection mid-exchange.
    Reset,
    /// Malformed HTTP from either side.
    Protocol,
    /// The client went away before the exchange finished.
    ClientAborted,
}

impl ErrorKind {
    /// The snake-case name stored in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Connect => "connect",
            Self::Dns => "dns",
            Self::Tls => "tls",
            Self::Timeout => "timeout",
            Self::Reset => "reset",
            Self::Protocol => "protocol",
            Self::ClientAborted => "client_aborted",
        }
    }

    /// Parse the stored name.
    pub fn parse(s: &str) -> Option<Self> {
        [
            Self::Connect,
            Self::Dns,
            Self::Tls,
            Self::Timeout,
            Self::Reset,
            Self::Protocol,
            Self::ClientAborted,
        ]
        .into_iter()
        .find(|k| k.as_str() == s)
    }
}

/// `b` as text, invalid UTF-8 replaced by U+FFFD. Valid input (nearly all
/// of it) is checked by `str::from_utf8`, several times faster than
/// `String::from_utf8_lossy`'s chunked decoder, which then only runs on the rest.
pub fn lossy(b: &[u8]) -> std::borrow::Cow<'_, str> {
    match std::str::from_utf8(b) {
        Ok(s) => std::borrow::Cow::Borrowed(s),
        Err(_) => String::from_utf8_lossy(b),
    }
}

/// Header list in wire order; names lowercase, values lossy UTF-8, secrets
/// already redacted (see `capture::redact`).
pub type Headers = Vec<(String, String)>;

/// One captured exchange: everything the seed's table needs, plus direction,
/// session id and time to first byte.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Flow {
    /// `trace_id`.
    pub id: Uuid,
    pub direction: Direction,
    pub method: String,
    /// Full URL (`scheme://host[:port]/path?query`).
    pub url: String,
    pub host: String,
    /// Path with query.
    pub path: String,
    /// e.g. `HTTP/1.1`, `HTTP/2.0` (client side).
    pub http_version: String,
    pub request_headers: Headers,
    /// Captured request body: content-decoded, cut at `max_body_size`.
    #[serde(with = "b64")]
    pub request_body: Bytes,
    /// Full size of the request body as it crossed the wire.
    pub request_body_size: u64,
    pub request_content_type: Option<String>,
    /// `None` until the response head arrives (or when the exchange failed first).
    pub status_code: Option<u16>,
    pub response_headers: Headers,
    /// Captured response body: content-decoded, cut at `max_body_size`.
    #[serde(with = "b64")]
    pub response_body: Bytes,
    /// Full size of the response body as it crossed the wire.
    pub response_body_size: u64,
    pub response_content_type: Option<String>,
    pub start_time: DateTime<Utc>,
    /// `None` while in flight.
    pub end_time: Option<DateTime<Utc>>,
    pub duration_ms: Option<f64>,
    /// Time from request start to the first response byte (head).
    pub ttfb_ms: Option<f64>,
    pub client_ip: Option<String>,
    pub server_ip: Option<String>,
    pub server_port: Option<u16>,
    pub is_https: bool,
    pub error_message: Option<String>,
    pub error_type: Option<ErrorKind>,
    pub traffic_type: TrafficType,
    /// From the `x-claude-code-session-id` request header; joins the two legs of one call.
    pub session_id: Option<String>,
    /// Who captured it (`capture_host`, `capture_user`): the engine's
    /// identity for live flows, the row's for stored ones.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capture_host: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capture_user: Option<String>,
    /// What the exchange means (API, usage, cost, TTFT, tools…), set once by
    /// the analysis stage when the flow completes; `None` for non-LLM/MCP
    /// traffic or before completion.
    #[serde(default)]
    pub llm: Option<Arc<analysis::Analysis>>,
    /// Arrival times of the first response frames (at most `llm::MAX_FRAMES`,
    /// which the proxy enforces),
    /// for the time to the first token.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub response_frames: Vec<analysis::FrameTime>,
    /// A WebSocket flow (status 101): its messages, both directions, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ws_messages: Vec<WsMessage>,
}

/// The identity new flows are stamped with (set once by the store at start).
static CAPTURE_IDENTITY: std::sync::RwLock<Option<(String, String)>> = std::sync::RwLock::new(None);

/// Stamp flows created from now on with this `capture_host` / `capture_user`.
pub fn set_capture_identity(host: &str, user: &str) {
    if let Ok(mut id) = CAPTURE_IDENTITY.write() {
        *id = Some((host.to_string(), user.to_string()));
    }
}

fn capture_identity() -> (Option<String>, Option<String>) {
    match CAPTURE_IDENTITY.read().ok().and_then(|id| id.clone()) {
        Some((h, u)) => (Some(h), Some(u)),
        None => (None, None),
    }
}

impl Flow {
    /// A new in-flight flow with the request line filled in; everything else empty.
    pub fn new(direction: Direction, method: &str, url: &str, host: &str, path: &str) -> Self {
        let (capture_host, capture_user) = capture_identity();
        Self {
            id: Uuid::now_v7(),
            direction,
            method: method.to_string(),
            url: url.to_string(),
            host: host.to_string(),
            path: path.to_string(),
            http_version: "HTTP/1.1".into(),
            request_headers: Vec::new(),
            request_body: Bytes::new(),
            request_body_size: 0,
            request_content_type: None,
            status_code: None,
            response_headers: Vec::new(),
            response_body: Bytes::new(),
            response_body_size: 0,
            response_content_type: None,
            start_time: Utc::now(),
            end_time: None,
            duration_ms: None,
            ttfb_ms: None,
            client_ip: None,
            server_ip: None,
            server_port: None,
            is_https: false,
            error_message: None,
            error_type: None,
            traffic_type: TrafficType::Other,
            session_id: None,
            capture_host,
            capture_user,
            llm: None,
            response_frames: Vec::new(),
            ws_messages: Vec::new(),
        }
    }

    /// True once the exchange has ended (completed or failed).
    pub fn is_complete(&self) -> bool {
        self.end_time.is_some()
    }

    /// First value of a (lowercase) request header.
    pub fn request_header(&self, name: &str) -> Option<&str> {
        header(&self.request_headers, name)
    }

    /// First value of a (lowercase) response header.
    pub fn response_header(&self, name: &str) -> Option<&str> {
        header(&self.response_headers, name)
    }
}

/// First value of a header by lowercase name.
pub fn header<'a>(headers: &'a Headers, name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// What viewers see, in order, for each exchange.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum FlowEvent {
    /// Request head seen; the flow is pending (no response yet).
    Started { flow: Arc<Flow> },
    /// Response head arrived (status, headers, ttfb); body still streaming.
    Responded { flow: Arc<Flow> },
    /// The request body ended: the flow carries it (sent only while a live
    /// viewer watches), so the prompt shows while the answer streams.
    RequestBody { flow: Arc<Flow> },
    /// A slice of the response body as it arrived (only for identity-encoded
    /// bodies and only up to `max_body_size`), so a viewer can watch a stream.
    ResponseChunk {
        id: Uuid,
        #[serde(with = "b64")]
        data: Bytes,
    },
    /// The exchange ended, successfully or not: the final record.
    Completed { flow: Arc<Flow> },
}

impl FlowEvent {
    /// The flow this event is about.
    pub fn id(&self) -> Uuid {
        match self {
            Self::Started { flow }
            | Self::Responded { flow }
            | Self::RequestBody { flow }
            | Self::Completed { flow } => flow.id,
            Self::ResponseChunk { id, .. } => *id,
        }
    }
}

/// Consumer of completed flows for durable storage. Implementations must not
/// block and must not lose a flow (overflow goes to the disk spool).
pub trait FlowSink: Send + Sync + 'static {
    /// Hand over one completed flow.
    fn submit(&self, flow: Arc<Flow>);

    /// How many completed flows may wait for the hub's analysis thread before
    /// `completed` analyses on the caller's thread instead: they are in
    /// memory, outside the sink, so a sink with a loss budget counts them in.
    /// 0 when `submit` must run before the client gets the end of its
    /// response (`durability: spool-first`): the hub then completes every
    /// flow on the caller's thread, analysis included.
    fn stage_limit(&self) -> usize {
        hub::STAGE_MAX
    }
}

/// Bodies travel as base64 in JSON (control socket, fixtures).
mod b64 {
    use base64::Engine;
    use bytes::Bytes;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(b: &Bytes, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(b))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Bytes, D::Error> {
        let s = String::deserialize(d)?;
        base64::engine::general_purpose::STANDARD
            .decode(s)
            .map(Bytes::from)
            .map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn chunks_only_while_a_live_viewer_listens() {
        let hub = FlowHub::new(16);
        let mut quiet = hub.subscribe_quiet();
        assert!(!hub.wants_chunks());
        hub.response_chunk(Uuid::now_v7(), || Bytes::from_static(b"x"));
        let mut live = hub.subscribe();
        assert!(hub.wants_chunks());
        hub.response_chunk(Uuid::now_v7(), || Bytes::from_static(b"y"));
        assert!(matches!(
            &*live.recv().await.expect("chunk"),
            FlowEvent::ResponseChunk { data, .. } if data.as_ref() == b"y"
        ));
        drop(live);
        assert!(!hub.wants_chunks());
        // The quiet viewer got the chunk sent while a live one listened, not the first.
        assert!(matches!(
            &*quiet.rx.try_recv().expect("chunk"),
            FlowEvent::ResponseChunk { data, .. } if data.as_ref() == b"y"
        ));
        assert!(quiet.rx.try_recv().is_err());
    }

    /// With only quiet viewers, progress events are not published (so the
    /// proxy's next phase need not copy the flow) and completions still are.
    #[tokio::test]
    async fn progress_events_only_while_a_live_viewer_listens() {
        let hub = FlowHub::new(16);
        let mut quiet = hub.subscribe_quiet();
        let flow = Arc::new(Flow::new(Direction::Forward, "GET", "http://x/", "x", "/"));
        hub.started(Arc::clone(&flow));
        hub.responded(Arc::clone(&flow));
        hub.request_body(Arc::clone(&flow));
        assert_eq!(
            Arc::strong_count(&flow),
            1,
            "no snapshot held by the channel"
        );
        hub.completed(Arc::clone(&flow));
        assert!(matches!(
            &*quiet.rx.try_recv().expect("completed"),
            FlowEvent::Completed { .. }
        ));
        assert!(quiet.rx.try_recv().is_err());
        let mut live = hub.subscribe();
        hub.started(Arc::clone(&flow));
        assert!(matches!(
            &*live.recv().await.expect("started"),
            FlowEvent::Started { .. }
        ));
        assert!(matches!(
            &*quiet.rx.try_recv().expect("started"),
            FlowEvent::Started { .. }
        ));
        assert_eq!(hub.snapshot().started, 2);
    }

    #[test]
    fn flow_event_json_roundtrip() {
        let mut f = Flow::new(Direction::Reverse, "POST", "http://h/v1", "h", "/v1");
        f.response_body = Bytes::from_static(b"\x00\xffbinary");
        let ev = FlowEvent::Completed {
            flow: Arc::new(f.clone()),
        };
        let json = serde_json::to_string(&ev).expect("ser");
        let back: FlowEvent = serde_json::from_str(&json).expect("de");
        match back {
            FlowEvent::Completed { flow } => assert_eq!(*flow, f),
            other => panic!("unexpected {other:?}"),
        }
    }
}
