//! Through the proxy: real clients, the real proxy, the real store, real
//! PostgreSQL. Every exchange becomes exactly one row, byte-exact, with no
//! secret in the clear — also when the database dies mid-stream.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::db::{fresh_db, own_cluster};
use common::upstream::{self as up, full, ProxyOptions};
use futures::StreamExt;
use http::Response;

use ccproxy::store::{self, StorageState, Store, StoreStats};

const MAX_BODY: usize = 4096;
const SECRET: &str = "sk-ant-api03-SUPERSECRETVALUE1234567890";

/// Upstream that echoes the request body back, binary and all.
async fn echo() -> up::Server {
    up::http(|req| async move {
        let path = req.uri().path().to_string();
        let body = up::read_body(req).await;
        Response::builder()
            .header("content-type", "application/octet-stream")
            .header("x-echo-path", path)
            .header("set-cookie", format!("token={SECRET}"))
            .body(full(body))
            .expect("response")
    })
    .await
}

/// The i-th request body: binary bytes, every third one past the capture cap.
fn body(i: usize) -> Bytes {
    let len = if i % 3 == 0 {
        MAX_BODY + 5000
    } else {
        200 + i % 700
    };
    (0..len).map(|k| ((k * 31 + i) % 256) as u8).collect()
}

async fn wait_for(st: &Store, what: &str, done: impl Fn(&StoreStats) -> bool) {
    for _ in 0..2400 {
        if done(&st.stats()) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("gave up waiting for {what}: {:?}", st.stats());
}

/// Send `n` requests, `parallel` at a time, each with a distinct path; `during`
/// runs once `at` requests have been answered.
async fn send_all(
    proxy_url: &str,
    target: &str,
    n: usize,
    parallel: usize,
    at: usize,
    during: impl FnOnce() + Send,
) {
    let client = up::client_via(proxy_url, &[]);
    let mut during = Some(during);
    let mut answered = 0usize;
    let mut results = futures::stream::iter(0..n)
        .map(|i| {
            let client = client.clone();
            let url = format!("{target}/r/{i}");
            async move {
                let resp = client
                    .post(&url)
                    .header("authorization", format!("Bearer {SECRET}"))
                    .header("content-type", "application/octet-stream")
                    .body(body(i))
                    .send()
                    .await
                    .expect("request");
                assert_eq!(resp.status(), 200);
                let got = resp.bytes().await.expect("body");
                assert_eq!(got, body(i), "echo {i}");
            }
        })
        .buffer_unordered(parallel);
    while results.next().await.is_some() {
        answered += 1;
        if answered == at {
            if let Some(f) = during.take() {
                f();
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_requests_make_a_thousand_exact_rows_without_secrets() {
    let db = fresh_db().await;
    let upstream = echo().await;
    let proxy = up::start_proxy(
        None,
        |cfg| cfg.mitm.max_body_size = MAX_BODY,
        ProxyOptions::default(),
    )
    .await;
    let cfg = common::db::config(proxy.home.path(), Some(&db.url));
    let st = Store::open(&cfg).await.expect("open");
    proxy.hub.set_sink(st.sink());
    let target = format!("http://{}", upstream.addr);
    send_all(&proxy.url(), &target, 1000, 16, usize::MAX, || {}).await;
    wait_for(&st, "1000 rows", |s| s.written == 1000).await;
    st.shutdown(Duration::from_secs(30)).await;

    let c = store::connect(&db.url).await.expect("connect");
    let total: i64 = c
        .query_one(r#"SELECT count(*) FROM "CCProxy_HttpTraces""#, &[])
        .await
        .expect("count")
        .get(0);
    assert_eq!(total, 1000);
    let rows = c
        .query(
            r#"SELECT path, method, host, status_code, request_body, request_body_size,
                      response_body, response_body_size, request_headers, response_headers,
                      direction, traffic_type, is_https, duration_ms, server_port
               FROM "CCProxy_HttpTraces""#,
            &[],
        )
        .await
        .expect("rows");
    let mut seen = vec![false; 1000];
    for r in &rows {
        let path: String = r.get("path");
        let i: usize = path
            .strip_prefix("/r/")
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("unexpected path {path}"));
        assert!(!seen[i], "request {i} stored twice");
        seen[i] = true;
        let sent = body(i);
        let want = &sent[..sent.len().min(MAX_BODY)];
        assert_eq!(r.get::<_, String>("method"), "POST");
        assert_eq!(r.get::<_, String>("host"), "127.0.0.1");
        assert_eq!(r.get::<_, Option<i32>>("status_code"), Some(200));
        assert_eq!(
            r.get::<_, Vec<u8>>("request_body"),
            want,
            "request body {i}"
        );
        assert_eq!(
            r.get::<_, Vec<u8>>("response_body"),
            want,
            "response body {i}"
        );
        assert_eq!(r.get::<_, i32>("request_body_size") as usize, sent.len());
        assert_eq!(r.get::<_, i32>("response_body_size") as usize, sent.len());
        assert_eq!(
            r.get::<_, Option<String>>("direction").as_deref(),
            Some("forward")
        );
        assert!(!r.get::<_, bool>("is_https"));
        assert!(r.get::<_, Option<f64>>("duration_ms").is_some());
        assert_eq!(
            r.get::<_, Option<i32>>("server_port"),
            Some(i32::from(upstream.addr.port()))
        );
        let rh: serde_json::Value = r.get("response_headers");
        assert_eq!(rh["x-echo-path"], serde_json::json!(path));
        let auth = r.get::<_, serde_json::Value>("request_headers")["authorization"].clone();
        assert!(auth.as_str().is_some_and(|a| a.ends_with("7890")), "{auth}");
    }
    assert!(seen.iter().all(|s| *s));
    // No secret anywhere in the table, in any column.
    let leaks: i64 = c
        .query_one(
            r#"SELECT count(*) FROM "CCProxy_HttpTraces" t WHERE t::text LIKE '%SUPERSECRET%'"#,
            &[],
        )
        .await
        .expect("leak check")
        .get(0);
    assert_eq!(leaks, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_killed_with_two_thousand_requests_in_flight_loses_nothing() {
    let cluster = own_cluster().await;
    let url = cluster.managed.url.clone();
    let upstream = echo().await;
    let proxy = up::start_proxy(
        None,
        |cfg| cfg.mitm.max_body_size = MAX_BODY,
        ProxyOptions::default(),
    )
    .await;
    let cfg = common::db::config(proxy.home.path(), Some(&url));
    let st = Store::open(&cfg).await.expect("open");
    assert_eq!(st.stats().state, StorageState::Connected);
    proxy.hub.set_sink(st.sink());
    let target = format!("http://{}", upstream.addr);
    let c = &cluster;
    send_all(&proxy.url(), &target, 2000, 64, 600, || {
        tokio::task::block_in_place(|| c.kill());
    })
    .await;
    wait_for(&st, "spooling", |s| {
        s.state == StorageState::Spooling && s.queued == 0
    })
    .await;
    cluster.restart().await;
    wait_for(&st, "every row in", |s| {
        s.state == StorageState::Connected && s.written >= 2000 && s.spool_bytes == 0
    })
    .await;
    let s = st.stats();
    assert!(s.spooled > 0 && s.replayed > 0 && s.dropped == 0, "{s:?}");
    st.shutdown(Duration::from_secs(30)).await;
    let c = store::connect(&url).await.expect("connect");
    let r = c
        .query_one(
            r#"SELECT count(*), count(DISTINCT path) FROM "CCProxy_HttpTraces""#,
            &[],
        )
        .await
        .expect("count");
    assert_eq!((r.get::<_, i64>(0), r.get::<_, i64>(1)), (2000, 2000));
}
