//! Projections of the mailledger log: the delivery log, the suppression list
//! and analytics, each kept in its own store with a checkpoint written
//! atomically with its state, fed from the log (catch-up, then live), and
//! rebuildable from position 0 into a fresh store swapped in while reads go
//! on.
//!
//! Projections are derived data, never the source of truth: delete them and
//! a rebuild gives the same state. They hold no plaintext personal data:
//! sealed fields are kept as the ciphertext the log holds and opened at
//! query time with the contact's key, so an erasure covers every projection
//! at once, without a rebuild; keys are pseudonyms, never addresses.
//!
//! ```
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! use std::sync::Arc;
//! use mailledger_core::{EventLog, Ledger, LedgerConfig, MemoryStore};
//! use mailledger_projections::Projections;
//!
//! let log: Arc<dyn EventLog> = Arc::new(Ledger::open(MemoryStore::new(), LedgerConfig::new())?);
//! let projections = Projections::in_memory();
//! projections.catch_up(log.as_ref()).await?;
//! assert!(projections.status(log.head()).iter().all(|s| s.lag == 0));
//! # Ok::<_, Box<dyn std::error::Error>>(())
//! # }).unwrap();
//! ```

pub mod analytics;
pub mod codec;
pub mod delivery;
mod error;
mod projection;
mod rebuild;
mod runner;
mod starts;
pub mod state;
pub mod suppression;
mod view;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use mailledger_core::{EventLog, ThreadHook, ThreadRole};
use mailledger_fjall::MemoryShare;
use tokio::sync::watch;

pub use error::{Error, Result};
pub use projection::{Input, MessageRef, Projection};
pub use rebuild::RebuildSizes;
pub use runner::{BATCH, Progress};
pub use starts::MessageStarts;
pub use view::{MessageView, analytics_json, entry_json, row_json};

use runner::Slot;
use state::{FjallState, MemoryState, StateStore};

/// Starts a thread named `name` with a current-thread runtime of its own,
/// and runs the future `work` makes on it to its end. The thread, and each
/// thread of the runtime's blocking pool (named `pool`), first runs `hook`
/// for [`ThreadRole::Projections`]: whatever policy the caller has for
/// them (this crate sets none), whichever thread asked for the work.
/// Returns once the runtime is built.
fn spawn_with_runtime<F, Fut>(
    name: &str,
    pool: &str,
    hook: &ThreadHook,
    work: F,
) -> std::io::Result<std::thread::JoinHandle<()>>
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = ()>,
{
    let pool = pool.to_owned();
    let hook = hook.clone();
    let (started, start) = std::sync::mpsc::sync_channel::<std::io::Result<()>>(1);
    let handle = std::thread::Builder::new()
        .name(name.to_owned())
        .spawn(move || {
            hook.run(ThreadRole::Projections);
            let rt = tokio::runtime::Builder::new_current_thread()
                .thread_name(pool)
                .on_thread_start(move || hook.run(ThreadRole::Projections))
                .enable_all()
                .build();
            match rt {
                Ok(rt) => {
                    let _ = started.send(Ok(()));
                    rt.block_on(work());
                }
                Err(e) => {
                    let _ = started.send(Err(e));
                }
            }
        })?;
    match start.recv() {
        Ok(Ok(())) => Ok(handle),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(std::io::Error::other(format!(
            "the {name} thread stopped as it started"
        ))),
    }
}

/// How long the live runner lets appends gather before applying them.
pub const LIVE_GATHER: Duration = Duration::from_millis(20);

/// The names of the projections, in the order [`Projections`] keeps them.
pub const NAMES: [&str; 3] = [delivery::NAME, suppression::NAME, analytics::NAME];

/// Where one projection stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    /// The projection's name.
    pub name: &'static str,
    /// The position of the first event it has not applied.
    pub checkpoint: u64,
    /// How many events it is behind the head.
    pub lag: u64,
}

/// The state of the last rebuild started with [`Projections::start_rebuild`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RebuildStatus {
    /// The projections it rebuilds.
    pub projections: Vec<String>,
    /// Whether it is still running.
    pub running: bool,
    /// Events applied so far.
    pub done: u64,
    /// Events it will apply in all (grows when the log does).
    pub total: u64,
    /// Why it failed, if it did (the old stores stay in use).
    pub error: Option<String>,
}

/// The three projections, their stores, and the runner that feeds them.
pub struct Projections {
    slots: Vec<Arc<Slot>>,
    root: Option<PathBuf>,
    /// What the stores under `root` take together.
    memory: MemoryShare,
    caught_up: watch::Sender<u64>,
    /// Where recent messages start, for the runner's batches.
    starts: Arc<MessageStarts>,
    rebuild: std::sync::Mutex<Option<RebuildStatus>>,
    rebuild_sizes: RebuildSizes,
    thread_hook: ThreadHook,
}

