//! `ccproxy db …` and psql against real clusters: the managed cluster made on
//! demand, a URL psql accepts, the seed's analysis queries verbatim.

mod common;

use std::path::Path;
use std::process::{Command, Output};
use std::sync::Arc;

use ccproxy::flow::{ErrorKind, TrafficType};
use ccproxy::store::{self, managed, migrate};
use common::db::{fresh_db, sample_flow, temp_home};

fn ccproxy(home: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ccproxy"))
        .arg("--home")
        .arg(home)
        .args(args)
        .env_remove("DATABASE_URL")
        .env_remove("CCPROXY_DATABASE_URL")
        .env_remove("CCPROXY_HOME")
        .output()
        .expect("run ccproxy")
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "exit {:?}\nstdout: {}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn psql(url: &str, sql: &str) -> String {
    let out = Command::new("psql")
        .args([url, "-X", "-v", "ON_ERROR_STOP=1", "-c", sql])
        .output()
        .expect("run psql");
    ok(&out)
}

/// Stops the home's cluster (and removes a relocated one) however the test ends.
struct StopOnDrop<'a>(&'a Path);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        let loc = managed::locate(self.0).ok();
        let _ = managed::stop_home(self.0);
        if let Some(loc) = loc.filter(|l| l.relocated) {
            let _ = std::fs::remove_dir_all(loc.cluster_dir);
        }
    }
}

#[test]
fn db_commands_run_the_managed_cluster_and_psql_accepts_its_url() {
    let home = temp_home();
    let _stop = StopOnDrop(home.path());
    let out = ok(&ccproxy(home.path(), &["db", "migrate"]));
    let all = format!("applied {} migration", migrate::MIGRATIONS.len());
    assert!(out.contains(&all), "{out}");
    let out = ok(&ccproxy(home.path(), &["db", "migrate"]));
    assert!(out.contains("applied 0 migration"), "{out}");
    let url = ok(&ccproxy(home.path(), &["db", "url"])).trim().to_string();
    let q = psql(
        &url,
        r#"SELECT method, url, status_code, duration_ms FROM "CCProxy_HttpTraces" ORDER BY start_time DESC LIMIT 10"#,
    );
    assert!(q.contains("(0 rows)"), "{q}");
    let status = ok(&ccproxy(home.path(), &["db", "status"]));
    let pg = home.path().join("pg");
    for needle in [
        format!("managed cluster in {}", pg.display()),
        format!("schema:   version {} (current)", migrate::latest_version()),
        "rows:     0".to_string(),
        "PostgreSQL".to_string(),
    ] {
        assert!(status.contains(&needle), "{needle} not in\n{status}");
    }
    let out = ok(&ccproxy(
        home.path(),
        &["db", "prune", "--older-than", "30d"],
    ));
    assert!(out.contains("deleted 0 flow"), "{out}");

    // A stale postmaster.pid (its pid now belongs to another process) does not block a start.
    assert!(managed::stop_home(home.path()).expect("stop"));
    let data = pg.join("data");
    std::fs::write(
        data.join("postmaster.pid"),
        format!("{}\n{}\n", std::process::id(), data.display()),
    )
    .expect("write stale pid");
    let status = ok(&ccproxy(home.path(), &["db", "status"]));
    assert!(status.contains("rows:     0"), "{status}");
    assert!(managed::running_pid(&data).is_some());
}

