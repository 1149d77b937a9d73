//! What survives: the managed database killed with SIGKILL mid-load (the
//! supervisor restarts it), and the engine itself killed with SIGKILL mid-load
//! (`durability: batch` loses at most one batch; `spool-first` loses nothing).
//! Real PostgreSQL, real engine processes, real sockets.

mod common;

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::db::{fresh_db, temp_home};
use common::engine::{Setup, TestHome};
use common::upstream::{self as up, full};
use futures::StreamExt;
use http::Response;

use ccproxy::store::{self, managed, StorageState, Store, StoreStats};

async fn echo() -> up::Server {
    up::http(|req| async move {
        let path = req.uri().path().to_string();
        let body = up::read_body(req).await;
        Response::builder()
            .header("content-type", "application/octet-stream")
            .header("x-echo-path", path)
            .body(full(body))
            .expect("response")
    })
    .await
}

/// Send `n` requests (`/r/<i>`), `parallel` at a time; `during` runs once
/// `at` have been answered. Returns the indices whose whole response the
/// client received.
async fn load(
    proxy_url: &str,
    target: &str,
    n: usize,
    parallel: usize,
    at: usize,
    during: impl FnOnce() + Send,
) -> (HashSet<usize>, Duration) {
    let client = up::client_via(proxy_url, &[]);
    let answered = Arc::new(Mutex::new(HashSet::new()));
    let count = Arc::new(AtomicUsize::new(0));
    let mut during = Some(during);
    let started = Instant::now();
    let mut results = futures::stream::iter(0..n)
        .map(|i| {
            let client = client.clone();
            let url = format!("{target}/r/{i}");
            async move {
                let body = vec![b'x'; 200 + i % 300];
                let resp = client.post(&url).body(body.clone()).send().await.ok()?;
                if resp.status() != 200 {
                    return None;
                }
                let got = resp.bytes().await.ok()?;
                (got == body).then_some(i)
            }
        })
        .buffer_unordered(parallel);
    while let Some(r) = results.next().await {
        if let Some(i) = r {
            answered.lock().expect("lock").insert(i);
            if count.fetch_add(1, Ordering::Relaxed) + 1 == at {
                if let Some(f) = during.take() {
                    f();
                }
            }
        }
    }
    let elapsed = started.elapsed();
    let set = answered.lock().expect("lock").clone();
    (set, elapsed)
}

