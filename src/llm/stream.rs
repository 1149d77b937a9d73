//! The response side of an exchange, reassembled: the message the model
//! wrote (text, thinking, tool calls with their input), its model, id, stop
//! reason, usage and errors, and for MCP the JSON-RPC messages.
//!
//! One code path for every shape: SSE events are applied one at a time as
//! they arrive ([`Stream::feed`], incremental, used by the TUI while a stream
//! runs), and a whole JSON body is applied as one event ([`Message::apply_json`]).
//! So the store, the TUI and the filter can never disagree on the tokens.

use std::collections::HashMap;
use std::fmt::Write as _;

use serde_json::Value;

use super::sse::{SseEvent, SseParser};
use super::{Api, Mcp, McpKind, Usage};

/// What a content block of the message holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BlockKind {
    /// Visible text.
    Text,
    /// Reasoning / thinking.
    Thinking,
    /// A tool call; `text` holds its JSON input as it streamed.
    ToolCall { name: String, id: String },
}

/// One block of the reassembled message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Block {
    /// Text, thinking or a tool call.
    pub kind: BlockKind,
    /// Its content as streamed so far.
    pub text: String,
}

/// The message reassembled from a response.
#[derive(Debug, Clone, Default)]
pub struct Message {
    /// `None` until an event identifies the API (or preset by the caller).
    pub api: Option<Api>,
    /// The model the response names.
    pub model: Option<String>,
    /// The provider's response id.
    pub id: Option<String>,
    /// Content blocks in order.
    pub blocks: Vec<Block>,
    /// Stop / finish reason or final status.
    pub stop: Option<String>,
    /// Token usage as reported so far.
    pub usage: Usage,
    /// An error the API reported.
    pub error: Option<String>,
    /// True once the stream said it is done.
    pub done: bool,
    /// Stream offset just past the first event that carried content (a text,
    /// thinking or tool-input delta): where the first token arrived.
    pub first_content: Option<u64>,
    /// JSON-RPC messages seen (MCP), in order; at most [`MAX_RPC`].
    pub rpc: Vec<Mcp>,
    /// Skimming (the analysis): after the first token, events that can only
    /// add visible text are not parsed, so `blocks` lacks that text.
    pub skim: bool,
    keys: HashMap<String, usize>,
}

/// How many JSON-RPC messages a message keeps (a long-lived MCP stream has many).
pub const MAX_RPC: usize = 64;

impl Api {
    /// Name shown in the TUI's message header.
    pub fn label(self) -> &'static str {
        match self {
            Self::AnthropicMessages => "Anthropic Messages",
            Self::AnthropicCountTokens => "Anthropic count_tokens",
            Self::OpenAiChat => "OpenAI chat",
            Self::OpenAiResponses => "OpenAI responses",
            Self::OpenAiCompletions => "OpenAI completions",
            Self::OpenAiEmbeddings => "OpenAI embeddings",
            Self::GeminiGenerate => "Gemini",
            Self::BedrockInvoke => "Bedrock",
            Self::Mcp => "MCP JSON-RPC",
        }
    }
}

/// Which event grammar a response speaks (Bedrock's invoke speaks Anthropic's).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Grammar {
    Anthropic,
    Chat,
    Responses,
    Gemini,
    Converse,
    JsonRpc,
    Other,
}

fn grammar_of(api: Api, v: &Value) -> Grammar {
    match api {
        Api::AnthropicMessages | Api::AnthropicCountTokens => Grammar::Anthropic,
        Api::OpenAiChat | Api::OpenAiCompletions | Api::OpenAiEmbeddings => Grammar::Chat,
        Api::OpenAiResponses => Grammar::Responses,
        Api::GeminiGenerate => Grammar::Gemini,
        Api::Mcp => Grammar::JsonRpc,
        Api::BedrockInvoke => sniff(v).unwrap_or(Grammar::Other),
    }
}

