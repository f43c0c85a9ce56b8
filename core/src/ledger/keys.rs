//! The byte layout of the log's index spaces.
//!
//! - `Log`: position (u64 BE) → the record's frame ([`crate::codec`]).
//! - `EventIds`: tenant, 0x00, event id (16 bytes) → position (u64 BE).
//! - `Streams`: tenant, 0x00, stream, 0x00, version (u64 BE) → position
//!   (u64 BE). Stream names exclude bytes below 0x21, so a stream's keys
//!   are one contiguous range.
//! - `Tenants`: tenant → its chain head, 48 bytes: last position (u64 BE),
//!   last hash (32 bytes), record count (u64 BE), written in the same batch
//!   as the records.

use uuid::Uuid;

use crate::record::Hash;

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

pub(super) fn id_key(tenant: &str, id: Uuid) -> Vec<u8> {
    let mut k = Vec::with_capacity(tenant.len() + 17);
    k.extend_from_slice(tenant.as_bytes());
    k.push(0);
    k.extend_from_slice(id.as_bytes());
    k
}

pub(super) fn stream_prefix(tenant: &str, stream: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(tenant.len() + stream.len() + 10);
    k.extend_from_slice(tenant.as_bytes());
    k.push(0);
    k.extend_from_slice(stream.as_bytes());
    k.push(0);
    k
}

pub(super) fn stream_key(tenant: &str, stream: &str, version: u64) -> Vec<u8> {
    let mut k = stream_prefix(tenant, stream);
    k.extend_from_slice(&version.to_be_bytes());
    k
}

// Stream names exclude bytes below 0x21, so this bounds exactly one stream.
pub(super) fn stream_end(tenant: &str, stream: &str) -> Vec<u8> {
    let mut k = stream_prefix(tenant, stream);
    if let Some(last) = k.last_mut() {
        *last = 1;
    }
    k
}
