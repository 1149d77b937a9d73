//! One `Flow` ⇄ one row of `"CCProxy_HttpTraces"`.
//!
//! Mapping rules (the reverse of each is applied when reading):
//! - timestamps are stored as UTC `TIMESTAMP`, at PostgreSQL's microsecond precision;
//! - headers become a JSON object keyed by lowercase name; a repeated header
//!   is stored once with its values joined by `", "` in wire order, so reading
//!   gives one entry per name (in JSONB key order);
//! - sizes are `INT`: a body over 2 GiB is recorded as `i32::MAX`;
//! - NUL characters (which PostgreSQL text cannot hold) become U+FFFD;
//! - `model` is the `model` field of a JSON request body, when there is one.

use std::borrow::Cow;
use std::error::Error as StdError;

use bytes::{BufMut, BytesMut};
use chrono::{NaiveDateTime, TimeZone, Utc};
use postgres_types::{to_sql_checked, IsNull, ToSql, Type};
use serde::ser::{SerializeMap, Serializer};
use tokio_postgres::Row;

use crate::flow::{Direction, ErrorKind, Flow, Headers, TrafficType, WsFrom, WsMessage, WsOpcode};

/// The table every flow goes to.
pub const TABLE: &str = "\"CCProxy_HttpTraces\"";

/// Columns the writer fills, in COPY order, with the type the staging table uses.
pub const COLUMNS: &[(&str, Type)] = &[
    ("trace_id", Type::TEXT),
    ("method", Type::TEXT),
    ("url", Type::TEXT),
    ("host", Type::TEXT),
    ("path", Type::TEXT),
    ("request_headers", Type::JSONB),
    ("request_body", Type::BYTEA),
    ("request_body_size", Type::INT4),
    ("request_content_type", Type::TEXT),
    ("status_code", Type::INT4),
    ("response_headers", Type::JSONB),
    ("response_body", Type::BYTEA),
    ("response_body_size", Type::INT4),
    ("response_content_type", Type::TEXT),
    ("start_time", Type::TIMESTAMP),
    ("end_time", Type::TIMESTAMP),
    ("duration_ms", Type::FLOAT8),
    ("client_ip", Type::TEXT),
    ("server_ip", Type::TEXT),
    ("server_port", Type::INT4),
    ("is_https", Type::BOOL),
    ("error_message", Type::TEXT),
    ("error_type", Type::TEXT),
    ("traffic_type", Type::TEXT),
    ("direction", Type::TEXT),
    ("session_id", Type::TEXT),
    ("ttfb_ms", Type::FLOAT8),
    ("http_version", Type::TEXT),
    ("model", Type::TEXT),
    ("input_tokens", Type::INT4),
    ("output_tokens", Type::INT4),
    // Migration 0002: what the exchange means (see `store::llm`).
    ("api", Type::TEXT),
    ("response_model", Type::TEXT),
    ("stop_reason", Type::TEXT),
    ("cache_read_tokens", Type::INT4),
    ("cache_creation_tokens", Type::INT4),
    ("reasoning_tokens", Type::INT4),
    ("ttft_ms", Type::FLOAT8),
    ("cost_usd", Type::FLOAT8),
    ("tool_calls", Type::JSONB),
    ("ratelimit", Type::JSONB),
    ("agent", Type::TEXT),
    ("mcp_method", Type::TEXT),
    ("provider", Type::TEXT),
    ("response_id", Type::TEXT),
    ("stream", Type::BOOL),
    ("output_tokens_per_s", Type::FLOAT8),
    ("message_count", Type::INT4),
    ("system_bytes", Type::INT4),
    ("tools_bytes", Type::INT4),
    ("tool_results", Type::JSONB),
    ("llm_error", Type::TEXT),
    ("llm_version", Type::INT4),
    // Migration 0003: who captured it.
    ("capture_host", Type::TEXT),
    ("capture_user", Type::TEXT),
    // Migration 0004: a WebSocket flow's messages.
    ("ws_messages", Type::JSONB),
];

