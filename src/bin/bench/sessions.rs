//! Session benchmarks. (a) `llm::session::build` over one session of 10,000
//! Claude Code shaped requests (system + tools with cache breakpoints, a
//! message list growing by two per turn, compacted every 50 turns, tool calls
//! paired with their results); target ≤ 100 ms. (b) The TUI's Sessions view
//! with 100,000 such flows held (100 sessions of 1,000 requests), drawn into
//! a 200x50 TestBackend: the first build of every model, a frame of the
//! sessions table, a frame of an open session while its turns scroll, and a
//! frame while flows of the open session keep completing; target ≤ 10 ms a
//! frame.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use ccproxy::flow::{Direction, Flow, FlowEvent, TrafficType};
use ccproxy::llm::session::{self, Exchange};
use ccproxy::llm::{Analysis, Api, PriceTable, ToolCall, ToolResultRef, Usage};
use ccproxy::tui::app::{Action, App};
use chrono::{DateTime, Utc};
use ratatui::backend::TestBackend;
use ratatui::Terminal;
use serde_json::json;

use super::tui::{ev, frame_times, ms, prepare, report, rss_mb};

const REQUESTS: usize = 10_000;
const COMPACT_EVERY: usize = 50;
const VIEW_FLOWS: usize = 100_000;
const VIEW_PER_SESSION: usize = 1_000;
/// A view session compacts more often (a list of 100,000 bodies of 50
/// messages would be a 2 GB fixture; the list keeps 64 MB of bodies anyway).
const VIEW_COMPACT_EVERY: usize = 20;
const FRAME_TARGET_MS: f64 = 10.0;

pub async fn run() -> anyhow::Result<()> {
    build_one()?;
    view()
}

fn build_one() -> anyhow::Result<()> {
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
    println!("session build ({REQUESTS} requests, bodies scanned): {best:.1} ms (target ≤ 100 ms)");
    Ok(())
}

fn view_flow(i: usize, t0: DateTime<Utc>, messages: &[serde_json::Value]) -> anyhow::Result<Flow> {
    let session = i / VIEW_PER_SESSION;
    let turn = i % VIEW_PER_SESSION;
    let body = json!({
        "model": "claude-sonnet-4-5", "max_tokens": 32000, "stream": true,
        "system": [{"type": "text", "text": "You are Claude Code, Anthropic's official CLI for Claude.", "cache_control": {"type": "ephemeral"}}],
        "tools": [{"name": "Read", "description": "Read a file", "input_schema": {"type": "object"}, "cache_control": {"type": "ephemeral"}}],
        "messages": messages,
    });
    let mut f = Flow::new(
        Direction::Reverse,
        "POST",
        "https://api.anthropic.com/v1/messages",
        "api.anthropic.com",
        "/v1/messages",
    );
    f.traffic_type = TrafficType::Llm;
    f.start_time = t0 + chrono::Duration::milliseconds(i as i64 * 3_000);
    f.end_time = Some(f.start_time + chrono::Duration::milliseconds(2_000));
    f.duration_ms = Some(2_000.0);
    let failed = turn % 97 == 96;
    f.status_code = Some(if failed { 529 } else { 200 });
    f.request_content_type = Some("application/json".into());
    f.request_body = serde_json::to_vec(&body)?.into();
    f.request_body_size = f.request_body.len() as u64;
    f.response_content_type = Some("text/event-stream".into());
    f.response_body = Bytes::from(format!(
        "event: content_block_delta\ndata: {{\"type\":\"content_block_delta\",\"index\":0,\"delta\":{{\"type\":\"text_delta\",\"text\":\"Reading the file for step {turn}.\"}}}}\n\n"
    ));
    f.response_body_size = f.response_body.len() as u64;
    let first = turn % VIEW_COMPACT_EVERY == 0;
    let mut a = Analysis {
        api: Api::AnthropicMessages,
        provider: "anthropic".into(),
        model: Some("claude-sonnet-4-5".into()),
        session_id: Some(format!("bench-{session:03}")),
        agent: Some(ccproxy::llm::Agent {
            name: "claude-code".into(),
            version: Some("1.0.99".into()),
        }),
        usage: if failed {
            Usage::default()
        } else {
            Usage {
                input: Some(10),
                output: Some(40),
                cache_read: Some(if first { 0 } else { 4_000 }),
                cache_creation: Some(if first { 4_000 } else { 200 }),
                ..Usage::default()
            }
        },
        cost_usd: (!failed).then_some(0.002),
        tool_calls: vec![ToolCall {
            id: format!("toolu_{i}"),
            name: "Read".into(),
            input: json!({"file_path": "src/lib.rs"}),
        }],
        tool_results: (!first)
            .then(|| ToolResultRef {
                tool_use_id: format!("toolu_{}", i - 1),
                is_error: false,
            })
            .into_iter()
            .collect(),
        ..Analysis::default()
    };
    a.ratelimit.insert(
        "anthropic-ratelimit-requests-remaining".into(),
        (50 - turn % 50).to_string(),
    );
    a.ratelimit
        .insert("anthropic-ratelimit-requests-limit".into(), "50".into());
    f.llm = Some(Arc::new(a));
    Ok(f)
}

