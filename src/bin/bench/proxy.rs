//! `ccproxy-bench proxy`: the forward proxy measured side by side with direct
//! access to the same local upstream and with nginx `proxy_pass`, in one run,
//! on this machine.
//!
//! The proxy runs as `mitm start --headless` runs it (flow log subscribed and
//! written, store sink on), as child processes (this binary re-executed with
//! `CCPROXY_BENCH_PROXY_CHILD`), so their RSS and CPU time are their own:
//! one with storage off (the sink discards, as without a database) and one
//! with the managed database (a real `Engine` that starts its own cluster).
//! When `nginx` is on PATH the bench starts it on 127.0.0.1 with a temporary
//! config (`proxy_pass` to the same upstream with upstream keep-alive, no
//! access log) and stops it after.
//!
//! Cases: HTTP keep-alive 1 KiB and 64 KiB at concurrency 1 and 32; HTTPS
//! through CONNECT with keep-alive and with a new client connection per
//! request (against direct TLS to the upstream); SSE first-event delay; the
//! proxy's memory, also with 5,000 idle kept-alive connections open. Each
//! case runs `CCPROXY_BENCH_SECS` seconds (default 2) after a short warm-up,
//! the sides taking turns for `CCPROXY_BENCH_ROUNDS` rounds (default 3); the
//! median round of each side is shown.
//! The client runs in this process and the upstream in a child of its own,
//! in every column, as with a real client and origin.

use std::convert::Infallible;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Frame;
use hyper::client::conn::http1::SendRequest;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::{TlsAcceptor, TlsConnector};
use tokio_util::sync::CancellationToken;

use ccproxy::config::{Config, Overrides};
use ccproxy::flow::{Flow, FlowHub, FlowSink};

/// Warm-up before each measured window.
const WARMUP: Duration = Duration::from_millis(300);
/// Delay between the two SSE events the upstream sends.
const SSE_GAP: Duration = Duration::from_millis(100);
/// SSE samples per side.
const SSE_SAMPLES: usize = 15;
/// Linux reports process CPU time in these ticks per second (USER_HZ).
const TICKS_PER_SEC: f64 = 100.0;
/// Idle kept-alive connections held open for the memory figure.
const IDLE_CONNS: usize = 5000;

type UpBody = BoxBody<Bytes, Infallible>;

/// Set in the environment of the re-executed proxy child: its home directory.
const CHILD_ENV: &str = "CCPROXY_BENCH_PROXY_CHILD";
/// `off` or `managed`: the child's storage.
const CHILD_STORAGE_ENV: &str = "CCPROXY_BENCH_STORAGE";
/// Path of another build's `ccproxy-bench` to measure beside this one.
const BASELINE_ENV: &str = "CCPROXY_BENCH_BASELINE";
/// The upstream CA file the child trusts.
const CHILD_UPSTREAM_CA_ENV: &str = "CCPROXY_BENCH_UPSTREAM_CA";

