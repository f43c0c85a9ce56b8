//! Opening fjall keyspaces with this backend's settings, chosen by how each
//! keyspace's keys arrive ([`KeyOrder`]): the log's store opens its
//! keyspaces here, and so does any other store kept in fjall (the
//! projections'), so that all of them are tuned in this one place.

use std::path::Path;
use std::sync::Arc;

use fjall::config::PinningPolicy;
use fjall::{AbstractTree, Database, Keyspace, KeyspaceCreateOptions};

use crate::memtables::MemtableKeeper;

/// The size at which a keyspace's memtable is sealed and flushed to a
/// table when its database's [`MemoryShare`] does not ask for it sooner:
/// 256 MiB (fjall's default is 64 MiB), for every [`KeyOrder`].
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

/// Whether a database's flushes may wait behind its merges.
///
/// fjall 3.1 runs both on its workers. With one worker a flush waits while
/// a merge runs, and a merge of a [`KeyOrder::Scattered`] keyspace rewrites
/// its whole next level (up to [`SCATTERED_L0_TABLES`] × 64 MiB), long
/// enough for the memtables to fill and writes to halt. With two, fjall's
/// first worker keeps itself for flushes, but while the other merges it
/// hands each merge request back to the queue and takes it straight back,
/// a busy loop for as long as the merge runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flushing {
    /// One worker, flushing and merging in turn: for stores written in
    /// the background (the projections'), whose lag absorbs a merge.
    BetweenMerges,
    /// Two workers, so a flush never waits for a merge: for stores whose
    /// commits wait for room (the log's, on every append), at the cost of
    /// the first worker's busy loop while a merge runs.
    BesideMerges,
}

impl Flushing {
    fn workers(self) -> usize {
        match self {
            Self::BetweenMerges => 1,
            Self::BesideMerges => 2,
        }
    }
}

/// The memory one fjall database may take: its block cache, and the
/// memtables its keyspaces are writing. A process that opens several
/// databases gives each its share of one budget.
///
/// fjall sizes a memtable per keyspace, and its database-wide write buffer
/// limit is not enforced in fjall 3.1, so [`Keyspaces`] keeps the limit
/// itself: when the memtables being written hold more than half of
/// [`MemoryShare::write_buffer_bytes`], the largest is sealed and flushed.
/// The other half is room for sealed memtables waiting to be flushed
/// (fjall halts writes to a keyspace with four of them queued).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryShare {
    cache_bytes: u64,
    write_buffer_bytes: u64,
}

impl MemoryShare {
    /// The least write buffer a share has: 8 MiB. Smaller memtables would
    /// flush so often that the first level fills with tiny tables.
    pub const MIN_WRITE_BUFFER_BYTES: u64 = 8 << 20;

    /// What a database opened without a share gets: a 64 MiB block cache,
    /// and 512 MiB of memtables (one keyspace may fill [`MEMTABLE_BYTES`]
    /// before it is flushed).
    pub const DEFAULT: Self = Self {
        cache_bytes: 64 << 20,
        write_buffer_bytes: 2 * MEMTABLE_BYTES,
    };

    /// A share of `cache_bytes` of block cache and `write_buffer_bytes` of
    /// memtables (at least [`MemoryShare::MIN_WRITE_BUFFER_BYTES`]).
    #[must_use]
    pub fn new(cache_bytes: u64, write_buffer_bytes: u64) -> Self {
        Self {
            cache_bytes,
            write_buffer_bytes: write_buffer_bytes.max(Self::MIN_WRITE_BUFFER_BYTES),
        }
    }

    /// One `n`th of this share (of each part), for one of `n` databases
    /// that share it.
    #[must_use]
    pub fn split(self, n: u64) -> Self {
        let n = n.max(1);
        Self::new(self.cache_bytes / n, self.write_buffer_bytes / n)
    }

    /// The block cache's capacity in bytes.
    #[must_use]
    pub fn cache_bytes(&self) -> u64 {
        self.cache_bytes
    }

