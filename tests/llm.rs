//! LLM analysis end to end: every API shape (JSON and SSE) through the real
//! proxy, analysed by the engine's analysis stage, into real PostgreSQL; the
//! new columns read back. Also: a failed upstream keeps the request, and the
//! request body is shown while the answer still streams.

mod common;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::db::fresh_db;
use common::upstream::{self as up, full, ProxyOptions};
use http::Response;
use http_body::Frame;
use http_body_util::{BodyExt, StreamBody};
use serde_json::{json, Value};

use ccproxy::flow::FlowEvent;
use ccproxy::store::{self, Store, StoreStats};

fn fixture(name: &str) -> String {
    let path = format!("{}/tests/fixtures/llm/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// How long the upstream waits after the first SSE event: the first content
/// delta comes after it, so TTFT is at least this (and more than the TTFB).
const FIRST_EVENT_PAUSE: Duration = Duration::from_millis(150);

/// Upstream answering by path with the fixture of that API: the first event,
/// a pause, then the rest, as a real provider streams.
async fn providers() -> up::Server {
    up::http(|req| async move {
        let path = req.uri().path().to_string();
        let request: Value = serde_json::from_slice(&up::read_body(req).await).unwrap_or_default();
        let streamed = request["stream"] == json!(true);
        let (ct, body, headers): (&str, String, Vec<(&str, &str)>) = match path.as_str() {
            "/v1/messages" if streamed => (
                "text/event-stream",
                fixture("anthropic_sse.txt"),
                vec![
                    ("anthropic-ratelimit-unified-status", "allowed"),
                    ("anthropic-ratelimit-requests-remaining", "49"),
                    ("anthropic-ratelimit-requests-limit", "50"),
                    ("retry-after", "3"),
                ],
            ),
            "/v1/chat/completions" => (
                "text/event-stream; charset=utf-8",
                fixture("openai_chat_sse.txt"),
                vec![("x-ratelimit-remaining-requests", "499")],
            ),
            "/v1/responses" => ("text/event-stream", fixture("responses_sse.txt"), vec![]),
            "/v1beta/models/gemini-2.5-flash:streamGenerateContent" => {
                ("text/event-stream", fixture("gemini_sse.txt"), vec![])
            }
            "/mcp" => ("text/event-stream", fixture("mcp_sse.txt"), vec![]),
            "/v1/messages" => (
                "application/json",
                json!({"id": "msg_j", "type": "message", "role": "assistant", "model": "claude-haiku-4-5-20251001",
                       "content": [{"type": "text", "text": "hi"}], "stop_reason": "end_turn",
                       "usage": {"input_tokens": 1000, "output_tokens": 200, "cache_read_input_tokens": 0,
                                 "cache_creation_input_tokens": 4000}})
                .to_string(),
                vec![],
            ),
            _ => ("text/plain", "no such fixture".into(), vec![]),
        };
        let sep = if body.contains("\r\n\r\n") { "\r\n\r\n" } else { "\n\n" };
        let (first, rest) = match body.split_once(sep) {
            Some((a, b)) if ct.starts_with("text/event-stream") => {
                (format!("{a}{sep}"), b.to_string())
            }
            _ => (body, String::new()),
        };
        let (tx, rx) = futures::channel::mpsc::unbounded::<Result<Frame<Bytes>, up::BoxError>>();
        let _ = tx.unbounded_send(Ok(Frame::data(Bytes::from(first))));
        tokio::spawn(async move {
            if !rest.is_empty() {
                tokio::time::sleep(FIRST_EVENT_PAUSE).await;
                let _ = tx.unbounded_send(Ok(Frame::data(Bytes::from(rest))));
            }
        });
        let mut b = Response::builder().header("content-type", ct);
        for (k, v) in headers {
            b = b.header(k, v);
        }
        b.body(StreamBody::new(rx).boxed()).expect("response")
    })
    .await
}

async fn wait_for(st: &Store, what: &str, done: impl Fn(&StoreStats) -> bool) {
    for _ in 0..600 {
        if done(&st.stats()) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("gave up waiting for {what}: {:?}", st.stats());
}

fn anthropic_request() -> Value {
    json!({
        "model": "claude-sonnet-4-5", "max_tokens": 1024, "stream": true,
        "system": [{"type": "text", "text": "You are Claude Code."}],
        "tools": [{"name": "get_weather", "input_schema": {"type": "object"}}],
        "messages": [
            {"role": "user", "content": "Weather in Paris?"},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_00", "name": "where", "input": {}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_00", "content": "Paris"}]}
        ]
    })
}