pub async fn run() -> anyhow::Result<()> {
    if let Some(home) = std::env::var_os(CHILD_ENV) {
        return proxy_child(PathBuf::from(home)).await;
    }
    if let Some(dir) = std::env::var_os(UPSTREAM_CHILD_ENV) {
        return upstream_child(PathBuf::from(dir)).await;
    }
    if let Ok(upstream) = std::env::var(super::floor::FLOOR_ENV) {
        return super::floor::child(upstream.parse()?).await;
    }
    let secs: f64 = std::env::var("CCPROXY_BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2.0);
    let window = Duration::from_secs_f64(secs.max(0.2));
    let dir = std::env::temp_dir().join(format!("ccproxy-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
    let result = bench(&dir, window).await;
    let _ = std::fs::remove_dir_all(&dir);
    result
}

/// The columns of a plain-HTTP row, in print order.
const SIDES: [&str; 4] = ["direct", "nginx", "ccproxy", "ccproxy+db"];

async fn bench(dir: &Path, window: Duration) -> anyhow::Result<()> {
    let fd_limit = ccproxy::proxy::limits::raise_fd_limit();
    let shutdown = CancellationToken::new();
    let mut upstream = Upstream::start(dir, shutdown.clone()).await?;
    let mut proxy = start_proxy(dir, &upstream, Storage::Off).await?;
    let mut with_db = match start_proxy(dir, &upstream, Storage::Managed).await {
        Ok(p) => Some(p),
        Err(e) => {
            println!("ccproxy with the managed database: not measured ({e:#})");
            None
        }
    };
    // Another build of this benchmark (e.g. the commit before), measured in
    // the same run with storage off: its column is `baseline`.
    let mut baseline = match std::env::var_os(BASELINE_ENV) {
        Some(exe) => {
            match start_proxy_exe(dir, &upstream, Storage::Off, "baseline", Path::new(&exe)).await {
                Ok(p) => Some(p),
                Err(e) => {
                    println!("baseline {}: not measured ({e:#})", exe.to_string_lossy());
                    None
                }
            }
        }
        None => None,
    };
    // Where ccproxy's cost goes: the same engine with the upstream in
    // `excluded_hosts` (its own path, nothing captured) and a bare hyper
    // forwarder, beside it in the plain-HTTP rows.
    let mut breakdown = if std::env::var_os(BREAKDOWN_ENV).is_some() {
        match Breakdown::start(dir, &upstream).await {
            Ok(b) => Some(b),
            Err(e) => {
                println!("breakdown columns: not measured ({e:#})");
                None
            }
        }
    } else {
        None
    };
    let nginx = match Nginx::start(dir, upstream.http).await {
        Ok(n) => n,
        Err(e) => {
            println!("nginx proxy_pass: not measured ({e:#})");
            None
        }
    };
    let pid = proxy.pid;
    let rss_idle = rss_kib(pid, "VmRSS");
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let load = load
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ");
    println!(
        "load average before the run: {load} on {} cores (other work on the machine skews every column)",
        std::thread::available_parallelism().map_or(0, std::num::NonZero::get)
    );
    println!(
        "proxy benchmark: upstream http {} https {} ({}); ccproxy {} (pid {pid}, storage off){}{}; {:.1} s per side and round, {} interleaved rounds per case, the median round shown; open-file limit {}",
        upstream.http,
        upstream.https,
        upstream.pid().map_or_else(
            || "in the client's process".to_string(),
            |p| format!("own process, pid {p}")
        ),
        proxy.addr,
        with_db.as_ref().map_or_else(String::new, |p| format!(
            ", ccproxy+db {} (pid {}, managed database)",
            p.addr, p.pid
        )),
        nginx.as_ref().map_or_else(String::new, |n| format!(", nginx {}", n.addr)),
        window.as_secs_f64(),
        rounds(),
        fd_limit.map_or_else(|| "?".into(), |n| n.to_string()),
    );

    let direct_tls = tls_client(std::slice::from_ref(&upstream.ca_der))?;
    let proxy_tls = tls_client(std::slice::from_ref(&proxy.ca_der))?;
    let mut rows = Vec::new();
    let mut rss_peak_c32 = 0;
    for (label, size, conc) in [
        ("http keep-alive 1 KiB  c=1", 1024, 1),
        ("http keep-alive 1 KiB  c=32", 1024, 32),
        ("http keep-alive 64 KiB c=1", 65_536, 1),
        ("http keep-alive 64 KiB c=32", 65_536, 32),
        ("llm sse 16 KiB         c=1", 0, 1),
        ("llm sse 16 KiB         c=32", 0, 32),
    ] {
        let case = Case {
            label,
            size,
            conc,
            keep_alive: true,
        };
        let mut sides: Vec<(&'static str, Target, Option<u32>)> = vec![(
            SIDES[0],
            Target::Plain {
                connect: upstream.http,
                prefix: String::new(),
            },
            upstream.pid(),
        )];
        if let Some(n) = &nginx {
            sides.push((
                SIDES[1],
                Target::Plain {
                    connect: n.addr,
                    prefix: String::new(),
                },
                Some(n.pid),
            ));
        }
        let extra = breakdown.as_ref().map_or_else(Vec::new, Breakdown::sides);
        for (name, addr, pid) in [
            (SIDES[2], Some(&proxy)),
            (SIDES[3], with_db.as_ref()),
            ("baseline", baseline.as_ref()),
        ]
        .into_iter()
        .filter_map(|(name, p)| p.map(|p| (name, p.addr, p.pid)))
        .chain(extra)
        {
            sides.push((
                name,
                Target::Plain {
                    connect: addr,
                    prefix: format!("http://{}", upstream.http),
                },
                Some(pid),
            ));
        }
        let row = compare(&case, &sides, window).await;
        if conc == 32 {
            rss_peak_c32 = rss_peak_c32.max(rss_kib(pid, "VmRSS"));
        }
        rows.push(row);
    }
    for (label, conc, keep_alive) in [
        ("https keep-alive 1 KiB c=1", 1, true),
        ("https keep-alive 1 KiB c=32", 32, true),
        ("https new conn/req 1 KiB c=1", 1, false),
        ("https new conn/req 1 KiB c=32", 32, false),
    ] {
        let sides = vec![
            (
                SIDES[0],
                Target::Tls {
                    via: None,
                    upstream: upstream.https,
                    tls: direct_tls.clone(),
                },
                upstream.pid(),
            ),
            (
                SIDES[2],
                Target::Tls {
                    via: Some(proxy.addr),
                    upstream: upstream.https,
                    tls: proxy_tls.clone(),
                },
                Some(pid),
            ),
        ];
        let case = Case {
            label,
            size: 1024,
            conc,
            keep_alive,
        };
        let row = compare(&case, &sides, window).await;
        if conc == 32 {
            rss_peak_c32 = rss_peak_c32.max(rss_kib(pid, "VmRSS"));
        }
        rows.push(row);
    }
    let sse = sse_compare(&upstream, &proxy).await;
    let rss_after = rss_kib(pid, "VmRSS");
    let hwm = rss_kib(pid, "VmHWM");
    let idle = idle_connections(&proxy, &upstream, IDLE_CONNS).await;
    let _ = proxy.child.kill().await;
    if let Some(b) = baseline.as_mut() {
        let _ = b.child.kill().await;
    }
    if let Some(b) = breakdown.as_mut() {
        b.stop().await;
    }
    if let Some(p) = with_db.as_mut() {
        // The managed cluster stops with it.
        stop_child(&mut p.child, p.stdin.take(), Duration::from_secs(20)).await;
    }
    if let Some(n) = nginx {
        n.stop().await;
    }
    upstream.stop().await;
    shutdown.cancel();

    print_rows(&rows);
    println!();
    match &sse {
        Ok((d, p)) => println!(
            "SSE first event (median of {SSE_SAMPLES}): direct {:.3} ms, proxied {:.3} ms, added {:.3} ms",
            ms(*d),
            ms(*p),
            ms(p.saturating_sub(*d))
        ),
        Err(e) => println!("SSE first event: failed: {e:#}"),
    }
    println!(
        "ccproxy process RSS: idle {:.1} MiB, after the c=32 cases up to {:.1} MiB, after all cases {:.1} MiB, high-water mark {:.1} MiB",
        kib_mib(rss_idle),
        kib_mib(rss_peak_c32),
        kib_mib(rss_after),
        kib_mib(hwm)
    );
    match &idle {
        Ok((n, kib)) => println!(
            "ccproxy process RSS with {n} idle kept-alive connections open: {:.1} MiB",
            kib_mib(*kib)
        ),
        Err(e) => println!("idle connections: failed: {e:#}"),
    }
    println!();
    print_targets(&rows, sse.as_ref().ok(), idle.as_ref().ok());
    print_baseline(&rows);
    print_breakdown(&rows);
    Ok(())
}

/// Open `n` connections through the proxy, one request each, keep them
/// open, and read the proxy's RSS.
async fn idle_connections(
    proxy: &ProxyUnderTest,
    upstream: &Upstream,
    n: usize,
) -> anyhow::Result<(usize, u64)> {
    let target = Target::Plain {
        connect: proxy.addr,
        prefix: format!("http://{}", upstream.http),
    };
    let mut open = Vec::with_capacity(n);
    let mut failed = None;
    for chunk in 0..n.div_ceil(100) {
        let batch = (0..100.min(n - chunk * 100)).map(|_| async {
            let mut s = target.connect().await?;
            let resp = s.send_request(target.request("/bytes/16")?).await?;
            resp.into_body().collect().await?;
            anyhow::Ok(s)
        });
        for r in futures::future::join_all(batch).await {
            match r {
                Ok(s) => open.push(s),
                Err(e) => {
                    failed.get_or_insert(e);
                }
            }
        }
    }
    // Idle connections park (drop hyper's buffers) after PARK_AFTER.
    tokio::time::sleep(ccproxy::proxy::PARK_AFTER + Duration::from_millis(500)).await;
    let rss = rss_kib(proxy.pid, "VmRSS");
    let opened = open.len();
    drop(open);
    if opened == 0 {
        if let Some(e) = failed {
            return Err(e);
        }
    }
    Ok((opened, rss))
}

/// Set to measure the breakdown columns (see [`Breakdown`]).
const BREAKDOWN_ENV: &str = "CCPROXY_BENCH_BREAKDOWN";
/// The breakdown columns: the engine without capture, and bare hyper.
const NO_CAPTURE: &str = "no-capture";
const FLOOR: &str = "hyper";

/// The children of the breakdown columns.
struct Breakdown {
    no_capture: ProxyUnderTest,
    floor: tokio::process::Child,
    floor_addr: SocketAddr,
    floor_pid: u32,
}

impl Breakdown {
    async fn start(dir: &Path, upstream: &Upstream) -> anyhow::Result<Self> {
        let exe = std::env::current_exe().context("find the benchmark binary")?;
        let home = dir.join(format!("home-{NO_CAPTURE}"));
        std::fs::create_dir_all(&home)?;
        std::fs::write(
            home.join("ccproxy.yaml"),
            format!(
                "ccproxy:\n  mitm:\n    excluded_hosts: [\"{}\"]\n",
                upstream.http.ip()
            ),
        )?;
        let no_capture = start_proxy_exe(dir, upstream, Storage::Off, NO_CAPTURE, &exe).await?;
        let log = std::fs::File::create(dir.join("floor.log"))?;
        let mut floor = tokio::process::Command::new(&exe)
            .arg("proxy")
            .env(super::floor::FLOOR_ENV, upstream.http.to_string())
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .context("start the hyper forwarder")?;
        let floor_pid = floor.id().context("hyper forwarder pid")?;
        let floor_addr = announced(
            &mut floor,
            "LISTEN ",
            "hyper forwarder",
            Duration::from_secs(30),
        )
        .await?
        .parse()?;
        Ok(Self {
            no_capture,
            floor,
            floor_addr,
            floor_pid,
        })
    }

    fn sides(&self) -> Vec<(&'static str, SocketAddr, u32)> {
        vec![
            (NO_CAPTURE, self.no_capture.addr, self.no_capture.pid),
            (FLOOR, self.floor_addr, self.floor_pid),
        ]
    }

    async fn stop(&mut self) {
        let _ = self.no_capture.child.kill().await;
        let _ = self.floor.kill().await;
    }
}

/// Where ccproxy's CPU per request goes at 1 KiB c=32, from the breakdown columns.
fn print_breakdown(rows: &[Row]) {
    let Some(row) = rows
        .iter()
        .find(|r| r.label == "http keep-alive 1 KiB  c=32")
    else {
        return;
    };
    let (Some(floor), Some(engine), Some(full)) =
        (row.side(FLOOR), row.side(NO_CAPTURE), row.side(SIDES[2]))
    else {
        return;
    };
    let of_nginx = |f: &Figures| {
        row.side(SIDES[1])
            .map_or_else(|| "-".to_string(), |n| format!("{:.2}", f.rps / n.rps))
    };
    println!(
        "breakdown at 1 KiB c=32 (cpu ms per request; ÷ nginx): hyper alone {:.4} ({}), + the engine's own path {:.4} ({}), + capture {:.4} ({})",
        floor.cpu_per_req_ms,
        of_nginx(floor),
        engine.cpu_per_req_ms - floor.cpu_per_req_ms,
        of_nginx(engine),
        full.cpu_per_req_ms - engine.cpu_per_req_ms,
        of_nginx(full),
    );
}

/// nginx as a reverse proxy with upstream keep-alive, the usual yardstick.
struct Nginx {
    addr: SocketAddr,
    pid: u32,
    child: tokio::process::Child,
}

impl Nginx {
    /// Start nginx when it is installed; `Ok(None)` when it is not.
    async fn start(dir: &Path, upstream: SocketAddr) -> anyhow::Result<Option<Self>> {
        let Some(bin) = ["/usr/sbin/nginx", "/usr/local/sbin/nginx", "/usr/bin/nginx"]
            .into_iter()
            .map(PathBuf::from)
            .find(|p| p.exists())
        else {
            return Ok(None);
        };
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let root = dir.join("nginx");
        std::fs::create_dir_all(&root)?;
        let conf = root.join("nginx.conf");
        let r = root.display();
        std::fs::write(
            &conf,
            format!(
                "daemon off;
master_process on;
worker_processes auto;
user root;
pid {r}/nginx.pid;
error_log {r}/error.log warn;
events {{ worker_connections 16384; }}
http {{
  access_log off;
  keepalive_requests 1000000;
  client_body_temp_path {r}/body;
  proxy_temp_path {r}/proxy;
  fastcgi_temp_path {r}/fcgi;
  uwsgi_temp_path {r}/uwsgi;
  scgi_temp_path {r}/scgi;
  upstream up {{ server {upstream}; keepalive 64; keepalive_requests 1000000; }}
  server {{
    listen 127.0.0.1:{port};
    location / {{
      proxy_pass http://up;
      proxy_http_version 1.1;
      proxy_set_header Connection \"\";
      proxy_buffering on;
    }}
  }}
}}
"
            ),
        )?;
        let mut child = tokio::process::Command::new(bin)
            .arg("-c")
            .arg(&conf)
            .arg("-p")
            .arg(&root)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .context("start nginx")?;
        let pid = child.id().context("nginx pid")?;
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        for _ in 0..100 {
            if TcpStream::connect(addr).await.is_ok() {
                return Ok(Some(Self { addr, pid, child }));
            }
            if let Ok(Some(status)) = child.try_wait() {
                let log = std::fs::read_to_string(root.join("error.log")).unwrap_or_default();
                bail!("nginx exited ({status}): {}", log.trim());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        bail!("nginx did not listen on {addr}")
    }

    /// SIGQUIT (graceful), then kill what is left.
    async fn stop(mut self) {
        if let Ok(pid) = i32::try_from(self.pid) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGQUIT,
            );
        }
        if tokio::time::timeout(Duration::from_secs(5), self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.kill().await;
        }
    }
}

// ---------------------------------------------------------------- upstream

/// The local upstream: plain HTTP and HTTPS (h1 and h2), `/bytes/N` and `/sse`.
///
/// It runs in a process of its own (this binary re-executed with
/// [`UPSTREAM_CHILD_ENV`]), as a real origin does: a client, a proxy and an
/// origin are separate processes. Sharing the client's runtime would let a
/// direct request be answered without the process ever going to sleep, while
/// a proxied one costs it two wake-ups, which the "added latency" column
/// would then charge to the proxy. `CCPROXY_BENCH_UPSTREAM=inprocess` keeps
/// it in the client's process, to compare with figures taken that way.
struct Upstream {
    http: SocketAddr,
    https: SocketAddr,
    ca_der: CertificateDer<'static>,
    ca_file: PathBuf,
    /// The upstream's own process (`None` when it runs in this one).
    child: Option<tokio::process::Child>,
}

impl Upstream {
    async fn start(dir: &Path, shutdown: CancellationToken) -> anyhow::Result<Self> {
        if std::env::var("CCPROXY_BENCH_UPSTREAM").as_deref() == Ok("inprocess") {
            let (http, https, ca_der) = serve_upstream(dir, shutdown).await?;
            return Ok(Self {
                http,
                https,
                ca_der,
                ca_file: dir.join(UPSTREAM_CA_FILE),
                child: None,
            });
        }
        let exe = std::env::current_exe().context("find the benchmark binary")?;
        let mut child = tokio::process::Command::new(exe)
            .arg("proxy")
            .env(UPSTREAM_CHILD_ENV, dir)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .context("start the upstream child")?;
        let line = announced(
            &mut child,
            "UPSTREAM ",
            "upstream child",
            Duration::from_secs(30),
        )
        .await?;
        let mut addrs = line.split(' ').map(str::parse::<SocketAddr>);
        let (Some(Ok(http)), Some(Ok(https))) = (addrs.next(), addrs.next()) else {
            bail!("unexpected upstream child output: {line}");
        };
        let ca_der = std::fs::read(dir.join(UPSTREAM_CA_DER_FILE)).context("read upstream CA")?;
        Ok(Self {
            http,
            https,
            ca_der: CertificateDer::from(ca_der),
            ca_file: dir.join(UPSTREAM_CA_FILE),
            child: Some(child),
        })
    }

    /// The upstream's process, whose CPU time the direct column shows
    /// (`None` in process: then it is this process's, client and upstream).
    fn pid(&self) -> Option<u32> {
        self.child.as_ref().and_then(tokio::process::Child::id)
    }

    /// End the upstream's process (closing its stdin asks it to stop).
    async fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let stdin = child.stdin.take();
            stop_child(&mut child, stdin, Duration::from_secs(5)).await;
        }
    }
}

