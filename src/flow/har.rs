//! HAR 1.2 from flows: the one conversion behind `ccproxy export --har` and
//! the TUI's `w`, so both write the same shape. Headers go out as captured:
//! secrets were redacted at capture time and stay redacted.

use std::path::Path;
use std::sync::Arc;

use base64::Engine as _;
use chrono::SecondsFormat;
use har::v1_2;

use super::{Flow, Headers};

/// Why a HAR document could not be written.
#[derive(Debug, thiserror::Error)]
pub enum HarError {
    /// Writing the file failed.
    #[error("cannot write {path}: {source}; check the directory exists and is writable")]
    Write {
        path: String,
        source: std::io::Error,
    },
    /// Serialising the document failed.
    #[error("cannot encode HAR: {0}")]
    Encode(#[from] har::Error),
    /// Serialising the extension fields failed.
    #[error("cannot encode HAR: {0}")]
    Json(serde_json::Error),
}

/// A HAR 1.2 document plus what HAR has no field for, written as `_`-prefixed
/// extensions of each entry (HAR 1.2 allows them): `_llm`, the flow's LLM
/// analysis, and `_webSocketMessages` (the name Chrome's DevTools use).
#[derive(Debug, Clone)]
pub struct Document {
    /// The standard part.
    pub har: har::Har,
    /// Per entry, in order: its extension fields.
    extensions: Vec<serde_json::Map<String, serde_json::Value>>,
}

/// Build a HAR 1.2 document from flows, in the order given.
pub fn to_har(flows: &[Flow]) -> Document {
    Document {
        har: standard(flows),
        extensions: flows.iter().map(extensions).collect(),
    }
}

/// An entry's `_llm` and `_webSocketMessages`.
fn extensions(f: &Flow) -> serde_json::Map<String, serde_json::Value> {
    let mut ext = serde_json::Map::new();
    if let Some(a) = &f.llm {
        if let Ok(v) = serde_json::to_value(a.as_ref()) {
            ext.insert("_llm".into(), v);
        }
    }
    if !f.ws_messages.is_empty() {
        let messages = f
            .ws_messages
            .iter()
            .map(|m| {
                let text = m.opcode == super::WsOpcode::Text && !m.compressed;
                let data = if text {
                    String::from_utf8_lossy(&m.data).into_owned()
                } else {
                    base64::engine::general_purpose::STANDARD.encode(&m.data)
                };
                let time = f.start_time.timestamp_millis() as f64 / 1000.0 + m.offset_ms / 1000.0;
                serde_json::json!({
                    "type": if m.from == super::WsFrom::Client { "send" } else { "receive" },
                    "time": time,
                    "opcode": ws_opcode_number(m.opcode),
                    "data": data,
                })
            })
            .collect();
        ext.insert(
            "_webSocketMessages".into(),
            serde_json::Value::Array(messages),
        );
    }
    ext
}

fn ws_opcode_number(o: super::WsOpcode) -> u8 {
    match o {
        super::WsOpcode::Text => 1,
        super::WsOpcode::Binary => 2,
        super::WsOpcode::Close => 8,
        super::WsOpcode::Ping => 9,
        super::WsOpcode::Pong => 10,
    }
}

fn standard(flows: &[Flow]) -> har::Har {
    har::Har {
        log: har::Spec::V1_2(v1_2::Log {
            creator: v1_2::Creator {
                name: "ccproxy".into(),
                version: env!("CARGO_PKG_VERSION").into(),
                comment: None,
            },
            entries: flows.iter().map(entry).collect(),
            ..v1_2::Log::default()
        }),
    }
}

/// [`to_har`] for the shared flows the TUI holds.
pub fn to_har_arcs(flows: &[Arc<Flow>]) -> Document {
    let owned: Vec<Flow> = flows.iter().map(|f| Flow::clone(f)).collect();
    to_har(&owned)
}

/// The document as pretty JSON, extensions in their entries.
pub fn to_json(doc: &Document) -> Result<String, HarError> {
    if doc.extensions.iter().all(serde_json::Map::is_empty) {
        return Ok(har::to_json(&doc.har)?);
    }
    let mut value = serde_json::to_value(&doc.har).map_err(HarError::Json)?;
    if let Some(entries) = value
        .pointer_mut("/log/entries")
        .and_then(serde_json::Value::as_array_mut)
    {
        for (entry, ext) in entries.iter_mut().zip(&doc.extensions) {
            if let Some(obj) = entry.as_object_mut() {
                obj.extend(ext.clone());
            }
        }
    }
    serde_json::to_string_pretty(&value).map_err(HarError::Json)
}

/// Serialise `har` as pretty JSON into the file at `path`, created 0600
/// (exports hold captured traffic: private, like everything in `<home>`).
pub fn write_har(doc: &Document, path: &Path) -> Result<(), HarError> {
    use std::io::Write as _;
    let json = to_json(doc)?;
    let write_err = |source| HarError::Write {
        path: path.display().to_string(),
        source,
    };
    let mut f = std::os::unix::fs::OpenOptionsExt::mode(
        std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true),
        0o600,
    )
    .open(path)
    .map_err(write_err)?;
    f.write_all(json.as_bytes()).map_err(write_err)
}

