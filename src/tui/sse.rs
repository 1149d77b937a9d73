//! Server-sent events: an incremental parser, and the reassembly of Anthropic
//! Messages, OpenAI chat completions and OpenAI responses streams into the
//! message the model wrote (text, thinking, tool calls with their input).
//!
//! Both are fed slice by slice as `ResponseChunk` events arrive, so a stream
//! can be watched while it is still running.

use std::collections::HashMap;

use serde_json::Value;

/// One dispatched event: its `event:` name (if any) and its joined `data:` lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    /// The `event:` field.
    pub event: Option<String>,
    /// The `data:` lines joined with `\n`.
    pub data: String,
}

/// Incremental SSE parser: feed bytes in any slicing, read complete events.
#[derive(Debug, Default, Clone)]
pub struct SseParser {
    line: Vec<u8>,
    after_cr: bool,
    event: Option<String>,
    data: Option<String>,
    /// Events dispatched so far.
    pub events: Vec<SseEvent>,
    /// Bytes fed so far.
    pub consumed: usize,
}

impl SseParser {
    /// Feed the next slice of the stream; returns how many events it completed.
    pub fn feed(&mut self, bytes: &[u8]) -> usize {
        let before = self.events.len();
        self.consumed += bytes.len();
        for &b in bytes {
            match b {
                b'\n' if self.after_cr => self.after_cr = false,
                b'\n' | b'\r' => {
                    self.after_cr = b == b'\r';
                    let line = std::mem::take(&mut self.line);
                    self.line_done(&line);
                }
                _ => {
                    self.after_cr = false;
                    self.line.push(b);
                }
            }
        }
        self.events.len() - before
    }

    /// The event still being received (no blank line yet), if it has data.
    pub fn pending(&self) -> Option<SseEvent> {
        let mut data = self.data.clone();
        if !self.line.is_empty() {
            if let Some((field, value)) = split_field(&self.line) {
                if field == "data" {
                    let d = data.get_or_insert_with(String::new);
                    if !d.is_empty() {
                        d.push('\n');
                    }
                    d.push_str(&value);
                }
            }
        }
        data.map(|data| SseEvent {
            event: self.event.clone(),
            data,
        })
    }

    fn line_done(&mut self, line: &[u8]) {
        if line.is_empty() {
            if let Some(data) = self.data.take() {
                self.events.push(SseEvent {
                    event: self.event.take(),
                    data,
                });
            }
            self.event = None;
            return;
        }
        let Some((field, value)) = split_field(line) else {
            return;
        };
        match field.as_str() {
            "event" => self.event = Some(value),
            "data" => {
                let d = self.data.get_or_insert_with(String::new);
                if !d.is_empty() {
                    d.push('\n');
                }
                d.push_str(&value);
            }
            _ => {}
        }
    }
}

fn split_field(line: &[u8]) -> Option<(String, String)> {
    if line.first() == Some(&b':') {
        return None;
    }
    let text = String::from_utf8_lossy(line);
    let (field, value) = text.split_once(':').unwrap_or((&text, ""));
    let value = value.strip_prefix(' ').unwrap_or(value);
    Some((field.to_string(), value.to_string()))
}

/// Which streaming API produced the events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    /// Anthropic Messages (`message_start`, `content_block_delta`, …).
    Anthropic,
    /// OpenAI chat completions (`chat.completion.chunk`).
    OpenAiChat,
    /// OpenAI responses (`response.output_text.delta`, …).
    OpenAiResponses,
}

impl Api {
    /// Name shown in the message header.
    pub fn label(self) -> &'static str {
        match self {
            Self::Anthropic => "Anthropic Messages",
            Self::OpenAiChat => "OpenAI chat",
            Self::OpenAiResponses => "OpenAI responses",
        }
    }
}

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

/// The message reassembled from a stream's events.
#[derive(Debug, Clone, Default)]
pub struct Message {
    /// `None` until an event identifies the API.
    pub api: Option<Api>,
    /// The model the stream names.
    pub model: Option<String>,
    /// Content blocks in stream order.
    pub blocks: Vec<Block>,
    /// Stop / finish reason or final status.
    pub stop: Option<String>,
    /// Token usage, when the stream reports it (`in N · out M`).
    pub usage: Option<String>,
    input_tokens: Option<u64>,
    output_tokens: Option<u64>,
    /// An error event's message.
    pub error: Option<String>,
    /// True once the stream said it is done.
    pub done: bool,
    keys: HashMap<String, usize>,
}

