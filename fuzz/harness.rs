//! The fuzzed entry points, one function per target, shared by the cargo-fuzz
//! targets (`fuzz/fuzz_targets/*.rs`) and the property test that `cargo test`
//! runs (`tests/trust.rs`), so CI exercises exactly what libFuzzer did.
//!
//! Each function takes arbitrary bytes and panics only when a property the
//! parser promises is broken (or when the parser itself panics).

#![allow(dead_code)]

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use ccproxy::flow::{Direction, Flow};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// A flow with something in every field a filter can look at.
fn sample_flow() -> Flow {
    let mut f = Flow::new(
        Direction::Forward,
        "POST",
        "https://api.anthropic.com/v1/messages?beta=true",
        "api.anthropic.com",
        "/v1/messages?beta=true",
    );
    f.status_code = Some(200);
    f.request_headers = vec![("content-type".into(), "application/json".into())];
    f.response_headers = vec![("content-type".into(), "text/event-stream".into())];
    f.request_content_type = Some("application/json".into());
    f.request_body = bytes::Bytes::from_static(b"{\"model\":\"claude-sonnet-4-5\"}");
    f.response_body = bytes::Bytes::from_static(b"event: message_stop\ndata: {}\n\n");
    f
}

/// Filter language: parsing never panics; a parsed filter evaluates, and its
/// source text parses again to a filter that agrees.
pub fn filter(data: &[u8]) {
    let Ok(expr) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(f) = ccproxy::flow::filter::parse(expr) {
        let flow = sample_flow();
        let verdict = f.matches(&flow);
        let again = ccproxy::flow::filter::parse(f.source()).expect("a filter's source reparses");
        assert_eq!(again.matches(&flow), verdict, "{expr:?}");
    }
}

/// Config loader: any text gives `Ok` or one-line `Err`, never a panic.
pub fn config(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    if let Err(message) = ccproxy::config::check_text(&text) {
        assert!(!message.is_empty());
    }
}

/// In-memory connection: reads come in the chunks given, writes are kept.
struct Mem {
    chunks: std::collections::VecDeque<Vec<u8>>,
    written: std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
}

