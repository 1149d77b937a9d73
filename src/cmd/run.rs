//! `ccproxy run [--] CMD…`: run a command with its traffic routed through the
//! running engine (DESIGN.md "`ccproxy run`"), forward signals, exit with its code.

use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;

use anyhow::Context as _;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tokio::signal::unix::{signal, SignalKind};

use super::ExitError;
use crate::cli::RunArgs;
use crate::config::Config;
use crate::engine::control;
use crate::engine::pidfile;
use crate::engine::EngineStatus;
use crate::home::{self, Home};
use crate::proxy::ca;

/// The shell convention: exit code, or 128 + signal number.
pub fn exit_code(status: ExitStatus) -> i32 {
    status
        .code()
        .or_else(|| status.signal().map(|s| 128 + s))
        .unwrap_or(1)
}

/// The running engine's status, or a note on stderr saying why the command runs unrouted.
async fn running_engine(cfg: &Config) -> Option<EngineStatus> {
    let home = Home::new(cfg);
    let pidfile::Liveness::Running(rec) = pidfile::check(&home.engine_lock()) else {
        eprintln!(
            "ccproxy: no engine is running, so this command runs without capture (start one with `ccproxy start --mitm -d`)"
        );
        return None;
    };
    if let Ok(Some(st)) = control::request_status(&home.socket()).await {
        return Some(st);
    }
    eprintln!(
        "ccproxy: the engine (pid {}) does not answer on its control socket, so this command runs without capture; see `ccproxy logs`",
        rec.pid
    );
    None
}

/// `ccproxy run`.
pub async fn run_command(cfg: &Config, args: &RunArgs) -> anyhow::Result<i32> {
    let Some((program, rest)) = args.command.split_first() else {
        return Err(
            ExitError::new(2, "ccproxy run needs a command: ccproxy run -- CMD ARGS…").into(),
        );
    };
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(rest);
    if let Some(st) = running_engine(cfg).await {
        let current = |k: &str| std::env::var(k).ok();
        cmd.envs(environment(cfg, &st, &current));
    }
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            eprintln!("ccproxy: {program}: command not found");
            return Ok(127);
        }
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            eprintln!("ccproxy: {program}: permission denied");
            return Ok(126);
        }
        Err(e) => return Err(e).with_context(|| format!("cannot run {program}")),
    };
    let pid = child
        .id()
        .map(|p| Pid::from_raw(p as i32))
        .context("the child has no pid")?;
    let mut int = signal(SignalKind::interrupt()).context("cannot watch SIGINT")?;
    let mut term = signal(SignalKind::terminate()).context("cannot watch SIGTERM")?;
    let mut hup = signal(SignalKind::hangup()).context("cannot watch SIGHUP")?;
    let mut quit = signal(SignalKind::quit()).context("cannot watch SIGQUIT")?;
    loop {
        let sig = tokio::select! {
            status = child.wait() => {
                return Ok(exit_code(status.context("cannot wait for the command")?));
            }
            _ = int.recv() => {
                // Ctrl-C at a terminal already reached the child (same foreground group).
                if terminal_delivers_to_us() { continue; }
                Signal::SIGINT
            }
            _ = term.recv() => Signal::SIGTERM,
            _ = hup.recv() => Signal::SIGHUP,
            _ = quit.recv() => {
                if terminal_delivers_to_us() { continue; }
                Signal::SIGQUIT
            }
        };
        let _ = kill(pid, sig);
    }
}

/// The variables `run` sets for an engine with status `st`
/// ([`home::client_env`]; the CA files are where that engine's CA put them).
pub fn environment(
    cfg: &Config,
    st: &EngineStatus,
    current: &dyn Fn(&str) -> Option<String>,
) -> Vec<(String, String)> {
    let Some(forward) = st.forward.as_deref().and_then(|a| a.parse().ok()) else {
        return Vec::new();
    };
    let reverse = st.reverse.as_deref().and_then(|a| a.parse().ok());
    let mut env = home::client_env(forward, reverse, &ca::locate(cfg), current);
    if let Some(token) = crate::engine::proxy_token(cfg) {
        home::add_proxy_token(&mut env, &token);
    }
    env
}

/// True when our process group is the terminal's foreground group, so keyboard
/// signals reach the child without our help.
fn terminal_delivers_to_us() -> bool {
    nix::unistd::tcgetpgrp(std::io::stdin()).is_ok_and(|fg| fg == nix::unistd::getpgrp())
}
