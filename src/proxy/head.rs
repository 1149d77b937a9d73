//! [`Guard`]: the client side of an HTTP/1 connection as hyper reads it,
//! watched so every request head of the connection gets the same rules.
//!
//! hyper answers a head larger than its read buffer with a bare 431 (and its
//! buffer grows after the first request), has no per-head timeout and does
//! not say why it refused a head. The guard follows the request stream as it
//! passes (heads parsed with `httparse`, bodies skipped by their framing, no
//! byte copied except a head split across reads) and:
//! - answers an oversize head (over [`MAX_HEAD`] or 100 fields), a malformed
//!   one or a bad `content-length`/`transfer-encoding` with 400 and a reason;
//! - answers a head that is not complete `request_head` after its first byte
//!   (after the accept, for a connection's first request) with 408;
//! - logs each of those once, then closes after letting the client read it.
//!
//! An h2 preface, a CONNECT or an `Upgrade` request switches it to plain
//! pass-through; a chunked body it cannot follow is left to hyper, whose
//! body error the exchange answers with 400.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;

use super::limits::SlotState;

/// The largest request head accepted (request line plus headers), on every
/// request of a connection.
pub const MAX_HEAD: usize = 64 * 1024;

/// As many header fields as hyper accepts by default; more is "too large" too.
const MAX_HEADERS: usize = 100;

/// How many request ends [`Guard::parkable`] remembers (more pipelined
/// requests than this read ahead make it close instead).
const MAX_ENDS: usize = 16;

/// The start of the h2 connection preface.
pub const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0";

/// After a 400 or 408, how much of the client's unread request is drained
/// (and for how long) so closing does not reset the connection before the
/// client has read the answer.
const DRAIN_BYTES: usize = 1024 * 1024;
const DRAIN_TIME: Duration = Duration::from_secs(2);

/// Why a head was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rejection {
    /// Over [`MAX_HEAD`] bytes or [`MAX_HEADERS`] fields: 400.
    TooLarge,
    /// Not a valid HTTP/1 request head: 400 with the reason.
    Malformed(String),
    /// Not complete within `request_head`: 408.
    Timeout(Duration),
}

impl Rejection {
    /// The one-line reason (logged and sent).
    pub fn reason(&self) -> String {
        match self {
            Self::TooLarge => format!("request headers too large ({} KiB)", MAX_HEAD / 1024),
            Self::Malformed(why) => why.clone(),
            Self::Timeout(d) => format!(
                "request head not complete within {}",
                humantime::format_duration(*d)
            ),
        }
    }

