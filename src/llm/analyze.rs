//! `analyze`: one pass over a completed flow. The request tells the API, the
//! model asked for, the conversation's size, the tool results and the
//! session; the response (JSON or a stream, through [`super::stream`]) tells
//! the model that answered, the usage, the stop reason and the tool calls;
//! the headers tell the rate limits and the agent; the frame timings tell the
//! time to the first token.

use serde_json::Value;

use crate::flow::Flow;

use super::stream::{rpc_message, BlockKind, Message, Stream};
use super::{agent, sse, Analysis, Api, FrameTime, PriceTable, RateLimit, ToolCall, ToolResultRef};

/// Understand one exchange; `None` when it is neither an LLM API call nor MCP.
/// Without frame timings the TTFT of a stream is unknown (`None`).
pub fn analyze(flow: &Flow, prices: &PriceTable) -> Option<Analysis> {
    analyze_timed(flow, prices, &[])
}

/// As [`analyze`], with the arrival times of the first response frames, so
/// the time to the first content delta can be told.
pub fn analyze_timed(flow: &Flow, prices: &PriceTable, frames: &[FrameTime]) -> Option<Analysis> {
    let path = flow.path.split('?').next().unwrap_or("");
    let request = parse_json(&flow.request_body);
    let api = detect(&flow.method, path, request.as_ref(), flow)?;
    let mut a = Analysis {
        api,
        provider: provider(&flow.host, api).to_string(),
        ..Analysis::default()
    };
    let response_is_sse = is_sse(flow);

    let req = request.as_ref().unwrap_or(&Value::Null);
    request_facts(&mut a, flow, path, req);

    let message = response_message(api, flow, response_is_sse, path);
    a.stream = response_is_sse
        || req.get("stream").and_then(Value::as_bool) == Some(true)
        || path.contains("streamGenerateContent")
        || path.ends_with("-stream");
    a.response_model.clone_from(&message.model);
    a.response_id.clone_from(&message.id);
    a.stop_reason.clone_from(&message.stop);
    a.error.clone_from(&message.error);
    a.usage = message.usage;
    if api == Api::BedrockInvoke {
        bedrock_header_usage(&mut a, flow);
    }
    a.tool_calls = tool_calls(&message);
    if api == Api::Mcp {
        a.mcp = mcp(flow, req, &message);
    }

    a.ratelimit = ratelimit(flow);
    a.session_id = session_id(flow, req);
    a.agent = agent::agent(
        flow.request_header("user-agent"),
        flow.request_header("x-stainless-lang"),
        flow.request_header("x-stainless-package-version"),
        match api {
            Api::AnthropicMessages | Api::AnthropicCountTokens => "anthropic",
            _ => "openai",
        },
    );
    timing(&mut a, flow, &message, frames, response_is_sse);
    if api != Api::AnthropicCountTokens && api != Api::Mcp {
        let model = a.response_model.as_deref().or(a.model.as_deref());
        a.cost_usd = model.and_then(|m| prices.cost(m, &a.usage));
        if a.cost_usd.is_none() && a.response_model.is_some() {
            a.cost_usd = a.model.as_deref().and_then(|m| prices.cost(m, &a.usage));
        }
    }
    Some(a)
}

/// The message the model wrote in an exchange's response (text, thinking,
/// tool calls), reassembled whatever its shape: for views that show the
/// reply itself rather than the figures of the analysis.
pub fn reply(flow: &Flow, api: Api) -> Message {
    let path = flow.path.split('?').next().unwrap_or("");
    response_message(api, flow, is_sse(flow), path)
}

/// The response is a server-sent event stream (by content type or by shape).
fn is_sse(flow: &Flow) -> bool {
    flow.response_content_type
        .as_deref()
        .is_some_and(|c| c.contains("event-stream"))
        || sse::looks_like_sse(&flow.response_body)
}

/// The first JSON value of a body (a body cut at `max_body_size` is not one).
fn parse_json(body: &[u8]) -> Option<Value> {
    let b = body.trim_ascii_start();
    if !(b.starts_with(b"{") || b.starts_with(b"[")) {
        return None;
    }
    // The first value: what follows it (a NUL, a cut tail) does not matter.
    serde_json::Deserializer::from_slice(b)
        .into_iter::<Value>()
        .next()
        .and_then(Result::ok)
}