impl AsyncRead for Mem {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if let Some(mut chunk) = self.chunks.pop_front() {
            let n = chunk.len().min(buf.remaining());
            buf.put_slice(&chunk[..n]);
            if n < chunk.len() {
                chunk.drain(..n);
                self.chunks.push_front(chunk);
            }
        }
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Mem {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.written.lock().expect("written").extend_from_slice(buf);
        Poll::Ready(Ok(buf.len()))
    }
    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

thread_local! {
    static RT: tokio::runtime::Runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("runtime");
}

/// Split `data` into read chunks: the first byte picks the chunk size.
fn chunks(data: &[u8]) -> (Vec<u8>, std::collections::VecDeque<Vec<u8>>) {
    let (size, rest) = match data.split_first() {
        Some((s, rest)) => (usize::from(*s).max(1) * 61, rest),
        None => (1, data),
    };
    (
        rest.to_vec(),
        rest.chunks(size).map(<[u8]>::to_vec).collect(),
    )
}

/// Request-head guard: whatever arrives, a complete head is never longer
/// than the bytes read, and every refusal has a reason.
pub fn head(data: &[u8]) {
    use ccproxy::proxy::head::{inspect, Rejection};
    match inspect(data) {
        Some(Ok(len)) => {
            assert!(len <= data.len(), "a head longer than its input");
        }
        Some(Err(Rejection::TooLarge)) | None => {}
        Some(Err(r)) => assert!(!r.reason().is_empty()),
    }
}

/// SSE parser, stream reassembly and LLM analysis: the events do not depend
/// on how the bytes were sliced, and the analysis of any request and response
/// bytes on any LLM path never panics.
pub fn sse(data: &[u8]) {
    use ccproxy::llm::sse::SseParser;
    use ccproxy::llm::stream::Stream;
    let Some((cut, body)) = data.split_first() else {
        return;
    };
    let mut whole = SseParser::default();
    whole.feed(body);
    let mut sliced = Stream::default();
    let step = usize::from(*cut).max(1);
    for part in body.chunks(step) {
        sliced.feed(part);
    }
    assert_eq!(
        whole.events, sliced.parser.events,
        "slicing changed the events"
    );
    let _ = sliced.parser.pending();
    let _ = sliced.message.usage_label();
    const PATHS: [&str; 6] = [
        "/v1/messages",
        "/v1/chat/completions",
        "/v1/responses",
        "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse",
        "/mcp",
        "/model/anthropic.claude/invoke",
    ];
    let mut flow = sample_flow();
    flow.path = PATHS[usize::from(*cut) % PATHS.len()].to_string();
    let (req, resp) = body.split_at(body.len() / 2);
    flow.request_body = bytes::Bytes::copy_from_slice(req);
    flow.response_body = bytes::Bytes::copy_from_slice(resp);
    flow.response_content_type = Some(
        if cut & 1 == 0 {
            "text/event-stream"
        } else {
            "application/json"
        }
        .into(),
    );
    let frames = [ccproxy::llm::FrameTime {
        offset: u64::from(*cut),
        elapsed_ms: 10.0,
    }];
    let prices = ccproxy::llm::PriceTable::shared();
    if let Some(a) = ccproxy::llm::analyze_timed(&flow, prices, &frames) {
        assert!(a.cost_usd.is_none_or(f64::is_finite), "cost is a number");
    }
    let _ = ccproxy::store::row::request_model(&flow);
}

/// Spool segment reader: any file gives the records up to the first bad
/// one and a reason, never a panic.
pub fn spool(data: &[u8]) {
    let path = std::env::temp_dir().join(format!(
        "ccproxy-fuzz-spool-{}-{:?}.seg",
        std::process::id(),
        std::thread::current().id()
    ));
    std::fs::write(&path, data).expect("write segment");
    let seg = ccproxy::store::spool::read_segment(&path).expect("read segment");
    assert_eq!(seg.bytes, data.len() as u64);
    let _ = std::fs::remove_file(&path);
}

/// Control socket: the engine's request reader is bounded and never panics;
/// the client's line decoder takes any line.
pub fn control(data: &[u8]) {
    use ccproxy::engine::control::{decode, read_request, MAX_REQUEST_LINE};
    let (_, chunks) = chunks(data);
    let io = Mem {
        chunks,
        written: std::sync::Arc::default(),
    };
    RT.with(|rt| {
        rt.block_on(async {
            let mut reader = tokio::io::BufReader::new(io);
            let got = read_request(&mut reader).await.expect("in-memory reads");
            if let Some(Ok(cmd)) = &got {
                assert!(cmd.len() as u64 <= MAX_REQUEST_LINE);
            }
        });
    });
    for line in String::from_utf8_lossy(data).lines() {
        let _ = decode(line);
    }
}

/// Redaction: redacting twice changes nothing (the proxy applies it at every
/// event of a flow), and no provider key shape survives in a body, a URL or
/// a header.
pub fn redact(data: &[u8]) {
    use ccproxy::capture::redact::Redactor;
    let r = Redactor::new(&["x-custom".to_string()], &["custom".to_string()]);
    let body = bytes::Bytes::copy_from_slice(data);
    let once = r.body(&body);
    assert_eq!(r.body(&once), once, "body redaction is idempotent");
    let text = String::from_utf8_lossy(data);
    let url = r.url(&text).into_owned();
    assert_eq!(r.url(&url), url, "URL redaction is idempotent");
    let mut flow = sample_flow();
    flow.url = format!("https://{text}");
    flow.path = text.to_string();
    flow.request_headers = text
        .lines()
        .map(|l| match l.split_once(':') {
            Some((n, v)) => (n.trim().to_ascii_lowercase(), v.to_string()),
            None => ("x-custom".to_string(), l.to_string()),
        })
        .collect();
    flow.request_body = body;
    flow.request_content_type = Some("application/x-www-form-urlencoded".into());
    r.flow(&mut flow);
    let mut again = flow.clone();
    r.flow(&mut again);
    assert_eq!(again, flow, "flow redaction is idempotent");
}
