//! The upstream client: the connectors of the pool (`pool.rs`), TLS verified
//! against the system roots (plus `upstream_ca`), and the mapping from its
//! errors to the `error_type` a flow records.

use std::error::Error as StdError;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::dns::{GaiResolver, Name};
use hyper_util::client::legacy::connect::HttpConnector;
use rustls::{ClientConfig, RootCertStore};

use super::body::TeeBody;
use super::pool::{Pool, PoolError};
use super::ProxyError;
use crate::config::MitmConfig;
use crate::flow::ErrorKind;
use crate::tls::NoVerify;

/// The connector every upstream connection goes through.
pub type Connector = HttpsConnector<HttpConnector<Resolver>>;

/// The pooled client shared by all listeners of one engine.
pub type UpstreamClient = Pool<TeeBody<super::body::Reclaim>>;

/// How long the proxy waits for upstream before answering 504.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// TCP connect to the upstream.
    pub connect: Duration,
    /// From sending the request head to the upstream's response head
    /// (generous: a non-streaming LLM answer can take minutes).
    pub response_head: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            connect: Duration::from_secs(10),
            response_head: Duration::from_secs(600),
        }
    }
}

/// Build the pooled client from the capture settings.
pub fn build_client(cfg: &MitmConfig, timeouts: Timeouts) -> Result<UpstreamClient, ProxyError> {
    let tls = client_tls_config(cfg)?;
    let mut http = HttpConnector::new_with_resolver(Resolver::default());
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(Some(timeouts.connect));
    http.set_keepalive(Some(Duration::from_secs(60)));
    let any = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls.clone())
        .https_or_http()
        .enable_all_versions()
        .wrap_connector(http.clone());
    let h1 = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .wrap_connector(http);
    Ok(Pool::new(any, h1, timeouts.connect))
}

/// The rustls client configuration for upstream TLS.
pub fn client_tls_config(cfg: &MitmConfig) -> Result<ClientConfig, ProxyError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| ProxyError::Tls(format!("upstream TLS setup: {e}")))?;
    // ALPN (h2, http/1.1) is set by the connector builder.
    let config = if cfg.ssl_insecure {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerify(provider)))
            .with_no_client_auth()
    } else {
        builder
            .with_root_certificates(upstream_roots(cfg.upstream_ca.as_deref())?)
            .with_no_client_auth()
    };
    Ok(config)
}

/// System roots plus the PEM certificates of `upstream_ca`.
fn upstream_roots(extra: Option<&Path>) -> Result<RootCertStore, ProxyError> {
    let mut roots = RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    for err in &native.errors {
        tracing::debug!(error = %err, "skipping a system root certificate");
    }
    let (added, _) = roots.add_parsable_certificates(native.certs);
    tracing::debug!(added, "system roots loaded");
    if let Some(path) = extra {
        let bad = |what: String| {
            ProxyError::Tls(format!(
                "upstream_ca {}: {what}; point upstream_ca at a PEM file of CA certificates",
                path.display()
            ))
        };
        let pem = std::fs::read(path).map_err(|e| bad(e.to_string()))?;
        let mut n = 0;
        for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
            let cert = cert.map_err(|e| bad(e.to_string()))?;
            roots.add(cert).map_err(|e| bad(e.to_string()))?;
            n += 1;
        }
        if n == 0 {
            return Err(bad("no certificate found".into()));
        }
    }
    Ok(roots)
}

/// Name resolution through the system resolver, except that `*.invalid`
/// (RFC 6761) fails at once instead of asking the network.
#[derive(Debug, Clone)]
pub struct Resolver {
    gai: GaiResolver,
}

impl Default for Resolver {
    fn default() -> Self {
        Self {
            gai: GaiResolver::new(),
        }
    }
}

type ResolveFuture =
    Pin<Box<dyn Future<Output = Result<std::vec::IntoIter<SocketAddr>, io::Error>> + Send>>;

impl tower_service::Service<Name> for Resolver {
    type Response = std::vec::IntoIter<SocketAddr>;
    type Error = io::Error;
    type Future = ResolveFuture;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        tower_service::Service::<Name>::poll_ready(&mut self.gai, cx)
    }

    fn call(&mut self, name: Name) -> Self::Future {
        let host = name.as_str().trim_end_matches('.').to_ascii_lowercase();
        if host == "invalid" || host.ends_with(".invalid") {
            return Box::pin(async move {
                Err(io::Error::new(
                    io::ErrorKind::NotFound,
                    format!("{host}: no such host"),
                ))
            });
        }
        let fut = tower_service::Service::<Name>::call(&mut self.gai, name);
        Box::pin(async move {
            let addrs = fut.await?;
            Ok(addrs.collect::<Vec<_>>().into_iter())
        })
    }
}

