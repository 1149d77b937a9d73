//! `ccproxy tui`: attach to the running engine, or start one in this process
//! and stop it when the TUI quits. The TUI itself only draws what the feed
//! brings; this command decides where the feed comes from, and sets up logging
//! (to `<home>/ccproxy.log`, so no log line lands on the screen).

use std::sync::Arc;

use anyhow::Context as _;
use tokio::sync::mpsc;

use super::logging;
use crate::cli::Cli;
use crate::config::Config;
use crate::engine::{Engine, Feed, Mode};
use crate::flow::history::FlowHistory;
use crate::home::Home;
use crate::store::query::Reader;

/// `ccproxy tui`.
pub async fn tui(cli: &Cli) -> anyhow::Result<i32> {
    let cfg = Arc::new(super::config(cli)?);
    let home = Home::new(&cfg);
    let _log = logging::to_file(&home.engine_log());
    if let Some(feed) = crate::engine::attach(&cfg).await? {
        show(setup(&cfg, feed, "attached")).await?;
        return Ok(0);
    }
    let engine = Engine::start(Arc::clone(&cfg), Mode::Dual)
        .await
        .context("no engine was running and starting one in-process failed")?;
    on_engine(cfg, engine).await
}

/// The TUI on an in-process engine (`tui` with no engine running, `start`
/// without `--headless`); stops the engine when the TUI quits.
pub async fn on_engine(cfg: Arc<Config>, engine: Engine) -> anyhow::Result<i32> {
    let home = Home::new(&cfg);
    let _log = logging::to_file(&home.engine_log());
    let result = show(setup(&cfg, engine.feed(), "in-process")).await;
    engine.shutdown().await;
    result?;
    Ok(0)
}

/// Run the TUI: it draws on its own thread and steps off the async worker
/// while it runs, so no proxy task waits on it.
async fn show(setup: crate::tui::TuiSetup) -> anyhow::Result<()> {
    crate::tui::run(setup)?;
    Ok(())
}

fn setup(
    cfg: &Arc<Config>,
    feed: mpsc::Receiver<Feed>,
    source: &'static str,
) -> crate::tui::TuiSetup {
    let home = Home::new(cfg);
    let cfg = Arc::clone(cfg);
    crate::tui::TuiSetup {
        feed,
        // Connected in the background, so a slow database never delays the first frame.
        history: Some(Box::pin(async move {
            match Reader::connect(&cfg).await {
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
        })),
        saved_dir: home.saved(),
        exports_dir: home.exports(),
        source,
    }
}
