//! Starting and stopping the ccproxy binary and engines for tests.
//!
//! [`TestHome`] is a temporary `--home` with a config file on free ports; it
//! runs the real binary and stops whatever it started when dropped.
//! [`Provider`] is a stand-in LLM provider: HTTPS on 127.0.0.2 (loopback, but
//! not in the `NO_PROXY` list `ccproxy run` sets) with its own test CA.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;

/// A database URL on loopback port 1: refused immediately.
pub const UNREACHABLE_DB: &str = "postgresql://ccproxy@127.0.0.1:1/ccproxy_unreachable";

/// The binary under test.
pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_ccproxy"))
}

/// The stand-in gateway script.
pub fn fake_gateway() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/fake_gateway.py")
}

/// A TCP port nobody listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

/// True while `pid` is a live (non-zombie) process.
pub fn pid_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            let state = stat
                .rfind(')')
                .and_then(|i| stat[i + 1..].split_whitespace().next().map(str::to_string));
            !matches!(state.as_deref(), Some("Z" | "X"))
        }
        Err(_) => false,
    }
}

/// Poll until `pid` is gone; false after `timeout`.
pub fn wait_gone(pid: u32, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if !pid_alive(pid) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    !pid_alive(pid)
}

/// A temporary ccproxy home with a config on free ports.
pub struct TestHome {
    pub dir: tempfile::TempDir,
    /// Forward listener port (`ccproxy.mitm.port`).
    pub forward: u16,
    /// Reverse listener port (`litellm.port`).
    pub reverse: u16,
    /// `CCPROXY_DATABASE_URL` for every command (default: [`UNREACHABLE_DB`]).
    pub database_url: String,
}

/// What goes in the config beyond the ports.
#[derive(Default)]
pub struct Setup<'a> {
    /// `ccproxy.litellm.command` as argv.
    pub gateway: Option<Vec<String>>,
    /// `api_base` written to `<home>/config.yaml` for the stand-in gateway.
    pub api_base: Option<String>,
    /// `ccproxy.mitm.upstream_ca`.
    pub upstream_ca: Option<&'a Path>,
    /// Extra lines under `ccproxy.litellm` (e.g. `environment`), indented 4.
    pub gateway_extra: &'a str,
    /// A real database for the engine (default: one that refuses at once).
    pub database_url: Option<String>,
}

impl<'a> Setup<'a> {
    /// The stand-in gateway forwarding to `api_base`.
    pub fn gateway(api_base: &str, upstream_ca: Option<&'a Path>) -> Self {
        Self {
            gateway: Some(vec!["python3".into(), fake_gateway().display().to_string()]),
            api_base: Some(api_base.to_string()),
            upstream_ca,
            ..Setup::default()
        }
    }
}

impl TestHome {
    /// A home with the stand-in gateway forwarding to `api_base`.
    pub fn with_gateway(api_base: &str, upstream_ca: Option<&Path>) -> Self {
        Self::new(&Setup {
            gateway: Some(vec!["python3".into(), fake_gateway().display().to_string()]),
            api_base: Some(api_base.to_string()),
            upstream_ca,
            ..Setup::default()
        })
    }

    /// A home as described by `setup`.
    pub fn new(setup: &Setup) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("ccp")
            .tempdir()
            .expect("tempdir");
        // A home as ccproxy makes one: private (a wide home earns a warning).
        std::fs::set_permissions(
            dir.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o700),
        )
        .expect("chmod home");
        let (forward, reverse) = (free_port(), free_port());
        let mut yaml = format!("ccproxy:\n  mitm:\n    port: {forward}\n");
        if let Some(ca) = setup.upstream_ca {
            let _ = writeln!(yaml, "    upstream_ca: {}", ca.display());
        }
        if setup.gateway.is_some() || !setup.gateway_extra.is_empty() {
            yaml.push_str("  litellm:\n");
            if let Some(cmd) = &setup.gateway {
                let _ = writeln!(yaml, "    command: {}", serde_json::json!(cmd));
            }
            yaml.push_str(setup.gateway_extra);
        }
        let _ = write!(yaml, "litellm:\n  port: {reverse}\n");
        std::fs::write(dir.path().join("ccproxy.yaml"), yaml).expect("config");
        if let Some(base) = &setup.api_base {
            std::fs::write(
                dir.path().join("config.yaml"),
                format!("model_list: []\napi_base: {base}\n"),
            )
            .expect("gateway config");
        }
        Self {
            dir,
            forward,
            reverse,
            database_url: setup
                .database_url
                .clone()
                .unwrap_or_else(|| UNREACHABLE_DB.to_string()),
        }
    }

    /// The home directory.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// A file in the home.
    pub fn file(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `ccproxy --home <home> ARGS…` with a clean environment for the things it reads.
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(bin());
        c.arg("--home").arg(self.path()).args(args);
        for k in [
            "CCPROXY_HOME",
            "CCPROXY_MITM_PORT",
            "CCPROXY_MITM_UPSTREAM",
            "CCPROXY_MITM_MAX_BODY_SIZE",
            "HTTPS_PROXY",
            "HTTP_PROXY",
            "https_proxy",
            "http_proxy",
            "NO_PROXY",
            "no_proxy",
        ] {
            c.env_remove(k);
        }
        // Storage is not what these tests look at: a database that refuses
        // at once keeps the engine from creating a cluster per test home
        // (the store spools and retries instead).
        c.env("CCPROXY_DATABASE_URL", &self.database_url);
        c.env_remove("DATABASE_URL");
        c.stdin(Stdio::null());
        c
    }

    /// Run to completion.
    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().expect("run ccproxy")
    }

    /// `start --mitm -d` (or other start args), asserting success.
    pub fn start(&self, args: &[&str]) -> Output {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "{args:?} failed: {}\nstdout: {}\nlog: {}",
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout),
            std::fs::read_to_string(self.file("ccproxy.log")).unwrap_or_default()
        );
        out
    }

    /// `status --json` parsed, or `None` when it exits non-zero.
    pub fn status(&self) -> Option<serde_json::Value> {
        let out = self.run(&["status", "--json"]);
        if !out.status.success() {
            return None;
        }
        Some(serde_json::from_slice(&out.stdout).expect("status json"))
    }

    /// Pid of the engine from `status --json`.
    pub fn engine_pid(&self) -> u32 {
        let st = self.status().expect("engine running");
        st["pid"].as_u64().expect("pid") as u32
    }
}

