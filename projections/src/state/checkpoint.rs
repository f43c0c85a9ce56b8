//! The checkpoint and the format stamp: two keys of a projection's own
//! store, each starting with a 0 byte, which no state key starts with.
//!
//! - [`CHECKPOINT_KEY`] (`\0checkpoint`): the position of the first event
//!   not yet applied, as 8 big-endian bytes; absent in a new store (0).
//! - [`FORMAT_KEY`] (`\0format`): the version of the layout the state was
//!   written in ([`crate::Projection::format`]), as 4 big-endian bytes.

use super::StateStore;
use crate::error::{Error, Result};

/// The key holding a projection's checkpoint: the position of the first
/// event not yet applied, as 8 big-endian bytes. No tenant key starts with
/// a 0 byte, so it never collides with state.
pub const CHECKPOINT_KEY: &[u8] = b"\x00checkpoint";

/// The key holding the version of the layout a store's state was written
/// in ([`crate::Projection::format`]), as 4 big-endian bytes.
pub const FORMAT_KEY: &[u8] = b"\x00format";

/// Whether `store` holds state in layout `format`. An empty store (no
/// checkpoint, no format) is stamped with it and holds; a store with state
/// but no format predates versioning and does not.
///
/// # Errors
/// A storage failure.
pub fn stamp_format(store: &dyn StateStore, format: u32) -> Result<bool> {
    match store.get(FORMAT_KEY)? {
        Some(v) => Ok(v.as_slice() == format.to_be_bytes()),
        None if checkpoint(store)? == 0 => {
            store.commit(vec![(
                FORMAT_KEY.to_vec(),
                Some(format.to_be_bytes().to_vec()),
            )])?;
            Ok(true)
        }
        None => Ok(false),
    }
}

/// The checkpoint stored in `store`: 0 for a new store.
///
/// # Errors
/// A storage failure, or a checkpoint that is not 8 bytes.
pub fn checkpoint(store: &dyn StateStore) -> Result<u64> {
    match store.get(CHECKPOINT_KEY)? {
        None => Ok(0),
        Some(v) => <[u8; 8]>::try_from(v.as_slice())
            .map(u64::from_be_bytes)
            .map_err(|_| Error::Corrupt("checkpoint is not 8 bytes".into())),
    }
}