/// Guess the grammar from one JSON value's shape.
fn sniff(v: &Value) -> Option<Grammar> {
    let ty = v.get("type").and_then(Value::as_str).unwrap_or("");
    if v.get("jsonrpc").is_some() {
        Some(Grammar::JsonRpc)
    } else if ty.starts_with("message")
        || ty.starts_with("content_block")
        || ty == "ping"
        || (ty == "error" && v.get("error").is_some_and(|e| e.get("type").is_some()))
    {
        Some(Grammar::Anthropic)
    } else if ty.starts_with("response.")
        || v.get("object").and_then(Value::as_str) == Some("response")
    {
        Some(Grammar::Responses)
    } else if v.get("choices").is_some()
        || v.get("object").is_some_and(|o| {
            o.as_str()
                .is_some_and(|o| o.starts_with("chat.") || o == "text_completion" || o == "list")
        })
    {
        Some(Grammar::Chat)
    } else if v.get("candidates").is_some() || v.get("usageMetadata").is_some() {
        Some(Grammar::Gemini)
    } else if v.get("output").is_some_and(|o| o.get("message").is_some())
        || v.get("stopReason").is_some()
        || v.get("contentBlockDelta").is_some()
        || v.get("metadata").is_some_and(|m| m.get("usage").is_some())
    {
        Some(Grammar::Converse)
    } else {
        None
    }
}

fn api_of(g: Grammar) -> Option<Api> {
    match g {
        Grammar::Anthropic => Some(Api::AnthropicMessages),
        Grammar::Chat => Some(Api::OpenAiChat),
        Grammar::Responses => Some(Api::OpenAiResponses),
        Grammar::Gemini => Some(Api::GeminiGenerate),
        Grammar::Converse => Some(Api::BedrockInvoke),
        Grammar::JsonRpc => Some(Api::Mcp),
        Grammar::Other => None,
    }
}

impl Message {
    /// A message whose API is already known (from the request).
    pub fn for_api(api: Api) -> Self {
        Self {
            api: Some(api),
            ..Self::default()
        }
    }

    /// Token usage as the TUI shows it (`in N · out M`), when any was reported.
    pub fn usage_label(&self) -> Option<String> {
        let u = &self.usage;
        if u.input.is_none() && u.output.is_none() {
            return None;
        }
        let show = |x: Option<u64>| x.map_or_else(|| "?".to_string(), |n| n.to_string());
        let mut s = format!("in {} · out {}", show(u.input), show(u.output));
        if let Some(n) = u.cache_read.filter(|n| *n > 0) {
            let _ = write!(s, " · cache read {n}");
        }
        if let Some(n) = u.cache_creation.filter(|n| *n > 0) {
            let _ = write!(s, " · cache write {n}");
        }
        if let Some(n) = u.reasoning.filter(|n| *n > 0) {
            let _ = write!(s, " · reasoning {n}");
        }
        Some(s)
    }

    /// Apply one SSE event; events of unknown shape are ignored.
    pub fn apply(&mut self, ev: &SseEvent) {
        if self.skippable(ev) {
            return;
        }
        let data = ev.data.trim();
        if data == "[DONE]" {
            self.done = true;
            return;
        }
        if !data.starts_with('{') && !data.starts_with('[') {
            return;
        }
        let Ok(v) = serde_json::from_str::<Value>(data) else {
            return;
        };
        self.apply_value(&v, ev.event.as_deref(), Some(ev.end));
    }

