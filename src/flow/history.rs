//! Stored flows as a viewer needs them: pages going back in time. The TUI
//! holds an `Arc<dyn FlowHistory>` and never learns where the flows live (the
//! store implements it for its PostgreSQL reader).

use chrono::{DateTime, Utc};
use futures::future::BoxFuture;

use super::Flow;

/// Older flows, a page at a time.
pub trait FlowHistory: Send + Sync {
    /// Up to `limit` flows started strictly before `before` (the newest when
    /// `None`), newest first. The error is one line for the user.
    fn page(
        &self,
        before: Option<DateTime<Utc>>,
        limit: usize,
    ) -> BoxFuture<'_, Result<Vec<Flow>, String>>;
}
