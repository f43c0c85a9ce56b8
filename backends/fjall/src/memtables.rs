//! The memtables' upkeep, on a thread of its own: it keeps the memtables
//! being written within their database's share of memory, and frees
//! flushed ones outside fjall's locks.
//!
//! **Within the share.** fjall 3.1 sizes memtables per keyspace and does
//! not enforce a limit across a database's keyspaces. Each period, when
//! the active memtables of the keyspaces together hold more than the
//! limit ([`MemoryShare::active_limit`](crate::MemoryShare::active_limit)),
//! the largest is sealed; fjall's workers flush it.
//!
//! **Freeing.** fjall 3.1 retires old versions of a keyspace while it holds that
//! keyspace's version lock (`SuperVersions::maintenance`, run after each
//! memtable rotation). When the version it drops holds the last reference
//! to a flushed memtable, the memtable (a skiplist of every record written
//! since the last rotation, up to [`MEMTABLE_BYTES`](crate::MEMTABLE_BYTES))
//! is freed under the lock. Freeing that many nodes is slow (a cache miss
//! each, and the thread may wait for a core), and every read and write of
//! the keyspace waits for it: reads during ingestion would see those waits
//! as their slowest answers.
//!
//! [`MemtableKeeper`] takes its own reference to each keyspace's active
//! memtable soon after it becomes active, and lets go of it only once it
//! holds the last one. The version lock then drops a reference that is
//! not the last, and the memtable is freed here, where no lock is held.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use fjall::{AbstractTree, Keyspace};

/// How often the keeper measures the active memtables and looks for new
/// ones to hold and old ones to free. A memtable stays active far longer
/// than this period, so none is missed; one that were would be freed the
/// old way. Between two looks the memtables may outgrow their limit by
/// what is written in one period.
const PERIOD: Duration = Duration::from_millis(10);

/// A thread that keeps the active memtables of some keyspaces within a
/// limit and frees their flushed memtables outside fjall's version locks.
/// Dropping it stops the thread and frees what it holds.
pub struct MemtableKeeper {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

#[derive(Default)]
struct Shared {
    stop: Mutex<bool>,
    wake: Condvar,
    freed: AtomicU64,
    sealed: AtomicU64,
}

impl std::fmt::Debug for MemtableKeeper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemtableKeeper")
            .field("freed", &self.freed())
            .field("sealed", &self.sealed())
            .finish_non_exhaustive()
    }
}

impl MemtableKeeper {
    /// Starts the keeper's thread for `keyspaces`, whose active memtables
    /// may hold `active_limit` bytes together.
    ///
    /// # Errors
    /// When the thread cannot be started.
    pub fn start(keyspaces: Vec<Keyspace>, active_limit: u64) -> std::io::Result<Self> {
        let shared = Arc::new(Shared::default());
        let thread = std::thread::Builder::new()
            .name("memtable-keeper".into())
            .spawn({
                let shared = Arc::clone(&shared);
                move || keep(&shared, &keyspaces, active_limit)
            })?;
        Ok(Self {
            shared,
            thread: Some(thread),
        })
    }

    /// How many memtables the keeper has freed as their last holder.
    #[must_use]
    pub fn freed(&self) -> u64 {
        self.shared.freed.load(Ordering::Relaxed)
    }

    /// How many memtables the keeper has sealed to stay within its limit.
    #[must_use]
    pub fn sealed(&self) -> u64 {
        self.shared.sealed.load(Ordering::Relaxed)
    }
}

/// Seals the largest active memtable of `keyspaces` when together they
/// hold more than `limit` bytes. One a period: fjall needs a moment to
/// swap in the new memtable.
fn keep_within(shared: &Shared, keyspaces: &[Keyspace], limit: u64) {
    let mut total = 0u64;
    let mut largest: Option<(u64, &Keyspace)> = None;
    for ks in keyspaces {
        let size = ks.tree.active_memtable().size();
        total += size;
        if largest.is_none_or(|(top, _)| size > top) {
            largest = Some((size, ks));
        }
    }
    if total > limit
        && let Some((_, ks)) = largest
        // A failed rotation leaves the memtable as it was; fjall's own
        // size still bounds it, and the next period tries again.
        && ks.rotate_memtable().unwrap_or(false)
    {
        shared.sealed.fetch_add(1, Ordering::Relaxed);
    }
}