/// The messages of turn `turn` given those of the turn before.
fn next_messages(messages: &mut Vec<serde_json::Value>, i: usize) {
    let turn = i % VIEW_PER_SESSION;
    if turn % VIEW_COMPACT_EVERY == 0 {
        *messages = vec![
            json!({"role": "user", "content": [{"type": "text", "text": format!("task {i}: fix the failing test in src/lib.rs")}]}),
        ];
    } else {
        let id = format!("toolu_{}", i - 1);
        messages.push(json!({"role": "assistant", "content": [{"type": "tool_use", "id": id, "name": "Read", "input": {"file_path": "src/lib.rs"}}]}));
        messages.push(json!({"role": "user", "content": [{"type": "tool_result", "tool_use_id": id, "content": "fn main() { println!(\"hello\"); }"}]}));
    }
}

fn view() -> anyhow::Result<()> {
    println!(
        "== sessions view: {VIEW_FLOWS} flows in {} sessions of {VIEW_PER_SESSION}, TestBackend 200x50 ==",
        VIEW_FLOWS / VIEW_PER_SESSION
    );
    let t0 = Utc::now() - chrono::Duration::days(4);
    let mut app = App::new("bench", false, Utc::now());
    let mut messages = Vec::new();
    let t = Instant::now();
    for i in 0..VIEW_FLOWS {
        next_messages(&mut messages, i);
        let f = view_flow(i, t0, &messages)?;
        app.update(ev(FlowEvent::Completed { flow: Arc::new(f) }));
    }
    println!(
        "load      {VIEW_FLOWS} flows in {:.0} ms · RSS {:.0} MB (the list keeps 64 MB of bodies)",
        ms(t.elapsed()),
        rss_mb()
    );
    let mut term = Terminal::new(TestBackend::new(200, 50))?;
    let t = Instant::now();
    app.update(Action::OpenSessions);
    println!(
        "build     every session model, on opening the view: {:.0} ms (once; then only sessions whose flows changed)",
        ms(t.elapsed())
    );
    let list = frame_times(&mut term, &mut app, 200, |a| a.update(Action::Down))?;
    report(
        "frame     sessions table (moving down)",
        &list,
        FRAME_TARGET_MS,
    );
    app.update(Action::Top);
    let t = Instant::now();
    app.update(Action::Open);
    prepare(&term, &mut app)?;
    println!(
        "open      the newest session ({VIEW_PER_SESSION} requests): {:.1} ms",
        ms(t.elapsed())
    );
    let turns = frame_times(&mut term, &mut app, 200, |a| a.update(Action::Up))?;
    report(
        "frame     open session, turns scrolling up",
        &turns,
        FRAME_TARGET_MS,
    );
    // The open session grows. A refresh after one of its flows completed
    // regroups the 100,000 flows and rebuilds that 1,000-request session.
    let mut next = VIEW_FLOWS;
    let mut grow = |a: &mut App| {
        let i = next - VIEW_PER_SESSION; // in the newest session
        next += 1;
        let mut m = Vec::new();
        next_messages(&mut m, i);
        if let Ok(mut f) = view_flow(i, t0, &m) {
            f.id = uuid::Uuid::now_v7();
            f.start_time = t0 + chrono::Duration::milliseconds(next as i64 * 3_000);
            f.end_time = Some(f.start_time + chrono::Duration::milliseconds(500));
            a.update(ev(FlowEvent::Completed { flow: Arc::new(f) }));
        }
    };
    let mut refresh = Vec::new();
    for _ in 0..20 {
        grow(&mut app);
        let t = Instant::now();
        app.sessions.refresh(&app.flows);
        refresh.push(ms(t.elapsed()));
    }
    report(
        "refresh   after one flow of the open session completes",
        &refresh,
        FRAME_TARGET_MS,
    );
    // Frames at the loop's 30 fps while a flow of the open session completes
    // every 100 ms for 3 s: the paced refresh lands in some frames.
    let mut live = Vec::new();
    let (mut arrive, mut prep, mut draw) = (Vec::new(), Vec::new(), Vec::new());
    let frame = std::time::Duration::from_millis(33);
    let start = Instant::now();
    let mut due = start;
    while start.elapsed() < std::time::Duration::from_secs(3) {
        let tick = Instant::now();
        if tick >= due {
            grow(&mut app);
            due += std::time::Duration::from_millis(100);
            arrive.push(ms(tick.elapsed()));
        }
        let t = Instant::now();
        prepare(&term, &mut app)?;
        prep.push(ms(t.elapsed()));
        let t = Instant::now();
        term.draw(|f| ccproxy::tui::ui::draw(f, &app))?;
        draw.push(ms(t.elapsed()));
        live.push(ms(tick.elapsed()));
        if let Some(rest) = frame.checked_sub(tick.elapsed()) {
            std::thread::sleep(rest);
        }
    }
    report(
        &format!(
            "frame     open session, 10 of its flows/s completing ({} frames)",
            live.len()
        ),
        &live,
        FRAME_TARGET_MS,
    );
    for (name, v) in [
        (
            "  of which a completed flow arriving (App::update)",
            &arrive,
        ),
        ("  of which the paced refresh (prepare)", &prep),
        ("  of which drawing", &draw),
    ] {
        report(name, v, FRAME_TARGET_MS);
    }
    println!("memory    RSS {:.0} MB at the end", rss_mb());
    Ok(())
}
