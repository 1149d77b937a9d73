//! Plain-HTTP paths of the proxy: absolute-form, origin-form to
//! `upstream_proxy`, the reverse listener, the Flow's fields, redaction,
//! content decoding of the captured copy and `capture_bodies: false`.

mod common;

use std::io::Write as _;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use common::upstream::{self as up, full, ProxyOptions};
use http::{Response, StatusCode};

use ccproxy::flow::{Direction, TrafficType};
use ccproxy::proxy::ReverseRoute;

/// Echo upstream: answers `<method> <path> <body>` and remembers the request headers.
async fn echo(seen: Arc<Mutex<Vec<http::HeaderMap>>>) -> up::Server {
    up::http(move |req| {
        let seen = Arc::clone(&seen);
        async move {
            seen.lock().expect("lock").push(req.headers().clone());
            let head = format!("{} {} ", req.method(), req.uri());
            let body = up::read_body(req).await;
            let mut out = head.into_bytes();
            out.extend_from_slice(&body);
            Response::builder()
                .header("content-type", "text/plain")
                .header("set-cookie", "session=supersecretvalue1234")
                .body(full(out))
                .expect("response")
        }
    })
    .await
}

#[tokio::test]
async fn absolute_form_through_reqwest_fills_the_flow() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let upstream = echo(Arc::clone(&seen)).await;
    let mut proxy = up::start_proxy(None, |_| {}, ProxyOptions::default()).await;
    let client = up::client_via(&proxy.url(), &[]);
    let url = format!("http://{}/v1/things?q=1", upstream.addr);
    let resp = client
        .post(&url)
        .header("content-type", "application/json")
        .header("x-claude-code-session-id", "sess-42")
        .body("{\"a\":1}")
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(
        resp.text().await.expect("text"),
        "POST /v1/things?q=1 {\"a\":1}"
    );

    let f = proxy.completed().await;
    assert_eq!(f.direction, Direction::Forward);
    assert_eq!(f.method, "POST");
    assert_eq!(f.url, url);
    assert_eq!(f.host, "127.0.0.1");
    assert_eq!(f.path, "/v1/things?q=1");
    assert_eq!(f.http_version, "HTTP/1.1");
    assert_eq!(f.status_code, Some(200));
    assert_eq!(f.request_body, Bytes::from_static(b"{\"a\":1}"));
    assert_eq!(f.request_body_size, 7);
    assert_eq!(f.request_content_type.as_deref(), Some("application/json"));
    assert_eq!(f.response_body_size, 27);
    assert_eq!(f.response_content_type.as_deref(), Some("text/plain"));
    assert_eq!(f.client_ip.as_deref(), Some("127.0.0.1"));
    assert_eq!(f.server_ip.as_deref(), Some("127.0.0.1"));
    assert_eq!(f.server_port, Some(upstream.addr.port()));
    assert!(!f.is_https);
    assert_eq!(f.traffic_type, TrafficType::Other);
    assert_eq!(f.session_id.as_deref(), Some("sess-42"));
    assert!(f.ttfb_ms.is_some() && f.duration_ms.is_some());
    assert!(f.end_time.is_some_and(|e| e >= f.start_time));
    assert!(f.error_type.is_none(), "{:?}", f.error_message);
    // Secrets redacted in the flow.
    let cookie = f.response_header("set-cookie").expect("set-cookie");
    assert!(!cookie.contains("supersecretvalue"), "{cookie}");
    // Hop-by-hop headers stay on their hop.
    let h = seen.lock().expect("lock")[0].clone();
    assert!(!h.contains_key("proxy-connection"));
}

