//! Postal: documented payloads, its RSA signatures (SHA-256 and legacy SHA-1) and the key forms it shows.

use super::*;

pub(super) fn postal_secrets() -> ProviderSecrets {
    ProviderSecrets {
        postal_public_key: Some(testdata_text("keys/postal-2048.pub.b64")),
        ..ProviderSecrets::default()
    }
}

pub(super) fn postal_headers(body: &[u8]) -> HeaderMap {
    header_map(&[(
        "X-Postal-Signature-256",
        rsa_sign("keys/postal-2048.pk8", body),
    )])
}

pub(super) fn postal(file: &str) -> (Vec<CanonicalEvent>, Vec<Skipped>) {
    let body = testdata(&format!("postal/{file}"));
    let out = parse(
        Provider::Postal,
        &postal_headers(&body),
        &body,
        &postal_secrets(),
        NOW,
    )
    .unwrap();
    let (events, skipped, auth) = events_of(out);
    assert_eq!(auth, Authentication::Verified);
    assert_canonical(Provider::Postal, &events);
    (events, skipped)
}

#[test]
pub(super) fn postal_documented_payloads_map_to_canonical_events() {
    let cases = [
        (
            "message-sent.json",
            "delivered",
            "ann@example.org",
            "820b47a4-4dfd-42e4-ae6a-1e5bed5a33fd",
        ),
        (
            "message-delayed.json",
            "deferred",
            "bea@example.org",
            "2c7e3b1a-9f0d-4f7e-8c51-0b6a3d2e9f10",
        ),
        (
            "message-delivery-failed.json",
            "bounced",
            "cid@example.org",
            "7d1f4c66-3a52-4b8e-9a07-5e2c81f0b3d4",
        ),
        (
            "message-bounced.json",
            "bounced",
            "ann@example.org",
            "a3f9e2d0-6b1c-4d8e-b7a2-19c4f05e6d37",
        ),
        (
            "message-link-clicked.json",
            "clicked",
            "ann@example.org",
            "e5b0c7a8-2d4f-4a19-8e6b-c3d2f1a0b9e8",
        ),
        (
            "message-loaded.json",
            "opened",
            "ann@example.org",
            "0f6a2b3c-4d5e-4f70-8192-a3b4c5d6e7f8",
        ),
    ];
    for (file, ty, to, uuid) in cases {
        let (events, skipped) = postal(file);
        assert!(skipped.is_empty());
        let [ev] = events.as_slice() else {
            panic!("{file}: one event")
        };
        assert_eq!(ev.event_type, ty, "{file}");
        assert_eq!(recipient(ev), to, "{file}");
        assert_eq!(ev.provider_event_id.as_deref(), Some(uuid));
        assert_eq!(ev.id, derive_event_id(Provider::Postal, uuid));
        assert_eq!(ev.sending_domain.as_deref(), Some("mail.example.org"));
        assert!(ev.message_id.as_deref().unwrap().ends_with("@app34.mail"));
    }

    let (sent, _) = postal("message-sent.json");
    assert_eq!(sent[0].mx_host.as_deref(), Some("aspmx.l.google.com"));
    assert_eq!(sent[0].tls, Some(true));
    assert_eq!(
        sent[0].smtp_response.as_deref(),
        Some("250 2.0.0 OK 1477944899 ly2si31746747wjb.95 - gsmtp")
    );
    assert_eq!(sent[0].tags, ["welcome"]);
    assert_eq!(sent[0].occurred_at.unix_timestamp(), 1_477_945_177);

    let (delayed, _) = postal("message-delayed.json");
    assert_eq!(delayed[0].smtp_code, Some(451));
    assert_eq!(delayed[0].enhanced_status.as_deref(), Some("4.7.1"));
    assert_eq!(delayed[0].mx_host.as_deref(), Some("mx.example.org"));

    let (failed, _) = postal("message-delivery-failed.json");
    assert_eq!(failed[0].class, Some(BounceClass::Hard));
    assert_eq!(failed[0].status.as_deref(), Some("5.1.1"));
    // The diagnostic quotes the address: it goes to the sealed field only.
    assert!(
        failed[0]
            .diagnostic
            .as_ref()
            .unwrap()
            .expose()
            .contains("cid@")
    );
    assert!(failed[0].tags.is_empty(), "tag null");

    let (bounced, _) = postal("message-bounced.json");
    assert_eq!(bounced[0].class, Some(BounceClass::Undetermined));
    assert_eq!(bounced[0].occurred_at.unix_timestamp(), 1_477_945_179);

    let (clicked, _) = postal("message-link-clicked.json");
    assert_eq!(
        clicked[0].url.as_ref().unwrap().expose(),
        "https://atech.media"
    );
    assert_eq!(clicked[0].ip.as_ref().unwrap().expose(), "185.22.208.2");
    assert_eq!(clicked[0].bot, Some(false));

    let (opened, _) = postal("message-loaded.json");
    assert_eq!(opened[0].machine, Some(false));
    assert!(opened[0].user_agent.is_some());
}

#[test]
pub(super) fn postal_events_without_a_canonical_type_are_skipped() {
    let (events, skipped) = postal("domain-dns-error.json");
    assert!(events.is_empty());
    assert_eq!(skipped[0].event_type, "DomainDNSError");
    assert_eq!(skipped[0].field, "event");
}

