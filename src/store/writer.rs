//! The batch writer: completed flows arrive on a bounded queue, leave in
//! batches (every 100 ms, or sooner once [`FLUSH_ROWS`] rows wait) by binary
//! COPY straight into the table. A batch that meets a row already there (a
//! spool replay after an unacknowledged commit: a unique violation) is
//! written again through a session-local staging table followed by
//! `INSERT … SELECT … ON CONFLICT DO NOTHING` (the key is `trace_id`, with
//! `start_time` once partitioned), so it never duplicates. The direct COPY
//! costs the server about a quarter less per row than staging every batch.
//!
//! The proxy does not wait for the database: [`StoreSink::submit`] only
//! `try_send`s; a full queue hands the flow to the overflow task, which
//! appends it to the spool. Only while that task is more than
//! [`OVERFLOW_HEADROOM`] rows behind does the caller append the flow itself
//! (the proxy then runs at the disk's pace), so an engine crash loses at most
//! [`BATCH_ROWS`] rows. A
//! database error sends the batch to the spool, the state to `spooling`, and
//! the writer reconnects with backoff; once connected it replays the spool's
//! segments oldest first whenever the queue is idle.

use std::borrow::Borrow;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::{Client, Statement};

use super::row::{column_list, column_types, sql_type, RowValues, COLUMNS, TABLE};
use super::spool::{Segment, SharedSpool};
use super::{migrate, StorageState, StoreError};
use crate::flow::{Flow, FlowSink};

/// Rows per COPY batch at most.
pub const BATCH_ROWS: usize = 1000;
/// Of the [`BATCH_ROWS`] an engine crash may lose, the rows left for flows on
/// their way to the spool (overflowed, not yet fsync'd: a few milliseconds of
/// traffic): the queue and the batch being written take the rest.
pub const OVERFLOW_HEADROOM: usize = 128;
/// Of the [`BATCH_ROWS`], the completed flows that may wait for the hub's
/// analysis thread before they reach this sink (past it the hub analyses on
/// the caller's thread): they are in memory too.
pub const STAGE_ROWS: usize = 64;
/// Of the [`BATCH_ROWS`], rows the proxy's threads write to the spool
/// themselves while the overflow task is more than [`OVERFLOW_HEADROOM`]
/// rows behind (one per thread).
const CALLER_ROWS: usize = 8;
/// Rows the queue and the batch being written may hold together; past it,
/// new rows overflow to the spool.
const IN_MEMORY_ROWS: usize = BATCH_ROWS - OVERFLOW_HEADROOM - STAGE_ROWS - CALLER_ROWS;
// The shares add up to one batch.
const _: () = assert!(IN_MEMORY_ROWS + OVERFLOW_HEADROOM + STAGE_ROWS + CALLER_ROWS == BATCH_ROWS);
/// Under load a batch leaves once it holds this many rows, half the in-memory
/// share, so the other half can queue while it is written. A batch that
/// waited for the whole share would leave every row that arrives during its
/// write to the spool.
const FLUSH_ROWS: usize = IN_MEMORY_ROWS / 2;
/// A batch waits at most this long for more rows.
pub const BATCH_WAIT: Duration = Duration::from_millis(100);

/// While a batch gathers, how often the writer looks for more rows.
const GATHER_TICK: Duration = Duration::from_millis(5);
/// A batch write that takes longer than this is abandoned (and spooled).
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// Counters and state shared by the sink, the writer and `stats()`.
#[derive(Debug, Default)]
pub struct Shared {
    pub written: AtomicU64,
    pub spooled: AtomicU64,
    pub replayed: AtomicU64,
    pub dropped: AtomicU64,
    pub spool_bytes: AtomicU64,
    /// Bytes handed to the overflow task and not yet on disk.
    pub overflow_pending: AtomicU64,
    /// Rows handed to the overflow task and not yet on disk.
    pub overflow_rows: AtomicU64,
    state: AtomicU8,
    /// The last database error (or a row the database refused).
    pub last_error: Mutex<Option<String>>,
    /// The last spool error (cannot write, full, a damaged segment), kept
    /// apart so the database's errors do not hide it.
    pub spool_error: Mutex<Option<String>>,
    /// Times the managed database was restarted after it died.
    pub restarts: AtomicU64,
    /// Rows the writer has taken off the queue and not yet committed or
    /// spooled (with the queue: what an engine crash can lose).
    pub unsettled: AtomicU64,
    /// Wakes the writer (a restarted database, or rows in the spool to replay).
    pub wake: tokio::sync::Notify,
    /// The server of the last session and whether it is encrypted.
    pub security: Mutex<Option<super::connect::Security>>,
}