    /// The memtables' bytes, being written and waiting to be flushed.
    #[must_use]
    pub fn write_buffer_bytes(&self) -> u64 {
        self.write_buffer_bytes
    }

    /// What the memtables being written may hold together before the
    /// largest is flushed: half the write buffer.
    #[must_use]
    pub fn active_limit(&self) -> u64 {
        self.write_buffer_bytes / 2
    }

    /// How much journal the database keeps before it flushes the
    /// memtables that hold the oldest journal back: the active limit, at
    /// least 64 MiB (fjall's least). fjall's default, 512 MiB, let a
    /// keyspace that is written little (the log's chain heads) keep every
    /// journal since its last flush, and an open after a crash replay
    /// them all.
    fn journal_bytes(&self) -> u64 {
        self.active_limit().max(64 << 20)
    }

    /// The memtable size a keyspace is created with: [`MEMTABLE_BYTES`],
    /// or the active limit when that is smaller.
    fn memtable_bytes(&self) -> u64 {
        MEMTABLE_BYTES.min(self.active_limit())
    }
}

impl Default for MemoryShare {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// What one keyspace holds in memory ([`Keyspaces::memory`]). The block
/// cache is the database's, shared by its keyspaces.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KeyspaceMemory {
    /// Bytes of the memtable being written.
    pub active_memtable: u64,
    /// Sealed memtables waiting to be flushed.
    pub sealed_memtables: usize,
    /// Bytes of index blocks fjall keeps in memory outside the cache
    /// (pinned; [`KeyOrder`]'s settings pin none but each table's short
    /// top-level index, its index being partitioned).
    pub pinned_index: u64,
    /// Bytes of filter blocks kept outside the cache (none, by
    /// [`KeyOrder`]'s settings).
    pub pinned_filters: u64,
}

/// How the keys written to a keyspace arrive and are read, which decides
/// how fjall buffers, merges and filters it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyOrder {
    /// In order or few, looked up by keys that may be missing (ids keyed
    /// by time): fjall's own merging and filters.
    Ordered,
    /// In order and read only by keys that exist or by ranges (the log's
    /// positions): fjall's own merging, and no filters, which would answer
    /// "maybe" to every such read while their blocks take memory that
    /// grows with the data.
    Dense,
    /// In no order (ids, hashes): the first level is merged at
    /// [`SCATTERED_L0_TABLES`] tables.
    Scattered,
}

impl KeyOrder {
    /// The options a keyspace of this order is created with: memtables of
    /// `memtable_bytes`; for [`KeyOrder::Dense`] no filters; for
    /// [`KeyOrder::Scattered`] the first level merged at
    /// [`SCATTERED_L0_TABLES`] tables.
    fn options(self, memtable_bytes: u64) -> KeyspaceCreateOptions {
        // No index or filter block is pinned outside the block cache (but
        // for the first level's filters of a scattered keyspace, below).
        // fjall pins the first levels' by default, and a table keeps what
        // it was written with: tables that arrive in order are flushed
        // into the first level and moved down whole, never rewritten, so
        // their pinned blocks grew with the data. Through the cache they
        // stay within the database's share; partitioned, so that a read
        // loads a small block of a large table's index rather than all of
        // it (only each table's short top-level index stays in memory).
        let options = KeyspaceCreateOptions::default()
            .max_memtable_size(memtable_bytes)
            .index_block_pinning_policy(PinningPolicy::all(false))
            .filter_block_pinning_policy(PinningPolicy::all(false))
            .index_block_partitioning_policy(PinningPolicy::all(true))
            .filter_block_partitioning_policy(PinningPolicy::all(true));
        match self {
            Self::Ordered => options,
            Self::Dense => options.filter_policy(fjall::config::FilterPolicy::disabled()),
            // The first level's filters whole and pinned: a point read
            // probes every first-level table (up to SCATTERED_L0_TABLES),
            // and through the cache each probe takes a lock that ingest's
            // reads and inserts share, where a query waits behind a holder
            // the scheduler has set aside. These tables are always merged
            // (rewritten) into the next level, never moved down whole, so
            // what is pinned stays bounded by the first level's size.
            Self::Scattered => options
                .filter_block_partitioning_policy(PinningPolicy::new([false, true]))
                .filter_block_pinning_policy(PinningPolicy::new([true, false]))
                .compaction_strategy(Arc::new(
                    fjall::compaction::Leveled::default().with_l0_threshold(SCATTERED_L0_TABLES),
                )),
        }
    }
}

