//! Bodies on the hot path: [`TeeBody`] forwards every frame untouched while
//! copying a bounded prefix on the side, and [`ProxyBody`] is what the
//! listeners answer with (a streamed upstream body or a short local message).

use std::error::Error as StdError;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use tokio::time::Sleep;

use super::record::Record;
use crate::flow::ErrorKind;
use crate::llm::{FrameTime, MAX_FRAMES};

/// Error type of every body the proxy hands to hyper.
pub type BoxError = Box<dyn StdError + Send + Sync>;

/// Which half of the exchange a [`TeeBody`] carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// Client → upstream.
    Request,
    /// Upstream → client.
    Response,
}

/// What a finished body reports to its [`Record`].
#[derive(Debug, Default)]
pub struct Tapped {
    /// The raw (still content-encoded) prefix, at most `max_body_size`.
    pub captured: Bytes,
    /// Every data byte that crossed, captured or not.
    pub total: u64,
    /// Set when the body did not end cleanly.
    pub error: Option<(ErrorKind, String)>,
    /// When the first frames arrived (responses only, at most `llm::MAX_FRAMES`).
    pub frames: Vec<FrameTime>,
}

/// Forwards frames untouched; copies up to `limit` bytes of data on the side;
/// reports once, at end of stream, on error, or when dropped early.
#[derive(Debug)]
pub struct TeeBody<B> {
    inner: B,
    side: Side,
    record: Option<Arc<Record>>,
    buf: BytesMut,
    limit: usize,
    total: u64,
    /// Publish response slices live (identity-encoded responses only).
    live: bool,
    /// Fail with `timeout` after this long without a frame (upstream bodies).
    idle: Option<Duration>,
    /// Armed the first time the body waits, reset by every frame.
    idle_timer: Option<Pin<Box<Sleep>>>,
    /// A frame arrived since the timer was last armed.
    fresh: bool,
    frames: Vec<FrameTime>,
}

impl<B: Body + Unpin> TeeBody<B> {
    /// Tee `inner` into `record`; `capture` false counts sizes only.
    pub fn new(inner: B, side: Side, record: Arc<Record>, capture: bool, live: bool) -> Self {
        let limit = if capture { record.max_body_size() } else { 0 };
        let mut tee = Self {
            inner,
            side,
            record: Some(record),
            buf: BytesMut::new(),
            limit,
            total: 0,
            live: live && limit > 0,
            idle: None,
            idle_timer: None,
            fresh: false,
            frames: Vec::new(),
        };
        // An empty body (GET, HEAD, 204) may never be polled: report it now.
        if tee.inner.is_end_stream() {
            tee.finish(None);
        }
        tee
    }

    /// Forward only: no flow, no copy (excluded hosts).
    pub fn passthrough(inner: B) -> Self {
        Self {
            inner,
            side: Side::Request,
            record: None,
            buf: BytesMut::new(),
            limit: 0,
            total: 0,
            live: false,
            idle: None,
            idle_timer: None,
            fresh: false,
            frames: Vec::new(),
        }
    }

    /// End the body with a `timeout` error when no frame arrives for `idle`
    /// (an upstream that stalls mid-stream).
    #[must_use]
    pub fn with_idle_timeout(mut self, idle: Duration) -> Self {
        self.idle = Some(idle);
        self
    }

    /// The idle timer fired: the stream is over.
    fn poll_idle(&mut self, cx: &mut Context<'_>) -> Poll<BoxError> {
        let Some(idle) = self.idle else {
            return Poll::Pending;
        };
        let deadline = tokio::time::Instant::now() + idle;
        let timer = self
            .idle_timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        if std::mem::take(&mut self.fresh) {
            timer.as_mut().reset(deadline);
        }
        if timer.as_mut().poll(cx).is_pending() {
            return Poll::Pending;
        }
        self.idle = None;
        let reason = format!(
            "no data from upstream for {} (ccproxy.mitm.timeouts.upstream_idle)",
            humantime::format_duration(idle)
        );
        self.finish(Some((
            ErrorKind::Timeout,
            format!("upstream response body stalled: {reason}"),
        )));
        Poll::Ready(reason.into())
    }

    fn feed(&mut self, data: &Bytes) {
        if self.side == Side::Response && self.frames.len() < MAX_FRAMES && !data.is_empty() {
            if let Some(r) = &self.record {
                self.frames.push(FrameTime {
                    offset: self.total,
                    elapsed_ms: r.elapsed_ms(),
                });
            }
        }
        self.total += data.len() as u64;
        let room = self.limit.saturating_sub(self.buf.len());
        if room == 0 {
            return;
        }
        let take = room.min(data.len());
        self.buf.extend_from_slice(&data[..take]);
        if self.live {
            if let Some(r) = &self.record {
                r.response_chunk(&data.slice(..take));
            }
        }
    }

    fn finish(&mut self, error: Option<(ErrorKind, String)>) {
        if let Some(record) = self.record.take() {
            let tapped = Tapped {
                captured: std::mem::take(&mut self.buf).freeze(),
                total: self.total,
                error,
                frames: std::mem::take(&mut self.frames),
            };
            record.body_done(self.side, tapped);
        }
    }
}

