//! Erasure: the marker, the chain kept, receipts and request ids, late events and returning contacts.

use super::*;

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