    /// When skimming: an event that can only add visible text once the first
    /// token is known (an Anthropic text or thinking delta, a Responses text
    /// delta, an OpenAI chat chunk without usage, tool calls, an error or a
    /// finish reason). A false "no" only costs a parse.
    fn skippable(&self, ev: &SseEvent) -> bool {
        if !self.skim || self.first_content.is_none() {
            return false;
        }
        let d = ev.data.as_str();
        match self.api {
            Some(Api::AnthropicMessages) => {
                ev.event.as_deref() == Some("content_block_delta")
                    && (d.contains("\"text_delta\"") || d.contains("\"thinking_delta\""))
                    && !d.contains("\"error\"")
            }
            Some(Api::OpenAiResponses) => matches!(
                ev.event.as_deref(),
                Some("response.output_text.delta" | "response.reasoning_summary_text.delta")
            ),
            Some(Api::OpenAiChat) => {
                !d.contains("\"usage\"")
                    && !d.contains("\"tool_calls\"")
                    && !d.contains("\"error\"")
                    && (d.contains("\"finish_reason\":null") || !d.contains("finish_reason"))
            }
            _ => false,
        }
    }

    /// Apply a whole (non-streamed) JSON body, or one element of a streamed JSON array.
    pub fn apply_json(&mut self, v: &Value, offset: Option<u64>) {
        if let (Some(Api::GeminiGenerate | Api::BedrockInvoke) | None, Value::Array(items)) =
            (self.api, v)
        {
            for item in items {
                self.apply_value(item, None, offset);
            }
            return;
        }
        self.apply_value(v, None, offset);
    }

    #[allow(clippy::single_match_else)]
    fn apply_value(&mut self, v: &Value, event: Option<&str>, offset: Option<u64>) {
        if let Value::Array(items) = v {
            // A JSON-RPC batch.
            for item in items {
                self.apply_value(item, event, offset);
            }
            return;
        }
        let grammar = match self.api {
            Some(api) => grammar_of(api, v),
            None => {
                let Some(g) = sniff(v) else {
                    return;
                };
                self.api = api_of(g);
                g
            }
        };
        let before = self.content_len();
        let ty = v
            .get("type")
            .and_then(Value::as_str)
            .or(event)
            .unwrap_or("");
        if ty == "error"
            || (v.get("error").is_some_and(|e| !e.is_null()) && grammar != Grammar::JsonRpc)
        {
            self.error = Some(error_text(v));
        }
        match grammar {
            Grammar::Anthropic => self.anthropic(ty, v),
            Grammar::Chat => self.openai_chat(v),
            Grammar::Responses => self.openai_responses(ty, v),
            Grammar::Gemini => self.gemini(v),
            Grammar::Converse => self.converse(v),
            Grammar::JsonRpc => self.jsonrpc(v),
            Grammar::Other => {}
        }
        if self.first_content.is_none() && self.content_len() > before {
            self.first_content = offset;
        }
    }

    /// Total content bytes so far (to tell when the first content arrived).
    fn content_len(&self) -> usize {
        self.blocks.iter().map(|b| b.text.len() + 1).sum()
    }

    fn block(&mut self, key: String, kind: BlockKind) -> &mut Block {
        let idx = *self.keys.entry(key).or_insert_with(|| {
            self.blocks.push(Block {
                kind,
                text: String::new(),
            });
            self.blocks.len() - 1
        });
        &mut self.blocks[idx]
    }

    fn push_text(&mut self, key: String, kind: BlockKind, text: &str) {
        if !text.is_empty() {
            self.block(key, kind).text.push_str(text);
        }
    }

    fn tool_call(&mut self, key: String, name: Option<&str>, id: Option<&str>, text: Option<&str>) {
        let block = self.block(
            key,
            BlockKind::ToolCall {
                name: String::new(),
                id: String::new(),
            },
        );
        if let BlockKind::ToolCall { name: n, id: i } = &mut block.kind {
            if let Some(x) = name.filter(|x| !x.is_empty()) {
                if n.is_empty() {
                    x.clone_into(n);
                } else if !n.ends_with(x) {
                    n.push_str(x);
                }
            }
            if let Some(x) = id.filter(|x| !x.is_empty()) {
                x.clone_into(i);
            }
        }
        if let Some(t) = text {
            block.text.push_str(t);
        }
    }

    fn set_model(&mut self, v: Option<&Value>) {
        if let Some(m) = v.and_then(Value::as_str).filter(|m| !m.is_empty()) {
            self.model = Some(m.to_string());
        }
    }

