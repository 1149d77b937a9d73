//! `CONNECT host:port`: answer 200, take over the upgraded connection, peek
//! its first bytes and rewind them; a TLS ClientHello is intercepted with a
//! leaf certificate from our CA, anything else is served as plain HTTP inside
//! the tunnel. Excluded hosts get a blind byte tunnel.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use http::uri::Authority;
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tracing::Instrument;

use super::body::ProxyBody;
use super::exchange::{bad_request, checked_port, is_own_address, local_response, Conn};
use super::upstream::{classify_error, error_chain};
use super::ProxyState;
use crate::capture::classify::is_excluded;

/// Handle a CONNECT request on the forward listener.
pub async fn establish(
    state: Arc<ProxyState>,
    conn: &Conn,
    req: Request<Incoming>,
) -> Response<ProxyBody> {
    let Some(authority) = req.uri().authority().cloned() else {
        return bad_request("ccproxy: CONNECT needs a host:port target\n".into());
    };
    let port = match checked_port(&authority) {
        Ok(Some(p)) if !authority.host().is_empty() => p,
        Ok(_) => {
            return bad_request(format!(
                "ccproxy: bad CONNECT target `{authority}`: expected host:port\n"
            ))
        }
        Err(e) => {
            tracing::info!(client = %conn.client, reason = %e, "rejected a CONNECT");
            return bad_request(format!("ccproxy: bad CONNECT target: {e}\n"));
        }
    };
    if is_own_address(&conn.listener, authority.host(), port) {
        tracing::warn!(client = %conn.client, target = %authority, "CONNECT to this proxy itself refused with 508");
        return local_response(
            StatusCode::LOOP_DETECTED,
            format!(
                "ccproxy: loop detected: CONNECT {authority} is this proxy's own listener; \
                 change the client's proxy setting (HTTPS_PROXY) or its target\n"
            ),
        );
    }
    let host = bare_host(&authority);
    if is_excluded(&host, &state.config.mitm.excluded_hosts) {
        let upstream = match tokio::time::timeout(
            state.timeouts.connect,
            TcpStream::connect(authority.as_str()),
        )
        .await
        {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                let kind = classify_error(&e);
                return local_response(
                    StatusCode::BAD_GATEWAY,
                    format!(
                        "ccproxy: cannot reach {authority} ({}): {}\n",
                        kind.as_str(),
                        error_chain(&e)
                    ),
                );
            }
            Err(_) => {
                return local_response(
                    StatusCode::GATEWAY_TIMEOUT,
                    format!("ccproxy: connecting to {authority} timed out\n"),
                )
            }
        };
        let _ = upstream.set_nodelay(true);
        let in_flight = conn.slot.state().begin();
        conn.tasks.spawn(
            async move {
                let _in_flight = in_flight;
                match hyper::upgrade::on(req).await {
                    Ok(up) => {
                        let mut client = TokioIo::new(up);
                        let mut upstream = upstream;
                        match tokio::io::copy_bidirectional(&mut client, &mut upstream).await {
                            Ok((tx, rx)) => tracing::debug!(tx, rx, "blind tunnel closed"),
                            Err(e) => tracing::debug!(error = %e, "blind tunnel ended"),
                        }
                    }
                    Err(e) => tracing::debug!(error = %e, "CONNECT upgrade failed"),
                }
            }
            .in_current_span(),
        );
        return Response::new(ProxyBody::empty());
    }

    let inner = Conn {
        client: conn.client,
        reverse: None,
        tunnel: Some(authority),
        tls: false,
        shutdown: conn.shutdown.clone(),
        slot: Arc::clone(&conn.slot),
        listener: Arc::clone(&conn.listener),
        tasks: conn.tasks.clone(),
    };
    spawn_interception(state, inner, host, req);
    Response::new(ProxyBody::empty())
}

/// Take over the upgraded connection once the 200 is sent. A plain function
/// (not async) so the connection future does not contain itself.
fn spawn_interception(state: Arc<ProxyState>, conn: Conn, host: String, req: Request<Incoming>) {
    let tasks = conn.tasks.clone();
    tasks.spawn(
        async move {
            match hyper::upgrade::on(req).await {
                Ok(up) => {
                    if let Err(e) = intercept(state, conn, host, TokioIo::new(up)).await {
                        tracing::debug!(error = %e, "tunnel ended with an error");
                    }
                }
                Err(e) => tracing::debug!(error = %e, "CONNECT upgrade failed"),
            }
        }
        .in_current_span(),
    );
}

