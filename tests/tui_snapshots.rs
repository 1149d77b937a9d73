//! The TUI drawn into ratatui's TestBackend from fixture flows, driven only by
//! Actions, checked with insta snapshots (`tests/snapshots/`). Fixture times
//! are fixed and the clock is only advanced by `Action::Tick`, so the screens
//! are deterministic without filters.

use std::sync::Arc;

use bytes::Bytes;
use ccproxy::engine::{EngineStatus, Feed};
use ccproxy::flow::{Direction, ErrorKind, Flow, FlowEvent, HubSnapshot, TrafficType};
use ccproxy::store::{StorageState, StoreStats};
use ccproxy::tui::app::{Action, App};
use ccproxy::tui::ui;
use chrono::{DateTime, Duration, TimeZone, Utc};
use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::backend::TestBackend;
use ratatui::layout::Rect;
use ratatui::Terminal;
use uuid::Uuid;

const ANTHROPIC_SSE: &str = concat!(
    "event: message_start\n",
    "data: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"model\":\"claude-sonnet-4-5\",\"usage\":{\"input_tokens\":12,\"cache_read_input_tokens\":88000,\"cache_creation_input_tokens\":300,\"output_tokens\":1}}}\n\n",
    "event: content_block_start\n",
    "data: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"thinking\",\"thinking\":\"\"}}\n\n",
    "event: content_block_delta\n",
    "data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"thinking_delta\",\"thinking\":\"The user wants the weather in Paris.\"}}\n\n",
    "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n",
    "event: content_block_start\n",
    "data: {\"type\":\"content_block_start\",\"index\":1,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n",
    "event: content_block_delta\n",
    "data: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"text_delta\",\"text\":\"Let me check \"}}\n\n",
    "event: content_block_delta\n",
    "data: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"text_delta\",\"text\":\"the weather.\"}}\n\n",
    "event: content_block_start\n",
    "data: {\"type\":\"content_block_start\",\"index\":2,\"content_block\":{\"type\":\"tool_use\",\"id\":\"toolu_01\",\"name\":\"get_weather\",\"input\":{}}}\n\n",
    "event: content_block_delta\n",
    "data: {\"type\":\"content_block_delta\",\"index\":2,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"{\\\"city\\\": \"}}\n\n",
    "event: content_block_delta\n",
    "data: {\"type\":\"content_block_delta\",\"index\":2,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"\\\"Paris\\\"}\"}}\n\n",
    "event: message_delta\n",
    "data: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"tool_use\"},\"usage\":{\"output_tokens\":42}}\n\n",
    "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n",
);

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 4, 10, 20, 30)
        .single()
        .expect("time")
}

fn base(n: u128, method: &str, url: &str) -> Flow {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let host = authority.split(':').next().unwrap_or("").to_string();
    let path = path.to_string();
    let mut f = Flow::new(Direction::Forward, method, url, &host, &path);
    f.id = Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0000_0000 + n);
    f.start_time = t0() + Duration::milliseconds(1500 * n as i64);
    f.is_https = url.starts_with("https");
    f.client_ip = Some("127.0.0.1".into());
    f
}

fn complete(mut f: Flow, status: u16, ms: f64) -> Flow {
    f.status_code = Some(status);
    f.ttfb_ms = Some(ms / 3.0);
    f.duration_ms = Some(ms);
    f.end_time = Some(f.start_time + Duration::milliseconds(ms as i64));
    f.server_ip = Some("10.0.0.7".into());
    f.server_port = Some(443);
    f
}

fn llm_flow() -> Flow {
    let mut f = base(1, "POST", "https://api.anthropic.com/v1/messages?beta=true");
    f.traffic_type = TrafficType::Llm;
    f.request_headers = vec![
        ("content-type".into(), "application/json".into()),
        ("x-api-key".into(), "sk-ant-…wxyz".into()),
        ("anthropic-version".into(), "2023-06-01".into()),
    ];
    f.request_content_type = Some("application/json".into());
    f.request_body = Bytes::from_static(
        br#"{"model":"claude-sonnet-4-5","max_tokens":1024,"stream":true,"messages":[{"role":"user","content":"What is the weather in Paris?"}],"tools":[{"name":"get_weather","input_schema":{"type":"object","properties":{"city":{"type":"string"}}}}],"metadata":{"user_id":null,"temperature":0.7,"tags":[]}}"#,
    );
    f.request_body_size = f.request_body.len() as u64;
    f.response_headers = vec![
        ("content-type".into(), "text/event-stream".into()),
        ("request-id".into(), "req_011".into()),
    ];
    f.response_content_type = Some("text/event-stream".into());
    f.response_body = Bytes::from_static(ANTHROPIC_SSE.as_bytes());
    f.response_body_size = f.response_body.len() as u64;
    f.session_id = Some("sess-42".into());
    complete(f, 200, 1830.0)
}

