//! End to end in tmux: `ccproxy tui` in a detached session with a temp home,
//! real requests with curl through the forward listener to a local upstream,
//! the screen read back with `tmux capture-pane -p`: the flows appear, Enter
//! opens one (the reassembled SSE message shows), `/` filters the list, `Q` quits.
//!
//! Storage is a fresh database on the shared test PostgreSQL, holding one
//! flow stored before the TUI starts: it shows up as history.
//!
//! Needs the merged engine (`ccproxy tui` starts one in-process). Skips with a
//! printed reason only when tmux is not installed.

mod common;

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const SSE: &str = concat!(
    "event: message_start\n",
    "data: {\"type\":\"message_start\",\"message\":{\"model\":\"claude-e2e\",\"usage\":{\"input_tokens\":3}}}\n\n",
    "event: content_block_start\n",
    "data: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n",
    "event: content_block_delta\n",
    "data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Bonjour from the e2e upstream\"}}\n\n",
    "event: message_delta\n",
    "data: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"},\"usage\":{\"output_tokens\":5}}\n\n",
    "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n",
);

/// A plain HTTP/1.1 upstream: `/v1/messages` answers an Anthropic SSE stream, anything else text.
async fn upstream() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind upstream");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                let head_end = loop {
                    let Ok(n) = sock.read(&mut chunk).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        break p + 4;
                    }
                };
                let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
                let length: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse().ok())
                    .unwrap_or(0);
                while buf.len() < head_end + length {
                    let Ok(n) = sock.read(&mut chunk).await else {
                        return;
                    };
                    if n == 0 {
                        break;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                }
                let (ct, body) = if head.contains(" /v1/messages") {
                    ("text/event-stream", SSE.to_string())
                } else {
                    ("text/plain", "hello from the e2e upstream\n".to_string())
                };
                let resp = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: {ct}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = sock.write_all(resp.as_bytes()).await;
                let _ = sock.shutdown().await;
            });
        }
    });
    port
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

fn tmux(args: &[&str]) -> Output {
    Command::new("tmux").args(args).output().expect("run tmux")
}

fn screen(session: &str) -> String {
    String::from_utf8_lossy(&tmux(&["capture-pane", "-p", "-t", session]).stdout).into_owned()
}