/// Set in the environment of the re-executed upstream child: the directory
/// it writes its CA into.
const UPSTREAM_CHILD_ENV: &str = "CCPROXY_BENCH_UPSTREAM_CHILD";
/// The upstream CA (PEM) the proxy children trust.
const UPSTREAM_CA_FILE: &str = "upstream-ca.pem";
/// The same CA (DER) the direct client trusts.
const UPSTREAM_CA_DER_FILE: &str = "upstream-ca.der";

/// Bind and serve the upstream in this process; its CA goes into `dir`.
async fn serve_upstream(
    dir: &Path,
    shutdown: CancellationToken,
) -> anyhow::Result<(SocketAddr, SocketAddr, CertificateDer<'static>)> {
    let (ca_der, ca_pem, server_tls) = upstream_tls()?;
    std::fs::write(dir.join(UPSTREAM_CA_FILE), ca_pem).context("write upstream CA")?;
    std::fs::write(dir.join(UPSTREAM_CA_DER_FILE), &ca_der).context("write upstream CA")?;
    let payload = Bytes::from(
        (0..65_536u32)
            .map(|i| b'a' + (i % 26) as u8)
            .collect::<Vec<u8>>(),
    );
    let http = TcpListener::bind("127.0.0.1:0").await?;
    let https = TcpListener::bind("127.0.0.1:0").await?;
    let (http_addr, https_addr) = (http.local_addr()?, https.local_addr()?);
    spawn_accept(http, None, payload.clone(), shutdown.clone());
    spawn_accept(
        https,
        Some(TlsAcceptor::from(server_tls)),
        payload,
        shutdown,
    );
    Ok((http_addr, https_addr, ca_der))
}

