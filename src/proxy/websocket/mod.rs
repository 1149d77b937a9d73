//! WebSocket and other HTTP/1.1 Upgrade requests, on every path that reaches
//! [`exchange::proxy`](super::exchange::proxy) (absolute-form, inside a CONNECT
//! tunnel, TLS or plain, and the reverse listener).
//!
//! ```text
//! client ──GET + Upgrade──▶ relay ──same head, fresh h1 connection──▶ upstream
//!        ◀──────────101──── relay ◀────────────────────────────101───
//!   upgraded ◀══ pump: bytes copied both ways untouched ══▶ upgraded
//!                 └ FrameReader per direction ─▶ WsMessage list on the flow
//! ```
//!
//! The handshake is the flow (status 101); it completes when both directions
//! have closed (or at shutdown), carrying its messages, and
//! `request_body_size`/`response_body_size` count the bytes relayed each way.
//! An upstream that refuses the upgrade is answered like any other response.

pub mod frame;

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{HeaderMap, Request, Response, StatusCode, Uri, Version};
use hyper::body::Incoming;
use hyper::upgrade::OnUpgrade;
use hyper_util::client::legacy::connect::HttpInfo;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::body::{ProxyBody, Side, Tapped, TeeBody};
use super::exchange::{local_response, strip_hop_by_hop, Conn};
use super::record::{content_encoding, Record};
use super::upstream::{classify_error, error_chain};
use super::ProxyState;
use crate::capture::classify::is_excluded;
use crate::flow::{ErrorKind, WsFrom, WsMessage, WsOpcode};
use frame::FrameReader;

/// Messages kept per flow; later ones are counted in the byte totals only.
pub const MAX_MESSAGES: usize = 10_000;

/// Payload bytes kept per flow, as a multiple of `max_body_size`; past it
/// messages are kept without their payload.
pub const KEPT_BYTES_FACTOR: usize = 16;

/// How often an open WebSocket flow's new messages are shown to viewers.
const PROGRESS_EVERY: Duration = Duration::from_millis(250);

/// Read buffer of each direction.
const BUF: usize = 16 * 1024;

/// True for an HTTP/1.x request asking to switch protocols (`Connection:
/// upgrade` and an `Upgrade` header). `h2c` is not relayed: a proxy does not
/// upgrade its upstream hop to h2c on a client's behalf.
pub fn is_upgrade<B>(req: &Request<B>) -> bool {
    if req.version() >= Version::HTTP_2 {
        return false;
    }
    let h = req.headers();
    let Some(proto) = h.get(header::UPGRADE).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    if proto.trim().eq_ignore_ascii_case("h2c") {
        return false;
    }
    connection_has_upgrade(h)
}

fn connection_has_upgrade(h: &HeaderMap) -> bool {
    h.get_all(header::CONNECTION).iter().any(|v| {
        v.to_str()
            .unwrap_or_default()
            .split(',')
            .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
    })
}

/// Relay an Upgrade request to `target` and, on `101`, the upgraded bytes.
pub async fn relay(
    state: &ProxyState,
    conn: &Conn,
    mut req: Request<Incoming>,
    target: Uri,
    replace_host: bool,
) -> Response<ProxyBody> {
    let cfg = &state.config.mitm;
    let client_upgrade = hyper::upgrade::on(&mut req);
    let (mut parts, body) = req.into_parts();
    let asked = parts.headers.get(header::UPGRADE).cloned();
    let is_ws = asked
        .as_ref()
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"websocket"));
    let target = http_scheme(target);
    let host = crate::capture::host::normalize(target.host().unwrap_or_default());
    let start = Instant::now();
    let record = (!is_excluded(&host, &cfg.excluded_hosts)).then(|| {
        let flow = super::exchange::request_flow(conn, &parts, &target, &host, cfg);
        Record::start(
            &state.hub,
            &state.redactor,
            flow,
            content_encoding(&parts.headers),
            cfg.max_body_size,
            cfg.capture_bodies,
        )
    });

    strip_hop_by_hop(&mut parts.headers);
    set_upgrade(&mut parts.headers, asked.clone());
    if replace_host {
        parts.headers.remove(header::HOST);
    }
    parts.uri = target;
    parts.version = Version::HTTP_11;
    let body = super::body::Reclaim::new(body);
    let body = match &record {
        Some(r) => TeeBody::new(
            body,
            Side::Request,
            Arc::clone(r),
            cfg.capture_bodies,
            false,
        ),
        None => TeeBody::passthrough(body),
    };
    let sent = tokio::time::timeout(
        state.timeouts.response_head,
        state
            .client
            .request_upgrade(Request::from_parts(parts, body)),
    )
    .await;
    let mut resp = match sent {
        Ok(Ok(resp)) => resp,
        Ok(Err(e)) => return fail(record.as_deref(), classify_error(&e), error_chain(&e)),
        Err(_) => {
            let reason = format!(
                "no response head from upstream within {}",
                humantime::format_duration(state.timeouts.response_head)
            );
            return fail(record.as_deref(), ErrorKind::Timeout, reason);
        }
    };
    if let Some(r) = &record {
        let server = resp
            .extensions()
            .get::<HttpInfo>()
            .map(HttpInfo::remote_addr);
        r.responded(resp.status(), resp.headers(), server);
    }
    if resp.status() != StatusCode::SWITCHING_PROTOCOLS {
        // Refused (401, 426…): an ordinary response.
        let (mut parts, body) = resp.into_parts();
        strip_hop_by_hop(&mut parts.headers);
        parts.version = Version::HTTP_11;
        let body = match record {
            Some(r) => TeeBody::new(body, Side::Response, r, cfg.capture_bodies, false),
            None => TeeBody::passthrough(body),
        };
        return Response::from_parts(parts, ProxyBody::Upstream(body));
    }
    let upstream_upgrade = hyper::upgrade::on(&mut resp);
    let (mut parts, _) = resp.into_parts();
    let granted = parts.headers.get(header::UPGRADE).cloned().or(asked);
    strip_hop_by_hop(&mut parts.headers);
    set_upgrade(&mut parts.headers, granted);
    parts.version = Version::HTTP_11;
    let pump = Pump {
        record,
        parse: is_ws,
        cap: if cfg.capture_bodies {
            cfg.max_body_size
        } else {
            0
        },
        start,
        shutdown: conn.shutdown.clone(),
    };
    tokio::spawn(pump.run(client_upgrade, upstream_upgrade).in_current_span());
    Response::from_parts(parts, ProxyBody::empty())
}

