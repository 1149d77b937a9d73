//! The FlowHub: fan-out from the listeners to live viewers (a `broadcast`
//! channel that may lag, the lag counted) and to the store (a [`FlowSink`]
//! that never loses a flow). Nothing here waits: the proxy calls it on its hot path.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;
use uuid::Uuid;

use super::{Flow, FlowEvent, FlowSink, TrafficType};

/// Live counters kept by the hub (read by `status` and the TUI header).
#[derive(Debug, Default)]
pub struct HubCounters {
    /// Flows started.
    pub started: AtomicU64,
    /// Flows completed (success or failure).
    pub completed: AtomicU64,
    /// Completed flows that carried an error.
    pub errors: AtomicU64,
    /// Completed flows by traffic type, in [`TrafficType::ALL`] order.
    pub by_type: [AtomicU64; 4],
}

/// A point-in-time copy of [`HubCounters`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HubSnapshot {
    pub started: u64,
    pub completed: u64,
    pub in_flight: u64,
    pub errors: u64,
    pub llm: u64,
    pub mcp: u64,
    pub web: u64,
    pub other: u64,
}

/// Flows that may wait for the analysis thread; past it, `completed`
/// analyses on its own thread.
pub const STAGE_MAX: usize = 256;

/// Fills in what a completed flow means (the engine installs the LLM analysis).
#[derive(Clone)]
pub struct Analyzer {
    /// Fill in the flow.
    pub analyze: Arc<dyn Fn(&mut Flow) + Send + Sync>,
    /// Whether `analyze` can find anything in this flow; the others skip the
    /// analysis thread (no hand-over for a plain GET).
    pub wants: Arc<dyn Fn(&Flow) -> bool + Send + Sync>,
}

impl Analyzer {
    /// An analyzer interested in every flow.
    pub fn all(analyze: impl Fn(&mut Flow) + Send + Sync + 'static) -> Self {
        Self {
            analyze: Arc::new(analyze),
            wants: Arc::new(|_| true),
        }
    }
}

/// Fan-out point between the listeners and everyone who wants flows.
///
/// Every exchange keeps a clone while it is in flight: two `Arc`s, one for
/// what all clones share and one for the analysis stage (which the analysis
/// thread's own clone leaves empty, so it never hands a flow to itself).
#[derive(Clone)]
pub struct FlowHub {
    shared: Arc<Shared>,
    stage: Arc<RwLock<Option<Stage>>>,
}

struct Shared {
    live: broadcast::Sender<Arc<FlowEvent>>,
    sink: RwLock<Option<Arc<dyn FlowSink>>>,
    counters: HubCounters,
    /// Live viewers subscribed ([`LiveReceiver`]s not yet dropped).
    viewers: Arc<std::sync::atomic::AtomicUsize>,
}

/// How long the analysis thread waits for more flows before it sleeps.
const STAGE_LINGER: std::time::Duration = std::time::Duration::from_millis(2);

/// The next item of `rx`: at once when one waits; otherwise after sleeping
/// `linger` once, so a busy producer's items are taken in batches instead of
/// a thread wake-up each; otherwise, after `idle()`, blocking until one
/// comes. `None` once every sender is gone.
pub fn recv_lingering<T>(
    rx: &std::sync::mpsc::Receiver<T>,
    linger: std::time::Duration,
    idle: impl FnOnce(),
) -> Option<T> {
    use std::sync::mpsc::TryRecvError;
    for pause in [None, Some(linger)] {
        if let Some(d) = pause {
            std::thread::sleep(d);
        }
        match rx.try_recv() {
            Ok(x) => return Some(x),
            Err(TryRecvError::Disconnected) => return None,
            Err(TryRecvError::Empty) => {}
        }
    }
    idle();
    rx.recv().ok()
}

/// The analysis stage: its function (also run inline for a sink whose
/// `stage_limit` is 0), its queue, and how many flows wait in it.
#[derive(Clone)]
struct Stage {
    analyze: Arc<dyn Fn(&mut Flow) + Send + Sync>,
    wants: Arc<dyn Fn(&Flow) -> bool + Send + Sync>,
    tx: std::sync::mpsc::Sender<Arc<Flow>>,
    pending: Arc<std::sync::atomic::AtomicUsize>,
}

