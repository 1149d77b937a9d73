//! The upstream connection pool.
//!
//! hyper-util's pool keeps one h2 connection per origin, so every stream to an
//! origin shares one connection task (all its TLS and framing) and queues once
//! the server's `SETTINGS_MAX_CONCURRENT_STREAMS` is reached. This pool keeps,
//! per origin:
//!
//! - h2 connections, each carrying at most [`H2_STREAMS_PER_CONNECTION`]
//!   streams (fewer when the server allows fewer); a stream counts until its
//!   response body ends, so long SSE streams count too. When every connection
//!   is full, another is opened (one connect at a time per origin, so a burst
//!   does not open one connection per request).
//! - idle HTTP/1.1 connections (keep-alive), reused newest first and dropped
//!   after [`IDLE_TIMEOUT`].
//!
//! Which protocol: a client that speaks HTTP/1.1 gets an HTTP/1.1 upstream
//! (ALPN offers only `http/1.1`), one connection per in-flight request like
//! nginx's `proxy_pass`; an h2 client gets h2 when the upstream offers it.
//! Upgrade requests (WebSocket) always go over a fresh HTTP/1.1 connection
//! that is handed over after the `101` and never pooled.

use std::collections::HashMap;
use std::error::Error as StdError;
use std::future::Future as _;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, Uri, Version};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::client::conn::{http1, http2};
use hyper_rustls::MaybeHttpsStream;
use hyper_util::client::legacy::connect::{Connection, HttpInfo};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::TcpStream;

use super::clock;
use super::upstream::Connector;

/// Most streams the pool puts on one upstream h2 connection before it opens
/// another (the server's `SETTINGS_MAX_CONCURRENT_STREAMS` lowers it).
pub const H2_STREAMS_PER_CONNECTION: usize = 8;

/// An idle upstream connection (h1 idle, or h2 without streams) is closed after this.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(90);

/// Idle HTTP/1.1 connections kept per origin; more are closed.
const MAX_IDLE_PER_ORIGIN: usize = 256;

type BoxError = Box<dyn StdError + Send + Sync>;

