//! One flow → one OTLP span, with the GenAI semantic conventions
//! (`gen_ai.*`, semantic-conventions 1.37+) and, for MCP, `mcp.method.name`.

use std::sync::Arc;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{
    any_value, AnyValue, ArrayValue, InstrumentationScope, KeyValue,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{
    span, status, ResourceSpans, ScopeSpans, Span, Status,
};

use crate::flow::Flow;
use crate::llm::{Analysis, Api};

/// The collector request for `flows` (those without an analysis are skipped).
pub fn spans_request(
    flows: &[Arc<Flow>],
    host: &str,
    capture_content: bool,
) -> ExportTraceServiceRequest {
    let spans: Vec<Span> = flows
        .iter()
        .filter_map(|f| span_for(f, capture_content))
        .collect();
    if spans.is_empty() {
        return ExportTraceServiceRequest::default();
    }
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![
                    kv("service.name", "ccproxy"),
                    kv("service.version", env!("CARGO_PKG_VERSION")),
                    kv("host.name", host),
                ],
                ..Resource::default()
            }),
            scope_spans: vec![ScopeSpans {
                scope: Some(InstrumentationScope {
                    name: "ccproxy".into(),
                    version: env!("CARGO_PKG_VERSION").into(),
                    ..InstrumentationScope::default()
                }),
                spans,
                ..ScopeSpans::default()
            }],
            ..ResourceSpans::default()
        }],
    }
}

/// The span of one completed exchange, or `None` when it was not analysed as LLM/MCP.
pub fn span_for(f: &Flow, capture_content: bool) -> Option<Span> {
    let a = f.llm.as_deref()?;
    let mut attrs = Vec::with_capacity(24);
    let name = if a.api == Api::Mcp {
        mcp_attributes(f, a, &mut attrs)
    } else {
        genai_attributes(f, a, capture_content, &mut attrs)
    };
    attrs.push(kv("server.address", &f.host));
    if let Some(port) = f.server_port.or_else(|| port_of(&f.url)) {
        attrs.push(kv_i("server.port", i64::from(port)));
    }
    attrs.push(kv("http.request.method", &f.method));
    if let Some(code) = f.status_code {
        attrs.push(kv_i("http.response.status_code", i64::from(code)));
    }
    let error = error_type(f, a);
    if let Some(e) = &error {
        attrs.push(kv("error.type", e));
    }
    attrs.push(kv("ccproxy.direction", f.direction.as_str()));
    let start = nanos(f.start_time);
    let end = f.end_time.map_or_else(
        || start + (f.duration_ms.unwrap_or(0.0) * 1e6) as u64,
        nanos,
    );
    let id = f.id.as_bytes();
    Some(Span {
        trace_id: id.to_vec(),
        // The span id is the uuid's random tail, so it is stable across re-exports.
        span_id: id[8..16].to_vec(),
        name,
        kind: span::SpanKind::Client as i32,
        start_time_unix_nano: start,
        end_time_unix_nano: end.max(start),
        attributes: attrs,
        status: Some(match &error {
            Some(e) => Status {
                message: f.error_message.clone().unwrap_or_else(|| e.clone()),
                code: status::StatusCode::Error as i32,
            },
            None => Status {
                message: String::new(),
                code: status::StatusCode::Unset as i32,
            },
        }),
        ..Span::default()
    })
}

