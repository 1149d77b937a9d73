//! Fixtures of every API shape, JSON and SSE, through `analyze`.

use bytes::Bytes;
use serde_json::json;

use super::stream::{BlockKind, Stream};
use super::*;
use crate::flow::{Direction, Flow};

fn flow(path: &str, req: &serde_json::Value, ct: &str, resp: &str) -> Flow {
    let mut f = Flow::new(
        Direction::Reverse,
        "POST",
        &format!("http://127.0.0.1:4000{path}"),
        "127.0.0.1:4000",
        path,
    );
    f.request_body = Bytes::from(req.to_string());
    f.request_content_type = Some("application/json".into());
    f.response_body = Bytes::from(resp.to_string());
    f.response_content_type = Some(ct.into());
    f.status_code = Some(200);
    f.ttfb_ms = Some(50.0);
    f.duration_ms = Some(2050.0);
    f
}

fn prices() -> PriceTable {
    PriceTable::bundled()
}

/// A real-shaped Anthropic stream with cache tokens, thinking, text and a
/// tool call streamed as `input_json_delta`.
pub const ANTHROPIC_SSE: &str = include_str!("../../tests/fixtures/llm/anthropic_sse.txt");

fn anthropic_request() -> serde_json::Value {
    json!({
        "model": "claude-sonnet-4-5",
        "max_tokens": 1024,
        "stream": true,
        "system": [{"type": "text", "text": "You are Claude Code."}],
        "tools": [{"name": "get_weather", "input_schema": {"type": "object"}}],
        "metadata": {"user_id": "user_abc_account_123_session_5f0c1c9e-8d1a-4d8b-9a51-0a9c5a8b7e11"},
        "messages": [
            {"role": "user", "content": "Weather in Paris?"},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_00", "name": "where", "input": {}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_00", "is_error": true, "content": "no"}]}
        ]
    })
}

#[test]
fn anthropic_stream_with_cache_thinking_and_a_streamed_tool_call() {
    let mut f = flow(
        "/v1/messages?beta=true",
        &anthropic_request(),
        "text/event-stream",
        ANTHROPIC_SSE,
    );
    f.request_headers = vec![
        (
            "user-agent".into(),
            "claude-cli/1.0.83 (external, cli)".into(),
        ),
        (
            "anthropic-ratelimit-unified-status".into(),
            "allowed".into(),
        ),
    ];
    f.response_headers = vec![
        (
            "anthropic-ratelimit-unified-status".into(),
            "allowed".into(),
        ),
        (
            "anthropic-ratelimit-unified-5h-utilization".into(),
            "0.42".into(),
        ),
        (
            "anthropic-ratelimit-input-tokens-remaining".into(),
            "39000".into(),
        ),
        ("retry-after".into(), "3".into()),
        ("content-type".into(), "text/event-stream".into()),
    ];
    let first_delta = ANTHROPIC_SSE.find("thinking_delta").expect("delta") as u64;
    let frames = [
        FrameTime {
            offset: 0,
            elapsed_ms: 400.0,
        },
        FrameTime {
            offset: first_delta - 10,
            elapsed_ms: 900.0,
        },
        FrameTime {
            offset: first_delta + 300,
            elapsed_ms: 1500.0,
        },
    ];
    let a = analyze_timed(&f, &prices(), &frames).expect("llm");
    assert_eq!(a.api, Api::AnthropicMessages);
    assert_eq!(a.api.as_str(), "anthropic.messages");
    assert_eq!(a.provider, "anthropic");
    assert_eq!(a.model.as_deref(), Some("claude-sonnet-4-5"));
    assert_eq!(
        a.response_model.as_deref(),
        Some("claude-sonnet-4-5-20250929")
    );
    assert_eq!(a.response_id.as_deref(), Some("msg_01"));
    assert!(a.stream);
    assert_eq!(a.stop_reason.as_deref(), Some("tool_use"));
    assert_eq!(
        a.usage,
        Usage {
            input: Some(12),
            output: Some(42),
            cache_read: Some(88_000),
            cache_creation: Some(2_000),
            cache_creation_1h: Some(0),
            reasoning: None,
        }
    );
    assert_eq!(a.tool_calls.len(), 1);
    assert_eq!(a.tool_calls[0].id, "toolu_01");
    assert_eq!(a.tool_calls[0].name, "get_weather");
    assert_eq!(a.tool_calls[0].input, json!({"city": "Paris"}));
    assert_eq!(
        a.tool_results,
        vec![ToolResultRef {
            tool_use_id: "toolu_00".into(),
            is_error: true
        }]
    );
    assert_eq!(a.message_count, 3);
    assert_eq!(a.system_bytes, "You are Claude Code.".len() as u64);
    assert!(a.tools_bytes > 40, "{}", a.tools_bytes);
    assert_eq!(
        a.session_id.as_deref(),
        Some("5f0c1c9e-8d1a-4d8b-9a51-0a9c5a8b7e11")
    );
    assert_eq!(
        a.agent.as_ref().map(ToString::to_string).as_deref(),
        Some("claude-code 1.0.83")
    );
    assert_eq!(a.ratelimit.len(), 4, "{:?}", a.ratelimit);
    assert_eq!(
        a.ratelimit.get("retry-after").map(String::as_str),
        Some("3")
    );
    // The first content delta arrived in the second frame, not with the head.
    assert_eq!(a.ttft_ms, Some(900.0));
    let tps = a.output_tokens_per_s.expect("tps");
    assert!((tps - 42.0 / 1.15).abs() < 1e-9, "{tps}");
    // $3 in, $15 out, $0.30 read, $3.75 write per MTok.
    let by_hand = (12.0 * 3.0 + 42.0 * 15.0 + 88_000.0 * 0.30 + 2_000.0 * 3.75) / 1e6;
    assert!((a.cost_usd.expect("cost") - by_hand).abs() < 1e-12);
}