#[tokio::test]
async fn secrets_reach_upstream_intact_but_are_redacted_in_the_flow() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let upstream = echo(Arc::clone(&seen)).await;
    let mut proxy = up::start_proxy(
        None,
        |c| c.mitm.redact_headers = vec!["x-custom-secret".into()],
        ProxyOptions::default(),
    )
    .await;
    let client = up::client_via(&proxy.url(), &[]);
    let key = "sk-ant-api03-abcdefghijklmnopqrstuvwxyz-WXYZ";
    let resp = client
        .get(format!("http://{}/", upstream.addr))
        .header("x-api-key", key)
        .header("authorization", "Bearer tok-0123456789-9876")
        .header("x-custom-secret", "hunter2hunter2")
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 200);
    let h = seen.lock().expect("lock")[0].clone();
    assert_eq!(h["x-api-key"], key);
    assert_eq!(h["authorization"], "Bearer tok-0123456789-9876");
    assert_eq!(h["x-custom-secret"], "hunter2hunter2");

    let f = proxy.completed().await;
    for (name, secret) in [
        ("x-api-key", key),
        ("authorization", "tok-0123456789-9876"),
        ("x-custom-secret", "hunter2hunter2"),
    ] {
        let v = f.request_header(name).expect(name);
        assert!(!v.contains(secret), "{name}: {v}");
    }
    assert!(f
        .request_header("x-api-key")
        .expect("key")
        .ends_with("WXYZ"));
}

#[tokio::test]
async fn absolute_form_through_curl() {
    let upstream = echo(Arc::default()).await;
    let mut proxy = up::start_proxy(None, |_| {}, ProxyOptions::default()).await;
    let (ok, out, err) = up::curl(&[
        "-x",
        &proxy.url(),
        "-d",
        "ping",
        &format!("http://{}/curl", upstream.addr),
    ])
    .await;
    assert!(ok, "{err}");
    assert_eq!(out, b"POST /curl ping");
    let f = proxy.completed().await;
    assert_eq!(f.path, "/curl");
    assert_eq!(f.request_body, Bytes::from_static(b"ping"));
}

#[tokio::test]
async fn origin_form_goes_to_upstream_proxy() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let upstream = echo(Arc::clone(&seen)).await;
    let base = format!("http://{}", upstream.addr);
    let mut proxy = up::start_proxy(
        None,
        move |c| c.mitm.upstream_proxy = base,
        ProxyOptions::default(),
    )
    .await;
    let client = up::client_direct(&[]);
    let resp = client
        .post(format!("{}/v1/messages", proxy.url()))
        .body("hi")
        .send()
        .await
        .expect("send");
    assert_eq!(resp.text().await.expect("text"), "POST /v1/messages hi");
    let h = seen.lock().expect("lock")[0].clone();
    assert_eq!(h["host"], upstream.addr.to_string());
    let f = proxy.completed().await;
    assert_eq!(f.url, format!("http://{}/v1/messages", upstream.addr));
    assert_eq!(f.direction, Direction::Forward);
}

#[tokio::test]
async fn reverse_listener_fixed_route() {
    let upstream = echo(Arc::default()).await;
    let mut proxy = up::start_proxy(
        None,
        |_| {},
        ProxyOptions {
            reverse: Some(ReverseRoute::Fixed(format!("http://{}/gw", upstream.addr))),
            ..ProxyOptions::default()
        },
    )
    .await;
    let rev = proxy.reverse.expect("reverse");
    let client = up::client_direct(&[]);
    let resp = client
        .post(format!("http://{rev}/v1/messages?beta=true"))
        .body("x")
        .send()
        .await
        .expect("send");
    assert_eq!(
        resp.text().await.expect("text"),
        "POST /gw/v1/messages?beta=true x"
    );
    let f = proxy.completed().await;
    assert_eq!(f.direction, Direction::Reverse);
    assert_eq!(f.path, "/gw/v1/messages?beta=true");
}

#[tokio::test]
async fn reverse_listener_provider_routes() {
    let anthropic = up::http(|_| async { Response::new(full("anthropic")) }).await;
    let openai = up::http(|_| async { Response::new(full("openai")) }).await;
    let proxy = up::start_proxy(
        None,
        |_| {},
        ProxyOptions {
            reverse: Some(ReverseRoute::Providers {
                anthropic: format!("http://{}", anthropic.addr),
                openai: format!("http://{}", openai.addr),
            }),
            ..ProxyOptions::default()
        },
    )
    .await;
    let rev = proxy.reverse.expect("reverse");
    let client = up::client_direct(&[]);
    for (path, want) in [
        ("/v1/messages", "anthropic"),
        ("/v1/chat/completions", "openai"),
        ("/v1/responses", "openai"),
    ] {
        let body = client
            .post(format!("http://{rev}{path}"))
            .send()
            .await
            .expect("send")
            .text()
            .await
            .expect("text");
        assert_eq!(body, want, "{path}");
    }
    let resp = client
        .get(format!("http://{rev}/nowhere"))
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).expect("gz");
    e.finish().expect("gz")
}