impl Shared {
    /// Overflowed rows (`rows`, about `bytes`) are on disk now, or gone.
    fn overflow_settled(&self, bytes: u64, rows: usize) {
        self.overflow_pending.fetch_sub(bytes, Ordering::Relaxed);
        self.overflow_rows.fetch_sub(rows as u64, Ordering::Relaxed);
    }

    /// Current storage state.
    pub fn state(&self) -> StorageState {
        match self.state.load(Ordering::Relaxed) {
            1 => StorageState::Connected,
            2 => StorageState::Spooling,
            _ => StorageState::Off,
        }
    }

    /// Record a state change (logged once per change).
    pub fn set_state(&self, s: StorageState) {
        let v = match s {
            StorageState::Off => 0,
            StorageState::Connected => 1,
            StorageState::Spooling => 2,
        };
        if self.state.swap(v, Ordering::Relaxed) != v {
            tracing::info!(state = ?s, "storage");
        }
    }

    /// Remember (and log) an error for `status`.
    pub fn error(&self, msg: String) {
        tracing::error!("{msg}");
        if let Ok(mut e) = self.last_error.lock() {
            *e = Some(msg);
        }
    }

    /// Remember (and log) a spool error for `status`.
    pub fn spool_error(&self, msg: String) {
        tracing::error!("{msg}");
        if let Ok(mut e) = self.spool_error.lock() {
            *e = Some(msg);
        }
    }

    /// Append to the spool under its lock (blocking; call off the runtime).
    pub fn spool_blocking<'a>(
        &self,
        spool: &SharedSpool,
        flows: impl IntoIterator<Item = &'a Flow>,
    ) {
        let Ok(mut s) = spool.lock() else {
            self.spool_error("spool lock poisoned: rows dropped".into());
            return;
        };
        let flows: Vec<&Flow> = flows.into_iter().collect();
        let n = flows.len() as u64;
        match s.append(flows) {
            Ok(r) => {
                self.spooled.fetch_add(r.written, Ordering::Relaxed);
                if r.dropped > 0 {
                    self.dropped.fetch_add(r.dropped, Ordering::Relaxed);
                    self.spool_error(format!(
                        "spool full ({} bytes): {} rows dropped; free disk space, raise \
                         spool_max_bytes or bring the database back",
                        s.bytes(),
                        r.dropped
                    ));
                }
            }
            Err(e) => {
                self.dropped.fetch_add(n, Ordering::Relaxed);
                self.spool_error(format!("cannot write the spool: {e}: {n} rows dropped"));
            }
        }
        self.spool_bytes.store(s.bytes(), Ordering::Relaxed);
    }
}

/// Size a flow will roughly take in the spool (for the overflow bound).
fn approx_bytes(f: &Flow) -> u64 {
    (f.request_body.len() + f.response_body.len()) as u64 * 4 / 3 + 1024
}

/// The [`FlowSink`] the hub feeds: never blocks, never loses a flow silently.
pub struct StoreSink {
    pub(super) tx: mpsc::Sender<Arc<Flow>>,
    pub(super) overflow: mpsc::UnboundedSender<Arc<Flow>>,
    pub(super) shared: Arc<Shared>,
    pub(super) spool: SharedSpool,
    pub(super) max_bytes: u64,
}

