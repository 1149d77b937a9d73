//! The LLM summary at the top of the Response tab: the whole analysis of the
//! exchange as labelled rows. Pure, so the detail model can count the rows
//! and the renderer can draw the same ones.

use std::fmt::Write as _;

use crate::llm::Analysis;

/// The summary of an analysis as `(label, value)` rows, in display order;
/// rows whose figure the exchange did not report are left out.
pub fn rows(a: &Analysis) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    let mut api = format!("{} · {}", a.api.as_str(), a.provider);
    if a.stream {
        api.push_str(" · streamed");
    }
    out.push(("api", api));
    let model = match (&a.model, &a.response_model) {
        (Some(m), Some(r)) if m != r => format!("{m} → {r}"),
        (Some(m), _) | (None, Some(m)) => m.clone(),
        (None, None) => "—".into(),
    };
    out.push(("model", model));
    if let Some(s) = &a.stop_reason {
        out.push(("stop", s.clone()));
    }
    if let Some(e) = &a.error {
        out.push(("api error", e.clone()));
    }
    let u = &a.usage;
    if !u.is_empty() {
        let mut parts = Vec::new();
        let n = |v: Option<u64>| v.map_or_else(|| "—".into(), group);
        parts.push(format!("in {}", n(u.input)));
        if u.cache_read.is_some() || u.cache_creation.is_some() {
            parts.push(format!("cache read {}", n(u.cache_read)));
            let mut write = format!("cache write {}", n(u.cache_creation));
            if let Some(h) = u.cache_creation_1h.filter(|h| *h > 0) {
                let _ = write!(write, " (1h {})", group(h));
            }
            parts.push(write);
        }
        parts.push(format!("out {}", n(u.output)));
        if let Some(r) = u.reasoning {
            parts.push(format!("reasoning {}", group(r)));
        }
        let prompt = u.prompt_total();
        if prompt > 0 && u.cache_read.is_some() {
            let hit = u.cache_read.unwrap_or(0) as f64 * 100.0 / prompt as f64;
            parts.push(format!("cache hit {hit:.1}%"));
        }
        out.push(("tokens", parts.join(" · ")));
    }
    out.push((
        "cost",
        a.cost_usd
            .map_or_else(|| "unknown model price".into(), |c| format!("${c:.4}")),
    ));
    if let Some(t) = a.ttft_ms {
        let mut v = format!("{t:.0} ms to the first token");
        if let Some(r) = a.output_tokens_per_s {
            let _ = write!(v, " · {r:.1} tokens/s");
        }
        out.push(("TTFT", v));
    }
    if !a.tool_calls.is_empty() {
        let calls: Vec<String> = a
            .tool_calls
            .iter()
            .map(|c| format!("{} ({})", c.name, c.id))
            .collect();
        out.push(("tool calls", calls.join(", ")));
    }
    if !a.tool_results.is_empty() {
        let errors = a.tool_results.iter().filter(|r| r.is_error).count();
        let mut v = format!("{} in the request", a.tool_results.len());
        if errors > 0 {
            let _ = write!(v, " ({errors} marked as errors)");
        }
        out.push(("tool results", v));
    }
    if a.message_count > 0 || a.system_bytes > 0 || a.tools_bytes > 0 {
        out.push((
            "prompt",
            format!(
                "{} message{} · system {} · tools {}",
                a.message_count,
                if a.message_count == 1 { "" } else { "s" },
                super::ui::human_size(a.system_bytes),
                super::ui::human_size(a.tools_bytes)
            ),
        ));
    }
    if !a.ratelimit.is_empty() {
        out.push(("rate limit", ratelimit(&a.ratelimit)));
    }
    if let Some(s) = &a.session_id {
        out.push(("session", s.clone()));
    }
    if let Some(ag) = &a.agent {
        out.push(("agent", ag.to_string()));
    }
    if let Some(m) = &a.mcp {
        let mut v = format!(
            "{} {}",
            m.kind.as_str(),
            m.method.as_deref().unwrap_or("(response)")
        );
        if let Some(id) = &m.id {
            let _ = write!(v, " id {id}");
        }
        if let Some(t) = &m.tool {
            let _ = write!(v, " tool {t}");
        }
        if m.is_error {
            v.push_str(" · error");
        }
        out.push(("mcp", v));
    }
    out
}

