//! `ccproxy session ID [--json | --markdown]`: one session's conversations,
//! turns, tool calls and cache verdicts.

use std::fmt::Write as _;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use uuid::Uuid;

use crate::capture::sanitize::sanitize_multiline;
use crate::cli::SessionArgs;
use crate::cmd::sessions::{analyses, exchanges, reader, SessionRow, LIMIT};
use crate::cmd::ExitError;
use crate::config::Config;
use crate::flow::Flow;
use crate::llm::session::{self, Divergence, Kind, Session, Turn, Verdict};
use crate::llm::PriceTable;

/// `session --json` (a contract: fields may be added, never renamed).
#[derive(Debug, Serialize)]
pub struct SessionDoc {
    pub session_id: String,
    pub summary: SessionRow,
    pub conversations: Vec<ConversationDoc>,
}

#[derive(Debug, Serialize)]
pub struct ConversationDoc {
    pub conversation_id: usize,
    /// The trace id of the request whose `Task`/`Agent` call opened it.
    pub parent: Option<Uuid>,
    pub parent_tool_use_id: Option<String>,
    pub kind: Kind,
    pub requests: Vec<RequestDoc>,
}

#[derive(Debug, Serialize)]
pub struct RequestDoc {
    pub trace_id: Uuid,
    pub start_time: DateTime<Utc>,
    pub model: Option<String>,
    pub status: Option<u16>,
    pub new_messages: usize,
    pub message_count: usize,
    pub input_tokens: Option<u64>,
    pub output_tokens: Option<u64>,
    pub cost_usd: Option<f64>,
    pub tool_calls: Vec<ToolDoc>,
    pub cache: CacheDoc,
}

#[derive(Debug, Serialize)]
pub struct ToolDoc {
    pub id: String,
    pub name: String,
    pub result_trace_id: Option<Uuid>,
    pub run_ms: Option<f64>,
}

#[derive(Debug, Serialize)]
pub struct CacheDoc {
    pub verdict: Verdict,
    pub diverged_at: Option<Divergence>,
    pub diverged_block: Option<usize>,
    pub before: Option<String>,
    pub after: Option<String>,
    pub tokens_written: u64,
    pub tokens_read: u64,
    pub miss_cost_usd: Option<f64>,
    pub gap_s: Option<f64>,
    pub ttl_s: u64,
}

fn request_doc(t: &Turn) -> RequestDoc {
    let c = &t.cache;
    RequestDoc {
        trace_id: t.trace_id,
        start_time: t.start_time,
        model: t.model.clone(),
        status: t.status,
        new_messages: t.new_messages,
        message_count: t.message_count,
        input_tokens: t.usage.input,
        output_tokens: t.usage.output,
        cost_usd: t.cost_usd,
        tool_calls: t
            .tool_calls
            .iter()
            .map(|l| ToolDoc {
                id: l.id.clone(),
                name: l.name.clone(),
                result_trace_id: l.result_trace_id,
                run_ms: l.run_ms,
            })
            .collect(),
        cache: CacheDoc {
            verdict: c.verdict,
            diverged_at: c.diverged_at,
            diverged_block: c.diverged_block,
            before: c.before.clone(),
            after: c.after.clone(),
            tokens_written: c.tokens_written,
            tokens_read: c.tokens_read,
            miss_cost_usd: c.miss_cost_usd,
            gap_s: c.gap_s,
            ttl_s: c.ttl_s,
        },
    }
}

/// The JSON document of a session.
pub fn doc(s: &Session) -> SessionDoc {
    SessionDoc {
        session_id: s.session_id.clone(),
        summary: SessionRow::from(s),
        conversations: s
            .conversations
            .iter()
            .map(|c| ConversationDoc {
                conversation_id: c.conversation_id,
                parent: c.parent.as_ref().map(|p| p.trace_id),
                parent_tool_use_id: c.parent.as_ref().map(|p| p.tool_use_id.clone()),
                kind: c.kind,
                requests: c.requests.iter().map(request_doc).collect(),
            })
            .collect(),
    }
}

fn short(s: &str, n: usize) -> String {
    let mut out: String = s.chars().take(n).collect();
    if s.chars().nth(n).is_some() {
        out.push('…');
    }
    out
}