/// A viewer that wants whole flows only (`Completed`), never live body chunks
/// or progress events: while only such viewers are subscribed, the hub
/// publishes neither.
pub struct QuietReceiver {
    /// The events (chunks may still appear while a live viewer is subscribed).
    pub rx: broadcast::Receiver<Arc<FlowEvent>>,
}

/// A live viewer: progress events and body chunks are published while one
/// is subscribed. Counted until dropped, so the proxy's hot path asks an
/// atomic whether anyone watches (the channel's own receiver count takes a
/// lock).
pub struct LiveReceiver {
    /// The events.
    pub rx: broadcast::Receiver<Arc<FlowEvent>>,
    live: Arc<std::sync::atomic::AtomicUsize>,
}

impl Drop for LiveReceiver {
    fn drop(&mut self) {
        self.live.fetch_sub(1, Ordering::Relaxed);
    }
}

impl std::ops::Deref for LiveReceiver {
    type Target = broadcast::Receiver<Arc<FlowEvent>>;
    fn deref(&self) -> &Self::Target {
        &self.rx
    }
}

impl std::ops::DerefMut for LiveReceiver {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.rx
    }
}

impl fmt::Debug for FlowHub {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FlowHub")
            .field("subscribers", &self.shared.live.receiver_count())
            .finish_non_exhaustive()
    }
}

impl FlowHub {
    /// A hub whose viewers may fall `capacity` events behind before skipping.
    pub fn new(capacity: usize) -> Self {
        let (live, _) = broadcast::channel(capacity.max(16));
        Self {
            shared: Arc::new(Shared {
                live,
                sink: RwLock::new(None),
                counters: HubCounters::default(),
                viewers: Arc::new(std::sync::atomic::AtomicUsize::new(0)),
            }),
            stage: Arc::new(RwLock::new(None)),
        }
    }

    /// Run `analyze` on every completed flow on a thread of its own, off the
    /// proxy's workers, before the flow is stored and shown as completed. At
    /// most the sink's `stage_limit` ([`STAGE_MAX`] by default) flows wait for
    /// it (then `completed` analyses the flow itself), so `completed` never
    /// blocks on the thread. The thread
    /// ends when every hub clone is gone.
    pub fn set_analyzer(&self, analyze: Analyzer) {
        let (tx, rx) = std::sync::mpsc::channel::<Arc<Flow>>();
        let pending = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let stage = Stage {
            analyze: Arc::clone(&analyze.analyze),
            wants: Arc::clone(&analyze.wants),
            tx,
            pending: Arc::clone(&pending),
        };
        let hub = Self {
            shared: Arc::clone(&self.shared),
            stage: Arc::new(RwLock::new(None)),
        };
        let spawned = std::thread::Builder::new()
            .name("ccproxy-llm".into())
            .spawn(move || {
                while let Some(mut flow) = recv_lingering(&rx, STAGE_LINGER, || {}) {
                    (analyze.analyze)(Arc::make_mut(&mut flow));
                    hub.publish_completed(flow);
                    pending.fetch_sub(1, Ordering::Release);
                }
            });
        match spawned {
            Ok(_) => {
                if let Ok(mut s) = self.stage.write() {
                    *s = Some(stage);
                }
            }
            Err(e) => tracing::warn!("cannot start the analysis thread, flows go unanalysed: {e}"),
        }
    }

    /// Attach the durable store; completed flows go there from now on.
    pub fn set_sink(&self, sink: Arc<dyn FlowSink>) {
        if let Ok(mut s) = self.shared.sink.write() {
            *s = Some(sink);
        }
    }

    /// A viewer of whole flows that does not want live body chunks.
    pub fn subscribe_quiet(&self) -> QuietReceiver {
        QuietReceiver {
            rx: self.shared.live.subscribe(),
        }
    }

