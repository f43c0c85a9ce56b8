//! Shared helpers of mailledger's integration tests.

use std::path::Path;
use std::sync::Arc;

use mailledger_core::Store;

pub mod rounds;

/// The durable backends the crash and fault tests run against.
pub const DURABLE_BACKENDS: [&str; 3] = ["fjall", "sled", "objects"];

/// Opens the store of `backend` (`fjall`, `sled` or `objects`, segment files) in `dir`.
///
/// # Errors
/// When the store cannot be opened, or the backend is unknown.
pub fn open_store(backend: &str, dir: &Path) -> mailledger_core::Result<Arc<dyn Store>> {
    match backend {
        "fjall" => Ok(Arc::new(mailledger_fjall::FjallStore::open(dir)?)),
        "sled" => Ok(Arc::new(mailledger_sled::SledStore::open(dir)?)),
        // Snapshots every 4 segments, not 1,024, so the crash test and the
        // erasure scan meet them (written, interrupted, loaded, scanned).
        "objects" => Ok(Arc::new(
            mailledger_object_store::SegmentStore::builder()
                .snapshot_every(4)
                .open_dir(dir)?,
        )),
        other => Err(mailledger_core::Error::InvalidInput(format!(
            "unknown backend {other}"
        ))),
    }
}
