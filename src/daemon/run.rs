//! `ccproxy run [--] CMD…`: run a command with its traffic routed through the
//! running engine (DESIGN.md "`ccproxy run`"), forward signals, exit with its code.

use std::net::SocketAddr;
use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;

use anyhow::Context as _;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tokio::signal::unix::{signal, SignalKind};

use super::{control, pidfile};
use crate::cli::RunArgs;
use crate::config::Config;
use crate::engine::{self, EngineStatus};

/// Hosts that never go through the forward proxy: the base-URL calls already
/// reach the reverse listener, capturing them twice would be noise.
pub const NO_PROXY: &str = "localhost,127.0.0.1,::1";

/// The shell convention: exit code, or 128 + signal number.
pub fn exit_code(status: ExitStatus) -> i32 {
    status
        .code()
        .or_else(|| status.signal().map(|s| 128 + s))
        .unwrap_or(1)
}

/// The variables `run` sets for an engine with status `st`. `current` reads
/// the caller's environment: base URLs the user set are kept, `NO_PROXY` is
/// extended; proxy and CA variables are what routing needs, so they are set.
pub fn routing_env(
    cfg: &Config,
    st: &EngineStatus,
    current: &dyn Fn(&str) -> Option<String>,
) -> Vec<(String, String)> {
    let mut env = Vec::new();
    let Some(forward) = st.forward.as_deref().and_then(|a| a.parse().ok()) else {
        return env;
    };
    let forward_url = format!("http://{}", loopback(forward));
    let proxy_url = engine::proxy_url(cfg, loopback(forward));
    for name in ["HTTPS_PROXY", "HTTP_PROXY", "https_proxy", "http_proxy"] {
        env.push((name.to_string(), proxy_url.clone()));
    }
    let mut base = st
        .reverse
        .as_deref()
        .and_then(|a| a.parse().ok())
        .map_or_else(
            || forward_url.clone(),
            |r| format!("http://{}", loopback(r)),
        );
    // proxy_auth: base-URL clients carry the token as the first path segment.
    if let Some(token) = engine::proxy_token(cfg) {
        base = format!("{base}/{token}");
    }
    for (name, value) in [
        ("ANTHROPIC_BASE_URL", base.clone()),
        ("OPENAI_BASE_URL", format!("{base}/v1")),
        ("OPENAI_API_BASE", format!("{base}/v1")),
    ] {
        if current(name).is_none_or(|v| v.is_empty()) {
            env.push((name.to_string(), value));
        }
    }
    for name in ["NO_PROXY", "no_proxy"] {
        let value = match current(name).filter(|v| !v.trim().is_empty()) {
            Some(mine) => {
                let mut hosts: Vec<&str> = mine.split(',').map(str::trim).collect();
                for h in NO_PROXY.split(',') {
                    if !hosts.contains(&h) {
                        hosts.push(h);
                    }
                }
                hosts.join(",")
            }
            None => NO_PROXY.to_string(),
        };
        env.push((name.to_string(), value));
    }
    env.push((
        "NODE_EXTRA_CA_CERTS".into(),
        engine::ca_cert_path(cfg).display().to_string(),
    ));
    let bundle = engine::ca_bundle_path(cfg).display().to_string();
    for name in ["SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"] {
        env.push((name.to_string(), bundle.clone()));
    }
    env
}

/// A listener bound to every interface is reached on loopback.
fn loopback(addr: SocketAddr) -> SocketAddr {
    if addr.ip().is_unspecified() {
        SocketAddr::from(([127, 0, 0, 1], addr.port()))
    } else {
        addr
    }
}