async fn wait_for(st: &Store, what: &str, done: impl Fn(&StoreStats) -> bool) {
    for _ in 0..1200 {
        if done(&st.stats()) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("gave up waiting for {what}: {:?}", st.stats());
}

/// Paths (`/r/<i>`) in the table, and whether any is there twice.
async fn stored(url: &str) -> (HashSet<usize>, i64, i64) {
    let c = store::connect(url).await.expect("connect");
    let r = c
        .query_one(
            r#"SELECT count(*), count(DISTINCT path) FROM "CCProxy_HttpTraces""#,
            &[],
        )
        .await
        .expect("count");
    let rows = c
        .query(r#"SELECT path FROM "CCProxy_HttpTraces""#, &[])
        .await
        .expect("paths");
    let set = rows
        .iter()
        .filter_map(|r| {
            r.get::<_, String>(0)
                .strip_prefix("/r/")
                .and_then(|p| p.parse().ok())
        })
        .collect();
    (set, r.get(0), r.get(1))
}

/// Stops the managed server of `home` even when the test fails half-way.
struct StopCluster(std::path::PathBuf);

impl Drop for StopCluster {
    fn drop(&mut self) {
        let _ = managed::stop_home(&self.0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_managed_database_killed_mid_load_is_restarted_and_every_row_lands_once() {
    let upstream = echo().await;
    let proxy = up::start_proxy(None, |_| {}, up::ProxyOptions::default()).await;
    // The store's own managed cluster, private to this test.
    let home = temp_home();
    let _stop = StopCluster(home.path().to_path_buf());
    let cfg = common::db::config(home.path(), None);
    let st = Store::open(&cfg).await.expect("open");
    assert_eq!(st.stats().source, "managed");
    assert_eq!(st.stats().state, StorageState::Connected);
    let data = st.managed().expect("managed").data_dir.clone();
    let url = st.managed().expect("managed").url.clone();
    proxy.hub.set_sink(st.sink());
    let target = format!("http://{}", upstream.addr);
    let killed = Arc::new(Mutex::new(None));
    let k = Arc::clone(&killed);
    let (answered, _) = load(&proxy.url(), &target, 1500, 32, 500, move || {
        let text = std::fs::read_to_string(data.join("postmaster.pid")).expect("postmaster.pid");
        let pid: i32 = text
            .lines()
            .next()
            .expect("pid line")
            .trim()
            .parse()
            .expect("pid");
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        )
        .expect("kill -9 the postmaster");
        *k.lock().expect("lock") = Some((pid, Instant::now()));
    })
    .await;
    assert_eq!(answered.len(), 1500, "the proxy kept answering");
    let (pid, at) = killed.lock().expect("lock").expect("killed");
    wait_for(&st, "the database restarted and every row written", |s| {
        s.restarts >= 1
            && s.state == StorageState::Connected
            && s.written >= 1500
            && s.spool_bytes == 0
    })
    .await;
    let s = st.stats();
    eprintln!(
        "postmaster {pid} killed; all 1500 rows in {:.1} s after the kill; {s:?}",
        at.elapsed().as_secs_f64()
    );
    assert_eq!(s.dropped, 0, "{s:?}");
    st.shutdown(Duration::from_secs(30)).await;
    assert!(
        managed::running_pid(&home.path().join("pg/data")).is_none()
            || !home.path().join("pg").exists(),
        "shutdown stops the restarted server"
    );
    // The cluster is stopped; start it once more to count.
    let m = managed::ensure_cluster(home.path(), managed::Tuning::Durable)
        .await
        .expect("start to count")
        .expect("binaries");
    assert_eq!(m.url, url);
    let (set, rows, distinct) = stored(&url).await;
    assert_eq!((rows, distinct), (1500, 1500));
    assert_eq!(set, answered);
}

/// Run an engine (`mitm start -d`) with `durability`, SIGKILL it after
/// `kill_at` answers, start it again so the spool replays, and return
/// (answered, stored, lost, rate).
async fn kill_engine_mid_load(
    durability: &str,
    n: usize,
    kill_at: usize,
) -> (usize, usize, usize, f64) {
    let db = fresh_db().await;
    let upstream = echo().await;
    let home = TestHome::new(&Setup {
        database_url: Some(db.url.clone()),
        ..Setup::default()
    });
    let yaml = std::fs::read_to_string(home.file("ccproxy.yaml")).expect("yaml");
    let yaml = yaml.replacen(
        "  mitm:\n",
        &format!("  mitm:\n    durability: {durability}\n"),
        1,
    );
    std::fs::write(home.file("ccproxy.yaml"), yaml).expect("yaml");
    home.start(&["mitm", "start", "-d"]);
    let pid = home.engine_pid();
    let proxy = format!("http://127.0.0.1:{}", home.forward);
    let target = format!("http://{}", upstream.addr);
    let (answered, took) = load(&proxy, &target, n, 64, kill_at, move || {
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid as i32),
            nix::sys::signal::Signal::SIGKILL,
        )
        .expect("kill -9 the engine");
    })
    .await;
    assert!(common::engine::wait_gone(pid, Duration::from_secs(10)));
    // The next engine replays what the killed one spooled.
    home.start(&["mitm", "start", "-d"]);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let st = home.status().expect("status");
        let s = &st["storage"];
        if s["state"] == "connected" && s["spool_bytes"] == 0 && s["queued"] == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "spool not replayed: {s}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let out = home.run(&["stop"]);
    assert!(out.status.success());
    let (set, rows, distinct) = stored(&db.url).await;
    assert_eq!(rows, distinct, "a row stored twice");
    let lost = answered.difference(&set).count();
    let rate = answered.len() as f64 / took.as_secs_f64();
    eprintln!(
        "durability={durability}: {} answered ({rate:.0} req/s), {} stored, {lost} answered but lost",
        answered.len(),
        set.len()
    );
    (answered.len(), set.len(), lost, rate)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_engine_killed_with_sigkill_loses_at_most_one_batch() {
    let (answered, _, lost, _) = kill_engine_mid_load("batch", 4000, 1500).await;
    assert!(answered >= 1500);
    assert!(
        lost <= ccproxy::store::writer::BATCH_ROWS,
        "lost {lost} rows: more than one batch"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_engine_killed_with_sigkill_loses_nothing_with_spool_first() {
    let (answered, _, lost, _) = kill_engine_mid_load("spool-first", 4000, 1500).await;
    assert!(answered >= 1500);
    assert_eq!(lost, 0, "spool-first lost answered requests");
}

fn text(out: &std::process::Output) -> String {
    format!(
        "stdout: {}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn proxy_auth_closes_both_listeners_and_run_carries_the_token() {
    use std::os::unix::fs::PermissionsExt;
    let provider = common::engine::Provider::start();
    let home = TestHome::new(&Setup::gateway(&provider.url(), Some(&provider.ca_file)));
    let yaml = std::fs::read_to_string(home.file("ccproxy.yaml")).expect("yaml");
    let yaml = yaml.replacen("  mitm:\n", "  mitm:\n    proxy_auth: true\n", 1);
    std::fs::write(home.file("ccproxy.yaml"), yaml).expect("yaml");
    home.start(&["start", "--mitm", "-d"]);
    let token_file = home.file("proxy.token");
    let token = std::fs::read_to_string(&token_file)
        .expect("token")
        .trim()
        .to_string();
    assert!(token.len() >= 32);
    let mode = std::fs::metadata(&token_file)
        .expect("meta")
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);
    let mut feed = common::engine::Subscriber::connect(&home);

    // Without the token: 407 from the forward listener, 401 from the reverse one.
    let forward = format!("http://127.0.0.1:{}", home.forward);
    let code = |args: &[&str]| {
        let out = std::process::Command::new("curl")
            .args([
                "-s",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                "--noproxy",
                "",
            ])
            .args(args)
            .output()
            .expect("curl");
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    assert_eq!(code(&["-x", &forward, "http://127.0.0.2:9/x"]), "407");
    let wrong = format!("http://ccproxy:wrong@127.0.0.1:{}", home.forward);
    assert_eq!(code(&["-x", &wrong, "http://127.0.0.2:9/x"]), "407");
    let reverse = format!("http://127.0.0.1:{}", home.reverse);
    assert_eq!(
        code(&[&format!("{reverse}/v1/messages"), "-d", "{}"]),
        "401"
    );

    // Through `ccproxy run`: curl via the forward listener (CONNECT + Proxy-Authorization)…
    let url = format!("{}/v1/messages", provider.url());
    let out = home.run(&[
        "run",
        "--",
        "curl",
        "-sS",
        "--fail",
        "-d",
        "{\"hi\":1}",
        &url,
    ]);
    assert!(out.status.success(), "curl: {}", text(&out));
    let body: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(body["path"], "/v1/messages");
    // …curl at the base URL (reverse → gateway → forward → provider)…
    let out = home.run(&[
        "run",
        "--",
        "sh",
        "-c",
        "curl -sS --fail -d '{\"via\":\"base\"}' \"$ANTHROPIC_BASE_URL/v1/messages\"",
    ]);
    assert!(out.status.success(), "base url: {}", text(&out));
    let body: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(body["path"], "/v1/messages", "the token reached upstream");
    // …and python's urllib via the proxy.
    let script = format!(
        "import urllib.request,sys; r=urllib.request.urlopen('{}/py'); sys.stdout.write(r.read().decode())",
        provider.url()
    );
    let out = home.run(&["run", "--", "python3", "-c", &script]);
    assert!(out.status.success(), "python: {}", text(&out));
    let body: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(body["path"], "/py");

    // Four flows (curl, reverse leg, its forward leg, python); the token in none.
    let flows = feed.completed(4);
    for f in &flows {
        let s = f.to_string();
        assert!(!s.contains(&token), "token captured: {s}");
        assert_eq!(f["status_code"], 200, "{s}");
    }
    let paths: Vec<&str> = flows.iter().filter_map(|f| f["path"].as_str()).collect();
    assert!(
        paths.contains(&"/py") && paths.contains(&"/v1/messages"),
        "{paths:?}"
    );
    let log = std::fs::read_to_string(home.file("ccproxy.log")).unwrap_or_default();
    assert!(!log.contains(&token), "token in the log");
}

#[test]
fn a_new_home_its_log_and_spool_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let parent = tempfile::tempdir().expect("tmp");
    let dir = parent.path().join("fresh-home");
    let forward = common::engine::free_port();
    let out = std::process::Command::new(common::engine::bin())
        .arg("--home")
        .arg(&dir)
        .args(["mitm", "start", "-d", "--port", &forward.to_string()])
        .env("CCPROXY_DATABASE_URL", common::engine::UNREACHABLE_DB)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("start");
    assert!(out.status.success(), "{}", text(&out));
    let mode =
        |p: &std::path::Path| std::fs::metadata(p).expect("meta").permissions().mode() & 0o777;
    // One request so the spool gets a segment.
    let ok = std::process::Command::new("curl")
        .args(["-s", "-o", "/dev/null", "--noproxy", "", "-x"])
        .arg(format!("http://127.0.0.1:{forward}"))
        .arg("http://127.0.0.1:1/")
        .status()
        .expect("curl");
    assert!(ok.code().is_some());
    let deadline = Instant::now() + Duration::from_secs(20);
    while ccproxy::store::spool::list_segments(&dir.join("spool")).map_or(true, |s| s.is_empty()) {
        assert!(Instant::now() < deadline, "nothing spooled");
        std::thread::sleep(Duration::from_millis(100));
    }
    let stop = std::process::Command::new(common::engine::bin())
        .arg("--home")
        .arg(&dir)
        .arg("stop")
        .output()
        .expect("stop");
    assert!(stop.status.success(), "{}", text(&stop));
    assert_eq!(mode(&dir), 0o700);
    assert_eq!(mode(&dir.join("ccproxy.log")), 0o600);
    assert_eq!(mode(&dir.join("spool")), 0o700);
    for (_, seg) in ccproxy::store::spool::list_segments(&dir.join("spool")).expect("list") {
        assert_eq!(mode(&seg), 0o600, "{}", seg.display());
    }
    assert_eq!(mode(&dir.join("ca/ca-key.pem")), 0o600);
}
