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

use std::cell::Cell;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

thread_local! {
    static SHARD: Cell<usize> = const { Cell::new(0) };
}

/// Which worker this thread is: `1..=n` on a worker, `0` anywhere else.
/// The upstream pool keys its connections by it.
pub fn shard() -> usize {
    SHARD.with(Cell::get)
}

/// The process's workers.
pub struct Workers {
    workers: Vec<Worker>,
}

struct Worker {
    handle: tokio::runtime::Handle,
    open: Arc<AtomicUsize>,
}

/// Counts a connection against its worker until dropped.
pub struct Assigned(Arc<AtomicUsize>);

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
            std::thread::Builder::new()
                .name(format!("ccproxy-proxy-{i}"))
                .spawn(move || {
                    SHARD.with(|s| s.set(i + 1));
                    runtime.block_on(std::future::pending::<()>());
                })?;
            workers.push(Worker {
                handle,
                open: Arc::new(AtomicUsize::new(0)),
            });
        }
        Ok(Self { workers })
    }

    /// Run the future `make` gives on the worker with the fewest open
    /// connections; it counts there until the [`Assigned`] it is handed is
    /// dropped. `make` runs on that worker, so a socket registered in it
    /// uses that worker's reactor.
    pub fn spawn<F, Fut>(&self, make: F)
    where
        F: FnOnce(Assigned) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let Some(w) = self
            .workers
            .iter()
            .min_by_key(|w| w.open.load(Ordering::Relaxed))
        else {
            return;
        };
        w.open.fetch_add(1, Ordering::Relaxed);
        let assigned = Assigned(Arc::clone(&w.open));
        w.handle.spawn(async move { make(assigned).await });
    }
}