fn fixtures() -> Vec<Flow> {
    let mut web = base(2, "GET", "http://example.com/index.html");
    web.traffic_type = TrafficType::Web;
    web.response_headers = vec![("content-type".into(), "text/html".into())];
    web.response_body = Bytes::from_static(b"<html><body>hello</body></html>\n");
    web.response_body_size = 31;
    let web = complete(web, 200, 12.0);

    let mut mcp = base(3, "POST", "http://localhost:3000/mcp");
    mcp.traffic_type = TrafficType::Mcp;
    mcp.request_content_type = Some("application/json".into());
    mcp.request_body = Bytes::from_static(br#"{"jsonrpc":"2.0","method":"tools/list","id":1}"#);
    let mcp = complete(mcp, 404, 3.0);

    let mut img = base(4, "GET", "https://cdn.example.com/logo.png");
    img.traffic_type = TrafficType::Web;
    img.response_headers = vec![("content-type".into(), "image/png".into())];
    img.response_content_type = Some("image/png".into());
    img.response_body = Bytes::from_static(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x10\x00\x00\x00\x10\x08\x06\x00\x00\x00\x1f\xf3\xffa");
    img.response_body_size = 4096;
    let img = complete(img, 200, 45.0);

    let mut failed = base(5, "GET", "https://down.example.org/api");
    failed.traffic_type = TrafficType::Other;
    failed.error_type = Some(ErrorKind::Connect);
    failed.error_message = Some("connection refused (os error 111)".into());
    failed.status_code = Some(502);
    failed.duration_ms = Some(1.0);
    failed.end_time = Some(failed.start_time);

    let mut evil = base(6, "GET", "http://evil.test/\x1b[2Jpath");
    evil.traffic_type = TrafficType::Web;
    evil.response_headers = vec![("x-evil".into(), "\x1b]52;c;cHduZWQ=\x07bell".into())];
    evil.response_body =
        Bytes::from_static(b"title\x1b[31m red \x1b[0m\r\nline two\x07\x1b]0;pwned\x07\n");
    evil.response_body_size = evil.response_body.len() as u64;
    let evil = complete(evil, 200, 8.0);

    let pending = base(7, "POST", "https://api.openai.com/v1/chat/completions");
    let mut pending = pending;
    pending.traffic_type = TrafficType::Llm;

    vec![llm_flow(), web, mcp, img, failed, evil, pending]
}

fn status() -> EngineStatus {
    EngineStatus {
        schema: 1,
        pid: 4242,
        mode: "dual-direct".into(),
        started_at: t0(),
        forward: Some("127.0.0.1:8081".into()),
        reverse: Some("127.0.0.1:4000".into()),
        gateway: None,
        storage: StoreStats {
            state: StorageState::Connected,
            database: Some("postgres://localhost/ccproxy".into()),
            source: "managed".into(),
            written: 6,
            queued: 0,
            spooled: 0,
            spool_bytes: 0,
            replayed: 0,
            dropped: 0,
            last_error: None,
            ..StoreStats::default()
        },
        flows: HubSnapshot::default(),
        otel: None,
    }
}

fn event(ev: FlowEvent) -> Action {
    Action::Feed(Feed::Event(Arc::new(ev)))
}

fn app_with_fixtures() -> App {
    let mut app = App::new("attached", false, t0());
    app.update(Action::Feed(Feed::Status(Box::new(status()))));
    for f in fixtures() {
        let done = f.is_complete();
        let f = Arc::new(f);
        app.update(event(FlowEvent::Started {
            flow: Arc::clone(&f),
        }));
        if done {
            app.update(event(FlowEvent::Completed { flow: f }));
        }
    }
    app.update(Action::Feed(Feed::Lagged(3)));
    app
}

fn draw(app: &mut App) -> String {
    let mut terminal = Terminal::new(TestBackend::new(120, 30)).expect("terminal");
    app.prepare(ui::viewport(Rect::new(0, 0, 120, 30), app));
    terminal.draw(|f| ui::draw(f, app)).expect("draw");
    terminal.backend().to_string()
}

fn key(c: char) -> KeyEvent {
    KeyEvent::new(KeyCode::Char(c), KeyModifiers::NONE)
}

fn type_filter(app: &mut App, text: &str) {
    app.update(Action::StartFilter);
    for c in text.chars() {
        app.update(Action::FilterKey(key(c).into()));
    }
}

fn select(app: &mut App, row: usize) {
    app.update(Action::ToggleFollow);
    app.update(Action::Top);
    for _ in 0..row {
        app.update(Action::Down);
    }
}

#[test]
fn list() {
    let mut app = app_with_fixtures();
    let screen = draw(&mut app);
    assert!(!screen.contains('\u{1b}'), "raw escape reached the screen");
    insta::assert_snapshot!(screen);
}

#[test]
fn request_tab_json() {
    let mut app = app_with_fixtures();
    select(&mut app, 0);
    app.update(Action::Open);
    app.update(Action::PrevTab);
    insta::assert_snapshot!(draw(&mut app));
}

#[test]
fn response_tab_sse_reassembled_anthropic() {
    let mut app = app_with_fixtures();
    select(&mut app, 0);
    app.update(Action::Open);
    insta::assert_snapshot!(draw(&mut app));
}

#[test]
fn timing_tab() {
    let mut app = app_with_fixtures();
    select(&mut app, 0);
    app.update(Action::Open);
    app.update(Action::NextTab);
    insta::assert_snapshot!(draw(&mut app));
}

#[test]
fn timing_tab_of_failed_flow() {
    let mut app = app_with_fixtures();
    select(&mut app, 4);
    app.update(Action::Open);
    app.update(Action::NextTab);
    let screen = draw(&mut app);
    assert!(screen.contains("connect: connection refused"));
    insta::assert_snapshot!(screen);
}

#[test]
fn hex_view() {
    let mut app = app_with_fixtures();
    select(&mut app, 3);
    app.update(Action::Open);
    insta::assert_snapshot!(draw(&mut app));
}

#[test]
fn body_mode_cycles() {
    let mut app = app_with_fixtures();
    select(&mut app, 0);
    app.update(Action::Open);
    app.update(Action::CycleMode); // sse -> text
    let text = draw(&mut app);
    assert!(text.contains("[text]"));
    assert!(text.contains("event: message_start"));
    app.update(Action::CycleMode); // text -> hex
    assert!(draw(&mut app).contains("00000000"));
}

#[test]
fn escape_sequences_are_shown_as_placeholders() {
    let mut app = app_with_fixtures();
    select(&mut app, 5);
    app.update(Action::Open);
    let screen = draw(&mut app);
    assert!(!screen.contains('\u{1b}') && !screen.contains('\u{7}'));
    assert!(screen.contains("␛[31m"));
    insta::assert_snapshot!(screen);
}

#[test]
fn filter_applied() {
    let mut app = app_with_fixtures();
    type_filter(&mut app, "~type llm | ~c 404");
    assert_eq!(app.visible_len(), 3);
    insta::assert_snapshot!(draw(&mut app));
    app.update(Action::FilterSubmit);
    assert_eq!(app.visible_len(), 3);
    app.update(Action::Back);
    assert_eq!(app.visible_len(), 7);
}

#[test]
fn filter_error() {
    let mut app = app_with_fixtures();
    type_filter(&mut app, "~d example & ~q");
    assert!(app.filter_error.is_some());
    // The last valid expression (`~d example`) stays applied.
    assert_eq!(app.visible_len(), 3);
    insta::assert_snapshot!(draw(&mut app));
    app.update(Action::FilterCancel);
    assert_eq!(app.visible_len(), 7);
}

#[test]
fn help_overlay() {
    let mut app = app_with_fixtures();
    app.update(Action::ToggleHelp);
    insta::assert_snapshot!(draw(&mut app));
}

/// On a short terminal the help scrolls (j/k) to its last line, and no further.
#[test]
fn help_overlay_scrolls_on_a_short_terminal() {
    let mut app = app_with_fixtures();
    press(&mut app, KeyCode::Char('?'));
    let top = draw(&mut app);
    assert!(top.contains("more lines"), "{top}");
    assert!(
        !top.contains("~ttft"),
        "the last line is below the screen:\n{top}"
    );
    for _ in 0..200 {
        press(&mut app, KeyCode::Char('j'));
    }
    let bottom = draw(&mut app);
    assert!(bottom.contains("~ttft"), "{bottom}");
    assert!(bottom.contains("0 more lines"), "{bottom}");
    press(&mut app, KeyCode::Char('k'));
    assert!(draw(&mut app).contains("1 more lines"));
    press(&mut app, KeyCode::Esc);
    press(&mut app, KeyCode::Char('?'));
    assert_eq!(draw(&mut app), top, "reopened at the top");
}

#[test]
fn curl_overlay() {
    let mut app = app_with_fixtures();
    select(&mut app, 0);
    app.update(Action::CopyCurl);
    let effects = app.take_effects();
    assert!(
        matches!(&effects[..], [ccproxy::tui::app::Effect::Copy(c)] if c.contains("x-api-key: sk-ant-…wxyz"))
    );
    insta::assert_snapshot!(draw(&mut app));
}

#[test]
fn live_stream_reassembles_while_arriving() {
    let mut app = App::new("attached", false, t0());
    let mut f = llm_flow();
    let full = f.response_body.clone();
    f.response_body = Bytes::new();
    f.end_time = None;
    f.duration_ms = None;
    let f = Arc::new(f);
    app.update(event(FlowEvent::Started {
        flow: Arc::clone(&f),
    }));
    app.update(event(FlowEvent::Responded {
        flow: Arc::clone(&f),
    }));
    app.update(Action::Open);
    let half = full.len() / 2;
    app.update(event(FlowEvent::ResponseChunk {
        id: f.id,
        data: full.slice(..half),
    }));
    let first = draw(&mut app);
    assert!(first.contains("streaming"), "{first}");
    app.update(event(FlowEvent::ResponseChunk {
        id: f.id,
        data: full.slice(half..),
    }));
    let second = draw(&mut app);
    assert!(second.contains("get_weather"), "{second}");
    assert!(second.contains("\"Paris\""), "{second}");
    insta::assert_snapshot!(second);
}

#[test]
fn search_in_body_moves_between_hits() {
    let mut app = app_with_fixtures();
    select(&mut app, 0);
    app.update(Action::Open);
    app.update(Action::PrevTab);
    app.update(Action::StartSearch);
    for c in "type".chars() {
        app.update(Action::SearchKey(key(c).into()));
    }
    app.update(Action::SearchSubmit);
    let n = app.detail.hits.len();
    assert!(n >= 1, "hits {n}");
    app.update(Action::NextHit);
    assert_eq!(app.detail.hit, 1 % n);
    app.update(Action::PrevHit);
    assert_eq!(app.detail.hit, 0);
}

#[test]
fn clear_empties_the_list_and_export_uses_the_filter() {
    let mut app = app_with_fixtures();
    type_filter(&mut app, "~type web");
    app.update(Action::FilterSubmit);
    app.update(Action::ExportHar);
    let effects = app.take_effects();
    match &effects[..] {
        [ccproxy::tui::app::Effect::ExportHar(flows)] => assert_eq!(flows.len(), 3),
        other => panic!("unexpected {other:?}"),
    }
    app.update(Action::Clear);
    assert!(app.is_empty());
    assert!(draw(&mut app).contains("no flows yet"));
}

#[test]
fn history_prepends_older_flows_and_keeps_selection() {
    let mut app = App::new("attached", true, t0());
    assert!(matches!(
        &app.take_effects()[..],
        [ccproxy::tui::app::Effect::LoadOlder { before: None }]
    ));
    let mut newest: Vec<Flow> = fixtures().into_iter().skip(3).collect();
    newest.reverse();
    app.update(Action::History {
        flows: newest,
        exhausted: false,
    });
    assert_eq!(app.len(), 4);
    select(&mut app, 0);
    let selected = app.selected_entry().map(|e| e.flow.id);
    app.update(Action::Up); // past the top: ask for older
    let effects = app.take_effects();
    assert!(matches!(
        &effects[..],
        [ccproxy::tui::app::Effect::LoadOlder { before: Some(_) }]
    ));
    let mut older: Vec<Flow> = fixtures().into_iter().take(3).collect();
    older.reverse();
    app.update(Action::History {
        flows: older,
        exhausted: true,
    });
    assert_eq!(app.len(), 7);
    assert_eq!(app.selected_entry().map(|e| e.flow.id), selected);
    assert_eq!(
        app.visible_entry(0).map(|e| e.flow.method.as_str()),
        Some("POST")
    );
}

#[test]
fn body_budget_drops_the_oldest_bodies_first() {
    let mut app = App::new("attached", false, t0());
    app.flows.set_budget(1_000);
    for f in fixtures() {
        let f = Arc::new(f);
        app.update(event(FlowEvent::Completed { flow: f }));
    }
    assert!(
        app.flows.body_bytes() <= 1_000,
        "{}",
        app.flows.body_bytes()
    );
    // The oldest (the 1.8 KB LLM exchange) lost its bodies, the newest kept theirs.
    assert!(app
        .visible_entry(0)
        .is_some_and(|e| e.trimmed && e.flow.response_body.is_empty()));
    assert!(app
        .visible_entry(5)
        .is_some_and(|e| !e.trimmed && !e.flow.response_body.is_empty()));
    select(&mut app, 0);
    app.update(Action::Open);
    assert!(draw(&mut app).contains("not kept in memory"));
}

#[test]
fn list_with_llm_columns_and_header_totals() {
    let mut app = app_with_fixtures();
    // 120 columns is below the width that shows them unasked: `t` asks.
    draw(&mut app);
    app.update(Action::ToggleLlmColumns);
    let screen = draw(&mut app);
    assert!(screen.contains("TTFT"), "{screen}");
    insta::assert_snapshot!(screen);
}

#[test]
fn response_tab_summary_shows_the_whole_analysis() {
    let mut f = llm_flow();
    f.response_headers
        .push(("anthropic-ratelimit-requests-remaining".into(), "49".into()));
    f.response_headers
        .push(("anthropic-ratelimit-requests-limit".into(), "50".into()));
    let a = ccproxy::llm::analyze(&f, ccproxy::llm::PriceTable::shared()).expect("llm");
    f.llm = Some(Arc::new(a));
    let mut app = App::new("attached", false, t0());
    app.update(Action::Feed(Feed::Status(Box::new(status()))));
    app.update(event(FlowEvent::Completed { flow: Arc::new(f) }));
    select(&mut app, 0);
    app.update(Action::Open);
    let screen = draw(&mut app);
    for want in [
        "anthropic.messages",
        "cache read 88,000",
        "get_weather",
        "requests 49/50",
    ] {
        assert!(screen.contains(want), "{want}: {screen}");
    }
    insta::assert_snapshot!(screen);
}

// ── Sessions: Claude Code shaped traffic ─────────────────────────────────────
//
// One session of nine requests: the main agent reads a file (tool_use /
// tool_result), hands a search to a subagent through the Task tool (its own
// system prompt and tools), gets a 529 and retries, then its system prompt
// changes (the date) and the cache is written again, and after a pause longer
// than the 5-minute TTL it is written once more. A second, short session runs
// on haiku. Every flow's analysis comes from `ccproxy::llm::analyze`.

const CC_SESSION: &str = "5d1c2f7e-9a3b-4c1d-8e2f-0a1b2c3d4e5f";
const CC_OTHER: &str = "b7e41c09-2d5e-4f6a-9b8c-7d6e5f4a3b2c";

fn at(h: u32, m: u32, s: u32, ms: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 4, h, m, s)
        .single()
        .expect("time")
        + Duration::milliseconds(ms)
}

fn cc_system(date: &str) -> serde_json::Value {
    serde_json::json!([
        {"type": "text", "text": "You are Claude Code, Anthropic's official CLI for Claude.",
         "cache_control": {"type": "ephemeral"}},
        {"type": "text", "text": format!("You are an interactive CLI tool that helps users with software engineering tasks.\n\n<env>\nWorking directory: /home/dev/calc\nIs directory a git repo: Yes\nPlatform: linux\nToday's date: {date}\n</env>\n"),
         "cache_control": {"type": "ephemeral"}}
    ])
}

fn cc_tools(names: &[&str]) -> serde_json::Value {
    let n = names.len();
    names
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let mut t = serde_json::json!({
                "name": name,
                "description": format!("{name} tool"),
                "input_schema": {"type": "object", "properties": {}},
            });
            if i + 1 == n {
                t["cache_control"] = serde_json::json!({"type": "ephemeral"});
            }
            t
        })
        .collect()
}

