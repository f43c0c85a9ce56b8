//! Where a projection keeps its state: an ordered key-value store with
//! atomic batches ([`StateStore`]), in fjall ([`FjallState`], the default)
//! or in memory ([`MemoryState`], for tests), and the write overlay a batch
//! of events is applied through ([`Tx`]).
//!
//! A projection's checkpoint is a key of the same store ([`CHECKPOINT_KEY`])
//! and is written in the same atomic batch as the state it covers, so after
//! any crash the state is exactly that of the events before the checkpoint.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::hash::BuildHasher;
use std::path::Path;
use std::sync::{Arc, RwLock};

use rustc_hash::{FxBuildHasher, FxHashMap, FxHashSet};

use crate::error::{Error, Result};

/// The key holding a projection's checkpoint: the position of the first
/// event not yet applied, as 8 big-endian bytes. No tenant key starts with
/// a 0 byte, so it never collides with state.
pub const CHECKPOINT_KEY: &[u8] = b"\x00checkpoint";

/// The key holding the version of the layout a store's state was written
/// in ([`crate::Projection::format`]), as 4 big-endian bytes.
pub const FORMAT_KEY: &[u8] = b"\x00format";

/// Whether `store` holds state in layout `format`. An empty store (no
/// checkpoint, no format) is stamped with it and holds; a store with state
/// but no format predates versioning and does not.
///
/// # Errors
/// A storage failure.
pub fn stamp_format(store: &dyn StateStore, format: u32) -> Result<bool> {
    match store.get(FORMAT_KEY)? {
        Some(v) => Ok(v.as_slice() == format.to_be_bytes()),
        None if checkpoint(store)? == 0 => {
            store.commit(vec![(
                FORMAT_KEY.to_vec(),
                Some(format.to_be_bytes().to_vec()),
            )])?;
            Ok(true)
        }
        None => Ok(false),
    }
}

/// One write of a batch: a value, or `None` to delete the key.
pub type Write = (Vec<u8>, Option<Vec<u8>>);

/// An ordered key-value store with atomic batches.
pub trait StateStore: Send + Sync + 'static {
    /// The value of `key`, if any.
    ///
    /// # Errors
    /// A storage failure.
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>>;

    /// Visits the pairs with `start <= key < end` in key order (descending
    /// when `reverse`), until `visit` returns false.
    ///
    /// # Errors
    /// A storage failure.
    fn scan(
        &self,
        start: &[u8],
        end: &[u8],
        reverse: bool,
        visit: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<()>;

    /// Applies every write at once: after a crash either all of them are
    /// visible or none is. Not synced: projection state is derived data, and
    /// a lost tail is re-applied from the log.
    ///
    /// # Errors
    /// A storage failure; then none of the writes happened.
    fn commit(&self, writes: Vec<Write>) -> Result<()>;

    /// [`StateStore::commit`] for a large batch, as a rebuild writes: the
    /// same atomicity, by whatever path loads many keys fastest (fjall:
    /// sorted ingestion into new tables, bypassing the memtable).
    ///
    /// `writes` are sorted by key, one per key ([`Frozen::sorted`]).
    ///
    /// # Errors
    /// A storage failure; then none of the writes happened.
    fn commit_bulk(&self, writes: &[WriteRef<'_>]) -> Result<()> {
        self.commit(
            writes
                .iter()
                .map(|(k, v)| (k.to_vec(), v.map(<[u8]>::to_vec)))
                .collect(),
        )
    }

    /// Makes committed writes durable.
    ///
    /// # Errors
    /// A storage failure.
    fn flush(&self) -> Result<()>;
}

/// The checkpoint stored in `store`: 0 for a new store.
///
/// # Errors
/// A storage failure, or a checkpoint that is not 8 bytes.
pub fn checkpoint(store: &dyn StateStore) -> Result<u64> {
    match store.get(CHECKPOINT_KEY)? {
        None => Ok(0),
        Some(v) => <[u8; 8]>::try_from(v.as_slice())
            .map(u64::from_be_bytes)
            .map_err(|_| Error::Corrupt("checkpoint is not 8 bytes".into())),
    }
}

/// Feeds `visit` the pairs of `iter`, backwards when `reverse`, until it
/// returns false.
fn drive<K: AsRef<[u8]>, V: AsRef<[u8]>>(
    iter: impl DoubleEndedIterator<Item = Result<(K, V)>>,
    reverse: bool,
    visit: &mut dyn FnMut(&[u8], &[u8]) -> bool,
) -> Result<()> {
    let mut step = |item: Result<(K, V)>| item.map(|(k, v)| visit(k.as_ref(), v.as_ref()));
    if reverse {
        for item in iter.rev() {
            if !step(item)? {
                break;
            }
        }
    } else {
        for item in iter {
            if !step(item)? {
                break;
            }
        }
    }
    Ok(())
}

/// Projection state in memory: nothing survives the process.
#[derive(Debug, Default)]
pub struct MemoryState {
    map: RwLock<BTreeMap<Vec<u8>, Vec<u8>>>,
}

impl MemoryState {
    /// An empty store.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Every pair but the checkpoint and format: what two builds of a
    /// projection must agree on.
    #[must_use]
    pub fn dump(&self) -> BTreeMap<Vec<u8>, Vec<u8>> {
        let map = self
            .map
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        map.iter()
            .filter(|(k, _)| k.as_slice() != CHECKPOINT_KEY && k.as_slice() != FORMAT_KEY)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }
}

impl StateStore for MemoryState {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let map = self
            .map
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        Ok(map.get(key).cloned())
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
        let map = self
            .map
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let range = map.range::<[u8], _>((
            std::ops::Bound::Included(start),
            std::ops::Bound::Excluded(end),
        ));
        drive(range.map(|(k, v)| Ok((k, v))), reverse, visit)
    }

    fn commit(&self, writes: Vec<Write>) -> Result<()> {
        let mut map = self
            .map
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for (k, v) in writes {
            match v {
                Some(v) => map.insert(k, v),
                None => map.remove(&k),
            };
        }
        Ok(())
    }

    fn flush(&self) -> Result<()> {
        Ok(())
    }
}

