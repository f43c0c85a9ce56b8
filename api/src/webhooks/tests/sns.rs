//! SNS's envelope: signature versions, certificates, subscription confirmations.

use super::ses::*;
use super::*;

#[test]
pub(super) fn sns_signature_version_1_verifies_against_the_configured_certificate() {
    let body = testdata("ses/sns-notification-v1.json");
    // The sample was signed once, with its `Timestamp` of 2016 (ring cannot
    // make SHA-1 signatures): an age that reaches back that far lets it
    // through the freshness check, which other tests cover.
    let sns_secrets = || ProviderSecrets {
        max_signature_age_secs: 400_000_000,
        ..sns_secrets()
    };
    let (events, _, auth) =
        events_of(parse(Provider::Ses, &HeaderMap::new(), &body, &sns_secrets(), NOW).unwrap());
    assert_eq!(auth, Authentication::Verified);
    assert_eq!(events[0].event_type, "delivered");
    assert_eq!(
        events[0].provider_event_id.as_deref(),
        Some("22b80b92-fdea-4c2c-8f9d-bdfb0c7bf324:0")
    );

    let flipped = flip_byte(&body, "recipient@");
    assert_eq!(
        parse(
            Provider::Ses,
            &HeaderMap::new(),
            &flipped,
            &sns_secrets(),
            NOW
        )
        .unwrap_err(),
        WebhookError::BadSignature {
            what: "field Signature"
        }
    );
}

#[test]
pub(super) fn sns_messages_are_refused_on_any_signature_problem() {
    let good = sns_notification(&testdata_text("ses/delivery.json"), "m-1");
    let send = |v: &Value, secrets: &ProviderSecrets, now| {
        parse(
            Provider::Ses,
            &HeaderMap::new(),
            &serde_json::to_vec(v).unwrap(),
            secrets,
            now,
        )
    };
    assert!(send(&good, &sns_secrets(), NOW).is_ok());

    let mut tampered = good.clone();
    tampered["Message"] = json!(good["Message"].as_str().unwrap().replace("250", "251"));
    assert!(matches!(
        send(&tampered, &sns_secrets(), NOW),
        Err(WebhookError::BadSignature { .. })
    ));

    let other = ProviderSecrets {
        sns_certificates: vec![testdata_text("keys/other-cert.pem")],
        ..sns_secrets()
    };
    assert!(matches!(
        send(&good, &other, NOW),
        Err(WebhookError::BadSignature { .. })
    ));

    let mut unsigned_message = good.clone();
    unsigned_message
        .as_object_mut()
        .unwrap()
        .remove("Signature");
    assert_eq!(
        send(&unsigned_message, &sns_secrets(), NOW).unwrap_err(),
        WebhookError::MissingSignature {
            what: "field Signature"
        }
    );

    for url in [
        "http://sns.eu-west-1.amazonaws.com/SimpleNotificationService-0.pem",
        "https://sns.eu-west-1.amazonaws.com.attacker.example/cert.pem",
        "https://attacker.example/SimpleNotificationService-0.pem",
    ] {
        let mut m = good.clone();
        m["SigningCertURL"] = json!(url);
        let err = send(&m, &sns_secrets(), NOW).unwrap_err();
        assert_eq!(err, WebhookError::UntrustedCertUrl);
        assert_eq!(err.kind(), WebhookErrorKind::Unauthenticated);
    }

    let mut version = good.clone();
    version["SignatureVersion"] = json!("3");
    assert_eq!(
        send(&version, &sns_secrets(), NOW).unwrap_err().field(),
        Some("SignatureVersion")
    );

    let topics = ProviderSecrets {
        sns_topic_arns: vec!["arn:aws:sns:eu-west-1:123456789012:other".to_owned()],
        ..sns_secrets()
    };
    assert_eq!(
        send(&good, &topics, NOW).unwrap_err(),
        WebhookError::TopicNotAllowed
    );
    let allowed = ProviderSecrets {
        sns_topic_arns: vec![TOPIC.to_owned()],
        ..sns_secrets()
    };
    assert!(send(&good, &allowed, NOW).is_ok());

    // After the certificate's notAfter (2126) nothing verifies.
    assert!(matches!(
        send(&good, &sns_secrets(), 5_000_000_000),
        Err(WebhookError::BadSecret { .. })
    ));
}