    fn set_id(&mut self, v: Option<&Value>) {
        if self.id.is_none() {
            if let Some(m) = v.and_then(Value::as_str).filter(|m| !m.is_empty()) {
                self.id = Some(m.to_string());
            }
        }
    }

    fn set_stop(&mut self, v: Option<&Value>) {
        if let Some(s) = v.and_then(Value::as_str).filter(|s| !s.is_empty()) {
            self.stop = Some(s.to_string());
        }
    }

    // Anthropic Messages: a JSON message, or message_start / content_block_* /
    // message_delta / message_stop events. Usage figures are cumulative: the
    // last one reported wins.
    fn anthropic(&mut self, ty: &str, v: &Value) {
        // A message body without its `type` (some gateways drop it) is still one.
        let ty = if ty.is_empty() && (v.get("content").is_some() || v.get("usage").is_some()) {
            "message"
        } else {
            ty
        };
        let index = v.get("index").and_then(Value::as_u64).unwrap_or(0);
        match ty {
            "message" => {
                self.set_id(v.get("id"));
                self.set_model(v.get("model"));
                self.set_stop(v.get("stop_reason"));
                self.anthropic_usage(v.get("usage"));
                if let Some(content) = v.get("content").and_then(Value::as_array) {
                    for (i, cb) in content.iter().enumerate() {
                        self.anthropic_block(i as u64, cb, true);
                    }
                }
                self.done = true;
            }
            "message_start" => {
                let m = v.get("message").unwrap_or(&Value::Null);
                self.set_id(m.get("id"));
                self.set_model(m.get("model"));
                self.anthropic_usage(m.get("usage"));
            }
            "content_block_start" => {
                let cb = v.get("content_block").unwrap_or(&Value::Null);
                self.anthropic_block(index, cb, false);
            }
            "content_block_delta" => {
                let d = v.get("delta").unwrap_or(&Value::Null);
                let key = format!("a{index}");
                match d.get("type").and_then(Value::as_str) {
                    Some("thinking_delta") => {
                        self.push_text(key, BlockKind::Thinking, str_of(d, "thinking"));
                    }
                    Some("input_json_delta") => {
                        self.tool_call(key, None, None, Some(str_of(d, "partial_json")));
                    }
                    Some("text_delta") => self.push_text(key, BlockKind::Text, str_of(d, "text")),
                    _ => {}
                }
            }
            "message_delta" => {
                self.set_stop(v.pointer("/delta/stop_reason"));
                self.anthropic_usage(v.get("usage"));
            }
            "message_stop" => self.done = true,
            // count_tokens answers `{"input_tokens": N}`: a count, not usage.
            _ => {}
        }
    }

    fn anthropic_block(&mut self, index: u64, cb: &Value, whole: bool) {
        let key = format!("a{index}");
        match cb.get("type").and_then(Value::as_str) {
            Some("tool_use" | "server_tool_use" | "mcp_tool_use") => {
                let input = cb
                    .get("input")
                    .filter(|i| whole || i.as_object().is_some_and(|o| !o.is_empty()));
                let text = input.map(Value::to_string);
                self.tool_call(
                    key,
                    cb.get("name").and_then(Value::as_str),
                    cb.get("id").and_then(Value::as_str),
                    text.as_deref(),
                );
            }
            Some("thinking") => self.push_text(key, BlockKind::Thinking, str_of(cb, "thinking")),
            Some("redacted_thinking") => {
                self.block(key, BlockKind::Thinking);
            }
            Some("text") => {
                if whole {
                    self.block(key.clone(), BlockKind::Text);
                }
                self.push_text(key, BlockKind::Text, str_of(cb, "text"));
            }
            _ => {}
        }
    }

