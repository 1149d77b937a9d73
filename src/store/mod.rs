//! Durable storage: the batch writer into PostgreSQL, the disk spool, the
//! migrations, the managed local cluster and the read queries.
//!
//! [`Store::open`] picks the database (`CCPROXY_DATABASE_URL`, then
//! `DATABASE_URL`, then config `database_url`, then the managed local
//! cluster, else memory only), and starts the writer, the spool overflow task and the retention task. The
//! proxy hands completed flows to [`Store::sink`] and never waits on it.

pub mod connect;
pub mod identity;
pub mod llm;
pub mod managed;
pub mod migrate;
pub mod partition;
pub mod query;
pub mod row;
pub mod spool;
pub mod writer;

use std::io::Write as _;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_postgres::Client;

use crate::config::Config;
use crate::flow::{Flow, FlowSink};
use spool::{SharedSpool, Spool};
use writer::{Shared, StoreSink, Writer};

/// Errors of the storage subsystem; each message says what to do next.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database answered with an error (or the connection failed).
    #[error("database error: {}", describe(.0))]
    Db(#[from] tokio_postgres::Error),
    /// A migration file failed to apply.
    #[error("migration {name} failed: {}; fix the database or run `ccproxy db migrate` again", describe(.source))]
    Migration {
        name: String,
        source: tokio_postgres::Error,
    },
    /// The table does not have the shape the writer needs.
    #[error("{0}")]
    Schema(String),
    /// The managed local cluster could not be created, started or stopped.
    #[error("managed database: {0}")]
    Managed(String),
    /// The spool directory is unusable.
    #[error("spool {path}: {source}; check that the ccproxy home is writable")]
    Spool {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    /// The server could not be reached or refused the session (TLS, password).
    #[error("cannot connect to the database: {0}")]
    Connect(String),
    /// No database is configured and no server binaries exist.
    #[error("no database: set DATABASE_URL (or database_url in the config), or install the PostgreSQL server (e.g. apt install postgresql) for a managed local one")]
    NoDatabase,
}

/// One line for a database error, with the server's detail when there is one.
pub fn describe(e: &tokio_postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        return format!("{} ({})", db.message(), db.code().code());
    }
    match std::error::Error::source(e) {
        Some(src) => format!("{e}: {src}"),
        None => e.to_string(),
    }
}

/// Open a session: TLS as `sslmode` says (see [`connect`]), the password
/// from the URL, `PGPASSWORD` or the pgpass file; the connection task runs
/// in the background until the client is dropped.
pub async fn connect(url: &str) -> Result<Client, StoreError> {
    let opts = connect::parse(url).map_err(StoreError::Connect)?;
    connect::connect_with(&opts)
        .await
        .map_err(StoreError::Connect)
}

/// [`connect`], and remember for `status` which server it is and whether the session is encrypted.
pub async fn connect_recorded(url: &str, shared: &Shared) -> Result<Client, StoreError> {
    let opts = connect::parse(url).map_err(StoreError::Connect)?;
    let client = connect::connect_with(&opts)
        .await
        .map_err(StoreError::Connect)?;
    let sec = connect::security(&client, &opts).await;
    if let Ok(mut s) = shared.security.lock() {
        *s = Some(sec);
    }
    Ok(client)
}

