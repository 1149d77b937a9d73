//! The terminal UI: live flows and keyboard-driven inspection.

pub mod body;
pub mod filter;
pub mod sse;

use crate::cli::Cli;

/// `ccproxy tui`: attach to the running engine, or start one in-process.
pub async fn command(_cli: &Cli) -> anyhow::Result<i32> {
    anyhow::bail!("ccproxy tui is not built yet")
}