/// Where the LLM columns (`store::llm::LlmValues`) start in [`COLUMNS`].
pub const LLM_START: usize = 31;
/// Just past the LLM columns (`llm_version` is the last of them).
pub const LLM_END: usize = LLM_START + 22;

/// The SQL type name of a column type (for staging DDL and fix-it messages).
pub fn sql_type(t: &Type) -> &'static str {
    match *t {
        Type::JSONB => "JSONB",
        Type::BYTEA => "BYTEA",
        Type::INT4 => "INT",
        Type::TIMESTAMP => "TIMESTAMP",
        Type::FLOAT8 => "FLOAT",
        Type::BOOL => "BOOLEAN",
        _ => "TEXT",
    }
}

/// Comma-separated column list.
pub fn column_list() -> String {
    COLUMNS
        .iter()
        .map(|(n, _)| *n)
        .collect::<Vec<_>>()
        .join(", ")
}

/// The column types, in order (for `BinaryCopyInWriter`).
pub fn column_types() -> Vec<Type> {
    COLUMNS.iter().map(|(_, t)| t.clone()).collect()
}

/// Text PostgreSQL accepts: NUL becomes U+FFFD.
fn pg_text(s: &str) -> Cow<'_, str> {
    if s.contains('\0') {
        Cow::Owned(s.replace('\0', "\u{fffd}"))
    } else {
        Cow::Borrowed(s)
    }
}

fn pg_opt(s: Option<&str>) -> Option<Cow<'_, str>> {
    s.map(pg_text)
}

fn size(n: u64) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

fn naive(t: chrono::DateTime<Utc>) -> NaiveDateTime {
    t.naive_utc()
}

/// Headers as a JSONB object, written straight into the COPY buffer.
#[derive(Debug)]
pub struct HeaderJson<'a>(pub &'a Headers);

impl HeaderJson<'_> {
    /// Names lowercased and NUL-free; repeated names joined with ", " in wire order.
    fn grouped(&self) -> Vec<(Cow<'_, str>, Cow<'_, str>)> {
        let mut out: Vec<(Cow<'_, str>, Cow<'_, str>)> = Vec::with_capacity(self.0.len());
        for (name, value) in self.0 {
            let name = if name.bytes().any(|b| b.is_ascii_uppercase() || b == 0) {
                Cow::Owned(pg_text(name).to_ascii_lowercase())
            } else {
                Cow::Borrowed(name.as_str())
            };
            let value = pg_text(value);
            if let Some((_, v)) = out.iter_mut().find(|(n, _)| *n == name) {
                let joined = format!("{v}, {value}");
                *v = Cow::Owned(joined);
            } else {
                out.push((name, value));
            }
        }
        out
    }
}

impl serde::Serialize for HeaderJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let grouped = self.grouped();
        let mut map = s.serialize_map(Some(grouped.len()))?;
        for (k, v) in &grouped {
            map.serialize_entry(k.as_ref(), v.as_ref())?;
        }
        map.end()
    }
}

impl ToSql for HeaderJson<'_> {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut BytesMut,
    ) -> Result<IsNull, Box<dyn StdError + Sync + Send>> {
        if *ty == Type::JSONB {
            out.put_u8(1);
        }
        serde_json::to_writer(out.writer(), self)?;
        Ok(IsNull::No)
    }

    fn accepts(ty: &Type) -> bool {
        matches!(*ty, Type::JSON | Type::JSONB)
    }

    to_sql_checked!();
}

