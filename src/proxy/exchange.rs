//! One exchange: build the Flow from the request head, send the request to
//! its upstream with both bodies teed, and answer the client (the upstream's
//! response, or a short 502/504 when the upstream failed).

use std::net::SocketAddr;
use std::sync::Arc;

use http::header::{self, HeaderName, HeaderValue};
use http::{HeaderMap, Request, Response, StatusCode, Uri, Version};
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::HttpInfo;
use tokio_util::sync::CancellationToken;

use super::body::{ProxyBody, Reclaim, Side, TeeBody};
use super::limits::Slot;
use super::record::{content_encoding, header_string, Record};
use super::upstream::{classify_error, error_chain};
use super::{Listener, ProxyState, ReverseRoute};
use crate::capture::classify::{classify, is_excluded};
use crate::capture::redact::copy_headers;
use crate::flow::{Direction, ErrorKind, Flow};

/// What the proxy knows about the client connection a request came in on.
#[derive(Debug, Clone)]
pub struct Conn {
    /// The client's address.
    pub client: SocketAddr,
    /// `Some` for the reverse listener: where its requests go.
    pub reverse: Option<Arc<ReverseRoute>>,
    /// `Some(host:port)` inside a CONNECT tunnel: every request goes there.
    pub tunnel: Option<http::uri::Authority>,
    /// The client side is TLS (intercepted CONNECT).
    pub tls: bool,
    /// Stops the connection gracefully.
    pub shutdown: CancellationToken,
    /// The connection's place under `max_connections` (shared with a tunnel inside it).
    pub slot: Arc<Slot>,
    /// The listener it came in on.
    pub listener: Arc<Listener>,
    /// The listener's tasks: tunnels spawned from this connection join them.
    pub tasks: super::Tasks,
}

impl Conn {
    /// Which listener the flow belongs to.
    pub fn direction(&self) -> Direction {
        if self.reverse.is_some() {
            Direction::Reverse
        } else {
            Direction::Forward
        }
    }
}

/// Send `req` to `target` (an absolute URI) and stream the answer back.
/// `replace_host` drops the client's `Host` so the upstream sees its own.
pub async fn proxy(
    state: &ProxyState,
    conn: &Conn,
    req: Request<Incoming>,
    target: Uri,
    replace_host: bool,
) -> Response<ProxyBody> {
    let cfg = &state.config.mitm;
    if let Err(resp) = check_target(conn, &target, req.headers(), replace_host) {
        return *resp;
    }
    if super::websocket::is_upgrade(&req) {
        return Box::pin(super::websocket::relay(
            state,
            conn,
            req,
            target,
            replace_host,
        ))
        .await;
    }
    let (mut parts, body) = req.into_parts();
    let host = crate::capture::host::normalize(target.host().unwrap_or_default());
    if is_excluded(&host, &cfg.excluded_hosts) {
        let via = conn.listener.via.clone();
        return Box::pin(passthrough(state, parts, body, target, replace_host, via)).await;
    }

    let flow = request_flow(conn, &parts, &target, &host, cfg);
    let record = Record::start(
        &state.hub,
        &state.redactor,
        flow,
        content_encoding(&parts.headers),
        cfg.max_body_size,
        cfg.capture_bodies,
    );

    strip_hop_by_hop(&mut parts.headers);
    if replace_host {
        parts.headers.remove(header::HOST);
    }
    join_cookies(&mut parts.headers);
    parts.headers.append(header::VIA, conn.listener.via.clone());
    // The pool picks the upstream protocol from the client's version.
    let hint_target = target.clone();
    parts.uri = target;
    let unread = Reclaim::new(body);
    let body = TeeBody::new(
        unread.clone(),
        Side::Request,
        Arc::clone(&record),
        cfg.capture_bodies,
        false,
    );
    let upstream_req = Request::from_parts(parts, body);

    // Boxed: the pool's future is some 3 KiB, and inline it would be
    // copied into the timeout and again into this future's state.
    let sent = tokio::time::timeout(
        state.timeouts.response_head,
        Box::pin(state.client.request(upstream_req)),
    )
    .await;
    let resp = match sent {
        Ok(Ok(resp)) => resp,
        Ok(Err(e)) => {
            if let Some(reason) = record.request_protocol_error() {
                // The client's body was malformed (bad chunked encoding):
                // its fault, not the upstream's.
                tracing::info!(client = %conn.client, %reason, "rejected a request body");
                return bad_request(format!("ccproxy: {reason}\n"));
            }
            let kind = classify_error(&e);
            let reason = error_chain(&e);
            let hint = failure_hint(state, conn, replace_host, kind, &reason, &hint_target);
            Box::pin(keep_request(&record, &unread)).await;
            return fail(&record, kind, reason, hint);
        }
        Err(_) => {
            let reason = format!(
                "no response head from upstream within {}",
                humantime::format_duration(state.timeouts.response_head)
            );
            Box::pin(keep_request(&record, &unread)).await;
            return fail(&record, ErrorKind::Timeout, reason, None);
        }
    };

    let (mut parts, body) = resp.into_parts();
    let server = parts
        .extensions
        .get::<HttpInfo>()
        .map(HttpInfo::remote_addr);
    record.responded(parts.status, &parts.headers, server);
    let live = content_encoding(&parts.headers).is_none();
    strip_hop_by_hop(&mut parts.headers);
    parts.version = Version::HTTP_11;
    let body = TeeBody::new(body, Side::Response, record, cfg.capture_bodies, live)
        .with_idle_timeout(cfg.timeouts.upstream_idle);
    Response::from_parts(parts, ProxyBody::Upstream(body))
}

