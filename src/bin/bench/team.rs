//! Team-scale benchmark (`ccproxy-bench team`): on a managed cluster with
//! fsync on, the writer's ingest rows/s into the daily-partitioned table;
//! the seed's four analysis queries at each row count of
//! `CCPROXY_BENCH_TEAM_ROWS` (default `1000000`, e.g. `1000000,10000000`),
//! rows generated with `generate_series` straight into the table over ten
//! days; and removing one day of `CCPROXY_BENCH_PRUNE_ROWS` (default
//! 1,000,000) rows by batched `DELETE` on an unpartitioned table versus by
//! retention dropping its partition.

use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use ccproxy::flow::Flow;
use ccproxy::store::managed::{self, Tuning};
use ccproxy::store::{self, partition, Store};

/// The seed's analysis queries, verbatim.
pub const SEED_QUERIES: [(&str, &str); 4] = [
    (
        "slowest 10",
        "SELECT url, duration_ms, status_code\nFROM \"CCProxy_HttpTraces\"\nORDER BY duration_ms DESC NULLS LAST\nLIMIT 10;",
    ),
    (
        "error rate by host",
        "SELECT\n  host,\n  COUNT(*) FILTER (WHERE status_code >= 400) AS errors,\n  COUNT(*) AS total,\n  ROUND(100.0 * COUNT(*) FILTER (WHERE status_code >= 400) / COUNT(*), 2) AS error_rate\nFROM \"CCProxy_HttpTraces\"\nGROUP BY host\nORDER BY error_rate DESC;",
    ),
    (
        "by traffic type",
        "SELECT\n  traffic_type,\n  COUNT(*) AS requests,\n  ROUND(AVG(duration_ms)::numeric, 2) AS avg_duration_ms\nFROM \"CCProxy_HttpTraces\"\nGROUP BY traffic_type\nORDER BY requests DESC;",
    ),
    (
        "latest 20 llm",
        "SELECT\n  host,\n  method,\n  status_code,\n  duration_ms,\n  start_time\nFROM \"CCProxy_HttpTraces\"\nWHERE traffic_type = 'llm'\nORDER BY start_time DESC\nLIMIT 20;",
    ),
];

fn env_list(name: &str, default: &str) -> Vec<i64> {
    std::env::var(name)
        .unwrap_or_else(|_| default.into())
        .split(',')
        .filter_map(|s| s.trim().replace('_', "").parse().ok())
        .collect()
}

pub async fn run() -> anyhow::Result<()> {
    let home = std::env::temp_dir().join(format!("ccproxy-bench-team-{}", std::process::id()));
    std::fs::create_dir_all(&home).context("bench home")?;
    std::fs::set_permissions(&home, std::fs::Permissions::from_mode(0o755))?;
    let Some(m) = managed::ensure_cluster(&home, Tuning::Durable).await? else {
        anyhow::bail!(
            "no PostgreSQL server binaries: install postgresql to run the team benchmark"
        );
    };
    let result = measure(&home, &m.url).await;
    let cluster = m.cluster_dir.clone();
    let stop = tokio::task::spawn_blocking(move || managed::stop_managed(&m)).await;
    if let Ok(Err(e)) = stop {
        eprintln!("ccproxy-bench: {e}");
    }
    let _ = std::fs::remove_dir_all(&cluster);
    let _ = std::fs::remove_dir_all(&home);
    result
}

async fn measure(home: &std::path::Path, admin: &str) -> anyhow::Result<()> {
    println!("team: managed cluster, fsync on, \"CCProxy_HttpTraces\" partitioned by day");
    ingest(home, admin).await?;
    queries(admin).await?;
    prune(admin).await
}