    /// The whole answer, `connection: close`.
    pub fn answer(&self) -> Bytes {
        let status = match self {
            Self::Timeout(_) => "408 Request Timeout",
            _ => "400 Bad Request",
        };
        let body = format!("ccproxy: {}\n", self.reason());
        Bytes::from(format!(
            "HTTP/1.1 {status}\r\ncontent-type: text/plain; charset=utf-8\r\n\
             content-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        ))
    }
}

/// Where the request stream is.
#[derive(Debug)]
enum Mode {
    /// Reading a request head.
    Head,
    /// Skipping `n` more body bytes.
    Length(u64),
    /// Following a chunked body.
    Chunked(Chunk),
    /// Not HTTP/1 requests any more (h2, tunnel, upgrade, unreadable body).
    Pass,
    /// Waiting for the exchange in flight to end before answering.
    Deferred(Rejection),
    /// Writing the answer, then draining.
    Answer(Box<Answering>),
    /// Closed: hyper reads end of stream.
    Done,
}

#[derive(Debug)]
struct Answering {
    bytes: Bytes,
    written: usize,
    shut: bool,
    drained: usize,
    until: Option<Pin<Box<Sleep>>>,
}

/// Chunked-body states (RFC 9112 §7.1), as strict as hyper's decoder.
#[derive(Debug, Clone, Copy)]
enum Chunk {
    Size { value: u64, digits: u8 },
    SizeLws { value: u64 },
    Ext { value: u64 },
    SizeLf { value: u64 },
    Data(u64),
    DataCr,
    DataLf,
    TrailerStart,
    Trailer,
    TrailerLf,
    EndLf,
}

/// The timing rules a guard enforces.
#[derive(Debug, Clone, Copy)]
pub struct HeadRules {
    /// See `ccproxy.mitm.timeouts.request_head`.
    pub request_head: Duration,
}

/// A client connection's I/O, watched (see the module docs).
pub struct Guard<I> {
    inner: I,
    slot: Arc<SlotState>,
    rules: HeadRules,
    client: SocketAddr,
    mode: Mode,
    /// The bytes of a head that spans reads (empty otherwise).
    partial: BytesMut,
    /// When the current head's first byte arrived.
    head_started: Option<Instant>,
    /// No request has been read yet (the head timer runs from the accept).
    first: bool,
    accepted: Instant,
    trailer_len: usize,
    timer: Option<Pin<Box<Sleep>>>,
    timer_at: Option<Instant>,
    /// Request-stream bytes scanned so far.
    scanned: u64,
    /// Where the scanned requests ended (offsets into the stream), oldest
    /// first; pruned by [`Guard::parkable`].
    ends: std::collections::VecDeque<u64>,
    /// A request ended in the current scan step.
    ended: bool,
}

impl<I> Guard<I> {
    /// Watch `inner`, accepted at `accepted`, for the connection in `slot`.
    pub fn new(
        inner: I,
        slot: Arc<SlotState>,
        rules: HeadRules,
        client: SocketAddr,
        accepted: Instant,
    ) -> Self {
        Self {
            inner,
            slot,
            rules,
            client,
            mode: Mode::Head,
            partial: BytesMut::new(),
            head_started: None,
            first: true,
            accepted,
            trailer_len: 0,
            timer: None,
            timer_at: None,
            scanned: 0,
            ends: std::collections::VecDeque::new(),
            ended: false,
        }
    }

    /// Whether the connection may serve another request after its reader
    /// stopped with `unread` scanned bytes not consumed: the stream is
    /// HTTP/1 requests and the reader stopped exactly where one ended (a
    /// request body it did not read would otherwise be taken for the next
    /// head).
    pub fn parkable(&mut self, unread: usize) -> bool {
        let Some(consumed) = self.scanned.checked_sub(unread as u64) else {
            return false;
        };
        while self.ends.front().is_some_and(|e| *e < consumed) {
            self.ends.pop_front();
        }
        let at_end = self.ends.front() == Some(&consumed);
        if at_end {
            self.ends.pop_front();
        }
        at_end && matches!(self.mode, Mode::Head | Mode::Length(_) | Mode::Chunked(_))
    }

    /// Follow `data` (just read) through heads and bodies.
    fn scan(&mut self, mut data: &[u8]) -> Result<(), Rejection> {
        while !data.is_empty() {
            let before = data.len();
            match &mut self.mode {
                Mode::Head => {
                    let used = self.scan_head(data)?;
                    data = &data[used..];
                }
                Mode::Length(n) => {
                    let take = (*n).min(data.len() as u64);
                    *n -= take;
                    data = &data[take as usize..];
                    if *n == 0 {
                        self.end_body();
                    }
                }
                Mode::Chunked(_) => {
                    let used = self.scan_chunked(data);
                    data = &data[used..];
                }
                _ => return Ok(()),
            }
            self.scanned += (before - data.len()) as u64;
            if std::mem::take(&mut self.ended) {
                if self.ends.len() == MAX_ENDS {
                    // Requests read ahead past this many are not parked.
                    self.ends.pop_front();
                }
                self.ends.push_back(self.scanned);
            }
        }
        Ok(())
    }

    fn end_body(&mut self) {
        self.mode = Mode::Head;
        self.first = false;
        self.ended = true;
    }

    /// Consume head bytes; returns how many of `data` belong to the head.
    fn scan_head(&mut self, data: &[u8]) -> Result<usize, Rejection> {
        if self.head_started.is_none() {
            // Blank lines between requests are allowed and skipped.
            let blank = data.iter().take_while(|b| **b == b'\r' || **b == b'\n');
            let skip = blank.count();
            if skip == data.len() && self.partial.is_empty() {
                return Ok(skip);
            }
            self.head_started = Some(Instant::now());
            self.slot.mark_head();
        }
        let prev = self.partial.len();
        let parsed = if prev == 0 {
            parse(data, self.first)
        } else {
            let room = (MAX_HEAD + 1).saturating_sub(prev);
            self.partial
                .extend_from_slice(&data[..data.len().min(room)]);
            parse(&self.partial, self.first)
        };
        match parsed {
            Parsed::Partial => {
                if prev == 0 {
                    self.partial
                        .extend_from_slice(&data[..data.len().min(MAX_HEAD + 1)]);
                }
                if self.partial.len() >= MAX_HEAD {
                    return Err(Rejection::TooLarge);
                }
                Ok(data.len())
            }
            Parsed::Invalid(r) => Err(r),
            Parsed::Complete { len, next } => {
                self.partial = BytesMut::new();
                self.head_started = None;
                self.trailer_len = 0;
                self.mode = next;
                if matches!(self.mode, Mode::Length(0)) {
                    self.end_body();
                }
                Ok(len - prev)
            }
        }
    }

    /// Consume chunked-body bytes; returns how many were used.
    fn scan_chunked(&mut self, data: &[u8]) -> usize {
        let Mode::Chunked(mut st) = self.mode else {
            return 0;
        };
        let mut i = 0;
        while i < data.len() {
            if let Chunk::Data(n) = st {
                let take = n.min((data.len() - i) as u64);
                i += take as usize;
                st = if n == take {
                    Chunk::DataCr
                } else {
                    Chunk::Data(n - take)
                };
                continue;
            }
            let b = data[i];
            i += 1;
            let next = match (st, b) {
                (Chunk::Size { value, digits }, _) if b.is_ascii_hexdigit() => {
                    let d = u64::from((b as char).to_digit(16).unwrap_or(0));
                    value
                        .checked_mul(16)
                        .and_then(|v| v.checked_add(d))
                        .map(|value| Chunk::Size {
                            value,
                            digits: digits.saturating_add(1),
                        })
                }
                (Chunk::Size { digits: 0, .. }, _) | (Chunk::Ext { .. }, b'\n') => None,
                (Chunk::Size { value, .. } | Chunk::SizeLws { value }, b' ' | b'\t') => {
                    Some(Chunk::SizeLws { value })
                }
                (Chunk::Size { value, .. } | Chunk::SizeLws { value }, b';') => {
                    Some(Chunk::Ext { value })
                }
                (
                    Chunk::Size { value, .. } | Chunk::SizeLws { value } | Chunk::Ext { value },
                    b'\r',
                ) => Some(Chunk::SizeLf { value }),
                (Chunk::Ext { value }, _) => Some(Chunk::Ext { value }),
                (Chunk::SizeLf { value: 0 } | Chunk::TrailerLf, b'\n') => Some(Chunk::TrailerStart),
                (Chunk::SizeLf { value }, b'\n') => Some(Chunk::Data(value)),
                (Chunk::DataCr, b'\r') => Some(Chunk::DataLf),
                (Chunk::DataLf, b'\n') => Some(Chunk::Size {
                    value: 0,
                    digits: 0,
                }),
                (Chunk::TrailerStart, b'\r') => Some(Chunk::EndLf),
                (Chunk::Trailer, b'\r') => Some(Chunk::TrailerLf),
                (Chunk::TrailerStart | Chunk::Trailer, _) => {
                    self.trailer_len += 1;
                    (self.trailer_len <= MAX_HEAD).then_some(Chunk::Trailer)
                }
                (Chunk::EndLf, b'\n') => {
                    self.end_body();
                    return i;
                }
                _ => None,
            };
            let Some(n) = next else {
                // hyper's decoder fails the body the same way; the
                // exchange turns that into a 400.
                self.mode = Mode::Pass;
                return data.len();
            };
            st = n;
        }
        self.mode = Mode::Chunked(st);
        i
    }

    /// When the current head must be complete.
    fn deadline(&self) -> Option<Instant> {
        if !matches!(self.mode, Mode::Head) {
            return None;
        }
        match self.head_started {
            Some(t) => Some(t + self.rules.request_head),
            None if self.first => Some(self.accepted + self.rules.request_head),
            None => None,
        }
    }

    fn reject(&mut self, r: Rejection) {
        tracing::info!(client = %self.client, reason = %r.reason(), "rejected a request head");
        self.mode = Mode::Deferred(r);
    }
}

/// What one parse of the head bytes found.
enum Parsed {
    Partial,
    Invalid(Rejection),
    /// The head is `len` bytes; then the stream is in `next`.
    Complete {
        len: usize,
        next: Mode,
    },
}

fn parse(buf: &[u8], first: bool) -> Parsed {
    if first {
        if buf.starts_with(H2_PREFACE) {
            return Parsed::Complete {
                len: buf.len(),
                next: Mode::Pass,
            };
        }
        if H2_PREFACE.starts_with(buf) {
            return Parsed::Partial;
        }
    }
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let len = match req.parse(buf) {
        Ok(httparse::Status::Partial) => return Parsed::Partial,
        Ok(httparse::Status::Complete(n)) => n,
        Err(httparse::Error::TooManyHeaders) => return Parsed::Invalid(Rejection::TooLarge),
        Err(e) => {
            return Parsed::Invalid(Rejection::Malformed(format!(
                "malformed request head ({e})"
            )))
        }
    };
    match framing(&req) {
        Ok(next) => Parsed::Complete { len, next },
        Err(why) => Parsed::Invalid(Rejection::Malformed(why)),
    }
}

/// How the body of a parsed request is delimited (RFC 9112 §6.3).
fn framing(req: &httparse::Request<'_, '_>) -> Result<Mode, String> {
    if req.method == Some("CONNECT") {
        return Ok(Mode::Pass);
    }
    let mut chunked = None;
    let mut length: Option<u64> = None;
    let mut upgrade = false;
    for h in req.headers.iter() {
        if h.name.eq_ignore_ascii_case("transfer-encoding") {
            let last = h.value.rsplit(|b| *b == b',').next().unwrap_or_default();
            chunked = Some(last.trim_ascii().eq_ignore_ascii_case(b"chunked"));
        } else if h.name.eq_ignore_ascii_case("content-length") {
            for item in h.value.split(|b| *b == b',') {
                let item = item.trim_ascii();
                let n = std::str::from_utf8(item)
                    .ok()
                    .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
                    .and_then(|s| s.parse::<u64>().ok())
                    .ok_or_else(|| {
                        format!(
                            "invalid content-length `{}`",
                            String::from_utf8_lossy(h.value)
                        )
                    })?;
                if length.is_some_and(|l| l != n) {
                    return Err("conflicting content-length values".into());
                }
                length = Some(n);
            }
        } else if h.name.eq_ignore_ascii_case("upgrade") {
            upgrade = true;
        }
    }
    if upgrade {
        return Ok(Mode::Pass);
    }
    match (chunked, length) {
        (Some(true), _) => Ok(Mode::Chunked(Chunk::Size {
            value: 0,
            digits: 0,
        })),
        (Some(false), _) => Err("transfer-encoding must end with chunked".into()),
        (None, Some(n)) => Ok(Mode::Length(n)),
        (None, None) => Ok(Mode::Length(0)),
    }
}

impl<I: AsyncRead + AsyncWrite + Unpin> Guard<I> {
    /// Write the answer, stop writing, drain a bounded amount; then end of stream.
    fn poll_answer(&mut self, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        loop {
            match &mut self.mode {
                Mode::Deferred(r) => {
                    if !self.slot.is_quiet() {
                        self.slot.wake_when_quiet(cx.waker());
                        if !self.slot.is_quiet() {
                            return Poll::Pending;
                        }
                    }
                    let bytes = r.answer();
                    self.mode = Mode::Answer(Box::new(Answering {
                        bytes,
                        written: 0,
                        shut: false,
                        drained: 0,
                        until: None,
                    }));
                }
                Mode::Answer(a) => {
                    let done = match poll_answering(&mut self.inner, a, cx, buf) {
                        Poll::Pending => return Poll::Pending,
                        Poll::Ready(()) => true,
                    };
                    if done {
                        self.mode = Mode::Done;
                    }
                }
                _ => return Poll::Ready(Ok(())),
            }
        }
    }
}

fn poll_answering<I: AsyncRead + AsyncWrite + Unpin>(
    io: &mut I,
    a: &mut Answering,
    cx: &mut Context<'_>,
    buf: &mut ReadBuf<'_>,
) -> Poll<()> {
    while a.written < a.bytes.len() {
        match Pin::new(&mut *io).poll_write(cx, &a.bytes[a.written..]) {
            Poll::Ready(Ok(n)) if n > 0 => a.written += n,
            Poll::Ready(_) => return Poll::Ready(()),
            Poll::Pending => return Poll::Pending,
        }
    }
    if !a.shut {
        match Pin::new(&mut *io).poll_shutdown(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(Err(_)) => return Poll::Ready(()),
            Poll::Ready(Ok(())) => a.shut = true,
        }
    }
    let until = a
        .until
        .get_or_insert_with(|| Box::pin(tokio::time::sleep(DRAIN_TIME)));
    loop {
        if until.as_mut().poll(cx).is_ready() {
            return Poll::Ready(());
        }
        let before = buf.filled().len();
        match Pin::new(&mut *io).poll_read(cx, buf) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(Err(_)) => return Poll::Ready(()),
            Poll::Ready(Ok(())) => {
                let n = buf.filled().len() - before;
                buf.set_filled(before);
                a.drained += n;
                if n == 0 || a.drained >= DRAIN_BYTES {
                    return Poll::Ready(());
                }
            }
        }
    }
}

impl<I: AsyncRead + AsyncWrite + Unpin> AsyncRead for Guard<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        match this.mode {
            Mode::Pass => return Pin::new(&mut this.inner).poll_read(cx, buf),
            Mode::Deferred(_) | Mode::Answer(_) | Mode::Done => return this.poll_answer(cx, buf),
            Mode::Head | Mode::Length(_) | Mode::Chunked(_) => {}
        }
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Pending => {
                let Some(at) = this.deadline() else {
                    return Poll::Pending;
                };
                let at_tokio = tokio::time::Instant::from_std(at);
                let timer = this
                    .timer
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(at_tokio)));
                if this.timer_at != Some(at) {
                    timer.as_mut().reset(at_tokio);
                    this.timer_at = Some(at);
                }
                if timer.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                if this.head_started.is_none() {
                    // Nothing was sent: close quietly.
                    tracing::debug!(client = %this.client, "no request within request_head: closed");
                    this.mode = Mode::Done;
                    return Poll::Ready(Ok(()));
                }
                this.reject(Rejection::Timeout(this.rules.request_head));
                this.poll_answer(cx, buf)
            }
            Poll::Ready(Ok(())) => {
                let scanned = this.scan(&buf.filled()[before..]);
                match scanned {
                    Ok(()) => Poll::Ready(Ok(())),
                    Err(r) => {
                        buf.set_filled(before);
                        this.reject(r);
                        this.poll_answer(cx, buf)
                    }
                }
            }
            other @ Poll::Ready(Err(_)) => other,
        }
    }
}