fn cc_user(text: &str) -> serde_json::Value {
    serde_json::json!({"role": "user", "content": [{"type": "text", "text": text}]})
}

fn cc_call(text: &str, id: &str, name: &str, input: &serde_json::Value) -> serde_json::Value {
    serde_json::json!({"role": "assistant", "content": [
        {"type": "text", "text": text},
        {"type": "tool_use", "id": id, "name": name, "input": input}
    ]})
}

fn cc_result(id: &str, content: &str) -> serde_json::Value {
    serde_json::json!({"role": "user", "content": [
        {"type": "tool_result", "tool_use_id": id, "content": content}
    ]})
}

/// What the model answers: text, maybe a tool call, and the usage.
struct Reply<'a> {
    text: &'a str,
    tool: Option<(&'a str, &'a str, serde_json::Value)>,
    read: u64,
    write: u64,
    output: u64,
}

/// The reply as Anthropic streams it.
fn cc_sse(model: &str, r: &Reply<'_>) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let mut ev = |name: &str, data: serde_json::Value| {
        let _ = write!(out, "event: {name}\ndata: {data}\n\n");
    };
    ev(
        "message_start",
        serde_json::json!({"type": "message_start", "message": {
        "id": "msg_01", "type": "message", "role": "assistant", "model": model, "content": [],
        "usage": {"input_tokens": 4, "cache_read_input_tokens": r.read,
                  "cache_creation_input_tokens": r.write, "output_tokens": 1}}}),
    );
    ev(
        "content_block_start",
        serde_json::json!({"type": "content_block_start", "index": 0,
        "content_block": {"type": "text", "text": ""}}),
    );
    ev(
        "content_block_delta",
        serde_json::json!({"type": "content_block_delta", "index": 0,
        "delta": {"type": "text_delta", "text": r.text}}),
    );
    ev(
        "content_block_stop",
        serde_json::json!({"type": "content_block_stop", "index": 0}),
    );
    if let Some((id, name, input)) = &r.tool {
        ev(
            "content_block_start",
            serde_json::json!({"type": "content_block_start", "index": 1,
            "content_block": {"type": "tool_use", "id": id, "name": name, "input": {}}}),
        );
        ev(
            "content_block_delta",
            serde_json::json!({"type": "content_block_delta", "index": 1,
            "delta": {"type": "input_json_delta", "partial_json": input.to_string()}}),
        );
        ev(
            "content_block_stop",
            serde_json::json!({"type": "content_block_stop", "index": 1}),
        );
    }
    let stop = if r.tool.is_some() {
        "tool_use"
    } else {
        "end_turn"
    };
    ev(
        "message_delta",
        serde_json::json!({"type": "message_delta",
        "delta": {"stop_reason": stop}, "usage": {"output_tokens": r.output}}),
    );
    ev("message_stop", serde_json::json!({"type": "message_stop"}));
    out
}

