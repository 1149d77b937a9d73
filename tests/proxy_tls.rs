//! CONNECT: TLS interception over HTTP/1.1 and h2 (reqwest and curl), plain
//! HTTP inside a tunnel, excluded hosts tunnelled blind, and tunnels spread
//! over the proxy's worker threads.

mod common;

use std::sync::Arc;

use common::upstream::{self as up, full, ProxyOptions, TestCa};
use http::{Response, Version};

use ccproxy::flow::Direction;

/// An HTTPS upstream that answers with the protocol it spoke.
async fn https_upstream(ca: &TestCa) -> up::Server {
    up::https(ca, |req| async move {
        let v = format!("{:?} {}", req.version(), req.uri().path());
        Response::builder()
            .header("content-type", "text/plain")
            .body(full(v))
            .expect("response")
    })
    .await
}

#[tokio::test]
async fn connect_tls_http1_and_h2_with_reqwest() {
    let ca = TestCa::new();
    let upstream = https_upstream(&ca).await;
    let mut proxy = up::start_proxy(Some(&ca), |_| {}, ProxyOptions::default()).await;
    let ours = proxy.ca_pem_path();
    let url = format!("https://localhost:{}/hello", upstream.addr.port());

    // h2 is negotiated by ALPN with our leaf certificate.
    let client = up::client_via(&proxy.url(), &[&ours]);
    let resp = client.get(&url).send().await.expect("h2 send");
    assert_eq!(resp.version(), Version::HTTP_2);
    assert_eq!(resp.text().await.expect("text"), "HTTP/2.0 /hello");
    let f = proxy.completed().await;
    assert!(f.is_https);
    assert_eq!(f.http_version, "HTTP/2.0");
    assert_eq!(f.url, url);
    assert_eq!(f.host, "localhost");
    assert_eq!(f.server_port, Some(upstream.addr.port()));
    assert_eq!(f.direction, Direction::Forward);
    assert_eq!(f.status_code, Some(200));

    let pem = std::fs::read(&ours).expect("pem");
    let client = reqwest::Client::builder()
        .proxy(reqwest::Proxy::all(proxy.url()).expect("proxy"))
        .add_root_certificate(reqwest::Certificate::from_pem(&pem).expect("cert"))
        .http1_only()
        .build()
        .expect("client");
    let resp = client.get(&url).send().await.expect("h1 send");
    assert_eq!(resp.version(), Version::HTTP_11);
    // An HTTP/1.1 client gets an HTTP/1.1 upstream (pooled keep-alive).
    assert_eq!(resp.text().await.expect("text"), "HTTP/1.1 /hello");
    let f = proxy.completed().await;
    assert_eq!(f.http_version, "HTTP/1.1");
    assert!(f.is_https);
}

#[tokio::test]
async fn connect_tls_with_curl_both_protocols() {
    let ca = TestCa::new();
    let upstream = https_upstream(&ca).await;
    let mut proxy = up::start_proxy(Some(&ca), |_| {}, ProxyOptions::default()).await;
    let ours = proxy.ca_pem_path();
    let ours = ours.to_str().expect("utf-8 path");
    let url = format!("https://localhost:{}/curl", upstream.addr.port());
    for (flag, want) in [("--http1.1", "HTTP/1.1"), ("--http2", "HTTP/2.0")] {
        let (ok, out, err) = up::curl(&["-x", &proxy.url(), "--cacert", ours, flag, &url]).await;
        assert!(ok, "{flag}: {err}");
        // The upstream hop speaks what the client spoke.
        assert_eq!(
            String::from_utf8_lossy(&out),
            format!("{want} /curl"),
            "{flag}"
        );
        let f = proxy.completed().await;
        assert_eq!(f.http_version, want, "{flag}");
        assert!(f.is_https);
    }
}