/// `gen_ai.*` attributes; returns the span name `{operation} {model}`.
fn genai_attributes(
    f: &Flow,
    a: &Analysis,
    capture_content: bool,
    attrs: &mut Vec<KeyValue>,
) -> String {
    let op = operation(a.api);
    attrs.push(kv("gen_ai.operation.name", op));
    attrs.push(kv("gen_ai.provider.name", &provider_name(a)));
    if let Some(m) = &a.model {
        attrs.push(kv("gen_ai.request.model", m));
    }
    if let Some(m) = &a.response_model {
        attrs.push(kv("gen_ai.response.model", m));
    }
    if let Some(id) = &a.response_id {
        attrs.push(kv("gen_ai.response.id", id));
    }
    if let Some(r) = &a.stop_reason {
        attrs.push(kv_list(
            "gen_ai.response.finish_reasons",
            std::slice::from_ref(r),
        ));
    }
    let u = &a.usage;
    // The convention's input_tokens counts every prompt token, cached ones included.
    if u.input.is_some() || u.cache_read.is_some() || u.cache_creation.is_some() {
        attrs.push(kv_u("gen_ai.usage.input_tokens", u.prompt_total()));
    }
    if let Some(n) = u.output {
        attrs.push(kv_u("gen_ai.usage.output_tokens", n));
    }
    if let Some(n) = u.cache_read {
        attrs.push(kv_u("gen_ai.usage.cache_read.input_tokens", n));
    }
    if let Some(n) = u.cache_creation {
        attrs.push(kv_u("gen_ai.usage.cache_creation.input_tokens", n));
    }
    if let Some(n) = u.reasoning {
        attrs.push(kv_u("gen_ai.usage.reasoning.output_tokens", n));
    }
    if let Some(s) = &a.session_id.clone().or_else(|| f.session_id.clone()) {
        attrs.push(kv("gen_ai.conversation.id", s));
    }
    if a.stream {
        attrs.push(kv_b("gen_ai.request.stream", true));
    }
    if let Some(t) = a.ttft_ms {
        attrs.push(kv_d("gen_ai.response.time_to_first_chunk", t / 1000.0));
    }
    if let Some(c) = a.cost_usd {
        attrs.push(kv_d("ccproxy.cost_usd", c));
    }
    if let Some(agent) = &a.agent {
        attrs.push(kv("user_agent.name", &agent.name));
        if let Some(v) = &agent.version {
            attrs.push(kv("user_agent.version", v));
        }
    }
    if !a.tool_calls.is_empty() {
        let names: Vec<String> = a.tool_calls.iter().map(|t| t.name.clone()).collect();
        attrs.push(kv_list("ccproxy.tool_calls", &names));
    }
    if capture_content {
        content_attributes(f, a, attrs);
    }
    match &a.model {
        Some(m) => format!("{op} {m}"),
        None => op.to_string(),
    }
}

/// `gen_ai.system_instructions`, `gen_ai.input.messages`, `gen_ai.output.messages`
/// as JSON strings, from the captured (already redacted) bodies.
fn content_attributes(f: &Flow, a: &Analysis, attrs: &mut Vec<KeyValue>) {
    let Ok(req) = serde_json::from_slice::<serde_json::Value>(&f.request_body) else {
        return;
    };
    let system = req
        .get("system")
        .or_else(|| req.get("instructions"))
        .or_else(|| req.get("systemInstruction"));
    if let Some(s) = system {
        attrs.push(kv("gen_ai.system_instructions", &s.to_string()));
    }
    let input = req
        .get("messages")
        .or_else(|| req.get("input"))
        .or_else(|| req.get("contents"));
    if let Some(m) = input {
        attrs.push(kv("gen_ai.input.messages", &m.to_string()));
    }
    let mut out = serde_json::Map::new();
    out.insert("role".into(), "assistant".into());
    if let Some(r) = &a.stop_reason {
        out.insert("finish_reason".into(), r.clone().into());
    }
    if !a.stream {
        if let Ok(resp) = serde_json::from_slice::<serde_json::Value>(&f.response_body) {
            let parts = resp
                .get("content")
                .or_else(|| resp.get("choices"))
                .or_else(|| resp.get("output"))
                .or_else(|| resp.get("candidates"))
                .cloned()
                .unwrap_or(resp);
            out.insert("parts".into(), parts);
        }
    }
    if !a.tool_calls.is_empty() {
        out.insert(
            "tool_calls".into(),
            serde_json::to_value(&a.tool_calls).unwrap_or_default(),
        );
    }
    attrs.push(kv(
        "gen_ai.output.messages",
        &serde_json::Value::Array(vec![serde_json::Value::Object(out)]).to_string(),
    ));
}