/// The API, from method, path and body shape; the host plays no part.
pub fn detect(method: &str, path: &str, request: Option<&Value>, flow: &Flow) -> Option<Api> {
    let is_rpc = |v: &Value| match v {
        Value::Array(items) => items.first().is_some_and(|m| rpc_message(m).is_some()),
        other => rpc_message(other).is_some(),
    };
    // MCP first: its legacy transport POSTs to `/messages`.
    if request.is_some_and(is_rpc) {
        return Some(Api::Mcp);
    }
    let p = path.to_ascii_lowercase();
    let post = method.eq_ignore_ascii_case("POST");
    if !post {
        // An MCP server stream (`GET` with `text/event-stream` JSON-RPC).
        let sse = flow
            .response_content_type
            .as_deref()
            .is_some_and(|c| c.contains("event-stream"));
        let body = &flow.response_body[..flow.response_body.len().min(4096)];
        if method.eq_ignore_ascii_case("GET")
            && sse
            && memchr::memmem::find(body, b"\"jsonrpc\"").is_some()
        {
            return Some(Api::Mcp);
        }
        return None;
    }
    let by_path = if p.ends_with("/messages/count_tokens") {
        Some(Api::AnthropicCountTokens)
    } else if p.ends_with("/messages")
        || p.contains(":rawpredict")
        || p.contains(":streamrawpredict")
    {
        Some(Api::AnthropicMessages)
    } else if p.ends_with("/chat/completions") {
        Some(Api::OpenAiChat)
    } else if p.ends_with("/responses") {
        Some(Api::OpenAiResponses)
    } else if p.ends_with("/completions") {
        Some(Api::OpenAiCompletions)
    } else if p.ends_with("/embeddings") {
        Some(Api::OpenAiEmbeddings)
    } else if p.contains(":generatecontent") || p.contains(":streamgeneratecontent") {
        Some(Api::GeminiGenerate)
    } else if p.contains("/model/")
        && (p.ends_with("/invoke")
            || p.ends_with("/invoke-with-response-stream")
            || p.ends_with("/converse")
            || p.ends_with("/converse-stream"))
    {
        Some(Api::BedrockInvoke)
    } else {
        None
    };
    if by_path.is_some() {
        return by_path;
    }
    // An unusual path: the body's shape.
    let r = request?;
    let has = |k: &str| r.get(k).is_some();
    let anthropic_shape = has("model")
        && has("messages")
        && has("max_tokens")
        && r.get("system").is_some_and(|s| !s.is_null());
    if (has("anthropic_version") && has("messages")) || anthropic_shape {
        Some(Api::AnthropicMessages)
    } else if has("model") && has("messages") {
        Some(Api::OpenAiChat)
    } else if has("contents") && r.get("contents").is_some_and(Value::is_array) {
        Some(Api::GeminiGenerate)
    } else {
        None
    }
}

/// Who serves the exchange: a known provider host, else the API's family.
fn provider(host: &str, api: Api) -> &'static str {
    let h = host.to_ascii_lowercase();
    let h = h.split(':').next().unwrap_or("");
    const HOSTS: &[(&str, &str)] = &[
        ("anthropic.com", "anthropic"),
        ("openai.azure.com", "azure"),
        ("azure.com", "azure"),
        ("openai.com", "openai"),
        ("generativelanguage.googleapis.com", "google"),
        ("aiplatform.googleapis.com", "google-vertex"),
        ("amazonaws.com", "aws"),
        ("openrouter.ai", "openrouter"),
        ("deepseek.com", "deepseek"),
        ("groq.com", "groq"),
        ("mistral.ai", "mistral"),
        ("x.ai", "xai"),
        ("together.xyz", "together"),
        ("fireworks.ai", "fireworks"),
        ("cohere.ai", "cohere"),
        ("cohere.com", "cohere"),
        ("moonshot.ai", "moonshot"),
        ("githubcopilot.com", "github-copilot"),
    ];
    if let Some((_, p)) = HOSTS
        .iter()
        .find(|(suffix, _)| h == *suffix || h.ends_with(&format!(".{suffix}")))
    {
        return p;
    }
    if h.contains("bedrock") {
        return "aws";
    }
    match api {
        Api::AnthropicMessages | Api::AnthropicCountTokens => "anthropic",
        Api::OpenAiChat | Api::OpenAiResponses | Api::OpenAiCompletions | Api::OpenAiEmbeddings => {
            "openai"
        }
        Api::GeminiGenerate => "google",
        Api::BedrockInvoke => "aws",
        Api::Mcp => "mcp",
    }
}

