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

#[test]
fn webhook_scopes_parse_by_name_and_are_stored_as_their_names() {
    assert_eq!(
        parse_scopes("webhook").unwrap(),
        [Scope::Webhook(None)].to_vec()
    );
    assert_eq!(
        parse_scopes("webhook:ses, ingest").unwrap(),
        [Scope::Ingest, Scope::Webhook(Some(WebhookProvider::Ses))].to_vec()
    );
    for bad in [
        "webhook:sparkpost",
        "webhook:",
        "webhooks",
        "Webhook",
        "webhook:SES",
    ] {
        let err = parse_scopes(bad).unwrap_err().to_string();
        assert!(err.contains("webhook:<provider>"), "{bad}: {err}");
    }
    for s in Scope::every() {
        assert_eq!(s.name().parse::<Scope>().unwrap(), s);
        assert_eq!(serde_json::to_value(s).unwrap(), s.name());
    }
    let dir = tempfile::tempdir().unwrap();
    let s = AccessStore::open(dir.path(), &kek()).unwrap();
    s.create_tenant("acme", &EU).unwrap();
    let (info, key) = s
        .create_key(
            "acme",
            &[Scope::Webhook(Some(WebhookProvider::Postmark))],
            None,
        )
        .unwrap();
    let text = std::fs::read_to_string(s.path()).unwrap();
    assert!(text.contains("\"webhook:postmark\""), "{text}");
    // Another process reads it back.
    let other = AccessStore::open(dir.path(), &kek()).unwrap();
    assert_eq!(other.keys(None).unwrap(), [info]);
    assert_eq!(
        other.authenticate(&key).unwrap().unwrap().scopes,
        [Scope::Webhook(Some(WebhookProvider::Postmark))]
    );
}

#[test]
fn an_access_file_from_before_webhook_scopes_still_loads() {
    let dir = tempfile::tempdir().unwrap();
    let s = AccessStore::open(dir.path(), &kek()).unwrap();
    s.create_tenant("acme", &EU).unwrap();
    let (_, key) = s
        .create_key("acme", &[Scope::Ingest, Scope::Read], None)
        .unwrap();
    // The file as an earlier build wrote it: only the four general scopes.
    let text = std::fs::read_to_string(s.path()).unwrap();
    assert!(text.contains("\"ingest\"") && !text.contains("webhook:"));
    let reopened = AccessStore::open(dir.path(), &kek()).unwrap();
    let c = reopened.authenticate(&key).unwrap().unwrap();
    assert_eq!(c.scopes, [Scope::Ingest, Scope::Read]);
    // An ingest key still posts every provider's webhooks.
    assert!(
        WebhookProvider::ALL
            .into_iter()
            .all(|p| c.may_post_webhook(p))
    );
}

#[test]
fn a_webhook_key_posts_only_its_providers_webhooks_and_nothing_else() {
    let caller = |scopes: Vec<Scope>| Caller {
        tenant: "acme".into(),
        key_id: "k".into(),
        scopes,
        jurisdictions: EU.to_vec(),
    };
    let any = caller(vec![Scope::Webhook(None)]);
    assert!(
        WebhookProvider::ALL
            .into_iter()
            .all(|p| any.may_post_webhook(p))
    );
    let ses = caller(vec![Scope::Webhook(Some(WebhookProvider::Ses))]);
    assert!(ses.may_post_webhook(WebhookProvider::Ses));
    assert!(!ses.may_post_webhook(WebhookProvider::Postmark));
    for c in [&any, &ses] {
        for general in Scope::ALL {
            assert!(!c.has(general), "{general}");
        }
    }
    assert!(!caller(vec![Scope::Read]).may_post_webhook(WebhookProvider::Ses));
}

#[test]
fn sns_certificates_without_a_topic_allow_list_are_refused_naming_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let s = AccessStore::open(dir.path(), &kek()).unwrap();
    s.create_tenant("acme", &EU).unwrap();
    s.set_webhook_secrets("acme", Some(r#"{"mailgun_signing_key": "before-xyz"}"#))
        .unwrap();
    let err = s
        .set_webhook_secrets(
            "acme",
            Some(r#"{"sns_certificates": ["-----BEGIN CERTIFICATE-----\nsecret-cert-zed\n-----END CERTIFICATE-----"]}"#),
        )
        .unwrap_err();
    assert!(
        matches!(
            err,
            AccessError::UnsafeSetting {
                field: "sns_topic_arns",
                ..
            }
        ),
        "{err:?}"
    );
    let text = err.to_string();
    assert!(
        text.contains("sns_topic_arns") && !text.contains("zed"),
        "{text}"
    );
    // Nothing changed.
    assert_eq!(
        s.webhook_secrets("acme")
            .unwrap()
            .mailgun_signing_key
            .as_deref(),
        Some("before-xyz")
    );
    // With the allow-list the same certificates are taken, and the new
    // settings with them.
    s.set_webhook_secrets(
        "acme",
        Some(
            r#"{"sns_certificates": ["pem"], "sns_topic_arns": ["arn:aws:sns:eu-west-1:123456789012:t"],
                "sns_signature_v2_only": true, "postal_require_sha256": true}"#,
        ),
    )
    .unwrap();
    let got = s.webhook_secrets("acme").unwrap();
    assert!(got.sns_signature_v2_only && got.postal_require_sha256);
    assert!(!ProviderSecrets::default().sns_signature_v2_only);
    assert!(!ProviderSecrets::default().postal_require_sha256);
}