/// Why an upstream request failed before a response head arrived.
#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    /// TCP connect, DNS or TLS failed (the cause says which).
    #[error("connect error")]
    Connect(#[source] BoxError),
    /// TCP connect and TLS handshake together took longer than the connect timeout.
    #[error("connect timed out after {}", humantime::format_duration(*.0))]
    ConnectTimeout(Duration),
    /// The HTTP handshake on a fresh connection failed.
    #[error("HTTP handshake failed")]
    Handshake(#[source] hyper::Error),
    /// Sending the request or reading the response head failed.
    #[error("request failed")]
    Request(#[source] hyper::Error),
    /// A fresh connection closed before the request could be sent.
    #[error("upstream closed the connection before the request was sent")]
    Closed,
    /// The URI has no host to connect to.
    #[error("request target {0} has no host")]
    NoHost(String),
}

/// Counters for tests and `status`.
#[derive(Debug, Default)]
pub struct PoolStats {
    /// Upstream connections opened (h1 and h2).
    pub opened: AtomicU64,
    /// Of those, h2.
    pub opened_h2: AtomicU64,
    /// Requests sent on a reused connection.
    pub reused: AtomicU64,
}

/// The pool shared by all listeners of one engine; cheap to clone.
pub struct Pool<B> {
    inner: Arc<Inner<B>>,
}

impl<B> Clone for Pool<B> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<B> std::fmt::Debug for Pool<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("opened", &self.inner.stats.opened.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

struct Inner<B> {
    /// ALPN `h2`, `http/1.1`.
    any: Connector,
    /// ALPN `http/1.1` only.
    h1: Connector,
    connect_timeout: Duration,
    streams_per_connection: usize,
    origins: Mutex<HashMap<Key, Arc<Origin<B>>>>,
    stats: PoolStats,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    https: bool,
    /// `host:port`, lowercase.
    authority: String,
    h1_only: bool,
    /// The proxy worker asking ([`super::workers::shard`]): each worker
    /// keeps its own upstream connections, so an exchange stays on its thread.
    shard: usize,
}

struct Origin<B> {
    conns: Mutex<Conns<B>>,
    /// Held while opening a connection that may turn out h2, so a burst of
    /// requests waits for it instead of each opening its own.
    connecting: tokio::sync::Mutex<()>,
}

struct Conns<B> {
    h2: Vec<Arc<H2Conn<B>>>,
    idle: Vec<IdleH1<B>>,
    /// The origin answered ALPN without h2: connects need not wait on each other.
    speaks_h1: bool,
}

struct H2Conn<B> {
    send: http2::SendRequest<B>,
    load: Arc<Load>,
    info: Option<HttpInfo>,
}

struct IdleH1<B> {
    send: http1::SendRequest<B>,
    info: Option<HttpInfo>,
    /// When it came back ([`clock::now_ms`]).
    since: u64,
}

enum Fresh<B> {
    H2(Arc<H2Conn<B>>),
    H1(http1::SendRequest<B>, Option<HttpInfo>),
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl<B> Pool<B>
where
    B: Body + Send + Unpin + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    /// A pool connecting through `any` (ALPN h2 + http/1.1) and `h1` (http/1.1 only).
    pub fn new(any: Connector, h1: Connector, connect_timeout: Duration) -> Self {
        Self::with_streams_per_connection(any, h1, connect_timeout, H2_STREAMS_PER_CONNECTION)
    }

    /// Like [`Pool::new`] with another per-connection h2 stream limit.
    pub fn with_streams_per_connection(
        any: Connector,
        h1: Connector,
        connect_timeout: Duration,
        streams_per_connection: usize,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                any,
                h1,
                connect_timeout,
                streams_per_connection: streams_per_connection.max(1),
                origins: Mutex::new(HashMap::new()),
                stats: PoolStats::default(),
            }),
        }
    }

    /// Counters.
    pub fn stats(&self) -> &PoolStats {
        &self.inner.stats
    }

    /// Send `req` (absolute URI) upstream: h2 allowed when the client spoke h2
    /// (`req.version()` is `HTTP/2.0`), HTTP/1.1 otherwise.
    pub fn request(
        &self,
        req: Request<B>,
    ) -> impl std::future::Future<Output = Result<Response<ResponseBody>, PoolError>> + Send + '_
    where
        B: Send,
    {
        // Not an `async fn`: that would wrap `send`'s future in one more
        // layer (and copy it once more) for a line of work.
        let h1_only = req.version() != Version::HTTP_2;
        self.send(req, h1_only, false)
    }

    /// Send an Upgrade request on a fresh HTTP/1.1 connection that is never
    /// pooled; `hyper::upgrade::on` the response gives the upgraded stream.
    pub async fn request_upgrade(
        &self,
        req: Request<B>,
    ) -> Result<Response<ResponseBody>, PoolError> {
        self.send(req, true, true).await
    }

    async fn send(
        &self,
        mut req: Request<B>,
        h1_only: bool,
        upgrade: bool,
    ) -> Result<Response<ResponseBody>, PoolError> {
        let key = key_of(req.uri(), h1_only)?;
        let uri = req.uri().clone();
        let origin = self.origin(&key);
        if !upgrade {
            // Reused connections may have been closed by the server meanwhile:
            // a request that never went out is retried on the next one.
            while let Some(conn) = self.checkout(&origin) {
                self.inner.stats.reused.fetch_add(1, Ordering::Relaxed);
                match conn {
                    Fresh::H2(c) => return self.send_h2(c, req).await,
                    Fresh::H1(send, info) => {
                        match self.send_h1(&origin, send, info, req, false).await {
                            Ok(resp) => return Ok(resp),
                            Err(Retry::Again(mut back)) => {
                                *back.uri_mut() = uri.clone();
                                req = back;
                            }
                            Err(Retry::Failed(e)) => return Err(e),
                        }
                    }
                }
            }
        }
        let serialise = !h1_only && !lock(&origin.conns).speaks_h1;
        let guard = if serialise {
            let g = origin.connecting.lock().await;
            if let Some(conn) = self.checkout(&origin) {
                drop(g);
                self.inner.stats.reused.fetch_add(1, Ordering::Relaxed);
                return match conn {
                    Fresh::H2(c) => self.send_h2(c, req).await,
                    Fresh::H1(send, info) => self
                        .send_h1(&origin, send, info, req, false)
                        .await
                        .map_err(Retry::into_error),
                };
            }
            Some(g)
        } else {
            None
        };
        // Boxed: the connect future (TCP, TLS, HTTP handshake) is large and
        // rare; inline, every request's future would carry its size.
        let fresh = Box::pin(self.connect(&key)).await;
        let fresh = match fresh {
            Ok(f) => f,
            Err(e) => {
                drop(guard);
                return Err(e);
            }
        };
        match fresh {
            Fresh::H2(c) => {
                lock(&origin.conns).h2.push(Arc::clone(&c));
                drop(guard);
                self.send_h2(c, req).await
            }
            Fresh::H1(send, info) => {
                if !h1_only {
                    lock(&origin.conns).speaks_h1 = true;
                }
                drop(guard);
                self.send_h1(&origin, send, info, req, upgrade)
                    .await
                    .map_err(Retry::into_error)
            }
        }
    }

    fn origin(&self, key: &Key) -> Arc<Origin<B>> {
        let mut map = lock(&self.inner.origins);
        if let Some(origin) = map.get(key) {
            return Arc::clone(origin);
        }
        Arc::clone(map.entry(key.clone()).or_insert_with(|| {
            Arc::new(Origin {
                conns: Mutex::new(Conns {
                    h2: Vec::new(),
                    idle: Vec::new(),
                    speaks_h1: false,
                }),
                connecting: tokio::sync::Mutex::new(()),
            })
        }))
    }

    /// A live connection with room: the least busy h2 one, else the newest idle h1 one.
    fn checkout(&self, origin: &Origin<B>) -> Option<Fresh<B>> {
        let now = clock::now_ms();
        let idle_ms = IDLE_TIMEOUT.as_millis() as u64;
        let mut conns = lock(&origin.conns);
        conns.h2.retain(|c| {
            let idle = c.load.in_flight.load(Ordering::Relaxed) == 0
                && now.saturating_sub(c.load.last_used.load(Ordering::Relaxed)) > idle_ms;
            !c.send.is_closed() && !idle
        });
        let best = conns
            .h2
            .iter()
            .filter(|c| c.load.in_flight.load(Ordering::Relaxed) < self.limit(c))
            .min_by_key(|c| c.load.in_flight.load(Ordering::Relaxed));
        if let Some(c) = best {
            c.load.in_flight.fetch_add(1, Ordering::Relaxed);
            return Some(Fresh::H2(Arc::clone(c)));
        }
        // Newest first. A connection is handed back as soon as its response
        // body ended; one that is not ready yet (hyper still finishing it, or
        // still sending a request body the server answered early) stays for
        // later instead of making this request wait behind it.
        let mut i = conns.idle.len();
        while i > 0 {
            i -= 1;
            let c = &conns.idle[i];
            if now.saturating_sub(c.since) > idle_ms || c.send.is_closed() {
                conns.idle.remove(i);
            } else if c.send.is_ready() {
                let c = conns.idle.remove(i);
                return Some(Fresh::H1(c.send, c.info));
            }
        }
        None
    }

    fn limit(&self, c: &H2Conn<B>) -> usize {
        let server = c.load.server_max.load(Ordering::Relaxed);
        let server = if server == 0 { usize::MAX } else { server };
        self.inner.streams_per_connection.min(server)
    }

    async fn connect(&self, key: &Key) -> Result<Fresh<B>, PoolError> {
        let connector = if key.h1_only {
            self.inner.h1.clone()
        } else {
            self.inner.any.clone()
        };
        let target = connect_uri(key)?;
        let io = tokio::time::timeout(self.inner.connect_timeout, call(connector, target))
            .await
            .map_err(|_| PoolError::ConnectTimeout(self.inner.connect_timeout))?
            .map_err(PoolError::Connect)?;
        let connected = io.connected();
        let mut ext = http::Extensions::new();
        connected.get_extras(&mut ext);
        let info = ext.get::<HttpInfo>().cloned();
        self.inner.stats.opened.fetch_add(1, Ordering::Relaxed);
        if connected.is_negotiated_h2() {
            self.inner.stats.opened_h2.fetch_add(1, Ordering::Relaxed);
            let (send, conn) = http2::Builder::new(TokioExecutor::new())
                .timer(TokioTimer::new())
                .adaptive_window(true)
                .handshake(io)
                .await
                .map_err(PoolError::Handshake)?;
            let load = Arc::new(Load {
                in_flight: AtomicUsize::new(1),
                last_used: AtomicU64::new(clock::now_ms()),
                server_max: AtomicUsize::new(usize::MAX),
            });
            let watched = Arc::clone(&load);
            tokio::spawn(async move {
                let mut conn = std::pin::pin!(conn);
                // Each poll may have processed a SETTINGS frame: keep the
                // server's stream limit where checkout can read it.
                let ended = futures::future::poll_fn(|cx| {
                    let polled = conn.as_mut().poll(cx);
                    watched
                        .server_max
                        .store(conn.current_max_send_streams(), Ordering::Relaxed);
                    polled
                })
                .await;
                if let Err(e) = ended {
                    tracing::debug!(error = %e, "upstream h2 connection ended");
                }
            });
            return Ok(Fresh::H2(Arc::new(H2Conn { send, load, info })));
        }
        let (send, conn) = http1::Builder::new()
            .handshake(io)
            .await
            .map_err(PoolError::Handshake)?;
        tokio::spawn(async move {
            if let Err(e) = conn.with_upgrades().await {
                tracing::debug!(error = %e, "upstream connection ended");
            }
        });
        Ok(Fresh::H1(send, info))
    }

    async fn send_h2(
        &self,
        conn: Arc<H2Conn<B>>,
        mut req: Request<B>,
    ) -> Result<Response<ResponseBody>, PoolError> {
        *req.version_mut() = Version::HTTP_2;
        let guard = StreamGuard {
            load: Arc::clone(&conn.load),
        };
        let mut send = conn.send.clone();
        let resp = send.send_request(req).await.map_err(PoolError::Request)?;
        Ok(wrap(resp, conn.info.as_ref(), Some(Release::Stream(guard))))
    }

    async fn send_h1(
        &self,
        origin: &Arc<Origin<B>>,
        mut send: http1::SendRequest<B>,
        info: Option<HttpInfo>,
        mut req: Request<B>,
        upgrade: bool,
    ) -> Result<Response<ResponseBody>, Retry<B>> {
        *req.version_mut() = Version::HTTP_11;
        origin_form(&mut req);
        let resp = match send.try_send_request(req).await {
            Ok(r) => r,
            Err(mut e) => {
                return Err(match e.take_message() {
                    Some(back) => Retry::Again(back),
                    None => Retry::Failed(PoolError::Request(e.into_error())),
                })
            }
        };
        let release = if upgrade {
            None
        } else {
            // Back to the idle list once the response body has been read
            // (by the body itself: no task per request waits for it).
            let origin = Arc::clone(origin);
            let back = info.clone();
            Some(Release::Idle(Box::new(move || {
                let mut conns = lock(&origin.conns);
                if conns.idle.len() < MAX_IDLE_PER_ORIGIN {
                    conns.idle.push(IdleH1 {
                        send,
                        info: back,
                        since: clock::now_ms(),
                    });
                }
            })))
        };
        Ok(wrap(resp, info.as_ref(), release))
    }
}

