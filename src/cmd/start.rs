//! `ccproxy start`: the gateway alone, or with `--mitm` the dual-proxy
//! engine, in the foreground (TUI, or `--headless` with the flow log) or
//! detached (`-d`: re-exec as `__engine`, return once it answers).

use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use tokio::signal::unix::{signal, SignalKind};

use super::{flowlog, logging, ExitError};
use crate::cli::{Cli, EngineArgs, StartArgs};
use crate::config::Config;
use crate::engine::control;
use crate::engine::gateway;
use crate::engine::logtail;
use crate::engine::pidfile::{self, Liveness};
use crate::engine::{self, Engine, Mode};
use crate::home::Home;

/// How long `start -d` waits for the detached engine to report ready.
pub const DETACH_TIMEOUT: Duration = Duration::from_secs(120);

/// `ccproxy start`.
pub async fn start(cli: &Cli, args: &StartArgs) -> anyhow::Result<i32> {
    let cfg = super::config(cli)?;
    if !args.mitm {
        return start_gateway_alone(&cfg, args.detach).await;
    }
    let engine_args = EngineArgs {
        mitm: true,
        ..EngineArgs::default()
    };
    if args.detach {
        detach(cli, &cfg, &engine_args).await
    } else {
        foreground(cfg, Mode::Dual, args.headless).await
    }
}

/// An engine in this process: the TUI on it, or headless with the flow log.
pub async fn foreground(cfg: Config, mode: Mode, headless: bool) -> anyhow::Result<i32> {
    use std::io::IsTerminal;
    let cfg = Arc::new(cfg);
    let tui = !headless && std::io::stdout().is_terminal();
    if !tui {
        logging::to_stderr(std::io::stderr().is_terminal());
    }
    let _log = tui.then(|| logging::to_file(&Home::new(&cfg).engine_log()));
    let engine = Engine::start(Arc::clone(&cfg), mode).await?;
    if tui {
        super::tui::on_engine(cfg, engine).await
    } else {
        if let Some(st) = engine.status() {
            eprintln!("{}", super::status::summary(&st, &cfg));
        }
        serve_until_signal(engine, true).await
    }
}

