//! Feeding projections: catch-up from each checkpoint, then live (rebuilds
//! are in `rebuild.rs`).
//!
//! One reader reads and decodes each batch of the log once; every
//! projection applies it on its own thread through a [`Tx`] and commits its
//! writes together with its new checkpoint in one atomic batch of its own
//! store. So a crash anywhere leaves each projection's state and checkpoint
//! in agreement, and each event is applied exactly once.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use mailledger_core::{Direction, EventLog, Record, TenantFilter};

use crate::error::{Error, Result};
use crate::projection::{Input, Projection};
use crate::starts::MessageStarts;
use crate::state::{CHECKPOINT_KEY, StateStore, Tx, checkpoint};

/// Records read and applied per batch.
pub const BATCH: usize = 4096;

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

    /// The generation of the store in use (see `rebuild.rs`).
    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Puts `store`, at `checkpoint` and of `generation`, in place of the
    /// store in use, and returns that one. No batch is being applied to the
    /// old store while the writer is held.
    pub(crate) fn swap(
        &self,
        store: Arc<dyn StateStore>,
        checkpoint: u64,
        generation: u64,
    ) -> Arc<dyn StateStore> {
        let _w = self.write.lock().unwrap_or_else(PoisonError::into_inner);
        let old = {
            let mut current = self.store.write().unwrap_or_else(PoisonError::into_inner);
            std::mem::replace(&mut *current, store)
        };
        self.checkpoint.store(checkpoint, Ordering::Release);
        self.generation.store(generation, Ordering::Release);
        old
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
pub(crate) type Decoded = (Vec<Record>, Vec<Input>, u64);

/// Reads up to `max` records from `from` (stopping before `until`) and
/// decodes them.
pub(crate) async fn read_batch(
    log: &dyn EventLog,
    starts: &Arc<MessageStarts>,
    from: u64,
    until: u64,
    max: usize,
) -> Result<Decoded> {
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
    let (records, inputs) = Input::decode_all(log, records, starts).await?;
    Ok((records, inputs, next))
}

/// Reads the batches of `[from, until)` and hands each to `apply`, reading
/// and decoding the next batch while `apply` works on the current one;
/// reports progress once each batch is applied.
async fn pipeline<F>(
    log: &dyn EventLog,
    starts: &Arc<MessageStarts>,
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
    let mut current = read_batch(log, starts, at, until, max).await?;
    loop {
        let next = current.2;
        if next <= at {
            return Ok(at);
        }
        let work = apply(current);
        let (done, following) = if next < until {
            let (d, f) = tokio::join!(work, read_batch(log, starts, next, until, max));
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
    starts: &Arc<MessageStarts>,
    slots: &[Arc<Slot>],
    until: u64,
    batch: usize,
    progress: Option<&(dyn Fn(Progress) + Sync)>,
) -> Result<u64> {
    let start = Slot::reached(slots).unwrap_or(until);
    pipeline(
        log,
        starts,
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
