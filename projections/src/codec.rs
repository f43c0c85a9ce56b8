//! Key and value encodings shared by the projections.
//!
//! Every state key starts with the tenant name and a 0 byte, then a one-byte
//! table tag, so one tenant's rows are one key range and never mix with
//! another's. Variable-length parts are length-prefixed (u16, big endian);
//! times are i64 µs since the epoch with the sign bit flipped, big endian,
//! so byte order is time order. Values are bincode 2 (standard config) of
//! serde structs; a projection's layout may change freely, since state is
//! rebuilt from the log.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{Error, Result};

/// The prefix of every key of `tenant` in table `table`.
#[must_use]
pub fn tenant_key(tenant: &str, table: u8) -> Vec<u8> {
    let mut k = Vec::with_capacity(tenant.len() + 64);
    start_key(&mut k, tenant, table);
    k
}

/// Replaces `key` with [`tenant_key`]'s prefix, reusing its allocation.
pub fn start_key(key: &mut Vec<u8>, tenant: &str, table: u8) {
    key.clear();
    key.extend_from_slice(tenant.as_bytes());
    key.push(0);
    key.push(table);
}

/// The first byte of a key read only one at a time (by message key), never
/// by a range: above every tenant's keys (tenant names are lower-case
/// ASCII), so no tenant's range ever takes one in.
pub const POINT: u8 = 0xff;

/// Bytes of the message key a point key repeats after [`POINT`].
const SPREAD: usize = 3;

/// Replaces `key` with the key of message `mkey` in point table `table` of
/// `tenant`: [`POINT`], the message key's first 3 bytes, then `tenant \0
/// table` and the message key.
///
/// fjall compares keys by their first 4 bytes, kept inline, before it
/// reads the rest from the heap; keys that begin with the tenant's name
/// all tie there, so each step of a memtable search was a cache miss and
/// a `memcmp`. Begun with the hash's bytes, most steps end inline.
pub fn point_key(key: &mut Vec<u8>, tenant: &str, table: u8, mkey: &[u8; 16]) {
    key.clear();
    key.push(POINT);
    key.extend_from_slice(&mkey[..SPREAD]);
    key.extend_from_slice(tenant.as_bytes());
    key.push(0);
    key.push(table);
    key.extend_from_slice(mkey);
}

/// The tenant of a key [`point_key`] made.
#[must_use]
pub fn point_key_tenant(key: &[u8]) -> &[u8] {
    // After the tenant: `\0`, the table and the 16-byte message key.
    key.get(1 + SPREAD..key.len().saturating_sub(2 + 16))
        .unwrap_or_default()
}

/// Appends a length-prefixed part.
pub fn push_part(key: &mut Vec<u8>, part: &[u8]) {
    let len = u16::try_from(part.len()).unwrap_or(u16::MAX);
    key.extend_from_slice(&len.to_be_bytes());
    key.extend_from_slice(&part[..usize::from(len)]);
}

/// A time as 8 bytes whose order is the time's order.
#[must_use]
pub fn time_bytes(micros: i64) -> [u8; 8] {
    ((micros as u64) ^ (1 << 63)).to_be_bytes()
}

/// The inverse of [`time_bytes`].
#[must_use]
pub fn time_from(bytes: [u8; 8]) -> i64 {
    (u64::from_be_bytes(bytes) ^ (1 << 63)) as i64
}

/// The smallest key greater than every key starting with `prefix`.
#[must_use]
pub fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0xff; prefix.len() + 1]
}

/// Encodes a value.
///
/// # Errors
/// Only if serde fails, which it does not for the projections' types.
pub fn enc<T: Serialize>(value: &T) -> Result<Vec<u8>> {
    // Encoded into a buffer kept per thread, then copied out at its exact
    // size: encoding straight into a new `Vec` grew it by doubling from 8
    // bytes, six or seven allocations for a delivery log row.
    thread_local! {
        static SCRATCH: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    SCRATCH.with(|scratch| {
        let mut buf = scratch.borrow_mut();
        buf.clear();
        bincode::serde::encode_into_std_write(value, &mut *buf, bincode::config::standard())
            .map_err(|e| Error::Corrupt(format!("cannot encode state: {e}")))?;
        Ok(buf.to_vec())
    })
}

/// Decodes a value written by [`enc`].
///
/// # Errors
/// [`Error::Corrupt`] naming `what`.
pub fn dec<T: DeserializeOwned>(bytes: &[u8], what: &str) -> Result<T> {
    bincode::serde::decode_from_slice(bytes, bincode::config::standard())
        .map(|(v, _)| v)
        .map_err(|_| Error::Corrupt(format!("{what} does not decode")))
}

pub use mailledger_core::hex;

/// Parses hex of exactly `len` bytes.
#[must_use]
pub fn unhex(text: &str, len: usize) -> Option<Vec<u8>> {
    mailledger_core::unhex(text).filter(|b| b.len() == len)
}

/// The 16-byte key of a message id: the hash that names its stream in the
/// log ([`mailledger_core::email::message_hash`]).
#[must_use]
pub fn message_key(message_id: &str) -> [u8; 16] {
    mailledger_core::email::message_hash(message_id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn point_keys_lie_outside_every_tenant_range_and_name_their_tenant() {
        let mkey = [0x61; 16]; // 'a': the bytes of a tenant's name
        let mut k = Vec::new();
        point_key(&mut k, "acme", b'M', &mkey);
        assert_eq!(point_key_tenant(&k), b"acme");
        for tenant in ["a", "acme", "zzzz", "z_-9"] {
            let start = tenant_key(tenant, 0);
            let end = prefix_end(&tenant_key(tenant, 0xff));
            assert!(k.as_slice() > end.as_slice() && k.as_slice() > start.as_slice());
        }
        // Keys of two messages differ within fjall's 4 inline bytes.
        let mut other = Vec::new();
        point_key(&mut other, "acme", b'M', &[0x62; 16]);
        assert_ne!(k[..4], other[..4]);
    }

    #[test]
    fn each_encoding_holds_its_own_value_alone_and_decodes_back() {
        // A long value then a short one: the buffer kept between calls
        // must not leak the first into the second.
        let long: Vec<String> = (0..50).map(|i| format!("tag-{i}")).collect();
        let short = vec!["x".to_owned()];
        for v in [&long, &short, &long] {
            let bytes = enc(v).expect("encode");
            let plain =
                bincode::serde::encode_to_vec(v, bincode::config::standard()).expect("encode");
            assert_eq!(bytes, plain);
            assert_eq!(&dec::<Vec<String>>(&bytes, "tags").expect("decode"), v);
        }
    }

    #[test]
    fn time_bytes_order_is_time_order() {
        let times = [i64::MIN, -5, -1, 0, 1, 1_700_000_000_000_000, i64::MAX];
        for w in times.windows(2) {
            assert!(time_bytes(w[0]) < time_bytes(w[1]));
            assert_eq!(time_from(time_bytes(w[0])), w[0]);
        }
    }

    #[test]
    fn prefix_end_bounds_every_key_with_the_prefix() {
        assert_eq!(prefix_end(b"ab"), b"ac".to_vec());
        assert_eq!(prefix_end(b"a\xff"), b"b".to_vec());
        assert!(b"ab\xff\xff".as_slice() < prefix_end(b"ab").as_slice());
    }
}