/// Everything one row needs, borrowed from a flow where possible.
pub struct RowValues<'a> {
    trace_id: String,
    method: Cow<'a, str>,
    url: Cow<'a, str>,
    host: Cow<'a, str>,
    path: Cow<'a, str>,
    request_headers: HeaderJson<'a>,
    request_body: &'a [u8],
    request_body_size: i32,
    request_content_type: Option<Cow<'a, str>>,
    status_code: Option<i32>,
    response_headers: HeaderJson<'a>,
    response_body: &'a [u8],
    response_body_size: i32,
    response_content_type: Option<Cow<'a, str>>,
    start_time: NaiveDateTime,
    end_time: Option<NaiveDateTime>,
    duration_ms: Option<f64>,
    client_ip: Option<Cow<'a, str>>,
    server_ip: Option<Cow<'a, str>>,
    server_port: Option<i32>,
    is_https: bool,
    error_message: Option<Cow<'a, str>>,
    error_type: Option<&'static str>,
    traffic_type: &'static str,
    direction: &'static str,
    session_id: Option<Cow<'a, str>>,
    ttfb_ms: Option<f64>,
    http_version: Cow<'a, str>,
    model: Option<String>,
    input_tokens: Option<i32>,
    output_tokens: Option<i32>,
    llm: super::llm::LlmValues,
    capture_host: Cow<'a, str>,
    capture_user: Cow<'a, str>,
    ws_messages: Option<WsJson<'a>>,
}

impl<'a> RowValues<'a> {
    /// Borrow a flow as row values.
    pub fn new(f: &'a Flow) -> Self {
        let capture_host = match f.capture_host.as_deref() {
            Some(h) => pg_text(h),
            None => Cow::Owned(super::identity::current().host.clone()),
        };
        let capture_user = match f.capture_user.as_deref() {
            Some(u) => pg_text(u),
            None => Cow::Owned(super::identity::current().user.clone()),
        };
        let analysis = f.llm.clone().or_else(|| {
            // Not through the analysis stage (tests, tools): analyse LLM traffic here.
            matches!(f.traffic_type, TrafficType::Llm | TrafficType::Mcp)
                .then(|| crate::llm::analyze(f, crate::llm::PriceTable::shared()))
                .flatten()
                .map(std::sync::Arc::new)
        });
        let llm = super::llm::LlmValues::new(analysis.as_deref());
        let usage = if analysis.is_some() {
            Usage {
                input: llm.input_tokens,
                output: llm.output_tokens,
            }
        } else {
            response_usage(f)
        };
        let model = if analysis.is_some() {
            llm.model.clone().or_else(|| request_model(f))
        } else {
            request_model(f)
        };
        Self {
            trace_id: f.id.to_string(),
            method: pg_text(&f.method),
            url: pg_text(&f.url),
            host: pg_text(&f.host),
            path: pg_text(&f.path),
            request_headers: HeaderJson(&f.request_headers),
            request_body: &f.request_body,
            request_body_size: size(f.request_body_size),
            request_content_type: pg_opt(f.request_content_type.as_deref()),
            status_code: f.status_code.map(i32::from),
            response_headers: HeaderJson(&f.response_headers),
            response_body: &f.response_body,
            response_body_size: size(f.response_body_size),
            response_content_type: pg_opt(f.response_content_type.as_deref()),
            start_time: naive(f.start_time),
            end_time: f.end_time.map(naive),
            duration_ms: f.duration_ms,
            client_ip: pg_opt(f.client_ip.as_deref()),
            server_ip: pg_opt(f.server_ip.as_deref()),
            server_port: f.server_port.map(i32::from),
            is_https: f.is_https,
            error_message: pg_opt(f.error_message.as_deref()),
            error_type: f.error_type.map(ErrorKind::as_str),
            traffic_type: f.traffic_type.as_str(),
            direction: f.direction.as_str(),
            session_id: pg_opt(f.session_id.as_deref()),
            ttfb_ms: f.ttfb_ms,
            http_version: pg_text(&f.http_version),
            model,
            input_tokens: usage.input,
            output_tokens: usage.output,
            capture_host,
            capture_user,
            llm,
            ws_messages: (!f.ws_messages.is_empty()).then_some(WsJson(&f.ws_messages)),
        }
    }

