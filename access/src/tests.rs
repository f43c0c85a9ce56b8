//! The access store's tests: keys, sealed secrets and the first start,
//! each through a store on a temporary directory.

use mailledger_core::crypto::SecretKey;
use mailledger_core::residency::Jurisdiction;

use super::*;
use crate::keys::split_key;

const EU: [Jurisdiction; 1] = [Jurisdiction::EU];

fn kek() -> SecretKey {
    SecretKey::from_hex(&"ab".repeat(32)).unwrap()
}

#[test]
fn a_created_key_authenticates_and_a_revoked_one_does_not() {
    let dir = tempfile::tempdir().unwrap();
    let s = AccessStore::open(dir.path(), &kek()).unwrap();
    s.create_tenant("acme", &EU).unwrap();
    let (info, key) = s.create_key("acme", &[Scope::Read], None).unwrap();
    assert!(key.starts_with("mlk_"));
    let c = s.authenticate(&key).unwrap().unwrap();
    assert_eq!(c.tenant, "acme");
    assert_eq!(c.scopes, vec![Scope::Read]);
    // Another process (the CLI) revokes through its own store.
    let other = AccessStore::open(dir.path(), &kek()).unwrap();
    other.revoke_key(&info.id).unwrap();
    assert_eq!(s.authenticate(&key).unwrap(), None);
}

#[test]
fn the_file_holds_no_secret_and_another_kek_cannot_test_keys() {
    let dir = tempfile::tempdir().unwrap();
    let s = AccessStore::open(dir.path(), &kek()).unwrap();
    s.create_tenant("acme", &EU).unwrap();
    let (_, key) = s.create_key("acme", &[Scope::Ingest], None).unwrap();
    s.set_webhook_secrets(
        "acme",
        Some(r#"{"mailgun_signing_key": "signing-key-xyz"}"#),
    )
    .unwrap();
    let text = std::fs::read_to_string(s.path()).unwrap();
    let (_, secret) = split_key(&key).unwrap();
    assert!(!text.contains(secret));
    assert!(!text.contains("signing-key-xyz"));
    let wrong =
        AccessStore::open(dir.path(), &SecretKey::from_hex(&"cd".repeat(32)).unwrap()).unwrap();
    assert_eq!(wrong.authenticate(&key).unwrap(), None);
    assert_eq!(
        s.webhook_secrets("acme")
            .unwrap()
            .mailgun_signing_key
            .as_deref(),
        Some("signing-key-xyz")
    );
    assert_eq!(
        s.tenant("acme").unwrap().unwrap().webhook_providers,
        ["mailgun"]
    );
    assert!(wrong.webhook_secrets("acme").is_err());
    let err = s
        .set_webhook_secrets("acme", Some(r#"{"mailgun_key": "zed"}"#))
        .unwrap_err()
        .to_string();
    assert!(err.contains("mailgun_key") && !err.contains("zed"), "{err}");
}

#[test]
fn malformed_keys_fail_quietly() {
    let dir = tempfile::tempdir().unwrap();
    let s = AccessStore::open(dir.path(), &kek()).unwrap();
    for bad in ["", "mlk_", "mlk_x_y", "Bearer", "mlk_0123456789abcdef_zz"] {
        assert_eq!(s.authenticate(bad).unwrap(), None);
    }
}

#[test]
fn bootstrap_makes_default_and_one_key_once() {
    let dir = tempfile::tempdir().unwrap();
    let s = AccessStore::open(dir.path(), &kek()).unwrap();
    let (info, key) = s.bootstrap(&EU).unwrap().unwrap();
    assert_eq!(info.tenant, DEFAULT_TENANT);
    assert_eq!(info.scopes, Scope::ALL.to_vec());
    assert!(s.authenticate(&key).unwrap().is_some());
    assert!(s.bootstrap(&EU).unwrap().is_none());
}