#[allow(clippy::many_single_char_names)] // row, column and key closures read best short
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_api_shape_through_the_proxy_fills_every_column() {
    let db = fresh_db().await;
    let upstream = providers().await;
    let proxy = up::start_proxy(None, |_| {}, ProxyOptions::default()).await;
    proxy.hub.set_analyzer(ccproxy::llm::analyzer());
    let cfg = common::db::config(proxy.home.path(), Some(&db.url));
    let st = Store::open(&cfg).await.expect("open");
    proxy.hub.set_sink(st.sink());
    let base = format!("http://{}", upstream.addr);
    let client = up::client_via(&proxy.url(), &[]);
    let requests: Vec<(&str, Value, &str)> = vec![
        (
            "/v1/messages",
            anthropic_request(),
            "claude-cli/1.0.83 (external, cli)",
        ),
        (
            "/v1/chat/completions",
            json!({"model": "gpt-4o", "stream": true, "stream_options": {"include_usage": true},
                   "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}]}),
            "OpenAI/Python 1.54.3",
        ),
        (
            "/v1/responses",
            json!({"model": "gpt-5", "stream": true, "instructions": "Be terse.", "input": "hi"}),
            "OpenAI/JS 4.0.0",
        ),
        (
            "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse",
            json!({"contents": [{"role": "user", "parts": [{"text": "weather?"}]}]}),
            "google-genai-sdk/1.0.0",
        ),
        (
            "/mcp",
            json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {"name": "search", "arguments": {"q": "x"}}}),
            "curl/8.0.0",
        ),
        (
            "/v1/messages",
            json!({"model": "claude-haiku-4-5", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}),
            "anthropic-sdk-python/0.40.0",
        ),
    ];
    for (path, body, agent) in &requests {
        let resp = client
            .post(format!("{base}{path}"))
            .header("content-type", "application/json")
            .header("user-agent", *agent)
            .body(body.to_string())
            .send()
            .await
            .expect("request");
        assert_eq!(resp.status(), 200, "{path}");
        let _ = resp.bytes().await.expect("body");
    }
    wait_for(&st, "every row", |s| s.written == requests.len() as u64).await;
    st.shutdown(Duration::from_secs(30)).await;

    let c = store::connect(&db.url).await.expect("connect");
    let rows = c
        .query(
            r#"SELECT path, traffic_type, api, model, response_model, stop_reason, input_tokens,
                      output_tokens, cache_read_tokens, cache_creation_tokens, reasoning_tokens,
                      ttft_ms, ttfb_ms, cost_usd, tool_calls, ratelimit, agent, mcp_method
               FROM "CCProxy_HttpTraces""#,
            &[],
        )
        .await
        .expect("rows");
    // One row per request: by path, and by model for the two Anthropic calls.
    let row = |p: &str| {
        let (path, model) = p.split_once('#').unwrap_or((p, ""));
        rows.iter()
            .find(|r| {
                r.get::<_, String>("path").starts_with(path)
                    && r.get::<_, Option<String>>("model")
                        .unwrap_or_default()
                        .starts_with(model)
            })
            .unwrap_or_else(|| panic!("no row for {p}"))
    };
    let text = |r: &tokio_postgres::Row, k: &str| r.get::<_, Option<String>>(k);
    let int = |r: &tokio_postgres::Row, k: &str| r.get::<_, Option<i32>>(k);
    let float = |r: &tokio_postgres::Row, k: &str| r.get::<_, Option<f64>>(k);
    let json_col = |r: &tokio_postgres::Row, k: &str| r.get::<_, Option<Value>>(k);

    // Anthropic SSE: cache read and write, thinking, a tool call streamed as input_json_delta.
    let a = row("/v1/messages#claude-sonnet");
    assert_eq!(text(a, "traffic_type").as_deref(), Some("llm"));
    assert_eq!(text(a, "api").as_deref(), Some("anthropic.messages"));
    assert_eq!(text(a, "model").as_deref(), Some("claude-sonnet-4-5"));
    assert_eq!(
        text(a, "response_model").as_deref(),
        Some("claude-sonnet-4-5-20250929")
    );
    assert_eq!(text(a, "stop_reason").as_deref(), Some("tool_use"));
    assert_eq!(int(a, "input_tokens"), Some(12));
    assert_eq!(int(a, "output_tokens"), Some(42));
    assert_eq!(int(a, "cache_read_tokens"), Some(88_000));
    assert_eq!(int(a, "cache_creation_tokens"), Some(2_000));
    let by_hand = (12.0 * 3.0 + 42.0 * 15.0 + 88_000.0 * 0.30 + 2_000.0 * 3.75) / 1e6;
    assert!((float(a, "cost_usd").expect("cost") - by_hand).abs() < 1e-9);
    let ttft = float(a, "ttft_ms").expect("ttft");
    let ttfb = float(a, "ttfb_ms").expect("ttfb");
    assert!(
        ttft >= FIRST_EVENT_PAUSE.as_millis() as f64 && ttft > ttfb,
        "the first token came after the pause, not with the head: ttft {ttft} ttfb {ttfb}"
    );
    assert_eq!(
        json_col(a, "tool_calls"),
        Some(json!([{"name": "get_weather", "id": "toolu_01"}]))
    );
    let rl = json_col(a, "ratelimit").expect("ratelimit");
    assert_eq!(rl["retry-after"], "3", "{rl}");
    assert_eq!(rl["anthropic-ratelimit-unified-status"], "allowed", "{rl}");
    assert_eq!(text(a, "agent").as_deref(), Some("claude-code 1.0.83"));

    // OpenAI chat SSE: the final usage chunk, cached and reasoning tokens.
    let o = row("/v1/chat/completions");
    assert_eq!(text(o, "api").as_deref(), Some("openai.chat"));
    assert_eq!(
        text(o, "response_model").as_deref(),
        Some("gpt-4o-2024-08-06")
    );
    assert_eq!(int(o, "input_tokens"), Some(176));
    assert_eq!(int(o, "cache_read_tokens"), Some(1024));
    assert_eq!(int(o, "reasoning_tokens"), Some(128));
    assert_eq!(int(o, "output_tokens"), Some(300));
    let by_hand = (176.0 * 2.5 + 1024.0 * 1.25 + 300.0 * 10.0) / 1e6;
    assert!((float(o, "cost_usd").expect("cost") - by_hand).abs() < 1e-9);
    assert_eq!(
        text(o, "agent")
            .as_deref()
            .map(|a| a.starts_with("openai-sdk-python")),
        Some(true)
    );

    // OpenAI Responses SSE: the usage of response.completed is stored.
    let r = row("/v1/responses");
    assert_eq!(text(r, "api").as_deref(), Some("openai.responses"));
    assert_eq!(text(r, "stop_reason").as_deref(), Some("completed"));
    assert_eq!(int(r, "input_tokens"), Some(500));
    assert_eq!(int(r, "cache_read_tokens"), Some(1500));
    assert_eq!(int(r, "output_tokens"), Some(400));
    assert_eq!(int(r, "reasoning_tokens"), Some(256));

    // Gemini streamGenerateContent: usageMetadata.
    let g = row("/v1beta/models/gemini-2.5-flash");
    assert_eq!(text(g, "api").as_deref(), Some("gemini.generate"));
    assert_eq!(text(g, "model").as_deref(), Some("gemini-2.5-flash"));
    assert_eq!(int(g, "input_tokens"), Some(300));
    assert_eq!(int(g, "cache_read_tokens"), Some(600));
    assert_eq!(text(g, "stop_reason").as_deref(), Some("STOP"));

    // MCP JSON-RPC over SSE.
    let m = row("/mcp");
    assert_eq!(text(m, "api").as_deref(), Some("mcp"));
    assert_eq!(text(m, "mcp_method").as_deref(), Some("tools/call"));
    assert_eq!(
        float(m, "cost_usd"),
        None,
        "no price for MCP, never a guess"
    );

    // A JSON answer: a 5-minute cache write, priced by the table.
    let j = row("/v1/messages#claude-haiku");
    assert_eq!(text(j, "api").as_deref(), Some("anthropic.messages"));
    assert_eq!(int(j, "cache_creation_tokens"), Some(4000));
    let by_hand = (1000.0 * 1.0 + 200.0 * 5.0 + 4000.0 * 1.25) / 1e6;
    assert!(
        (float(j, "cost_usd").expect("cost") - by_hand).abs() < 1e-9,
        "{:?} vs {by_hand}",
        float(j, "cost_usd")
    );
}