/// Projection state in a fjall database of its own.
pub struct FjallState {
    // Stopped first: it holds a clone of the keyspace.
    _reaper: mailledger_fjall::MemtableReaper,
    db: fjall::Database,
    ks: fjall::Keyspace,
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
    /// Opens (or creates) the database in `dir`.
    ///
    /// # Errors
    /// When the directory cannot be created or locked, or recovery fails.
    pub fn open(dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(fj)?;
        let db = fjall::Database::builder(dir).open().map_err(fj)?;
        let ks = db
            // Keyed by tenant, table and hashes: scattered. A rebuild adds
            // one first-level table per commit, and merging four at a time
            // (fjall's default) rewrote the next level over and over, a
            // tenth of a rebuild's work.
            .keyspace("state", mailledger_fjall::scattered_keyspace)
            .map_err(fj)?;
        let reaper = mailledger_fjall::MemtableReaper::start(vec![ks.clone()]).map_err(fj)?;
        Ok(Self {
            _reaper: reaper,
            db,
            ks,
        })
    }
}

impl FjallState {
    /// Opens the store in `dir` for state in layout `format`
    /// ([`stamp_format`]). A store in another layout is derived data this
    /// build cannot read: it is removed and a fresh one opened, for the
    /// runner to rebuild from the log. Returns whether that happened.
    ///
    /// # Errors
    /// When the store cannot be opened, stamped or removed.
    pub fn open_stamped(dir: &Path, format: u32) -> Result<(Self, bool)> {
        let store = Self::open(dir)?;
        if stamp_format(&store, format)? {
            return Ok((store, false));
        }
        drop(store);
        std::fs::remove_dir_all(dir)
            .map_err(|e| Error::Storage(format!("cannot remove an outdated store: {e}")))?;
        let fresh = Self::open(dir)?;
        stamp_format(&fresh, format)?;
        Ok((fresh, true))
    }
}

