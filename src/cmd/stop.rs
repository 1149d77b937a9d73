//! `ccproxy stop` and `ccproxy mitm stop`: the engine, its (or a standalone)
//! gateway, and the managed database.

use std::time::Duration;

use crate::config::Config;
use crate::engine;
use crate::engine::pidfile::{self, Liveness};
use crate::home::Home;

/// How long `stop` waits after SIGTERM before SIGKILL. The engine itself
/// gives its gateway and its store a few seconds each.
pub const STOP_GRACE: Duration = Duration::from_secs(15);

/// `ccproxy stop`.
pub async fn stop(cfg: &Config) -> anyhow::Result<i32> {
    stop_all(cfg, true).await
}

/// Stop the engine (and with `everything`, a standalone gateway and the managed database).
pub async fn stop_all(cfg: &Config, everything: bool) -> anyhow::Result<i32> {
    let mut said = false;
    let home = Home::new(cfg);
    let lock = home.engine_lock();
    let mut engine_pid = None;
    match pidfile::check(&lock) {
        Liveness::Running(rec) => {
            let killed = pidfile::terminate(&rec, STOP_GRACE, false).await;
            pidfile::remove_if_owned(&lock, rec.pid);
            if killed {
                println!(
                    "stopped ccproxy engine (pid {}) with SIGKILL after {} s",
                    rec.pid,
                    STOP_GRACE.as_secs()
                );
            } else {
                println!("stopped ccproxy engine (pid {})", rec.pid);
            }
            engine_pid = Some(rec.pid);
            said = true;
        }
        Liveness::Stale(rec) => {
            println!("removed a stale pid file (engine pid {} was gone)", rec.pid);
            engine_pid = Some(rec.pid);
            said = true;
        }
        Liveness::Absent => {}
    }
    if !matches!(pidfile::check(&lock), Liveness::Running(_)) {
        let _ = std::fs::remove_file(home.socket());
    }
    let gw_lock = home.gateway_lock();
    if let Liveness::Running(rec) = pidfile::check(&gw_lock) {
        let ours = rec.owner.is_some() && rec.owner == engine_pid;
        let orphan = rec.owner.is_some() && !matches!(pidfile::check(&lock), Liveness::Running(_));
        if everything || ours || orphan {
            pidfile::terminate(&rec, engine::GATEWAY_GRACE, true).await;
            pidfile::remove_if_owned(&gw_lock, rec.pid);
            println!("stopped the gateway (pid {})", rec.pid);
            said = true;
        }
    }
    if everything {
        match crate::store::managed::stop(cfg).await {
            Ok(true) => {
                println!("stopped the managed database");
                said = true;
            }
            Ok(false) => {}
            Err(e) => eprintln!("ccproxy: could not stop the managed database: {e}"),
        }
    }
    if !said {
        println!("ccproxy is not running");
    }
    Ok(0)
}
