//! An event's JSON line ([`ReadEvent::write_json`], what a replay writes)
//! is byte for byte the JSON of its `Serialize` impl (what the API and
//! `to_json` give), for every kind of event the traffic model makes, for
//! text that must be escaped and for erased fields.

use super::*;
use crate::traffic::{Traffic, TrafficConfig};

fn assert_same_json(events: &[ReadEvent]) {
    let mut line = Vec::new();
    for e in events {
        line.clear();
        e.write_json(&mut line).unwrap();
        let serde = serde_json::to_vec(e).unwrap();
        assert_eq!(
            String::from_utf8_lossy(&line),
            String::from_utf8_lossy(&serde),
            "position {}",
            e.position
        );
    }
}

#[tokio::test]
async fn the_line_is_the_json_of_every_kind_of_event() {
    let f = fixture();
    let mut traffic = Traffic::new(&TrafficConfig {
        contacts: 300,
        ..TrafficConfig::default()
    });
    for _ in 0..20 {
        let batch = traffic.next_batch(200);
        let events = batch.parsed().unwrap();
        f.ledger.append(&batch.tenant_name, events).await.unwrap();
    }
    let mut read = Vec::new();
    let mut next = 0;
    while next < f.ledger.log().head() {
        let batch = f
            .ledger
            .log()
            .read_all(&TenantFilter::All, next, crate::Direction::Forward, 1000)
            .await
            .unwrap();
        read.extend(
            batch
                .records
                .iter()
                .filter_map(|r| f.ledger.open(r).unwrap()),
        );
        next = batch.next.unwrap();
    }
    assert_eq!(read.len(), 4000);
    let kinds: std::collections::BTreeSet<&str> =
        read.iter().map(|e| e.event.body.event_type()).collect();
    assert!(kinds.len() >= 5, "the model's kinds: {kinds:?}");
    assert_same_json(&read);
}

#[tokio::test]
async fn text_to_escape_and_erased_fields_read_the_same() {
    let f = fixture();
    let l = &f.ledger;
    let odd = r#"quote \" back\\slash \u0001 tab\t ünïcode ✉ \u2028"#;
    l.append(
        "t",
        vec![
            event(
                "sent",
                "ann@x.org",
                "m\\\"1",
                &format!(r#", "campaign": "{odd}", "tags": ["{odd}", "plain"]"#),
            ),
            event(
                "bounced",
                "ann@x.org",
                "m2",
                &format!(r#", "class": "hard", "diagnostic": "{odd}""#),
            ),
            event("delivered", "bob@x.org", "m3", ""),
        ],
    )
    .await
    .unwrap();
    l.erase(
        "t",
        ContactRef::Address(crate::crypto::Personal::new("ann@x.org")),
        "req-1",
    )
    .await
    .unwrap();
    let read = read_all(l).await;
    assert!(read.iter().any(ReadEvent::is_erased), "an erased field");
    let unescaped = serde_json::to_string(&read[2]).unwrap();
    assert!(unescaped.contains("bob@x.org"));
    assert_same_json(&read);
    // And escaped text did need escaping: the sent event, read before the
    // erasure, keeps it.
    let before = {
        let g = fixture();
        g.ledger
            .append(
                "t",
                vec![event(
                    "sent",
                    "ann@x.org",
                    "m1",
                    &format!(r#", "campaign": "{odd}""#),
                )],
            )
            .await
            .unwrap();
        read_all(&g.ledger).await
    };
    let text = serde_json::to_string(&before[0]).unwrap();
    assert!(
        text.contains(r#"quote \""#) && text.contains(r"\u0001"),
        "{text}"
    );
    assert_same_json(&before);
}