    fn anthropic_usage(&mut self, u: Option<&Value>) {
        let Some(u) = u.filter(|u| u.is_object()) else {
            return;
        };
        let n = |k: &str| u.get(k).and_then(Value::as_u64);
        let usage = &mut self.usage;
        usage.input = n("input_tokens").or(usage.input);
        usage.output = n("output_tokens").or(usage.output);
        usage.cache_read = n("cache_read_input_tokens").or(usage.cache_read);
        usage.cache_creation = n("cache_creation_input_tokens").or(usage.cache_creation);
        if let Some(h) = u
            .pointer("/cache_creation/ephemeral_1h_input_tokens")
            .and_then(Value::as_u64)
        {
            usage.cache_creation_1h = Some(h);
        }
    }

    // OpenAI chat completions (and legacy completions, embeddings): a JSON
    // body or `chat.completion.chunk` events; usage comes once, in the last
    // chunk (`stream_options.include_usage`) or the body.
    fn openai_chat(&mut self, v: &Value) {
        self.set_id(v.get("id"));
        self.set_model(v.get("model"));
        self.openai_usage(v.get("usage"));
        let Some(choices) = v.get("choices").and_then(Value::as_array) else {
            return;
        };
        for choice in choices {
            let ci = choice.get("index").and_then(Value::as_u64).unwrap_or(0);
            if ci > 0 {
                // Only the first choice is reassembled (n > 1 is rare).
                continue;
            }
            let d = choice
                .get("delta")
                .or_else(|| choice.get("message"))
                .unwrap_or(&Value::Null);
            for field in ["reasoning_content", "reasoning"] {
                if let Some(t) = d.get(field).and_then(Value::as_str) {
                    self.push_text("c:think".into(), BlockKind::Thinking, t);
                }
            }
            if let Some(t) = d.get("content").and_then(Value::as_str) {
                self.push_text("c:text".into(), BlockKind::Text, t);
            }
            if let Some(t) = d.get("refusal").and_then(Value::as_str) {
                self.push_text("c:text".into(), BlockKind::Text, t);
            }
            if let Some(t) = choice.get("text").and_then(Value::as_str) {
                self.push_text("c:text".into(), BlockKind::Text, t);
            }
            if let Some(calls) = d.get("tool_calls").and_then(Value::as_array) {
                for (n, call) in calls.iter().enumerate() {
                    let i = call
                        .get("index")
                        .and_then(Value::as_u64)
                        .unwrap_or(n as u64);
                    let args = call.pointer("/function/arguments");
                    let text = match args {
                        Some(Value::String(s)) => Some(s.clone()),
                        Some(other) if !other.is_null() => Some(other.to_string()),
                        _ => None,
                    };
                    self.tool_call(
                        format!("c:tool{i}"),
                        call.pointer("/function/name").and_then(Value::as_str),
                        call.get("id").and_then(Value::as_str),
                        text.as_deref(),
                    );
                }
            }
            self.set_stop(choice.get("finish_reason"));
        }
    }

    fn openai_usage(&mut self, u: Option<&Value>) {
        let Some(u) = u.filter(|u| u.is_object()) else {
            return;
        };
        let n = |p: &str| u.pointer(p).and_then(Value::as_u64);
        let prompt = n("/prompt_tokens").or_else(|| n("/input_tokens"));
        let cached = n("/prompt_tokens_details/cached_tokens")
            .or_else(|| n("/input_tokens_details/cached_tokens"))
            .or_else(|| n("/cache_read_input_tokens"));
        // LiteLLM reports Anthropic cache writes beside the OpenAI fields.
        let written = n("/cache_creation_input_tokens")
            .or_else(|| n("/prompt_tokens_details/cache_creation_tokens"));
        let usage = &mut self.usage;
        if let Some(p) = prompt {
            usage.input = Some(p.saturating_sub(cached.unwrap_or(0) + written.unwrap_or(0)));
        }
        usage.output = n("/completion_tokens")
            .or_else(|| n("/output_tokens"))
            .or(usage.output);
        usage.cache_read = cached.or(usage.cache_read);
        usage.cache_creation = written.or(usage.cache_creation);
        usage.reasoning = n("/completion_tokens_details/reasoning_tokens")
            .or_else(|| n("/output_tokens_details/reasoning_tokens"))
            .or(usage.reasoning);
    }