#[tokio::test]
async fn plain_http_inside_a_connect_tunnel() {
    let upstream =
        up::http(|req| async move { Response::new(full(format!("plain {}", req.uri()))) }).await;
    let mut proxy = up::start_proxy(None, |_| {}, ProxyOptions::default()).await;
    let url = format!("http://{}/tunnelled?x=1", upstream.addr);
    let (ok, out, err) = up::curl(&["-x", &proxy.url(), "--proxytunnel", &url]).await;
    assert!(ok, "{err}");
    assert_eq!(String::from_utf8_lossy(&out), "plain /tunnelled?x=1");
    let f = proxy.completed().await;
    assert!(!f.is_https);
    assert_eq!(f.url, url);
    assert_eq!(f.status_code, Some(200));
}

#[tokio::test]
async fn excluded_host_is_tunnelled_blind() {
    let ca = TestCa::new();
    let upstream = https_upstream(&ca).await;
    let mut proxy = up::start_proxy(
        Some(&ca),
        |c| c.mitm.excluded_hosts = vec!["localhost".into()],
        ProxyOptions::default(),
    )
    .await;
    // The client trusts only the upstream's CA: it succeeds only if it sees
    // the upstream's own certificate, i.e. nothing was intercepted.
    let client = up::client_via(&proxy.url(), &[&ca.pem_path]);
    let text = client
        .get(format!("https://localhost:{}/secret", upstream.addr.port()))
        .send()
        .await
        .expect("send through the blind tunnel")
        .text()
        .await
        .expect("text");
    assert_eq!(text, "HTTP/2.0 /secret");

    // Not excluded: intercepted, so the same client now fails (our CA is unknown to it).
    let err = client
        .get(format!("https://127.0.0.1:{}/seen", upstream.addr.port()))
        .send()
        .await;
    assert!(err.is_err(), "interception must present our certificate");

    // The first flow the hub completes is a plain request made after the
    // excluded one: nothing was recorded for the blind tunnel.
    let plain = up::http(|_| async { Response::new(full("after")) }).await;
    up::client_via(&proxy.url(), &[])
        .get(format!("http://{}/after", plain.addr))
        .send()
        .await
        .expect("send");
    let f = proxy.completed().await;
    assert_eq!(f.path, "/after");
    assert_eq!(proxy.hub.snapshot().started, 1);
    let _ = Arc::clone(&proxy.state);
}

/// A tunnel counts against its worker for as long as it is open (the CONNECT
/// connection that opened it has ended by then), so new tunnels go to the
/// least busy worker instead of all to the first.
#[tokio::test]
async fn open_tunnels_are_spread_over_the_workers() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let upstream = up::http(|_| async { Response::new(full("in the tunnel")) }).await;
    let proxy = up::start_proxy(None, |_| {}, ProxyOptions::default()).await;
    let workers = ccproxy::proxy::workers::Workers::get().expect("proxy workers");
    let mut tunnels = Vec::new();
    for _ in 0..6 {
        let mut s = tokio::net::TcpStream::connect(proxy.forward)
            .await
            .expect("connect");
        let head = format!(
            "CONNECT {0} HTTP/1.1\r\nhost: {0}\r\n\r\nGET /t HTTP/1.1\r\nhost: {0}\r\n\r\n",
            upstream.addr
        );
        s.write_all(head.as_bytes()).await.expect("send");
        // The CONNECT's 200, then the answer from inside the tunnel.
        let mut got = Vec::new();
        let mut buf = [0u8; 1024];
        while !String::from_utf8_lossy(&got).contains("in the tunnel") {
            let n = tokio::time::timeout(std::time::Duration::from_secs(10), s.read(&mut buf))
                .await
                .expect("answer in time")
                .expect("read");
            assert!(n > 0, "closed: {}", String::from_utf8_lossy(&got));
            got.extend_from_slice(&buf[..n]);
        }
        tunnels.push(s);
    }
    let open = workers.open();
    let total: usize = open.iter().sum();
    assert!(total >= 6, "six open tunnels, the workers count {open:?}");
    if open.len() >= 2 {
        assert!(
            open.iter().all(|n| *n >= 2),
            "tunnels spread over the workers: {open:?}"
        );
    }
    drop(tunnels);
}
