//! The headless flow log of `start --headless` and the detached engine: a
//! viewer like the TUI (it reads the engine's feed), printing one line per
//! completed exchange on stderr.

use std::fmt::Write as _;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::capture::sanitize::sanitize;
use crate::engine::Feed;
use crate::flow::{Flow, FlowEvent};

/// Print a line for every completed flow until the feed ends (engine shutdown).
pub fn spawn(mut feed: mpsc::Receiver<Feed>) -> JoinHandle<()> {
    tokio::spawn(async move {
        while let Some(item) = feed.recv().await {
            match item {
                Feed::Event(ev) => {
                    if let FlowEvent::Completed { flow } = &*ev {
                        eprintln!("{}", line(flow));
                    }
                }
                Feed::Lagged(n) => {
                    eprintln!("(flow log fell behind: {n} events skipped)");
                }
                Feed::Status(_) => {}
            }
        }
    })
}

/// One log line: time, traffic type, method, status, host+path, duration, sizes.
pub fn line(flow: &Flow) -> String {
    let mut s = String::with_capacity(128);
    let time = flow.start_time.format("%H:%M:%S%.3f");
    let status = flow
        .status_code
        .map_or_else(|| "---".to_string(), |c| c.to_string());
    let _ = write!(
        s,
        "{time} {:<5} {:<7} {status} {}{} {} ↑{} ↓{}",
        flow.traffic_type.as_str(),
        sanitize(&flow.method),
        sanitize(&flow.host),
        sanitize(&flow.path),
        flow.duration_ms
            .map_or_else(|| "-".to_string(), |d| format!("{d:.1}ms")),
        size(flow.request_body_size),
        size(flow.response_body_size),
    );
    if let Some(kind) = flow.error_type {
        let _ = write!(
            s,
            " error={} {}",
            kind.as_str(),
            sanitize(flow.error_message.as_deref().unwrap_or_default())
        );
    }
    s
}

fn size(n: u64) -> String {
    match n {
        0..1024 => format!("{n}B"),
        1024..1_048_576 => format!("{:.1}KB", n as f64 / 1024.0),
        _ => format!("{:.1}MB", n as f64 / 1_048_576.0),
    }
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
    }
}
