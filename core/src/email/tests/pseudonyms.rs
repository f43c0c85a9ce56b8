//! Pseudonyms: one person one pseudonym, tenants apart, case-sensitive local parts, ids scoped to each recipient, addresses refused unechoed.

use super::*;

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