struct CcRequest<'a> {
    n: u128,
    session: &'a str,
    start: DateTime<Utc>,
    ms: i64,
    model: &'a str,
    system: serde_json::Value,
    tools: serde_json::Value,
    messages: Vec<serde_json::Value>,
    /// `None`: the API answered 529 overloaded.
    reply: Option<Reply<'a>>,
    /// Requests left in the rate-limit window after this one.
    left: u64,
}

fn cc_flow(r: &CcRequest<'_>) -> Flow {
    let mut f = base(
        r.n,
        "POST",
        "https://api.anthropic.com/v1/messages?beta=true",
    );
    f.start_time = r.start;
    f.traffic_type = TrafficType::Llm;
    f.request_headers = vec![
        ("content-type".into(), "application/json".into()),
        (
            "user-agent".into(),
            "claude-cli/1.0.99 (external, cli)".into(),
        ),
        ("x-api-key".into(), "sk-ant-…wxyz".into()),
        ("anthropic-version".into(), "2023-06-01".into()),
        ("x-claude-code-session-id".into(), r.session.into()),
    ];
    f.request_content_type = Some("application/json".into());
    let body = serde_json::json!({
        "model": r.model, "max_tokens": 32000, "stream": true,
        "system": r.system, "tools": r.tools, "messages": r.messages,
        "metadata": {"user_id": format!("user_abc_account_def_session_{}", r.session)},
    });
    f.request_body = Bytes::from(serde_json::to_vec(&body).expect("json"));
    f.request_body_size = f.request_body.len() as u64;
    let status = if let Some(reply) = &r.reply {
        f.response_content_type = Some("text/event-stream".into());
        f.response_headers = vec![
            ("content-type".into(), "text/event-stream".into()),
            ("anthropic-ratelimit-requests-limit".into(), "50".into()),
            (
                "anthropic-ratelimit-requests-remaining".into(),
                r.left.to_string(),
            ),
            (
                "anthropic-ratelimit-requests-reset".into(),
                "2026-03-04T10:29:00Z".into(),
            ),
            (
                "anthropic-ratelimit-input-tokens-limit".into(),
                "80000".into(),
            ),
            (
                "anthropic-ratelimit-input-tokens-remaining".into(),
                (80_000 - (50 - r.left) * 7_000).to_string(),
            ),
        ];
        f.response_body = Bytes::from(cc_sse(&format!("{}-20250929", r.model), reply));
        200
    } else {
        f.response_content_type = Some("application/json".into());
        f.response_headers = vec![("content-type".into(), "application/json".into())];
        f.response_body = Bytes::from_static(
            br#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#,
        );
        529
    };
    f.response_body_size = f.response_body.len() as u64;
    let mut f = complete(f, status, r.ms as f64);
    let a = ccproxy::llm::analyze(&f, ccproxy::llm::PriceTable::shared()).expect("an LLM exchange");
    f.llm = Some(Arc::new(a));
    f
}

