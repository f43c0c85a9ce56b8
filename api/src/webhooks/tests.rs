//! Tests of the webhook adapters, on the providers' documented sample
//! payloads in `api/testdata/webhooks/` and with test keys from
//! `api/testdata/webhooks/keys/` or generated here.

use std::collections::HashSet;
use std::path::PathBuf;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use http::{HeaderMap, HeaderName, HeaderValue};
use mailledger_core::email::{BounceClass, CanonicalEvent};
use proptest::prelude::*;
use ring::signature::EcdsaKeyPair;
use serde_json::{Value, json};
use uuid::Uuid;

use super::*;

/// "Now" for the tests: 2027-01-15, inside the test certificate's validity.
const NOW: i64 = 1_800_000_000;
/// An address that must never appear in an error.
const CANARY: &str = "zed@secret.example";

fn testdata(path: &str) -> Vec<u8> {
    let full = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("testdata/webhooks")
        .join(path);
    std::fs::read(&full).unwrap_or_else(|e| panic!("{}: {e}", full.display()))
}

fn testdata_text(path: &str) -> String {
    String::from_utf8(testdata(path)).unwrap()
}

fn unsigned() -> ProviderSecrets {
    ProviderSecrets {
        require_signatures: false,
        ..ProviderSecrets::default()
    }
}

fn events_of(out: WebhookOutcome) -> (Vec<CanonicalEvent>, Vec<Skipped>, Authentication) {
    match out {
        WebhookOutcome::Events {
            events,
            skipped,
            authentication,
            ..
        } => (events, skipped, authentication),
        WebhookOutcome::SubscriptionConfirmation(c) => panic!("not events: {c:?}"),
    }
}

/// Asserts what every mapped event must satisfy.
fn assert_canonical(provider: Provider, events: &[CanonicalEvent]) {
    for ev in events {
        ev.clone()
            .validate()
            .unwrap_or_else(|e| panic!("{} event refused: {e}", ev.event_type));
        assert_eq!(ev.provider.as_deref(), Some(provider.as_str()));
        assert!(ev.provider_event_id.is_some());
        // SES keeps its record only when it names one recipient (tested on
        // its own in the SES tests).
        if provider != Provider::Ses {
            assert!(ev.raw.is_some(), "raw payload kept");
        }
        for clear in [
            &ev.smtp_response,
            &ev.detail,
            &ev.sub_type,
            &ev.status,
            &ev.feedback_type,
            &ev.reason,
            &ev.scope,
            &ev.campaign,
            &ev.sending_domain,
            &ev.mx_host,
        ] {
            assert!(
                !clear.as_deref().unwrap_or_default().contains('@'),
                "clear field with an address in {}",
                ev.event_type
            );
        }
    }
}

fn recipient(ev: &CanonicalEvent) -> &str {
    ev.recipient
        .as_ref()
        .map(|r| r.expose())
        .unwrap_or_default()
}

