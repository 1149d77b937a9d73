//! The LLM columns of a row (migration 0002), filled from the one
//! [`Analysis`] of a flow; `db backfill` for rows stored before; and the
//! figures behind `ccproxy stats`.

use chrono::{DateTime, Utc};
use postgres_types::{ToSql, Type};

use serde::Serialize;
use tokio_postgres::Client;

use super::row::{from_row, select_list, TABLE};
use super::StoreError;
use crate::llm::{self, Analysis, PriceTable};

/// Bumped when the analysis learns something new: `db backfill` redoes older rows.
pub const ANALYSIS_VERSION: i32 = 1;

/// The LLM columns, in COPY order after the base ones (all nullable).
pub fn llm_columns() -> &'static [(&'static str, Type)] {
    &super::row::COLUMNS[super::row::LLM_START..super::row::LLM_END]
}

fn int(n: Option<u64>) -> Option<i32> {
    n.map(|n| i32::try_from(n).unwrap_or(i32::MAX))
}

fn text(s: Option<&str>) -> Option<String> {
    s.map(|s| s.replace('\0', "\u{fffd}"))
}

/// The values of [`llm_columns`] for one flow, plus the analysis' own
/// `model`, `input_tokens` and `output_tokens` (which replace the base row's).
#[derive(Debug, Default)]
pub struct LlmValues {
    api: Option<&'static str>,
    response_model: Option<String>,
    stop_reason: Option<String>,
    cache_read_tokens: Option<i32>,
    cache_creation_tokens: Option<i32>,
    reasoning_tokens: Option<i32>,
    ttft_ms: Option<f64>,
    cost_usd: Option<f64>,
    tool_calls: Option<serde_json::Value>,
    ratelimit: Option<serde_json::Value>,
    agent: Option<String>,
    mcp_method: Option<String>,
    provider: Option<String>,
    response_id: Option<String>,
    stream: Option<bool>,
    output_tokens_per_s: Option<f64>,
    message_count: Option<i32>,
    system_bytes: Option<i32>,
    tools_bytes: Option<i32>,
    tool_results: Option<serde_json::Value>,
    llm_error: Option<String>,
    llm_version: Option<i32>,
    /// The requested model.
    pub model: Option<String>,
    /// Fresh input tokens.
    pub input_tokens: Option<i32>,
    /// Output tokens.
    pub output_tokens: Option<i32>,
}

impl LlmValues {
    /// The columns of one analysis (all NULL but the version for a non-LLM flow).
    pub fn new(a: Option<&Analysis>) -> Self {
        let Some(a) = a else {
            return Self {
                llm_version: Some(ANALYSIS_VERSION),
                ..Self::default()
            };
        };
        let tool_calls = (!a.tool_calls.is_empty()).then(|| {
            serde_json::Value::Array(
                a.tool_calls
                    .iter()
                    .map(|t| serde_json::json!({"name": t.name, "id": t.id}))
                    .collect(),
            )
        });
        let tool_results = (!a.tool_results.is_empty())
            .then(|| serde_json::to_value(&a.tool_results).ok())
            .flatten();
        let ratelimit = (!a.ratelimit.is_empty())
            .then(|| serde_json::to_value(&a.ratelimit).ok())
            .flatten();
        let is_llm = a.api != llm::Api::Mcp;
        Self {
            api: Some(a.api.as_str()),
            response_model: text(a.response_model.as_deref()),
            stop_reason: text(a.stop_reason.as_deref()),
            cache_read_tokens: int(a.usage.cache_read),
            cache_creation_tokens: int(a.usage.cache_creation),
            reasoning_tokens: int(a.usage.reasoning),
            ttft_ms: a.ttft_ms,
            cost_usd: a.cost_usd,
            tool_calls,
            ratelimit,
            agent: a.agent.as_ref().map(|g| g.to_string().replace('\0', "")),
            mcp_method: text(a.mcp.as_ref().and_then(|m| m.method.as_deref())),
            provider: Some(a.provider.clone()),
            response_id: text(a.response_id.as_deref()),
            stream: Some(a.stream),
            output_tokens_per_s: a.output_tokens_per_s,
            message_count: is_llm.then(|| int(Some(a.message_count))).flatten(),
            system_bytes: is_llm.then(|| int(Some(a.system_bytes))).flatten(),
            tools_bytes: is_llm.then(|| int(Some(a.tools_bytes))).flatten(),
            tool_results,
            llm_error: text(a.error.as_deref()),
            llm_version: Some(ANALYSIS_VERSION),
            model: text(a.model.as_deref()),
            input_tokens: int(a.usage.input),
            output_tokens: int(a.usage.output),
        }
    }

