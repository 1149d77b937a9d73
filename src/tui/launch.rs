//! The old ways in, kept so this branch builds until `cmd/tui` and `cmd/start`
//! own them: decide between attaching and an in-process engine, route logs
//! to a file, connect the stored history, then call [`super::run`].
//! Behaviour is unchanged. The lead deletes this file at the merge.

use std::sync::Arc;

use anyhow::Context as _;
use futures::future::BoxFuture;
use tokio::sync::mpsc;

use super::TuiSetup;
use crate::cli::Cli;
use crate::config::Config;
use crate::engine::{self, Engine, Feed, Mode};
use crate::flow::history::FlowHistory;
use crate::store::query::Reader;

/// `ccproxy tui`: attach to the running engine, or start one in-process.
pub async fn command(cli: &Cli) -> anyhow::Result<i32> {
    let cfg = Arc::new(crate::load_config(cli, None, None)?);
    let _log = init_logging(&cfg);
    if let Some(feed) = engine::attach(&cfg).await? {
        return run_source(&cfg, feed, "attached");
    }
    let engine = Engine::start(Arc::clone(&cfg), Mode::Dual)
        .await
        .context("no engine was running and starting one in-process failed")?;
    run_with_engine(cfg, engine).await
}

/// The TUI on an in-process engine (`start` without `--headless`); stops the engine on exit.
pub async fn run_with_engine(cfg: Arc<Config>, engine: Engine) -> anyhow::Result<i32> {
    let _log = init_logging(&cfg);
    let feed = engine.feed();
    let result = run_source(&cfg, feed, "in-process");
    engine.shutdown().await;
    result
}

fn run_source(
    cfg: &Arc<Config>,
    feed: mpsc::Receiver<Feed>,
    source: &'static str,
) -> anyhow::Result<i32> {
    let c = Arc::clone(cfg);
    let history: BoxFuture<'static, Option<Arc<dyn FlowHistory>>> = Box::pin(async move {
        match Reader::connect(&c).await {
            Ok(Some(r)) => Some(Arc::new(r) as Arc<dyn FlowHistory>),
            Ok(None) => {
                tracing::info!("storage is off: no stored history");
                None
            }
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), "stored history unavailable");
                None
            }
        }
    });
    super::run(TuiSetup {
        feed,
        history: Some(history),
        saved_dir: cfg.home_path("saved"),
        exports_dir: cfg.home_path("exports"),
        source,
    })?;
    Ok(0)
}

/// Route `tracing` to `<home>/ccproxy.log` while the TUI owns the terminal,
/// so no log line ever lands on the screen. Global when no subscriber is set
/// yet (engine tasks on every thread log to the file); otherwise for this thread.
fn init_logging(cfg: &Config) -> Option<tracing::subscriber::DefaultGuard> {
    let path = cfg.home_path("ccproxy.log");
    if let Some(dir) = path.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    let file = Arc::new(
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .ok()?,
    );
    let build = || {
        let filter = tracing_subscriber::EnvFilter::try_from_env("CCPROXY_LOG")
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
        tracing_subscriber::fmt()
            .with_writer(Arc::clone(&file))
            .with_ansi(false)
            .with_env_filter(filter)
            .finish()
    };
    if tracing::subscriber::set_global_default(build()).is_ok() {
        return None;
    }
    Some(tracing::subscriber::set_default(build()))
}
