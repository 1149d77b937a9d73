//! The managed local PostgreSQL cluster: created with the machine's own server
//! binaries the first time it is needed, reachable only through a unix socket
//! in its own directory (no TCP port to collide with), started on demand.
//!
//! Layout of a cluster directory (`<home>/pg`, or a fallback keyed by `<home>`
//! when the server user cannot enter `<home>`):
//!
//! ```text
//! <cluster>/            owned by the server user, 0700; also the socket directory
//!   data/               PGDATA (initdb once)
//!   server.log          the server's stderr
//!   .ccproxy.lock       serialises initdb/start between processes (tests, engines)
//! ```
//!
//! As root the server runs as the `postgres` user (PostgreSQL refuses root).
//! The tests get their throwaway cluster from this same code.

use std::fs::{self, File};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use nix::fcntl::{Flock, FlockArg};
use nix::unistd::{Gid, Uid, User};

use super::StoreError;
use crate::config::Config;

/// Name of the database ccproxy creates in the managed cluster.
pub const DATABASE: &str = "ccproxy";
/// Superuser created by `initdb` (the URL's `user=`).
pub const SUPERUSER: &str = "postgres";
/// Unix socket paths are limited to 107 bytes on Linux.
const MAX_SOCKET_PATH: usize = 100;

/// A running managed cluster.
#[derive(Debug, Clone)]
pub struct Managed {
    /// Connection string for the `ccproxy` database; psql accepts it.
    pub url: String,
    /// PGDATA.
    pub data_dir: PathBuf,
    /// True when this call started the server (and so its owner should stop it).
    pub started_by_us: bool,
    /// The cluster directory: socket, log, data.
    pub cluster_dir: PathBuf,
    /// Where `initdb`/`pg_ctl` were found.
    pub bindir: PathBuf,
}

/// How the cluster is tuned when it is first created.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tuning {
    /// The user's cluster: durable defaults.
    Durable,
    /// The tests' throwaway cluster: `fsync=off` (commits still reach the
    /// kernel, so `pg_ctl stop -m immediate` loses nothing), more connections.
    Throwaway,
}

/// Where a home's cluster lives and who runs it, without touching anything.
#[derive(Debug, Clone)]
pub struct Location {
    /// The cluster directory (socket dir, log, `data/`).
    pub cluster_dir: PathBuf,
    /// True when `<home>/pg` was not usable and a directory keyed by `<home>` is used.
    pub relocated: bool,
    /// The user the server runs as when we are root.
    run_as: Option<(Uid, Gid)>,
}

impl Location {
    /// PGDATA.
    pub fn data_dir(&self) -> PathBuf {
        self.cluster_dir.join("data")
    }

    /// The server log.
    pub fn log_file(&self) -> PathBuf {
        self.cluster_dir.join("server.log")
    }

    /// The URL of a database in this cluster.
    pub fn url(&self, database: &str) -> String {
        format!(
            "postgresql:///{database}?host={}&user={SUPERUSER}",
            self.cluster_dir.display()
        )
    }
}

/// Make sure the home's managed cluster exists, runs and has the `ccproxy`
/// database. `Ok(None)` when the machine has no PostgreSQL server binaries.
pub async fn ensure_running(cfg: &Config) -> Result<Option<Managed>, StoreError> {
    ensure_cluster(&cfg.home, Tuning::Durable).await
}

/// [`ensure_running`] for any state directory (the test harness uses its own).
pub async fn ensure_cluster(home: &Path, tuning: Tuning) -> Result<Option<Managed>, StoreError> {
    let home = home.to_path_buf();
    let started = tokio::task::spawn_blocking(move || start_blocking(&home, tuning))
        .await
        .map_err(|e| StoreError::Managed(format!("cluster start task failed: {e}")))??;
    let Some(managed) = started else {
        return Ok(None);
    };
    create_database(&managed).await?;
    Ok(Some(managed))
}

/// What the supervisor did (for the store's `restarts` counter).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Supervision {
    /// The server was gone and runs again.
    Restarted {
        /// Tries it took.
        attempt: u32,
    },
    /// A try failed; the next one is after a backoff.
    Failed {
        /// Which try.
        attempt: u32,
        /// Why it failed.
        error: String,
    },
}

/// How often the supervisor looks at `postmaster.pid`.
const WATCH_EVERY: Duration = Duration::from_millis(250);
const RESTART_BACKOFF_MIN: Duration = Duration::from_millis(250);
const RESTART_BACKOFF_MAX: Duration = Duration::from_secs(30);

