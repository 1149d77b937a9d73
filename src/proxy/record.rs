//! [`Record`]: the flow of one exchange while it is in flight. The handler
//! and both body tees share it; when the last of them lets go, the flow is
//! finished (bodies decoded, times set) and published as `completed`.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use uuid::Uuid;

use super::body::{Side, Tapped};
use crate::capture::decode::decode_body;
use crate::capture::redact::{copy_headers, Redactor};
use crate::flow::{ErrorKind, Flow, FlowHub, WsMessage};

/// The shared, in-flight state of one exchange.
#[derive(Debug)]
pub struct Record {
    hub: FlowHub,
    redactor: Arc<Redactor>,
    id: Uuid,
    max_body_size: usize,
    capture_bodies: bool,
    start: Instant,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    flow: Arc<Flow>,
    request_encoding: Option<String>,
    response_encoding: Option<String>,
    request: Option<Tapped>,
    /// The part of a request body the upstream never read (failed exchanges).
    request_rest: Vec<Bytes>,
    request_rest_total: u64,
    response: Option<Tapped>,
    end: Option<Instant>,
    error: Option<(ErrorKind, String)>,
}

impl Record {
    /// Publish `started` for `flow` and keep it until the exchange ends.
    /// Every event published for the flow (and every live chunk) has been
    /// through `redactor` first.
    pub fn start(
        hub: &FlowHub,
        redactor: &Arc<Redactor>,
        mut flow: Flow,
        request_encoding: Option<String>,
        max_body_size: usize,
        capture_bodies: bool,
    ) -> Arc<Self> {
        redactor.flow(&mut flow);
        let flow = Arc::new(flow);
        hub.started(Arc::clone(&flow));
        Arc::new(Self {
            hub: hub.clone(),
            redactor: Arc::clone(redactor),
            id: flow.id,
            max_body_size,
            capture_bodies,
            start: Instant::now(),
            state: Mutex::new(State {
                flow,
                request_encoding,
                response_encoding: None,
                request: None,
                request_rest: Vec::new(),
                request_rest_total: 0,
                response: None,
                end: None,
                error: None,
            }),
        })
    }

    /// The flow's id.
    pub fn id(&self) -> Uuid {
        self.id
    }

    /// Milliseconds since the request started.
    pub fn elapsed_ms(&self) -> f64 {
        self.start.elapsed().as_secs_f64() * 1000.0
    }