/// The flow of a request about to go to `target` (whose normalised host is
/// `host`): the request line and head as captured, nothing answered yet.
pub fn request_flow(
    conn: &Conn,
    parts: &http::request::Parts,
    target: &Uri,
    host: &str,
    cfg: &crate::config::MitmConfig,
) -> Flow {
    let is_https = target.scheme() == Some(&http::uri::Scheme::HTTPS);
    let path = target
        .path_and_query()
        .map_or("/", http::uri::PathAndQuery::as_str);
    let mut flow = Flow::new(
        conn.direction(),
        parts.method.as_str(),
        &super::record::uri_text(target),
        host,
        path,
    );
    flow.http_version = version_name(parts.version).to_string();
    // Unredacted here: `Record::start` redacts the whole flow before anyone sees it.
    flow.request_headers = copy_headers(&parts.headers);
    flow.request_content_type = header_string(&parts.headers, header::CONTENT_TYPE);
    flow.client_ip = Some(super::record::ip_text(conn.client.ip()));
    flow.is_https = is_https;
    // Known before connecting; the real peer address replaces them on answer.
    flow.server_port = target.port_u16().or(Some(if is_https { 443 } else { 80 }));
    flow.server_ip = host
        .parse::<std::net::IpAddr>()
        .ok()
        .map(super::record::ip_text);
    flow.traffic_type = classify(host, target.path(), &cfg.llm_hosts);
    flow.session_id = header_string(&parts.headers, "x-claude-code-session-id");
    flow
}

/// The port of an authority as written, checked: `Err` for 0, over 65535 or
/// not a number (`http::Uri` keeps such a port but yields none, and the
/// connector would quietly use 80).
pub fn checked_port(authority: &http::uri::Authority) -> Result<Option<u16>, String> {
    let s = authority.as_str();
    let after_host = s.rfind(']').map_or(s, |i| &s[i..]);
    let Some((_, port)) = after_host.rsplit_once(':') else {
        return Ok(None);
    };
    if port.is_empty() {
        return Ok(None);
    }
    match port.parse::<u32>() {
        Ok(p @ 1..=65_535) => Ok(Some(p as u16)),
        _ => Err(format!(
            "invalid port `{port}` in `{authority}`: expected 1-65535"
        )),
    }
}

