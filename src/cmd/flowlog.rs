//! The headless flow log of `start --headless` and the detached engine: one
//! line per completed exchange on stderr.
//!
//! It subscribes to the hub as a quiet viewer (so live body chunks are not
//! published for it), takes flows in batches under load (its task wakes once
//! per [`LINGER`], not once per flow), and lines are formatted and written on
//! a thread of their own, so a slow terminal or pipe never holds a proxy worker; when
//! that thread falls behind by more than [`BACKLOG`] flows, the excess is
//! counted and skipped.

use std::io::Write as _;
use std::sync::mpsc::{sync_channel, Receiver, TrySendError};
use std::sync::Arc;

use tokio::sync::broadcast::error::{RecvError, TryRecvError};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::capture::sanitize::sanitize;
use crate::flow::{Flow, FlowEvent, FlowHub};

/// Completed flows waiting for the writer thread before new ones are skipped.
const BACKLOG: usize = 4096;

/// What the writer thread is handed.
enum Entry {
    Flow(Arc<Flow>),
    Skipped(u64),
}

/// Print a line for every completed flow until `shutdown`.
pub fn spawn(hub: &FlowHub, shutdown: CancellationToken) -> JoinHandle<()> {
    let mut quiet = hub.subscribe_quiet();
    let (tx, lines) = sync_channel::<Entry>(BACKLOG);
    let writer = std::thread::Builder::new()
        .name("ccproxy-flow-log".into())
        .spawn(move || write_lines(&lines));
    if let Err(e) = writer {
        tracing::warn!(error = %e, "cannot start the flow log thread; no flow log");
    }
    tokio::spawn(async move {
        let mut skipped = 0u64;
        loop {
            if shutdown.is_cancelled() {
                break;
            }
            // Under load, take what has queued up, then let more gather for
            // LINGER: one wake-up of this task per LINGER instead of one per
            // flow (each a cross-thread wake-up of the runtime it runs on).
            let ev = match quiet.rx.try_recv() {
                Ok(ev) => Ok(ev),
                Err(TryRecvError::Lagged(n)) => Err(RecvError::Lagged(n)),
                Err(TryRecvError::Closed) => break,
                Err(TryRecvError::Empty) => {
                    tokio::select! {
                        () = shutdown.cancelled() => break,
                        () = tokio::time::sleep(LINGER) => {}
                    }
                    if !quiet.rx.is_empty() {
                        continue;
                    }
                    tokio::select! {
                        () = shutdown.cancelled() => break,
                        ev = quiet.rx.recv() => ev,
                    }
                }
            };
            let entry = match ev {
                Ok(ev) => match &*ev {
                    FlowEvent::Completed { flow } => Entry::Flow(Arc::clone(flow)),
                    _ => continue,
                },
                Err(RecvError::Lagged(n)) => Entry::Skipped(n),
                Err(RecvError::Closed) => break,
            };
            if skipped > 0 && tx.try_send(Entry::Skipped(skipped)).is_ok() {
                skipped = 0;
            }
            match tx.try_send(entry) {
                Ok(()) => {}
                Err(TrySendError::Full(Entry::Skipped(n))) => skipped += n,
                Err(TrySendError::Full(Entry::Flow(_))) => skipped += 1,
                Err(TrySendError::Disconnected(_)) => break,
            }
        }
    })
}

/// How long the writer lets lines gather after draining the queue: under
/// load it wakes and writes once per `LINGER`, not once per flow (each of
/// those was a thread wake-up and a `write` on a busy 2-core machine).
const LINGER: std::time::Duration = std::time::Duration::from_millis(10);

/// The longest a line waits in the writer's buffer while flows keep coming.
const FLUSH_EVERY: std::time::Duration = std::time::Duration::from_millis(100);

/// The writer thread: format and write until the sender goes away. When the
/// queue runs dry it waits [`LINGER`] for more; only when nothing came
/// meanwhile does it flush and block until the next flow.
fn write_lines(entries: &Receiver<Entry>) {
    let mut out = std::io::BufWriter::with_capacity(64 * 1024, std::io::stderr());
    let mut last_flush = std::time::Instant::now();
    loop {
        let idle = || {
            let _ = out.flush();
            last_flush = std::time::Instant::now();
        };
        let Some(entry) = crate::flow::hub::recv_lingering(entries, LINGER, idle) else {
            break;
        };
        let _ = match entry {
            Entry::Flow(flow) => {
                let mut l = line(&flow);
                l.push('\n');
                out.write_all(l.as_bytes())
            }
            Entry::Skipped(n) => writeln!(out, "(flow log fell behind: {n} events skipped)"),
        };
        // A steady trickle never leaves the queue dry: write out at least
        // every FLUSH_EVERY anyway.
        if last_flush.elapsed() >= FLUSH_EVERY {
            let _ = out.flush();
            last_flush = std::time::Instant::now();
        }
    }
    let _ = out.flush();
}

