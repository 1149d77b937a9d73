//! One task turns every input — terminal events, a tick, the engine feed,
//! finished background work — into one channel of [`Event`]s, and stops on
//! cancellation. The loop drains whatever is pending, then draws once.

use std::time::Duration;

use crossterm::event::{Event as TermEvent, EventStream, KeyEvent};
use futures::StreamExt;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::instrument::WithSubscriber as _;

use super::app::Action;
use crate::engine::status::Feed;

/// Everything the loop reacts to.
pub enum Event {
    /// A key press.
    Key(KeyEvent),
    /// The terminal changed size: redraw.
    Resize,
    /// Periodic: clocks and rates.
    Tick,
    /// From the engine.
    Feed(Feed),
    /// The engine feed ended (engine stopped or socket closed).
    FeedClosed,
    /// A finished effect reporting back.
    Action(Action),
    /// The stored-history reader connected.
    HistoryReady(std::sync::Arc<dyn crate::flow::history::FlowHistory>),
}

/// The receiving end of the merged event stream.
pub struct Events {
    rx: mpsc::Receiver<Event>,
    tx: mpsc::Sender<Event>,
}

/// Events buffered between the reader task and the loop.
const CAPACITY: usize = 8192;

impl Events {
    /// Start the reader task; `terminal` is false in tests and benches (no tty).
    pub fn start(
        mut feed: mpsc::Receiver<Feed>,
        tick: Duration,
        terminal: bool,
        cancel: CancellationToken,
    ) -> Self {
        let (tx, rx) = mpsc::channel(CAPACITY);
        let out = tx.clone();
        tokio::spawn(
            async move {
                let mut keys = terminal.then(EventStream::new);
                let mut ticker = tokio::time::interval(tick);
                ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
                let mut feed_open = true;
                loop {
                    let ev = tokio::select! {
                        () = cancel.cancelled() => break,
                        _ = ticker.tick() => Event::Tick,
                        term = next_term(&mut keys) => match term {
                            Some(Ok(TermEvent::Key(k))) => Event::Key(k),
                            Some(Ok(TermEvent::Resize(..))) => Event::Resize,
                            Some(Ok(_)) => continue,
                            Some(Err(e)) => {
                                tracing::warn!(error = %e, "terminal input failed");
                                keys = None;
                                continue;
                            }
                            None => {
                                keys = None;
                                continue;
                            }
                        },
                        msg = feed.recv(), if feed_open => if let Some(f) = msg {
                            Event::Feed(f)
                        } else {
                            feed_open = false;
                            Event::FeedClosed
                        },
                    };
                    if out.send(ev).await.is_err() {
                        break;
                    }
                }
            }
            .with_current_subscriber(),
        );
        Self { rx, tx }
    }

    /// Wait for the next event; `None` once the reader task ended.
    pub async fn next(&mut self) -> Option<Event> {
        self.rx.recv().await
    }

    /// An event already waiting, without waiting.
    pub fn try_next(&mut self) -> Option<Event> {
        self.rx.try_recv().ok()
    }

    /// For background work to report back into the loop.
    pub fn sender(&self) -> mpsc::Sender<Event> {
        self.tx.clone()
    }
}

async fn next_term(keys: &mut Option<EventStream>) -> Option<std::io::Result<TermEvent>> {
    match keys {
        Some(k) => k.next().await,
        None => std::future::pending().await,
    }
}
