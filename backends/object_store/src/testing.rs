//! The S3-compatible server that tests use, when there is one (feature
//! `test-util`): this crate's tests and the binary's share it.
//!
//! `.ci/run` starts one (moto, through `.ci/s3`) and sets
//! `MAILLEDGER_TEST_S3_ENDPOINT`, and `MAILLEDGER_REQUIRE_S3=1` so that a
//! run without it fails instead of skipping; `.ci/s3` starts one for a
//! developer.

use std::path::Path;
use std::sync::Arc;

use object_store::ObjectStore;
use object_store::aws::AmazonS3Builder;

/// The bucket `.ci/s3` makes, unless `MAILLEDGER_TEST_S3_BUCKET` names another.
#[must_use]
pub fn bucket() -> String {
    std::env::var("MAILLEDGER_TEST_S3_BUCKET").unwrap_or_else(|_| "mailledger-test".into())
}

/// The test server's endpoint, or `None` (saying the test skipped) when
/// there is none.
///
/// # Panics
/// When there is none and `MAILLEDGER_REQUIRE_S3` asks for one.
#[must_use]
pub fn s3_endpoint() -> Option<String> {
    let endpoint = std::env::var("MAILLEDGER_TEST_S3_ENDPOINT")
        .ok()
        .filter(|e| !e.is_empty());
    assert!(
        endpoint.is_some() || std::env::var_os("MAILLEDGER_REQUIRE_S3").is_none(),
        "MAILLEDGER_REQUIRE_S3 is set but MAILLEDGER_TEST_S3_ENDPOINT is not: start a server with .ci/s3"
    );
    if endpoint.is_none() {
        eprintln!(
            "skipped: no S3-compatible server (set MAILLEDGER_TEST_S3_ENDPOINT, or run .ci/s3 first)"
        );
    }
    endpoint
}

/// Whether the S3 tests can run (see [`s3_endpoint`]).
#[must_use]
pub fn s3_ready() -> bool {
    s3_endpoint().is_some()
}

/// The `AWS_*` settings of a client of the test server at `endpoint`, for
/// a process the test starts.
#[must_use]
pub fn aws_settings(endpoint: &str) -> [(&'static str, String); 5] {
    [
        ("AWS_ENDPOINT", endpoint.to_owned()),
        ("AWS_ALLOW_HTTP", "true".into()),
        ("AWS_REGION", "eu-central-1".into()),
        ("AWS_ACCESS_KEY_ID", "test".into()),
        ("AWS_SECRET_ACCESS_KEY", "test".into()),
    ]
}

/// A client of the test server's bucket.
///
/// # Panics
/// Without a test server, or when the client cannot be built.
#[must_use]
pub fn s3() -> Arc<dyn ObjectStore> {
    let endpoint = s3_endpoint().expect("MAILLEDGER_TEST_S3_ENDPOINT");
    let mut b = AmazonS3Builder::new().with_bucket_name(bucket());
    for (key, value) in aws_settings(&endpoint) {
        if let Ok(key) = key.to_ascii_lowercase().parse() {
            b = b.with_config(key, value);
        }
    }
    Arc::new(b.build().expect("S3 client"))
}

/// A prefix of the bucket of its own for a test's directory.
#[must_use]
pub fn prefix_for(dir: &Path) -> String {
    let hash = blake3::hash(dir.as_os_str().as_encoded_bytes());
    format!("t/{}", &hash.to_hex()[..16])
}
