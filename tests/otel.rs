//! OpenTelemetry: the real engine exports each completed LLM exchange as an
//! OTLP/HTTP span to a local receiver, which decodes it with the official
//! protobuf definitions (and the JSON mapping); no secret is in any span.

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::BodyExt as _;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message as _;

use common::engine::{Setup, TestHome};

const SECRET_KEY: &str = "sk-ant-api03-PLANTEDsecretVALUE0123456789abcdefghijklmnop";

const SSE: &str = concat!(
    "event: message_start\n",
    "data: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_otel1\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"claude-sonnet-4-20250514\",\"content\":[],\"stop_reason\":null,\"usage\":{\"input_tokens\":12,\"cache_read_input_tokens\":800,\"cache_creation_input_tokens\":100,\"output_tokens\":1}}}\n\n",
    "event: content_block_start\n",
    "data: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n",
    "event: content_block_delta\n",
    "data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Hello there\"}}\n\n",
    "event: content_block_stop\n",
    "data: {\"type\":\"content_block_stop\",\"index\":0}\n\n",
    "event: message_delta\n",
    "data: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"},\"usage\":{\"output_tokens\":42}}\n\n",
    "event: message_stop\n",
    "data: {\"type\":\"message_stop\"}\n\n",
);

/// A plain-HTTP stand-in provider answering every request with [`SSE`].
fn provider(rt: &tokio::runtime::Runtime) -> std::net::SocketAddr {
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    rt.spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            tokio::spawn(async move {
                let svc = service_fn(|req: hyper::Request<hyper::body::Incoming>| async move {
                    let _ = req.into_body().collect().await;
                    Ok::<_, std::convert::Infallible>(
                        hyper::Response::builder()
                            .header("content-type", "text/event-stream")
                            .body(http_body_util::Full::new(Bytes::from_static(
                                SSE.as_bytes(),
                            )))
                            .expect("response"),
                    )
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tcp), svc)
                    .await;
            });
        }
    });
    addr
}

/// A local OTLP/HTTP receiver: every POST's (path, content-type, headers, body).
type Received =
    std::sync::Arc<std::sync::Mutex<Vec<(String, String, HashMap<String, String>, Bytes)>>>;

fn receiver(rt: &tokio::runtime::Runtime) -> (std::net::SocketAddr, Received) {
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let got: Received = Received::default();
    let store = got.clone();
    rt.spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let store = store.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let store = store.clone();
                    async move {
                        let path = req.uri().path().to_string();
                        let headers: HashMap<String, String> = req
                            .headers()
                            .iter()
                            .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string()))
                            .collect();
                        let ct = headers.get("content-type").cloned().unwrap_or_default();
                        let body = req
                            .into_body()
                            .collect()
                            .await
                            .map(http_body_util::Collected::to_bytes)
                            .unwrap_or_default();
                        store.lock().expect("lock").push((path, ct, headers, body));
                        Ok::<_, std::convert::Infallible>(hyper::Response::new(
                            http_body_util::Full::new(Bytes::new()),
                        ))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tcp), svc)
                    .await;
            });
        }
    });
    (addr, got)
}

fn attr(span: &Span, key: &str) -> Option<Value> {
    span.attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.clone())
        .and_then(|v| v.value)
}

fn int(span: &Span, key: &str) -> Option<i64> {
    match attr(span, key)? {
        Value::IntValue(n) => Some(n),
        _ => None,
    }
}

fn string(span: &Span, key: &str) -> Option<String> {
    match attr(span, key)? {
        Value::StringValue(s) => Some(s),
        _ => None,
    }
}

