//! Feeding projections: catch-up from each checkpoint, then live; rebuilds
//! into a fresh store swapped in without stopping reads.
//!
//! One reader reads and decodes each batch of the log once; every
//! projection applies it on its own thread through a [`Tx`] and commits its
//! writes together with its new checkpoint in one atomic batch of its own
//! store. So a crash anywhere leaves each projection's state and checkpoint
//! in agreement, and each event is applied exactly once.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use mailledger_core::{Direction, EventLog, Record, TenantFilter};

use crate::error::{Error, Result};
use crate::projection::{Input, Projection};
use crate::state::{
    CHECKPOINT_KEY, FjallState, Frozen, MemoryState, StateStore, Tx, checkpoint, stamp_format,
};

/// Records read and applied per batch.
pub const BATCH: usize = 4096;

/// How a rebuild reads and commits. The defaults suit a real log; tests set
/// small sizes to cross many reads and commits in a short history.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RebuildSizes {
    /// Records read and decoded as one batch (two such batches are read at
    /// once). Default 8,192.
    pub read: usize,
    /// Events applied between commits: larger commits let each projection
    /// keep more decoded state between its writes, and write fewer, larger
    /// tables (so less merging of them). A rebuild worker holds up to two
    /// commits' writes (one being written, one being applied): for the
    /// delivery log, on the order of 100 MB at the default. An interrupted
    /// rebuild resumes from its last commit. Default 250,000.
    pub commit: usize,
}

impl Default for RebuildSizes {
    fn default() -> Self {
        Self {
            read: 8192,
            commit: 250_000,
        }
    }
}

/// Decoded batches queued for each rebuild worker: bounds the memory a
/// rebuild holds while letting a slow projection fall this far behind.
const REBUILD_QUEUE: usize = 4;

/// Where a projection's stores live: `DIR/NAME/gen-N`, with `DIR/NAME/CURRENT`
/// naming the one in use. A rebuild writes `gen-(N+1)` and swaps.
const CURRENT: &str = "CURRENT";

pub(crate) struct Slot {
    pub(crate) projection: Box<dyn Projection>,
    store: RwLock<Arc<dyn StateStore>>,
    // Held while a batch is applied to the store or the store is swapped.
    write: Mutex<()>,
    checkpoint: AtomicU64,
    generation: AtomicU64,
}

impl Slot {
    pub(crate) fn new(
        projection: Box<dyn Projection>,
        store: Arc<dyn StateStore>,
        generation: u64,
    ) -> Result<Self> {
        let cp = checkpoint(store.as_ref())?;
        Ok(Self::with_checkpoint(projection, store, generation, cp))
    }

    /// A slot over `store`, whose checkpoint is `checkpoint`.
    pub(crate) fn with_checkpoint(
        projection: Box<dyn Projection>,
        store: Arc<dyn StateStore>,
        generation: u64,
        checkpoint: u64,
    ) -> Self {
        Self {
            projection,
            store: RwLock::new(store),
            write: Mutex::new(()),
            checkpoint: AtomicU64::new(checkpoint),
            generation: AtomicU64::new(generation),
        }
    }

    pub(crate) fn store(&self) -> Arc<dyn StateStore> {
        Arc::clone(&self.store.read().unwrap_or_else(PoisonError::into_inner))
    }

    pub(crate) fn checkpoint(&self) -> u64 {
        self.checkpoint.load(Ordering::Acquire)
    }

    /// The checkpoint every slot has reached: the smallest (`None` for no
    /// slots).
    pub(crate) fn reached(slots: &[Arc<Slot>]) -> Option<u64> {
        slots.iter().map(|s| s.checkpoint()).min()
    }

    /// Applies a decoded batch ending before `next` to the live store.
    fn apply(&self, records: &[Record], inputs: &[Input], next: u64) -> Result<()> {
        let _w = self.write.lock().unwrap_or_else(PoisonError::into_inner);
        let from = self.checkpoint();
        if from >= next {
            return Ok(());
        }
        let store = self.store();
        apply_to(
            self.projection.as_ref(),
            store.as_ref(),
            from,
            records,
            inputs,
            next,
        )?;
        self.checkpoint.store(next, Ordering::Release);
        Ok(())
    }
}

