//! What a viewer needs from an engine, whether in-process or over the control
//! socket: the [`Feed`] items, the `status --json` document and the mode names.
//! Plain data: no I/O here, so the TUI can depend on it alone.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::flow::{FlowEvent, HubSnapshot};
use crate::store::StoreStats;

/// What a viewer (the TUI) receives, whether in-process or over the control socket.
#[derive(Debug, Clone)]
pub enum Feed {
    /// A flow event.
    Event(Arc<FlowEvent>),
    /// The viewer fell behind and missed this many events.
    Lagged(u64),
    /// Fresh engine status (sent about once a second).
    Status(Box<EngineStatus>),
}

/// The `status --json` document (schema in README.md; keep it stable: add
/// fields, never rename or remove them, and bump `schema` if a meaning changes).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EngineStatus {
    /// Always 1 for this schema.
    pub schema: u32,
    /// Engine process id.
    pub pid: u32,
    /// One of [`RunMode::as_str`]: `dual-gateway` (reverse → gateway child),
    /// `dual-direct` (reverse → `ccproxy.upstream` or the providers) or
    /// `forward` (`mitm start`).
    pub mode: String,
    /// When the engine started (RFC 3339, UTC).
    pub started_at: DateTime<Utc>,
    /// `host:port` of the forward listener.
    pub forward: Option<String>,
    /// `host:port` of the reverse listener.
    pub reverse: Option<String>,
    /// The gateway child, when one runs.
    pub gateway: Option<GatewayStatus>,
    /// The store writer: state (`connected`/`spooling`/`off`), source, queue and spool counters.
    pub storage: StoreStats,
    /// Flow counters since start: started, completed, in flight, errors, and completed by traffic type.
    pub flows: HubSnapshot,
    /// The OTLP span exporter, when `ccproxy.otel` / `OTEL_EXPORTER_OTLP_ENDPOINT` is set.
    #[serde(default)]
    pub otel: Option<crate::otel::OtelStats>,
}

/// The LiteLLM (or stand-in) gateway child.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GatewayStatus {
    /// Its process id (also its process group).
    pub pid: u32,
    /// The loopback port it listens on (chosen free at start).
    pub port: u16,
    /// The full command line it was started with.
    pub command: Vec<String>,
}

/// Which listeners an engine is asked to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `start --mitm`: reverse on `litellm.port` → gateway (or providers), forward on `mitm.port`.
    Dual,
    /// `mitm start`: the forward listener only.
    Forward,
}

/// What an engine runs once started: the one mode vocabulary, used in
/// `status`, `status --json`, the pid file and every message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunMode {
    /// [`Mode::Dual`] with a gateway child behind the reverse listener.
    DualGateway,
    /// [`Mode::Dual`] without one: reverse → `ccproxy.upstream` or the providers.
    DualDirect,
    /// [`Mode::Forward`].
    Forward,
}

impl RunMode {
    /// `mode` with or without a gateway command.
    pub fn of(mode: Mode, gateway: bool) -> Self {
        match (mode, gateway) {
            (Mode::Dual, true) => Self::DualGateway,
            (Mode::Dual, false) => Self::DualDirect,
            (Mode::Forward, _) => Self::Forward,
        }
    }

    /// `dual-gateway`, `dual-direct` or `forward`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::DualGateway => "dual-gateway",
            Self::DualDirect => "dual-direct",
            Self::Forward => "forward",
        }
    }
}

/// The storage state a viewer shows (re-exported so the TUI needs no `store` import).
pub use crate::store::StorageState;