impl<I: AsyncRead + AsyncWrite + Unpin> AsyncWrite for Guard<I> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if matches!(self.mode, Mode::Answer(_) | Mode::Done) {
            // The connection is answered and closing: nothing else goes out.
            return Poll::Ready(Ok(buf.len()));
        }
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        if matches!(self.mode, Mode::Answer(_) | Mode::Done) {
            return Poll::Ready(Ok(bufs.iter().map(|b| b.len()).sum()));
        }
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if matches!(self.mode, Mode::Answer(_) | Mode::Done) {
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // Answered and closing, or leaving hyper to park: not hyper's to shut.
        if matches!(self.mode, Mode::Answer(_) | Mode::Done) || self.slot.is_parking() {
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// How the guard reads `buf` as the start of a request stream: `None` while
/// the head is incomplete, else the head's length or why it is refused.
/// The entry point the fuzz targets and property tests drive.
pub fn inspect(buf: &[u8]) -> Option<Result<usize, Rejection>> {
    match parse(buf, true) {
        Parsed::Partial => None,
        Parsed::Invalid(r) => Some(Err(r)),
        Parsed::Complete { len, .. } => Some(Ok(len)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::limits::Connections;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn guard<I>(io: I) -> (Guard<I>, crate::proxy::limits::Slot) {
        let reg = Connections::new(4);
        let slot = reg.admit();
        let g = Guard::new(
            io,
            Arc::clone(slot.state()),
            HeadRules {
                request_head: Duration::from_secs(5),
            },
            "127.0.0.1:1".parse().expect("addr"),
            Instant::now(),
        );
        (g, slot)
    }

    #[test]
    fn answers_carry_their_length() {
        for r in [
            Rejection::TooLarge,
            Rejection::Malformed("x".into()),
            Rejection::Timeout(Duration::from_secs(30)),
        ] {
            let a = r.answer();
            let text = String::from_utf8_lossy(&a);
            let (head, body) = text.split_once("\r\n\r\n").expect("head");
            assert!(
                head.contains(&format!("content-length: {}", body.len())),
                "{text}"
            );
        }
    }

    #[test]
    fn parks_only_where_a_request_ended() {
        let first = b"POST /a HTTP/1.1\r\nhost: x\r\ncontent-length: 3\r\n\r\nabc";
        let second = b"GET /b HTTP/1.1\r\nhost: x\r\n\r\n";
        let mut stream = first.to_vec();
        stream.extend_from_slice(second);
        // The reader consumed the head but not the body: not a request end.
        let (mut g, _slot) = guard(tokio::io::empty());
        g.scan(&stream).expect("valid");
        assert!(!g.parkable(stream.len() - (first.len() - 3)));
        for step in [1, 7, stream.len()] {
            let (mut g, _slot) = guard(tokio::io::empty());
            for piece in stream.chunks(step) {
                g.scan(piece).expect("valid");
            }
            // Stopped after the first request, the second read ahead: parks.
            assert!(g.parkable(second.len()), "step {step}");
            // Then after the second.
            assert!(g.parkable(0), "step {step}");
        }
        // Mid-body, nothing unread: the rest of the body is still to come.
        let (mut g, _slot) = guard(tokio::io::empty());
        g.scan(&first[..first.len() - 1]).expect("valid");
        assert!(!g.parkable(0));
        // A tunnel or an upgrade is never parked.
        let (mut g, _slot) = guard(tokio::io::empty());
        g.scan(b"GET / HTTP/1.1\r\nhost: x\r\nupgrade: websocket\r\nconnection: upgrade\r\n\r\n")
            .expect("valid");
        assert!(!g.parkable(0));
    }

    #[test]
    fn follows_bodies_across_requests() {
        let (mut g, _slot) = guard(tokio::io::empty());
        let stream = b"POST /a HTTP/1.1\r\nhost: x\r\ncontent-length: 3\r\n\r\nabc\
POST /b HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n3;x=y\r\nabc\r\n0\r\nt: 1\r\n\r\n\
GET /c HTTP/1.1\r\nhost: x\r\n\r\n";
        // Byte by byte and all at once give the same result.
        for step in [1, stream.len()] {
            g.mode = Mode::Head;
            g.first = true;
            for piece in stream.chunks(step) {
                g.scan(piece).expect("valid stream");
            }
            assert!(matches!(g.mode, Mode::Head), "{:?}", g.mode);
            assert!(g.partial.is_empty() && g.head_started.is_none());
        }
    }

    #[test]
    fn bad_heads_are_named() {
        let cases: &[(&[u8], &str)] = &[
            (
                b"GET / HTTP/1.1\r\ncontent-length: 1x\r\n\r\n",
                "content-length",
            ),
            (
                b"GET / HTTP/1.1\r\ncontent-length: 1\r\ncontent-length: 2\r\n\r\n",
                "conflicting",
            ),
            (
                b"GET / HTTP/1.1\r\ntransfer-encoding: gzip\r\n\r\n",
                "chunked",
            ),
            (b"\x16\x03\x01garbage\r\n\r\n", "malformed"),
        ];
        for (bytes, needle) in cases {
            let (mut g, _slot) = guard(tokio::io::empty());
            let err = g.scan(bytes).expect_err("must reject");
            assert!(err.reason().contains(needle), "{err:?}");
        }
        let (mut g, _slot) = guard(tokio::io::empty());
        let mut big = b"GET / HTTP/1.1\r\nx: ".to_vec();
        big.resize(MAX_HEAD + 1, b'a');
        for piece in big.chunks(4096) {
            if let Err(e) = g.scan(piece) {
                assert_eq!(e, Rejection::TooLarge);
                return;
            }
        }
        panic!("oversize head accepted");
    }

    #[test]
    fn bad_chunk_leaves_it_to_hyper() {
        let (mut g, _slot) = guard(tokio::io::empty());
        g.scan(b"POST / HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n")
            .expect("head is fine");
        assert!(matches!(g.mode, Mode::Pass));
    }

    #[tokio::test]
    async fn oversize_second_head_gets_400_with_reason() {
        let (a, mut b) = tokio::io::duplex(4 * MAX_HEAD);
        let (mut g, _slot) = guard(a);
        let mut req = b"GET / HTTP/1.1\r\nhost: x\r\n\r\nGET / HTTP/1.1\r\nx-big: ".to_vec();
        req.resize(MAX_HEAD + 100, b'a');
        b.write_all(&req).await.expect("write");
        let reader = tokio::spawn(async move {
            let mut seen = Vec::new();
            let _ = g.read_to_end(&mut seen).await;
            seen
        });
        let mut out = String::new();
        b.shutdown().await.expect("shutdown");
        b.read_to_string(&mut out).await.expect("read");
        let seen = reader.await.expect("join");
        assert!(seen.starts_with(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n"));
        assert!(out.starts_with("HTTP/1.1 400"), "{out}");
        assert!(
            out.ends_with("request headers too large (64 KiB)\n"),
            "{out}"
        );
    }
}
