//! The backend's error: why a segment could not be read, or a commit was
//! refused, and how it reaches the log as a [`StoreError`].

use mailledger_core::StoreError;

use crate::BACKEND;

/// Why a segment could not be read, or a commit was refused.
#[derive(Debug, thiserror::Error)]
pub enum SegmentError {
    /// The segment's bytes do not decode.
    #[error("segment {seq} is corrupt: {reason}")]
    Corrupt {
        /// The segment's sequence number.
        seq: u64,
        /// What is wrong, never the bytes themselves.
        reason: &'static str,
    },
    /// Segment numbers do not run from 0 without a gap.
    #[error("segment {seq} is missing: the log's objects were removed or renamed")]
    Missing {
        /// The first missing sequence number.
        seq: u64,
    },
    /// An object under the segments prefix that this backend did not write.
    #[error("unexpected object {name:?} among the segments")]
    Unexpected {
        /// The object's name.
        name: String,
    },
    /// Another writer created this segment first.
    #[error(
        "another writer extended the log first (segment {seq} exists): this store is fenced; reopen it to read what was written"
    )]
    Fenced {
        /// The sequence number both tried to write.
        seq: u64,
    },
    /// An earlier commit failed, so what is stored is unknown until a reopen.
    #[error("an earlier commit failed; reopen the store")]
    Poisoned,
    /// A batch too large for the segment format.
    #[error("a batch of {0} puts or a key or value over 4 GiB does not fit a segment")]
    TooLarge(usize),
    /// The object store failed.
    #[error("object store: {0}")]
    Objects(#[from] object_store::Error),
    /// The backend's runtime stopped.
    #[error("the object store runtime stopped")]
    Runtime,
}

impl From<SegmentError> for StoreError {
    fn from(e: SegmentError) -> Self {
        StoreError::new(BACKEND, e)
    }
}
