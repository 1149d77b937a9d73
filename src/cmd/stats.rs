//! `ccproxy stats [--since 1h] [--by model|session|agent|host] [--json]`.

use anyhow::Context as _;

use crate::cli::StatsArgs;
use crate::config::Config;
use crate::store::llm::{stats as query, GroupBy, StatsRow};
use crate::store::{self, StoreError};

/// Print the LLM figures of the stored flows.
pub async fn stats(cfg: &Config, args: &StatsArgs) -> anyhow::Result<i32> {
    let target = store::resolve(cfg).await?.ok_or(StoreError::NoDatabase)?;
    let url = target.url().to_string();
    let client = store::connect(&url)
        .await
        .with_context(|| format!("cannot connect to {}", store::redact_url(&url)))?;
    store::migrate::check_columns(&client)
        .await
        .context("run `ccproxy db migrate` first")?;
    let by = match args.by.as_deref() {
        Some("model") => Some(GroupBy::Model),
        Some("session") => Some(GroupBy::Session),
        Some("agent") => Some(GroupBy::Agent),
        Some("host") => Some(GroupBy::Host),
        _ => None,
    };
    let since = args
        .since
        .and_then(|d| chrono::Duration::from_std(d).ok())
        .and_then(|d| chrono::Utc::now().checked_sub_signed(d));
    let rows = query(&client, since, by, args.host.as_deref()).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(0);
    }
    print_table(&rows, by.map_or("all", GroupBy::as_str));
    Ok(0)
}

fn print_table(rows: &[StatsRow], by: &str) {
    if rows.is_empty() {
        println!("no LLM exchanges stored in that period");
        return;
    }
    println!(
        "{:<36} {:>7} {:>6} {:>10} {:>10} {:>11} {:>10} {:>9} {:>10} {:>6} {:>9} {:>9} {:>9}",
        by,
        "reqs",
        "errors",
        "input",
        "output",
        "cache read",
        "cache wr",
        "reason",
        "cost $",
        "hit %",
        "ttft p50",
        "ttft p95",
        "dur p95"
    );
    let ms = |v: Option<f64>| v.map_or_else(|| "-".to_string(), |v| format!("{v:.0}"));
    for r in rows {
        let key: String = crate::capture::sanitize::sanitize(r.key.as_deref().unwrap_or("(none)"))
            .chars()
            .take(36)
            .collect();
        println!(
            "{key:<36} {:>7} {:>6} {:>10} {:>10} {:>11} {:>10} {:>9} {:>10} {:>6} {:>9} {:>9} {:>9}",
            r.requests,
            r.errors,
            r.input_tokens,
            r.output_tokens,
            r.cache_read_tokens,
            r.cache_creation_tokens,
            r.reasoning_tokens,
            r.cost_usd.map_or_else(|| "-".to_string(), |c| format!("{c:.4}")),
            r.cache_hit_rate.map_or_else(|| "-".to_string(), |h| format!("{:.1}", h * 100.0)),
            ms(r.ttft_ms_p50),
            ms(r.ttft_ms_p95),
            ms(r.duration_ms_p95),
        );
    }
}
