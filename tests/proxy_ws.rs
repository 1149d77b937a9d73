//! WebSocket relaying and the upstream pool, with real sockets, real TLS and a
//! real WebSocket implementation (tungstenite) on both ends: an echo server
//! behind the proxy, reached by absolute-form, CONNECT (plain and TLS) and
//! the reverse listener; the captured messages checked on the flow and in
//! PostgreSQL. The pool is checked by counting the upstream's accepted
//! connections under concurrency.

mod common;

use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use http::{Request, Response, StatusCode, Version};
use http_body_util::{BodyExt, Empty};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;
use tokio_util::sync::CancellationToken;

use ccproxy::flow::{Flow, FlowEvent, WsFrom, WsOpcode};
use ccproxy::proxy::ReverseRoute;
use common::db::fresh_db;
use common::upstream::{self as up, full, ProxyOptions, TestCa};

/// Capture cap for these tests: the binary message is longer.
const MAX_BODY: usize = 16;

/// A WebSocket echo server (TLS when `tls` is given).
struct Echo {
    addr: std::net::SocketAddr,
    _stop: tokio_util::sync::DropGuard,
}

async fn echo_server(tls: Option<Arc<rustls::ServerConfig>>) -> Echo {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let token = CancellationToken::new();
    let t = token.clone();
    tokio::spawn(async move {
        loop {
            let (tcp, _) = tokio::select! {
                () = t.cancelled() => break,
                r = listener.accept() => match r { Ok(x) => x, Err(_) => continue },
            };
            let tls = tls.clone();
            tokio::spawn(async move {
                match tls {
                    Some(cfg) => {
                        if let Ok(s) = tokio_rustls::TlsAcceptor::from(cfg).accept(tcp).await {
                            echo(s).await;
                        }
                    }
                    None => echo(tcp).await,
                }
            });
        }
    });
    Echo {
        addr,
        _stop: token.drop_guard(),
    }
}

async fn echo<S: AsyncRead + AsyncWrite + Unpin>(s: S) {
    let Ok(mut ws) = tokio_tungstenite::accept_async(s).await else {
        return;
    };
    while let Some(Ok(msg)) = ws.next().await {
        if (msg.is_text() || msg.is_binary()) && ws.send(msg).await.is_err() {
            break;
        }
    }
}

/// Read an HTTP response head byte by byte (nothing past it is consumed).
async fn read_head<S: AsyncRead + Unpin>(s: &mut S) -> String {
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(
            s.read(&mut b).await.expect("read head"),
            1,
            "closed mid-head"
        );
        head.push(b[0]);
    }
    String::from_utf8(head).expect("utf-8 head")
}