fn keep(shared: &Shared, keyspaces: &[Keyspace], active_limit: u64) {
    let mut held = Vec::new();
    let mut stop = shared.stop.lock().unwrap_or_else(PoisonError::into_inner);
    while !*stop {
        drop(stop);
        keep_within(shared, keyspaces, active_limit);
        for ks in keyspaces {
            let active = ks.tree.active_memtable();
            if !held.iter().any(|m| Arc::ptr_eq(m, &active)) {
                held.push(active);
            }
        }
        let before = held.len();
        // A count of 1 is this list's own reference: nobody else holds
        // the memtable or can reach it again, so it is ours to free.
        held.retain(|m| Arc::strong_count(m) > 1);
        let freed = (before - held.len()) as u64;
        if freed > 0 {
            shared.freed.fetch_add(freed, Ordering::Relaxed);
        }
        stop = shared.stop.lock().unwrap_or_else(PoisonError::into_inner);
        if !*stop {
            stop = shared
                .wake
                .wait_timeout(stop, PERIOD)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }
}

impl Drop for MemtableKeeper {
    fn drop(&mut self) {
        *self
            .shared
            .stop
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = true;
        self.shared.wake.notify_all();
        if let Some(thread) = self.thread.take() {
            // The thread cannot panic short of an allocation failure; a
            // panic there would only mean memtables freed the old way.
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[test]
    fn a_flushed_memtable_is_freed_by_the_keeper_once_fjall_lets_go() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = fjall::Database::builder(dir.path()).open().expect("open");
        let ks = db
            .keyspace("k", fjall::KeyspaceCreateOptions::default)
            .expect("keyspace");
        let first = Arc::downgrade(&ks.tree.active_memtable());
        let fjalls = first.strong_count();
        let keeper = MemtableKeeper::start(vec![ks.clone()], u64::MAX).expect("keeper");
        ks.insert("a", "1").expect("insert");
        // Let the keeper take its reference while the memtable is active.
        let deadline = Instant::now() + Duration::from_secs(10);
        while first.strong_count() == fjalls && Instant::now() < deadline {
            std::thread::sleep(PERIOD);
        }
        assert_eq!(
            first.strong_count(),
            fjalls + 1,
            "the keeper never took the memtable"
        );
        // Flush it, then rotate again: the rotation retires the versions
        // that still held the flushed memtable.
        ks.rotate_memtable_and_wait().expect("flush");
        for n in 0..3 {
            ks.insert(format!("b{n}"), "2").expect("insert");
            ks.rotate_memtable_and_wait().expect("flush");
        }
        while first.strong_count() > 0 && Instant::now() < deadline {
            std::thread::sleep(PERIOD);
        }
        assert_eq!(first.strong_count(), 0, "the flushed memtable was kept");
        assert!(keeper.freed() >= 1, "fjall freed it, not the keeper");
    }

    #[test]
    fn active_memtables_are_kept_within_their_limit_and_flushed() {
        const LIMIT: u64 = 4 << 20;
        const CHUNK: u64 = 1 << 20;
        let dir = tempfile::tempdir().expect("tempdir");
        let db = fjall::Database::builder(dir.path()).open().expect("open");
        let big = || fjall::KeyspaceCreateOptions::default().max_memtable_size(1 << 30);
        let spaces = [
            db.keyspace("a", big).expect("keyspace"),
            db.keyspace("b", big).expect("keyspace"),
        ];
        let keeper = MemtableKeeper::start(spaces.to_vec(), LIMIT).expect("keeper");
        let value = vec![7u8; 16 * 1024];
        let active = || -> u64 {
            spaces
                .iter()
                .map(|ks| ks.tree.active_memtable().size())
                .sum()
        };
        let mut key = 0u64;
        let mut most = 0;
        // 32 MiB in 1 MiB chunks over both keyspaces, a few periods apart:
        // after each, the keeper has had time to look.
        for chunk in 0..32 {
            let ks = &spaces[chunk % 2];
            for _ in 0..CHUNK / value.len() as u64 {
                ks.insert(key.to_be_bytes(), &value).expect("insert");
                key += 1;
            }
            std::thread::sleep(PERIOD * 5);
            most = most.max(active());
        }
        assert!(
            most <= LIMIT + CHUNK,
            "the active memtables held {most} bytes, the limit is {LIMIT}"
        );
        assert!(keeper.sealed() >= 4, "sealed only {}", keeper.sealed());
        // Both keyspaces' sealed memtables reach tables.
        let deadline = Instant::now() + Duration::from_secs(30);
        while spaces.iter().any(|ks| ks.table_count() == 0) {
            assert!(
                Instant::now() < deadline,
                "the sealed memtables were not flushed"
            );
            std::thread::sleep(PERIOD);
        }
        // And nothing was lost.
        let read: usize = spaces.iter().map(|ks| ks.iter().count()).sum();
        assert_eq!(read as u64, key);
    }
}
