//! The listeners: forward (absolute-form, CONNECT with TLS interception,
//! origin-form) and reverse (origin-form to a configured upstream).
//!
//! ```text
//! accept ─▶ serve_connection (park: hyper h1 while busy, parked while idle; h2 by preface) ─▶ forward::handle
//!              │ CONNECT ─▶ connect::establish ─▶ peek ─▶ TLS (our CA) or plain ─▶ serve_connection
//!              └ otherwise ─▶ exchange::proxy ─▶ upstream client (pooled, h2/h1 by ALPN)
//!                              bodies teed (body.rs) into a Record (record.rs) ─▶ FlowHub
//! ```

pub mod auth;
pub mod body;
pub mod ca;
mod clock;
pub mod connect;
pub mod exchange;
pub mod forward;
pub mod head;
pub mod limits;
mod park;
pub mod pool;
pub mod record;
pub mod reverse;
pub mod upstream;
pub mod websocket;
pub mod workers;

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::HeaderValue;
use http_body::{Body, Frame, SizeHint};

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::config::Config;
use crate::flow::FlowHub;

pub use park::PARK_AFTER;
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
    /// `proxy_auth` is on and the token file cannot be made or read.
    #[error("proxy token {path}: {source}")]
    Token {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
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
    /// What is redacted in every captured flow (`redact_headers`, `redact_query`).
    pub redactor: Arc<crate::capture::redact::Redactor>,
    /// `proxy_auth`: the token every client must present (see [`auth`]).
    pub token: Option<String>,
    /// Every open client connection, for `max_connections`.
    pub connections: Arc<limits::Connections>,
    /// Where client connections are served: one runtime per core, or (with
    /// `durability: spool-first`, whose fsync wait blocks the thread that
    /// ends a response) the caller's work-stealing runtime.
    pub workers: Option<&'static workers::Workers>,
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
        let redactor = Arc::new(crate::capture::redact::Redactor::new(
            &config.mitm.redact_headers,
            &config.mitm.redact_query,
        ));
        let token = if config.mitm.proxy_auth {
            let path = crate::home::Home::new(&config).proxy_token();
            Some(auth::load_or_create(&path).map_err(|source| ProxyError::Token { path, source })?)
        } else {
            None
        };
        let fd_limit = limits::raise_fd_limit();
        let max = config
            .mitm
            .max_connections
            .unwrap_or_else(|| limits::default_max_connections(fd_limit));
        tracing::debug!(max_connections = max, fd_limit, "connection cap");
        let workers = match config.mitm.durability {
            crate::config::Durability::Batch => workers::Workers::get(),
            crate::config::Durability::SpoolFirst => None,
        };
        Ok(Arc::new(Self {
            config,
            hub,
            ca,
            client,
            timeouts,
            redactor,
            token,
            connections: limits::Connections::new(max),
            workers,
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
pub const DRAIN_GRACE: Duration = Duration::from_secs(5);

/// A listener's tasks: its connections and the tunnels they open. Shutdown
/// waits for them for [`DRAIN_GRACE`], then drops what is left.
#[derive(Debug, Clone)]
pub struct Tasks {
    tracker: TaskTracker,
    abandon: Arc<Abandon>,
}

/// Set when a listener's drain grace is over: its tasks end at their next poll.
#[derive(Debug, Default)]
struct Abandon {
    set: std::sync::atomic::AtomicBool,
    /// Wakes the tasks waiting when it is set.
    wake: Arc<tokio::sync::Notify>,
}

impl Abandon {
    fn is_set(&self) -> bool {
        self.set.load(std::sync::atomic::Ordering::Acquire)
    }

    fn set(&self) {
        self.set.store(true, std::sync::atomic::Ordering::Release);
        self.wake.notify_waiters();
    }
}

impl Tasks {
    fn new() -> Self {
        Self {
            tracker: TaskTracker::new(),
            abandon: Arc::default(),
        }
    }

    /// Spawn `fut` on the current runtime as one of these tasks (on a
    /// worker, counted against it while it runs).
    pub fn spawn<F>(&self, fut: F)
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        self.tracker
            .spawn(self.abandoning(workers::Holding::new(fut, workers::hold())));
    }

    /// `fut`, counted as one of these tasks and dropped once the grace is over.
    fn abandoning<F>(&self, fut: F) -> impl std::future::Future<Output = ()> + Send + 'static
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        self.tracker.track_future(Abandoning {
            fut,
            woken: Arc::clone(&self.abandon.wake).notified_owned(),
            abandon: Arc::clone(&self.abandon),
            registered: None,
        })
    }

    /// Stop taking tasks, wait up to `grace` for them, then drop the rest.
    async fn drain(&self, grace: Duration) {
        self.tracker.close();
        let _ = tokio::time::timeout(grace, self.tracker.wait()).await;
        self.abandon.set();
    }
}

pin_project_lite::pin_project! {
    /// `fut` until it ends or its listener abandons it (a named future, not
    /// an `async` block with `select!`, so the future is stored once).
    ///
    /// It is polled at every wake-up of a connection's task, on every worker,
    /// so it reads a flag: polling the shared wake-up (a `Notify`, as a
    /// `CancellationToken` is) takes its lock, shared by all the listener's
    /// connections. That is done only while the waker it holds is not this
    /// poll's (the first poll, or a task that moved).
    struct Abandoning<F> {
        #[pin]
        fut: F,
        #[pin]
        woken: tokio::sync::futures::OwnedNotified,
        abandon: Arc<Abandon>,
        registered: Option<std::task::Waker>,
    }
}

impl<F: std::future::Future<Output = ()>> std::future::Future for Abandoning<F> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let me = self.project();
        if me.fut.poll(cx).is_ready() || me.abandon.is_set() {
            return Poll::Ready(());
        }
        if me
            .registered
            .as_ref()
            .is_some_and(|w| w.will_wake(cx.waker()))
        {
            return Poll::Pending;
        }
        // Created before the drain could set it, so a wake-up sent before
        // this first poll is not missed.
        if me.woken.poll(cx).is_ready() {
            return Poll::Ready(());
        }
        *me.registered = Some(cx.waker().clone());
        Poll::Pending
    }
}

