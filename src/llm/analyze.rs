//! `analyze`: one pass over a completed flow.

use crate::flow::Flow;

use super::{Analysis, FrameTime, PriceTable};

/// Understand one exchange; `None` when it is neither an LLM API call nor MCP.
/// Without frame timings the TTFT falls back to the response head.
pub fn analyze(flow: &Flow, prices: &PriceTable) -> Option<Analysis> {
    analyze_timed(flow, prices, &[])
}

/// As [`analyze`], with the arrival times of the first response frames, so
/// the time to the first content delta can be told.
pub fn analyze_timed(flow: &Flow, prices: &PriceTable, frames: &[FrameTime]) -> Option<Analysis> {
    let _ = (flow, prices, frames);
    None
}
