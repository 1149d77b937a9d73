//! A client connection served by hyper while it is busy, and parked without
//! hyper's buffers while it idles between requests.
//!
//! hyper keeps an 8 KiB read buffer and an 8 KiB write buffer for the whole
//! life of an HTTP/1 connection, so thousands of idle keep-alive connections
//! (agents keep theirs open between turns) would hold their buffers for
//! nothing. Once a connection has been idle for [`PARK_AFTER`], hyper is
//! asked to end it (an idle connection ends without writing a byte), hands
//! back the socket and any bytes it read ahead, and the connection waits for
//! its next request holding only the socket and its [`Guard`]; the next
//! request gets a new hyper connection. A busy connection never parks, so
//! the hot path is hyper's own.
//!
//! A connection parks only where that is exact: nothing was upgraded and the
//! [`Guard`] confirms hyper stopped where a request ended. Otherwise it
//! closes. An h2 connection (by its preface) is served by hyper's h2 server
//! for its whole life.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use http::{Request, Response};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};

use super::exchange::Conn;
use super::head::{self, Guard};
use super::{forward, ProxyState, Tracked};

/// The start of the h2 connection preface.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0";

/// The most a parked connection reads when its next request arrives (hyper
/// reads the rest).
const PARK_READ: usize = 4096;

/// How long a kept-alive connection waits idle in hyper (with its buffers)
/// before it parks.
pub const PARK_AFTER: Duration = Duration::from_millis(100);

/// How long a close after the last exchange may take (a TLS close_notify).
const CLOSE_WAIT: Duration = Duration::from_secs(1);

/// Largest hyper read buffer (a head over [`head::MAX_HEAD`] never gets here).
const MAX_BUF: usize = 256 * 1024;

/// Serve one client connection until it closes, idles out, is evicted or
/// shutdown.
pub(crate) async fn serve<I>(io: I, state: Arc<ProxyState>, conn: Arc<Conn>, accepted: Instant)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let slot = Arc::clone(conn.slot.state());
    let rules = head::HeadRules {
        request_head: state.config.mitm.timeouts.request_head,
    };
    let guard = Guard::new(io, Arc::clone(&slot), rules, conn.client, accepted);
    let mut io = Rewind {
        guard,
        prefix: Bytes::new(),
        park: Arc::new(AtomicBool::new(false)),
    };
    let idle = state.config.mitm.timeouts.idle_keepalive;
    let mut first = true;
    loop {
        if io.prefix.is_empty() {
            let _parked = (!first).then(|| state.connections.park());
            let left = idle.saturating_sub(slot.idle_for().unwrap_or_default());
            let read = tokio::select! {
                r = read_some(&mut io.guard) => r,
                () = conn.shutdown.cancelled() => return Box::pin(close(io)).await,
                () = slot.evicted() => {
                    tracing::debug!("max_connections reached: closing this idle connection");
                    return Box::pin(close(io)).await;
                }
                () = tokio::time::sleep(left), if !first => {
                    tracing::debug!("idle_keepalive reached: closing");
                    return Box::pin(close(io)).await;
                }
            };
            match read {
                Ok(b) if !b.is_empty() => io.prefix = b,
                _ => return,
            }
        }
        if first {
            first = false;
            match Box::pin(sniff_h2(&mut io)).await {
                // Boxed, like `serve_h1`: a parked connection's task keeps
                // only what it needs while it waits.
                Some(true) => return Box::pin(serve_h2(io, state, conn)).await,
                Some(false) => {}
                None => return,
            }
        }
        let Some(back) = Box::pin(serve_h1(io, &state, &conn)).await else {
            return;
        };
        io = back;
    }
}