#[test]
pub(super) fn sns_subscription_confirmations_are_reported_not_followed() {
    let mut confirmation: Value =
        serde_json::from_slice(&testdata("ses/sns-subscription-confirmation.json")).unwrap();
    confirmation["Timestamp"] = json!(SNS_TIMESTAMP);
    sns_sign(&mut confirmation);
    let body = serde_json::to_vec(&confirmation).unwrap();
    let out = parse(Provider::Ses, &HeaderMap::new(), &body, &sns_secrets(), NOW).unwrap();
    let WebhookOutcome::SubscriptionConfirmation(c) = out else {
        panic!("a confirmation")
    };
    assert_eq!(c.kind, SnsConfirmationKind::Subscribe);
    assert_eq!(c.topic_arn, "arn:aws:sns:us-west-2:123456789012:MyTopic");
    assert_eq!(c.message_id, "165545c9-2a5c-472c-8df2-7ff2be2b3b1b");
    assert!(
        c.subscribe_url
            .as_deref()
            .unwrap()
            .starts_with("https://sns.us-west-2.amazonaws.com/?Action=ConfirmSubscription")
    );
    assert_eq!(c.authentication, Authentication::Verified);

    // The documented example's own signature is not ours: refused.
    let original = testdata("ses/sns-subscription-confirmation.json");
    assert!(matches!(
        parse(
            Provider::Ses,
            &HeaderMap::new(),
            &original,
            &sns_secrets(),
            NOW
        ),
        Err(WebhookError::BadSignature { .. })
    ));
    // Without certificates it is reported only when unsigned is allowed.
    let out = parse(
        Provider::Ses,
        &HeaderMap::new(),
        &original,
        &unsigned(),
        NOW,
    )
    .unwrap();
    let WebhookOutcome::SubscriptionConfirmation(c) = out else {
        panic!("a confirmation")
    };
    assert_eq!(c.authentication, Authentication::Unverified);

    confirmation["Type"] = json!("UnsubscribeConfirmation");
    sns_sign(&mut confirmation);
    let body = serde_json::to_vec(&confirmation).unwrap();
    let out = parse(Provider::Ses, &HeaderMap::new(), &body, &sns_secrets(), NOW).unwrap();
    assert!(matches!(
        out,
        WebhookOutcome::SubscriptionConfirmation(SnsConfirmation {
            kind: SnsConfirmationKind::Unsubscribe,
            ..
        })
    ));
}

#[test]
pub(super) fn ses_records_without_the_sns_envelope_need_unsigned_to_be_allowed() {
    let body = testdata("ses/bounce.json");
    assert!(matches!(
        parse(Provider::Ses, &HeaderMap::new(), &body, &sns_secrets(), NOW),
        Err(WebhookError::MissingSignature { .. })
    ));
    let (events, _, auth) =
        events_of(parse(Provider::Ses, &HeaderMap::new(), &body, &unsigned(), NOW).unwrap());
    assert_eq!(auth, Authentication::Unverified);
    assert!(
        events[0]
            .provider_event_id
            .as_deref()
            .unwrap()
            .starts_with("raw-")
    );
    let (again, _, _) =
        events_of(parse(Provider::Ses, &HeaderMap::new(), &body, &unsigned(), NOW).unwrap());
    assert_eq!(events[0].id, again[0].id);
}

#[test]
pub(super) fn ses_open_of_a_message_with_several_recipients_is_skipped() {
    let mut record: Value = serde_json::from_slice(&testdata("ses/open.json")).unwrap();
    record["mail"]["destination"] = json!(["a@example.org", "b@example.org"]);
    let (events, skipped) = {
        let body = serde_json::to_vec(&sns_notification(&record.to_string(), "o-2")).unwrap();
        let (e, s, _) =
            events_of(parse(Provider::Ses, &HeaderMap::new(), &body, &sns_secrets(), NOW).unwrap());
        (e, s)
    };
    assert!(events.is_empty());
    assert_eq!(skipped.len(), 1);
}
