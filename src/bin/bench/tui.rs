//! TUI benchmark: 100,000 flows held by `App`, drawn into ratatui's
//! TestBackend (the same widgets as a terminal, minus the tty write).
//! Figures printed next to their targets: frame ≤ 10 ms, filter ≤ 50 ms,
//! memory ≤ 300 MB; then frames while 1,000 flows/s arrive, and a 20 MB body.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use ccproxy::engine::Feed;
use ccproxy::flow::filter;
use ccproxy::flow::{Direction, Flow, FlowEvent, TrafficType};
use ccproxy::tui::app::{Action, App};
use ccproxy::tui::ui;
use chrono::Utc;
use ratatui::backend::TestBackend;
use ratatui::layout::Rect;
use ratatui::Terminal;

const FLOWS: usize = 100_000;
const FRAME_TARGET_MS: f64 = 10.0;
const FILTER_TARGET_MS: f64 = 50.0;
const MEMORY_TARGET_MB: f64 = 300.0;

pub async fn run() -> anyhow::Result<()> {
    println!("== tui: {FLOWS} flows, TestBackend 160x48 ==");
    let rss0 = rss_mb();
    let mut app = App::new("bench", false, Utc::now());
    let t = Instant::now();
    for i in 0..FLOWS {
        feed_flow(&mut app, i);
    }
    let load = t.elapsed();
    let rss1 = rss_mb();
    println!(
        "load      {FLOWS} flows (Started+Completed) in {:.0} ms ({:.1} µs/flow)",
        ms(load),
        load.as_secs_f64() * 1e6 / FLOWS as f64
    );
    println!(
        "memory    RSS {rss1:.0} MB (flows {:.0} MB, ~1.3 KB of bodies each)   target ≤ {MEMORY_TARGET_MB:.0} MB  {}",
        rss1 - rss0,
        verdict(rss1 <= MEMORY_TARGET_MB)
    );

    let mut term = Terminal::new(TestBackend::new(160, 48))?;
    app.update(Action::ToggleFollow);
    for _ in 0..FLOWS / 2 {
        app.update(Action::Down);
    }
    let list = frame_times(&mut term, &mut app, 200, |_| {})?;
    report("frame     list view (mid-list)", &list, FRAME_TARGET_MS);
    app.update(Action::Open);
    let detail = frame_times(&mut term, &mut app, 200, |a| a.update(Action::Down))?;
    report(
        "frame     detail, SSE body, scrolling",
        &detail,
        FRAME_TARGET_MS,
    );
    app.update(Action::Back);

    for expr in [
        "~d anthropic & ~m POST",
        "!~e & ~c 200 & ~type llm",
        "~b needle-4242",
        "messages | ~h x-request-id",
    ] {
        let f = filter::parse(expr)?;
        let mut times = Vec::new();
        let mut kept = 0;
        for _ in 0..5 {
            let t = Instant::now();
            app.set_filter(f.clone());
            times.push(ms(t.elapsed()));
            kept = app.visible_len();
        }
        report(
            &format!("filter    {expr:<28} ({kept} kept)"),
            &times,
            FILTER_TARGET_MS,
        );
    }
    app.set_filter(filter::Filter::all());

    // 1,000 flows/s for 3 s, drawing at the loop's 30 fps cap.
    let mut live = Vec::new();
    let frame = Duration::from_millis(33);
    let start = Instant::now();
    let mut next = FLOWS;
    app.update(Action::ToggleFollow);
    while start.elapsed() < Duration::from_secs(3) {
        let tick = Instant::now();
        let due = FLOWS + (start.elapsed().as_secs_f64() * 1000.0) as usize;
        while next < due {
            feed_flow(&mut app, next);
            next += 1;
        }
        prepare(&term, &mut app)?;
        term.draw(|f| ui::draw(f, &app))?;
        live.push(ms(tick.elapsed()));
        if let Some(rest) = frame.checked_sub(tick.elapsed()) {
            tokio::time::sleep(rest).await;
        }
    }
    report(
        &format!(
            "frame     while 1,000 flows/s arrive ({} added)",
            next - FLOWS
        ),
        &live,
        FRAME_TARGET_MS,
    );

    // One 20 MB JSON body: built once, then only the window is formatted.
    let big = big_json(20 << 20);
    let mut f = make_flow(next);
    f.response_content_type = Some("application/json".into());
    f.response_body = big;
    f.response_body_size = f.response_body.len() as u64;
    let f = Arc::new(f);
    app.update(ev(FlowEvent::Started {
        flow: Arc::clone(&f),
    }));
    app.update(ev(FlowEvent::Completed { flow: f }));
    app.update(Action::Bottom);
    app.update(Action::Open);
    let t = Instant::now();
    prepare(&term, &mut app)?;
    println!(
        "body      20 MB JSON: document built in {:.0} ms (once)",
        ms(t.elapsed())
    );
    let scroll = frame_times(&mut term, &mut app, 100, |a| a.update(Action::PageDown))?;
    report(
        "frame     20 MB JSON body, paging",
        &scroll,
        FRAME_TARGET_MS,
    );
    println!("memory    RSS {:.0} MB at the end", rss_mb());
    Ok(())
}