/// A fjall database and keyspaces in it, opened with this backend's
/// settings for their [`KeyOrder`] and within a [`MemoryShare`], whose
/// memtables a thread of their own keeps (see the `memtables` module).
pub struct Keyspaces {
    // Stopped first: it holds clones of the keyspaces.
    _keeper: MemtableKeeper,
    db: Database,
    keyspaces: Vec<Keyspace>,
    write_buffer_bytes: u64,
}

/// The longest [`Keyspaces::wait_for_room`] waits: a flush that does not
/// come slows writes down rather than stopping them.
pub const ROOM_WAIT_LIMIT: std::time::Duration = std::time::Duration::from_secs(1);

impl std::fmt::Debug for Keyspaces {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keyspaces").finish_non_exhaustive()
    }
}

impl Keyspaces {
    /// Opens the database in `path` within [`MemoryShare::DEFAULT`],
    /// flushing [`Flushing::BesideMerges`]; see [`Keyspaces::open_with`].
    ///
    /// # Errors
    /// As [`Keyspaces::open_with`].
    pub fn open(path: &Path, spaces: &[(&str, KeyOrder)]) -> fjall::Result<Self> {
        Self::open_with(path, spaces, MemoryShare::DEFAULT, Flushing::BesideMerges)
    }

    /// Opens the database in `path`, creating it when missing, and in it
    /// the keyspaces `spaces` names, each created (when missing) with the
    /// settings for its order, within `memory`, its flushes waiting behind
    /// its merges or not as `flushing` says. One process at a time may
    /// hold it open.
    ///
    /// # Errors
    /// When the directory cannot be created or locked, fjall's recovery
    /// fails, or the keeper's thread cannot be started.
    pub fn open_with(
        path: &Path,
        spaces: &[(&str, KeyOrder)],
        memory: MemoryShare,
        flushing: Flushing,
    ) -> fjall::Result<Self> {
        std::fs::create_dir_all(path)?;
        if crate::creation::clear_unfinished_creation(path)? {
            tracing::warn!(
                path = %path.display(),
                "a store whose creation was cut short held no data; created afresh"
            );
        }
        let db = Database::builder(path)
            .cache_size(memory.cache_bytes())
            .max_journaling_size(memory.journal_bytes())
            .worker_threads(flushing.workers())
            .open()?;
        let keyspaces = spaces
            .iter()
            .map(|&(name, order)| db.keyspace(name, || order.options(memory.memtable_bytes())))
            .collect::<fjall::Result<Vec<_>>>()?;
        // fjall syncs the folder of a new keyspace but not the folder that
        // names it: without this a power cut after the first commits can
        // drop every keyspace made at this open, and the journal's writes
        // to them with it (the power-cut test found it).
        mailledger_core::sync_tree(path)?;
        let keeper = MemtableKeeper::start(keyspaces.clone(), memory.active_limit())?;
        Ok(Self {
            _keeper: keeper,
            db,
            keyspaces,
            write_buffer_bytes: memory.write_buffer_bytes(),
        })
    }