impl StateStore for FjallState {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(self.ks.get(key).map_err(fj)?.map(|v| v.to_vec()))
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
            .ks
            .range(start..end)
            .map(|g| g.into_inner().map_err(fj));
        drive(iter, reverse, visit)
    }

    fn commit(&self, writes: Vec<Write>) -> Result<()> {
        let mut b = self.db.batch();
        for (k, v) in writes {
            match v {
                Some(v) => b.insert(&self.ks, k, v),
                None => b.remove(&self.ks, k),
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
        // Ingesting one at a time waits out each miss in turn (a fifth of
        // the commit's time); so each chunk is first checked for order in a
        // short loop that reads its keys and values, whose misses overlap,
        // and is then ingested from the cache.
        let mut ingest = self.ks.start_ingestion().map_err(fj)?;
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
        self.db.persist(fjall::PersistMode::SyncAll).map_err(fj)
    }
}

/// The writes of a batch of events, applied through an overlay: reads see
/// the batch's own writes first, and values read once are cached for the
/// rest of the batch. Nothing reaches the store until the runner commits
/// the overlay together with the new checkpoint.
pub struct Tx<'a> {
    store: &'a dyn StateStore,
    // Each key read or written in this batch: its value as the batch sees
    // it, and whether the batch wrote it.
    overlay: Overlay,
    // Writes of keys this batch never reads back, in the order made.
    blind: Vec<Write>,
    // The previous batch, on its way into the store: read before the
    // store, which may not have its writes yet.
    pending: Option<Arc<Frozen>>,
    // Over a store that started empty: hashes of every key written through
    // `put`/`delete` so far. A key whose hash is missing was never written,
    // so its read skips the store. `None` when the store did not start
    // empty, or once more than `WRITTEN_LIMIT` keys were written.
    written: Option<FxHashSet<u64>>,
    written_limit: usize,
}

/// The most key hashes a [`Tx::over_empty`] keeps (about 128 MiB at most);
/// past it, reads go to the store again.
const WRITTEN_LIMIT: usize = 8 << 20;

/// The overlay of [`Tx`]: each key read or written, its value as the batch
/// sees it, and whether the batch wrote it.
type Overlay = FxHashMap<Vec<u8>, (Option<Vec<u8>>, bool)>;

/// One write of a batch, borrowed: a value, or `None` to delete the key.
pub type WriteRef<'a> = (&'a [u8], Option<&'a [u8]>);

/// A batch's writes taken out of its [`Tx`] by [`Tx::freeze`], to be
/// committed (on another thread) while the next batch goes on.
#[derive(Debug)]
pub struct Frozen {
    overlay: Overlay,
    blind: Vec<Write>,
}

impl Frozen {
    /// The writes sorted by key, one per key, as
    /// [`StateStore::commit_bulk`] takes them.
    #[must_use]
    pub fn sorted(&self) -> Vec<WriteRef<'_>> {
        let mut writes: Vec<WriteRef<'_>> =
            Vec::with_capacity(self.overlay.len() + self.blind.len());
        writes.extend(
            self.overlay
                .iter()
                .filter(|(_, (_, written))| *written)
                .map(|(k, (v, _))| (k.as_slice(), v.as_deref())),
        );
        writes.extend(self.blind.iter().map(|(k, v)| (k.as_slice(), v.as_deref())));
        sort_writes(&mut writes);
        writes
    }
}

/// Sorts writes by key, keeping the last of several writes of one key.
///
/// A batch's keys share long prefixes (the tenant, the table, an index's
/// kind and value), and comparing them in place spent a tenth of a rebuild
/// chasing key pointers through `memcmp`. Instead each key is abbreviated
/// to 16 bytes ([`abbreviate`]) and the compact abbreviations are sorted;
/// only keys whose abbreviations tie are abbreviated again further on.
fn sort_writes<K: AsRef<[u8]>, V>(writes: &mut Vec<(K, V)>) {
    let mut order: Vec<(u128, usize)> = (0..writes.len()).map(|i| (0, i)).collect();
    sort_from(&mut order, writes, 0);
    let mut slots: Vec<Option<(K, V)>> = writes.drain(..).map(Some).collect();
    // Equal keys come latest first, and `sort_from` marked all but the
    // first of them: comparing neighbours here would read every key again.
    for &(mark, i) in &order {
        if mark == SUPERSEDED {
            continue;
        }
        if let Some(w) = slots.get_mut(i).and_then(Option::take) {
            writes.push(w);
        }
    }
}

/// What [`sort_from`] leaves in place of the abbreviation of a write whose
/// key an earlier entry of the order (a later write) has too.
const SUPERSEDED: u128 = 1;

/// What it leaves for every other write.
const KEPT: u128 = 0;

/// Bytes of a key an abbreviation holds.
const ABBREVIATED: usize = 15;

