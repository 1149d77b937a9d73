//! Read side: flows back out of PostgreSQL for the TUI history and HAR export.

use chrono::{DateTime, Utc};

use crate::config::Config;
use crate::flow::Flow;

/// A read connection to the flows table.
pub struct Reader {
    _private: (),
}

impl Reader {
    /// Connect to the configured (or managed) database; `Ok(None)` when storage is off.
    pub async fn connect(_cfg: &Config) -> anyhow::Result<Option<Self>> {
        Ok(None)
    }

    /// Up to `limit` flows started strictly before `before` (or the newest), newest first.
    pub async fn page(
        &self,
        _before: Option<DateTime<Utc>>,
        _limit: i64,
    ) -> anyhow::Result<Vec<Flow>> {
        Ok(Vec::new())
    }

    /// Up to `limit` flows started at or after `since` (all when `None`), oldest first.
    pub async fn since(
        &self,
        _since: Option<DateTime<Utc>>,
        _limit: i64,
    ) -> anyhow::Result<Vec<Flow>> {
        Ok(Vec::new())
    }
}
