//! The storage contract the log engine needs from a backend: a few ordered
//! key-value spaces and atomic, optionally synced, write batches.
//!
//! Backends implement [`Store`]; [`crate::Ledger`] turns any `Store` into an
//! [`EventLog`](crate::EventLog), so sequencing, idempotency, the hash chain
//! and group commit are written once.

use std::ops::Bound;

use crate::error::StoreError;

/// The key spaces of a log. Keys order bytewise. The byte layouts of the
/// index keys (layout 2) are in `ledger::keys`, frozen by its vectors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Space {
    /// position (u64 big-endian) → record frame. Written in order.
    Log,
    /// event time (i64 µs, sign bit flipped, big-endian), tenant, 0x00,
    /// event id (16 bytes) → position (u64 big-endian). Written in about
    /// the order of time: new keys land at the recent end.
    EventIds,
    /// tenant, 0x00, stream hash (blake3, 64 bits, big-endian), version
    /// (u64 big-endian) → position (u64 big-endian), and at version 0 the
    /// stream's name after it. Keyed by hash: scattered, but short.
    Streams,
    /// tenant → chain head: last position, last hash, record count (see
    /// `ledger`); and `0x00 "layout"` → the index layout (u32 big-endian).
    Tenants,
}

impl Space {
    /// Every space, in a fixed order.
    pub const ALL: [Self; 4] = [Self::Log, Self::EventIds, Self::Streams, Self::Tenants];

    /// A stable name, for backends that name their trees.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Log => "log",
            Self::EventIds => "event_ids",
            Self::Streams => "streams",
            Self::Tenants => "tenants",
        }
    }
}

/// Puts to apply together.
#[derive(Debug, Default, Clone)]
pub struct WriteBatch {
    /// `(space, key, value)` in order; a later put to the same key wins.
    pub puts: Vec<(Space, Vec<u8>, Vec<u8>)>,
}

impl WriteBatch {
    /// An empty batch.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a put.
    pub fn put(&mut self, space: Space, key: Vec<u8>, value: Vec<u8>) {
        self.puts.push((space, key, value));
    }

    /// Whether the batch holds no put.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.puts.is_empty()
    }
}

/// What to do after visiting one entry of a scan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Visit {
    /// Go on to the next entry.
    Continue,
    /// End the scan.
    Stop,
}

/// A key range as [`Store::scan`] names it, as owned bounds.
pub type KeyRange = (Bound<Vec<u8>>, Bound<Vec<u8>>);

/// Runs a scan a chunk at a time, for a store that holds its entries behind
/// a lock: `chunk(range, n)` copies out up to `n` entries of `range` in scan
/// order (ascending, or descending when `reverse`) while it holds the lock,
/// and `visit` then sees each without it, so a slow visitor or a value read
/// from elsewhere never holds the store up. Ends when a chunk comes back
/// short or `visit` answers [`Visit::Stop`].
///
/// # Errors
/// The first error `visit` returns.
pub fn scan_in_chunks<T>(
    start: &[u8],
    end: Option<&[u8]>,
    reverse: bool,
    mut chunk: impl FnMut(KeyRange, usize) -> Vec<(Vec<u8>, T)>,
    mut visit: impl FnMut(&[u8], T) -> Result<Visit, StoreError>,
) -> Result<(), StoreError> {
    const CHUNK: usize = 256;
    let mut lo = Bound::Included(start.to_vec());
    let mut hi = end.map_or(Bound::Unbounded, |e| Bound::Excluded(e.to_vec()));
    loop {
        let entries = chunk((lo.clone(), hi.clone()), CHUNK);
        let full = entries.len() == CHUNK;
        let Some(last) = entries.last().map(|(k, _)| k.clone()) else {
            return Ok(());
        };
        for (k, v) in entries {
            if visit(&k, v)? == Visit::Stop {
                return Ok(());
            }
        }
        if !full {
            return Ok(());
        }
        if reverse {
            hi = Bound::Excluded(last);
        } else {
            lo = Bound::Excluded(last);
        }
    }
}

/// Runs a scan over a range iterator of a backend's engine: `step` visits
/// each item, ascending, or from the back when `reverse`, until it answers
/// [`Visit::Stop`] or the range ends.
///
/// # Errors
/// The first error `step` returns.
pub fn scan_iter<I: DoubleEndedIterator, E>(
    iter: I,
    reverse: bool,
    step: impl FnMut(I::Item) -> Result<Visit, E>,
) -> Result<(), E> {
    fn each<T, E>(
        iter: impl Iterator<Item = T>,
        mut step: impl FnMut(T) -> Result<Visit, E>,
    ) -> Result<(), E> {
        for item in iter {
            if step(item)? == Visit::Stop {
                break;
            }
        }
        Ok(())
    }
    if reverse {
        each(iter.rev(), step)
    } else {
        each(iter, step)
    }
}

/// An ordered key-value store with atomic batches.
///
/// All methods block; the log calls them from its writer thread and from
/// blocking tasks, never from an async worker directly.
pub trait Store: Send + Sync + 'static {
    /// A short name of the backend, such as `fjall`.
    fn backend(&self) -> &'static str;

    /// Applies every put of `batch` atomically: after a crash at any moment,
    /// either all of them or none are visible on reopen.
    ///
    /// With `sync`, returns only once the batch is on stable storage (for a
    /// backend whose engine cannot promise that, its docs say what it gives).
    /// Without, the batch is visible to reads and survives a process crash
    /// but may be lost on power failure.
    ///
    /// # Errors
    /// Any engine failure; the batch may then be partly or wholly unapplied
    /// in memory, and the caller stops writing.
    fn commit(&self, batch: WriteBatch, sync: bool) -> Result<(), StoreError>;

    /// The value of `key` in `space`.
    ///
    /// # Errors
    /// Any engine failure.
    fn get(&self, space: Space, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError>;

    /// Visits the entries of `space` whose keys are at least `start` and below
    /// `end` (no upper bound when `None`), ascending, or descending when
    /// `reverse`, until `visit` answers [`Visit::Stop`] or the range ends.
    ///
    /// # Errors
    /// Any engine failure.
    fn scan(
        &self,
        space: Space,
        start: &[u8],
        end: Option<&[u8]>,
        reverse: bool,
        visit: &mut dyn FnMut(&[u8], &[u8]) -> Visit,
    ) -> Result<(), StoreError>;

    /// Makes every committed batch durable.
    ///
    /// # Errors
    /// Any engine failure.
    fn sync(&self) -> Result<(), StoreError>;
}

impl<T: Store + ?Sized> Store for std::sync::Arc<T> {
    fn backend(&self) -> &'static str {
        (**self).backend()
    }

    fn commit(&self, batch: WriteBatch, sync: bool) -> Result<(), StoreError> {
        (**self).commit(batch, sync)
    }

    fn get(&self, space: Space, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        (**self).get(space, key)
    }

    fn scan(
        &self,
        space: Space,
        start: &[u8],
        end: Option<&[u8]>,
        reverse: bool,
        visit: &mut dyn FnMut(&[u8], &[u8]) -> Visit,
    ) -> Result<(), StoreError> {
        (**self).scan(space, start, end, reverse, visit)
    }

    fn sync(&self) -> Result<(), StoreError> {
        (**self).sync()
    }
}
