//! Stored flows back out: the TUI's history pages from a real PostgreSQL
//! (newest page first, older pages when scrolling past the top), and
//! `ccproxy export --har` with `--filter` and `--since`, redaction intact.

mod common;

use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use ccproxy::flow::history::FlowHistory;
use ccproxy::store::query::Reader;
use ccproxy::store::Store;
use ccproxy::tui::app::{Action, App, Effect, HISTORY_PAGE};
use common::db::{config, fresh_db, sample_flow, temp_home};

/// `n` sample flows written through the real store writer, spaced 1 s apart (oldest first).
async fn stored(url: &str, n: usize) -> tempfile::TempDir {
    let home = temp_home();
    let cfg = config(home.path(), Some(url));
    let store = Store::open(&cfg).await.expect("open store");
    let sink = store.sink();
    let base = chrono::Utc::now() - chrono::Duration::hours(3);
    for i in 0..n {
        let mut f = sample_flow(i);
        f.start_time = base + chrono::Duration::seconds(i as i64);
        if i % 3 == 0 {
            f.method = "GET".into();
        }
        if i == n - 1 {
            // The newest flow is recent: `--since 1h` keeps only it.
            f.start_time = chrono::Utc::now() - chrono::Duration::minutes(5);
        }
        sink.submit(Arc::new(f));
    }
    store.shutdown(Duration::from_secs(20)).await;
    home
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_pages_load_newest_first_then_older_on_scroll() {
    let db = fresh_db().await;
    let n = HISTORY_PAGE + 20;
    let _home = stored(&db.url, n).await;
    let reader: Arc<dyn FlowHistory> = Arc::new(Reader::from_url(&db.url).await.expect("reader"));

    let mut app = App::new("attached", true, chrono::Utc::now());
    let Some(Effect::LoadOlder { before }) = app.take_effects().pop() else {
        panic!("no initial history request");
    };
    let page = reader.page(before, HISTORY_PAGE).await.expect("page");
    let exhausted = page.len() < HISTORY_PAGE;
    app.update(Action::History {
        flows: page,
        exhausted,
    });
    assert_eq!(app.len(), HISTORY_PAGE);
    // Scroll to the top and past it: the older page is requested and prepended.
    app.update(Action::ToggleFollow);
    app.update(Action::Top);
    app.update(Action::Up);
    let Some(Effect::LoadOlder {
        before: Some(before),
    }) = app.take_effects().pop()
    else {
        panic!("no older-page request after scrolling past the top");
    };
    let older = reader
        .page(Some(before), HISTORY_PAGE)
        .await
        .expect("older");
    assert_eq!(older.len(), 20);
    app.update(Action::History {
        flows: older,
        exhausted: true,
    });
    assert_eq!(app.len(), n);
    // Oldest first in the list; the selection stayed on the flow it was on.
    let times: Vec<_> = (0..n)
        .filter_map(|i| app.visible_entry(i).map(|e| e.flow.start_time))
        .collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]));
    assert_eq!(app.selected_pos(), Some(20));
    // Exhausted: scrolling past the top again asks for nothing.
    app.update(Action::Top);
    app.update(Action::Up);
    assert!(app.take_effects().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_writes_filtered_har_with_secrets_still_redacted() {
    let db = fresh_db().await;
    let home = stored(&db.url, 12).await;
    let out = home.path().join("out.har");
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_ccproxy"))
            .arg("--home")
            .arg(home.path())
            .args(args)
            .env("CCPROXY_DATABASE_URL", &db.url)
            .env_remove("DATABASE_URL")
            .output()
            .expect("run ccproxy export")
    };
    let entries = |path: &std::path::Path| -> Vec<serde_json::Value> {
        let v: serde_json::Value =
            serde_json::from_slice(&std::fs::read(path).expect("read har")).expect("json");
        assert_eq!(v["log"]["version"], "1.2");
        v["log"]["entries"].as_array().cloned().unwrap_or_default()
    };

    let o = run(&["export", "--har", out.to_str().expect("path")]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let all = entries(&out);
    assert_eq!(all.len(), 12);
    let key = all[0]["request"]["headers"]
        .as_array()
        .and_then(|h| h.iter().find(|h| h["name"] == "x-api-key"))
        .map(|h| h["value"].clone());
    assert_eq!(key, Some(serde_json::json!("sk-ant…7f3a")));
    // Non-UTF-8 response bytes travel as base64.
    assert_eq!(all[0]["response"]["content"]["encoding"], "base64");

    let o = run(&[
        "export",
        "--har",
        out.to_str().expect("path"),
        "--filter",
        "~m GET & ~c 200",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let gets = entries(&out);
    // GET for i % 3 == 0 (0, 3, 6, 9), minus the 529 at i == 9.
    assert_eq!(gets.len(), 3);
    assert!(gets.iter().all(|e| e["request"]["method"] == "GET"));

    let o = run(&[
        "export",
        "--har",
        out.to_str().expect("path"),
        "--since",
        "1h",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(entries(&out).len(), 1);

    let o = run(&["export", "--har", "-", "--filter", "~c"]);
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("~c needs a status code"), "{err}");
}