    // OpenAI Responses: a JSON `response` object, or `response.*` events; the
    // final `response.completed` carries the whole response with its usage.
    fn openai_responses(&mut self, ty: &str, v: &Value) {
        let out = v.get("output_index").and_then(Value::as_u64).unwrap_or(0);
        let key = format!("r{out}");
        let delta = v.get("delta").and_then(Value::as_str).unwrap_or("");
        match ty {
            "response.created" | "response.in_progress" => {
                let r = v.get("response").unwrap_or(&Value::Null);
                self.set_id(r.get("id"));
                self.set_model(r.get("model"));
            }
            "response.output_item.added" | "response.output_item.done" => {
                let item = v.get("item").unwrap_or(&Value::Null);
                self.responses_item(&key, item, ty.ends_with("added"));
            }
            "response.output_text.delta" | "response.refusal.delta" => {
                self.push_text(key, BlockKind::Text, delta);
            }
            "response.reasoning_summary_text.delta" | "response.reasoning_text.delta" => {
                self.push_text(key, BlockKind::Thinking, delta);
            }
            "response.function_call_arguments.delta" | "response.custom_tool_call_input.delta" => {
                self.tool_call(key, None, None, Some(delta));
            }
            "response.completed" | "response.failed" | "response.incomplete" => {
                let r = v.get("response").unwrap_or(&Value::Null);
                self.responses_final(r, false);
                self.done = true;
            }
            _ if v.get("object").and_then(Value::as_str) == Some("response") => {
                self.responses_final(v, true);
                self.done = true;
            }
            _ => {}
        }
    }

    fn responses_item(&mut self, key: &str, item: &Value, added: bool) {
        match item.get("type").and_then(Value::as_str) {
            Some("function_call" | "custom_tool_call" | "mcp_call") => {
                let name = item.get("name").and_then(Value::as_str);
                let id = item
                    .get("call_id")
                    .or_else(|| item.get("id"))
                    .and_then(Value::as_str);
                let args = item
                    .get("arguments")
                    .or_else(|| item.get("input"))
                    .and_then(Value::as_str)
                    .unwrap_or("");
                let exists = self.keys.contains_key(key);
                // `done` repeats the whole arguments: take them only if none streamed.
                let text = (added || !exists || self.block_text(key).is_empty()).then_some(args);
                self.tool_call(key.to_string(), name, id, text);
            }
            Some("reasoning") => {
                self.block(key.to_string(), BlockKind::Thinking);
            }
            _ => {}
        }
    }

    fn block_text(&self, key: &str) -> &str {
        self.keys
            .get(key)
            .and_then(|i| self.blocks.get(*i))
            .map_or("", |b| b.text.as_str())
    }

    fn responses_final(&mut self, r: &Value, whole: bool) {
        self.set_id(r.get("id"));
        self.set_model(r.get("model"));
        let status = r.get("status").and_then(Value::as_str);
        let reason = r
            .pointer("/incomplete_details/reason")
            .and_then(Value::as_str);
        if let Some(s) = reason.or(status) {
            self.stop = Some(s.to_string());
        }
        if let Some(e) = r.get("error").filter(|e| !e.is_null()) {
            self.error = Some(error_text(&serde_json::json!({ "error": e })));
        }
        self.openai_usage(r.get("usage"));
        if let Some(items) = r.get("output").and_then(Value::as_array) {
            for (i, item) in items.iter().enumerate() {
                let key = format!("r{i}");
                if whole {
                    if item.get("type").and_then(Value::as_str) == Some("message") {
                        for part in item
                            .get("content")
                            .and_then(Value::as_array)
                            .into_iter()
                            .flatten()
                        {
                            self.push_text(key.clone(), BlockKind::Text, str_of(part, "text"));
                        }
                        continue;
                    }
                    self.responses_item(&key, item, true);
                } else if matches!(
                    item.get("type").and_then(Value::as_str),
                    Some("function_call" | "custom_tool_call" | "mcp_call")
                ) {
                    self.responses_item(&key, item, false);
                }
            }
        }
    }