async fn connect_tunnel(proxy: std::net::SocketAddr, target: &str) -> TcpStream {
    let mut tcp = TcpStream::connect(proxy).await.expect("connect proxy");
    tcp.write_all(format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n").as_bytes())
        .await
        .expect("write CONNECT");
    let head = read_head(&mut tcp).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    tcp
}

/// Talk to the echo server: text, a binary longer than the cap, a ping, close.
async fn conversation<S: AsyncRead + AsyncWrite + Unpin>(mut ws: WebSocketStream<S>) {
    let binary: Vec<u8> = (0..100u8).collect();
    ws.send(Message::text("hello through ccproxy"))
        .await
        .expect("send text");
    let got = ws.next().await.expect("echo").expect("frame");
    assert_eq!(got, Message::text("hello through ccproxy"));
    ws.send(Message::binary(binary.clone()))
        .await
        .expect("send binary");
    let got = ws.next().await.expect("echo").expect("frame");
    assert_eq!(got, Message::binary(binary));
    ws.send(Message::Ping(Bytes::from_static(b"are you there")))
        .await
        .expect("ping");
    let got = ws.next().await.expect("pong").expect("frame");
    assert_eq!(got, Message::Pong(Bytes::from_static(b"are you there")));
    ws.close(None).await.expect("close");
    while let Some(Ok(_)) = ws.next().await {}
}

/// The messages the conversation must leave on the flow.
fn assert_captured(f: &Flow) {
    assert_eq!(f.status_code, Some(101), "{:?}", f.error_message);
    assert_eq!(f.error_type, None, "{:?}", f.error_message);
    let seen: Vec<(WsFrom, WsOpcode, u64)> = f
        .ws_messages
        .iter()
        .map(|m| (m.from, m.opcode, m.size))
        .collect();
    assert_eq!(
        seen,
        [
            (WsFrom::Client, WsOpcode::Text, 21),
            (WsFrom::Server, WsOpcode::Text, 21),
            (WsFrom::Client, WsOpcode::Binary, 100),
            (WsFrom::Server, WsOpcode::Binary, 100),
            (WsFrom::Client, WsOpcode::Ping, 13),
            (WsFrom::Server, WsOpcode::Pong, 13),
            (WsFrom::Client, WsOpcode::Close, 0),
            (WsFrom::Server, WsOpcode::Close, 0),
        ]
    );
    let m = &f.ws_messages;
    // Client frames are masked on the wire: stored unmasked, cut at the cap.
    assert_eq!(&m[0].data[..], &b"hello through ccproxy"[..MAX_BODY]);
    assert_eq!(&m[1].data[..], &b"hello through ccproxy"[..MAX_BODY]);
    let prefix: Vec<u8> = (0..MAX_BODY as u8).collect();
    assert_eq!(&m[2].data[..], &prefix[..]);
    assert_eq!(&m[3].data[..], &prefix[..]);
    assert!(m.windows(2).all(|w| w[0].offset_ms <= w[1].offset_ms));
    assert!(
        f.request_body_size > 21 + 100 + 13 && f.response_body_size > 21 + 100 + 13,
        "relayed bytes counted: {} / {}",
        f.request_body_size,
        f.response_body_size
    );
}

fn small_cap(cfg: &mut ccproxy::config::Config) {
    cfg.mitm.max_body_size = MAX_BODY;
}

#[tokio::test]
async fn websocket_through_absolute_form_forward_proxy() {
    let server = echo_server(None).await;
    let mut proxy = up::start_proxy(None, small_cap, ProxyOptions::default()).await;
    let mut tcp = TcpStream::connect(proxy.forward).await.expect("connect");
    let target = server.addr;
    tcp.write_all(
        format!(
            "GET http://{target}/echo?x=1 HTTP/1.1\r\nHost: {target}\r\nConnection: Upgrade\r\n\
             Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
        )
        .as_bytes(),
    )
    .await
    .expect("write");
    let head = read_head(&mut tcp).await.to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 101"), "{head}");
    // RFC 6455 §1.3: the accept key for the sample nonce.
    assert!(
        head.contains("sec-websocket-accept: s3pplmbitxaq9kygzzhzrbk+xoo="),
        "{head}"
    );
    let ws = WebSocketStream::from_raw_socket(tcp, Role::Client, None).await;
    conversation(ws).await;
    let f = proxy.completed().await;
    assert_eq!(f.url, format!("http://{target}/echo?x=1"));
    assert_eq!(f.method, "GET");
    assert_captured(&f);
}

#[tokio::test]
async fn websocket_through_connect_tunnel_plain() {
    let server = echo_server(None).await;
    let mut proxy = up::start_proxy(None, small_cap, ProxyOptions::default()).await;
    let target = server.addr.to_string();
    let tcp = connect_tunnel(proxy.forward, &target).await;
    let (ws, resp) = tokio_tungstenite::client_async(format!("ws://{target}/plain"), tcp)
        .await
        .expect("handshake through the tunnel");
    assert_eq!(resp.status(), StatusCode::SWITCHING_PROTOCOLS);
    conversation(ws).await;
    let f = proxy.completed().await;
    assert_eq!(f.url, format!("http://{target}/plain"));
    assert!(!f.is_https);
    assert_captured(&f);
}

#[tokio::test]
async fn websocket_through_connect_tunnel_tls_intercepted() {
    let ca = TestCa::new();
    let server = echo_server(Some(ca.server_config(&["localhost", "127.0.0.1"]))).await;
    let mut proxy = up::start_proxy(Some(&ca), small_cap, ProxyOptions::default()).await;
    let target = format!("localhost:{}", server.addr.port());
    let tcp = connect_tunnel(proxy.forward, &target).await;
    let tls = tls_to_proxy(&proxy.ca_pem_path(), tcp, "localhost").await;
    let (ws, resp) = tokio_tungstenite::client_async(format!("wss://{target}/secure"), tls)
        .await
        .expect("handshake through the intercepted tunnel");
    assert_eq!(resp.status(), StatusCode::SWITCHING_PROTOCOLS);
    conversation(ws).await;
    let f = proxy.completed().await;
    assert_eq!(f.url, format!("https://{target}/secure"));
    assert!(f.is_https);
    assert_captured(&f);
}

async fn tls_to_proxy(
    ca: &std::path::Path,
    tcp: TcpStream,
    name: &str,
) -> tokio_rustls::client::TlsStream<TcpStream> {
    let pem = std::fs::read(ca).expect("read proxy ca");
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_pemfile::certs(&mut pem.as_slice()) {
        roots.add(c.expect("pem")).expect("add root");
    }
    let cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from(name.to_string()).expect("name");
    tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect(name, tcp)
        .await
        .expect("TLS to the proxy")
}

#[tokio::test]
async fn websocket_through_reverse_listener_is_stored() {
    let db = fresh_db().await;
    let server = echo_server(None).await;
    let mut proxy = up::start_proxy(
        None,
        small_cap,
        ProxyOptions {
            reverse: Some(ReverseRoute::Fixed(format!("http://{}", server.addr))),
            ..ProxyOptions::default()
        },
    )
    .await;
    let mut cfg = common::db::config(proxy.home.path(), Some(&db.url));
    small_cap(&mut cfg);
    let st = ccproxy::store::Store::open(&cfg).await.expect("open store");
    proxy.hub.set_sink(st.sink());
    let reverse = proxy.reverse.expect("reverse listener");
    let tcp = TcpStream::connect(reverse).await.expect("connect");
    let (ws, resp) = tokio_tungstenite::client_async(format!("ws://{reverse}/v1/realtime"), tcp)
        .await
        .expect("handshake through the reverse listener");
    assert_eq!(resp.status(), StatusCode::SWITCHING_PROTOCOLS);
    conversation(ws).await;
    let f = proxy.completed().await;
    assert_eq!(f.url, format!("http://{}/v1/realtime", server.addr));
    assert_captured(&f);

    for _ in 0..400 {
        if st.stats().written >= 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(st.stats().written, 1, "{:?}", st.stats());
    let c = ccproxy::store::connect(&db.url).await.expect("connect db");
    let row = c
        .query_one(
            r#"SELECT status_code, jsonb_array_length(ws_messages),
                      ws_messages->0->>'from', ws_messages->0->>'opcode', ws_messages->0->>'text',
                      ws_messages->2->>'base64', (ws_messages->2->>'size')::int
               FROM "CCProxy_HttpTraces""#,
            &[],
        )
        .await
        .expect("row");
    assert_eq!(row.get::<_, Option<i32>>(0), Some(101));
    assert_eq!(row.get::<_, i32>(1), 8);
    assert_eq!(row.get::<_, &str>(2), "client");
    assert_eq!(row.get::<_, &str>(3), "text");
    assert_eq!(row.get::<_, &str>(4), "hello through cc");
    assert_eq!(row.get::<_, &str>(5), "AAECAwQFBgcICQoLDA0ODw==");
    assert_eq!(row.get::<_, i32>(6), 100);
    // And back into a Flow, as the TUI history reads it.
    let reader = ccproxy::store::query::Reader::from_url(&db.url)
        .await
        .expect("reader");
    let back = reader.since(None, 10).await.expect("read back");
    assert_eq!(back.len(), 1);
    assert_eq!(back[0].ws_messages, f.ws_messages);
    st.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn refused_upgrade_is_an_ordinary_response() {
    let server = up::http(|_req| async {
        Response::builder()
            .status(StatusCode::UNAUTHORIZED)
            .body(full("no token"))
            .expect("response")
    })
    .await;
    let mut proxy = up::start_proxy(None, |_| {}, ProxyOptions::default()).await;
    let target = server.addr.to_string();
    let tcp = connect_tunnel(proxy.forward, &target).await;
    let err = tokio_tungstenite::client_async(format!("ws://{target}/x"), tcp)
        .await
        .expect_err("the upstream refuses");
    match err {
        tokio_tungstenite::tungstenite::Error::Http(resp) => {
            assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
        }
        other => panic!("unexpected {other:?}"),
    }
    let f = proxy.completed().await;
    assert_eq!(f.status_code, Some(401));
    assert_eq!(&f.response_body[..], b"no token");
    assert!(f.ws_messages.is_empty());
}

/// An HTTPS upstream (h2 and http/1.1) that holds each request `hold` and
/// counts connections and the protocol of each request.
struct Counting {
    addr: std::net::SocketAddr,
    accepted: Arc<AtomicUsize>,
    h2_requests: Arc<AtomicUsize>,
    h1_requests: Arc<AtomicUsize>,
    _stop: tokio_util::sync::DropGuard,
}

async fn counting_upstream(ca: &TestCa, hold: Duration) -> Counting {
    let cfg = ca.server_config(&["localhost", "127.0.0.1"]);
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let token = CancellationToken::new();
    let accepted = Arc::new(AtomicUsize::new(0));
    let h2 = Arc::new(AtomicUsize::new(0));
    let h1 = Arc::new(AtomicUsize::new(0));
    let (t, n, c2, c1) = (
        token.clone(),
        Arc::clone(&accepted),
        Arc::clone(&h2),
        Arc::clone(&h1),
    );
    tokio::spawn(async move {
        loop {
            let (tcp, _) = tokio::select! {
                () = t.cancelled() => break,
                r = listener.accept() => match r { Ok(x) => x, Err(_) => continue },
            };
            n.fetch_add(1, Ordering::SeqCst);
            let (cfg, c2, c1, t) = (
                Arc::clone(&cfg),
                Arc::clone(&c2),
                Arc::clone(&c1),
                t.clone(),
            );
            tokio::spawn(async move {
                let Ok(tls) = tokio_rustls::TlsAcceptor::from(cfg).accept(tcp).await else {
                    return;
                };
                let svc = service_fn(move |req: Request<hyper::body::Incoming>| {
                    let (c2, c1) = (Arc::clone(&c2), Arc::clone(&c1));
                    async move {
                        if req.version() == Version::HTTP_2 {
                            c2.fetch_add(1, Ordering::SeqCst);
                        } else {
                            c1.fetch_add(1, Ordering::SeqCst);
                        }
                        tokio::time::sleep(hold).await;
                        Ok::<_, Infallible>(Response::new(full("pooled")))
                    }
                });
                let mut builder = auto::Builder::new(TokioExecutor::new());
                builder.http2().max_concurrent_streams(100);
                tokio::select! {
                    _ = builder.serve_connection(TokioIo::new(tls), svc) => {},
                    () = t.cancelled() => {},
                }
            });
        }
    });
    Counting {
        addr,
        accepted,
        h2_requests: h2,
        h1_requests: h1,
        _stop: token.drop_guard(),
    }
}

#[tokio::test]
async fn h2_clients_spread_over_several_upstream_connections() {
    let ca = TestCa::new();
    let upstream = counting_upstream(&ca, Duration::from_millis(300)).await;
    let proxy = up::start_proxy(
        Some(&ca),
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
    let reverse = proxy.reverse.expect("reverse listener");
    // One h2 (prior knowledge) client connection carrying 32 concurrent streams.
    let tcp = TcpStream::connect(reverse).await.expect("connect");
    let (send, conn) = hyper::client::conn::http2::handshake::<_, _, Empty<Bytes>>(
        TokioExecutor::new(),
        TokioIo::new(tcp),
    )
    .await
    .expect("h2 handshake");
    tokio::spawn(conn);
    let round = |send: hyper::client::conn::http2::SendRequest<Empty<Bytes>>| async move {
        let all = (0..32).map(|i| {
            let mut send = send.clone();
            async move {
                let req = Request::get(format!("http://{reverse}/v1/models?i={i}"))
                    .body(Empty::new())
                    .expect("request");
                let resp = send.send_request(req).await.expect("response");
                assert_eq!(resp.status(), StatusCode::OK);
                let body = resp.into_body().collect().await.expect("body").to_bytes();
                assert_eq!(&body[..], b"pooled");
            }
        });
        futures::future::join_all(all).await;
    };
    round(send.clone()).await;
    let first = upstream.accepted.load(Ordering::SeqCst);
    assert!(
        first > 1,
        "32 concurrent h2 streams must use more than one upstream connection, saw {first}"
    );
    assert!(first <= 32, "{first}");
    assert_eq!(upstream.h2_requests.load(Ordering::SeqCst), 32);
    assert_eq!(upstream.h1_requests.load(Ordering::SeqCst), 0);
    // Sequential requests afterwards reuse what is open.
    for _ in 0..5 {
        let mut s = send.clone();
        let req = Request::get(format!("http://{reverse}/v1/models"))
            .body(Empty::new())
            .expect("request");
        let resp = s.send_request(req).await.expect("response");
        resp.into_body().collect().await.expect("body");
    }
    assert_eq!(upstream.accepted.load(Ordering::SeqCst), first);
    assert!(proxy.state.client.stats().reused.load(Ordering::Relaxed) >= 5);
}

#[tokio::test]
async fn h1_clients_get_pooled_http1_upstream_connections() {
    let ca = TestCa::new();
    let upstream = counting_upstream(&ca, Duration::from_millis(200)).await;
    let proxy = up::start_proxy(Some(&ca), |_| {}, ProxyOptions::default()).await;
    let client = reqwest::Client::builder()
        .proxy(reqwest::Proxy::all(proxy.url()).expect("proxy"))
        .add_root_certificate(
            reqwest::Certificate::from_pem(&std::fs::read(proxy.ca_pem_path()).expect("ca"))
                .expect("pem"),
        )
        .http1_only()
        .build()
        .expect("client");
    let url = format!("https://localhost:{}/r", upstream.addr.port());
    let all = (0..32).map(|_| {
        let (client, url) = (client.clone(), url.clone());
        async move {
            let resp = client.get(&url).send().await.expect("response");
            assert_eq!(resp.status(), StatusCode::OK);
            assert_eq!(resp.version(), Version::HTTP_11);
            assert_eq!(&resp.bytes().await.expect("body")[..], b"pooled");
        }
    });
    futures::future::join_all(all).await;
    let first = upstream.accepted.load(Ordering::SeqCst);
    assert!(first > 1, "saw {first}");
    assert_eq!(upstream.h1_requests.load(Ordering::SeqCst), 32);
    assert_eq!(upstream.h2_requests.load(Ordering::SeqCst), 0);
    // Let the connections go back to the idle list, then reuse them.
    tokio::time::sleep(Duration::from_millis(300)).await;
    for _ in 0..5 {
        let resp = client.get(&url).send().await.expect("response");
        resp.bytes().await.expect("body");
    }
    assert_eq!(upstream.accepted.load(Ordering::SeqCst), first);
}

#[tokio::test]
async fn open_websocket_shows_its_messages_live() {
    let server = echo_server(None).await;
    let mut proxy = up::start_proxy(None, |_| {}, ProxyOptions::default()).await;
    let target = server.addr.to_string();
    let tcp = connect_tunnel(proxy.forward, &target).await;
    let (mut ws, _) = tokio_tungstenite::client_async(format!("ws://{target}/live"), tcp)
        .await
        .expect("handshake");
    ws.send(Message::text("first")).await.expect("send");
    assert_eq!(
        ws.next().await.expect("echo").expect("frame"),
        Message::text("first")
    );
    // Still open: a viewer gets the messages so far.
    let live = proxy
        .next_event(|ev| match ev {
            FlowEvent::Responded { flow } if flow.ws_messages.len() == 2 => Some(Arc::clone(flow)),
            _ => None,
        })
        .await;
    assert!(!live.is_complete());
    assert_eq!(&live.ws_messages[1].data[..], b"first");
    assert_eq!(live.ws_messages[1].from, WsFrom::Server);
    ws.close(None).await.expect("close");
    while let Some(Ok(_)) = ws.next().await {}
    let f = proxy.completed().await;
    assert_eq!(f.ws_messages.len(), 4);
}

/// A plain HTTP/1.1 upstream that answers `POST` with 413 as soon as the
/// head is in (then reads the body it refused) and `GET` with `fast`; it
/// counts the connections it accepted.
async fn early_answer_upstream() -> (std::net::SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = Arc::clone(&accepted);
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut buf = Vec::new();
                loop {
                    let Some(end) = head_into(&mut s, &mut buf).await else {
                        return;
                    };
                    let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                    buf.drain(..end);
                    let length: usize = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .and_then(|v| v.trim().parse().ok())
                        .unwrap_or(0);
                    let answer: &[u8] = if head.starts_with("post") {
                        b"HTTP/1.1 413 Payload Too Large\r\ncontent-length: 0\r\n\r\n"
                    } else {
                        b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\nfast"
                    };
                    if s.write_all(answer).await.is_err() {
                        return;
                    }
                    // The refused body still arrives; read it before the next head.
                    while buf.len() < length {
                        let mut chunk = [0u8; 4096];
                        match s.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    buf.drain(..length);
                }
            });
        }
    });
    (addr, accepted)
}

