//! Many machines, one server: TLS to a second PostgreSQL that only speaks
//! TLS (verify-full, a wrong CA that spools then replays, a client
//! certificate, pgpass), who captured each row, migrations and partition
//! changes from many engines at once, converting an unpartitioned table with
//! rows in it, retention by partition, and three real engines writing at once.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ccproxy::flow::Flow;
use ccproxy::store::{self, migrate, partition, StorageState, Store};
use common::db::{config, fresh_db, sample_flow, temp_home};

async fn count(url: &str) -> i64 {
    let c = store::connect(url).await.expect("connect");
    c.query_one(r#"SELECT count(*) FROM "CCProxy_HttpTraces""#, &[])
        .await
        .expect("count")
        .get(0)
}

async fn wait_written(st: &Store, n: u64) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while st.stats().written < n && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn ccproxy_db(
    home: &std::path::Path,
    url: &str,
    args: &[&str],
    env: &[(&str, &str)],
) -> std::process::Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_ccproxy"));
    c.arg("--home").arg(home).args(args);
    c.env("CCPROXY_DATABASE_URL", url)
        .env_remove("DATABASE_URL")
        .env_remove("PGPASSWORD")
        .env_remove("PGPASSFILE")
        .env_remove("CCPROXY_HOME");
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().expect("run ccproxy")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_full_stores_over_tls_and_plain_or_wrong_ca_is_refused_with_the_fix() {
    let pg = common::tls_pg::start().await;
    let ca = pg.ca.display().to_string();

    // A plain session is refused by pg_hba (hostssl only), with the fix named.
    let err = store::connect(&pg.url("sslmode=disable"))
        .await
        .expect_err("plain must be refused")
        .to_string();
    assert!(err.contains("sslmode=verify-full"), "{err}");
    assert!(!err.contains(common::tls_pg::PASSWORD), "{err}");

    // verify-full with the right CA: the store connects, writes, and says TLS.
    let url = pg.url(&format!("sslmode=verify-full&sslrootcert={ca}"));
    let home = temp_home();
    let st = Store::open(&config(home.path(), Some(&url)))
        .await
        .expect("open");
    let sink = st.sink();
    for i in 0..25 {
        sink.submit(Arc::new(sample_flow(i)));
    }
    wait_written(&st, 25).await;
    let s = st.stats();
    assert_eq!((s.state, s.written), (StorageState::Connected, 25), "{s:?}");
    let conn = s.connection.clone().expect("connection info");
    assert!(conn.tls, "{conn:?}");
    assert_eq!(conn.server, format!("127.0.0.1:{}", pg.port));
    assert_eq!(conn.sslmode, "verify-full");
    let json = serde_json::to_string(&s).expect("json");
    assert!(!json.contains(common::tls_pg::PASSWORD), "{json}");
    assert!(json.contains("\"tls\":true"), "{json}");
    st.shutdown(Duration::from_secs(10)).await;
    assert_eq!(count(&url).await, 25);

    // The host name must match under verify-full ("localhost" is in the
    // certificate, an IP it does not list is not), and verify-ca skips it.
    let by_name = format!(
        "postgres://{}:{}@localhost:{}/{}?sslmode=verify-full&sslrootcert={ca}",
        common::tls_pg::USER,
        common::tls_pg::PASSWORD,
        pg.port,
        common::tls_pg::DATABASE
    );
    store::connect(&by_name)
        .await
        .expect("localhost is in the certificate");

    // A wrong CA: one line that names the fix.
    let wrong = pg.url(&format!(
        "sslmode=verify-full&sslrootcert={}",
        pg.wrong_ca.display()
    ));
    let err = store::connect(&wrong)
        .await
        .expect_err("wrong CA")
        .to_string();
    assert!(err.contains("not signed by a CA in"), "{err}");
    assert!(err.contains("set sslrootcert"), "{err}");
    assert!(!err.contains('\n'), "one line: {err}");

    // require: encrypted without checking the certificate.
    let c = store::connect(&pg.url("sslmode=require"))
        .await
        .expect("require");
    let ssl: bool = c
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .expect("ssl")
        .get(0);
    assert!(ssl);

    // `db status` says TLS and to which server, never the password.
    let out = ccproxy_db(home.path(), &url, &["db", "status"], &[]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("tls:      yes, TLSv1.3"), "{text}");
    assert!(text.contains(&format!("127.0.0.1:{}", pg.port)), "{text}");
    assert!(!text.contains(common::tls_pg::PASSWORD), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_ca_spools_the_rows_and_the_right_one_replays_them() {
    let pg = common::tls_pg::start().await;
    let home = temp_home();
    let wrong = pg.url(&format!(
        "sslmode=verify-full&sslrootcert={}",
        pg.wrong_ca.display()
    ));
    let st = Store::open(&config(home.path(), Some(&wrong)))
        .await
        .expect("a bad CA is not fatal: rows spool");
    let sink = st.sink();
    let flows: Vec<Arc<Flow>> = (0..40).map(|i| Arc::new(sample_flow(i))).collect();
    for f in &flows {
        sink.submit(Arc::clone(f));
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    while st.stats().spooled < 40 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let s = st.stats();
    assert_eq!(s.state, StorageState::Spooling, "{s:?}");
    assert_eq!((s.spooled, s.written), (40, 0), "{s:?}");
    let line = s.last_error.clone().expect("last error");
    assert!(line.contains("set sslrootcert"), "{line}");
    assert!(!line.contains(common::tls_pg::PASSWORD), "{line}");
    st.shutdown(Duration::from_secs(5)).await;

    // The engine restarted with the right CA replays the spool.
    let right = pg.url(&format!(
        "sslmode=verify-full&sslrootcert={}",
        pg.ca.display()
    ));
    let st = Store::open(&config(home.path(), Some(&right)))
        .await
        .expect("open");
    wait_replayed(&st, 40).await;
    let s = st.stats();
    assert_eq!(s.replayed, 40, "{s:?}");
    st.shutdown(Duration::from_secs(10)).await;
    let c = store::connect(&right).await.expect("connect");
    let (n, distinct): (i64, i64) = {
        let r = c
            .query_one(
                r#"SELECT count(*), count(DISTINCT trace_id) FROM "CCProxy_HttpTraces""#,
                &[],
            )
            .await
            .expect("count");
        (r.get(0), r.get(1))
    };
    assert_eq!((n, distinct), (40, 40));
}

async fn wait_replayed(st: &Store, n: u64) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while st.stats().replayed < n && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_certificates_and_the_pgpass_file_log_in() {
    let pg = common::tls_pg::start().await;
    let ca = pg.ca.display().to_string();
    // certuser may only log in with a certificate whose CN is its name.
    let base = format!(
        "postgres://{}@127.0.0.1:{}/{}?sslmode=verify-full&sslrootcert={ca}",
        common::tls_pg::CERT_USER,
        pg.port,
        common::tls_pg::DATABASE
    );
    let err = store::connect(&base)
        .await
        .expect_err("no client cert")
        .to_string();
    assert!(err.contains("certificate"), "{err}");
    let with_cert = format!(
        "{base}&sslcert={}&sslkey={}",
        pg.client_cert.display(),
        pg.client_key.display()
    );
    let c = store::connect(&with_cert)
        .await
        .expect("client certificate");
    let who: String = c
        .query_one("SELECT current_user", &[])
        .await
        .expect("q")
        .get(0);
    assert_eq!(who, common::tls_pg::CERT_USER);

    // The password from a 0600 pgpass file; a looser one is ignored.
    let dir = tempfile::tempdir().expect("tmp");
    let pgpass = dir.path().join("pgpass");
    std::fs::write(
        &pgpass,
        format!(
            "127.0.0.1:{}:{}:{}:{}\n",
            pg.port,
            common::tls_pg::DATABASE,
            common::tls_pg::USER,
            common::tls_pg::PASSWORD
        ),
    )
    .expect("pgpass");
    std::fs::set_permissions(&pgpass, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let url = pg.url_without_password(&format!("sslmode=verify-full&sslrootcert={ca}"));
    let home = temp_home();
    let pass = pgpass.display().to_string();
    let out = ccproxy_db(
        home.path(),
        &url,
        &["db", "migrate"],
        &[("PGPASSFILE", &pass)],
    );
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::set_permissions(&pgpass, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let out = ccproxy_db(
        home.path(),
        &url,
        &["db", "migrate"],
        &[("PGPASSFILE", &pass)],
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("0600") || err.contains("password"), "{err}");
    // PGPASSWORD works too.
    let out = ccproxy_db(
        home.path(),
        &url,
        &["db", "migrate"],
        &[("PGPASSWORD", common::tls_pg::PASSWORD)],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_record_who_captured_them() {
    let db = fresh_db().await;
    let home = temp_home();
    let mut cfg = config(home.path(), Some(&db.url));
    cfg.identity.host = Some("build-box-7".into());
    cfg.identity.user = Some("ana".into());
    let st = Store::open(&cfg).await.expect("open");
    let sink = st.sink();
    for i in 0..5 {
        sink.submit(Arc::new(sample_flow(i)));
    }
    wait_written(&st, 5).await;
    let id = st.stats().identity.expect("identity in status");
    assert_eq!((id.host.as_str(), id.user.as_str()), ("build-box-7", "ana"));
    st.shutdown(Duration::from_secs(10)).await;
    let c = store::connect(&db.url).await.expect("connect");
    let rows = c
        .query(
            r#"SELECT capture_host, capture_user, count(*) FROM "CCProxy_HttpTraces" GROUP BY 1, 2"#,
            &[],
        )
        .await
        .expect("q");
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].get::<_, String>(0), "build-box-7");
    assert_eq!(rows[0].get::<_, String>(1), "ana");
    assert_eq!(rows[0].get::<_, i64>(2), 5);
    // Without configuration: the hostname and the OS user.
    let detected = store::identity::detect();
    assert!(!detected.host.is_empty() && detected.host != "unknown");
    assert_eq!(
        detected.user,
        nix::unistd::User::from_uid(nix::unistd::Uid::effective())
            .expect("user")
            .expect("user")
            .name
    );
}

/// `--host` picks one machine's rows in `stats`, `sessions` and `export`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_filters_stats_sessions_and_export() {
    let db = fresh_db().await;
    let home = temp_home();
    let cfg = config(home.path(), Some(&db.url));
    let st = Store::open(&cfg).await.expect("open");
    let sink = st.sink();
    // Machine A: 6 flows in sessions sess-0..2; machine B: 4 flows in sess-3..6.
    for i in 0..10 {
        let mut f = sample_flow(if i < 6 { i % 3 } else { 3 + i % 4 });
        f.capture_host = Some(if i < 6 { "Build-A" } else { "build-b" }.into());
        sink.submit(Arc::new(f));
    }
    wait_written(&st, 10).await;
    st.shutdown(Duration::from_secs(10)).await;
    let json = |args: &[&str]| -> serde_json::Value {
        let out = ccproxy_db(home.path(), &db.url, args, &[]);
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("json")
    };
    let requests = |v: &serde_json::Value| {
        v.as_array()
            .expect("array")
            .iter()
            .map(|r| r["requests"].as_i64().expect("requests"))
            .sum::<i64>()
    };
    assert_eq!(requests(&json(&["stats", "--json"])), 10);
    assert_eq!(
        requests(&json(&["stats", "--json", "--host", "build-a"])),
        6
    );
    assert_eq!(
        requests(&json(&["stats", "--json", "--host", "BUILD-B"])),
        4
    );
    let sessions = json(&["sessions", "--json", "--host", "build-a"]);
    let ids: Vec<&str> = sessions
        .as_array()
        .expect("array")
        .iter()
        .map(|s| s["session_id"].as_str().expect("id"))
        .collect();
    assert_eq!(ids.len(), 3, "{ids:?}");
    assert!(
        ids.iter()
            .all(|id| ["sess-0", "sess-1", "sess-2"].contains(id)),
        "{ids:?}"
    );
    assert_eq!(
        requests(&json(&["sessions", "--json", "--host", "build-b"])),
        4
    );
    let har = json(&["export", "--har", "-", "--host", "build-b"]);
    assert_eq!(har["log"]["entries"].as_array().expect("entries").len(), 4);
}

/// The seed's table (the Python original's, via Prisma), as in store_writer.rs.
const SEED_TABLE: &str = r#"CREATE TABLE "CCProxy_HttpTraces" (
    trace_id TEXT PRIMARY KEY, method TEXT, url TEXT, host TEXT, path TEXT,
    request_headers JSONB, request_body BYTEA, request_body_size INT, request_content_type TEXT,
    status_code INT, response_headers JSONB, response_body BYTEA, response_body_size INT,
    response_content_type TEXT, start_time TIMESTAMP(3), end_time TIMESTAMP(3), duration_ms FLOAT,
    client_ip TEXT, server_ip TEXT, server_port INT, is_https BOOLEAN, error_message TEXT,
    error_type TEXT, traffic_type TEXT, created_at TIMESTAMP(3) DEFAULT CURRENT_TIMESTAMP);
    CREATE INDEX "CCProxy_HttpTraces_start_time_idx" ON "CCProxy_HttpTraces" (start_time);
    CREATE INDEX "CCProxy_HttpTraces_host_idx" ON "CCProxy_HttpTraces" (host);"#;

/// `n` seed-shaped rows over the last ten days (one without a start_time).
fn seed_rows(n: i64) -> String {
    format!(
        r#"INSERT INTO "CCProxy_HttpTraces" (trace_id, method, url, host, path, status_code,
               start_time, duration_ms, traffic_type, request_body)
           SELECT 'old-' || g, 'POST', 'https://api.anthropic.com/v1/messages', 'api.anthropic.com',
                  '/v1/messages', CASE WHEN g % 10 = 0 THEN 529 ELSE 200 END,
                  (now() AT TIME ZONE 'UTC') - (g % 240) * interval '1 hour', g % 1000,
                  CASE WHEN g % 3 = 0 THEN 'web' ELSE 'llm' END, convert_to(repeat('x', 64), 'UTF8')
           FROM generate_series(1, {n}) g;
           UPDATE "CCProxy_HttpTraces" SET start_time = NULL WHERE trace_id = 'old-7';"#
    )
}

async fn fingerprint(c: &tokio_postgres::Client) -> (i64, i64, String) {
    let r = c
        .query_one(
            r#"SELECT count(*), count(DISTINCT trace_id),
                      md5(string_agg(trace_id || ':' || coalesce(status_code, 0) || ':' || md5(coalesce(request_body, '')), ',' ORDER BY trace_id))
               FROM "CCProxy_HttpTraces""#,
            &[],
        )
        .await
        .expect("fingerprint");
    (r.get(0), r.get(1), r.get(2))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[allow(clippy::many_single_char_names)]
async fn an_unpartitioned_table_with_rows_is_converted_in_place_resuming_after_an_interruption() {
    let db = fresh_db().await;
    let mut c = store::connect(&db.url).await.expect("connect");
    c.batch_execute(SEED_TABLE).await.expect("seed table");
    let n = 2 * partition::MOVE_BATCH + 123;
    c.batch_execute(&seed_rows(n)).await.expect("rows");
    let before = fingerprint(&c).await;
    assert_eq!(before.0, n);

    // Interrupted after one batch: the old table still holds the rest.
    let r = partition::ensure_limited(&mut c, Some(1))
        .await
        .expect("one batch");
    assert_eq!(r.moved, partition::MOVE_BATCH as u64);
    assert_eq!(
        partition::is_partitioned(&c).await.expect("kind"),
        Some(true)
    );
    let (moved, total) = partition::conversion_progress(&c)
        .await
        .expect("progress")
        .expect("unfinished");
    assert_eq!((moved, total), (partition::MOVE_BATCH, n));

    // A fresh connection (the next start) finishes it through the normal path.
    drop(c);
    let mut c = store::connect(&db.url).await.expect("reconnect");
    migrate::migrate(&mut c)
        .await
        .expect("migrate finishes the conversion");
    assert_eq!(partition::conversion_progress(&c).await.expect("p"), None);
    let old: bool = c
        .query_one(
            "SELECT to_regclass('\"CCProxy_HttpTraces_unpartitioned\"') IS NULL",
            &[],
        )
        .await
        .expect("q")
        .get(0);
    assert!(old, "the old table is dropped");
    assert_eq!(fingerprint(&c).await, before, "every row, once, unchanged");
    let parts = partition::list(&c).await.expect("list");
    assert!(parts.len() >= 11 + 7, "{parts:?}");
    assert!(parts.iter().any(|p| p.day.is_none()), "a default partition");
    // The row with no start_time got one (its created_at) instead of being lost.
    let t: Option<chrono::NaiveDateTime> = c
        .query_one(
            r#"SELECT start_time FROM "CCProxy_HttpTraces" WHERE trace_id = 'old-7'"#,
            &[],
        )
        .await
        .expect("old-7")
        .get(0);
    assert!(t.is_some());
    // New rows go in beside them; the writer's path works on the new table.
    let (_c, w) = store::writer::copy_flows(c, &[Arc::new(sample_flow(1))])
        .await
        .expect("write");
    assert_eq!(w, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_migrators_at_once_convert_once_and_lose_nothing() {
    let db = fresh_db().await;
    let c = store::connect(&db.url).await.expect("connect");
    c.batch_execute(SEED_TABLE).await.expect("seed table");
    c.batch_execute(&seed_rows(30_000)).await.expect("rows");
    let before = fingerprint(&c).await;
    let runs = (0..3).map(|_| {
        let url = db.url.clone();
        tokio::spawn(async move {
            let mut c = store::connect(&url).await.expect("connect");
            migrate::migrate(&mut c).await.expect("migrate")
        })
    });
    let applied: usize = futures::future::join_all(runs)
        .await
        .into_iter()
        .map(|r| r.expect("join"))
        .sum();
    assert_eq!(
        applied,
        migrate::MIGRATIONS.len(),
        "each migration applied once"
    );
    assert_eq!(fingerprint(&c).await, before);
    assert_eq!(
        partition::is_partitioned(&c).await.expect("kind"),
        Some(true)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_drops_whole_days_and_deletes_only_in_the_boundary_day() {
    let db = fresh_db().await;
    let mut c = store::connect(&db.url).await.expect("connect");
    migrate::migrate(&mut c).await.expect("migrate");
    let parts = partition::list(&c).await.expect("list");
    let today = chrono::Utc::now().date_naive();
    for d in 0..=partition::DAYS_AHEAD {
        let day = today + chrono::Days::new(d);
        assert!(
            parts.iter().any(|p| p.day == Some(day)),
            "{day} in {parts:?}"
        );
    }
    // Rows 0..5 days old, 6 per day; old days land in the default partition first.
    let now = chrono::Utc::now();
    let flows: Vec<Arc<Flow>> = (0..36)
        .map(|i| {
            let mut f = sample_flow(i);
            f.start_time = now - chrono::Duration::hours(4 * i as i64);
            Arc::new(f)
        })
        .collect();
    let (mut c, n) = store::writer::copy_flows(c, &flows).await.expect("write");
    assert_eq!(n, 36);
    // Upkeep gives each day in the default partition its own partition.
    let r = partition::maintain(&mut c).await.expect("maintain");
    assert!(r.created >= 5, "{r:?}");
    let in_default: i64 = c
        .query_one(r#"SELECT count(*) FROM "CCProxy_HttpTraces_default""#, &[])
        .await
        .expect("q")
        .get(0);
    assert_eq!(in_default, 0);
    let want: i64 = flows
        .iter()
        .filter(|f| f.start_time >= now - chrono::Duration::hours(62))
        .count() as i64;
    let before_parts = partition::list(&c).await.expect("list").len();
    let pruned = store::prune(&c, Duration::from_secs(62 * 3600))
        .await
        .expect("prune");
    assert_eq!(pruned, 36 - want as u64);
    assert_eq!(count(&db.url).await, want);
    let after_parts = partition::list(&c).await.expect("list");
    assert!(after_parts.len() < before_parts, "whole days were dropped");
    let cutoff_day = (now - chrono::Duration::hours(62)).date_naive();
    assert!(after_parts
        .iter()
        .all(|p| p.day.is_none_or(|d| d >= cutoff_day)));
    // The seed's queries still run against the partitioned table.
    c.query(
        "SELECT host, COUNT(*) FILTER (WHERE status_code >= 400) AS errors, COUNT(*) AS total \
         FROM \"CCProxy_HttpTraces\" GROUP BY host",
        &[],
    )
    .await
    .expect("seed query");
}

#[test]
fn three_engines_on_three_homes_write_to_one_server_at_once() {
    use common::engine::{Setup, TestHome};
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let db = rt.block_on(fresh_db());
    let upstream = rt.block_on(common::upstream::http(|_req| async {
        hyper::Response::builder()
            .header("content-type", "application/json")
            .body(common::upstream::full(r#"{"ok":true}"#))
            .expect("response")
    }));
    let homes: Vec<TestHome> = (0..3)
        .map(|i| {
            let h = TestHome::new(&Setup {
                database_url: Some(db.url.clone()),
                ..Setup::default()
            });
            let path = h.file("ccproxy.yaml");
            let yaml = std::fs::read_to_string(&path).expect("yaml").replacen(
                "ccproxy:\n",
                &format!("ccproxy:\n  identity:\n    host: machine-{i}\n    user: dev-{i}\n"),
                1,
            );
            std::fs::write(&path, yaml).expect("yaml");
            h
        })
        .collect();
    // All three start at once: their migrations race for the same server.
    std::thread::scope(|s| {
        for h in &homes {
            s.spawn(|| h.start(&["mitm", "start", "-d"]));
        }
    });
    const PER_ENGINE: usize = 40;
    std::thread::scope(|s| {
        for h in &homes {
            let url = format!("http://{}/v1/messages", upstream.addr);
            s.spawn(move || {
                let mut args = vec![
                    "-sS".to_string(),
                    "--fail".into(),
                    "-o".into(),
                    "/dev/null".into(),
                    "-x".into(),
                    format!("http://127.0.0.1:{}", h.forward),
                ];
                for i in 0..PER_ENGINE {
                    args.push(format!("{url}?i={i}"));
                }
                let out = Command::new("curl").args(&args).output().expect("curl");
                assert!(
                    out.status.success(),
                    "{}",
                    String::from_utf8_lossy(&out.stderr)
                );
            });
        }
    });
    for h in &homes {
        let st = h.status().expect("status");
        assert_eq!(st["storage"]["state"], "connected", "{st}");
        assert!(h.run(&["stop"]).status.success());
    }
    let rows = rt.block_on(async {
        let c = store::connect(&db.url).await.expect("connect");
        c.query(
            r#"SELECT capture_host, capture_user, count(*), count(DISTINCT trace_id)
               FROM "CCProxy_HttpTraces" GROUP BY 1, 2 ORDER BY 1"#,
            &[],
        )
        .await
        .expect("q")
    });
    let got: Vec<(String, String, i64, i64)> = rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect();
    let want: Vec<(String, String, i64, i64)> = (0..3)
        .map(|i| {
            (
                format!("machine-{i}"),
                format!("dev-{i}"),
                PER_ENGINE as i64,
                PER_ENGINE as i64,
            )
        })
        .collect();
    assert_eq!(got, want);
    let total: i64 = rt.block_on(async {
        let c = store::connect(&db.url).await.expect("connect");
        c.query_one(
            r#"SELECT count(DISTINCT trace_id) FROM "CCProxy_HttpTraces""#,
            &[],
        )
        .await
        .expect("q")
        .get(0)
    });
    assert_eq!(total, 3 * PER_ENGINE as i64, "every row exactly once");
}
