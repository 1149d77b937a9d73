//! The hidden `__engine` command: the body of a detached engine (`start -d`,
//! `mitm start -d` re-exec themselves as it).

use std::sync::Arc;

use super::logging;
use crate::cli::{Cli, EngineArgs};
use crate::engine::{Engine, Mode};

/// The hidden engine process (detached daemon body).
pub async fn engine_main(cli: &Cli, args: &EngineArgs) -> anyhow::Result<i32> {
    // Its own session: no controlling terminal, immune to the shell's job control.
    let _ = nix::unistd::setsid();
    logging::to_stderr(false);
    let cfg = Arc::new(super::load_config(cli, args.port, args.upstream.clone())?);
    let mode = if args.forward_only {
        Mode::Forward
    } else {
        Mode::Dual
    };
    let engine = Engine::start(cfg, mode).await?;
    super::start::serve_until_signal(engine, true).await
}
