//! `ccproxy status [--json]` and `ccproxy mitm status`, and the summary block
//! `start` prints when an engine comes up.

use std::time::Duration;

use crate::cli::StatusArgs;
use crate::config::Config;
use crate::engine::control;
use crate::engine::pidfile::{self, Liveness};
use crate::engine::{self, EngineStatus};
use crate::home::Home;

/// `ccproxy status` / `ccproxy mitm status`.
///
/// Exit code 0 when an engine (or, for `status`, a standalone gateway) runs;
/// 1 when nothing runs or the engine does not answer.
pub async fn status(cfg: &Config, args: &StatusArgs, mitm_only: bool) -> anyhow::Result<i32> {
    let home = Home::new(cfg);
    if let Liveness::Running(rec) = pidfile::check(&home.engine_lock()) {
        if let Ok(Some(st)) = control::request_status(&home.socket()).await {
            if args.json {
                println!("{}", serde_json::to_string_pretty(&st)?);
            } else {
                println!("{}", human_status(cfg, &st));
                if let Liveness::Running(gw) = pidfile::check(&home.gateway_lock()) {
                    if gw.owner.is_none() {
                        println!(
                            "litellm   running alone (pid {}) on {}:{}",
                            gw.pid, cfg.litellm.host, cfg.litellm.port
                        );
                    }
                }
            }
            return Ok(0);
        }
        eprintln!(
            "ccproxy: the engine (pid {}) runs but does not answer on {}: it may still be starting; see `ccproxy logs`",
            rec.pid,
            home.socket().display()
        );
        return Ok(1);
    }
    if !mitm_only {
        if let Liveness::Running(rec) = pidfile::check(&home.gateway_lock()) {
            if let Some(owner) = rec.owner {
                eprintln!(
                    "ccproxy is not running, but its gateway (pid {}) outlived engine pid {owner}: `ccproxy stop` cleans it up",
                    rec.pid
                );
                return Ok(1);
            }
            if args.json {
                eprintln!(
                    "ccproxy: no capture engine runs (LiteLLM alone, pid {})",
                    rec.pid
                );
                return Ok(1);
            }
            println!(
                "LiteLLM running alone (pid {}) on {}:{}; no capture engine (start one with `ccproxy stop && ccproxy start --mitm -d`)",
                rec.pid, cfg.litellm.host, cfg.litellm.port
            );
            return Ok(0);
        }
    }
    let hint = if mitm_only {
        "ccproxy mitm start -d"
    } else {
        "ccproxy start --mitm -d"
    };
    eprintln!("ccproxy is not running (start it with `{hint}`)");
    Ok(1)
}

/// Where the reverse listener sends requests: the gateway, `ccproxy.upstream`, or the providers.
fn reverse_target(st: &EngineStatus, cfg: &Config) -> String {
    match (&st.gateway, &cfg.upstream) {
        (Some(g), _) => format!("gateway on port {}", g.port),
        (None, Some(u)) => u.clone(),
        (None, None) => format!("{} / {}", engine::PROVIDERS.0, engine::PROVIDERS.1),
    }
}

/// The short block printed when an engine comes up.
pub fn summary(st: &EngineStatus, cfg: &Config) -> String {
    let mut lines = vec![format!("  mode     {}", st.mode)];
    if let Some(r) = &st.reverse {
        lines.push(format!(
            "  reverse  http://{r} → {}",
            reverse_target(st, cfg)
        ));
    }
    if let Some(f) = &st.forward {
        lines.push(format!("  forward  http://{f}"));
    }
    lines.push(format!("  storage  {}", storage_line(st)));
    lines.join("\n")
}

fn storage_line(st: &EngineStatus) -> String {
    let s = &st.storage;
    let state = serde_json::to_value(s.state)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default();
    let mut line = format!(
        "{state} ({})",
        if s.source.is_empty() {
            "memory"
        } else {
            &s.source
        }
    );
    if let Some(db) = &s.database {
        line.push(' ');
        line.push_str(db);
    }
    line
}

fn human_status(cfg: &Config, st: &EngineStatus) -> String {
    let up = chrono::Utc::now().signed_duration_since(st.started_at);
    let up = humantime::format_duration(Duration::from_secs(up.num_seconds().max(0) as u64));
    let mut out = vec![
        format!(
            "engine    running (pid {}, since {}, up {up})",
            st.pid,
            st.started_at.format("%Y-%m-%d %H:%M:%S UTC")
        ),
        format!("mode      {}", st.mode),
    ];
    if let Some(r) = &st.reverse {
        out.push(format!(
            "reverse   http://{r} → {}",
            reverse_target(st, cfg)
        ));
    }
    if let Some(f) = &st.forward {
        out.push(format!("forward   http://{f}"));
    }
    if let Some(g) = &st.gateway {
        out.push(format!(
            "gateway   pid {}, port {} ({})",
            g.pid,
            g.port,
            g.command.join(" ")
        ));
    }
    let s = &st.storage;
    out.push(format!("storage   {}", storage_line(st)));
    out.push(format!(
        "          written {} · queued {} · spooled {} ({} B held) · replayed {} · dropped {}",
        s.written, s.queued, s.spooled, s.spool_bytes, s.replayed, s.dropped
    ));
    if s.restarts > 0 {
        out.push(format!(
            "          managed database restarted {} time(s)",
            s.restarts
        ));
    }
    if let Some(c) = &s.connection {
        let tls = match (&c.tls_version, c.tls) {
            (Some(v), true) => format!("TLS ({v})"),
            _ => "no TLS".to_string(),
        };
        out.push(format!(
            "          server {} · {tls} · sslmode {}",
            crate::capture::sanitize::sanitize(&c.server),
            c.sslmode
        ));
    }
    if let Some(id) = &s.identity {
        out.push(format!(
            "          rows recorded as {} / {}",
            crate::capture::sanitize::sanitize(&id.host),
            crate::capture::sanitize::sanitize(&id.user)
        ));
    }
    if let Some(e) = &s.last_error {
        out.push(format!(
            "          last error: {}",
            crate::capture::sanitize::sanitize(e)
        ));
    }
    if let Some(e) = &s.spool_error {
        out.push(format!(
            "          spool error: {}",
            crate::capture::sanitize::sanitize(e)
        ));
    }
    let f = &st.flows;
    out.push(format!(
        "flows     {} started · {} completed · {} in flight · {} errors",
        f.started, f.completed, f.in_flight, f.errors
    ));
    out.push(format!(
        "by type   llm {} · mcp {} · web {} · other {}",
        f.llm, f.mcp, f.web, f.other
    ));
    out.join("\n")
}
