//! Process management: start (foreground or detached), stop, status, run,
//! pid files, logs and the control socket.
//!
//! Files in `<home>`: `ccproxy.lock` (engine pid, see [`pidfile`]),
//! `litellm.lock` (gateway pid), `ccproxy.sock` (see [`control`]),
//! `ccproxy.log` (detached engine) and `litellm.log` (gateway output).

pub mod control;
pub mod gateway;
pub mod logs;
pub mod pidfile;
pub mod run;

use std::os::unix::fs::OpenOptionsExt as _;
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use tokio::signal::unix::{signal, SignalKind};

use crate::cli::{Cli, EngineArgs, MitmCommand, StartArgs, StatusArgs};
use crate::config::Config;
use crate::engine::{self, Engine, EngineStatus, Mode};
use crate::ExitError;
use pidfile::Liveness;

pub use logs::logs;
pub use run::run_command;

/// How long `start -d` waits for the detached engine to report ready.
pub const DETACH_TIMEOUT: Duration = Duration::from_secs(120);
/// How long `stop` waits after SIGTERM before SIGKILL. The engine itself
/// gives its gateway and its store a few seconds each.
pub const STOP_GRACE: Duration = Duration::from_secs(15);

/// `ccproxy start`.
pub async fn start(cli: &Cli, args: &StartArgs) -> anyhow::Result<i32> {
    let cfg = crate::load_config(cli, None, None)?;
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

/// `ccproxy mitm …`.
pub async fn mitm(cli: &Cli, cmd: &MitmCommand) -> anyhow::Result<i32> {
    match cmd {
        MitmCommand::Start(a) => {
            let cfg = crate::load_config(cli, a.port, a.upstream.clone())?;
            if a.detach {
                let engine_args = EngineArgs {
                    forward_only: true,
                    port: a.port,
                    upstream: a.upstream.clone(),
                    ..EngineArgs::default()
                };
                detach(cli, &cfg, &engine_args).await
            } else {
                foreground(cfg, Mode::Forward, a.headless).await
            }
        }
        MitmCommand::Stop => stop_all(&crate::load_config(cli, None, None)?, false).await,
        MitmCommand::Status(a) => status(&crate::load_config(cli, None, None)?, a, true).await,
    }
}

fn init_logging(ansi: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("CCPROXY_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi)
        .try_init();
}

async fn foreground(cfg: Config, mode: Mode, headless: bool) -> anyhow::Result<i32> {
    use std::io::IsTerminal;
    let cfg = Arc::new(cfg);
    let tui = !headless && std::io::stdout().is_terminal();
    if !tui {
        init_logging(std::io::stderr().is_terminal());
    }
    let engine = Engine::start(Arc::clone(&cfg), mode).await?;
    if tui {
        crate::tui::run_with_engine(cfg, engine).await
    } else {
        if let Some(st) = engine.status() {
            eprintln!("{}", summary(&st));
        }
        serve_until_signal(engine, true).await
    }
}

/// Run an engine until SIGINT or SIGTERM, optionally with the one-line-per-flow log on stderr, then shut it down.
pub async fn serve_until_signal(engine: Engine, flow_log: bool) -> anyhow::Result<i32> {
    let mut term = signal(SignalKind::terminate()).context("cannot watch SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("cannot watch SIGINT")?;
    let mut hup = signal(SignalKind::hangup()).context("cannot watch SIGHUP")?;
    let log = flow_log.then(|| crate::proxy::spawn_flow_log(&engine.hub, engine.shutdown_token()));
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

/// The hidden engine process (detached daemon body).
pub async fn engine_main(cli: &Cli, args: &EngineArgs) -> anyhow::Result<i32> {
    // Its own session: no controlling terminal, immune to the shell's job control.
    let _ = nix::unistd::setsid();
    init_logging(false);
    let cfg = Arc::new(crate::load_config(cli, args.port, args.upstream.clone())?);
    let mode = if args.forward_only {
        Mode::Forward
    } else {
        Mode::Dual
    };
    let engine = Engine::start(cfg, mode).await?;
    serve_until_signal(engine, true).await
}

/// Re-exec ourselves as a session leader in the background and wait until it answers on the control socket.
async fn detach(cli: &Cli, cfg: &Config, args: &EngineArgs) -> anyhow::Result<i32> {
    if let Liveness::Running(rec) = pidfile::check(&engine::lock_path(cfg)) {
        return Err(already_running(&rec).into());
    }
    engine::create_home(&cfg.home)
        .with_context(|| format!("cannot create {}", cfg.home.display()))?;
    let log_path = cfg.home_path("ccproxy.log");
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(&log_path)
        .with_context(|| format!("cannot open {}", log_path.display()))?;
    let log_start = log.metadata().map_or(0, |m| m.len());
    let exe = std::env::current_exe().context("cannot find the ccproxy executable")?;
    let mut cmd = std::process::Command::new(exe);
    cmd.arg("--home").arg(&cfg.home);
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
    let socket = engine::socket_path(cfg);
    let deadline = Instant::now() + DETACH_TIMEOUT;
    loop {
        if let Some(status) = child
            .try_wait()
            .context("cannot watch the background engine")?
        {
            let tail = log_since(&log_path, log_start, 20);
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
                println!("{}", summary(&st));
                println!("  logs: ccproxy logs -f · status: ccproxy status · stop: ccproxy stop");
                return Ok(0);
            }
        }
        if Instant::now() >= deadline {
            let rec = pidfile::PidRecord::for_pid(pid);
            pidfile::terminate(&rec, Duration::from_secs(5), false).await;
            let _ = child.wait();
            let tail = log_since(&log_path, log_start, 20);
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

fn log_since(path: &Path, offset: u64, lines: usize) -> String {
    let bytes = std::fs::read(path).unwrap_or_default();
    let start = usize::try_from(offset).unwrap_or(0).min(bytes.len());
    let text = String::from_utf8_lossy(&bytes[start..]);
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

fn already_running(rec: &pidfile::PidRecord) -> ExitError {
    ExitError::new(
        1,
        format!(
            "an engine is already running in this home (pid {}, {}): stop it with `ccproxy stop`, or see `ccproxy status`",
            rec.pid,
            rec.mode.as_deref().unwrap_or("unknown mode")
        ),
    )
}

/// `start` without `--mitm`: LiteLLM alone on `litellm.port`, as the original ccproxy did.
async fn start_gateway_alone(cfg: &Config, detach: bool) -> anyhow::Result<i32> {
    let Some(command) = gateway::resolve_command(cfg) else {
        return Err(ExitError::new(1, gateway::GatewayError::NotInstalled.to_string()).into());
    };
    let lock = engine::gateway_lock_path(cfg);
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
    engine::create_home(&cfg.home)
        .with_context(|| format!("cannot create {}", cfg.home.display()))?;
    crate::proxy::bind(&cfg.litellm.host, cfg.litellm.port)
        .await
        .map(drop)?;
    let launch = gateway::Launch {
        command,
        config: gateway::config_path(cfg),
        host: cfg.litellm.host.clone(),
        port: cfg.litellm.port,
        env: gateway::configured_env(&cfg.gateway.environment),
        env_remove: Vec::new(),
        output: if detach {
            gateway::Output::Log(cfg.home_path("litellm.log"))
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
            cfg.home_path("litellm.log").display()
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
            return Ok(run::exit_code(status));
        }
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    gw.stop(engine::GATEWAY_GRACE).await;
    Ok(0)
}

/// `ccproxy stop`.
pub async fn stop(cfg: &Config) -> anyhow::Result<i32> {
    stop_all(cfg, true).await
}

/// Stop the engine (and with `everything`, a standalone gateway and the managed database).
async fn stop_all(cfg: &Config, everything: bool) -> anyhow::Result<i32> {
    let mut said = false;
    let lock = engine::lock_path(cfg);
    let mut engine_pid = None;
    match pidfile::check(&lock) {
        Liveness::Running(rec) => {
            let killed = pidfile::terminate(&rec, STOP_GRACE, false).await;
            pidfile::remove_if_owned(&lock, rec.pid);
            if killed {
                println!(
                    "stopped ccproxy engine (pid {}) with SIGKILL after {} s",
                    rec.pid,
                    STOP_GRACE.as_secs()
                );
            } else {
                println!("stopped ccproxy engine (pid {})", rec.pid);
            }
            engine_pid = Some(rec.pid);
            said = true;
        }
        Liveness::Stale(rec) => {
            println!("removed a stale pid file (engine pid {} was gone)", rec.pid);
            engine_pid = Some(rec.pid);
            said = true;
        }
        Liveness::Absent => {}
    }
    if !matches!(pidfile::check(&lock), Liveness::Running(_)) {
        let _ = std::fs::remove_file(engine::socket_path(cfg));
    }
    let gw_lock = engine::gateway_lock_path(cfg);
    if let Liveness::Running(rec) = pidfile::check(&gw_lock) {
        let ours = rec.owner.is_some() && rec.owner == engine_pid;
        let orphan = rec.owner.is_some() && !matches!(pidfile::check(&lock), Liveness::Running(_));
        if everything || ours || orphan {
            pidfile::terminate(&rec, engine::GATEWAY_GRACE, true).await;
            pidfile::remove_if_owned(&gw_lock, rec.pid);
            println!("stopped the gateway (pid {})", rec.pid);
            said = true;
        }
    }
    if everything {
        match crate::store::managed::stop(cfg).await {
            Ok(true) => {
                println!("stopped the managed database");
                said = true;
            }
            Ok(false) => {}
            Err(e) => eprintln!("ccproxy: could not stop the managed database: {e}"),
        }
    }
    if !said {
        println!("ccproxy is not running");
    }
    Ok(0)
}

/// `ccproxy status` / `ccproxy mitm status`.
///
/// Exit code 0 when an engine (or, for `status`, a standalone gateway) runs;
/// 1 when nothing runs or the engine does not answer.
pub async fn status(cfg: &Config, args: &StatusArgs, mitm_only: bool) -> anyhow::Result<i32> {
    let lock = engine::lock_path(cfg);
    if let Liveness::Running(rec) = pidfile::check(&lock) {
        if let Ok(Some(st)) = control::request_status(&engine::socket_path(cfg)).await {
            if args.json {
                println!("{}", serde_json::to_string_pretty(&st)?);
            } else {
                println!("{}", human_status(cfg, &st));
                if let Liveness::Running(gw) = pidfile::check(&engine::gateway_lock_path(cfg)) {
                    if gw.owner.is_none() {
                        println!(
                            "litellm   running alone (pid {}) on {}:{}",
                            gw.pid, cfg.litellm.host, cfg.litellm.port
                        );
                    }
                }
            }
            return Ok(0);
        }
        eprintln!(
            "ccproxy: the engine (pid {}) runs but does not answer on {}: it may still be starting; see `ccproxy logs`",
            rec.pid,
            engine::socket_path(cfg).display()
        );
        return Ok(1);
    }
    if !mitm_only {
        if let Liveness::Running(rec) = pidfile::check(&engine::gateway_lock_path(cfg)) {
            if let Some(owner) = rec.owner {
                eprintln!(
                    "ccproxy is not running, but its gateway (pid {}) outlived engine pid {owner}: `ccproxy stop` cleans it up",
                    rec.pid
                );
                return Ok(1);
            }
            if args.json {
                eprintln!(
                    "ccproxy: no capture engine runs (LiteLLM alone, pid {})",
                    rec.pid
                );
                return Ok(1);
            }
            println!(
                "LiteLLM running alone (pid {}) on {}:{}; no capture engine (start one with `ccproxy stop && ccproxy start --mitm -d`)",
                rec.pid, cfg.litellm.host, cfg.litellm.port
            );
            return Ok(0);
        }
    }
    let hint = if mitm_only {
        "ccproxy mitm start -d"
    } else {
        "ccproxy start --mitm -d"
    };
    eprintln!("ccproxy is not running (start it with `{hint}`)");
    Ok(1)
}

/// The short block printed when an engine comes up.
fn summary(st: &EngineStatus) -> String {
    let mut lines = vec![format!("  mode     {}", st.mode)];
    if let Some(r) = &st.reverse {
        let target = match &st.gateway {
            Some(g) => format!("gateway on port {}", g.port),
            None => "providers".into(),
        };
        lines.push(format!("  reverse  http://{r} → {target}"));
    }
    if let Some(f) = &st.forward {
        lines.push(format!("  forward  http://{f}"));
    }
    lines.push(format!("  storage  {}", storage_line(st)));
    lines.join("\n")
}

fn storage_line(st: &EngineStatus) -> String {
    let s = &st.storage;
    let state = serde_json::to_value(s.state)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default();
    let mut line = format!(
        "{state} ({})",
        if s.source.is_empty() {
            "memory"
        } else {
            &s.source
        }
    );
    if let Some(db) = &s.database {
        line.push(' ');
        line.push_str(db);
    }
    line
}

fn human_status(cfg: &Config, st: &EngineStatus) -> String {
    let up = chrono::Utc::now().signed_duration_since(st.started_at);
    let up = humantime::format_duration(Duration::from_secs(up.num_seconds().max(0) as u64));
    let mut out = vec![
        format!(
            "engine    running (pid {}, since {}, up {up})",
            st.pid,
            st.started_at.format("%Y-%m-%d %H:%M:%S UTC")
        ),
        format!("mode      {}", st.mode),
    ];
    if let Some(r) = &st.reverse {
        let target = match (&st.gateway, &cfg.upstream) {
            (Some(g), _) => format!("gateway on port {}", g.port),
            (None, Some(u)) => u.clone(),
            (None, None) => format!("{} / {}", engine::PROVIDERS.0, engine::PROVIDERS.1),
        };
        out.push(format!("reverse   http://{r} → {target}"));
    }
    if let Some(f) = &st.forward {
        out.push(format!("forward   http://{f}"));
    }
    if let Some(g) = &st.gateway {
        out.push(format!(
            "gateway   pid {}, port {} ({})",
            g.pid,
            g.port,
            g.command.join(" ")
        ));
    }
    let s = &st.storage;
    out.push(format!("storage   {}", storage_line(st)));
    out.push(format!(
        "          written {} · queued {} · spooled {} ({} B held) · replayed {} · dropped {}",
        s.written, s.queued, s.spooled, s.spool_bytes, s.replayed, s.dropped
    ));
    if s.restarts > 0 {
        out.push(format!(
            "          managed database restarted {} time(s)",
            s.restarts
        ));
    }
    if let Some(e) = &s.last_error {
        out.push(format!(
            "          last error: {}",
            crate::capture::sanitize::sanitize(e)
        ));
    }
    if let Some(e) = &s.spool_error {
        out.push(format!(
            "          spool error: {}",
            crate::capture::sanitize::sanitize(e)
        ));
    }
    let f = &st.flows;
    out.push(format!(
        "flows     {} started · {} completed · {} in flight · {} errors",
        f.started, f.completed, f.in_flight, f.errors
    ));
    out.push(format!(
        "by type   llm {} · mcp {} · web {} · other {}",
        f.llm, f.mcp, f.web, f.other
    ));
    out.join("\n")
}
