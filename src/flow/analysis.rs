//! The data of an exchange's LLM analysis (what `llm::analyze` finds): the
//! types only, so a [`super::Flow`] can carry its [`Analysis`] while the
//! analysis itself (in `llm/`) depends on the flow, not the other way round.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The wire API an exchange speaks, found from method, path and body shape
/// (never from the host alone, so a gateway on localhost is recognised too).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub enum Api {
    /// `POST /v1/messages` (Anthropic Messages).
    #[default]
    #[serde(rename = "anthropic.messages")]
    AnthropicMessages,
    /// `POST /v1/messages/count_tokens`.
    #[serde(rename = "anthropic.count_tokens")]
    AnthropicCountTokens,
    /// `POST /v1/chat/completions`.
    #[serde(rename = "openai.chat")]
    OpenAiChat,
    /// `POST /v1/responses`.
    #[serde(rename = "openai.responses")]
    OpenAiResponses,
    /// `POST /v1/completions` (legacy text completions).
    #[serde(rename = "openai.completions")]
    OpenAiCompletions,
    /// `POST /v1/embeddings`.
    #[serde(rename = "openai.embeddings")]
    OpenAiEmbeddings,
    /// Gemini `…:generateContent` / `…:streamGenerateContent`.
    #[serde(rename = "gemini.generate")]
    GeminiGenerate,
    /// Bedrock `/model/{id}/invoke` (and `invoke-with-response-stream`, `converse`).
    #[serde(rename = "bedrock.invoke")]
    BedrockInvoke,
    /// A JSON-RPC 2.0 exchange (Model Context Protocol).
    #[serde(rename = "mcp")]
    Mcp,
}

impl Api {
    /// Every API, in display order.
    pub const ALL: [Self; 9] = [
        Self::AnthropicMessages,
        Self::AnthropicCountTokens,
        Self::OpenAiChat,
        Self::OpenAiResponses,
        Self::OpenAiCompletions,
        Self::OpenAiEmbeddings,
        Self::GeminiGenerate,
        Self::BedrockInvoke,
        Self::Mcp,
    ];

    /// The dotted name stored in the `api` column and matched by `~api`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::AnthropicMessages => "anthropic.messages",
            Self::AnthropicCountTokens => "anthropic.count_tokens",
            Self::OpenAiChat => "openai.chat",
            Self::OpenAiResponses => "openai.responses",
            Self::OpenAiCompletions => "openai.completions",
            Self::OpenAiEmbeddings => "openai.embeddings",
            Self::GeminiGenerate => "gemini.generate",
            Self::BedrockInvoke => "bedrock.invoke",
            Self::Mcp => "mcp",
        }
    }

    /// Parse the stored name.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.as_str() == s)
    }
}

impl std::fmt::Display for Api {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Token counts, normalised across providers so they add up and can be priced:
/// `input` excludes the cached parts (OpenAI's `prompt_tokens` minus
/// `cached_tokens`; Gemini's `promptTokenCount` minus `cachedContentTokenCount`),
/// so `input + cache_read + cache_creation` is the whole prompt; `output`
/// includes `reasoning` (as every provider bills it). `None` means the
/// exchange did not report that figure (not zero).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Usage {
    /// Fresh (uncached) input tokens.
    pub input: Option<u64>,
    /// Output tokens, reasoning included.
    pub output: Option<u64>,
    /// Input tokens read from the prompt cache.
    pub cache_read: Option<u64>,
    /// Input tokens written to the prompt cache (Anthropic `cache_creation_input_tokens`).
    pub cache_creation: Option<u64>,
    /// The part of `cache_creation` written with the 1-hour TTL (priced higher).
    pub cache_creation_1h: Option<u64>,
    /// The reasoning / thinking part of `output`, when reported.
    pub reasoning: Option<u64>,
}

impl Usage {
    /// True when no figure was reported at all.
    pub fn is_empty(&self) -> bool {
        self.input.is_none()
            && self.output.is_none()
            && self.cache_read.is_none()
            && self.cache_creation.is_none()
            && self.cache_creation_1h.is_none()
            && self.reasoning.is_none()
    }

    /// The whole prompt: fresh input plus cache reads and writes.
    pub fn prompt_total(&self) -> u64 {
        self.input.unwrap_or(0) + self.cache_read.unwrap_or(0) + self.cache_creation.unwrap_or(0)
    }
}

/// One tool call the model made in its response.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ToolCall {
    /// The provider's call id (`toolu_…`, `call_…`).
    pub id: String,
    /// The tool's name.
    pub name: String,
    /// Its input; a streamed input that is not valid JSON is kept as a string.
    pub input: serde_json::Value,
}