    /// The values in [`COLUMNS`] order.
    pub fn as_params(&self) -> Vec<&(dyn ToSql + Sync)> {
        let mut v: Vec<&(dyn ToSql + Sync)> = vec![
            &self.trace_id,
            &self.method,
            &self.url,
            &self.host,
            &self.path,
            &self.request_headers,
            &self.request_body,
            &self.request_body_size,
            &self.request_content_type,
            &self.status_code,
            &self.response_headers,
            &self.response_body,
            &self.response_body_size,
            &self.response_content_type,
            &self.start_time,
            &self.end_time,
            &self.duration_ms,
            &self.client_ip,
            &self.server_ip,
            &self.server_port,
            &self.is_https,
            &self.error_message,
            &self.error_type,
            &self.traffic_type,
            &self.direction,
            &self.session_id,
            &self.ttfb_ms,
            &self.http_version,
            &self.model,
            &self.input_tokens,
            &self.output_tokens,
        ];
        v.extend(self.llm.as_params());
        v.push(&self.capture_host);
        v.push(&self.capture_user);
        v.push(&self.ws_messages);
        v
    }
}

/// WebSocket messages as a JSONB array: `{"from", "t_ms", "opcode", "size"}`
/// plus `"text"` (text messages, lossy UTF-8, NUL as U+FFFD) or `"base64"`
/// (everything else), and `"compressed": true` for permessage-deflate.
#[derive(Debug)]
pub struct WsJson<'a>(pub &'a [WsMessage]);

impl serde::Serialize for WsJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use base64::Engine;
        use serde::ser::SerializeSeq;
        let mut seq = s.serialize_seq(Some(self.0.len()))?;
        for m in self.0 {
            let mut obj = serde_json::Map::new();
            obj.insert("from".into(), m.from.as_str().into());
            obj.insert("t_ms".into(), m.offset_ms.into());
            obj.insert("opcode".into(), m.opcode.as_str().into());
            obj.insert("size".into(), m.size.into());
            if m.opcode == WsOpcode::Text && !m.compressed {
                let text = String::from_utf8_lossy(&m.data);
                obj.insert("text".into(), pg_text(&text).into_owned().into());
            } else {
                let b64 = base64::engine::general_purpose::STANDARD.encode(&m.data);
                obj.insert("base64".into(), b64.into());
            }
            if m.compressed {
                obj.insert("compressed".into(), true.into());
            }
            seq.serialize_element(&obj)?;
        }
        seq.end()
    }
}

impl ToSql for WsJson<'_> {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut BytesMut,
    ) -> Result<IsNull, Box<dyn StdError + Sync + Send>> {
        if *ty == Type::JSONB {
            out.put_u8(1);
        }
        serde_json::to_writer(out.writer(), self)?;
        Ok(IsNull::No)
    }

    fn accepts(ty: &Type) -> bool {
        matches!(*ty, Type::JSON | Type::JSONB)
    }

    to_sql_checked!();
}

/// The reverse of [`WsJson`]; entries it cannot read are skipped.
fn ws_from_json(v: Option<serde_json::Value>) -> Vec<WsMessage> {
    use base64::Engine;
    let Some(serde_json::Value::Array(items)) = v else {
        return Vec::new();
    };
    items
        .iter()
        .filter_map(|m| {
            let from = WsFrom::parse(m.get("from")?.as_str()?)?;
            let opcode = WsOpcode::parse(m.get("opcode")?.as_str()?)?;
            let data = if let Some(t) = m.get("text").and_then(serde_json::Value::as_str) {
                bytes::Bytes::from(t.to_string())
            } else {
                let b = m.get("base64").and_then(serde_json::Value::as_str)?;
                base64::engine::general_purpose::STANDARD
                    .decode(b)
                    .ok()?
                    .into()
            };
            Some(WsMessage {
                from,
                offset_ms: m.get("t_ms").and_then(serde_json::Value::as_f64)?,
                opcode,
                size: m.get("size").and_then(serde_json::Value::as_u64)?,
                data,
                compressed: m
                    .get("compressed")
                    .and_then(serde_json::Value::as_bool)
                    .unwrap_or(false),
            })
        })
        .collect()
}

