//! Test upstreams (HTTP/HTTPS on 127.0.0.1:0), the test CA, raw TCP servers
//! for failure cases, and an in-process proxy. Each server helper returns its
//! address and a handle that stops it when dropped (hudsucker's shape).

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use ccproxy::config::{Config, Overrides};
use ccproxy::flow::{Flow, FlowEvent, FlowHub};
use ccproxy::proxy::{self, ProxyState, ReverseRoute, Timeouts};

/// Error type of test bodies.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// Body of a test upstream's response.
pub type TestBody = BoxBody<Bytes, BoxError>;

/// A complete body.
pub fn full(b: impl Into<Bytes>) -> TestBody {
    Full::new(b.into()).map_err(|e| match e {}).boxed()
}

/// Stops the server it belongs to when dropped.
pub struct Stop(CancellationToken);

impl Drop for Stop {
    fn drop(&mut self) {
        self.0.cancel();
    }
}

/// A running test server.
pub struct Server {
    pub addr: SocketAddr,
    pub stop: Stop,
}

/// A CA for the test upstreams' certificates, written to a temp PEM file
/// (passed to the proxy as `upstream_ca`).
pub struct TestCa {
    pub pem_path: PathBuf,
    pub pem: String,
    cert: rcgen::Certificate,
    key: KeyPair,
    _dir: tempfile::TempDir,
}

impl TestCa {
    /// A fresh CA.
    pub fn new() -> Self {
        let mut params = CertificateParams::default();
        params
            .distinguished_name
            .push(DnType::CommonName, "ccproxy test upstream CA");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let key = KeyPair::generate().expect("ca key");
        let cert = params.self_signed(&key).expect("ca cert");
        let pem = cert.pem();
        let dir = tempfile::tempdir().expect("tempdir");
        let pem_path = dir.path().join("upstream-ca.pem");
        std::fs::write(&pem_path, &pem).expect("write ca");
        Self {
            pem_path,
            pem,
            cert,
            key,
            _dir: dir,
        }
    }

    /// A rustls server config for `names` (DNS names or IPs), ALPN h2 + http/1.1.
    pub fn server_config(&self, names: &[&str]) -> Arc<rustls::ServerConfig> {
        let params =
            CertificateParams::new(names.iter().map(|s| (*s).to_string()).collect::<Vec<_>>())
                .expect("params");
        let key = KeyPair::generate().expect("leaf key");
        let cert = params
            .signed_by(&key, &self.cert, &self.key)
            .expect("leaf cert");
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_no_client_auth()
            .with_single_cert(
                vec![cert.der().clone()],
                rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
            )
            .expect("server cert");
        cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Arc::new(cfg)
    }
}

/// Serve HTTP (h1 and h2c) with `handler` on 127.0.0.1:0.
pub async fn http<F, Fut>(handler: F) -> Server
where
    F: Fn(Request<Incoming>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Response<TestBody>> + Send + 'static,
{
    serve(None, handler).await
}

/// Serve HTTPS (ALPN h2 and http/1.1) with a certificate from `ca` for
/// `localhost` and 127.0.0.1.
pub async fn https<F, Fut>(ca: &TestCa, handler: F) -> Server
where
    F: Fn(Request<Incoming>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Response<TestBody>> + Send + 'static,
{
    serve(Some(ca.server_config(&["localhost", "127.0.0.1"])), handler).await
}

async fn serve<F, Fut>(tls: Option<Arc<rustls::ServerConfig>>, handler: F) -> Server
where
    F: Fn(Request<Incoming>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Response<TestBody>> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let token = CancellationToken::new();
    let handler = Arc::new(handler);
    let t = token.clone();
    tokio::spawn(async move {
        loop {
            let (stream, _) = tokio::select! {
                () = t.cancelled() => break,
                r = listener.accept() => match r { Ok(x) => x, Err(_) => continue },
            };
            let _ = stream.set_nodelay(true);
            let handler = Arc::clone(&handler);
            let tls = tls.clone();
            let t = t.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req| {
                    let fut = handler(req);
                    async move { Ok::<_, Infallible>(fut.await) }
                });
                let builder = auto::Builder::new(TokioExecutor::new());
                if let Some(cfg) = tls {
                    let Ok(s) = tokio_rustls::TlsAcceptor::from(cfg).accept(stream).await else {
                        return;
                    };
                    tokio::select! {
                        _ = builder.serve_connection(TokioIo::new(s), svc) => {},
                        () = t.cancelled() => {},
                    }
                } else {
                    tokio::select! {
                        _ = builder.serve_connection(TokioIo::new(stream), svc) => {},
                        () = t.cancelled() => {},
                    }
                }
            });
        }
    });
    Server {
        addr,
        stop: Stop(token),
    }
}

/// A raw TCP server: `f` gets every accepted connection (for garbage,
/// resets, silence and close-delimited bodies).
pub async fn raw<F, Fut>(f: F) -> Server
where
    F: Fn(TcpStream) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let token = CancellationToken::new();
    let t = token.clone();
    let f = Arc::new(f);
    tokio::spawn(async move {
        loop {
            let (stream, _) = tokio::select! {
                () = t.cancelled() => break,
                r = listener.accept() => match r { Ok(x) => x, Err(_) => continue },
            };
            let f = Arc::clone(&f);
            let t = t.clone();
            tokio::spawn(async move {
                tokio::select! {
                    () = f(stream) => {},
                    () = t.cancelled() => {},
                }
            });
        }
    });
    Server {
        addr,
        stop: Stop(token),
    }
}

/// A port on 127.0.0.1 with nothing listening.
pub async fn closed_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    l.local_addr().expect("addr").port()
}