/// The running engine's status, or a note on stderr saying why the command runs unrouted.
async fn running_engine(cfg: &Config) -> Option<EngineStatus> {
    let lock = engine::lock_path(cfg);
    let pidfile::Liveness::Running(rec) = pidfile::check(&lock) else {
        eprintln!(
            "ccproxy: no engine is running, so this command runs without capture (start one with `ccproxy start --mitm -d`)"
        );
        return None;
    };
    if let Ok(Some(st)) = control::request_status(&engine::socket_path(cfg)).await {
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
        return Err(crate::ExitError::new(
            2,
            "ccproxy run needs a command: ccproxy run -- CMD ARGS…",
        )
        .into());
    };
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(rest);
    if let Some(st) = running_engine(cfg).await {
        let current = |k: &str| std::env::var(k).ok();
        cmd.envs(routing_env(cfg, &st, &current));
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

/// True when our process group is the terminal's foreground group, so keyboard
/// signals reach the child without our help.
fn terminal_delivers_to_us() -> bool {
    nix::unistd::tcgetpgrp(std::io::stdin()).is_ok_and(|fg| fg == nix::unistd::getpgrp())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Overrides;

    fn status(forward: &str, reverse: Option<&str>) -> EngineStatus {
        EngineStatus {
            schema: 1,
            pid: 1,
            mode: "dual-direct".into(),
            started_at: chrono::Utc::now(),
            forward: Some(forward.into()),
            reverse: reverse.map(str::to_string),
            gateway: None,
            storage: crate::store::StoreStats::default(),
            flows: crate::flow::HubSnapshot::default(),
        }
    }

    fn get<'a>(env: &'a [(String, String)], k: &str) -> Option<&'a str> {
        env.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str())
    }

    #[test]
    fn routing_environment() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cfg = Config::load_with(
            &Overrides {
                home: Some(dir.path().into()),
                ..Overrides::default()
            },
            &|_| None,
        )
        .expect("cfg");
        let none = |_: &str| None;
        let env = routing_env(&cfg, &status("127.0.0.1:8081", Some("0.0.0.0:4000")), &none);
        assert_eq!(get(&env, "HTTPS_PROXY"), Some("http://127.0.0.1:8081"));
        assert_eq!(get(&env, "http_proxy"), Some("http://127.0.0.1:8081"));
        assert_eq!(
            get(&env, "ANTHROPIC_BASE_URL"),
            Some("http://127.0.0.1:4000")
        );
        assert_eq!(
            get(&env, "OPENAI_BASE_URL"),
            Some("http://127.0.0.1:4000/v1")
        );
        assert_eq!(get(&env, "NO_PROXY"), Some(NO_PROXY));
        let bundle = dir.path().join("ca/bundle.pem").display().to_string();
        assert_eq!(get(&env, "SSL_CERT_FILE"), Some(bundle.as_str()));
        assert_eq!(get(&env, "CURL_CA_BUNDLE"), Some(bundle.as_str()));
        let ca = dir.path().join("ca/ca.pem").display().to_string();
        assert_eq!(get(&env, "NODE_EXTRA_CA_CERTS"), Some(ca.as_str()));

        // Forward-only: base URLs point at the forward listener.
        let env = routing_env(&cfg, &status("127.0.0.1:9000", None), &none);
        assert_eq!(
            get(&env, "ANTHROPIC_BASE_URL"),
            Some("http://127.0.0.1:9000")
        );

        // The user's own values: base URL kept, NO_PROXY extended, proxies overridden.
        let mine = |k: &str| match k {
            "ANTHROPIC_BASE_URL" => Some("https://corp.example".to_string()),
            "NO_PROXY" => Some("corp.example,localhost".to_string()),
            "HTTPS_PROXY" => Some("http://elsewhere:1".to_string()),
            _ => None,
        };
        let env = routing_env(
            &cfg,
            &status("127.0.0.1:8081", Some("127.0.0.1:4000")),
            &mine,
        );
        assert_eq!(get(&env, "ANTHROPIC_BASE_URL"), None);
        assert_eq!(
            get(&env, "NO_PROXY"),
            Some("corp.example,localhost,127.0.0.1,::1")
        );
        assert_eq!(get(&env, "HTTPS_PROXY"), Some("http://127.0.0.1:8081"));
    }
}
