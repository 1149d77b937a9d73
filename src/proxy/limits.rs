//! What one client may hold: the registry of open client connections (the
//! cap, and which connection to close when it is reached), the file-descriptor
//! limit, and the accept loop's back-off log.
//!
//! Every accepted socket takes a [`Slot`]. A slot is *idle* (nothing sent, or
//! kept alive between requests), *in a head* (request bytes arriving) or
//! *busy* (an exchange in flight). Past `max_connections` the oldest idle
//! slot is closed first, then the oldest one stuck in a head; busy ones never
//! are, and the new connection is served either way.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use futures::task::AtomicWaker;
use tokio_util::sync::CancellationToken;

use super::clock;

const IDLE: u8 = 0;
const HEAD: u8 = 1;
const BUSY: u8 = 2;

/// File descriptors kept back from the connection cap (listeners, the store,
/// logs, the control socket, certificate files).
const FD_RESERVE: u64 = 64;

/// The open client connections of one engine.
#[derive(Debug)]
pub struct Connections {
    max: usize,
    next: AtomicU64,
    open: Mutex<HashMap<u64, Arc<SlotState>>>,
    evicted: AtomicU64,
    parked: AtomicUsize,
}

/// One connection's state, shared by its serving task, its head guard and
/// its exchanges (and a CONNECT tunnel's inner connection).
#[derive(Debug)]
pub struct SlotState {
    phase: AtomicU8,
    in_flight: AtomicUsize,
    /// When the phase last changed (see [`clock::now_ms`]).
    since: AtomicU64,
    /// Cancelled to make the connection close (cap reached).
    evict: CancellationToken,
    /// Woken when the last exchange ends (a deferred rejection waits for it).
    idle_waker: AtomicWaker,
    /// The connection is leaving hyper to park: its socket stays open.
    parking: AtomicBool,
}

impl SlotState {
    fn new() -> Self {
        Self {
            phase: AtomicU8::new(IDLE),
            in_flight: AtomicUsize::new(0),
            since: AtomicU64::new(clock::now_ms()),
            evict: CancellationToken::new(),
            idle_waker: AtomicWaker::new(),
            parking: AtomicBool::new(false),
        }
    }

    /// Request bytes started arriving (no effect while an exchange runs).
    pub fn mark_head(&self) {
        if self
            .phase
            .compare_exchange(IDLE, HEAD, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
        {
            self.since.store(clock::now_ms(), Ordering::Relaxed);
        }
    }

    /// An exchange starts; it ends when the returned guard drops (with the
    /// response body).
    pub fn begin(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        self.phase.store(BUSY, Ordering::Relaxed);
        InFlight(Arc::clone(self))
    }

    /// No exchange is in flight on this connection.
    pub fn is_quiet(&self) -> bool {
        self.in_flight.load(Ordering::Acquire) == 0
    }

    /// Register `waker` for the end of the last exchange.
    pub fn wake_when_quiet(&self, waker: &std::task::Waker) {
        self.idle_waker.register(waker);
    }

    /// How long the connection has been idle (`None` while busy or in a head).
    pub fn idle_for(&self) -> Option<Duration> {
        (self.phase.load(Ordering::Relaxed) == IDLE).then(|| {
            Duration::from_millis(
                clock::now_ms().saturating_sub(self.since.load(Ordering::Relaxed)),
            )
        })
    }

    /// Mark the connection as leaving hyper to park (its head guard then
    /// skips hyper's shutdown of the socket), or not.
    pub fn set_parking(&self, on: bool) {
        self.parking.store(on, Ordering::Relaxed);
    }

    /// See [`SlotState::set_parking`].
    pub fn is_parking(&self) -> bool {
        self.parking.load(Ordering::Relaxed)
    }

    /// Resolves when the connection must close to make room for others.
    pub fn evicted(&self) -> tokio_util::sync::WaitForCancellationFuture<'_> {
        self.evict.cancelled()
    }
}

/// Marks an exchange in flight on its connection until dropped.
#[derive(Debug)]
pub struct InFlight(Arc<SlotState>);

impl Drop for InFlight {
    fn drop(&mut self) {
        let s = &self.0;
        if s.in_flight.fetch_sub(1, Ordering::AcqRel) == 1 {
            s.since.store(clock::now_ms(), Ordering::Relaxed);
            s.phase.store(IDLE, Ordering::Relaxed);
            s.idle_waker.wake();
        }
    }
}

/// A connection counted in [`Connections::parked`] while it lives.
#[derive(Debug)]
pub struct Parked<'a>(&'a Connections);

impl Drop for Parked<'_> {
    fn drop(&mut self) {
        self.0.parked.fetch_sub(1, Ordering::Relaxed);
    }
}

/// An accepted connection's place in the registry; leaves it when dropped.
#[derive(Debug)]
pub struct Slot {
    id: u64,
    state: Arc<SlotState>,
    registry: Arc<Connections>,
}

impl Slot {
    /// The shared state.
    pub fn state(&self) -> &Arc<SlotState> {
        &self.state
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.registry
            .open
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&self.id);
    }
}

impl Connections {
    /// A registry that starts closing idle connections past `max`.
    pub fn new(max: usize) -> Arc<Self> {
        Arc::new(Self {
            max: max.max(1),
            next: AtomicU64::new(0),
            open: Mutex::new(HashMap::new()),
            evicted: AtomicU64::new(0),
            parked: AtomicUsize::new(0),
        })
    }