#[test]
pub(super) fn postal_default_1024_bit_key_verifies_sha256_and_legacy_sha1_signatures() {
    let body = testdata("postal/message-sent.json");
    let secrets = ProviderSecrets {
        postal_public_key: Some(testdata_text("keys/postal-1024.pub.pem")),
        ..ProviderSecrets::default()
    };
    let sig256 = testdata_text("postal/message-sent.sig256.b64");
    let sig1 = testdata_text("postal/message-sent.sig1.b64");
    for headers in [
        header_map(&[("X-Postal-Signature-256", sig256.clone())]),
        header_map(&[("X-Postal-Signature", sig1.clone())]),
        header_map(&[
            ("X-Postal-Signature-256", sig256.clone()),
            ("X-Postal-Signature", sig1.clone()),
        ]),
    ] {
        let (events, _, auth) =
            events_of(parse(Provider::Postal, &headers, &body, &secrets, NOW).unwrap());
        assert_eq!(auth, Authentication::Verified);
        assert_eq!(events.len(), 1);
    }
    // A bad SHA-256 signature is not rescued by a good SHA-1 one.
    let mut bad = STANDARD.decode(sig256.trim()).unwrap();
    bad[3] ^= 1;
    let headers = header_map(&[
        ("X-Postal-Signature-256", STANDARD.encode(bad)),
        ("X-Postal-Signature", sig1),
    ]);
    assert!(matches!(
        parse(Provider::Postal, &headers, &body, &secrets, NOW),
        Err(WebhookError::BadSignature { .. })
    ));
}

#[test]
pub(super) fn postal_keys_are_accepted_in_the_forms_postal_shows() {
    let body = testdata("postal/message-sent.json");
    let headers = header_map(&[(
        "X-Postal-Signature-256",
        testdata_text("postal/message-sent.sig256.b64"),
    )]);
    let pem = testdata_text("keys/postal-1024.pub.pem");
    let b64: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    for key in [
        pem.clone(),
        b64.clone(),
        format!("v=DKIM1; t=s; h=sha256; p={b64};"),
    ] {
        let secrets = ProviderSecrets {
            postal_public_key: Some(key),
            ..ProviderSecrets::default()
        };
        assert!(parse(Provider::Postal, &headers, &body, &secrets, NOW).is_ok());
    }
    let secrets = ProviderSecrets {
        postal_public_key: Some("not a key".to_owned()),
        ..ProviderSecrets::default()
    };
    assert!(matches!(
        parse(Provider::Postal, &headers, &body, &secrets, NOW),
        Err(WebhookError::BadSecret { .. })
    ));
}

#[test]
pub(super) fn postal_signatures_are_refused_when_body_key_or_header_is_wrong() {
    let body = testdata("postal/message-sent.json");
    let headers = postal_headers(&body);
    let secrets = postal_secrets();
    assert!(parse(Provider::Postal, &headers, &body, &secrets, NOW).is_ok());

    let flipped = flip_byte(&body, "ann@");
    assert_eq!(
        parse(Provider::Postal, &headers, &flipped, &secrets, NOW).unwrap_err(),
        WebhookError::BadSignature {
            what: "header X-Postal-Signature-256"
        }
    );
    let wrong_key = ProviderSecrets {
        postal_public_key: Some(testdata_text("keys/postal-1024.pub.pem")),
        ..ProviderSecrets::default()
    };
    assert!(matches!(
        parse(Provider::Postal, &headers, &body, &wrong_key, NOW),
        Err(WebhookError::BadSignature { .. })
    ));
    assert_eq!(
        parse(Provider::Postal, &HeaderMap::new(), &body, &secrets, NOW).unwrap_err(),
        WebhookError::MissingSignature {
            what: "header X-Postal-Signature-256"
        }
    );
    let garbage = header_map(&[("X-Postal-Signature-256", "%%%".to_owned())]);
    assert!(matches!(
        parse(Provider::Postal, &garbage, &body, &secrets, NOW),
        Err(WebhookError::BadSignature { .. })
    ));
}

#[test]
pub(super) fn unconfigured_secrets_refuse_signing_providers_unless_unsigned_is_allowed() {
    let cases: [(Provider, Vec<u8>); 4] = [
        (Provider::Postal, testdata("postal/message-sent.json")),
        (Provider::Mailgun, testdata("mailgun/delivered.json")),
        (Provider::Sendgrid, testdata("sendgrid/events.json")),
        (Provider::Ses, testdata("ses/sns-notification-v1.json")),
    ];
    for (provider, body) in cases {
        let err = parse(
            provider,
            &HeaderMap::new(),
            &body,
            &ProviderSecrets::default(),
            NOW,
        )
        .unwrap_err();
        assert_eq!(err, WebhookError::NotConfigured { provider });
        assert_eq!(err.kind(), WebhookErrorKind::Configuration);
        let (events, _, auth) =
            events_of(parse(provider, &HeaderMap::new(), &body, &unsigned(), NOW).unwrap());
        assert_eq!(auth, Authentication::Unverified);
        assert!(!events.is_empty());
    }
}
