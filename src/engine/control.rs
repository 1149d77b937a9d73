//! The control socket `<home>/ccproxy.sock` (mode 0600): newline-delimited JSON.
//!
//! A client writes one request line and reads answer lines:
//! - `{"cmd":"status"}` → one [`EngineStatus`] line, then the server closes.
//! - `{"cmd":"subscribe"}` → a stream of lines until either side closes:
//!   flow events exactly as [`FlowEvent`] serialises them
//!   (`{"event":"started","flow":{…}}`, `responded`, `response_chunk`, `completed`),
//!   `{"event":"status","status":{…EngineStatus…}}` about once a second, and
//!   `{"event":"lagged","missed":N}` when this subscriber fell behind and
//!   skipped N events. A slow subscriber only ever loses its own events; the
//!   proxy never waits for it.

use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, BufWriter};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{broadcast, mpsc};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::engine::pidfile::{self, Liveness};
use crate::engine::status::{EngineStatus, Feed};
use crate::flow::{FlowEvent, FlowHub};
use crate::home::Home;

/// Builds a fresh status document on demand.
pub type StatusFn = Arc<dyn Fn() -> EngineStatus + Send + Sync>;

/// How many feed items a viewer may have queued before the pump waits (and the hub counts lag).
pub const FEED_QUEUE: usize = 1024;

/// Errors talking to the control socket.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// Socket I/O failed.
    #[error("control socket {path}: {source}")]
    Io { path: String, source: io::Error },
    /// The engine answered something that is not the expected JSON.
    #[error("control socket {path}: unexpected answer ({message}); is the engine the same ccproxy version?")]
    Protocol { path: String, message: String },
}

/// A request line.
#[derive(Debug, Serialize, Deserialize)]
struct Request {
    cmd: String,
}

/// Bind the socket (replacing a stale file) with mode 0600.
pub fn bind(path: &Path) -> io::Result<UnixListener> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let listener = UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

/// Serve control clients until `shutdown`.
pub fn serve(
    listener: UnixListener,
    hub: FlowHub,
    status: StatusFn,
    shutdown: CancellationToken,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let stream = tokio::select! {
                () = shutdown.cancelled() => return,
                r = listener.accept() => match r {
                    Ok((s, _)) => s,
                    Err(e) => {
                        tracing::warn!(error = %e, "control socket accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                },
            };
            let (hub, status, shutdown) = (hub.clone(), Arc::clone(&status), shutdown.clone());
            tokio::spawn(async move {
                if let Err(e) = handle(stream, hub, status, shutdown).await {
                    tracing::debug!(error = %e, "control client ended");
                }
            });
        }
    })
}

async fn handle(
    stream: UnixStream,
    hub: FlowHub,
    status: StatusFn,
    shutdown: CancellationToken,
) -> io::Result<()> {
    let (read, write) = stream.into_split();
    let mut read = BufReader::new(read);
    let mut write = BufWriter::new(write);
    let cmd = tokio::time::timeout(Duration::from_secs(10), read_request(&mut read))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "no request line"))??;
    let Some(cmd) = cmd else {
        return Ok(());
    };
    match cmd.as_deref() {
        Ok("status") => {
            let doc = serde_json::to_string(&status()).map_err(io::Error::other)?;
            write.write_all(doc.as_bytes()).await?;
            write.write_all(b"\n").await?;
            write.flush().await
        }
        Ok("subscribe") => {
            let mut feed = pump(hub.subscribe(), status, shutdown.clone());
            // Notice a client that hangs up even while no events flow.
            let mut closed = Box::pin(async move {
                let mut sink = Vec::new();
                let _ = tokio::io::AsyncReadExt::read_to_end(&mut read, &mut sink).await;
            });
            loop {
                let item = tokio::select! {
                    () = &mut closed => return Ok(()),
                    item = feed.recv() => item,
                };
                let Some(item) = item else {
                    return write.flush().await;
                };
                write.write_all(encode(&item)?.as_bytes()).await?;
                if feed.is_empty() {
                    write.flush().await?;
                }
            }
        }
        _ => {
            write
                .write_all(b"{\"error\":\"unknown request; send {\\\"cmd\\\":\\\"status\\\"} or {\\\"cmd\\\":\\\"subscribe\\\"}\"}\n")
                .await?;
            write.flush().await
        }
    }
}

/// The longest request line a client may send; a longer one is refused
/// without buffering it (a request is `{"cmd":"subscribe"}`).
pub const MAX_REQUEST_LINE: u64 = 4096;