/// The model named in the path: Gemini `models/{m}:…`, Bedrock `/model/{m}/…`,
/// Vertex `…/models/{m}:rawPredict`.
fn path_model(path: &str) -> Option<String> {
    let lower = path.to_ascii_lowercase();
    let raw = if let Some(i) = lower.find("/model/") {
        let rest = &path[i + 7..];
        rest.split('/').next()
    } else if let Some(i) = lower.rfind("models/") {
        let rest = &path[i + 7..];
        rest.split([':', '/']).next()
    } else {
        None
    }?;
    let decoded = percent_decode(raw);
    (!decoded.is_empty() && decoded.len() <= 200).then_some(decoded)
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let hex = |c: u8| char::from(c).to_digit(16).map(|d| d as u8);
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push(h * 16 + l);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn request_facts(a: &mut Analysis, flow: &Flow, path: &str, req: &Value) {
    a.model = match req.get("model") {
        Some(Value::String(m)) if !m.is_empty() => Some(m.chars().take(200).collect()),
        _ => None,
    }
    .or_else(|| {
        matches!(
            a.api,
            Api::GeminiGenerate | Api::BedrockInvoke | Api::AnthropicMessages
        )
        .then(|| path_model(path))
        .flatten()
    })
    .or_else(|| {
        // A body cut at `max_body_size`: the first `"model": "…"` in it.
        req.is_null()
            .then(|| scan_model(&flow.request_body))
            .flatten()
    });
    a.tools_bytes = ["tools", "functions"]
        .iter()
        .filter_map(|k| req.get(*k))
        .map(json_len)
        .sum();
    match a.api {
        Api::AnthropicMessages | Api::AnthropicCountTokens | Api::BedrockInvoke => {
            let messages = req.get("messages").and_then(Value::as_array);
            a.message_count = messages.map_or(0, |m| m.len() as u64);
            a.system_bytes = req.get("system").map_or(0, text_len);
            if let Some(messages) = messages {
                for m in turn(messages, "assistant") {
                    for block in m
                        .get("content")
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten()
                    {
                        if block.get("type").and_then(Value::as_str) == Some("tool_result") {
                            a.tool_results.push(ToolResultRef {
                                tool_use_id: str_of(block, "tool_use_id"),
                                is_error: block.get("is_error").and_then(Value::as_bool)
                                    == Some(true),
                            });
                        }
                        if let Some(tr) = block.get("toolResult") {
                            // Bedrock Converse.
                            a.tool_results.push(ToolResultRef {
                                tool_use_id: str_of(tr, "toolUseId"),
                                is_error: tr.get("status").and_then(Value::as_str) == Some("error"),
                            });
                        }
                    }
                }
            }
            if a.api == Api::BedrockInvoke {
                if let Some(s) = req.get("system").and_then(Value::as_array) {
                    a.system_bytes = s.iter().map(text_len).sum();
                }
                if let Some(cfg) = req.get("toolConfig") {
                    a.tools_bytes += json_len(cfg);
                }
            }
        }
        Api::OpenAiChat => {
            let messages = req.get("messages").and_then(Value::as_array);
            a.message_count = messages.map_or(0, |m| m.len() as u64);
            for m in messages.into_iter().flatten() {
                if matches!(
                    m.get("role").and_then(Value::as_str),
                    Some("system" | "developer")
                ) {
                    a.system_bytes += m.get("content").map_or(0, text_len);
                }
            }
            if let Some(messages) = messages {
                for m in turn(messages, "assistant") {
                    if m.get("role").and_then(Value::as_str) == Some("tool") {
                        a.tool_results.push(ToolResultRef {
                            tool_use_id: str_of(m, "tool_call_id"),
                            is_error: false,
                        });
                    }
                }
            }
        }
        Api::OpenAiResponses => {
            a.system_bytes = req.get("instructions").map_or(0, text_len);
            match req.get("input") {
                Some(Value::String(_)) => a.message_count = 1,
                Some(Value::Array(items)) => {
                    a.message_count = items.len() as u64;
                    for item in items {
                        if matches!(
                            item.get("role").and_then(Value::as_str),
                            Some("system" | "developer")
                        ) {
                            a.system_bytes += item.get("content").map_or(0, text_len);
                        }
                    }
                    for item in turn(items, "assistant") {
                        if matches!(
                            item.get("type").and_then(Value::as_str),
                            Some("function_call_output" | "custom_tool_call_output")
                        ) {
                            a.tool_results.push(ToolResultRef {
                                tool_use_id: str_of(item, "call_id"),
                                is_error: false,
                            });
                        }
                    }
                }
                _ => {}
            }
        }
        Api::GeminiGenerate => {
            let contents = req.get("contents").and_then(Value::as_array);
            a.message_count = contents.map_or(0, |c| c.len() as u64);
            a.system_bytes = req
                .get("systemInstruction")
                .or_else(|| req.get("system_instruction"))
                .map_or(0, text_len);
            if let Some(contents) = contents {
                for c in turn(contents, "model") {
                    for part in c
                        .get("parts")
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten()
                    {
                        if let Some(fr) = part.get("functionResponse") {
                            let id = fr.get("id").or_else(|| fr.get("name"));
                            a.tool_results.push(ToolResultRef {
                                tool_use_id: id.and_then(Value::as_str).unwrap_or("").to_string(),
                                is_error: fr.pointer("/response/error").is_some(),
                            });
                        }
                    }
                }
            }
        }
        Api::OpenAiCompletions => a.message_count = u64::from(req.get("prompt").is_some()),
        Api::OpenAiEmbeddings | Api::Mcp => {}
    }
}

/// The messages after the last one by `assistant_role`: what the client sends this turn.
fn turn<'a>(items: &'a [Value], assistant_role: &str) -> &'a [Value] {
    let last = items.iter().rposition(|m| {
        m.get("role").and_then(Value::as_str) == Some(assistant_role)
            || matches!(
                m.get("type").and_then(Value::as_str),
                Some("function_call" | "message")
            ) && m
                .get("role")
                .and_then(Value::as_str)
                .is_none_or(|r| r == assistant_role)
    });
    match last {
        Some(i) => &items[i + 1..],
        None => items,
    }
}

