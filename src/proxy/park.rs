//! A client connection served by hyper while it is busy, and parked without
//! hyper's buffers while it idles between requests.
//!
//! hyper keeps an 8 KiB read buffer and an 8 KiB write buffer for the whole
//! life of an HTTP/1 connection, so thousands of idle keep-alive connections
//! (agents keep theirs open between turns) would hold their buffers for
//! nothing. Once a connection has been idle for [`PARK_AFTER`], hyper is
//! asked to end it (an idle connection ends without writing a byte), hands
//! back the socket and any bytes it read ahead, and the connection waits for
//! its next request holding only the socket and its [`Guard`] (which skips
//! hyper's shutdown of the socket meanwhile, see `SlotState::set_parking`); the next
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
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use futures::stream::{FuturesUnordered, StreamExt};
use http::{Request, Response};
use hyper::body::Incoming;
use hyper::server::conn::{http1, http2};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};

use super::connect::Rewind;
use super::exchange::Conn;
use super::head::{self, Guard, H2_PREFACE};
use super::{forward, ProxyState, Tracked};

/// The most a parked connection reads when its next request arrives (hyper
/// reads the rest).
const PARK_READ: usize = 4096;

/// How long a kept-alive connection waits idle in hyper (with its buffers)
/// before it parks.
pub const PARK_AFTER: Duration = Duration::from_millis(25);

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
    let mut guard = Guard::new(io, Arc::clone(&slot), rules, conn.client, accepted);
    // Bytes read from the client that hyper has not seen yet.
    let mut prefix = Bytes::new();
    let idle = state.config.mitm.timeouts.idle_keepalive;
    let mut first = true;
    loop {
        if prefix.is_empty() {
            let _parked = (!first).then(|| state.connections.park());
            let left = idle.saturating_sub(slot.idle_for().unwrap_or_default());
            let read = tokio::select! {
                r = read_some(&mut guard) => r,
                () = conn.shutdown.cancelled() => return Box::pin(close(guard)).await,
                () = slot.evicted() => {
                    tracing::debug!("max_connections reached: closing this idle connection");
                    return Box::pin(close(guard)).await;
                }
                () = tokio::time::sleep(left), if !first => {
                    tracing::debug!("idle_keepalive reached: closing");
                    return Box::pin(close(guard)).await;
                }
            };
            match read {
                Ok(b) if !b.is_empty() => prefix = b,
                _ => return,
            }
        }
        if first {
            first = false;
            let Some(h2) = Box::pin(sniff_h2(&mut guard, &mut prefix)).await else {
                return;
            };
            // Boxed, like `serve_h1`: a parked connection's task keeps only
            // what it needs while it waits.
            if h2 {
                return Box::pin(serve_h2(Rewind::new(guard, prefix), state, conn)).await;
            }
        }
        let io = Rewind::new(guard, prefix);
        let Some(back) = Box::pin(serve_h1(io, &state, &conn)).await else {
            return;
        };
        (guard, prefix) = back;
    }
}

/// Serve HTTP/1 requests until the connection closes, or has been idle for
/// [`PARK_AFTER`]; the guard and the bytes read ahead back when it parks.
async fn serve_h1<I>(
    io: Rewind<Guard<I>>,
    state: &Arc<ProxyState>,
    conn: &Arc<Conn>,
) -> Option<(Guard<I>, Bytes)>
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut builder = http1::Builder::new();
    builder.max_buf_size(MAX_BUF);
    let svc = service(Arc::clone(state), Arc::clone(conn));
    // Boxed: the parked connection's future must not keep room for it.
    let mut served = Box::new(
        builder
            .serve_connection(TokioIo::new(io), svc)
            .with_upgrades(),
    );
    let (result, parked) = drive(
        Pin::new(&mut *served),
        http1::UpgradeableConnection::graceful_shutdown,
        state,
        conn,
        Some(PARK_AFTER),
    )
    .await;
    conn.slot.state().set_parking(false);
    if let Err(e) = result {
        tracing::debug!(error = %e, "connection ended with an error");
        return None;
    }
    if !parked || conn.shutdown.is_cancelled() {
        // Closed (hyper has shut the socket down).
        return None;
    }
    // None: upgraded (the relay owns the socket now).
    let parts = served.into_parts()?;
    let (mut guard, rest) = parts.io.into_inner().into_parts();
    let prefix = join(parts.read_buf, rest);
    if guard.parkable(prefix.len()) {
        Some((guard, prefix))
    } else {
        tracing::debug!("parked between requests at an unexpected place: closing");
        close(guard).await;
        None
    }
}

