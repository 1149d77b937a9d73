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
    if req.method() == Method::CONNECT && conn.reverse.is_none() && conn.tunnel.is_none() {
        return Box::pin(connect::establish(state, &conn, req)).await;
    }
    // One call site: the exchange's future is the largest part of this one.
    match target(&state, &conn, &req) {
        Ok((target, replace_host)) => proxy(&state, &conn, req, target, replace_host).await,
        Err(resp) => *resp,
    }
}

/// Where a request goes, and whether the upstream should see its own `Host`;
/// or the answer for a request that goes nowhere.
fn target(
    state: &ProxyState,
    conn: &Conn,
    req: &Request<Incoming>,
) -> Result<(Uri, bool), Box<Response<ProxyBody>>> {
    if let Some(route) = &conn.reverse {
        return reverse::target(route, req.uri(), req.headers()).map(|t| (t, true));
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
        return Uri::builder()
            .scheme(scheme)
            .authority(authority.clone())
            .path_and_query(pq)
            .build()
            .map(|t| (t, false))
            .map_err(|e| Box::new(bad_request(format!("ccproxy: bad request target: {e}\n"))));
    }
    if req.uri().scheme().is_some() && req.uri().authority().is_some() {
        return Ok((req.uri().clone(), false));
    }
    // Origin-form: a client using the forward listener as its base URL.
    let pq = req
        .uri()
        .path_and_query()
        .map_or("/", http::uri::PathAndQuery::as_str);
    join_url(&state.config.mitm.upstream_proxy, pq)
        .map(|t| (t, true))
        .map_err(|e| Box::new(bad_request(format!("ccproxy: bad request target: {e}\n"))))
}
