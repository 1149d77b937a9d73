//! The gateway child (LiteLLM or a stand-in): found on PATH or configured,
//! started in its own process group on a chosen port, watched until its port
//! accepts, and stopped with SIGTERM then SIGKILL.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use tokio::process::{Child, Command};

use crate::config::Config;
use crate::engine::logtail;
use crate::engine::pidfile::{self, PidRecord};

/// How long a gateway may take to accept connections (LiteLLM imports a lot).
pub const READY_TIMEOUT: Duration = Duration::from_secs(90);

/// Errors starting the gateway; each says what to do.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// Neither `litellm` on PATH nor `ccproxy.litellm.command`.
    #[error("LiteLLM is not installed: install it with `pip install 'litellm[proxy]'` (or set ccproxy.litellm.command), or run `ccproxy start --mitm` to capture without it")]
    NotInstalled,
    /// The LiteLLM config file is missing.
    #[error("the gateway needs its config file {0}: create it (LiteLLM `model_list`) or point ccproxy.litellm.config at one")]
    NoConfig(PathBuf),
    /// The command could not be started.
    #[error("cannot start the gateway `{command}`: {source}; check ccproxy.litellm.command")]
    Spawn {
        command: String,
        source: std::io::Error,
    },
    /// The process ended before its port accepted.
    #[error("the gateway `{command}` exited ({status}) before accepting connections; its log {log} ends with:\n{tail}")]
    Exited {
        command: String,
        status: ExitStatus,
        log: String,
        tail: String,
    },
    /// The port never accepted.
    #[error("the gateway `{command}` did not accept connections on port {port} within {secs} s; see {log}")]
    NotReady {
        command: String,
        port: u16,
        secs: u64,
        log: String,
    },
    /// Log or lock file trouble.
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
}

/// Where a gateway's output goes.
#[derive(Debug, Clone)]
pub enum Output {
    /// Appended to this file (`<home>/litellm.log`).
    Log(PathBuf),
    /// The caller's terminal (foreground `start` without `--mitm`).
    Inherit,
}

/// Everything needed to start one gateway process.
#[derive(Debug, Clone)]
pub struct Launch {
    /// Program and arguments, before `--config/--host/--port` are appended.
    pub command: Vec<String>,
    /// The LiteLLM config file passed as `--config`.
    pub config: PathBuf,
    /// Interface and port it listens on.
    pub host: String,
    pub port: u16,
    /// Variables set (already expanded).
    pub env: Vec<(String, String)>,
    /// Variables removed from the inherited environment.
    pub env_remove: Vec<String>,
    /// Where stdout/stderr go.
    pub output: Output,
    /// The lock file recording its pid (`<home>/litellm.lock`).
    pub lock: PathBuf,
    /// The engine pid that owns it (none for a standalone gateway).
    pub owner: Option<u32>,
}

impl Launch {
    /// The full argument vector.
    pub fn argv(&self) -> Vec<String> {
        let mut argv = self.command.clone();
        argv.extend([
            "--config".into(),
            self.config.display().to_string(),
            "--host".into(),
            self.host.clone(),
            "--port".into(),
            self.port.to_string(),
        ]);
        argv
    }
}

/// A running gateway child.
#[derive(Debug)]
pub struct Gateway {
    child: Child,
    /// Its pid (also its process group).
    pub pid: u32,
    /// The port it listens on.
    pub port: u16,
    /// The full command line.
    pub argv: Vec<String>,
    lock: PathBuf,
}

/// The gateway command: `ccproxy.litellm.command`, else `litellm` when on PATH.
pub fn resolve_command(cfg: &Config) -> Option<Vec<String>> {
    if let Some(cmd) = cfg.gateway.command.as_ref().filter(|c| !c.is_empty()) {
        return Some(cmd.clone());
    }
    find_on_path("litellm").map(|p| vec![p.display().to_string()])
}