/// A URL with its password replaced by `***` (for status and logs).
pub fn redact_url(url: &str) -> String {
    if let Some(rest) = url
        .strip_prefix("postgres://")
        .map(|r| ("postgres://", r))
        .or_else(|| {
            url.strip_prefix("postgresql://")
                .map(|r| ("postgresql://", r))
        })
    {
        let (scheme, rest) = rest;
        let auth_end = rest.find(['/', '?']).unwrap_or(rest.len());
        if let Some(at) = rest[..auth_end].rfind('@') {
            if let Some(colon) = rest[..at].find(':') {
                return format!("{scheme}{}:***{}", &rest[..colon], &rest[at..]);
            }
        }
        return url.to_string();
    }
    url.split_whitespace()
        .map(|kv| {
            if kv.starts_with("password=") {
                "password=***".to_string()
            } else {
                kv.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Which database a command or the store uses.
#[derive(Debug, Clone)]
pub enum Target {
    /// A configured server (`CCPROXY_DATABASE_URL`, `DATABASE_URL`, `database_url`).
    Url(String),
    /// The managed local cluster (running).
    Managed(managed::Managed),
}

impl Target {
    /// The connection string.
    pub fn url(&self) -> &str {
        match self {
            Self::Url(u) => u,
            Self::Managed(m) => &m.url,
        }
    }

    /// `url` or `managed`.
    pub fn source(&self) -> &'static str {
        match self {
            Self::Url(_) => "url",
            Self::Managed(_) => "managed",
        }
    }
}

/// The configured database, or the managed cluster started on demand;
/// `Ok(None)` when there is neither (memory only).
pub async fn resolve(cfg: &Config) -> Result<Option<Target>, StoreError> {
    if let Some(url) = &cfg.mitm.database_url {
        return Ok(Some(Target::Url(url.clone())));
    }
    Ok(managed::ensure_running(cfg).await?.map(Target::Managed))
}

/// Where stored flows go right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum StorageState {
    /// Writing to PostgreSQL.
    Connected,
    /// The database is down or slow; rows go to the disk spool.
    Spooling,
    /// No database: memory only.
    #[default]
    Off,
}

/// Writer counters for `status` and the TUI header.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StoreStats {
    pub state: StorageState,
    /// Database in use, password removed (`None` when off).
    pub database: Option<String>,
    /// The server and whether the last session to it was encrypted (`None`
    /// until the first connection).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection: Option<connect::Security>,
    /// Who this engine's rows are recorded as (`capture_host`, `capture_user`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<identity::Identity>,
    /// `managed` (local cluster), `url` (configured server) or `memory`.
    pub source: String,
    /// Rows committed to the table.
    pub written: u64,
    /// Rows waiting in the in-memory queue.
    pub queued: u64,
    /// Rows written to the spool since start.
    pub spooled: u64,
    /// Bytes currently held in the spool.
    pub spool_bytes: u64,
    /// Rows replayed from the spool into the database.
    pub replayed: u64,
    /// Rows lost because the spool was full.
    pub dropped: u64,
    /// Last error, if any.
    pub last_error: Option<String>,
    /// Last spool error (cannot write, full, a damaged segment), kept apart from `last_error`.
    #[serde(default)]
    pub spool_error: Option<String>,
    /// Times the managed database was found dead and restarted.
    #[serde(default)]
    pub restarts: u64,
}

/// The storage subsystem of a running engine.
pub struct Store {
    shared: Arc<Shared>,
    sink: Arc<dyn FlowSink>,
    queue: Option<mpsc::WeakSender<Arc<Flow>>>,
    database: Option<String>,
    source: &'static str,
    stop: watch::Sender<Option<std::time::Instant>>,
    stop_overflow: watch::Sender<Option<std::time::Instant>>,
    writer: Option<JoinHandle<()>>,
    overflow: Option<JoinHandle<()>>,
    retention: Option<JoinHandle<()>>,
    managed: Option<managed::Managed>,
    /// The managed server's supervisor and the home it watches.
    supervisor: Option<(JoinHandle<()>, std::path::PathBuf)>,
    /// `durability: spool-first`: the journal and its thread.
    journal: Option<(Arc<writer::Journal>, std::thread::JoinHandle<()>)>,
}

/// Memory-only mode: flows are shown, not stored.
struct DiscardSink;

impl FlowSink for DiscardSink {
    fn submit(&self, _flow: Arc<Flow>) {}
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("source", &self.source)
            .field("database", &self.database)
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Resolve the database (`CCPROXY_DATABASE_URL` > `DATABASE_URL` > config
    /// `database_url` > managed local cluster > memory only, said once), migrate,
    /// start the writer, the spool replayer and the retention task. A database
    /// that is down is not an error: rows spool and the writer retries.
    pub async fn open(cfg: &Config) -> Result<Store, StoreError> {
        let (url, source, managed) = match &cfg.mitm.database_url {
            Some(url) => (url.clone(), "url", None),
            None => match managed::ensure_running(cfg).await {
                Ok(Some(m)) => (m.url.clone(), "managed", Some(m)),
                Ok(None) => return Ok(Self::memory_only()),
                Err(e) => {
                    // Keep the rows: spool now, the writer retries the socket.
                    tracing::error!("{e}");
                    let loc = managed::locate(&cfg.home)?;
                    (loc.url(managed::DATABASE), "managed", None)
                }
            },
        };
        let spool_dir = crate::home::Home::new(cfg).spool();
        let spool = Spool::open(&spool_dir, cfg.mitm.spool_max_bytes).map_err(|source| {
            StoreError::Spool {
                path: spool_dir.clone(),
                source,
            }
        })?;
        let shared = Arc::new(Shared::default());
        shared.spool_bytes.store(spool.bytes(), Ordering::Relaxed);
        let spool: SharedSpool = Arc::new(Mutex::new(spool));

        identity::init(cfg);
        let client = match connect_recorded(&url, &shared).await {
            Ok(mut client) => match migrate::migrate(&mut client).await {
                Ok(_) => Some(client),
                Err(StoreError::Db(e)) if e.as_db_error().is_none() => {
                    shared.error(format!(
                        "database connection lost while migrating: {}",
                        describe(&e)
                    ));
                    None
                }
                Err(e) => return Err(e),
            },
            Err(e) => {
                shared.error(format!(
                    "database {} unavailable ({e}); spooling to {} until it answers",
                    redact_url(&url),
                    spool_dir.display()
                ));
                None
            }
        };

        let (tx, rx) = mpsc::channel(cfg.mitm.buffer_size.max(1));
        let (otx, orx) = mpsc::unbounded_channel();
        let (stop, stop_rx) = watch::channel(None);
        let stop_rx_for_supervisor = stop_rx.clone();
        let (stop_overflow, overflow_rx) = watch::channel(None);
        let w = Writer::new(
            url.clone(),
            rx,
            Arc::clone(&shared),
            Arc::clone(&spool),
            stop_rx.clone(),
            client,
        )
        .await;
        let writer = tokio::spawn(w.run());
        let overflow = tokio::spawn(writer::overflow_task(
            orx,
            Arc::clone(&shared),
            Arc::clone(&spool),
            overflow_rx,
        ));
        let retention = Some(tokio::spawn(maintenance_task(
            url.clone(),
            cfg.mitm.retention,
            stop_rx,
        )));
        let queue = Some(tx.downgrade());
        let supervisor = (source == "managed").then(|| {
            let sh = Arc::clone(&shared);
            let report = move |ev: managed::Supervision| {
                if let managed::Supervision::Restarted { .. } = ev {
                    sh.restarts.fetch_add(1, Ordering::Relaxed);
                    sh.wake.notify_one();
                }
            };
            let home = cfg.home.clone();
            let task = managed::supervise(
                home.clone(),
                managed::Tuning::Durable,
                stop_rx_for_supervisor,
                report,
            );
            (tokio::spawn(task), home)
        });
        let batch_sink = StoreSink {
            tx,
            overflow: otx,
            shared: Arc::clone(&shared),
            spool: Arc::clone(&spool),
            max_bytes: cfg.mitm.spool_max_bytes,
        };
        let (sink, journal): (Arc<dyn FlowSink>, _) = match cfg.mitm.durability {
            crate::config::Durability::Batch => (Arc::new(batch_sink), None),
            crate::config::Durability::SpoolFirst => {
                let (journal, thread) =
                    writer::Journal::start(Arc::clone(&shared), Arc::clone(&spool)).map_err(
                        |source| StoreError::Spool {
                            path: spool_dir.clone(),
                            source,
                        },
                    )?;
                let sink = writer::JournalSink {
                    journal: Arc::clone(&journal),
                    fallback: batch_sink,
                };
                (Arc::new(sink), Some((journal, thread)))
            }
        };
        Ok(Store {
            shared,
            sink,
            queue,
            database: Some(redact_url(&url)),
            source,
            stop,
            stop_overflow,
            writer: Some(writer),
            overflow: Some(overflow),
            retention,
            managed,
            supervisor,
            journal,
        })
    }

    fn memory_only() -> Store {
        static SAID: std::sync::Once = std::sync::Once::new();
        SAID.call_once(|| {
            let _ = writeln!(
                std::io::stderr(),
                "ccproxy: no database (no DATABASE_URL and no PostgreSQL server binaries): \
                 flows are kept in memory only; set DATABASE_URL or install postgresql to store them"
            );
        });
        let (stop, _) = watch::channel(None);
        let (stop_overflow, _) = watch::channel(None);
        Store {
            shared: Arc::new(Shared::default()),
            sink: Arc::new(DiscardSink),
            queue: None,
            database: None,
            source: "memory",
            stop,
            stop_overflow,
            writer: None,
            overflow: None,
            retention: None,
            managed: None,
            supervisor: None,
            journal: None,
        }
    }

    /// Where the hub sends completed flows: `hub.set_sink(store.sink())`.
    pub fn sink(&self) -> Arc<dyn FlowSink> {
        Arc::clone(&self.sink)
    }

    /// The managed cluster, when that is what the store writes to.
    pub fn managed(&self) -> Option<&managed::Managed> {
        self.managed.as_ref()
    }

    /// Counters for `status` and the TUI header.
    pub fn stats(&self) -> StoreStats {
        let sh = &self.shared;
        let queued = self
            .queue
            .as_ref()
            .and_then(mpsc::WeakSender::upgrade)
            .map_or(0, |tx| (tx.max_capacity() - tx.capacity()) as u64);
        StoreStats {
            state: sh.state(),
            database: self.database.clone(),
            connection: sh.security.lock().ok().and_then(|s| s.clone()),
            identity: (self.source != "memory").then(|| (*identity::current()).clone()),
            source: self.source.to_string(),
            written: sh.written.load(Ordering::Relaxed),
            queued,
            spooled: sh.spooled.load(Ordering::Relaxed),
            spool_bytes: sh.spool_bytes.load(Ordering::Relaxed),
            replayed: sh.replayed.load(Ordering::Relaxed),
            dropped: sh.dropped.load(Ordering::Relaxed),
            last_error: sh.last_error.lock().ok().and_then(|e| e.clone()),
            spool_error: sh.spool_error.lock().ok().and_then(|e| e.clone()),
            restarts: sh.restarts.load(Ordering::Relaxed),
        }
    }

    /// Flush the queue to the database (or the spool) and, if the database is
    /// up, replay the spool, all within `deadline`; leftovers stay spooled for
    /// the next start. Stops the managed server when this store started it.
    pub async fn shutdown(mut self, deadline: Duration) {
        let until = std::time::Instant::now() + deadline;
        let end = tokio::time::Instant::from_std(until) + Duration::from_secs(2);
        // The journal first: what it holds goes to the spool.
        if let Some((journal, thread)) = self.journal.take() {
            journal.close();
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        }
        // Overflow next, so the writer's final replay sees everything.
        let _ = self.stop_overflow.send(Some(until));
        if let Some(h) = self.overflow.take() {
            let _ = tokio::time::timeout_at(end, h).await;
        }
        let _ = self.stop.send(Some(until));
        if let Some(h) = self.writer.take() {
            if tokio::time::timeout_at(end, h).await.is_err() {
                tracing::error!("the store writer did not finish in time; unwritten rows stay queued in memory and are lost");
            }
        }
        if let Some(h) = self.retention.take() {
            h.abort();
        }
        // The supervisor saw the stop signal; let a restart in progress finish.
        let mut restarted_home = None;
        if let Some((h, home)) = self.supervisor.take() {
            let _ = tokio::time::timeout(Duration::from_secs(70), h).await;
            if self.shared.restarts.load(Ordering::Relaxed) > 0 {
                restarted_home = Some(home);
            }
        }
        if let (None, Some(home)) = (&self.managed, restarted_home.clone()) {
            // Started by the supervisor only: ours to stop.
            let stopped = tokio::task::spawn_blocking(move || managed::stop_home(&home)).await;
            if let Ok(Err(e)) = stopped {
                tracing::error!("{e}");
            }
        }
        if let Some(m) = self
            .managed
            .take()
            .filter(|m| m.started_by_us || restarted_home.is_some())
        {
            let dir = m.cluster_dir.clone();
            let stopped = tokio::task::spawn_blocking(move || managed::stop_managed(&m)).await;
            if let Ok(Err(e)) = stopped {
                tracing::error!(dir = %dir.display(), "{e}");
            }
        }
    }
}

/// Remove flows older than `age`: whole daily partitions are dropped, rows
/// are deleted (in batches) only where the cutoff falls inside a partition.
pub async fn prune(client: &Client, age: Duration) -> Result<u64, StoreError> {
    // Older than anything PostgreSQL can store means "nothing to delete".
    let floor = chrono::NaiveDate::from_ymd_opt(1, 1, 1)
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .unwrap_or_default();
    let cutoff = chrono::Duration::from_std(age)
        .ok()
        .and_then(|age| chrono::Utc::now().naive_utc().checked_sub_signed(age))
        .map_or(floor, |c| c.max(floor));
    partition::prune_before(client, cutoff).await
}

/// Rows deleted per retention statement.
pub const PRUNE_BATCH: u64 = partition::DELETE_BATCH;

/// Shortly after start and then hourly: create the partitions ahead, move
/// rows out of the default partition, and apply `retention` when set.
async fn maintenance_task(
    url: String,
    age: Option<Duration>,
    mut stop: watch::Receiver<Option<std::time::Instant>>,
) {
    let mut wait = Duration::from_secs(10);
    loop {
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            _ = stop.changed() => return,
        }
        wait = Duration::from_secs(3600);
        let mut client = match connect(&url).await {
            Ok(c) => c,
            Err(e) => {
                tracing::debug!("maintenance: {e}");
                continue;
            }
        };
        match partition::maintain(&mut client).await {
            Ok(r) if r.created > 0 => tracing::info!(created = r.created, "partitions created"),
            Ok(_) => {}
            Err(e) => tracing::warn!("partitions: {e}"),
        }
        if let Some(age) = age {
            match prune(&client, age).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(rows = n, "retention: pruned old flows"),
                Err(e) => tracing::warn!("retention: {e}"),
            }
        }
    }
}

