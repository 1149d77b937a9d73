//! Pid files that survive pid reuse: each records the pid, the kernel start
//! time of that process and its executable, so a recycled pid is recognised
//! as stale instead of being signalled.
//!
//! Format (first line stays a bare pid so `kill $(head -1 ccproxy.lock)` works):
//! ```text
//! 4242
//! start=123456
//! exe=/usr/local/bin/ccproxy
//! owner=4200
//! mode=dual-gateway
//! ```

use std::fmt::Write as _;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, killpg, Signal};
use nix::unistd::Pid;

/// One pid file's content.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PidRecord {
    /// The process id.
    pub pid: u32,
    /// Start time in clock ticks since boot (`/proc/<pid>/stat` field 22).
    pub start_ticks: Option<u64>,
    /// The executable (`/proc/<pid>/exe`).
    pub exe: Option<PathBuf>,
    /// The engine that started this process (gateway children), if any.
    pub owner: Option<u32>,
    /// Mode tag: the engine's `RunMode` name (`dual-gateway`, `dual-direct`, `forward`) or `gateway`.
    pub mode: Option<String>,
}

/// What a pid file says about its process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Liveness {
    /// The recorded process runs.
    Running(PidRecord),
    /// The file existed but its process is gone (or the pid was reused); the file was removed.
    Stale(PidRecord),
    /// No pid file.
    Absent,
}

impl PidRecord {
    /// A record for a live process, read from `/proc`.
    pub fn for_pid(pid: u32) -> Self {
        Self {
            pid,
            start_ticks: proc_stat(pid).map(|s| s.start_ticks),
            exe: std::fs::read_link(format!("/proc/{pid}/exe")).ok(),
            owner: None,
            mode: None,
        }
    }

    /// Set the owner and mode tags.
    #[must_use]
    pub fn tagged(mut self, owner: Option<u32>, mode: &str) -> Self {
        self.owner = owner;
        self.mode = Some(mode.to_string());
        self
    }

    /// Parse the file format; `None` when the first line is not a pid.
    pub fn parse(text: &str) -> Option<Self> {
        let mut lines = text.lines();
        let pid = lines.next()?.trim().parse().ok()?;
        let mut rec = Self {
            pid,
            ..Self::default()
        };
        for line in lines {
            match line.split_once('=') {
                Some(("start", v)) => rec.start_ticks = v.trim().parse().ok(),
                Some(("exe", v)) => rec.exe = Some(PathBuf::from(v.trim())),
                Some(("owner", v)) => rec.owner = v.trim().parse().ok(),
                Some(("mode", v)) => rec.mode = Some(v.trim().to_string()),
                _ => {}
            }
        }
        Some(rec)
    }

    /// The file format.
    pub fn render(&self) -> String {
        let mut s = format!("{}\n", self.pid);
        if let Some(t) = self.start_ticks {
            let _ = writeln!(s, "start={t}");
        }
        if let Some(e) = &self.exe {
            let _ = writeln!(s, "exe={}", e.display());
        }
        if let Some(o) = self.owner {
            let _ = writeln!(s, "owner={o}");
        }
        if let Some(m) = &self.mode {
            let _ = writeln!(s, "mode={m}");
        }
        s
    }

    /// True when the recorded process still runs and is the same process
    /// (same start time; zombies count as gone).
    pub fn is_alive(&self) -> bool {
        let Some(stat) = proc_stat(self.pid) else {
            return false;
        };
        if matches!(stat.state, 'Z' | 'X') {
            return false;
        }
        match self.start_ticks {
            Some(t) => t == stat.start_ticks,
            None => match (
                &self.exe,
                std::fs::read_link(format!("/proc/{}/exe", self.pid)),
            ) {
                (Some(want), Ok(have)) => same_exe(want, &have),
                _ => true,
            },
        }
    }
}

fn same_exe(a: &Path, b: &Path) -> bool {
    let strip = |p: &Path| {
        let s = p.to_string_lossy();
        s.strip_suffix(" (deleted)").unwrap_or(&s).to_string()
    };
    strip(a) == strip(b)
}

struct ProcStat {
    state: char,
    start_ticks: u64,
}

fn proc_stat(pid: u32) -> Option<ProcStat> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may contain spaces and parentheses: skip past the last ')'.
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    Some(ProcStat {
        state: fields.first()?.chars().next()?,
        start_ticks: fields.get(19)?.parse().ok()?,
    })
}

