//! Mailgun: documented payloads and its HMAC signatures.

use super::*;

pub(super) const MAILGUN_KEY: &str = "test-only-mailgun-signing-key-0123456789";

pub(super) fn mailgun_secrets() -> ProviderSecrets {
    ProviderSecrets {
        mailgun_signing_key: Some(MAILGUN_KEY.to_owned()),
        ..ProviderSecrets::default()
    }
}

pub(super) fn mailgun_sign(v: &mut Value, key: &str, timestamp: i64, token: &str) {
    let ts = timestamp.to_string();
    let signature = signing::mailgun_signature(key, &ts, token);
    v["signature"] = json!({"timestamp": ts, "token": token, "signature": signature});
}

pub(super) fn mailgun_body(file: &str, timestamp: i64) -> Vec<u8> {
    let mut v: Value = serde_json::from_slice(&testdata(&format!("mailgun/{file}"))).unwrap();
    mailgun_sign(
        &mut v,
        MAILGUN_KEY,
        timestamp,
        &format!("token-{timestamp}-0123456789abcdef0123456789abcdef"),
    );
    serde_json::to_vec(&v).unwrap()
}

pub(super) fn mailgun(file: &str) -> CanonicalEvent {
    let body = mailgun_body(file, NOW - 10);
    let out = parse(
        Provider::Mailgun,
        &HeaderMap::new(),
        &body,
        &mailgun_secrets(),
        NOW,
    )
    .unwrap();
    let (events, skipped, auth) = events_of(out);
    assert_eq!(auth, Authentication::Verified);
    assert!(skipped.is_empty());
    assert_canonical(Provider::Mailgun, &events);
    let [ev] = <[CanonicalEvent; 1]>::try_from(events).unwrap();
    ev
}

#[test]
pub(super) fn mailgun_documented_payloads_map_to_canonical_events() {
    let cases = [
        ("accepted.json", "sent", "recipient@example.org"),
        ("delivered.json", "delivered", "alice@example.org"),
        ("failed-permanent.json", "rejected", "alice@example.org"),
        (
            "failed-permanent-bounce.json",
            "bounced",
            "alice@example.org",
        ),
        ("failed-temporary.json", "deferred", "alice@example.org"),
        ("opened.json", "opened", "alice@example.org"),
        ("opened-apple-mpp.json", "opened", "alice@example.org"),
        ("clicked.json", "clicked", "alice@example.org"),
        ("complained.json", "complained", "alice@example.org"),
        ("unsubscribed.json", "unsubscribed", "alice@example.org"),
    ];
    for (file, ty, to) in cases {
        let ev = mailgun(file);
        assert_eq!(ev.event_type, ty, "{file}");
        assert_eq!(recipient(&ev), to, "{file}");
    }

    let delivered = mailgun("delivered.json");
    assert_eq!(
        delivered.provider_event_id.as_deref(),
        Some("CPgfbmQMTCKtHW6uIWtuVe")
    );
    assert_eq!(
        delivered.id,
        derive_event_id(
            Provider::Mailgun,
            "delivered:CPgfbmQMTCKtHW6uIWtuVe:1521472262.908181"
        )
    );
    assert_eq!(delivered.smtp_response.as_deref(), Some("250 OK"));
    assert_eq!(delivered.mx_host.as_deref(), Some("smtp-in.example.org"));
    assert_eq!(delivered.tls, Some(true));
    assert_eq!(delivered.tags, ["my_tag_1", "my_tag_2"]);
    assert_eq!(
        delivered.message_id.as_deref(),
        Some("20130503182626.18666.16540@mg.example.org")
    );
    assert_eq!(delivered.sending_domain.as_deref(), Some("mg.example.org"));

    let suppressed = mailgun("failed-permanent.json");
    assert_eq!(suppressed.reason.as_deref(), Some("suppressed"));
    assert_eq!(suppressed.detail.as_deref(), Some("suppress_bounce"));

    let bounced = mailgun("failed-permanent-bounce.json");
    assert_eq!(bounced.class, Some(BounceClass::Hard));
    assert_eq!(bounced.status.as_deref(), Some("5.1.1"));
    assert_eq!(bounced.sub_type.as_deref(), Some("bounce"));

    let deferred = mailgun("failed-temporary.json");
    assert_eq!(deferred.smtp_code, Some(452));
    assert_eq!(deferred.enhanced_status.as_deref(), Some("4.2.2"));
    assert_eq!(deferred.attempt, Some(1));
    assert_eq!(deferred.mx_host.as_deref(), Some("mx.example.org"));
    assert_eq!(
        deferred.next_retry_at.unwrap() - deferred.occurred_at,
        time::Duration::seconds(600)
    );

    assert_eq!(mailgun("opened.json").machine, Some(false));
    assert_eq!(mailgun("opened-apple-mpp.json").machine, Some(true));
    let clicked = mailgun("clicked.json");
    assert_eq!(
        clicked.url.as_ref().unwrap().expose(),
        "https://example.org/pricing"
    );
    assert_eq!(clicked.bot, Some(false));
    assert_eq!(mailgun("unsubscribed.json").scope.as_deref(), Some("all"));
    let sent = mailgun("accepted.json");
    assert_eq!(sent.size, Some(341));
    assert_eq!(
        sent.subject.as_ref().unwrap().expose(),
        "Sample webhook payload"
    );

    // The documented samples reuse one id for several events: the event
    // name in the id source keeps them apart.
    let ids: HashSet<Uuid> = ["opened.json", "clicked.json", "unsubscribed.json"]
        .iter()
        .map(|f| mailgun(f).id)
        .collect();
    assert_eq!(ids.len(), 3);
}

#[test]
pub(super) fn mailgun_signatures_are_refused_when_token_key_field_or_time_is_wrong() {
    let good = mailgun_body("delivered.json", NOW - 10);
    let send = |body: &[u8], secrets: &ProviderSecrets| {
        parse(Provider::Mailgun, &HeaderMap::new(), body, secrets, NOW)
    };
    assert!(send(&good, &mailgun_secrets()).is_ok());

    let flipped = flip_byte(&good, "token-");
    assert_eq!(
        send(&flipped, &mailgun_secrets()).unwrap_err(),
        WebhookError::BadSignature {
            what: "field signature.signature"
        }
    );
    let wrong_key = ProviderSecrets {
        mailgun_signing_key: Some("another-key".to_owned()),
        ..ProviderSecrets::default()
    };
    assert!(matches!(
        send(&good, &wrong_key),
        Err(WebhookError::BadSignature { .. })
    ));

    let mut v: Value = serde_json::from_slice(&good).unwrap();
    v.as_object_mut().unwrap().remove("signature");
    assert_eq!(
        send(&serde_json::to_vec(&v).unwrap(), &mailgun_secrets()).unwrap_err(),
        WebhookError::MissingSignature {
            what: "field signature"
        }
    );

    for stale in [NOW - 301, NOW + 301] {
        let err = send(&mailgun_body("delivered.json", stale), &mailgun_secrets()).unwrap_err();
        assert_eq!(
            err,
            WebhookError::StaleTimestamp {
                field: "signature.timestamp",
                max_age_secs: 300
            }
        );
    }
    let lenient = ProviderSecrets {
        max_signature_age_secs: 3600,
        ..mailgun_secrets()
    };
    assert!(send(&mailgun_body("delivered.json", NOW - 301), &lenient).is_ok());
}
