//! `ccproxy mitm start|stop|status`: the forward capture proxy alone.

use crate::cli::{Cli, EngineArgs, MitmCommand};
use crate::engine::Mode;

/// `ccproxy mitm …`.
pub async fn mitm(cli: &Cli, cmd: &MitmCommand) -> anyhow::Result<i32> {
    match cmd {
        MitmCommand::Start(a) => {
            let cfg = super::load_config(cli, a.port, a.upstream.clone())?;
            if a.detach {
                let engine_args = EngineArgs {
                    forward_only: true,
                    port: a.port,
                    upstream: a.upstream.clone(),
                    ..EngineArgs::default()
                };
                super::start::detach(cli, &cfg, &engine_args).await
            } else {
                super::start::foreground(cfg, Mode::Forward, a.headless).await
            }
        }
        MitmCommand::Stop => super::stop::stop_all(&super::config(cli)?, false).await,
        MitmCommand::Status(a) => super::status::status(&super::config(cli)?, a, true).await,
    }
}