/// Watch the home's managed server and start it again whenever it is gone
/// (killed, crashed, stopped by hand), with backoff and one log line per try,
/// until `stop` says so. `report` hears of every try.
pub async fn supervise(
    home: PathBuf,
    tuning: Tuning,
    mut stop: tokio::sync::watch::Receiver<Option<std::time::Instant>>,
    report: impl Fn(Supervision) + Send,
) {
    let data = match locate(&home) {
        Ok(loc) => loc.data_dir(),
        Err(e) => {
            tracing::error!("managed database: not supervised: {e}");
            return;
        }
    };
    let mut backoff = RESTART_BACKOFF_MIN;
    let mut attempt = 0u32;
    let mut wait = WATCH_EVERY;
    loop {
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            _ = stop.changed() => return,
        }
        if stop.borrow().is_some() {
            return;
        }
        wait = WATCH_EVERY;
        if running_pid(&data).is_some() {
            continue;
        }
        attempt += 1;
        tracing::warn!(
            data = %data.display(),
            attempt,
            "the managed database is not running (killed or crashed); starting it again"
        );
        let started = Instant::now();
        match ensure_cluster(&home, tuning).await {
            Ok(Some(_)) => {
                tracing::warn!(
                    data = %data.display(),
                    attempt,
                    pid = running_pid(&data).unwrap_or_default(),
                    took_ms = started.elapsed().as_millis() as u64,
                    "the managed database was restarted"
                );
                report(Supervision::Restarted { attempt });
                attempt = 0;
                backoff = RESTART_BACKOFF_MIN;
            }
            Ok(None) => {
                tracing::error!("the PostgreSQL server binaries are gone: the managed database is no longer supervised");
                return;
            }
            Err(e) => {
                tracing::error!(
                    attempt,
                    retry_in_ms = backoff.as_millis() as u64,
                    "restarting the managed database failed: {e}"
                );
                report(Supervision::Failed {
                    attempt,
                    error: e.to_string(),
                });
                wait = backoff;
                backoff = (backoff * 2).min(RESTART_BACKOFF_MAX);
            }
        }
    }
}

/// Stop the home's managed server if it runs (for `ccproxy stop`); `Ok(true)` when it was running.
pub async fn stop(cfg: &Config) -> Result<bool, StoreError> {
    let home = cfg.home.clone();
    tokio::task::spawn_blocking(move || stop_home(&home))
        .await
        .map_err(|e| StoreError::Managed(format!("cluster stop task failed: {e}")))?
}

/// Blocking stop of the cluster that belongs to `home`.
pub fn stop_home(home: &Path) -> Result<bool, StoreError> {
    let Some(bindir) = find_bindir() else {
        return Ok(false);
    };
    let loc = locate(home)?;
    stop_cluster(&bindir, &loc)
}

/// Blocking stop of a cluster this process started (the engine's exit).
pub fn stop_managed(m: &Managed) -> Result<bool, StoreError> {
    let loc = Location {
        cluster_dir: m.cluster_dir.clone(),
        relocated: false,
        run_as: server_identity()?,
    };
    stop_cluster(&m.bindir, &loc)
}

/// Blocking stop of one cluster directory's server.
fn stop_cluster(bindir: &Path, loc: &Location) -> Result<bool, StoreError> {
    let data = loc.data_dir();
    if !data.join("PG_VERSION").exists() || running_pid(&data).is_none() {
        return Ok(false);
    }
    let out = run_as(
        loc,
        Command::new(bindir.join("pg_ctl"))
            .arg("stop")
            .arg("-D")
            .arg(&data)
            .args(["-m", "fast", "-w", "-t", "60", "-s"]),
    )?;
    if out.status.success() {
        Ok(true)
    } else {
        Err(StoreError::Managed(format!(
            "pg_ctl stop failed for {}: {}; see {}",
            data.display(),
            String::from_utf8_lossy(&out.stderr).trim(),
            loc.log_file().display()
        )))
    }
}

