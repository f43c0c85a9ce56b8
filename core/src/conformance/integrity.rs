//! Checks of integrity: verification, a corrupt tail, reopening, and records never changed.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use super::*;

pub async fn verify_names_the_first_bad_position(open_store: OpenStore) {
    let dir = tempfile::tempdir().unwrap();
    let o = open(open_store, dir.path(), Durability::Sync);
    for _ in 0..20 {
        o.log
            .append_to_stream("t", "s", ExpectedVersion::Any, events(1))
            .await
            .unwrap();
    }
    let report = o
        .log
        .verify(&TenantFilter::All, 0..u64::MAX, None)
        .await
        .unwrap();
    assert_eq!(report.records, 20);
    assert!(report.anchored);
    let key = 7u64.to_be_bytes();
    let frame = o.store.get(Space::Log, &key).unwrap().unwrap();
    // One flipped byte anywhere in the record is found at its position.
    for i in [0, 3, 10, frame.len() / 2, frame.len() - 1] {
        let mut bad = frame.clone();
        bad[i] ^= 0x40;
        put_raw(&o.store, 7, bad);
        match o.log.verify(&TenantFilter::All, 0..u64::MAX, None).await {
            Err(Error::Corrupt { position, .. }) => assert_eq!(position, 7, "byte {i}"),
            other => panic!("flip at byte {i}: {other:?}"),
        }
    }
    // A record rewritten with a fresh, self-consistent hash breaks the chain:
    // with another payload, or claiming another jurisdiction.
    let r = codec::decode(&frame).unwrap();
    assert_eq!(r.jurisdiction, Some(Jurisdiction::EU));
    let fields = codec::RecordFields {
        position: 7,
        tenant: r.tenant,
        stream: r.stream,
        stream_version: r.stream_version,
        event_id: r.event_id,
        recorded_at_micros: r.recorded_at_micros,
        event_type: r.event_type,
        payload: r.payload,
        metadata: r.metadata,
        prev_hash: r.prev_hash,
        jurisdiction: Jurisdiction::EU,
    };
    let forgeries = [
        codec::RecordFields {
            payload: b"{\"forged\":true}",
            ..fields
        },
        codec::RecordFields {
            jurisdiction: "US".parse().unwrap(),
            ..fields
        },
    ];
    for forgery in &forgeries {
        let (forged, _) = codec::encode(forgery).unwrap();
        put_raw(&o.store, 7, forged);
        match o.log.verify(&TenantFilter::All, 0..u64::MAX, None).await {
            Err(Error::Corrupt { position, reason }) => {
                assert_eq!(position, 8, "{reason}");
                assert!(reason.contains("position 7"), "{reason}");
            }
            other => panic!("forged record went unseen: {other:?}"),
        }
    }
    put_raw(&o.store, 7, frame);
    o.log
        .verify(&TenantFilter::All, 0..u64::MAX, None)
        .await
        .unwrap();
}

/// A read of frames gives each record's bytes as stored, so a changed
/// record fails its check ([`codec::decode_checked`]) at its place; the
/// trait's default (through a [`crate::Window`] over the same records, one
/// of them changed in memory) fails it the same way.
pub async fn frames_read_are_the_bytes_stored(open_store: OpenStore) {
    let dir = tempfile::tempdir().unwrap();
    let o = open(open_store, dir.path(), Durability::Sync);
    for i in 0..20 {
        let tenant = if i % 2 == 0 { "t" } else { "u" };
        o.log
            .append_to_stream(tenant, "s", ExpectedVersion::Any, events(1))
            .await
            .unwrap();
    }
    let t = TenantFilter::Only("t".into());
    let checked = |frames: &crate::FrameBatch| -> Vec<(u64, bool)> {
        (0..frames.len())
            .map(|i| {
                let (r, ok) = codec::decode_checked(frames.frame(i).unwrap()).unwrap();
                assert_eq!(Some(r.position), frames.position(i));
                (r.position, ok)
            })
            .collect()
    };
    let whole = o.log.read_frames(&t, 0, 100).await.unwrap();
    for i in 0..whole.len() {
        let p = whole.position(i).unwrap();
        let stored = o.store.get(Space::Log, &p.to_be_bytes()).unwrap().unwrap();
        assert_eq!(whole.frame(i), Some(&stored[..]), "the frame of {p}");
    }
    let tens: Vec<(u64, bool)> = (0..10).map(|i| (2 * i, true)).collect();
    assert_eq!(checked(&whole), tens);
    // Paged: from a position, at most `max`.
    let page = o.log.read_frames(&t, 5, 3).await.unwrap();
    assert_eq!(checked(&page), [(6, true), (8, true), (10, true)]);
    assert_eq!(page.next, Some(11));

    let all = o
        .log
        .read_all(&TenantFilter::All, 0, Direction::Forward, 100)
        .await
        .unwrap()
        .records;
    let frame = o
        .store
        .get(Space::Log, &8u64.to_be_bytes())
        .unwrap()
        .unwrap();
    let payload_at = frame
        .windows(4)
        .position(|w| w == b"{\"i\"")
        .expect("the payload is in the frame");
    let mut changed = frame.clone();
    changed[payload_at + 1] ^= 0x01;
    put_raw(&o.store, 8, changed);
    let mut seen = all.clone();
    seen[8].payload[1] ^= 0x01;
    let window: Arc<dyn EventLog> = Arc::new(crate::Window::new(Arc::clone(&o.log), 20, seen));
    let mut expected = tens.clone();
    expected[4].1 = false;
    for (read_by, log) in [("the log", &o.log), ("the default", &window)] {
        let frames = log.read_frames(&t, 0, 100).await.unwrap();
        assert_eq!(checked(&frames), expected, "{read_by}");
        // Another tenant's frames do not hold it.
        let u = log
            .read_frames(&TenantFilter::Only("u".into()), 0, 100)
            .await
            .unwrap();
        assert!(
            checked(&u).iter().all(|(p, ok)| p % 2 == 1 && *ok),
            "{read_by}"
        );
    }
    put_raw(&o.store, 8, frame);
}

