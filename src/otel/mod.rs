//! OpenTelemetry export: every completed LLM (and MCP) exchange becomes one
//! OTLP span, sent over HTTP (protobuf by default, JSON on request) to the
//! collector the platform team already runs.
//!
//! Spans follow the GenAI semantic conventions (`gen_ai.*`) and read the one
//! analysis of the flow (`Flow::llm`); they never re-parse a body. Export never
//! slows the proxy: the exporter takes flows from the hub's broadcast (a
//! viewer like any other), keeps a bounded queue, sends batches, and counts
//! what it had to drop. Bodies (`gen_ai.input.messages`, …) are attached only
//! with `capture_content: true`, and what is attached was redacted at capture.

mod span;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message as _;
use serde::{Deserialize, Serialize};
use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;

use crate::config::{OtelConfig, OtelProtocol};
use crate::flow::{Flow, FlowEvent};

pub use span::{span_for, spans_request};

/// Flows waiting to be exported; past this they are dropped and counted.
const QUEUE: usize = 4096;
/// Spans per OTLP request.
const BATCH: usize = 512;
/// Longest a finished flow waits before its batch is sent.
const LINGER: Duration = Duration::from_millis(500);
/// One export request's time limit.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);

/// Errors setting up the exporter; each says what to change.
#[derive(Debug, thiserror::Error)]
pub enum OtelError {
    /// The endpoint is not an http(s) URL.
    #[error("otel endpoint {0:?} is not an http:// or https:// URL; set ccproxy.otel.endpoint or OTEL_EXPORTER_OTLP_ENDPOINT to e.g. http://127.0.0.1:4318")]
    Endpoint(String),
    /// A header name or value cannot be sent.
    #[error("otel header {0:?} is not a valid HTTP header; check ccproxy.otel.headers / OTEL_EXPORTER_OTLP_HEADERS")]
    Header(String),
    /// The system trust store could not be read for an https endpoint.
    #[error("cannot load the system trust store for the otel endpoint: {0}")]
    Tls(String),
}

/// What the exporter has done, for `status` (`otel` in `status --json`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct OtelStats {
    /// Where spans go (`…/v1/traces`).
    pub endpoint: String,
    /// `http/protobuf` or `http/json`.
    pub protocol: String,
    /// Spans the collector accepted.
    pub exported: u64,
    /// Spans given up: queue full, viewer lag, or a failed request.
    pub dropped: u64,
    /// The last failure, if any (cleared by the next success).
    pub last_error: Option<String>,
}

#[derive(Default)]
struct Counters {
    exported: AtomicU64,
    dropped: AtomicU64,
    last_error: Mutex<Option<String>>,
}

/// A running exporter: its counters, shared with the task that sends.
#[derive(Clone)]
pub struct Exporter {
    endpoint: String,
    protocol: OtelProtocol,
    counters: Arc<Counters>,
}