/// Map an upstream failure to the flow's `error_type`.
pub fn classify_error(err: &(dyn StdError + 'static)) -> ErrorKind {
    let mut kind = None;
    let mut cur = Some(err);
    while let Some(e) = cur {
        if e.to_string() == "dns error" {
            return ErrorKind::Dns;
        }
        if e.downcast_ref::<rustls::Error>().is_some() {
            return ErrorKind::Tls;
        }
        if let Some(io) = e.downcast_ref::<io::Error>() {
            let k = match io.kind() {
                io::ErrorKind::ConnectionRefused
                | io::ErrorKind::HostUnreachable
                | io::ErrorKind::NetworkUnreachable
                | io::ErrorKind::AddrNotAvailable => Some(ErrorKind::Connect),
                io::ErrorKind::TimedOut => Some(ErrorKind::Timeout),
                io::ErrorKind::ConnectionReset
                | io::ErrorKind::ConnectionAborted
                | io::ErrorKind::BrokenPipe
                | io::ErrorKind::UnexpectedEof => Some(ErrorKind::Reset),
                io::ErrorKind::NotFound => Some(ErrorKind::Dns),
                _ => None,
            };
            if k.is_some() {
                return k.unwrap_or(ErrorKind::Protocol);
            }
        }
        if let Some(h) = e.downcast_ref::<hyper::Error>() {
            if h.is_timeout() {
                kind.get_or_insert(ErrorKind::Timeout);
            } else if h.is_incomplete_message() || h.is_canceled() || h.is_closed() {
                kind.get_or_insert(ErrorKind::Reset);
            } else if h.is_parse() || h.is_parse_status() || h.is_parse_too_large() {
                kind.get_or_insert(ErrorKind::Protocol);
            }
        }
        if let Some(p) = e.downcast_ref::<PoolError>() {
            match p {
                PoolError::ConnectTimeout(_) => return ErrorKind::Timeout,
                PoolError::Closed => return ErrorKind::Reset,
                PoolError::Connect(_) => {
                    kind.get_or_insert(ErrorKind::Connect);
                }
                PoolError::Handshake(_) | PoolError::Request(_) | PoolError::NoHost(_) => {}
            }
        }
        cur = next_cause(e);
    }
    kind.unwrap_or(ErrorKind::Protocol)
}

/// A short human reason for an error, innermost cause last (`a: b: c`).
pub fn error_chain(err: &(dyn StdError + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut cur = Some(err);
    while let Some(e) = cur {
        let s = e.to_string();
        if !parts.iter().any(|p| p.contains(&s)) {
            parts.push(s);
        }
        cur = next_cause(e);
    }
    parts.join(": ")
}

/// The error's cause; for an `io::Error` its wrapped error (whose own
/// `source` would skip it).
fn next_cause<'a>(e: &'a (dyn StdError + 'static)) -> Option<&'a (dyn StdError + 'static)> {
    if let Some(io) = e.downcast_ref::<io::Error>() {
        if let Some(inner) = io.get_ref() {
            return Some(inner);
        }
    }
    e.source()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_kinds_map_to_error_types() {
        let cases = [
            (io::ErrorKind::ConnectionRefused, ErrorKind::Connect),
            (io::ErrorKind::TimedOut, ErrorKind::Timeout),
            (io::ErrorKind::ConnectionReset, ErrorKind::Reset),
            (io::ErrorKind::NotFound, ErrorKind::Dns),
            (io::ErrorKind::Other, ErrorKind::Protocol),
        ];
        for (io_kind, want) in cases {
            let e = io::Error::new(io_kind, "x");
            assert_eq!(classify_error(&e), want, "{io_kind:?}");
        }
        let tls = io::Error::new(
            io::ErrorKind::InvalidData,
            rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer),
        );
        assert_eq!(classify_error(&tls), ErrorKind::Tls);
    }

    #[tokio::test]
    async fn invalid_tld_never_resolves() {
        let mut r = Resolver::default();
        let name: Name = "upstream.invalid".parse().expect("name");
        let err = tower_service::Service::call(&mut r, name)
            .await
            .expect_err("must fail");
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
    }
}
