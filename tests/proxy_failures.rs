//! Every failure kind: the client gets a 502/504 with a short reason (or a
//! cut stream), the flow records `error_type`/`error_message`, and garbage
//! from a client gets a 400 while the proxy keeps serving everyone else.

mod common;

use std::time::Duration;

use common::upstream::{self as up, full, ProxyOptions, TestCa};
use http::{Response, StatusCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use ccproxy::flow::ErrorKind;
use ccproxy::proxy::{ReverseRoute, Timeouts};

/// Make the next close send a RST (what a crashed upstream looks like).
#[allow(deprecated)]
fn socket2_linger(s: &TcpStream) -> std::io::Result<()> {
    s.set_linger(Some(Duration::ZERO))
}

/// Read one request head from a raw upstream connection.
async fn read_head(s: &mut TcpStream) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        match s.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

async fn get_status_and_text(proxy: &up::TestProxy, url: &str) -> (StatusCode, String) {
    let resp = up::client_via(&proxy.url(), &[])
        .get(url)
        .send()
        .await
        .expect("send");
    let status = resp.status();
    (status, resp.text().await.unwrap_or_default())
}

#[tokio::test]
async fn refused_connection_is_502_connect() {
    let port = up::closed_port().await;
    let mut proxy = up::start_proxy(None, |_| {}, ProxyOptions::default()).await;
    let (status, text) = get_status_and_text(&proxy, &format!("http://127.0.0.1:{port}/")).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY);
    assert!(text.contains("connect"), "{text}");
    let f = proxy.completed().await;
    assert_eq!(f.error_type, Some(ErrorKind::Connect));
    assert!(f.error_message.as_deref().is_some_and(|m| !m.is_empty()));
    assert_eq!(f.status_code, None);
    assert_eq!(f.server_port, Some(port));
    assert_eq!(f.server_ip.as_deref(), Some("127.0.0.1"));
}

#[tokio::test]
async fn unknown_host_is_502_dns() {
    let mut proxy = up::start_proxy(None, |_| {}, ProxyOptions::default()).await;
    let (status, text) = get_status_and_text(&proxy, "http://upstream.invalid/x").await;
    assert_eq!(status, StatusCode::BAD_GATEWAY);
    assert!(text.contains("dns"), "{text}");
    let f = proxy.completed().await;
    assert_eq!(f.error_type, Some(ErrorKind::Dns));
    assert_eq!(f.host, "upstream.invalid");
}

#[tokio::test]
async fn silent_upstream_is_504_timeout() {
    let upstream = up::raw(|mut s| async move {
        read_head(&mut s).await;
        tokio::time::sleep(Duration::from_secs(30)).await;
    })
    .await;
    let mut proxy = up::start_proxy(
        None,
        |_| {},
        ProxyOptions {
            timeouts: Timeouts {
                connect: Duration::from_secs(5),
                response_head: Duration::from_millis(300),
            },
            ..ProxyOptions::default()
        },
    )
    .await;
    let (status, _) = get_status_and_text(&proxy, &format!("http://{}/", upstream.addr)).await;
    assert_eq!(status, StatusCode::GATEWAY_TIMEOUT);
    let f = proxy.completed().await;
    assert_eq!(f.error_type, Some(ErrorKind::Timeout));
}

#[tokio::test]
async fn upstream_closing_before_the_head_is_502_reset() {
    let upstream = up::raw(|mut s| async move {
        read_head(&mut s).await;
        let _ = socket2_linger(&s);
        drop(s);
    })
    .await;
    let mut proxy = up::start_proxy(None, |_| {}, ProxyOptions::default()).await;
    let (status, _) = get_status_and_text(&proxy, &format!("http://{}/", upstream.addr)).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY);
    let f = proxy.completed().await;
    assert_eq!(
        f.error_type,
        Some(ErrorKind::Reset),
        "{:?}",
        f.error_message
    );
}

#[tokio::test]
async fn reset_mid_stream_cuts_the_client_and_records_reset() {
    let upstream = up::raw(|mut s| async move {
        read_head(&mut s).await;
        let _ = s
            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 1000\r\n\r\n0123456789")
            .await;
        tokio::time::sleep(Duration::from_millis(50)).await;
        let _ = socket2_linger(&s);
        drop(s);
    })
    .await;
    let mut proxy = up::start_proxy(None, |_| {}, ProxyOptions::default()).await;
    let resp = up::client_via(&proxy.url(), &[])
        .get(format!("http://{}/", upstream.addr))
        .send()
        .await
        .expect("head arrives");
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(resp.bytes().await.is_err(), "the body must not end cleanly");
    let f = proxy.completed().await;
    assert_eq!(f.status_code, Some(200));
    assert_eq!(
        f.error_type,
        Some(ErrorKind::Reset),
        "{:?}",
        f.error_message
    );
    assert_eq!(f.response_body_size, 10);
}