fn claude_code_flows() -> Vec<Flow> {
    let main_tools = || cc_tools(&["Bash", "Edit", "Grep", "Read", "Task"]);
    let sub_system = serde_json::json!([{"type": "text",
        "text": "You are an agent for Claude Code, Anthropic's official CLI for Claude. Given the user's message, use the tools available to complete the task.",
        "cache_control": {"type": "ephemeral"}}]);
    let task_prompt =
        "Find every caller of add() in this repository and report file:line for each.";
    let read_out = "     1\tpub fn add(a: i32, b: i32) -> i32 {\n     2\t    a - b\n     3\t}\n";
    let m1 = vec![cc_user("The tests in src/lib.rs fail. Fix them.")];
    let mut m2 = m1.clone();
    m2.push(cc_call(
        "I'll read the file first.",
        "toolu_01",
        "Read",
        &serde_json::json!({"file_path": "/home/dev/calc/src/lib.rs"}),
    ));
    m2.push(cc_result("toolu_01", read_out));
    let mut m5 = m2.clone();
    m5.push(cc_call("add() subtracts. Let me find its callers before changing it.", "toolu_02", "Task",
        &serde_json::json!({"description": "Find callers of add", "prompt": task_prompt, "subagent_type": "general-purpose"})));
    m5.push(cc_result("toolu_02", "add() is called once: src/main.rs:3"));
    let mut m7 = m5.clone();
    m7.push(cc_call("Fixing the operator.", "toolu_03", "Edit",
        &serde_json::json!({"file_path": "/home/dev/calc/src/lib.rs", "old_string": "a - b", "new_string": "a + b"})));
    m7.push(cc_result(
        "toolu_03",
        "The file /home/dev/calc/src/lib.rs has been updated.",
    ));
    let mut m8 = m7.clone();
    m8.push(serde_json::json!({"role": "assistant", "content": [{"type": "text", "text": "Fixed: add() now adds. Shall I run the tests?"}]}));
    m8.push(cc_user("yes, run them"));
    let mut m9 = m8.clone();
    m9.push(cc_call(
        "Running the tests.",
        "toolu_04",
        "Bash",
        &serde_json::json!({"command": "cargo test"}),
    ));
    m9.push(cc_result("toolu_04", "test result: ok. 3 passed; 0 failed"));
    let s1 = [
        (
            CC_SESSION,
            at(10, 20, 30, 0),
            2_100,
            cc_system("2026-03-04"),
            main_tools(),
            m1,
            Some(Reply {
                text: "I'll read the file first.",
                tool: Some((
                    "toolu_01",
                    "Read",
                    serde_json::json!({"file_path": "/home/dev/calc/src/lib.rs"}),
                )),
                read: 0,
                write: 8_200,
                output: 61,
            }),
        ),
        (
            CC_SESSION,
            at(10, 20, 35, 400),
            2_600,
            cc_system("2026-03-04"),
            main_tools(),
            m2.clone(),
            Some(Reply {
                text: "add() subtracts. Let me find its callers before changing it.",
                tool: Some((
                    "toolu_02",
                    "Task",
                    serde_json::json!({"description": "Find callers of add", "prompt": task_prompt, "subagent_type": "general-purpose"}),
                )),
                read: 8_200,
                write: 350,
                output: 118,
            }),
        ),
        (
            CC_SESSION,
            at(10, 20, 38, 100),
            1_900,
            sub_system.clone(),
            cc_tools(&["Grep", "Read"]),
            vec![cc_user(task_prompt)],
            Some(Reply {
                text: "Searching.",
                tool: Some((
                    "toolu_s1",
                    "Grep",
                    serde_json::json!({"pattern": "add\\(", "path": "/home/dev/calc"}),
                )),
                read: 0,
                write: 3_100,
                output: 40,
            }),
        ),
        (
            CC_SESSION,
            at(10, 20, 41, 200),
            1_500,
            sub_system,
            cc_tools(&["Grep", "Read"]),
            vec![
                cc_user(task_prompt),
                cc_call(
                    "Searching.",
                    "toolu_s1",
                    "Grep",
                    &serde_json::json!({"pattern": "add\\(", "path": "/home/dev/calc"}),
                ),
                cc_result("toolu_s1", "src/main.rs:3:    println!(\"{}\", add(1, 2));"),
            ],
            Some(Reply {
                text: "add() is called once: src/main.rs:3",
                tool: None,
                read: 3_100,
                write: 120,
                output: 22,
            }),
        ),
        (
            CC_SESSION,
            at(10, 20, 43, 600),
            900,
            cc_system("2026-03-04"),
            main_tools(),
            m5.clone(),
            None,
        ),
        (
            CC_SESSION,
            at(10, 20, 46, 0),
            2_300,
            cc_system("2026-03-04"),
            main_tools(),
            m5,
            Some(Reply {
                text: "Fixing the operator.",
                tool: Some((
                    "toolu_03",
                    "Edit",
                    serde_json::json!({"file_path": "/home/dev/calc/src/lib.rs", "old_string": "a - b", "new_string": "a + b"}),
                )),
                read: 8_550,
                write: 180,
                output: 95,
            }),
        ),
        (
            CC_SESSION,
            at(10, 20, 51, 300),
            1_800,
            cc_system("2026-03-05"),
            main_tools(),
            m7,
            Some(Reply {
                text: "Fixed: add() now adds. Shall I run the tests?",
                tool: None,
                read: 0,
                write: 9_010,
                output: 30,
            }),
        ),
        (
            CC_SESSION,
            at(10, 28, 10, 0),
            2_000,
            cc_system("2026-03-05"),
            main_tools(),
            m8,
            Some(Reply {
                text: "Running the tests.",
                tool: Some((
                    "toolu_04",
                    "Bash",
                    serde_json::json!({"command": "cargo test"}),
                )),
                read: 0,
                write: 9_230,
                output: 44,
            }),
        ),
        (
            CC_SESSION,
            at(10, 28, 19, 500),
            1_700,
            cc_system("2026-03-05"),
            main_tools(),
            m9,
            Some(Reply {
                text: "All 3 tests pass.",
                tool: None,
                read: 9_230,
                write: 160,
                output: 12,
            }),
        ),
    ];
    let mut flows = Vec::new();
    let mut left = 49;
    for (i, (session, start, ms, system, tools, messages, reply)) in s1.into_iter().enumerate() {
        flows.push(cc_flow(&CcRequest {
            n: 100 + i as u128,
            session,
            start,
            ms,
            model: "claude-sonnet-4-5",
            system,
            tools,
            messages,
            reply,
            left,
        }));
        left -= 1;
    }
    // The other session: earlier, short, on haiku, no tools.
    let sys = serde_json::json!([{"type": "text", "text": "Summarize this coding conversation in under 50 characters."}]);
    let m = vec![cc_user(
        "Please write a 5-10 word title for the conversation",
    )];
    for (i, (start, reply)) in [
        (
            at(9, 58, 0, 0),
            Reply {
                text: "Fix failing add() test",
                tool: None,
                read: 0,
                write: 0,
                output: 9,
            },
        ),
        (
            at(9, 58, 4, 0),
            Reply {
                text: "Fix failing add() test",
                tool: None,
                read: 0,
                write: 0,
                output: 9,
            },
        ),
    ]
    .into_iter()
    .enumerate()
    {
        flows.push(cc_flow(&CcRequest {
            n: 200 + i as u128,
            session: CC_OTHER,
            start,
            ms: 600,
            model: "claude-haiku-4-5",
            system: sys.clone(),
            tools: serde_json::json!([]),
            messages: m.clone(),
            reply: Some(reply),
            left: 48,
        }));
    }
    flows.sort_by_key(|f| f.start_time);
    flows
}