impl FlowSink for StoreSink {
    fn submit(&self, flow: Arc<Flow>) {
        // At most one batch of rows waits in memory (queue + the batch being
        // written + rows on their way to the spool); past the queue's share,
        // rows go to the spool, fsync'd within milliseconds.
        let in_memory = (self.tx.max_capacity() - self.tx.capacity()) as u64
            + self.shared.unsettled.load(Ordering::Relaxed)
            + self.shared.overflow_rows.load(Ordering::Relaxed);
        let flow = if in_memory >= IN_MEMORY_ROWS as u64 {
            flow
        } else {
            match self.tx.try_send(flow) {
                Ok(()) => return,
                Err(mpsc::error::TrySendError::Full(f) | mpsc::error::TrySendError::Closed(f)) => f,
            }
        };
        let size = approx_bytes(&flow);
        let sh = &self.shared;
        let pending = sh.overflow_pending.fetch_add(size, Ordering::Relaxed) + size;
        if pending + sh.spool_bytes.load(Ordering::Relaxed) > self.max_bytes {
            sh.overflow_pending.fetch_sub(size, Ordering::Relaxed);
            sh.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let overflowing = sh.overflow_rows.fetch_add(1, Ordering::Relaxed) + 1;
        let flow = if overflowing > OVERFLOW_HEADROOM as u64 {
            // The spool's fsyncs lag behind the traffic: written here, so what
            // an engine crash can lose stays within one batch (the caller
            // waits for the spool; the proxy slows instead).
            flow
        } else {
            match self.overflow.send(flow) {
                Ok(()) => return,
                // After shutdown: nobody is left to batch it.
                Err(mpsc::error::SendError(flow)) => flow,
            }
        };
        sh.spool_blocking(&self.spool, std::iter::once(&*flow));
        sh.overflow_settled(size, 1);
    }

    fn stage_limit(&self) -> usize {
        STAGE_ROWS
    }
}

/// Drains overflowed flows into the spool, many per fsync.
pub async fn overflow_task(
    mut rx: mpsc::UnboundedReceiver<Arc<Flow>>,
    shared: Arc<Shared>,
    spool: SharedSpool,
    mut stop: watch::Receiver<Option<std::time::Instant>>,
) {
    let mut buf = Vec::with_capacity(256);
    loop {
        tokio::select! {
            n = rx.recv_many(&mut buf, 256) => if n == 0 { break },
            _ = stop.changed() => {
                rx.close();
                while rx.recv_many(&mut buf, 256).await > 0 {
                    write_overflow(&shared, &spool, &mut buf).await;
                }
                break;
            }
        }
        write_overflow(&shared, &spool, &mut buf).await;
    }
}

async fn write_overflow(shared: &Arc<Shared>, spool: &SharedSpool, buf: &mut Vec<Arc<Flow>>) {
    if buf.is_empty() {
        return;
    }
    let flows = std::mem::take(buf);
    let size: u64 = flows.iter().map(|f| approx_bytes(f)).sum();
    let rows = flows.len();
    let (sh, sp) = (Arc::clone(shared), Arc::clone(spool));
    let back = tokio::task::spawn_blocking(move || {
        sh.spool_blocking(&sp, flows.iter().map(|f| &**f));
        flows
    })
    .await;
    shared.overflow_settled(size, rows);
    if let Ok(mut flows) = back {
        flows.clear();
        *buf = flows;
    }
}

/// `durability: spool-first`: every completed flow is appended to the spool
/// and fsync'd before [`FlowSink::submit`] returns, and so before the proxy
/// hands the client the end of its response. One journal thread does the
/// appends: all the flows that arrived while it was busy with the previous
/// fsync go out in the next one (group commit, a few ms apart). The writer
/// gets the rows by replaying the spool.
#[derive(Debug, Default)]
pub struct Journal {
    state: Mutex<JournalState>,
    arrived: std::sync::Condvar,
    committed: std::sync::Condvar,
}

#[derive(Debug, Default)]
struct JournalState {
    pending: Vec<Arc<Flow>>,
    /// The group now collecting flows.
    open_group: u64,
    /// Every group below this one is on disk.
    done_groups: u64,
    /// No more groups are taken (shutdown).
    closed: bool,
}

/// How long a submitter waits for its group before giving up waiting.
const JOURNAL_WAIT: Duration = Duration::from_secs(10);

impl Journal {
    /// Start the journal thread; it appends to `spool` until [`Journal::close`].
    pub fn start(
        shared: Arc<Shared>,
        spool: SharedSpool,
    ) -> std::io::Result<(Arc<Self>, std::thread::JoinHandle<()>)> {
        let journal = Arc::new(Self::default());
        let j = Arc::clone(&journal);
        let handle = std::thread::Builder::new()
            .name("ccproxy-journal".into())
            .spawn(move || j.run(&shared, &spool))?;
        Ok((journal, handle))
    }

    fn run(&self, shared: &Shared, spool: &SharedSpool) {
        loop {
            let (group, flows) = {
                let Ok(mut st) = self.state.lock() else {
                    return;
                };
                while st.pending.is_empty() && !st.closed {
                    st = match self.arrived.wait(st) {
                        Ok(st) => st,
                        Err(_) => return,
                    };
                }
                if st.pending.is_empty() {
                    st.done_groups = st.open_group + 1;
                    self.committed.notify_all();
                    return;
                }
                let group = st.open_group;
                st.open_group += 1;
                (group, std::mem::take(&mut st.pending))
            };
            shared.spool_blocking(spool, flows.iter().map(|f| &**f));
            shared.wake.notify_one();
            if let Ok(mut st) = self.state.lock() {
                st.done_groups = group + 1;
            }
            self.committed.notify_all();
        }
    }