/// Read a client's request line, at most [`MAX_REQUEST_LINE`] bytes.
/// `Ok(None)`: the client closed without a word; `Ok(Some(Err(why)))`: a line
/// that is not a request (too long, not UTF-8, not `{"cmd":…}`).
pub async fn read_request<R>(read: &mut R) -> io::Result<Option<Result<String, String>>>
where
    R: tokio::io::AsyncBufRead + Unpin,
{
    let mut line = Vec::new();
    let n = tokio::io::AsyncReadExt::take(&mut *read, MAX_REQUEST_LINE)
        .read_until(b'\n', &mut line)
        .await?;
    if n == 0 {
        return Ok(None);
    }
    if line.last() != Some(&b'\n') && n as u64 >= MAX_REQUEST_LINE {
        return Ok(Some(Err(format!(
            "request line longer than {MAX_REQUEST_LINE} bytes"
        ))));
    }
    Ok(Some(
        serde_json::from_slice::<Request>(&line)
            .map(|r| r.cmd)
            .map_err(|e| e.to_string()),
    ))
}

/// One wire line (with its newline) for a feed item.
pub fn encode(item: &Feed) -> io::Result<String> {
    let mut s = match item {
        Feed::Event(ev) => serde_json::to_string(&**ev),
        Feed::Lagged(n) => Ok(format!("{{\"event\":\"lagged\",\"missed\":{n}}}")),
        Feed::Status(st) => serde_json::to_string(&serde_json::json!({
            "event": "status",
            "status": st,
        })),
    }
    .map_err(io::Error::other)?;
    s.push('\n');
    Ok(s)
}

/// Parse one wire line back into a feed item.
pub fn decode(line: &str) -> Result<Feed, String> {
    let value: serde_json::Value = serde_json::from_str(line).map_err(|e| e.to_string())?;
    match value.get("event").and_then(serde_json::Value::as_str) {
        Some("lagged") => Ok(Feed::Lagged(
            value
                .get("missed")
                .and_then(serde_json::Value::as_u64)
                .unwrap_or(0),
        )),
        Some("status") => {
            let status = value.get("status").cloned().unwrap_or_default();
            serde_json::from_value::<EngineStatus>(status)
                .map(|s| Feed::Status(Box::new(s)))
                .map_err(|e| e.to_string())
        }
        Some(_) => serde_json::from_value::<FlowEvent>(value)
            .map(|ev| Feed::Event(Arc::new(ev)))
            .map_err(|e| e.to_string()),
        None => Err("a line without `event`".into()),
    }
}

/// Adapt a hub subscription into a bounded viewer queue, with a status item
/// every second and `Lagged(n)` when the viewer fell behind.
pub fn pump(
    mut rx: crate::flow::LiveReceiver,
    status: StatusFn,
    shutdown: CancellationToken,
) -> mpsc::Receiver<Feed> {
    let (tx, out) = mpsc::channel(FEED_QUEUE);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            let item = tokio::select! {
                biased;
                () = shutdown.cancelled() => return,
                () = tx.closed() => return,
                r = rx.recv() => match r {
                    Ok(ev) => Feed::Event(ev),
                    Err(broadcast::error::RecvError::Lagged(n)) => Feed::Lagged(n),
                    Err(broadcast::error::RecvError::Closed) => return,
                },
                _ = tick.tick() => Feed::Status(Box::new(status())),
            };
            if tx.send(item).await.is_err() {
                return;
            }
        }
    });
    out
}

/// Ask the engine for its status; `Ok(None)` when no engine listens on `path`.
pub async fn request_status(path: &Path) -> Result<Option<EngineStatus>, ControlError> {
    let Some(stream) = connect(path).await? else {
        return Ok(None);
    };
    let io_err = |source| ControlError::Io {
        path: path.display().to_string(),
        source,
    };
    let (read, mut write) = stream.into_split();
    write
        .write_all(b"{\"cmd\":\"status\"}\n")
        .await
        .map_err(io_err)?;
    let mut line = String::new();
    tokio::time::timeout(
        Duration::from_secs(5),
        BufReader::new(read).read_line(&mut line),
    )
    .await
    .map_err(|_| io_err(io::Error::new(io::ErrorKind::TimedOut, "no answer in 5 s")))?
    .map_err(io_err)?;
    if line.is_empty() {
        return Ok(None);
    }
    serde_json::from_str(&line)
        .map(Some)
        .map_err(|e| ControlError::Protocol {
            path: path.display().to_string(),
            message: e.to_string(),
        })
}

/// Subscribe to the engine's live feed; `Ok(None)` when no engine listens on `path`.
pub async fn subscribe(path: &Path) -> Result<Option<mpsc::Receiver<Feed>>, ControlError> {
    let Some(stream) = connect(path).await? else {
        return Ok(None);
    };
    let (read, mut write) = stream.into_split();
    write
        .write_all(b"{\"cmd\":\"subscribe\"}\n")
        .await
        .map_err(|source| ControlError::Io {
            path: path.display().to_string(),
            source,
        })?;
    let (tx, rx) = mpsc::channel(FEED_QUEUE);
    tokio::spawn(async move {
        // Keep the write half open: dropping it would tell the engine we left.
        let _write = write;
        let mut lines = BufReader::new(read).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            match decode(&line) {
                Ok(item) => {
                    if tx.send(item).await.is_err() {
                        return;
                    }
                }
                Err(e) => tracing::warn!(error = %e, "bad line from the control socket"),
            }
        }
    });
    Ok(Some(rx))
}

