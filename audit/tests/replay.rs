//! Replay verifies as it reads: a record changed in the middle of a log
//! (past the tail that opening checks) stops it at that position, and the
//! summary says so; an intact log replays whole and verified. On several
//! threads it writes the same bytes as on one, and stops at the same place.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use mailledger_audit::replay::{Replay, ReplayFilter, Shown};
use mailledger_core::crypto::SecretKey;
use mailledger_core::email::{EmailLedger, parse_event};
use mailledger_core::keys::FileKeyStore;
use mailledger_core::{Ledger, LedgerConfig, MemoryStore, Space, Store, WriteBatch};

async fn replay_all(
    email: &Arc<EmailLedger>,
    shown: Shown,
) -> (u64, mailledger_audit::ReplaySummary) {
    let (events, summary, one) = replay_on(email, shown, 1).await;
    for workers in [2, 3] {
        let (e, s, many) = replay_on(email, shown, workers).await;
        assert_eq!((e, &s), (events, &summary), "{workers} threads");
        assert!(one == many, "{workers} threads write the bytes one does");
    }
    (events, summary)
}

async fn replay_on(
    email: &Arc<EmailLedger>,
    shown: Shown,
    workers: usize,
) -> (u64, mailledger_audit::ReplaySummary, Vec<u8>) {
    let mut replay = Replay::new(Arc::clone(email), "acme", ReplayFilter::default(), shown)
        .unwrap()
        .workers(std::num::NonZeroUsize::new(workers).unwrap());
    let mut shown_events = 0;
    let mut lines = Vec::new();
    while let Some(page) = replay.next_page().await.unwrap() {
        lines.extend_from_slice(&page.lines);
        assert_eq!(
            page.lines.iter().filter(|&&b| b == b'\n').count() as u64,
            page.events,
            "one line per event"
        );
        shown_events += page.events;
    }
    (shown_events, replay.summary().clone(), lines)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_record_stops_the_replay_at_its_position() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(MemoryStore::new());
    let log = Ledger::open(Arc::clone(&store), LedgerConfig::new()).unwrap();
    let keys =
        FileKeyStore::open(&dir.path().join("keys"), &SecretKey::generate().unwrap()).unwrap();
    let email = Arc::new(EmailLedger::new(Arc::new(log), Arc::new(keys)));
    for batch in 0..40 {
        let events = (0..10)
            .map(|i| {
                parse_event(&format!(
                    r#"{{"id":"{}","type":"sent","message_id":"m{batch}-{i}","recipient":"c{i}@example.org","occurred_at":"2026-03-01T09:00:00Z"}}"#,
                    uuid::Uuid::new_v4()
                ))
                .unwrap()
            })
            .collect();
        email.append("acme", events).await.unwrap();
    }
    let (events, summary) = replay_all(&email, Shown::Opened).await;
    assert_eq!(events, 400);
    assert!(summary.verified);
    assert_eq!(summary.records, 400);
    assert_eq!(summary.head_position, Some(399));

    // In the second of two threads' runs of the page, then in the first;
    // each change is mended after.
    for bad in [300u64, 100] {
        let key = bad.to_be_bytes();
        let mut frame = store.get(Space::Log, &key).unwrap().unwrap();
        let mid = frame.len() / 2;
        frame[mid] ^= 0x10;
        let mut batch = WriteBatch::new();
        batch.put(Space::Log, key.to_vec(), frame.clone());
        store.commit(batch, true).unwrap();
        let (events, summary) = replay_all(&email, Shown::Raw).await;
        assert!(!summary.verified);
        assert_eq!(summary.first_bad_position, Some(bad));
        assert_eq!(summary.records, bad, "the records before it, verified");
        assert_eq!(events, bad, "those shown; nothing past the bad record");
        frame[mid] ^= 0x10;
        let mut batch = WriteBatch::new();
        batch.put(Space::Log, key.to_vec(), frame);
        store.commit(batch, true).unwrap();
    }
}