#[test]
fn header_session_wins_and_no_frames_means_no_stream_ttft() {
    let mut f = flow(
        "/v1/messages",
        &anthropic_request(),
        "text/event-stream",
        ANTHROPIC_SSE,
    );
    f.request_headers = vec![("x-claude-code-session-id".into(), "sess-header".into())];
    let a = analyze(&f, &prices()).expect("llm");
    assert_eq!(a.session_id.as_deref(), Some("sess-header"));
    assert_eq!(a.ttft_ms, None);
}

#[test]
fn anthropic_json_with_tool_use_and_1h_cache() {
    let resp = json!({
        "id": "msg_02", "type": "message", "role": "assistant", "model": "claude-opus-4-5-20251101",
        "content": [
            {"type": "text", "text": "Reading."},
            {"type": "tool_use", "id": "toolu_9", "name": "Read", "input": {"file_path": "/a"}}
        ],
        "stop_reason": "tool_use",
        "usage": {"input_tokens": 100, "output_tokens": 20, "cache_read_input_tokens": 0,
                  "cache_creation_input_tokens": 1000,
                  "cache_creation": {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 1000}}
    });
    let req = json!({"model": "claude-opus-4-5", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]});
    let f = flow("/v1/messages", &req, "application/json", &resp.to_string());
    let a = analyze(&f, &prices()).expect("llm");
    assert!(!a.stream);
    assert_eq!(a.stop_reason.as_deref(), Some("tool_use"));
    assert_eq!(a.tool_calls[0].input, json!({"file_path": "/a"}));
    assert_eq!(a.usage.cache_creation_1h, Some(1000));
    assert_eq!(a.ttft_ms, Some(50.0), "a whole body: the head");
    // opus 4.5: $5 in, $25 out, $10 per MTok for 1h writes.
    let by_hand = (100.0 * 5.0 + 20.0 * 25.0 + 1000.0 * 10.0) / 1e6;
    assert!((a.cost_usd.expect("cost") - by_hand).abs() < 1e-12);
}

