//! What an LLM (or MCP) exchange means: which API, which models, the token
//! usage with its cached and reasoning parts, the cost, the time to the first
//! token, why it stopped, which tools it called, the rate limits, the session
//! and the agent.
//!
//! Pure functions over a captured `Flow`: computed once per
//! completed flow, off the proxy's hot path, and read by the store, the TUI,
//! the filter, HAR, `stats`, `sessions` and the OTLP spans. The SSE
//! reassembly in [`stream`] is incremental, so a viewer can follow a stream
//! while it is still arriving.
//!
//! The data types live in `flow::analysis` (a flow carries its analysis);
//! they are re-exported here.

pub mod agent;
mod analyze;
pub mod price;
pub mod session;
mod span;
pub mod sse;
pub mod stream;

pub use analyze::{analyze, analyze_timed, detect, reply};

/// How many response frames the proxy times per exchange (enough to reach
/// the first content delta of any stream; a bounded, cheap record).
pub const MAX_FRAMES: usize = 64;
pub use price::{Price, PriceError, PriceTable};

pub use crate::flow::analysis::{
    Agent, Analysis, Api, FrameTime, Mcp, McpKind, RateLimit, ToolCall, ToolResultRef, Usage,
};

/// The analysis stage the engine installs on its hub: every completed flow
/// gets its [`Analysis`] (with the installed price table) before it is
/// stored, shown or exported.
pub fn analyzer() -> crate::flow::hub::Analyzer {
    crate::flow::hub::Analyzer {
        analyze: std::sync::Arc::new(|flow: &mut crate::flow::Flow| {
            let prices = PriceTable::shared();
            flow.llm = analyze_timed(flow, prices, &flow.response_frames).map(std::sync::Arc::new);
        }),
        wants: std::sync::Arc::new(may_be_llm),
    }
}

/// False only for flows [`analyze`] finds nothing in: no request body, not
/// a POST, and no event stream back (an MCP server stream is a `GET`).
pub fn may_be_llm(flow: &crate::flow::Flow) -> bool {
    flow.method.eq_ignore_ascii_case("POST")
        || !flow.request_body.is_empty()
        || flow
            .response_content_type
            .as_deref()
            .is_some_and(|c| c.contains("event-stream"))
}

#[cfg(test)]
mod tests;