/// Applies the records at or after `from` and commits them with checkpoint
/// `next`, atomically.
pub(crate) fn apply_to(
    projection: &dyn Projection,
    store: &dyn StateStore,
    from: u64,
    records: &[Record],
    inputs: &[Input],
    next: u64,
) -> Result<()> {
    let mut tx = Tx::new(store);
    projection.apply_batch(&mut tx, records, inputs, from)?;
    let mut writes = tx.into_writes();
    writes.push((CHECKPOINT_KEY.to_vec(), Some(next.to_be_bytes().to_vec())));
    store.commit(writes)
}

/// A batch read and decoded: records, their inputs, and the position after.
type Decoded = (Vec<Record>, Vec<Input>, u64);

/// Reads up to `max` records from `from` (stopping before `until`) and
/// decodes them.
async fn read_batch(log: &dyn EventLog, from: u64, until: u64, max: usize) -> Result<Decoded> {
    let mut records: Vec<Record> = Vec::new();
    let mut next = from;
    while next < until && records.len() < max {
        let want = usize::try_from(until - next)
            .unwrap_or(usize::MAX)
            .min(max - records.len());
        let batch = log
            .read_all(&TenantFilter::All, next, Direction::Forward, want)
            .await?;
        let before = next;
        // Records come in position order; the whole batch is usually
        // kept, and then taken as it is rather than moved record by record.
        let mut batch_records = batch.records;
        batch_records.truncate(batch_records.partition_point(|r| r.position < until));
        if let Some(last) = batch_records.last() {
            next = last.position + 1;
        }
        if records.is_empty() {
            records = batch_records;
        } else {
            records.append(&mut batch_records);
        }
        match batch.next {
            Some(n) if n > next => next = n.min(until),
            _ => {}
        }
        if next <= before {
            break;
        }
    }
    let (records, inputs) = tokio::task::spawn_blocking(move || decode(records))
        .await
        .map_err(|_| Error::Stopped)??;
    Ok((records, inputs, next))
}

/// Decodes a batch.
fn decode(records: Vec<Record>) -> Result<(Vec<Record>, Vec<Input>)> {
    let mut inputs = Vec::with_capacity(records.len());
    for r in &records {
        inputs.push(Input::decode(r)?);
    }
    Ok((records, inputs))
}

/// Reads and decodes up to two batches of `read` records from `at`
/// (stopping before `until`), both at once.
async fn read_ahead(log: &dyn EventLog, at: u64, until: u64, read: usize) -> Result<Vec<Decoded>> {
    let step = read.max(1) as u64;
    let mid = at.saturating_add(step).min(until);
    let end = mid.saturating_add(step).min(until);
    if mid >= end {
        return Ok(vec![read_batch(log, at, mid, read).await?]);
    }
    let (first, second) = tokio::join!(
        read_batch(log, at, mid, read),
        read_batch(log, mid, end, read)
    );
    let first = first?;
    // A first batch that stopped short of `mid` found the log's end.
    if first.2 < mid {
        return Ok(vec![first]);
    }
    Ok(vec![first, second?])
}

/// Reads the batches of `[from, until)` and hands each to `apply`, reading
/// and decoding the next batch while `apply` works on the current one;
/// reports progress once each batch is applied.
async fn pipeline<F>(
    log: &dyn EventLog,
    from: u64,
    until: u64,
    max: usize,
    progress: Option<&(dyn Fn(Progress) + Sync)>,
    mut apply: F,
) -> Result<u64>
where
    F: FnMut(Decoded) -> tokio::task::JoinHandle<Result<()>>,
{
    let mut at = from;
    if at >= until {
        return Ok(at);
    }
    let mut current = read_batch(log, at, until, max).await?;
    loop {
        let next = current.2;
        if next <= at {
            return Ok(at);
        }
        let work = apply(current);
        let (done, following) = if next < until {
            let (d, f) = tokio::join!(work, read_batch(log, next, until, max));
            (d, Some(f))
        } else {
            (work.await, None)
        };
        done.map_err(|_| Error::Stopped)??;
        at = next;
        if let Some(p) = progress {
            p(Progress {
                done: at - from,
                total: until - from,
            });
        }
        match following {
            Some(f) => current = f?,
            None => return Ok(at),
        }
    }
}

