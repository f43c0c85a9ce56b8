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
mod dirs;
pub mod email;
mod error;
mod hex;
pub mod keys;
mod ledger;
mod log;
mod memory;
pub mod pseudonym;
mod record;
pub mod residency;
mod store;
mod threads;
mod window;
mod wire;

#[cfg(feature = "test-util")]
pub mod conformance;
#[cfg(feature = "test-util")]
pub mod counting;
#[cfg(feature = "test-util")]
pub mod traffic;

pub use blocking::{blocking_allowed, on_blocking_thread, run_blocking};
pub use dirs::sync_tree;
pub use error::{Error, ErrorKind, Result, StoreError};
pub use hex::{hex, is_hex_of, push_hex, push_hex_bytes, unhex, unhex_into};
pub use ledger::{Durability, Ledger, LedgerConfig};
pub use log::{
    ChainHead, EventLog, FrameBatch, MAX_READ_BATCH, ProgressFn, ReadBatch, Subscription,
    VerifyProgress, VerifyReport,
};
pub use memory::MemoryStore;
pub use record::{
    AppendOutcome, Direction, ExpectedVersion, GENESIS_HASH, Hash, MAX_EVENT_BYTES,
    MAX_EVENT_TYPE_LEN, MAX_LINKS, MAX_STREAM_LEN, MAX_TENANT_LEN, NewEvent, Record, StreamAppend,
    TenantFilter, time_of_id, validate_event, validate_stream, validate_tenant,
};
pub use store::{KeyRange, Space, Store, Visit, WriteBatch, scan_in_chunks, scan_iter};
pub use threads::{ThreadHook, ThreadRole};
pub use window::Window;

/// Now, in microseconds since the Unix epoch: the clock of `recorded_at`
/// and of every time the ledger stamps (the end of time if the clock is
/// past it, the epoch if it is before).
#[must_use]
pub fn now_micros() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
}
