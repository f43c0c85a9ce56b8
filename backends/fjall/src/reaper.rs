//! Frees fjall's flushed memtables on a thread of its own.
//!
//! fjall 3.1 retires old versions of a keyspace while it holds that
//! keyspace's version lock (`SuperVersions::maintenance`, run after each
//! memtable rotation). When the version it drops holds the last reference
//! to a flushed memtable, the memtable (a skiplist of every record written
//! since the last rotation, up to [`MEMTABLE_BYTES`](crate::MEMTABLE_BYTES))
//! is freed under the lock. Freeing that many nodes is slow (a cache miss
//! each, and the thread may wait for a core), and every read and write of
//! the keyspace waits for it: reads during ingestion would see those waits
//! as their slowest answers.
//!
//! [`MemtableReaper`] takes its own reference to each keyspace's active
//! memtable soon after it becomes active, and lets go of it only once it
//! holds the last one. The version lock then drops a reference that is
//! not the last, and the memtable is freed here, where no lock is held.

use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use fjall::{AbstractTree, Keyspace};

/// How often the reaper looks for new memtables and frees those only it
/// holds. A memtable stays active until it holds
/// [`MEMTABLE_BYTES`](crate::MEMTABLE_BYTES), far longer than this period,
/// so none is missed; one that were would be freed the old way.
const PERIOD: Duration = Duration::from_millis(10);

/// A thread that frees the flushed memtables of some keyspaces outside
/// fjall's version locks. Dropping it stops the thread and frees what it
/// holds.
pub struct MemtableReaper {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

#[derive(Default)]
struct Shared {
    stop: Mutex<bool>,
    wake: Condvar,
    freed: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for MemtableReaper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemtableReaper")
            .field("freed", &self.freed())
            .finish_non_exhaustive()
    }
}

impl MemtableReaper {
    /// Starts the reaper's thread for `keyspaces`.
    ///
    /// # Errors
    /// When the thread cannot be started.
    pub fn start(keyspaces: Vec<Keyspace>) -> std::io::Result<Self> {
        let shared = Arc::new(Shared::default());
        let thread = std::thread::Builder::new()
            .name("memtable-reaper".into())
            .spawn({
                let shared = Arc::clone(&shared);
                move || reap(&shared, &keyspaces)
            })?;
        Ok(Self {
            shared,
            thread: Some(thread),
        })
    }

    /// How many memtables the reaper has freed as their last holder.
    #[must_use]
    pub fn freed(&self) -> u64 {
        self.shared.freed.load(std::sync::atomic::Ordering::Relaxed)
    }
}

fn reap(shared: &Shared, keyspaces: &[Keyspace]) {
    let mut held = Vec::new();
    let mut stop = shared.stop.lock().unwrap_or_else(PoisonError::into_inner);
    while !*stop {
        drop(stop);
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
            shared
                .freed
                .fetch_add(freed, std::sync::atomic::Ordering::Relaxed);
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

impl Drop for MemtableReaper {
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
    fn a_flushed_memtable_is_freed_by_the_reaper_once_fjall_lets_go() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = fjall::Database::builder(dir.path()).open().expect("open");
        let ks = db
            .keyspace("k", fjall::KeyspaceCreateOptions::default)
            .expect("keyspace");
        let first = Arc::downgrade(&ks.tree.active_memtable());
        let fjalls = first.strong_count();
        let reaper = MemtableReaper::start(vec![ks.clone()]).expect("reaper");
        ks.insert("a", "1").expect("insert");
        // Let the reaper take its reference while the memtable is active.
        let deadline = Instant::now() + Duration::from_secs(10);
        while first.strong_count() == fjalls && Instant::now() < deadline {
            std::thread::sleep(PERIOD);
        }
        assert_eq!(
            first.strong_count(),
            fjalls + 1,
            "the reaper never took the memtable"
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
        assert!(reaper.freed() >= 1, "fjall freed it, not the reaper");
    }
}
