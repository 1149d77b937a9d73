//! The proxy under abuse, over real sockets: stalled heads, idle keep-alive,
//! silent tunnels, the connection cap, a stalled upstream stream, shutdown in
//! the middle of a stream, and the request edges (head limit on every
//! request, joined cookies, loops, bad ports, bad chunked bodies).
//! Timeouts are set short through the config; nothing asserts a duration.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::db::fresh_db;
use common::upstream::{self as up, full, ProxyOptions, TestBody};
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use ccproxy::config::Config;
use ccproxy::flow::ErrorKind;
use ccproxy::proxy::ReverseRoute;

/// Upper bound for anything the proxy is expected to do on its own.
const PATIENCE: Duration = Duration::from_secs(15);

fn short(cfg: &mut Config) {
    let t = &mut cfg.mitm.timeouts;
    t.request_head = Duration::from_millis(400);
    t.idle_keepalive = Duration::from_millis(400);
    t.handshake = Duration::from_millis(400);
    t.upstream_idle = Duration::from_millis(400);
}

async fn hello() -> up::Server {
    up::http(|_| async { Response::new(full("hello")) }).await
}

/// Read until the peer closes; what it sent. Panics past [`PATIENCE`].
async fn read_to_close(s: &mut TcpStream) -> String {
    let mut out = Vec::new();
    let read = tokio::time::timeout(PATIENCE, async {
        let mut buf = [0u8; 4096];
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    assert!(read.is_ok(), "the proxy kept the connection open");
    String::from_utf8_lossy(&out).into_owned()
}

/// Read one response head (and a `content-length` body) from a kept-alive connection.
async fn read_response(s: &mut TcpStream) -> String {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    tokio::time::timeout(PATIENCE, async {
        loop {
            let text = String::from_utf8_lossy(&out).to_string();
            if let Some((head, body)) = text.split_once("\r\n\r\n") {
                let len = head
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase()
                            .strip_prefix("content-length:")
                            .map(|v| v.trim().to_string())
                    })
                    .and_then(|v| v.parse::<usize>().ok())
                    .unwrap_or(0);
                if body.len() >= len {
                    return;
                }
            }
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await
    .expect("response in time");
    String::from_utf8_lossy(&out).into_owned()
}

async fn get_via(proxy: &up::TestProxy, url: &str) -> (StatusCode, String) {
    let resp = up::client_via(&proxy.url(), &[])
        .get(url)
        .send()
        .await
        .expect("send");
    let status = resp.status();
    (status, resp.text().await.unwrap_or_default())
}

#[tokio::test]
async fn stalled_heads_get_408_while_a_real_request_is_served() {
    let upstream = hello().await;
    let proxy = up::start_proxy(None, short, ProxyOptions::default()).await;
    let mut stalled = Vec::new();
    for _ in 0..20 {
        let mut s = TcpStream::connect(proxy.forward).await.expect("connect");
        s.write_all(b"GET http://example.test/ HTTP/1.1\r\nHost: exa")
            .await
            .expect("write");
        stalled.push(s);
    }
    let (status, text) = get_via(&proxy, &format!("http://{}/", upstream.addr)).await;
    assert_eq!((status, text.as_str()), (StatusCode::OK, "hello"));
    for mut s in stalled {
        let answer = read_to_close(&mut s).await;
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
        assert!(answer.contains("request head not complete"), "{answer}");
    }
    // A connection that never sends anything is closed too, without an answer.
    let mut silent = TcpStream::connect(proxy.forward).await.expect("connect");
    assert_eq!(read_to_close(&mut silent).await, "");
}

#[tokio::test]
async fn idle_keepalive_connections_are_closed() {
    let upstream = hello().await;
    let mut proxy = up::start_proxy(None, short, ProxyOptions::default()).await;
    let mut s = TcpStream::connect(proxy.forward).await.expect("connect");
    let req = format!(
        "GET http://{0}/ HTTP/1.1\r\nHost: {0}\r\n\r\n",
        upstream.addr
    );
    for _ in 0..2 {
        s.write_all(req.as_bytes()).await.expect("write");
        let resp = read_response(&mut s).await;
        assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
        assert!(resp.ends_with("hello"), "{resp}");
    }
    // Kept alive, then idle: the proxy closes it.
    assert_eq!(read_to_close(&mut s).await, "");
    assert_eq!(proxy.completed().await.status_code, Some(200));
}

/// An upstream that answers with the path and the body length.
async fn echo_lengths() -> up::Server {
    up::http(|req| async move {
        let path = req.uri().path().to_string();
        let body = req.into_body().collect().await.map(|b| b.to_bytes().len());
        Response::new(full(format!("{path} {}", body.unwrap_or(0))))
    })
    .await
}

/// Wait until `n` connections are parked; panics past [`PATIENCE`].
async fn parked(proxy: &up::TestProxy, n: usize) {
    let waited = tokio::time::timeout(PATIENCE, async {
        while proxy.state.connections.parked() != n {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(
        waited.is_ok(),
        "parked connections: {} (want {n})",
        proxy.state.connections.parked()
    );
}

#[tokio::test]
async fn a_parked_keepalive_connection_serves_split_and_pipelined_requests() {
    let upstream = echo_lengths().await;
    let mut proxy = up::start_proxy(
        None,
        |cfg| cfg.mitm.timeouts.idle_keepalive = Duration::from_secs(30),
        ProxyOptions::default(),
    )
    .await;
    let park = ccproxy::proxy::PARK_AFTER + Duration::from_millis(300);
    let host = upstream.addr;
    let mut s = TcpStream::connect(proxy.forward).await.expect("connect");
    let get = |path: &str| format!("GET http://{host}{path} HTTP/1.1\r\nHost: {host}\r\n\r\n");
    s.write_all(get("/one").as_bytes()).await.expect("write");
    let resp = read_response(&mut s).await;
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    assert!(resp.ends_with("/one 0"), "{resp}");
    assert!(
        !resp.to_ascii_lowercase().contains("connection: close"),
        "{resp}"
    );

    // Parked (counted), then two pipelined requests in one write.
    parked(&proxy, 1).await;
    tokio::time::sleep(park).await;
    s.write_all(format!("{}{}", get("/two"), get("/three")).as_bytes())
        .await
        .expect("write");
    let two = read_response(&mut s).await;
    assert!(two.ends_with("/two 0"), "{two}");
    let three = read_response(&mut s).await;
    assert!(three.ends_with("/three 0"), "{three}");

    // Parked again, then a POST whose head and body arrive in pieces.
    tokio::time::sleep(park).await;
    let post = format!(
        "POST http://{host}/four HTTP/1.1\r\nHost: {host}\r\ncontent-length: 10\r\n\r\n12345"
    );
    let (a, b) = post.split_at(20);
    s.write_all(a.as_bytes()).await.expect("write");
    tokio::time::sleep(Duration::from_millis(50)).await;
    s.write_all(b.as_bytes()).await.expect("write");
    tokio::time::sleep(Duration::from_millis(50)).await;
    s.write_all(b"67890").await.expect("write");
    let four = read_response(&mut s).await;
    assert!(four.ends_with("/four 10"), "{four}");
    parked(&proxy, 1).await;
    drop(s);
    parked(&proxy, 0).await;
    let mut paths = Vec::new();
    for _ in 0..4 {
        paths.push(proxy.completed().await.path.clone());
    }
    paths.sort();
    assert_eq!(paths, ["/four", "/one", "/three", "/two"]);
}

#[tokio::test]
async fn connect_without_tls_bytes_is_closed_after_handshake() {
    let upstream = hello().await;
    let proxy = up::start_proxy(None, short, ProxyOptions::default()).await;
    let mut s = TcpStream::connect(proxy.forward).await.expect("connect");
    s.write_all(format!("CONNECT {0} HTTP/1.1\r\nHost: {0}\r\n\r\n", upstream.addr).as_bytes())
        .await
        .expect("write");
    let answer = read_to_close(&mut s).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    // The proxy still serves.
    let (status, _) = get_via(&proxy, &format!("http://{}/", upstream.addr)).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn at_the_connection_cap_idle_ones_go_and_a_new_request_is_served() {
    let upstream = hello().await;
    let proxy = up::start_proxy(
        None,
        |c| c.mitm.max_connections = Some(8),
        ProxyOptions::default(),
    )
    .await;
    let mut idle = Vec::new();
    for _ in 0..8 {
        idle.push(TcpStream::connect(proxy.forward).await.expect("connect"));
    }
    // Let the proxy accept them all.
    for _ in 0..100 {
        if proxy.state.connections.len() >= 8 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(proxy.state.connections.len(), 8);
    let (status, text) = get_via(&proxy, &format!("http://{}/", upstream.addr)).await;
    assert_eq!((status, text.as_str()), (StatusCode::OK, "hello"));
    assert!(proxy.state.connections.evicted() >= 1);
    // The first idle connection made room: the proxy closed it.
    assert_eq!(read_to_close(&mut idle[0]).await, "");
}

#[tokio::test]
async fn an_upstream_that_stalls_mid_stream_times_out() {
    let upstream = up::raw(|mut s| async move {
        let mut buf = [0u8; 4096];
        let _ = s.read(&mut buf).await;
        let _ = s
            .write_all(
                b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n\
transfer-encoding: chunked\r\n\r\n10\r\ndata: first\n\n\n\r\n",
            )
            .await;
        tokio::time::sleep(Duration::from_secs(60)).await;
    })
    .await;
    let mut proxy = up::start_proxy(None, short, ProxyOptions::default()).await;
    let resp = up::client_via(&proxy.url(), &[])
        .get(format!("http://{}/sse", upstream.addr))
        .send()
        .await
        .expect("head");
    assert_eq!(resp.status(), StatusCode::OK);
    let mut body = resp.bytes_stream();
    let mut got = Vec::new();
    let ended = tokio::time::timeout(PATIENCE, async {
        use futures::StreamExt;
        while let Some(chunk) = body.next().await {
            match chunk {
                Ok(b) => got.extend_from_slice(&b),
                Err(_) => break,
            }
        }
    })
    .await;
    assert!(ended.is_ok(), "the client stream did not end");
    assert!(got.starts_with(b"data: first"), "{got:?}");
    let f = proxy.completed().await;
    assert_eq!(
        f.error_type,
        Some(ErrorKind::Timeout),
        "{:?}",
        f.error_message
    );
    assert!(
        f.error_message
            .as_deref()
            .is_some_and(|m| m.contains("upstream_idle")),
        "{:?}",
        f.error_message
    );
}

/// An SSE stream of `n` events `gap` apart.
fn sse(n: u32, gap: Duration) -> Response<TestBody> {
    let events = futures::stream::unfold(0u32, move |i| async move {
        if i >= n {
            return None;
        }
        if i > 0 {
            tokio::time::sleep(gap).await;
        }
        let frame = Frame::data(Bytes::from(format!("data: {i}\n\n")));
        Some((Ok::<_, up::BoxError>(frame), i + 1))
    });
    Response::builder()
        .header("content-type", "text/event-stream")
        .body(StreamBody::new(events).boxed())
        .expect("response")
}

#[tokio::test]
async fn shutdown_lets_a_running_stream_finish_and_stores_it() {
    let db = fresh_db().await;
    let upstream = up::http(|_| async { sse(5, Duration::from_millis(500)) }).await;
    let mut proxy = up::start_proxy(
        None,
        |c| c.mitm.database_url = Some(db.url.clone()),
        ProxyOptions::default(),
    )
    .await;
    let cfg = proxy.state.config.clone();
    let store = ccproxy::store::Store::open(&cfg).await.expect("store");
    proxy.hub.set_sink(store.sink());
    let resp = up::client_via(&proxy.url(), &[])
        .get(format!("http://{}/sse", upstream.addr))
        .send()
        .await
        .expect("head");
    let reading = tokio::spawn(async move { resp.bytes().await.map(|b| b.to_vec()) });
    tokio::time::sleep(Duration::from_millis(300)).await;
    proxy.shutdown().await;
    let body = reading.await.expect("join").expect("whole body");
    assert_eq!(
        String::from_utf8_lossy(&body),
        "data: 0\n\ndata: 1\n\ndata: 2\n\ndata: 3\n\ndata: 4\n\n"
    );
    // New connections are refused once shut down.
    assert!(TcpStream::connect(proxy.forward).await.is_err());
    store.shutdown(Duration::from_secs(10)).await;
    let client = ccproxy::store::connect(&db.url).await.expect("db");
    let rows = client
        .query(
            r#"SELECT status_code, response_body_size FROM "CCProxy_HttpTraces" WHERE path = '/sse'"#,
            &[],
        )
        .await
        .expect("query");
    assert_eq!(rows.len(), 1);
    let status: Option<i32> = rows[0].get(0);
    assert_eq!(status, Some(200));
}

/// A stream that outlives the drain grace is cut when the grace is over:
/// connections run on the proxy's worker threads, which outlive a listener,
/// so nothing but the drain ends them.
#[tokio::test]
async fn a_stream_still_running_after_the_drain_grace_is_cut() {
    let upstream = up::http(|_| async { sse(u32::MAX, Duration::from_millis(200)) }).await;
    let mut proxy = up::start_proxy(None, |_| {}, ProxyOptions::default()).await;
    let mut s = TcpStream::connect(proxy.forward).await.expect("connect");
    let head = format!(
        "GET http://{}/forever HTTP/1.1\r\nhost: {}\r\n\r\n",
        upstream.addr, upstream.addr
    );
    s.write_all(head.as_bytes()).await.expect("send");
    let mut first = [0u8; 256];
    let n = tokio::time::timeout(PATIENCE, s.read(&mut first))
        .await
        .expect("first bytes in time")
        .expect("read");
    assert!(String::from_utf8_lossy(&first[..n]).starts_with("HTTP/1.1 200"));
    let shutdown = tokio::spawn(async move {
        proxy.shutdown().await;
        proxy
    });
    // Events keep coming during the grace; then the proxy drops the exchange.
    let rest = tokio::time::timeout(ccproxy::proxy::DRAIN_GRACE + PATIENCE, async {
        let mut buf = [0u8; 4096];
        let mut got = 0usize;
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return got,
                Ok(n) => got += n,
            }
        }
    })
    .await
    .expect("the proxy kept streaming after the drain grace");
    assert!(rest > 0, "the stream went on during the grace");
    let _proxy = tokio::time::timeout(PATIENCE, shutdown)
        .await
        .expect("shutdown returns after the grace")
        .expect("join");
}

#[tokio::test]
async fn an_oversize_head_on_a_kept_alive_connection_gets_400() {
    let upstream = hello().await;
    let proxy = up::start_proxy(None, |_| {}, ProxyOptions::default()).await;
    let mut s = TcpStream::connect(proxy.forward).await.expect("connect");
    let req = format!(
        "GET http://{0}/ HTTP/1.1\r\nHost: {0}\r\n\r\n",
        upstream.addr
    );
    for _ in 0..3 {
        s.write_all(req.as_bytes()).await.expect("write");
        assert!(read_response(&mut s).await.starts_with("HTTP/1.1 200"));
    }
    let mut big = format!(
        "GET http://{0}/ HTTP/1.1\r\nHost: {0}\r\nx-big: ",
        upstream.addr
    )
    .into_bytes();
    big.resize(70 * 1024, b'a');
    big.extend_from_slice(b"\r\n\r\n");
    s.write_all(&big).await.expect("write");
    let answer = read_to_close(&mut s).await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(
        answer.contains("request headers too large (64 KiB)"),
        "{answer}"
    );
}

#[tokio::test]
async fn cookies_from_an_h2_client_are_joined_for_an_http1_upstream() {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    let upstream = up::raw(move |mut s| {
        let tx = tx.clone();
        async move {
            let mut head = Vec::new();
            let mut buf = [0u8; 4096];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                match s.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => head.extend_from_slice(&buf[..n]),
                }
            }
            let _ = tx.send(String::from_utf8_lossy(&head).into_owned());
            let _ = s
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                .await;
        }
    })
    .await;
    let proxy = up::start_proxy(
        None,
        |_| {},
        ProxyOptions {
            reverse: Some(ReverseRoute::Fixed(format!("http://{}", upstream.addr))),
            ..ProxyOptions::default()
        },
    )
    .await;
    let rev = proxy.reverse.expect("reverse");
    let tcp = TcpStream::connect(rev).await.expect("connect");
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
            .await
            .expect("h2 handshake");
    tokio::spawn(conn);
    let req = Request::get(format!("http://{rev}/v1/models"))
        .header("cookie", "a=1")
        .header("cookie", "b=2")
        .header("cookie", "c=3")
        .body(http_body_util::Empty::<Bytes>::new())
        .expect("request");
    let resp = sender.send_request(req).await.expect("h2 response");
    assert_eq!(resp.status(), StatusCode::OK);
    let head = rx.recv().await.expect("upstream saw the request");
    let cookies: Vec<&str> = head
        .lines()
        .filter(|l| l.to_ascii_lowercase().starts_with("cookie:"))
        .collect();
    assert_eq!(cookies, ["cookie: a=1; b=2; c=3"], "{head}");
}

#[tokio::test]
async fn requests_to_the_proxy_itself_get_508_naming_the_key() {
    // `mitm start --port P` with `upstream_proxy: http://localhost:P`.
    let port = common::engine::free_port();
    let proxy = up::start_proxy(
        None,
        |c| c.mitm.upstream_proxy = format!("http://localhost:{port}"),
        ProxyOptions {
            forward_port: Some(port),
            ..ProxyOptions::default()
        },
    )
    .await;
    let resp = up::client_direct(&[])
        .post(format!("http://127.0.0.1:{port}/v1/messages"))
        .body("{}")
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), StatusCode::LOOP_DETECTED);
    let text = resp.text().await.expect("text");
    assert!(text.contains("ccproxy.mitm.upstream_proxy"), "{text}");

    // Absolute-form and CONNECT naming the proxy's own address.
    let (status, _) = get_via(&proxy, &format!("http://127.0.0.1:{port}/x")).await;
    assert_eq!(status, StatusCode::LOOP_DETECTED);
    let mut s = TcpStream::connect(proxy.forward).await.expect("connect");
    s.write_all(
        format!("CONNECT localhost:{port} HTTP/1.1\r\nHost: localhost:{port}\r\n\r\n").as_bytes(),
    )
    .await
    .expect("write");
    let answer = read_response(&mut s).await;
    assert!(answer.starts_with("HTTP/1.1 508"), "{answer}");
}

#[tokio::test]
async fn a_loop_through_both_listeners_is_caught_by_via() {
    // forward (origin-form) → reverse → forward → … : each hop is another
    // listener's address, so only the `via` entry can tell.
    let (fwd, rev) = (common::engine::free_port(), common::engine::free_port());
    let _proxy = up::start_proxy(
        None,
        |c| c.mitm.upstream_proxy = format!("http://127.0.0.1:{rev}"),
        ProxyOptions {
            reverse: Some(ReverseRoute::Fixed(format!("http://127.0.0.1:{fwd}"))),
            forward_port: Some(fwd),
            reverse_port: Some(rev),
            ..ProxyOptions::default()
        },
    )
    .await;
    let resp = up::client_direct(&[])
        .get(format!("http://127.0.0.1:{fwd}/v1/models"))
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), StatusCode::LOOP_DETECTED);
    let text = resp.text().await.expect("text");
    assert!(text.contains("via"), "{text}");
}

