//! The in-memory index: what the segments say, kept in memory. For the
//! log only where each record is (its segment, offset and length), for
//! the other spaces the values themselves.

use std::collections::BTreeMap;

use mailledger_core::Space;

use crate::segment::{Loc, space_tag};

type Map<V> = BTreeMap<Vec<u8>, V>;

/// What the segments say, in memory.
#[derive(Debug, Default)]
pub(crate) struct Index {
    pub(crate) log: Map<Loc>,
    /// Event ids, streams and tenants.
    pub(crate) spaces: [Map<Vec<u8>>; 3],
}

impl Index {
    pub(crate) fn space(&self, space: Space) -> &Map<Vec<u8>> {
        &self.spaces[usize::from(space_tag(space)) - 1]
    }

    pub(crate) fn space_mut(&mut self, space: Space) -> &mut Map<Vec<u8>> {
        &mut self.spaces[usize::from(space_tag(space)) - 1]
    }

    /// A put of `space`: a record's place for the log, else the value,
    /// which `value` makes only then.
    pub(crate) fn apply(
        &mut self,
        space: Space,
        key: Vec<u8>,
        loc: Loc,
        value: impl FnOnce() -> Vec<u8>,
    ) {
        if space == Space::Log {
            self.log.insert(key, loc);
        } else {
            self.space_mut(space).insert(key, value());
        }
    }
}
