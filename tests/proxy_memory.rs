//! A 50 MB body each way through the proxy while memory stays flat: the
//! proxy streams, it never holds a whole body. Alone in its own test binary
//! so the process's peak RSS belongs to this test.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::upstream::{self as up, full, ProxyOptions};
use http::Response;
use http_body::Frame;
use http_body_util::{BodyExt, StreamBody};

const CHUNK: usize = 64 * 1024;
const TOTAL: usize = 50 * 1024 * 1024;

/// Peak resident set size of this process, in KiB.
fn peak_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM")
}

fn chunks() -> impl futures::Stream<Item = Result<Bytes, std::io::Error>> {
    let chunk = Bytes::from(vec![b'x'; CHUNK]);
    futures::stream::iter((0..TOTAL / CHUNK).map(move |_| Ok(chunk.clone())))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_megabytes_each_way_with_flat_memory() {
    let upstream = up::http(|req| async move {
        if req.uri().path() == "/upload" {
            let mut body = req.into_body();
            let mut n = 0usize;
            while let Some(frame) = body.frame().await {
                if let Ok(d) = frame.expect("frame").into_data() {
                    n += d.len();
                }
            }
            return Response::new(full(n.to_string()));
        }
        let (tx, rx) = futures::channel::mpsc::channel::<Result<Frame<Bytes>, up::BoxError>>(4);
        tokio::spawn(async move {
            let mut tx = tx;
            let chunk = Bytes::from(vec![b'y'; CHUNK]);
            for _ in 0..TOTAL / CHUNK {
                if futures::SinkExt::send(&mut tx, Ok(Frame::data(chunk.clone())))
                    .await
                    .is_err()
                {
                    return;
                }
            }
        });
        Response::new(StreamBody::new(rx).boxed())
    })
    .await;
    let mut proxy = up::start_proxy(None, |_| {}, ProxyOptions::default()).await;
    let client = up::client_via(&proxy.url(), &[]);
    // Warm up allocator, pools and the client before measuring.
    let _ = client
        .post(format!("http://{}/upload", upstream.addr))
        .body("warm")
        .timeout(Duration::from_secs(60))
        .send()
        .await
        .expect("warm")
        .bytes()
        .await;
    let _ = proxy.completed().await;
    let before = peak_rss_kib();

    let resp = client
        .post(format!("http://{}/upload", upstream.addr))
        .timeout(Duration::from_secs(120))
        .body(reqwest::Body::wrap_stream(chunks()))
        .send()
        .await
        .expect("upload");
    assert_eq!(resp.text().await.expect("text"), TOTAL.to_string());
    let f = proxy.completed().await;
    assert_eq!(f.request_body_size, TOTAL as u64);
    assert_eq!(f.request_body.len(), 65_536);

    let mut resp = client
        .get(format!("http://{}/download", upstream.addr))
        .timeout(Duration::from_secs(120))
        .send()
        .await
        .expect("download");
    let mut n = 0usize;
    while let Some(c) = resp.chunk().await.expect("chunk") {
        n += c.len();
    }
    assert_eq!(n, TOTAL);
    let f = proxy.completed().await;
    assert_eq!(f.response_body_size, TOTAL as u64);

    let growth_mib = peak_rss_kib().saturating_sub(before) / 1024;
    eprintln!("peak RSS growth over 2 × 50 MB: {growth_mib} MiB");
    assert!(
        growth_mib < 40,
        "peak RSS grew by {growth_mib} MiB: something holds a whole body"
    );
}
