//! The fjall backend: the log's key spaces as fjall keyspaces in one
//! database, so a group commit is one atomic fjall write batch.
//!
//! Durability: with `sync`, each group commit's batch is written to fjall's
//! journal and made durable with `fdatasync` before the append returns.
//! With `buffered`, the batch reaches the operating system's buffers (it
//! survives a crash of the process, not of the machine) and
//! [`Store::sync`] makes it durable. On open, fjall's journal recovery drops
//! a batch torn by a crash whole, so a record is either fully present with
//! its index entries, or absent.

mod creation;
mod keyspaces;
mod memtables;

use std::path::Path;

pub use keyspaces::{
    CLOSE_FLUSH_LIMIT, Flushing, KeyOrder, KeyspaceMemory, Keyspaces, MEMTABLE_BYTES, MemoryShare,
    ROOM_WAIT_LIMIT, SCATTERED_L0_TABLES,
};
#[cfg(any(test, feature = "test-util"))]
pub use keyspaces::{assert_first_level_merges_as, assert_memtable_holds_memtable_bytes};

use fjall::{Keyspace, PersistMode};
use mailledger_core::{Space, Store, StoreError, Visit, WriteBatch, scan_iter};

const BACKEND: &str = "fjall";

/// The log kept in a fjall database.
pub struct FjallStore {
    // In `Space::ALL`'s order: log, event ids, streams, tenants.
    spaces: Keyspaces,
}

impl std::fmt::Debug for FjallStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FjallStore").finish_non_exhaustive()
    }
}

fn err(e: impl std::fmt::Display) -> StoreError {
    StoreError::new(BACKEND, e)
}

impl FjallStore {
    /// Opens the database in `path` within [`MemoryShare::DEFAULT`]; see
    /// [`FjallStore::open_with`].
    ///
    /// # Errors
    /// As [`FjallStore::open_with`].
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        Self::open_with(path, MemoryShare::DEFAULT)
    }

    /// Opens the database in `path`, creating it when missing, with a
    /// block cache and memtables within `memory`. One process at a time
    /// may hold it open.
    ///
    /// # Errors
    /// When the directory cannot be created or locked, or fjall's recovery fails.
    pub fn open_with(path: &Path, memory: MemoryShare) -> Result<Self, StoreError> {
        let order = |space: Space| match space {
            // Keyed by a stream's hash.
            Space::Streams => KeyOrder::Scattered,
            // Keyed by event time, by tenant: written in order, or
            // small; looked up by ids that are mostly new.
            Space::EventIds | Space::Tenants => KeyOrder::Ordered,
            // Read by position (always there) or by range.
            Space::Log => KeyOrder::Dense,
        };
        let spaces = Space::ALL.map(|space| (space.name(), order(space)));
        Ok(Self {
            // Every append waits for room in the memtables.
            spaces: Keyspaces::open_with(path, &spaces, memory, Flushing::BesideMerges)
                .map_err(err)?,
        })
    }

    /// What each of the log's keyspaces holds in memory now.
    #[must_use]
    pub fn memory(&self) -> Vec<(String, KeyspaceMemory)> {
        self.spaces.memory()
    }

    fn space(&self, space: Space) -> &Keyspace {
        let spaces = self.spaces.keyspaces();
        match space {
            Space::Log => &spaces[0],
            Space::EventIds => &spaces[1],
            Space::Streams => &spaces[2],
            Space::Tenants => &spaces[3],
        }
    }
}