enum Retry<B> {
    /// Not sent (the reused connection was gone): try another.
    Again(Request<B>),
    Failed(PoolError),
}

impl<B> Retry<B> {
    fn into_error(self) -> PoolError {
        match self {
            Self::Again(_) => PoolError::Closed,
            Self::Failed(e) => e,
        }
    }
}

/// In-flight streams of one h2 connection, and when the last one ended.
#[derive(Debug, Default)]
struct Load {
    in_flight: AtomicUsize,
    /// When the last stream ended ([`clock::now_ms`]).
    last_used: AtomicU64,
    /// The server's `SETTINGS_MAX_CONCURRENT_STREAMS`, as last seen.
    server_max: AtomicUsize,
}

/// Releases a stream slot of its h2 connection when the response ends.
#[derive(Debug)]
struct StreamGuard {
    load: Arc<Load>,
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        self.load.in_flight.fetch_sub(1, Ordering::Relaxed);
        self.load
            .last_used
            .store(clock::now_ms(), Ordering::Relaxed);
    }
}

/// What a response gives back when its body has been read.
enum Release {
    /// An h2 stream slot (also released when the body is dropped early).
    Stream(StreamGuard),
    /// An HTTP/1.1 connection, back to the idle list; only once the body
    /// has ended: a connection left mid-body is dropped (hyper closes it).
    Idle(Box<dyn FnOnce() + Send>),
}

