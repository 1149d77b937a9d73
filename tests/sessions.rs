//! Sessions end to end: Claude Code shaped traffic through the real proxy into
//! the real database, then the real binary's `sessions --json`, `session ID
//! --json` and `--markdown`.

mod common;

use std::fmt::Write as _;
use std::process::{Command, Output};
use std::time::Duration;

use common::db::fresh_db;
use common::upstream::{self as up, full, ProxyOptions};
use http::Response;
use serde_json::{json, Value};

use ccproxy::store::Store;

const SESSION: &str = "5d1c2f7e-0000-4000-8000-00000000e2e1";

/// Upstream answering each request with the Anthropic SSE stream its
/// `x-fx-*` headers script: cache read/write figures and an optional tool call.
async fn anthropic() -> up::Server {
    up::http(|req| async move {
        let h = |k: &str| {
            req.headers()
                .get(k)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string()
        };
        let (read, write, tool) = (h("x-fx-read"), h("x-fx-write"), h("x-fx-tool"));
        let _ = up::read_body(req).await;
        let start = json!({"type": "message_start", "message": {"id": "msg_1", "type": "message", "role": "assistant",
            "model": "claude-sonnet-4-5", "content": [], "stop_reason": null,
            "usage": {"input_tokens": 12, "cache_read_input_tokens": read.parse::<u64>().unwrap_or(0),
                      "cache_creation_input_tokens": write.parse::<u64>().unwrap_or(0), "output_tokens": 1}}});
        let mut sse = format!("event: message_start\ndata: {start}\n\n");
        if let Some((id, rest)) = tool.split_once(',') {
            let (name, prompt) = rest.split_once(',').unwrap_or((rest, ""));
            let b = json!({"type": "content_block_start", "index": 0, "content_block": {"type": "tool_use", "id": id, "name": name, "input": {}}});
            let d = json!({"type": "content_block_delta", "index": 0, "delta": {"type": "input_json_delta", "partial_json": json!({"prompt": prompt}).to_string()}});
            let _ = write!(sse, "event: content_block_start\ndata: {b}\n\nevent: content_block_delta\ndata: {d}\n\n");
        } else {
            let b = json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}});
            let d = json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "done"}});
            let _ = write!(sse, "event: content_block_start\ndata: {b}\n\nevent: content_block_delta\ndata: {d}\n\n");
        }
        let stop = if tool.is_empty() { "end_turn" } else { "tool_use" };
        let _ = write!(
            sse,
            "event: content_block_stop\ndata: {}\n\nevent: message_delta\ndata: {}\n\nevent: message_stop\ndata: {}\n\n",
            json!({"type": "content_block_stop", "index": 0}),
            json!({"type": "message_delta", "delta": {"stop_reason": stop}, "usage": {"output_tokens": 40}}),
            json!({"type": "message_stop"})
        );
        Response::builder()
            .header("content-type", "text/event-stream")
            .body(full(sse))
            .expect("response")
    })
    .await
}

fn user(t: &str) -> Value {
    json!({"role": "user", "content": [{"type": "text", "text": t}]})
}

fn body(system: &str, messages: &[Value]) -> Value {
    json!({
        "model": "claude-sonnet-4-5", "stream": true, "max_tokens": 1024,
        "system": [{"type": "text", "text": system, "cache_control": {"type": "ephemeral"}}],
        "tools": [{"name": "Read", "input_schema": {"type": "object"}},
                  {"name": "Task", "input_schema": {"type": "object"}, "cache_control": {"type": "ephemeral"}}],
        "messages": messages,
    })
}

fn ccproxy(home: &std::path::Path, url: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ccproxy"))
        .arg("--home")
        .arg(home)
        .args(args)
        .env_remove("DATABASE_URL")
        .env("CCPROXY_DATABASE_URL", url)
        .env_remove("CCPROXY_HOME")
        .output()
        .expect("run ccproxy")
}