/// Peek at the tunnel's first bytes and serve TLS or plain HTTP.
async fn intercept<I>(
    state: Arc<ProxyState>,
    mut conn: Conn,
    host: String,
    mut io: I,
) -> Result<(), io::Error>
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let handshake = state.config.mitm.timeouts.handshake;
    let timed_out = || {
        io::Error::new(
            io::ErrorKind::TimedOut,
            format!(
                "no TLS handshake or request within {} (ccproxy.mitm.timeouts.handshake)",
                humantime::format_duration(handshake)
            ),
        )
    };
    let started = std::time::Instant::now();
    let mut first = vec![0u8; 1024];
    let n = tokio::select! {
        r = tokio::time::timeout(handshake, io.read(&mut first)) => r.map_err(|_| timed_out())??,
        () = conn.shutdown.cancelled() => return Ok(()),
    };
    if n == 0 {
        return Ok(());
    }
    first.truncate(n);
    let is_tls = first[0] == 0x16;
    let io = Rewind::new(io, Bytes::from(first));
    if !is_tls {
        super::serve_connection(io, state, Arc::new(conn), started).await;
        return Ok(());
    }
    let accept = async {
        let acceptor =
            tokio_rustls::LazyConfigAcceptor::new(rustls::server::Acceptor::default(), io).await?;
        let sni = acceptor
            .client_hello()
            .server_name()
            .map_or(host, str::to_string);
        let config = state
            .ca
            .server_config(&sni)
            .map_err(|e| io::Error::other(e.to_string()))?;
        Ok::<_, io::Error>((acceptor.into_stream(config).await, sni))
    };
    let (tls, sni) = match tokio::time::timeout(handshake, accept).await {
        Ok(r) => r?,
        Err(_) => return Err(timed_out()),
    };
    let tls = match tls {
        Ok(tls) => tls,
        Err(e) => {
            if e.get_ref()
                .and_then(|inner| inner.downcast_ref::<rustls::Error>())
                .is_some_and(|r| matches!(r, rustls::Error::AlertReceived(_)))
            {
                tracing::warn!(
                    host = %sni,
                    error = %e,
                    "the client rejected our certificate: make it trust the CA (run `ccproxy ca` to see how)"
                );
            }
            return Err(e);
        }
    };
    conn.tls = true;
    super::serve_connection(tls, state, Arc::new(conn), std::time::Instant::now()).await;
    Ok(())
}

/// The host of an authority, normalised ([`crate::capture::host::normalize`]).
pub fn bare_host(authority: &Authority) -> String {
    crate::capture::host::normalize(authority.host())
}

/// An I/O stream that first replays bytes already read from it.
pub struct Rewind<T> {
    prefix: Option<Bytes>,
    inner: T,
}

impl<T> Rewind<T> {
    /// Replay `prefix`, then read from `inner`.
    pub fn new(inner: T, prefix: Bytes) -> Self {
        Self {
            prefix: (!prefix.is_empty()).then_some(prefix),
            inner,
        }
    }

    /// The stream and what is left of the prefix.
    pub fn into_parts(self) -> (T, Bytes) {
        (self.inner, self.prefix.unwrap_or_default())
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Rewind<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if let Some(mut prefix) = self.prefix.take() {
            let n = prefix.len().min(buf.remaining());
            buf.put_slice(&prefix[..n]);
            prefix.advance(n);
            if !prefix.is_empty() {
                self.prefix = Some(prefix);
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Rewind<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    #[tokio::test]
    async fn rewind_replays_then_reads() {
        let (a, mut b) = tokio::io::duplex(64);
        b.write_all(b" world").await.expect("write");
        drop(b);
        let mut r = Rewind::new(a, Bytes::from_static(b"hello"));
        let mut out = String::new();
        r.read_to_string(&mut out).await.expect("read");
        assert_eq!(out, "hello world");
    }
}