/// Send one Anthropic call through the engine's forward listener and return
/// what the receiver got once the engine has stopped (stop flushes the exporter).
fn exchange(
    protocol: &str,
    capture_content: bool,
) -> Vec<(String, String, HashMap<String, String>, Bytes)> {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let upstream = provider(&rt);
    let (otlp, got) = receiver(&rt);
    let home = TestHome::new(&Setup::default());
    if capture_content {
        let yaml = std::fs::read_to_string(home.file("ccproxy.yaml")).expect("yaml");
        let yaml = yaml.replacen(
            "ccproxy:\n",
            "ccproxy:\n  otel:\n    capture_content: true\n",
            1,
        );
        std::fs::write(home.file("ccproxy.yaml"), yaml).expect("write yaml");
    }
    let out = home
        .cmd(&["mitm", "start", "-d"])
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", format!("http://{otlp}"))
        .env("OTEL_EXPORTER_OTLP_PROTOCOL", protocol)
        .env("OTEL_EXPORTER_OTLP_HEADERS", "x-team-token=team%20one")
        .output()
        .expect("start");
    assert!(
        out.status.success(),
        "start: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    let body = r#"{"model":"claude-sonnet-4-20250514","max_tokens":64,"stream":true,"system":"You are terse.","messages":[{"role":"user","content":"Say hello"}]}"#;
    let curl = std::process::Command::new("curl")
        .args([
            "-sS",
            "--max-time",
            "20",
            "-x",
            &format!("http://127.0.0.1:{}", home.forward),
        ])
        .args(["-H", &format!("x-api-key: {SECRET_KEY}")])
        .args(["-H", "content-type: application/json"])
        .args(["-H", "anthropic-version: 2023-06-01"])
        .args([
            "-H",
            "x-claude-code-session-id: 0b7e4d0c-6f9a-4c55-9e0e-6d8f2d3c1a11",
        ])
        .args(["-H", "user-agent: claude-cli/1.0.98 (external, cli)"])
        .args(["--data-binary", body])
        .arg(format!("http://{upstream}/v1/messages"))
        .output()
        .expect("curl");
    assert!(
        curl.status.success(),
        "curl: {}",
        String::from_utf8_lossy(&curl.stderr)
    );
    assert!(String::from_utf8_lossy(&curl.stdout).contains("Hello there"));

    // The span arrives within the exporter's linger; wait for it, then stop.
    let deadline = Instant::now() + Duration::from_secs(20);
    while got.lock().expect("lock").is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let status = home.status();
    let stop = home.run(&["stop"]);
    assert!(stop.status.success());
    let status = status.expect("status while running");
    assert_eq!(status["otel"]["protocol"], protocol, "{status}");
    let received = got.lock().expect("lock").clone();
    drop(rt);
    received
}

fn decode(received: &[(String, String, HashMap<String, String>, Bytes)], json: bool) -> Vec<Span> {
    received
        .iter()
        .flat_map(|(path, ct, _, body)| {
            assert_eq!(path, "/v1/traces");
            let req = if json {
                assert_eq!(ct, "application/json");
                serde_json::from_slice::<ExportTraceServiceRequest>(body).expect("OTLP JSON")
            } else {
                assert_eq!(ct, "application/x-protobuf");
                ExportTraceServiceRequest::decode(body.as_ref()).expect("OTLP protobuf")
            };
            req.resource_spans
                .into_iter()
                .flat_map(|r| r.scope_spans)
                .flat_map(|s| s.spans)
                .collect::<Vec<_>>()
        })
        .collect()
}

fn check_genai(span: &Span) {
    assert_eq!(span.name, "chat claude-sonnet-4-20250514");
    assert_eq!(
        string(span, "gen_ai.operation.name").as_deref(),
        Some("chat")
    );
    assert_eq!(
        string(span, "gen_ai.provider.name").as_deref(),
        Some("anthropic")
    );
    assert_eq!(
        string(span, "gen_ai.request.model").as_deref(),
        Some("claude-sonnet-4-20250514")
    );
    assert_eq!(
        string(span, "gen_ai.response.model").as_deref(),
        Some("claude-sonnet-4-20250514")
    );
    assert_eq!(
        string(span, "gen_ai.response.id").as_deref(),
        Some("msg_otel1")
    );
    match attr(span, "gen_ai.response.finish_reasons") {
        Some(Value::ArrayValue(a)) => {
            assert_eq!(a.values.len(), 1);
            assert_eq!(
                a.values[0].value,
                Some(Value::StringValue("end_turn".into()))
            );
        }
        other => panic!("finish_reasons: {other:?}"),
    }
    // The convention's input_tokens includes the cached parts: 12 + 800 + 100.
    assert_eq!(int(span, "gen_ai.usage.input_tokens"), Some(912));
    assert_eq!(int(span, "gen_ai.usage.output_tokens"), Some(42));
    assert_eq!(int(span, "gen_ai.usage.cache_read.input_tokens"), Some(800));
    assert_eq!(
        int(span, "gen_ai.usage.cache_creation.input_tokens"),
        Some(100)
    );
    assert_eq!(
        string(span, "gen_ai.conversation.id").as_deref(),
        Some("0b7e4d0c-6f9a-4c55-9e0e-6d8f2d3c1a11")
    );
    assert_eq!(string(span, "server.address").as_deref(), Some("127.0.0.1"));
    assert_eq!(int(span, "http.response.status_code"), Some(200));
    assert!(attr(span, "error.type").is_none());
    assert_eq!(span.trace_id.len(), 16);
    assert_eq!(span.span_id.len(), 8);
    assert!(span.end_time_unix_nano >= span.start_time_unix_nano);
}

#[test]
fn llm_exchange_is_exported_as_a_genai_span_over_protobuf() {
    let received = exchange("http/protobuf", false);
    let spans = decode(&received, false);
    assert_eq!(spans.len(), 1, "{spans:?}");
    check_genai(&spans[0]);
    // No content without capture_content, and the headers from the environment were sent.
    assert!(attr(&spans[0], "gen_ai.input.messages").is_none());
    assert_eq!(
        received[0].2.get("x-team-token").map(String::as_str),
        Some("team one")
    );
    for (_, _, _, body) in &received {
        assert!(
            !String::from_utf8_lossy(body).contains("PLANTEDsecret"),
            "a secret reached the span"
        );
    }
}

#[test]
fn json_protocol_and_captured_content_stay_redacted() {
    let received = exchange("http/json", true);
    let spans = decode(&received, true);
    assert_eq!(spans.len(), 1, "{spans:?}");
    check_genai(&spans[0]);
    let input = string(&spans[0], "gen_ai.input.messages").expect("input messages");
    assert!(input.contains("Say hello"), "{input}");
    assert!(string(&spans[0], "gen_ai.system_instructions").is_some_and(|s| s.contains("terse")));
    for (_, _, _, body) in &received {
        assert!(
            !String::from_utf8_lossy(body).contains("PLANTEDsecret"),
            "a secret reached the span"
        );
    }
}
