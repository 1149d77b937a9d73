//! Session model benchmark: `llm::session::build` over one session of 10,000
//! Claude Code shaped requests (system + tools with cache breakpoints, a
//! message list growing by two per turn, compacted every 50 turns, tool calls
//! paired with their results). Prints the build time; target ≤ 100 ms.

use std::time::Instant;

use ccproxy::flow::{Direction, Flow};
use ccproxy::llm::session::{self, Exchange};
use ccproxy::llm::{Analysis, PriceTable, ToolCall, ToolResultRef, Usage};
use serde_json::json;

const REQUESTS: usize = 10_000;
const COMPACT_EVERY: usize = 50;

pub async fn run() -> anyhow::Result<()> {
    let prices = PriceTable::bundled();
    let t0 = chrono::Utc::now() - chrono::Duration::hours(10);
    let mut flows = Vec::with_capacity(REQUESTS);
    let mut analyses = Vec::with_capacity(REQUESTS);
    let mut messages = Vec::new();
    for i in 0..REQUESTS {
        if i % COMPACT_EVERY == 0 {
            messages = vec![
                json!({"role": "user", "content": [{"type": "text", "text": format!("task {i}: fix the failing test in src/lib.rs")}]}),
            ];
        } else {
            let id = format!("toolu_{}", i - 1);
            messages.push(json!({"role": "assistant", "content": [{"type": "tool_use", "id": id, "name": "Read", "input": {"file_path": "src/lib.rs"}}]}));
            messages.push(json!({"role": "user", "content": [{"type": "tool_result", "tool_use_id": id, "content": "fn main() { println!(\"hello\"); } // 120 bytes of file content here, padded out a little"}]}));
        }
        let body = json!({
            "model": "claude-sonnet-4-5",
            "system": [{"type": "text", "text": "You are Claude Code, Anthropic's official CLI for Claude.", "cache_control": {"type": "ephemeral"}}],
            "tools": [{"name": "Read", "description": "Read a file", "input_schema": {"type": "object"}, "cache_control": {"type": "ephemeral"}}],
            "messages": messages,
        });
        let mut f = Flow::new(
            Direction::Reverse,
            "POST",
            "http://127.0.0.1/v1/messages",
            "127.0.0.1",
            "/v1/messages",
        );
        f.start_time = t0 + chrono::Duration::seconds(i as i64 * 3);
        f.end_time = Some(f.start_time + chrono::Duration::seconds(2));
        f.status_code = Some(200);
        f.request_body = serde_json::to_vec(&body)?.into();
        flows.push(f);
        analyses.push(Analysis {
            model: Some("claude-sonnet-4-5".into()),
            session_id: Some("bench".into()),
            usage: Usage {
                input: Some(10),
                output: Some(40),
                cache_read: Some(if i % COMPACT_EVERY == 0 { 0 } else { 4000 }),
                cache_creation: Some(if i % COMPACT_EVERY == 0 { 4000 } else { 200 }),
                ..Usage::default()
            },
            tool_calls: vec![ToolCall {
                id: format!("toolu_{i}"),
                name: "Read".into(),
                input: json!({"file_path": "src/lib.rs"}),
            }],
            tool_results: (i % COMPACT_EVERY != 0)
                .then(|| ToolResultRef {
                    tool_use_id: format!("toolu_{}", i - 1),
                    is_error: false,
                })
                .into_iter()
                .collect(),
            ..Analysis::default()
        });
    }
    let bytes: usize = flows.iter().map(|f| f.request_body.len()).sum();
    let ex: Vec<Exchange<'_>> = flows
        .iter()
        .zip(&analyses)
        .map(|(flow, analysis)| Exchange { flow, analysis })
        .collect();
    println!("== sessions: build the model of one session of {REQUESTS} requests ({} MB of request bodies) ==", bytes / 1_000_000);
    let mut best = f64::MAX;
    for _ in 0..3 {
        let start = Instant::now();
        let s = session::build("bench", &ex, &prices);
        let ms = start.elapsed().as_secs_f64() * 1000.0;
        best = best.min(ms);
        std::hint::black_box(s);
    }
    println!("session build ({REQUESTS} requests, bodies parsed): {best:.1} ms (target ≤ 100 ms)");
    Ok(())
}
