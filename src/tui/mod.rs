//! The terminal UI: live flows and keyboard-driven inspection.
//!
//! `app` holds the state and applies actions without I/O; `event` merges
//! terminal input, ticks and the engine feed into one stream; `keymap` maps
//! keys to actions; `ui` draws. This module runs the loop: drain pending
//! events, carry out effects, draw at most once per frame.

pub mod app;
pub mod body;
pub mod event;
pub mod filter;
pub mod keymap;
pub mod sse;
pub mod ui;
pub mod websocket;

use std::io::Write as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use base64::Engine as _;
use chrono::Utc;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use self::app::{Action, App, Effect, HISTORY_PAGE};
use self::event::{Event, Events};
use crate::cli::Cli;
use crate::config::Config;
use crate::engine::{self, Engine, Feed, Mode};
use crate::store::query::Reader;

/// Shortest time between two frames (about 30 frames per second).
const FRAME: Duration = Duration::from_millis(33);
/// Header clock and rate refresh.
const TICK: Duration = Duration::from_millis(250);
/// Most events applied before a frame is drawn, so a flood cannot freeze the screen.
const DRAIN_MAX: usize = 20_000;

/// Errors of the TUI that a user can act on.
#[derive(Debug, thiserror::Error)]
pub enum TuiError {
    /// No terminal to draw on.
    #[error("cannot use the terminal ({0}); run `ccproxy tui` in an interactive terminal, or `ccproxy start --headless`")]
    Terminal(std::io::Error),
}

