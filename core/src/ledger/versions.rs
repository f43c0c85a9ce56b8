//! The writer's memory of committed stream versions: compact, so that it
//! holds every stream still receiving events within a small share of
//! memory.
//!
//! A miss costs the writer a point read and a backwards scan of the stream
//! index, a tree keyed at random whose tables stop fitting any cache as the
//! log grows: the cost of an event would grow with the log. What must be
//! remembered is the set of streams in flight (a message's opens come hours
//! after its send; a contact's events days apart), so each entry is made
//! small: the stream's 64-bit index hash as the key and one `u64` holding
//! a 32-bit check and the version. Keyed by the name, an entry took about
//! 128 bytes; so it takes 16 in the table ([`ENTRY_BYTES`] with the table's
//! slack).
//!
//! The check is 32 more bits of the same blake3 hash: a second name with
//! the stream's 64-bit hash (refused by the index, [`super::keys`]) does
//! not match it, so it is a miss and goes to the store, which refuses it.
//! Versions from `u32::MAX - 1` up are not kept; they are read each time.
//!
//! Two generations: entries go into the young one; when it holds half the
//! capacity it becomes the old one and the old one is dropped. A hit in the
//! old generation is copied into the young one, so what is in use survives
//! every turn and a full cache never forgets everything at once.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use super::by_tenant::ByTenant;

/// Bytes one entry takes at most, the table's slack included: a 16-byte
/// bucket and a control byte, in a table that doubles when seven eighths
/// full (so at worst 7/16 full). Budgets divide by this.
pub const ENTRY_BYTES: usize = 39;

/// A stream as the cache knows it: its index hash and a check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct StreamTag {
    pub(super) hash: u64,
    check: u32,
}

impl StreamTag {
    /// The tag of `stream`: the index's hash (the first 8 bytes of blake3
    /// of the name, which [`super::keys::stream_hash`] takes from here) and
    /// the next 4 bytes.
    pub(super) fn of(stream: &str) -> Self {
        let h = blake3::hash(stream.as_bytes());
        let b = h.as_bytes();
        let mut hash = [0; 8];
        hash.copy_from_slice(&b[..8]);
        let mut check = [0; 4];
        check.copy_from_slice(&b[8..12]);
        Self {
            hash: u64::from_be_bytes(hash),
            check: u32::from_be_bytes(check),
        }
    }
}

/// Hashes a key that is already a uniform hash: itself.
#[derive(Default)]
struct Identity(u64);

impl Hasher for Identity {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

type Table = HashMap<u64, u64, BuildHasherDefault<Identity>>;

/// One generation: per tenant, hash → check and version (see [`pack`]).
#[derive(Default)]
struct Generation {
    maps: HashMap<String, Table>,
    len: usize,
}

impl Generation {
    fn get(&self, tenant: &str, tag: StreamTag) -> Option<Option<u64>> {
        unpack(*self.maps.get(tenant)?.get(&tag.hash)?, tag)
    }

    fn insert(&mut self, tenant: &str, tag: StreamTag, packed: u64) {
        let map = match self.maps.get_mut(tenant) {
            Some(m) => m,
            None => self.maps.entry(tenant.to_owned()).or_default(),
        };
        if map.insert(tag.hash, packed).is_none() {
            self.len += 1;
        }
    }
}

/// The check in the high half, the version plus one in the low half (0:
/// no such stream); `None` when the version is too large to keep.
fn pack(tag: StreamTag, version: Option<u64>) -> Option<u64> {
    let low = match version {
        None => 0,
        Some(v) => u32::try_from(v.checked_add(1)?)
            .ok()
            .filter(|&l| l < u32::MAX)?,
    };
    Some((u64::from(tag.check) << 32) | u64::from(low))
}

/// The version in `packed` if its check is `tag`'s.
fn unpack(packed: u64, tag: StreamTag) -> Option<Option<u64>> {
    if (packed >> 32) as u32 != tag.check {
        return None;
    }
    let low = packed & u64::from(u32::MAX);
    Some(low.checked_sub(1))
}

/// The cache; see the module.
pub(super) struct StreamVersions {
    young: Generation,
    old: Generation,
    capacity: usize,
}

impl StreamVersions {
    /// A cache of at most `capacity` streams.
    pub(super) fn new(capacity: usize) -> Self {
        Self {
            young: Generation::default(),
            old: Generation::default(),
            capacity: capacity.max(2),
        }
    }

    fn turn_if_full(&mut self) {
        if self.young.len >= self.capacity / 2 {
            self.old = std::mem::take(&mut self.young);
        }
    }

    /// Whether `stream`'s version is known.
    pub(super) fn contains(&self, tenant: &str, stream: &str) -> bool {
        let tag = StreamTag::of(stream);
        self.young.get(tenant, tag).is_some() || self.old.get(tenant, tag).is_some()
    }