#[tokio::test]
async fn invalid_ports_get_400() {
    let upstream = hello().await;
    let proxy = up::start_proxy(None, |_| {}, ProxyOptions::default()).await;
    for req in [
        "GET http://127.0.0.1:99999/ HTTP/1.1\r\nHost: 127.0.0.1:99999\r\n\r\n",
        "GET http://127.0.0.1:0/ HTTP/1.1\r\nHost: 127.0.0.1:0\r\n\r\n",
        "CONNECT 127.0.0.1:0 HTTP/1.1\r\nHost: 127.0.0.1:0\r\n\r\n",
        "CONNECT 127.0.0.1:70000 HTTP/1.1\r\nHost: 127.0.0.1:70000\r\n\r\n",
    ] {
        let mut s = TcpStream::connect(proxy.forward).await.expect("connect");
        s.write_all(req.as_bytes()).await.expect("write");
        let answer = read_response(&mut s).await;
        assert!(answer.starts_with("HTTP/1.1 400"), "{req}: {answer}");
        assert!(answer.contains("port"), "{req}: {answer}");
    }
    let (status, _) = get_via(&proxy, &format!("http://{}/", upstream.addr)).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn a_malformed_chunked_body_gets_400() {
    let upstream = up::http(|req| async move {
        let body = up::read_body(req).await;
        Response::new(full(body))
    })
    .await;
    let mut proxy = up::start_proxy(None, |_| {}, ProxyOptions::default()).await;
    let mut s = TcpStream::connect(proxy.forward).await.expect("connect");
    s.write_all(
        format!(
            "POST http://{0}/echo HTTP/1.1\r\nHost: {0}\r\ntransfer-encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
            upstream.addr
        )
        .as_bytes(),
    )
    .await
    .expect("write");
    let answer = read_response(&mut s).await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(answer.contains("malformed request body"), "{answer}");
    let f = proxy.completed().await;
    assert_eq!(
        f.error_type,
        Some(ErrorKind::Protocol),
        "{:?}",
        f.error_message
    );
    let (status, _) = get_via(&proxy, &format!("http://{}/", upstream.addr)).await;
    assert_eq!(status, StatusCode::OK);
}
