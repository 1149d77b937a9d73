//! LLM analysis benchmark: the cost of `llm::analyze` per flow for a 64 KB
//! SSE body (Anthropic and OpenAI chat shapes), and of the live reassembly
//! the TUI runs over the same bytes. Runs `CCPROXY_BENCH_SECS` seconds per case.

use std::time::{Duration, Instant};

use bytes::Bytes;
use ccproxy::flow::{Direction, Flow};
use ccproxy::llm::{self, FrameTime, PriceTable};

/// Size of the streamed body each case analyses.
const BODY: usize = 64 * 1024;

pub async fn run() -> anyhow::Result<()> {
    let secs: f64 = std::env::var("CCPROXY_BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2.0);
    let window = Duration::from_secs_f64(secs.max(0.1));
    let prices = PriceTable::bundled();
    println!("== llm: analysis of one 64 KB SSE body, {secs} s per case ==");
    for (name, flow) in [
        ("anthropic.messages", anthropic()),
        ("openai.chat", openai()),
    ] {
        let frames: Vec<FrameTime> = (0..llm::MAX_FRAMES as u64)
            .map(|i| FrameTime {
                offset: i * 1024,
                elapsed_ms: 300.0 + i as f64 * 10.0,
            })
            .collect();
        let a = llm::analyze_timed(&flow, &prices, &frames)
            .ok_or_else(|| anyhow::anyhow!("{name}: the fixture was not recognised"))?;
        anyhow::ensure!(a.usage.output.is_some(), "{name}: no usage found");
        let (n, elapsed) = repeat(window, || {
            std::hint::black_box(llm::analyze_timed(&flow, &prices, &frames));
        });
        let per = elapsed.as_secs_f64() * 1e6 / n as f64;
        println!(
            "analyze   {name:<20} {:>6} KB body  {per:>8.1} µs/flow  ({:.0} MB/s, {n} runs; ttft {:?} ms, cost {:?})",
            flow.response_body.len() / 1024,
            flow.response_body.len() as f64 / per,
            a.ttft_ms,
            a.cost_usd
        );
        let (n, elapsed) = repeat(window, || {
            let mut s = llm::stream::Stream::for_api(Some(a.api));
            for chunk in flow.response_body.chunks(1500) {
                s.feed(chunk);
            }
            std::hint::black_box(&s.message);
        });
        println!(
            "live      {name:<20} 1500-byte slices  {:>8.1} µs/flow (TUI reassembly, events kept)",
            elapsed.as_secs_f64() * 1e6 / n as f64
        );
    }
    Ok(())
}

fn repeat(window: Duration, mut f: impl FnMut()) -> (u64, Duration) {
    let t = Instant::now();
    let mut n = 0u64;
    while t.elapsed() < window || n < 10 {
        f();
        n += 1;
    }
    (n, t.elapsed())
}

fn flow(path: &str, req: &str, body: String) -> Flow {
    let mut f = Flow::new(
        Direction::Reverse,
        "POST",
        &format!("http://127.0.0.1{path}"),
        "127.0.0.1",
        path,
    );
    f.request_body = Bytes::from(req.to_string());
    f.response_body = Bytes::from(body);
    f.response_content_type = Some("text/event-stream".into());
    f.request_headers = vec![(
        "user-agent".into(),
        "claude-cli/1.0.83 (external, cli)".into(),
    )];
    f.duration_ms = Some(5000.0);
    f.ttfb_ms = Some(200.0);
    f
}

/// A streamed Anthropic answer of about `size` bytes: usage with cache
/// figures, text deltas, a stop reason.
pub fn anthropic_sse(size: usize) -> String {
    let mut b = String::from(concat!(
        "event: message_start\n",
        "data: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"model\":\"claude-sonnet-4-5-20250929\",",
        "\"usage\":{\"input_tokens\":12,\"cache_read_input_tokens\":88000,\"cache_creation_input_tokens\":100,\"output_tokens\":1}}}\n\n",
        "event: content_block_start\n",
        "data: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n",
    ));
    while b.len() < size.saturating_sub(400) {
        b.push_str("event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"the quick brown fox \"}}\n\n");
    }
    b.push_str("event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"},\"usage\":{\"output_tokens\":3000}}\n\n");
    b.push_str("event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n");
    b
}

fn anthropic() -> Flow {
    let b = anthropic_sse(BODY);
    let req = r#"{"model":"claude-sonnet-4-5","max_tokens":4096,"stream":true,"system":"You are helpful.","messages":[{"role":"user","content":"Write."}]}"#;
    flow("/v1/messages", req, b)
}

fn openai() -> Flow {
    let mut b = String::new();
    while b.len() < BODY - 400 {
        b.push_str("data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"model\":\"gpt-4o-2024-08-06\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"the quick brown fox \"}}]}\n\n");
    }
    b.push_str("data: {\"id\":\"chatcmpl-1\",\"choices\":[],\"usage\":{\"prompt_tokens\":1200,\"completion_tokens\":3000,\"prompt_tokens_details\":{\"cached_tokens\":1024}}}\n\n");
    b.push_str("data: [DONE]\n\n");
    let req = r#"{"model":"gpt-4o","stream":true,"messages":[{"role":"user","content":"Write."}]}"#;
    flow("/v1/chat/completions", req, b)
}
