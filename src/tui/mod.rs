//! The terminal UI: live flows and keyboard-driven inspection.

use crate::cli::Cli;

/// `ccproxy tui`: attach to the running engine, or start one in-process.
pub async fn command(_cli: &Cli) -> anyhow::Result<i32> {
    anyhow::bail!("ccproxy tui is not built yet")
}

/// Stand-in until the `tui` branch lands (the merge takes theirs): headless.
pub async fn run_with_engine(
    _cfg: std::sync::Arc<crate::config::Config>,
    engine: crate::engine::Engine,
) -> anyhow::Result<i32> {
    crate::daemon::serve_until_signal(engine, true).await
}
