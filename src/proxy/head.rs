//! A bounded read of a connection's first request head before hyper sees it.
//!
//! hyper answers a head larger than its read buffer with a bare 431; issue 2
//! wants 400 with a reason and the connection closed. So the first head is
//! read here (usually one `read`, the same one hyper would have made), parsed
//! with `httparse`, and replayed to hyper through [`Rewind`]; only the head's
//! bytes are copied, never a body. Anything `httparse` rejects goes to hyper
//! unchanged, which answers it the way it always did.

use std::io;
use std::time::Duration;

use bytes::{BufMut, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::connect::Rewind;

/// The largest first request head accepted (request line plus headers).
/// Below hyper's `max_buf_size` so hyper's own 431 never fires first.
pub const MAX_HEAD: usize = 64 * 1024;

/// As many headers as hyper accepts by default; more is "too large" too.
const MAX_HEADERS: usize = 100;

/// The answer to an oversize head.
const TOO_LARGE: &[u8] = b"HTTP/1.1 400 Bad Request\r\n\
content-type: text/plain; charset=utf-8\r\n\
content-length: 44\r\n\
connection: close\r\n\
\r\n\
ccproxy: request headers too large (64 KiB)\n";

/// After the 400, how much of the client's unread request is drained (and
/// for how long) so closing does not reset the connection before the client
/// has read the answer.
const DRAIN_BYTES: usize = 1024 * 1024;
const DRAIN_TIME: Duration = Duration::from_secs(2);

/// What the pre-read found.
pub enum Head<I> {
    /// Hand this to hyper: the bytes read so far, then the rest of the stream.
    Serve(Rewind<I>),
    /// The client closed before sending anything.
    Closed,
    /// The head is over [`MAX_HEAD`] or has too many headers; the 400 has been
    /// written and the connection closed.
    Rejected,
}

/// Read until the first request head is complete, cannot be a request head,
/// or is too large; in the last case answer 400 and close.
pub async fn first<I>(mut io: I) -> io::Result<Head<I>>
where
    I: AsyncRead + AsyncWrite + Unpin,
{
    let mut buf = BytesMut::new();
    loop {
        let room = MAX_HEAD - buf.len();
        buf.reserve(room.min(8 * 1024));
        let n = io.read_buf(&mut (&mut buf).limit(room)).await?;
        if n == 0 {
            if buf.is_empty() {
                return Ok(Head::Closed);
            }
            // A partial head then EOF: hyper reports it as it always did.
            return Ok(Head::Serve(Rewind::new(io, buf.freeze())));
        }
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        match httparse::Request::new(&mut headers).parse(&buf) {
            Ok(httparse::Status::Partial) if buf.len() < MAX_HEAD => {}
            Ok(httparse::Status::Partial) | Err(httparse::Error::TooManyHeaders) => {
                reject(io).await;
                return Ok(Head::Rejected);
            }
            // Complete, or not HTTP/1 at all (the h2 preface, garbage): hyper's call.
            Ok(httparse::Status::Complete(_)) | Err(_) => {
                return Ok(Head::Serve(Rewind::new(io, buf.freeze())));
            }
        }
    }
}

/// Write the 400, stop writing, and drain what the client is still sending
/// (bounded) so the close is a FIN the client reads after our answer.
async fn reject<I>(mut io: I)
where
    I: AsyncRead + AsyncWrite + Unpin,
{
    tracing::debug!(limit = MAX_HEAD, "request head too large: 400 and close");
    if io.write_all(TOO_LARGE).await.is_err() || io.shutdown().await.is_err() {
        return;
    }
    let drain = async {
        let mut sink = vec![0u8; 16 * 1024];
        let mut total = 0;
        while total < DRAIN_BYTES {
            match io.read(&mut sink).await {
                Ok(0) | Err(_) => break,
                Ok(n) => total += n,
            }
        }
    };
    let _ = tokio::time::timeout(DRAIN_TIME, drain).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reason_length_matches_header() {
        let text = String::from_utf8_lossy(TOO_LARGE);
        let (head, body) = text.split_once("\r\n\r\n").expect("head");
        assert!(
            head.contains(&format!("content-length: {}", body.len())),
            "{text}"
        );
    }

    #[tokio::test]
    async fn complete_head_is_replayed_whole() {
        let (a, mut b) = tokio::io::duplex(1024);
        b.write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\nbody")
            .await
            .expect("write");
        drop(b);
        let Head::Serve(mut io) = first(a).await.expect("read") else {
            panic!("expected a head to serve");
        };
        let mut out = String::new();
        io.read_to_string(&mut out).await.expect("replay");
        assert_eq!(out, "GET / HTTP/1.1\r\nhost: x\r\n\r\nbody");
    }

    #[tokio::test]
    async fn oversize_head_gets_400_with_reason() {
        let (a, mut b) = tokio::io::duplex(4 * MAX_HEAD);
        let mut req = b"GET / HTTP/1.1\r\nx-big: ".to_vec();
        req.resize(MAX_HEAD + 10, b'a');
        b.write_all(&req).await.expect("write");
        let server = tokio::spawn(first(a));
        let mut out = String::new();
        b.read_to_string(&mut out).await.expect("read");
        drop(b);
        assert!(matches!(server.await.expect("join"), Ok(Head::Rejected)));
        assert!(out.starts_with("HTTP/1.1 400"), "{out}");
        assert!(
            out.ends_with("request headers too large (64 KiB)\n"),
            "{out}"
        );
    }
}