async fn ingest(home: &std::path::Path, admin: &str) -> anyhow::Result<()> {
    let n: usize = std::env::var("CCPROXY_BENCH_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let url = super::store::fresh(admin, "bench_team_ingest").await?;
    let flows: Vec<Arc<Flow>> = (0..n)
        .map(|i| Arc::new(super::store::realistic(i)))
        .collect();
    let mut cfg = ccproxy::config::Config::load_with(
        &ccproxy::config::Overrides {
            home: Some(home.to_path_buf()),
            ..Default::default()
        },
        &|_| None,
    )?;
    cfg.mitm.database_url = Some(url);
    cfg.mitm.buffer_size = n;
    let st = Store::open(&cfg).await?;
    let sink = st.sink();
    let t = Instant::now();
    for f in &flows {
        sink.submit(Arc::clone(f));
    }
    while st.stats().written < n as u64 {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let rps = n as f64 / t.elapsed().as_secs_f64();
    st.shutdown(Duration::from_secs(30)).await;
    println!("  ingest (writer, COPY batches, realistic ~5 KB rows): {n} rows, {rps:.0} rows/s");
    Ok(())
}

/// Generate `n` small rows over the ten days before now (UTC).
fn generate(from: i64, to: i64) -> String {
    format!(
        r#"INSERT INTO "CCProxy_HttpTraces" (trace_id, method, url, host, path, status_code,
               start_time, end_time, duration_ms, traffic_type, is_https, request_body_size,
               response_body_size, capture_host, capture_user)
           SELECT 'gen-' || g, 'POST',
                  'https://' || h || '/v1/messages', h, '/v1/messages',
                  CASE WHEN g % 17 = 0 THEN 529 WHEN g % 23 = 0 THEN 404 ELSE 200 END,
                  t, t + (g % 5000) * interval '1 millisecond', (g % 5000)::float,
                  CASE WHEN g % 4 = 0 THEN 'web' WHEN g % 9 = 0 THEN 'mcp' ELSE 'llm' END,
                  true, 2000 + g % 3000, 3000 + g % 4000,
                  'machine-' || (g % 20), 'dev-' || (g % 50)
           FROM generate_series({from}, {to}) g,
                LATERAL (SELECT (ARRAY['api.anthropic.com','api.openai.com','generativelanguage.googleapis.com','example.com'])[1 + g % 4] AS h,
                                (now() AT TIME ZONE 'UTC') - (g % 864000) * interval '1 second' AS t) x"#
    )
}

async fn queries(admin: &str) -> anyhow::Result<()> {
    let counts = env_list("CCPROXY_BENCH_TEAM_ROWS", "1000000");
    let url = super::store::fresh(admin, "bench_team_queries").await?;
    let c = store::connect(&url).await?;
    let mut have = 0i64;
    for target in counts {
        if target > have {
            let t = Instant::now();
            c.batch_execute(&generate(have + 1, target)).await?;
            c.batch_execute(r#"ANALYZE "CCProxy_HttpTraces""#).await?;
            println!(
                "  generated {} rows in {:.1} s (generate_series, 5 indexes + capture_host, ~10 daily partitions)",
                target - have,
                t.elapsed().as_secs_f64()
            );
            have = target;
        }
        let parts = partition::list(&c).await?.len();
        println!("  the seed's four queries at {have} rows ({parts} partitions), ms (first run / second run):");
        for (name, q) in SEED_QUERIES {
            let mut times = Vec::new();
            for _ in 0..2 {
                let t = Instant::now();
                c.simple_query(q).await?;
                times.push(t.elapsed().as_secs_f64() * 1000.0);
            }
            println!("    {name:<22} {:>9.1} / {:>9.1}", times[0], times[1]);
        }
    }
    Ok(())
}

async fn prune(admin: &str) -> anyhow::Result<()> {
    let n = env_list("CCPROXY_BENCH_PRUNE_ROWS", "1000000")
        .first()
        .copied()
        .unwrap_or(1_000_000);
    // One day, 40 days ago, and a few newer rows that must stay.
    let day = (chrono::Utc::now() - chrono::Duration::days(40)).date_naive();
    let lo = day.and_hms_opt(0, 0, 0).unwrap_or_default();
    let fill = |table: &str| {
        format!(
            r"INSERT INTO {table} (trace_id, method, url, host, path, status_code, start_time,
                   duration_ms, traffic_type, is_https)
               SELECT 'p-' || g, 'POST', 'https://api.anthropic.com/v1/messages', 'api.anthropic.com',
                      '/v1/messages', 200, '{lo}'::timestamp + (g % 86400) * interval '1 second',
                      (g % 5000)::float, 'llm', true
               FROM generate_series(1, {n}) g;
               INSERT INTO {table} (trace_id, method, url, host, path, start_time, traffic_type, is_https)
               SELECT 'keep-' || g, 'GET', 'https://example.com/', 'example.com', '/',
                      now() AT TIME ZONE 'UTC', 'web', true FROM generate_series(1, 1000) g;"
        )
    };
    let cutoff = (day + chrono::Days::new(1))
        .and_hms_opt(0, 0, 0)
        .unwrap_or_default();

    // Unpartitioned: the seed's table with its indexes, batched DELETE.
    let plain = super::store::fresh(admin, "bench_team_prune_plain").await?;
    let c = store::connect(&plain).await?;
    c.batch_execute(
        r#"CREATE TABLE plain (LIKE "CCProxy_HttpTraces" INCLUDING DEFAULTS);
           DROP TABLE "CCProxy_HttpTraces";
           ALTER TABLE plain RENAME TO "CCProxy_HttpTraces";
           ALTER TABLE "CCProxy_HttpTraces" ADD PRIMARY KEY (trace_id);
           CREATE INDEX ON "CCProxy_HttpTraces" (start_time);
           CREATE INDEX ON "CCProxy_HttpTraces" (host);
           CREATE INDEX ON "CCProxy_HttpTraces" (traffic_type);
           CREATE INDEX ON "CCProxy_HttpTraces" (created_at);
           CREATE INDEX ON "CCProxy_HttpTraces" (status_code);"#,
    )
    .await
    .context("plain table")?;
    c.batch_execute(&fill("\"CCProxy_HttpTraces\"")).await?;
    c.batch_execute("CHECKPOINT").await?;
    let t = Instant::now();
    let deleted = partition::prune_before(&c, cutoff).await?;
    let by_delete = t.elapsed().as_secs_f64();

    // Partitioned: the same rows; retention drops the day's partition.
    let parted = super::store::fresh(admin, "bench_team_prune_parted").await?;
    let mut c = store::connect(&parted).await?;
    partition::ensure_days(&mut c, day, day).await?;
    c.batch_execute(&fill("\"CCProxy_HttpTraces\"")).await?;
    c.batch_execute("CHECKPOINT").await?;
    let t = Instant::now();
    let dropped = partition::prune_before(&c, cutoff).await?;
    let by_drop = t.elapsed().as_secs_f64();
    println!("  removing one day of {n} rows (plus 1,000 newer rows kept):");
    println!("    batched DELETE, unpartitioned   {by_delete:>8.2} s  ({deleted} rows)");
    println!("    DROP of its partition           {by_drop:>8.2} s  ({dropped} rows)");
    println!(
        "    ratio                           {:>8.0}x",
        by_delete / by_drop.max(1e-6)
    );
    Ok(())
}