impl Release {
    fn done(self) {
        match self {
            Self::Stream(slot) => drop(slot),
            Self::Idle(back) => back(),
        }
    }
}

/// An upstream response body: the connection's stream slot, or the
/// connection itself, is released when it ends.
pub struct ResponseBody {
    inner: Incoming,
    release: Option<Release>,
}

impl ResponseBody {
    /// Release what the response holds, if its body has ended.
    fn release_if_ended(&mut self, ended: bool) {
        if ended || self.inner.is_end_stream() {
            if let Some(r) = self.release.take() {
                r.done();
            }
        }
    }
}

impl Drop for ResponseBody {
    fn drop(&mut self) {
        // Not ended: `release` drops with the body (the stream slot freed,
        // the connection closed).
        self.release_if_ended(false);
    }
}

impl std::fmt::Debug for ResponseBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseBody")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Err(_))) => self.release = None,
            Poll::Ready(None) => self.release_if_ended(true),
            _ => self.release_if_ended(false),
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

fn wrap(
    resp: Response<Incoming>,
    info: Option<&HttpInfo>,
    release: Option<Release>,
) -> Response<ResponseBody> {
    let (mut parts, inner) = resp.into_parts();
    if let Some(info) = info {
        parts.extensions.insert(info.clone());
    }
    let mut body = ResponseBody { inner, release };
    body.release_if_ended(false);
    Response::from_parts(parts, body)
}

