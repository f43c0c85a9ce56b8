//! Personal fields sealed at rest and opened on read; what a tenant keeps; the frozen payload encoding.

use super::*;

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
