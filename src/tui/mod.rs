//! The terminal UI: live flows and keyboard-driven inspection.
//!
//! [`run`] is the only entry: it takes a feed, an optional stored history and
//! where to write files, and knows nothing of engines, configuration or the
//! store. The loop runs on its own thread with its own runtime, so drawing
//! and refiltering never hold a proxy worker.
//!
//! `app` routes [`Action`]s into the state (`model/`) without I/O; `event`
//! merges terminal input, ticks and the feed into one stream; `bindings` maps
//! keys to actions; `columns` lists the table's columns; `ui` draws; `views`
//! routes the Sessions and Diff views. The loop:
//! drain pending events, carry out effects, draw at most once per frame.

pub mod action;
pub mod app;
pub mod bindings;
pub mod body;
pub mod columns;
pub mod curl;
pub mod event;
pub mod model;
pub mod summary;
pub mod ui;
mod views;
pub mod websocket;

/// The old entry points, kept until `cmd/` owns them (removed at the merge).
use std::io::Write as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use chrono::Utc;
use futures::future::BoxFuture;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::instrument::WithSubscriber as _;

use self::app::{Action, App, Effect, HISTORY_PAGE};
use self::event::{Event, Events};
use crate::engine::status::Feed;
use crate::flow::history::FlowHistory;

/// Shortest time between two frames (about 30 frames per second).
const FRAME: Duration = Duration::from_millis(33);
/// Header clock and rate refresh.
const TICK: Duration = Duration::from_millis(250);
/// Most events applied before a frame is drawn, so a flood cannot freeze the screen.
const DRAIN_MAX: usize = 20_000;

/// Everything the TUI needs from whoever starts it.
pub struct TuiSetup {
    /// Engine events, status and lag, in-process or over the control socket.
    pub feed: mpsc::Receiver<Feed>,
    /// Stored history, when there may be some: awaited in the background so
    /// a slow database never delays the first frame (`None` from it: no history).
    pub history: Option<BoxFuture<'static, Option<Arc<dyn FlowHistory>>>>,
    /// Where `b` saves bodies.
    pub saved_dir: PathBuf,
    /// Where `w` writes HAR files.
    pub exports_dir: PathBuf,
    /// Where the feed comes from, shown in the header (`attached`, `in-process`).
    pub source: &'static str,
}

/// Errors of the TUI that a user can act on.
#[derive(Debug, thiserror::Error)]
pub enum TuiError {
    /// No terminal to draw on.
    #[error("cannot use the terminal ({0}); run `ccproxy tui` in an interactive terminal, or `ccproxy start --headless`")]
    Terminal(std::io::Error),
    /// The terminal went away while drawing.
    #[error("drawing the screen failed: {0}")]
    Draw(std::io::Error),
    /// The TUI's thread or runtime could not start.
    #[error("cannot start the TUI thread: {0}")]
    Thread(std::io::Error),
}

/// Run the TUI until the user quits. Blocks the calling thread; the loop runs
/// on a thread of its own (on a multi-threaded tokio runtime the caller's
/// worker is handed back to the runtime meanwhile, via `block_in_place`).
pub fn run(setup: TuiSetup) -> Result<(), TuiError> {
    let dispatch = tracing::dispatcher::get_default(Clone::clone);
    let thread = std::thread::Builder::new()
        .name("ccproxy-tui".into())
        .spawn(move || {
            let _log = tracing::dispatcher::set_default(&dispatch);
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .thread_name("ccproxy-tui-io")
                .enable_all()
                .build()
                .map_err(TuiError::Thread)?;
            let result = rt.block_on(run_loop(setup).with_current_subscriber());
            rt.shutdown_timeout(Duration::from_secs(1));
            result
        })
        .map_err(TuiError::Thread)?;
    let join = move || thread.join();
    let joined = match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(join)
        }
        _ => join(),
    };
    joined.unwrap_or_else(|panic| std::panic::resume_unwind(panic))
}

/// Puts the terminal back (raw mode off, main screen) however the loop ends.
struct TerminalGuard;

impl Drop for TerminalGuard {
    fn drop(&mut self) {
        ratatui::restore();
    }
}

/// Where effects write and read.
struct Outside {
    saved_dir: PathBuf,
    exports_dir: PathBuf,
    history: Option<Arc<dyn FlowHistory>>,
}