/// The `model` of a JSON request body (`{"model": "claude-…", …}`). A body
/// cut at `max_body_size` is no longer valid JSON; then the first
/// `"model":"…"` in it is taken (clients put it before the messages).
pub fn request_model(f: &Flow) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct ModelOnly {
        model: Option<serde_json::Value>,
    }
    let body = f.request_body.trim_ascii_start();
    if !body.starts_with(b"{") {
        return None;
    }
    let model = match first_json::<ModelOnly>(body) {
        Some(m) => match m.model? {
            serde_json::Value::String(s) => s,
            _ => return None,
        },
        None => scan_model(body)?,
    };
    (!model.is_empty() && model.len() <= 200).then(|| pg_text(&model).into_owned())
}

/// The first JSON value of `b`, ignoring whatever follows it.
fn first_json<T: serde::de::DeserializeOwned>(b: &[u8]) -> Option<T> {
    // Not `from_slice`: that also demands nothing (but whitespace) follows.
    T::deserialize(&mut serde_json::Deserializer::from_slice(b)).ok()
}

fn scan_model(body: &[u8]) -> Option<String> {
    let at = body.windows(7).position(|w| w == b"\"model\"")?;
    let rest = body[at + 7..].trim_ascii_start().strip_prefix(b":")?;
    let rest = rest.trim_ascii_start().strip_prefix(b"\"")?;
    let end = rest
        .iter()
        .take(201)
        .position(|b| *b == b'"' || *b == b'\\')?;
    std::str::from_utf8(&rest[..end]).ok().map(str::to_string)
}

/// Token counts an LLM response reports.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    /// `input_tokens` (Anthropic) or `prompt_tokens` (OpenAI).
    pub input: Option<i32>,
    /// `output_tokens` (Anthropic) or `completion_tokens` (OpenAI).
    pub output: Option<i32>,
}

/// Field names are the providers'.
#[derive(serde::Deserialize, Default)]
#[allow(clippy::struct_field_names)]
struct UsageJson {
    input_tokens: Option<i64>,
    output_tokens: Option<i64>,
    prompt_tokens: Option<i64>,
    completion_tokens: Option<i64>,
}

#[derive(serde::Deserialize)]
struct WithUsage {
    usage: Option<UsageJson>,
    /// Anthropic's `message_start` event nests it.
    message: Option<Box<WithUsage>>,
}

impl WithUsage {
    fn usage(self) -> Option<UsageJson> {
        self.usage.or_else(|| self.message.and_then(|m| m.usage()))
    }
}

fn clamp(n: Option<i64>) -> Option<i32> {
    n.and_then(|n| i32::try_from(n).ok())
}

/// Token usage from a JSON response body or from the events of an SSE stream
/// (the last figure reported wins: `message_delta` carries the final output).
pub fn response_usage(f: &Flow) -> Usage {
    let body = f.response_body.trim_ascii_start();
    let mut usage = Usage::default();
    let mut take = |u: UsageJson| {
        if let Some(n) = clamp(u.input_tokens.or(u.prompt_tokens)) {
            usage.input = Some(n);
        }
        if let Some(n) = clamp(u.output_tokens.or(u.completion_tokens)) {
            usage.output = Some(n);
        }
    };
    if body.starts_with(b"{") {
        if let Some(u) = first_json::<WithUsage>(body).and_then(WithUsage::usage) {
            take(u);
        }
        return usage;
    }
    let is_sse = f
        .response_content_type
        .as_deref()
        .is_some_and(|c| c.contains("event-stream"));
    if !is_sse || memchr_usage(body).is_none() {
        return usage;
    }
    for line in body.split(|b| *b == b'\n') {
        let Some(data) = line.strip_prefix(b"data:") else {
            continue;
        };
        if memchr_usage(data).is_none() {
            continue;
        }
        if let Some(u) = first_json::<WithUsage>(data.trim_ascii()).and_then(WithUsage::usage) {
            take(u);
        }
    }
    usage
}