    /// Capture bound for bodies.
    pub fn max_body_size(&self) -> usize {
        self.max_body_size
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The upstream answered: record status, headers, ttfb and its address.
    pub fn responded(&self, status: StatusCode, headers: &HeaderMap, server: Option<SocketAddr>) {
        let ttfb = self.start.elapsed().as_secs_f64() * 1000.0;
        let snapshot = {
            let mut st = self.lock();
            st.response_encoding = content_encoding(headers);
            let f = Arc::make_mut(&mut st.flow);
            f.status_code = Some(status.as_u16());
            f.response_headers = copy_headers(headers);
            f.response_content_type = header_string(headers, http::header::CONTENT_TYPE);
            f.ttfb_ms = Some(ttfb);
            if let Some(addr) = server {
                f.server_ip = Some(ip_text(addr.ip()));
                f.server_port = Some(addr.port());
            }
            self.redactor.response_head(f);
            Arc::clone(&st.flow)
        };
        self.hub.responded(snapshot);
    }

    /// The exchange failed before or while streaming.
    pub fn fail(&self, kind: ErrorKind, message: String) {
        let mut st = self.lock();
        st.end.get_or_insert_with(Instant::now);
        st.error.get_or_insert((kind, message));
    }

    /// Why the client's request body was refused as malformed, if it was.
    pub fn request_protocol_error(&self) -> Option<String> {
        let st = self.lock();
        match &st.error {
            Some((ErrorKind::Protocol, m))
                if st.request.is_some() && st.flow.status_code.is_none() =>
            {
                Some(m.clone())
            }
            _ => None,
        }
    }

    /// A WebSocket flow's messages (see `websocket.rs`), set once it has closed.
    pub fn websocket_messages(&self, messages: Vec<WsMessage>) {
        let mut messages = messages;
        self.redactor.ws_messages(&mut messages);
        let mut st = self.lock();
        Arc::make_mut(&mut st.flow).ws_messages = messages;
    }

    /// An open WebSocket flow's messages so far, shown to viewers (not stored).
    pub fn websocket_progress(&self, messages: Vec<WsMessage>) {
        let snapshot = {
            let mut messages = messages;
            self.redactor.ws_messages(&mut messages);
            let mut st = self.lock();
            Arc::make_mut(&mut st.flow).ws_messages = messages;
            Arc::clone(&st.flow)
        };
        self.hub.responded(snapshot);
    }

    /// A live slice of the response body.
    pub fn response_chunk(&self, data: &Bytes) {
        // Redacting costs a scan of the chunk: the hub asks only for a live viewer.
        self.hub
            .response_chunk(self.id, || self.redactor.body(data));
    }

    /// The rest of a request body that the upstream never read, read by the
    /// handler after the upstream failed: stored after the tee's part.
    pub fn request_rest(&self, chunks: &[Bytes], total: u64) {
        let mut st = self.lock();
        st.request_rest.extend_from_slice(chunks);
        st.request_rest_total += total;
    }

    /// One body ended (or was dropped); see [`Tapped`]. A request body that
    /// ended cleanly is shown at once (the prompt, while the answer streams)
    /// when a live viewer is watching.
    pub fn body_done(&self, side: Side, mut tapped: Tapped) {
        let mut st = self.lock();
        let clean = tapped.error.is_none();
        if let Some(err) = tapped.error.take() {
            st.error.get_or_insert(err);
        }
        match side {
            Side::Request => {
                if clean && self.hub.wants_chunks() {
                    let st = &mut *st;
                    let f = Arc::make_mut(&mut st.flow);
                    f.request_body_size = tapped.total;
                    if self.capture_bodies {
                        f.request_body = decoded(
                            st.request_encoding.as_deref(),
                            tapped.captured.clone(),
                            self.max_body_size,
                        );
                    }
                    self.redactor.ending(f);
                    self.hub.request_body(Arc::clone(&st.flow));
                }
                st.request = Some(tapped);
            }
            Side::Response => {
                st.end.get_or_insert_with(Instant::now);
                st.response = Some(tapped);
            }
        }
    }

    fn finish(&mut self) -> Arc<Flow> {
        let start = self.start;
        let max = self.max_body_size;
        let capture = self.capture_bodies;
        let st = self.state.get_mut().unwrap_or_else(PoisonError::into_inner);
        let end = *st.end.get_or_insert_with(Instant::now);
        if st.error.is_none() && st.flow.status_code.is_none() {
            st.error = Some((
                ErrorKind::ClientAborted,
                "client went away before the upstream answered".into(),
            ));
        }
        let mut request = st.request.take().unwrap_or_default();
        if !st.request_rest.is_empty() || st.request_rest_total > 0 {
            let mut all = bytes::BytesMut::from(&request.captured[..]);
            for chunk in st.request_rest.drain(..) {
                let room = max.saturating_sub(all.len());
                all.extend_from_slice(&chunk[..room.min(chunk.len())]);
            }
            request.captured = all.freeze();
            request.total += st.request_rest_total;
        }
        let response = st.response.take().unwrap_or_default();
        let f = Arc::make_mut(&mut st.flow);
        f.request_body_size = request.total;
        f.response_body_size = response.total;
        if st.response_encoding.is_none() {
            // Offsets are of the wire bytes: they match the stored body only unencoded.
            f.response_frames = response.frames;
        }
        if capture {
            f.request_body = decoded(st.request_encoding.as_deref(), request.captured, max);
            f.response_body = decoded(st.response_encoding.as_deref(), response.captured, max);
        }
        let elapsed = end.saturating_duration_since(start);
        f.duration_ms = Some(elapsed.as_secs_f64() * 1000.0);
        f.end_time = Some(
            f.start_time + chrono::Duration::from_std(elapsed).unwrap_or(chrono::Duration::zero()),
        );
        if let Some((kind, message)) = st.error.take() {
            f.error_type = Some(kind);
            f.error_message = Some(message);
        }
        // The URL and request headers were redacted at the start, the
        // response headers with the head: what is left is what ended here.
        self.redactor.ending(f);
        Arc::clone(&st.flow)
    }
}

impl Drop for Record {
    fn drop(&mut self) {
        let flow = self.finish();
        self.hub.completed(flow);
    }
}

/// The captured copy as stored: identity bodies as they are (already cut at
/// `max`, no second copy), encoded ones through the bounded decoder.
fn decoded(encoding: Option<&str>, captured: Bytes, max: usize) -> Bytes {
    match encoding {
        None => captured,
        Some(_) => decode_body(encoding, &captured, max),
    }
}

/// The `content-encoding` of a message, when it is not identity.
pub fn content_encoding(headers: &HeaderMap) -> Option<String> {
    header_string(headers, http::header::CONTENT_ENCODING)
        .filter(|v| !v.trim().is_empty() && !v.trim().eq_ignore_ascii_case("identity"))
}

/// A header value as lossy UTF-8.
pub fn header_string<K: http::header::AsHeaderName>(
    headers: &HeaderMap,
    name: K,
) -> Option<String> {
    headers
        .get(name)
        .map(|v| crate::flow::lossy(v.as_bytes()).into_owned())
}

/// An IP address as `to_string` writes it; IPv4 (nearly every address a
/// proxy on loopback or a LAN sees) without the `fmt` machinery, since two
/// are written for every exchange.
pub fn ip_text(ip: std::net::IpAddr) -> String {
    let std::net::IpAddr::V4(v4) = ip else {
        return ip.to_string();
    };
    let mut s = String::with_capacity(15);
    for (i, octet) in v4.octets().into_iter().enumerate() {
        if i > 0 {
            s.push('.');
        }
        if octet >= 100 {
            s.push(char::from(b'0' + octet / 100));
        }
        if octet >= 10 {
            s.push(char::from(b'0' + octet / 10 % 10));
        }
        s.push(char::from(b'0' + octet % 10));
    }
    s
}

/// An absolute URI as `to_string` writes it (`scheme://authority/path?query`),
/// built by pushes; anything else through `to_string`.
pub fn uri_text(uri: &http::Uri) -> String {
    let (Some(scheme), Some(authority)) = (uri.scheme_str(), uri.authority()) else {
        return uri.to_string();
    };
    let pq = uri
        .path_and_query()
        .map_or("/", http::uri::PathAndQuery::as_str);
    let mut s = String::with_capacity(scheme.len() + 3 + authority.as_str().len() + pq.len());
    s.push_str(scheme);
    s.push_str("://");
    s.push_str(authority.as_str());
    s.push_str(pq);
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ip_and_uri_text_match_to_string() {
        for ip in [
            "0.0.0.0",
            "127.0.0.1",
            "10.9.100.255",
            "192.168.1.20",
            "::1",
            "fe80::1:2",
            "::ffff:10.0.0.1",
        ] {
            let ip: std::net::IpAddr = ip.parse().expect("ip");
            assert_eq!(ip_text(ip), ip.to_string());
        }
        for uri in [
            "http://127.0.0.1:8080/v1/messages?beta=true",
            "https://api.anthropic.com/v1/messages",
            "http://h",
            "https://[::1]:8443/a?b=%20c",
            "/origin/form",
        ] {
            let uri: http::Uri = uri.parse().expect("uri");
            assert_eq!(uri_text(&uri), uri.to_string());
        }
    }
}