    /// True when some subscriber may want live body chunks and progress events.
    pub fn wants_chunks(&self) -> bool {
        self.shared.viewers.load(Ordering::Relaxed) > 0
    }

    /// A new live viewer. `RecvError::Lagged(n)` tells it how many it missed.
    pub fn subscribe(&self) -> LiveReceiver {
        self.shared.viewers.fetch_add(1, Ordering::Relaxed);
        LiveReceiver {
            rx: self.shared.live.subscribe(),
            live: Arc::clone(&self.shared.viewers),
        }
    }

    /// Request head seen. Like every progress event, published only while a
    /// live viewer is subscribed: quiet viewers take whole flows, and an
    /// unpublished snapshot is not held by the channel, so the next phase
    /// changes the flow in place instead of copying it.
    pub fn started(&self, flow: Arc<Flow>) {
        self.shared.counters.started.fetch_add(1, Ordering::Relaxed);
        if self.wants_chunks() {
            self.broadcast(FlowEvent::Started { flow });
        }
    }

    /// Response head seen (published only while a live viewer is subscribed).
    pub fn responded(&self, flow: Arc<Flow>) {
        if self.wants_chunks() {
            self.broadcast(FlowEvent::Responded { flow });
        }
    }

    /// The request body ended (the flow carries it); only for a live viewer.
    pub fn request_body(&self, flow: Arc<Flow>) {
        if self.wants_chunks() {
            self.broadcast(FlowEvent::RequestBody { flow });
        }
    }

    /// A live slice of a response body; skipped entirely when nobody watches:
    /// `data` (which redacts the slice) runs only for a live viewer.
    pub fn response_chunk(&self, id: Uuid, data: impl FnOnce() -> Bytes) {
        if self.wants_chunks() {
            self.broadcast(FlowEvent::ResponseChunk { id, data: data() });
        }
    }

    /// The exchange ended: analyse it (when an analyzer is set), count it,
    /// show it, store it.
    pub fn completed(&self, mut flow: Arc<Flow>) {
        // Under the read lock (writers only install the stage): no clone of it per flow.
        let stage = self.stage.read().unwrap_or_else(PoisonError::into_inner);
        if let Some(stage) = stage.as_ref().filter(|s| (s.wants)(&flow)) {
            let limit = self
                .shared
                .sink
                .read()
                .ok()
                .and_then(|s| s.as_ref().map(|s| s.stage_limit()))
                .unwrap_or(STAGE_MAX);
            // A full queue analyses on the caller's thread: memory stays bounded
            // and so does what an engine crash can lose before the store has it.
            if stage.pending.load(Ordering::Acquire) >= limit {
                (stage.analyze)(Arc::make_mut(&mut flow));
            } else {
                stage.pending.fetch_add(1, Ordering::Acquire);
                match stage.tx.send(flow) {
                    Ok(()) => return,
                    Err(std::sync::mpsc::SendError(f)) => {
                        stage.pending.fetch_sub(1, Ordering::Release);
                        flow = f;
                    }
                }
            }
        }
        drop(stage);
        self.publish_completed(flow);
    }