fn entry(f: &Flow) -> v1_2::Entries {
    let time = f.duration_ms.unwrap_or(0.0).max(0.0);
    let wait = f.ttfb_ms.unwrap_or(time).clamp(0.0, time);
    v1_2::Entries {
        started_date_time: f.start_time.to_rfc3339_opts(SecondsFormat::Millis, true),
        time,
        request: request(f),
        response: response(f),
        cache: v1_2::Cache::default(),
        timings: v1_2::Timings {
            blocked: None,
            dns: None,
            connect: None,
            send: 0.0,
            wait,
            receive: time - wait,
            ssl: None,
            comment: None,
        },
        server_ip_address: f.server_ip.clone(),
        connection: f.server_port.map(|p| p.to_string()),
        comment: f.error_type.map(|k| {
            format!(
                "error {}: {}",
                k.as_str(),
                f.error_message.as_deref().unwrap_or("")
            )
        }),
        pageref: None,
    }
}

fn request(f: &Flow) -> v1_2::Request {
    let post_data = (!f.request_body.is_empty()).then(|| v1_2::PostData {
        mime_type: f
            .request_content_type
            .clone()
            .or_else(|| f.request_header("content-type").map(str::to_string))
            .unwrap_or_default(),
        text: Some(String::from_utf8_lossy(&f.request_body).into_owned()),
        params: None,
        comment: (f.request_body_size > f.request_body.len() as u64).then(|| {
            format!(
                "body cut at {} of {} bytes",
                f.request_body.len(),
                f.request_body_size
            )
        }),
    });
    v1_2::Request {
        method: f.method.clone(),
        url: f.url.clone(),
        http_version: f.http_version.clone(),
        cookies: Vec::new(),
        headers: headers(&f.request_headers),
        query_string: query_string(&f.url),
        post_data,
        headers_size: -1,
        body_size: i64::try_from(f.request_body_size).unwrap_or(i64::MAX),
        comment: None,
    }
}

fn response(f: &Flow) -> v1_2::Response {
    let mime = f
        .response_content_type
        .clone()
        .or_else(|| f.response_header("content-type").map(str::to_string))
        .unwrap_or_default();
    let (text, encoding) = match std::str::from_utf8(&f.response_body) {
        Ok(s) => (s.to_string(), None),
        Err(_) => (
            base64::engine::general_purpose::STANDARD.encode(&f.response_body),
            Some("base64".to_string()),
        ),
    };
    let status = f.status_code.unwrap_or(0);
    v1_2::Response {
        status: i64::from(status),
        status_text: http::StatusCode::from_u16(status)
            .ok()
            .and_then(|s| s.canonical_reason())
            .unwrap_or("")
            .to_string(),
        http_version: f.http_version.clone(),
        cookies: Vec::new(),
        headers: headers(&f.response_headers),
        content: v1_2::Content {
            size: i64::try_from(f.response_body_size).unwrap_or(i64::MAX),
            compression: None,
            mime_type: Some(mime),
            text: (!f.response_body.is_empty()).then_some(text),
            encoding: encoding.filter(|_| !f.response_body.is_empty()),
            comment: (f.response_body_size > f.response_body.len() as u64).then(|| {
                format!(
                    "body cut at {} of {} bytes",
                    f.response_body.len(),
                    f.response_body_size
                )
            }),
        },
        redirect_url: Some(f.response_header("location").unwrap_or("").to_string()),
        headers_size: -1,
        body_size: i64::try_from(f.response_body_size).unwrap_or(i64::MAX),
        comment: None,
    }
}

fn headers(h: &Headers) -> Vec<v1_2::Headers> {
    h.iter()
        .map(|(name, value)| v1_2::Headers {
            name: name.clone(),
            value: value.clone(),
            comment: None,
        })
        .collect()
}

