//! [`CountingStore`]: a [`Store`] that counts what the log writes into each
//! space (feature `test-util`), for the growth bench and the tests that
//! hold the layout to its budget: keys and bytes per event, and how many of
//! them land far from the end of their space.
//!
//! A put is counted as **scattered** when its key sorts below the largest
//! key its space held [`WINDOW`] puts earlier. In a log-structured merge
//! tree such a key lands among tables already pushed down, and each merge
//! that takes it in rewrites them: the cost that grows with the log. A key
//! at or near the growing end of its space (a time-ordered index, a row
//! updated seconds after it was written) is not scattered.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};

use crate::error::StoreError;
use crate::store::{Space, Store, Visit, WriteBatch};

/// How many puts back a space's largest key is taken from, to judge a put
/// scattered: about what a memtable and the first level hold.
pub const WINDOW: u64 = 1 << 20;
/// How often the largest key is noted, in puts.
const STEP: u64 = WINDOW / 16;

/// What was written into one space.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SpaceCount {
    /// Puts.
    pub puts: u64,
    /// Bytes of keys and values.
    pub bytes: u64,
    /// Puts whose key sorted below the space's largest key [`WINDOW`] puts
    /// earlier.
    pub scattered_puts: u64,
    /// Bytes of keys and values of those puts.
    pub scattered_bytes: u64,
}

impl SpaceCount {
    /// The counts since `before`.
    #[must_use]
    pub fn since(&self, before: &Self) -> Self {
        Self {
            puts: self.puts - before.puts,
            bytes: self.bytes - before.bytes,
            scattered_puts: self.scattered_puts - before.scattered_puts,
            scattered_bytes: self.scattered_bytes - before.scattered_bytes,
        }
    }
}

#[derive(Debug, Default)]
struct Tracker {
    count: SpaceCount,
    largest: Vec<u8>,
    /// The largest key every [`STEP`] puts, oldest first.
    marks: VecDeque<Vec<u8>>,
}

impl Tracker {
    fn put(&mut self, key: &[u8], value: &[u8]) {
        let bytes = (key.len() + value.len()) as u64;
        self.count.puts += 1;
        self.count.bytes += bytes;
        if self.marks.len() as u64 == WINDOW / STEP
            && self.marks.front().is_some_and(|old| key < old.as_slice())
        {
            self.count.scattered_puts += 1;
            self.count.scattered_bytes += bytes;
        }
        if key > self.largest.as_slice() {
            self.largest = key.to_vec();
        }
        if self.count.puts.is_multiple_of(STEP) {
            if self.marks.len() as u64 == WINDOW / STEP {
                self.marks.pop_front();
            }
            self.marks.push_back(self.largest.clone());
        }
    }
}

/// The counts of every space, shared between a [`CountingStore`] and its
/// reader.
#[derive(Debug, Default)]
pub struct WriteCounts {
    spaces: Mutex<[Tracker; 4]>,
}

impl WriteCounts {
    /// The counts of `space` so far.
    #[must_use]
    pub fn of(&self, space: Space) -> SpaceCount {
        let spaces = self.spaces.lock().unwrap_or_else(PoisonError::into_inner);
        spaces[index(space)].count
    }

    /// The counts of every space so far, in [`Space::ALL`] order.
    #[must_use]
    pub fn all(&self) -> [(Space, SpaceCount); 4] {
        Space::ALL.map(|s| (s, self.of(s)))
    }
}

fn index(space: Space) -> usize {
    match space {
        Space::Log => 0,
        Space::EventIds => 1,
        Space::Streams => 2,
        Space::Tenants => 3,
    }
}

/// A [`Store`] that counts every put into [`WriteCounts`] before passing
/// the batch on.
#[derive(Debug)]
pub struct CountingStore<S> {
    inner: S,
    counts: Arc<WriteCounts>,
}

impl<S: Store> CountingStore<S> {
    /// Counts what is written to `inner`.
    pub fn new(inner: S) -> Self {
        Self {
            inner,
            counts: Arc::default(),
        }
    }

    /// The counts, to read while the store is in use.
    #[must_use]
    pub fn counts(&self) -> Arc<WriteCounts> {
        Arc::clone(&self.counts)
    }
}

impl<S: Store> Store for CountingStore<S> {
    fn backend(&self) -> &'static str {
        self.inner.backend()
    }

    fn commit(&self, batch: WriteBatch, sync: bool) -> Result<(), StoreError> {
        {
            let mut spaces = self
                .counts
                .spaces
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            for (space, key, value) in &batch.puts {
                spaces[index(*space)].put(key, value);
            }
        }
        self.inner.commit(batch, sync)
    }

    fn get(&self, space: Space, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.inner.get(space, key)
    }

    fn scan(
        &self,
        space: Space,
        start: &[u8],
        end: Option<&[u8]>,
        reverse: bool,
        visit: &mut dyn FnMut(&[u8], &[u8]) -> Visit,
    ) -> Result<(), StoreError> {
        self.inner.scan(space, start, end, reverse, visit)
    }

    fn sync(&self) -> Result<(), StoreError> {
        self.inner.sync()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MemoryStore;

    fn put_all(store: &CountingStore<MemoryStore>, keys: impl Iterator<Item = u64>) {
        let mut batch = WriteBatch::new();
        for k in keys {
            batch.put(Space::Streams, k.to_be_bytes().to_vec(), vec![0; 8]);
            if batch.puts.len() == 4096 {
                store.commit(std::mem::take(&mut batch), false).unwrap();
            }
        }
        store.commit(batch, false).unwrap();
    }

    #[test]
    fn keys_in_order_are_not_scattered_and_random_keys_are() {
        let n = 3 * WINDOW;
        let ordered = CountingStore::new(MemoryStore::new());
        put_all(&ordered, 0..n);
        let c = ordered.counts().of(Space::Streams);
        assert_eq!((c.puts, c.bytes, c.scattered_puts), (n, n * 16, 0));

        let random = CountingStore::new(MemoryStore::new());
        put_all(
            &random,
            (0..n).map(|i| i.wrapping_mul(0x9E37_79B9_7F4A_7C15)),
        );
        let c = random.counts().of(Space::Streams);
        // After the first window nearly every random key lands below the
        // largest key of a window earlier.
        assert!(c.scattered_puts > n / 2, "{c:?}");
        assert_eq!(c.scattered_bytes, c.scattered_puts * 16);
        assert_eq!(random.counts().of(Space::Log), SpaceCount::default());
    }

    #[test]
    fn a_recent_key_rewritten_is_not_scattered() {
        // Each key written again a few thousand puts later: the row updated
        // seconds after it was written.
        let s = CountingStore::new(MemoryStore::new());
        put_all(
            &s,
            (0..3 * WINDOW).map(|i| {
                if i % 2 == 0 {
                    i
                } else {
                    i.saturating_sub(5_000)
                }
            }),
        );
        assert_eq!(s.counts().of(Space::Streams).scattered_puts, 0);
    }
}