impl<B> Body for TeeBody<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Pending => match this.poll_idle(cx) {
                Poll::Pending => Poll::Pending,
                Poll::Ready(e) => Poll::Ready(Some(Err(e))),
            },
            Poll::Ready(Some(Ok(frame))) => {
                this.fresh = true;
                if let Some(data) = frame.data_ref() {
                    this.feed(data);
                }
                if this.inner.is_end_stream() {
                    this.finish(None);
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => {
                let e: BoxError = e.into();
                let kind = match this.side {
                    Side::Request if is_malformed(&*e) => ErrorKind::Protocol,
                    Side::Request => ErrorKind::ClientAborted,
                    Side::Response => match super::upstream::classify_error(&*e) {
                        ErrorKind::Timeout => ErrorKind::Timeout,
                        ErrorKind::Protocol => ErrorKind::Protocol,
                        _ => ErrorKind::Reset,
                    },
                };
                let what = match this.side {
                    Side::Request if kind == ErrorKind::Protocol => "malformed request body",
                    Side::Request => "client request body failed",
                    Side::Response => "upstream response body failed",
                };
                this.finish(Some((
                    kind,
                    format!("{what}: {}", super::upstream::error_chain(&*e)),
                )));
                Poll::Ready(Some(Err(e)))
            }
            Poll::Ready(None) => {
                this.finish(None);
                Poll::Ready(None)
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// True when a body error is the peer sending bytes that are not HTTP
/// (hyper's chunked decoder reports `InvalidInput`).
fn is_malformed(e: &(dyn StdError + 'static)) -> bool {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            if matches!(
                io.kind(),
                std::io::ErrorKind::InvalidInput | std::io::ErrorKind::InvalidData
            ) {
                return true;
            }
            if let Some(inner) = io.get_ref() {
                cur = Some(inner);
                continue;
            }
        }
        cur = err.source();
    }
    false
}

impl<B> Drop for TeeBody<B> {
    fn drop(&mut self) {
        if let Some(record) = self.record.take() {
            // Dropped before the end: for a response the client went away;
            // for a request the upstream answered without reading it all.
            let error = (self.side == Side::Response).then(|| {
                (
                    ErrorKind::ClientAborted,
                    "client closed the connection before the response ended".to_string(),
                )
            });
            let tapped = Tapped {
                captured: std::mem::take(&mut self.buf).freeze(),
                total: self.total,
                error,
                frames: std::mem::take(&mut self.frames),
            };
            record.body_done(self.side, tapped);
        }
    }
}

/// The client's request body, shared with the handler: when the upstream
/// fails before reading it (connect, DNS, TLS, timeout), the handler takes
/// back what is left and reads it into the flow, so a failed exchange keeps
/// its request. Polling takes an uncontended lock; a body that is empty
/// from the start (most requests) is neither shared nor locked.
#[derive(Debug, Clone)]
pub struct Reclaim(Option<Arc<std::sync::Mutex<Option<Incoming>>>>);

impl Reclaim {
    /// Share `body`.
    pub fn new(body: Incoming) -> Self {
        if body.is_end_stream() {
            return Self(None);
        }
        Self(Some(Arc::new(std::sync::Mutex::new(Some(body)))))
    }

    /// What the upstream left unread (`None` once a clone has taken it).
    pub fn take(&self) -> Option<Incoming> {
        self.0.as_ref().and_then(|shared| {
            shared
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .take()
        })
    }

    fn with<T>(&self, f: impl FnOnce(Option<&mut Incoming>) -> T) -> T {
        let Some(shared) = &self.0 else {
            return f(None);
        };
        let mut g = shared
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        f(g.as_mut())
    }
}

impl Body for Reclaim {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        self.with(|b| match b {
            Some(b) => Pin::new(b).poll_frame(cx),
            None => Poll::Ready(None),
        })
    }

    fn is_end_stream(&self) -> bool {
        self.with(|b| b.is_none_or(|b| b.is_end_stream()))
    }

    fn size_hint(&self) -> SizeHint {
        self.with(|b| b.map_or_else(|| SizeHint::with_exact(0), |b| b.size_hint()))
    }
}

/// The body of every response a listener sends.
#[derive(Debug)]
pub enum ProxyBody {
    /// The upstream's response, streamed through the tee.
    Upstream(TeeBody<super::pool::ResponseBody>),
    /// A short local answer (errors, CONNECT established).
    Local(Option<Bytes>),
}

impl ProxyBody {
    /// No body.
    pub fn empty() -> Self {
        Self::Local(None)
    }

    /// A complete local body.
    pub fn text(s: impl Into<Bytes>) -> Self {
        let b: Bytes = s.into();
        Self::Local((!b.is_empty()).then_some(b))
    }
}

impl Body for ProxyBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.get_mut() {
            Self::Upstream(b) => Pin::new(b).poll_frame(cx),
            Self::Local(b) => Poll::Ready(b.take().map(|d| Ok(Frame::data(d)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Self::Upstream(b) => b.is_end_stream(),
            Self::Local(b) => b.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Self::Upstream(b) => b.size_hint(),
            Self::Local(b) => SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64)),
        }
    }
}