/// Bytes of the text in a system prompt or message content, whatever its shape.
fn text_len(v: &Value) -> u64 {
    match v {
        Value::String(s) => s.len() as u64,
        Value::Array(items) => items.iter().map(text_len).sum(),
        Value::Object(o) => {
            if let Some(t) = o.get("text").and_then(Value::as_str) {
                t.len() as u64
            } else if let Some(parts) = o.get("parts") {
                text_len(parts)
            } else if let Some(c) = o.get("content") {
                text_len(c)
            } else {
                0
            }
        }
        _ => 0,
    }
}

/// Bytes of a value serialised as compact JSON.
fn json_len(v: &Value) -> u64 {
    struct Count(u64);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len() as u64;
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut c = Count(0);
    match serde_json::to_writer(&mut c, v) {
        Ok(()) => c.0,
        Err(_) => 0,
    }
}

fn str_of(v: &Value, key: &str) -> String {
    v.get(key).and_then(Value::as_str).unwrap_or("").to_string()
}

/// The first `"model": "…"` of a truncated JSON body.
fn scan_model(body: &[u8]) -> Option<String> {
    let at = memchr::memmem::find(body, b"\"model\"")?;
    let rest = body[at + 7..].trim_ascii_start().strip_prefix(b":")?;
    let rest = rest.trim_ascii_start().strip_prefix(b"\"")?;
    let end = rest
        .iter()
        .take(201)
        .position(|b| *b == b'"' || *b == b'\\')?;
    let m = std::str::from_utf8(&rest[..end]).ok()?;
    (!m.is_empty()).then(|| m.to_string())
}