/// Poll the screen until `pred` holds; the last screen goes into the failure message.
async fn wait_for(session: &str, what: &str, pred: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let s = screen(session);
        if pred(&s) {
            return s;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}; screen:\n{s}\nlog:\n{}",
            std::fs::read_to_string(LOG.with(|l| l.borrow().clone())).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

thread_local! {
    static LOG: std::cell::RefCell<std::path::PathBuf> = std::cell::RefCell::new(std::path::PathBuf::new());
}

fn curl(args: &[&str]) -> Output {
    Command::new("curl")
        .args(["-sS", "--max-time", "10", "--noproxy", ""])
        .args(args)
        .output()
        .expect("run curl")
}

struct Session(String);

impl Drop for Session {
    fn drop(&mut self) {
        let _ = tmux(&["kill-session", "-t", &self.0]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tui_shows_filters_and_opens_live_flows() {
    if Command::new("tmux").arg("-V").output().is_err() {
        println!("skipped: tmux is not installed (scripts/test installs it)");
        return;
    }
    let db = common::db::fresh_db().await;
    {
        let home = common::db::temp_home();
        let store = ccproxy::store::Store::open(&common::db::config(home.path(), Some(&db.url)))
            .await
            .expect("open store");
        let mut f = common::db::sample_flow(0);
        f.path = "/stored-earlier".into();
        f.url = "https://api.anthropic.com/stored-earlier".into();
        f.start_time = chrono::Utc::now() - chrono::Duration::minutes(10);
        store.sink().submit(std::sync::Arc::new(f));
        store.shutdown(Duration::from_secs(20)).await;
    }
    let up = upstream().await;
    let home = tempfile::tempdir().expect("home");
    let fwd = free_port();
    let rev = free_port();
    std::fs::write(
        home.path().join("ccproxy.yaml"),
        format!(
            "ccproxy:\n  upstream: http://127.0.0.1:{up}\n  mitm:\n    port: {fwd}\n    upstream_proxy: http://127.0.0.1:{up}\nlitellm:\n  port: {rev}\n"
        ),
    )
    .expect("config");
    LOG.with(|l| *l.borrow_mut() = home.path().join("ccproxy.log"));
    let session = Session(format!("ccproxy-e2e-{}", std::process::id()));
    // tmux runs the command in its server's environment: pass the database inline.
    let cmd = format!(
        "CCPROXY_DATABASE_URL='{}' {} --home {} tui; sleep 30",
        db.url,
        env!("CARGO_BIN_EXE_ccproxy"),
        home.path().display()
    );
    let out = tmux(&[
        "new-session",
        "-d",
        "-s",
        &session.0,
        "-x",
        "160",
        "-y",
        "45",
        &cmd,
    ]);
    assert!(
        out.status.success(),
        "tmux: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    wait_for(&session.0, "the TUI with the stored flow", |s| {
        s.contains("Flows") && s.contains("/stored-earlier")
    })
    .await;
    wait_for_port(fwd).await;

    let proxy = format!("http://127.0.0.1:{fwd}");
    let hello = curl(&["-x", &proxy, &format!("http://127.0.0.1:{up}/hello")]);
    assert_eq!(
        String::from_utf8_lossy(&hello.stdout),
        "hello from the e2e upstream\n",
        "curl: {}",
        String::from_utf8_lossy(&hello.stderr)
    );
    let sse = curl(&[
        "-x",
        &proxy,
        "-H",
        "content-type: application/json",
        "-d",
        "{\"model\":\"claude-e2e\",\"stream\":true}",
        &format!("http://127.0.0.1:{up}/v1/messages"),
    ]);
    assert!(String::from_utf8_lossy(&sse.stdout).contains("Bonjour"));

    let s = wait_for(&session.0, "both flows in the list", |s| {
        s.contains("/hello") && s.contains("/v1/messages")
    })
    .await;
    assert!(
        s.contains("GET") && s.contains("POST") && s.contains("200"),
        "{s}"
    );

    // Follow mode keeps the newest (the SSE call) selected: open it.
    tmux(&["send-keys", "-t", &session.0, "Enter"]);
    wait_for(&session.0, "the reassembled message", |s| {
        s.contains("Anthropic Messages") && s.contains("Bonjour from the e2e upstream")
    })
    .await;
    tmux(&["send-keys", "-t", &session.0, "Tab"]);
    wait_for(&session.0, "the timing tab", |s| s.contains("first byte")).await;
    tmux(&["send-keys", "-t", &session.0, "Escape"]);
    // A key sent right after Escape would arrive as Alt+key: wait for the list first.
    wait_for(&session.0, "the list again", |s| {
        !s.contains("Timing & connection")
    })
    .await;

    // Filter: a bare word matching one URL, then an error.
    tmux(&["send-keys", "-t", &session.0, "/"]);
    tmux(&["send-keys", "-t", &session.0, "-l", "hello"]);
    wait_for(&session.0, "the filtered list", |s| {
        s.contains("Flows 1/3") && !s.contains("/v1/messages")
    })
    .await;
    tmux(&["send-keys", "-t", &session.0, "-l", " & ~zz"]);
    wait_for(&session.0, "the filter error", |s| {
        s.contains("unknown filter `~zz`")
    })
    .await;
    tmux(&["send-keys", "-t", &session.0, "Escape"]);
    wait_for(&session.0, "the whole list again", |s| {
        s.contains("Flows 3/3")
    })
    .await;

    tmux(&["send-keys", "-t", &session.0, "?"]);
    wait_for(&session.0, "the help overlay", |s| {
        s.contains("export the filtered flows as HAR")
    })
    .await;
    tmux(&["send-keys", "-t", &session.0, "Escape"]);
    wait_for(&session.0, "the help to close", |s| {
        !s.contains("export the filtered flows as HAR")
    })
    .await;

    tmux(&["send-keys", "-t", &session.0, "Q"]);
    wait_for(&session.0, "the TUI to exit", |s| !s.contains("Flows 3/3")).await;
    assert!(Path::new(&home.path().join("ccproxy.log")).exists());
}

async fn wait_for_port(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        assert!(
            Instant::now() < deadline,
            "forward listener :{port} never accepted"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
