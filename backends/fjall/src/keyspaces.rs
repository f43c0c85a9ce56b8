//! Opening fjall keyspaces with this backend's settings, chosen by how each
//! keyspace's keys arrive ([`KeyOrder`]): the log's store opens its
//! keyspaces here, and so does any other store kept in fjall (the
//! projections'), so that all of them are tuned in this one place.

use std::path::Path;
use std::sync::Arc;

use fjall::{Database, Keyspace, KeyspaceCreateOptions};

use crate::reaper::MemtableReaper;

/// The size at which a keyspace's memtable is sealed and flushed to a
/// table: 256 MiB (fjall's default is 64 MiB), for every [`KeyOrder`].
///
/// fjall installs each flush's and each compaction's result by writing and
/// syncing a new version file (five `fsync`s) while it holds the tree's
/// version lock, and every read of the tree waits for that lock. Larger
/// memtables mean fewer flushes and fewer, larger first-level tables to
/// merge, so fewer installs for reads to wait behind, and less merging
/// under sustained ingest. A memtable takes memory only as it fills. fjall
/// records the size when it creates a keyspace, so a database created
/// before keeps the size it was made with.
pub const MEMTABLE_BYTES: u64 = 256 * 1024 * 1024;

/// How many tables fjall's first level holds before it merges them into
/// the next, for [`KeyOrder::Scattered`] keyspaces (fjall's default, which
/// [`KeyOrder::Ordered`] keeps, is 4).
///
/// A random key range overlaps all of the next level, so each merge from
/// the first level rewrites that whole level, and the work per merge grows
/// with the data. Merging at 16 tables does it a quarter as often (the
/// next level's target grows with it, to 16 × 64 MiB). fjall slows writes
/// once a first level holds 20 runs and halts them at 30, so this stays
/// below 20. The price: a point read probes each first-level table's
/// filter and a range read seeks in each table. Like the memtable size,
/// fjall records it when it creates a keyspace.
pub const SCATTERED_L0_TABLES: u8 = 16;

/// How the keys written to a keyspace arrive, which decides how fjall
/// buffers and merges it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyOrder {
    /// In order (a position) or few: fjall's own merging.
    Ordered,
    /// In no order (ids, hashes): the first level is merged at
    /// [`SCATTERED_L0_TABLES`] tables.
    Scattered,
}

impl KeyOrder {
    /// The options a keyspace of this order is created with: memtables of
    /// [`MEMTABLE_BYTES`], and for [`KeyOrder::Scattered`] the first level
    /// merged at [`SCATTERED_L0_TABLES`] tables.
    fn options(self) -> KeyspaceCreateOptions {
        let options = KeyspaceCreateOptions::default().max_memtable_size(MEMTABLE_BYTES);
        match self {
            Self::Ordered => options,
            Self::Scattered => options.compaction_strategy(Arc::new(
                fjall::compaction::Leveled::default().with_l0_threshold(SCATTERED_L0_TABLES),
            )),
        }
    }
}

/// A fjall database and keyspaces in it, opened with this backend's
/// settings for their [`KeyOrder`], whose flushed memtables a thread of
/// their own frees outside fjall's locks (see the `reaper` module).
pub struct Keyspaces {
    // Stopped first: it holds clones of the keyspaces.
    _reaper: MemtableReaper,
    db: Database,
    keyspaces: Vec<Keyspace>,
}

impl std::fmt::Debug for Keyspaces {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keyspaces").finish_non_exhaustive()
    }
}

impl Keyspaces {
    /// Opens the database in `path`, creating it when missing, and in it
    /// the keyspaces `spaces` names, each created (when missing) with the
    /// settings for its order. One process at a time may hold it open.
    ///
    /// # Errors
    /// When the directory cannot be created or locked, fjall's recovery
    /// fails, or the reaper's thread cannot be started.
    pub fn open(path: &Path, spaces: &[(&str, KeyOrder)]) -> fjall::Result<Self> {
        std::fs::create_dir_all(path)?;
        let db = Database::builder(path).open()?;
        let keyspaces = spaces
            .iter()
            .map(|&(name, order)| db.keyspace(name, || order.options()))
            .collect::<fjall::Result<Vec<_>>>()?;
        // fjall syncs the folder of a new keyspace but not the folder that
        // names it: without this a power cut after the first commits can
        // drop every keyspace made at this open, and the journal's writes
        // to them with it (the power-cut test found it).
        mailledger_core::sync_tree(path)?;
        let reaper = MemtableReaper::start(keyspaces.clone())?;
        Ok(Self {
            _reaper: reaper,
            db,
            keyspaces,
        })
    }

    /// The database, for its write batches and persistence.
    #[must_use]
    pub fn database(&self) -> &Database {
        &self.db
    }

    /// The keyspaces, in the order [`Keyspaces::open`] was given them.
    #[must_use]
    pub fn keyspaces(&self) -> &[Keyspace] {
        &self.keyspaces
    }
}

/// Test support: checks that `ks` keeps 96 MiB of writes in its active
/// memtable, where fjall's default (64 MiB) would have sealed and flushed
/// one, so that it was made with [`MEMTABLE_BYTES`] (as keyspaces of
/// every [`KeyOrder`] are).
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

/// Test support: checks that `ks` merges its first level as a keyspace of
/// `order` does: at [`SCATTERED_L0_TABLES`] tables for
/// [`KeyOrder::Scattered`], at fjall's default of 4 for
/// [`KeyOrder::Ordered`], and not before.
///
/// # Panics
/// When the first level merges early or not at all.
#[cfg(any(test, feature = "test-util"))]
pub fn assert_first_level_merges_as(ks: &Keyspace, order: KeyOrder) {
    assert_first_level_merges_at(
        ks,
        match order {
            KeyOrder::Ordered => 4,
            KeyOrder::Scattered => SCATTERED_L0_TABLES,
        },
    );
}

/// Checks that `ks` merges its first level at `threshold` tables and not
/// before. Flushes `threshold / 2` small memtables of overlapping keys
/// (more than fjall's default threshold of 4 when `threshold` is 16) and
/// sees every table kept for a second, then flushes enough for the first
/// level to reach `threshold` (fjall moves the first table to the next
/// level, which is empty) and sees it merged within 30 s.
#[cfg(any(test, feature = "test-util"))]
fn assert_first_level_merges_at(ks: &Keyspace, threshold: u8) {
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