#[tokio::test]
async fn garbage_from_upstream_is_502_protocol() {
    let upstream = up::raw(|mut s| async move {
        read_head(&mut s).await;
        let _ = s.write_all(b"\x00\x01 not http at all\r\n\r\n").await;
        tokio::time::sleep(Duration::from_millis(200)).await;
    })
    .await;
    let mut proxy = up::start_proxy(None, |_| {}, ProxyOptions::default()).await;
    let (status, _) = get_status_and_text(&proxy, &format!("http://{}/", upstream.addr)).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY);
    let f = proxy.completed().await;
    assert_eq!(
        f.error_type,
        Some(ErrorKind::Protocol),
        "{:?}",
        f.error_message
    );
}

#[tokio::test]
async fn untrusted_upstream_certificate_is_502_tls() {
    let stranger = TestCa::new();
    let upstream = up::https(&stranger, |_| async { Response::new(full("hidden")) }).await;
    let mut proxy = up::start_proxy(
        None,
        |_| {},
        ProxyOptions {
            reverse: Some(ReverseRoute::Fixed(format!(
                "https://localhost:{}",
                upstream.addr.port()
            ))),
            ..ProxyOptions::default()
        },
    )
    .await;
    let rev = proxy.reverse.expect("reverse");
    let resp = up::client_direct(&[])
        .get(format!("http://{rev}/v1/messages"))
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), StatusCode::BAD_GATEWAY);
    let f = proxy.completed().await;
    assert_eq!(f.error_type, Some(ErrorKind::Tls), "{:?}", f.error_message);
    assert!(f.is_https);
}

#[tokio::test]
async fn ssl_insecure_accepts_an_untrusted_upstream() {
    let stranger = TestCa::new();
    let upstream = up::https(&stranger, |_| async { Response::new(full("reached")) }).await;
    let proxy = up::start_proxy(
        None,
        |c| c.mitm.ssl_insecure = true,
        ProxyOptions {
            reverse: Some(ReverseRoute::Fixed(format!(
                "https://localhost:{}",
                upstream.addr.port()
            ))),
            ..ProxyOptions::default()
        },
    )
    .await;
    let rev = proxy.reverse.expect("reverse");
    let text = up::client_direct(&[])
        .get(format!("http://{rev}/"))
        .send()
        .await
        .expect("send")
        .text()
        .await
        .expect("text");
    assert_eq!(text, "reached");
}

#[tokio::test]
async fn client_leaving_mid_stream_is_client_aborted() {
    let upstream = up::http(|_| async {
        let (tx, rx) = futures::channel::mpsc::unbounded::<
            Result<http_body::Frame<bytes::Bytes>, up::BoxError>,
        >();
        let _ = tx.unbounded_send(Ok(http_body::Frame::data(bytes::Bytes::from_static(
            b"data: first\n\n",
        ))));
        // Keep the sender alive so the stream never ends.
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(30)).await;
            drop(tx);
        });
        Response::builder()
            .header("content-type", "text/event-stream")
            .body(http_body_util::BodyExt::boxed(
                http_body_util::StreamBody::new(rx),
            ))
            .expect("response")
    })
    .await;
    let mut proxy = up::start_proxy(None, |_| {}, ProxyOptions::default()).await;
    let mut resp = up::client_via(&proxy.url(), &[])
        .get(format!("http://{}/stream", upstream.addr))
        .send()
        .await
        .expect("send");
    let first = resp.chunk().await.expect("chunk").expect("some");
    assert_eq!(&first[..], b"data: first\n\n");
    drop(resp);
    let f = proxy.completed().await;
    assert_eq!(f.error_type, Some(ErrorKind::ClientAborted));
    assert_eq!(f.status_code, Some(200));
}

/// Send raw bytes to the proxy and read everything it answers until it closes.
async fn raw_exchange(addr: std::net::SocketAddr, bytes: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    let _ = s.write_all(bytes).await;
    let mut out = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out)).await;
    assert!(read.is_ok(), "the proxy must close the connection");
    String::from_utf8_lossy(&out).into_owned()
}

/// An oversize request head: a 400 with a reason (not hyper's bare 431), then the close.
fn assert_too_large(out: &str) {
    assert!(out.starts_with("HTTP/1.1 400"), "{out}");
    assert!(out.contains("connection: close"), "{out}");
    assert!(out.contains("request headers too large"), "{out}");
}

/// A request whose one header makes the head 512 KiB.
fn huge_head(target: &str) -> String {
    format!(
        "GET {target} HTTP/1.1\r\nhost: x\r\nx-big: {}\r\n\r\n",
        "a".repeat(512 * 1024)
    )
}

