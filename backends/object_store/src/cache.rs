//! The segment cache: whole segments kept in memory for reads, bounded in
//! bytes, so that records read together (a scan, a stream) fetch their
//! segment once.

use std::collections::{HashMap, VecDeque};

use bytes::Bytes;

/// Whole segments by sequence number, oldest loaded evicted first.
#[derive(Debug, Default)]
pub(crate) struct Cache {
    segments: HashMap<u64, Bytes>,
    order: VecDeque<u64>,
    bytes: usize,
    limit: usize,
}

impl Cache {
    /// An empty cache of at most `limit` bytes of segments.
    pub(crate) fn new(limit: usize) -> Self {
        Self {
            limit,
            ..Self::default()
        }
    }

    pub(crate) fn get(&self, seq: u64) -> Option<Bytes> {
        self.segments.get(&seq).cloned()
    }

    pub(crate) fn insert(&mut self, seq: u64, segment: Bytes) {
        if segment.len() > self.limit || self.segments.contains_key(&seq) {
            return;
        }
        self.bytes += segment.len();
        self.segments.insert(seq, segment);
        self.order.push_back(seq);
        while self.bytes > self.limit {
            let Some(old) = self.order.pop_front() else {
                break;
            };
            if let Some(s) = self.segments.remove(&old) {
                self.bytes -= s.len();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cache_keeps_within_its_bound_and_evicts_the_oldest_first() {
        let mut c = Cache {
            limit: 10,
            ..Cache::default()
        };
        c.insert(1, Bytes::from_static(b"aaaa"));
        c.insert(2, Bytes::from_static(b"bbbb"));
        c.insert(3, Bytes::from_static(b"cccc"));
        assert!(c.bytes <= 10);
        assert!(c.get(1).is_none());
        assert_eq!(c.get(3).as_deref(), Some(&b"cccc"[..]));
        c.insert(4, Bytes::from_static(b"larger than the bound"));
        assert!(c.get(4).is_none());
    }
}