fn brotli(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    {
        let mut w = brotli::CompressorWriter::new(&mut out, 4096, 5, 22);
        w.write_all(data).expect("br");
    }
    out
}

#[tokio::test]
async fn captured_copy_is_decoded_but_client_gets_the_wire_bytes() {
    let text = "the quick brown fox jumps over the lazy dog. ".repeat(50);
    let encodings: Vec<(&str, Vec<u8>)> = vec![
        ("gzip", gzip(text.as_bytes())),
        ("br", brotli(text.as_bytes())),
        ("zstd", zstd::encode_all(text.as_bytes(), 3).expect("zstd")),
    ];
    let table = Arc::new(encodings.clone());
    let upstream = up::http(move |req| {
        let table = Arc::clone(&table);
        async move {
            let enc = req.uri().path().trim_start_matches('/').to_string();
            let (name, body) = table
                .iter()
                .find(|(n, _)| *n == enc)
                .cloned()
                .expect("known encoding");
            Response::builder()
                .header("content-encoding", name)
                .body(full(body))
                .expect("response")
        }
    })
    .await;
    let mut proxy = up::start_proxy(None, |_| {}, ProxyOptions::default()).await;
    let client = up::client_via(&proxy.url(), &[]);
    for (name, wire) in &encodings {
        let got = client
            .get(format!("http://{}/{name}", upstream.addr))
            .send()
            .await
            .expect("send")
            .bytes()
            .await
            .expect("bytes");
        assert_eq!(&got[..], &wire[..], "{name}: client sees the encoded bytes");
        let f = proxy.completed().await;
        assert_eq!(f.response_body, Bytes::from(text.clone()), "{name}");
        assert_eq!(f.response_body_size, wire.len() as u64, "{name}");
    }
}

#[tokio::test]
async fn decompression_bomb_costs_at_most_max_body_size() {
    let bomb = Arc::new(gzip(&vec![0u8; 64 << 20]));
    let wire = Arc::clone(&bomb);
    let upstream = up::http(move |_| {
        let wire = Arc::clone(&wire);
        async move {
            Response::builder()
                .header("content-encoding", "gzip")
                .body(full(wire.to_vec()))
                .expect("response")
        }
    })
    .await;
    let mut proxy = up::start_proxy(
        None,
        |c| c.mitm.max_body_size = 1 << 20,
        ProxyOptions::default(),
    )
    .await;
    let client = up::client_via(&proxy.url(), &[]);
    let got = client
        .get(format!("http://{}/bomb", upstream.addr))
        .send()
        .await
        .expect("send")
        .bytes()
        .await
        .expect("bytes");
    assert_eq!(got.len(), bomb.len());
    let f = proxy.completed().await;
    assert!(
        f.response_body.len() <= 1 << 20,
        "{}",
        f.response_body.len()
    );
    assert!(f.response_body.iter().all(|b| *b == 0));
    assert_eq!(f.response_body_size, bomb.len() as u64);
}

#[tokio::test]
async fn capture_bodies_false_keeps_headers_and_sizes_only() {
    let upstream = echo(Arc::default()).await;
    let mut proxy = up::start_proxy(
        None,
        |c| c.mitm.capture_bodies = false,
        ProxyOptions::default(),
    )
    .await;
    let client = up::client_via(&proxy.url(), &[]);
    let resp = client
        .post(format!("http://{}/x", upstream.addr))
        .body("secret body")
        .send()
        .await
        .expect("send");
    assert_eq!(resp.text().await.expect("text"), "POST /x secret body");
    let f = proxy.completed().await;
    assert!(f.request_body.is_empty() && f.response_body.is_empty());
    assert_eq!(f.request_body_size, 11);
    assert_eq!(f.response_body_size, 19);
    assert!(!f.request_headers.is_empty());
}