/// The upstream child: serve until stdin closes.
async fn upstream_child(dir: PathBuf) -> anyhow::Result<()> {
    let shutdown = CancellationToken::new();
    let (http, https, _) = serve_upstream(&dir, shutdown.clone()).await?;
    println!("UPSTREAM {http} {https}");
    stdin_closed().await;
    shutdown.cancel();
    Ok(())
}

/// A child's run ends when its parent closes (or loses) its stdin.
pub(crate) async fn stdin_closed() {
    let mut stdin = tokio::io::stdin();
    let mut sink = [0u8; 64];
    while stdin.read(&mut sink).await.unwrap_or(0) > 0 {}
}

/// The first line a child prints on stdout, after `prefix`: what it
/// listens on.
async fn announced(
    child: &mut tokio::process::Child,
    prefix: &str,
    what: &str,
    limit: Duration,
) -> anyhow::Result<String> {
    let stdout = child
        .stdout
        .take()
        .with_context(|| format!("{what} stdout"))?;
    let mut lines = tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(stdout));
    let line = tokio::time::timeout(limit, lines.next_line())
        .await
        .with_context(|| format!("the {what} did not start within {limit:?}"))??
        .with_context(|| format!("the {what} exited before listening (see its log)"))?;
    line.strip_prefix(prefix)
        .map(str::to_string)
        .with_context(|| format!("unexpected {what} output: {line}"))
}

/// Close a child's stdin (which asks it to stop), wait up to `limit`, then kill it.
async fn stop_child(
    child: &mut tokio::process::Child,
    stdin: Option<tokio::process::ChildStdin>,
    limit: Duration,
) {
    drop(stdin);
    if tokio::time::timeout(limit, child.wait()).await.is_err() {
        let _ = child.kill().await;
    }
}

fn upstream_tls() -> anyhow::Result<(CertificateDer<'static>, String, Arc<rustls::ServerConfig>)> {
    let ca_key = rcgen::KeyPair::generate()?;
    let mut ca_params = rcgen::CertificateParams::default();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "ccproxy-bench upstream CA");
    let ca = ca_params.self_signed(&ca_key)?;
    let leaf_key = rcgen::KeyPair::generate()?;
    let leaf = rcgen::CertificateParams::new(vec!["127.0.0.1".into(), "localhost".into()])?
        .signed_by(&leaf_key, &ca, &ca_key)?;
    let mut cfg = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_no_client_auth()
    .with_single_cert(
        vec![leaf.der().clone()],
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der())),
    )?;
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok((ca.der().clone(), ca.pem(), Arc::new(cfg)))
}

fn spawn_accept(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    payload: Bytes,
    shutdown: CancellationToken,
) {
    tokio::spawn(async move {
        loop {
            let (tcp, _) = tokio::select! {
                () = shutdown.cancelled() => return,
                r = listener.accept() => match r { Ok(x) => x, Err(_) => continue },
            };
            let _ = tcp.set_nodelay(true);
            let payload = payload.clone();
            let tls = tls.clone();
            tokio::spawn(async move {
                let service =
                    hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                        let payload = payload.clone();
                        async move { Ok::<_, Infallible>(respond(req.uri().path(), &payload)) }
                    });
                let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                let _ = match tls {
                    Some(acceptor) => match acceptor.accept(tcp).await {
                        Ok(s) => builder.serve_connection(TokioIo::new(s), service).await,
                        Err(_) => return,
                    },
                    None => builder.serve_connection(TokioIo::new(tcp), service).await,
                };
            });
        }
    });
}