/// An h2 connection, served by hyper for its whole life.
async fn serve_h2<I>(io: Rewind<Guard<I>>, state: Arc<ProxyState>, conn: Arc<Conn>)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut builder = http2::Builder::new(TokioExecutor::new());
    builder.max_concurrent_streams(256);
    let served = builder.serve_connection(
        TokioIo::new(io),
        service(Arc::clone(&state), Arc::clone(&conn)),
    );
    tokio::pin!(served);
    let (result, _) = drive(
        served,
        http2::Connection::graceful_shutdown,
        &state,
        &conn,
        None,
    )
    .await;
    if let Err(e) = result {
        tracing::debug!(error = %e, "connection ended with an error");
    }
}

/// Run a hyper connection to its end, asking it (`graceful`) to end on
/// shutdown, eviction, after `idle_keepalive` without an exchange, or, with
/// `park_after`, once idle that long, marking the connection as parking.
/// The connection's result, and whether it was ended to park.
async fn drive<F>(
    mut served: Pin<&mut F>,
    graceful: fn(Pin<&mut F>),
    state: &ProxyState,
    conn: &Conn,
    park_after: Option<Duration>,
) -> (F::Output, bool)
where
    F: Future,
{
    let slot = conn.slot.state();
    let idle = state.config.mitm.timeouts.idle_keepalive;
    // How long the connection may idle before the next check.
    let wait = park_after.unwrap_or(idle).min(idle);
    // The watch is polled only when one of its own wake-ups fired, not at
    // every wake-up of the connection (several per request): polling a
    // cancellation token takes its lock.
    let mut watch = FuturesUnordered::new();
    watch.push(watch_for(conn, slot, wait));
    let mut closing = false;
    let mut parked = false;
    loop {
        tokio::select! {
            biased;
            r = served.as_mut() => return (r, parked),
            Some(signal) = watch.next(), if !closing => match signal {
                Signal::Shutdown => {
                    closing = true;
                    graceful(served.as_mut());
                }
                Signal::Evicted => {
                    tracing::debug!("max_connections reached: closing this idle connection");
                    closing = true;
                    graceful(served.as_mut());
                }
                Signal::Watchdog => match slot.idle_for() {
                    Some(d) if d >= idle => {
                        tracing::debug!("idle_keepalive reached: closing");
                        closing = true;
                        graceful(served.as_mut());
                    }
                    Some(d) if d >= wait => {
                        // Idle between requests: hyper ends an idle connection
                        // without writing, and its shutdown is skipped.
                        closing = true;
                        parked = true;
                        slot.set_parking(true);
                        graceful(served.as_mut());
                    }
                    Some(d) => watch.push(watch_for(conn, slot, wait.saturating_sub(d))),
                    None => watch.push(watch_for(conn, slot, wait)),
                },
            },
        }
    }
}

/// What ends a [`watch_for`].
enum Signal {
    Shutdown,
    Evicted,
    Watchdog,
}

/// The first of: shutdown, eviction, or `after` elapsed.
async fn watch_for(conn: &Conn, slot: &super::limits::SlotState, after: Duration) -> Signal {
    tokio::select! {
        () = conn.shutdown.cancelled() => Signal::Shutdown,
        () = slot.evicted() => Signal::Evicted,
        () = tokio::time::sleep(after) => Signal::Watchdog,
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

/// Whether the first bytes (`prefix`) are an h2 preface, reading more while
/// they could still be one; `None` when the connection ended first.
async fn sniff_h2<I>(guard: &mut Guard<I>, prefix: &mut Bytes) -> Option<bool>
where
    I: AsyncRead + AsyncWrite + Unpin,
{
    loop {
        let n = prefix.len().min(H2_PREFACE.len());
        if prefix[..n] != H2_PREFACE[..n] {
            return Some(false);
        }
        if n == H2_PREFACE.len() {
            return Some(true);
        }
        let more = read_some(guard).await.ok()?;
        if more.is_empty() {
            return None;
        }
        *prefix = join(std::mem::take(prefix), more);
    }
}

/// `a` then `b`, copying only when both hold bytes.
fn join(a: Bytes, b: Bytes) -> Bytes {
    if a.is_empty() {
        return b;
    }
    if b.is_empty() {
        return a;
    }
    let mut joined = BytesMut::with_capacity(a.len() + b.len());
    joined.extend_from_slice(&a);
    joined.extend_from_slice(&b);
    joined.freeze()
}

/// Shut the connection down (bounded), then drop it.
async fn close<I>(mut guard: Guard<I>)
where
    I: AsyncRead + AsyncWrite + Unpin,
{
    let _ = tokio::time::timeout(CLOSE_WAIT, guard.shutdown()).await;
}