fn memchr_usage(b: &[u8]) -> Option<usize> {
    b.windows(7).position(|w| w == b"\"usage\"")
}

/// Columns read back into a [`Flow`] (the writer's columns, same order).
pub fn select_list() -> String {
    column_list()
}

/// Rebuild a flow from a row selected with [`select_list`].
pub fn from_row(row: &Row) -> Result<Flow, tokio_postgres::Error> {
    let id: String = row.try_get("trace_id")?;
    let headers = |v: Option<serde_json::Value>| -> Headers {
        match v {
            Some(serde_json::Value::Object(m)) => m
                .into_iter()
                .map(|(k, v)| {
                    let v = match v {
                        serde_json::Value::String(s) => s,
                        other => other.to_string(),
                    };
                    (k, v)
                })
                .collect(),
            _ => Vec::new(),
        }
    };
    let utc = |t: NaiveDateTime| Utc.from_utc_datetime(&t);
    let int_u16 = |v: Option<i32>| v.and_then(|n| u16::try_from(n).ok());
    let int_u64 = |v: Option<i32>| v.and_then(|n| u64::try_from(n).ok()).unwrap_or(0);
    let direction = match row.try_get::<_, Option<&str>>("direction")? {
        Some("reverse") => Direction::Reverse,
        _ => Direction::Forward,
    };
    let mut flow = Flow {
        capture_host: row.try_get("capture_host")?,
        capture_user: row.try_get("capture_user")?,
        id: uuid::Uuid::parse_str(&id).unwrap_or_default(),
        direction,
        method: row.try_get("method")?,
        url: row.try_get("url")?,
        host: row.try_get("host")?,
        path: row.try_get("path")?,
        http_version: row
            .try_get::<_, Option<String>>("http_version")?
            .unwrap_or_else(|| "HTTP/1.1".into()),
        request_headers: headers(row.try_get("request_headers")?),
        request_body: row
            .try_get::<_, Option<Vec<u8>>>("request_body")?
            .unwrap_or_default()
            .into(),
        request_body_size: int_u64(row.try_get("request_body_size")?),
        request_content_type: row.try_get("request_content_type")?,
        status_code: int_u16(row.try_get("status_code")?),
        response_headers: headers(row.try_get("response_headers")?),
        response_body: row
            .try_get::<_, Option<Vec<u8>>>("response_body")?
            .unwrap_or_default()
            .into(),
        response_body_size: int_u64(row.try_get("response_body_size")?),
        response_content_type: row.try_get("response_content_type")?,
        start_time: utc(row.try_get("start_time")?),
        end_time: row
            .try_get::<_, Option<NaiveDateTime>>("end_time")?
            .map(utc),
        duration_ms: row.try_get("duration_ms")?,
        ttfb_ms: row.try_get("ttfb_ms")?,
        client_ip: row.try_get("client_ip")?,
        server_ip: row.try_get("server_ip")?,
        server_port: int_u16(row.try_get("server_port")?),
        is_https: row.try_get::<_, Option<bool>>("is_https")?.unwrap_or(false),
        error_message: row.try_get("error_message")?,
        error_type: row
            .try_get::<_, Option<&str>>("error_type")?
            .and_then(ErrorKind::parse),
        traffic_type: row
            .try_get::<_, Option<&str>>("traffic_type")?
            .and_then(TrafficType::parse)
            .unwrap_or(TrafficType::Other),
        session_id: row.try_get("session_id")?,
        ws_messages: ws_from_json(row.try_get("ws_messages")?),
        llm: None,
        response_frames: Vec::new(),
    };
    // The same analysis again (a pure function of the stored flow), with the
    // figures only the live flow could tell (TTFT) or that were priced then
    // (cost) taken from their columns.
    let api: Option<String> = row.try_get("api").unwrap_or(None);
    if api.is_some() || matches!(flow.traffic_type, TrafficType::Llm | TrafficType::Mcp) {
        if let Some(mut a) = crate::llm::analyze(&flow, crate::llm::PriceTable::shared()) {
            if let Ok(Some(t)) = row.try_get::<_, Option<f64>>("ttft_ms") {
                a.ttft_ms = Some(t);
            }
            if let Ok(Some(c)) = row.try_get::<_, Option<f64>>("cost_usd") {
                a.cost_usd = Some(c);
            }
            flow.llm = Some(std::sync::Arc::new(a));
        }
    }
    Ok(flow)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn llm_columns_are_where_the_constants_say() {
        assert_eq!(COLUMNS[LLM_START].0, "api");
        assert_eq!(COLUMNS[LLM_END - 1].0, "llm_version");
        assert_eq!(COLUMNS[LLM_END].0, "capture_host");
    }

    #[test]
    fn headers_group_and_lowercase() {
        let h: Headers = vec![
            ("Accept".into(), "a".into()),
            ("x-n".into(), "1\0".into()),
            ("accept".into(), "b".into()),
        ];
        let json = serde_json::to_value(HeaderJson(&h)).expect("json");
        assert_eq!(
            json,
            serde_json::json!({"accept": "a, b", "x-n": "1\u{fffd}"})
        );
    }

    #[test]
    fn model_from_json_body() {
        let mut f = Flow::new(
            Direction::Reverse,
            "POST",
            "http://h/v1/messages",
            "h",
            "/v1/messages",
        );
        f.request_body = bytes::Bytes::from_static(br#" {"max_tokens":1,"model":"claude-x"}"#);
        assert_eq!(request_model(&f).as_deref(), Some("claude-x"));
        f.request_body = bytes::Bytes::from_static(b"\x00binary");
        assert_eq!(request_model(&f), None);
        f.request_body = bytes::Bytes::from_static(br#"{"model":7}"#);
        assert_eq!(request_model(&f), None);
        // Cut at max_body_size: no longer JSON, the model is still found.
        f.request_body =
            bytes::Bytes::from_static(br#"{"model": "claude-y","messages":[{"role":"us"#);
        assert_eq!(request_model(&f).as_deref(), Some("claude-y"));
    }

    #[test]
    fn usage_from_json_and_sse() {
        let mut f = Flow::new(Direction::Reverse, "POST", "http://h/v1", "h", "/v1");
        f.response_body = bytes::Bytes::from_static(
            br#"{"id":"m","usage":{"input_tokens":12,"output_tokens":34}}"#,
        );
        assert_eq!(
            response_usage(&f),
            Usage {
                input: Some(12),
                output: Some(34)
            }
        );
        f.response_body =
            bytes::Bytes::from_static(br#"{"usage":{"prompt_tokens":5,"completion_tokens":6}}"#);
        assert_eq!(
            response_usage(&f),
            Usage {
                input: Some(5),
                output: Some(6)
            }
        );
        f.response_content_type = Some("text/event-stream; charset=utf-8".into());
        f.response_body = bytes::Bytes::from_static(
            b"event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":100,\"output_tokens\":1}}}\n\n\
              event: content_block_delta\ndata: {\"type\":\"content_block_delta\"}\n\n\
              event: message_delta\ndata: {\"type\":\"message_delta\",\"usage\":{\"output_tokens\":77}}\n\n",
        );
        assert_eq!(
            response_usage(&f),
            Usage {
                input: Some(100),
                output: Some(77)
            }
        );
        f.response_body = bytes::Bytes::from_static(b"\x00\x01");
        assert_eq!(response_usage(&f), Usage::default());
    }

    #[test]
    fn every_column_has_a_value() {
        let f = Flow::new(Direction::Forward, "GET", "http://a/", "a", "/");
        assert_eq!(RowValues::new(&f).as_params().len(), COLUMNS.len());
    }
}