impl Drop for TestHome {
    fn drop(&mut self) {
        let _ = self.cmd(&["stop"]).stdout(Stdio::null()).status();
    }
}

/// Read newline-delimited JSON from the control socket until `done` says so.
pub struct Subscriber {
    lines: std::io::Lines<std::io::BufReader<std::os::unix::net::UnixStream>>,
    _stream: std::os::unix::net::UnixStream,
}

impl Subscriber {
    /// `{"cmd":"subscribe"}` on `<home>/ccproxy.sock`.
    pub fn connect(home: &TestHome) -> Self {
        use std::io::{BufRead, Write};
        let mut stream =
            std::os::unix::net::UnixStream::connect(home.file("ccproxy.sock")).expect("socket");
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .expect("timeout");
        stream
            .write_all(b"{\"cmd\":\"subscribe\"}\n")
            .expect("write");
        let read = stream.try_clone().expect("clone");
        Self {
            lines: std::io::BufReader::new(read).lines(),
            _stream: stream,
        }
    }

    /// The next line as JSON (panics after the read timeout).
    pub fn next(&mut self) -> serde_json::Value {
        let line = self.lines.next().expect("socket open").expect("line");
        serde_json::from_str(&line).expect("json line")
    }

    /// Completed flows until `want` of them are seen.
    pub fn completed(&mut self, want: usize) -> Vec<serde_json::Value> {
        let mut flows = Vec::new();
        while flows.len() < want {
            let v = self.next();
            if v["event"] == "completed" {
                flows.push(v["flow"].clone());
            }
        }
        flows
    }
}

/// A stand-in LLM provider over HTTPS. Every answer is JSON describing the
/// request it got: `{"provider":true,"method","path","session","body"}`.
pub struct Provider {
    pub addr: SocketAddr,
    /// PEM of the CA that signed its certificate (for `upstream_ca`).
    pub ca_file: PathBuf,
    _dir: tempfile::TempDir,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Provider {
    /// Listen on 127.0.0.2:0.
    pub fn start() -> Self {
        let ip: std::net::IpAddr = "127.0.0.2".parse().expect("ip");
        let ca_key = rcgen::KeyPair::generate().expect("key");
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "ccproxy test provider CA");
        let ca = ca_params.self_signed(&ca_key).expect("ca");
        let leaf_key = rcgen::KeyPair::generate().expect("key");
        let mut leaf_params =
            rcgen::CertificateParams::new(vec!["localhost".to_string()]).expect("params");
        leaf_params
            .subject_alt_names
            .push(rcgen::SanType::IpAddress(ip));
        let leaf = leaf_params
            .signed_by(&leaf_key, &ca, &ca_key)
            .expect("leaf");
        let dir = tempfile::tempdir().expect("tempdir");
        let ca_file = dir.path().join("provider-ca.pem");
        std::fs::write(&ca_file, ca.pem()).expect("ca file");

        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut tls = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_no_client_auth()
            .with_single_cert(
                vec![leaf.der().clone()],
                rustls::pki_types::PrivateKeyDer::Pkcs8(leaf_key.serialize_der().into()),
            )
            .expect("tls config");
        tls.alpn_protocols = vec![b"http/1.1".to_vec()];
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));

        let std_listener = std::net::TcpListener::bind((ip, 0)).expect("bind 127.0.0.2");
        std_listener.set_nonblocking(true).expect("nonblocking");
        let addr = std_listener.local_addr().expect("addr");
        let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(std_listener).expect("listener");
                loop {
                    let (tcp, _) = tokio::select! {
                        _ = &mut stopped => return,
                        r = listener.accept() => match r { Ok(x) => x, Err(_) => continue },
                    };
                    let acceptor = acceptor.clone();
                    tokio::spawn(async move {
                        let Ok(tls) = acceptor.accept(tcp).await else {
                            return;
                        };
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(TokioIo::new(tls), service_fn(answer))
                            .await;
                    });
                }
            });
        });
        Self {
            addr,
            ca_file,
            _dir: dir,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// `https://127.0.0.2:<port>`.
    pub fn url(&self) -> String {
        format!("https://{}", self.addr)
    }
}

async fn answer(
    req: hyper::Request<hyper::body::Incoming>,
) -> Result<hyper::Response<Full<Bytes>>, std::convert::Infallible> {
    let method = req.method().to_string();
    let path = req.uri().path().to_string();
    let session = req
        .headers()
        .get("x-claude-code-session-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| String::from_utf8_lossy(&b.to_bytes()).into_owned())
        .unwrap_or_default();
    let doc = serde_json::json!({
        "provider": true, "method": method, "path": path, "session": session, "body": body,
    });
    Ok(hyper::Response::builder()
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(doc.to_string())))
        .expect("response"))
}

impl Drop for Provider {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