    /// Waits, before a write, while the memtables being written and those
    /// waiting to be flushed hold more than the share's write buffer,
    /// until fjall's flushes have made room (at most [`ROOM_WAIT_LIMIT`]).
    /// Writers that call it keep the memtables within the share: on a busy
    /// machine the flushes fall behind the writes, and sealed memtables
    /// would otherwise pile up (fjall itself waits only once a keyspace
    /// has four).
    pub fn wait_for_room(&self) {
        if self.db.write_buffer_size() <= self.write_buffer_bytes {
            return;
        }
        let deadline = std::time::Instant::now() + ROOM_WAIT_LIMIT;
        while self.db.write_buffer_size() > self.write_buffer_bytes
            && std::time::Instant::now() < deadline
        {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
    }

    /// The bytes of the memtables being written and waiting to be flushed.
    #[must_use]
    pub fn write_buffer_size(&self) -> u64 {
        self.db.write_buffer_size()
    }

    /// Seals every memtable that holds writes and waits, up to
    /// [`CLOSE_FLUSH_LIMIT`], for fjall to flush them, so that the next open
    /// has little journal to replay. Called when the keyspaces are
    /// dropped; a failure leaves the journal to replay, as after a crash.
    fn flush_all(&self) {
        let deadline = std::time::Instant::now() + CLOSE_FLUSH_LIMIT;
        for ks in &self.keyspaces {
            if ks.tree.active_memtable().size() > 0 {
                let _ = ks.rotate_memtable();
            }
        }
        for ks in &self.keyspaces {
            while ks.sealed_memtable_count() > 0 && std::time::Instant::now() < deadline {
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
        }
    }

    /// What each keyspace holds in memory now, by name.
    #[must_use]
    pub fn memory(&self) -> Vec<(String, KeyspaceMemory)> {
        self.keyspaces
            .iter()
            .map(|ks| {
                let held = KeyspaceMemory {
                    active_memtable: ks.tree.active_memtable().size(),
                    sealed_memtables: ks.sealed_memtable_count(),
                    pinned_index: ks.tree.pinned_block_index_size() as u64,
                    pinned_filters: ks.tree.pinned_filter_size() as u64,
                };
                (ks.name().to_string(), held)
            })
            .collect()
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

impl Drop for Keyspaces {
    fn drop(&mut self) {
        self.flush_all();
    }
}

/// How long dropping [`Keyspaces`] waits for its memtables to be flushed.
/// An open after a clean close then replays little of the journal: it
/// otherwise reads back every write since the last flush, one key at a
/// time, which took seconds after minutes of ingest.
pub const CLOSE_FLUSH_LIMIT: std::time::Duration = std::time::Duration::from_secs(30);

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
/// [`KeyOrder::Ordered`] and [`KeyOrder::Dense`], and not before; and that
/// only a scattered keyspace pins filters, those of its first level alone.
///
/// # Panics
/// When the first level merges early or not at all, or filters are pinned
/// where they should not be, or not where they should.
#[cfg(any(test, feature = "test-util"))]
pub fn assert_first_level_merges_as(ks: &Keyspace, order: KeyOrder) {
    assert_first_level_merges_at(
        ks,
        match order {
            KeyOrder::Ordered | KeyOrder::Dense => 4,
            KeyOrder::Scattered => SCATTERED_L0_TABLES,
        },
    );
    let name = ks.name();
    if ks.l0_table_count() == 0 {
        assert_eq!(
            ks.tree.pinned_filter_size(),
            0,
            "{name:?}: tables below the first level pin no filter"
        );
    }
    let before = ks.tree.pinned_filter_size();
    for key in 0..64u64 {
        ks.insert(key.to_be_bytes(), [1]).expect("insert");
    }
    ks.rotate_memtable_and_wait().expect("flush");
    let after = ks.tree.pinned_filter_size();
    match order {
        KeyOrder::Scattered => assert!(
            after > before,
            "{name:?}: a first-level table's filter is pinned"
        ),
        KeyOrder::Ordered | KeyOrder::Dense => {
            assert_eq!(after, 0, "{name:?}: no filter pinned");
        }
    }
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