/// The path of the LLM-shaped case: `POST` an Anthropic request, get a
/// streamed Anthropic answer of [`llm_sse`]'s size.
const LLM_PATH: &str = "/v1/messages";
const LLM_REQUEST: &str = r#"{"model":"claude-sonnet-4-5","max_tokens":4096,"stream":true,"system":"You are Claude Code.","messages":[{"role":"user","content":"Write a poem."}]}"#;

/// A 16 KiB Anthropic SSE answer with usage, text deltas and a stop reason.
fn llm_sse() -> &'static Bytes {
    static BODY: std::sync::OnceLock<Bytes> = std::sync::OnceLock::new();
    BODY.get_or_init(|| Bytes::from(super::llm::anthropic_sse(16 * 1024)))
}

fn respond(path: &str, payload: &Bytes) -> Response<UpBody> {
    if path == LLM_PATH {
        return Response::builder()
            .header("content-type", "text/event-stream")
            .header("anthropic-ratelimit-requests-remaining", "49")
            .body(Full::new(llm_sse().clone()).boxed())
            .unwrap_or_default();
    }
    if path == "/sse" {
        let events = futures::stream::unfold(0u8, |n| async move {
            match n {
                0 => Some((Ok(Frame::data(Bytes::from_static(b"data: first\n\n"))), 1)),
                1 => {
                    tokio::time::sleep(SSE_GAP).await;
                    Some((Ok(Frame::data(Bytes::from_static(b"data: second\n\n"))), 2))
                }
                _ => None,
            }
        });
        return Response::builder()
            .header("content-type", "text/event-stream")
            .header("cache-control", "no-cache")
            .body(StreamBody::new(events).boxed())
            .unwrap_or_default();
    }
    let n = path
        .strip_prefix("/bytes/")
        .and_then(|n| n.parse::<usize>().ok())
        .unwrap_or(0)
        .min(payload.len());
    Response::builder()
        .header("content-type", "application/octet-stream")
        .body(Full::new(payload.slice(..n)).boxed())
        .unwrap_or_default()
}

// ------------------------------------------------------------------- proxy

/// What the proxy child stores.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Storage {
    /// The sink discards (no database), as `mitm start` without one.
    Off,
    /// The managed database in the child's home, as `mitm start` by default.
    Managed,
}

impl Storage {
    fn as_str(self) -> &'static str {
        match self {
            Self::Off => "off",
            Self::Managed => "managed",
        }
    }
}

struct ProxyUnderTest {
    addr: SocketAddr,
    ca_der: CertificateDer<'static>,
    pid: u32,
    child: tokio::process::Child,
    stdin: Option<tokio::process::ChildStdin>,
}

/// Start the proxy as a child process and wait for its address.
async fn start_proxy(
    dir: &Path,
    upstream: &Upstream,
    storage: Storage,
) -> anyhow::Result<ProxyUnderTest> {
    let exe = std::env::current_exe().context("find the benchmark binary")?;
    start_proxy_exe(dir, upstream, storage, storage.as_str(), &exe).await
}

/// [`start_proxy`] from the benchmark binary `exe` (this one, or another
/// build's, for the side-by-side comparison with an earlier commit).
async fn start_proxy_exe(
    dir: &Path,
    upstream: &Upstream,
    storage: Storage,
    name: &str,
    exe: &Path,
) -> anyhow::Result<ProxyUnderTest> {
    let home = dir.join(format!("home-{name}"));
    std::fs::create_dir_all(&home)?;
    let log = std::fs::File::create(dir.join(format!("ccproxy-{name}.log")))?;
    let mut child = tokio::process::Command::new(exe)
        .arg("proxy")
        .env(CHILD_ENV, &home)
        .env(CHILD_STORAGE_ENV, storage.as_str())
        .env(CHILD_UPSTREAM_CA_ENV, &upstream.ca_file)
        .env_remove("DATABASE_URL")
        .env_remove("CCPROXY_DATABASE_URL")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .context("start the proxy child")?;
    let pid = child.id().context("proxy child pid")?;
    let stdin = child.stdin.take();
    let addr: SocketAddr = announced(
        &mut child,
        "LISTEN ",
        "proxy child",
        Duration::from_secs(180),
    )
    .await?
    .parse()?;
    let cfg = child_config(&home)?;
    let ca = ccproxy::proxy::ca::CertAuthority::load_or_create(&cfg)?;
    Ok(ProxyUnderTest {
        addr,
        ca_der: ca.cert_der(),
        pid,
        child,
        stdin,
    })
}

fn child_config(home: &Path) -> anyhow::Result<Config> {
    let mut cfg = Config::load_with(
        &Overrides {
            home: Some(home.to_path_buf()),
            ..Overrides::default()
        },
        &|_| None,
    )?;
    cfg.mitm.upstream_ca = std::env::var_os(CHILD_UPSTREAM_CA_ENV).map(PathBuf::from);
    cfg.mitm.port = 0;
    Ok(cfg)
}

/// A store sink that keeps nothing (what the engine uses without a database).
struct Discard;

impl FlowSink for Discard {
    fn submit(&self, _flow: Arc<Flow>) {}
}

/// The child side: serve as `mitm start --headless` does until stdin closes.
async fn proxy_child(home: PathBuf) -> anyhow::Result<()> {
    let cfg = Arc::new(child_config(&home)?);
    let storage = std::env::var(CHILD_STORAGE_ENV).unwrap_or_default();
    if storage == Storage::Managed.as_str() {
        let engine =
            ccproxy::engine::Engine::start(Arc::clone(&cfg), ccproxy::engine::Mode::Forward)
                .await?;
        let addr = engine
            .status()
            .and_then(|s| s.forward)
            .context("the engine reports no forward listener")?;
        let log = ccproxy::cmd::flowlog::spawn(&engine.hub, engine.shutdown_token());
        println!("LISTEN {addr}");
        stdin_closed().await;
        engine.shutdown().await;
        log.abort();
        return Ok(());
    }
    let hub = FlowHub::new(8192);
    // As the engine does: every completed flow goes through the LLM analysis
    // (CCPROXY_BENCH_NO_ANALYSIS=1 leaves it out, to see what it costs).
    if std::env::var_os("CCPROXY_BENCH_NO_ANALYSIS").is_none() {
        hub.set_analyzer(ccproxy::llm::analyzer());
    }
    hub.set_sink(Arc::new(Discard));
    let state = ccproxy::proxy::ProxyState::new(cfg, hub.clone()).context("start the proxy")?;
    let listener = ccproxy::proxy::bind("127.0.0.1", 0).await?;
    let addr = listener.local_addr()?;
    let shutdown = CancellationToken::new();
    let log = ccproxy::cmd::flowlog::spawn(&hub, shutdown.clone());
    let task = ccproxy::proxy::serve_forward(listener, state, shutdown.clone());
    println!("LISTEN {addr}");
    stdin_closed().await;
    shutdown.cancel();
    let _ = task.await;
    let _ = log.await;
    Ok(())
}