    /// Queue one flow and wait until it is on disk. False when the journal is closed.
    fn append_and_wait(&self, flow: Arc<Flow>) -> Result<(), Arc<Flow>> {
        let Ok(mut st) = self.state.lock() else {
            return Err(flow);
        };
        if st.closed {
            return Err(flow);
        }
        st.pending.push(flow);
        let group = st.open_group;
        self.arrived.notify_one();
        let wait = move || {
            let deadline = std::time::Instant::now() + JOURNAL_WAIT;
            while st.done_groups <= group {
                let left = deadline.saturating_duration_since(std::time::Instant::now());
                if left.is_zero() {
                    tracing::warn!("the spool journal is slow: a response was released before its flow was on disk");
                    return;
                }
                st = match self.committed.wait_timeout(st, left) {
                    Ok((st, _)) => st,
                    Err(_) => return,
                };
            }
        };
        let on_worker = tokio::runtime::Handle::try_current()
            .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
        if on_worker {
            tokio::task::block_in_place(wait);
        } else {
            wait();
        }
        Ok(())
    }

    /// Take no more flows; the thread writes what it holds and ends.
    pub fn close(&self) {
        if let Ok(mut st) = self.state.lock() {
            st.closed = true;
        }
        self.arrived.notify_all();
    }
}

/// The sink for `durability: spool-first`: the journal, then (after
/// shutdown) the batch path, which spools on its own.
pub struct JournalSink {
    pub(super) journal: Arc<Journal>,
    pub(super) fallback: StoreSink,
}

impl FlowSink for JournalSink {
    fn submit(&self, flow: Arc<Flow>) {
        if let Err(flow) = self.journal.append_and_wait(flow) {
            self.fallback.submit(flow);
        }
    }

    fn stage_limit(&self) -> usize {
        0
    }
}

/// An open database session ready for batches.
struct Session {
    client: Client,
    insert: Statement,
    /// How batches go in: [`Route::Direct`] when [`direct_copy_allowed`],
    /// else every batch through staging, whose INSERT casts and applies the
    /// table's policies.
    route: Route,
}

/// How a batch reaches the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    /// COPY into the table itself: fails on a row that is there already.
    Direct,
    /// COPY into staging, then `INSERT … ON CONFLICT DO NOTHING`: rows that
    /// may be there already.
    Staged,
}

/// SQLSTATE `unique_violation`.
const UNIQUE_VIOLATION: &str = "23505";

/// The writer task's state.
pub struct Writer {
    pub(super) url: String,
    pub(super) rx: mpsc::Receiver<Arc<Flow>>,
    pub(super) shared: Arc<Shared>,
    pub(super) spool: SharedSpool,
    pub(super) stop: watch::Receiver<Option<std::time::Instant>>,
    session: Option<Session>,
    backoff: Duration,
    next_attempt: Instant,
    batch: Vec<Arc<Flow>>,
    /// The spool segment being replayed, its rows, and how many are committed.
    replaying: Option<(Segment, Vec<Arc<Flow>>, usize)>,
    /// The last replay step did something: do not idle before the next.
    replay_pending: bool,
}

/// Error from one batch: retry later, or rows the database rejects.
enum BatchError {
    /// Connection-class: keep the rows (spool) and reconnect.
    Retry(String),
    /// The data itself is refused (bad encoding, constraint): isolate row by row.
    Data(String),
}

fn classify(e: &tokio_postgres::Error) -> BatchError {
    let data = e
        .code()
        .is_some_and(|c| c.code().starts_with("22") || c.code().starts_with("23"));
    if data {
        BatchError::Data(e.to_string())
    } else {
        BatchError::Retry(super::describe(e))
    }
}

impl Writer {
    /// A writer with an optional already-connected, migrated client.
    pub(super) async fn new(
        url: String,
        rx: mpsc::Receiver<Arc<Flow>>,
        shared: Arc<Shared>,
        spool: SharedSpool,
        stop: watch::Receiver<Option<std::time::Instant>>,
        client: Option<Client>,
    ) -> Self {
        let mut w = Self {
            url,
            rx,
            shared,
            spool,
            stop,
            session: None,
            backoff: BACKOFF_MIN,
            next_attempt: Instant::now(),
            batch: Vec::with_capacity(BATCH_ROWS),
            replaying: None,
            replay_pending: true,
        };
        if let Some(client) = client {
            match prepare(client).await {
                Ok(s) => {
                    w.session = Some(s);
                    w.shared.set_state(StorageState::Connected);
                }
                Err(e) => w.lost(&e.to_string()),
            }
        } else {
            w.shared.set_state(StorageState::Spooling);
        }
        w
    }