    /// Kept-alive connections waiting for their next request without
    /// hyper's buffers (see `proxy::PARK_AFTER`).
    pub fn parked(&self) -> usize {
        self.parked.load(Ordering::Relaxed)
    }

    /// Count a connection as parked until the returned guard drops.
    pub fn park(&self) -> Parked<'_> {
        self.parked.fetch_add(1, Ordering::Relaxed);
        Parked(self)
    }

    /// The cap.
    pub fn max(&self) -> usize {
        self.max
    }

    /// Connections open now.
    pub fn len(&self) -> usize {
        self.open
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// True when no connection is open.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Connections closed so far to make room.
    pub fn evicted(&self) -> u64 {
        self.evicted.load(Ordering::Relaxed)
    }

    /// Register a new connection; at the cap, close the stalest idle one first.
    pub fn admit(self: &Arc<Self>) -> Slot {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let state = Arc::new(SlotState::new());
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        if open.len() >= self.max {
            Self::evict_one(&mut open, &self.evicted);
        }
        open.insert(id, Arc::clone(&state));
        drop(open);
        Slot {
            id,
            state,
            registry: Arc::clone(self),
        }
    }

    /// Close the stalest idle connection now (the accept loop ran out of
    /// file descriptors); false when none is idle.
    pub fn shed(&self) -> bool {
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        Self::evict_one(&mut open, &self.evicted)
    }

    fn evict_one(open: &mut HashMap<u64, Arc<SlotState>>, counter: &AtomicU64) -> bool {
        let victim = open
            .iter()
            .filter(|(_, s)| s.phase.load(Ordering::Relaxed) != BUSY)
            .min_by_key(|(id, s)| {
                (
                    s.phase.load(Ordering::Relaxed),
                    s.since.load(Ordering::Relaxed),
                    **id,
                )
            })
            .map(|(id, _)| *id);
        let Some(id) = victim else {
            return false;
        };
        if let Some(s) = open.remove(&id) {
            s.evict.cancel();
            counter.fetch_add(1, Ordering::Relaxed);
        }
        true
    }
}

/// Raise the soft open-file limit to the hard one; returns the soft limit
/// now in force (`None` when it cannot be read).
pub fn raise_fd_limit() -> Option<u64> {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).ok()?;
    if soft < hard {
        match setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
            Ok(()) => {
                tracing::debug!(from = soft, to = hard, "raised the open-file limit");
                return Some(hard);
            }
            Err(e) => tracing::debug!(error = %e, "cannot raise the open-file limit"),
        }
    }
    Some(soft)
}

/// The default cap for a soft fd limit: each intercepted client connection
/// may hold an upstream connection too, so half of what is left after a reserve.
pub fn default_max_connections(fd_limit: Option<u64>) -> usize {
    let fds = fd_limit.unwrap_or(1024).min(1 << 22);
    (fds.saturating_sub(FD_RESERVE) / 2).max(16) as usize
}

/// Accept failures, logged at most once a second with how many there were.
#[derive(Debug, Default)]
pub struct AcceptErrors {
    count: u64,
    last_log: Option<Instant>,
}

impl AcceptErrors {
    /// Count one failure; `Some(n)` when it is time to log `n` of them.
    pub fn record(&mut self) -> Option<u64> {
        self.count += 1;
        let due = self
            .last_log
            .is_none_or(|t| t.elapsed() >= Duration::from_secs(1));
        if due {
            self.last_log = Some(Instant::now());
            return Some(std::mem::take(&mut self.count));
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cap_closes_idle_before_stalled_heads_and_never_busy() {
        let reg = Connections::new(3);
        let busy = reg.admit();
        let _work = busy.state().begin();
        let head = reg.admit();
        head.state().mark_head();
        let idle = reg.admit();
        assert_eq!(reg.len(), 3);
        let new = reg.admit();
        assert!(idle.state().evict.is_cancelled(), "idle goes first");
        assert!(!head.state().evict.is_cancelled());
        let _also_busy = new.state().begin();
        let _newer = reg.admit();
        assert!(head.state().evict.is_cancelled(), "then the stalled head");
        assert!(!busy.state().evict.is_cancelled(), "busy never");
        assert_eq!(reg.evicted(), 2);
    }

    #[test]
    fn exchange_end_makes_the_slot_idle() {
        let reg = Connections::new(8);
        let slot = reg.admit();
        assert!(slot.state().idle_for().is_some());
        let a = slot.state().begin();
        let b = slot.state().begin();
        assert!(slot.state().idle_for().is_none());
        drop(a);
        assert!(!slot.state().is_quiet());
        drop(b);
        assert!(slot.state().is_quiet());
        assert!(slot.state().idle_for().is_some());
        drop(slot);
        assert!(reg.is_empty());
    }

    #[test]
    fn accept_errors_are_summarised() {
        let mut e = AcceptErrors::default();
        assert_eq!(e.record(), Some(1));
        assert_eq!(e.record(), None);
        assert_eq!(e.record(), None);
        e.last_log = Some(
            Instant::now()
                .checked_sub(Duration::from_secs(2))
                .expect("past"),
        );
        assert_eq!(e.record(), Some(3));
    }

    #[test]
    fn default_cap_follows_the_fd_limit() {
        assert_eq!(default_max_connections(Some(1024)), 480);
        assert!(default_max_connections(Some(10)) >= 16);
    }
}