/// Bytes `d..d + 15` of `key` (zero-padded) and how many of them the key
/// has (16 when it goes on past them), as one number that orders like the
/// keys' tails from `d`: zero padding keeps the order of bytes, and where
/// padded bytes tie, the shorter key is a prefix of the other and sorts
/// first. Keys with equal abbreviations below 16 are equal.
fn abbreviate(key: &[u8], d: usize) -> u128 {
    let tail = key.get(d..).unwrap_or_default();
    let mut bytes = [0u8; 16];
    let n = tail.len().min(ABBREVIATED);
    bytes[..n].copy_from_slice(&tail[..n]);
    bytes[ABBREVIATED] = u8::try_from(tail.len().min(ABBREVIATED + 1)).unwrap_or(16);
    u128::from_be_bytes(bytes)
}

/// Sorts `order` (abbreviation, index into `writes`) by the keys' bytes
/// from `d` on, then by index descending, where the keys share their first
/// `d` bytes, and leaves [`SUPERSEDED`] in place of the abbreviation of
/// each entry whose key the entry before it has ([`KEPT`] otherwise). Ties
/// go on a work list rather than the stack, so a long shared prefix cannot
/// exhaust it.
fn sort_from<K: AsRef<[u8]>, V>(order: &mut [(u128, usize)], writes: &[(K, V)], d: usize) {
    let mut work = vec![(0, order.len(), d)];
    while let Some((start, end, d)) = work.pop() {
        let part = &mut order[start..end];
        for o in part.iter_mut() {
            o.0 = writes.get(o.1).map_or(0, |w| abbreviate(w.0.as_ref(), d));
        }
        part.sort_unstable_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)));
        let mut run = 0;
        while run < part.len() {
            let abbreviation = part[run].0;
            let len = part[run..].partition_point(|o| o.0 == abbreviation);
            // A tie of keys that go on: the next bytes decide.
            if len > 1 && abbreviation & 0xff > ABBREVIATED as u128 {
                work.push((start + run, start + run + len, d + ABBREVIATED));
            } else {
                // Settled: one key, or keys that end within this
                // abbreviation and so are equal.
                part[run].0 = KEPT;
                for o in &mut part[run + 1..run + len] {
                    o.0 = SUPERSEDED;
                }
            }
            run += len;
        }
    }
}

/// Writes [`FjallState::commit_bulk`] reads ahead of ingesting them: small
/// enough that their keys and values stay in the core's cache.
const INGEST_CHUNK: usize = 256;

impl std::fmt::Debug for Tx<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tx")
            .field("writes", &self.writes())
            .finish_non_exhaustive()
    }
}

impl<'a> Tx<'a> {
    /// An empty overlay over `store`.
    #[must_use]
    pub fn new(store: &'a dyn StateStore) -> Self {
        Self {
            store,
            overlay: FxHashMap::default(),
            blind: Vec::new(),
            pending: None,
            written: None,
            written_limit: WRITTEN_LIMIT,
        }
    }

    /// An empty overlay over a store that holds no state yet (a rebuild
    /// from position 0). It remembers which keys its batches wrote, so
    /// reading a key never written (a new message, a new contact) costs no
    /// lookup in the store.
    #[must_use]
    pub fn over_empty(store: &'a dyn StateStore) -> Self {
        Self::over_empty_up_to(store, WRITTEN_LIMIT)
    }

    /// [`Tx::over_empty`], remembering at most `limit` key hashes.
    fn over_empty_up_to(store: &'a dyn StateStore, limit: usize) -> Self {
        Self {
            written: Some(FxHashSet::default()),
            written_limit: limit,
            ..Self::new(store)
        }
    }

    /// The value of `key` as this batch sees it.
    ///
    /// # Errors
    /// A storage failure.
    pub fn get(&mut self, key: &[u8]) -> Result<Option<&[u8]>> {
        if !self.overlay.contains_key(key) {
            let v = self.read_past_overlay(key)?.map(Cow::into_owned);
            self.overlay.insert(key.to_vec(), (v, false));
        }
        Ok(self.overlay.get(key).and_then(|(v, _)| v.as_deref()))
    }