/// `ccproxy tui`: attach to the running engine, or start one in-process.
pub async fn command(cli: &Cli) -> anyhow::Result<i32> {
    let cfg = Arc::new(crate::load_config(cli, None, None)?);
    let _log = init_logging(&cfg);
    if let Some(feed) = engine::attach(&cfg).await? {
        return run_source(cfg, feed, History::Connect, "attached").await;
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
    let result = run_source(Arc::clone(&cfg), feed, History::Connect, "in-process").await;
    engine.shutdown().await;
    result
}

/// The TUI on any feed, with optional stored history.
pub async fn run(
    cfg: Arc<Config>,
    feed: mpsc::Receiver<Feed>,
    history: Option<Reader>,
) -> anyhow::Result<i32> {
    let _log = init_logging(&cfg);
    let history = history.map_or(History::Off, |r| History::Ready(Arc::new(r)));
    run_source(cfg, feed, history, "live").await
}

/// Where stored history comes from.
enum History {
    /// None.
    Off,
    /// This reader.
    Ready(Arc<Reader>),
    /// Connect in the background, so a slow database never delays the first frame.
    Connect,
}

fn connect_history(cfg: Arc<Config>, tx: mpsc::Sender<Event>) {
    tokio::spawn(async move {
        match Reader::connect(&cfg).await {
            Ok(Some(r)) => {
                let _ = tx.send(Event::HistoryReady(Arc::new(r))).await;
            }
            Ok(None) => tracing::info!("storage is off: no stored history"),
            Err(e) => tracing::warn!(error = %format!("{e:#}"), "stored history unavailable"),
        }
    });
}

/// Puts the terminal back (raw mode off, main screen) however the loop ends.
struct TerminalGuard;

impl Drop for TerminalGuard {
    fn drop(&mut self) {
        ratatui::restore();
    }
}

async fn run_source(
    cfg: Arc<Config>,
    feed: mpsc::Receiver<Feed>,
    history: History,
    source: &str,
) -> anyhow::Result<i32> {
    // try_init also installs a panic hook that restores the terminal first.
    let mut terminal = ratatui::try_init().map_err(TuiError::Terminal)?;
    let guard = TerminalGuard;
    let cancel = CancellationToken::new();
    let mut events = Events::start(feed, TICK, true, cancel.clone());
    let mut reader = match history {
        History::Ready(r) => Some(r),
        History::Connect => {
            connect_history(Arc::clone(&cfg), events.sender());
            None
        }
        History::Off => None,
    };
    let mut app = App::new(source, reader.is_some(), Utc::now());
    tracing::info!(source, "tui started");
    let result = event_loop(&mut terminal, &mut app, &mut events, &cfg, &mut reader).await;
    cancel.cancel();
    drop(guard);
    tracing::info!("tui stopped");
    result.map(|()| 0)
}

async fn event_loop(
    terminal: &mut ratatui::DefaultTerminal,
    app: &mut App,
    events: &mut Events,
    cfg: &Config,
    reader: &mut Option<Arc<Reader>>,
) -> anyhow::Result<()> {
    let mut last_draw: Option<Instant> = None;
    let mut dirty = true;
    loop {
        let since = last_draw.map_or(FRAME, |t| t.elapsed());
        if dirty && since >= FRAME {
            app.prepare();
            terminal
                .draw(|f| ui::draw(f, app))
                .context("drawing the screen failed")?;
            last_draw = Some(Instant::now());
            dirty = false;
        }
        let ev = if dirty {
            match tokio::time::timeout(FRAME.saturating_sub(since), events.next()).await {
                Ok(ev) => ev,
                Err(_) => continue,
            }
        } else {
            events.next().await
        };
        let Some(ev) = ev else { break };
        handle(app, reader, ev);
        let mut drained = 1;
        while drained < DRAIN_MAX {
            let Some(ev) = events.try_next() else { break };
            handle(app, reader, ev);
            drained += 1;
        }
        dirty = true;
        for effect in app.take_effects() {
            perform(effect, cfg, reader.as_ref(), events.sender());
        }
        if app.quit {
            break;
        }
    }
    Ok(())
}

fn handle(app: &mut App, reader: &mut Option<Arc<Reader>>, ev: Event) {
    match ev {
        Event::HistoryReady(r) => {
            *reader = Some(r);
            app.update(Action::HistoryAvailable);
        }
        Event::Key(k) => {
            if let Some(a) = keymap::action(app, k) {
                app.update(a);
            }
        }
        Event::Resize => {}
        Event::Tick => app.update(Action::Tick(Utc::now())),
        Event::Feed(f) => app.update(Action::Feed(f)),
        Event::FeedClosed => app.update(Action::Notice(
            "the engine feed closed (engine stopped?): Q quits".into(),
        )),
        Event::Action(a) => app.update(a),
    }
}

fn perform(effect: Effect, cfg: &Config, reader: Option<&Arc<Reader>>, tx: mpsc::Sender<Event>) {
    let notice = |tx: mpsc::Sender<Event>, text: String| async move {
        let _ = tx.send(Event::Action(Action::Notice(text))).await;
    };
    match effect {
        Effect::Copy(text) => {
            let osc = format!(
                "\x1b]52;c;{}\x07",
                base64::engine::general_purpose::STANDARD.encode(text.as_bytes())
            );
            let mut out = std::io::stdout().lock();
            let ok = out.write_all(osc.as_bytes()).and_then(|()| out.flush());
            if let Err(e) = ok {
                tracing::warn!(error = %e, "OSC 52 copy failed");
            }
        }
        Effect::SaveBody { name, bytes } => {
            let dir = cfg.home_path("saved");
            tokio::spawn(async move {
                let path = dir.join(&name);
                let result = async {
                    tokio::fs::create_dir_all(&dir).await?;
                    tokio::fs::write(&path, &bytes).await
                }
                .await;
                let text = match result {
                    Ok(()) => format!("saved {} bytes to {}", bytes.len(), path.display()),
                    Err(e) => format!("cannot save to {}: {e}", path.display()),
                };
                notice(tx, text).await;
            });
        }
        Effect::ExportHar(flows) => {
            let dir = cfg.home_path("exports");
            let name = format!("flows-{}.har", Utc::now().format("%Y%m%d-%H%M%S"));
            tokio::spawn(async move {
                let path: PathBuf = dir.join(name);
                let n = flows.len();
                let p = path.clone();
                let result = tokio::task::spawn_blocking(move || {
                    std::fs::create_dir_all(p.parent().unwrap_or(&p)).map_err(|e| e.to_string())?;
                    crate::export::write_har(&crate::export::to_har_arcs(&flows), &p)
                        .map_err(|e| e.to_string())
                })
                .await;
                let text = match result {
                    Ok(Ok(())) => format!("exported {n} flows as HAR to {}", path.display()),
                    Ok(Err(e)) => e,
                    Err(e) => format!("HAR export failed: {e}"),
                };
                notice(tx, text).await;
            });
        }
        Effect::LoadOlder { before } => {
            let Some(reader) = reader.cloned() else {
                return;
            };
            tokio::spawn(async move {
                match reader.page(before, HISTORY_PAGE).await {
                    Ok(flows) => {
                        let exhausted = (flows.len() as i64) < HISTORY_PAGE;
                        let _ = tx
                            .send(Event::Action(Action::History { flows, exhausted }))
                            .await;
                    }
                    Err(e) => {
                        tracing::warn!(error = %format!("{e:#}"), "history page failed");
                        let _ = tx
                            .send(Event::Action(Action::History {
                                flows: Vec::new(),
                                exhausted: true,
                            }))
                            .await;
                        notice(tx, format!("cannot load stored flows: {e:#}")).await;
                    }
                }
            });
        }
    }
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