    // Gemini generateContent: one JSON body, or chunks of the same shape
    // (SSE with `alt=sse`, else a JSON array); usageMetadata is cumulative.
    fn gemini(&mut self, v: &Value) {
        self.set_id(v.get("responseId"));
        self.set_model(v.get("modelVersion"));
        if let Some(c) = v.pointer("/candidates/0") {
            for (i, part) in c
                .pointer("/content/parts")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .enumerate()
            {
                if let Some(fc) = part.get("functionCall") {
                    let name = fc.get("name").and_then(Value::as_str);
                    let id = fc.get("id").and_then(Value::as_str);
                    let args = fc.get("args").map(Value::to_string);
                    let key = format!("g:tool{}:{i}", self.blocks.len());
                    self.tool_call(key, name, id, args.as_deref());
                } else if let Some(t) = part.get("text").and_then(Value::as_str) {
                    if part.get("thought").and_then(Value::as_bool) == Some(true) {
                        self.push_text("g:think".into(), BlockKind::Thinking, t);
                    } else {
                        self.push_text("g:text".into(), BlockKind::Text, t);
                    }
                }
            }
            self.set_stop(c.get("finishReason"));
        }
        if let Some(u) = v.get("usageMetadata").filter(|u| u.is_object()) {
            let n = |k: &str| u.get(k).and_then(Value::as_u64);
            let cached = n("cachedContentTokenCount");
            let thoughts = n("thoughtsTokenCount");
            let usage = &mut self.usage;
            if let Some(p) = n("promptTokenCount") {
                let tool = n("toolUsePromptTokenCount").unwrap_or(0);
                usage.input = Some((p + tool).saturating_sub(cached.unwrap_or(0)));
            }
            if let Some(c) = n("candidatesTokenCount") {
                usage.output = Some(c + thoughts.unwrap_or(0));
            } else if let Some(t) = thoughts {
                usage.output = Some(t);
            }
            usage.cache_read = cached.or(usage.cache_read);
            usage.reasoning = thoughts.or(usage.reasoning);
        }
    }

    // Bedrock Converse: `{output:{message}, stopReason, usage}` or its stream events.
    fn converse(&mut self, v: &Value) {
        let u = v
            .get("usage")
            .or_else(|| v.pointer("/metadata/usage"))
            .filter(|u| u.is_object());
        if let Some(u) = u {
            let n = |k: &str| u.get(k).and_then(Value::as_u64);
            let usage = &mut self.usage;
            usage.input = n("inputTokens").or(usage.input);
            usage.output = n("outputTokens").or(usage.output);
            usage.cache_read = n("cacheReadInputTokens").or(usage.cache_read);
            usage.cache_creation = n("cacheWriteInputTokens").or(usage.cache_creation);
        }
        self.set_stop(
            v.get("stopReason")
                .or_else(|| v.pointer("/messageStop/stopReason")),
        );
        for (i, block) in v
            .pointer("/output/message/content")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .enumerate()
        {
            let key = format!("b{i}");
            if let Some(t) = block.get("text").and_then(Value::as_str) {
                self.push_text(key, BlockKind::Text, t);
            } else if let Some(tu) = block.get("toolUse") {
                let input = tu.get("input").map(Value::to_string);
                self.tool_call(
                    key,
                    tu.get("name").and_then(Value::as_str),
                    tu.get("toolUseId").and_then(Value::as_str),
                    input.as_deref(),
                );
            }
        }
        if let Some(d) = v.get("contentBlockDelta") {
            let i = d
                .get("contentBlockIndex")
                .and_then(Value::as_u64)
                .unwrap_or(0);
            if let Some(t) = d.pointer("/delta/text").and_then(Value::as_str) {
                self.push_text(format!("b{i}"), BlockKind::Text, t);
            } else if let Some(t) = d.pointer("/delta/toolUse/input").and_then(Value::as_str) {
                self.tool_call(format!("b{i}"), None, None, Some(t));
            }
        }
        if let Some(s) = v.pointer("/contentBlockStart/start/toolUse") {
            let i = v
                .pointer("/contentBlockStart/contentBlockIndex")
                .and_then(Value::as_u64)
                .unwrap_or(0);
            self.tool_call(
                format!("b{i}"),
                s.get("name").and_then(Value::as_str),
                s.get("toolUseId").and_then(Value::as_str),
                None,
            );
        }
    }