#[tokio::test]
async fn bodies_are_cut_at_max_body_size_with_full_sizes() {
    let upstream = echo(Arc::default()).await;
    let mut proxy =
        up::start_proxy(None, |c| c.mitm.max_body_size = 16, ProxyOptions::default()).await;
    let client = up::client_via(&proxy.url(), &[]);
    let body = "0123456789".repeat(10);
    let resp = client
        .post(format!("http://{}/cut", upstream.addr))
        .body(body.clone())
        .send()
        .await
        .expect("send");
    assert_eq!(
        resp.text().await.expect("text"),
        format!("POST /cut {body}")
    );
    let f = proxy.completed().await;
    assert_eq!(f.request_body, Bytes::from_static(b"0123456789012345"));
    assert_eq!(f.request_body_size, 100);
    assert_eq!(f.response_body, Bytes::from_static(b"POST /cut 012345"));
    assert_eq!(f.response_body_size, 110);
}

#[tokio::test]
async fn empty_bodies_head_and_204_complete_cleanly() {
    let upstream = up::http(|req| async move {
        let status = if req.uri().path() == "/204" { 204 } else { 200 };
        Response::builder()
            .status(status)
            .header("content-length", if status == 204 { "0" } else { "5" })
            .body(full(
                if req.method() == http::Method::HEAD || status == 204 {
                    ""
                } else {
                    "hello"
                },
            ))
            .expect("response")
    })
    .await;
    let mut proxy = up::start_proxy(None, |_| {}, ProxyOptions::default()).await;
    let client = up::client_via(&proxy.url(), &[]);
    let resp = client
        .head(format!("http://{}/head", upstream.addr))
        .send()
        .await
        .expect("head");
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-length"], "5");
    let f = proxy.completed().await;
    assert_eq!((f.method.as_str(), f.status_code), ("HEAD", Some(200)));
    assert!(f.error_type.is_none(), "{:?}", f.error_message);

    let resp = client
        .delete(format!("http://{}/204", upstream.addr))
        .send()
        .await
        .expect("204");
    assert_eq!(resp.status(), 204);
    let f = proxy.completed().await;
    assert_eq!(f.status_code, Some(204));
    assert!(f.error_type.is_none(), "{:?}", f.error_message);
}

#[tokio::test]
async fn curl_large_upload_with_expect_continue() {
    let upstream = echo(Arc::default()).await;
    let mut proxy = up::start_proxy(None, |_| {}, ProxyOptions::default()).await;
    let body = "z".repeat(200_000);
    let file = tempfile::NamedTempFile::new().expect("tmp");
    std::fs::write(file.path(), &body).expect("write");
    let arg = format!("@{}", file.path().display());
    let (ok, out, err) = up::curl(&[
        "-x",
        &proxy.url(),
        "--data-binary",
        &arg,
        &format!("http://{}/up", upstream.addr),
    ])
    .await;
    assert!(ok, "{err}");
    assert_eq!(out.len(), "POST /up ".len() + body.len());
    let f = proxy.completed().await;
    assert_eq!(f.request_body_size, 200_000);
    assert!(f.error_type.is_none(), "{:?}", f.error_message);
}

#[tokio::test]
async fn excluded_host_over_plain_http_is_forwarded_but_not_recorded() {
    let upstream = echo(Arc::default()).await;
    let mut proxy = up::start_proxy(
        None,
        |c| c.mitm.excluded_hosts = vec!["localhost".into()],
        ProxyOptions::default(),
    )
    .await;
    let client = up::client_via(&proxy.url(), &[]);
    let text = client
        .get(format!("http://localhost:{}/private", upstream.addr.port()))
        .send()
        .await
        .expect("send")
        .text()
        .await
        .expect("text");
    assert_eq!(text, "GET /private ");
    client
        .get(format!("http://{}/public", upstream.addr))
        .send()
        .await
        .expect("send");
    let f = proxy.completed().await;
    assert_eq!(f.path, "/public");
    assert_eq!(proxy.hub.snapshot().started, 1);
}
