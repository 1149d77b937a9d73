//! `ccproxy sessions [--since 1d] [--json]`: one line (or JSON object) per
//! agent session in the database.

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::capture::sanitize::sanitize;
use crate::cli::SessionsArgs;
use crate::config::Config;
use crate::flow::Flow;
use crate::llm::session::{self, Exchange, Session};
use crate::llm::{self, Analysis, PriceTable};
use crate::store::query::Reader;

/// Rows read at most per command.
pub(crate) const LIMIT: i64 = 1_000_000;

/// One session in `sessions --json` (a contract: fields may be added, never renamed).
#[derive(Debug, Serialize)]
pub struct SessionRow {
    pub session_id: String,
    pub agent: Option<String>,
    pub first_seen: DateTime<Utc>,
    pub last_seen: DateTime<Utc>,
    pub requests: u64,
    pub conversations: usize,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cache_read_tokens: u64,
    pub cache_creation_tokens: u64,
    pub cost_usd: f64,
    pub cache_hit_ratio: f64,
    pub errors: u64,
    pub miss_cost_usd: f64,
}

impl From<&Session> for SessionRow {
    fn from(s: &Session) -> Self {
        let t = &s.totals;
        Self {
            session_id: s.session_id.clone(),
            agent: s.agent.clone(),
            first_seen: s.first_seen,
            last_seen: s.last_seen,
            requests: t.requests,
            conversations: s.conversations.len(),
            input_tokens: t.input_tokens,
            output_tokens: t.output_tokens,
            cache_read_tokens: t.cache_read_tokens,
            cache_creation_tokens: t.cache_creation_tokens,
            cost_usd: t.cost_usd,
            cache_hit_ratio: t.cache_hit_ratio(),
            errors: t.errors,
            miss_cost_usd: t.miss_cost_usd,
        }
    }
}

/// The stored flows' analyses; the session id falls back to the flow's header one.
pub(crate) fn analyses(flows: &[Flow], prices: &PriceTable) -> Vec<Analysis> {
    flows
        .iter()
        .map(|f| {
            // The stored analysis (read back with the row); computed here only
            // for a flow that has none.
            let mut a = match &f.llm {
                Some(a) => Analysis::clone(a),
                None => llm::analyze(f, prices).unwrap_or_default(),
            };
            if a.session_id.is_none() {
                a.session_id.clone_from(&f.session_id);
            }
            a
        })
        .collect()
}

/// Pair each flow with its analysis.
pub(crate) fn exchanges<'a>(flows: &'a [Flow], analyses: &'a [Analysis]) -> Vec<Exchange<'a>> {
    flows
        .iter()
        .zip(analyses)
        .map(|(flow, analysis)| Exchange { flow, analysis })
        .collect()
}

pub(crate) async fn reader(cfg: &Config) -> anyhow::Result<Reader> {
    Reader::connect(cfg)
        .await?
        .ok_or_else(|| anyhow::anyhow!(crate::cmd::export::ExportError::NoStorage))
}

/// `ccproxy sessions`.
pub async fn sessions(cfg: &Config, args: &SessionsArgs) -> anyhow::Result<i32> {
    let prices = PriceTable::configured(cfg.prices.as_deref())?;
    let since = Utc::now() - chrono::Duration::from_std(args.since)?;
    let flows = reader(cfg)
        .await?
        .with_session(Some(since), None, args.host.as_deref(), LIMIT)
        .await?;
    let analyses = analyses(&flows, &prices);
    let all = session::group(&exchanges(&flows, &analyses), &prices);
    let rows: Vec<SessionRow> = all.iter().map(SessionRow::from).collect();
    if args.json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(0);
    }
    if rows.is_empty() {
        println!("no sessions since {}", since.format("%Y-%m-%d %H:%M UTC"));
        return Ok(0);
    }
    println!(
        "{:<36}  {:<16}  {:<16}  {:>5}  {:>5}  {:>9}  {:>9}  {:>6}  {:>9}  {:>4}",
        "SESSION", "AGENT", "LAST SEEN", "REQS", "CONV", "IN", "OUT", "CACHE", "COST", "ERR"
    );
    for r in &rows {
        println!(
            "{:<36}  {:<16}  {:<16}  {:>5}  {:>5}  {:>9}  {:>9}  {:>5.1}%  {:>9}  {:>4}",
            sanitize(&r.session_id),
            sanitize(r.agent.as_deref().unwrap_or("-")),
            r.last_seen.format("%Y-%m-%d %H:%M"),
            r.requests,
            r.conversations,
            r.input_tokens + r.cache_read_tokens + r.cache_creation_tokens,
            r.output_tokens,
            r.cache_hit_ratio * 100.0,
            format!("${:.4}", r.cost_usd),
            r.errors
        );
    }
    Ok(0)
}
