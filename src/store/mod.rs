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
