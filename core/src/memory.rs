//! The in-memory reference store: ordered maps behind a lock. Nothing
//! survives the process; it exists for tests and as the reference that the
//! durable backends are held to.

use std::collections::BTreeMap;
use std::sync::{PoisonError, RwLock};

use crate::error::StoreError;
use crate::store::{KeyRange, Space, Store, Visit, WriteBatch, scan_in_chunks};

type Map = BTreeMap<Vec<u8>, Vec<u8>>;

/// A [`Store`] held in memory.
#[derive(Debug, Default)]
pub struct MemoryStore {
    spaces: RwLock<[Map; 4]>,
}

impl MemoryStore {
    /// An empty store.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Removes a key: what corruption does, for tests of the checks that
    /// find it (the [`Store`] contract has no delete).
    #[cfg(test)]
    pub(crate) fn remove_for_test(&self, space: Space, key: &[u8]) {
        let mut spaces = self.spaces.write().unwrap_or_else(PoisonError::into_inner);
        spaces[index(space)].remove(key);
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

impl Store for MemoryStore {
    fn backend(&self) -> &'static str {
        "memory"
    }

    fn commit(&self, batch: WriteBatch, _sync: bool) -> Result<(), StoreError> {
        let mut spaces = self.spaces.write().unwrap_or_else(PoisonError::into_inner);
        for (space, k, v) in batch.puts {
            spaces[index(space)].insert(k, v);
        }
        Ok(())
    }

    fn get(&self, space: Space, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let spaces = self.spaces.read().unwrap_or_else(PoisonError::into_inner);
        Ok(spaces[index(space)].get(key).cloned())
    }

    fn scan(
        &self,
        space: Space,
        start: &[u8],
        end: Option<&[u8]>,
        reverse: bool,
        visit: &mut dyn FnMut(&[u8], &[u8]) -> Visit,
    ) -> Result<(), StoreError> {
        let chunk = |range: KeyRange, n: usize| {
            let spaces = self.spaces.read().unwrap_or_else(PoisonError::into_inner);
            let entries = spaces[index(space)].range(range);
            let copy = |(k, v): (&Vec<u8>, &Vec<u8>)| (k.clone(), v.clone());
            if reverse {
                entries.rev().take(n).map(copy).collect()
            } else {
                entries.take(n).map(copy).collect()
            }
        };
        scan_in_chunks(start, end, reverse, chunk, |k, v: Vec<u8>| Ok(visit(k, &v)))
    }

    fn sync(&self) -> Result<(), StoreError> {
        Ok(())
    }
}
