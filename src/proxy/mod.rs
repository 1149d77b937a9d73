//! The listeners: forward (absolute-form, CONNECT with TLS interception,
//! origin-form) and reverse (origin-form to a configured upstream).
//!
//! ```text
//! accept ─▶ serve_connection (head::first, then hyper auto: h1/h2) ─▶ forward::handle
//!              │ CONNECT ─▶ connect::establish ─▶ peek ─▶ TLS (our CA) or plain ─▶ serve_connection
//!              └ otherwise ─▶ exchange::proxy ─▶ upstream client (pooled, h2/h1 by ALPN)
//!                              bodies teed (body.rs) into a Record (record.rs) ─▶ FlowHub
//! ```

pub mod body;
pub mod ca;
pub mod connect;
pub mod exchange;
pub mod forward;
pub mod head;
pub mod pool;
pub mod record;
pub mod reverse;
pub mod upstream;
pub mod websocket;

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::config::Config;
use crate::flow::FlowHub;

pub use upstream::Timeouts;

use exchange::Conn;

/// Errors starting or running a listener.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// The port is taken.
    #[error("{addr} is already in use: stop what listens there or choose another port (--port, or the config)")]
    AddrInUse { addr: String },
    /// Any other bind failure.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: String,
        source: std::io::Error,
    },
    /// Certificate authority or TLS setup failed.
    #[error("{0}")]
    Tls(String),
}

/// Where the reverse listener sends origin-form requests.
#[derive(Debug, Clone, PartialEq)]
pub enum ReverseRoute {
    /// Everything to one base URL (gateway, or `ccproxy.upstream`).
    Fixed(String),
    /// Direct mode: `/v1/messages` → anthropic, `/v1/chat/completions` and `/v1/responses` → openai.
    Providers { anthropic: String, openai: String },
}

/// Shared by every listener of one engine: config, hub, CA, upstream connection pool.
pub struct ProxyState {
    pub config: Arc<Config>,
    pub hub: FlowHub,
    /// Signs the leaf certificates shown to intercepted clients.
    pub ca: Arc<ca::CertAuthority>,
    /// The pooled upstream client (keep-alive, h2 multiplexing).
    pub client: upstream::UpstreamClient,
    /// Upstream connect and response-head limits.
    pub timeouts: Timeouts,
}

impl ProxyState {
    /// Build the state (loads or creates the CA, builds the upstream TLS config).
    pub fn new(config: Arc<Config>, hub: FlowHub) -> Result<Arc<Self>, ProxyError> {
        Self::with_timeouts(config, hub, Timeouts::default())
    }

    /// Like [`ProxyState::new`] with explicit upstream timeouts (tests, tuning).
    pub fn with_timeouts(
        config: Arc<Config>,
        hub: FlowHub,
        timeouts: Timeouts,
    ) -> Result<Arc<Self>, ProxyError> {
        let ca = ca::CertAuthority::load_or_create(&config)
            .map_err(|e| ProxyError::Tls(e.to_string()))?;
        let client = upstream::build_client(&config.mitm, timeouts)?;
        Ok(Arc::new(Self {
            config,
            hub,
            ca,
            client,
            timeouts,
        }))
    }
}

/// Bind a listener with a clear error when the port is taken.
pub async fn bind(host: &str, port: u16) -> Result<TcpListener, ProxyError> {
    let addr = format!("{host}:{port}");
    TcpListener::bind(&addr).await.map_err(|source| {
        if source.kind() == std::io::ErrorKind::AddrInUse {
            ProxyError::AddrInUse { addr }
        } else {
            ProxyError::Bind { addr, source }
        }
    })
}

/// Serve the forward proxy on `listener` until `shutdown`.
pub fn serve_forward(
    listener: TcpListener,
    state: Arc<ProxyState>,
    shutdown: CancellationToken,
) -> JoinHandle<()> {
    tokio::spawn(accept_loop(listener, state, None, shutdown))
}

/// Serve the reverse proxy on `listener` until `shutdown`.
pub fn serve_reverse(
    listener: TcpListener,
    route: ReverseRoute,
    state: Arc<ProxyState>,
    shutdown: CancellationToken,
) -> JoinHandle<()> {
    tokio::spawn(accept_loop(
        listener,
        state,
        Some(Arc::new(route)),
        shutdown,
    ))
}

/// How long open connections get to finish after shutdown before they are dropped.
const DRAIN_GRACE: Duration = Duration::from_secs(5);

async fn accept_loop(
    listener: TcpListener,
    state: Arc<ProxyState>,
    reverse: Option<Arc<ReverseRoute>>,
    shutdown: CancellationToken,
) {
    let kind = if reverse.is_some() {
        "reverse"
    } else {
        "forward"
    };
    let tracker = TaskTracker::new();
    loop {
        let accepted = tokio::select! {
            biased;
            () = shutdown.cancelled() => break,
            r = listener.accept() => r,
        };
        let (stream, client) = match accepted {
            Ok(x) => x,
            Err(e) => {
                // Out of file descriptors and the like: back off, keep accepting.
                tracing::warn!(listener = kind, error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let conn = Arc::new(Conn {
            client,
            reverse: reverse.clone(),
            tunnel: None,
            tls: false,
            shutdown: shutdown.clone(),
        });
        let span = tracing::debug_span!("conn", listener = kind, client = %client);
        tracker.spawn(serve_connection(stream, Arc::clone(&state), conn).instrument(span));
    }
    tracker.close();
    let _ = tokio::time::timeout(DRAIN_GRACE, tracker.wait()).await;
}

/// Serve HTTP/1.1 or h2 on one client connection until it closes or shutdown.
pub(crate) async fn serve_connection<I>(io: I, state: Arc<ProxyState>, conn: Arc<Conn>)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let shutdown = conn.shutdown.clone();
    // The first head is read here so an oversize one gets a 400 with a reason.
    let pre = tokio::select! {
        r = head::first(io) => r,
        () = shutdown.cancelled() => return,
    };
    let io = match pre {
        Ok(head::Head::Serve(io)) => io,
        Ok(head::Head::Closed | head::Head::Rejected) => return,
        Err(e) => {
            tracing::debug!(error = %e, "connection ended before a request head");
            return;
        }
    };
    let svc_conn = Arc::clone(&conn);
    let svc = service_fn(move |req| {
        let state = Arc::clone(&state);
        let conn = Arc::clone(&svc_conn);
        async move { Ok::<_, Infallible>(forward::handle(state, conn, req).await) }
    });
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http1().max_buf_size(256 * 1024);
    builder.http2().max_concurrent_streams(256);
    let served = builder.serve_connection_with_upgrades(TokioIo::new(io), svc);
    tokio::pin!(served);
    let result = tokio::select! {
        r = served.as_mut() => r,
        () = shutdown.cancelled() => {
            served.as_mut().graceful_shutdown();
            served.await
        }
    };
    if let Err(e) = result {
        tracing::debug!(error = %e, "connection ended with an error");
    }
}
