//! The shared conformance suite against the fjall backend.

use std::path::Path;
use std::sync::Arc;

use mailledger_core::Store;

fn open(dir: &Path) -> mailledger_core::Result<Arc<dyn Store>> {
    Ok(Arc::new(mailledger_fjall::FjallStore::open(dir)?))
}

mailledger_core::conformance_tests!(open);
