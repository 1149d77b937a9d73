//! Read side: flows back out of PostgreSQL for the TUI history and HAR export.

use chrono::{DateTime, Utc};
use tokio_postgres::Client;

use super::row::{from_row, select_list, TABLE};
use crate::config::Config;
use crate::flow::history::FlowHistory;
use crate::flow::Flow;

/// A read connection to the flows table.
pub struct Reader {
    client: Client,
}

impl Reader {
    /// Connect to the configured (or managed) database; `Ok(None)` when storage is off.
    pub async fn connect(cfg: &Config) -> anyhow::Result<Option<Self>> {
        let Some(target) = super::resolve(cfg).await? else {
            return Ok(None);
        };
        Ok(Some(Self::from_url(target.url()).await?))
    }

    /// A reader on a given database URL.
    pub async fn from_url(url: &str) -> anyhow::Result<Self> {
        use anyhow::Context as _;
        let client = super::connect(url)
            .await
            .with_context(|| format!("cannot read flows from {}", super::redact_url(url)))?;
        Ok(Self { client })
    }

    /// Up to `limit` flows started strictly before `before` (or the newest), newest first.
    pub async fn page(
        &self,
        before: Option<DateTime<Utc>>,
        limit: i64,
    ) -> anyhow::Result<Vec<Flow>> {
        let cols = select_list();
        let rows = match before {
            Some(t) => {
                self.client
                    .query(
                        &format!(
                            "SELECT {cols} FROM {TABLE} WHERE start_time < $1 \
                             ORDER BY start_time DESC LIMIT $2"
                        ),
                        &[&t.naive_utc(), &limit],
                    )
                    .await?
            }
            None => {
                self.client
                    .query(
                        &format!("SELECT {cols} FROM {TABLE} ORDER BY start_time DESC LIMIT $1"),
                        &[&limit],
                    )
                    .await?
            }
        };
        Ok(rows.iter().map(from_row).collect::<Result<_, _>>()?)
    }

    /// Up to `limit` flows started at or after `since` (all when `None`), oldest first.
    pub async fn since(
        &self,
        since: Option<DateTime<Utc>>,
        limit: i64,
    ) -> anyhow::Result<Vec<Flow>> {
        let cols = select_list();
        let rows = match since {
            Some(t) => {
                self.client
                    .query(
                        &format!(
                            "SELECT {cols} FROM {TABLE} WHERE start_time >= $1 \
                             ORDER BY start_time ASC LIMIT $2"
                        ),
                        &[&t.naive_utc(), &limit],
                    )
                    .await?
            }
            None => {
                self.client
                    .query(
                        &format!("SELECT {cols} FROM {TABLE} ORDER BY start_time ASC LIMIT $1"),
                        &[&limit],
                    )
                    .await?
            }
        };
        Ok(rows.iter().map(from_row).collect::<Result<_, _>>()?)
    }
}

/// Flows that carry a session id (bodies included), for `sessions` / `session`.
impl Reader {
    /// Up to `limit` flows with a session id started at or after `since`
    /// (all when `None`), oldest first; only `session` when it is given, only
    /// those captured on `capture_host` (case-insensitive) when it is given.
    pub async fn with_session(
        &self,
        since: Option<DateTime<Utc>>,
        session: Option<&str>,
        capture_host: Option<&str>,
        limit: i64,
    ) -> anyhow::Result<Vec<Flow>> {
        let cols = select_list();
        let since = since.map_or(DateTime::UNIX_EPOCH.naive_utc(), |t| t.naive_utc());
        let rows = self
            .client
            .query(
                &format!(
                    "SELECT {cols} FROM {TABLE} WHERE session_id IS NOT NULL \
                     AND start_time >= $1 AND ($2::TEXT IS NULL OR session_id = $2) \
                     AND ($4::TEXT IS NULL OR lower(capture_host) = lower($4)) \
                     ORDER BY start_time ASC LIMIT $3"
                ),
                &[&since, &session, &limit, &capture_host],
            )
            .await?;
        Ok(rows.iter().map(from_row).collect::<Result<_, _>>()?)
    }
}

/// The TUI's history pages come from here.
impl FlowHistory for Reader {
    fn page(
        &self,
        before: Option<DateTime<Utc>>,
        limit: usize,
    ) -> futures::future::BoxFuture<'_, Result<Vec<Flow>, String>> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        Box::pin(async move {
            Reader::page(self, before, limit)
                .await
                .map_err(|e| format!("{e:#}"))
        })
    }
}
