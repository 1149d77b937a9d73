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
}

/// Build a HAR 1.2 document from flows, in the order given.
pub fn to_har(flows: &[Flow]) -> har::Har {
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
pub fn to_har_arcs(flows: &[Arc<Flow>]) -> har::Har {
    let owned: Vec<Flow> = flows.iter().map(|f| Flow::clone(f)).collect();
    to_har(&owned)
}

/// `har` as pretty JSON.
pub fn to_json(har: &har::Har) -> Result<String, HarError> {
    Ok(har::to_json(har)?)
}

/// Serialise `har` as pretty JSON into the file at `path`.
pub fn write_har(har: &har::Har, path: &Path) -> Result<(), HarError> {
    let json = to_json(har)?;
    std::fs::write(path, json).map_err(|source| HarError::Write {
        path: path.display().to_string(),
        source,
    })
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
            serde_json::from_str(&har::to_json(&har).expect("json")).expect("parse");
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
        let back = har::from_str(&har::to_json(&har).expect("json")).expect("reparse");
        assert_eq!(back.version(), har::HarVersion::V1_2);
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