/// Serve HTTP/1 requests until the connection closes, or has been idle for
/// [`PARK_AFTER`]; the I/O back when it parks.
async fn serve_h1<I>(io: Rewind<I>, state: &Arc<ProxyState>, conn: &Arc<Conn>) -> Option<Rewind<I>>
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let park = Arc::clone(&io.park);
    park.store(false, Ordering::Relaxed);
    let slot = conn.slot.state();
    let idle = state.config.mitm.timeouts.idle_keepalive;
    let svc = service(Arc::clone(state), Arc::clone(conn));
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder.max_buf_size(MAX_BUF);
    // Boxed: the parked connection's future must not keep room for it.
    let mut served = Box::new(
        builder
            .serve_connection(TokioIo::new(io), svc)
            .with_upgrades(),
    );
    let watchdog = tokio::time::sleep(PARK_AFTER.min(idle));
    tokio::pin!(watchdog);
    let mut closing = false;
    let result = loop {
        tokio::select! {
            r = Pin::new(&mut *served) => break r,
            () = conn.shutdown.cancelled(), if !closing => {
                closing = true;
                park.store(false, Ordering::Relaxed);
                Pin::new(&mut *served).graceful_shutdown();
            }
            () = slot.evicted(), if !closing => {
                tracing::debug!("max_connections reached: closing this idle connection");
                closing = true;
                park.store(false, Ordering::Relaxed);
                Pin::new(&mut *served).graceful_shutdown();
            }
            () = &mut watchdog, if !closing => {
                let now = tokio::time::Instant::now();
                match slot.idle_for() {
                    Some(d) if d >= idle => {
                        tracing::debug!("idle_keepalive reached: closing");
                        closing = true;
                        Pin::new(&mut *served).graceful_shutdown();
                    }
                    Some(d) if d >= PARK_AFTER => {
                        // Idle between requests: hyper closes its side
                        // without writing, and hands the socket back.
                        closing = true;
                        park.store(true, Ordering::Relaxed);
                        Pin::new(&mut *served).graceful_shutdown();
                    }
                    Some(d) => watchdog.as_mut().reset(now + PARK_AFTER.saturating_sub(d)),
                    None => watchdog.as_mut().reset(now + PARK_AFTER.min(idle)),
                }
            }
        }
    };
    if let Err(e) = result {
        tracing::debug!(error = %e, "connection ended with an error");
        return None;
    }
    if !park.load(Ordering::Relaxed) || conn.shutdown.is_cancelled() {
        // Closed (hyper has shut the socket down).
        return None;
    }
    // None: upgraded (the relay owns the socket now).
    let parts = served.into_parts()?;
    let mut io = parts.io.into_inner();
    if !parts.read_buf.is_empty() {
        io.prefix = if io.prefix.is_empty() {
            parts.read_buf
        } else {
            let mut joined = BytesMut::with_capacity(parts.read_buf.len() + io.prefix.len());
            joined.extend_from_slice(&parts.read_buf);
            joined.extend_from_slice(&io.prefix);
            joined.freeze()
        };
    }
    let unread = io.prefix.len();
    if io.guard.parkable(unread) {
        Some(io)
    } else {
        tracing::debug!("parked between requests at an unexpected place: closing");
        close(io).await;
        None
    }
}

/// An h2 connection, served by hyper for its whole life.
async fn serve_h2<I>(io: Rewind<I>, state: Arc<ProxyState>, conn: Arc<Conn>)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let slot = Arc::clone(conn.slot.state());
    let idle = state.config.mitm.timeouts.idle_keepalive;
    let shutdown = conn.shutdown.clone();
    let svc = service(state, conn);
    let mut builder = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
    builder.max_concurrent_streams(256);
    let served = builder.serve_connection(TokioIo::new(io), svc);
    tokio::pin!(served);
    let watchdog = tokio::time::sleep(idle);
    tokio::pin!(watchdog);
    let mut closing = false;
    let result = loop {
        tokio::select! {
            r = served.as_mut() => break r,
            () = shutdown.cancelled(), if !closing => {
                closing = true;
                served.as_mut().graceful_shutdown();
            }
            () = slot.evicted(), if !closing => {
                tracing::debug!("max_connections reached: closing this idle connection");
                closing = true;
                served.as_mut().graceful_shutdown();
            }
            () = &mut watchdog, if !closing => match slot.idle_for() {
                Some(d) if d >= idle => {
                    tracing::debug!("idle_keepalive reached: closing");
                    closing = true;
                    served.as_mut().graceful_shutdown();
                }
                Some(d) => watchdog
                    .as_mut()
                    .reset(tokio::time::Instant::now() + idle.saturating_sub(d)),
                None => watchdog.as_mut().reset(tokio::time::Instant::now() + idle),
            },
        }
    };
    if let Err(e) = result {
        tracing::debug!(error = %e, "connection ended with an error");
    }
}