/// The server binaries: `pg_config --bindir`, else the newest `/usr/lib/postgresql/*/bin`.
pub fn find_bindir() -> Option<PathBuf> {
    let has_server = |d: &Path| d.join("initdb").is_file() && d.join("pg_ctl").is_file();
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output() {
        if out.status.success() {
            let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
            if has_server(&dir) {
                return Some(dir);
            }
        }
    }
    let mut versions: Vec<(u32, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(Result::ok)
        .filter_map(|e| {
            let v = e.file_name().to_str()?.parse::<u32>().ok()?;
            Some((v, e.path().join("bin")))
        })
        .filter(|(_, d)| has_server(d))
        .collect();
    versions.sort();
    versions.pop().map(|(_, d)| d)
}

/// Where the cluster for `home` lives, and as whom it runs.
pub fn locate(home: &Path) -> Result<Location, StoreError> {
    let run_as = server_identity()?;
    let preferred = home.join(crate::home::PG_DIR);
    let socket_fits = preferred.join(".s.PGSQL.5432").as_os_str().len() <= MAX_SOCKET_PATH;
    let reachable = socket_fits
        && match run_as {
            None => true,
            Some((uid, gid)) => user_can_enter(home, uid, gid),
        };
    if socket_fits && reachable {
        return Ok(Location {
            cluster_dir: preferred,
            relocated: false,
            run_as,
        });
    }
    let key = std::fs::canonicalize(home).unwrap_or_else(|_| home.to_path_buf());
    let dir = relocation_parent().join(format!(
        "pg-{:016x}",
        fnv1a(key.as_os_str().as_encoded_bytes())
    ));
    Ok(Location {
        cluster_dir: dir,
        relocated: true,
        run_as,
    })
}

/// Where relocated clusters live: as root `/var/lib/ccproxy` (root's, 0711,
/// so other users cannot plant anything in it), else `/var/tmp/ccproxy-<uid>`
/// (the user's own, 0700).
pub fn relocation_parent() -> PathBuf {
    let uid = Uid::effective();
    if uid.is_root() {
        PathBuf::from("/var/lib/ccproxy")
    } else {
        PathBuf::from(format!("/var/tmp/ccproxy-{}", uid.as_raw()))
    }
}

/// Create `parent/name` for a cluster without trusting anything already
/// there: `parent` is made (mode `parent_mode`) or must be a real directory
/// of ours that nobody else can write; `name` is made with `mkdir` (which
/// never follows a symlink), handed to `owner`, and checked again. A
/// symlink, a file or a directory of someone else at either path is an error
/// that says what holds it.
pub fn secure_cluster_dir(
    parent: &Path,
    parent_mode: u32,
    name: &str,
    owner: Option<(Uid, Gid)>,
) -> Result<PathBuf, StoreError> {
    use std::os::unix::fs::MetadataExt;
    let me = Uid::effective().as_raw();
    let held = |p: &Path, what: String| {
        StoreError::Managed(format!(
            "{} is held by something else ({what}); remove it (or set DATABASE_URL) and start again",
            p.display()
        ))
    };
    match fs::DirBuilder::new().mode(parent_mode).create(parent) {
        Ok(()) => fs::set_permissions(parent, fs::Permissions::from_mode(parent_mode))
            .map_err(|e| StoreError::Managed(format!("cannot chmod {}: {e}", parent.display())))?,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => {
            return Err(StoreError::Managed(format!(
                "cannot create {}: {e}",
                parent.display()
            )))
        }
    }
    let check = |p: &Path, uids: &[u32], forbidden: u32| -> Result<(), StoreError> {
        let m = fs::symlink_metadata(p)
            .map_err(|e| StoreError::Managed(format!("cannot inspect {}: {e}", p.display())))?;
        if m.file_type().is_symlink() {
            return Err(held(p, "a symbolic link".into()));
        }
        if !m.is_dir() {
            return Err(held(p, "not a directory".into()));
        }
        if !uids.contains(&m.uid()) {
            return Err(held(p, format!("owned by uid {}", m.uid())));
        }
        if m.mode() & forbidden != 0 {
            return Err(held(p, format!("mode {:o}", m.mode() & 0o7777)));
        }
        Ok(())
    };
    check(parent, &[me], 0o022)?;
    let dir = parent.join(name);
    let server = owner.map_or(me, |(u, _)| u.as_raw());
    match fs::DirBuilder::new().mode(0o700).create(&dir) {
        Ok(()) => {
            if let Some((uid, gid)) = owner {
                nix::unistd::fchownat(
                    None,
                    &dir,
                    Some(uid),
                    Some(gid),
                    nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
                )
                .map_err(|e| {
                    StoreError::Managed(format!(
                        "cannot give {} to the postgres user: {e}",
                        dir.display()
                    ))
                })?;
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => {
            return Err(StoreError::Managed(format!(
                "cannot create {}: {e}",
                dir.display()
            )))
        }
    }
    check(&dir, &[server], 0o077)?;
    Ok(dir)
}

/// `Some(postgres)` when we are root (the server refuses to run as root).
fn server_identity() -> Result<Option<(Uid, Gid)>, StoreError> {
    if !Uid::effective().is_root() {
        return Ok(None);
    }
    match User::from_name(SUPERUSER) {
        Ok(Some(u)) => Ok(Some((u.uid, u.gid))),
        _ => Err(StoreError::Managed(
            "running as root, but there is no `postgres` user to run the managed database: \
             create one (useradd -r postgres) or set DATABASE_URL"
                .into(),
        )),
    }
}

/// Whether `uid` can traverse into `dir` (every ancestor searchable).
fn user_can_enter(dir: &Path, uid: Uid, gid: Gid) -> bool {
    if fs::create_dir_all(dir).is_err() {
        return false;
    }
    Command::new("test")
        .arg("-x")
        .arg(dir)
        .uid(uid.as_raw())
        .gid(gid.as_raw())
        .current_dir("/")
        .status()
        .is_ok_and(|s| s.success())
}

/// A stable 64-bit hash for naming the fallback directory.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

fn start_blocking(home: &Path, tuning: Tuning) -> Result<Option<Managed>, StoreError> {
    let Some(bindir) = find_bindir() else {
        return Ok(None);
    };
    let io = |what: &str, p: &Path, e: std::io::Error| {
        StoreError::Managed(format!("cannot {what} {}: {e}", p.display()))
    };
    fs::create_dir_all(home).map_err(|e| io("create", home, e))?;
    let loc = locate(home)?;
    let dir = &loc.cluster_dir;
    if loc.relocated {
        let parent = relocation_parent();
        let mode = if Uid::effective().is_root() {
            0o711
        } else {
            0o700
        };
        let name = dir
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| StoreError::Managed(format!("bad cluster path {}", dir.display())))?;
        secure_cluster_dir(&parent, mode, name, loc.run_as)?;
    } else {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| io("create", dir, e))?;
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
            .map_err(|e| io("chmod", dir, e))?;
        chown_to_server(&loc, dir)?;
    }

    let lock_path = dir.join(".ccproxy.lock");
    let lock_file = File::create(&lock_path).map_err(|e| io("create", &lock_path, e))?;
    let _lock = Flock::lock(lock_file, FlockArg::LockExclusive).map_err(|(_, e)| {
        StoreError::Managed(format!("cannot lock {}: {e}", lock_path.display()))
    })?;

    let data = loc.data_dir();
    if !data.join("PG_VERSION").exists() {
        init_cluster(&bindir, &loc, tuning)?;
    }
    write_settings(&loc, tuning)?;

    let started_by_us = if running_pid(&data).is_some() {
        false
    } else {
        remove_stale_pid(&loc);
        let out = run_as(
            &loc,
            Command::new(bindir.join("pg_ctl"))
                .arg("start")
                .arg("-D")
                .arg(&data)
                .arg("-l")
                .arg(loc.log_file())
                .args(["-w", "-t", "60", "-s"])
                .process_group(0),
        )?;
        if !out.status.success() {
            return Err(StoreError::Managed(format!(
                "the managed database did not start: {}; see {}",
                String::from_utf8_lossy(&out.stderr).trim(),
                loc.log_file().display()
            )));
        }
        true
    };
    Ok(Some(Managed {
        url: loc.url(DATABASE),
        data_dir: data,
        started_by_us,
        cluster_dir: loc.cluster_dir.clone(),
        bindir,
    }))
}

fn init_cluster(bindir: &Path, loc: &Location, tuning: Tuning) -> Result<(), StoreError> {
    let data = loc.data_dir();
    if data.exists() {
        // A half-made data directory from an interrupted initdb.
        fs::remove_dir_all(&data).map_err(|e| {
            StoreError::Managed(format!(
                "cannot remove the incomplete {}: {e}",
                data.display()
            ))
        })?;
    }
    let mut cmd = Command::new(bindir.join("initdb"));
    cmd.arg("-D")
        .arg(&data)
        .args(["-U", SUPERUSER, "-A", "trust", "-E", "UTF8", "--no-locale"]);
    if tuning == Tuning::Throwaway {
        cmd.arg("--no-sync");
    }
    let out = run_as(loc, &mut cmd)?;
    if !out.status.success() {
        return Err(StoreError::Managed(format!(
            "initdb failed for {}: {}",
            data.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    let conf = data.join("postgresql.conf");
    let mut f = fs::OpenOptions::new()
        .append(true)
        .open(&conf)
        .map_err(|e| StoreError::Managed(format!("cannot open {}: {e}", conf.display())))?;
    writeln!(
        f,
        "\n# ccproxy: settings it manages\ninclude_if_exists = 'ccproxy.conf'"
    )
    .map_err(|e| StoreError::Managed(format!("cannot write {}: {e}", conf.display())))?;
    Ok(())
}

/// Rewritten at every start so a moved socket directory follows.
fn write_settings(loc: &Location, tuning: Tuning) -> Result<(), StoreError> {
    let path = loc.data_dir().join("ccproxy.conf");
    let sock = loc.cluster_dir.display().to_string().replace('\'', "''");
    let mut text = format!(
        "# written by ccproxy at every start; edit postgresql.conf instead\n\
         listen_addresses = ''\n\
         unix_socket_directories = '{sock}'\n\
         wal_init_zero = off\n"
    );
    if tuning == Tuning::Throwaway {
        text.push_str("fsync = off\nfull_page_writes = off\nmax_connections = 200\n");
    }
    if fs::read_to_string(&path).is_ok_and(|old| old == text) {
        return Ok(());
    }
    fs::write(&path, text)
        .map_err(|e| StoreError::Managed(format!("cannot write {}: {e}", path.display())))?;
    chown_to_server(loc, &path)
}

fn chown_to_server(loc: &Location, path: &Path) -> Result<(), StoreError> {
    if let Some((uid, gid)) = loc.run_as {
        nix::unistd::chown(path, Some(uid), Some(gid)).map_err(|e| {
            StoreError::Managed(format!(
                "cannot give {} to the postgres user: {e}",
                path.display()
            ))
        })?;
    }
    Ok(())
}

fn run_as(loc: &Location, cmd: &mut Command) -> Result<Output, StoreError> {
    cmd.current_dir("/")
        .env_remove("PGDATA")
        .env_remove("PGHOST")
        .env_remove("PGPORT");
    if let Some((uid, gid)) = loc.run_as {
        cmd.uid(uid.as_raw()).gid(gid.as_raw());
    }
    cmd.output().map_err(|e| {
        StoreError::Managed(format!(
            "cannot run {}: {e}",
            cmd.get_program().to_string_lossy()
        ))
    })
}

/// The postmaster's pid when the one recorded in `postmaster.pid` is alive and is PostgreSQL.
pub fn running_pid(data: &Path) -> Option<i32> {
    let text = fs::read_to_string(data.join("postmaster.pid")).ok()?;
    let pid: i32 = text.lines().next()?.trim().parse().ok()?;
    let comm = fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
    matches!(comm.trim(), "postgres" | "postmaster").then_some(pid)
}

/// A `postmaster.pid` whose process is gone (or is now something else) blocks
/// a start; remove it and the socket lock it guarded.
fn remove_stale_pid(loc: &Location) {
    let pid_file = loc.data_dir().join("postmaster.pid");
    if pid_file.exists() {
        tracing::warn!(path = %pid_file.display(), "removing a stale postmaster.pid");
        let _ = fs::remove_file(&pid_file);
        let _ = fs::remove_file(loc.cluster_dir.join(".s.PGSQL.5432.lock"));
        let _ = fs::remove_file(loc.cluster_dir.join(".s.PGSQL.5432"));
    }
}

/// Create the `ccproxy` database once the server accepts connections.
async fn create_database(m: &Managed) -> Result<(), StoreError> {
    let admin_url = m.url.replacen(&format!("/{DATABASE}?"), "/postgres?", 1);
    let deadline = Instant::now() + Duration::from_secs(30);
    let client = loop {
        match super::connect(&admin_url).await {
            Ok(c) => break c,
            Err(e) if Instant::now() < deadline => {
                tracing::debug!(error = %e, "waiting for the managed database");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => {
                return Err(StoreError::Managed(format!(
                    "the managed database does not accept connections: {e}; see {}",
                    m.cluster_dir.join("server.log").display()
                )))
            }
        }
    };
    let exists = client
        .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&DATABASE])
        .await
        .map_err(StoreError::Db)?
        .is_some();
    if !exists {
        if let Err(e) = client
            .batch_execute(&format!("CREATE DATABASE {DATABASE}"))
            .await
        {
            // Another process won the race.
            if e.code() != Some(&tokio_postgres::error::SqlState::DUPLICATE_DATABASE) {
                return Err(StoreError::Db(e));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fallback_dir_is_keyed_by_home() {
        assert_eq!(fnv1a(b"/root/.ccproxy"), fnv1a(b"/root/.ccproxy"));
        assert_ne!(fnv1a(b"/root/.ccproxy"), fnv1a(b"/home/a/.ccproxy"));
    }

    fn owner() -> Option<(Uid, Gid)> {
        server_identity().ok().flatten()
    }

    #[test]
    fn a_relocated_cluster_dir_is_made_private_and_owned() {
        use std::os::unix::fs::MetadataExt;
        let tmp = tempfile::tempdir().expect("tmp");
        let parent = tmp.path().join("ccproxy");
        let dir = secure_cluster_dir(&parent, 0o711, "pg-1", owner()).expect("create");
        let m = fs::symlink_metadata(&dir).expect("meta");
        assert!(m.is_dir());
        assert_eq!(m.mode() & 0o777, 0o700);
        let want = owner().map_or(Uid::effective().as_raw(), |(u, _)| u.as_raw());
        assert_eq!(m.uid(), want);
        assert_eq!(fs::metadata(&parent).expect("meta").mode() & 0o777, 0o711);
        // Again: an existing directory of ours is accepted.
        assert_eq!(
            secure_cluster_dir(&parent, 0o711, "pg-1", owner()).expect("again"),
            dir
        );
    }

    #[test]
    fn a_symlink_at_the_cluster_path_is_refused_and_not_followed() {
        use std::os::unix::fs::MetadataExt;
        let tmp = tempfile::tempdir().expect("tmp");
        let parent = tmp.path().join("ccproxy");
        fs::DirBuilder::new()
            .mode(0o711)
            .create(&parent)
            .expect("parent");
        let victim = tmp.path().join("victim");
        fs::DirBuilder::new()
            .mode(0o755)
            .create(&victim)
            .expect("victim");
        std::os::unix::fs::symlink(&victim, parent.join("pg-2")).expect("symlink");
        let err = secure_cluster_dir(&parent, 0o711, "pg-2", owner())
            .expect_err("a symlink must be refused")
            .to_string();
        assert!(
            err.contains("symbolic link") && err.contains("pg-2"),
            "{err}"
        );
        let m = fs::metadata(&victim).expect("meta");
        assert_eq!(m.mode() & 0o777, 0o755, "the target was changed");
        assert_eq!(
            m.uid(),
            Uid::effective().as_raw(),
            "the target was given away"
        );
    }

    #[test]
    fn a_plain_file_or_a_foreign_parent_is_a_clear_error() {
        let tmp = tempfile::tempdir().expect("tmp");
        let parent = tmp.path().join("ccproxy");
        fs::DirBuilder::new()
            .mode(0o711)
            .create(&parent)
            .expect("parent");
        fs::write(parent.join("pg-3"), b"squatter").expect("file");
        let err = secure_cluster_dir(&parent, 0o711, "pg-3", owner())
            .expect_err("a file must be refused")
            .to_string();
        assert!(
            err.contains("not a directory") && err.contains("remove it"),
            "{err}"
        );
        // A parent anyone can write to is not trusted.
        let open = tmp.path().join("open");
        fs::DirBuilder::new()
            .mode(0o777)
            .create(&open)
            .expect("open");
        fs::set_permissions(&open, fs::Permissions::from_mode(0o777)).expect("chmod");
        let err = secure_cluster_dir(&open, 0o711, "pg-4", owner())
            .expect_err("a world-writable parent must be refused")
            .to_string();
        assert!(err.contains("mode 777"), "{err}");
        // A symlinked parent likewise.
        let link = tmp.path().join("link");
        std::os::unix::fs::symlink(&parent, &link).expect("symlink");
        let err = secure_cluster_dir(&link, 0o711, "pg-5", owner())
            .expect_err("a symlinked parent must be refused")
            .to_string();
        assert!(err.contains("symbolic link"), "{err}");
    }

    #[test]
    fn long_homes_relocate_the_socket() {
        let long = PathBuf::from(format!("/tmp/{}", "x".repeat(120)));
        let loc = locate(&long).expect("locate");
        assert!(loc.relocated);
        assert!(loc.cluster_dir.starts_with(relocation_parent()));
        assert!(loc.url("ccproxy").starts_with(&format!(
            "postgresql:///ccproxy?host={}/pg-",
            relocation_parent().display()
        )));
    }
}