/// An in-process proxy (forward and reverse listeners) with its own home.
pub struct TestProxy {
    pub forward: SocketAddr,
    pub reverse: Option<SocketAddr>,
    pub hub: FlowHub,
    pub state: Arc<ProxyState>,
    pub home: tempfile::TempDir,
    events: ccproxy::flow::LiveReceiver,
    shutdown: CancellationToken,
    listeners: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for TestProxy {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// What a test can change before the proxy starts.
#[derive(Default)]
pub struct ProxyOptions {
    pub reverse: Option<ReverseRoute>,
    pub timeouts: Timeouts,
    /// Bind the forward listener here instead of a free port.
    pub forward_port: Option<u16>,
    /// Bind the reverse listener here instead of a free port.
    pub reverse_port: Option<u16>,
}

/// A base config in a fresh home; `ca` (when given) is trusted upstream.
pub fn test_config(home: &std::path::Path, ca: Option<&TestCa>) -> Config {
    let mut cfg = Config::load_with(
        &Overrides {
            home: Some(home.to_path_buf()),
            ..Overrides::default()
        },
        &|_| None,
    )
    .expect("config");
    cfg.mitm.upstream_ca = ca.map(|c| c.pem_path.clone());
    cfg
}

/// Start a proxy with `edit` applied to a fresh config.
pub async fn start_proxy(
    ca: Option<&TestCa>,
    edit: impl FnOnce(&mut Config),
    opts: ProxyOptions,
) -> TestProxy {
    let home = tempfile::tempdir().expect("home");
    let mut cfg = test_config(home.path(), ca);
    edit(&mut cfg);
    let hub = FlowHub::new(4096);
    let events = hub.subscribe();
    let state =
        ProxyState::with_timeouts(Arc::new(cfg), hub.clone(), opts.timeouts).expect("state");
    let shutdown = CancellationToken::new();
    let fwd = proxy::bind("127.0.0.1", opts.forward_port.unwrap_or(0))
        .await
        .expect("bind");
    let forward = fwd.local_addr().expect("addr");
    let mut listeners = vec![proxy::serve_forward(
        fwd,
        Arc::clone(&state),
        shutdown.clone(),
    )];
    let reverse = match opts.reverse {
        Some(route) => {
            let l = proxy::bind("127.0.0.1", opts.reverse_port.unwrap_or(0))
                .await
                .expect("bind");
            let a = l.local_addr().expect("addr");
            listeners.push(proxy::serve_reverse(
                l,
                route,
                Arc::clone(&state),
                shutdown.clone(),
            ));
            Some(a)
        }
        None => None,
    };
    TestProxy {
        forward,
        reverse,
        hub,
        state,
        home,
        events,
        shutdown,
        listeners,
    }
}

impl TestProxy {
    /// Shut the listeners down as the engine does and wait until they have
    /// drained their connections.
    pub async fn shutdown(&mut self) {
        self.shutdown.cancel();
        for l in self.listeners.drain(..) {
            let _ = l.await;
        }
    }

    /// `http://127.0.0.1:<forward port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.forward)
    }

    /// The proxy's CA certificate (clients trust it).
    pub fn ca_pem_path(&self) -> PathBuf {
        self.state.ca.cert_path()
    }

    /// The next completed flow (waits up to 10 s).
    pub async fn completed(&mut self) -> Arc<Flow> {
        self.next_event(|ev| match ev {
            FlowEvent::Completed { flow } => Some(Arc::clone(flow)),
            _ => None,
        })
        .await
    }

    /// The next event `pick` accepts (waits up to 10 s).
    pub async fn next_event<T>(&mut self, pick: impl Fn(&FlowEvent) -> Option<T>) -> T {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let ev = tokio::time::timeout_at(deadline, self.events.recv())
                .await
                .expect("timed out waiting for a flow event")
                .expect("hub closed");
            if let Some(t) = pick(&ev) {
                return t;
            }
        }
    }
}

/// A reqwest client using `proxy` for everything, trusting `ca_pems`.
pub fn client_via(proxy: &str, ca_pems: &[&std::path::Path]) -> reqwest::Client {
    let mut b = reqwest::Client::builder()
        .proxy(reqwest::Proxy::all(proxy).expect("proxy"))
        .timeout(Duration::from_secs(30));
    for p in ca_pems {
        let pem = std::fs::read(p).expect("read ca");
        b = b.add_root_certificate(reqwest::Certificate::from_pem(&pem).expect("pem"));
    }
    b.build().expect("client")
}

/// A reqwest client without a proxy.
pub fn client_direct(ca_pems: &[&std::path::Path]) -> reqwest::Client {
    let mut b = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(30));
    for p in ca_pems {
        let pem = std::fs::read(p).expect("read ca");
        b = b.add_root_certificate(reqwest::Certificate::from_pem(&pem).expect("pem"));
    }
    b.build().expect("client")
}

/// Run the real curl with `args`; returns (status ok, stdout, stderr).
pub async fn curl(args: &[&str]) -> (bool, Vec<u8>, String) {
    let out = tokio::process::Command::new("curl")
        .args(["-sS", "--max-time", "20"])
        .args(args)
        .env_remove("http_proxy")
        .env_remove("https_proxy")
        .env_remove("HTTPS_PROXY")
        .env_remove("ALL_PROXY")
        .output()
        .await
        .expect("curl runs");
    (
        out.status.success(),
        out.stdout,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Read a whole request body (test upstreams only).
pub async fn read_body(req: Request<Incoming>) -> Bytes {
    req.into_body()
        .collect()
        .await
        .map(http_body_util::Collected::to_bytes)
        .unwrap_or_default()
}
