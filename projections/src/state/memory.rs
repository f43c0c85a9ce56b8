//! [`MemoryState`]: projection state in memory, for tests.

use std::collections::BTreeMap;
use std::sync::RwLock;

use super::{CHECKPOINT_KEY, FORMAT_KEY, StateStore, Write, drive};
use crate::error::Result;

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