fn key_of(uri: &Uri, h1_only: bool) -> Result<Key, PoolError> {
    let https = matches!(uri.scheme_str(), Some("https" | "wss"));
    let host = uri
        .host()
        .filter(|h| !h.is_empty())
        .ok_or_else(|| PoolError::NoHost(uri.to_string()))?;
    let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
    // Built in place (one allocation, no formatting): once per request.
    let mut authority = String::with_capacity(host.len() + 6);
    authority.push_str(host);
    authority.make_ascii_lowercase();
    authority.push(':');
    push_decimal(&mut authority, port);
    Ok(Key {
        https,
        authority,
        h1_only: h1_only || !https,
        shard: super::workers::shard(),
    })
}

/// `n` in decimal at the end of `s`.
fn push_decimal(s: &mut String, n: u16) {
    let mut digits = [0u8; 5];
    let mut i = digits.len();
    let mut n = n;
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    for &d in &digits[i..] {
        s.push(char::from(d));
    }
}

/// The URI handed to the connector: `https://host:port/` or `http://host:port/`.
fn connect_uri(key: &Key) -> Result<Uri, PoolError> {
    let scheme = if key.https { "https" } else { "http" };
    format!("{scheme}://{}/", key.authority)
        .parse()
        .map_err(|_| PoolError::NoHost(key.authority.clone()))
}

/// HTTP/1.1 to an origin sends origin-form (`/path?query`) with a `Host` header.
fn origin_form(req: &mut Request<impl Sized>) {
    let uri = req.uri().clone();
    if !req.headers().contains_key(http::header::HOST) {
        if let Some(auth) = uri.authority() {
            let default = matches!(uri.scheme_str(), Some("https" | "wss"))
                && auth.port_u16() == Some(443)
                || matches!(uri.scheme_str(), Some("http" | "ws")) && auth.port_u16() == Some(80);
            let host = if default { auth.host() } else { auth.as_str() };
            if let Ok(v) = http::HeaderValue::from_str(host) {
                req.headers_mut().insert(http::header::HOST, v);
            }
        }
    }
    let pq = uri
        .path_and_query()
        .map_or("/", http::uri::PathAndQuery::as_str);
    if let Ok(origin) = pq.parse() {
        *req.uri_mut() = origin;
    }
}

async fn call(
    mut connector: Connector,
    uri: Uri,
) -> Result<MaybeHttpsStream<TokioIo<TcpStream>>, BoxError> {
    futures::future::poll_fn(|cx| tower_service::Service::<Uri>::poll_ready(&mut connector, cx))
        .await?;
    tower_service::Service::<Uri>::call(&mut connector, uri).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_normalise_origin() {
        let k = key_of(&"https://API.example.com/v1".parse().expect("uri"), false).expect("key");
        assert_eq!(k.authority, "api.example.com:443");
        assert!(k.https && !k.h1_only);
        let k = key_of(&"http://h:8080/".parse().expect("uri"), false).expect("key");
        assert!(!k.https && k.h1_only, "plain http is always HTTP/1.1");
        assert!(key_of(&"/relative".parse().expect("uri"), true).is_err());
        for port in [1u16, 9, 10, 80, 8080, 65_535] {
            let uri: Uri = format!("http://[::1]:{port}/").parse().expect("uri");
            let k = key_of(&uri, true).expect("key");
            assert_eq!(k.authority, format!("[::1]:{port}"));
        }
    }

    #[test]
    fn origin_form_sets_host_and_path() {
        let mut req = Request::new(());
        *req.uri_mut() = "https://h.test:8443/a?b=1".parse().expect("uri");
        origin_form(&mut req);
        assert_eq!(req.uri().to_string(), "/a?b=1");
        assert_eq!(req.headers()["host"], "h.test:8443");
        let mut req = Request::new(());
        *req.uri_mut() = "http://h.test/".parse().expect("uri");
        origin_form(&mut req);
        assert_eq!(req.headers()["host"], "h.test");
    }
}
