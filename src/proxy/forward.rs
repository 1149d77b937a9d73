//! Request dispatch: CONNECT, absolute-form, origin-form (forward listener),
//! requests inside a tunnel, and the reverse listener.

use std::sync::Arc;

use http::uri::Scheme;
use http::{Method, Request, Response, Uri};
use hyper::body::Incoming;

use super::body::ProxyBody;
use super::exchange::{bad_request, join_url, proxy, Conn};
use super::{connect, reverse, ProxyState};

/// Route one request to its upstream.
pub async fn handle(
    state: Arc<ProxyState>,
    conn: Arc<Conn>,
    req: Request<Incoming>,
) -> Response<ProxyBody> {
    let req = match &state.token {
        Some(token) if conn.tunnel.is_none() => match super::auth::admit(token, req) {
            Ok(req) => req,
            Err(denied) => return *denied,
        },
        _ => req,
    };
    if let Some(route) = &conn.reverse {
        return match reverse::target(route, req.uri(), req.headers()) {
            Ok(target) => proxy(&state, &conn, req, target, true).await,
            Err(resp) => *resp,
        };
    }
    if let Some(authority) = &conn.tunnel {
        let scheme = if conn.tls {
            Scheme::HTTPS
        } else {
            Scheme::HTTP
        };
        let pq = req
            .uri()
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| http::uri::PathAndQuery::from_static("/"));
        let target = Uri::builder()
            .scheme(scheme)
            .authority(authority.clone())
            .path_and_query(pq)
            .build();
        return match target {
            Ok(t) => proxy(&state, &conn, req, t, false).await,
            Err(e) => bad_request(format!("ccproxy: bad request target: {e}\n")),
        };
    }
    if req.method() == Method::CONNECT {
        return connect::establish(state, &conn, req).await;
    }
    if req.uri().scheme().is_some() && req.uri().authority().is_some() {
        let target = req.uri().clone();
        return proxy(&state, &conn, req, target, false).await;
    }
    // Origin-form: a client using the forward listener as its base URL.
    let pq = req
        .uri()
        .path_and_query()
        .map_or("/", http::uri::PathAndQuery::as_str);
    match join_url(&state.config.mitm.upstream_proxy, pq) {
        Ok(target) => proxy(&state, &conn, req, target, true).await,
        Err(e) => bad_request(format!("ccproxy: bad request target: {e}\n")),
    }
}