/// One message as transcript lines.
fn message_md(out: &mut String, m: &Value) {
    let role = m.get("role").and_then(Value::as_str).unwrap_or("?");
    match m.get("content") {
        Some(Value::String(s)) => {
            let _ = writeln!(out, "- **{role}**: {}", short(s, 500).replace('\n', " "));
        }
        Some(Value::Array(blocks)) => {
            for b in blocks {
                let kind = b.get("type").and_then(Value::as_str).unwrap_or("?");
                let line = match kind {
                    "text" => short(b.get("text").and_then(Value::as_str).unwrap_or(""), 500),
                    "tool_use" => format!(
                        "tool call `{}` {}",
                        b.get("name").and_then(Value::as_str).unwrap_or("?"),
                        short(
                            &b.get("input").map(Value::to_string).unwrap_or_default(),
                            200
                        )
                    ),
                    "tool_result" => format!(
                        "tool result for `{}`",
                        b.get("tool_use_id").and_then(Value::as_str).unwrap_or("?")
                    ),
                    other => format!("({other} block)"),
                };
                let _ = writeln!(out, "- **{role}**: {}", line.replace('\n', " "));
            }
        }
        _ => {}
    }
}

/// The markdown transcript of a session.
pub fn markdown(s: &Session, flows: &[Flow]) -> String {
    let mut out = String::new();
    let t = &s.totals;
    let _ = writeln!(out, "# Session {}\n", s.session_id);
    let _ = writeln!(
        out,
        "Agent: {} · {} → {} · {} requests · {} conversations · cost ${:.4} · cache hit {:.1}% · cache misses ${:.4} · errors {}\n",
        s.agent.as_deref().unwrap_or("-"),
        s.first_seen.to_rfc3339(),
        s.last_seen.to_rfc3339(),
        t.requests,
        s.conversations.len(),
        t.cost_usd,
        t.cache_hit_ratio() * 100.0,
        t.miss_cost_usd,
        t.errors
    );
    for c in &s.conversations {
        let _ = write!(
            out,
            "## Conversation {} ({})",
            c.conversation_id,
            c.kind.as_str()
        );
        if let Some(p) = &c.parent {
            let _ = write!(
                out,
                ", opened by `{}` in request {}",
                p.tool_use_id, p.trace_id
            );
        }
        out.push_str("\n\n");
        for (n, turn) in c.requests.iter().enumerate() {
            let cache = &turn.cache;
            let _ = writeln!(
                out,
                "### Turn {} · {} · {} · {}",
                n + 1,
                turn.start_time.format("%H:%M:%S"),
                turn.model.as_deref().unwrap_or("-"),
                turn.trace_id
            );
            let _ = write!(out, "\ncache: **{}**", cache.verdict.as_str());
            if let Some(d) = cache.diverged_at {
                let _ = write!(out, " at `{d}`");
                if let Some(b) = cache.diverged_block {
                    let _ = write!(out, " block {b}");
                }
            }
            let _ = write!(
                out,
                " · read {} · written {}",
                cache.tokens_read, cache.tokens_written
            );
            if let Some(m) = cache.miss_cost_usd {
                let _ = write!(out, " · miss cost ${m:.4}");
            }
            if let Some(c) = turn.cost_usd {
                let _ = write!(out, " · cost ${c:.4}");
            }
            out.push_str("\n\n");
            if cache.verdict == Verdict::PrefixChanged {
                if let (Some(b), Some(a)) = (&cache.before, &cache.after) {
                    let _ = writeln!(
                        out,
                        "```\n- {}\n+ {}\n```\n",
                        b.replace('`', "'"),
                        a.replace('`', "'")
                    );
                }
            }
            if let Some(f) = flows.get(turn.index) {
                for m in session::new_messages(f, turn) {
                    message_md(&mut out, &m);
                }
            }
            for l in &turn.tool_calls {
                let _ = write!(out, "- → tool `{}` ({})", l.name, l.id);
                if let Some(ms) = l.run_ms {
                    let _ = write!(out, " ran {:.1}s", ms / 1000.0);
                }
                if l.is_error {
                    out.push_str(" (error)");
                }
                out.push('\n');
            }
            out.push('\n');
        }
    }
    out
}

/// `ccproxy session ID`.
pub async fn session(cfg: &Config, args: &SessionArgs) -> anyhow::Result<i32> {
    let prices = PriceTable::configured(cfg.prices.as_deref())?;
    let flows = reader(cfg)
        .await?
        .with_session(None, Some(&args.id), None, LIMIT)
        .await?;
    if flows.is_empty() {
        return Err(ExitError::new(1, format!("no session {:?} in the database", args.id)).into());
    }
    let analyses = analyses(&flows, &prices);
    let s = session::build(&args.id, &exchanges(&flows, &analyses), &prices);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&doc(&s))?);
    } else {
        // --markdown and the default: the readable transcript, sanitised for the terminal.
        print!("{}", sanitize_multiline(&markdown(&s, &flows)));
    }
    Ok(0)
}