impl Exporter {
    /// Start exporting the completed flows of `events` until `stop` fires
    /// (what is queued then is sent before the task ends). `host` names the
    /// machine in the resource (`host.name`).
    pub fn start(
        cfg: &OtelConfig,
        host: String,
        events: crate::flow::QuietReceiver,
        stop: CancellationToken,
    ) -> Result<(Self, tokio::task::JoinHandle<()>), OtelError> {
        let endpoint = traces_url(&cfg.endpoint)?;
        let headers = cfg
            .headers
            .iter()
            .map(|(k, v)| {
                let name = http::HeaderName::try_from(k.as_str())
                    .map_err(|_| OtelError::Header(k.clone()))?;
                let value = http::HeaderValue::try_from(v.as_str())
                    .map_err(|_| OtelError::Header(k.clone()))?;
                Ok((name, value))
            })
            .collect::<Result<Vec<_>, OtelError>>()?;
        let mut roots = rustls::RootCertStore::empty();
        let native = rustls_native_certs::load_native_certs();
        let (added, _) = roots.add_parsable_certificates(native.certs);
        if added == 0 && endpoint.starts_with("https:") {
            let why = native
                .errors
                .first()
                .map_or_else(|| "no certificates found".to_string(), ToString::to_string);
            return Err(OtelError::Tls(why));
        }
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| OtelError::Tls(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .build();
        let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build(https);
        let me = Self {
            endpoint: endpoint.clone(),
            protocol: cfg.protocol,
            counters: Arc::default(),
        };
        let (tx, rx) = mpsc::channel::<Arc<Flow>>(QUEUE);
        let counters = Arc::clone(&me.counters);
        tokio::spawn(feed(events, tx, Arc::clone(&counters), stop));
        let sender = Sender {
            client,
            endpoint,
            protocol: cfg.protocol,
            headers,
            capture_content: cfg.capture_content,
            host,
            counters,
        };
        let task = tokio::spawn(sender.run(rx));
        Ok((me, task))
    }

    /// The counters as `status` shows them.
    pub fn stats(&self) -> OtelStats {
        OtelStats {
            endpoint: self.endpoint.clone(),
            protocol: self.protocol.as_str().to_string(),
            exported: self.counters.exported.load(Ordering::Relaxed),
            dropped: self.counters.dropped.load(Ordering::Relaxed),
            last_error: self
                .counters
                .last_error
                .lock()
                .map(|e| e.clone())
                .unwrap_or_default(),
        }
    }
}

/// The OTLP/HTTP traces URL: `OTEL_EXPORTER_OTLP_ENDPOINT` is a base to which
/// `/v1/traces` is added, unless the URL already names that path.
pub fn traces_url(endpoint: &str) -> Result<String, OtelError> {
    let e = endpoint.trim();
    if !(e.starts_with("http://") || e.starts_with("https://")) {
        return Err(OtelError::Endpoint(endpoint.to_string()));
    }
    if e.trim_end_matches('/').ends_with("/v1/traces") {
        return Ok(e.to_string());
    }
    Ok(format!("{}/v1/traces", e.trim_end_matches('/')))
}

/// Take completed LLM/MCP flows from the hub into the bounded queue; never waits.
async fn feed(
    mut quiet: crate::flow::QuietReceiver,
    tx: mpsc::Sender<Arc<Flow>>,
    counters: Arc<Counters>,
    stop: CancellationToken,
) {
    // A quiet viewer: whole flows only, so the hub sends no live chunks for it.
    let events = &mut quiet.rx;
    let mut stopping = false;
    loop {
        let ev = if stopping {
            // Stopping: take what the hub already sent, then end (the sender flushes).
            match events.try_recv() {
                Ok(ev) => Ok(ev),
                Err(broadcast::error::TryRecvError::Lagged(n)) => {
                    Err(broadcast::error::RecvError::Lagged(n))
                }
                Err(_) => break,
            }
        } else {
            tokio::select! {
                () = stop.cancelled() => {
                    stopping = true;
                    continue;
                }
                ev = events.recv() => ev,
            }
        };
        match ev {
            Ok(ev) => {
                if let FlowEvent::Completed { flow } = ev.as_ref() {
                    if flow.llm.is_some() && tx.try_send(Arc::clone(flow)).is_err() {
                        counters.dropped.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            Err(broadcast::error::RecvError::Lagged(n)) => {
                counters.dropped.fetch_add(n, Ordering::Relaxed);
            }
            Err(broadcast::error::RecvError::Closed) => break,
        }
    }
}

struct Sender<C> {
    client: Client<C, Full<Bytes>>,
    endpoint: String,
    protocol: OtelProtocol,
    headers: Vec<(http::HeaderName, http::HeaderValue)>,
    capture_content: bool,
    host: String,
    counters: Arc<Counters>,
}

impl<C> Sender<C>
where
    C: hyper_util::client::legacy::connect::Connect + Clone + Send + Sync + 'static,
{
    async fn run(self, mut rx: mpsc::Receiver<Arc<Flow>>) {
        let mut batch: Vec<Arc<Flow>> = Vec::with_capacity(BATCH);
        loop {
            if rx.recv_many(&mut batch, BATCH).await == 0 {
                break;
            }
            // Let a burst fill the batch, but never hold a span longer than LINGER.
            let deadline = tokio::time::Instant::now() + LINGER;
            while batch.len() < BATCH {
                let room = BATCH - batch.len();
                match tokio::time::timeout_at(deadline, rx.recv_many(&mut batch, room)).await {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
            }
            self.send(&batch).await;
            batch.clear();
        }
    }

    async fn send(&self, flows: &[Arc<Flow>]) {
        let req = spans_request(flows, &self.host, self.capture_content);
        let n = req
            .resource_spans
            .iter()
            .flat_map(|r| &r.scope_spans)
            .map(|s| s.spans.len() as u64)
            .sum::<u64>();
        if n == 0 {
            return;
        }
        match self.post(&req).await {
            Ok(()) => {
                self.counters.exported.fetch_add(n, Ordering::Relaxed);
                if let Ok(mut e) = self.counters.last_error.lock() {
                    *e = None;
                }
            }
            Err(msg) => {
                self.counters.dropped.fetch_add(n, Ordering::Relaxed);
                tracing::warn!(endpoint = %self.endpoint, error = %msg, spans = n, "otel export failed; spans dropped");
                if let Ok(mut e) = self.counters.last_error.lock() {
                    *e = Some(msg);
                }
            }
        }
    }

    async fn post(&self, req: &ExportTraceServiceRequest) -> Result<(), String> {
        let (body, content_type) = match self.protocol {
            OtelProtocol::Protobuf => (req.encode_to_vec(), "application/x-protobuf"),
            OtelProtocol::Json => (
                serde_json::to_vec(req).map_err(|e| format!("cannot encode JSON: {e}"))?,
                "application/json",
            ),
        };
        let mut builder = http::Request::post(&self.endpoint).header("content-type", content_type);
        for (k, v) in &self.headers {
            builder = builder.header(k, v);
        }
        let request = builder
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| format!("bad request: {e}"))?;
        let resp = tokio::time::timeout(SEND_TIMEOUT, self.client.request(request))
            .await
            .map_err(|_| format!("no answer within {}s", SEND_TIMEOUT.as_secs()))?
            .map_err(|e| format!("cannot reach the collector: {}", chain(&e)))?;
        let status = resp.status();
        // Read the answer so the connection can be reused.
        let _ = resp.into_body().collect().await;
        if status.is_success() {
            Ok(())
        } else {
            Err(format!("collector answered {status}"))
        }
    }
}

/// An error and its causes on one line.
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        out.push_str(": ");
        out.push_str(&c.to_string());
        cur = c.source();
    }
    out
}