/// What `ccproxy db status` shows about a reachable server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerInfo {
    /// `SHOW server_version`.
    pub version: String,
    /// The applied schema version, if any.
    pub schema: Option<i32>,
    /// The newest migration this binary knows.
    pub latest: i32,
    /// Row count and total size (pretty) of the flows table, when it exists.
    pub table: Option<(i64, String)>,
}

/// Server version, schema version and table size.
pub async fn server_info(client: &Client) -> Result<ServerInfo, StoreError> {
    let version: String = client.query_one("SHOW server_version", &[]).await?.get(0);
    let schema = migrate::current_version(client).await?;
    let exists: bool = client
        .query_one(
            "SELECT to_regclass('\"CCProxy_HttpTraces\"') IS NOT NULL",
            &[],
        )
        .await?
        .get(0);
    let table = if exists {
        let r = client
            .query_one(
                &format!(
                    "SELECT count(*), pg_size_pretty((SELECT sum(pg_total_relation_size(relid)) \
                     FROM pg_partition_tree('{t}'))::bigint) FROM {t}",
                    t = row::TABLE
                ),
                &[],
            )
            .await?;
        Some((r.get(0), r.get(1)))
    } else {
        None
    };
    Ok(ServerInfo {
        version,
        schema,
        latest: migrate::latest_version(),
        table,
    })
}

/// Segments and bytes held in a spool directory.
pub fn spool_usage(dir: &std::path::Path) -> (usize, u64) {
    let segments = spool::list_segments(dir).unwrap_or_default();
    let bytes = segments
        .iter()
        .filter_map(|(_, p)| std::fs::metadata(p).ok())
        .map(|m| m.len())
        .sum();
    (segments.len(), bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_never_reach_status() {
        let cases = [
            ("postgres://u:pw@h:5432/db", "postgres://u:***@h:5432/db"),
            (
                "postgresql://u:p@ss@h/db?x=1",
                "postgresql://u:***@h/db?x=1",
            ),
            ("postgres://u@h/db", "postgres://u@h/db"),
            (
                "postgresql:///ccproxy?host=/tmp/x&user=postgres",
                "postgresql:///ccproxy?host=/tmp/x&user=postgres",
            ),
            (
                "host=h user=u password=pw dbname=d",
                "host=h user=u password=*** dbname=d",
            ),
        ];
        for (url, want) in cases {
            assert_eq!(redact_url(url), want, "{url}");
        }
    }
}