#[tokio::test]
async fn oversize_headers_get_400_on_reverse_and_inside_intercepted_connect() {
    let upstream = up::http(|_| async { Response::new(full("still here")) }).await;
    let proxy = up::start_proxy(
        None,
        |_| {},
        ProxyOptions {
            reverse: Some(ReverseRoute::Fixed(format!("http://{}", upstream.addr))),
            ..ProxyOptions::default()
        },
    )
    .await;
    let reverse = proxy.reverse.expect("reverse listener");

    // Reverse listener.
    let out = raw_exchange(reverse, huge_head("/v1/messages").as_bytes()).await;
    assert_too_large(&out);
    let resp = up::client_direct(&[])
        .get(format!("http://{reverse}/v1/messages"))
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.text().await.expect("text"), "still here");

    // Inside a CONNECT tunnel that the proxy intercepts with its own CA.
    let mut tcp = TcpStream::connect(proxy.forward).await.expect("connect");
    let target = upstream.addr;
    tcp.write_all(format!("CONNECT {target} HTTP/1.1\r\nhost: {target}\r\n\r\n").as_bytes())
        .await
        .expect("connect request");
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        tcp.read_exact(&mut byte).await.expect("CONNECT answer");
        head.push(byte[0]);
    }
    assert!(
        head.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    let mut roots = rustls::RootCertStore::empty();
    let pem = std::fs::read(proxy.ca_pem_path()).expect("proxy ca");
    for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
        roots.add(cert.expect("cert")).expect("root");
    }
    let tls_config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(tls_config));
    let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
    let mut tls = connector
        .connect(name, tcp)
        .await
        .expect("tls through the tunnel");
    let _ = tls.write_all(huge_head("/").as_bytes()).await;
    let mut out = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), tls.read_to_end(&mut out)).await;
    assert!(read.is_ok(), "the proxy must close the tunnel");
    assert_too_large(&String::from_utf8_lossy(&out));

    // Everyone else is still served on the forward listener.
    let (status, text) = get_status_and_text(&proxy, &format!("http://{}/", upstream.addr)).await;
    assert_eq!((status, text.as_str()), (StatusCode::OK, "still here"));
}

#[tokio::test]
async fn garbage_oversize_headers_and_bad_connect_get_400_and_close() {
    let upstream = up::http(|_| async { Response::new(full("still here")) }).await;
    let proxy = up::start_proxy(None, |_| {}, ProxyOptions::default()).await;

    let out = raw_exchange(proxy.forward, b"\x16\x03\x01garbage\x00\xff\r\n\r\n").await;
    assert!(out.starts_with("HTTP/1.1 400"), "{out}");

    let huge = huge_head(&format!("http://{}/", upstream.addr));
    let out = raw_exchange(proxy.forward, huge.as_bytes()).await;
    assert_too_large(&out);
    // Another client is served right after.
    let (status, text) = get_status_and_text(&proxy, &format!("http://{}/", upstream.addr)).await;
    assert_eq!((status, text.as_str()), (StatusCode::OK, "still here"));

    let out = raw_exchange(
        proxy.forward,
        b"CONNECT nohost HTTP/1.1\r\nHost: nohost\r\n\r\n",
    )
    .await;
    assert!(out.starts_with("HTTP/1.1 400"), "{out}");

    let out = raw_exchange(
        proxy.forward,
        b"CONNECT host:notaport HTTP/1.1\r\nHost: x\r\n\r\n",
    )
    .await;
    assert!(out.starts_with("HTTP/1.1 400"), "{out}");

    // Everyone else is still served.
    let (status, text) = get_status_and_text(&proxy, &format!("http://{}/", upstream.addr)).await;
    assert_eq!((status, text.as_str()), (StatusCode::OK, "still here"));
}

#[tokio::test]
async fn port_in_use_is_a_clear_error_and_shutdown_stops_accepting() {
    let home = tempfile::tempdir().expect("home");
    let cfg = up::test_config(home.path(), None);
    let hub = ccproxy::flow::FlowHub::new(16);
    let state = ccproxy::proxy::ProxyState::new(std::sync::Arc::new(cfg), hub).expect("state");
    let listener = ccproxy::proxy::bind("127.0.0.1", 0).await.expect("bind");
    let addr = listener.local_addr().expect("addr");

    let err = ccproxy::proxy::bind("127.0.0.1", addr.port())
        .await
        .expect_err("port is taken");
    let msg = err.to_string();
    assert!(
        msg.contains("already in use") && msg.contains("--port"),
        "{msg}"
    );

    let shutdown = tokio_util::sync::CancellationToken::new();
    let task = ccproxy::proxy::serve_forward(listener, state, shutdown.clone());
    TcpStream::connect(addr).await.expect("accepting");
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("listener stops")
        .expect("no panic");
    assert!(
        TcpStream::connect(addr).await.is_err(),
        "no longer accepting"
    );
}
