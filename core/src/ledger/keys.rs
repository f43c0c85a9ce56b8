//! The byte layout of the log's index spaces, layout 2. Every index key
//! lands at or near the growing end of its space, or in a compact entry,
//! so the cost of an append does not grow with the log:
//!
//! - `Log`: position (u64 BE) → the record's frame ([`crate::codec`]).
//!   Positions only grow.
//! - `EventIds`: event time (8 bytes: the time in microseconds as i64
//!   with its sign bit flipped, big-endian, so times order bytewise),
//!   tenant, 0x00, event id (16 bytes) → position (u64 BE). Ordered by the
//!   event's own time ([`crate::NewEvent::time`]) before the tenant, so
//!   every tenant's new entries land at the one recent end of the space:
//!   with the tenant first, each flushed table would span every tenant's
//!   range and its merge rewrite their old tables. A range of time is
//!   dropped whole. An id reused with another time is another event.
//! - `Streams`: tenant, 0x00, stream hash (u64 BE: the first 8 bytes of
//!   blake3 of the stream name), version (u64 BE) → position (u64 BE); the
//!   entry of version 0 holds the stream name after the position, so a
//!   hash shared by two names is found (the second stream is refused)
//!   instead of mixing their versions. 24 to 90 bytes an entry, where the
//!   name in every key made them 40 to 330.
//! - `Tenants`: tenant → its chain head, 48 bytes: last position (u64 BE),
//!   last hash (32 bytes), record count (u64 BE), written in the same batch
//!   as the records. [`LAYOUT_KEY`] (which no tenant name can be) → the
//!   layout version (u32 BE), [`LAYOUT`].
//!
//! Tenant names hold no byte below 0x2D, so `tenant, 0x00` bounds exactly
//! one tenant's range in `Streams`. The layout is frozen by the vectors in
//! the tests of this module.

use uuid::Uuid;

use crate::record::Hash;

/// The index layout this build writes and reads.
pub(super) const LAYOUT: u32 = 2;
/// The key of the layout version in `Tenants`: no tenant name starts with
/// a NUL.
pub(super) const LAYOUT_KEY: &[u8] = b"\0layout";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct TenantHead {
    pub(super) last_position: u64,
    pub(super) hash: Hash,
    pub(super) count: u64,
}

impl TenantHead {
    pub(super) fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(48);
        v.extend_from_slice(&self.last_position.to_be_bytes());
        v.extend_from_slice(&self.hash);
        v.extend_from_slice(&self.count.to_be_bytes());
        v
    }

    pub(super) fn decode(bytes: &[u8]) -> Option<Self> {
        if bytes.len() != 48 {
            return None;
        }
        let mut hash = [0; 32];
        hash.copy_from_slice(&bytes[8..40]);
        Some(Self {
            last_position: u64_be(&bytes[..8])?,
            hash,
            count: u64_be(&bytes[40..])?,
        })
    }
}

pub(super) fn u64_be(bytes: &[u8]) -> Option<u64> {
    <[u8; 8]>::try_from(bytes).ok().map(u64::from_be_bytes)
}

/// An event time as 8 bytes that order as the times do.
fn time_bytes(micros: i64) -> [u8; 8] {
    (micros.cast_unsigned() ^ (1 << 63)).to_be_bytes()
}

/// The prefix of a tenant's range in `EventIds` or `Streams`.
pub(super) fn tenant_prefix(tenant: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(tenant.len() + 25);
    k.extend_from_slice(tenant.as_bytes());
    k.push(0);
    k
}

/// The key just past a tenant's range.
pub(super) fn tenant_end(tenant: &str) -> Vec<u8> {
    let mut k = tenant_prefix(tenant);
    if let Some(last) = k.last_mut() {
        *last = 1;
    }
    k
}

pub(super) fn id_key(tenant: &str, time: i64, id: Uuid) -> Vec<u8> {
    let mut k = Vec::with_capacity(tenant.len() + 25);
    k.extend_from_slice(&time_bytes(time));
    k.extend_from_slice(tenant.as_bytes());
    k.push(0);
    k.extend_from_slice(id.as_bytes());
    k
}