/// One log line: time, traffic type, method, status, host+path, duration, sizes.
/// Written piece by piece (no `fmt` machinery, no float formatting): the
/// line is built for every proxied exchange.
pub fn line(flow: &Flow) -> String {
    use chrono::Timelike as _;
    let mut s = String::with_capacity(128);
    let t = flow.start_time;
    let millis = (t.nanosecond() / 1_000_000).min(999);
    digits(&mut s, u64::from(t.hour()), 2);
    s.push(':');
    digits(&mut s, u64::from(t.minute()), 2);
    s.push(':');
    digits(&mut s, u64::from(t.second()), 2);
    s.push('.');
    digits(&mut s, u64::from(millis), 3);
    s.push(' ');
    padded(&mut s, flow.traffic_type.as_str(), 5);
    s.push(' ');
    padded(&mut s, &sanitize(&flow.method), 7);
    s.push(' ');
    match flow.status_code {
        Some(c) => digits(&mut s, u64::from(c), 1),
        None => s.push_str("---"),
    }
    s.push(' ');
    s.push_str(&sanitize(&flow.host));
    s.push_str(&sanitize(&flow.path));
    s.push(' ');
    match flow.duration_ms {
        Some(d) => {
            let tenths = (d * 10.0).round() as u64;
            tenths_of(&mut s, tenths);
            s.push_str("ms");
        }
        None => s.push('-'),
    }
    s.push_str(" ↑");
    size(&mut s, flow.request_body_size);
    s.push_str(" ↓");
    size(&mut s, flow.response_body_size);
    if let Some(kind) = flow.error_type {
        s.push_str(" error=");
        s.push_str(kind.as_str());
        s.push(' ');
        s.push_str(&sanitize(flow.error_message.as_deref().unwrap_or_default()));
    }
    s
}

/// `n` in decimal, zero-padded to `width` digits.
fn digits(s: &mut String, mut n: u64, width: usize) {
    let mut buf = [b'0'; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    let start = i.min(buf.len().saturating_sub(width));
    for &b in &buf[start..] {
        s.push(char::from(b));
    }
}

/// `text`, then spaces up to `width` characters.
fn padded(s: &mut String, text: &str, width: usize) {
    s.push_str(text);
    for _ in text.chars().count()..width {
        s.push(' ');
    }
}

/// `tenths / 10` `.` `tenths % 10`.
fn tenths_of(s: &mut String, tenths: u64) {
    digits(s, tenths / 10, 1);
    s.push('.');
    digits(s, tenths % 10, 1);
}

/// `512B`, `2.0KB`, `1.5MB` (tenths rounded).
fn size(s: &mut String, n: u64) {
    let (unit, div) = match n {
        0..1024 => {
            digits(s, n, 1);
            s.push('B');
            return;
        }
        1024..1_048_576 => ("KB", 1024u128),
        _ => ("MB", 1_048_576u128),
    };
    let tenths = (u128::from(n) * 10 + div / 2) / div;
    tenths_of(s, u64::try_from(tenths).unwrap_or(u64::MAX));
    s.push_str(unit);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::{Direction, ErrorKind, TrafficType};

    #[test]
    fn line_is_sanitized_and_complete() {
        let mut f = Flow::new(
            Direction::Forward,
            "POST",
            "https://api.anthropic.com/v1/messages",
            "api.anthropic.com",
            "/v1/messages\x1b[2J",
        );
        f.traffic_type = TrafficType::Llm;
        f.status_code = Some(200);
        f.duration_ms = Some(12.34);
        f.request_body_size = 2048;
        f.response_body_size = 10;
        let l = line(&f);
        assert!(
            l.contains("llm   POST    200 api.anthropic.com/v1/messages␛[2J 12.3ms ↑2.0KB ↓10B"),
            "{l}"
        );
        assert!(!l.contains('\x1b'));
        f.error_type = Some(ErrorKind::Connect);
        f.error_message = Some("refused".into());
        assert!(line(&f).ends_with("error=connect refused"));
        f.duration_ms = None;
        f.status_code = None;
        f.request_body_size = 3 * 1_048_576 / 2;
        f.response_body_size = 1023;
        let l = line(&f);
        assert!(l.contains(" --- ") && l.contains(" - ↑1.5MB ↓1023B"), "{l}");
        let time = &l[..12];
        assert_eq!(time, f.start_time.format("%H:%M:%S%.3f").to_string());
        // Wide numbers and padding as `format!` would write them.
        f.status_code = Some(7);
        f.duration_ms = Some(123_456.78);
        f.method = "PROPPATCH".into();
        f.traffic_type = TrafficType::Mcp;
        f.request_body_size = 0;
        f.response_body_size = 5 * 1_048_576 + 1;
        let l = line(&f);
        assert!(
            l.contains(
                " mcp   PROPPATCH 7 api.anthropic.com/v1/messages␛[2J 123456.8ms ↑0B ↓5.0MB"
            ),
            "{l}"
        );
    }
}