/// Refuse a target with a bad port, or one that loops back into the
/// listener the request came in on (by address, or by our own `via` entry).
fn check_target(
    conn: &Conn,
    target: &Uri,
    headers: &HeaderMap,
    configured: bool,
) -> Result<(), Box<Response<ProxyBody>>> {
    let Some(authority) = target.authority() else {
        return Ok(());
    };
    let port =
        checked_port(authority).map_err(|e| Box::new(bad_request(format!("ccproxy: {e}\n"))))?;
    let port = port.unwrap_or(if target.scheme() == Some(&http::uri::Scheme::HTTPS) {
        443
    } else {
        80
    });
    let by_address = is_own_address(&conn.listener, authority.host(), port);
    if !by_address && !conn.listener.seen_in(headers) {
        return Ok(());
    }
    let key = loop_key(conn, configured);
    let how = if by_address {
        format!(
            "{target} is this proxy's own {} listener {}",
            conn.listener.kind, conn.listener.addr
        )
    } else {
        format!(
            "this request already passed through this {} listener (its `via` header says so)",
            conn.listener.kind
        )
    };
    tracing::warn!(client = %conn.client, %target, key, "request loop refused with 508");
    Err(Box::new(local_response(
        StatusCode::LOOP_DETECTED,
        format!("ccproxy: loop detected: {how}; change {key}\n"),
    )))
}

/// The setting that sends requests back into a listener.
fn loop_key(conn: &Conn, configured: bool) -> &'static str {
    match (&conn.reverse, configured) {
        (Some(_), _) => "ccproxy.upstream (the reverse listener's upstream)",
        (None, true) => "ccproxy.mitm.upstream_proxy (or --upstream) so it does not point at ccproxy.mitm.port",
        (None, false) => "the client's proxy or base URL (HTTPS_PROXY, *_BASE_URL): it sends ccproxy its own address as the target",
    }
}

/// True when `host:port` names `listener` itself.
pub fn is_own_address(listener: &Listener, host: &str, port: u16) -> bool {
    if port != listener.addr.port() {
        return false;
    }
    let host = crate::capture::host::normalize(host);
    if host == "localhost" || host.ends_with(".localhost") {
        return true;
    }
    match host.parse::<std::net::IpAddr>() {
        Ok(ip) => {
            ip == listener.addr.ip()
                || ip.is_loopback() && listener.addr.ip().is_loopback()
                || ip.is_unspecified()
                || listener.addr.ip().is_unspecified() && ip.is_loopback()
        }
        Err(_) => false,
    }
}

/// An h2 client may send several `cookie` fields; an HTTP/1.1 upstream must
/// get one, joined with `; ` (RFC 9113 §8.2.3), and h2 accepts that too.
pub fn join_cookies(headers: &mut HeaderMap) {
    let mut all = headers.get_all(header::COOKIE).iter();
    if all.next().is_none() || all.next().is_none() {
        return;
    }
    let mut joined = Vec::new();
    for v in headers.get_all(header::COOKIE) {
        if !joined.is_empty() {
            joined.extend_from_slice(b"; ");
        }
        joined.extend_from_slice(v.as_bytes());
    }
    if let Ok(v) = HeaderValue::from_bytes(&joined) {
        headers.insert(header::COOKIE, v);
    }
}

/// `HTTP/1.1`, `HTTP/2.0`… as stored in the flow.
fn version_name(v: Version) -> &'static str {
    match v {
        Version::HTTP_09 => "HTTP/0.9",
        Version::HTTP_10 => "HTTP/1.0",
        Version::HTTP_2 => "HTTP/2.0",
        Version::HTTP_3 => "HTTP/3.0",
        _ => "HTTP/1.1",
    }
}