    fn jsonrpc(&mut self, v: &Value) {
        if self.rpc.len() < MAX_RPC {
            if let Some(m) = rpc_message(v) {
                self.rpc.push(m);
            }
        }
    }
}

/// One JSON-RPC 2.0 message, summarised; `None` when `v` is not one.
pub fn rpc_message(v: &Value) -> Option<Mcp> {
    if v.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
        return None;
    }
    let method = v.get("method").and_then(Value::as_str).map(str::to_string);
    let id = match v.get("id") {
        Some(Value::String(s)) => Some(s.clone()),
        Some(Value::Number(n)) => Some(n.to_string()),
        _ => None,
    };
    let kind = match (&method, &id) {
        (Some(_), Some(_)) => McpKind::Request,
        (Some(_), None) => McpKind::Notification,
        (None, _) => McpKind::Response,
    };
    let tool = (method.as_deref() == Some("tools/call"))
        .then(|| v.pointer("/params/name").and_then(Value::as_str))
        .flatten()
        .map(str::to_string);
    let is_error = v.get("error").is_some_and(|e| !e.is_null())
        || v.pointer("/result/isError").and_then(Value::as_bool) == Some(true);
    Some(Mcp {
        method,
        id,
        kind,
        tool,
        is_error,
    })
}

/// `type: message` of an API error object, whatever the provider.
fn error_text(v: &Value) -> String {
    let e = v.get("error").unwrap_or(v);
    let message = e
        .get("message")
        .and_then(Value::as_str)
        .or_else(|| e.as_str());
    let kind = e
        .get("type")
        .or_else(|| e.get("status"))
        .or_else(|| e.get("code"))
        .and_then(|k| match k {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        });
    let text = match (kind, message) {
        (Some(k), Some(m)) => format!("{k}: {m}"),
        (None, Some(m)) => m.to_string(),
        (Some(k), None) => k,
        (None, None) => e.to_string(),
    };
    text.chars().take(500).collect()
}

fn str_of<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or("")
}

/// Parser and message together: the state behind a live SSE body view.
#[derive(Debug, Default, Clone)]
pub struct Stream {
    /// The events so far.
    pub parser: SseParser,
    /// The message they add up to.
    pub message: Message,
}

impl Stream {
    /// A stream whose API is known from the request.
    pub fn for_api(api: Option<Api>) -> Self {
        Self {
            parser: SseParser::default(),
            message: Message {
                api,
                ..Message::default()
            },
        }
    }

    /// Feed the next slice, keeping its events; the message follows them.
    pub fn feed(&mut self, bytes: &[u8]) {
        let n = self.parser.feed(bytes);
        let start = self.parser.events.len() - n;
        for ev in &self.parser.events[start..] {
            self.message.apply(ev);
        }
    }

    /// Feed the next slice without keeping its events (analysis: O(1) memory
    /// beyond the message).
    pub fn feed_quiet(&mut self, bytes: &[u8]) {
        let message = &mut self.message;
        message.skim = true;
        self.parser.feed_with(bytes, |ev| message.apply(&ev));
    }
}