impl std::fmt::Debug for Projections {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Projections")
            .field("root", &self.root)
            .finish_non_exhaustive()
    }
}

fn all() -> [Box<dyn Projection>; 3] {
    [
        Box::new(delivery::DeliveryLog),
        Box::new(suppression::SuppressionList),
        Box::new(analytics::Analytics),
    ]
}

/// Opens projection `p`'s store in use under `dir`, within `memory`,
/// removing its stores of older generations (see [`Projections::open_with`]).
fn open_slot(dir: &Path, p: Box<dyn Projection>, memory: MemoryShare) -> Result<Arc<Slot>> {
    let name = p.name();
    let generation = rebuild::current_generation(dir, name)?;
    if let Ok(entries) = std::fs::read_dir(dir.join(name)) {
        for e in entries.flatten() {
            let n = e.file_name();
            let old = n
                .to_str()
                .and_then(|n| n.strip_prefix("gen-"))
                .and_then(|g| g.parse::<u64>().ok())
                .is_some_and(|g| g < generation);
            if old {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }
    let path = rebuild::generation_dir(dir, name, generation);
    let (store, reset) = FjallState::open_stamped(&path, p.format(), memory)?;
    if reset {
        tracing::warn!(
            projection = name,
            format = p.format(),
            "projection state was in another format; rebuilding it from the log"
        );
    }
    Ok(Arc::new(Slot::new(p, Arc::new(store), generation)?))
}

impl Projections {
    /// The projections in fjall stores under `dir` within
    /// [`MemoryShare::DEFAULT`]; see [`Projections::open_with`].
    ///
    /// # Errors
    /// When a store cannot be opened.
    pub fn open(dir: &Path) -> Result<Self> {
        Self::open_with(dir, MemoryShare::DEFAULT)
    }

    /// The projections in fjall stores under `dir` (by default
    /// `mailledger-data/projections`), created when missing, whose caches
    /// and memtables take `memory` together: a quarter for each of the
    /// three stores, and the last quarter for the stores a rebuild fills
    /// (shared among them; a store swapped in by a rebuild keeps its
    /// smaller share until the next open). Stores of
    /// generations older than the current one (left by a crash after a
    /// rebuild's swap) are removed; a newer one is a rebuild in progress,
    /// kept for [`Projections::rebuild`] to resume.
    ///
    /// # Errors
    /// When a store cannot be opened.
    pub fn open_with(dir: &Path, memory: MemoryShare) -> Result<Self> {
        // Each store replays its own journal on open: the three at once.
        let opened: Vec<Result<Arc<Slot>>> = std::thread::scope(|s| {
            let handles: Vec<_> = all()
                .into_iter()
                .map(|p| s.spawn(move || open_slot(dir, p, memory.split(4))))
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or(Err(Error::Stopped)))
                .collect()
        });
        let slots = opened.into_iter().collect::<Result<Vec<_>>>()?;
        Ok(Self::with_slots(slots, Some(dir.to_path_buf()), memory))
    }

    /// The projections in memory, for tests.
    #[must_use]
    pub fn in_memory() -> Self {
        let slots = all()
            .into_iter()
            .map(|p| {
                // Stamped like a store on disk, so the two compare equal. A
                // memory store's reads and commits do not fail.
                let store = MemoryState::new();
                let _ = state::stamp_format(&store, p.format());
                Arc::new(Slot::with_checkpoint(p, Arc::new(store), 0, 0))
            })
            .collect();
        Self::with_slots(slots, None, MemoryShare::DEFAULT)
    }

    /// The projections over the given stores (delivery log, suppressions,
    /// analytics), for tests that look inside or inject failures.
    ///
    /// # Errors
    /// When a store's checkpoint cannot be read.
    pub fn with_stores(stores: [Arc<dyn StateStore>; 3]) -> Result<Self> {
        let mut slots = Vec::with_capacity(3);
        for (p, s) in all().into_iter().zip(stores) {
            slots.push(Arc::new(Slot::new(p, s, 0)?));
        }
        Ok(Self::with_slots(slots, None, MemoryShare::DEFAULT))
    }

    fn with_slots(slots: Vec<Arc<Slot>>, root: Option<PathBuf>, memory: MemoryShare) -> Self {
        let min = Slot::reached(&slots).unwrap_or(0);
        Self {
            slots,
            root,
            memory,
            caught_up: watch::channel(min).0,
            starts: Arc::new(MessageStarts::new()),
            rebuild: std::sync::Mutex::new(None),
            rebuild_sizes: RebuildSizes::default(),
            thread_hook: ThreadHook::default(),
        }
    }

    /// Sets how rebuilds read and commit (default [`RebuildSizes::default`]).
    #[must_use]
    pub fn with_rebuild_sizes(mut self, sizes: RebuildSizes) -> Self {
        self.rebuild_sizes = sizes;
        self
    }

    /// Sets the hook every thread this crate starts from now on runs first, with
    /// [`ThreadRole::Projections`]: the runner's and the background
    /// rebuild's threads and their runtimes' blocking pools, and a
    /// rebuild's committer threads. The default does nothing.
    #[must_use]
    pub fn with_thread_hook(mut self, hook: ThreadHook) -> Self {
        self.thread_hook = hook;
        self
    }

    fn slot(&self, name: &str) -> Result<&Arc<Slot>> {
        self.slots
            .iter()
            .find(|s| s.projection.name() == name)
            .ok_or_else(|| {
                Error::InvalidInput(format!(
                    "no projection named {name}; there are {}",
                    NAMES.join(", ")
                ))
            })
    }

    /// The store a projection reads from now (it changes when a rebuild
    /// swaps one in).
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for an unknown name.
    pub fn store(&self, name: &str) -> Result<Arc<dyn StateStore>> {
        Ok(self.slot(name)?.store())
    }

    /// Each projection's checkpoint and lag behind `head`.
    #[must_use]
    pub fn status(&self, head: u64) -> Vec<Status> {
        self.slots
            .iter()
            .map(|s| Status {
                name: s.projection.name(),
                checkpoint: s.checkpoint(),
                lag: head.saturating_sub(s.checkpoint()),
            })
            .collect()
    }

    fn publish(&self) {
        let min = Slot::reached(&self.slots).unwrap_or(0);
        self.caught_up.send_replace(min);
    }

    /// Applies every event up to the log's head as it is now; returns the
    /// position every projection has reached.
    ///
    /// # Errors
    /// A read, decode or storage failure; what was committed stays.
    pub async fn catch_up(&self, log: &dyn EventLog) -> Result<u64> {
        self.catch_up_with(log, log.head(), None).await
    }

    /// [`Projections::catch_up`] to `until`, reporting progress.
    ///
    /// # Errors
    /// As [`Projections::catch_up`].
    pub async fn catch_up_with(
        &self,
        log: &dyn EventLog,
        until: u64,
        progress: Option<&(dyn Fn(Progress) + Sync)>,
    ) -> Result<u64> {
        let r = runner::advance(log, &self.starts, &self.slots, until, BATCH, progress).await;
        self.publish();
        r
    }

    /// Waits until every projection has applied the events before
    /// `position`, or `timeout` passes; returns whether they have.
    pub async fn wait_for(&self, position: u64, timeout: Duration) -> bool {
        let mut rx = self.caught_up.subscribe();
        tokio::time::timeout(timeout, rx.wait_for(|p| *p >= position))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// Feeds the projections from `log` until `stop` turns true: catch-up,
    /// then each new append as the head moves. A failure is logged and
    /// retried after a pause (the log is the source of truth; nothing is
    /// lost by waiting).
    pub async fn run(self: Arc<Self>, log: Arc<dyn EventLog>, mut stop: watch::Receiver<bool>) {
        let mut head = log.watch_head();
        loop {
            if *stop.borrow() {
                return;
            }
            if let Err(e) = self.catch_up(log.as_ref()).await {
                tracing::error!(error = %e, "projection runner failed; retrying in 1 s");
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_secs(1)) => {}
                    _ = stop.changed() => {}
                }
                continue;
            }
            tokio::select! {
                r = head.changed() => if r.is_err() { return },
                _ = stop.changed() => {}
            }
            // Under a stream of appends, let a few group commits gather
            // before applying: fewer, larger batches cost less CPU than one
            // per commit, at the price of queries seeing events this much
            // later.
            let lag = log
                .head()
                .saturating_sub(Slot::reached(&self.slots).unwrap_or(0));
            if lag < BATCH as u64 {
                tokio::select! {
                    () = tokio::time::sleep(LIVE_GATHER) => {}
                    _ = stop.changed() => {}
                }
            }
        }
    }

    /// Runs [`Projections::run`] on a thread of its own (named
    /// `projections`), with a runtime of its own whose blocking pool
    /// (`projection-pool`) applies the batches, until `stop` turns true.
    /// Each of those threads first runs the hook set with
    /// [`Projections::with_thread_hook`].
    ///
    /// Returns once the thread runs with its runtime built.
    ///
    /// # Errors
    /// When the thread or its runtime cannot be started.
    pub fn spawn_runner(
        self: &Arc<Self>,
        log: Arc<dyn EventLog>,
        mut stop: watch::Receiver<bool>,
    ) -> std::io::Result<std::thread::JoinHandle<()>> {
        let this = Arc::clone(self);
        // Batches are applied on the runtime's blocking pool.
        spawn_with_runtime(
            "projections",
            "projection-pool",
            &self.thread_hook,
            move || async move {
                let run = this.run(log, stop.clone());
                // Stopping cuts a catch-up short: each batch commits its state
                // and checkpoint atomically, so nothing is half applied.
                tokio::select! {
                    () = run => {}
                    _ = stop.wait_for(|s| *s) => {}
                }
            },
        )
    }

    /// Rebuilds the named projections (all when `names` is empty) from
    /// position 0 into fresh stores, reading the log once, and swaps each in
    /// while reads go on. An interrupted rebuild resumes where it stopped.
    ///
    /// # Errors
    /// An unknown name, or a read, decode or storage failure (the old
    /// stores stay in use).
    pub async fn rebuild(
        &self,
        log: &dyn EventLog,
        names: &[&str],
        progress: Option<&(dyn Fn(Progress) + Sync)>,
    ) -> Result<()> {
        let slots: Vec<Arc<Slot>> = if names.is_empty() {
            self.slots.clone()
        } else {
            names
                .iter()
                .map(|n| self.slot(n).cloned())
                .collect::<Result<_>>()?
        };
        let r = rebuild::rebuild_slots(
            log,
            &slots,
            self.root.as_deref(),
            // A quarter of the share, among the stores being filled.
            self.memory.split(4 * slots.len() as u64),
            self.rebuild_sizes,
            &self.thread_hook,
            progress,
        )
        .await;
        self.publish();
        r
    }

    /// Starts [`Projections::rebuild`] in the background (all projections
    /// when `names` is empty) and returns at once: `false` when a rebuild is
    /// already running. Reads go on meanwhile; [`Projections::rebuild_status`]
    /// shows progress.
    ///
    /// The rebuild runs on a thread of its own (`projection-rebuild`) with a
    /// runtime of its own (blocking pool `rebuild-pool`), so a rebuild asked
    /// for by a request takes none of the request runtime's threads; each
    /// of those threads first runs the hook set with
    /// [`Projections::with_thread_hook`].
    ///
    /// # Errors
    /// An unknown name.
    pub fn start_rebuild(
        self: &Arc<Self>,
        log: Arc<dyn EventLog>,
        names: Vec<String>,
    ) -> Result<bool> {
        for n in &names {
            self.slot(n)?;
        }
        {
            let mut st = self
                .rebuild
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if st.as_ref().is_some_and(|s| s.running) {
                return Ok(false);
            }
            *st = Some(RebuildStatus {
                projections: if names.is_empty() {
                    NAMES.iter().map(|n| (*n).to_owned()).collect()
                } else {
                    names.clone()
                },
                running: true,
                ..RebuildStatus::default()
            });
        }
        let me = Arc::clone(self);
        let started = spawn_with_runtime(
            "projection-rebuild",
            "rebuild-pool",
            &self.thread_hook,
            move || async move {
                let progress = |p: Progress| {
                    me.update_rebuild(|s| {
                        s.done = p.done;
                        s.total = p.total;
                    });
                };
                let refs: Vec<&str> = names.iter().map(String::as_str).collect();
                let result = me.rebuild(log.as_ref(), &refs, Some(&progress)).await;
                if let Err(e) = &result {
                    tracing::error!(error = %e, "projection rebuild failed");
                }
                me.update_rebuild(|s| {
                    s.running = false;
                    s.error = result.err().map(|e| e.to_string());
                });
            },
        );
        if let Err(e) = started {
            let message = format!("cannot start the rebuild's thread: {e}");
            self.update_rebuild(|s| {
                s.running = false;
                s.error = Some(message.clone());
            });
            return Err(Error::Storage(message));
        }
        Ok(true)
    }

    /// Changes the status of the last rebuild started, if any.
    fn update_rebuild(&self, change: impl FnOnce(&mut RebuildStatus)) {
        if let Some(s) = self
            .rebuild
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .as_mut()
        {
            change(s);
        }
    }

    /// The last rebuild started with [`Projections::start_rebuild`], if any.
    #[must_use]
    pub fn rebuild_status(&self) -> Option<RebuildStatus> {
        self.rebuild
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Makes every projection's committed state durable.
    ///
    /// # Errors
    /// A storage failure.
    pub fn flush(&self) -> Result<()> {
        for s in &self.slots {
            s.store().flush()?;
        }
        Ok(())
    }
}