#[test]
fn anthropic_error_body_and_count_tokens() {
    let err = r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#;
    let mut f = flow(
        "/v1/messages",
        &json!({"model": "claude-haiku-4-5", "messages": []}),
        "application/json",
        err,
    );
    f.status_code = Some(529);
    let a = analyze(&f, &prices()).expect("llm");
    assert_eq!(a.error.as_deref(), Some("overloaded_error: Overloaded"));
    assert_eq!(a.cost_usd, None, "no usage, no cost");

    let f = flow(
        "/v1/messages/count_tokens",
        &json!({"model": "claude-haiku-4-5", "messages": []}),
        "application/json",
        r#"{"input_tokens":2095}"#,
    );
    let a = analyze(&f, &prices()).expect("llm");
    assert_eq!(a.api, Api::AnthropicCountTokens);
    assert!(a.usage.is_empty());
    assert_eq!(a.cost_usd, None);
}

pub const OPENAI_CHAT_SSE: &str = include_str!("../../tests/fixtures/llm/openai_chat_sse.txt");

#[test]
fn openai_chat_stream_with_final_usage_chunk() {
    let req = json!({"model": "gpt-4o", "stream": true, "stream_options": {"include_usage": true},
        "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"},
                     {"role": "assistant", "tool_calls": [{"id": "call_0"}]}, {"role": "tool", "tool_call_id": "call_0", "content": "42"}],
        "tools": [{"type": "function", "function": {"name": "f"}}]});
    let mut f = flow(
        "/v1/chat/completions",
        &req,
        "text/event-stream; charset=utf-8",
        OPENAI_CHAT_SSE,
    );
    f.request_headers = vec![("user-agent".into(), "OpenAI/Python 1.54.3".into())];
    f.response_headers = vec![
        ("x-ratelimit-remaining-requests".into(), "499".into()),
        ("x-ratelimit-reset-tokens".into(), "6ms".into()),
    ];
    let a = analyze(&f, &prices()).expect("llm");
    assert_eq!(a.api, Api::OpenAiChat);
    assert_eq!(a.provider, "openai");
    assert_eq!(a.response_model.as_deref(), Some("gpt-4o-2024-08-06"));
    assert_eq!(a.response_id.as_deref(), Some("chatcmpl-1"));
    assert_eq!(a.stop_reason.as_deref(), Some("tool_calls"));
    assert_eq!(
        a.usage,
        Usage {
            input: Some(176),
            output: Some(300),
            cache_read: Some(1024),
            cache_creation: None,
            cache_creation_1h: None,
            reasoning: Some(128)
        }
    );
    assert_eq!(
        a.tool_calls,
        vec![ToolCall {
            id: "call_1".into(),
            name: "f".into(),
            input: json!({"a": 1})
        }]
    );
    assert_eq!(
        a.tool_results,
        vec![ToolResultRef {
            tool_use_id: "call_0".into(),
            is_error: false
        }]
    );
    assert_eq!(a.message_count, 4);
    assert_eq!(a.system_bytes, 9);
    assert_eq!(
        a.agent.as_ref().map(|g| g.name.as_str()),
        Some("openai-sdk-python")
    );
    assert_eq!(a.ratelimit.len(), 2);
    // gpt-4o: $2.50 in, $1.25 cached, $10 out.
    let by_hand = (176.0 * 2.5 + 1024.0 * 1.25 + 300.0 * 10.0) / 1e6;
    assert!((a.cost_usd.expect("cost") - by_hand).abs() < 1e-12);
}