pub(super) fn put_raw(store: &Arc<dyn Store>, position: u64, frame: Vec<u8>) {
    let mut b = WriteBatch::new();
    b.put(Space::Log, position.to_be_bytes().to_vec(), frame);
    store.commit(b, true).unwrap();
}

pub async fn open_refuses_a_corrupt_tail_and_names_it(open_store: OpenStore) {
    let dir = tempfile::tempdir().unwrap();
    {
        let o = open(open_store, dir.path(), Durability::Sync);
        o.log
            .append_to_stream("t", "s", ExpectedVersion::Any, events(10))
            .await
            .unwrap();
        let mut frame = o
            .store
            .get(Space::Log, &9u64.to_be_bytes())
            .unwrap()
            .unwrap();
        frame[20] ^= 1;
        put_raw(&o.store, 9, frame);
    }
    let store = open_store(dir.path()).unwrap();
    match Ledger::open(store, LedgerConfig::new()) {
        Err(Error::Corrupt { position, .. }) => assert_eq!(position, 9),
        other => panic!("a corrupt tail opened: {other:?}"),
    }
}

pub async fn reopen_continues_positions_versions_and_chains(open_store: OpenStore) {
    let dir = tempfile::tempdir().unwrap();
    {
        let o = open(open_store, dir.path(), Durability::Buffered);
        o.log
            .append_to_stream("t", "s", ExpectedVersion::NoStream, events(5))
            .await
            .unwrap();
        o.log
            .append_to_stream("u", "s", ExpectedVersion::NoStream, events(2))
            .await
            .unwrap();
        o.log.sync().await.unwrap();
    }
    let o = open(open_store, dir.path(), Durability::Sync);
    assert_eq!(o.log.head(), 7);
    let out = o
        .log
        .append_to_stream("t", "s", ExpectedVersion::Exact(4), events(1))
        .await
        .unwrap();
    assert_eq!(out.positions, vec![7]);
    assert_eq!(out.stream_version, Some(5));
    let report = o
        .log
        .verify(&TenantFilter::All, 0..u64::MAX, None)
        .await
        .unwrap();
    assert_eq!(report.records, 8);
    assert_eq!(report.tenants, 2);
}

/// The stored frame of every position below `head`.
pub(super) fn frames(store: &Arc<dyn Store>, head: u64) -> Vec<Vec<u8>> {
    (0..head)
        .map(|p| {
            store
                .get(Space::Log, &p.to_be_bytes())
                .unwrap()
                .expect("a frame at every position below the head")
        })
        .collect()
}

pub async fn no_append_changes_a_record_already_written(open_store: OpenStore) {
    let dir = tempfile::tempdir().unwrap();
    let first = events(3);
    let (before, raw) = {
        let o = open(open_store, dir.path(), Durability::Sync);
        o.log
            .append_to_stream("t", "message-1", ExpectedVersion::NoStream, first.clone())
            .await
            .unwrap();
        o.log
            .append_to_stream("u", "message-1", ExpectedVersion::NoStream, events(2))
            .await
            .unwrap();
        let before = read_everything(o.log.as_ref()).await;
        assert_eq!(before.len(), 5);
        let raw = frames(&o.store, 5);
        // The same ids with other contents: answered with the original
        // positions, the records left as they were.
        let changed: Vec<NewEvent> = first
            .iter()
            .map(|e| NewEvent::new(e.id, "bounced", b"{\"changed\":true}".to_vec()))
            .collect();
        let out = o
            .log
            .append_to_stream("t", "message-1", ExpectedVersion::Any, changed.clone())
            .await
            .unwrap();
        assert_eq!(out.positions, vec![0, 1, 2]);
        let out = o
            .log
            .append_to_stream("t", "message-9", ExpectedVersion::Any, changed)
            .await
            .unwrap();
        assert_eq!(out.positions, vec![0, 1, 2]);
        // Conflicts write nothing, anywhere.
        for expected in [ExpectedVersion::NoStream, ExpectedVersion::Exact(0)] {
            assert!(
                o.log
                    .append_to_stream("t", "message-1", expected, events(2))
                    .await
                    .is_err()
            );
        }
        // New events go after, never over.
        let out = o
            .log
            .append_to_stream("t", "message-1", ExpectedVersion::Exact(2), events(2))
            .await
            .unwrap();
        assert_eq!(out.positions, vec![5, 6]);
        (before, raw)
    };
    let o = open(open_store, dir.path(), Durability::Sync);
    o.log
        .append_to_stream("t", "message-2", ExpectedVersion::Any, events(1))
        .await
        .unwrap();
    let after = read_everything(o.log.as_ref()).await;
    assert_eq!(after.len(), 8);
    assert_eq!(
        after[..5],
        before[..],
        "records already written are unchanged"
    );
    assert_eq!(frames(&o.store, 5), raw, "their stored bytes too");
    o.log
        .verify(&TenantFilter::All, 0..u64::MAX, None)
        .await
        .unwrap();
}