/// One listening socket, as its connections know it.
#[derive(Debug)]
pub struct Listener {
    /// `forward` or `reverse`.
    pub kind: &'static str,
    /// Where it listens (a request to it is a loop).
    pub addr: SocketAddr,
    /// The `via` entry it adds upstream; seeing it again means a loop.
    pub via: HeaderValue,
}

impl Listener {
    fn new(kind: &'static str, addr: SocketAddr) -> Self {
        let tag = uuid::Uuid::new_v4().simple().to_string();
        let via = HeaderValue::from_str(&format!("1.1 ccproxy-{kind}-{}", &tag[..8]))
            .unwrap_or_else(|_| HeaderValue::from_static("1.1 ccproxy"));
        Self { kind, addr, via }
    }

    /// True when `via` (a request's header) already names this listener.
    pub fn seen_in(&self, headers: &http::HeaderMap) -> bool {
        let me = self.via.as_bytes().get(4..).unwrap_or_default();
        headers.get_all(http::header::VIA).iter().any(|v| {
            v.as_bytes()
                .split(|b| *b == b',')
                .any(|entry| entry.trim_ascii().ends_with(me))
        })
    }
}

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
    let addr = listener
        .local_addr()
        .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
    let me = Arc::new(Listener::new(kind, addr));
    let tasks = Tasks::new();
    let mut failures = limits::AcceptErrors::default();
    loop {
        let accepted = tokio::select! {
            biased;
            () = shutdown.cancelled() => break,
            r = listener.accept() => r,
        };
        let (stream, client) = match accepted {
            Ok(x) => x,
            Err(e) => {
                // Out of file descriptors and the like: make room by closing
                // an idle connection, back off, keep accepting; one log line
                // a second at most.
                let shed = state.connections.shed();
                if let Some(n) = failures.record() {
                    tracing::warn!(
                        listener = kind,
                        error = %e,
                        failures = n,
                        open = state.connections.len(),
                        "accept failed (raise the open-file limit or lower ccproxy.mitm.max_connections)"
                    );
                }
                let pause = if shed { 5 } else { 50 };
                tokio::time::sleep(Duration::from_millis(pause)).await;
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
            slot: Arc::new(state.connections.admit()),
            listener: Arc::clone(&me),
            tasks: tasks.clone(),
        });
        let span = tracing::debug_span!("conn", listener = kind, client = %client);
        let Some(workers) = state.workers else {
            tasks.spawn(first_bytes_then_serve(stream, Arc::clone(&state), conn).instrument(span));
            continue;
        };
        // Move the socket to a worker: out of this runtime's reactor here,
        // into the worker's there (`from_std` runs on the worker).
        let std_stream = match stream.into_std() {
            Ok(s) => s,
            Err(e) => {
                tracing::debug!(listener = kind, error = %e, "cannot hand the connection to a worker");
                continue;
            }
        };
        let state = Arc::clone(&state);
        workers.spawn(
            tasks.abandoning(
                async move {
                    match TcpStream::from_std(std_stream) {
                        Ok(stream) => first_bytes_then_serve(stream, state, conn).await,
                        Err(e) => tracing::debug!(error = %e, "cannot register the connection"),
                    }
                }
                .instrument(span),
            ),
        );
    }
    tasks.drain(DRAIN_GRACE).await;
}

