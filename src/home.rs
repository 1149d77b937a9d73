//! Every path in `<home>`, in one place, and the environment that routes a
//! process through a running engine.
//!
//! ```text
//! <home>/
//!   ccproxy.yaml    configuration            ccproxy.lock   engine pid file
//!   ccproxy.sock    control socket (0600)    litellm.lock   gateway pid file
//!   ccproxy.log     engine log               litellm.log    gateway output
//!   config.yaml     LiteLLM config           spool/         rows waiting for the database
//!   pg/             managed PostgreSQL       ca/            our CA (or only the bundle, with cert_dir)
//!   saved/          bodies saved from the TUI
//!   exports/        HAR files written from the TUI
//! ```
//!
//! The CA certificate and bundle paths are not guessed here: the CA fills in
//! [`CaFiles`] (`proxy::ca`), because with a read-only enterprise `cert_dir`
//! the bundle lives under `<home>/ca/`, not beside the certificate.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use crate::config::Config;

/// The managed PostgreSQL cluster directory inside `<home>` (when it fits).
pub const PG_DIR: &str = "pg";
/// Our own CA directory inside `<home>` (also where a read-only `cert_dir`'s bundle goes).
pub const CA_DIR: &str = "ca";

/// Hosts that never go through the forward proxy: the base-URL calls already
/// reach the reverse listener, capturing them twice would be noise.
pub const NO_PROXY: &str = "localhost,127.0.0.1,::1";

/// The CA's files (filled in by the CA): the certificate clients trust and the bundle (system
/// roots + our CA) for tools that take one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaFiles {
    /// The CA directory (`cert_dir`, else `<home>/ca`).
    pub dir: PathBuf,
    /// `<dir>/ca.pem`.
    pub cert: PathBuf,
    /// `<dir>/bundle.pem`, or `<home>/ca/bundle.pem` when `cert_dir` is read-only.
    pub bundle: PathBuf,
}

/// The state directory and the files in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Home {
    root: PathBuf,
    ca_dir: PathBuf,
    gateway_config: PathBuf,
}

impl Home {
    /// The paths for a loaded configuration.
    pub fn new(cfg: &Config) -> Self {
        let root = cfg.home.clone();
        Self {
            ca_dir: cfg
                .mitm
                .cert_dir
                .clone()
                .unwrap_or_else(|| root.join(CA_DIR)),
            gateway_config: cfg
                .gateway
                .config
                .clone()
                .unwrap_or_else(|| root.join("config.yaml")),
            root,
        }
    }

    /// `<home>/proxy.token`: the `proxy_auth` token (0600).
    pub fn proxy_token(&self) -> PathBuf {
        self.root.join("proxy.token")
    }

    /// `<home>` itself.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `<home>/ccproxy.lock`: the engine's pid file.
    pub fn engine_lock(&self) -> PathBuf {
        self.root.join("ccproxy.lock")
    }

    /// `<home>/litellm.lock`: the gateway's pid file.
    pub fn gateway_lock(&self) -> PathBuf {
        self.root.join("litellm.lock")
    }

    /// `<home>/ccproxy.sock`: the control socket.
    pub fn socket(&self) -> PathBuf {
        self.root.join("ccproxy.sock")
    }

    /// `<home>/ccproxy.log`: a detached engine's output, and the log while a TUI is up.
    pub fn engine_log(&self) -> PathBuf {
        self.root.join("ccproxy.log")
    }

    /// `<home>/litellm.log`: the gateway's output.
    pub fn gateway_log(&self) -> PathBuf {
        self.root.join("litellm.log")
    }

    /// The logs `ccproxy logs` shows, in order.
    pub fn log_files(&self) -> [PathBuf; 2] {
        [self.engine_log(), self.gateway_log()]
    }

    /// The LiteLLM config file: `ccproxy.litellm.config`, else `<home>/config.yaml`.
    pub fn gateway_config(&self) -> &Path {
        &self.gateway_config
    }

    /// `<home>/spool`: rows waiting for the database.
    pub fn spool(&self) -> PathBuf {
        self.root.join("spool")
    }

    /// `<home>/pg`: the preferred managed cluster directory (see `store::managed::locate`).
    pub fn pg(&self) -> PathBuf {
        self.root.join(PG_DIR)
    }

    /// `<home>/saved`: bodies saved from the TUI.
    pub fn saved(&self) -> PathBuf {
        self.root.join("saved")
    }

    /// `<home>/exports`: HAR files written from the TUI.
    pub fn exports(&self) -> PathBuf {
        self.root.join("exports")
    }

    /// The CA directory: `cert_dir` when set, else `<home>/ca`.
    pub fn ca_dir(&self) -> &Path {
        &self.ca_dir
    }

    /// `<home>/ca`, whatever `cert_dir` says: where the bundle goes when
    /// `cert_dir` is not writable.
    pub fn own_ca_dir(&self) -> PathBuf {
        self.root.join(CA_DIR)
    }
}

/// A listener bound to every interface is reached on loopback.
pub fn loopback(addr: SocketAddr) -> SocketAddr {
    if addr.ip().is_unspecified() {
        SocketAddr::from(([127, 0, 0, 1], addr.port()))
    } else {
        addr
    }
}

