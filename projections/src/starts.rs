//! Where each message starts: a bounded memory of the first position of
//! recently opened messages, in front of the log's stream index.
//!
//! A message's later events (a delivery seconds after the send, opens and
//! clicks hours later) each need the position of its first event, which
//! keys its state ([`crate::MessageRef::first`]). The log answers from its
//! stream index, a read scattered over the whole index; most answers are
//! for the messages in flight, a small, recent set, which this keeps.
//!
//! Two generations of at most [`MessageStarts::GENERATION`] messages each:
//! when the newer fills, the older is dropped whole and the newer takes its
//! place, so the most recent messages stay and nothing is cleared at once.
//! A message known here is answered as the log would answer; one that is
//! not is asked of the log.

use std::sync::{Mutex, PoisonError};

use rustc_hash::FxHashMap;

type ByTenant = FxHashMap<String, FxHashMap<[u8; 16], u64>>;

/// A bounded memory of (tenant, message key) to the message's first
/// position; see the module.
#[derive(Debug, Default)]
pub struct MessageStarts {
    inner: Mutex<Generations>,
}

#[derive(Debug, Default)]
struct Generations {
    newer: ByTenant,
    newer_len: usize,
    older: ByTenant,
}

impl MessageStarts {
    /// Messages kept per generation: the two together hold more than the
    /// messages in flight of the traffic model (about 200,000: opens up to
    /// three hours after a send at 20 messages a second). Each entry is a
    /// 16-byte key and an 8-byte position in a hash map.
    pub const GENERATION: usize = 262_144;

    /// An empty memory.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Runs `f` with the memory locked: one lock for a whole batch.
    pub(crate) fn with<T>(&self, f: impl FnOnce(&mut Locked<'_>) -> T) -> T {
        let mut g = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        f(&mut Locked(&mut g))
    }

    /// How many messages it holds.
    #[must_use]
    pub fn len(&self) -> usize {
        self.with(|l| l.0.newer_len + l.0.older.values().map(FxHashMap::len).sum::<usize>())
    }

    /// Whether it holds none.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// [`MessageStarts`] locked.
pub(crate) struct Locked<'a>(&'a mut Generations);

impl Locked<'_> {
    /// The first position of `tenant`'s message `key`, if kept.
    pub(crate) fn get(&self, tenant: &str, key: &[u8; 16]) -> Option<u64> {
        let g = &self.0;
        g.newer
            .get(tenant)
            .and_then(|m| m.get(key))
            .or_else(|| g.older.get(tenant).and_then(|m| m.get(key)))
            .copied()
    }

    /// Keeps `first` as the first position of `tenant`'s message `key`.
    pub(crate) fn insert(&mut self, tenant: &str, key: [u8; 16], first: u64) {
        let g = &mut *self.0;
        if g.newer_len >= MessageStarts::GENERATION {
            g.older = std::mem::take(&mut g.newer);
            g.newer_len = 0;
        }
        let added = match g.newer.get_mut(tenant) {
            Some(m) => m.insert(key, first).is_none(),
            None => {
                g.newer
                    .entry(tenant.to_owned())
                    .or_default()
                    .insert(key, first);
                true
            }
        };
        if added {
            g.newer_len += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_newest_messages_stay_and_the_oldest_go_a_generation_at_a_time() {
        let starts = MessageStarts::new();
        let key = |n: u64| {
            let mut k = [0u8; 16];
            k[..8].copy_from_slice(&n.to_be_bytes());
            k
        };
        let total = 2 * MessageStarts::GENERATION as u64 + 10;
        starts.with(|l| {
            for n in 0..total {
                l.insert("t", key(n), n);
            }
        });
        starts.with(|l| {
            // The last two generations' worth are kept, the first dropped.
            assert_eq!(l.get("t", &key(total - 1)), Some(total - 1));
            assert_eq!(
                l.get("t", &key(MessageStarts::GENERATION as u64)),
                Some(MessageStarts::GENERATION as u64)
            );
            assert_eq!(l.get("t", &key(0)), None);
            // Another tenant's message of the same key is its own.
            assert_eq!(l.get("u", &key(total - 1)), None);
        });
        assert!(starts.len() <= 2 * MessageStarts::GENERATION);
        assert!(!starts.is_empty());
    }
}