/// Connection refused, and an upstream whose certificate is not trusted: the
/// flow keeps the whole request (body, size, model) and the 502 says what to
/// change.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_upstream_keeps_the_request_and_says_what_to_change() {
    let db = fresh_db().await;
    let closed = up::closed_port().await;
    let untrusted_ca = up::TestCa::new();
    let untrusted = up::https(&untrusted_ca, |_req| async { Response::new(full("never")) }).await;
    // Origin-form requests go to upstream_proxy, here a port nobody listens on.
    let mut proxy = up::start_proxy(
        None,
        |cfg| {
            cfg.mitm.upstream_proxy = format!("http://127.0.0.1:{closed}");
            cfg.mitm.max_body_size = 1 << 20;
        },
        ProxyOptions::default(),
    )
    .await;
    proxy.hub.set_analyzer(ccproxy::llm::analyzer());
    let cfg = common::db::config(proxy.home.path(), Some(&db.url));
    let st = Store::open(&cfg).await.expect("open");
    proxy.hub.set_sink(st.sink());

    let mut big = anthropic_request();
    big["messages"][0]["content"] = json!("x".repeat(76_000));
    let body = big.to_string();

    // 1. Through the proxy as an absolute-form request to a closed port.
    let client = up::client_via(&proxy.url(), &[&proxy.ca_pem_path()]);
    let resp = client
        .post(format!("http://127.0.0.1:{closed}/v1/messages"))
        .header("content-type", "application/json")
        .body(body.clone())
        .send()
        .await
        .expect("answered");
    assert_eq!(resp.status(), 502);
    let refused = proxy.completed().await;
    assert_eq!(refused.request_body_size, body.len() as u64);
    assert_eq!(refused.request_body.len(), body.len(), "whole body kept");
    assert_eq!(
        refused.llm.as_ref().and_then(|a| a.model.as_deref()),
        Some("claude-sonnet-4-5")
    );

    // 2. The forward listener as a base URL: upstream_proxy does not answer.
    let direct = up::client_direct(&[]);
    let resp = direct
        .post(format!("{}/v1/messages", proxy.url()))
        .header("content-type", "application/json")
        .body(body.clone())
        .send()
        .await
        .expect("answered");
    assert_eq!(resp.status(), 502);
    let text = resp.text().await.expect("text");
    assert!(
        text.contains("ccproxy.mitm.upstream_proxy") && text.contains(&closed.to_string()),
        "names the key and the address: {text}"
    );
    let _ = proxy.completed().await;

    // 3. HTTPS upstream whose CA the proxy does not trust.
    let resp = client
        .post(format!(
            "https://localhost:{}/v1/messages",
            untrusted.addr.port()
        ))
        .header("content-type", "application/json")
        .body(body.clone())
        .send()
        .await
        .expect("answered");
    assert_eq!(resp.status(), 502);
    let text = resp.text().await.expect("text");
    assert!(
        text.contains("upstream_ca") && text.contains("trust store"),
        "says how to trust it: {text}"
    );
    let tls = proxy.completed().await;
    assert_eq!(tls.request_body_size, body.len() as u64);

    wait_for(&st, "three rows", |s| s.written == 3).await;
    st.shutdown(Duration::from_secs(30)).await;
    let c = store::connect(&db.url).await.expect("connect");
    let rows = c
        .query(
            r#"SELECT request_body_size, length(request_body), model, error_type
               FROM "CCProxy_HttpTraces""#,
            &[],
        )
        .await
        .expect("rows");
    assert_eq!(rows.len(), 3);
    for r in rows {
        assert_eq!(r.get::<_, Option<i32>>(0), Some(body.len() as i32));
        assert_eq!(r.get::<_, Option<i32>>(1), Some(body.len() as i32));
        assert_eq!(
            r.get::<_, Option<String>>(2).as_deref(),
            Some("claude-sonnet-4-5")
        );
        assert!(r.get::<_, Option<String>>(3).is_some());
    }
}