    /// Run until shutdown; then drain the queue and, time allowing, the spool.
    pub async fn run(mut self) {
        loop {
            if self.stopping() {
                break;
            }
            self.gather().await;
            if self.stopping() {
                break;
            }
            self.ensure_session().await;
            self.flush().await;
            // Replay while the live queue has room; live rows keep priority.
            if self.session.is_some() && self.rx.len() <= self.rx.max_capacity() / 2 {
                self.replay_pending = self.replay_step(None).await;
            }
        }
        let deadline = (*self.stop.borrow()).map(Instant::from_std);
        self.rx.close();
        while self.rx.recv_many(&mut self.batch, BATCH_ROWS).await > 0 {
            if deadline.is_some_and(|d| Instant::now() >= d) {
                self.session = None;
            }
            self.flush().await;
        }
        self.flush().await;
        if self.session.is_none() && deadline.is_some_and(|d| Instant::now() < d) {
            self.next_attempt = Instant::now();
            self.ensure_session().await;
        }
        while self.session.is_some() && deadline.is_none_or(|d| Instant::now() < d) {
            if !self.replay_step(deadline).await {
                break;
            }
        }
        if let Ok(mut s) = self.spool.lock() {
            s.seal();
        }
    }

    /// Shutdown asked for, or the store dropped without asking.
    fn stopping(&self) -> bool {
        self.stop.borrow().is_some() || self.stop.has_changed().is_err()
    }

    /// Wait for a first row (or an idle tick), then up to [`BATCH_WAIT`] for
    /// more, until the batch holds [`FLUSH_ROWS`].
    async fn gather(&mut self) {
        let idle = if self.session.is_none() {
            self.next_attempt
                .saturating_duration_since(Instant::now())
                .max(BACKOFF_MIN)
        } else if self.replay_pending {
            Duration::ZERO
        } else {
            Duration::from_secs(1)
        };
        if self.batch.is_empty() {
            tokio::select! {
                _ = self.rx.recv_many(&mut self.batch, BATCH_ROWS) => {}
                _ = self.stop.changed() => return,
                () = tokio::time::sleep(idle) => return,
                () = self.shared.wake.notified() => {
                    self.next_attempt = Instant::now();
                    return;
                }
            }
        }
        let until = Instant::now() + BATCH_WAIT;
        while self.batch.len() < FLUSH_ROWS {
            self.shared
                .unsettled
                .store(self.batch.len() as u64, Ordering::Relaxed);
            let room = BATCH_ROWS - self.batch.len();
            if !self.rx.is_empty() {
                if self.rx.recv_many(&mut self.batch, room).await == 0 {
                    break;
                }
                continue;
            }
            // Let rows gather for a tick rather than wait on the queue: a
            // waiting task is woken by every row sent, a cross-thread wake-up
            // per proxied exchange.
            let now = Instant::now();
            if now >= until {
                break;
            }
            tokio::select! {
                () = tokio::time::sleep_until(until.min(now + GATHER_TICK)) => {}
                _ = self.stop.changed() => break,
            }
        }
        self.shared
            .unsettled
            .store(self.batch.len() as u64, Ordering::Relaxed);
    }

    async fn ensure_session(&mut self) {
        if self.session.is_some() || Instant::now() < self.next_attempt {
            return;
        }
        let attempt = async {
            let mut client = super::connect_recorded(&self.url, &self.shared).await?;
            migrate::migrate(&mut client).await?;
            prepare(client).await
        };
        match tokio::time::timeout(Duration::from_secs(10), attempt).await {
            Ok(Ok(s)) => {
                self.session = Some(s);
                self.backoff = BACKOFF_MIN;
                self.shared.set_state(StorageState::Connected);
                tracing::info!("database connected");
            }
            Ok(Err(e)) => self.lost(&e.to_string()),
            Err(_) => self.lost("connecting timed out"),
        }
    }

    fn lost(&mut self, why: &str) {
        self.session = None;
        self.shared.set_state(StorageState::Spooling);
        self.shared.error(format!(
            "database unavailable ({why}); spooling to disk and retrying in {:?}",
            self.backoff
        ));
        self.next_attempt = Instant::now() + self.backoff;
        self.backoff = (self.backoff * 2).min(BACKOFF_MAX);
    }

    /// Write the current batch, or spool it.
    async fn flush(&mut self) {
        if self.batch.is_empty() {
            return;
        }
        let batch = std::mem::take(&mut self.batch);
        if self.session.is_some() {
            self.write_or_spool(&batch).await;
        } else {
            self.spool_rows(&batch).await;
        }
        self.shared.unsettled.store(0, Ordering::Relaxed);
        let mut batch = batch;
        batch.clear();
        self.batch = batch;
    }