fn query_string(url: &str) -> Vec<v1_2::QueryString> {
    let Some((_, query)) = url.split_once('?') else {
        return Vec::new();
    };
    let query = query.split('#').next().unwrap_or("");
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            v1_2::QueryString {
                name: name.to_string(),
                value: value.to_string(),
                comment: None,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::{Direction, ErrorKind};
    use bytes::Bytes;
    use chrono::{TimeZone, Utc};

    fn flow() -> Flow {
        let mut f = Flow::new(
            Direction::Reverse,
            "POST",
            "http://127.0.0.1:4000/v1/messages?beta=true&x",
            "127.0.0.1",
            "/v1/messages?beta=true&x",
        );
        f.start_time = Utc
            .with_ymd_and_hms(2026, 1, 2, 3, 4, 5)
            .single()
            .expect("time");
        f.duration_ms = Some(120.0);
        f.ttfb_ms = Some(40.0);
        f.status_code = Some(200);
        f.request_headers = vec![
            ("x-api-key".into(), "sk-ant…abcd".into()),
            ("content-type".into(), "application/json".into()),
        ];
        f.request_body = Bytes::from_static(b"{\"a\":1}");
        f.request_body_size = 7;
        f.response_body = Bytes::from_static(b"\xff\x00bin");
        f.response_body_size = 100;
        f
    }

    #[test]
    fn har_shape() {
        let mut failed = flow();
        failed.error_type = Some(ErrorKind::Connect);
        failed.error_message = Some("refused".into());
        failed.status_code = Some(502);
        let har = to_har(&[flow(), failed]);
        let json: serde_json::Value =
            serde_json::from_str(&super::to_json(&har).expect("json")).expect("parse");
        let log = &json["log"];
        assert_eq!(log["version"], "1.2");
        assert_eq!(log["creator"]["name"], "ccproxy");
        let e = &log["entries"][0];
        assert_eq!(e["startedDateTime"], "2026-01-02T03:04:05.000Z");
        assert_eq!(e["time"], 120.0);
        assert_eq!(e["timings"]["wait"], 40.0);
        assert_eq!(e["timings"]["receive"], 80.0);
        assert_eq!(e["request"]["method"], "POST");
        assert_eq!(e["request"]["headers"][0]["value"], "sk-ant…abcd");
        assert_eq!(e["request"]["queryString"][0]["name"], "beta");
        assert_eq!(e["request"]["queryString"][1]["value"], "");
        assert_eq!(e["request"]["postData"]["text"], "{\"a\":1}");
        assert_eq!(e["request"]["postData"]["mimeType"], "application/json");
        assert_eq!(e["response"]["status"], 200);
        assert_eq!(e["response"]["statusText"], "OK");
        assert_eq!(e["response"]["content"]["encoding"], "base64");
        assert_eq!(e["response"]["content"]["size"], 100);
        assert!(e["response"]["content"]["comment"]
            .as_str()
            .is_some_and(|c| c.contains("cut at 5 of 100")));
        assert!(log["entries"][1]["comment"]
            .as_str()
            .is_some_and(|c| c.contains("connect: refused")));
        // The document reads back as HAR 1.2.
        let back = har::from_str(&super::to_json(&har).expect("json")).expect("reparse");
        assert_eq!(back.version(), har::HarVersion::V1_2);
        assert!(e.get("_llm").is_none(), "no analysis, no _llm");
    }

    #[test]
    fn llm_analysis_and_websocket_messages_are_extensions() {
        let mut f = flow();
        f.request_headers = vec![("content-type".into(), "application/json".into())];
        f.request_body = Bytes::from_static(
            br#"{"model":"claude-sonnet-4-5","max_tokens":5,"messages":[{"role":"user","content":"hi"}]}"#,
        );
        f.response_content_type = Some("application/json".into());
        f.response_body = Bytes::from_static(
            br#"{"type":"message","id":"msg_1","model":"claude-sonnet-4-5-20250929","role":"assistant","content":[{"type":"text","text":"hello"}],"stop_reason":"end_turn","usage":{"input_tokens":12,"output_tokens":3,"cache_read_input_tokens":100}}"#,
        );
        f.traffic_type = super::super::TrafficType::Llm;
        let analysis = crate::llm::analyze(&f, crate::llm::PriceTable::shared()).expect("llm");
        f.llm = Some(Arc::new(analysis));
        let mut ws = flow();
        ws.ws_messages = vec![super::super::WsMessage {
            from: super::super::WsFrom::Client,
            offset_ms: 1500.0,
            opcode: super::super::WsOpcode::Text,
            size: 5,
            data: Bytes::from_static(b"hello"),
            compressed: false,
        }];
        let json: serde_json::Value =
            serde_json::from_str(&super::to_json(&to_har(&[f, ws])).expect("json")).expect("parse");
        let llm = &json["log"]["entries"][0]["_llm"];
        assert_eq!(llm["api"], "anthropic.messages", "{llm}");
        assert_eq!(llm["usage"]["input"], 12, "{llm}");
        assert_eq!(llm["usage"]["cache_read"], 100, "{llm}");
        assert_eq!(llm["stop_reason"], "end_turn");
        let m = &json["log"]["entries"][1]["_webSocketMessages"][0];
        assert_eq!(m["type"], "send");
        assert_eq!(m["opcode"], 1);
        assert_eq!(m["data"], "hello");
        let start = json["log"]["entries"][1]["startedDateTime"]
            .as_str()
            .expect("start");
        let start = chrono::DateTime::parse_from_rfc3339(start).expect("rfc3339");
        let t = m["time"].as_f64().expect("time");
        assert!(
            (t - start.timestamp_millis() as f64 / 1000.0 - 1.5).abs() < 1e-6,
            "{t}"
        );
    }

    #[test]
    fn write_to_file() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("out.har");
        write_har(&to_har(&[flow()]), &path).expect("write");
        let back = har::from_path(&path).expect("read");
        match back.log {
            har::Spec::V1_2(log) => assert_eq!(log.entries.len(), 1),
            har::Spec::V1_3(_) => panic!("wrong version"),
        }
        let err =
            write_har(&to_har(&[]), &dir.path().join("no/such/dir.har")).expect_err("missing dir");
        assert!(err.to_string().contains("writable"));
    }
}
