//! [`Tx`]: the overlay a batch of events is applied through, and
//! [`Frozen`], a batch's writes on their way into the store.

use std::borrow::Cow;
use std::hash::BuildHasher;
use std::sync::Arc;

use rustc_hash::{FxBuildHasher, FxHashMap, FxHashSet};

use super::sort::sort_writes;
use super::{StateStore, Write, WriteRef};
use crate::error::Result;

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
    use crate::state::{CHECKPOINT_KEY, FjallState, MemoryState, checkpoint};

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
}
