//! A throwaway PostgreSQL database per test, from the managed-cluster code.
//!
//! All test binaries of a run share one cluster in `target/tmp/test-pg` (made
//! once, under the managed code's file lock, tuned for speed but still
//! crash-safe for `pg_ctl stop -m immediate`), or the server named by
//! `CCPROXY_TEST_DATABASE_URL` / `DATABASE_URL` when set. Each test gets a
//! fresh database (`t_<uuid>`) that is dropped when its [`TestDb`] is.
//! Tests that stop or start a server get a private one from [`own_cluster`].

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use ccproxy::config::{Config, Overrides};
use ccproxy::store::managed::{self, Managed, Tuning};
use tokio::sync::OnceCell;

/// Where the shared test cluster lives.
pub fn shared_home() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("test-pg")
}

/// Admin URL (database `postgres`, or the given server's) of the shared test server.
pub async fn server_url() -> String {
    static URL: OnceCell<String> = OnceCell::const_new();
    URL.get_or_init(|| async {
        for var in ["CCPROXY_TEST_DATABASE_URL", "DATABASE_URL"] {
            if let Ok(url) = std::env::var(var) {
                if !url.is_empty() {
                    return url;
                }
            }
        }
        let home = shared_home();
        std::fs::create_dir_all(&home).expect("create test-pg home");
        open_up(&home);
        let m = managed::ensure_cluster(&home, Tuning::Throwaway)
            .await
            .expect("start the test PostgreSQL cluster")
            .expect("no PostgreSQL server binaries (initdb, pg_ctl): install postgresql or set DATABASE_URL");
        with_dbname(&m.url, "postgres")
    })
    .await
    .clone()
}

/// A database that exists for one test.
#[derive(Debug)]
pub struct TestDb {
    /// Connection string for this database.
    pub url: String,
    /// Its name (`t_<uuid>`).
    pub name: String,
    admin: String,
}

/// A fresh, empty database on the shared test server.
pub async fn fresh_db() -> TestDb {
    let admin = server_url().await;
    let name = format!("t_{}", uuid::Uuid::new_v4().simple());
    let client = ccproxy::store::connect(&admin)
        .await
        .expect("connect to the test server");
    client
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .await
        .expect("create test database");
    TestDb {
        url: with_dbname(&admin, &name),
        name,
        admin,
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if std::env::var_os("CCPROXY_TEST_KEEP_DB").is_some() {
            eprintln!("keeping test database {}", self.url);
            return;
        }
        let (admin, name) = (self.admin.clone(), self.name.clone());
        // Drop may run inside a runtime: do the async work on a thread of its own.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async {
                if let Ok(c) = ccproxy::store::connect(&admin).await {
                    let _ = c
                        .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                        .await;
                }
            });
        })
        .join();
    }
}

/// The same URL pointing at another database.
pub fn with_dbname(url: &str, db: &str) -> String {
    if let Some((scheme, rest)) = url.split_once("://") {
        let (before_query, query) = match rest.split_once('?') {
            Some((b, q)) => (b, Some(q)),
            None => (rest, None),
        };
        let authority = before_query.split('/').next().unwrap_or("");
        let mut out = format!("{scheme}://{authority}/{db}");
        if let Some(q) = query {
            out.push('?');
            out.push_str(q);
        }
        out
    } else {
        format!("{url} dbname={db}")
    }
}

/// A config for a store under `home` writing to `url` (`None`: managed/memory).
pub fn config(home: &Path, url: Option<&str>) -> Config {
    let url = url.map(str::to_string);
    let mut cfg = Config::load_with(
        &Overrides {
            home: Some(home.to_path_buf()),
            ..Overrides::default()
        },
        &|_| None,
    )
    .expect("default config");
    cfg.mitm.database_url = url;
    cfg
}

/// A home directory under `target/tmp` that the `postgres` user can enter.
pub fn temp_home() -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix("h")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .expect("tempdir");
    open_up(dir.path());
    dir
}

fn open_up(dir: &Path) {
    let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755));
}

/// A private cluster (for tests that stop and start the server), stopped on drop.
pub struct OwnCluster {
    /// Its state directory (also usable as the store's home).
    pub home: tempfile::TempDir,
    /// The running cluster.
    pub managed: Managed,
}

/// Start a private cluster with the managed code.
pub async fn own_cluster() -> OwnCluster {
    let home = temp_home();
    let managed = managed::ensure_cluster(home.path(), Tuning::Throwaway)
        .await
        .expect("start a private cluster")
        .expect("no PostgreSQL server binaries");
    OwnCluster { home, managed }
}

