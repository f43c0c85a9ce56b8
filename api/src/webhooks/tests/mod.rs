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
use {mailgun::*, postal::*, sendgrid::*, ses::*};

mod mailgun;
mod postal;
mod postmark;
mod sendgrid;
mod ses;
mod signatures;
mod sns;

/// "Now" for the tests: 2027-01-15, inside the test certificate's validity.
pub(super) const NOW: i64 = 1_800_000_000;
/// An address that must never appear in an error.
pub(super) const CANARY: &str = "zed@secret.example";

pub(super) fn testdata(path: &str) -> Vec<u8> {
    let full = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("testdata/webhooks")
        .join(path);
    std::fs::read(&full).unwrap_or_else(|e| panic!("{}: {e}", full.display()))
}

pub(super) fn testdata_text(path: &str) -> String {
    String::from_utf8(testdata(path)).unwrap()
}

pub(super) fn unsigned() -> ProviderSecrets {
    ProviderSecrets {
        require_signatures: false,
        ..ProviderSecrets::default()
    }
}

pub(super) fn events_of(
    out: WebhookOutcome,
) -> (Vec<CanonicalEvent>, Vec<Skipped>, Authentication) {
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
pub(super) fn assert_canonical(provider: Provider, events: &[CanonicalEvent]) {
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

pub(super) fn recipient(ev: &CanonicalEvent) -> &str {
    ev.recipient
        .as_ref()
        .map(|r| r.expose())
        .unwrap_or_default()
}

pub(super) fn header_map(pairs: &[(&'static str, String)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (name, value) in pairs {
        h.insert(
            HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_str(value).unwrap(),
        );
    }
    h
}

pub(super) fn flip_byte(body: &[u8], needle: &str) -> Vec<u8> {
    let text = String::from_utf8(body.to_vec()).unwrap();
    let at = text.find(needle).unwrap() + 1;
    let mut out = body.to_vec();
    out[at] ^= 0x01;
    out
}

pub(super) fn rsa_sign(key_file: &str, message: &[u8]) -> String {
    signing::rsa_sha256(&testdata(key_file), message)
}

// ------------------------------------------------------------ all of them

/// One sample body per provider, signed at `timestamp` where the provider
/// signs with a time, and the secrets that accept it.
pub(super) fn signed_samples(
    timestamp: i64,
) -> Vec<(Provider, HeaderMap, Vec<u8>, ProviderSecrets)> {
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

pub(super) fn ids(
    provider: Provider,
    headers: &HeaderMap,
    body: &[u8],
    secrets: &ProviderSecrets,
) -> Vec<Uuid> {
    let (events, _, _) = events_of(parse(provider, headers, body, secrets, NOW).unwrap());
    events.iter().map(|e| e.id).collect()
}

#[test]
pub(super) fn a_retried_webhook_gives_the_same_ids() {
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
pub(super) fn provider_names_round_trip() {
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
pub(super) fn secrets_come_from_config_with_signatures_required_by_default() {
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
pub(super) fn oversized_bodies_are_refused_before_parsing() {
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
pub(super) fn broken(provider: Provider, edit: impl Fn(&mut Value)) -> Vec<u8> {
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
pub(super) fn malformed_payloads_are_refused_naming_the_field_but_no_value() {
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
pub(super) fn truncated_and_non_json_bodies_are_refused() {
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
pub(super) fn error_kinds_and_fields_guide_the_http_answer() {
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

pub(super) fn arb_json() -> impl Strategy<Value = Value> {
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
pub(super) fn derived_event_ids_are_frozen() {
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