/// One tool result the client sent back in the request.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ToolResultRef {
    /// The id of the call it answers (`tool_use_id`, `tool_call_id`, `call_id`).
    pub tool_use_id: String,
    /// The client marked it as an error (`is_error: true`).
    pub is_error: bool,
}

/// The client program behind an exchange, from its `user-agent`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Agent {
    /// e.g. `claude-code`, `anthropic-sdk-python`, `openai-sdk-js`, `litellm`, `curl`.
    pub name: String,
    /// The version the user-agent names, when it names one.
    pub version: Option<String>,
}

impl std::fmt::Display for Agent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.version {
            Some(v) => write!(f, "{} {v}", self.name),
            None => f.write_str(&self.name),
        }
    }
}

/// What kind of JSON-RPC message an MCP exchange carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum McpKind {
    /// Has a `method` and an `id`: an answer is expected.
    #[default]
    Request,
    /// Has an `id` and a `result` or `error`.
    Response,
    /// Has a `method` and no `id`.
    Notification,
}

impl McpKind {
    /// The lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Request => "request",
            Self::Response => "response",
            Self::Notification => "notification",
        }
    }
}

/// The JSON-RPC side of an MCP exchange: the message the client sent (or, for
/// a server stream opened by `GET`, the first message the server sent).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Mcp {
    /// `tools/call`, `initialize`, `notifications/initialized`, … (`None` for a bare response).
    pub method: Option<String>,
    /// The JSON-RPC id as text (numbers are written in decimal).
    pub id: Option<String>,
    /// Request, response or notification.
    pub kind: McpKind,
    /// For `tools/call`: the tool's name.
    pub tool: Option<String>,
    /// The answer carried a JSON-RPC `error` (or `result.isError: true`).
    pub is_error: bool,
}

/// When a slice of the response body arrived: its byte offset in the captured
/// body and the milliseconds since the request started. The proxy records the
/// first few frames of each response, so the analysis can tell when the first
/// content delta (not just the response head) reached the client.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct FrameTime {
    /// Offset of the frame's first byte in the (decoded) response body.
    pub offset: u64,
    /// Milliseconds from request start to the frame's arrival.
    pub elapsed_ms: f64,
}

/// Rate-limit headers of the response, keyed by their lowercase name:
/// `anthropic-ratelimit-*` (including `anthropic-ratelimit-unified-*`),
/// `x-ratelimit-*` (OpenAI and others) and `retry-after`.
pub type RateLimit = BTreeMap<String, String>;

/// Everything ccproxy understands about one LLM or MCP exchange.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Analysis {
    /// The wire API.
    pub api: Api,
    /// Who serves it: `anthropic`, `openai`, `google`, `aws`, `azure`,
    /// `openrouter`, … from the host when it is a known one, else the API's family.
    pub provider: String,
    /// The model the request asked for.
    pub model: Option<String>,
    /// The model the response names (often a dated snapshot of the requested one).
    pub response_model: Option<String>,
    /// The provider's response / message id.
    pub response_id: Option<String>,
    /// The response was streamed (SSE or a streamed JSON array).
    pub stream: bool,
    /// Stop / finish reason (`end_turn`, `tool_use`, `stop`, `length`, `STOP`, `completed`…).
    pub stop_reason: Option<String>,
    /// The error the API reported in its body (an `error` object or event), if any.
    pub error: Option<String>,
    /// Token usage.
    pub usage: Usage,
    /// Request start to the first content delta (text, thinking or tool input);
    /// for a non-streamed response, to the first body byte (or the head).
    pub ttft_ms: Option<f64>,
    /// Output tokens per second from the first content delta to the end.
    pub output_tokens_per_s: Option<f64>,
    /// Cost in USD from the price table; `None` when the model is not in it.
    pub cost_usd: Option<f64>,
    /// Tool calls in the response, in order.
    pub tool_calls: Vec<ToolCall>,
    /// Tool results in the request, in order.
    pub tool_results: Vec<ToolResultRef>,
    /// Messages in the request (`messages`, `input` items or `contents`).
    pub message_count: u64,
    /// Bytes of the system prompt (`system`, system/developer messages, `instructions`, `systemInstruction`).
    pub system_bytes: u64,
    /// Bytes of the tool definitions (`tools`, `functions`).
    pub tools_bytes: u64,
    /// Rate-limit headers of the response.
    pub ratelimit: RateLimit,
    /// The agent session: `x-claude-code-session-id`, else the session in
    /// Claude Code's `metadata.user_id` (`…_session_<uuid>`).
    pub session_id: Option<String>,
    /// The client program, from `user-agent`.
    pub agent: Option<Agent>,
    /// The JSON-RPC side, for MCP exchanges.
    pub mcp: Option<Mcp>,
}