#[test]
fn openai_chat_json_completions_and_embeddings() {
    let resp = json!({"id": "chatcmpl-2", "object": "chat.completion", "model": "gpt-4.1-mini-2025-04-14",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": null,
            "tool_calls": [{"id": "call_9", "type": "function", "function": {"name": "lookup", "arguments": "{\"q\":\"x\"}"}}]},
            "finish_reason": "tool_calls"}],
        "usage": {"prompt_tokens": 50, "completion_tokens": 10}});
    let f = flow(
        "/v1/chat/completions",
        &json!({"model": "gpt-4.1-mini", "messages": [{"role": "user", "content": "q"}]}),
        "application/json",
        &resp.to_string(),
    );
    let a = analyze(&f, &prices()).expect("llm");
    assert!(!a.stream);
    assert_eq!(a.tool_calls[0].name, "lookup");
    assert_eq!(a.tool_calls[0].input, json!({"q": "x"}));
    assert_eq!(a.usage.input, Some(50));

    let resp = json!({"id": "cmpl-1", "object": "text_completion", "model": "gpt-3.5-turbo-instruct",
        "choices": [{"text": "hi", "index": 0, "finish_reason": "length"}], "usage": {"prompt_tokens": 3, "completion_tokens": 16}});
    let f = flow(
        "/v1/completions",
        &json!({"model": "gpt-3.5-turbo-instruct", "prompt": "say"}),
        "application/json",
        &resp.to_string(),
    );
    let a = analyze(&f, &prices()).expect("llm");
    assert_eq!(a.api, Api::OpenAiCompletions);
    assert_eq!(a.stop_reason.as_deref(), Some("length"));
    assert_eq!(a.cost_usd, None, "not in the table: no guess");

    let resp = json!({"object": "list", "data": [{"embedding": [0.1]}], "model": "text-embedding-3-small", "usage": {"prompt_tokens": 8, "total_tokens": 8}});
    let f = flow(
        "/v1/embeddings",
        &json!({"model": "text-embedding-3-small", "input": "x"}),
        "application/json",
        &resp.to_string(),
    );
    let a = analyze(&f, &prices()).expect("llm");
    assert_eq!(a.api, Api::OpenAiEmbeddings);
    assert_eq!(a.usage.input, Some(8));
    assert!((a.cost_usd.expect("cost") - 8.0 * 0.02 / 1e6).abs() < 1e-15);
}

pub const RESPONSES_SSE: &str = include_str!("../../tests/fixtures/llm/responses_sse.txt");

#[test]
fn openai_responses_stream_stores_its_usage() {
    let req = json!({"model": "gpt-5", "stream": true, "instructions": "Be terse.",
        "input": [{"role": "user", "content": "hi"}, {"type": "function_call", "call_id": "c8", "name": "g", "arguments": "{}"},
                  {"type": "function_call_output", "call_id": "c8", "output": "ok"}]});
    let f = flow("/v1/responses", &req, "text/event-stream", RESPONSES_SSE);
    let a = analyze(&f, &prices()).expect("llm");
    assert_eq!(a.api, Api::OpenAiResponses);
    assert_eq!(a.response_id.as_deref(), Some("resp_1"));
    assert_eq!(a.stop_reason.as_deref(), Some("completed"));
    assert_eq!(a.error, None);
    assert_eq!(
        a.usage,
        Usage {
            input: Some(500),
            output: Some(400),
            cache_read: Some(1500),
            cache_creation: None,
            cache_creation_1h: None,
            reasoning: Some(256)
        }
    );
    assert_eq!(
        a.tool_calls,
        vec![ToolCall {
            id: "c9".into(),
            name: "g".into(),
            input: json!({"k": 2})
        }]
    );
    assert_eq!(
        a.tool_results,
        vec![ToolResultRef {
            tool_use_id: "c8".into(),
            is_error: false
        }]
    );
    assert_eq!(a.system_bytes, 9);
    assert_eq!(a.message_count, 3);
    let by_hand = (500.0 * 1.25 + 1500.0 * 0.125 + 400.0 * 10.0) / 1e6;
    assert!((a.cost_usd.expect("cost") - by_hand).abs() < 1e-12);
}

#[test]
fn openai_responses_json_incomplete() {
    let resp = json!({"id": "resp_2", "object": "response", "model": "o4-mini-2025-04-16", "status": "incomplete",
        "incomplete_details": {"reason": "max_output_tokens"}, "output": [],
        "usage": {"input_tokens": 10, "output_tokens": 100, "output_tokens_details": {"reasoning_tokens": 100}}});
    let f = flow(
        "/v1/responses",
        &json!({"model": "o4-mini", "input": "x"}),
        "application/json",
        &resp.to_string(),
    );
    let a = analyze(&f, &prices()).expect("llm");
    assert_eq!(a.stop_reason.as_deref(), Some("max_output_tokens"));
    assert_eq!(a.usage.reasoning, Some(100));
    assert_eq!(a.message_count, 1);
}

pub const GEMINI_SSE: &str = include_str!("../../tests/fixtures/llm/gemini_sse.txt");

