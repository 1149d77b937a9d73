//! The listeners: forward (absolute-form, CONNECT with TLS interception,
//! origin-form) and reverse (origin-form to a configured upstream).

pub mod ca;

use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::flow::FlowHub;

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
}

impl ProxyState {
    /// Build the state (loads or creates the CA, builds the upstream TLS config).
    pub fn new(config: Arc<Config>, hub: FlowHub) -> Result<Arc<Self>, ProxyError> {
        Ok(Arc::new(Self { config, hub }))
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
    let _ = (listener, state);
    tokio::spawn(async move { shutdown.cancelled().await })
}

/// Serve the reverse proxy on `listener` until `shutdown`.
pub fn serve_reverse(
    listener: TcpListener,
    route: ReverseRoute,
    state: Arc<ProxyState>,
    shutdown: CancellationToken,
) -> JoinHandle<()> {
    let _ = (listener, route, state);
    tokio::spawn(async move { shutdown.cancelled().await })
}

/// Stand-in until the `proxy` branch lands (the merge takes theirs): one line per completed flow on stderr.
pub fn spawn_flow_log(hub: &FlowHub, shutdown: CancellationToken) -> JoinHandle<()> {
    let mut rx = hub.subscribe();
    tokio::spawn(async move {
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                ev = rx.recv() => match ev {
                    Ok(ev) => {
                        if let crate::flow::FlowEvent::Completed { flow } = &*ev {
                            eprintln!("{} {} {} {:?}", flow.traffic_type, flow.method, flow.url, flow.status_code);
                        }
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                    Err(_) => return,
                },
            }
        }
    })
}