fn app_with_sessions() -> App {
    let mut app = App::new("attached", false, at(10, 28, 30, 0));
    app.update(Action::Feed(Feed::Status(Box::new(status()))));
    for f in claude_code_flows() {
        app.update(event(FlowEvent::Completed { flow: Arc::new(f) }));
    }
    app
}

fn draw_at(app: &mut App, w: u16, h: u16) -> String {
    let mut terminal = Terminal::new(TestBackend::new(w, h)).expect("terminal");
    app.prepare(ui::viewport(Rect::new(0, 0, w, h), app));
    terminal.draw(|f| ui::draw(f, app)).expect("draw");
    terminal.backend().to_string()
}

/// Press a key as the terminal would send it, through the one bindings table.
fn press(app: &mut App, code: KeyCode) {
    let k = KeyEvent::new(code, KeyModifiers::NONE);
    let action = ccproxy::tui::bindings::action(app, k)
        .unwrap_or_else(|| panic!("{code:?} is not bound in {:?}", app.focus));
    app.update(action);
}

#[test]
fn sessions_list() {
    let mut app = app_with_sessions();
    assert!(draw(&mut app).contains("s sessions"), "the footer offers s");
    press(&mut app, KeyCode::Char('s'));
    assert_eq!(app.focus, ccproxy::tui::app::Focus::Sessions);
    let screen = draw(&mut app);
    for want in [
        "Sessions 2",
        "5d1c2f7e…",
        "b7e41c09…",
        "claude-code 1.0.99",
        "claude-sonnet-4-5",
        "claude-haiku-4-5",
        "Enter open",
    ] {
        assert!(screen.contains(want), "{want}: {screen}");
    }
    // The Claude Code session is the most recent: first, and selected.
    let first = screen
        .lines()
        .position(|l| l.contains("5d1c2f7e…"))
        .expect("row");
    let second = screen
        .lines()
        .position(|l| l.contains("b7e41c09…"))
        .expect("row");
    assert!(first < second, "{screen}");
    insta::assert_snapshot!(screen);
    press(&mut app, KeyCode::Esc);
    assert_eq!(app.focus, ccproxy::tui::app::Focus::List);
}