async fn run_loop(setup: TuiSetup) -> Result<(), TuiError> {
    // try_init also installs a panic hook that restores the terminal first.
    let mut terminal = ratatui::try_init().map_err(TuiError::Terminal)?;
    let guard = TerminalGuard;
    let cancel = CancellationToken::new();
    let mut events = Events::start(setup.feed, TICK, true, cancel.clone());
    if let Some(history) = setup.history {
        let tx = events.sender();
        tokio::spawn(
            async move {
                if let Some(h) = history.await {
                    let _ = tx.send(Event::HistoryReady(h)).await;
                } else {
                    tracing::info!("no stored history");
                }
            }
            .with_current_subscriber(),
        );
    }
    let mut outside = Outside {
        saved_dir: setup.saved_dir,
        exports_dir: setup.exports_dir,
        history: None,
    };
    let mut app = App::new(setup.source, false, Utc::now());
    tracing::info!(source = setup.source, "tui started");
    let result = event_loop(&mut terminal, &mut app, &mut events, &mut outside).await;
    cancel.cancel();
    drop(guard);
    tracing::info!("tui stopped");
    result
}

async fn event_loop(
    terminal: &mut ratatui::DefaultTerminal,
    app: &mut App,
    events: &mut Events,
    outside: &mut Outside,
) -> Result<(), TuiError> {
    let mut last_draw: Option<Instant> = None;
    let mut dirty = true;
    loop {
        let since = last_draw.map_or(FRAME, |t| t.elapsed());
        if dirty && since >= FRAME {
            let size = terminal.size().map_err(TuiError::Draw)?;
            let area = ratatui::layout::Rect::new(0, 0, size.width, size.height);
            app.prepare(ui::viewport(area, app));
            terminal
                .draw(|f| ui::draw(f, app))
                .map_err(TuiError::Draw)?;
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
        handle(app, outside, ev);
        let mut drained = 1;
        while drained < DRAIN_MAX {
            let Some(ev) = events.try_next() else { break };
            handle(app, outside, ev);
            drained += 1;
        }
        dirty = true;
        for effect in app.take_effects() {
            perform(effect, outside, events.sender());
        }
        if app.quit {
            break;
        }
    }
    Ok(())
}

fn handle(app: &mut App, outside: &mut Outside, ev: Event) {
    match ev {
        Event::HistoryReady(h) => {
            outside.history = Some(h);
            app.update(Action::HistoryAvailable);
        }
        Event::Key(k) => {
            if let Some(a) = bindings::action(app, k) {
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

fn spawn(task: impl std::future::Future<Output = ()> + Send + 'static) {
    tokio::spawn(task.with_current_subscriber());
}

fn perform(effect: Effect, outside: &Outside, tx: mpsc::Sender<Event>) {
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
            let dir = outside.saved_dir.clone();
            spawn(async move {
                let path = dir.join(&name);
                let result = async {
                    tokio::fs::DirBuilder::new()
                        .recursive(true)
                        .mode(0o700)
                        .create(&dir)
                        .await?;
                    let mut f = tokio::fs::OpenOptions::new()
                        .write(true)
                        .create(true)
                        .truncate(true)
                        .mode(0o600)
                        .open(&path)
                        .await?;
                    tokio::io::AsyncWriteExt::write_all(&mut f, &bytes).await
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
            let dir = outside.exports_dir.clone();
            let name = format!("flows-{}.har", Utc::now().format("%Y%m%d-%H%M%S"));
            spawn(async move {
                let path: PathBuf = dir.join(name);
                let n = flows.len();
                let p = path.clone();
                let result = tokio::task::spawn_blocking(move || {
                    std::fs::create_dir_all(p.parent().unwrap_or(&p)).map_err(|e| e.to_string())?;
                    crate::flow::har::write_har(&crate::flow::har::to_har_arcs(&flows), &p)
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
            let Some(history) = outside.history.clone() else {
                return;
            };
            spawn(async move {
                match history.page(before, HISTORY_PAGE).await {
                    Ok(flows) => {
                        let exhausted = flows.len() < HISTORY_PAGE;
                        let _ = tx
                            .send(Event::Action(Action::History { flows, exhausted }))
                            .await;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "history page failed");
                        let _ = tx
                            .send(Event::Action(Action::History {
                                flows: Vec::new(),
                                exhausted: true,
                            }))
                            .await;
                        notice(tx, format!("cannot load stored flows: {e}")).await;
                    }
                }
            });
        }
    }
}