impl Message {
    /// Apply one event; events of unknown shape are ignored.
    pub fn apply(&mut self, ev: &SseEvent) {
        if ev.data.trim() == "[DONE]" {
            self.done = true;
            return;
        }
        let Ok(v) = serde_json::from_str::<Value>(&ev.data) else {
            return;
        };
        let ty = v
            .get("type")
            .and_then(Value::as_str)
            .or(ev.event.as_deref())
            .unwrap_or("")
            .to_string();
        if self.api.is_none() {
            self.api = if ty.starts_with("message_") || ty.starts_with("content_block") {
                Some(Api::Anthropic)
            } else if ty.starts_with("response.") {
                Some(Api::OpenAiResponses)
            } else if v.get("choices").is_some() {
                Some(Api::OpenAiChat)
            } else {
                None
            };
        }
        if ty == "error" {
            self.error = v
                .pointer("/error/message")
                .and_then(Value::as_str)
                .map(str::to_string)
                .or_else(|| Some(v.to_string()));
            return;
        }
        match self.api {
            Some(Api::Anthropic) => self.anthropic(&ty, &v),
            Some(Api::OpenAiChat) => self.openai_chat(&v),
            Some(Api::OpenAiResponses) => self.openai_responses(&ty, &v),
            None => {}
        }
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

    /// Merge a usage object: later events (Anthropic `message_delta`) carry
    /// only some counts, so each count keeps its last known value.
    fn count_usage(&mut self, u: Option<&Value>) {
        let Some(u) = u.and_then(Value::as_object) else {
            return;
        };
        let get = |names: &[&str]| names.iter().find_map(|n| u.get(*n).and_then(Value::as_u64));
        self.input_tokens = get(&["input_tokens", "prompt_tokens"]).or(self.input_tokens);
        self.output_tokens = get(&["output_tokens", "completion_tokens"]).or(self.output_tokens);
        if self.input_tokens.is_none() && self.output_tokens.is_none() {
            return;
        }
        let show = |x: Option<u64>| x.map_or_else(|| "?".to_string(), |n| n.to_string());
        self.usage = Some(format!(
            "in {} · out {}",
            show(self.input_tokens),
            show(self.output_tokens)
        ));
    }

    fn anthropic(&mut self, ty: &str, v: &Value) {
        let index = v.get("index").and_then(Value::as_u64).unwrap_or(0);
        match ty {
            "message_start" => {
                self.model = str_at(v, "/message/model");
                self.count_usage(v.pointer("/message/usage"));
            }
            "content_block_start" => {
                let cb = v.get("content_block").unwrap_or(&Value::Null);
                let kind = match cb.get("type").and_then(Value::as_str) {
                    Some("tool_use" | "server_tool_use") => BlockKind::ToolCall {
                        name: str_at(cb, "/name").unwrap_or_default(),
                        id: str_at(cb, "/id").unwrap_or_default(),
                    },
                    Some("thinking" | "redacted_thinking") => BlockKind::Thinking,
                    _ => BlockKind::Text,
                };
                let initial = str_at(cb, "/text")
                    .or_else(|| str_at(cb, "/thinking"))
                    .unwrap_or_default();
                self.block(format!("a{index}"), kind)
                    .text
                    .push_str(&initial);
            }
            "content_block_delta" => {
                let d = v.get("delta").unwrap_or(&Value::Null);
                let (kind, text) = match d.get("type").and_then(Value::as_str) {
                    Some("thinking_delta") => (BlockKind::Thinking, str_at(d, "/thinking")),
                    Some("input_json_delta") => (
                        BlockKind::ToolCall {
                            name: String::new(),
                            id: String::new(),
                        },
                        str_at(d, "/partial_json"),
                    ),
                    Some("text_delta") => (BlockKind::Text, str_at(d, "/text")),
                    _ => return,
                };
                if let Some(text) = text {
                    self.block(format!("a{index}"), kind).text.push_str(&text);
                }
            }
            "message_delta" => {
                if let Some(s) = str_at(v, "/delta/stop_reason") {
                    self.stop = Some(s);
                }
                self.count_usage(v.get("usage"));
            }
            "message_stop" => self.done = true,
            _ => {}
        }
    }

    fn openai_chat(&mut self, v: &Value) {
        if self.model.is_none() {
            self.model = str_at(v, "/model");
        }
        self.count_usage(v.get("usage"));
        let Some(choice) = v.pointer("/choices/0") else {
            return;
        };
        let d = choice.get("delta").unwrap_or(&Value::Null);
        for field in ["reasoning_content", "reasoning"] {
            if let Some(t) = d.get(field).and_then(Value::as_str) {
                self.block("c:think".into(), BlockKind::Thinking)
                    .text
                    .push_str(t);
            }
        }
        if let Some(t) = d.get("content").and_then(Value::as_str) {
            self.block("c:text".into(), BlockKind::Text)
                .text
                .push_str(t);
        }
        if let Some(calls) = d.get("tool_calls").and_then(Value::as_array) {
            for call in calls {
                let i = call.get("index").and_then(Value::as_u64).unwrap_or(0);
                let block = self.block(
                    format!("c:tool{i}"),
                    BlockKind::ToolCall {
                        name: String::new(),
                        id: String::new(),
                    },
                );
                if let BlockKind::ToolCall { name, id } = &mut block.kind {
                    if let Some(n) = str_at(call, "/function/name") {
                        name.push_str(&n);
                    }
                    if let Some(x) = str_at(call, "/id") {
                        *id = x;
                    }
                }
                if let Some(args) = str_at(call, "/function/arguments") {
                    block.text.push_str(&args);
                }
            }
        }
        if let Some(r) = str_at(choice, "/finish_reason") {
            self.stop = Some(r);
        }
    }

    fn openai_responses(&mut self, ty: &str, v: &Value) {
        let out = v.get("output_index").and_then(Value::as_u64).unwrap_or(0);
        let delta = str_at(v, "/delta");
        match ty {
            "response.created" | "response.in_progress" => {
                self.model = str_at(v, "/response/model").or(self.model.take());
            }
            "response.output_item.added" => {
                let item = v.get("item").unwrap_or(&Value::Null);
                match item.get("type").and_then(Value::as_str) {
                    Some("function_call") => {
                        let kind = BlockKind::ToolCall {
                            name: str_at(item, "/name").unwrap_or_default(),
                            id: str_at(item, "/call_id").unwrap_or_default(),
                        };
                        let text = str_at(item, "/arguments").unwrap_or_default();
                        self.block(format!("r{out}"), kind).text.push_str(&text);
                    }
                    Some("reasoning") => {
                        self.block(format!("r{out}"), BlockKind::Thinking);
                    }
                    _ => {}
                }
            }
            "response.output_text.delta" | "response.refusal.delta" => {
                if let Some(d) = delta {
                    self.block(format!("r{out}"), BlockKind::Text)
                        .text
                        .push_str(&d);
                }
            }
            "response.reasoning_summary_text.delta" | "response.reasoning_text.delta" => {
                if let Some(d) = delta {
                    self.block(format!("r{out}"), BlockKind::Thinking)
                        .text
                        .push_str(&d);
                }
            }
            "response.function_call_arguments.delta" => {
                if let Some(d) = delta {
                    let kind = BlockKind::ToolCall {
                        name: String::new(),
                        id: String::new(),
                    };
                    self.block(format!("r{out}"), kind).text.push_str(&d);
                }
            }
            "response.completed" | "response.failed" | "response.incomplete" => {
                self.stop = str_at(v, "/response/status");
                self.count_usage(v.pointer("/response/usage"));
                self.done = true;
            }
            _ => {}
        }
    }
}

fn str_at(v: &Value, pointer: &str) -> Option<String> {
    v.pointer(pointer)
        .and_then(Value::as_str)
        .map(str::to_string)
}

/// Parser and message together: the state behind the SSE body view.
#[derive(Debug, Default, Clone)]
pub struct Stream {
    /// The events so far.
    pub parser: SseParser,
    /// The message they add up to.
    pub message: Message,
}

impl Stream {
    /// Feed the next slice; the message follows the completed events.
    pub fn feed(&mut self, bytes: &[u8]) {
        let n = self.parser.feed(bytes);
        let start = self.parser.events.len() - n;
        for i in start..self.parser.events.len() {
            let ev = self.parser.events[i].clone();
            self.message.apply(&ev);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A real-shaped Anthropic stream with thinking, text and a tool call.
    pub const ANTHROPIC: &str = concat!(
        "event: message_start\n",
        "data: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"model\":\"claude-sonnet-4-5\",\"usage\":{\"input_tokens\":12,\"output_tokens\":1}}}\n\n",
        "event: content_block_start\n",
        "data: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"thinking\",\"thinking\":\"\"}}\n\n",
        "event: content_block_delta\n",
        "data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"thinking_delta\",\"thinking\":\"User wants weather.\"}}\n\n",
        "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n",
        "event: content_block_start\n",
        "data: {\"type\":\"content_block_start\",\"index\":1,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n",
        "event: content_block_delta\n",
        "data: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"text_delta\",\"text\":\"Let me \"}}\n\n",
        "event: content_block_delta\n",
        "data: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"text_delta\",\"text\":\"check.\"}}\n\n",
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

    #[test]
    fn parser_handles_any_slicing_and_line_endings() {
        let text = "event: a\r\ndata: 1\r\ndata: 2\r\n\r\n: comment\n\ndata:x\n\ndata: tail";
        let whole = {
            let mut p = SseParser::default();
            p.feed(text.as_bytes());
            p
        };
        assert_eq!(
            whole.events,
            vec![
                SseEvent {
                    event: Some("a".into()),
                    data: "1\n2".into()
                },
                SseEvent {
                    event: None,
                    data: "x".into()
                },
            ]
        );
        assert_eq!(whole.pending().map(|e| e.data), Some("tail".into()));
        for cut in 0..text.len() {
            let mut p = SseParser::default();
            p.feed(&text.as_bytes()[..cut]);
            p.feed(&text.as_bytes()[cut..]);
            assert_eq!(p.events, whole.events, "cut at {cut}");
        }
    }

    #[test]
    fn anthropic_stream_reassembles_while_arriving() {
        let mut s = Stream::default();
        let bytes = ANTHROPIC.as_bytes();
        s.feed(&bytes[..bytes.len() / 2]);
        assert_eq!(s.message.api, Some(Api::Anthropic));
        assert!(!s.message.done);
        s.feed(&bytes[bytes.len() / 2..]);
        let m = &s.message;
        assert_eq!(m.model.as_deref(), Some("claude-sonnet-4-5"));
        assert_eq!(m.blocks.len(), 3);
        assert_eq!(m.blocks[0].kind, BlockKind::Thinking);
        assert_eq!(m.blocks[1].text, "Let me check.");
        assert_eq!(
            m.blocks[2].kind,
            BlockKind::ToolCall {
                name: "get_weather".into(),
                id: "toolu_01".into()
            }
        );
        assert_eq!(m.blocks[2].text, "{\"city\": \"Paris\"}");
        assert_eq!(m.stop.as_deref(), Some("tool_use"));
        assert_eq!(m.usage.as_deref(), Some("in 12 · out 42"));
        assert!(m.done);
    }

    #[test]
    fn openai_chat_stream() {
        let text = concat!(
            "data: {\"object\":\"chat.completion.chunk\",\"model\":\"gpt-4o\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"Hel\"}}]}\n\n",
            "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"lo\"}}]}\n\n",
            "data: {\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"id\":\"call_1\",\"function\":{\"name\":\"f\",\"arguments\":\"{\\\"a\\\"\"}}]}}]}\n\n",
            "data: {\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\":1}\"}}]},\"finish_reason\":\"tool_calls\"}],\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":7}}\n\n",
            "data: [DONE]\n\n"
        );
        let mut s = Stream::default();
        s.feed(text.as_bytes());
        let m = &s.message;
        assert_eq!(m.api, Some(Api::OpenAiChat));
        assert_eq!(m.model.as_deref(), Some("gpt-4o"));
        assert_eq!(m.blocks[0].text, "Hello");
        assert_eq!(m.blocks[1].text, "{\"a\":1}");
        assert_eq!(m.stop.as_deref(), Some("tool_calls"));
        assert_eq!(m.usage.as_deref(), Some("in 5 · out 7"));
        assert!(m.done);
    }

    #[test]
    fn openai_responses_stream() {
        let text = concat!(
            "event: response.created\ndata: {\"type\":\"response.created\",\"response\":{\"model\":\"gpt-5\"}}\n\n",
            "event: response.output_item.added\ndata: {\"type\":\"response.output_item.added\",\"output_index\":0,\"item\":{\"type\":\"reasoning\"}}\n\n",
            "event: response.reasoning_summary_text.delta\ndata: {\"type\":\"response.reasoning_summary_text.delta\",\"output_index\":0,\"delta\":\"hmm\"}\n\n",
            "event: response.output_text.delta\ndata: {\"type\":\"response.output_text.delta\",\"output_index\":1,\"delta\":\"Hi\"}\n\n",
            "event: response.output_item.added\ndata: {\"type\":\"response.output_item.added\",\"output_index\":2,\"item\":{\"type\":\"function_call\",\"name\":\"g\",\"call_id\":\"c9\",\"arguments\":\"\"}}\n\n",
            "event: response.function_call_arguments.delta\ndata: {\"type\":\"response.function_call_arguments.delta\",\"output_index\":2,\"delta\":\"{}\"}\n\n",
            "event: response.completed\ndata: {\"type\":\"response.completed\",\"response\":{\"status\":\"completed\",\"usage\":{\"input_tokens\":3,\"output_tokens\":4}}}\n\n",
        );
        let mut s = Stream::default();
        s.feed(text.as_bytes());
        let m = &s.message;
        assert_eq!(m.api, Some(Api::OpenAiResponses));
        assert_eq!(m.model.as_deref(), Some("gpt-5"));
        assert_eq!(m.blocks.len(), 3);
        assert_eq!(m.blocks[0].text, "hmm");
        assert_eq!(m.blocks[1].text, "Hi");
        assert_eq!(m.blocks[2].text, "{}");
        assert_eq!(m.stop.as_deref(), Some("completed"));
        assert!(m.done);
    }
}