    /// The values in [`llm_columns`] order.
    pub fn as_params(&self) -> [&(dyn ToSql + Sync); 22] {
        [
            &self.api,
            &self.response_model,
            &self.stop_reason,
            &self.cache_read_tokens,
            &self.cache_creation_tokens,
            &self.reasoning_tokens,
            &self.ttft_ms,
            &self.cost_usd,
            &self.tool_calls,
            &self.ratelimit,
            &self.agent,
            &self.mcp_method,
            &self.provider,
            &self.response_id,
            &self.stream,
            &self.output_tokens_per_s,
            &self.message_count,
            &self.system_bytes,
            &self.tools_bytes,
            &self.tool_results,
            &self.llm_error,
            &self.llm_version,
        ]
    }
}

/// What `db backfill` did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Backfill {
    /// Rows read and updated.
    pub rows: u64,
    /// Of them, LLM or MCP exchanges.
    pub llm: u64,
}

/// Rows read per backfill round.
pub const BACKFILL_BATCH: i64 = 500;

/// Tables at most this large are backfilled when the migration adds the columns.
pub const BACKFILL_AT_MIGRATE: i64 = 20_000;

/// Analyse every row not analysed by this version yet and store the result.
pub async fn backfill(client: &mut Client, prices: &PriceTable) -> Result<Backfill, StoreError> {
    let mut done = Backfill::default();
    let cols = select_list();
    let set: Vec<String> = llm_columns()
        .iter()
        .enumerate()
        .map(|(i, (n, _))| format!("{n} = ${}", i + 2))
        .chain([
            format!("model = coalesce(${}, model)", llm_columns().len() + 2),
            format!("input_tokens = ${}", llm_columns().len() + 3),
            format!("output_tokens = ${}", llm_columns().len() + 4),
        ])
        .collect();
    let update = format!("UPDATE {TABLE} SET {} WHERE trace_id = $1", set.join(", "));
    let keep_tokens = format!(
        "UPDATE {TABLE} SET {} WHERE trace_id = $1",
        llm_columns()
            .iter()
            .enumerate()
            .map(|(i, (n, _))| format!("{n} = ${}", i + 2))
            .collect::<Vec<_>>()
            .join(", ")
    );
    loop {
        let rows = client
            .query(
                &format!(
                    "SELECT {cols} FROM {TABLE} \
                     WHERE llm_version IS NULL OR llm_version < $1 \
                     ORDER BY start_time LIMIT $2"
                ),
                &[&ANALYSIS_VERSION, &BACKFILL_BATCH],
            )
            .await?;
        if rows.is_empty() {
            return Ok(done);
        }
        let tx = client.transaction().await?;
        let with_tokens = tx.prepare(&update).await?;
        let without = tx.prepare(&keep_tokens).await?;
        for row in &rows {
            let flow = from_row(row)?;
            let a = llm::analyze(&flow, prices);
            let v = LlmValues::new(a.as_ref());
            let id = flow.id.to_string();
            let mut params: Vec<&(dyn ToSql + Sync)> = vec![&id];
            params.extend(v.as_params());
            if a.is_some() {
                params.extend([
                    &v.model as &(dyn ToSql + Sync),
                    &v.input_tokens,
                    &v.output_tokens,
                ]);
                tx.execute(&with_tokens, &params).await?;
                done.llm += 1;
            } else {
                tx.execute(&without, &params).await?;
            }
            done.rows += 1;
        }
        tx.commit().await?;
    }
}

/// How `stats` groups.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupBy {
    /// The model asked for (else the one that answered).
    Model,
    /// The agent session.
    Session,
    /// The client program.
    Agent,
    /// The host called.
    Host,
}