/// An excluded host over plain HTTP: forwarded, nothing recorded.
async fn passthrough(
    state: &ProxyState,
    mut parts: http::request::Parts,
    body: Incoming,
    target: Uri,
    replace_host: bool,
    via: HeaderValue,
) -> Response<ProxyBody> {
    strip_hop_by_hop(&mut parts.headers);
    if replace_host {
        parts.headers.remove(header::HOST);
    }
    join_cookies(&mut parts.headers);
    parts.headers.append(header::VIA, via);
    // The pool picks the upstream protocol from the client's version.
    parts.uri = target;
    let req = Request::from_parts(parts, TeeBody::passthrough(Reclaim::new(body)));
    let sent = Box::pin(state.client.request(req));
    match tokio::time::timeout(state.timeouts.response_head, sent).await {
        Ok(Ok(resp)) => {
            let (mut parts, body) = resp.into_parts();
            strip_hop_by_hop(&mut parts.headers);
            parts.version = Version::HTTP_11;
            Response::from_parts(parts, ProxyBody::Upstream(TeeBody::passthrough(body)))
        }
        Ok(Err(e)) => {
            let kind = classify_error(&e);
            local_response(
                StatusCode::BAD_GATEWAY,
                format!(
                    "ccproxy: upstream {} error: {}\n",
                    kind.as_str(),
                    error_chain(&e)
                ),
            )
        }
        Err(_) => local_response(
            StatusCode::GATEWAY_TIMEOUT,
            "ccproxy: upstream timeout\n".into(),
        ),
    }
}

/// Record the failure and answer 502 (504 for a timeout) with a short reason.
fn fail(
    record: &Record,
    kind: ErrorKind,
    reason: String,
    hint: Option<String>,
) -> Response<ProxyBody> {
    tracing::debug!(error_type = kind.as_str(), %reason, "upstream failed");
    let status = if kind == ErrorKind::Timeout {
        StatusCode::GATEWAY_TIMEOUT
    } else {
        StatusCode::BAD_GATEWAY
    };
    let text = match &hint {
        Some(h) => format!(
            "ccproxy: upstream {} error: {reason}\nccproxy: {h}\n",
            kind.as_str()
        ),
        None => format!("ccproxy: upstream {} error: {reason}\n", kind.as_str()),
    };
    let reason = match hint {
        Some(h) => format!("{reason} ({h})"),
        None => reason,
    };
    record.fail(kind, reason);
    local_response(status, text)
}

/// How long a failed exchange waits for the rest of the client's request
/// body (the upstream never read it) before storing what it has.
const KEEP_REQUEST_FOR: std::time::Duration = std::time::Duration::from_secs(5);

/// The upstream failed before reading the request body: read what is left
/// (the tee keeps up to `max_body_size`, the rest is counted and dropped),
/// so the stored flow has the request that failed.
async fn keep_request(record: &Record, unread: &Reclaim) {
    use http_body_util::BodyExt;
    let Some(mut body) = unread.take() else {
        return;
    };
    // Keep at most what the flow can store; count the rest.
    let room = record.max_body_size();
    let read = async {
        let mut more = Vec::new();
        let (mut kept, mut total) = (0usize, 0u64);
        while let Some(frame) = body.frame().await {
            let Ok(frame) = frame else { break };
            if let Some(data) = frame.data_ref() {
                total += data.len() as u64;
                if kept < room {
                    let take = data.len().min(room - kept);
                    more.push(data.slice(..take));
                    kept += take;
                }
            }
        }
        (more, total)
    };
    if let Ok((chunks, total)) = tokio::time::timeout(KEEP_REQUEST_FOR, read).await {
        record.request_rest(&chunks, total);
    }
}