#[test]
fn a_home_the_server_user_cannot_enter_gets_a_keyed_cluster_elsewhere() {
    if !nix::unistd::Uid::effective().is_root() {
        return; // only root hands the server to another user
    }
    // 0700 and root-owned, like /root.
    let home = tempfile::Builder::new()
        .prefix("closed")
        .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o700))
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .expect("tempdir");
    let _stop = StopOnDrop(home.path());
    let status = ok(&ccproxy(home.path(), &["db", "status"]));
    // Under root's own 0711 directory, so no other user can plant a symlink there.
    assert!(
        status.contains("managed cluster in /var/lib/ccproxy/pg-"),
        "{status}"
    );
    assert!(status.contains("cannot enter"), "{status}");
    let url = ok(&ccproxy(home.path(), &["db", "url"])).trim().to_string();
    assert!(url.contains("host=/var/lib/ccproxy/pg-"), "{url}");
    let parent = std::fs::symlink_metadata("/var/lib/ccproxy").expect("parent");
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&parent.permissions()) & 0o777,
        0o711
    );
    let again = managed::locate(home.path()).expect("locate");
    assert!(url.contains(&again.cluster_dir.display().to_string()));
    psql(&url, "SELECT 1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_seed_analysis_queries_run_verbatim() {
    let db = fresh_db().await;
    let mut c = store::connect(&db.url).await.expect("connect");
    migrate::migrate(&mut c).await.expect("migrate");
    let flows: Vec<_> = (0..40)
        .map(|i| {
            let mut f = sample_flow(i);
            if i % 4 == 1 {
                f.host = "example.com".into();
                f.traffic_type = TrafficType::Web;
            }
            if i % 13 == 0 {
                f.status_code = None;
                f.error_type = Some(ErrorKind::Connect);
                f.error_message = Some("connection refused".into());
                f.duration_ms = None;
            }
            Arc::new(f)
        })
        .collect();
    let (_c, n) = store::writer::copy_flows(c, &flows).await.expect("write");
    assert_eq!(n, 40);
    let queries = [
        "SELECT url, duration_ms, status_code\nFROM \"CCProxy_HttpTraces\"\nORDER BY duration_ms DESC NULLS LAST\nLIMIT 10;",
        "SELECT\n  host,\n  COUNT(*) FILTER (WHERE status_code >= 400) AS errors,\n  COUNT(*) AS total,\n  ROUND(100.0 * COUNT(*) FILTER (WHERE status_code >= 400) / COUNT(*), 2) AS error_rate\nFROM \"CCProxy_HttpTraces\"\nGROUP BY host\nORDER BY error_rate DESC;",
        "SELECT\n  traffic_type,\n  COUNT(*) AS requests,\n  ROUND(AVG(duration_ms)::numeric, 2) AS avg_duration_ms\nFROM \"CCProxy_HttpTraces\"\nGROUP BY traffic_type\nORDER BY requests DESC;",
        "SELECT\n  host,\n  method,\n  status_code,\n  duration_ms,\n  start_time\nFROM \"CCProxy_HttpTraces\"\nWHERE traffic_type = 'llm'\nORDER BY start_time DESC\nLIMIT 20;",
    ];
    let expect_rows = ["(10 rows)", "(2 rows)", "(2 rows)", "(20 rows)"];
    for (q, want) in queries.iter().zip(expect_rows) {
        let out = psql(&db.url, q);
        assert!(out.contains(want), "{q}\n{out}");
    }
    // Two hosts, the LLM one with its 529s counted as errors.
    let out = psql(&db.url, queries[1]);
    assert!(out.contains("api.anthropic.com"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_no_url_the_store_uses_the_managed_cluster_and_stops_it_at_exit() {
    let home = temp_home();
    let _stop = StopOnDrop(home.path());
    let cfg = common::db::config(home.path(), None);
    let st = store::Store::open(&cfg).await.expect("open");
    let stats = st.stats();
    assert_eq!(stats.source, "managed");
    assert_eq!(stats.state, store::StorageState::Connected);
    let m = st.managed().expect("managed").clone();
    assert!(m.started_by_us);
    let sink = st.sink();
    for i in 0..10 {
        sink.submit(Arc::new(sample_flow(i)));
    }
    st.shutdown(std::time::Duration::from_secs(10)).await;
    assert!(
        managed::running_pid(&m.data_dir).is_none(),
        "server left running"
    );
    // The rows are there next time (the reader starts the server on demand).
    let reader = store::query::Reader::connect(&cfg)
        .await
        .expect("reader")
        .expect("storage on");
    assert_eq!(reader.since(None, 100).await.expect("rows").len(), 10);
}