/// The rate-limit headers, shortened: `requests 49/50 · tokens 9k/10k · retry-after 3`.
fn ratelimit(r: &crate::llm::RateLimit) -> String {
    let mut parts = Vec::new();
    for kind in ["requests", "tokens", "input-tokens", "output-tokens"] {
        let find = |suffix: &str| {
            r.iter()
                .find(|(k, _)| {
                    k.ends_with(&format!("-{kind}-{suffix}"))
                        || k.ends_with(&format!("-{suffix}-{kind}"))
                })
                .map(|(_, v)| v.clone())
        };
        if let (Some(rem), Some(lim)) = (find("remaining"), find("limit")) {
            parts.push(format!("{kind} {rem}/{lim}"));
        }
    }
    for (k, v) in r {
        if k == "retry-after" || k.contains("unified-status") || k.contains("unified-reset") {
            let short = k.trim_start_matches("anthropic-ratelimit-");
            parts.push(format!("{short} {v}"));
        }
    }
    if parts.is_empty() {
        parts.push(format!("{} headers", r.len()));
    }
    parts.join(" · ")
}

/// `1234567` as `1,234,567`.
pub fn group(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::llm::{Api, ToolCall, Usage};

    #[test]
    fn rows_show_the_whole_analysis() {
        let mut a = Analysis {
            api: Api::AnthropicMessages,
            provider: "anthropic".into(),
            model: Some("claude-sonnet-4-5".into()),
            response_model: Some("claude-sonnet-4-5-20250929".into()),
            stream: true,
            stop_reason: Some("tool_use".into()),
            usage: Usage {
                input: Some(12),
                output: Some(88),
                cache_read: Some(88_000),
                cache_creation: Some(0),
                ..Usage::default()
            },
            ttft_ms: Some(412.0),
            output_tokens_per_s: Some(51.5),
            cost_usd: Some(0.0277),
            tool_calls: vec![ToolCall {
                id: "toolu_01".into(),
                name: "Read".into(),
                input: serde_json::Value::Null,
            }],
            ..Analysis::default()
        };
        a.ratelimit
            .insert("anthropic-ratelimit-requests-remaining".into(), "49".into());
        a.ratelimit
            .insert("anthropic-ratelimit-requests-limit".into(), "50".into());
        a.ratelimit.insert("retry-after".into(), "3".into());
        let rows = rows(&a);
        let get = |k: &str| {
            rows.iter()
                .find(|(l, _)| *l == k)
                .map(|(_, v)| v.clone())
                .unwrap_or_default()
        };
        assert_eq!(
            get("model"),
            "claude-sonnet-4-5 → claude-sonnet-4-5-20250929"
        );
        assert_eq!(
            get("tokens"),
            "in 12 · cache read 88,000 · cache write 0 · out 88 · cache hit 100.0%"
        );
        assert_eq!(get("cost"), "$0.0277");
        assert_eq!(get("TTFT"), "412 ms to the first token · 51.5 tokens/s");
        assert_eq!(get("tool calls"), "Read (toolu_01)");
        assert_eq!(get("rate limit"), "requests 49/50 · retry-after 3");
        assert_eq!(get("stop"), "tool_use");
    }

    #[test]
    fn unknown_price_is_said_not_guessed() {
        let a = Analysis::default();
        let rows = rows(&a);
        assert!(rows
            .iter()
            .any(|(l, v)| *l == "cost" && v == "unknown model price"));
        assert!(!rows.iter().any(|(l, _)| *l == "tokens"));
    }
}