#[test]
fn gemini_stream_sse_and_json_array_agree() {
    let req = json!({"contents": [{"role": "user", "parts": [{"text": "weather?"}]},
                                  {"role": "model", "parts": [{"functionCall": {"name": "where"}}]},
                                  {"role": "user", "parts": [{"functionResponse": {"name": "where", "response": {"city": "Paris"}}}]}],
                     "systemInstruction": {"parts": [{"text": "Be kind"}]}});
    let path = "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse";
    let mut f = flow(path, &req, "text/event-stream", GEMINI_SSE);
    f.host = "generativelanguage.googleapis.com".into();
    let sse = analyze(&f, &prices()).expect("llm");
    assert_eq!(sse.api, Api::GeminiGenerate);
    assert_eq!(sse.provider, "google");
    assert_eq!(sse.model.as_deref(), Some("gemini-2.5-flash"));
    assert_eq!(sse.response_id.as_deref(), Some("r-1"));
    assert!(sse.stream);
    assert_eq!(sse.stop_reason.as_deref(), Some("STOP"));
    assert_eq!(
        sse.usage,
        Usage {
            input: Some(300),
            output: Some(100),
            cache_read: Some(600),
            cache_creation: None,
            cache_creation_1h: None,
            reasoning: Some(60)
        }
    );
    assert_eq!(sse.tool_calls[0].name, "get_weather");
    assert_eq!(sse.tool_calls[0].input, json!({"city": "Paris"}));
    assert_eq!(
        sse.tool_results,
        vec![ToolResultRef {
            tool_use_id: "where".into(),
            is_error: false
        }]
    );
    assert_eq!(sse.system_bytes, 7);
    assert_eq!(sse.message_count, 3);
    let by_hand = (300.0 * 0.3 + 600.0 * 0.03 + 100.0 * 2.5) / 1e6;
    assert!((sse.cost_usd.expect("cost") - by_hand).abs() < 1e-12);

    let items: Vec<serde_json::Value> = GEMINI_SSE
        .split("\r\n\r\n")
        .filter_map(|e| e.strip_prefix("data: "))
        .map(|d| serde_json::from_str(d).expect("json"))
        .collect();
    let array = serde_json::to_string_pretty(&items).expect("array");
    let f = flow(
        "/v1beta/models/gemini-2.5-flash:streamGenerateContent",
        &req,
        "application/json",
        &array,
    );
    let arr = analyze(&f, &prices()).expect("llm");
    assert_eq!(arr.usage, sse.usage);
    assert_eq!(arr.tool_calls, sse.tool_calls);
    assert_eq!(arr.stop_reason, sse.stop_reason);

    let whole = json!({"candidates": [{"content": {"parts": [{"text": "x"}]}, "finishReason": "MAX_TOKENS"}],
        "usageMetadata": {"promptTokenCount": 5, "candidatesTokenCount": 7}, "modelVersion": "gemini-2.5-pro"});
    let f = flow(
        "/v1beta/models/gemini-2.5-pro:generateContent",
        &json!({"contents": []}),
        "application/json",
        &whole.to_string(),
    );
    let a = analyze(&f, &prices()).expect("llm");
    assert_eq!(a.stop_reason.as_deref(), Some("MAX_TOKENS"));
    assert_eq!((a.usage.input, a.usage.output), (Some(5), Some(7)));
}

