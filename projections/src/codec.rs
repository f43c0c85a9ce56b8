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

/// A big-endian u64 of exactly 8 bytes.
#[must_use]
pub fn u64_be(bytes: &[u8]) -> Option<u64> {
    <[u8; 8]>::try_from(bytes).ok().map(u64::from_be_bytes)
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