/// Run an engine until SIGINT or SIGTERM, optionally with the one-line-per-flow log on stderr, then shut it down.
pub async fn serve_until_signal(engine: Engine, flow_log: bool) -> anyhow::Result<i32> {
    let mut term = signal(SignalKind::terminate()).context("cannot watch SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("cannot watch SIGINT")?;
    let mut hup = signal(SignalKind::hangup()).context("cannot watch SIGHUP")?;
    let log = flow_log.then(|| flowlog::spawn(&engine.hub, engine.shutdown_token()));
    loop {
        tokio::select! {
            _ = term.recv() => break,
            _ = int.recv() => break,
            // A detached engine has no terminal; a stray SIGHUP must not kill it.
            _ = hup.recv() => {}
        }
    }
    engine.shutdown().await;
    if let Some(log) = log {
        log.abort();
    }
    Ok(0)
}

/// Re-exec ourselves as a session leader in the background and wait until it answers on the control socket.
pub async fn detach(cli: &Cli, cfg: &Config, args: &EngineArgs) -> anyhow::Result<i32> {
    let home = Home::new(cfg);
    if let Liveness::Running(rec) = pidfile::check(&home.engine_lock()) {
        return Err(already_running(&rec).into());
    }
    crate::engine::create_home(home.root())
        .with_context(|| format!("cannot create {}", home.root().display()))?;
    let log_path = home.engine_log();
    let log = std::os::unix::fs::OpenOptionsExt::mode(
        std::fs::OpenOptions::new().create(true).append(true),
        0o600,
    )
    .open(&log_path)
    .with_context(|| format!("cannot open {}", log_path.display()))?;
    let log_start = log.metadata().map_or(0, |m| m.len());
    let exe = std::env::current_exe().context("cannot find the ccproxy executable")?;
    let mut cmd = std::process::Command::new(exe);
    cmd.arg("--home").arg(home.root());
    if let Some(c) = &cli.config {
        cmd.arg("--config").arg(c);
    }
    cmd.arg("__engine");
    if args.mitm {
        cmd.arg("--mitm");
    }
    if args.forward_only {
        cmd.arg("--forward-only");
    }
    if let Some(p) = args.port {
        cmd.arg("--port").arg(p.to_string());
    }
    if let Some(u) = &args.upstream {
        cmd.arg("--upstream").arg(u);
    }
    let err = log.try_clone().context("cannot duplicate the log handle")?;
    cmd.stdin(Stdio::null()).stdout(log).stderr(err);
    let mut child = cmd.spawn().context("cannot start the background engine")?;
    let pid = child.id();
    let socket = home.socket();
    let deadline = Instant::now() + DETACH_TIMEOUT;
    loop {
        if let Some(status) = child
            .try_wait()
            .context("cannot watch the background engine")?
        {
            let tail = logtail::tail_file(&log_path, log_start, 20);
            // The engine's own one-line error (the same as in the foreground) says it best.
            let message = match tail.rfind("ccproxy: ") {
                Some(i) if i == 0 || tail.as_bytes()[i - 1] == b'\n' => {
                    tail[i + "ccproxy: ".len()..].trim_end().to_string()
                }
                _ => format!(
                    "the engine exited ({status}) before it was ready; {} says:\n{tail}",
                    log_path.display()
                ),
            };
            return Err(ExitError::new(1, message).into());
        }
        if let Ok(Some(st)) = control::request_status(&socket).await {
            if st.pid == pid {
                println!("ccproxy running in the background (pid {pid})");
                println!("{}", super::status::summary(&st, cfg));
                println!("  logs: ccproxy logs -f · status: ccproxy status · stop: ccproxy stop");
                return Ok(0);
            }
        }
        if Instant::now() >= deadline {
            let rec = pidfile::PidRecord::for_pid(pid);
            pidfile::terminate(&rec, Duration::from_secs(5), false).await;
            let _ = child.wait();
            let tail = logtail::tail_file(&log_path, log_start, 20);
            return Err(ExitError::new(
                1,
                format!(
                    "the engine was not ready after {} s and was stopped; {} says:\n{tail}",
                    DETACH_TIMEOUT.as_secs(),
                    log_path.display()
                ),
            )
            .into());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn already_running(rec: &pidfile::PidRecord) -> ExitError {
    ExitError::new(
        1,
        engine::already_running(rec.pid, rec.mode.as_deref().unwrap_or("unknown mode")),
    )
}

/// `start` without `--mitm`: LiteLLM alone on `litellm.port`, as the original ccproxy did.
async fn start_gateway_alone(cfg: &Config, detach: bool) -> anyhow::Result<i32> {
    let Some(command) = gateway::resolve_command(cfg) else {
        return Err(ExitError::new(1, gateway::GatewayError::NotInstalled.to_string()).into());
    };
    let home = Home::new(cfg);
    let lock = home.gateway_lock();
    if let Liveness::Running(rec) = pidfile::check(&lock) {
        return Err(ExitError::new(
            1,
            format!(
                "LiteLLM is already running in this home (pid {}): stop it with `ccproxy stop`",
                rec.pid
            ),
        )
        .into());
    }
    crate::engine::create_home(home.root())
        .with_context(|| format!("cannot create {}", home.root().display()))?;
    crate::proxy::bind(&cfg.litellm.host, cfg.litellm.port)
        .await
        .map(drop)?;
    let launch = gateway::Launch {
        command,
        config: home.gateway_config().to_path_buf(),
        host: cfg.litellm.host.clone(),
        port: cfg.litellm.port,
        env: gateway::configured_env(&cfg.gateway.environment),
        env_remove: Vec::new(),
        output: if detach {
            gateway::Output::Log(home.gateway_log())
        } else {
            gateway::Output::Inherit
        },
        lock,
        owner: None,
    };
    let mut gw = gateway::Gateway::spawn(&launch).await?;
    let addr = format!("{}:{}", cfg.litellm.host, cfg.litellm.port);
    if detach {
        println!(
            "LiteLLM running in the background (pid {}) on http://{addr}; log {}",
            gw.pid,
            home.gateway_log().display()
        );
        println!("  capture its provider calls too: ccproxy stop && ccproxy start --mitm -d");
        return Ok(0);
    }
    eprintln!(
        "LiteLLM running (pid {}) on http://{addr}; Ctrl-C stops it",
        gw.pid
    );
    let mut term = signal(SignalKind::terminate()).context("cannot watch SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("cannot watch SIGINT")?;
    tokio::select! {
        status = gw.wait() => {
            let status = status.context("cannot wait for LiteLLM")?;
            return Ok(super::run::exit_code(status));
        }
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    gw.stop(engine::GATEWAY_GRACE).await;
    Ok(0)
}