impl Store for FjallStore {
    fn backend(&self) -> &'static str {
        BACKEND
    }

    fn commit(&self, batch: WriteBatch, sync: bool) -> Result<(), StoreError> {
        self.spaces.wait_for_room();
        let mut b = self.spaces.database().batch();
        if sync {
            b = b.durability(Some(PersistMode::SyncData));
        }
        for (space, k, v) in batch.puts {
            b.insert(self.space(space), k, v);
        }
        b.commit().map_err(err)
    }

    fn get(&self, space: Space, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.space(space).get(key).map_err(err)?.map(|v| v.to_vec()))
    }

    fn scan(
        &self,
        space: Space,
        start: &[u8],
        end: Option<&[u8]>,
        reverse: bool,
        visit: &mut dyn FnMut(&[u8], &[u8]) -> Visit,
    ) -> Result<(), StoreError> {
        let ks = self.space(space);
        let iter = match end {
            Some(end) => ks.range(start..end),
            None => ks.range(start..),
        };
        scan_iter(iter, reverse, |guard: fjall::Guard| {
            let (k, v) = guard.into_inner().map_err(err)?;
            Ok(visit(&k, &v))
        })
    }

    fn sync(&self) -> Result<(), StoreError> {
        self.spaces
            .database()
            .persist(PersistMode::SyncAll)
            .map_err(err)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use fjall::AbstractTree;

    #[test]
    fn the_keyspace_keyed_at_random_merges_its_first_level_at_sixteen_tables() {
        let dir = tempfile::tempdir().unwrap();
        let store = FjallStore::open(dir.path()).unwrap();
        assert_first_level_merges_as(store.space(Space::Streams), KeyOrder::Scattered);
        // The log, keyed by position, and the event ids, keyed by time
        // first, keep fjall's default.
        assert_first_level_merges_as(store.space(Space::Log), KeyOrder::Dense);
        assert_first_level_merges_as(store.space(Space::EventIds), KeyOrder::Ordered);
    }

    #[test]
    fn a_store_keeps_to_the_cache_and_memtables_of_its_share() {
        let dir = tempfile::tempdir().unwrap();
        let share = MemoryShare::new(8 << 20, 16 << 20);
        let store = FjallStore::open_with(dir.path(), share).unwrap();
        assert_eq!(store.spaces.database().cache_capacity(), 8 << 20);
        let value = vec![3u8; 16 * 1024];
        for i in 0..4096u64 {
            let mut batch = WriteBatch::new();
            batch.put(Space::Log, i.to_be_bytes().to_vec(), value.clone());
            batch.put(
                Space::EventIds,
                i.to_be_bytes().to_vec(),
                value[..64].to_vec(),
            );
            store.commit(batch, false).unwrap();
        }
        // 64 MiB written; once the keeper has looked, what is being
        // written is back within half the share, the rest flushed.
        std::thread::sleep(std::time::Duration::from_millis(100));
        let active: u64 = Space::ALL
            .iter()
            .map(|&s| store.space(s).tree.active_memtable().size())
            .sum();
        assert!(
            active <= share.active_limit(),
            "{active} bytes in memtables"
        );
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        for space in [Space::Log, Space::EventIds] {
            if store.space(space).table_count() == 0 {
                store.space(space).rotate_memtable().unwrap();
            }
            while store.space(space).table_count() == 0 {
                assert!(std::time::Instant::now() < deadline, "nothing was flushed");
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
        }
        // The flushed tables' index and filter blocks are read through the
        // cache, none held beside it: what a store holds does not grow with
        // its data.
        // Only each table's top-level index, a few bytes per 4 KiB block
        // of its index, stays beside the cache.
        let memory = store.memory();
        let (name, log) = &memory[0];
        assert_eq!(name, "log");
        assert_eq!(log.pinned_filters, 0, "{log:?}");
        assert!(log.pinned_index < 4096, "{log:?}");
        assert!(log.active_memtable <= share.active_limit());
        let (name, ids) = &memory[1];
        assert_eq!(name, "event_ids");
        assert_eq!(ids.pinned_filters, 0, "{ids:?}");
        assert!(ids.pinned_index < 4096, "{ids:?}");
    }

    #[test]
    fn a_write_waits_until_the_flushes_have_made_room_in_the_share() {
        let dir = tempfile::tempdir().unwrap();
        let share = MemoryShare::new(8 << 20, 8 << 20);
        let store = FjallStore::open_with(dir.path(), share).unwrap();
        // Written straight to the keyspace, past the wait, faster than
        // fjall flushes: the memtables outgrow the share.
        let ks = store.space(Space::Log);
        let value = vec![9u8; 64 * 1024];
        let mut i = 0u64;
        while store.spaces.write_buffer_size() <= share.write_buffer_bytes() {
            assert!(i < 16_384, "the flushes kept up with 1 GiB of writes");
            ks.insert(i.to_be_bytes(), value.as_slice()).unwrap();
            i += 1;
        }
        // A commit through the store waits for room first.
        let mut batch = WriteBatch::new();
        batch.put(Space::Log, u64::MAX.to_be_bytes().to_vec(), vec![1]);
        store.commit(batch, false).unwrap();
        let after = store.spaces.write_buffer_size();
        assert!(
            after <= share.write_buffer_bytes() + 1024,
            "{after} bytes in memtables after the commit"
        );
    }

    #[test]
    fn a_closed_store_leaves_nothing_in_the_journal_to_replay() {
        let dir = tempfile::tempdir().unwrap();
        let value = vec![5u8; 4096];
        {
            let store = FjallStore::open(dir.path()).unwrap();
            for i in 0..2048u64 {
                let mut batch = WriteBatch::new();
                batch.put(Space::Log, i.to_be_bytes().to_vec(), value.clone());
                batch.put(Space::Streams, i.to_le_bytes().to_vec(), vec![1]);
                store.commit(batch, true).unwrap();
            }
        }
        let store = FjallStore::open(dir.path()).unwrap();
        for space in Space::ALL {
            assert_eq!(
                store.space(space).tree.active_memtable().size(),
                0,
                "{space:?} was replayed from the journal"
            );
        }
        assert_eq!(
            store.get(Space::Log, &2047u64.to_be_bytes()).unwrap(),
            Some(value)
        );
        assert_eq!(
            store.get(Space::Streams, &7u64.to_le_bytes()).unwrap(),
            Some(vec![1])
        );
    }

    #[test]
    fn every_keyspace_keeps_writes_in_memory_up_to_memtable_bytes() {
        // Each written alone, within the default share.
        for space in Space::ALL {
            let dir = tempfile::tempdir().unwrap();
            let store = FjallStore::open(dir.path()).unwrap();
            assert_memtable_holds_memtable_bytes(store.space(space));
        }
    }
}
