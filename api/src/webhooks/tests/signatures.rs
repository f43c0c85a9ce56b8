//! Signatures that prove something: allow-lists, clock windows, required versions, once-only tokens.

use super::*;

/// An SNS notification of the delivery sample sent at `timestamp`
/// (RFC 3339), signed (version 2).
pub(super) fn sns_sent_at(timestamp: &str) -> Vec<u8> {
    let mut n = sns_notification(&testdata_text("ses/delivery.json"), "m-fresh");
    n["Timestamp"] = json!(timestamp);
    sns_sign(&mut n);
    serde_json::to_vec(&n).unwrap()
}

pub(super) fn rfc3339(unix: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .unwrap()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap()
}

#[test]
pub(super) fn sns_certificates_without_a_topic_allow_list_verify_nothing() {
    let body = sns_sent_at(SNS_TIMESTAMP);
    let no_topics = ProviderSecrets {
        sns_topic_arns: Vec::new(),
        ..sns_secrets()
    };
    let err = parse(Provider::Ses, &HeaderMap::new(), &body, &no_topics, NOW).unwrap_err();
    assert!(
        matches!(
            err,
            WebhookError::BadSecret {
                provider: Provider::Ses,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(err.kind(), WebhookErrorKind::Configuration);
    assert!(err.to_string().contains("sns_topic_arns"), "{err}");
    // A confirmation too: any account could have subscribed us.
    let mut confirmation: Value =
        serde_json::from_slice(&testdata("ses/sns-subscription-confirmation.json")).unwrap();
    confirmation["Timestamp"] = json!(SNS_TIMESTAMP);
    sns_sign(&mut confirmation);
    let body = serde_json::to_vec(&confirmation).unwrap();
    assert!(matches!(
        parse(Provider::Ses, &HeaderMap::new(), &body, &no_topics, NOW),
        Err(WebhookError::BadSecret { .. })
    ));
}

#[test]
pub(super) fn sns_messages_too_old_or_too_far_ahead_are_refused() {
    let send = |at: i64, secrets: &ProviderSecrets| {
        parse(
            Provider::Ses,
            &HeaderMap::new(),
            &sns_sent_at(&rfc3339(at)),
            secrets,
            NOW,
        )
    };
    for fresh in [NOW - 300, NOW, NOW + 300] {
        assert!(send(fresh, &sns_secrets()).is_ok(), "{fresh}");
    }
    for stale in [NOW - 301, NOW + 301, NOW - 86_400 * 365] {
        let err = send(stale, &sns_secrets()).unwrap_err();
        assert_eq!(
            err,
            WebhookError::StaleTimestamp {
                field: "Timestamp",
                max_age_secs: 300
            },
            "{stale}"
        );
        assert_eq!(err.kind(), WebhookErrorKind::Unauthenticated);
    }
    // A delivery policy that retries for an hour needs an hour's age.
    let hour = ProviderSecrets {
        max_signature_age_secs: 3600,
        ..sns_secrets()
    };
    assert!(send(NOW - 3000, &hour).is_ok());
    // A stale confirmation is refused as well.
    let mut confirmation: Value =
        serde_json::from_slice(&testdata("ses/sns-subscription-confirmation.json")).unwrap();
    sns_sign(&mut confirmation);
    let body = serde_json::to_vec(&confirmation).unwrap();
    assert!(matches!(
        parse(Provider::Ses, &HeaderMap::new(), &body, &sns_secrets(), NOW),
        Err(WebhookError::StaleTimestamp { .. })
    ));
}

#[test]
pub(super) fn sns_signature_version_1_is_refused_when_only_version_2_is_allowed() {
    let v1 = testdata("ses/sns-notification-v1.json");
    let v2_only = ProviderSecrets {
        sns_signature_v2_only: true,
        max_signature_age_secs: 400_000_000,
        ..sns_secrets()
    };
    let err = parse(Provider::Ses, &HeaderMap::new(), &v1, &v2_only, NOW).unwrap_err();
    assert_eq!(
        err,
        WebhookError::WeakSignature {
            what: "field SignatureVersion 1",
            setting: "sns_signature_v2_only"
        }
    );
    assert_eq!(err.kind(), WebhookErrorKind::Unauthenticated);
    assert!(err.to_string().contains("sns_signature_v2_only"), "{err}");
    let v2 = sns_sent_at(SNS_TIMESTAMP);
    assert!(parse(Provider::Ses, &HeaderMap::new(), &v2, &v2_only, NOW).is_ok());
}

#[test]
pub(super) fn postal_sha1_signatures_are_refused_when_sha256_is_required() {
    let body = testdata("postal/message-sent.json");
    let secrets = ProviderSecrets {
        postal_public_key: Some(testdata_text("keys/postal-1024.pub.pem")),
        postal_require_sha256: true,
        ..ProviderSecrets::default()
    };
    let sig1 = header_map(&[(
        "X-Postal-Signature",
        testdata_text("postal/message-sent.sig1.b64"),
    )]);
    let err = parse(Provider::Postal, &sig1, &body, &secrets, NOW).unwrap_err();
    assert_eq!(
        err,
        WebhookError::WeakSignature {
            what: "header X-Postal-Signature",
            setting: "postal_require_sha256"
        }
    );
    assert_eq!(err.kind(), WebhookErrorKind::Unauthenticated);
    let sig256 = header_map(&[(
        "X-Postal-Signature-256",
        testdata_text("postal/message-sent.sig256.b64"),
    )]);
    assert!(parse(Provider::Postal, &sig256, &body, &secrets, NOW).is_ok());
}

#[test]
pub(super) fn a_verified_mailgun_signature_gives_its_once_only_token() {
    let body = mailgun_body("delivered.json", NOW - 10);
    assert!(
        parse(
            Provider::Mailgun,
            &HeaderMap::new(),
            &body,
            &mailgun_secrets(),
            NOW
        )
        .is_ok()
    );
    let t = replay::signature_token(Provider::Mailgun, &body, &mailgun_secrets()).unwrap();
    assert_eq!(t.fresh_until, NOW - 10 + 300);
    let same = replay::signature_token(Provider::Mailgun, &body, &mailgun_secrets()).unwrap();
    assert_eq!(t, same);
    let seen = replay::SeenTokens::default();
    assert!(seen.claim("acme", &t, NOW).is_ok());
    assert_eq!(
        seen.claim("acme", &same, NOW),
        Err(WebhookError::Replayed {
            what: "field signature.token"
        })
    );
    // Nothing was verified without a key; other providers sign their body.
    assert!(replay::signature_token(Provider::Mailgun, &body, &unsigned()).is_none());
    assert!(replay::signature_token(Provider::Postal, &body, &mailgun_secrets()).is_none());
}
