//! The in-memory reference store: ordered maps behind a lock. Nothing
//! survives the process; it exists for tests and as the reference that the
//! durable backends are held to.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::{PoisonError, RwLock};

use crate::error::StoreError;
use crate::store::{Space, Store, Visit, WriteBatch};

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
        // Copies a chunk at a time so `visit` runs without the lock held.
        const CHUNK: usize = 256;
        let mut lo = Bound::Included(start.to_vec());
        let mut hi = end.map_or(Bound::Unbounded, |e| Bound::Excluded(e.to_vec()));
        loop {
            let chunk: Vec<(Vec<u8>, Vec<u8>)> = {
                let spaces = self.spaces.read().unwrap_or_else(PoisonError::into_inner);
                let range = spaces[index(space)].range((lo.clone(), hi.clone()));
                if reverse {
                    range
                        .rev()
                        .take(CHUNK)
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect()
                } else {
                    range
                        .take(CHUNK)
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect()
                }
            };
            let Some((last, _)) = chunk.last() else {
                return Ok(());
            };
            let last = last.clone();
            let full = chunk.len() == CHUNK;
            for (k, v) in &chunk {
                if visit(k, v) == Visit::Stop {
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

    fn sync(&self) -> Result<(), StoreError> {
        Ok(())
    }
}