/// Progress of a catch-up or rebuild.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// Events applied so far in this run.
    pub done: u64,
    /// Events this run will apply in all (the head when it started, less
    /// where it started).
    pub total: u64,
}

/// Brings `slots` up to `until` (at least), batch by batch.
pub(crate) async fn advance(
    log: &dyn EventLog,
    slots: &[Arc<Slot>],
    until: u64,
    batch: usize,
    progress: Option<&(dyn Fn(Progress) + Sync)>,
) -> Result<u64> {
    let start = Slot::reached(slots).unwrap_or(until);
    pipeline(
        log,
        start,
        until,
        batch,
        progress,
        |(records, inputs, next)| {
            let owned: Vec<Arc<Slot>> = slots
                .iter()
                .filter(|s| s.checkpoint() < next)
                .cloned()
                .collect();
            // A small batch is cheaper applied on one thread than handed to
            // three. The threads are the runtime's blocking pool, which
            // keeps them between batches: a thread started per batch paid
            // for its stack and for fresh allocator pages each time (a
            // fifth of the appliers' time went to page faults).
            if records.len() < 2048 || owned.len() < 2 {
                return tokio::task::spawn_blocking(move || {
                    owned
                        .iter()
                        .try_for_each(|s| s.apply(&records, &inputs, next))
                });
            }
            let batch = Arc::new((records, inputs));
            let applies: Vec<_> = owned
                .into_iter()
                .map(|s| {
                    let batch = Arc::clone(&batch);
                    tokio::task::spawn_blocking(move || s.apply(&batch.0, &batch.1, next))
                })
                .collect();
            tokio::spawn(async move {
                let mut out = Ok(());
                for a in applies {
                    let r = a.await.unwrap_or(Err(Error::Stopped));
                    if out.is_ok() {
                        out = r;
                    }
                }
                out
            })
        },
    )
    .await
}

/// Where a slot's stores live, for fjall-backed projections.
pub(crate) fn generation_dir(root: &Path, name: &str, generation: u64) -> PathBuf {
    root.join(name).join(format!("gen-{generation}"))
}

/// The generation `DIR/NAME/CURRENT` names (0 when absent).
pub(crate) fn current_generation(root: &Path, name: &str) -> Result<u64> {
    match std::fs::read_to_string(root.join(name).join(CURRENT)) {
        Ok(s) => s
            .trim()
            .strip_prefix("gen-")
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| Error::Corrupt(format!("{name}/{CURRENT} does not name a generation"))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
        Err(e) => Err(Error::Storage(format!("cannot read {name}/{CURRENT}: {e}"))),
    }
}

/// Points `DIR/NAME/CURRENT` at `generation`, atomically and durably.
fn set_current(root: &Path, name: &str, generation: u64) -> Result<()> {
    let dir = root.join(name);
    let tmp = dir.join("CURRENT.tmp");
    let io = |e: std::io::Error| {
        Error::Storage(format!("cannot switch {name} to its rebuilt store: {e}"))
    };
    {
        use std::io::Write as _;
        let mut f = std::fs::File::create(&tmp).map_err(io)?;
        f.write_all(format!("gen-{generation}\n").as_bytes())
            .map_err(io)?;
        f.sync_all().map_err(io)?;
    }
    std::fs::rename(&tmp, dir.join(CURRENT)).map_err(io)?;
    std::fs::File::open(&dir)
        .and_then(|d| d.sync_all())
        .map_err(io)?;
    Ok(())
}

struct Building {
    slot: Arc<Slot>,
    store: Arc<dyn StateStore>,
    from: AtomicU64,
    generation: u64,
}

/// A decoded batch shared by every projection's worker.
type Shared = Arc<Decoded>;

