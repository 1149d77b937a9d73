//! HAR 1.2 export of stored flows (`ccproxy export --har`, and the TUI's `w`).

use crate::cli::ExportArgs;
use crate::config::Config;

/// `ccproxy export --har FILE [--filter EXPR] [--since 1h]`.
pub async fn command(_cfg: &Config, _args: &ExportArgs) -> anyhow::Result<i32> {
    anyhow::bail!("ccproxy export is not built yet")
}
