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

mod reaper;

use std::path::Path;

pub use reaper::MemtableReaper;

use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode};
use mailledger_core::{Space, Store, StoreError, Visit, WriteBatch};

const BACKEND: &str = "fjall";

/// The size at which a keyspace's memtable is sealed and flushed to a
/// table: 256 MiB (fjall's default is 64 MiB). Used for the log's
/// keyspaces and the projections' stores.
///
/// fjall installs each flush's and each compaction's result by writing and
/// syncing a new version file (five `fsync`s) while it holds the tree's
/// version lock, and every read of the tree waits for that lock: a
/// timeline query that met an install waited 5 to 60 ms. Larger memtables
/// mean fewer flushes, fewer and larger first-level tables to merge, so
/// fewer installs. In 30 s load runs (2026-11-25, seven interleaved
/// pairs), timeline queries over 4 ms fell from 220 to 445 per run to 62
/// to 203, at a peak resident size of 2.0 to 2.6 GB instead of 1.1 to 1.2
/// GB (3.0 GB after 2 minutes). Over 120 s of ingest they also sustained
/// more: 38,793 to 43,996 events/s (four runs) against 33,589/s (one run,
/// 2026-11-25). A memtable takes memory only as it fills. fjall records the size
/// when it creates a keyspace, so a database created before keeps the size
/// it was made with.
pub const MEMTABLE_BYTES: u64 = 256 * 1024 * 1024;

/// How many tables fjall's first level holds before it merges them into
/// the next, for the keyspaces whose keys arrive in no order: the log's
/// `EventIds` and `Streams` and every projection's store (fjall's default,
/// which the log itself and its chain heads keep, is 4).
///
/// A random key range overlaps all of the next level, so each merge from
/// the first level rewrites that whole level, and the work per merge grows
/// with the data: over 120 s of ingest, fjall's workers went from 11% of
/// the machine's CPU in the first half minute to 26% in the last. Merging
/// at 16 tables does it a quarter as often (the next level's target grows
/// with it, to 16 × 64 MiB). Over 120 s load runs (2026-11-25, three
/// interleaved pairs) ingest sustained 45,822 to 51,796 events/s against
/// 37,305 to 41,395/s with 4 for the log's keyspaces and 8 for the
/// projections'. fjall slows writes once a first level holds 20 runs and
/// halts them at 30, so this stays below 20. A point read probes each
/// first-level table's filter and a range read (a stream) seeks in each
/// table. Like the memtable size, fjall records it when it creates a
/// keyspace.
pub const SCATTERED_L0_TABLES: u8 = 16;

/// Options for a keyspace whose keys arrive in no order: memtables of
/// [`MEMTABLE_BYTES`], the first level merged at [`SCATTERED_L0_TABLES`]
/// tables.
#[must_use]
pub fn scattered_keyspace() -> KeyspaceCreateOptions {
    KeyspaceCreateOptions::default()
        .max_memtable_size(MEMTABLE_BYTES)
        .compaction_strategy(std::sync::Arc::new(
            fjall::compaction::Leveled::default().with_l0_threshold(SCATTERED_L0_TABLES),
        ))
}

/// The log kept in a fjall database.
pub struct FjallStore {
    // Stopped first: it holds clones of the keyspaces.
    _reaper: MemtableReaper,
    db: Database,
    spaces: [Keyspace; 4],
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
    /// Opens the database in `path`, creating it when missing. One process
    /// at a time may hold it open.
    ///
    /// # Errors
    /// When the directory cannot be created or locked, or fjall's recovery fails.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        std::fs::create_dir_all(path).map_err(err)?;
        let db = Database::builder(path).open().map_err(err)?;
        let open = |space: Space| {
            db.keyspace(space.name(), || match space {
                Space::EventIds | Space::Streams => scattered_keyspace(),
                // Keyed by position and by tenant: written in order, or
                // small.
                Space::Log | Space::Tenants => {
                    KeyspaceCreateOptions::default().max_memtable_size(MEMTABLE_BYTES)
                }
            })
        };
        let spaces = [
            open(Space::Log).map_err(err)?,
            open(Space::EventIds).map_err(err)?,
            open(Space::Streams).map_err(err)?,
            open(Space::Tenants).map_err(err)?,
        ];
        let reaper = MemtableReaper::start(spaces.to_vec()).map_err(err)?;
        Ok(Self {
            _reaper: reaper,
            db,
            spaces,
        })
    }

    fn space(&self, space: Space) -> &Keyspace {
        match space {
            Space::Log => &self.spaces[0],
            Space::EventIds => &self.spaces[1],
            Space::Streams => &self.spaces[2],
            Space::Tenants => &self.spaces[3],
        }
    }
}