    /// Wait (up to `deadline`) until every completed flow has left the
    /// analysis stage, so a shutdown stores them all.
    pub async fn settle(&self, deadline: std::time::Duration) {
        let Some(pending) = self
            .stage
            .read()
            .ok()
            .and_then(|s| s.as_ref().map(|s| Arc::clone(&s.pending)))
        else {
            return;
        };
        let until = tokio::time::Instant::now() + deadline;
        while pending.load(Ordering::Acquire) > 0 && tokio::time::Instant::now() < until {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    }

    fn publish_completed(&self, flow: Arc<Flow>) {
        let c = &self.shared.counters;
        c.completed.fetch_add(1, Ordering::Relaxed);
        if flow.error_type.is_some() {
            c.errors.fetch_add(1, Ordering::Relaxed);
        }
        let idx = TrafficType::ALL
            .iter()
            .position(|t| *t == flow.traffic_type)
            .unwrap_or(3);
        c.by_type[idx].fetch_add(1, Ordering::Relaxed);
        if let Some(sink) = self
            .shared
            .sink
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
        {
            sink.submit(Arc::clone(&flow));
        }
        self.broadcast(FlowEvent::Completed { flow });
    }

    fn broadcast(&self, ev: FlowEvent) {
        // No receivers is not an error: nobody is watching.
        let _ = self.shared.live.send(Arc::new(ev));
    }

    /// Current counters.
    pub fn snapshot(&self) -> HubSnapshot {
        let c = &self.shared.counters;
        let started = c.started.load(Ordering::Relaxed);
        let completed = c.completed.load(Ordering::Relaxed);
        HubSnapshot {
            started,
            completed,
            in_flight: started.saturating_sub(completed),
            errors: c.errors.load(Ordering::Relaxed),
            llm: c.by_type[0].load(Ordering::Relaxed),
            mcp: c.by_type[1].load(Ordering::Relaxed),
            web: c.by_type[2].load(Ordering::Relaxed),
            other: c.by_type[3].load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::Direction;
    use chrono::Utc;
    use std::sync::Mutex;

    struct Collect(Mutex<Vec<Arc<Flow>>>);
    impl FlowSink for Collect {
        fn submit(&self, flow: Arc<Flow>) {
            self.0.lock().expect("lock").push(flow);
        }
    }

    /// A stalled analysis thread holds at most STAGE_MAX flows; the rest are
    /// analysed by the caller, and `settle` waits until every one is stored.
    #[tokio::test]
    async fn a_full_analysis_queue_analyses_inline_and_settles() {
        let hub = FlowHub::new(16);
        let sink = Arc::new(Collect(Mutex::new(Vec::new())));
        hub.set_sink(sink.clone());
        let (gate_tx, gate_rx) = std::sync::mpsc::channel::<()>();
        let gate = Mutex::new(Some(gate_rx));
        let caller = std::thread::current().id();
        hub.set_analyzer(Analyzer::all(move |f: &mut Flow| {
            if std::thread::current().id() == caller {
                f.session_id = Some("inline".into());
                return;
            }
            // The analysis thread waits for the gate on its first flow.
            if let Some(rx) = gate.lock().expect("lock").take() {
                let _ = rx.recv();
            }
            f.session_id = Some("thread".into());
        }));
        let n = STAGE_MAX + 10;
        for _ in 0..n {
            hub.completed(Arc::new(Flow::new(
                Direction::Forward,
                "GET",
                "http://a/",
                "a",
                "/",
            )));
        }
        let inline = sink
            .0
            .lock()
            .expect("lock")
            .iter()
            .filter(|f| f.session_id.as_deref() == Some("inline"))
            .count();
        // The thread holds one flow at the gate, STAGE_MAX wait behind or with it.
        assert!((9..=10).contains(&inline), "{inline} analysed inline");
        gate_tx.send(()).expect("open the gate");
        hub.settle(std::time::Duration::from_secs(10)).await;
        let stored = sink.0.lock().expect("lock").len();
        assert_eq!(stored, n, "every flow stored once");
    }

    #[tokio::test]
    async fn hub_fans_out_and_counts() {
        let hub = FlowHub::new(16);
        let sink = Arc::new(Collect(Mutex::new(Vec::new())));
        hub.set_sink(sink.clone());
        let mut rx = hub.subscribe();
        let mut f = Flow::new(Direction::Forward, "GET", "http://a/", "a", "/");
        f.traffic_type = TrafficType::Web;
        hub.started(Arc::new(f.clone()));
        f.end_time = Some(Utc::now());
        hub.completed(Arc::new(f));
        assert!(matches!(
            &*rx.recv().await.expect("ev"),
            FlowEvent::Started { .. }
        ));
        assert!(matches!(
            &*rx.recv().await.expect("ev"),
            FlowEvent::Completed { .. }
        ));
        assert_eq!(sink.0.lock().expect("lock").len(), 1);
        let s = hub.snapshot();
        assert_eq!((s.started, s.completed, s.web, s.in_flight), (1, 1, 1, 0));
    }
}