/// The tenant and event id of an `EventIds` key.
pub(super) fn parse_id_key(key: &[u8]) -> Option<(&str, Uuid)> {
    let (front, id) = key.split_at_checked(key.len().checked_sub(16)?)?;
    let tenant = front.get(8..)?.strip_suffix(&[0])?;
    Some((
        std::str::from_utf8(tenant).ok()?,
        Uuid::from_slice(id).ok()?,
    ))
}

/// A stream's 64-bit hash: the first 8 bytes of blake3 of its name.
pub(super) fn stream_hash(stream: &str) -> u64 {
    super::versions::StreamTag::of(stream).hash
}

pub(super) fn stream_key(tenant: &str, stream: &str, version: u64) -> Vec<u8> {
    let mut k = stream_prefix(tenant, stream);
    k.extend_from_slice(&version.to_be_bytes());
    k
}

/// The prefix every key of one stream starts with.
pub(super) fn stream_prefix(tenant: &str, stream: &str) -> Vec<u8> {
    let mut k = tenant_prefix(tenant);
    k.extend_from_slice(&stream_hash(stream).to_be_bytes());
    k
}

/// The key just past one stream's range.
pub(super) fn stream_end(tenant: &str, stream: &str) -> Vec<u8> {
    match stream_hash(stream).checked_add(1) {
        Some(next) => {
            let mut k = tenant_prefix(tenant);
            k.extend_from_slice(&next.to_be_bytes());
            k
        }
        None => tenant_end(tenant),
    }
}

/// The value of a stream entry: the position, and for version 0 the name.
pub(super) fn stream_value(position: u64, version: u64, stream: &str) -> Vec<u8> {
    let mut v = Vec::with_capacity(8 + stream.len());
    v.extend_from_slice(&position.to_be_bytes());
    if version == 0 {
        v.extend_from_slice(stream.as_bytes());
    }
    v
}

/// The position a stream entry names.
pub(super) fn stream_position(value: &[u8]) -> Option<u64> {
    value.get(..8).and_then(u64_be)
}

/// Whether a version 0 entry's value names `stream`.
pub(super) fn names_stream(value: &[u8], stream: &str) -> bool {
    value.get(8..) == Some(stream.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The layout, frozen: a change here is a new [`LAYOUT`].
    #[test]
    fn index_keys_are_frozen() {
        let id = Uuid::from_bytes([0x11; 16]);
        assert_eq!(
            crate::hex(&id_key("acme", 1_767_600_000_000_000, id)),
            "8006479f721ae000\
             61636d6500\
             11111111111111111111111111111111"
        );
        // A time before 1970 sorts before one after, whatever the tenant.
        assert!(id_key("z", -1, id) < id_key("a", 0, id));
        assert_eq!(
            crate::hex(&stream_key("acme", "message-m1", 3)),
            format!(
                "61636d6500{:016x}0000000000000003",
                stream_hash("message-m1")
            )
        );
        assert_eq!(stream_hash("message-m1"), 0x7c10_7db9_cfa1_c69b);
        assert_eq!(crate::hex(&stream_value(7, 0, "s")), "000000000000000773");
        assert_eq!(crate::hex(&stream_value(7, 1, "s")), "0000000000000007");
        assert_eq!(LAYOUT_KEY, b"\0layout");
    }

    #[test]
    fn stream_keys_bound_one_stream() {
        let (start, end) = (stream_prefix("t", "s"), stream_end("t", "s"));
        let inside = |k: &[u8]| k >= start.as_slice() && k < end.as_slice();
        assert!(inside(&stream_key("t", "s", 0)));
        assert!(inside(&stream_key("t", "s", u64::MAX)));
        for (tenant, other) in [("t", "s2"), ("t", "r"), ("t2", "s"), ("u", "s")] {
            assert!(!inside(&stream_key(tenant, other, 0)), "{tenant}/{other}");
            assert!(
                !inside(&stream_key(tenant, other, u64::MAX)),
                "{tenant}/{other}"
            );
        }
        for tenant in ["t", "t-2", "acme"] {
            let k = id_key(tenant, -5, Uuid::max());
            assert_eq!(parse_id_key(&k), Some((tenant, Uuid::max())));
        }
        assert_eq!(parse_id_key(b"short"), None);
    }
}