/// What to change when the upstream failed in a way a setting explains: an
/// untrusted certificate (`upstream_ca`), or a configured upstream that does
/// not answer (the key that names it, and its address).
fn failure_hint(
    state: &ProxyState,
    conn: &Conn,
    configured: bool,
    kind: ErrorKind,
    reason: &str,
    target: &Uri,
) -> Option<String> {
    let addr = target
        .authority()
        .map_or_else(String::new, ToString::to_string);
    match kind {
        ErrorKind::Tls
            if reason.contains("certificate")
                || reason.contains("UnknownIssuer")
                || reason.contains("CA") =>
        {
            let now = match &state.config.mitm.upstream_ca {
                Some(p) => format!(" (now {})", p.display()),
                None => String::new(),
            };
            Some(format!(
                "{addr}'s certificate is not trusted: name its CA (PEM) in ccproxy.mitm.upstream_ca{now}, or add it to the system trust store"
            ))
        }
        ErrorKind::Connect | ErrorKind::Dns | ErrorKind::Timeout => match (&conn.reverse, configured) {
            (Some(_), _) => Some(format!(
                "the reverse listener's upstream {addr} does not answer: start it (the gateway) or change ccproxy.upstream"
            )),
            (None, true) => Some(format!(
                "ccproxy.mitm.upstream_proxy ({}) does not answer at {addr}: start it or change the key",
                state.config.mitm.upstream_proxy
            )),
            (None, false) => None,
        },
        _ => None,
    }
}

/// A plain-text answer generated by the proxy itself.
pub fn local_response(status: StatusCode, text: String) -> Response<ProxyBody> {
    let mut resp = Response::new(ProxyBody::text(text));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

/// A 400 that also closes the connection (garbage, bad CONNECT target).
pub fn bad_request(text: String) -> Response<ProxyBody> {
    let mut resp = local_response(StatusCode::BAD_REQUEST, text);
    resp.headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    resp
}

/// Remove the headers that describe one connection, not the message (RFC 9110 §7.6.1).
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // One pass over the names finds which are there (most messages carry
    // none, most of the rest only `Connection`); only those are removed,
    // each a hashed lookup.
    let mut present = 0u16;
    for name in headers.keys() {
        if let Some(i) = HOP_BY_HOP.iter().position(|h| h == name) {
            present |= 1 << i;
        } else if name == header::TE {
            present |= TE_BIT;
        }
    }
    if present == 0 {
        return;
    }
    if present & 1 != 0 {
        // `HOP_BY_HOP[0]` is `Connection`: the names it lists go too, those
        // removed anyway (`keep-alive`, `upgrade`) skipped.
        let listed: Vec<HeaderName> = headers
            .get_all(header::CONNECTION)
            .iter()
            .flat_map(|v| v.as_bytes().split(|b| *b == b','))
            .map(<[u8]>::trim_ascii)
            .filter(|n| {
                !n.is_empty()
                    && !HOP_BY_HOP
                        .iter()
                        .any(|h| h.as_str().as_bytes().eq_ignore_ascii_case(n))
            })
            .filter_map(|n| HeaderName::from_bytes(n).ok())
            .collect();
        for name in listed {
            headers.remove(name);
        }
    }
    for (i, name) in HOP_BY_HOP.iter().enumerate() {
        if present & (1 << i) != 0 {
            headers.remove(name);
        }
    }
    if present & TE_BIT != 0
        && headers
            .get(header::TE)
            .is_some_and(|v| !v.as_bytes().eq_ignore_ascii_case(b"trailers"))
    {
        headers.remove(header::TE);
    }
}

/// [`strip_hop_by_hop`]'s bit for `TE` (after those of [`HOP_BY_HOP`]).
const TE_BIT: u16 = 1 << HOP_BY_HOP_LEN;

/// How many names [`HOP_BY_HOP`] holds.
const HOP_BY_HOP_LEN: usize = 9;

/// The names [`strip_hop_by_hop`] always removes. `Expect` is among them:
/// we answer `Expect: 100-continue` to the client ourselves (hyper does, once
/// the body is read); the upstream gets the body straight away.
const HOP_BY_HOP: [HeaderName; HOP_BY_HOP_LEN] = [
    header::CONNECTION,
    header::PROXY_AUTHORIZATION,
    header::PROXY_AUTHENTICATE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    header::EXPECT,
    HeaderName::from_static("proxy-connection"),
    HeaderName::from_static("keep-alive"),
];