/// Read a pid file; `Ok(None)` when it does not exist or does not hold a pid.
pub fn read(path: &Path) -> io::Result<Option<PidRecord>> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(PidRecord::parse(&text)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Look at a pid file and remove it when its process is gone.
pub fn check(path: &Path) -> Liveness {
    match read(path) {
        Ok(Some(rec)) if rec.is_alive() => Liveness::Running(rec),
        Ok(Some(rec)) => {
            let _ = std::fs::remove_file(path);
            Liveness::Stale(rec)
        }
        Ok(None) => {
            // Pid files appear whole (hard link or rename of a written temp
            // file), so one without a pid is garbage, not a start in progress.
            if path.exists() {
                let _ = std::fs::remove_file(path);
            }
            Liveness::Absent
        }
        Err(_) => Liveness::Absent,
    }
}

/// Create `path` holding `rec`, atomically and only if no live process holds it.
/// Returns the holder when one runs.
pub fn acquire(path: &Path, rec: &PidRecord) -> io::Result<Result<(), PidRecord>> {
    let tmp = path.with_extension(format!("tmp.{}", rec.pid));
    std::fs::write(&tmp, rec.render())?;
    let result = (|| {
        for _ in 0..3 {
            match std::fs::hard_link(&tmp, path) {
                Ok(()) => return Ok(Ok(())),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    if let Liveness::Running(holder) = check(path) {
                        return Ok(Err(holder));
                    }
                }
                Err(e) => return Err(e),
            }
        }
        Err(io::Error::other(format!(
            "{} keeps reappearing: another ccproxy is starting",
            path.display()
        )))
    })();
    let _ = std::fs::remove_file(&tmp);
    result
}

/// Write (replace) a pid file.
pub fn write(path: &Path, rec: &PidRecord) -> io::Result<()> {
    let tmp = path.with_extension(format!("tmp.{}", rec.pid));
    std::fs::write(&tmp, rec.render())?;
    std::fs::rename(&tmp, path)
}

/// Remove a pid file only if it still names `pid` (never someone else's).
pub fn remove_if_owned(path: &Path, pid: u32) {
    if matches!(read(path), Ok(Some(rec)) if rec.pid == pid) {
        let _ = std::fs::remove_file(path);
    }
}

/// SIGTERM, wait up to `grace` for the process to go, then SIGKILL.
/// With `group`, signal the whole process group led by the pid.
/// Returns true when it had to use SIGKILL.
pub async fn terminate(rec: &PidRecord, grace: Duration, group: bool) -> bool {
    let pid = Pid::from_raw(rec.pid as i32);
    // Members of the group may outlive its leader; sweep them up, but only
    // while the group id cannot belong to someone else.
    let sweep = || {
        if group && group_is_ours(rec) {
            let _ = killpg(pid, Signal::SIGKILL);
        }
    };
    if !rec.is_alive() {
        sweep();
        return false;
    }
    if group {
        let _ = killpg(pid, Signal::SIGTERM);
    }
    let _ = kill(pid, Signal::SIGTERM);
    if wait_gone(rec, grace).await {
        sweep();
        return false;
    }
    if group {
        let _ = killpg(pid, Signal::SIGKILL);
    }
    let _ = kill(pid, Signal::SIGKILL);
    wait_gone(rec, Duration::from_secs(5)).await;
    true
}

/// True unless the pid now names a different live process (a reused pid
/// would make the group id someone else's). Linux never hands out a pid
/// that is still in use as a process group id, so a vanished leader's group
/// is still ours.
fn group_is_ours(rec: &PidRecord) -> bool {
    match proc_stat(rec.pid) {
        None => true,
        Some(stat) => {
            matches!(stat.state, 'Z' | 'X') || rec.start_ticks.is_none_or(|t| t == stat.start_ticks)
        }
    }
}

/// Poll until the process is gone; false on timeout.
pub async fn wait_gone(rec: &PidRecord, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if !rec.is_alive() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_and_liveness() {
        let me = PidRecord::for_pid(std::process::id()).tagged(Some(1), "dual");
        let back = PidRecord::parse(&me.render()).expect("parse");
        assert_eq!(back, me);
        assert!(back.is_alive());
        let reused = PidRecord {
            start_ticks: me.start_ticks.map(|t| t + 1),
            ..me.clone()
        };
        assert!(!reused.is_alive(), "a different start time means pid reuse");
        assert_eq!(PidRecord::parse("4242\n").map(|r| r.pid), Some(4242));
        assert_eq!(PidRecord::parse("nope\n"), None);
    }

    #[test]
    fn acquire_refuses_live_holder_and_replaces_stale() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("x.lock");
        let me = PidRecord::for_pid(std::process::id());
        assert_eq!(acquire(&path, &me).expect("io"), Ok(()));
        let other = PidRecord {
            pid: me.pid,
            ..PidRecord::default()
        };
        assert_eq!(acquire(&path, &other).expect("io"), Err(me.clone()));
        let dead = PidRecord {
            start_ticks: Some(1),
            ..me.clone()
        };
        write(&path, &dead).expect("write");
        assert!(matches!(check(&path), Liveness::Stale(_)));
        assert!(!path.exists());
        write(&path, &dead).expect("write");
        assert_eq!(acquire(&path, &me).expect("io"), Ok(()));
        assert_eq!(read(&path).expect("read"), Some(me));
    }
}
