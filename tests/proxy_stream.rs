//! Streaming: server-sent events reach the client as the upstream emits them
//! (chunked and close-delimited, plain and through TLS interception), and
//! viewers get the live slices.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use common::upstream::{self as up, ProxyOptions, TestCa};
use futures::channel::oneshot;
use http::Response;
use http_body::Frame;
use http_body_util::{BodyExt, StreamBody};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use ccproxy::flow::FlowEvent;

/// Shared between a test and its SSE upstream: the client's "got the first
/// event" signal, and whether the second event had been sent at that point.
#[derive(Default)]
struct SseProbe {
    ack: Mutex<Option<oneshot::Receiver<()>>>,
    second_sent: AtomicBool,
}

impl SseProbe {
    fn arm(&self) -> oneshot::Sender<()> {
        let (tx, rx) = oneshot::channel();
        *self.ack.lock().expect("lock") = Some(rx);
        self.second_sent.store(false, Ordering::SeqCst);
        tx
    }

    /// Wait for the client's ack, or 500 ms, whichever comes first.
    async fn pause(&self) {
        let rx = self.ack.lock().expect("lock").take();
        if let Some(rx) = rx {
            let _ = tokio::time::timeout(Duration::from_millis(500), rx).await;
        }
        self.second_sent.store(true, Ordering::SeqCst);
    }
}

/// Chunked SSE: one event, a pause, a second event, end.
async fn sse_chunked(probe: Arc<SseProbe>, tls: Option<&TestCa>) -> up::Server {
    let handler = move |_req| {
        let probe = Arc::clone(&probe);
        async move {
            let (tx, rx) =
                futures::channel::mpsc::unbounded::<Result<Frame<Bytes>, up::BoxError>>();
            tokio::spawn(async move {
                let _ = tx.unbounded_send(Ok(Frame::data(Bytes::from_static(
                    b"event: a\ndata: one\n\n",
                ))));
                probe.pause().await;
                let _ = tx.unbounded_send(Ok(Frame::data(Bytes::from_static(
                    b"event: b\ndata: two\n\n",
                ))));
            });
            Response::builder()
                .header("content-type", "text/event-stream")
                .body(StreamBody::new(rx).boxed())
                .expect("response")
        }
    };
    match tls {
        Some(ca) => up::https(ca, handler).await,
        None => up::http(handler).await,
    }
}

async fn check_first_event_arrives_alone(
    client: &reqwest::Client,
    url: &str,
    probe: &SseProbe,
) -> String {
    let ack = probe.arm();
    let mut resp = client.get(url).send().await.expect("send");
    let first = resp.chunk().await.expect("chunk").expect("first event");
    assert_eq!(&first[..], b"event: a\ndata: one\n\n");
    assert!(
        !probe.second_sent.load(Ordering::SeqCst),
        "the first event must reach the client before the second is sent"
    );
    let _ = ack.send(());
    let mut rest = Vec::new();
    while let Some(c) = resp.chunk().await.expect("chunk") {
        rest.extend_from_slice(&c);
    }
    String::from_utf8(rest).expect("utf-8")
}

#[tokio::test]
async fn sse_events_are_not_held_back_plain() {
    let probe = Arc::new(SseProbe::default());
    let upstream = sse_chunked(Arc::clone(&probe), None).await;
    let mut proxy = up::start_proxy(None, |_| {}, ProxyOptions::default()).await;
    let client = up::client_via(&proxy.url(), &[]);
    let rest = check_first_event_arrives_alone(
        &client,
        &format!("http://{}/v1/messages", upstream.addr),
        &probe,
    )
    .await;
    assert_eq!(rest, "event: b\ndata: two\n\n");

    // Viewers saw the live slices before completion.
    let chunk = proxy
        .next_event(|ev| match ev {
            FlowEvent::ResponseChunk { data, .. } => Some(data.clone()),
            _ => None,
        })
        .await;
    assert_eq!(&chunk[..], b"event: a\ndata: one\n\n");
    let f = proxy.completed().await;
    assert_eq!(
        f.response_body,
        Bytes::from_static(b"event: a\ndata: one\n\nevent: b\ndata: two\n\n")
    );
    assert!(f.error_type.is_none());
    assert_eq!(
        f.response_content_type.as_deref(),
        Some("text/event-stream")
    );
}

#[tokio::test]
async fn sse_events_are_not_held_back_through_tls_interception() {
    let ca = TestCa::new();
    let probe = Arc::new(SseProbe::default());
    let upstream = sse_chunked(Arc::clone(&probe), Some(&ca)).await;
    let mut proxy = up::start_proxy(Some(&ca), |_| {}, ProxyOptions::default()).await;
    let ours = proxy.ca_pem_path();
    let client = up::client_via(&proxy.url(), &[&ours]);
    let rest = check_first_event_arrives_alone(
        &client,
        &format!("https://localhost:{}/v1/messages", upstream.addr.port()),
        &probe,
    )
    .await;
    assert_eq!(rest, "event: b\ndata: two\n\n");
    let f = proxy.completed().await;
    assert!(f.is_https && f.error_type.is_none());
}

#[tokio::test]
async fn sse_ended_by_connection_close() {
    let probe = Arc::new(SseProbe::default());
    let p = Arc::clone(&probe);
    let upstream = up::raw(move |mut s| {
        let probe = Arc::clone(&p);
        async move {
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf).await;
            let _ = s
                .write_all(
                    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nconnection: close\r\n\r\nevent: a\ndata: one\n\n",
                )
                .await;
            probe.pause().await;
            let _ = s.write_all(b"event: b\ndata: two\n\n").await;
            let _ = s.shutdown().await;
        }
    })
    .await;
    let mut proxy = up::start_proxy(None, |_| {}, ProxyOptions::default()).await;
    let client = up::client_via(&proxy.url(), &[]);
    let rest = check_first_event_arrives_alone(
        &client,
        &format!("http://{}/events", upstream.addr),
        &probe,
    )
    .await;
    assert_eq!(rest, "event: b\ndata: two\n\n");
    let f = proxy.completed().await;
    assert!(f.error_type.is_none(), "{:?}", f.error_message);
    assert_eq!(f.response_body_size, 40);
}
