//! Nothing is lost: the database killed mid-stream, absent at start, a full
//! spool, a corrupt spool segment — all against real PostgreSQL servers.

mod common;

use std::sync::Arc;
use std::time::Duration;

use ccproxy::flow::Flow;
use ccproxy::store::spool::{list_segments, Spool, MAGIC, SYNC};
use ccproxy::store::{self, StorageState, Store, StoreStats};
use common::db::{config, fresh_db, own_cluster, sample_flow, temp_home};

async fn count(url: &str) -> i64 {
    let c = store::connect(url).await.expect("connect");
    c.query_one(
        r#"SELECT count(DISTINCT trace_id) FROM "CCProxy_HttpTraces""#,
        &[],
    )
    .await
    .expect("count")
    .get(0)
}

/// Poll `stats` until `done` holds (bounded, so a bug fails instead of hanging).
async fn wait_for(store: &Store, what: &str, done: impl Fn(&StoreStats) -> bool) {
    for _ in 0..1200 {
        if done(&store.stats()) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("gave up waiting for {what}: {:?}", store.stats());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_killed_mid_stream_then_restarted_keeps_every_row_once() {
    let cluster = own_cluster().await;
    let home = temp_home();
    let url = cluster.managed.url.clone();
    let store = Store::open(&config(home.path(), Some(&url)))
        .await
        .expect("open");
    assert_eq!(store.stats().state, StorageState::Connected);
    let sink = store.sink();
    let flows: Vec<Arc<Flow>> = (0..2000).map(|i| Arc::new(sample_flow(i))).collect();
    for (i, f) in flows.iter().enumerate() {
        sink.submit(Arc::clone(f));
        if i % 50 == 0 {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        if i == 700 {
            let c = &cluster;
            tokio::task::block_in_place(|| c.kill());
        }
    }
    wait_for(&store, "spooling after the kill", |s| {
        s.state == StorageState::Spooling && s.queued == 0
    })
    .await;
    cluster.restart().await;
    wait_for(&store, "every row written", |s| {
        s.state == StorageState::Connected && s.written >= 2000 && s.spool_bytes == 0
    })
    .await;
    let stats = store.stats();
    assert!(stats.spooled > 0, "{stats:?}");
    assert!(stats.replayed > 0, "{stats:?}");
    assert_eq!(stats.dropped, 0, "{stats:?}");
    store.shutdown(Duration::from_secs(30)).await;
    let c = store::connect(&url).await.expect("connect");
    let (rows, distinct): (i64, i64) = {
        let r = c
            .query_one(
                r#"SELECT count(*), count(DISTINCT trace_id) FROM "CCProxy_HttpTraces""#,
                &[],
            )
            .await
            .expect("count");
        (r.get(0), r.get(1))
    };
    assert_eq!((rows, distinct), (2000, 2000));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_absent_at_start_is_replayed_once_it_runs() {
    let cluster = own_cluster().await;
    let url = cluster.managed.url.clone();
    cluster.pg_ctl(&["stop", "-s", "-m", "fast", "-w"]);
    let home = temp_home();
    let store = Store::open(&config(home.path(), Some(&url)))
        .await
        .expect("open must not fail when the database is down");
    assert_eq!(store.stats().state, StorageState::Spooling);
    assert!(store.stats().last_error.is_some());
    let sink = store.sink();
    for i in 0..500 {
        sink.submit(Arc::new(sample_flow(i)));
    }
    wait_for(&store, "500 rows spooled", |s| s.spooled == 500).await;
    assert!(!list_segments(&home.path().join("spool"))
        .expect("spool dir")
        .is_empty());
    cluster.restart().await;
    wait_for(&store, "the spool replayed", |s| {
        s.replayed == 500 && s.spool_bytes == 0
    })
    .await;
    assert_eq!(store.stats().state, StorageState::Connected);
    store.shutdown(Duration::from_secs(10)).await;
    assert_eq!(count(&url).await, 500);
    assert!(list_segments(&home.path().join("spool"))
        .expect("spool dir")
        .is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_spool_drops_and_counts_without_blocking() {
    let home = temp_home();
    let mut cfg = config(
        home.path(),
        Some("postgresql:///nope?host=/nonexistent-ccproxy-socket&user=postgres"),
    );
    cfg.mitm.spool_max_bytes = 200_000;
    cfg.mitm.buffer_size = 10;
    let store = Store::open(&cfg).await.expect("open");
    let sink = store.sink();
    for i in 0..500 {
        sink.submit(Arc::new(sample_flow(i)));
    }
    wait_for(&store, "every row spooled or dropped", |s| {
        s.spooled + s.dropped == 500 && s.queued == 0
    })
    .await;
    let s = store.stats();
    assert!(s.spooled > 0 && s.dropped > 0, "{s:?}");
    assert!(s.spool_bytes <= 200_000, "{s:?}");
    let on_disk: u64 = list_segments(&home.path().join("spool"))
        .expect("list")
        .iter()
        .map(|(_, p)| std::fs::metadata(p).expect("meta").len())
        .sum();
    assert!(on_disk <= 200_000, "{on_disk}");
    // Still accepting (and counting) after the bound.
    sink.submit(Arc::new(sample_flow(501)));
    wait_for(&store, "one more drop", |s| s.spooled + s.dropped == 501).await;
    store.shutdown(Duration::from_secs(2)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flipped_bit_in_the_middle_record_costs_that_record_only() {
    let db = fresh_db().await;
    let home = temp_home();
    let dir = home.path().join("spool");
    let flows: Vec<Flow> = (0..30).map(sample_flow).collect();
    {
        let mut spool = Spool::open(&dir, 1 << 30).expect("spool");
        for chunk in flows.chunks(10) {
            spool.append(chunk).expect("append");
            spool.seal();
        }
    }
    let segments = list_segments(&dir).expect("list");
    assert_eq!(segments.len(), 3);
    let bad = &segments[1].1;
    let mut bytes = std::fs::read(bad).expect("read");
    // Record starts: every SYNC marker after the segment header.
    let starts: Vec<usize> = (MAGIC.len()..bytes.len() - SYNC.len())
        .filter(|&i| bytes[i..i + SYNC.len()] == SYNC)
        .collect();
    assert_eq!(starts.len(), 10);
    let middle = starts[5].midpoint(starts[6]);
    bytes[middle] ^= 0x08;
    std::fs::write(bad, bytes).expect("write");

    let store = Store::open(&config(home.path(), Some(&db.url)))
        .await
        .expect("open");
    wait_for(&store, "the spool replayed", |s| s.spool_bytes == 0).await;
    let s = store.stats();
    let err = s.spool_error.clone().unwrap_or_default();
    let bad_name = bad.file_name().expect("name").to_string_lossy().to_string();
    assert!(err.contains(&bad_name) && err.contains("damaged"), "{err}");
    assert_eq!((s.replayed, s.dropped), (29, 1), "{s:?}");
    assert!(s.last_error.is_none(), "{s:?}");
    store.shutdown(Duration::from_secs(10)).await;
    assert_eq!(count(&db.url).await, 29);
    let c = store::connect(&db.url).await.expect("connect");
    for (i, f) in flows.iter().enumerate() {
        let n: i64 = c
            .query_one(
                r#"SELECT count(*) FROM "CCProxy_HttpTraces" WHERE trace_id = $1"#,
                &[&f.id.to_string()],
            )
            .await
            .expect("q")
            .get(0);
        assert_eq!(n, i64::from(i != 15), "flow {i}");
    }
    assert!(bad.with_extension("corrupt").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spool_error_is_kept_beside_the_database_error() {
    let home = temp_home();
    let spool = home.path().join("spool");
    std::fs::create_dir_all(&spool).expect("mkdir");
    let down = config(
        home.path(),
        Some("postgresql:///nope?host=/nonexistent-ccproxy-socket&user=postgres"),
    );
    let store = Store::open(&down).await.expect("open");
    // The spool cannot take files any more: its directory became a file's name.
    std::fs::remove_dir_all(&spool).expect("rm");
    std::fs::write(&spool, b"not a directory").expect("plant");
    let sink = store.sink();
    for i in 0..20 {
        sink.submit(Arc::new(sample_flow(i)));
    }
    wait_for(&store, "rows dropped", |s| s.dropped == 20).await;
    // The database keeps failing (and says so) for a while; the spool error stays.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let s = store.stats();
    assert!(
        s.last_error
            .as_deref()
            .is_some_and(|e| e.contains("database")),
        "{s:?}"
    );
    assert!(
        s.spool_error
            .as_deref()
            .is_some_and(|e| e.contains("cannot write the spool")),
        "{s:?}"
    );
    store.shutdown(Duration::from_secs(1)).await;
}

/// Segments written by earlier releases (the fixtures) replay after an upgrade.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn segments_of_earlier_releases_replay() {
    let fixtures = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/spool");
    let db = fresh_db().await;
    let home = temp_home();
    let dir = home.path().join("spool");
    std::fs::create_dir_all(&dir).expect("mkdir");
    let mut want = Vec::new();
    for (i, name) in ["v1-5-flows", "v2-5-flows"].iter().enumerate() {
        let seg = fixtures.join(format!("{name}.seg"));
        let parsed = ccproxy::store::spool::read_segment(&seg).expect("read fixture");
        assert_eq!((parsed.flows.len(), parsed.skipped), (5, 0), "{name}");
        std::fs::copy(&seg, dir.join(format!("{:020}.seg", i + 1))).expect("copy");
        let ids = std::fs::read_to_string(fixtures.join(format!("{name}.ids"))).expect("ids");
        want.extend(ids.lines().map(str::to_string));
        let got: Vec<String> = parsed.flows.iter().map(|f| f.id.to_string()).collect();
        assert_eq!(got, ids.lines().collect::<Vec<_>>());
    }
    let store = Store::open(&config(home.path(), Some(&db.url)))
        .await
        .expect("open");
    wait_for(&store, "the fixtures replayed", |s| s.replayed == 10).await;
    store.shutdown(Duration::from_secs(10)).await;
    let c = store::connect(&db.url).await.expect("connect");
    let rows = c
        .query(
            r#"SELECT trace_id, host FROM "CCProxy_HttpTraces" ORDER BY trace_id"#,
            &[],
        )
        .await
        .expect("q");
    let mut got: Vec<String> = rows.iter().map(|r| r.get::<_, String>(0)).collect();
    got.sort();
    want.sort();
    assert_eq!(got, want);
    assert!(rows
        .iter()
        .all(|r| r.get::<_, String>(1) == "api.anthropic.com"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_leaves_unwritten_rows_in_the_spool_for_the_next_start() {
    let db = fresh_db().await;
    let home = temp_home();
    let down = config(
        home.path(),
        Some("postgresql:///nope?host=/nonexistent-ccproxy-socket&user=postgres"),
    );
    let store = Store::open(&down).await.expect("open");
    let sink = store.sink();
    for i in 0..300 {
        sink.submit(Arc::new(sample_flow(i)));
    }
    store.shutdown(Duration::from_secs(1)).await;
    // Submits after shutdown are still kept.
    sink.submit(Arc::new(sample_flow(300)));
    let store = Store::open(&config(home.path(), Some(&db.url)))
        .await
        .expect("reopen");
    wait_for(&store, "the spool replayed", |s| s.replayed == 301).await;
    store.shutdown(Duration::from_secs(10)).await;
    assert_eq!(count(&db.url).await, 301);
}
