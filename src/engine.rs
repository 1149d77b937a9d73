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

/// Which listeners an engine runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `start --mitm`: reverse on `litellm.port` → gateway (or providers), forward on `mitm.port`.
    Dual,
    /// `mitm start`: the forward listener only.
    Forward,
}

/// A running engine: listeners, hub, store writer, gateway child.
pub struct Engine {
    /// The hub every listener publishes into.
    pub hub: crate::flow::FlowHub,
}

impl Engine {
    /// Start everything for `mode`; returns once the listeners accept and storage is ready.
    pub async fn start(_cfg: Arc<crate::config::Config>, _mode: Mode) -> anyhow::Result<Self> {
        anyhow::bail!("the engine is not built yet")
    }

    /// A live feed for an in-process viewer.
    pub fn feed(&self) -> tokio::sync::mpsc::Receiver<Feed> {
        let (_tx, rx) = tokio::sync::mpsc::channel(1);
        rx
    }

    /// Current status document.
    pub fn status(&self) -> Option<EngineStatus> {
        None
    }

    /// Graceful shutdown: stop accepting, flush the store, stop children.
    pub async fn shutdown(self) {}
}

/// Attach to the running engine's control socket; `Ok(None)` when none runs.
pub async fn attach(
    _cfg: &crate::config::Config,
) -> anyhow::Result<Option<tokio::sync::mpsc::Receiver<Feed>>> {
    Ok(None)
}
