//! [`FjallState`]: projection state in a fjall database of its own.

use std::path::Path;

use mailledger_fjall::{Flushing, KeyOrder, Keyspaces, MemoryShare};

use super::{StateStore, Write, WriteRef, drive, stamp_format};
use crate::error::{Error, Result};

/// Projection state in a fjall database of its own.
pub struct FjallState {
    // One keyspace, "state".
    db: Keyspaces,
}

impl std::fmt::Debug for FjallState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FjallState").finish_non_exhaustive()
    }
}

fn fj(e: impl std::fmt::Display) -> Error {
    Error::Storage(e.to_string())
}

impl FjallState {
    /// Opens (or creates) the database in `dir` within
    /// [`MemoryShare::DEFAULT`].
    ///
    /// # Errors
    /// When the directory cannot be created or locked, or recovery fails.
    pub fn open(dir: &Path) -> Result<Self> {
        Self::open_with(dir, MemoryShare::DEFAULT)
    }

    /// Opens (or creates) the database in `dir`, its cache and memtables
    /// within `memory`.
    ///
    /// # Errors
    /// When the directory cannot be created or locked, or recovery fails.
    pub fn open_with(dir: &Path, memory: MemoryShare) -> Result<Self> {
        // Most keys arrive in the log's order within their table and
        // value, but a rebuild ingests one first-level table per commit
        // that spans every table and value, and merging those at fjall's
        // default of four rewrote the next level over and over; so merge
        // as a scattered keyspace does.
        let db = Keyspaces::open_with(
            dir,
            &[("state", KeyOrder::Scattered)],
            memory,
            Flushing::BetweenMerges,
        )
        .map_err(fj)?;
        Ok(Self { db })
    }

    /// The keyspace holding the state.
    fn ks(&self) -> &fjall::Keyspace {
        &self.db.keyspaces()[0]
    }

    /// Opens the store in `dir`, within `memory`, for state in layout `format`
    /// ([`stamp_format`]). A store in another layout is derived data this
    /// build cannot read: it is removed and a fresh one opened, for the
    /// runner to rebuild from the log. Returns whether that happened.
    ///
    /// # Errors
    /// When the store cannot be opened, stamped or removed.
    pub fn open_stamped(dir: &Path, format: u32, memory: MemoryShare) -> Result<(Self, bool)> {
        let store = Self::open_with(dir, memory)?;
        if stamp_format(&store, format)? {
            return Ok((store, false));
        }
        drop(store);
        std::fs::remove_dir_all(dir)
            .map_err(|e| Error::Storage(format!("cannot remove an outdated store: {e}")))?;
        let fresh = Self::open_with(dir, memory)?;
        stamp_format(&fresh, format)?;
        Ok((fresh, true))
    }
}

impl StateStore for FjallState {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(self.ks().get(key).map_err(fj)?.map(|v| v.to_vec()))
    }

    fn scan(
        &self,
        start: &[u8],
        end: &[u8],
        reverse: bool,
        visit: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<()> {
        if start >= end {
            return Ok(());
        }
        let iter = self
            .ks()
            .range(start..end)
            .map(|g| g.into_inner().map_err(fj));
        drive(iter, reverse, visit)
    }

    fn commit(&self, writes: Vec<Write>) -> Result<()> {
        self.db.wait_for_room();
        let mut b = self.db.database().batch();
        for (k, v) in writes {
            match v {
                Some(v) => b.insert(self.ks(), k, v),
                None => b.remove(self.ks(), k),
            }
        }
        b.commit().map_err(fj)
    }

    fn commit_bulk(&self, writes: &[WriteRef<'_>]) -> Result<()> {
        // Ingestion writes new tables and registers them at `finish`, all
        // at once: a crash before then leaves none of them. It takes keys
        // in order, once each.
        //
        // The writes point all over the heap, in sorted rather than
        // allocation order, so reading each key and value is a cache miss.
        // Ingesting one at a time waits out each miss in turn; so each
        // chunk is first checked for order in a short loop that reads its
        // keys and values, whose misses overlap, and is then ingested from
        // the cache.
        let mut ingest = self.ks().start_ingestion().map_err(fj)?;
        let mut previous: Option<&[u8]> = None;
        for chunk in writes.chunks(INGEST_CHUNK) {
            let mut touched = 0u8;
            for &(k, v) in chunk {
                if previous.is_some_and(|p| p >= k) {
                    return Err(Error::Storage(
                        "bulk writes must be sorted by key, one per key".into(),
                    ));
                }
                previous = Some(k);
                if let Some(v) = v {
                    touched ^= v.first().copied().unwrap_or(0) ^ v.last().copied().unwrap_or(0);
                }
            }
            std::hint::black_box(touched);
            for &(k, v) in chunk {
                match v {
                    Some(v) => ingest.write(k, v).map_err(fj)?,
                    None => ingest.write_tombstone(k).map_err(fj)?,
                }
            }
        }
        ingest.finish().map_err(fj)
    }

    fn flush(&self) -> Result<()> {
        self.db
            .database()
            .persist(fjall::PersistMode::SyncAll)
            .map_err(fj)
    }
}

/// Writes [`FjallState::commit_bulk`] reads ahead of ingesting them: small
/// enough that their keys and values stay in the core's cache.
const INGEST_CHUNK: usize = 256;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_projection_store_keeps_writes_in_memory_up_to_memtable_bytes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = FjallState::open(dir.path()).expect("fjall");
        mailledger_fjall::assert_memtable_holds_memtable_bytes(store.ks());
    }

    #[test]
    fn a_projection_store_merges_its_first_level_as_a_keyspace_keyed_at_random() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = FjallState::open(dir.path()).expect("fjall");
        mailledger_fjall::assert_first_level_merges_as(store.ks(), KeyOrder::Scattered);
    }

    #[test]
    fn a_bulk_commit_refuses_unsorted_writes_and_changes_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let fjall = FjallState::open(dir.path()).expect("fjall");
        let err = fjall
            .commit_bulk(&[(&b"b"[..], Some(&b"1"[..])), (&b"a"[..], Some(&b"2"[..]))])
            .expect_err("unsorted");
        assert!(matches!(err, Error::Storage(_)));
        assert_eq!(fjall.get(b"a").expect("get"), None);
        assert_eq!(fjall.get(b"b").expect("get"), None);
        // Out of order past the first chunk, which was already ingested.
        let keys: Vec<[u8; 4]> = (0..INGEST_CHUNK as u32 + 10)
            .map(u32::to_be_bytes)
            .chain([0u32.to_be_bytes()])
            .collect();
        let writes: Vec<WriteRef<'_>> = keys.iter().map(|k| (&k[..], Some(&b"v"[..]))).collect();
        let err = fjall.commit_bulk(&writes).expect_err("unsorted");
        assert!(matches!(err, Error::Storage(_)));
        for k in &keys {
            assert_eq!(fjall.get(k).expect("get"), None);
        }
    }
}
