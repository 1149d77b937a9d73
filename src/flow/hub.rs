//! The FlowHub: fan-out from the listeners to live viewers (a `broadcast`
//! channel that may lag, the lag counted) and to the store (a [`FlowSink`]
//! that never loses a flow). Nothing here waits: the proxy calls it on its hot path.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

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

/// Fan-out point between the listeners and everyone who wants flows.
#[derive(Clone)]
pub struct FlowHub {
    live: broadcast::Sender<Arc<FlowEvent>>,
    sink: Arc<RwLock<Option<Arc<dyn FlowSink>>>>,
    counters: Arc<HubCounters>,
}

impl fmt::Debug for FlowHub {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FlowHub")
            .field("subscribers", &self.live.receiver_count())
            .finish_non_exhaustive()
    }
}

impl FlowHub {
    /// A hub whose viewers may fall `capacity` events behind before skipping.
    pub fn new(capacity: usize) -> Self {
        let (live, _) = broadcast::channel(capacity.max(16));
        Self {
            live,
            sink: Arc::new(RwLock::new(None)),
            counters: Arc::new(HubCounters::default()),
        }
    }

    /// Attach the durable store; completed flows go there from now on.
    pub fn set_sink(&self, sink: Arc<dyn FlowSink>) {
        if let Ok(mut s) = self.sink.write() {
            *s = Some(sink);
        }
    }

    /// A new live viewer. `RecvError::Lagged(n)` tells it how many it missed.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<FlowEvent>> {
        self.live.subscribe()
    }

    /// Request head seen.
    pub fn started(&self, flow: Arc<Flow>) {
        self.counters.started.fetch_add(1, Ordering::Relaxed);
        self.broadcast(FlowEvent::Started { flow });
    }

    /// Response head seen.
    pub fn responded(&self, flow: Arc<Flow>) {
        self.broadcast(FlowEvent::Responded { flow });
    }

    /// A live slice of a response body; skipped entirely when nobody watches.
    pub fn response_chunk(&self, id: Uuid, data: Bytes) {
        if self.live.receiver_count() > 0 {
            self.broadcast(FlowEvent::ResponseChunk { id, data });
        }
    }

    /// The exchange ended: count it, show it, store it.
    pub fn completed(&self, flow: Arc<Flow>) {
        let c = &self.counters;
        c.completed.fetch_add(1, Ordering::Relaxed);
        if flow.error_type.is_some() {
            c.errors.fetch_add(1, Ordering::Relaxed);
        }
        let idx = TrafficType::ALL
            .iter()
            .position(|t| *t == flow.traffic_type)
            .unwrap_or(3);
        c.by_type[idx].fetch_add(1, Ordering::Relaxed);
        let sink = self.sink.read().ok().and_then(|s| s.clone());
        if let Some(sink) = sink {
            sink.submit(Arc::clone(&flow));
        }
        self.broadcast(FlowEvent::Completed { flow });
    }

    fn broadcast(&self, ev: FlowEvent) {
        // No receivers is not an error: nobody is watching.
        let _ = self.live.send(Arc::new(ev));
    }

    /// Current counters.
    pub fn snapshot(&self) -> HubSnapshot {
        let c = &self.counters;
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