    /// Commit rows, isolating rejected ones; whatever cannot be written now is spooled.
    async fn write_or_spool<T: Borrow<Flow> + Send + Sync + Clone + 'static>(
        &mut self,
        rows: &[T],
    ) -> bool {
        match self.write_isolating(rows, "flow").await {
            Ok(()) => true,
            Err(unwritten) => {
                self.spool_rows(&rows[unwritten..]).await;
                false
            }
        }
    }

    /// Commit rows as one batch; when the database refuses the batch, write
    /// them one by one and drop (and count) only the rows it refuses. On a lost
    /// connection, `Err(i)`: rows from `i` on were not written.
    async fn write_isolating<T: Borrow<Flow>>(
        &mut self,
        rows: &[T],
        what: &str,
    ) -> Result<(), usize> {
        match self.write(rows).await {
            Ok(n) => {
                self.shared.written.fetch_add(n, Ordering::Relaxed);
                return Ok(());
            }
            Err(BatchError::Retry(why)) => {
                self.lost(&why);
                return Err(0);
            }
            Err(BatchError::Data(why)) => {
                tracing::warn!(error = %why, "batch refused; writing rows one by one");
            }
        }
        for (i, row) in rows.iter().enumerate() {
            match self.write(std::slice::from_ref(row)).await {
                Ok(n) => {
                    self.shared.written.fetch_add(n, Ordering::Relaxed);
                }
                Err(BatchError::Data(why)) => {
                    self.shared.dropped.fetch_add(1, Ordering::Relaxed);
                    self.shared.error(format!(
                        "the database refused {what} {}: {why}; row dropped",
                        row.borrow().id
                    ));
                }
                Err(BatchError::Retry(why)) => {
                    self.lost(&why);
                    return Err(i);
                }
            }
        }
        Ok(())
    }

    /// One attempt to commit `rows`: straight into the table, and through
    /// staging when that meets a row already there.
    async fn write<T: Borrow<Flow>>(&mut self, rows: &[T]) -> Result<u64, BatchError> {
        let Some(session) = self.session.as_mut() else {
            return Err(BatchError::Retry("not connected".into()));
        };
        let route = session.route;
        let attempt = async {
            match copy_rows(session, rows, route).await {
                Err(e)
                    if route == Route::Direct
                        && e.code().is_some_and(|c| c.code() == UNIQUE_VIOLATION) =>
                {
                    copy_rows(session, rows, Route::Staged).await
                }
                r => r,
            }
        };
        match tokio::time::timeout(WRITE_TIMEOUT, attempt).await {
            Ok(Ok(n)) => Ok(n),
            Ok(Err(e)) => Err(classify(&e)),
            Err(_) => Err(BatchError::Retry(format!(
                "a batch write took over {WRITE_TIMEOUT:?}"
            ))),
        }
    }

    async fn spool_rows<T: Borrow<Flow> + Send + Sync + Clone + 'static>(&self, rows: &[T]) {
        let rows = rows.to_vec();
        let (sh, sp) = (Arc::clone(&self.shared), Arc::clone(&self.spool));
        let _ = tokio::task::spawn_blocking(move || {
            sh.spool_blocking(&sp, rows.iter().map(Borrow::borrow));
        })
        .await;
    }

    /// Replay the next chunk (at most [`FLUSH_ROWS`] rows) of the oldest spool
    /// segment, so live rows and replay interleave under load. A segment is
    /// deleted once all its chunks are committed. False when there was
    /// nothing to replay, or a write failed.
    async fn replay_step(&mut self, deadline: Option<Instant>) -> bool {
        if deadline.is_some_and(|d| Instant::now() >= d) {
            return false;
        }
        if self.replaying.is_none() {
            let Some(seg) = self.next_segment().await else {
                return false;
            };
            let flows: Vec<Arc<Flow>> = seg.flows.iter().cloned().map(Arc::new).collect();
            self.replaying = Some((seg, flows, 0));
        }
        let Some((_, flows, done)) = self.replaying.as_ref() else {
            return false;
        };
        let chunk: Vec<Arc<Flow>> = flows[*done..(*done + FLUSH_ROWS).min(flows.len())].to_vec();
        if !chunk.is_empty() && !self.write_or_spool_replay(&chunk).await {
            // Start the segment over after reconnecting; ON CONFLICT skips what was committed.
            self.replaying = None;
            return false;
        }
        self.shared
            .replayed
            .fetch_add(chunk.len() as u64, Ordering::Relaxed);
        let finished = match self.replaying.as_mut() {
            Some((_, flows, done)) => {
                *done += chunk.len();
                *done >= flows.len()
            }
            None => false,
        };
        if finished {
            if let Some((seg, _, _)) = self.replaying.take() {
                self.finish_segment(seg).await;
            }
        }
        true
    }

    async fn next_segment(&mut self) -> Option<Segment> {
        let sp = Arc::clone(&self.spool);
        let seg = tokio::task::spawn_blocking(move || {
            let mut s = sp.lock().map_err(|_| "spool lock poisoned".to_string())?;
            s.oldest().map_err(|e| e.to_string())
        })
        .await;
        match seg {
            Ok(Ok(seg)) => seg,
            Ok(Err(e)) => {
                self.shared
                    .spool_error(format!("cannot read the spool: {e}"));
                None
            }
            Err(e) => {
                self.shared.spool_error(format!("spool task failed: {e}"));
                None
            }
        }
    }

    /// Delete a fully replayed segment (or move a corrupt one aside).
    async fn finish_segment(&self, seg: Segment) {
        let sp = Arc::clone(&self.spool);
        let shared = Arc::clone(&self.shared);
        let _ = tokio::task::spawn_blocking(move || {
            let Ok(mut s) = sp.lock() else { return };
            if let Some(why) = &seg.corrupt {
                shared.dropped.fetch_add(seg.skipped, Ordering::Relaxed);
                match s.quarantine(&seg) {
                    Ok(to) => shared.spool_error(format!(
                        "spool segment {} is damaged ({why}): {} records lost, its {} intact \
                         rows were replayed; the file is kept as {} for inspection",
                        seg.path.display(),
                        seg.skipped,
                        seg.flows.len(),
                        to.display()
                    )),
                    Err(e) => shared.spool_error(format!(
                        "cannot move the corrupt spool segment {}: {e}",
                        seg.path.display()
                    )),
                }
            } else if let Err(e) = s.remove(&seg) {
                shared.spool_error(format!(
                    "cannot delete the replayed spool segment {}: {e}",
                    seg.path.display()
                ));
            }
            shared.spool_bytes.store(s.bytes(), Ordering::Relaxed);
        })
        .await;
    }

    /// Replayed rows that fail to write stay in their segment (not re-spooled).
    async fn write_or_spool_replay(&mut self, rows: &[Arc<Flow>]) -> bool {
        self.write_isolating(rows, "spooled flow").await.is_ok()
    }
}