/// The request body is published when it ends: a viewer has the prompt while
/// the answer is still streaming.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_prompt_shows_while_the_answer_streams() {
    let (release_tx, release_rx) = tokio::sync::oneshot::channel::<()>();
    let release = Arc::new(std::sync::Mutex::new(Some(release_rx)));
    let upstream = up::http(move |req| {
        let release = Arc::clone(&release);
        async move {
            let _ = up::read_body(req).await;
            let (tx, rx) =
                futures::channel::mpsc::unbounded::<Result<Frame<Bytes>, up::BoxError>>();
            let _ = tx.unbounded_send(Ok(Frame::data(Bytes::from_static(
                b"event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"model\":\"m\"}}\n\n",
            ))));
            let wait = release.lock().expect("lock").take();
            tokio::spawn(async move {
                if let Some(w) = wait {
                    let _ = w.await;
                }
                drop(tx);
            });
            Response::builder()
                .header("content-type", "text/event-stream")
                .body(StreamBody::new(rx).boxed())
                .expect("response")
        }
    })
    .await;
    let mut proxy = up::start_proxy(None, |_| {}, ProxyOptions::default()).await;
    let client = up::client_via(&proxy.url(), &[]);
    let url = format!("http://{}/v1/messages", upstream.addr);
    let prompt = anthropic_request().to_string();
    let sent = prompt.clone();
    let call = tokio::spawn(async move {
        let resp = client
            .post(url)
            .header("content-type", "application/json")
            .body(sent)
            .send()
            .await
            .expect("request");
        resp.bytes().await.expect("body")
    });
    let shown = proxy
        .next_event(|ev| match ev {
            FlowEvent::RequestBody { flow } => Some(Arc::clone(flow)),
            FlowEvent::Completed { .. } => panic!("completed before the request body was shown"),
            _ => None,
        })
        .await;
    assert_eq!(shown.request_body, Bytes::from(prompt.clone()));
    assert!(!shown.is_complete(), "still streaming");
    let _ = release_tx.send(());
    let _ = call.await.expect("call");
    let done = proxy.completed().await;
    assert_eq!(done.request_body, Bytes::from(prompt));
}