// ------------------------------------------------------------------ client

/// Where a benchmark client sends its requests.
enum Target {
    /// Plain HTTP to `connect`; `prefix` is `http://upstream` for the proxy
    /// (absolute-form), empty for the upstream itself (origin-form).
    Plain { connect: SocketAddr, prefix: String },
    /// HTTPS to `upstream`, directly or through a CONNECT tunnel on `via`.
    Tls {
        via: Option<SocketAddr>,
        upstream: SocketAddr,
        tls: TlsConnector,
    },
}

impl Target {
    async fn connect(&self) -> anyhow::Result<SendRequest<Full<Bytes>>> {
        match self {
            Self::Plain { connect, .. } => {
                let tcp = TcpStream::connect(connect).await?;
                tcp.set_nodelay(true)?;
                handshake(tcp).await
            }
            Self::Tls { via, upstream, tls } => {
                let tcp = match via {
                    None => {
                        let tcp = TcpStream::connect(upstream).await?;
                        tcp.set_nodelay(true)?;
                        tcp
                    }
                    Some(proxy) => connect_tunnel(*proxy, *upstream).await?,
                };
                let name = ServerName::IpAddress(rustls::pki_types::IpAddr::from(upstream.ip()));
                let stream = tls.connect(name, tcp).await?;
                handshake(stream).await
            }
        }
    }

    fn request(&self, path: &str) -> anyhow::Result<Request<Full<Bytes>>> {
        let (uri, host) = match self {
            Self::Plain { connect, prefix } => (format!("{prefix}{path}"), connect.to_string()),
            Self::Tls { upstream, .. } => (path.to_string(), upstream.to_string()),
        };
        if path == LLM_PATH {
            // An Anthropic Messages call, so the analysis stage has work to do.
            return Ok(Request::post(uri)
                .header("host", host)
                .header("content-type", "application/json")
                .header("user-agent", "claude-cli/1.0.83 (external, cli)")
                .body(Full::new(Bytes::from_static(LLM_REQUEST.as_bytes())))?);
        }
        Ok(Request::get(uri)
            .header("host", host)
            .body(Full::default())?)
    }
}

async fn handshake<S>(io: S) -> anyhow::Result<SendRequest<Full<Bytes>>>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io)).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}

async fn connect_tunnel(proxy: SocketAddr, upstream: SocketAddr) -> anyhow::Result<TcpStream> {
    let mut tcp = TcpStream::connect(proxy).await?;
    tcp.set_nodelay(true)?;
    tcp.write_all(format!("CONNECT {upstream} HTTP/1.1\r\nHost: {upstream}\r\n\r\n").as_bytes())
        .await?;
    let mut head = Vec::with_capacity(128);
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if tcp.read(&mut byte).await? == 0 {
            bail!("proxy closed the CONNECT");
        }
        head.push(byte[0]);
        if head.len() > 8192 {
            bail!("CONNECT response head too large");
        }
    }
    if !(head.starts_with(b"HTTP/1.1 200") || head.starts_with(b"HTTP/1.0 200")) {
        bail!("CONNECT refused: {}", String::from_utf8_lossy(&head).trim());
    }
    Ok(tcp)
}

fn tls_client(roots: &[CertificateDer<'static>]) -> anyhow::Result<TlsConnector> {
    let mut store = rustls::RootCertStore::empty();
    for r in roots {
        store.add(r.clone())?;
    }
    let mut cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(store)
    .with_no_client_auth();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsConnector::from(Arc::new(cfg)))
}

/// Figures for one side of one case.
#[derive(Debug, Clone, Default)]
struct Figures {
    rps: f64,
    p50: Duration,
    p99: Duration,
    /// CPU time of the serving process per request: the upstream's for
    /// direct (client and upstream together when it runs in process), nginx's
    /// or the proxy child's.
    cpu_per_req_ms: f64,
    errors: u64,
    first_error: Option<String>,
}