#[test]
fn bedrock_invoke_json_and_event_stream() {
    use base64::Engine;
    let path = "/model/us.anthropic.claude-sonnet-4-20250514-v1%3A0/invoke";
    let resp = json!({"id": "msg_b", "type": "message", "model": "claude-sonnet-4-20250514", "content": [{"type": "text", "text": "hi"}],
        "stop_reason": "end_turn", "usage": {"input_tokens": 10, "output_tokens": 5}});
    let mut f = flow(
        path,
        &json!({"anthropic_version": "bedrock-2023-05-31", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]}),
        "application/json",
        &resp.to_string(),
    );
    f.host = "bedrock-runtime.us-east-1.amazonaws.com".into();
    let a = analyze(&f, &prices()).expect("llm");
    assert_eq!(a.api, Api::BedrockInvoke);
    assert_eq!(a.provider, "aws");
    assert_eq!(
        a.model.as_deref(),
        Some("us.anthropic.claude-sonnet-4-20250514-v1:0")
    );
    assert_eq!(a.stop_reason.as_deref(), Some("end_turn"));
    assert_eq!(a.usage.input, Some(10));
    assert!((a.cost_usd.expect("cost") - (10.0 * 3.0 + 5.0 * 15.0) / 1e6).abs() < 1e-12);

    // invoke-with-response-stream: binary frames around base64 event payloads.
    let mut body = Vec::new();
    for ev in [
        json!({"type": "message_start", "message": {"id": "msg_s", "model": "claude-sonnet-4-20250514", "usage": {"input_tokens": 7, "output_tokens": 1}}}),
        json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "yo"}}),
        json!({"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 3}}),
    ] {
        let payload = json!({"bytes": base64::engine::general_purpose::STANDARD.encode(ev.to_string()), "p": "abc"});
        body.extend_from_slice(&[0, 0, 0, 120, 0, 0, 0, 80, 0x11, 0x22]);
        body.extend_from_slice(b":event-type\x07\x00\x05chunk");
        body.extend_from_slice(payload.to_string().as_bytes());
        body.extend_from_slice(&[0xde, 0xad, 0xbe, 0xef]);
    }
    let mut f = flow(
        "/model/anthropic.claude-sonnet-4-20250514-v1:0/invoke-with-response-stream",
        &json!({"messages": []}),
        "application/vnd.amazon.eventstream",
        "",
    );
    f.response_body = Bytes::from(body);
    let a = analyze(&f, &prices()).expect("llm");
    assert!(a.stream);
    assert_eq!(a.response_id.as_deref(), Some("msg_s"));
    assert_eq!((a.usage.input, a.usage.output), (Some(7), Some(3)));
    assert_eq!(a.stop_reason.as_deref(), Some("end_turn"));

    let conv = json!({"output": {"message": {"role": "assistant", "content": [{"toolUse": {"toolUseId": "tu1", "name": "calc", "input": {"x": 1}}}]}},
        "stopReason": "tool_use", "usage": {"inputTokens": 20, "outputTokens": 4, "cacheReadInputTokens": 100}});
    let f = flow(
        "/model/amazon.nova-pro-v1:0/converse",
        &json!({"messages": [], "system": [{"text": "sys"}]}),
        "application/json",
        &conv.to_string(),
    );
    let a = analyze(&f, &prices()).expect("llm");
    assert_eq!(a.stop_reason.as_deref(), Some("tool_use"));
    assert_eq!(a.usage.cache_read, Some(100));
    assert_eq!(a.tool_calls[0].id, "tu1");
    assert_eq!(a.system_bytes, 3);
    assert_eq!(a.cost_usd, None);
}

pub const MCP_SSE: &str = include_str!("../../tests/fixtures/llm/mcp_sse.txt");

#[test]
fn mcp_over_sse_request_and_notification() {
    let req = json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {"name": "search", "arguments": {"q": "x"}}});
    let mut f = flow("/mcp", &req, "text/event-stream", MCP_SSE);
    f.host = "localhost:3000".into();
    f.request_headers = vec![("mcp-session-id".into(), "mcp-s-1".into())];
    let a = analyze(&f, &prices()).expect("mcp");
    assert_eq!(a.api, Api::Mcp);
    assert_eq!(a.provider, "mcp");
    let m = a.mcp.expect("mcp side");
    assert_eq!(m.method.as_deref(), Some("tools/call"));
    assert_eq!(m.id.as_deref(), Some("7"));
    assert_eq!(m.kind, McpKind::Request);
    assert_eq!(m.tool.as_deref(), Some("search"));
    assert!(m.is_error, "result.isError of the answer with the same id");
    assert_eq!(a.session_id.as_deref(), Some("mcp-s-1"));
    assert_eq!(a.cost_usd, None);

    // Legacy transport: a notification POSTed to /messages is MCP, not Anthropic.
    let note = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
    let f = flow("/messages?sessionId=abc", &note, "text/plain", "Accepted");
    let a = analyze(&f, &prices()).expect("mcp");
    assert_eq!(a.api, Api::Mcp);
    let m = a.mcp.expect("mcp side");
    assert_eq!(m.kind, McpKind::Notification);
    assert_eq!(m.id, None);

    // A server stream opened by GET.
    let mut f = flow("/mcp", &json!(null), "text/event-stream", MCP_SSE);
    f.method = "GET".into();
    f.request_body = Bytes::new();
    let a = analyze(&f, &prices()).expect("mcp");
    assert_eq!(
        a.mcp.expect("mcp").method.as_deref(),
        Some("notifications/progress")
    );
}