fn header_map(pairs: &[(&'static str, String)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (name, value) in pairs {
        h.insert(
            HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_str(value).unwrap(),
        );
    }
    h
}

fn flip_byte(body: &[u8], needle: &str) -> Vec<u8> {
    let text = String::from_utf8(body.to_vec()).unwrap();
    let at = text.find(needle).unwrap() + 1;
    let mut out = body.to_vec();
    out[at] ^= 0x01;
    out
}

fn rsa_sign(key_file: &str, message: &[u8]) -> String {
    signing::rsa_sha256(&testdata(key_file), message)
}

// ---------------------------------------------------------------- Postal

fn postal_secrets() -> ProviderSecrets {
    ProviderSecrets {
        postal_public_key: Some(testdata_text("keys/postal-2048.pub.b64")),
        ..ProviderSecrets::default()
    }
}

fn postal_headers(body: &[u8]) -> HeaderMap {
    header_map(&[(
        "X-Postal-Signature-256",
        rsa_sign("keys/postal-2048.pk8", body),
    )])
}

fn postal(file: &str) -> (Vec<CanonicalEvent>, Vec<Skipped>) {
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
fn postal_documented_payloads_map_to_canonical_events() {
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
fn postal_events_without_a_canonical_type_are_skipped() {
    let (events, skipped) = postal("domain-dns-error.json");
    assert!(events.is_empty());
    assert_eq!(skipped[0].event_type, "DomainDNSError");
    assert_eq!(skipped[0].field, "event");
}

#[test]
fn postal_default_1024_bit_key_verifies_sha256_and_legacy_sha1_signatures() {
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
fn postal_keys_are_accepted_in_the_forms_postal_shows() {
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
fn postal_signatures_are_refused_when_body_key_or_header_is_wrong() {
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
fn unconfigured_secrets_refuse_signing_providers_unless_unsigned_is_allowed() {
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

// ------------------------------------------------------------------- SES

const TOPIC: &str = "arn:aws:sns:eu-west-1:123456789012:ses-events";
const CERT_URL: &str =
    "https://sns.eu-west-1.amazonaws.com/SimpleNotificationService-0000000000000000000000.pem";

/// The topic of the SNS documentation's subscription confirmation.
const CONFIRMATION_TOPIC: &str = "arn:aws:sns:us-west-2:123456789012:MyTopic";
/// An SNS `Timestamp` a minute before [`NOW`] (2027-01-15T08:00:00Z).
const SNS_TIMESTAMP: &str = "2027-01-15T07:59:00.000Z";

fn sns_secrets() -> ProviderSecrets {
    ProviderSecrets {
        sns_certificates: vec![testdata_text("keys/sns-cert.pem")],
        sns_topic_arns: vec![TOPIC.to_owned(), CONFIRMATION_TOPIC.to_owned()],
        ..ProviderSecrets::default()
    }
}

/// Signs an SNS message (SignatureVersion 2) with the test key.
fn sns_sign(message: &mut Value) {
    let confirmation = message["Type"] != "Notification";
    let names: &[&str] = if confirmation {
        &[
            "Message",
            "MessageId",
            "SubscribeURL",
            "Timestamp",
            "Token",
            "TopicArn",
            "Type",
        ]
    } else {
        &[
            "Message",
            "MessageId",
            "Subject",
            "Timestamp",
            "TopicArn",
            "Type",
        ]
    };
    let mut canonical = String::new();
    for name in names {
        if let Some(v) = message.get(*name).and_then(Value::as_str) {
            canonical.push_str(&format!("{name}\n{v}\n"));
        }
    }
    message["SignatureVersion"] = json!("2");
    message["Signature"] = json!(rsa_sign("keys/sns-2048.pk8", canonical.as_bytes()));
}

fn sns_notification(ses_record: &str, message_id: &str) -> Value {
    let mut n = json!({
        "Type": "Notification",
        "MessageId": message_id,
        "TopicArn": TOPIC,
        "Message": ses_record,
        "Timestamp": SNS_TIMESTAMP,
        "SigningCertURL": CERT_URL,
        "UnsubscribeURL": "https://sns.eu-west-1.amazonaws.com/?Action=Unsubscribe&SubscriptionArn=x",
    });
    sns_sign(&mut n);
    n
}

fn ses(file: &str, message_id: &str) -> (Vec<CanonicalEvent>, Vec<Skipped>) {
    let body = serde_json::to_vec(&sns_notification(
        &testdata_text(&format!("ses/{file}")),
        message_id,
    ))
    .unwrap();
    let out = parse(Provider::Ses, &HeaderMap::new(), &body, &sns_secrets(), NOW).unwrap();
    let (events, skipped, auth) = events_of(out);
    assert_eq!(auth, Authentication::Verified);
    assert_canonical(Provider::Ses, &events);
    (events, skipped)
}

#[test]
fn ses_event_publishing_samples_map_to_canonical_events() {
    let cases = [
        ("send.json", "sent"),
        ("reject.json", "rejected"),
        ("delivery.json", "delivered"),
        ("bounce.json", "bounced"),
        ("complaint.json", "complained"),
        ("delivery-delay.json", "deferred"),
        ("open.json", "opened"),
        ("click.json", "clicked"),
    ];
    for (i, (file, ty)) in cases.iter().enumerate() {
        let message_id = format!("00000000-0000-4000-8000-00000000000{i}");
        let (events, skipped) = ses(file, &message_id);
        assert!(skipped.is_empty(), "{file}");
        let [ev] = events.as_slice() else {
            panic!("{file}: one event")
        };
        assert_eq!(ev.event_type, *ty, "{file}");
        let expected_to = if *file == "reject.json" {
            "sender@example.org" // the documented record's destination
        } else {
            "recipient@example.org"
        };
        assert_eq!(recipient(ev), expected_to, "{file}");
        let source = format!("{message_id}:0");
        assert_eq!(ev.provider_event_id.as_deref(), Some(source.as_str()));
        assert_eq!(ev.id, derive_event_id(Provider::Ses, &source));
        assert_eq!(
            ev.message_id.as_deref(),
            Some("EXAMPLE7c191be45-e9aedb9a-02f9-4d12-a87d-dd0099a07f8a-000000")
        );
        assert_eq!(ev.sending_domain.as_deref(), Some("example.org"), "{file}");
    }

    let (bounce, _) = ses("bounce.json", "b");
    assert_eq!(bounce[0].class, Some(BounceClass::Hard));
    assert_eq!(bounce[0].sub_type.as_deref(), Some("general"));
    assert_eq!(bounce[0].status.as_deref(), Some("5.1.1"));
    assert_eq!(
        bounce[0].diagnostic.as_ref().unwrap().expose(),
        "smtp; 550 5.1.1 user unknown"
    );
    assert_eq!(
        bounce[0].occurred_at,
        time::OffsetDateTime::parse(
            "2017-08-05T00:41:02.669Z",
            &time::format_description::well_known::Rfc3339
        )
        .unwrap()
    );

    let (complaint, _) = ses("complaint.json", "c");
    assert_eq!(complaint[0].feedback_type.as_deref(), Some("abuse"));

    let (delivery, _) = ses("delivery.json", "d");
    assert_eq!(
        delivery[0].smtp_response.as_deref(),
        Some("250 2.6.0 Message received")
    );
    assert_eq!(
        delivery[0].tags,
        [
            "myCustomTag1=myCustomTagValue1",
            "myCustomTag2=myCustomTagValue2"
        ]
    );

    let (send, _) = ses("send.json", "s");
    assert_eq!(
        send[0].subject.as_ref().unwrap().expose(),
        "Message sent from Amazon SES"
    );

    let (reject, _) = ses("reject.json", "r");
    assert_eq!(reject[0].reason.as_deref(), Some("policy"));
    assert_eq!(reject[0].detail.as_deref(), Some("Bad content"));

    let (delay, _) = ses("delivery-delay.json", "dd");
    assert_eq!(delay[0].smtp_code, Some(421));
    assert_eq!(delay[0].enhanced_status.as_deref(), Some("4.4.1"));

    let (open, _) = ses("open.json", "o");
    assert_eq!(open[0].ip.as_ref().unwrap().expose(), "192.0.2.1");
    assert_eq!(open[0].machine, Some(false));

    let (click, _) = ses("click.json", "k");
    assert_eq!(
        click[0].url.as_ref().unwrap().expose(),
        "http://docs.aws.amazon.com/ses/latest/DeveloperGuide/send-email-smtp.html"
    );

    let (none, skipped) = ses("rendering-failure.json", "f");
    assert!(none.is_empty());
    assert_eq!(skipped[0].event_type, "Rendering Failure");
    assert_eq!(skipped[0].field, "Message.eventType");
}

#[test]
fn ses_notifications_give_one_event_per_recipient_with_distinct_ids() {
    let (events, _) = ses("notification-bounce.json", "n-1");
    assert_eq!(events.len(), 2);
    assert_eq!(recipient(&events[0]), "jane@example.org");
    assert_eq!(recipient(&events[1]), "richard@example.org");
    assert_eq!(events[0].provider_event_id.as_deref(), Some("n-1:0"));
    assert_eq!(events[1].provider_event_id.as_deref(), Some("n-1:1"));
    assert_ne!(events[0].id, events[1].id);
    assert_eq!(events[0].status.as_deref(), Some("5.1.1"));
    assert_eq!(events[1].status, None);
    assert!(events.iter().all(|e| e.class == Some(BounceClass::Hard)));

    // The record names three people: each event's copy names its own
    // recipient only (see `each_ses_event_keeps_only_its_own_recipient_in_raw`).
    assert!(events.iter().all(|e| e.raw.is_some()));

    let (delivered, _) = ses("notification-delivery.json", "n-2");
    assert_eq!(delivered[0].event_type, "delivered");
    assert_eq!(recipient(&delivered[0]), "jane@example.org");
}

#[test]
fn a_single_recipient_ses_record_is_kept_without_its_recipient_headers() {
    let (events, _) = ses("delivery.json", "n-3");
    assert_eq!(events.len(), 1);
    let raw = events[0].raw.as_ref().expect("raw kept for one recipient");
    let raw: Value = serde_json::from_str(raw.expose()).unwrap();
    assert_eq!(raw["mail"]["destination"], json!(["recipient@example.org"]));
    assert_eq!(
        raw["delivery"]["recipients"],
        json!(["recipient@example.org"])
    );
    assert!(raw["mail"]["commonHeaders"].get("to").is_none());
    assert!(raw["mail"]["commonHeaders"].get("subject").is_none());
    assert_eq!(
        raw["mail"]["commonHeaders"]["from"],
        json!(["sender@example.org"])
    );
    let names: Vec<&str> = raw["mail"]["headers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["name"].as_str().unwrap())
        .collect();
    assert!(
        !names.contains(&"To") && !names.contains(&"Subject"),
        "{names:?}"
    );
    assert!(names.contains(&"From"), "{names:?}");
}

/// An SES record in an unsigned SNS envelope, parsed under `keep`.
fn ses_unsigned(
    record: &Value,
    message_id: &str,
    keep: RawPolicy,
) -> Result<(Vec<CanonicalEvent>, Vec<Skipped>), WebhookError> {
    let body = serde_json::to_vec(&json!({
        "Type": "Notification", "MessageId": message_id, "TopicArn": TOPIC,
        "Timestamp": "2017-08-05T00:41:03.100Z", "Message": record.to_string()
    }))
    .unwrap();
    let out = parse_with_policy(
        Provider::Ses,
        &HeaderMap::new(),
        &body,
        &unsigned(),
        keep,
        NOW,
    )?;
    let (events, skipped, _) = events_of(out);
    Ok((events, skipped))
}

fn raw_of(ev: &CanonicalEvent) -> String {
    ev.raw
        .as_ref()
        .map(|r| r.expose().to_owned())
        .unwrap_or_default()
}

#[test]
fn each_ses_event_keeps_only_its_own_recipient_in_raw() {
    let record: Value = serde_json::from_slice(&testdata("ses/notification-bounce.json")).unwrap();
    let (events, _) = ses_unsigned(&record, "n-4", RawPolicy::default()).unwrap();
    let [jane, richard] = events.as_slice() else {
        panic!("two bounces")
    };
    for (ev, own, others) in [
        (jane, "jane@", ["richard@", "mary@"]),
        (richard, "richard@", ["jane@", "mary@"]),
    ] {
        let raw = raw_of(ev);
        for other in others {
            assert!(!raw.contains(other), "{own} raw names {other}: {raw}");
        }
        let v: Value = serde_json::from_str(&raw).unwrap();
        assert_eq!(
            v["bounce"]["bouncedRecipients"].as_array().unwrap().len(),
            1
        );
        assert!(
            v["bounce"]["bouncedRecipients"][0]["emailAddress"]
                .as_str()
                .unwrap()
                .starts_with(own)
        );
        assert_eq!(v["mail"]["destination"].as_array().unwrap().len(), 1);
        // What concerns the bounce itself is kept.
        assert_eq!(v["bounce"]["reportingMTA"], "dns; email.example.org");
    }
    assert!(raw_of(jane).contains("5.1.1"));
    assert!(!raw_of(richard).contains("5.1.1"));

    // A record too large to copy for each of its recipients keeps none.
    let mut big = record.clone();
    big["mail"]["tags"] = json!({"pad": ["x".repeat(60_000)]});
    let many: Vec<Value> = (0..100)
        .map(|i| json!({"emailAddress": format!("r{i}@example.org")}))
        .collect();
    big["bounce"]["bouncedRecipients"] = json!(many);
    let (events, _) = ses_unsigned(&big, "n-5", RawPolicy::default()).unwrap();
    assert_eq!(events.len(), 100);
    assert!(events.iter().all(|e| e.raw.is_none()));
}

#[test]
fn raw_payloads_follow_the_policy_and_never_keep_recipient_headers() {
    const SUBJECT: &str = "zq-subject-canary";
    const UA: &str = "ZqCanaryAgent/9";
    const IP: &str = "198.51.100.213";
    const OTHER: &str = "zq-other@canary.example";
    let keep_all = RawPolicy {
        keep_subjects: true,
        keep_engagement_details: true,
    };
    let mut open: Value = serde_json::from_slice(&testdata("ses/open.json")).unwrap();
    open["mail"]["commonHeaders"]["subject"] = json!(SUBJECT);
    open["mail"]["commonHeaders"]["to"] = json!(["recipient@example.org", OTHER]);
    open["mail"]["commonHeaders"]["cc"] = json!([OTHER]);
    open["mail"]["headers"] = json!([
        {"name": "To", "value": format!("recipient@example.org, {OTHER}")},
        {"name": "CC", "value": OTHER},
        {"name": "Subject", "value": SUBJECT},
        {"name": "From", "value": "sender@example.org"},
    ]);
    open["open"]["ipAddress"] = json!(IP);
    open["open"]["userAgent"] = json!(UA);
    let mut complaint: Value = serde_json::from_slice(&testdata("ses/complaint.json")).unwrap();
    complaint["complaint"]["userAgent"] = json!(UA);
    for (record, id) in [(&open, "p-1"), (&complaint, "p-2")] {
        let (events, _) = ses_unsigned(record, id, RawPolicy::default()).unwrap();
        let raw = raw_of(&events[0]);
        assert!(!raw.is_empty());
        for canary in [SUBJECT, UA, IP, OTHER, "Message sent from Amazon SES"] {
            assert!(!raw.contains(canary), "{canary} in {raw}");
        }
        let (kept, _) = ses_unsigned(record, id, keep_all).unwrap();
        let raw = raw_of(&kept[0]);
        assert!(raw.contains(UA), "{raw}");
        assert!(!raw.contains(OTHER), "{raw}");
    }
    let (kept, _) = ses_unsigned(&open, "p-3", keep_all).unwrap();
    let raw = raw_of(&kept[0]);
    assert!(raw.contains(SUBJECT) && raw.contains(IP), "{raw}");
    // Only subjects kept: the IP and user agent still go.
    let subjects = RawPolicy {
        keep_subjects: true,
        keep_engagement_details: false,
    };
    let (kept, _) = ses_unsigned(&open, "p-4", subjects).unwrap();
    let raw = raw_of(&kept[0]);
    assert!(raw.contains(SUBJECT) && !raw.contains(IP) && !raw.contains(UA));

    // Mailgun: `message.headers.to` and `envelope.targets` name recipients.
    let mut v: Value = serde_json::from_slice(&testdata("mailgun/complained.json")).unwrap();
    v["event-data"]["message"]["headers"]["to"] =
        json!(format!("Alice <alice@example.org>, {OTHER}"));
    v["event-data"]["message"]["headers"]["Bcc"] = json!(OTHER);
    v["event-data"]["envelope"]["targets"] = json!(OTHER);
    v["event-data"]["message"]["headers"]["subject"] = json!(SUBJECT);
    let body = serde_json::to_vec(&v).unwrap();
    for keep in [RawPolicy::default(), keep_all] {
        let out = parse_with_policy(
            Provider::Mailgun,
            &HeaderMap::new(),
            &body,
            &unsigned(),
            keep,
            NOW,
        );
        let (events, _, _) = events_of(out.unwrap());
        let raw = raw_of(&events[0]);
        assert!(
            raw.contains("alice@example.org"),
            "own recipient kept: {raw}"
        );
        assert!(!raw.contains(OTHER), "{raw}");
        assert_eq!(raw.contains(SUBJECT), keep.keep_subjects, "{raw}");
    }
}

#[test]
fn a_sendgrid_batch_keeps_its_good_items_and_skips_each_bad_one() {
    let mut v: Value = serde_json::from_slice(&testdata("sendgrid/events.json")).unwrap();
    let total = v.as_array().unwrap().len();
    v[1]["event"] = json!(CANARY);
    v[3]["email"] = json!(5);
    v[5]["email"] = json!(CANARY.replace('@', " at "));
    v[7] = json!(CANARY);
    let body = serde_json::to_vec(&v).unwrap();
    let out = parse(
        Provider::Sendgrid,
        &HeaderMap::new(),
        &body,
        &unsigned(),
        NOW,
    )
    .unwrap();
    let (events, skipped, _) = events_of(out);
    // Four bad items and the one with no canonical type.
    assert_eq!(events.len(), total - 5);
    let bad: Vec<(Option<usize>, &str, &str)> = skipped
        .iter()
        .filter(|s| s.error.is_some())
        .map(|s| (s.index, s.field.as_str(), s.event_type))
        .collect();
    assert_eq!(
        bad,
        [
            (Some(1), "[1].event", "unknown"),
            (Some(3), "[3].email", "bounce"),
            (Some(5), "[5].email", "dropped"),
            (Some(7), "[7]", "unknown"),
        ]
    );
    for s in &skipped {
        let text = format!("{s:?}");
        assert!(
            !text.contains("zed") && !text.contains("secret.example"),
            "{text}"
        );
    }
    let unmapped: Vec<_> = skipped.iter().filter(|s| s.error.is_none()).collect();
    assert_eq!(unmapped.len(), 1);
    assert_eq!(unmapped[0].field, format!("[{}]", total - 1));
    assert_eq!(unmapped[0].index, None);
    // The good items' ids are those of the whole batch: a retry with the
    // bad items fixed appends only them.
    let good = ids(
        Provider::Sendgrid,
        &HeaderMap::new(),
        &testdata("sendgrid/events.json"),
        &unsigned(),
    );
    assert!(events.iter().all(|e| good.contains(&e.id)));
}

#[test]
fn a_batch_with_no_usable_item_is_refused_with_its_first_error() {
    let body =
        serde_json::to_vec(&json!([{"event": CANARY}, {"event": "open", "email": 5}])).unwrap();
    let err = parse(
        Provider::Sendgrid,
        &HeaderMap::new(),
        &body,
        &unsigned(),
        NOW,
    )
    .unwrap_err();
    assert_eq!(err.field(), Some("[0].event"));
    assert!(!err.to_string().contains("zed"));
    // Only events with no canonical type: nothing bad, nothing refused.
    let body = serde_json::to_vec(&json!([{"event": "account_status_change"}])).unwrap();
    let (events, skipped, _) = events_of(
        parse(
            Provider::Sendgrid,
            &HeaderMap::new(),
            &body,
            &unsigned(),
            NOW,
        )
        .unwrap(),
    );
    assert!(events.is_empty() && skipped.len() == 1);
    // One bad recipient of an SES record does not lose the others; all bad
    // refuses the record.
    let mut record: Value =
        serde_json::from_slice(&testdata("ses/notification-bounce.json")).unwrap();
    record["bounce"]["bouncedRecipients"][0]["emailAddress"] = json!(CANARY.replace('@', " at "));
    let (events, skipped) = ses_unsigned(&record, "b-1", RawPolicy::default()).unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(recipient(&events[0]), "richard@example.org");
    assert_eq!(skipped[0].index, Some(0));
    assert_eq!(
        skipped[0].field,
        "Message.bounce.bouncedRecipients[0].emailAddress"
    );
    assert_eq!(skipped[0].event_type, "Bounce");
    record["bounce"]["bouncedRecipients"][1]["emailAddress"] = json!(7);
    let err = ses_unsigned(&record, "b-2", RawPolicy::default()).unwrap_err();
    assert_eq!(
        err.field(),
        Some("Message.bounce.bouncedRecipients[0].emailAddress")
    );
}

#[test]
fn sns_signature_version_1_verifies_against_the_configured_certificate() {
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
fn sns_messages_are_refused_on_any_signature_problem() {
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
fn sns_subscription_confirmations_are_reported_not_followed() {
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
fn ses_records_without_the_sns_envelope_need_unsigned_to_be_allowed() {
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
fn ses_open_of_a_message_with_several_recipients_is_skipped() {
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

// -------------------------------------------------------------- Postmark

fn postmark(file: &str) -> CanonicalEvent {
    let body = testdata(&format!("postmark/{file}"));
    // Postmark signs nothing: accepted even when signatures are required.
    let out = parse(
        Provider::Postmark,
        &HeaderMap::new(),
        &body,
        &ProviderSecrets::default(),
        NOW,
    )
    .unwrap();
    let (events, skipped, auth) = events_of(out);
    assert_eq!(auth, Authentication::ProviderDoesNotSign);
    assert!(skipped.is_empty());
    assert_canonical(Provider::Postmark, &events);
    let [ev] = <[CanonicalEvent; 1]>::try_from(events).unwrap();
    ev
}

#[test]
fn postmark_documented_payloads_map_to_canonical_events() {
    let delivery = postmark("delivery.json");
    assert_eq!(delivery.event_type, "delivered");
    assert_eq!(recipient(&delivery), "john@example.org");
    let source = "Delivery:883953f4-6105-42a2-a16a-77a8eac79483:2019-11-05T16:33:54.9070259Z";
    assert_eq!(delivery.provider_event_id.as_deref(), Some(source));
    assert_eq!(delivery.id, derive_event_id(Provider::Postmark, source));
    assert_eq!(
        delivery.smtp_response.as_deref(),
        Some("Test delivery webhook details")
    );
    assert_eq!(delivery.tags, ["welcome-email"]);
    assert_eq!(delivery.occurred_at.nanosecond(), 907_025_900);

    let bounce = postmark("bounce.json");
    assert_eq!(bounce.event_type, "bounced");
    assert_eq!(bounce.class, Some(BounceClass::Hard));
    assert_eq!(bounce.sub_type.as_deref(), Some("hard_bounce"));
    assert_eq!(
        bounce.provider_event_id.as_deref(),
        Some("4323372036854775807")
    );
    assert_eq!(
        bounce.id,
        derive_event_id(Provider::Postmark, "Bounce:4323372036854775807")
    );
    assert_eq!(bounce.sending_domain.as_deref(), Some("example.org"));
    assert_eq!(
        bounce.diagnostic.as_ref().unwrap().expose(),
        "Test bounce details"
    );

    let complaint = postmark("spam-complaint.json");
    assert_eq!(complaint.event_type, "complained");
    assert_eq!(complaint.provider_event_id.as_deref(), Some("42"));

    let open = postmark("open.json");
    assert_eq!(open.event_type, "opened");
    assert_eq!(open.ip.as_ref().unwrap().expose(), "188.2.95.4");
    assert_eq!(open.machine, Some(false));

    let click = postmark("click.json");
    assert_eq!(click.event_type, "clicked");
    assert_eq!(click.url.as_ref().unwrap().expose(), "https://example.org");
    assert_eq!(click.bot, Some(false));

    let suppressed = postmark("subscription-change.json");
    assert_eq!(suppressed.event_type, "suppressed");
    assert_eq!(recipient(&suppressed), "bounced-address@example.org");
    assert_eq!(suppressed.reason.as_deref(), Some("hard_bounce"));
    assert_eq!(suppressed.scope.as_deref(), Some("outbound"));

    let unsubscribed = postmark("subscription-change-unsubscribe.json");
    assert_eq!(unsubscribed.event_type, "unsubscribed");
    assert_eq!(unsubscribed.scope.as_deref(), Some("broadcast"));

    let reactivated = postmark("subscription-change-reactivation.json");
    assert_eq!(reactivated.event_type, "unsuppressed");
    assert_eq!(reactivated.message_id, None);
    assert!(
        reactivated
            .provider_event_id
            .as_deref()
            .unwrap()
            .starts_with("SubscriptionChange:-:")
    );
}

#[test]
fn postmark_bounce_types_choose_the_canonical_type_and_class() {
    let base: Value = serde_json::from_slice(&testdata("postmark/bounce.json")).unwrap();
    let cases = [
        ("SoftBounce", Some(("bounced", Some(BounceClass::Soft)))),
        ("Blocked", Some(("bounced", Some(BounceClass::Block)))),
        (
            "Unknown",
            Some(("bounced", Some(BounceClass::Undetermined))),
        ),
        ("SpamComplaint", Some(("complained", None))),
        ("ManuallyDeactivated", Some(("suppressed", None))),
        ("TemplateRenderingFailed", Some(("rejected", None))),
        ("AutoResponder", None),
    ];
    for (ty, expected) in cases {
        let mut v = base.clone();
        v["Type"] = json!(ty);
        let body = serde_json::to_vec(&v).unwrap();
        let (events, skipped, _) = events_of(
            parse(
                Provider::Postmark,
                &HeaderMap::new(),
                &body,
                &unsigned(),
                NOW,
            )
            .unwrap(),
        );
        assert_canonical(Provider::Postmark, &events);
        match expected {
            Some((canonical, class)) => {
                assert_eq!(events[0].event_type, canonical, "{ty}");
                assert_eq!(events[0].class, class, "{ty}");
            }
            None => {
                assert!(events.is_empty(), "{ty}");
                assert_eq!(skipped[0].event_type, ty);
            }
        }
    }
}

// --------------------------------------------------------------- Mailgun

const MAILGUN_KEY: &str = "test-only-mailgun-signing-key-0123456789";

fn mailgun_secrets() -> ProviderSecrets {
    ProviderSecrets {
        mailgun_signing_key: Some(MAILGUN_KEY.to_owned()),
        ..ProviderSecrets::default()
    }
}

fn mailgun_sign(v: &mut Value, key: &str, timestamp: i64, token: &str) {
    let ts = timestamp.to_string();
    let signature = signing::mailgun_signature(key, &ts, token);
    v["signature"] = json!({"timestamp": ts, "token": token, "signature": signature});
}

fn mailgun_body(file: &str, timestamp: i64) -> Vec<u8> {
    let mut v: Value = serde_json::from_slice(&testdata(&format!("mailgun/{file}"))).unwrap();
    mailgun_sign(
        &mut v,
        MAILGUN_KEY,
        timestamp,
        &format!("token-{timestamp}-0123456789abcdef0123456789abcdef"),
    );
    serde_json::to_vec(&v).unwrap()
}

fn mailgun(file: &str) -> CanonicalEvent {
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
fn mailgun_documented_payloads_map_to_canonical_events() {
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
fn mailgun_signatures_are_refused_when_token_key_field_or_time_is_wrong() {
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

// -------------------------------------------------------------- SendGrid

fn sendgrid_headers(key: &EcdsaKeyPair, timestamp: i64, body: &[u8]) -> HeaderMap {
    let ts = timestamp.to_string();
    let sig = signing::sendgrid_signature(key, &ts, body);
    header_map(&[
        ("X-Twilio-Email-Event-Webhook-Signature", sig),
        ("X-Twilio-Email-Event-Webhook-Timestamp", ts),
    ])
}

fn sendgrid_secrets(public: &str) -> ProviderSecrets {
    ProviderSecrets {
        sendgrid_public_key: Some(public.to_owned()),
        ..ProviderSecrets::default()
    }
}

#[test]
fn sendgrid_documented_batch_maps_to_canonical_events() {
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
fn sendgrid_signatures_are_refused_when_body_key_header_or_time_is_wrong() {
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

// ------------------------------------------------------------ all of them

/// One sample body per provider, signed at `timestamp` where the provider
/// signs with a time, and the secrets that accept it.
fn signed_samples(timestamp: i64) -> Vec<(Provider, HeaderMap, Vec<u8>, ProviderSecrets)> {
    let postal_body = testdata("postal/message-delivery-failed.json");
    let ses_body = serde_json::to_vec(&sns_notification(
        &testdata_text("ses/notification-bounce.json"),
        "r-1",
    ))
    .unwrap();
    let (key, public) = signing::sendgrid_key();
    let sendgrid_body = testdata("sendgrid/events.json");
    vec![
        (
            Provider::Postal,
            postal_headers(&postal_body),
            postal_body,
            postal_secrets(),
        ),
        (Provider::Ses, HeaderMap::new(), ses_body, sns_secrets()),
        (
            Provider::Postmark,
            HeaderMap::new(),
            testdata("postmark/bounce.json"),
            ProviderSecrets::default(),
        ),
        (
            Provider::Mailgun,
            HeaderMap::new(),
            mailgun_body("failed-temporary.json", timestamp),
            mailgun_secrets(),
        ),
        (
            Provider::Sendgrid,
            sendgrid_headers(&key, timestamp, &sendgrid_body),
            sendgrid_body,
            sendgrid_secrets(&public),
        ),
    ]
}

fn ids(
    provider: Provider,
    headers: &HeaderMap,
    body: &[u8],
    secrets: &ProviderSecrets,
) -> Vec<Uuid> {
    let (events, _, _) = events_of(parse(provider, headers, body, secrets, NOW).unwrap());
    events.iter().map(|e| e.id).collect()
}

#[test]
fn a_retried_webhook_gives_the_same_ids() {
    // A retry is signed anew (another timestamp, token or signature) but
    // carries the same provider events.
    let first = signed_samples(NOW - 120);
    let retry = signed_samples(NOW - 5);
    let mut all = HashSet::new();
    for ((provider, h1, b1, s1), (_, h2, b2, s2)) in first.iter().zip(&retry) {
        let a = ids(*provider, h1, b1, s1);
        let b = ids(*provider, h2, b2, s2);
        assert!(!a.is_empty());
        assert_eq!(a, b, "{provider}");
        for id in a {
            assert!(all.insert(id), "{provider}: ids are distinct across events");
        }
    }
}

#[test]
fn provider_names_round_trip() {
    for p in Provider::ALL {
        assert_eq!(p.as_str().parse::<Provider>().unwrap(), p);
        assert_eq!(p.to_string(), p.as_str());
    }
    assert_eq!(
        "Mailchimp".parse::<Provider>().unwrap_err(),
        WebhookError::UnknownProvider
    );
    assert!("SES".parse::<Provider>().is_err());
}

#[test]
fn secrets_come_from_config_with_signatures_required_by_default() {
    let s: ProviderSecrets =
        serde_json::from_str(r#"{"mailgun_signing_key": "k-secret-value"}"#).unwrap();
    assert!(s.require_signatures);
    assert_eq!(s.max_signature_age_secs, 300);
    assert!(s.postal_public_key.is_none());
    let printed = format!("{s:?}");
    assert!(!printed.contains("k-secret-value"), "{printed}");
    assert!(serde_json::from_str::<ProviderSecrets>(r#"{"mailgun_key": "x"}"#).is_err());
    let off: ProviderSecrets = serde_json::from_str(r#"{"require_signatures": false}"#).unwrap();
    assert!(!off.require_signatures);
}

#[test]
fn oversized_bodies_are_refused_before_parsing() {
    let body = vec![b' '; MAX_BODY_BYTES + 1];
    let err = parse(
        Provider::Postmark,
        &HeaderMap::new(),
        &body,
        &unsigned(),
        NOW,
    )
    .unwrap_err();
    assert_eq!(err, WebhookError::TooLarge);
    assert_eq!(err.kind(), WebhookErrorKind::TooLarge);
}

/// A canary-carrying body per provider with one field broken by `edit`.
fn broken(provider: Provider, edit: impl Fn(&mut Value)) -> Vec<u8> {
    let mut v: Value = match provider {
        Provider::Postal => serde_json::from_slice(&testdata("postal/message-sent.json")).unwrap(),
        Provider::Ses => serde_json::from_slice(&testdata("ses/bounce.json")).unwrap(),
        Provider::Postmark => serde_json::from_slice(&testdata("postmark/bounce.json")).unwrap(),
        Provider::Mailgun => serde_json::from_slice(&testdata("mailgun/delivered.json")).unwrap(),
        Provider::Sendgrid => serde_json::from_slice(&testdata("sendgrid/events.json")).unwrap(),
    };
    let text = v.to_string().replace("example.org", "secret.example");
    v = serde_json::from_str(&text).unwrap();
    edit(&mut v);
    if provider == Provider::Ses {
        // Into an SNS envelope, unsigned (the secrets allow it below).
        v = json!({"Type": "Notification", "MessageId": "m", "TopicArn": TOPIC,
                   "Timestamp": "2017-08-05T00:41:03.100Z", "Message": v.to_string()});
    }
    serde_json::to_vec(&v).unwrap()
}

#[test]
fn malformed_payloads_are_refused_naming_the_field_but_no_value() {
    type Edit = fn(&mut Value);
    let cases: Vec<(Provider, Edit, &str)> = vec![
        (
            Provider::Postal,
            |v| v["payload"]["message"]["to"] = json!(42),
            "payload.message.to",
        ),
        (
            Provider::Postal,
            |v| {
                v["payload"]["message"]
                    .as_object_mut()
                    .unwrap()
                    .remove("to");
            },
            "payload.message.to",
        ),
        (Provider::Postal, |v| v["event"] = json!(CANARY), "event"),
        (
            Provider::Postal,
            |v| v["timestamp"] = json!(CANARY),
            "timestamp",
        ),
        (
            Provider::Ses,
            |v| v["bounce"]["bouncedRecipients"][0]["emailAddress"] = json!(["x"]),
            "Message.bounce.bouncedRecipients[0].emailAddress",
        ),
        (
            Provider::Ses,
            |v| v["bounce"]["timestamp"] = json!(CANARY),
            "Message.bounce.timestamp",
        ),
        (
            Provider::Ses,
            |v| v["eventType"] = json!(CANARY),
            "Message.eventType",
        ),
        (
            Provider::Ses,
            |v| {
                v.as_object_mut().unwrap().remove("mail");
            },
            "Message.mail",
        ),
        (
            Provider::Postmark,
            |v| v["Email"] = json!("not an address"),
            "Email",
        ),
        (
            Provider::Postmark,
            |v| v["BouncedAt"] = json!(CANARY),
            "BouncedAt",
        ),
        (
            Provider::Postmark,
            |v| v["RecordType"] = json!(CANARY),
            "RecordType",
        ),
        (
            Provider::Mailgun,
            |v| v["event-data"]["recipient"] = json!(false),
            "event-data.recipient",
        ),
        (
            Provider::Mailgun,
            |v| v["event-data"]["timestamp"] = json!(CANARY),
            "event-data.timestamp",
        ),
        (
            Provider::Mailgun,
            |v| v["event-data"]["event"] = json!(CANARY),
            "event-data.event",
        ),
        (
            Provider::Mailgun,
            |v| v["event-data"]["tags"] = json!([CANARY, 3]),
            "event-data.tags[1]",
        ),
        // A batch is refused only when no item is usable: these are
        // batches of one item (a bad item among good ones is skipped, see
        // `a_sendgrid_batch_keeps_its_good_items_and_skips_each_bad_one`).
        (
            Provider::Sendgrid,
            |v| {
                *v = json!([v[2].clone()]);
                v[0]["email"] = json!(5);
            },
            "[0].email",
        ),
        (
            Provider::Sendgrid,
            |v| {
                *v = json!([v[0].clone()]);
                v[0]["event"] = json!(CANARY);
            },
            "[0].event",
        ),
        (
            Provider::Sendgrid,
            |v| {
                *v = json!([v[4].clone()]);
                v[0].as_object_mut().unwrap().remove("sg_event_id");
            },
            "[0].sg_event_id",
        ),
        (
            Provider::Sendgrid,
            |v| {
                *v = json!([v[1].clone()]);
                v[0]["attempt"] = json!(CANARY);
            },
            "[0].attempt",
        ),
        (
            Provider::Sendgrid,
            |v| *v = json!({"email": CANARY}),
            "(root)",
        ),
    ];
    for (provider, edit, field) in cases {
        let body = broken(provider, edit);
        let err = parse(provider, &HeaderMap::new(), &body, &unsigned(), NOW).unwrap_err();
        let text = err.to_string();
        assert_eq!(err.field(), Some(field), "{provider}: {text}");
        assert_eq!(err.kind(), WebhookErrorKind::Invalid);
        assert!(text.contains(field), "{text}");
        assert!(
            !text.contains("zed") && !text.contains("secret.example"),
            "{text} leaks"
        );
    }
}

#[test]
fn truncated_and_non_json_bodies_are_refused() {
    for (provider, _, body, _) in signed_samples(NOW) {
        let last = body.trim_ascii_end().len() - 1; // drops the closing bracket
        for cut in [0, 1, body.len() / 2, last] {
            let err =
                parse(provider, &HeaderMap::new(), &body[..cut], &unsigned(), NOW).unwrap_err();
            assert!(
                matches!(err, WebhookError::InvalidJson { .. }),
                "{provider} cut at {cut}: {err}"
            );
            assert!(!err.to_string().contains("example.org"));
        }
    }
    let sns_bad_message = json!({"Type": "Notification", "MessageId": "m", "TopicArn": TOPIC,
        "Timestamp": "2017-08-05T00:41:03.100Z", "Message": format!("{CANARY} is not JSON")});
    let err = parse(
        Provider::Ses,
        &HeaderMap::new(),
        &serde_json::to_vec(&sns_bad_message).unwrap(),
        &unsigned(),
        NOW,
    )
    .unwrap_err();
    assert_eq!(err.field(), Some("Message"));
    assert!(!err.to_string().contains("zed"));
}

#[test]
fn error_kinds_and_fields_guide_the_http_answer() {
    assert_eq!(
        WebhookError::BadSignature { what: "header X" }.kind(),
        WebhookErrorKind::Unauthenticated
    );
    assert_eq!(
        WebhookError::BadSignature { what: "header X" }.field(),
        Some("header X")
    );
    assert_eq!(
        WebhookError::NotConfigured {
            provider: Provider::Postal
        }
        .field(),
        None
    );
    assert_eq!(
        WebhookError::InvalidJson { line: 1, column: 2 }.kind(),
        WebhookErrorKind::Invalid
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn random_bytes_never_panic_and_errors_quote_nothing(
        body in proptest::collection::vec(any::<u8>(), 0..512),
        which in 0usize..5,
        with_address in any::<bool>(),
    ) {
        let provider = Provider::ALL[which];
        // Random bytes alone rarely parse as JSON; after an address in a
        // valid opening they get past the parser's first error.
        let body = if with_address {
            [&br#"{"email": "canary@example.org", "recipient": "canary@example.org", "#[..], &body].concat()
        } else {
            body
        };
        if let Err(e) = parse(provider, &HeaderMap::new(), &body, &unsigned(), NOW) {
            let text = e.to_string();
            prop_assert!(!text.contains('@'), "{}", text);
            prop_assert!(!text.contains("canary"), "{}", text);
        }
    }

    #[test]
    fn mutated_samples_never_panic_and_errors_quote_no_address(
        which in 0usize..5,
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
        cut in any::<prop::sample::Index>(),
        truncate in any::<bool>(),
    ) {
        let samples = [
            (Provider::Postal, testdata("postal/message-bounced.json")),
            (Provider::Ses, testdata("ses/sns-notification-v1.json")),
            (Provider::Postmark, testdata("postmark/click.json")),
            (Provider::Mailgun, testdata("mailgun/failed-temporary.json")),
            (Provider::Sendgrid, testdata("sendgrid/events.json")),
        ];
        let (provider, mut body) = samples[which].clone();
        for (at, byte) in edits {
            let i = at.index(body.len());
            body[i] = byte;
        }
        if truncate {
            body.truncate(cut.index(body.len()));
        }
        match parse(provider, &HeaderMap::new(), &body, &unsigned(), NOW) {
            Ok(WebhookOutcome::Events { events, .. }) => {
                for ev in events {
                    prop_assert!(ev.clone().validate().is_ok());
                }
            }
            Ok(WebhookOutcome::SubscriptionConfirmation(_)) => {}
            Err(e) => {
                let text = e.to_string();
                prop_assert!(!text.contains("example.org"), "{}", text);
                prop_assert!(!text.contains('@'), "{}", text);
            }
        }
    }

    #[test]
    fn arbitrary_json_values_never_panic(
        value in arb_json(),
        which in 0usize..5,
    ) {
        let body = serde_json::to_vec(&value).unwrap();
        let _ = parse(Provider::ALL[which], &HeaderMap::new(), &body, &unsigned(), NOW);
        // And the same value as a provider's known top-level field.
        let wrapped = match Provider::ALL[which] {
            Provider::Postal => json!({"event": "MessageSent", "uuid": "u", "timestamp": 1, "payload": value}),
            Provider::Ses => json!({"Type": "Notification", "MessageId": "m", "TopicArn": "t",
                "Timestamp": "2017-08-05T00:41:03.100Z", "Message": value.to_string()}),
            Provider::Postmark => json!({"RecordType": "Bounce", "ID": value, "Email": "a@example.org"}),
            Provider::Mailgun => json!({"event-data": value}),
            Provider::Sendgrid => json!([value]),
        };
        let body = serde_json::to_vec(&wrapped).unwrap();
        let _ = parse(Provider::ALL[which], &HeaderMap::new(), &body, &unsigned(), NOW);
    }
}

fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>().prop_map(|f| json!(f)),
        "[a-z@. 0-9-]{0,12}".prop_map(Value::String),
        prop::sample::select(vec![
            "delivered",
            "bounce",
            "open",
            "Bounce",
            "Delivery",
            "Permanent",
            "MessageSent",
            "failed",
            "temporary",
            "x@example.org",
            "2017-08-05T00:41:02.669Z",
        ])
        .prop_map(|s| Value::String(s.to_owned())),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(
                prop::sample::select(vec![
                    "event",
                    "email",
                    "timestamp",
                    "sg_event_id",
                    "recipient",
                    "id",
                    "message",
                    "to",
                    "eventType",
                    "mail",
                    "bounce",
                    "destination",
                    "RecordType",
                    "Type",
                    "bouncedRecipients",
                    "emailAddress",
                    "severity",
                    "url",
                    "payload",
                ])
                .prop_map(str::to_owned),
                inner,
                0..6,
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

#[test]
fn derived_event_ids_are_frozen() {
    // Retries sent across an upgrade deduplicate only if these never change.
    let id = derive_event_id(Provider::Sendgrid, "abc");
    assert_eq!(id.to_string(), "3ffb2372-8864-8682-b994-2f5423643bf5");
    let contact =
        mailledger_core::pseudonym::Pseudonym::from_hex("07070707070707070707070707070707")
            .unwrap();
    assert_eq!(
        crate::webhooks::scope_to_recipient(id, &contact).to_string(),
        "38a94850-9136-861b-9b35-19628e7040f7"
    );
}

// ------------------------------------------- signatures that prove something

/// An SNS notification of the delivery sample sent at `timestamp`
/// (RFC 3339), signed (version 2).
fn sns_sent_at(timestamp: &str) -> Vec<u8> {
    let mut n = sns_notification(&testdata_text("ses/delivery.json"), "m-fresh");
    n["Timestamp"] = json!(timestamp);
    sns_sign(&mut n);
    serde_json::to_vec(&n).unwrap()
}

fn rfc3339(unix: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .unwrap()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap()
}

#[test]
fn sns_certificates_without_a_topic_allow_list_verify_nothing() {
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
fn sns_messages_too_old_or_too_far_ahead_are_refused() {
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
fn sns_signature_version_1_is_refused_when_only_version_2_is_allowed() {
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
fn postal_sha1_signatures_are_refused_when_sha256_is_required() {
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
fn a_verified_mailgun_signature_gives_its_once_only_token() {
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