/// The response reassembled, whatever its framing.
fn response_message(api: Api, flow: &Flow, is_sse: bool, path: &str) -> Message {
    let body = &flow.response_body;
    if is_sse {
        let mut s = Stream::for_api(Some(api));
        s.feed_quiet(body);
        s.feed_quiet(b"\n\n");
        return s.message;
    }
    let mut m = Message::for_api(api);
    let trimmed = body.trim_ascii_start();
    if api == Api::BedrockInvoke && path.ends_with("-stream") && !trimmed.starts_with(b"{") {
        bedrock_event_stream(&mut m, body);
        return m;
    }
    if trimmed.starts_with(b"[") && api == Api::GeminiGenerate {
        // streamGenerateContent without `alt=sse`: a JSON array, element by element.
        json_array_items(trimmed, body.len() - trimmed.len(), |v, end| {
            m.apply_json(v, Some(end));
        });
        return m;
    }
    if let Some(v) = parse_json(body) {
        m.apply_json(&v, None);
    }
    m
}

/// Each element of a JSON array with the offset just past it; stops at the
/// first element that does not parse (a truncated body keeps what came before).
fn json_array_items(b: &[u8], base: usize, mut f: impl FnMut(&Value, u64)) {
    let mut pos = 1; // past '['
    loop {
        while pos < b.len() && (b[pos].is_ascii_whitespace() || b[pos] == b',') {
            pos += 1;
        }
        if pos >= b.len() || b[pos] == b']' {
            return;
        }
        let mut it = serde_json::Deserializer::from_slice(&b[pos..]).into_iter::<Value>();
        match it.next() {
            Some(Ok(v)) => {
                pos += it.byte_offset();
                f(&v, (base + pos) as u64);
            }
            _ => return,
        }
    }
}

/// Bedrock's `application/vnd.amazon.eventstream`: binary frames whose JSON
/// payloads carry base64 `bytes` (the model's native events) or Converse events.
fn bedrock_event_stream(m: &mut Message, body: &[u8]) {
    use base64::Engine;
    let mut pos = 0;
    while let Some(i) = memchr::memchr(b'{', &body[pos..]) {
        let start = pos + i;
        let mut it = serde_json::Deserializer::from_slice(&body[start..]).into_iter::<Value>();
        match it.next() {
            Some(Ok(v)) => {
                let end = (start + it.byte_offset()) as u64;
                if let Some(b64) = v.get("bytes").and_then(Value::as_str) {
                    if let Ok(raw) = base64::engine::general_purpose::STANDARD.decode(b64) {
                        if let Ok(inner) = serde_json::from_slice::<Value>(&raw) {
                            m.apply_json(&inner, Some(end));
                        }
                    }
                } else {
                    m.apply_json(&v, Some(end));
                }
                pos = start + it.byte_offset();
            }
            _ => pos = start + 1,
        }
    }
}

/// Bedrock reports the counts in headers too; they fill what the body did not.
fn bedrock_header_usage(a: &mut Analysis, flow: &Flow) {
    let n = |h: &str| {
        flow.response_header(h)
            .and_then(|v| v.trim().parse::<u64>().ok())
    };
    if a.usage.input.is_none() {
        a.usage.input = n("x-amzn-bedrock-input-token-count");
    }
    if a.usage.output.is_none() {
        a.usage.output = n("x-amzn-bedrock-output-token-count");
    }
    if a.usage.cache_read.is_none() {
        a.usage.cache_read = n("x-amzn-bedrock-cache-read-input-token-count");
    }
    if a.usage.cache_creation.is_none() {
        a.usage.cache_creation = n("x-amzn-bedrock-cache-write-input-token-count");
    }
}

fn tool_calls(m: &Message) -> Vec<ToolCall> {
    m.blocks
        .iter()
        .filter_map(|b| match &b.kind {
            BlockKind::ToolCall { name, id } => {
                let text = b.text.trim();
                let input = if text.is_empty() {
                    Value::Object(serde_json::Map::new())
                } else {
                    serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_string()))
                };
                Some(ToolCall {
                    id: id.clone(),
                    name: name.clone(),
                    input,
                })
            }
            _ => None,
        })
        .collect()
}