/// What the service answers.
type Answer = Result<Response<Tracked>, Infallible>;

/// The service's future (boxed: hyper keeps a slot its size while the
/// connection lives).
type Answering = Pin<Box<dyn Future<Output = Answer> + Send>>;

/// The proxy's service for one hyper connection.
fn service(
    state: Arc<ProxyState>,
    conn: Arc<Conn>,
) -> impl hyper::service::Service<
    Request<Incoming>,
    Response = Response<Tracked>,
    Error = Infallible,
    Future = Answering,
> {
    let slot = Arc::clone(conn.slot.state());
    service_fn(move |req: Request<Incoming>| {
        let in_flight = slot.begin();
        let state = Arc::clone(&state);
        let conn = Arc::clone(&conn);
        let fut: Answering = Box::pin(async move {
            let resp = forward::handle(state, conn, req).await;
            Ok(resp.map(|body| Tracked {
                body,
                _in_flight: in_flight,
            }))
        });
        fut
    })
}

/// Read what has arrived (at most [`PARK_READ`] bytes) through the guard;
/// empty at end of stream. The buffer lives on the stack for one poll, so
/// a waiting connection holds none.
async fn read_some<I>(guard: &mut Guard<I>) -> io::Result<Bytes>
where
    I: AsyncRead + AsyncWrite + Unpin,
{
    std::future::poll_fn(|cx| {
        let mut buf = [MaybeUninit::<u8>::uninit(); PARK_READ];
        let mut rb = ReadBuf::uninit(&mut buf);
        match Pin::new(&mut *guard).poll_read(cx, &mut rb) {
            Poll::Ready(Ok(())) => Poll::Ready(Ok(Bytes::copy_from_slice(rb.filled()))),
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => Poll::Pending,
        }
    })
    .await
}

/// Whether the first bytes are an h2 preface (read more while they could
/// still be one); `None` when the connection ended first.
async fn sniff_h2<I>(io: &mut Rewind<I>) -> Option<bool>
where
    I: AsyncRead + AsyncWrite + Unpin,
{
    loop {
        let n = io.prefix.len().min(H2_PREFACE.len());
        if io.prefix[..n] != H2_PREFACE[..n] {
            return Some(false);
        }
        if n == H2_PREFACE.len() {
            return Some(true);
        }
        let more = read_some(&mut io.guard).await.ok()?;
        if more.is_empty() {
            return None;
        }
        let mut joined = BytesMut::with_capacity(io.prefix.len() + more.len());
        joined.extend_from_slice(&io.prefix);
        joined.extend_from_slice(&more);
        io.prefix = joined.freeze();
    }
}

/// Shut the connection down (bounded), then drop it.
async fn close<I>(mut io: Rewind<I>)
where
    I: AsyncRead + AsyncWrite + Unpin,
{
    io.park.store(false, Ordering::Relaxed);
    let _ = tokio::time::timeout(CLOSE_WAIT, io.shutdown()).await;
}

/// The client I/O as hyper sees it: bytes already read come first, and a
/// shutdown is skipped while the connection is to be parked.
struct Rewind<I> {
    guard: Guard<I>,
    prefix: Bytes,
    park: Arc<AtomicBool>,
}

impl<I: AsyncRead + AsyncWrite + Unpin> AsyncRead for Rewind<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if !self.prefix.is_empty() {
            let n = self.prefix.len().min(buf.remaining());
            let head = self.prefix.split_to(n);
            buf.put_slice(&head);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.guard).poll_read(cx, buf)
    }
}

impl<I: AsyncRead + AsyncWrite + Unpin> AsyncWrite for Rewind<I> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.guard).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.guard).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.guard.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.guard).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.park.load(Ordering::Relaxed) {
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.guard).poll_shutdown(cx)
    }
}