struct Row {
    label: &'static str,
    /// Each column: its name and its figures (direct first).
    sides: Vec<(&'static str, anyhow::Result<Figures>)>,
}

impl Row {
    fn side(&self, name: &str) -> Option<&Figures> {
        self.sides
            .iter()
            .find(|(n, _)| *n == name)
            .and_then(|(_, r)| r.as_ref().ok())
    }
}

/// One line of the table.
struct Case {
    label: &'static str,
    size: usize,
    conc: usize,
    keep_alive: bool,
}

async fn compare(
    case: &Case,
    sides: &[(&'static str, Target, Option<u32>)],
    window: Duration,
) -> Row {
    let Case {
        label,
        size,
        conc,
        keep_alive,
    } = *case;
    // Sides take turns, round after round, so a burst of other work on the
    // machine lands on every side instead of on one.
    let mut runs: Vec<Vec<anyhow::Result<Figures>>> = sides.iter().map(|_| Vec::new()).collect();
    for _ in 0..rounds() {
        for ((_, target, pid), results) in sides.iter().zip(runs.iter_mut()) {
            results.push(load(target, size, conc, keep_alive, window, *pid).await);
        }
    }
    let out = sides
        .iter()
        .zip(runs)
        .map(|((name, _, _), results)| (*name, median_round(results)))
        .collect();
    Row { label, sides: out }
}

/// Rounds per case (`CCPROXY_BENCH_ROUNDS`, default 3).
fn rounds() -> usize {
    std::env::var("CCPROXY_BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|n| *n > 0)
        .unwrap_or(3)
}

/// The round with the median req/s (its latency and CPU figures with it);
/// the first error when no round succeeded.
fn median_round(results: Vec<anyhow::Result<Figures>>) -> anyhow::Result<Figures> {
    let mut ok = Vec::new();
    let mut first_err = None;
    for r in results {
        match r {
            Ok(f) => ok.push(f),
            Err(e) => {
                first_err.get_or_insert(e);
            }
        }
    }
    if ok.is_empty() {
        return Err(first_err.unwrap_or_else(|| anyhow::anyhow!("no round ran")));
    }
    ok.sort_by(|a, b| a.rps.total_cmp(&b.rps));
    let mid = ok.len() / 2;
    Ok(ok.swap_remove(mid))
}

/// `conc` clients hammer `target` for the warm-up plus `window`; CPU time
/// is taken from `cpu_pid` (this process when `None`).
async fn load(
    target: &Target,
    size: usize,
    conc: usize,
    keep_alive: bool,
    window: Duration,
    cpu_pid: Option<u32>,
) -> anyhow::Result<Figures> {
    // One request first, so a broken setup fails loudly instead of timing errors.
    let mut probe = target.connect().await.context("connect")?;
    let path = case_path(size);
    let size = case_size(size);
    let resp = probe.send_request(target.request(&path)?).await?;
    let status = resp.status();
    let got = resp.into_body().collect().await?.to_bytes().len();
    if !status.is_success() || got != size {
        bail!("probe: status {status}, {got} of {size} bytes");
    }
    drop(probe);

    let start = Instant::now();
    let measure_from = start + WARMUP;
    let until = measure_from + window;
    let cpu_start = Arc::new(std::sync::Mutex::new(None::<f64>));
    let tasks: Vec<_> = (0..conc)
        .map(|_| {
            let path = path.clone();
            async move { worker(target, &path, size, keep_alive, measure_from, until).await }
        })
        .collect();
    let cpu_probe = {
        let cpu_start = Arc::clone(&cpu_start);
        async move {
            tokio::time::sleep_until(measure_from.into()).await;
            if let Ok(mut c) = cpu_start.lock() {
                *c = Some(cpu_seconds(cpu_pid));
            }
            tokio::time::sleep_until(until.into()).await;
            cpu_seconds(cpu_pid)
        }
    };
    let (outcomes, cpu_end) = tokio::join!(futures::future::join_all(tasks), cpu_probe);
    let cpu_used = cpu_start
        .lock()
        .ok()
        .and_then(|c| *c)
        .map_or(0.0, |s| cpu_end - s);
    let mut lat = Vec::new();
    let mut errors = 0;
    let mut first_error = None;
    for (l, e, first) in outcomes {
        lat.extend(l);
        errors += e;
        first_error = first_error.or(first);
    }
    if lat.is_empty() {
        bail!("no request completed ({errors} errors)");
    }
    lat.sort_unstable();
    let n = lat.len();
    Ok(Figures {
        rps: n as f64 / window.as_secs_f64(),
        p50: lat[n / 2],
        p99: lat[(n * 99 / 100).min(n - 1)],
        cpu_per_req_ms: cpu_used * 1000.0 / n as f64,
        errors,
        first_error,
    })
}

/// Size 0 stands for the LLM case (its path and the SSE answer's size).
fn case_path(size: usize) -> String {
    if size == 0 {
        LLM_PATH.to_string()
    } else {
        format!("/bytes/{size}")
    }
}

fn case_size(size: usize) -> usize {
    if size == 0 {
        llm_sse().len()
    } else {
        size
    }
}

/// One client: requests until `until`, latencies recorded from `measure_from`.
async fn worker(
    target: &Target,
    path: &str,
    size: usize,
    keep_alive: bool,
    measure_from: Instant,
    until: Instant,
) -> (Vec<Duration>, u64, Option<String>) {
    let mut lat = Vec::with_capacity(4096);
    let mut errors = 0u64;
    let mut first_error = None;
    let mut conn: Option<SendRequest<Full<Bytes>>> = None;
    while Instant::now() < until {
        let t0 = Instant::now();
        let ok = async {
            let mut sender = match conn.take() {
                Some(s) if keep_alive && !s.is_closed() => s,
                _ => target.connect().await?,
            };
            sender.ready().await?;
            let resp = sender.send_request(target.request(path)?).await?;
            let got = resp.into_body().collect().await?.to_bytes().len();
            if got != size {
                bail!("short body: {got} of {size}");
            }
            if keep_alive {
                conn = Some(sender);
            }
            anyhow::Ok(())
        }
        .await;
        match ok {
            Ok(()) if t0 >= measure_from && Instant::now() <= until => lat.push(t0.elapsed()),
            Ok(()) => {}
            Err(e) => {
                errors += 1;
                first_error.get_or_insert_with(|| format!("{e:#}"));
                conn = None;
            }
        }
    }
    (lat, errors, first_error)
}

/// Median time from sending `GET /sse` to holding the first event, direct
/// and through the proxy (absolute-form, keep-alive).
async fn sse_compare(
    upstream: &Upstream,
    proxy: &ProxyUnderTest,
) -> anyhow::Result<(Duration, Duration)> {
    let direct = Target::Plain {
        connect: upstream.http,
        prefix: String::new(),
    };
    let proxied = Target::Plain {
        connect: proxy.addr,
        prefix: format!("http://{}", upstream.http),
    };
    let d = sse_first_event(&direct).await.context("direct")?;
    let p = sse_first_event(&proxied)
        .await
        .context("through the proxy")?;
    Ok((d, p))
}

async fn sse_first_event(target: &Target) -> anyhow::Result<Duration> {
    let mut sender = target.connect().await?;
    let mut samples = Vec::with_capacity(SSE_SAMPLES);
    for _ in 0..SSE_SAMPLES {
        let t0 = Instant::now();
        let resp = sender.send_request(target.request("/sse")?).await?;
        let mut body = resp.into_body();
        let mut first = None;
        let mut seen = Vec::new();
        while let Some(frame) = body.frame().await {
            if let Ok(data) = frame?.into_data() {
                seen.extend_from_slice(&data);
                if first.is_none() && seen.windows(7).any(|w| w == b"first\n\n") {
                    first = Some(t0.elapsed());
                }
            }
        }
        let Some(first) = first else {
            bail!("no first event in {:?}", String::from_utf8_lossy(&seen));
        };
        if first >= SSE_GAP {
            bail!("the first event arrived only with the second: the stream was held back");
        }
        samples.push(first);
        sender.ready().await?;
    }
    samples.sort_unstable();
    Ok(samples[samples.len() / 2])
}

// ---------------------------------------------------------------- reports

fn print_rows(rows: &[Row]) {
    println!();
    println!(
        "{:<31} {:<11} | {:>9} {:>8} {:>8} {:>8} | {:>8} {:>8} {:>8}",
        "case", "side", "req/s", "p50 ms", "p99 ms", "cpu ms", "÷direct", "÷nginx", "+p50 ms"
    );
    println!("{}", "-".repeat(118));
    for row in rows {
        let direct = row.side("direct");
        let nginx = row.side("nginx");
        for (name, r) in &row.sides {
            let mut line = format!("{:<31} {name:<11} |", row.label);
            match r {
                Ok(f) => {
                    let _ = write!(
                        line,
                        " {:>9.0} {:>8.3} {:>8.3} {:>8.3} |",
                        f.rps,
                        ms(f.p50),
                        ms(f.p99),
                        f.cpu_per_req_ms
                    );
                    let ratio = |base: Option<&Figures>| {
                        base.filter(|_| *name != "direct")
                            .map_or_else(|| "-".to_string(), |b| format!("{:.2}", f.rps / b.rps))
                    };
                    let nginx_ratio = if *name != "direct" && *name != "nginx" {
                        ratio(nginx)
                    } else {
                        "-".into()
                    };
                    let added = direct.filter(|_| *name != "direct").map_or_else(
                        || "-".to_string(),
                        |d| format!("{:.3}", ms(f.p50) - ms(d.p50)),
                    );
                    let _ = write!(
                        line,
                        " {:>8} {:>8} {:>8}",
                        ratio(direct),
                        nginx_ratio,
                        added
                    );
                    if f.errors > 0 {
                        let _ = write!(line, "  ({} errors)", f.errors);
                    }
                }
                Err(e) => {
                    let _ = write!(
                        line,
                        " failed: {}",
                        format!("{e:#}").chars().take(70).collect::<String>()
                    );
                }
            }
            println!("{line}");
        }
    }
    for row in rows {
        for (side, r) in &row.sides {
            match r {
                Err(e) => println!("  {} {side}: {e:#}", row.label),
                Ok(Figures {
                    errors,
                    first_error: Some(first),
                    ..
                }) => println!("  {} {side}: {errors} errors, first: {first}", row.label),
                Ok(_) => {}
            }
        }
    }
}

/// `ccproxy ÷ baseline` for every row that measured both (the issue-9
/// target: the analysis on costs no more than 5% of throughput).
fn print_baseline(rows: &[Row]) {
    let pairs: Vec<(&str, f64)> = rows
        .iter()
        .filter_map(|r| Some((r.label, r.side("ccproxy")?.rps / r.side("baseline")?.rps)))
        .collect();
    if pairs.is_empty() {
        return;
    }
    println!("ccproxy ÷ baseline (the build in {BASELINE_ENV}, storage off, same run):");
    for (label, r) in pairs {
        let verdict = if r >= 0.95 { "ok" } else { "MISSED" };
        println!("  {label:<31} {r:>5.2}  target ≥ 0.95  {verdict}");
    }
}

fn print_targets(rows: &[Row], sse: Option<&(Duration, Duration)>, idle: Option<&(usize, u64)>) {
    let find = |label: &str| rows.iter().find(|r| r.label == label);
    let ratio = |label: &str, side: &str, base: &str| {
        let r = find(label)?;
        Some(r.side(side)?.rps / r.side(base)?.rps)
    };
    let verdict = |ok: bool| if ok { "ok" } else { "MISSED" };
    println!("targets (issue 11):");
    let c32 = "http keep-alive 1 KiB  c=32";
    for (side, base, want) in [
        ("ccproxy", "nginx", 0.75),
        ("ccproxy+db", "nginx", 0.60),
        ("ccproxy", "direct", 0.0),
        ("ccproxy+db", "direct", 0.0),
    ] {
        match ratio(c32, side, base) {
            Some(r) if want > 0.0 => println!(
                "  {c32} {side:<10} ÷ {base:<6} {r:>5.2}  target ≥ {want:.2}  {}",
                verdict(r >= want)
            ),
            Some(r) => println!("  {c32} {side:<10} ÷ {base:<6} {r:>5.2}"),
            None => println!("  {c32} {side:<10} ÷ {base:<6} not measured"),
        }
    }
    let https = "https keep-alive 1 KiB c=32";
    match ratio(https, "ccproxy", "direct") {
        Some(r) => println!(
            "  {https:<31} ccproxy ÷ direct {r:>5.2}  target ≥ 0.50  {}",
            verdict(r >= 0.5)
        ),
        None => println!("  {https:<31} not measured"),
    }
    if let Some(r) = find("http keep-alive 1 KiB  c=1") {
        for side in ["ccproxy", "ccproxy+db"] {
            if let (Some(d), Some(p)) = (r.side("direct"), r.side(side)) {
                let added = ms(p.p50) - ms(d.p50);
                println!(
                    "  added p50 latency at c=1 ({side:<10}) {added:.3} ms  target ≤ 0.050 ms  {}",
                    verdict(added <= 0.05)
                );
            }
        }
    }
    if let Some((d, p)) = sse {
        let added = ms(p.saturating_sub(*d));
        println!(
            "  SSE first event vs direct       +{added:.3} ms  target ≤ 1 ms  {}",
            verdict(added <= 1.0)
        );
    }
    match idle {
        Some((n, kib)) => {
            let mib = kib_mib(*kib);
            println!(
                "  RSS with {n} idle connections   {mib:.1} MiB  target ≤ 50 MiB  {}",
                verdict(mib <= 50.0 && *n >= IDLE_CONNS)
            );
        }
        None => println!("  RSS with idle connections       not measured"),
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn kib_mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// A `/proc/<pid>/status` field in KiB (0 when unavailable).
fn rss_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix(field)?.strip_prefix(':').map(str::to_owned))
        })
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// User + system CPU seconds of a process (this one when `None`) and its
/// direct children (nginx's workers) so far.
fn cpu_seconds(pid: Option<u32>) -> f64 {
    let Some(pid) = pid else {
        return cpu_of(None);
    };
    let mut total = cpu_of(Some(pid));
    if let Ok(entries) = std::fs::read_dir("/proc") {
        for e in entries.flatten() {
            let Some(child) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
                continue;
            };
            let ppid = std::fs::read_to_string(format!("/proc/{child}/stat"))
                .ok()
                .and_then(|s| {
                    let rest = s.rsplit_once(')')?.1.to_string();
                    rest.split_whitespace().nth(1)?.parse::<u32>().ok()
                });
            if ppid == Some(pid) {
                total += cpu_of(Some(child));
            }
        }
    }
    total
}

/// User + system CPU seconds of one process (this one when `None`).
fn cpu_of(pid: Option<u32>) -> f64 {
    let path = pid.map_or_else(
        || "/proc/self/stat".to_string(),
        |p| format!("/proc/{p}/stat"),
    );
    let Ok(stat) = std::fs::read_to_string(path) else {
        return 0.0;
    };
    // Fields after the parenthesised command name; utime and stime are 14 and 15.
    let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
        return 0.0;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) / TICKS_PER_SEC
}