/// `ws://` and `wss://` targets (absolute-form) are connected as `http`/`https`.
fn http_scheme(target: Uri) -> Uri {
    let scheme = match target.scheme_str() {
        Some(s) if s.eq_ignore_ascii_case("ws") => "http",
        Some(s) if s.eq_ignore_ascii_case("wss") => "https",
        _ => return target,
    };
    let mut parts = target.clone().into_parts();
    parts.scheme = scheme.parse().ok();
    Uri::from_parts(parts).unwrap_or(target)
}

fn set_upgrade(h: &mut HeaderMap, proto: Option<HeaderValue>) {
    if let Some(p) = proto {
        h.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        h.insert(header::UPGRADE, p);
    }
}

fn fail(record: Option<&Record>, kind: ErrorKind, reason: String) -> Response<ProxyBody> {
    tracing::debug!(error_type = kind.as_str(), %reason, "upgrade upstream failed");
    let status = if kind == ErrorKind::Timeout {
        StatusCode::GATEWAY_TIMEOUT
    } else {
        StatusCode::BAD_GATEWAY
    };
    let text = format!("ccproxy: upstream {} error: {reason}\n", kind.as_str());
    if let Some(r) = record {
        r.fail(kind, reason);
    }
    local_response(status, text)
}

/// The upgraded connection's two directions and what they carried.
struct Pump {
    record: Option<Arc<Record>>,
    /// Read WebSocket frames (other upgrades are relayed and counted only).
    parse: bool,
    cap: usize,
    start: Instant,
    shutdown: CancellationToken,
}

/// What both directions collect.
#[derive(Debug, Default)]
struct Log {
    messages: Vec<WsMessage>,
    kept_bytes: usize,
    /// Messages past [`MAX_MESSAGES`].
    omitted: u64,
    /// Bytes client→server, server→client.
    totals: [u64; 2],
    /// A Close message was seen from the client, from the server.
    closed: [bool; 2],
    error: Option<(ErrorKind, String)>,
}