/// Staging table DDL: our own column types, so COPY's binary types always match.
fn staging_ddl() -> String {
    let cols = COLUMNS
        .iter()
        .map(|(n, t)| format!("{n} {}", sql_type(t)))
        .collect::<Vec<_>>()
        .join(", ");
    format!("CREATE TEMP TABLE IF NOT EXISTS ccproxy_staging ({cols}) ON COMMIT DELETE ROWS")
}

async fn prepare(client: Client) -> Result<Session, StoreError> {
    client.batch_execute(&staging_ddl()).await?;
    let cols = column_list();
    let insert = client
        .prepare(&format!(
            "INSERT INTO {TABLE} ({cols}) SELECT {cols} FROM ccproxy_staging \
             ON CONFLICT DO NOTHING"
        ))
        .await?;
    let route = if direct_copy_allowed(&client).await? {
        Route::Direct
    } else {
        Route::Staged
    };
    Ok(Session {
        client,
        insert,
        route,
    })
}

/// Whether a binary COPY can go straight into the table: a plain or
/// partitioned table without row-level security (which COPY FROM refuses) or
/// rules (which it would bypass), where every column the writer fills has
/// exactly the type it sends.
async fn direct_copy_allowed(client: &Client) -> Result<bool, StoreError> {
    let plain: bool = client
        .query_one(
            "SELECT coalesce(bool_and(relkind IN ('r', 'p') AND NOT relrowsecurity \
             AND NOT relhasrules), false) FROM pg_class WHERE oid = to_regclass($1)",
            &[&TABLE],
        )
        .await?
        .get(0);
    if !plain {
        return Ok(false);
    }
    let rows = client
        .query(
            "SELECT attname::text, atttypid FROM pg_attribute \
             WHERE attrelid = to_regclass($1) AND attnum > 0 AND NOT attisdropped",
            &[&TABLE],
        )
        .await?;
    Ok(COLUMNS.iter().all(|(name, ty)| {
        rows.iter().any(|r| {
            r.get::<_, String>(0) == *name && r.get::<_, postgres_types::Oid>(1) == ty.oid()
        })
    }))
}

/// One transaction: COPY the rows into the table, or into staging and from
/// there the new ones into the table. The rows committed.
async fn copy_rows<T: Borrow<Flow>>(
    s: &mut Session,
    rows: &[T],
    route: Route,
) -> Result<u64, tokio_postgres::Error> {
    let types = column_types();
    let tx = s.client.transaction().await?;
    let into = match route {
        Route::Direct => TABLE,
        Route::Staged => "ccproxy_staging",
    };
    let sink = tx
        .copy_in(&format!(
            "COPY {into} ({}) FROM STDIN BINARY",
            column_list()
        ))
        .await?;
    let writer = BinaryCopyInWriter::new(sink, &types);
    futures::pin_mut!(writer);
    for row in rows {
        let values = RowValues::new(row.borrow());
        writer.as_mut().write(&values.as_params()).await?;
    }
    let copied = writer.finish().await?;
    let n = match route {
        Route::Direct => copied,
        Route::Staged => tx.execute(&s.insert, &[]).await?,
    };
    tx.commit().await?;
    Ok(n)
}