    /// The value of `key` as this batch sees it, like [`Tx::get`], but
    /// not kept in the overlay: for a projection that keeps what it reads
    /// for the rest of the batch itself and writes it back with
    /// [`Tx::put`].
    ///
    /// # Errors
    /// A storage failure.
    pub fn read(&self, key: &[u8]) -> Result<Option<Cow<'_, [u8]>>> {
        match self.overlay.get(key) {
            Some((v, _)) => Ok(v.as_deref().map(Cow::Borrowed)),
            None => self.read_past_overlay(key),
        }
    }

    /// The value of `key` in the batch on its way into the store, else in
    /// the store.
    fn read_past_overlay(&self, key: &[u8]) -> Result<Option<Cow<'_, [u8]>>> {
        if let Some((v, _)) = self.pending.as_ref().and_then(|p| p.overlay.get(key)) {
            return Ok(v.as_deref().map(Cow::Borrowed));
        }
        if self
            .written
            .as_ref()
            .is_some_and(|w| !w.contains(&FxBuildHasher.hash_one(key)))
        {
            return Ok(None);
        }
        Ok(self.store.get(key)?.map(Cow::Owned))
    }

    /// Notes the keys of the overlay's writes as written (see
    /// [`Tx::over_empty`]).
    fn note_written(&mut self) {
        if let Some(w) = &mut self.written {
            w.extend(
                self.overlay
                    .iter()
                    .filter(|(_, (_, written))| *written)
                    .map(|(k, _)| FxBuildHasher.hash_one(k.as_slice())),
            );
            if w.len() > self.written_limit {
                self.written = None;
            }
        }
    }

    /// Sets `key` to `value`.
    pub fn put(&mut self, key: Vec<u8>, value: Vec<u8>) {
        self.overlay.insert(key, (Some(value), true));
    }

    /// Deletes `key`.
    pub fn delete(&mut self, key: Vec<u8>) {
        self.overlay.insert(key, (None, true));
    }

    /// Sets `key` to `value` where this batch will not read it back (an
    /// index entry): cheaper than [`Tx::put`], since nothing looks it up.
    /// [`Tx::get`] does not see it; a key must be written only through
    /// `put_blind`/`delete_blind` or only through `put`/`delete`. Of several
    /// blind writes of one key, the last counts.
    pub fn put_blind(&mut self, key: Vec<u8>, value: Vec<u8>) {
        self.blind.push((key, Some(value)));
    }

    /// Deletes `key`, as [`Tx::put_blind`] writes it.
    pub fn delete_blind(&mut self, key: Vec<u8>) {
        self.blind.push((key, None));
    }

    /// How many keys this batch wrote (blind writes of one key count once
    /// each).
    #[must_use]
    pub fn writes(&self) -> usize {
        self.overlay.values().filter(|(_, w)| *w).count() + self.blind.len()
    }

    /// The batch's writes, ready for [`StateStore::commit`].
    #[must_use]
    pub fn into_writes(mut self) -> Vec<Write> {
        self.take_writes()
    }

    /// Takes the batch's writes out, to be committed while the next batch
    /// is applied: until the next `freeze`, this overlay reads them as if
    /// they were in the store.
    pub fn freeze(&mut self) -> Arc<Frozen> {
        self.note_written();
        // The next batch is likely to be as large: room for as many
        // entries, rather than growing into it by doubling (copying and
        // faulting in fresh pages at each step).
        let capacity = self.overlay.len();
        let blind = self.blind.len();
        let frozen = Arc::new(Frozen {
            overlay: std::mem::replace(
                &mut self.overlay,
                FxHashMap::with_capacity_and_hasher(capacity, Default::default()),
            ),
            blind: std::mem::replace(&mut self.blind, Vec::with_capacity(blind)),
        });
        self.pending = Some(Arc::clone(&frozen));
        frozen
    }

    /// The batch's writes, ready for [`StateStore::commit`], leaving the
    /// overlay empty (its allocation kept) for the next batch.
    ///
    /// The writes come sorted by key, one per key.
    pub fn take_writes(&mut self) -> Vec<Write> {
        self.note_written();
        let mut writes = Vec::with_capacity(self.overlay.len() + self.blind.len());
        writes.extend(
            self.overlay
                .drain()
                .filter_map(|(k, (v, written))| written.then_some((k, v))),
        );
        writes.append(&mut self.blind);
        sort_writes(&mut writes);
        writes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_projection_store_keeps_writes_in_memory_up_to_memtable_bytes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = FjallState::open(dir.path()).expect("fjall");
        mailledger_fjall::assert_memtable_holds_memtable_bytes(&store.ks);
    }

    #[test]
    fn a_projection_store_merges_its_first_level_at_sixteen_tables() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = FjallState::open(dir.path()).expect("fjall");
        mailledger_fjall::assert_first_level_merges_at(
            &store.ks,
            mailledger_fjall::SCATTERED_L0_TABLES,
        );
    }

    fn stores() -> (tempfile::TempDir, Vec<Box<dyn StateStore>>) {
        let dir = tempfile::tempdir().expect("tempdir");
        let fjall = FjallState::open(&dir.path().join("f")).expect("fjall");
        (dir, vec![Box::new(MemoryState::new()), Box::new(fjall)])
    }

    #[test]
    fn a_tx_sees_its_own_writes_and_commits_them_at_once() {
        let (_dir, stores) = stores();
        for store in &stores {
            store
                .commit(vec![(b"a".to_vec(), Some(b"1".to_vec()))])
                .expect("commit");
            let mut tx = Tx::new(store.as_ref());
            assert_eq!(tx.get(b"a").expect("get"), Some(&b"1"[..]));
            tx.put(b"b".to_vec(), b"2".to_vec());
            tx.delete(b"a".to_vec());
            assert_eq!(tx.get(b"a").expect("get"), None);
            assert_eq!(tx.get(b"b").expect("get"), Some(&b"2"[..]));
            assert_eq!(store.get(b"b").expect("get"), None, "nothing before commit");
            let mut writes = tx.into_writes();
            writes.push((CHECKPOINT_KEY.to_vec(), Some(7u64.to_be_bytes().to_vec())));
            store.commit(writes).expect("commit");
            assert_eq!(store.get(b"a").expect("get"), None);
            assert_eq!(store.get(b"b").expect("get"), Some(b"2".to_vec()));
            assert_eq!(checkpoint(store.as_ref()).expect("checkpoint"), 7);
            let mut seen = Vec::new();
            store
                .scan(b"a", b"z", true, &mut |k, _| {
                    seen.push(k.to_vec());
                    true
                })
                .expect("scan");
            assert_eq!(seen, vec![b"b".to_vec()]);
        }
    }

    #[test]
    fn the_last_blind_write_of_a_key_wins_and_writes_come_sorted_once_each() {
        let (_dir, stores) = stores();
        for store in &stores {
            store
                .commit(vec![(b"i2".to_vec(), Some(Vec::new()))])
                .expect("commit");
            let mut tx = Tx::new(store.as_ref());
            tx.put(b"row".to_vec(), b"r".to_vec());
            tx.put_blind(b"i1".to_vec(), Vec::new());
            tx.delete_blind(b"i2".to_vec());
            tx.delete_blind(b"i1".to_vec());
            tx.put_blind(b"i2".to_vec(), b"again".to_vec());
            tx.put_blind(b"i3".to_vec(), Vec::new());
            let _ = tx.get(b"only-read").expect("get");
            let frozen = tx.freeze();
            let writes = frozen.sorted();
            assert_eq!(
                writes,
                vec![
                    (&b"i1"[..], None),
                    (&b"i2"[..], Some(&b"again"[..])),
                    (&b"i3"[..], Some(&b""[..])),
                    (&b"row"[..], Some(&b"r"[..])),
                ]
            );
            store.commit_bulk(&writes).expect("commit");
            assert_eq!(store.get(b"i1").expect("get"), None);
            assert_eq!(store.get(b"i2").expect("get"), Some(b"again".to_vec()));
            assert_eq!(tx.take_writes(), Vec::new(), "frozen writes are gone");
        }
    }

    #[test]
    fn a_tx_reads_frozen_writes_before_the_store() {
        let (_dir, stores) = stores();
        for store in &stores {
            store
                .commit(vec![
                    (b"a".to_vec(), Some(b"old".to_vec())),
                    (b"b".to_vec(), Some(b"kept".to_vec())),
                    (b"c".to_vec(), Some(b"gone".to_vec())),
                ])
                .expect("commit");
            let mut tx = Tx::new(store.as_ref());
            tx.put(b"a".to_vec(), b"new".to_vec());
            tx.delete(b"c".to_vec());
            let frozen = tx.freeze();
            assert_eq!(tx.writes(), 0, "the next batch starts empty");
            assert_eq!(tx.get(b"a").expect("get"), Some(&b"new"[..]));
            assert_eq!(tx.get(b"b").expect("get"), Some(&b"kept"[..]));
            assert_eq!(tx.get(b"c").expect("get"), None);
            assert_eq!(frozen.sorted().len(), 2);
        }
    }

    /// A store in memory that counts its point reads.
    #[derive(Default)]
    struct Counting {
        inner: MemoryState,
        gets: std::sync::atomic::AtomicUsize,
    }

    impl StateStore for Counting {
        fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
            self.gets.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            self.inner.get(key)
        }
        fn scan(
            &self,
            start: &[u8],
            end: &[u8],
            reverse: bool,
            visit: &mut dyn FnMut(&[u8], &[u8]) -> bool,
        ) -> Result<()> {
            self.inner.scan(start, end, reverse, visit)
        }
        fn commit(&self, writes: Vec<Write>) -> Result<()> {
            self.inner.commit(writes)
        }
        fn flush(&self) -> Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_tx_over_an_empty_store_reads_earlier_batches_back_and_never_looks_up_unwritten_keys() {
        let store = Counting::default();
        let gets = || store.gets.load(std::sync::atomic::Ordering::Relaxed);
        let mut tx = Tx::over_empty(&store);
        tx.put(b"row".to_vec(), b"1".to_vec());
        tx.put(b"gone".to_vec(), b"x".to_vec());
        store.commit_bulk(&tx.freeze().sorted()).expect("commit");
        tx.delete(b"gone".to_vec());
        tx.put(b"other".to_vec(), b"2".to_vec());
        store.commit_bulk(&tx.freeze().sorted()).expect("commit");
        // `row` is in neither the overlay nor the batch in flight.
        assert_eq!(tx.get(b"row").expect("get"), Some(&b"1"[..]));
        assert_eq!(tx.read(b"gone").expect("read"), None);
        assert_eq!(gets(), 1, "only the key of an earlier batch was looked up");
        assert_eq!(tx.get(b"new").expect("get"), None);
        assert_eq!(tx.read(b"never").expect("read"), None);
        assert_eq!(gets(), 1, "keys never written are not looked up");
        // An overlay over a store that may hold state looks every key up.
        let mut plain = Tx::new(&store);
        assert_eq!(plain.get(b"new").expect("get"), None);
        assert_eq!(gets(), 2);
    }

    #[test]
    fn past_its_limit_a_tx_over_an_empty_store_looks_every_key_up_again() {
        let store = Counting::default();
        let gets = || store.gets.load(std::sync::atomic::Ordering::Relaxed);
        let mut tx = Tx::over_empty_up_to(&store, 2);
        for k in [&b"a"[..], b"b", b"c"] {
            tx.put(k.to_vec(), b"1".to_vec());
        }
        store.commit_bulk(&tx.freeze().sorted()).expect("commit");
        store.commit_bulk(&tx.freeze().sorted()).expect("commit");
        assert_eq!(tx.get(b"never").expect("get"), None);
        assert_eq!(gets(), 1, "three keys are past the limit of two");
        assert_eq!(tx.read(b"c").expect("read").as_deref(), Some(&b"1"[..]));
        assert_eq!(gets(), 2);
    }

    /// The plain way: a stable sort, then the last of each key.
    fn sorted_the_plain_way(writes: &[(Vec<u8>, u32)]) -> Vec<(Vec<u8>, u32)> {
        let mut w = writes.to_vec();
        w.sort_by(|a, b| a.0.cmp(&b.0));
        let mut out: Vec<(Vec<u8>, u32)> = Vec::new();
        for x in w {
            match out.last_mut() {
                Some(l) if l.0 == x.0 => *l = x,
                _ => out.push(x),
            }
        }
        out
    }

    proptest::proptest! {
        #[test]
        fn writes_sort_by_key_and_the_last_write_of_a_key_wins(
            // Few distinct bytes and shared prefixes, so keys collide, end
            // inside each other and share long runs, as a batch's keys do.
            keys in proptest::collection::vec(
                (0usize..4, proptest::collection::vec(0u8..3, 0..40)),
                0..400,
            )
        ) {
            let prefixes: [&[u8]; 4] = [b"", b"tenant\0I", b"tenant\0IG\0\x07welcome", b"t"];
            let writes: Vec<(Vec<u8>, u32)> = keys
                .into_iter()
                .enumerate()
                .map(|(i, (p, tail))| {
                    ([prefixes[p], tail.as_slice()].concat(), u32::try_from(i).unwrap_or(0))
                })
                .collect();
            let mut sorted = writes.clone();
            sort_writes(&mut sorted);
            proptest::prop_assert_eq!(sorted, sorted_the_plain_way(&writes));
        }
    }

    #[test]
    fn a_bulk_commit_refuses_unsorted_writes_and_changes_nothing() {
        let (_dir, stores) = stores();
        let fjall = &stores[1];
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