#[test]
fn not_llm_traffic_is_none_and_shape_detects_odd_paths() {
    let mut f = flow("/index.html", &json!({"a": 1}), "text/html", "<html>");
    f.method = "GET".into();
    assert_eq!(analyze(&f, &prices()), None);
    let f = flow(
        "/api/upload",
        &json!({"name": "x"}),
        "application/json",
        "{}",
    );
    assert_eq!(analyze(&f, &prices()), None);
    let f = flow(
        "/proxy/chat",
        &json!({"model": "gpt-4o", "messages": []}),
        "application/json",
        "{}",
    );
    assert_eq!(analyze(&f, &prices()).map(|a| a.api), Some(Api::OpenAiChat));
    // Azure keeps the OpenAI paths under a deployment.
    let mut f = flow(
        "/openai/deployments/gpt4o/chat/completions?api-version=2024-10-21",
        &json!({"messages": []}),
        "application/json",
        "{}",
    );
    f.host = "myres.openai.azure.com".into();
    assert_eq!(
        analyze(&f, &prices()).map(|a| a.provider),
        Some("azure".to_string())
    );
}

#[test]
fn a_truncated_request_still_names_its_model() {
    let mut f = flow(
        "/v1/messages",
        &json!({}),
        "text/event-stream",
        ANTHROPIC_SSE,
    );
    f.request_body = Bytes::from_static(br#"{"model":"claude-sonnet-4-5","max_tokens":100,"messages":[{"role":"user","content":"very long"#);
    let a = analyze(&f, &prices()).expect("llm");
    assert_eq!(a.model.as_deref(), Some("claude-sonnet-4-5"));
    assert_eq!(a.usage.output, Some(42));
}

#[test]
fn live_stream_follows_any_slicing_and_matches_the_analysis() {
    let bytes = ANTHROPIC_SSE.as_bytes();
    let f = flow(
        "/v1/messages",
        &anthropic_request(),
        "text/event-stream",
        ANTHROPIC_SSE,
    );
    let whole = analyze(&f, &prices()).expect("llm");
    for cut in [1, 7, 100, bytes.len() / 2, bytes.len() - 3] {
        let mut s = Stream::default();
        s.feed(&bytes[..cut]);
        s.feed(&bytes[cut..]);
        let m = &s.message;
        assert_eq!(m.api, Some(Api::AnthropicMessages));
        assert_eq!(m.usage, whole.usage, "cut {cut}");
        assert_eq!(m.blocks.len(), 3);
        assert_eq!(m.blocks[0].kind, BlockKind::Thinking);
        assert_eq!(m.blocks[1].text, "Let me check.");
        assert_eq!(m.blocks[2].text, "{\"city\": \"Paris\"}");
        assert!(m.done);
    }
    let mut s = Stream::default();
    s.feed(OPENAI_CHAT_SSE.as_bytes());
    assert_eq!(s.message.api, Some(Api::OpenAiChat));
    assert_eq!(
        s.message.usage_label().as_deref(),
        Some("in 176 · out 300 · cache read 1024 · reasoning 128")
    );
    let mut s = Stream::default();
    s.feed(RESPONSES_SSE.as_bytes());
    assert_eq!(s.message.api, Some(Api::OpenAiResponses));
    assert_eq!(s.message.blocks.len(), 3);
    let mut s = Stream::default();
    s.feed(GEMINI_SSE.as_bytes());
    assert_eq!(s.message.api, Some(Api::GeminiGenerate));
    let mut s = Stream::default();
    s.feed(MCP_SSE.as_bytes());
    assert_eq!(s.message.api, Some(Api::Mcp));
    assert_eq!(s.message.rpc.len(), 2);
}

#[test]
fn analysis_round_trips_through_json() {
    let f = flow(
        "/v1/messages",
        &anthropic_request(),
        "text/event-stream",
        ANTHROPIC_SSE,
    );
    let a = analyze(&f, &prices()).expect("llm");
    let text = serde_json::to_string(&a).expect("ser");
    assert!(text.contains("\"api\":\"anthropic.messages\""), "{text}");
    let back: Analysis = serde_json::from_str(&text).expect("de");
    assert_eq!(back, a);
}

mod props {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

        #[test]
        fn analyze_never_panics_on_arbitrary_bytes(
            req in proptest::collection::vec(any::<u8>(), 0..512),
            resp in proptest::collection::vec(any::<u8>(), 0..2048),
            path in prop::sample::select(vec!["/v1/messages", "/v1/chat/completions", "/v1/responses", "/mcp",
                "/v1beta/models/x:streamGenerateContent", "/model/a%ZZ/invoke-with-response-stream", "/v1/embeddings", "/x"]),
            ct in prop::sample::select(vec!["text/event-stream", "application/json", "application/vnd.amazon.eventstream", ""]),
            cut in 0usize..4096,
        ) {
            let mut f = Flow::new(Direction::Forward, "POST", "http://h/", "h", path);
            f.request_body = Bytes::from(req);
            f.response_body = Bytes::from(resp);
            f.response_content_type = Some(ct.to_string());
            let frames = [FrameTime { offset: 0, elapsed_ms: 1.0 }, FrameTime { offset: 10, elapsed_ms: 2.0 }];
            let _ = analyze_timed(&f, &PriceTable::bundled(), &frames);
            // Valid-looking SSE cut anywhere must not panic either.
            let body = ANTHROPIC_SSE.as_bytes();
            let cut = cut.min(body.len());
            f.response_body = Bytes::copy_from_slice(&body[..cut]);
            f.response_content_type = Some("text/event-stream".into());
            f.request_body = Bytes::from(anthropic_request().to_string());
            let a = analyze(&f, &PriceTable::bundled());
            prop_assert!(a.is_some());
        }
    }
}