/// Write flows with the writer's own path (benchmarks and tests of the COPY path).
pub async fn copy_flows(client: Client, flows: &[Arc<Flow>]) -> Result<(Client, u64), StoreError> {
    let mut s = prepare(client).await?;
    let mut total = 0;
    for chunk in flows.chunks(BATCH_ROWS) {
        total += copy_rows(&mut s, chunk, Route::Staged).await?;
    }
    Ok((s.client, total))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::Direction;

    type Stop = watch::Sender<Option<std::time::Instant>>;

    /// A writer without a database (rows would spool), fed by the returned
    /// sender; it stops once the returned `Stop` is dropped.
    async fn writer(dir: &std::path::Path) -> (Writer, mpsc::Sender<Arc<Flow>>, Stop) {
        let (tx, rx) = mpsc::channel(BATCH_ROWS);
        let spool = super::super::spool::Spool::open(dir, 1 << 20).expect("spool");
        let (stop, stop_rx) = watch::channel(None);
        let w = Writer::new(
            "postgresql://unused".into(),
            rx,
            Arc::new(Shared::default()),
            Arc::new(Mutex::new(spool)),
            stop_rx,
            None,
        )
        .await;
        (w, tx, stop)
    }

    async fn queue(tx: &mpsc::Sender<Arc<Flow>>, n: usize) {
        for i in 0..n {
            let f = Flow::new(
                Direction::Forward,
                "GET",
                &format!("http://h/{i}"),
                "h",
                "/",
            );
            tx.send(Arc::new(f)).await.expect("send");
        }
    }

    /// While the overflow task lags more than the headroom behind (here it
    /// never runs), the caller spools the row itself: rows in memory stay
    /// within the budget and nothing is dropped.
    #[tokio::test]
    async fn a_lagging_spool_makes_the_caller_write_the_row_itself() {
        let dir = tempfile::tempdir().expect("dir");
        let (tx, _rx) = mpsc::channel(BATCH_ROWS);
        let (overflow, mut lagging) = mpsc::unbounded_channel();
        let spool = super::super::spool::Spool::open(dir.path(), 1 << 30).expect("spool");
        let shared = Arc::new(Shared::default());
        let sink = StoreSink {
            tx,
            overflow,
            shared: Arc::clone(&shared),
            spool: Arc::new(Mutex::new(spool)),
            max_bytes: 1 << 30,
        };
        let flow = |i: usize| {
            Arc::new(Flow::new(
                Direction::Forward,
                "GET",
                &format!("http://h/{i}"),
                "h",
                "/",
            ))
        };
        let n = IN_MEMORY_ROWS + OVERFLOW_HEADROOM + 5;
        for i in 0..n {
            sink.submit(flow(i));
        }
        let mut handed = Vec::new();
        let got = lagging.recv_many(&mut handed, n).await;
        assert_eq!(got, OVERFLOW_HEADROOM, "rows left to the overflow task");
        assert_eq!(
            shared.spooled.load(Ordering::Relaxed),
            5,
            "rows the caller spooled"
        );
        assert_eq!(shared.dropped.load(Ordering::Relaxed), 0);
        assert_eq!(
            shared.overflow_rows.load(Ordering::Relaxed),
            OVERFLOW_HEADROOM as u64
        );
    }

    // Virtual time: the clock only moves while every task waits, so the
    // elapsed time is what gather() chose to wait, not how fast this machine is.
    #[tokio::test(start_paused = true)]
    async fn a_batch_leaves_at_half_the_in_memory_share_without_waiting() {
        let dir = tempfile::tempdir().expect("tmp");
        let (mut w, tx, _stop) = writer(dir.path()).await;
        queue(&tx, FLUSH_ROWS).await;
        let t = Instant::now();
        w.gather().await;
        assert_eq!(w.batch.len(), FLUSH_ROWS);
        assert_eq!(t.elapsed(), Duration::ZERO, "a full batch must not wait");

        // Fewer rows wait for more, up to BATCH_WAIT.
        w.batch.clear();
        queue(&tx, FLUSH_ROWS - 1).await;
        let t = Instant::now();
        w.gather().await;
        assert_eq!(w.batch.len(), FLUSH_ROWS - 1);
        assert!(t.elapsed() >= BATCH_WAIT, "waited {:?}", t.elapsed());
    }
}