/// A rebuild worker: applies each batch it receives to its fresh store,
/// committing (with the checkpoint) once at least `commit` events
/// are pending, and when the batches end.
///
/// A commit is handed to a thread of its own, so applying goes on while it
/// is written; the overlay reads the writes in flight until the next one.
fn build_worker(
    b: &Building,
    batches: &mut tokio::sync::mpsc::Receiver<Shared>,
    commit: usize,
) -> Result<()> {
    let projection = b.slot.projection.as_ref();
    let store = b.store.as_ref();
    // A rendezvous: a hand-over waits for the previous commit to finish, so
    // at most one is in flight.
    let (commits, committed) = std::sync::mpsc::sync_channel::<(Arc<Frozen>, u64)>(0);
    std::thread::scope(|s| {
        let committer = s.spawn(move || -> Result<()> {
            for (frozen, next) in committed {
                let mut writes = frozen.sorted();
                let checkpoint = next.to_be_bytes();
                let at = writes.partition_point(|w| w.0 < CHECKPOINT_KEY);
                writes.insert(at, (CHECKPOINT_KEY, Some(&checkpoint[..])));
                store.commit_bulk(&writes)?;
                b.from.store(next, Ordering::Release);
            }
            Ok(())
        });
        let hand_over = |tx: &mut Tx<'_>, next: u64| commits.send((tx.freeze(), next)).is_ok();
        let applied = (|| {
            let mut at = b.from.load(Ordering::Acquire);
            // A store at checkpoint 0 holds no state (the checkpoint is
            // written with every commit of state).
            let mut tx = if at == 0 {
                Tx::over_empty(store)
            } else {
                Tx::new(store)
            };
            let mut pending = 0usize;
            while let Some(batch) = batches.blocking_recv() {
                let (records, inputs, next) = batch.as_ref();
                if *next <= at {
                    continue;
                }
                projection.apply_batch(&mut tx, records, inputs, at)?;
                pending += records.len();
                at = *next;
                // A failed hand-over means the committer stopped: its error
                // is the one to report.
                if pending >= commit {
                    if !hand_over(&mut tx, at) {
                        return Ok(());
                    }
                    pending = 0;
                }
            }
            if pending > 0 {
                hand_over(&mut tx, at);
            }
            Ok(())
        })();
        drop(commits);
        let committed = committer.join().unwrap_or(Err(Error::Stopped));
        applied.and(committed)
    })
}

/// Feeds `[start, until)` to every building projection: one reader reads
/// and decodes each batch once and hands it to a worker per projection, so
/// each projection goes at its own pace (a slow one does not hold the
/// others, nor the reader, until its queue is full).
async fn build_range(
    log: &dyn EventLog,
    building: &Arc<Vec<Building>>,
    until: u64,
    sizes: RebuildSizes,
    progress: Option<&(dyn Fn(Progress) + Sync)>,
) -> Result<()> {
    let start = building
        .iter()
        .map(|b| b.from.load(Ordering::Acquire))
        .min()
        .unwrap_or(until);
    if start >= until {
        return Ok(());
    }
    let mut senders = Vec::with_capacity(building.len());
    let mut workers = Vec::with_capacity(building.len());
    for i in 0..building.len() {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Shared>(REBUILD_QUEUE);
        let all = Arc::clone(building);
        senders.push(tx);
        workers.push(tokio::task::spawn_blocking(move || {
            build_worker(&all[i], &mut rx, sizes.commit)
        }));
    }
    let report = |p: &(dyn Fn(Progress) + Sync)| {
        let done = building
            .iter()
            .map(|b| b.from.load(Ordering::Acquire))
            .min()
            .unwrap_or(until);
        p(Progress {
            done: done.saturating_sub(start),
            total: until - start,
        });
    };
    let send_all = |chunks: Vec<Decoded>| {
        let senders = &senders;
        async move {
            for chunk in chunks {
                let chunk = Arc::new(chunk);
                let mut sent = false;
                for s in senders {
                    // A worker that stopped has dropped its queue; its
                    // error is collected below.
                    sent |= s.send(Arc::clone(&chunk)).await.is_ok();
                }
                if !sent {
                    return false;
                }
            }
            true
        }
    };
    let mut at = start;
    let mut read_error = None;
    // The next batches are read and decoded while these are handed over.
    let mut current = read_ahead(log, at, until, sizes.read).await;
    loop {
        let chunks = match current {
            Ok(c) => c,
            Err(e) => {
                read_error = Some(e);
                break;
            }
        };
        let next = chunks.last().map_or(at, |c| c.2);
        if next <= at {
            break;
        }
        let (sent, following) = if next < until {
            let (s, f) = tokio::join!(send_all(chunks), read_ahead(log, next, until, sizes.read));
            (s, Some(f))
        } else {
            (send_all(chunks).await, None)
        };
        if !sent {
            break;
        }
        at = next;
        if let Some(p) = progress {
            report(p);
        }
        match following {
            Some(f) => current = f,
            None => break,
        }
    }
    drop(senders);
    let mut out = read_error.map_or(Ok(()), Err);
    for w in workers {
        let r = w.await.unwrap_or(Err(Error::Stopped));
        if out.is_ok() {
            out = r;
        }
    }
    if out.is_ok()
        && let Some(p) = progress
    {
        report(p);
    }
    out
}

