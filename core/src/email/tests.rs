use std::sync::Arc;

use uuid::Uuid;

use super::*;
use crate::crypto::SecretKey;
use crate::crypto::{Cipher, Sealed};
use crate::keys::FileKeyStore;
use crate::record::TenantFilter;
use crate::{Ledger, LedgerConfig, MemoryStore};

struct Fixture {
    ledger: EmailLedger,
    _keys_dir: tempfile::TempDir,
}

fn fixture() -> Fixture {
    let keys_dir = tempfile::tempdir().unwrap();
    let keys = FileKeyStore::open(keys_dir.path(), &SecretKey::from_bytes([9; 32])).unwrap();
    let log = Ledger::open(MemoryStore::new(), LedgerConfig::new()).unwrap();
    Fixture {
        ledger: EmailLedger::new(Arc::new(log), Arc::new(keys)),
        _keys_dir: keys_dir,
    }
}

fn event(ty: &str, recipient: &str, message: &str, extra: &str) -> CanonicalEvent {
    event_at(ty, recipient, message, extra, "2026-11-22T10:00:00Z")
}

/// As [`event`], at `occurred_at` (RFC 3339).
fn event_at(
    ty: &str,
    recipient: &str,
    message: &str,
    extra: &str,
    occurred_at: &str,
) -> CanonicalEvent {
    let json = format!(
        r#"{{"id": "{}", "type": "{ty}", "recipient": "{recipient}", "message_id": "{message}",
            "occurred_at": "{occurred_at}", "sending_domain": "mail.example.com"{extra}}}"#,
        Uuid::now_v7()
    );
    parse_event(&json).unwrap()
}

/// A time after any erasure a test makes now.
fn later() -> String {
    let t = time::OffsetDateTime::now_utc() + time::Duration::minutes(1);
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap()
}

async fn read_all(l: &EmailLedger) -> Vec<ReadEvent> {
    let batch = l
        .log()
        .read_all(&TenantFilter::All, 0, crate::Direction::Forward, 1000)
        .await
        .unwrap();
    batch
        .records
        .iter()
        .filter_map(|r| l.open(r).unwrap())
        .collect()
}