/// The MCP side: the client's message, completed by the server's answer to it.
fn mcp(flow: &Flow, req: &Value, m: &Message) -> Option<super::Mcp> {
    let sent = match req {
        Value::Array(items) => items.first().and_then(rpc_message),
        other => rpc_message(other),
    };
    let mut out = match sent {
        Some(s) => s,
        // A server stream opened by GET: its first message.
        None => m.rpc.first()?.clone(),
    };
    if out.kind == super::McpKind::Request {
        let answer = m
            .rpc
            .iter()
            .find(|r| r.kind == super::McpKind::Response && r.id == out.id);
        out.is_error =
            answer.is_some_and(|r| r.is_error) || flow.status_code.is_some_and(|s| s >= 400);
    }
    Some(out)
}

/// Rate-limit headers, by lowercase name.
fn ratelimit(flow: &Flow) -> RateLimit {
    flow.response_headers
        .iter()
        .filter(|(n, _)| {
            let n = n.to_ascii_lowercase();
            n.starts_with("anthropic-ratelimit-")
                || n.starts_with("x-ratelimit-")
                || n.starts_with("retry-after")
                || n.starts_with("ratelimit-")
        })
        .map(|(n, v)| (n.to_ascii_lowercase(), v.chars().take(200).collect()))
        .collect()
}

/// The session: `x-claude-code-session-id`, else Claude Code's
/// `metadata.user_id` (`user_…_account_…_session_<uuid>`, or a JSON object
/// with `session_id`), else MCP's `mcp-session-id`.
fn session_id(flow: &Flow, req: &Value) -> Option<String> {
    if let Some(s) = flow
        .request_header("x-claude-code-session-id")
        .or(flow.session_id.as_deref())
        .filter(|s| !s.trim().is_empty())
    {
        return Some(s.trim().chars().take(200).collect());
    }
    if let Some(uid) = req.pointer("/metadata/user_id").and_then(Value::as_str) {
        if let Some((_, s)) = uid.rsplit_once("_session_") {
            if !s.is_empty() {
                return Some(s.chars().take(200).collect());
            }
        }
        if let Ok(Value::Object(o)) = serde_json::from_str::<Value>(uid) {
            if let Some(s) = o.get("session_id").and_then(Value::as_str) {
                return Some(s.chars().take(200).collect());
            }
        }
    }
    flow.request_header("mcp-session-id")
        .or_else(|| flow.response_header("mcp-session-id"))
        .map(|s| s.trim().chars().take(200).collect())
}

/// The shortest first-token-to-end window an output rate is given for.
const MIN_RATE_WINDOW_S: f64 = 0.05;

/// Time to first token and output speed.
fn timing(a: &mut Analysis, flow: &Flow, m: &Message, frames: &[FrameTime], is_sse: bool) {
    let streamed = is_sse || m.first_content.is_some();
    a.ttft_ms = if streamed {
        m.first_content.and_then(|off| arrival(frames, off))
    } else {
        // A whole body: the first token is visible when the body starts.
        frames.first().map(|f| f.elapsed_ms).or(flow.ttfb_ms)
    };
    if let (true, Some(ttft), Some(total), Some(out)) =
        (streamed, a.ttft_ms, flow.duration_ms, a.usage.output)
    {
        // Over a window this short the figure says nothing (the whole answer
        // arrived in one read): leave it out rather than print millions.
        let secs = (total - ttft) / 1000.0;
        if secs >= MIN_RATE_WINDOW_S && out > 0 {
            a.output_tokens_per_s = Some(out as f64 / secs);
        }
    }
}

/// When the byte just before `end` arrived: the last frame starting before it.
/// `None` when it lies past the recorded frames (only the first few are kept).
fn arrival(frames: &[FrameTime], end: u64) -> Option<f64> {
    let last_byte = end.saturating_sub(1);
    let i = frames.partition_point(|f| f.offset <= last_byte);
    if i == 0 {
        return None;
    }
    if i == frames.len() && frames.len() >= super::MAX_FRAMES {
        // Beyond what was recorded: the frame it sits in is unknown.
        return None;
    }
    Some(frames[i - 1].elapsed_ms)
}
