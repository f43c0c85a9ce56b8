//! Appends: retries append nothing, a bad event writes nothing, a lenient append keeps the good ones.

use super::*;

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