/// `mcp.*` attributes; returns the span name `{mcp.method.name} {target}`.
fn mcp_attributes(f: &Flow, a: &Analysis, attrs: &mut Vec<KeyValue>) -> String {
    let mcp = a.mcp.clone().unwrap_or_default();
    let method = mcp.method.clone().unwrap_or_else(|| "response".into());
    attrs.push(kv("mcp.method.name", &method));
    attrs.push(kv("rpc.system", "jsonrpc"));
    if let Some(id) = &mcp.id {
        attrs.push(kv("jsonrpc.request.id", id));
    }
    if let Some((_, sid)) = f
        .request_headers
        .iter()
        .find(|(k, _)| k == "mcp-session-id")
    {
        attrs.push(kv("mcp.session.id", sid));
    }
    let target = mcp.tool.clone();
    if let Some(t) = &target {
        attrs.push(kv("gen_ai.tool.name", t));
        attrs.push(kv("gen_ai.operation.name", "execute_tool"));
    }
    match target {
        Some(t) => format!("{method} {t}"),
        None => method,
    }
}

/// `gen_ai.operation.name` for an API.
fn operation(api: Api) -> &'static str {
    match api {
        Api::AnthropicMessages | Api::OpenAiChat | Api::OpenAiResponses | Api::BedrockInvoke => {
            "chat"
        }
        Api::AnthropicCountTokens => "count_tokens",
        Api::OpenAiCompletions => "text_completion",
        Api::OpenAiEmbeddings => "embeddings",
        Api::GeminiGenerate => "generate_content",
        Api::Mcp => "execute_tool",
    }
}

/// `gen_ai.provider.name`, with the convention's well-known values.
fn provider_name(a: &Analysis) -> String {
    match a.provider.as_str() {
        "google" | "gemini" => "gcp.gemini".into(),
        "vertex" | "vertex_ai" => "gcp.vertex_ai".into(),
        "aws" | "bedrock" => "aws.bedrock".into(),
        "azure" => "azure.ai.openai".into(),
        "" => match a.api {
            Api::AnthropicMessages | Api::AnthropicCountTokens => "anthropic".into(),
            Api::GeminiGenerate => "gcp.gemini".into(),
            Api::BedrockInvoke => "aws.bedrock".into(),
            _ => "openai".into(),
        },
        other => other.to_string(),
    }
}

/// `error.type`: the transport failure, else the HTTP status of a failed answer,
/// else the error the API reported in its body.
fn error_type(f: &Flow, a: &Analysis) -> Option<String> {
    if let Some(k) = f.error_type {
        return Some(k.as_str().to_string());
    }
    match f.status_code {
        Some(c) if c >= 400 => Some(c.to_string()),
        _ => a.error.as_ref().map(|_| "api_error".to_string()),
    }
}

fn port_of(url: &str) -> Option<u16> {
    let rest = url.split_once("://")?.1;
    let authority = rest.split(['/', '?']).next()?;
    authority.rsplit_once(':')?.1.parse().ok()
}

fn nanos(t: chrono::DateTime<chrono::Utc>) -> u64 {
    t.timestamp_nanos_opt().map_or(0, |n| n.max(0) as u64)
}

fn value(v: any_value::Value) -> AnyValue {
    AnyValue { value: Some(v) }
}

fn kv(key: &str, v: &str) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(value(any_value::Value::StringValue(v.to_string()))),
        ..KeyValue::default()
    }
}

fn kv_i(key: &str, v: i64) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(value(any_value::Value::IntValue(v))),
        ..KeyValue::default()
    }
}

fn kv_u(key: &str, v: u64) -> KeyValue {
    kv_i(key, i64::try_from(v).unwrap_or(i64::MAX))
}

fn kv_d(key: &str, v: f64) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(value(any_value::Value::DoubleValue(v))),
        ..KeyValue::default()
    }
}

fn kv_b(key: &str, v: bool) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(value(any_value::Value::BoolValue(v))),
        ..KeyValue::default()
    }
}

fn kv_list(key: &str, items: &[String]) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(value(any_value::Value::ArrayValue(ArrayValue {
            values: items
                .iter()
                .map(|s| AnyValue {
                    value: Some(any_value::Value::StringValue(s.clone())),
                })
                .collect(),
        }))),
        ..KeyValue::default()
    }
}