fn stdout(out: &Output) -> String {
    assert!(
        out.status.success(),
        "exit {:?}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claude_code_traffic_becomes_sessions_with_cache_verdicts() {
    let db = fresh_db().await;
    let upstream = anthropic().await;
    let proxy = up::start_proxy(None, |_| {}, ProxyOptions::default()).await;
    let cfg = common::db::config(proxy.home.path(), Some(&db.url));
    let st = Store::open(&cfg).await.expect("open");
    proxy.hub.set_sink(st.sink());
    let client = up::client_via(&proxy.url(), &[]);
    let target = format!("http://{}/v1/messages", upstream.addr);

    let sys = "You are Claude Code";
    let tool_use = |id: &str, name: &str| json!({"role": "assistant", "content": [{"type": "tool_use", "id": id, "name": name, "input": {}}]});
    let result = |id: &str| json!({"role": "user", "content": [{"type": "tool_result", "tool_use_id": id, "content": "ok"}]});
    let m1 = vec![user("fix the bug")];
    let mut m2 = m1.clone();
    m2.extend([tool_use("toolu_1", "Read"), result("toolu_1")]);
    let mut m3 = m2.clone();
    m3.extend([tool_use("toolu_2", "Task"), result("toolu_2")]);
    let mut m4 = m3.clone();
    m4.push(user("and now?"));
    // (system, messages, cache read, cache write, scripted tool call)
    let steps: Vec<(&str, Vec<Value>, u64, u64, &str)> = vec![
        (sys, m1, 0, 5000, "toolu_1,Read,"),
        (
            sys,
            m2,
            5000,
            200,
            "toolu_2,Task,search the repo for the bug",
        ),
        (
            "You are a search agent",
            vec![user("search the repo for the bug")],
            0,
            3000,
            "",
        ),
        (sys, m3, 5200, 100, ""),
        ("You are Claude Code, today is another day", m4, 0, 5400, ""),
    ];
    let n = steps.len();
    for (system, messages, read, write, tool) in steps {
        let resp = client
            .post(&target)
            .header("x-claude-code-session-id", SESSION)
            .header("user-agent", "claude-cli/1.0.99 (external, cli)")
            .header("x-api-key", "sk-ant-api03-SUPERSECRETVALUE1234567890")
            .header("x-fx-read", read.to_string())
            .header("x-fx-write", write.to_string())
            .header("x-fx-tool", tool)
            .header("content-type", "application/json")
            .body(body(system, &messages).to_string())
            .send()
            .await
            .expect("request");
        assert_eq!(resp.status(), 200);
        let _ = resp.bytes().await.expect("body");
    }
    for _ in 0..600 {
        if st.stats().written >= n as u64 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    st.shutdown(Duration::from_secs(30)).await;
    let home = proxy.home.path();

    let list: Value =
        serde_json::from_str(&stdout(&ccproxy(home, &db.url, &["sessions", "--json"])))
            .expect("json");
    let list = list.as_array().expect("array");
    assert_eq!(list.len(), 1, "{list:?}");
    let s = &list[0];
    assert_eq!(s["session_id"], SESSION);
    assert_eq!(s["requests"], 5);
    assert_eq!(s["conversations"], 2);
    assert_eq!(s["cache_read_tokens"], 10_200);
    assert_eq!(s["cache_creation_tokens"], 13_700);
    assert_eq!(s["errors"], 0);
    let ratio = s["cache_hit_ratio"].as_f64().expect("ratio");
    assert!(
        (ratio - 10_200.0 / (60.0 + 10_200.0 + 13_700.0)).abs() < 1e-9,
        "{ratio}"
    );

    let doc: Value = serde_json::from_str(&stdout(&ccproxy(
        home,
        &db.url,
        &["session", SESSION, "--json"],
    )))
    .expect("json");
    assert_eq!(doc["session_id"], SESSION);
    let convs = doc["conversations"].as_array().expect("conversations");
    assert_eq!(convs.len(), 2);
    assert_eq!(convs[0]["kind"], "main");
    assert_eq!(convs[1]["kind"], "subagent");
    let main = convs[0]["requests"].as_array().expect("requests");
    assert_eq!(convs[1]["parent"], main[1]["trace_id"]);
    let verdicts: Vec<&str> = main
        .iter()
        .filter_map(|r| r["cache"]["verdict"].as_str())
        .collect();
    assert_eq!(verdicts, ["first_request", "hit", "hit", "prefix_changed"]);
    assert_eq!(main[3]["cache"]["diverged_at"], "system");
    assert!(main[3]["cache"]["miss_cost_usd"]
        .as_f64()
        .is_some_and(|c| c > 0.0));
    assert_eq!(main[0]["tool_calls"][0]["name"], "Read");
    assert_eq!(
        main[0]["tool_calls"][0]["result_trace_id"],
        main[1]["trace_id"]
    );
    assert_eq!(main[1]["new_messages"], 2);

    let md = stdout(&ccproxy(home, &db.url, &["session", SESSION, "--markdown"]));
    assert!(md.contains("# Session 5d1c2f7e"), "{md}");
    assert!(md.contains("prefix_changed"), "{md}");
    assert!(md.contains("fix the bug"), "{md}");
    assert!(!md.contains("SUPERSECRETVALUE"), "{md}");

    let missing = ccproxy(home, &db.url, &["session", "no-such-session"]);
    assert_eq!(missing.status.code(), Some(1));
    let err = String::from_utf8_lossy(&missing.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
}