/// The variables that send a process's HTTP(S) through the forward listener
/// and make it trust our CA. Used by both the gateway child and `ccproxy run`:
/// `HTTPS_PROXY`/`HTTP_PROXY` (both cases) → the forward listener;
/// `NODE_EXTRA_CA_CERTS` → `ca.pem` (Node adds it to its own roots);
/// `SSL_CERT_FILE`, `REQUESTS_CA_BUNDLE`, `CURL_CA_BUNDLE` → the bundle
/// (system roots + our CA), wherever the CA put it.
pub fn routing_env(forward: SocketAddr, ca: &CaFiles) -> Vec<(String, String)> {
    let forward_url = format!("http://{}", loopback(forward));
    let mut env: Vec<(String, String)> = ["HTTPS_PROXY", "HTTP_PROXY", "https_proxy", "http_proxy"]
        .into_iter()
        .map(|name| (name.to_string(), forward_url.clone()))
        .collect();
    env.push(("NODE_EXTRA_CA_CERTS".into(), ca.cert.display().to_string()));
    let bundle = ca.bundle.display().to_string();
    for name in ["SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"] {
        env.push((name.to_string(), bundle.clone()));
    }
    env
}

/// The user name put in proxy URLs with the `proxy_auth` token as password.
pub const PROXY_USER: &str = "ccproxy";

/// `proxy_auth`: the variables of [`routing_env`] / [`client_env`] carrying
/// the token — as the password of the proxy URLs
/// (`http://ccproxy:<token>@127.0.0.1:8081`) and as the first path segment of
/// the base URLs we set (`http://127.0.0.1:4000/<token>`).
pub fn add_proxy_token(env: &mut [(String, String)], token: &str) {
    for (name, value) in env.iter_mut() {
        match name.as_str() {
            "HTTPS_PROXY" | "HTTP_PROXY" | "https_proxy" | "http_proxy" => {
                if let Some(rest) = value.strip_prefix("http://") {
                    *value = format!("http://{PROXY_USER}:{token}@{rest}");
                }
            }
            "ANTHROPIC_BASE_URL" => *value = format!("{value}/{token}"),
            "OPENAI_BASE_URL" | "OPENAI_API_BASE" => {
                if let Some(base) = value.strip_suffix("/v1") {
                    *value = format!("{base}/{token}/v1");
                }
            }
            _ => {}
        }
    }
}

/// [`routing_env`] plus what a client started by `ccproxy run` needs: base
/// URLs to the reverse listener (or the forward one when there is none),
/// unless the caller set its own, and `NO_PROXY` extended with loopback.
/// `current` reads the caller's environment.
pub fn client_env(
    forward: SocketAddr,
    reverse: Option<SocketAddr>,
    ca: &CaFiles,
    current: &dyn Fn(&str) -> Option<String>,
) -> Vec<(String, String)> {
    let mut env = routing_env(forward, ca);
    let base = format!("http://{}", loopback(reverse.unwrap_or(forward)));
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
    env
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Overrides;

    fn get<'a>(env: &'a [(String, String)], k: &str) -> Option<&'a str> {
        env.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str())
    }

    fn files(dir: &Path) -> CaFiles {
        CaFiles {
            dir: dir.join("ca"),
            cert: dir.join("ca/ca.pem"),
            bundle: dir.join("ca/bundle.pem"),
        }
    }

    #[test]
    fn paths_live_in_home() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cfg = Config::load_with(
            &Overrides {
                home: Some(dir.path().into()),
                ..Overrides::default()
            },
            &|_| None,
        )
        .expect("cfg");
        let home = Home::new(&cfg);
        assert_eq!(home.engine_lock(), dir.path().join("ccproxy.lock"));
        assert_eq!(home.socket(), dir.path().join("ccproxy.sock"));
        assert_eq!(home.ca_dir(), dir.path().join("ca"));
        assert_eq!(home.own_ca_dir(), dir.path().join("ca"));
        assert_eq!(home.gateway_config(), dir.path().join("config.yaml"));
    }

    #[test]
    fn client_environment() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ca = files(dir.path());
        let none = |_: &str| None;
        let fwd: SocketAddr = "127.0.0.1:8081".parse().expect("addr");
        let rev: SocketAddr = "0.0.0.0:4000".parse().expect("addr");
        let env = client_env(fwd, Some(rev), &ca, &none);
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
        let cert = dir.path().join("ca/ca.pem").display().to_string();
        assert_eq!(get(&env, "NODE_EXTRA_CA_CERTS"), Some(cert.as_str()));

        // The gateway child gets the same proxy and CA variables.
        let gw = routing_env(fwd, &ca);
        for (k, v) in &gw {
            assert_eq!(get(&env, k), Some(v.as_str()), "{k}");
        }

        // Forward-only: base URLs point at the forward listener.
        let fwd2: SocketAddr = "127.0.0.1:9000".parse().expect("addr");
        let env = client_env(fwd2, None, &ca, &none);
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
        let rev: SocketAddr = "127.0.0.1:4000".parse().expect("addr");
        let env = client_env(fwd, Some(rev), &ca, &mine);
        assert_eq!(get(&env, "ANTHROPIC_BASE_URL"), None);
        assert_eq!(
            get(&env, "NO_PROXY"),
            Some("corp.example,localhost,127.0.0.1,::1")
        );
        assert_eq!(get(&env, "HTTPS_PROXY"), Some("http://127.0.0.1:8081"));
    }
}
