//! The shared conformance suite against the object_store backend: on
//! local files, and on an S3-compatible server (see `common`).

mod local_files {
    use std::path::Path;
    use std::sync::Arc;

    use mailledger_core::Store;

    fn open(dir: &Path) -> mailledger_core::Result<Arc<dyn Store>> {
        Ok(Arc::new(mailledger_object_store::SegmentStore::open_dir(
            dir,
        )?))
    }

    mailledger_core::conformance_tests!(open);
}

mod s3 {
    use std::path::Path;
    use std::sync::Arc;

    use mailledger_core::Store;

    use mailledger_object_store::testing as common;

    fn open(dir: &Path) -> mailledger_core::Result<Arc<dyn Store>> {
        let store =
            mailledger_object_store::SegmentStore::open(common::s3(), &common::prefix_for(dir))?;
        Ok(Arc::new(store))
    }

    mailledger_core::conformance_tests!(open, when = common::s3_ready);
}
