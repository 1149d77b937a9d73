//! The library side of the engine, as the TUI uses it: `Engine::start` in
//! process, `feed()`, `shutdown()`, and `engine::attach` to a detached engine.

mod common;

use std::sync::Arc;
use std::time::Duration;

use ccproxy::config::{Config, Overrides};
use ccproxy::engine::{self, Engine, Feed, Mode};
use common::engine::{free_port, Provider, Setup, TestHome, UNREACHABLE_DB};

fn config(home: &std::path::Path, forward: u16) -> Arc<Config> {
    std::fs::write(
        home.join("ccproxy.yaml"),
        format!("ccproxy:\n  mitm:\n    port: {forward}\n    database_url: {UNREACHABLE_DB}\n"),
    )
    .expect("config");
    let cfg = Config::load_with(
        &Overrides {
            home: Some(home.to_path_buf()),
            ..Overrides::default()
        },
        &|_| None,
    )
    .expect("load");
    Arc::new(cfg)
}

async fn next_status(
    feed: &mut tokio::sync::mpsc::Receiver<Feed>,
) -> ccproxy::engine::EngineStatus {
    loop {
        match tokio::time::timeout(Duration::from_secs(30), feed.recv()).await {
            Ok(Some(Feed::Status(st))) => return *st,
            Ok(Some(_)) => {}
            Ok(None) => panic!("feed closed"),
            Err(elapsed) => panic!("no status: {elapsed}"),
        }
    }
}

#[tokio::test]
async fn in_process_engine_feeds_status_refuses_a_second_and_cleans_up() {
    let dir = tempfile::tempdir().expect("tempdir");
    let forward = free_port();
    let cfg = config(dir.path(), forward);
    let engine = Engine::start(Arc::clone(&cfg), Mode::Forward)
        .await
        .expect("start");
    let st = engine.status().expect("status");
    assert_eq!(st.mode, "forward");
    assert_eq!(
        st.forward.as_deref(),
        Some(format!("127.0.0.1:{forward}").as_str())
    );
    assert_eq!(st.pid, std::process::id());
    let mut feed = engine.feed();
    assert_eq!(next_status(&mut feed).await.mode, "forward");

    let second = Engine::start(Arc::clone(&cfg), Mode::Dual).await;
    let err = second
        .err()
        .expect("a second engine in the same home is refused");
    assert!(err.to_string().contains("already running"), "{err}");

    // Attaching from "another viewer" goes through the control socket.
    let mut attached = engine::attach(&cfg)
        .await
        .expect("attach")
        .expect("engine runs");
    assert_eq!(next_status(&mut attached).await.pid, std::process::id());

    engine.shutdown().await;
    assert!(!dir.path().join("ccproxy.lock").exists());
    assert!(!dir.path().join("ccproxy.sock").exists());
    assert!(engine::attach(&cfg).await.expect("attach").is_none());
}

#[tokio::test]
async fn attach_to_a_detached_engine_streams_its_flows() {
    let provider = Provider::start();
    let home = TestHome::new(&Setup {
        upstream_ca: Some(&provider.ca_file),
        ..Setup::default()
    });
    let cfg = Config::load_with(
        &Overrides {
            home: Some(home.path().to_path_buf()),
            ..Overrides::default()
        },
        &|_| None,
    )
    .expect("load");
    assert!(
        engine::attach(&cfg).await.expect("attach").is_none(),
        "nothing runs yet"
    );
    home.start(&["mitm", "start", "-d"]);
    let mut feed = engine::attach(&cfg)
        .await
        .expect("attach")
        .expect("engine runs");
    let st = next_status(&mut feed).await;
    assert_eq!(st.mode, "forward");

    let out = home.run(&[
        "run",
        "--",
        "curl",
        "-sS",
        "--fail",
        &format!("{}/attached", provider.url()),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let flow = loop {
        match tokio::time::timeout(Duration::from_secs(30), feed.recv()).await {
            Ok(Some(Feed::Event(ev))) => {
                if let ccproxy::flow::FlowEvent::Completed { flow } = &*ev {
                    break Arc::clone(flow);
                }
            }
            Ok(Some(_)) => {}
            Ok(None) => panic!("feed closed"),
            Err(elapsed) => panic!("no completed flow: {elapsed}"),
        }
    };
    assert_eq!(flow.path, "/attached");
    assert_eq!(flow.status_code, Some(200));
}
