//! One single-threaded runtime per core for client connections.
//!
//! On tokio's work-stealing runtime an exchange's tasks (the client
//! connection, the upstream connection, the body pumps) wake each other
//! across worker threads about once per request, a futex call each time. A
//! connection served here stays on one thread with its upstream connections
//! (the pool keeps one set per worker, see [`shard`]), so a request is served
//! without waking another thread. The accept loop hands each new socket to
//! the worker with the fewest open connections.
//!
//! The workers are started once per process and live as long as it does;
//! a listener's drain ([`super::DRAIN_GRACE`]) ends what it spawned on them.

use std::cell::OnceCell;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};

/// What a worker thread knows of itself: its number (`1..=n`) and its count
/// of open connections and tunnels. Unset on every other thread.
struct Current {
    shard: usize,
    open: Arc<AtomicUsize>,
}

thread_local! {
    static CURRENT: OnceCell<Current> = const { OnceCell::new() };
}

/// Count one more task against this thread's worker until the guard is
/// dropped; `None` off the workers. A CONNECT tunnel outlives the connection
/// that opened it, so it holds its own count: otherwise every worker would
/// read idle while serving tunnels, and new ones would all go to the first.
pub fn hold() -> Option<Assigned> {
    CURRENT.with(|c| c.get().map(|c| Assigned::new(&c.open)))
}

/// Which worker this thread is: `1..=n` on a worker, `0` anywhere else.
/// The upstream pool keys its connections by it.
pub fn shard() -> usize {
    CURRENT.with(|c| c.get().map_or(0, |c| c.shard))
}

pin_project_lite::pin_project! {
    /// `fut`, with `held` kept until it ends or is dropped. A named future
    /// rather than `async move { let _h = held; fut.await }`: such a block
    /// stores the captured future and the awaited one side by side, twice
    /// the size of a connection's task for every open connection.
    pub struct Holding<F, H> {
        #[pin]
        fut: F,
        held: H,
    }
}

impl<F, H> Holding<F, H> {
    pub fn new(fut: F, held: H) -> Self {
        Self { fut, held }
    }
}

impl<F: Future, H> Future for Holding<F, H> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        self.project().fut.poll(cx)
    }
}

/// The process's workers.
pub struct Workers {
    workers: Vec<Worker>,
}

struct Worker {
    handle: tokio::runtime::Handle,
    open: Arc<AtomicUsize>,
}

/// Counts a connection (or a tunnel) against its worker until dropped.
pub struct Assigned(Arc<AtomicUsize>);

impl Assigned {
    fn new(open: &Arc<AtomicUsize>) -> Self {
        open.fetch_add(1, Ordering::Relaxed);
        Self(Arc::clone(open))
    }
}

impl Drop for Assigned {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Workers {
    /// The workers (one per available core), started on first use; `None`
    /// when their threads cannot be started (then connections stay on the
    /// caller's runtime).
    pub fn get() -> Option<&'static Workers> {
        static WORKERS: OnceLock<Option<Workers>> = OnceLock::new();
        WORKERS
            .get_or_init(|| {
                let n = std::thread::available_parallelism().map_or(1, usize::from);
                match Workers::start(n) {
                    Ok(w) => Some(w),
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot start the proxy worker threads; serving on the shared runtime");
                        None
                    }
                }
            })
            .as_ref()
    }

    fn start(n: usize) -> std::io::Result<Self> {
        let mut workers = Vec::with_capacity(n);
        for i in 0..n {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let handle = runtime.handle().clone();
            let open = Arc::new(AtomicUsize::new(0));
            let mine = Arc::clone(&open);
            std::thread::Builder::new()
                .name(format!("ccproxy-proxy-{i}"))
                .spawn(move || {
                    CURRENT.with(|c| {
                        let _ = c.set(Current {
                            shard: i + 1,
                            open: mine,
                        });
                    });
                    runtime.block_on(std::future::pending::<()>());
                })?;
            workers.push(Worker { handle, open });
        }
        Ok(Self { workers })
    }

    /// Open connections and tunnels on each worker.
    pub fn open(&self) -> Vec<usize> {
        self.workers
            .iter()
            .map(|w| w.open.load(Ordering::Relaxed))
            .collect()
    }

    /// Run `fut` on the worker with the fewest open connections, counted
    /// there while it runs. It is first polled on that worker, so a socket
    /// it registers uses that worker's reactor.
    pub fn spawn<F>(&self, fut: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        match self
            .workers
            .iter()
            .min_by_key(|w| w.open.load(Ordering::Relaxed))
        {
            Some(w) => {
                w.handle.spawn(Holding::new(fut, Assigned::new(&w.open)));
            }
            // Never: `start` makes at least one.
            None => {
                tokio::spawn(fut);
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A future whose state holds 4 KiB across an await, as a connection's does.
    pub(crate) async fn big_future() {
        let buf = [1u8; 4096];
        tokio::task::yield_now().await;
        std::hint::black_box(&buf);
    }

    #[test]
    fn holding_stores_the_future_once() {
        let inner = std::mem::size_of_val(&big_future());
        let held = std::mem::size_of_val(&Holding::new(big_future(), Arc::new(0u8)));
        // An `async move { let _h = held; fut.await }` block measures 2 × inner.
        assert!(held <= inner + 16, "inner {inner} B, held {held} B");
    }

    #[tokio::test]
    async fn holding_keeps_its_value_until_the_future_ends() {
        let open = Arc::new(AtomicUsize::new(0));
        let fut = Holding::new(big_future(), Assigned::new(&open));
        assert_eq!(open.load(Ordering::Relaxed), 1);
        fut.await;
        assert_eq!(open.load(Ordering::Relaxed), 0);
    }
}