/// Skimming (what the analysis does) skips text deltas after the first token
/// but finds the same usage, stop reason, first-token offset and tool calls.
#[test]
fn skimming_finds_what_full_parsing_finds() {
    for (api, body) in [
        (Api::AnthropicMessages, ANTHROPIC_SSE),
        (Api::OpenAiChat, OPENAI_CHAT_SSE),
        (Api::OpenAiResponses, RESPONSES_SSE),
    ] {
        let mut full = Stream::for_api(Some(api));
        full.feed(body.as_bytes());
        let mut skim = Stream::for_api(Some(api));
        skim.feed_quiet(body.as_bytes());
        let (f, s) = (&full.message, &skim.message);
        assert_eq!(f.usage, s.usage, "{api}");
        assert_eq!(f.stop, s.stop, "{api}");
        assert_eq!(f.first_content, s.first_content, "{api}");
        assert_eq!(f.model, s.model, "{api}");
        let tools = |m: &stream::Message| {
            m.blocks
                .iter()
                .filter(|b| matches!(b.kind, BlockKind::ToolCall { .. }))
                .cloned()
                .collect::<Vec<_>>()
        };
        assert_eq!(tools(f), tools(s), "{api}");
    }
}

/// The flows the analysis thread is spared are ones `analyze` finds nothing in.
#[test]
fn may_be_llm_only_skips_what_analyze_would_not_find() {
    let mut get = Flow::new(Direction::Forward, "GET", "http://a/x", "a", "/x");
    get.response_content_type = Some("application/json".into());
    get.response_body = Bytes::from_static(br#"{"usage":{"input_tokens":1}}"#);
    assert!(!may_be_llm(&get));
    assert!(analyze(&get, &prices()).is_none());
    let mut stream = get.clone();
    stream.response_content_type = Some("text/event-stream".into());
    stream.response_body = Bytes::from_static(MCP_SSE.as_bytes());
    assert!(may_be_llm(&stream));
    assert!(
        analyze(&stream, &prices()).is_some(),
        "an MCP server stream"
    );
    let post = flow(
        "/v1/messages",
        &anthropic_request(),
        "text/event-stream",
        ANTHROPIC_SSE,
    );
    assert!(may_be_llm(&post));
}
