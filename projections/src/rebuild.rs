//! Rebuilds: each projection built from position 0 into a fresh store,
//! reading the log once for all, and swapped in without stopping reads.
//!
//! Where a projection's stores live: `DIR/NAME/gen-N`, with the file
//! `DIR/NAME/CURRENT` naming the one in use (`gen-N` and a newline). A
//! rebuild writes `gen-(N+1)`, points `CURRENT` at it (write, fsync,
//! rename) and swaps it in.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use mailledger_core::{EventLog, ThreadHook, ThreadRole};
use mailledger_fjall::MemoryShare;

use crate::error::{Error, Result};
use crate::runner::{Decoded, Progress, Slot, read_batch};
use crate::starts::MessageStarts;
use crate::state::{
    CHECKPOINT_KEY, FjallState, Frozen, MemoryState, StateStore, Tx, checkpoint, stamp_format,
};

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

/// Reads and decodes up to two batches of `read` records from `at`
/// (stopping before `until`), both at once.
async fn read_ahead(
    log: &dyn EventLog,
    starts: &Arc<MessageStarts>,
    at: u64,
    until: u64,
    read: usize,
) -> Result<Vec<Decoded>> {
    let step = read.max(1) as u64;
    let mid = at.saturating_add(step).min(until);
    let end = mid.saturating_add(step).min(until);
    if mid >= end {
        return Ok(vec![read_batch(log, starts, at, mid, read).await?]);
    }
    let (first, second) = tokio::join!(
        read_batch(log, starts, at, mid, read),
        read_batch(log, starts, mid, end, read)
    );
    let first = first?;
    // A first batch that stopped short of `mid` found the log's end.
    if first.2 < mid {
        return Ok(vec![first]);
    }
    Ok(vec![first, second?])
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
/// A commit is handed to a thread of its own (`projection-commit`, which
/// first runs `hook`), so applying goes on while it is written; the overlay
/// reads the writes in flight until the next one.
fn build_worker(
    b: &Building,
    batches: &mut tokio::sync::mpsc::Receiver<Shared>,
    commit: usize,
    hook: &ThreadHook,
) -> Result<()> {
    let projection = b.slot.projection.as_ref();
    let store = b.store.as_ref();
    // A rendezvous: a hand-over waits for the previous commit to finish, so
    // at most one is in flight.
    let (commits, committed) = std::sync::mpsc::sync_channel::<(Arc<Frozen>, u64)>(0);
    std::thread::scope(|s| {
        let committer = std::thread::Builder::new()
            .name("projection-commit".to_owned())
            .spawn_scoped(s, move || -> Result<()> {
                hook.run(ThreadRole::Projections);
                for (frozen, next) in committed {
                    let mut writes = frozen.sorted();
                    let checkpoint = next.to_be_bytes();
                    let at = writes.partition_point(|w| w.0 < CHECKPOINT_KEY);
                    writes.insert(at, (CHECKPOINT_KEY, Some(&checkpoint[..])));
                    store.commit_bulk(&writes)?;
                    b.from.store(next, Ordering::Release);
                }
                Ok(())
            })
            .map_err(|e| Error::Storage(format!("cannot start a rebuild's committer: {e}")))?;
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
    hook: &ThreadHook,
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
        let hook = hook.clone();
        senders.push(tx);
        workers.push(tokio::task::spawn_blocking(move || {
            build_worker(&all[i], &mut rx, sizes.commit, &hook)
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
    // Its own memory of where messages start, filled as it reads.
    let starts = Arc::new(MessageStarts::new());
    let mut current = read_ahead(log, &starts, at, until, sizes.read).await;
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
            let (s, f) = tokio::join!(
                send_all(chunks),
                read_ahead(log, &starts, next, until, sizes.read)
            );
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
/// With a `root`, a fresh store is `gen-(N+1)`, opened within `memory`; a
/// rebuild interrupted by a crash left it with its own checkpoint, and the
/// next rebuild resumes it.
/// Each committer thread it starts first runs `hook`.
pub(crate) async fn rebuild_slots(
    log: &dyn EventLog,
    slots: &[Arc<Slot>],
    root: Option<&Path>,
    memory: MemoryShare,
    sizes: RebuildSizes,
    hook: &ThreadHook,
    progress: Option<&(dyn Fn(Progress) + Sync)>,
) -> Result<()> {
    let mut building = Vec::with_capacity(slots.len());
    for slot in slots {
        let generation = slot.generation() + 1;
        // A half-built store of another format (left by an older build) is
        // started over rather than resumed.
        let format = slot.projection.format();
        let store: Arc<dyn StateStore> = match root {
            Some(root) => Arc::new(
                FjallState::open_stamped(
                    &generation_dir(root, slot.projection.name(), generation),
                    format,
                    memory,
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
        build_range(log, &building, log.head(), sizes, hook, progress).await?;
    }
    for b in building.iter() {
        let slot = &b.slot;
        let name = slot.projection.name();
        b.store.flush()?;
        if let Some(root) = root {
            set_current(root, name, b.generation)?;
        }
        // The fresh store may be a few events behind the old one; the live
        // runner goes on from its checkpoint.
        let old = slot.swap(
            Arc::clone(&b.store),
            b.from.load(Ordering::Acquire),
            b.generation,
        );
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
