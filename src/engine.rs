//! One engine process: listeners, FlowHub, store writer, control socket, gateway child.

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

/// The `status --json` document (schema in README.md; keep it stable).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EngineStatus {
    /// Always 1 for this schema.
    pub schema: u32,
    /// Engine process id.
    pub pid: u32,
    /// `dual-gateway`, `dual-direct` or `forward`.
    pub mode: String,
    pub started_at: DateTime<Utc>,
    /// `host:port` of the forward listener.
    pub forward: Option<String>,
    /// `host:port` of the reverse listener.
    pub reverse: Option<String>,
    /// The gateway child, when one runs.
    pub gateway: Option<GatewayStatus>,
    pub storage: StoreStats,
    pub flows: HubSnapshot,
}

/// The LiteLLM (or stand-in) gateway child.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GatewayStatus {
    pub pid: u32,
    pub port: u16,
    pub command: Vec<String>,
}