    /// The version of `stream` (`Some(None)`: no such stream), moved into
    /// the young generation if it was old; `None` when not known.
    pub(super) fn touch(&mut self, tenant: &str, stream: &str) -> Option<Option<u64>> {
        let tag = StreamTag::of(stream);
        if let Some(v) = self.young.get(tenant, tag) {
            return Some(v);
        }
        let v = self.old.get(tenant, tag)?;
        self.insert_tag(tenant, tag, v);
        Some(v)
    }

    /// Remembers `stream`'s version.
    pub(super) fn insert(&mut self, tenant: &str, stream: &str, version: Option<u64>) {
        self.insert_tag(tenant, StreamTag::of(stream), version);
    }

    fn insert_tag(&mut self, tenant: &str, tag: StreamTag, version: Option<u64>) {
        self.turn_if_full();
        match pack(tag, version) {
            Some(packed) => self.young.insert(tenant, tag, packed),
            // Too large to keep: forget what either generation held.
            None => {
                for g in [&mut self.young, &mut self.old] {
                    if let Some(m) = g.maps.get_mut(tenant)
                        && m.remove(&tag.hash).is_some()
                    {
                        g.len -= 1;
                    }
                }
            }
        }
    }

    /// Remembers every version of a written group.
    pub(super) fn extend(&mut self, written: ByTenant<String, Option<u64>>) {
        for (tenant, stream, version) in written.into_entries() {
            self.insert(&tenant, &stream, version);
        }
    }

    /// The bytes the tables hold at most (their buckets and control
    /// bytes), for the test of [`ENTRY_BYTES`].
    #[cfg(test)]
    fn table_bytes(&self) -> usize {
        [&self.young, &self.old]
            .iter()
            .flat_map(|g| g.maps.values())
            .map(|m| {
                let buckets = (m.capacity() * 8 / 7).next_power_of_two();
                buckets * (std::mem::size_of::<(u64, u64)>() + 1)
            })
            .sum()
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.young.len + self.old.len
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_cache_keeps_what_is_in_use_and_forgets_the_rest() {
        let mut c = StreamVersions::new(8);
        let name = |k: u64| format!("s{k}");
        for k in 0..4 {
            c.insert("t", &name(k), Some(k));
        }
        // Young is full: the next insert turns it old; nothing is lost yet.
        c.insert("t", &name(4), Some(4));
        assert!((0..5).all(|k| c.contains("t", &name(k))));
        // 0 is used, so it moves young; 1 to 3 are not.
        assert_eq!(c.touch("t", &name(0)), Some(Some(0)));
        for k in 5..7 {
            c.insert("t", &name(k), Some(k));
        }
        // Young (4, 0, 5, 6) turns old on the next insert; 1 to 3 are gone.
        c.insert("t", &name(7), Some(7));
        assert_eq!(c.touch("t", &name(0)), Some(Some(0)));
        assert!((1..4).all(|k| !c.contains("t", &name(k))));
        assert!((4..8).all(|k| c.touch("t", &name(k)) == Some(Some(k))));
        // Tenants apart; no stream, and a version too large to keep.
        assert!(!c.contains("u", &name(7)));
        c.insert("u", "new", None);
        assert_eq!(c.touch("u", "new"), Some(None));
        c.insert("u", "new", Some(u64::from(u32::MAX)));
        assert_eq!(c.touch("u", "new"), None);
        c.insert("u", "new", Some(u64::from(u32::MAX) - 3));
        assert_eq!(c.touch("u", "new"), Some(Some(u64::from(u32::MAX) - 3)));
    }

    #[test]
    fn a_name_sharing_the_hash_but_not_the_check_is_a_miss() {
        let mut c = StreamVersions::new(8);
        let tag = StreamTag::of("a");
        c.insert("t", "a", Some(5));
        // Another name whose hash is "a"'s, with another check.
        let other = StreamTag {
            hash: tag.hash,
            check: !tag.check,
        };
        assert_eq!(c.young.get("t", other), None);
        assert_eq!(c.young.get("t", tag), Some(Some(5)));
    }

    #[test]
    fn entries_take_no_more_than_the_budgeted_bytes() {
        // Fill to every size around a doubling of the tables: the worst
        // case is a table just doubled.
        let mut c = StreamVersions::new(1 << 17);
        for k in 0..(1u64 << 17) {
            c.insert(
                ["t0", "t1", "t2"][(k % 3) as usize],
                &format!("message-{k}"),
                Some(k),
            );
            let len = c.len();
            if len > 1000 && k % 997 == 0 {
                let per = c.table_bytes() / len;
                assert!(per <= ENTRY_BYTES, "{per} bytes an entry at {len}");
            }
        }
    }
}