/// Read into `buf` until it holds a whole head; the head's length.
async fn head_into(s: &mut TcpStream, buf: &mut Vec<u8>) -> Option<usize> {
    loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            return Some(i + 4);
        }
        let mut chunk = [0u8; 4096];
        match s.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

#[tokio::test]
async fn an_early_answer_to_a_slow_upload_does_not_hold_the_next_request() {
    let (upstream, accepted) = early_answer_upstream().await;
    let proxy = up::start_proxy(None, |_| {}, ProxyOptions::default()).await;
    // Client 1 uploads 40 bytes, 10 every 400 ms; the upstream answers 413 at
    // once, so its connection is back in the pool while still busy with the body.
    let mut slow = TcpStream::connect(proxy.forward).await.expect("connect");
    slow.write_all(
        format!(
            "POST http://{upstream}/upload HTTP/1.1\r\nhost: {upstream}\r\ncontent-length: 40\r\n\r\n"
        )
        .as_bytes(),
    )
    .await
    .expect("head");
    slow.write_all(&[b'a'; 10]).await.expect("body");
    let mut got = Vec::new();
    let end = tokio::time::timeout(Duration::from_secs(5), head_into(&mut slow, &mut got))
        .await
        .expect("an early answer")
        .expect("a head");
    assert!(
        got[..end].starts_with(b"HTTP/1.1 413"),
        "{}",
        String::from_utf8_lossy(&got)
    );
    let uploading = tokio::spawn(async move {
        for _ in 0..3 {
            tokio::time::sleep(Duration::from_millis(400)).await;
            slow.write_all(&[b'a'; 10]).await.expect("body");
        }
        slow
    });
    // Client 2, meanwhile: answered while that upload still goes on.
    let mut fast = TcpStream::connect(proxy.forward).await.expect("connect");
    fast.write_all(
        format!("GET http://{upstream}/fast HTTP/1.1\r\nhost: {upstream}\r\n\r\n").as_bytes(),
    )
    .await
    .expect("request");
    let mut answer = Vec::new();
    while !answer.ends_with(b"fast") {
        let mut chunk = [0u8; 1024];
        let n = tokio::time::timeout(Duration::from_secs(5), fast.read(&mut chunk))
            .await
            .expect("answer in time")
            .expect("read");
        assert!(n > 0, "closed: {}", String::from_utf8_lossy(&answer));
        answer.extend_from_slice(&chunk[..n]);
    }
    assert!(
        !uploading.is_finished(),
        "the GET was answered only after the upload ended"
    );
    assert!(answer.starts_with(b"HTTP/1.1 200"));
    assert!(uploading.await.is_ok());
    // Two upstream connections: the busy one was not reused for the GET.
    assert_eq!(accepted.load(Ordering::SeqCst), 2);
}
