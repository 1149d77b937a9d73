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
