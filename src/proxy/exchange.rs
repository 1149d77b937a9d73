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

use super::body::{ProxyBody, Side, TeeBody};
use super::record::{content_encoding, header_string, Record};
use super::upstream::{classify_error, error_chain};
use super::{ProxyState, ReverseRoute};
use crate::capture::classify::{classify, is_excluded};
use crate::capture::redact::capture_headers;
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
    if super::websocket::is_upgrade(&req) {
        return super::websocket::relay(state, conn, req, target, replace_host).await;
    }
    let cfg = &state.config.mitm;
    let (mut parts, body) = req.into_parts();
    let host = crate::capture::host::normalize(target.host().unwrap_or_default());
    let path = target
        .path_and_query()
        .map_or("/", http::uri::PathAndQuery::as_str)
        .to_string();
    let is_https = target.scheme() == Some(&http::uri::Scheme::HTTPS);
    if is_excluded(&host, &cfg.excluded_hosts) {
        return passthrough(state, parts, body, target, replace_host).await;
    }

    let mut flow = Flow::new(
        conn.direction(),
        parts.method.as_str(),
        &target.to_string(),
        &host,
        &path,
    );
    flow.http_version = version_name(parts.version).to_string();
    flow.request_headers = capture_headers(&parts.headers, &cfg.redact_headers);
    flow.request_content_type = header_string(&parts.headers, header::CONTENT_TYPE);
    flow.client_ip = Some(conn.client.ip().to_string());
    flow.is_https = is_https;
    // Known before connecting; the real peer address replaces them on answer.
    flow.server_port = target.port_u16().or(Some(if is_https { 443 } else { 80 }));
    flow.server_ip = host
        .parse::<std::net::IpAddr>()
        .ok()
        .map(|ip| ip.to_string());
    flow.traffic_type = classify(&host, target.path(), &cfg.llm_hosts);
    flow.session_id = header_string(&parts.headers, "x-claude-code-session-id");
    let record = Record::start(
        &state.hub,
        flow,
        content_encoding(&parts.headers),
        cfg.max_body_size,
        cfg.capture_bodies,
    );

    strip_hop_by_hop(&mut parts.headers);
    if replace_host {
        parts.headers.remove(header::HOST);
    }
    // The pool picks the upstream protocol from the client's version.
    parts.uri = target;
    let body = TeeBody::new(
        body,
        Side::Request,
        Arc::clone(&record),
        cfg.capture_bodies,
        false,
    );
    let upstream_req = Request::from_parts(parts, body);

    let sent = tokio::time::timeout(
        state.timeouts.response_head,
        state.client.request(upstream_req),
    )
    .await;
    let resp = match sent {
        Ok(Ok(resp)) => resp,
        Ok(Err(e)) => {
            let kind = classify_error(&e);
            let reason = error_chain(&e);
            return fail(&record, kind, reason);
        }
        Err(_) => {
            let reason = format!(
                "no response head from upstream within {}",
                humantime::format_duration(state.timeouts.response_head)
            );
            return fail(&record, ErrorKind::Timeout, reason);
        }
    };

    let (mut parts, body) = resp.into_parts();
    let server = parts
        .extensions
        .get::<HttpInfo>()
        .map(HttpInfo::remote_addr);
    record.responded(parts.status, &parts.headers, server, &cfg.redact_headers);
    let live = content_encoding(&parts.headers).is_none();
    strip_hop_by_hop(&mut parts.headers);
    parts.version = Version::HTTP_11;
    let body = TeeBody::new(body, Side::Response, record, cfg.capture_bodies, live);
    Response::from_parts(parts, ProxyBody::Upstream(body))
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
) -> Response<ProxyBody> {
    strip_hop_by_hop(&mut parts.headers);
    if replace_host {
        parts.headers.remove(header::HOST);
    }
    // The pool picks the upstream protocol from the client's version.
    parts.uri = target;
    let req = Request::from_parts(parts, TeeBody::passthrough(body));
    match tokio::time::timeout(state.timeouts.response_head, state.client.request(req)).await {
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
fn fail(record: &Record, kind: ErrorKind, reason: String) -> Response<ProxyBody> {
    tracing::debug!(error_type = kind.as_str(), %reason, "upstream failed");
    let status = if kind == ErrorKind::Timeout {
        StatusCode::GATEWAY_TIMEOUT
    } else {
        StatusCode::BAD_GATEWAY
    };
    let text = format!("ccproxy: upstream {} error: {reason}\n", kind.as_str());
    record.fail(kind, reason);
    local_response(status, text)
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
    if let Some(conn) = headers.get(header::CONNECTION) {
        let listed: Vec<HeaderName> = conn
            .to_str()
            .unwrap_or_default()
            .split(',')
            .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
            .collect();
        for name in listed {
            headers.remove(name);
        }
    }
    for name in [
        header::CONNECTION,
        header::PROXY_AUTHORIZATION,
        header::PROXY_AUTHENTICATE,
        header::TRAILER,
        header::TRANSFER_ENCODING,
        header::UPGRADE,
    ] {
        headers.remove(name);
    }
    // We answer `Expect: 100-continue` to the client ourselves (hyper does,
    // once the body is read); the upstream gets the body straight away.
    headers.remove(header::EXPECT);
    headers.remove("proxy-connection");
    headers.remove("keep-alive");
    if headers
        .get(header::TE)
        .is_some_and(|v| !v.as_bytes().eq_ignore_ascii_case(b"trailers"))
    {
        headers.remove(header::TE);
    }
}

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
        h.insert(header::CONNECTION, HeaderValue::from_static("close, x-hop"));
        h.insert("x-hop", HeaderValue::from_static("1"));
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