/// Rebuilds `slots` into fresh stores, reading the log once for all, and
/// swaps each in.
///
/// With a `root`, a fresh store is `gen-(N+1)`; a rebuild interrupted by a
/// crash left it with its own checkpoint, and the next rebuild resumes it.
pub(crate) async fn rebuild_slots(
    log: &dyn EventLog,
    slots: &[Arc<Slot>],
    root: Option<&Path>,
    sizes: RebuildSizes,
    progress: Option<&(dyn Fn(Progress) + Sync)>,
) -> Result<()> {
    let mut building = Vec::with_capacity(slots.len());
    for slot in slots {
        let generation = slot.generation.load(Ordering::Acquire) + 1;
        // A half-built store of another format (left by an older build) is
        // started over rather than resumed.
        let format = slot.projection.format();
        let store: Arc<dyn StateStore> = match root {
            Some(root) => Arc::new(
                FjallState::open_stamped(
                    &generation_dir(root, slot.projection.name(), generation),
                    format,
                )?
                .0,
            ),
            None => {
                let store = MemoryState::new();
                stamp_format(&store, format)?;
                Arc::new(store)
            }
        };
        let from = AtomicU64::new(checkpoint(store.as_ref())?);
        building.push(Building {
            slot: Arc::clone(slot),
            store,
            from,
            generation,
        });
    }
    let building = Arc::new(building);
    // Catch up with the head, twice: the second pass takes what was
    // appended during the first, so the swap below finds little to do.
    for _ in 0..2 {
        build_range(log, &building, log.head(), sizes, progress).await?;
    }
    for b in building.iter() {
        let slot = &b.slot;
        let name = slot.projection.name();
        b.store.flush()?;
        if let Some(root) = root {
            set_current(root, name, b.generation)?;
        }
        // The swap: no batch is being applied to the old store while the
        // writer is held. The fresh store may be a few events behind the
        // old one; the live runner goes on from its checkpoint.
        let old = {
            let _w = slot.write.lock().unwrap_or_else(PoisonError::into_inner);
            let old = {
                let mut store = slot.store.write().unwrap_or_else(PoisonError::into_inner);
                std::mem::replace(&mut *store, Arc::clone(&b.store))
            };
            slot.checkpoint
                .store(b.from.load(Ordering::Acquire), Ordering::Release);
            slot.generation.store(b.generation, Ordering::Release);
            old
        };
        if let Some(root) = root {
            // Readers may still hold the old store for a moment.
            for _ in 0..100 {
                if Arc::strong_count(&old) == 1 {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            drop(old);
            let dir = generation_dir(root, name, b.generation - 1);
            if let Err(e) = std::fs::remove_dir_all(&dir)
                && e.kind() != std::io::ErrorKind::NotFound
            {
                tracing::warn!(projection = name, error = %e, "could not remove the replaced projection store");
            }
        }
    }
    Ok(())
}