fn open_claude_code_session() -> App {
    let mut app = app_with_sessions();
    press(&mut app, KeyCode::Char('s'));
    press(&mut app, KeyCode::Enter);
    assert_eq!(app.focus, ccproxy::tui::app::Focus::Session);
    app
}

#[test]
fn session_opened() {
    let mut app = open_claude_code_session();
    // From the newest turn up to the one where the system prompt changed.
    press(&mut app, KeyCode::Char('k'));
    press(&mut app, KeyCode::Char('k'));
    let screen = draw_at(&mut app, 160, 48);
    for want in [
        "Session 5d1c2f7e-9a3b-4c1d-8e2f-0a1b2c3d4e5f",
        "9 requests · 2 conversations",
        "#0 main · 7 req",
        "└ #1 subagent · 2 req",
        "▸ #5",
        "prefix_changed at system · wrote 9,010 tokens · miss $",
        "2026-03-04",
        "2026-03-05",
        "ttl_expired: 7m17s since the previous response > TTL 5m00s",
        "error 529",
        "overloaded_error",
        "← result  toolu_03",
        "→ Edit file_path=/home/dev/calc/src/lib.rs",
        "result in #5 after",
        "assistant Fixed: add() now adds.",
        "user      yes, run them",
        "requests 41/50",
        "input-tokens-remaining",
        "429 ×0 · 529 ×1",
        "Timeline",
        "tokens per turn",
        "Enter diff with the previous request",
    ] {
        assert!(screen.contains(want), "{want}:\n{screen}");
    }
    assert!(!screen.contains('\u{1b}'));
    insta::assert_snapshot!(screen);
}

