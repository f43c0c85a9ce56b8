//! mailledger's audit layer: what a compliance officer, a data protection
//! officer and an outside auditor use. Replay with verification, state as
//! of a moment, signed checkpoints and verification of a log against them,
//! and access records of reads of personal data.
//!
//! - [`access`]: access records of every read that opens personal data,
//!   batched into each tenant's log, and their listing.
//! - [`as_of`]: a message's or a contact's state as of a moment, from the
//!   log alone, through the live projections' own code.
//! - [`key`]: the node's Ed25519 audit key and its public half.
//! - [`checkpoint`]: what a checkpoint signs (byte layout frozen by a
//!   vector), its record in the log and its exported JSON line.
//! - [`checkpoints`]: signing every tenant's checkpoint, reading them back.
//! - [`against`]: `verify --against`, naming the first bad position.
//! - [`replay`]: a tenant's events in log order, filtered, opened or raw,
//!   with the chain verified as it is read.
//!
//! No runtime policy here: the binary decides when to sign (`serve` every
//! ten minutes by default, `mailledger checkpoint` on demand).

pub mod access;
pub mod against;
pub mod as_of;
pub mod checkpoint;
pub mod checkpoints;
pub mod key;
pub mod replay;

pub use access::{AccessFilter, AccessLog, AccessRecord, access_records};
pub use against::{AgainstReport, verify_against};
pub use checkpoint::{
    CHECKPOINT_EVENT, CHECKPOINT_STREAM, Checkpoint, CheckpointJson, SignedCheckpoint, parse_lines,
};
pub use checkpoints::{all_checkpoints, checkpoints, sign_checkpoints};
pub use key::{AUDIT_KEY_FILE, AuditKey, PublicKey};
pub use replay::{Format, Page, Replay, ReplayFilter, ReplaySummary, Shown};

/// What can go wrong in the audit layer.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// The audit key cannot be read, written or parsed.
    #[error("audit key: {0}")]
    Key(String),
    /// An exported checkpoint or a checkpoint record does not parse.
    #[error("checkpoint: {0}")]
    BadCheckpoint(String),
    /// A checkpoint's signature does not hold under the given public key.
    #[error(
        "the checkpoint of tenant {tenant} at position {position} is not signed by this public key"
    )]
    Signature {
        /// Its tenant.
        tenant: String,
        /// The position it covers.
        position: u64,
    },
    /// The log is not what the checkpoints signed.
    #[error("tampered at position {position}: {reason}")]
    Tampered {
        /// The first bad position found.
        position: u64,
        /// What was wrong (no record contents).
        reason: String,
    },
    /// A replay could not go on (a thread or a read of it stopped).
    #[error("replay: {0}")]
    Replay(String),
    /// An event could not be written as JSON.
    #[error("writing JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// The log failed.
    #[error(transparent)]
    Log(#[from] mailledger_core::Error),
    /// A projection (of a state as of a moment) failed.
    #[error(transparent)]
    Projection(#[from] mailledger_projections::Error),
}

/// The audit layer's result.
pub type Result<T, E = AuditError> = std::result::Result<T, E>;