impl OwnCluster {
    /// `pg_ctl stop -m immediate`: the server dies without a checkpoint.
    pub fn kill(&self) {
        self.pg_ctl(&["stop", "-s", "-m", "immediate", "-w"]);
    }

    /// Start it again (the managed code's own start path).
    pub async fn restart(&self) {
        managed::ensure_cluster(self.home.path(), Tuning::Throwaway)
            .await
            .expect("restart")
            .expect("binaries");
    }

    /// Run `pg_ctl` on this cluster as the user the server runs as.
    pub fn pg_ctl(&self, args: &[&str]) {
        let mut cmd = std::process::Command::new("runuser");
        let pg_ctl = self.managed.bindir.join("pg_ctl");
        let data = self.managed.data_dir.display().to_string();
        if nix::unistd::Uid::effective().is_root() {
            cmd.args(["-u", "postgres", "--"]);
        } else {
            cmd = std::process::Command::new(&pg_ctl);
        }
        if nix::unistd::Uid::effective().is_root() {
            cmd.arg(&pg_ctl);
        }
        let st = cmd
            .args(args)
            .args(["-D", &data])
            .current_dir("/")
            .status()
            .expect("run pg_ctl");
        assert!(st.success(), "pg_ctl {args:?} failed");
    }
}

impl Drop for OwnCluster {
    fn drop(&mut self) {
        let _ = managed::stop_managed(&self.managed);
        if self
            .managed
            .cluster_dir
            .starts_with(managed::relocation_parent())
        {
            let _ = std::fs::remove_dir_all(&self.managed.cluster_dir);
        }
    }
}

/// A realistic completed flow: ~1 KB of headers, 2–4 KB of bodies, a secret
/// already redacted the way `capture::redact` leaves it.
pub fn sample_flow(i: usize) -> ccproxy::flow::Flow {
    use ccproxy::flow::{Direction, Flow, TrafficType};
    let mut f = Flow::new(
        if i % 2 == 0 {
            Direction::Reverse
        } else {
            Direction::Forward
        },
        "POST",
        &format!("https://api.anthropic.com/v1/messages?i={i}"),
        "api.anthropic.com",
        &format!("/v1/messages?i={i}"),
    );
    f.request_headers = vec![
        ("host".into(), "api.anthropic.com".into()),
        ("content-type".into(), "application/json".into()),
        ("x-api-key".into(), "sk-ant…7f3a".into()),
        ("anthropic-version".into(), "2023-06-01".into()),
        ("x-claude-code-session-id".into(), format!("sess-{}", i % 7)),
        ("user-agent".into(), "claude-cli/1.0 (external, cli)".into()),
        ("accept".into(), "application/json".into()),
        ("accept".into(), "text/event-stream".into()),
        ("x-padding".into(), "p".repeat(700)),
    ];
    let prompt = "tell me about rust ".repeat(100 + i % 50);
    f.request_body = bytes::Bytes::from(format!(
        r#"{{"model":"claude-sonnet-4","max_tokens":1024,"messages":[{{"role":"user","content":"{prompt}"}}]}}"#
    ));
    f.request_body_size = f.request_body.len() as u64;
    f.request_content_type = Some("application/json".into());
    f.status_code = Some(if i % 10 == 9 { 529 } else { 200 });
    f.response_headers = vec![
        ("content-type".into(), "application/json".into()),
        ("request-id".into(), format!("req_{i:08}")),
        ("set-cookie".into(), "__cf…abcd".into()),
    ];
    let mut body = format!(
        r#"{{"id":"msg_{i}","content":[{{"type":"text","text":"{}"}}],"usage":{{"input_tokens":{},"output_tokens":7}}}}"#,
        "ok ".repeat(300),
        1000 + i
    )
    .into_bytes();
    body.extend_from_slice(&[0, 159, 146, 150, 255]); // bytes that are not UTF-8
    f.response_body_size = body.len() as u64 + 10_000; // as if cut at max_body_size
    f.response_body = bytes::Bytes::from(body);
    f.response_content_type = Some("application/json".into());
    let now = chrono::Utc::now();
    f.start_time = now - chrono::Duration::milliseconds(250);
    f.end_time = Some(now);
    f.duration_ms = Some(250.5);
    f.ttfb_ms = Some(120.25);
    f.client_ip = Some("127.0.0.1".into());
    f.server_ip = Some("127.0.0.1".into());
    f.server_port = Some(443);
    f.is_https = true;
    f.traffic_type = TrafficType::Llm;
    f.session_id = Some(format!("sess-{}", i % 7));
    f.http_version = "HTTP/1.1".into();
    f
}
