//! The log layer of mailledger: records, their frame and hash chain, the
//! [`EventLog`] contract, the engine that fulfils it over any [`Store`], and
//! the in-memory reference store.
//!
//! This layer knows nothing of email: a record is an event id, a tenant, a
//! stream, a type name and opaque bytes. The email model sits on top.
//!
//! ```
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! use mailledger_core::{EventLog, ExpectedVersion, Ledger, LedgerConfig, MemoryStore, NewEvent};
//! use uuid::Uuid;
//!
//! let log = Ledger::open(MemoryStore::new(), LedgerConfig::new())?;
//! let event = NewEvent::new(Uuid::now_v7(), "sent", b"{}".to_vec());
//! let out = log
//!     .append_to_stream("default", "message-1", ExpectedVersion::NoStream, vec![event])
//!     .await?;
//! assert_eq!(out.positions, vec![0]);
//! # Ok::<_, mailledger_core::Error>(())
//! # }).unwrap();
//! ```

mod blocking;
pub mod codec;
pub mod crypto;
pub mod email;
mod error;
pub mod keys;
mod ledger;
mod log;
mod memory;
pub mod pseudonym;
mod record;
pub mod residency;
mod store;
pub mod turns;
mod wire;

#[cfg(feature = "test-util")]
pub mod conformance;

pub use blocking::{blocking_allowed, on_blocking_thread, run_blocking};
pub use error::{Error, ErrorKind, Result, StoreError};
pub use ledger::{Durability, Ledger, LedgerConfig};
pub use log::{
    EventLog, MAX_READ_BATCH, ProgressFn, ReadBatch, Subscription, VerifyProgress, VerifyReport,
};
pub use memory::MemoryStore;
pub use record::{
    AppendOutcome, Direction, ExpectedVersion, GENESIS_HASH, Hash, MAX_EVENT_BYTES,
    MAX_EVENT_TYPE_LEN, MAX_LINKS, MAX_STREAM_LEN, MAX_TENANT_LEN, NewEvent, Record, StreamAppend,
    TenantFilter, validate_event, validate_stream, validate_tenant,
};
pub use store::{KeyRange, Space, Store, Visit, WriteBatch, scan_in_chunks};

/// Lower-case hex of `bytes`.
#[must_use]
pub fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    push_hex(&mut s, bytes);
    s
}

/// Appends the lower-case hex of `bytes` to `out`.
///
/// By table rather than through `fmt` (`{:02x}` per byte), which cost
/// about 1% of the server's CPU while ingesting (stream names and
/// pseudonyms, on every event).
pub fn push_hex(out: &mut String, bytes: &[u8]) {
    out.reserve(bytes.len() * 2);
    for &b in bytes {
        let [hi, lo] = hex_pair(b);
        out.push(char::from(hi));
        out.push(char::from(lo));
    }
}

/// Whether `text` is exactly the lower-case hex of `bytes`, as
/// [`push_hex`] writes it (compared in place, without encoding).
#[must_use]
pub fn is_hex_of(text: &[u8], bytes: &[u8]) -> bool {
    text.len() == bytes.len() * 2
        && bytes
            .iter()
            .zip(text.chunks_exact(2))
            .all(|(&b, pair)| pair == hex_pair(b))
}

/// The two lower-case hex digits of `b`.
fn hex_pair(b: u8) -> [u8; 2] {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    [DIGITS[usize::from(b >> 4)], DIGITS[usize::from(b & 0x0f)]]
}

/// Now, in microseconds since the Unix epoch: the clock of `recorded_at`
/// and of every time the ledger stamps (the end of time if the clock is
/// past it, the epoch if it is before).
#[must_use]
pub fn now_micros() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    #[test]
    fn hex_is_two_lower_case_digits_per_byte_in_order() {
        let bytes: Vec<u8> = (0..=255).collect();
        let by_fmt: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(super::hex(&bytes), by_fmt);
        let mut s = String::from("contact-");
        super::push_hex(&mut s, &[0x0f, 0xa0]);
        assert_eq!(s, "contact-0fa0");
    }

    #[test]
    fn is_hex_of_accepts_exactly_what_push_hex_writes() {
        let bytes: Vec<u8> = (0..=255).collect();
        assert!(super::is_hex_of(super::hex(&bytes).as_bytes(), &bytes));
        assert!(!super::is_hex_of(b"0FA0", &[0x0f, 0xa0]), "upper case");
        assert!(!super::is_hex_of(b"0fa", &[0x0f, 0xa0]), "short");
        assert!(!super::is_hex_of(b"0fa00", &[0x0f, 0xa0]), "long");
        assert!(!super::is_hex_of(b"0fa1", &[0x0f, 0xa0]), "another value");
    }
}