impl Store for FjallStore {
    fn backend(&self) -> &'static str {
        BACKEND
    }

    fn commit(&self, batch: WriteBatch, sync: bool) -> Result<(), StoreError> {
        let mut b = self.db.batch();
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
        let mut step = |guard: fjall::Guard| -> Result<Visit, StoreError> {
            let (k, v) = guard.into_inner().map_err(err)?;
            Ok(visit(&k, &v))
        };
        if reverse {
            for guard in iter.rev() {
                if step(guard)? == Visit::Stop {
                    break;
                }
            }
        } else {
            for guard in iter {
                if step(guard)? == Visit::Stop {
                    break;
                }
            }
        }
        Ok(())
    }

    fn sync(&self) -> Result<(), StoreError> {
        self.db.persist(PersistMode::SyncAll).map_err(err)
    }
}

/// Test support: checks that `ks` keeps 96 MiB of writes in its active
/// memtable, where fjall's default (64 MiB) would have sealed and flushed
/// one, so that it was made with [`MEMTABLE_BYTES`].
///
/// # Panics
/// When the memtable was sealed or a table written.
#[cfg(any(test, feature = "test-util"))]
pub fn assert_memtable_holds_memtable_bytes(ks: &Keyspace) {
    const WRITTEN: u64 = 96 * 1024 * 1024;
    const { assert!(MEMTABLE_BYTES > WRITTEN) };
    let value = vec![7u8; 64 * 1024];
    for i in 0..WRITTEN / value.len() as u64 {
        ks.insert(i.to_be_bytes(), &value).expect("insert");
    }
    assert_eq!(
        (ks.sealed_memtable_count(), ks.table_count()),
        (0, 0),
        "{:?} rotated its memtable below MEMTABLE_BYTES",
        ks.name()
    );
}

/// Test support: checks that `ks` merges its first level at `threshold`
/// tables and not before. Flushes `threshold / 2` small memtables of
/// overlapping keys (more than fjall's default threshold of 4 when
/// `threshold` is 16) and sees every table kept for a second, then flushes
/// enough for the first level to reach `threshold` (fjall moves the first
/// table to the next level, which is empty) and sees it merged within 30 s.
///
/// # Panics
/// When the first level merges early or not at all.
#[cfg(any(test, feature = "test-util"))]
pub fn assert_first_level_merges_at(ks: &Keyspace, threshold: u8) {
    use std::time::{Duration, Instant};
    let threshold = usize::from(threshold);
    let flush = |round: usize| {
        for key in 0..64u64 {
            ks.insert(key.to_be_bytes(), round.to_be_bytes())
                .expect("insert");
        }
        ks.rotate_memtable_and_wait().expect("flush");
    };
    let half = threshold / 2;
    for round in 0..half {
        flush(round);
    }
    let until = Instant::now() + Duration::from_secs(1);
    while Instant::now() < until {
        assert_eq!(
            ks.table_count(),
            half,
            "tables merged before the first level held {threshold}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    for round in half..=threshold {
        flush(round);
    }
    let until = Instant::now() + Duration::from_secs(30);
    while ks.l0_table_count() >= threshold {
        assert!(
            Instant::now() < until,
            "{threshold} first-level tables were not merged"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn the_keyspaces_keyed_at_random_merge_their_first_level_at_sixteen_tables() {
        let dir = tempfile::tempdir().unwrap();
        let store = FjallStore::open(dir.path()).unwrap();
        for space in [Space::EventIds, Space::Streams] {
            assert_first_level_merges_at(store.space(space), SCATTERED_L0_TABLES);
        }
        // The log, keyed by position, keeps fjall's default.
        assert_first_level_merges_at(store.space(Space::Log), 4);
    }

    #[test]
    fn every_keyspace_keeps_writes_in_memory_up_to_memtable_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let store = FjallStore::open(dir.path()).unwrap();
        for space in Space::ALL {
            assert_memtable_holds_memtable_bytes(store.space(space));
        }
    }
}
