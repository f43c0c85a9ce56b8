//! SendGrid: the documented batch and its ECDSA signatures.

use super::*;

pub(super) fn sendgrid_headers(key: &EcdsaKeyPair, timestamp: i64, body: &[u8]) -> HeaderMap {
    let ts = timestamp.to_string();
    let sig = signing::sendgrid_signature(key, &ts, body);
    header_map(&[
        ("X-Twilio-Email-Event-Webhook-Signature", sig),
        ("X-Twilio-Email-Event-Webhook-Timestamp", ts),
    ])
}

pub(super) fn sendgrid_secrets(public: &str) -> ProviderSecrets {
    ProviderSecrets {
        sendgrid_public_key: Some(public.to_owned()),
        ..ProviderSecrets::default()
    }
}

#[test]
pub(super) fn sendgrid_documented_batch_maps_to_canonical_events() {
    let (key, public) = signing::sendgrid_key();
    let body = testdata("sendgrid/events.json");
    let out = parse(
        Provider::Sendgrid,
        &sendgrid_headers(&key, NOW, &body),
        &body,
        &sendgrid_secrets(&public),
        NOW,
    )
    .unwrap();
    let (events, skipped, auth) = events_of(out);
    assert_eq!(auth, Authentication::Verified);
    assert_canonical(Provider::Sendgrid, &events);
    let types: Vec<&str> = events.iter().map(|e| e.event_type.as_str()).collect();
    assert_eq!(
        types,
        [
            "sent",
            "deferred",
            "delivered",
            "bounced",
            "bounced",
            "rejected",
            "opened",
            "opened",
            "clicked",
            "complained",
            "unsubscribed",
            "unsubscribed",
            "resubscribed",
        ]
    );
    assert_eq!(
        skipped,
        [Skipped::unmapped("[13]", "account_status_change")]
    );
    for ev in &events {
        assert_eq!(recipient(ev), "example@example.org");
        assert_eq!(ev.message_id.as_deref(), Some("14c5d75ce93.dfd.64b469"));
        assert_eq!(
            ev.id,
            derive_event_id(Provider::Sendgrid, ev.provider_event_id.as_deref().unwrap())
        );
    }
    assert_eq!(
        events[0].provider_event_id.as_deref(),
        Some("rbtnWrG1DVDGGGFHFyun0A==")
    );
    assert_eq!(events[0].tags, ["cat facts"]);
    assert_eq!(events[1].attempt, Some(5));
    assert_eq!(events[1].smtp_code, Some(400));
    assert_eq!(events[2].tls, Some(true));
    assert_eq!(events[2].smtp_response.as_deref(), Some("250 OK"));
    assert_eq!(events[3].class, Some(BounceClass::Hard));
    assert_eq!(events[3].sub_type.as_deref(), Some("invalid_address"));
    assert_eq!(events[3].status.as_deref(), Some("5.0.0"));
    assert_eq!(events[4].class, Some(BounceClass::Block));
    assert_eq!(events[5].reason.as_deref(), Some("suppressed"));
    assert_eq!(events[5].detail.as_deref(), Some("bounced_address"));
    assert_eq!(events[6].machine, Some(false));
    assert_eq!(events[7].machine, Some(true), "sg_machine_open");
    assert_eq!(
        events[8].url.as_ref().unwrap().expose(),
        "http://www.sendgrid.com/"
    );
    assert_eq!(events[10].scope.as_deref(), Some("all"));
    assert_eq!(events[11].scope.as_deref(), Some("group-10"));
    assert_eq!(events[11].tags, ["cat facts", "newsletter"]);
    assert_eq!(events[12].scope.as_deref(), Some("group-10"));
    assert_eq!(events[0].occurred_at.unix_timestamp(), 1_513_299_569);
}

#[test]
pub(super) fn sendgrid_signatures_are_refused_when_body_key_header_or_time_is_wrong() {
    let (key, public) = signing::sendgrid_key();
    let body = testdata("sendgrid/events.json");
    let headers = sendgrid_headers(&key, NOW, &body);
    let secrets = sendgrid_secrets(&public);
    let send =
        |h: &HeaderMap, b: &[u8], s: &ProviderSecrets| parse(Provider::Sendgrid, h, b, s, NOW);
    assert!(send(&headers, &body, &secrets).is_ok());

    let flipped = flip_byte(&body, "example@");
    assert_eq!(
        send(&headers, &flipped, &secrets).unwrap_err(),
        WebhookError::BadSignature {
            what: "header X-Twilio-Email-Event-Webhook-Signature"
        }
    );
    let (_, other_public) = signing::sendgrid_key();
    assert!(matches!(
        send(&headers, &body, &sendgrid_secrets(&other_public)),
        Err(WebhookError::BadSignature { .. })
    ));
    for missing in [
        "X-Twilio-Email-Event-Webhook-Signature",
        "X-Twilio-Email-Event-Webhook-Timestamp",
    ] {
        let mut h = headers.clone();
        h.remove(missing);
        assert!(matches!(
            send(&h, &body, &secrets),
            Err(WebhookError::MissingSignature { .. })
        ));
    }
    // The timestamp is signed: changing it breaks the signature...
    let mut h = headers.clone();
    h.insert(
        "x-twilio-email-event-webhook-timestamp",
        HeaderValue::from(NOW + 1),
    );
    assert!(matches!(
        send(&h, &body, &secrets),
        Err(WebhookError::BadSignature { .. })
    ));
    // ...and a validly signed old one is stale.
    let stale = sendgrid_headers(&key, NOW - 301, &body);
    assert!(matches!(
        send(&stale, &body, &secrets),
        Err(WebhookError::StaleTimestamp { .. })
    ));
    let not_p256 = sendgrid_secrets(&testdata_text("keys/postal-2048.pub.b64"));
    assert!(matches!(
        send(&headers, &body, &not_p256),
        Err(WebhookError::BadSecret { .. })
    ));
}
