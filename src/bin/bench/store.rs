//! Store benchmark: sustained writer rows/s for realistic rows (about 1 KB of
//! headers and 2–4 KB of bodies), side by side in one run on a managed
//! cluster with `psql \copy` of the very same rows (the server's own ceiling
//! here) and with single-row INSERTs (what the original did). Each method
//! writes into a fresh database with the full schema and its five indexes.

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use bytes::Bytes;
use ccproxy::config::{Config, Overrides};
use ccproxy::flow::{Direction, Flow, TrafficType};
use ccproxy::store::managed::{self, Tuning};
use ccproxy::store::row::{column_list, RowValues, COLUMNS, TABLE};
use ccproxy::store::{self, migrate, Store};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;

/// Rows per method (`CCPROXY_BENCH_ROWS` overrides).
const DEFAULT_ROWS: usize = 20_000;

pub async fn run() -> anyhow::Result<()> {
    let rows: usize = std::env::var("CCPROXY_BENCH_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_ROWS);
    let home = std::env::temp_dir().join(format!("ccproxy-bench-{}", std::process::id()));
    std::fs::create_dir_all(&home).context("bench home")?;
    std::fs::set_permissions(&home, std::fs::Permissions::from_mode(0o755))?;
    let Some(m) = managed::ensure_cluster(&home, Tuning::Durable).await? else {
        anyhow::bail!(
            "no PostgreSQL server binaries: install postgresql to run the store benchmark"
        );
    };
    let mut result = measure(&home, &m.url, rows).await;
    if result.is_ok() {
        result = proxy_storage_on_off(&home, &m.url).await;
    }
    let cluster = m.cluster_dir.clone();
    let stop = tokio::task::spawn_blocking(move || managed::stop_managed(&m)).await;
    if let Ok(Err(e)) = stop {
        eprintln!("ccproxy-bench: {e}");
    }
    let _ = std::fs::remove_dir_all(&cluster);
    let _ = std::fs::remove_dir_all(&home);
    result
}

async fn measure(home: &Path, url: &str, n: usize) -> anyhow::Result<()> {
    let flows: Vec<Arc<Flow>> = (0..n).map(|i| Arc::new(realistic(i))).collect();
    let avg = flows
        .iter()
        .map(|f| {
            let h: usize = f
                .request_headers
                .iter()
                .chain(&f.response_headers)
                .map(|(k, v)| k.len() + v.len() + 4)
                .sum();
            h + f.request_body.len() + f.response_body.len()
        })
        .sum::<usize>()
        / n.max(1);
    println!("store: {n} rows of ~{avg} bytes (headers + bodies), managed cluster, fsync on");

    // 1. The writer, fed through the sink as the hub does (queue large enough
    //    that nothing spills: the sustained COPY path).
    let db = fresh(url, "bench_writer").await?;
    let writer_rps = writer(home, &db, &flows, n).await?;
    // 1b. The same with the default queue (1,000): overflow spools and replays.
    let db2 = fresh(url, "bench_writer_default").await?;
    let spill_rps = writer_default_queue(home, &db2, &flows).await?;

    // 2. psql \copy of the same rows, exported from the writer's table.
    let file = home.join("rows.copy");
    psql(
        &db,
        &format!(
            "\\copy (SELECT {} FROM {TABLE}) TO '{}'",
            column_list(),
            file.display()
        ),
    )?;
    let db3 = fresh(url, "bench_copy").await?;
    let t = Instant::now();
    psql(
        &db3,
        &format!(
            "\\copy {TABLE} ({}) FROM '{}'",
            column_list(),
            file.display()
        ),
    )?;
    let copy_rps = n as f64 / t.elapsed().as_secs_f64();

    // 3. Single-row INSERTs, one autocommit each.
    let db4 = fresh(url, "bench_insert").await?;
    let insert_rps = single_inserts(&db4, &flows).await?;

    println!("  {:<34} {:>10}  {:>8}", "method", "rows/s", "vs \\copy");
    for (name, rps) in [
        ("psql \\copy (ceiling)", copy_rps),
        ("writer (COPY batches)", writer_rps),
        ("writer, default queue (spills)", spill_rps),
        ("single-row INSERTs", insert_rps),
    ] {
        println!("  {name:<34} {rps:>10.0}  {:>7.0}%", 100.0 * rps / copy_rps);
    }
    println!(
        "  writer / single-row INSERTs: {:.1}x (target: writer >= 90% of \\copy)",
        writer_rps / insert_rps
    );
    Ok(())
}

pub async fn fresh(admin_url: &str, name: &str) -> anyhow::Result<String> {
    let admin = admin_url.replacen("/ccproxy?", "/postgres?", 1);
    let c = store::connect(&admin).await?;
    c.batch_execute(&format!("DROP DATABASE IF EXISTS {name}"))
        .await?;
    c.batch_execute(&format!("CREATE DATABASE {name}")).await?;
    let url = admin_url.replacen("/ccproxy?", &format!("/{name}?"), 1);
    let mut c = store::connect(&url).await?;
    migrate::migrate(&mut c).await?;
    Ok(url)
}

fn config(home: &Path, url: &str, buffer: usize) -> anyhow::Result<Config> {
    let mut cfg = Config::load_with(
        &Overrides {
            home: Some(home.to_path_buf()),
            ..Overrides::default()
        },
        &|_| None,
    )?;
    cfg.mitm.database_url = Some(url.to_string());
    cfg.mitm.buffer_size = buffer;
    Ok(cfg)
}

async fn writer(home: &Path, url: &str, flows: &[Arc<Flow>], n: usize) -> anyhow::Result<f64> {
    let st = Store::open(&config(home, url, n)?).await?;
    let sink = st.sink();
    let t = Instant::now();
    for f in flows {
        sink.submit(Arc::clone(f));
    }
    while st.stats().written < flows.len() as u64 {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let rps = flows.len() as f64 / t.elapsed().as_secs_f64();
    st.shutdown(Duration::from_secs(30)).await;
    Ok(rps)
}

async fn writer_default_queue(home: &Path, url: &str, flows: &[Arc<Flow>]) -> anyhow::Result<f64> {
    let st = Store::open(&config(home, url, 1000)?).await?;
    let sink = st.sink();
    let t = Instant::now();
    for f in flows {
        sink.submit(Arc::clone(f));
    }
    while st.stats().written < flows.len() as u64 {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let rps = flows.len() as f64 / t.elapsed().as_secs_f64();
    let s = st.stats();
    println!(
        "  (default queue: {} spooled, {} replayed, {} dropped)",
        s.spooled, s.replayed, s.dropped
    );
    st.shutdown(Duration::from_secs(30)).await;
    Ok(rps)
}

async fn single_inserts(url: &str, flows: &[Arc<Flow>]) -> anyhow::Result<f64> {
    let c = store::connect(url).await?;
    let placeholders = (1..=COLUMNS.len())
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ");
    let stmt = c
        .prepare_typed(
            &format!(
                "INSERT INTO {TABLE} ({}) VALUES ({placeholders})",
                column_list()
            ),
            &COLUMNS.iter().map(|(_, t)| t.clone()).collect::<Vec<_>>(),
        )
        .await?;
    let t = Instant::now();
    for f in flows {
        let v = RowValues::new(f);
        c.execute(&stmt, &v.as_params()).await?;
    }
    Ok(flows.len() as f64 / t.elapsed().as_secs_f64())
}

fn psql(url: &str, cmd: &str) -> anyhow::Result<()> {
    let out = Command::new("psql")
        .args([url, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-c", cmd])
        .output()
        .context("run psql")?;
    anyhow::ensure!(
        out.status.success(),
        "psql failed: {}",
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(())
}

/// A row like Claude Code traffic: ~1 KB of headers, 2–4 KB of bodies.
pub fn realistic(i: usize) -> Flow {
    let mut f = Flow::new(
        Direction::Reverse,
        "POST",
        "https://api.anthropic.com/v1/messages",
        "api.anthropic.com",
        "/v1/messages",
    );
    f.request_headers = vec![
        ("host".into(), "api.anthropic.com".into()),
        ("content-type".into(), "application/json".into()),
        ("x-api-key".into(), "sk-ant-a…9f2c".into()),
        ("anthropic-version".into(), "2023-06-01".into()),
        (
            "anthropic-beta".into(),
            "claude-code-20250219,oauth-2025-04-20,interleaved-thinking-2025-05-14".into(),
        ),
        (
            "x-claude-code-session-id".into(),
            format!("{:08x}-5c1e-4b7e-9d7f-3c2a1b0e{:04x}", i / 50, i % 65_536),
        ),
        (
            "user-agent".into(),
            "claude-cli/1.0.83 (external, cli)".into(),
        ),
        ("x-stainless-lang".into(), "js".into()),
        ("x-stainless-package-version".into(), "0.55.1".into()),
        ("x-stainless-os".into(), "Linux".into()),
        ("x-stainless-runtime".into(), "node".into()),
        ("x-stainless-runtime-version".into(), "v22.14.0".into()),
        ("accept".into(), "application/json".into()),
        ("accept-encoding".into(), "gzip, deflate, br, zstd".into()),
        (
            "traceparent".into(),
            format!("00-{:032x}-{:016x}-01", i * 7919, i * 104_729),
        ),
    ];
    f.response_headers = vec![
        ("content-type".into(), "application/json".into()),
        ("request-id".into(), format!("req_011CQ{i:020}")),
        (
            "anthropic-ratelimit-input-tokens-limit".into(),
            "400000".into(),
        ),
        (
            "anthropic-ratelimit-input-tokens-remaining".into(),
            format!("{}", 400_000 - i % 1000),
        ),
        (
            "anthropic-ratelimit-output-tokens-limit".into(),
            "80000".into(),
        ),
        (
            "anthropic-ratelimit-requests-reset".into(),
            "2026-11-29T21:00:01Z".into(),
        ),
        ("cf-ray".into(), format!("{:016x}-FRA", i * 31)),
        ("set-cookie".into(), "__cf_bm=ab…c3d4".into()),
        ("server".into(), "cloudflare".into()),
        ("via".into(), "1.1 google".into()),
    ];
    let words = [
        "the", "flow", "proxy", "stores", "every", "exchange", "in", "postgres", "quickly",
    ];
    let text = |n: usize, seed: usize| -> String {
        (0..n)
            .map(|k| words[(k * 7 + seed) % words.len()])
            .collect::<Vec<_>>()
            .join(" ")
    };
    f.request_body = bytes::Bytes::from(format!(
        r#"{{"model":"claude-sonnet-4-20250514","max_tokens":8192,"stream":false,"messages":[{{"role":"user","content":"{}"}}]}}"#,
        text(200 + i % 150, i)
    ));
    f.request_body_size = f.request_body.len() as u64;
    f.request_content_type = Some("application/json".into());
    f.response_body = bytes::Bytes::from(format!(
        r#"{{"id":"msg_{i:024}","type":"message","role":"assistant","content":[{{"type":"text","text":"{}"}}],"usage":{{"input_tokens":{},"output_tokens":{}}}}}"#,
        text(150 + i % 200, i + 3),
        1000 + i % 5000,
        100 + i % 900
    ));
    f.response_body_size = f.response_body.len() as u64;
    f.response_content_type = Some("application/json".into());
    f.status_code = Some(200);
    f.end_time = Some(f.start_time + chrono::Duration::milliseconds(800));
    f.duration_ms = Some(800.0);
    f.ttfb_ms = Some(420.0);
    f.client_ip = Some("127.0.0.1".into());
    f.server_ip = Some("160.79.104.10".into());
    f.server_port = Some(443);
    f.is_https = true;
    f.traffic_type = TrafficType::Llm;
    f.session_id = Some(format!("{:08x}", i / 50));
    f
}

// ------------------------------------------------- proxy with storage on/off

/// Seconds per measured window (`CCPROXY_BENCH_SECS`, default 2).
fn window() -> Duration {
    Duration::from_secs_f64(
        std::env::var("CCPROXY_BENCH_SECS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(2.0),
    )
}

/// The same in-process forward proxy with and without the store attached,
/// alternating windows (off, on, off, on) so drift hits both sides alike.
async fn proxy_storage_on_off(home: &Path, admin_url: &str) -> anyhow::Result<()> {
    use tokio_util::sync::CancellationToken;
    let shutdown = CancellationToken::new();
    let upstream = llm_upstream(shutdown.clone()).await?;
    let url = fresh(admin_url, "bench_proxy").await?;

    let mut cfg = config(home, &url, 1000)?;
    cfg.mitm.port = 0;
    let cfg = Arc::new(cfg);
    let hub_off = ccproxy::flow::FlowHub::new(1024);
    let hub_on = ccproxy::flow::FlowHub::new(1024);
    let st = Store::open(&cfg).await?;
    hub_on.set_sink(st.sink());
    let mut proxies = Vec::new();
    for hub in [hub_off, hub_on] {
        let state = ccproxy::proxy::ProxyState::new(Arc::clone(&cfg), hub)?;
        let l = ccproxy::proxy::bind("127.0.0.1", 0).await?;
        proxies.push(l.local_addr()?);
        ccproxy::proxy::serve_forward(l, state, shutdown.clone());
    }
    let body = Bytes::from(realistic(1).request_body.to_vec());
    let win = window();
    let (mut off, mut on) = (0.0, 0.0);
    for round in 0..4 {
        let which = round % 2;
        let rps = load(proxies[which], upstream, &body, 16, win).await?;
        if which == 0 {
            off += rps / 2.0;
        } else {
            on += rps / 2.0;
        }
    }
    wait_written(&st).await;
    let s = st.stats();
    st.shutdown(Duration::from_secs(30)).await;
    shutdown.cancel();
    println!("proxy (forward, plain HTTP, ~2 KB request / ~3 KB response, 16 connections):");
    println!("  storage off {off:>10.0} req/s");
    println!(
        "  storage on  {on:>10.0} req/s  ({:.0}% of off; target >= 90%)",
        100.0 * on / off
    );
    println!(
        "  store during the run: {} written, {} spooled, {} replayed, {} dropped",
        s.written, s.spooled, s.replayed, s.dropped
    );
    Ok(())
}

async fn wait_written(st: &Store) {
    for _ in 0..600 {
        let s = st.stats();
        if s.queued == 0 && s.spool_bytes == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// An upstream answering every POST with a ~3 KB JSON message.
async fn llm_upstream(shutdown: tokio_util::sync::CancellationToken) -> anyhow::Result<SocketAddr> {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = l.local_addr()?;
    let reply = Bytes::from(realistic(2).response_body.to_vec());
    tokio::spawn(async move {
        loop {
            let (tcp, _) = tokio::select! {
                a = l.accept() => match a { Ok(a) => a, Err(_) => continue },
                () = shutdown.cancelled() => return,
            };
            let reply = reply.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(
                    move |req: hyper::Request<hyper::body::Incoming>| {
                        let reply = reply.clone();
                        async move {
                            let _ = req.into_body().collect().await;
                            hyper::Response::builder()
                                .header("content-type", "application/json")
                                .body(Full::new(reply))
                        }
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tcp), svc)
                    .await;
            });
        }
    });
    Ok(addr)
}

/// Requests/s through `proxy` with `conns` keep-alive connections for `win`.
async fn load(
    proxy: SocketAddr,
    upstream: SocketAddr,
    body: &Bytes,
    conns: usize,
    win: Duration,
) -> anyhow::Result<f64> {
    let until = Instant::now() + win;
    let mut tasks = Vec::new();
    for _ in 0..conns {
        let body = body.clone();
        tasks.push(tokio::spawn(async move {
            let tcp = tokio::net::TcpStream::connect(proxy).await?;
            tcp.set_nodelay(true)?;
            let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await?;
            tokio::spawn(conn);
            let mut n = 0u64;
            while Instant::now() < until {
                let req = hyper::Request::post(format!("http://{upstream}/v1/messages"))
                    .header("host", upstream.to_string())
                    .header("content-type", "application/json")
                    .header("x-api-key", "sk-ant-api03-benchmarkkey0000")
                    .header("anthropic-version", "2023-06-01")
                    .header("user-agent", "claude-cli/1.0.83 (external, cli)")
                    .header("x-claude-code-session-id", "bench")
                    .header("x-padding", "p".repeat(700))
                    .body(Full::new(body.clone()))?;
                let resp = send.send_request(req).await?;
                let _ = resp.into_body().collect().await?;
                n += 1;
            }
            anyhow::Ok(n)
        }));
    }
    let mut total = 0;
    for t in tasks {
        total += t.await??;
    }
    Ok(total as f64 / win.as_secs_f64())
}
