//! The writer against a real PostgreSQL: rows land exactly once, fields map
//! both ways, migrations are idempotent and schema gaps are named.

mod common;

use std::sync::Arc;
use std::time::Duration;

use ccproxy::flow::Flow;
use ccproxy::store::{self, migrate, row, StorageState, Store};
use common::db::{config, fresh_db, sample_flow, temp_home};

async fn count(url: &str) -> i64 {
    count_where(url, "true").await
}

/// Rows of the table for which the SQL condition `cond` holds.
async fn count_where(url: &str, cond: &str) -> i64 {
    let c = store::connect(url).await.expect("connect");
    c.query_one(
        &format!(r#"SELECT count(*) FROM "CCProxy_HttpTraces" WHERE {cond}"#),
        &[],
    )
    .await
    .expect("count")
    .get(0)
}

/// Waits until the store has written or dropped `n` rows (or 20 s pass).
async fn settled(store: &Store, n: u64) -> store::StoreStats {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let mut s = store.stats();
    while s.written + s.dropped < n && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
        s = store.stats();
    }
    s
}

fn micros(t: chrono::DateTime<chrono::Utc>) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::from_timestamp_micros(t.timestamp_micros()).expect("ts")
}

/// What a flow looks like after a trip through the table.
fn normalized(f: &Flow) -> Flow {
    let mut f = f.clone();
    f.start_time = micros(f.start_time);
    f.end_time = f.end_time.map(micros);
    for h in [&mut f.request_headers, &mut f.response_headers] {
        let mut grouped: Vec<(String, String)> = Vec::new();
        for (n, v) in h.drain(..) {
            match grouped.iter_mut().find(|(gn, _)| *gn == n) {
                Some((_, gv)) => *gv = format!("{gv}, {v}"),
                None => grouped.push((n, v)),
            }
        }
        grouped.sort();
        *h = grouped;
    }
    f
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_flows_land_exactly_once_with_every_field() {
    let db = fresh_db().await;
    let home = temp_home();
    let store = Store::open(&config(home.path(), Some(&db.url)))
        .await
        .expect("open");
    assert_eq!(store.stats().state, StorageState::Connected);
    let sink = store.sink();
    let flows: Vec<Arc<Flow>> = (0..1000).map(|i| Arc::new(sample_flow(i))).collect();
    for f in &flows {
        sink.submit(Arc::clone(f));
    }
    // A duplicate submit (a replay) never makes a second row.
    sink.submit(Arc::clone(&flows[0]));
    let stats_before = store.stats();
    store.shutdown(Duration::from_secs(30)).await;
    assert_eq!(count(&db.url).await, 1000);
    assert_eq!(stats_before.source, "url");

    let c = store::connect(&db.url).await.expect("connect");
    for i in [0usize, 1, 9, 500, 999] {
        let want = &flows[i];
        let r = c
            .query_one(
                &format!(
                    r#"SELECT {} FROM "CCProxy_HttpTraces" WHERE trace_id = $1"#,
                    row::select_list()
                ),
                &[&want.id.to_string()],
            )
            .await
            .expect("row");
        let mut got = row::from_row(&r).expect("decode");
        // Read back, an LLM row carries its analysis again; the fields are compared without it.
        assert!(got.llm.is_some(), "flow {i}: the read-back analysis");
        got.llm = None;
        got.request_headers.sort();
        got.response_headers.sort();
        assert_eq!(got, normalized(want), "flow {i}");
        // Binary bytes are exact; sizes are the full size, not the stored one.
        let body: Vec<u8> = r.get("response_body");
        assert_eq!(body, want.response_body.to_vec());
        let size: i32 = r.get("response_body_size");
        assert_eq!(size as u64, want.response_body_size);
        let extras = c
            .query_one(
                r#"SELECT model, input_tokens, output_tokens, direction, session_id
                   FROM "CCProxy_HttpTraces" WHERE trace_id = $1"#,
                &[&want.id.to_string()],
            )
            .await
            .expect("extras");
        assert_eq!(
            extras.get::<_, Option<String>>(0).as_deref(),
            Some("claude-sonnet-4")
        );
        assert_eq!(extras.get::<_, Option<i32>>(1), Some(1000 + i as i32));
        assert_eq!(extras.get::<_, Option<i32>>(2), Some(7));
        assert_eq!(
            extras.get::<_, Option<String>>(3).as_deref(),
            Some(want.direction.as_str())
        );
        assert_eq!(extras.get::<_, Option<String>>(4), want.session_id);
    }
    // Headers are a JSON object keyed by lowercase name, repeats joined.
    let accept: String = c
        .query_one(
            r#"SELECT request_headers->>'accept' FROM "CCProxy_HttpTraces" LIMIT 1"#,
            &[],
        )
        .await
        .expect("accept")
        .get(0);
    assert_eq!(accept, "application/json, text/event-stream");
}

#[tokio::test]
async fn migrations_are_idempotent_and_recorded() {
    let db = fresh_db().await;
    let mut c = store::connect(&db.url).await.expect("connect");
    assert_eq!(migrate::current_version(&c).await.expect("v"), None);
    assert_eq!(
        migrate::migrate(&mut c).await.expect("first"),
        migrate::MIGRATIONS.len()
    );
    assert_eq!(migrate::migrate(&mut c).await.expect("second"), 0);
    assert_eq!(
        migrate::current_version(&c).await.expect("v"),
        Some(migrate::latest_version())
    );
    let indexes: i64 = c
        .query_one(
            "SELECT count(*) FROM pg_indexes WHERE tablename = 'CCProxy_HttpTraces' AND indexname LIKE '%_idx'",
            &[],
        )
        .await
        .expect("indexes")
        .get(0);
    assert_eq!(indexes, 6, "the seed's five and capture_host");
}

#[tokio::test]
async fn concurrent_migrations_do_not_collide() {
    let db = fresh_db().await;
    let runs = (0..4).map(|_| {
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
    assert_eq!(applied, migrate::MIGRATIONS.len());
}

/// The table the Python original made (seed columns only) is adopted and upgraded.
const SEED_TABLE: &str = r#"CREATE TABLE "CCProxy_HttpTraces" (
    trace_id TEXT PRIMARY KEY, method TEXT, url TEXT, host TEXT, path TEXT,
    request_headers JSONB, request_body BYTEA, request_body_size INT, request_content_type TEXT,
    status_code INT, response_headers JSONB, response_body BYTEA, response_body_size INT,
    response_content_type TEXT, start_time TIMESTAMP(3), end_time TIMESTAMP(3), duration_ms FLOAT,
    client_ip TEXT, server_ip TEXT, server_port INT, is_https BOOLEAN, error_message TEXT,
    error_type TEXT, traffic_type TEXT, created_at TIMESTAMP(3) DEFAULT CURRENT_TIMESTAMP)"#;

#[tokio::test]
async fn a_seed_table_is_upgraded_in_place() {
    let db = fresh_db().await;
    let mut c = store::connect(&db.url).await.expect("connect");
    c.batch_execute(SEED_TABLE).await.expect("seed table");
    migrate::migrate(&mut c).await.expect("migrate");
    let has_session: bool = c
        .query_one(
            "SELECT count(*) = 1 FROM information_schema.columns WHERE table_name = 'CCProxy_HttpTraces' AND column_name = 'session_id'",
            &[],
        )
        .await
        .expect("q")
        .get(0);
    assert!(has_session);
    let (c, n) = store::writer::copy_flows(c, &[Arc::new(sample_flow(1))])
        .await
        .expect("write");
    assert_eq!(n, 1);
    drop(c);
}

#[tokio::test]
async fn a_table_missing_a_column_is_named_with_the_fix() {
    let db = fresh_db().await;
    let mut c = store::connect(&db.url).await.expect("connect");
    migrate::migrate(&mut c).await.expect("migrate");
    c.batch_execute(r#"ALTER TABLE "CCProxy_HttpTraces" DROP COLUMN client_ip"#)
        .await
        .expect("drop column");
    let err = migrate::migrate(&mut c)
        .await
        .expect_err("must fail")
        .to_string();
    assert!(err.contains("client_ip"), "{err}");
    assert!(err.contains("ALTER TABLE"), "{err}");
    // Store::open refuses it too, with the same message.
    let home = temp_home();
    let err = Store::open(&config(home.path(), Some(&db.url)))
        .await
        .expect_err("open must fail")
        .to_string();
    assert!(err.contains("client_ip"), "{err}");
}

#[tokio::test]
async fn prune_deletes_old_rows_in_batches() {
    let db = fresh_db().await;
    let mut c = store::connect(&db.url).await.expect("connect");
    migrate::migrate(&mut c).await.expect("migrate");
    let flows: Vec<Arc<Flow>> = (0..12_000)
        .map(|i| {
            let mut f = sample_flow(i);
            if i < 11_000 {
                f.start_time -= chrono::Duration::days(40);
            }
            Arc::new(f)
        })
        .collect();
    let (c, n) = store::writer::copy_flows(c, &flows).await.expect("write");
    assert_eq!(n, 12_000);
    let pruned = store::prune(&c, Duration::from_secs(30 * 86_400))
        .await
        .expect("prune");
    assert_eq!(pruned, 11_000);
    assert_eq!(count(&db.url).await, 1_000);
}

#[tokio::test]
async fn reader_pages_newest_first_and_since_oldest_first() {
    let db = fresh_db().await;
    let mut c = store::connect(&db.url).await.expect("connect");
    migrate::migrate(&mut c).await.expect("migrate");
    let base = chrono::Utc::now() - chrono::Duration::hours(1);
    let flows: Vec<Arc<Flow>> = (0..25)
        .map(|i| {
            let mut f = sample_flow(i);
            f.start_time = base + chrono::Duration::seconds(i as i64);
            Arc::new(f)
        })
        .collect();
    store::writer::copy_flows(c, &flows).await.expect("write");
    let reader = store::query::Reader::from_url(&db.url)
        .await
        .expect("reader");
    let first = reader.page(None, 10).await.expect("page");
    let ids: Vec<_> = first.iter().map(|f| f.id).collect();
    let want: Vec<_> = flows.iter().rev().take(10).map(|f| f.id).collect();
    assert_eq!(ids, want);
    let next = reader
        .page(Some(first[9].start_time), 10)
        .await
        .expect("page 2");
    assert_eq!(next[0].id, flows[14].id);
    let since = reader
        .since(Some(flows[20].start_time), 100)
        .await
        .expect("since");
    assert_eq!(
        since.iter().map(|f| f.id).collect::<Vec<_>>(),
        flows[20..].iter().map(|f| f.id).collect::<Vec<_>>()
    );
    assert_eq!(reader.since(None, 100).await.expect("all").len(), 25);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_the_database_refuses_are_isolated_dropped_and_counted() {
    let db = fresh_db().await;
    let home = temp_home();
    let store = Store::open(&config(home.path(), Some(&db.url)))
        .await
        .expect("open");
    // A real constraint violation (SQLSTATE 23514) for two rows of the batch.
    let c = store::connect(&db.url).await.expect("connect");
    c.batch_execute(
        r#"ALTER TABLE "CCProxy_HttpTraces" ADD CONSTRAINT no_teapots CHECK (status_code <> 418)"#,
    )
    .await
    .expect("constraint");
    let sink = store.sink();
    for i in 0..50 {
        let mut f = sample_flow(i);
        if i == 7 || i == 31 {
            f.status_code = Some(418);
        }
        sink.submit(Arc::new(f));
    }
    let s = settled(&store, 50).await;
    assert_eq!((s.written, s.dropped), (48, 2), "{s:?}");
    assert!(
        s.last_error
            .as_deref()
            .is_some_and(|e| e.contains("refused")),
        "{s:?}"
    );
    store.shutdown(Duration::from_secs(30)).await;
    assert_eq!(
        count(&db.url).await,
        48,
        "every accepted row is written once"
    );
    assert_eq!(count_where(&db.url, "status_code = 418").await, 0);
}

/// A streamed Responses call through the writer: every LLM column is filled
/// from the one analysis; `db backfill` fills older rows; `stats` adds up.
#[tokio::test]
async fn llm_columns_backfill_and_stats() {
    let db = fresh_db().await;
    let mut client = store::connect(&db.url).await.expect("connect");
    migrate::migrate(&mut client).await.expect("migrate");
    let mut f = Flow::new(
        ccproxy::flow::Direction::Reverse,
        "POST",
        "http://127.0.0.1:4000/v1/responses",
        "127.0.0.1",
        "/v1/responses",
    );
    f.traffic_type = ccproxy::flow::TrafficType::Llm;
    f.end_time = Some(f.start_time);
    f.duration_ms = Some(1200.0);
    f.status_code = Some(200);
    f.request_body = bytes::Bytes::from_static(br#"{"model":"gpt-5","stream":true,"input":"hi"}"#);
    f.response_content_type = Some("text/event-stream".into());
    f.response_body = bytes::Bytes::from_static(concat!(
        "event: response.created\ndata: {\"type\":\"response.created\",\"response\":{\"id\":\"resp_1\",\"model\":\"gpt-5-2025-08-07\"}}\n\n",
        "event: response.output_text.delta\ndata: {\"type\":\"response.output_text.delta\",\"output_index\":0,\"delta\":\"Hi\"}\n\n",
        "event: response.completed\ndata: {\"type\":\"response.completed\",\"response\":{\"id\":\"resp_1\",\"model\":\"gpt-5-2025-08-07\",\"status\":\"completed\",\"output\":[],",
        "\"usage\":{\"input_tokens\":2000,\"input_tokens_details\":{\"cached_tokens\":1500},\"output_tokens\":400,\"output_tokens_details\":{\"reasoning_tokens\":256}}}}\n\n",
    ).as_bytes());
    f.response_frames = vec![
        ccproxy::llm::FrameTime {
            offset: 0,
            elapsed_ms: 300.0,
        },
        ccproxy::llm::FrameTime {
            offset: 100,
            elapsed_ms: 700.0,
        },
    ];
    let a = ccproxy::llm::analyze_timed(&f, ccproxy::llm::PriceTable::shared(), &f.response_frames)
        .expect("llm");
    f.llm = Some(Arc::new(a));
    let (client, n) = store::writer::copy_flows(client, &[Arc::new(f.clone())])
        .await
        .expect("copy");
    assert_eq!(n, 1);
    let r = client
        .query_one(
            r#"SELECT api, model, response_model, stop_reason, input_tokens, output_tokens, cache_read_tokens,
                      reasoning_tokens, ttft_ms, cost_usd, llm_version FROM "CCProxy_HttpTraces""#,
            &[],
        )
        .await
        .expect("row");
    assert_eq!(
        r.get::<_, Option<String>>(0).as_deref(),
        Some("openai.responses")
    );
    assert_eq!(r.get::<_, Option<String>>(1).as_deref(), Some("gpt-5"));
    assert_eq!(
        r.get::<_, Option<String>>(2).as_deref(),
        Some("gpt-5-2025-08-07")
    );
    assert_eq!(r.get::<_, Option<String>>(3).as_deref(), Some("completed"));
    assert_eq!(r.get::<_, Option<i32>>(4), Some(500));
    assert_eq!(r.get::<_, Option<i32>>(5), Some(400));
    assert_eq!(r.get::<_, Option<i32>>(6), Some(1500));
    assert_eq!(r.get::<_, Option<i32>>(7), Some(256));
    assert_eq!(
        r.get::<_, Option<f64>>(8),
        Some(700.0),
        "the first content delta's frame"
    );
    let cost = r.get::<_, Option<f64>>(9).expect("cost");
    assert!((cost - (500.0 * 1.25 + 1500.0 * 0.125 + 400.0 * 10.0) / 1e6).abs() < 1e-12);

    // An older row (as stored before the columns existed) is filled by backfill.
    client
        .batch_execute(r#"UPDATE "CCProxy_HttpTraces" SET api = NULL, input_tokens = NULL, cost_usd = NULL, llm_version = NULL"#)
        .await
        .expect("age the row");
    let mut client = client;
    let done = store::llm::backfill(&mut client, ccproxy::llm::PriceTable::shared())
        .await
        .expect("backfill");
    assert_eq!((done.rows, done.llm), (1, 1));
    let r = client
        .query_one(
            r#"SELECT api, input_tokens, cost_usd FROM "CCProxy_HttpTraces""#,
            &[],
        )
        .await
        .expect("row");
    assert_eq!(
        r.get::<_, Option<String>>(0).as_deref(),
        Some("openai.responses")
    );
    assert_eq!(r.get::<_, Option<i32>>(1), Some(500));
    assert!(r.get::<_, Option<f64>>(2).is_some());

    let rows = store::llm::stats(&client, None, Some(store::llm::GroupBy::Model), None)
        .await
        .expect("stats");
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].key.as_deref(), Some("gpt-5"));
    assert_eq!(
        (
            rows[0].requests,
            rows[0].input_tokens,
            rows[0].cache_read_tokens
        ),
        (1, 500, 1500)
    );
    let hit = rows[0].cache_hit_rate.expect("rate");
    assert!((hit - 0.75).abs() < 1e-12);
}

/// A fresh batch is copied straight into the table; one that meets a row
/// committed before (here written by another path first) is written again
/// through staging: no error, nothing dropped, no second row.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fresh_batch_meeting_a_committed_row_goes_through_staging() {
    let db = fresh_db().await;
    let home = temp_home();
    let mut c = store::connect(&db.url).await.expect("connect");
    migrate::migrate(&mut c).await.expect("migrate");
    let flows: Vec<Arc<Flow>> = (0..40).map(|i| Arc::new(sample_flow(i))).collect();
    let (c, n) = store::writer::copy_flows(c, &flows[..10])
        .await
        .expect("write");
    assert_eq!(n, 10);
    let store = Store::open(&config(home.path(), Some(&db.url)))
        .await
        .expect("open");
    let sink = store.sink();
    // Rows 5..10 are in the table already.
    for f in &flows[5..] {
        sink.submit(Arc::clone(f));
    }
    let s = settled(&store, 30).await;
    assert_eq!((s.written, s.dropped), (30, 0), "{s:?}");
    assert_eq!(s.last_error, None);
    store.shutdown(Duration::from_secs(30)).await;
    assert_eq!(count(&db.url).await, 40);
    drop(c);
}

/// A table whose column types differ from the writer's (an older or
/// hand-made table) takes every batch through staging, whose INSERT casts:
/// rows land, none is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_table_with_other_column_types_is_written_through_staging() {
    let db = fresh_db().await;
    let home = temp_home();
    let mut c = store::connect(&db.url).await.expect("connect");
    migrate::migrate(&mut c).await.expect("migrate");
    c.batch_execute(
        r#"ALTER TABLE "CCProxy_HttpTraces" ALTER COLUMN duration_ms TYPE REAL,
           ALTER COLUMN request_body_size TYPE BIGINT"#,
    )
    .await
    .expect("alter");
    let store = Store::open(&config(home.path(), Some(&db.url)))
        .await
        .expect("open");
    let sink = store.sink();
    for i in 0..25 {
        sink.submit(Arc::new(sample_flow(i)));
    }
    let s = settled(&store, 25).await;
    assert_eq!((s.written, s.dropped), (25, 0), "{s:?}");
    assert_eq!(s.last_error, None);
    store.shutdown(Duration::from_secs(30)).await;
    assert_eq!(
        count_where(
            &db.url,
            "request_body_size IS NOT NULL AND duration_ms IS NOT NULL"
        )
        .await,
        25
    );
}