impl GroupBy {
    /// The name in `--by` and in the JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Model => "model",
            Self::Session => "session",
            Self::Agent => "agent",
            Self::Host => "host",
        }
    }

    fn sql(self) -> &'static str {
        match self {
            Self::Model => "coalesce(model, response_model)",
            Self::Session => "session_id",
            Self::Agent => "agent",
            Self::Host => "host",
        }
    }
}

/// One group of `stats`: its key and figures (the JSON names explain themselves).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StatsRow {
    /// What the rows are grouped by (`model`, `session`, `agent`, `host`, or `all`).
    pub group_by: String,
    /// The group's key (`null` for rows without one).
    pub key: Option<String>,
    pub requests: i64,
    pub errors: i64,
    pub input_tokens: i64,
    pub output_tokens: i64,
    pub cache_read_tokens: i64,
    pub cache_creation_tokens: i64,
    pub reasoning_tokens: i64,
    /// Sum over the priced requests; `null` when none was priced.
    pub cost_usd: Option<f64>,
    /// Requests whose model had a price.
    pub priced_requests: i64,
    /// cache read ÷ (input + cache read + cache creation); `null` without prompt tokens.
    pub cache_hit_rate: Option<f64>,
    pub ttft_ms_p50: Option<f64>,
    pub ttft_ms_p95: Option<f64>,
    pub duration_ms_p50: Option<f64>,
    pub duration_ms_p95: Option<f64>,
}

/// The figures of LLM exchanges (rows with an `api`, MCP excluded) started at
/// or after `since`, by group, biggest first.
pub async fn stats(
    client: &Client,
    since: Option<DateTime<Utc>>,
    by: Option<GroupBy>,
    capture_host: Option<&str>,
) -> Result<Vec<StatsRow>, StoreError> {
    let key = by.map_or("NULL::text", GroupBy::sql);
    let floor = chrono::NaiveDate::from_ymd_opt(1, 1, 1)
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .unwrap_or_default();
    let since = since.map_or(floor, |t| t.naive_utc().max(floor));
    let sql = format!(
        "SELECT {key} AS key, count(*), \
           count(*) FILTER (WHERE error_type IS NOT NULL OR status_code >= 400 OR llm_error IS NOT NULL), \
           coalesce(sum(input_tokens), 0)::bigint, coalesce(sum(output_tokens), 0)::bigint, \
           coalesce(sum(cache_read_tokens), 0)::bigint, coalesce(sum(cache_creation_tokens), 0)::bigint, \
           coalesce(sum(reasoning_tokens), 0)::bigint, \
           sum(cost_usd), count(cost_usd), \
           percentile_cont(0.5) WITHIN GROUP (ORDER BY ttft_ms), \
           percentile_cont(0.95) WITHIN GROUP (ORDER BY ttft_ms), \
           percentile_cont(0.5) WITHIN GROUP (ORDER BY duration_ms), \
           percentile_cont(0.95) WITHIN GROUP (ORDER BY duration_ms) \
         FROM {TABLE} WHERE api IS NOT NULL AND api <> 'mcp' AND start_time >= $1 \
           AND ($2::TEXT IS NULL OR lower(capture_host) = lower($2)) \
         GROUP BY 1 ORDER BY 2 DESC, 1 NULLS LAST"
    );
    let rows = client.query(&sql, &[&since, &capture_host]).await?;
    let group_by = by.map_or("all", GroupBy::as_str).to_string();
    Ok(rows
        .iter()
        .map(|r| {
            let input: i64 = r.get(3);
            let read: i64 = r.get(5);
            let written: i64 = r.get(6);
            let prompt = input + read + written;
            StatsRow {
                group_by: group_by.clone(),
                key: r.get(0),
                requests: r.get(1),
                errors: r.get(2),
                input_tokens: input,
                output_tokens: r.get(4),
                cache_read_tokens: read,
                cache_creation_tokens: written,
                reasoning_tokens: r.get(7),
                cost_usd: r.get(8),
                priced_requests: r.get(9),
                cache_hit_rate: (prompt > 0).then(|| read as f64 / prompt as f64),
                ttft_ms_p50: r.get(10),
                ttft_ms_p95: r.get(11),
                duration_ms_p50: r.get(12),
                duration_ms_p95: r.get(13),
            }
        })
        .collect())
}
