//! The shared conformance suite against the sled backend.

use std::path::Path;
use std::sync::Arc;

use mailledger_core::Store;

fn open(dir: &Path) -> mailledger_core::Result<Arc<dyn Store>> {
    Ok(Arc::new(mailledger_sled::SledStore::open(dir)?))
}

mailledger_core::conformance_tests!(open);
