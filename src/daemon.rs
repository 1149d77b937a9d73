//! Process management: start (foreground or detached), stop, status, run,
//! pid files, logs and the control socket.

use crate::cli::{Cli, EngineArgs, LogsArgs, MitmCommand, RunArgs, StartArgs, StatusArgs};
use crate::config::Config;

/// `ccproxy start`.
pub async fn start(_cli: &Cli, _args: &StartArgs) -> anyhow::Result<i32> {
    anyhow::bail!("ccproxy start is not built yet")
}

/// `ccproxy stop`.
pub async fn stop(_cfg: &Config) -> anyhow::Result<i32> {
    anyhow::bail!("ccproxy stop is not built yet")
}

/// `ccproxy status` / `ccproxy mitm status`.
pub async fn status(_cfg: &Config, _args: &StatusArgs, _mitm_only: bool) -> anyhow::Result<i32> {
    anyhow::bail!("ccproxy status is not built yet")
}

/// `ccproxy run`.
pub async fn run_command(_cfg: &Config, _args: &RunArgs) -> anyhow::Result<i32> {
    anyhow::bail!("ccproxy run is not built yet")
}

/// `ccproxy mitm …`.
pub async fn mitm(_cli: &Cli, _cmd: &MitmCommand) -> anyhow::Result<i32> {
    anyhow::bail!("ccproxy mitm is not built yet")
}

/// `ccproxy logs`.
pub async fn logs(_cfg: &Config, _args: &LogsArgs) -> anyhow::Result<i32> {
    anyhow::bail!("ccproxy logs is not built yet")
}

/// The hidden engine process (detached daemon body).
pub async fn engine_main(_cli: &Cli, _args: &EngineArgs) -> anyhow::Result<i32> {
    anyhow::bail!("engine is not built yet")
}