/// Wait (cheaply: no buffers yet) for a new connection's first bytes, then serve it.
async fn first_bytes_then_serve(stream: TcpStream, state: Arc<ProxyState>, conn: Arc<Conn>) {
    let accepted = Instant::now();
    let wait = state.config.mitm.timeouts.request_head;
    let ready = tokio::select! {
        r = tokio::time::timeout(wait, stream.readable()) => matches!(r, Ok(Ok(()))),
        () = conn.slot.state().evicted() => false,
        () = conn.shutdown.cancelled() => false,
    };
    if ready {
        serve_connection(stream, state, conn, accepted).await;
    }
}

/// Serve HTTP/1.1 or h2 on one client connection until it closes, idles out,
/// is evicted (connection cap) or shutdown.
pub(crate) async fn serve_connection<I>(
    io: I,
    state: Arc<ProxyState>,
    conn: Arc<Conn>,
    accepted: Instant,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    park::serve(io, state, conn, accepted).await;
}

/// A response body that keeps its exchange counted as in flight on the
/// connection until hyper has sent (or dropped) it.
struct Tracked {
    body: body::ProxyBody,
    _in_flight: limits::InFlight,
}

impl Body for Tracked {
    type Data = Bytes;
    type Error = body::BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, body::BoxError>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_abandonable_task_stores_its_future_once() {
        let tasks = Tasks::new();
        let inner = std::mem::size_of_val(&workers::tests::big_future());
        let tracked = std::mem::size_of_val(&tasks.abandoning(workers::tests::big_future()));
        // A `select!` between the future and the token inside an `async`
        // block measured twice the inner future.
        assert!(
            tracked <= inner + 256,
            "inner {inner} B, tracked {tracked} B"
        );
    }

    /// Sets its flag when dropped.
    struct Dropped(Arc<std::sync::atomic::AtomicBool>);

    impl Drop for Dropped {
        fn drop(&mut self) {
            self.0.store(true, std::sync::atomic::Ordering::Relaxed);
        }
    }

    #[tokio::test]
    async fn an_abandoned_task_is_dropped_and_a_finished_one_ends() {
        let tasks = Tasks::new();
        let done = tokio::spawn(tasks.abandoning(workers::tests::big_future()));
        done.await.expect("a finished task ends");

        let dropped = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let held =
            workers::Holding::new(std::future::pending::<()>(), Dropped(Arc::clone(&dropped)));
        let task = tokio::spawn(tasks.abandoning(held));
        tokio::task::yield_now().await;
        assert!(!dropped.load(std::sync::atomic::Ordering::Relaxed));
        tasks.abandon.set();
        task.await.expect("task");
        assert!(dropped.load(std::sync::atomic::Ordering::Relaxed));
    }
}