impl Pump {
    async fn run(self, client: OnUpgrade, upstream: OnUpgrade) {
        let (client, upstream) = match tokio::try_join!(client, upstream) {
            Ok(pair) => pair,
            Err(e) => {
                tracing::debug!(error = %e, "upgrade failed");
                if let Some(r) = &self.record {
                    r.fail(ErrorKind::Protocol, format!("upgrade failed: {e}"));
                }
                return;
            }
        };
        let log = Mutex::new(Log::default());
        let (cr, cw) = tokio::io::split(TokioIo::new(client));
        let (ur, uw) = tokio::io::split(TokioIo::new(upstream));
        {
            let up = self.copy(cr, uw, WsFrom::Client, &log);
            let down = self.copy(ur, cw, WsFrom::Server, &log);
            tokio::pin!(up, down);
            let (mut up_done, mut down_done) = (false, false);
            let mut tick = tokio::time::interval(PROGRESS_EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut shown = 0;
            // Both directions until EOF; once both sides sent Close, the
            // first EOF ends it (a client may keep its socket open after the
            // closing handshake).
            let closed = || {
                let log = log.lock().unwrap_or_else(PoisonError::into_inner);
                log.closed == [true, true]
            };
            loop {
                tokio::select! {
                    () = &mut up, if !up_done => {
                        up_done = true;
                        if down_done || closed() { break }
                    }
                    () = &mut down, if !down_done => {
                        down_done = true;
                        if up_done || closed() { break }
                    }
                    () = self.shutdown.cancelled() => break,
                    _ = tick.tick() => {
                        // Viewers see the messages while the connection is open.
                        let Some(r) = &self.record else { continue };
                        let fresh = {
                            let log = log.lock().unwrap_or_else(PoisonError::into_inner);
                            (log.messages.len() != shown).then(|| log.messages.clone())
                        };
                        if let Some(messages) = fresh {
                            shown = messages.len();
                            r.websocket_progress(messages);
                        }
                    }
                }
            }
        }
        let log = log.into_inner().unwrap_or_else(PoisonError::into_inner);
        if log.omitted > 0 {
            tracing::debug!(
                omitted = log.omitted,
                "websocket messages past the cap not kept"
            );
        }
        if let Some(r) = self.record {
            let tapped = |total| Tapped {
                captured: Bytes::new(),
                total,
                error: None,
                frames: Vec::new(),
            };
            r.body_done(Side::Request, tapped(log.totals[0]));
            let mut down = tapped(log.totals[1]);
            down.error = log.error;
            r.body_done(Side::Response, down);
            r.websocket_messages(log.messages);
        }
    }

    /// Copy one direction until EOF or error, reading frames on the way.
    async fn copy<R, W>(&self, mut from: R, mut to: W, side: WsFrom, log: &Mutex<Log>)
    where
        R: AsyncRead + Unpin,
        W: AsyncWrite + Unpin,
    {
        let lock = || log.lock().unwrap_or_else(PoisonError::into_inner);
        let mut reader = self.parse.then(|| FrameReader::new(self.cap));
        let budget = self.cap.saturating_mul(KEPT_BYTES_FACTOR);
        let idx = usize::from(side == WsFrom::Server);
        let mut buf = vec![0u8; BUF];
        loop {
            let n = match from.read(&mut buf).await {
                Ok(0) => break,
                Ok(n) => n,
                // A TLS peer that closes without close_notify: an ordinary end here.
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
                Err(e) => {
                    lock().error.get_or_insert((
                        ErrorKind::Reset,
                        format!("{} connection: {e}", side.as_str()),
                    ));
                    break;
                }
            };
            if let Some(r) = reader.as_mut() {
                r.feed(&buf[..n], &mut |m| {
                    let mut log = lock();
                    if m.opcode == WsOpcode::Close {
                        log.closed[idx] = true;
                    }
                    if log.messages.len() >= MAX_MESSAGES {
                        log.omitted += 1;
                        return;
                    }
                    let data = if log.kept_bytes + m.data.len() <= budget {
                        log.kept_bytes += m.data.len();
                        m.data
                    } else {
                        Bytes::new()
                    };
                    log.messages.push(WsMessage {
                        from: side,
                        // Whole microseconds: the value survives a JSONB round trip.
                        offset_ms: self.start.elapsed().as_micros() as f64 / 1000.0,
                        opcode: m.opcode,
                        size: m.size,
                        data,
                        compressed: m.compressed,
                    });
                });
                if let Some(v) = r.violation() {
                    tracing::debug!(from = side.as_str(), violation = ?v, "stopped reading websocket frames");
                }
            }
            lock().totals[idx] += n as u64;
            if let Err(e) = to.write_all(&buf[..n]).await {
                lock().error.get_or_insert((
                    ErrorKind::Reset,
                    format!("writing to the {} side: {e}", other(side)),
                ));
                break;
            }
        }
        let _ = to.shutdown().await;
    }
}

fn other(side: WsFrom) -> &'static str {
    match side {
        WsFrom::Client => "server",
        WsFrom::Server => "client",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upgrade_detection() {
        let req = |conn: &str, up: Option<&str>, v: Version| {
            let mut b = Request::builder().version(v).header("connection", conn);
            if let Some(u) = up {
                b = b.header("upgrade", u);
            }
            b.body(()).expect("req")
        };
        assert!(is_upgrade(&req(
            "Upgrade",
            Some("websocket"),
            Version::HTTP_11
        )));
        assert!(is_upgrade(&req(
            "keep-alive, upgrade",
            Some("websocket"),
            Version::HTTP_11
        )));
        assert!(!is_upgrade(&req(
            "keep-alive",
            Some("websocket"),
            Version::HTTP_11
        )));
        assert!(!is_upgrade(&req("upgrade", None, Version::HTTP_11)));
        assert!(!is_upgrade(&req("upgrade", Some("h2c"), Version::HTTP_11)));
        assert!(!is_upgrade(&req(
            "upgrade",
            Some("websocket"),
            Version::HTTP_2
        )));
    }

    #[test]
    fn ws_schemes_connect_as_http() {
        let u = http_scheme("wss://h.test/x?y".parse().expect("uri"));
        assert_eq!(u.to_string(), "https://h.test/x?y");
        let u = http_scheme("ws://h.test:81/".parse().expect("uri"));
        assert_eq!(u.to_string(), "http://h.test:81/");
    }
}