pub(crate) fn frame_times(
    term: &mut Terminal<TestBackend>,
    app: &mut App,
    n: usize,
    mut between: impl FnMut(&mut App),
) -> anyhow::Result<Vec<f64>> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        between(app);
        let t = Instant::now();
        prepare(term, app)?;
        term.draw(|f| ui::draw(f, app))?;
        out.push(ms(t.elapsed()));
    }
    Ok(out)
}

/// Lay out for the terminal's size and bring the app's view state up to date.
pub(crate) fn prepare(term: &Terminal<TestBackend>, app: &mut App) -> anyhow::Result<()> {
    let size = term.size()?;
    app.prepare(ui::viewport(Rect::new(0, 0, size.width, size.height), app));
    Ok(())
}

pub(crate) fn report(label: &str, times: &[f64], target: f64) {
    let mut v = times.to_vec();
    v.sort_by(f64::total_cmp);
    let pct = |p: f64| v[((v.len() - 1) as f64 * p) as usize];
    let p99 = pct(0.99);
    println!(
        "{label:<58} p50 {:>7.3} ms  p99 {p99:>7.3} ms  max {:>7.3} ms   target ≤ {target} ms  {}",
        pct(0.5),
        v[v.len() - 1],
        verdict(p99 <= target)
    );
}

fn verdict(ok: bool) -> &'static str {
    if ok {
        "ok"
    } else {
        "OVER"
    }
}

pub(crate) fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

pub(crate) fn rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

pub(crate) fn ev(e: FlowEvent) -> Action {
    Action::Feed(Feed::Event(Arc::new(e)))
}

fn feed_flow(app: &mut App, i: usize) {
    let f = Arc::new(make_flow(i));
    let mut started = Flow::clone(&f);
    started.end_time = None;
    started.status_code = None;
    app.update(ev(FlowEvent::Started {
        flow: Arc::new(started),
    }));
    app.update(ev(FlowEvent::Completed { flow: f }));
}

fn make_flow(i: usize) -> Flow {
    let (host, path, ty) = match i % 4 {
        0 => ("api.anthropic.com", "/v1/messages", TrafficType::Llm),
        1 => ("api.openai.com", "/v1/chat/completions", TrafficType::Llm),
        2 => ("localhost", "/mcp", TrafficType::Mcp),
        _ => ("example.com", "/static/app.js", TrafficType::Web),
    };
    let url = format!("https://{host}{path}?n={i}");
    let mut f = Flow::new(
        Direction::Forward,
        if i % 4 == 3 { "GET" } else { "POST" },
        &url,
        host,
        path,
    );
    f.traffic_type = ty;
    f.is_https = true;
    f.request_headers = vec![
        ("content-type".into(), "application/json".into()),
        ("x-api-key".into(), "sk-ant-…abcd".into()),
        ("user-agent".into(), "claude-cli/2.0".into()),
        ("x-request-id".into(), format!("req-{i}")),
    ];
    f.request_content_type = Some("application/json".into());
    f.request_body = Bytes::from(format!(
        r#"{{"model":"claude-sonnet-4-5","max_tokens":1024,"stream":true,"messages":[{{"role":"user","content":"question number {i} needle-{i} about something long enough to be realistic for a prompt body in the list of flows"}}]}}"#
    ));
    f.request_body_size = f.request_body.len() as u64;
    f.response_headers = vec![
        ("content-type".into(), "text/event-stream".into()),
        ("request-id".into(), format!("req_{i:08}")),
    ];
    f.response_content_type = Some("text/event-stream".into());
    f.response_body = Bytes::from(format!(
        "event: message_start\ndata: {{\"type\":\"message_start\",\"message\":{{\"model\":\"claude-sonnet-4-5\"}}}}\n\nevent: content_block_delta\ndata: {{\"type\":\"content_block_delta\",\"index\":0,\"delta\":{{\"type\":\"text_delta\",\"text\":\"Answer {i}: here is a reply of moderate length, as a model would stream it back in several deltas over time.\"}}}}\n\nevent: content_block_delta\ndata: {{\"type\":\"content_block_delta\",\"index\":0,\"delta\":{{\"type\":\"text_delta\",\"text\":\" And a second sentence to follow.\"}}}}\n\nevent: message_delta\ndata: {{\"type\":\"message_delta\",\"delta\":{{\"stop_reason\":\"end_turn\"}},\"usage\":{{\"output_tokens\":40}}}}\n\nevent: message_stop\ndata: {{\"type\":\"message_stop\"}}\n\n"
    ));
    f.response_body_size = f.response_body.len() as u64;
    f.status_code = Some(if i % 50 == 0 { 500 } else { 200 });
    f.duration_ms = Some(100.0 + (i % 900) as f64);
    f.ttfb_ms = Some(40.0);
    f.end_time = Some(f.start_time);
    f
}

fn big_json(target: usize) -> Bytes {
    let mut s = String::with_capacity(target + 1024);
    s.push_str("{\"items\":[");
    let mut i = 0;
    while s.len() < target {
        if i > 0 {
            s.push(',');
        }
        let _ = write!(
            s,
            "{{\"id\":{i},\"name\":\"item {i}\",\"ok\":true,\"tags\":[\"a\",\"b\"],\"score\":{}.5}}",
            i % 97
        );
        i += 1;
    }
    s.push_str("]}");
    Bytes::from(s)
}