/// Attach to the running engine's live feed (the client side of
/// `subscribe`); `Ok(None)` when no engine runs in this home.
pub async fn attach(cfg: &Config) -> Result<Option<mpsc::Receiver<Feed>>, ControlError> {
    let home = Home::new(cfg);
    if !matches!(pidfile::check(&home.engine_lock()), Liveness::Running(_)) {
        return Ok(None);
    }
    subscribe(&home.socket()).await
}

async fn connect(path: &Path) -> Result<Option<UnixStream>, ControlError> {
    match UnixStream::connect(path).await {
        Ok(s) => Ok(Some(s)),
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused
            ) =>
        {
            Ok(None)
        }
        Err(source) => Err(ControlError::Io {
            path: path.display().to_string(),
            source,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::{Direction, Flow};

    fn status() -> EngineStatus {
        EngineStatus {
            schema: 1,
            pid: 7,
            mode: "forward".into(),
            started_at: chrono::Utc::now(),
            forward: Some("127.0.0.1:1".into()),
            reverse: None,
            gateway: None,
            storage: crate::store::StoreStats::default(),
            flows: crate::flow::HubSnapshot::default(),
            otel: None,
        }
    }

    fn flow(i: usize) -> Arc<Flow> {
        Arc::new(Flow::new(
            Direction::Forward,
            "GET",
            &format!("http://h/{i}"),
            "h",
            &format!("/{i}"),
        ))
    }

    #[test]
    fn wire_lines_round_trip() {
        let items = [
            Feed::Event(Arc::new(FlowEvent::Completed { flow: flow(1) })),
            Feed::Lagged(42),
            Feed::Status(Box::new(status())),
        ];
        for item in items {
            let line = encode(&item).expect("encode");
            assert!(line.ends_with('\n') && line.matches('\n').count() == 1);
            match (decode(line.trim_end()).expect("decode"), &item) {
                (Feed::Event(a), Feed::Event(b)) => assert_eq!(a.id(), b.id()),
                (Feed::Lagged(a), Feed::Lagged(b)) => assert_eq!(a, *b),
                (Feed::Status(a), Feed::Status(b)) => assert_eq!(a, *b),
                (got, want) => panic!("{got:?} != {want:?}"),
            }
        }
    }

    /// A viewer that never reads costs the hub nothing: publishing never
    /// waits, and the viewer learns how much it missed.
    #[tokio::test]
    async fn a_slow_subscriber_is_dropped_behind_not_waited_for() {
        let hub = FlowHub::new(64);
        let shutdown = CancellationToken::new();
        let mut feed = pump(hub.subscribe(), Arc::new(status), shutdown.clone());
        for i in 0..(FEED_QUEUE * 4) {
            hub.started(flow(i));
            if i % 256 == 0 {
                tokio::task::yield_now().await;
            }
        }
        let mut missed = 0;
        let mut events = 0;
        while let Ok(Some(item)) =
            tokio::time::timeout(Duration::from_millis(500), feed.recv()).await
        {
            match item {
                Feed::Lagged(n) => missed += n,
                Feed::Event(_) => events += 1,
                Feed::Status(_) => {}
            }
        }
        assert!(missed > 0, "the slow viewer was told it missed events");
        assert_eq!(missed + events, (FEED_QUEUE * 4) as u64);
        shutdown.cancel();
    }

    #[tokio::test]
    async fn socket_status_and_subscribe() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("c.sock");
        let listener = bind(&path).expect("bind");
        let mode = std::fs::metadata(&path).expect("meta").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let hub = FlowHub::new(64);
        let shutdown = CancellationToken::new();
        let server = serve(listener, hub.clone(), Arc::new(status), shutdown.clone());
        let st = request_status(&path).await.expect("io").expect("answer");
        assert_eq!(st.pid, 7);
        let mut feed = subscribe(&path).await.expect("io").expect("engine");
        // Publish until the subscription is live (it attaches asynchronously).
        let want = flow(9).id;
        let got = loop {
            hub.started(Arc::new(Flow {
                id: want,
                ..(*flow(9)).clone()
            }));
            match tokio::time::timeout(Duration::from_millis(200), feed.recv()).await {
                Ok(Some(Feed::Event(ev))) => break ev.id(),
                Ok(Some(_)) | Err(_) => {}
                Ok(None) => panic!("feed closed"),
            }
        };
        assert_eq!(got, want);
        shutdown.cancel();
        let _ = server.await;
        let missing = dir.path().join("none.sock");
        assert!(request_status(&missing).await.expect("io").is_none());
    }
}
