//! The S3-compatible server the tests use, when there is one.
//!
//! `.ci/run` starts one (moto) and sets `MAILLEDGER_TEST_S3_ENDPOINT` (and
//! `MAILLEDGER_REQUIRE_S3=1`, so that a run without it fails instead of
//! skipping); `.ci/s3` starts one for a developer.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::sync::Arc;

use object_store::ObjectStore;
use object_store::aws::AmazonS3Builder;

/// The bucket the tests write to, unless `MAILLEDGER_TEST_S3_BUCKET` names another.
pub const BUCKET: &str = "mailledger-test";

fn endpoint() -> Option<String> {
    std::env::var("MAILLEDGER_TEST_S3_ENDPOINT")
        .ok()
        .filter(|e| !e.is_empty())
}

/// Whether the S3 tests can run; says why not, and fails the test when
/// `MAILLEDGER_REQUIRE_S3` asks for them.
pub fn s3_ready() -> bool {
    if endpoint().is_some() {
        return true;
    }
    assert!(
        std::env::var_os("MAILLEDGER_REQUIRE_S3").is_none(),
        "MAILLEDGER_REQUIRE_S3 is set but MAILLEDGER_TEST_S3_ENDPOINT is not: start a server with .ci/s3"
    );
    eprintln!(
        "skipped: no S3-compatible server (set MAILLEDGER_TEST_S3_ENDPOINT, or run .ci/s3 first)"
    );
    false
}

/// A client of the test server's bucket.
pub fn s3() -> Arc<dyn ObjectStore> {
    let bucket = std::env::var("MAILLEDGER_TEST_S3_BUCKET").unwrap_or_else(|_| BUCKET.into());
    let s3 = AmazonS3Builder::new()
        .with_endpoint(endpoint().expect("MAILLEDGER_TEST_S3_ENDPOINT"))
        .with_allow_http(true)
        .with_region("eu-central-1")
        .with_bucket_name(bucket)
        .with_access_key_id("test")
        .with_secret_access_key("test")
        .build()
        .expect("S3 client");
    Arc::new(s3)
}

/// A prefix of the bucket of its own for a test's directory.
pub fn prefix_for(dir: &Path) -> String {
    let hash = blake3::hash(dir.as_os_str().as_encoded_bytes());
    format!("t/{}", &hash.to_hex()[..16])
}