/// `base` (an http(s) URL, maybe with a path prefix) joined with a request's path and query.
pub fn join_url(base: &str, path_and_query: &str) -> Result<Uri, http::uri::InvalidUri> {
    let mut s = String::with_capacity(base.len() + path_and_query.len());
    s.push_str(base.trim_end_matches('/'));
    if !path_and_query.starts_with('/') {
        s.push('/');
    }
    s.push_str(path_and_query);
    s.parse()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_headers_go() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("close, X-Hop ,Keep-Alive"),
        );
        h.append(header::CONNECTION, HeaderValue::from_static("x-other"));
        h.insert("x-hop", HeaderValue::from_static("1"));
        h.insert("x-other", HeaderValue::from_static("2"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert(header::TE, HeaderValue::from_static("gzip"));
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer x"));
        h.insert("x-api-key", HeaderValue::from_static("k"));
        strip_hop_by_hop(&mut h);
        let left: Vec<&str> = h.keys().map(HeaderName::as_str).collect();
        assert_eq!(left, ["authorization", "x-api-key"]);
        let mut h = HeaderMap::new();
        h.insert(header::TE, HeaderValue::from_static("trailers"));
        strip_hop_by_hop(&mut h);
        assert!(h.contains_key(header::TE));
    }

    #[test]
    fn ports_are_checked() {
        let cases = [
            ("h:80", Ok(Some(80))),
            ("h", Ok(None)),
            ("[::1]:443", Ok(Some(443))),
            ("[::1]", Ok(None)),
            ("h:0", Err(())),
            ("h:99999", Err(())),
            ("h:65536", Err(())),
        ];
        for (a, want) in cases {
            let auth: http::uri::Authority = a.parse().expect("authority");
            assert_eq!(checked_port(&auth).map_err(|_| ()), want, "{a}");
        }
    }

    #[test]
    fn cookies_are_joined() {
        let mut h = HeaderMap::new();
        h.append(header::COOKIE, HeaderValue::from_static("a=1"));
        h.append(header::COOKIE, HeaderValue::from_static("b=2"));
        h.append(header::COOKIE, HeaderValue::from_static("c=3"));
        join_cookies(&mut h);
        let all: Vec<_> = h.get_all(header::COOKIE).iter().collect();
        assert_eq!(all, ["a=1; b=2; c=3"]);
    }

    #[test]
    fn own_addresses() {
        let l = Listener::new("forward", "127.0.0.1:4000".parse().expect("addr"));
        assert!(is_own_address(&l, "localhost", 4000));
        assert!(is_own_address(&l, "127.0.0.1", 4000));
        assert!(is_own_address(&l, "[::1]", 4000));
        assert!(is_own_address(&l, "0.0.0.0", 4000));
        assert!(!is_own_address(&l, "127.0.0.1", 4001));
        assert!(!is_own_address(&l, "example.com", 4000));
        let mut h = HeaderMap::new();
        h.append(header::VIA, HeaderValue::from_static("1.0 other"));
        assert!(!l.seen_in(&h));
        h.append(header::VIA, l.via.clone());
        assert!(l.seen_in(&h));
    }

    #[test]
    fn urls_join() {
        let cases = [
            (
                "http://localhost:4000",
                "/v1/messages?beta=1",
                "http://localhost:4000/v1/messages?beta=1",
            ),
            ("https://gw.test/api/", "/v1/x", "https://gw.test/api/v1/x"),
            ("http://h:1", "*", "http://h:1/*"),
        ];
        for (base, pq, want) in cases {
            assert_eq!(join_url(base, pq).expect("uri").to_string(), want);
        }
    }
}