/// The first executable `name` on PATH.
pub fn find_on_path(name: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| {
            p.metadata()
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

/// Expand `${VAR}` and `${VAR:-default}` with `lookup`; unset without default → empty.
pub fn expand_env(value: &str, lookup: &dyn Fn(&str) -> Option<String>) -> String {
    let mut out = String::with_capacity(value.len());
    let mut rest = value;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else {
            out.push_str(&rest[start..]);
            return out;
        };
        let inner = &after[..end];
        let value = match inner.split_once(":-") {
            Some((name, default)) => lookup(name)
                .filter(|v| !v.is_empty())
                .unwrap_or_else(|| default.to_string()),
            None => lookup(inner).unwrap_or_default(),
        };
        out.push_str(&value);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    out
}

/// `ccproxy.litellm.environment` with references expanded from the process environment.
pub fn configured_env(environment: &BTreeMap<String, String>) -> Vec<(String, String)> {
    let lookup = |k: &str| std::env::var(k).ok();
    environment
        .iter()
        .map(|(k, v)| (k.clone(), expand_env(v, &lookup)))
        .collect()
}

/// A port nobody listens on right now (bind :0 and let it go).
pub fn free_port(host: &str) -> std::io::Result<u16> {
    let l = std::net::TcpListener::bind((host, 0))?;
    Ok(l.local_addr()?.port())
}

impl Gateway {
    /// Start the process, record it in its lock file, and wait until its port accepts.
    pub async fn spawn(launch: &Launch) -> Result<Self, GatewayError> {
        let argv = launch.argv();
        let command = argv.join(" ");
        if !launch.config.exists() {
            return Err(GatewayError::NoConfig(launch.config.clone()));
        }
        let mut cmd = Command::new(&argv[0]);
        cmd.args(&argv[1..])
            .stdin(Stdio::null())
            .process_group(0)
            .kill_on_drop(false);
        for k in &launch.env_remove {
            cmd.env_remove(k);
        }
        cmd.envs(launch.env.iter().map(|(k, v)| (k, v)));
        let log_name = match &launch.output {
            Output::Log(path) => {
                let io = |source| GatewayError::Io {
                    what: format!("cannot open {}", path.display()),
                    source,
                };
                let file = std::os::unix::fs::OpenOptionsExt::mode(
                    std::fs::OpenOptions::new().create(true).append(true),
                    0o600,
                )
                .open(path)
                .map_err(io)?;
                let err = file.try_clone().map_err(io)?;
                cmd.stdout(file).stderr(err);
                path.display().to_string()
            }
            Output::Inherit => "its output above".to_string(),
        };
        let child = cmd.spawn().map_err(|source| GatewayError::Spawn {
            command: command.clone(),
            source,
        })?;
        let pid = child.id().unwrap_or_default();
        let rec = PidRecord::for_pid(pid).tagged(launch.owner, "gateway");
        pidfile::write(&launch.lock, &rec).map_err(|source| GatewayError::Io {
            what: format!("cannot write {}", launch.lock.display()),
            source,
        })?;
        let mut gw = Self {
            child,
            pid,
            port: launch.port,
            argv,
            lock: launch.lock.clone(),
        };
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Ok(Some(status)) = gw.child.try_wait() {
                pidfile::remove_if_owned(&gw.lock, pid);
                let tail = match &launch.output {
                    Output::Log(p) => logtail::tail_file(p, 0, 15),
                    Output::Inherit => String::new(),
                };
                return Err(GatewayError::Exited {
                    command,
                    status,
                    log: log_name,
                    tail,
                });
            }
            if tokio::net::TcpStream::connect((launch.host.as_str(), launch.port))
                .await
                .is_ok()
            {
                return Ok(gw);
            }
            if Instant::now() >= deadline {
                gw.stop(Duration::from_secs(2)).await;
                return Err(GatewayError::NotReady {
                    command,
                    port: launch.port,
                    secs: READY_TIMEOUT.as_secs(),
                    log: log_name,
                });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Wait for the process to end by itself.
    pub async fn wait(&mut self) -> std::io::Result<ExitStatus> {
        let status = self.child.wait().await;
        pidfile::remove_if_owned(&self.lock, self.pid);
        status
    }

    /// SIGTERM its process group, SIGKILL after `grace`, reap it, remove its lock file.
    pub async fn stop(mut self, grace: Duration) {
        let rec = PidRecord::for_pid(self.pid);
        let killed = pidfile::terminate(&rec, grace, true).await;
        if killed {
            tracing::warn!(pid = self.pid, "gateway ignored SIGTERM; killed");
        }
        let _ = self.child.wait().await;
        pidfile::remove_if_owned(&self.lock, self.pid);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expands_variables_and_defaults() {
        let env = |k: &str| match k {
            "A" => Some("alpha".to_string()),
            "EMPTY" => Some(String::new()),
            _ => None,
        };
        let cases = [
            ("plain", "plain"),
            ("${A}", "alpha"),
            ("x-${A}-y", "x-alpha-y"),
            ("${MISSING}", ""),
            ("${MISSING:-dflt}", "dflt"),
            ("${A:-dflt}", "alpha"),
            ("${EMPTY:-dflt}", "dflt"),
            ("${A}${A}", "alphaalpha"),
            ("${unterminated", "${unterminated"),
            ("$A", "$A"),
        ];
        for (input, want) in cases {
            assert_eq!(expand_env(input, &env), want, "{input}");
        }
    }

    #[tokio::test]
    async fn exit_before_ready_reports_the_log_tail() {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = dir.path().join("config.yaml");
        std::fs::write(&config, "model_list: []\n").expect("write");
        let log = dir.path().join("litellm.log");
        let launch = Launch {
            command: vec![
                "sh".into(),
                "-c".into(),
                "echo boom-from-gateway >&2; exit 3".into(),
                "sh".into(),
            ],
            config,
            host: "127.0.0.1".into(),
            port: free_port("127.0.0.1").expect("port"),
            env: Vec::new(),
            env_remove: Vec::new(),
            output: Output::Log(log),
            lock: dir.path().join("litellm.lock"),
            owner: None,
        };
        let err = Gateway::spawn(&launch).await.expect_err("must fail");
        let msg = err.to_string();
        assert!(msg.contains("boom-from-gateway"), "{msg}");
        assert!(!dir.path().join("litellm.lock").exists());
    }
}
