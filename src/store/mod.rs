//! Durable storage: the batch writer into PostgreSQL, the disk spool, the
//! migrations, the managed local cluster and the read queries.

pub mod query;

use serde::{Deserialize, Serialize};

use crate::cli::DbCommand;
use crate::config::Config;

/// Where stored flows go right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum StorageState {
    /// Writing to PostgreSQL.
    Connected,
    /// The database is down or slow; rows go to the disk spool.
    Spooling,
    /// No database: memory only.
    #[default]
    Off,
}

/// Writer counters for `status` and the TUI header.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StoreStats {
    pub state: StorageState,
    /// Database in use, password removed (`None` when off).
    pub database: Option<String>,
    /// `managed` (local cluster), `url` (configured server) or `memory`.
    pub source: String,
    /// Rows committed to the table.
    pub written: u64,
    /// Rows waiting in the in-memory queue.
    pub queued: u64,
    /// Rows written to the spool since start.
    pub spooled: u64,
    /// Bytes currently held in the spool.
    pub spool_bytes: u64,
    /// Rows replayed from the spool into the database.
    pub replayed: u64,
    /// Rows lost because the spool was full.
    pub dropped: u64,
    /// Last error, if any.
    pub last_error: Option<String>,
}

/// `ccproxy db …`.
pub async fn command(_cfg: &Config, _cmd: &DbCommand) -> anyhow::Result<i32> {
    anyhow::bail!("ccproxy db is not built yet")
}

// ---- stand-in until the `store` branch lands (the merge takes theirs) ----

pub mod managed;

use std::sync::Arc;
use std::time::Duration;

use crate::flow::{Flow, FlowSink};

/// Errors opening the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Placeholder variant.
    #[error("{0}")]
    Other(String),
}

/// Stand-in store: memory only.
pub struct Store {
    sink: Arc<NullSink>,
}

struct NullSink;

impl FlowSink for NullSink {
    fn submit(&self, _flow: Arc<Flow>) {}
}

impl Store {
    /// Stand-in: memory only.
    pub async fn open(_cfg: &Config) -> Result<Store, StoreError> {
        Ok(Store {
            sink: Arc::new(NullSink),
        })
    }

    /// Where the hub sends completed flows.
    pub fn sink(&self) -> Arc<dyn FlowSink> {
        self.sink.clone()
    }

    /// Writer counters.
    pub fn stats(&self) -> StoreStats {
        StoreStats {
            source: "memory".into(),
            ..StoreStats::default()
        }
    }

    /// Flush and stop.
    pub async fn shutdown(self, _deadline: Duration) {}
}