#[test]
fn session_subagent_conversation() {
    let mut app = open_claude_code_session();
    press(&mut app, KeyCode::Tab);
    let screen = draw_at(&mut app, 160, 48);
    for want in [
        "▸ └ #1 subagent",
        "#1 subagent · 2 requests",
        "opened by toolu_02 in #0 turn #2",
        "user      Find every caller of add()",
        "→ Grep",
        "← result  toolu_s1",
        "assistant add() is called once: src/main.rs:3",
    ] {
        assert!(screen.contains(want), "{want}:\n{screen}");
    }
    insta::assert_snapshot!(screen);
}

#[test]
fn diff_at_the_cache_break() {
    let mut app = open_claude_code_session();
    press(&mut app, KeyCode::Char('k'));
    press(&mut app, KeyCode::Char('k'));
    press(&mut app, KeyCode::Enter);
    assert_eq!(app.focus, ccproxy::tui::app::Focus::Diff);
    let screen = draw_at(&mut app, 160, 48);
    for want in [
        "turn #5: prefix_changed at system",
        "turn #4 10:20:46.000 POST /v1/messages",
        "turn #5 10:20:51.300 POST /v1/messages",
        "change 1/",
    ] {
        assert!(screen.contains(want), "{want}:\n{screen}");
    }
    // The view opens where the two requests part: the date line, both sides.
    let row = screen
        .lines()
        .find(|l| l.contains("2026-03-04"))
        .unwrap_or_else(|| panic!("no date row:\n{screen}"));
    assert!(row.contains("2026-03-05") && row.contains('~'), "{row}");
    insta::assert_snapshot!(screen);
    press(&mut app, KeyCode::Char('n'));
    let next = draw_at(&mut app, 160, 48);
    assert!(next.contains("// messages[5] assistant"), "{next}");
    press(&mut app, KeyCode::Esc);
    assert_eq!(app.focus, ccproxy::tui::app::Focus::Session);
}

#[test]
fn marked_flows_diff_from_the_list() {
    let mut app = app_with_sessions();
    select(&mut app, 4); // the subagent's first request
    press(&mut app, KeyCode::Char(' '));
    select(&mut app, 5); // and its second
    press(&mut app, KeyCode::Char(' '));
    let list = draw(&mut app);
    assert!(list.contains("[2 marked: d diffs]"), "{list}");
    assert_eq!(list.matches('◆').count(), 2, "{list}");
    press(&mut app, KeyCode::Char('d'));
    assert_eq!(app.focus, ccproxy::tui::app::Focus::Diff);
    let screen = draw_at(&mut app, 160, 48);
    assert!(
        screen.contains("10:20:38.100 POST /v1/messages"),
        "{screen}"
    );
    assert!(
        screen.contains("10:20:41.200 POST /v1/messages"),
        "{screen}"
    );
    // Only the messages grew: nothing is removed or changed, lines are added.
    assert!(screen.contains(" + "), "{screen}");
    assert!(
        !screen.contains(" ~ ") && !screen.contains(" - "),
        "{screen}"
    );
    insta::assert_snapshot!(screen);
    press(&mut app, KeyCode::Esc);
    assert_eq!(app.focus, ccproxy::tui::app::Focus::List);
    // Space on a marked flow unmarks it; one mark and another flow
    // selected: d diffs those two.
    press(&mut app, KeyCode::Char(' '));
    assert_eq!(app.marks.len(), 1);
    select(&mut app, 6);
    press(&mut app, KeyCode::Char('d'));
    assert_eq!(app.focus, ccproxy::tui::app::Focus::Diff);
    press(&mut app, KeyCode::Esc);
    // Nothing marked: d says what to do.
    select(&mut app, 4);
    press(&mut app, KeyCode::Char(' '));
    assert!(app.marks.is_empty());
    press(&mut app, KeyCode::Char('d'));
    assert_eq!(app.focus, ccproxy::tui::app::Focus::List);
    assert!(app
        .notice
        .as_deref()
        .is_some_and(|n| n.contains("mark two flows")));
}

#[test]
fn an_open_session_updates_live() {
    let mut app = open_claude_code_session();
    assert!(draw_at(&mut app, 160, 48).contains("9 requests"));
    let mut more = claude_code_flows()
        .into_iter()
        .find(|f| f.start_time == at(10, 28, 19, 500))
        .expect("last");
    more.id = Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0000_0999);
    more.start_time = at(10, 28, 25, 0);
    more.end_time = Some(more.start_time + Duration::milliseconds(900));
    app.update(event(FlowEvent::Completed {
        flow: Arc::new(more),
    }));
    let screen = draw_at(&mut app, 160, 48);
    assert!(screen.contains("10 requests"), "{screen}");
    assert!(
        screen.contains("▸ #8"),
        "the newest turn stays selected: {screen}"
    );
}