#[tokio::test]
async fn personal_fields_are_sealed_in_storage_and_open_on_read() {
    let f = fixture();
    let l = &f.ledger;
    l.set_policy(
        "t",
        TenantPolicy {
            keep_subjects: true,
            keep_engagement_details: true,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let events = vec![
        event(
            "sent",
            "canary-ann@example.org",
            "m1",
            r#", "subject": "canary-subject""#,
        ),
        event(
            "clicked",
            "canary-ann@example.org",
            "m1",
            r#", "url": "https://canary.example/x", "ip": "203.0.113.77", "user_agent": "canary-agent""#,
        ),
    ];
    let out = l.append("t", events).await.unwrap();
    assert_eq!(out.len(), 2);
    let batch = l
        .log()
        .read_all(&TenantFilter::All, 0, crate::Direction::Forward, 100)
        .await
        .unwrap();
    for r in &batch.records {
        for canary in ["canary", "203.0.113.77", "ann@"] {
            assert!(
                !r.payload
                    .windows(canary.len())
                    .any(|w| w == canary.as_bytes()),
                "{canary} stored in clear"
            );
        }
        assert!(!r.stream.contains('@'));
    }
    let read = read_all(l).await;
    let json = read[1].to_json();
    assert_eq!(json["recipient"], "canary-ann@example.org");
    assert_eq!(json["url"], "https://canary.example/x");
    assert_eq!(json["ip"], "203.0.113.77");
    assert_eq!(read[0].to_json()["subject"], "canary-subject");
    assert_eq!(json["recipient_domain"], "example.org");
    assert!(read[0].stream.starts_with("message-"));
}

#[tokio::test]
async fn subjects_and_engagement_details_are_dropped_unless_the_tenant_keeps_them() {
    let f = fixture();
    let l = &f.ledger;
    l.append(
        "t",
        vec![
            event("sent", "a@x.org", "m1", r#", "subject": "hello""#),
            event(
                "opened",
                "a@x.org",
                "m1",
                r#", "ip": "192.0.2.1", "user_agent": "UA""#,
            ),
        ],
    )
    .await
    .unwrap();
    let read = read_all(l).await;
    let sent = read[0].to_json();
    let opened = read[1].to_json();
    assert!(sent.get("subject").is_none());
    assert!(opened.get("ip").is_none() && opened.get("user_agent").is_none());
}

#[tokio::test]
async fn a_retried_batch_appends_nothing_and_reports_the_original_positions() {
    let f = fixture();
    let l = &f.ledger;
    let batch = vec![
        event("sent", "a@x.org", "m1", ""),
        event("delivered", "a@x.org", "m1", ""),
        event("sent", "b@x.org", "m2", ""),
    ];
    let first = l.append("t", batch.clone()).await.unwrap();
    assert!(first.iter().all(|a| !a.duplicate));
    let head = l.log().head();
    let again = l.append("t", batch).await.unwrap();
    assert_eq!(l.log().head(), head);
    assert!(again.iter().all(|a| a.duplicate));
    let pos = |v: &[Appended]| v.iter().map(|a| a.position).collect::<Vec<_>>();
    assert_eq!(pos(&first), pos(&again));
}

#[tokio::test]
async fn erasure_shows_the_marker_keeps_the_chain_and_returns_one_receipt() {
    let f = fixture();
    let l = &f.ledger;
    l.append(
        "t",
        vec![
            event("sent", "ann@x.org", "m1", ""),
            event(
                "bounced",
                "ann@x.org",
                "m1",
                r#", "class": "hard", "diagnostic": "550 ann""#,
            ),
            event("sent", "bob@x.org", "m2", ""),
        ],
    )
    .await
    .unwrap();
    let receipt = l
        .erase(
            "t",
            ContactRef::Address(Personal::new("ann@X.org")),
            "req-1",
        )
        .await
        .unwrap();
    assert_eq!(receipt.events_unreadable, 2);
    assert_eq!(receipt.request_id, "req-1");
    let again = l
        .erase(
            "t",
            ContactRef::Address(Personal::new("ann@x.org")),
            "req-1",
        )
        .await
        .unwrap();
    assert_eq!(again, receipt);
    let other_request = l
        .erase(
            "t",
            ContactRef::Address(Personal::new("ann@x.org")),
            "req-2",
        )
        .await
        .unwrap();
    assert_eq!(other_request.request_id, "req-2", "a receipt of its own");
    assert_eq!(other_request.contact, receipt.contact);
    assert_eq!(
        other_request.events_unreadable, 2,
        "the first erasure's count"
    );
    assert!(other_request.key_found && receipt.key_found);
    assert_ne!(other_request.position, receipt.position);
    assert_eq!(
        l.receipt("t", "req-1").await.unwrap(),
        Some(receipt.clone())
    );
    assert_eq!(
        l.receipt("t", "req-2").await.unwrap(),
        Some(other_request.clone())
    );
    assert_eq!(l.receipt("u", "req-1").await.unwrap(), None);

    let read = read_all(l).await;
    let ann: Vec<_> = read
        .iter()
        .filter(|r| r.event.envelope.contact.to_string() == receipt.contact)
        .collect();
    assert_eq!(ann.len(), 4);
    for r in &ann[..2] {
        assert!(r.is_erased());
        assert_eq!(
            r.to_json()["recipient"],
            serde_json::json!({"erased": true})
        );
    }
    assert_eq!(
        ann[1].to_json()["diagnostic"],
        serde_json::json!({"erased": true})
    );
    assert_eq!(
        ann[1].to_json()["class"],
        "hard",
        "the envelope and clear fields stay"
    );
    assert_eq!(ann[2].to_json()["type"], "erased");
    assert_eq!(ann[3].to_json()["request_id"], "req-2");
    let bob = read
        .iter()
        .find(|r| r.to_json()["recipient"] == "bob@x.org");
    assert!(bob.is_some(), "other contacts still open");
    l.log()
        .verify(&TenantFilter::All, 0..u64::MAX, None)
        .await
        .unwrap();
}

#[tokio::test]
async fn a_retried_event_of_an_erased_contact_does_not_bring_a_key_back() {
    let f = fixture();
    let l = &f.ledger;
    let sent = event("sent", "ann@x.org", "m1", "");
    l.append("t", vec![sent.clone()]).await.unwrap();
    let receipt = l
        .erase("t", ContactRef::Address(Personal::new("ann@x.org")), "r1")
        .await
        .unwrap();
    let out = l.append("t", vec![sent]).await.unwrap();
    assert!(out[0].duplicate);
    let p = l.pseudonym("t", &Personal::new("ann@x.org")).await.unwrap();
    assert!(matches!(
        l.keys().contact("t", &p).unwrap(),
        KeyState::Erased(_)
    ));
    let again = l.erase("t", ContactRef::Pseudonym(p), "r1").await.unwrap();
    assert_eq!(again, receipt);
}

#[tokio::test]
async fn a_returning_contact_gets_a_new_key_and_only_old_events_stay_erased() {
    let f = fixture();
    let l = &f.ledger;
    l.append("t", vec![event("sent", "ann@x.org", "m1", "")])
        .await
        .unwrap();
    l.erase("t", ContactRef::Address(Personal::new("ann@x.org")), "r1")
        .await
        .unwrap();
    l.append("t", vec![event_at("sent", "ann@x.org", "m2", "", &later())])
        .await
        .unwrap();
    let read = read_all(l).await;
    assert!(read[0].is_erased());
    assert_eq!(read[2].to_json()["recipient"], "ann@x.org");
    let second = l
        .erase("t", ContactRef::Address(Personal::new("ann@x.org")), "r2")
        .await
        .unwrap();
    assert_eq!(
        second.events_unreadable, 1,
        "counts only the new key's events"
    );
}

#[tokio::test]
async fn the_same_address_in_two_tenants_is_two_contacts() {
    let f = fixture();
    let l = &f.ledger;
    for t in ["a", "b"] {
        l.append(t, vec![event("sent", "ann@x.org", "m1", "")])
            .await
            .unwrap();
    }
    let pa = l.pseudonym("a", &Personal::new("ann@x.org")).await.unwrap();
    let pb = l.pseudonym("b", &Personal::new("ann@x.org")).await.unwrap();
    assert_ne!(pa, pb);
    l.erase("a", ContactRef::Address(Personal::new("ann@x.org")), "r")
        .await
        .unwrap();
    let read = read_all(l).await;
    let by_tenant = |t: &str| read.iter().find(|r| r.tenant == t).unwrap();
    assert!(by_tenant("a").is_erased());
    assert_eq!(by_tenant("b").to_json()["recipient"], "ann@x.org");
}

#[tokio::test]
async fn a_bad_event_in_a_batch_writes_nothing_and_names_its_index() {
    let f = fixture();
    let l = &f.ledger;
    let mut bad = event("sent", "not-an-address", "m1", "");
    bad.recipient = Some(Personal::new("not-an-address"));
    let e = l
        .append("t", vec![event("sent", "a@x.org", "m1", ""), bad])
        .await
        .unwrap_err();
    assert!(e.to_string().contains("event 1"), "{e}");
    assert!(!e.to_string().contains("not-an-address"));
    assert_eq!(l.log().head(), 0);
}

#[tokio::test]
async fn a_ciphertext_moved_to_another_event_does_not_open() {
    let f = fixture();
    let l = &f.ledger;
    l.append(
        "t",
        vec![
            event("sent", "a@x.org", "m1", ""),
            event("sent", "a@x.org", "m2", ""),
        ],
    )
    .await
    .unwrap();
    let batch = l
        .log()
        .read_all(&TenantFilter::All, 0, crate::Direction::Forward, 10)
        .await
        .unwrap();
    let mut moved = batch.records[1].clone();
    moved.payload = batch.records[0].payload.clone();
    assert!(matches!(
        l.open(&moved),
        Err(Error::Corrupt { position: 1, .. })
    ));
}

#[test]
fn the_format_1_payload_encoding_is_frozen() {
    let key = SecretKey::from_bytes([3; 32]);
    let cipher = Cipher::new(&key);
    let contact = Pseudonym::from_hex("00112233445566778899aabbccddeeff").unwrap();
    let id = Uuid::from_u128(0x0193_a0c4_7b1e_7d2a_9c3f_2f6a_1c9e_0b11);
    let seal = |n: u8, text: &str, f| {
        Sealed::with_nonce(&cipher, [n; 12], text.as_bytes(), &ad("t", &contact, id, f))
    };
    let event: SealedEvent = EmailEventOf {
        envelope: Envelope {
            message_id: Some("m-42".into()),
            contact,
            key_generation: 0,
            occurred_at: 1_795_860_000_000_000,
            provider: Some("postal".into()),
            provider_event_id: Some("p-1".into()),
            tags: vec!["welcome".into()],
            campaign: Some("november".into()),
            sending_domain: Some("mail.example.com".into()),
            recipient_domain: Some("example.org".into()),
            recipient: Some(seal(1, "ann@example.org", FieldName::Recipient)),
            raw: None,
        },
        body: EventBody::Bounced {
            class: BounceClass::Hard,
            sub_type: Some("no_mailbox".into()),
            status: Some("5.1.1".into()),
            diagnostic: Some(seal(2, "550 5.1.1 user unknown", FieldName::Diagnostic)),
        },
    };
    let bytes = encode_payload(&event).unwrap();
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/email-payload-v1.bin");
    if std::env::var_os("MAILLEDGER_BLESS").is_some() {
        std::fs::write(&path, &bytes).unwrap();
    }
    let frozen = std::fs::read(&path).expect("frozen vector (bless with MAILLEDGER_BLESS=1)");
    assert_eq!(bytes, frozen, "the format 1 payload encoding changed");
    assert_eq!(decode_payload(0, &frozen).unwrap(), event);
    assert!(decode_payload(5, &[2, 0]).is_err());
}

#[test]
fn a_message_s_stream_is_recognised_by_its_hash_alone() {
    let stream = super::message_stream("<m-1@example.org>");
    assert!(super::is_message_stream(
        &stream,
        &super::message_hash("<m-1@example.org>")
    ));
    assert!(!super::is_message_stream(
        &stream,
        &super::message_hash("<m-2@example.org>")
    ));
    assert!(!super::is_message_stream(
        &stream.replace("message-", "contact-"),
        &super::message_hash("<m-1@example.org>")
    ));
}

// Provider ids that do not tell a message's recipients apart are scoped to
// each recipient's pseudonym, which the append computes once: the event
// named by `per_recipient` takes the scoped id, the others keep theirs, and
// a retry of the same delivery is a duplicate.
#[tokio::test(flavor = "current_thread")]
async fn scoped_appends_take_ids_made_from_each_recipients_pseudonym() {
    fn scope(id: Uuid, contact: &Pseudonym) -> Uuid {
        let mut bytes = *id.as_bytes();
        for (b, c) in bytes.iter_mut().zip(contact.as_bytes()) {
            *b ^= c;
        }
        Uuid::from_bytes(bytes)
    }
    let f = fixture();
    let first = vec![
        event("delivered", "ann@example.org", "m1", ""),
        event("delivered", "bob@example.org", "m1", ""),
    ];
    let batch = || first.clone();
    let given: Vec<Uuid> = batch().iter().map(|e| e.id).collect();
    let out = f
        .ledger
        .append_scoped("t", batch(), &[1], scope)
        .await
        .unwrap();
    let bob = f
        .ledger
        .pseudonym("t", &Personal::new("bob@example.org".to_owned()))
        .await
        .unwrap();
    assert_eq!(out[0].id, given[0], "an unscoped id is kept");
    assert_eq!(out[1].id, scope(given[1], &bob), "the scoped id");
    assert!(out.iter().all(|a| !a.duplicate));
    let again = f
        .ledger
        .append_scoped("t", batch(), &[1], scope)
        .await
        .unwrap();
    assert!(again.iter().all(|a| a.duplicate), "a retry appends nothing");
}

/// The contact an event was appended to.
fn contact_of(e: &ReadEvent) -> Pseudonym {
    e.event.envelope.contact
}

#[tokio::test]
async fn one_person_has_one_pseudonym_whatever_the_spelling_of_the_address() {
    let f = fixture();
    let l = &f.ledger;
    let spellings = [
        "john@example.com",
        "John@Example.com",
        "JOHN@EXAMPLE.COM.",
        "jos\u{e9}@b\u{fc}cher.de",
        "Jose\u{301}@B\u{dc}CHER.de",
        "jos\u{e9}@xn--bcher-kva.de",
    ];
    for (i, a) in spellings.iter().enumerate() {
        let hard = r#", "class": "hard""#;
        l.append("t", vec![event("bounced", a, &format!("m{i}"), hard)])
            .await
            .unwrap();
    }
    let read = read_all(l).await;
    let john = l
        .pseudonym("t", &Personal::new("john@example.com"))
        .await
        .unwrap();
    let jose = l
        .pseudonym("t", &Personal::new("JOS\u{c9}@B\u{fc}cher.DE"))
        .await
        .unwrap();
    assert_ne!(john, jose);
    for e in &read[..3] {
        assert_eq!(contact_of(e), john);
        assert_eq!(e.to_json()["recipient_domain"], "example.com");
    }
    for e in &read[3..] {
        assert_eq!(contact_of(e), jose);
        assert_eq!(e.to_json()["recipient_domain"], "xn--bcher-kva.de");
    }
    assert_eq!(
        read[1].to_json()["recipient"],
        "John@Example.com",
        "the address as given is what is sealed"
    );

    // Erasing one spelling erases every one.
    let receipt = l
        .erase(
            "t",
            ContactRef::Address(Personal::new("jose\u{301}@bücher.de")),
            "r1",
        )
        .await
        .unwrap();
    assert_eq!(receipt.contact, jose.to_string());
    assert_eq!(receipt.events_unreadable, 3);
    let read = read_all(l).await;
    assert!(read[3..6].iter().all(ReadEvent::is_erased));
    assert!(read[..3].iter().all(|e| !e.is_erased()));
}

#[tokio::test]
async fn a_tenant_with_case_sensitive_local_parts_keeps_john_and_john_apart() {
    let f = fixture();
    let l = &f.ledger;
    l.set_policy(
        "t",
        TenantPolicy {
            case_sensitive_local_part: true,
            ..TenantPolicy::default()
        },
    )
    .await
    .unwrap();
    l.append(
        "t",
        vec![
            event("bounced", "John@example.com", "m1", r#", "class": "hard""#),
            event("bounced", "john@EXAMPLE.com", "m2", r#", "class": "hard""#),
        ],
    )
    .await
    .unwrap();
    let read = read_all(l).await;
    let upper = l
        .pseudonym("t", &Personal::new("John@Example.com"))
        .await
        .unwrap();
    let lower = l
        .pseudonym("t", &Personal::new("john@example.com"))
        .await
        .unwrap();
    assert_ne!(upper, lower);
    assert_eq!(contact_of(&read[0]), upper);
    assert_eq!(contact_of(&read[1]), lower);
    // Another tenant, on the default policy, has one contact for both.
    assert_eq!(
        l.pseudonym("u", &Personal::new("John@example.com"))
            .await
            .unwrap(),
        l.pseudonym("u", &Personal::new("john@example.com"))
            .await
            .unwrap()
    );

    l.erase(
        "t",
        ContactRef::Address(Personal::new("John@example.com")),
        "r1",
    )
    .await
    .unwrap();
    let read = read_all(l).await;
    assert!(read[0].is_erased());
    assert!(!read[1].is_erased(), "john is another contact");
}

#[test]
fn a_stored_policy_without_the_case_setting_still_loads() {
    let old = r#"{"keep_subjects":true,"keep_engagement_details":false,
        "suppression":{"hard_bounce":true,"complaint":true,"unsubscribe":true,
        "soft_bounce_threshold":3,"soft_bounce_window_days":7,"soft_bounce_expiry_days":30},
        "analytics":{"bot_click_window_secs":10}}"#;
    let p: TenantPolicy = serde_json::from_str(old).unwrap();
    assert!(p.keep_subjects);
    assert!(!p.case_sensitive_local_part);
    assert_eq!(p.local_part_case(), LocalPartCase::Insensitive);
    let set: TenantPolicy = serde_json::from_str(r#"{"case_sensitive_local_part":true}"#).unwrap();
    assert_eq!(set.local_part_case(), LocalPartCase::Sensitive);
}

#[tokio::test]
async fn an_address_whose_domain_idna_refuses_is_not_appended_and_not_echoed() {
    let f = fixture();
    let l = &f.ledger;
    let e = l
        .append(
            "t",
            vec![
                event("sent", "a@x.org", "m1", ""),
                event("sent", "secret-ann@xn--zzzz-.de", "m2", ""),
            ],
        )
        .await
        .unwrap_err();
    let text = e.to_string();
    assert!(text.contains("event 1"), "{text}");
    assert!(
        !text.contains("secret-ann") && !text.contains("zzzz"),
        "{text}"
    );
    assert_eq!(l.log().head(), 0);
    let e = l
        .pseudonym("t", &Personal::new("secret-ann@b\u{ffff}cher.de"))
        .await
        .unwrap_err();
    assert!(matches!(e, Error::InvalidInput(_)));
    assert!(!e.to_string().contains("secret-ann"), "{e}");
    let e = l
        .erase(
            "t",
            ContactRef::Address(Personal::new("secret-ann@example..org")),
            "r1",
        )
        .await
        .unwrap_err();
    assert!(!e.to_string().contains("secret-ann"), "{e}");
}

// A request id belongs to one contact: reused for another contact it is a
// conflict that destroys nothing, and that contact's data stays readable.
#[tokio::test]
async fn a_request_id_used_for_another_contact_is_a_conflict_and_destroys_nothing() {
    let f = fixture();
    let l = &f.ledger;
    l.append(
        "t",
        vec![
            event("sent", "ann@x.org", "m1", ""),
            event("sent", "john@x.org", "m2", ""),
        ],
    )
    .await
    .unwrap();
    l.erase(
        "t",
        ContactRef::Address(Personal::new("ann@x.org")),
        "req-1",
    )
    .await
    .unwrap();
    let taken = l
        .erase(
            "t",
            ContactRef::Address(Personal::new("john@x.org")),
            "req-1",
        )
        .await;
    assert!(matches!(taken, Err(Error::RequestIdConflict)), "{taken:?}");
    let john = l
        .pseudonym("t", &Personal::new("john@x.org"))
        .await
        .unwrap();
    assert!(matches!(
        l.keys().contact("t", &john).unwrap(),
        KeyState::Live(_)
    ));
    let read = read_all(l).await;
    assert!(
        read.iter()
            .any(|r| r.to_json()["recipient"] == "john@x.org")
    );
    assert_eq!(
        read.iter()
            .filter(|r| r.to_json()["type"] == "erased")
            .count(),
        1,
        "no second erasure was recorded"
    );
}

// The erasure's event id is keyed by the tenant's secret (so no caller can
// predict it) and lies in a space ingest refuses, as it refuses `erased`.
#[tokio::test]
async fn ingest_cannot_claim_an_erasures_id_or_type() {
    let f = fixture();
    let l = &f.ledger;
    let a = SecretKey::from_bytes([1; 32]);
    let b = SecretKey::from_bytes([2; 32]);
    let id = erasure_event_id(&a, "t", "req-1");
    assert_ne!(id, erasure_event_id(&b, "t", "req-1"), "keyed");
    assert_ne!(id, erasure_event_id(&a, "u", "req-1"));
    assert!(is_erasure_id(id));
    assert!(!is_erasure_id(unreserved_id(id)));
    let mut claim = event("sent", "ann@x.org", "m1", "");
    claim.id = id;
    let refused = l.append("t", vec![claim]).await.unwrap_err();
    assert!(refused.to_string().contains("reserved"), "{refused}");
    let erased = parse_event(
        r#"{"id": "0193a0c4-7b1e-7d2a-9c3f-2f6a1c9e0b11", "type": "erased", "recipient": "ann@x.org", "occurred_at": "2026-11-22T10:00:00Z"}"#,
    );
    let refused = match erased {
        Ok(e) => l.append("t", vec![e]).await.unwrap_err(),
        Err(e) => e,
    };
    assert!(matches!(refused, Error::InvalidInput(_)), "{refused}");
    assert_eq!(l.log().head(), 0, "nothing was written");
}

// A data protection officer can record "no data held": the receipt says
// whether a key was found.
#[tokio::test]
async fn a_receipt_says_whether_the_ledger_held_a_key() {
    let f = fixture();
    let l = &f.ledger;
    l.append("t", vec![event("sent", "ann@x.org", "m1", "")])
        .await
        .unwrap();
    let held = l
        .erase("t", ContactRef::Address(Personal::new("ann@x.org")), "r1")
        .await
        .unwrap();
    assert!(held.key_found);
    assert_eq!(held.events_unreadable, 1);
    let never = l
        .erase(
            "t",
            ContactRef::Address(Personal::new("nobody@x.org")),
            "r2",
        )
        .await
        .unwrap();
    assert!(!never.key_found);
    assert_eq!(never.events_unreadable, 0);
    assert_eq!(l.receipt("t", "r2").await.unwrap(), Some(never));
}

// Late events of an erased contact (an open or a bounce of mail sent before
// the erasure) make no key and store nothing readable; they still count
// for suppression (their clear fields stay). Only a `sent` after the
// erasure starts a new generation, and an event of before the erasure in
// the same batch stays unreadable.
#[tokio::test]
async fn late_events_do_not_bring_an_erased_contact_back() {
    let f = fixture();
    let l = &f.ledger;
    l.append("t", vec![event("sent", "ann@x.org", "m1", "")])
        .await
        .unwrap();
    l.erase("t", ContactRef::Address(Personal::new("ann@x.org")), "r1")
        .await
        .unwrap();
    let p = l.pseudonym("t", &Personal::new("ann@x.org")).await.unwrap();
    let late = vec![
        event(
            "opened",
            "ann@x.org",
            "m1",
            r#", "ip": "203.0.113.9", "user_agent": "canary-agent""#,
        ),
        event(
            "bounced",
            "ann@x.org",
            "m1",
            r#", "class": "hard", "diagnostic": "550 canary""#,
        ),
        event_at("opened", "ann@x.org", "m1", "", &later()),
    ];
    l.append("t", late).await.unwrap();
    assert!(
        matches!(l.keys().contact("t", &p).unwrap(), KeyState::Erased(_)),
        "no event but a later `sent` makes a key"
    );
    let read = read_all(l).await;
    let ann: Vec<_> = read
        .iter()
        .filter(|r| r.event.envelope.contact == p)
        .collect();
    assert_eq!(ann.len(), 5);
    for r in &ann[2..] {
        assert_eq!(
            r.to_json()["recipient"],
            serde_json::json!({"erased": true})
        );
    }
    assert_eq!(ann[3].to_json()["class"], "hard", "clear fields stay");
    // A new `sent` after the erasure starts a new key; an old event beside
    // it stays unreadable.
    l.append(
        "t",
        vec![
            event(
                "clicked",
                "ann@x.org",
                "m1",
                r#", "url": "https://canary.example/""#,
            ),
            event_at("sent", "ann@x.org", "m3", "", &later()),
        ],
    )
    .await
    .unwrap();
    assert!(matches!(
        l.keys().contact("t", &p).unwrap(),
        KeyState::Live(k) if k.generation == 1
    ));
    let read = read_all(l).await;
    let ann: Vec<_> = read
        .iter()
        .filter(|r| r.event.envelope.contact == p)
        .collect();
    assert_eq!(ann[5].to_json()["url"], serde_json::json!({"erased": true}));
    assert_eq!(ann[6].to_json()["recipient"], "ann@x.org");
    l.log()
        .verify(&TenantFilter::All, 0..u64::MAX, None)
        .await
        .unwrap();
}

// A provider's batch with one bad item keeps the others: the lenient append
// writes the good events and names the bad one by index and rule, quoting
// no value.
#[tokio::test]
async fn a_lenient_append_keeps_the_good_events_and_names_the_bad_one() {
    let f = fixture();
    let l = &f.ledger;
    let batch = vec![
        event("bounced", "ann@x.org", "m1", r#", "class": "hard""#),
        event("bounced", "canary-no-at-sign", "m2", r#", "class": "hard""#),
        event("complained", "bob@x.org", "m3", ""),
    ];
    let strict = l.append("t", batch.clone()).await.unwrap_err();
    assert!(strict.to_string().contains("event 1"), "{strict}");
    assert_eq!(l.log().head(), 0, "the strict append writes nothing");
    let (out, skipped) = l
        .append_valid("t", batch.clone(), &[], |id, _| id)
        .await
        .unwrap();
    assert_eq!(
        out.iter().map(|a| a.id).collect::<Vec<_>>(),
        vec![batch[0].id, batch[2].id]
    );
    assert_eq!(skipped.len(), 1);
    assert_eq!(skipped[0].index, 1);
    assert!(
        !skipped[0].reason.contains("canary"),
        "{}",
        skipped[0].reason
    );
    assert_eq!(l.log().head(), 2);
}
