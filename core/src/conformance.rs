//! The conformance suite every backend runs from its own tests, through
//! [`conformance_tests!`](crate::conformance_tests).
//!
//! A backend provides one function that opens (or reopens) its store in a
//! directory; each check below gets a fresh directory, and checks that
//! reopen call the function again on the same one after dropping the log.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};

use uuid::Uuid;

use crate::residency::Jurisdiction;
use crate::{
    Direction, Durability, Error, EventLog, ExpectedVersion, Ledger, LedgerConfig, MemoryStore,
    NewEvent, Space, Store, StreamAppend, TenantFilter, WriteBatch, codec,
};

/// Opens the backend's store kept in a directory, creating it when empty.
pub type OpenStore = fn(&Path) -> crate::Result<Arc<dyn Store>>;

/// The in-memory store as an [`OpenStore`]: the same directory gives back
/// the same store, so "reopen" keeps data for the life of the process.
pub fn open_memory(dir: &Path) -> crate::Result<Arc<dyn Store>> {
    static STORES: OnceLock<Mutex<HashMap<std::path::PathBuf, Arc<MemoryStore>>>> = OnceLock::new();
    let mut map = STORES.get_or_init(Default::default).lock().unwrap();
    let store = map.entry(dir.to_path_buf()).or_default().clone();
    Ok(store)
}

/// A log and the raw store under it.
pub struct Opened {
    pub log: Arc<dyn EventLog>,
    pub store: Arc<dyn Store>,
}

pub fn open(open: OpenStore, dir: &Path, durability: Durability) -> Opened {
    let store = open(dir).expect("open store");
    let log = Ledger::open(store.clone(), LedgerConfig::new().durability(durability))
        .expect("open ledger");
    Opened {
        log: Arc::new(log),
        store,
    }
}

fn ev(ty: &str, payload: &str) -> NewEvent {
    NewEvent::new(Uuid::now_v7(), ty, payload.as_bytes().to_vec()).with_metadata(b"m".to_vec())
}

fn events(n: usize) -> Vec<NewEvent> {
    (0..n)
        .map(|i| ev("sent", &format!("{{\"i\":{i}}}")))
        .collect()
}

pub async fn append_then_read_returns_what_was_written(open_store: OpenStore) {
    let dir = tempfile::tempdir().unwrap();
    let o = open(open_store, dir.path(), Durability::Sync);
    let evs = events(3);
    let out = o
        .log
        .append_to_stream("acme", "message-1", ExpectedVersion::NoStream, evs.clone())
        .await
        .unwrap();
    assert_eq!(out.positions, vec![0, 1, 2]);
    assert_eq!(out.stream_version, Some(2));
    assert_eq!(out.duplicates, 0);
    assert_eq!(o.log.head(), 3);
    let read = o
        .log
        .read_stream("acme", "message-1", 0, 100)
        .await
        .unwrap();
    assert_eq!(read.len(), 3);
    for (i, r) in read.iter().enumerate() {
        assert_eq!(r.event_id, evs[i].id);
        assert_eq!(r.payload, evs[i].payload);
        assert_eq!(r.metadata, b"m");
        assert_eq!(r.event_type, "sent");
        assert_eq!(r.tenant, "acme");
        assert_eq!(r.stream, "message-1");
        assert_eq!(r.stream_version, i as u64);
        assert_eq!(r.position, i as u64);
        assert!(r.recorded_at_micros > 0);
    }
    assert_eq!(read[1].prev_hash, read[0].hash);
    let tail = o
        .log
        .read_stream("acme", "message-1", 1, 100)
        .await
        .unwrap();
    assert_eq!(
        tail.iter().map(|r| r.stream_version).collect::<Vec<_>>(),
        vec![1, 2]
    );
    let bounded = o.log.read_stream("acme", "message-1", 0, 2).await.unwrap();
    assert_eq!(bounded.len(), 2);
    assert!(
        o.log
            .read_stream("acme", "message-2", 0, 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        o.log
            .read_stream("other", "message-1", 0, 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        o.log.stream_version("acme", "message-1").await.unwrap(),
        Some(2)
    );
    assert_eq!(
        o.log.stream_version("acme", "message-2").await.unwrap(),
        None
    );
    let found = o.log.find_event("acme", evs[1].id).await.unwrap().unwrap();
    assert_eq!(found.position, 1);
}

pub async fn wrong_expected_version_is_a_conflict_and_writes_nothing(open_store: OpenStore) {
    let dir = tempfile::tempdir().unwrap();
    let o = open(open_store, dir.path(), Durability::Sync);
    o.log
        .append_to_stream("t", "s", ExpectedVersion::NoStream, events(2))
        .await
        .unwrap();
    for expected in [
        ExpectedVersion::NoStream,
        ExpectedVersion::Exact(0),
        ExpectedVersion::Exact(5),
    ] {
        let err = o
            .log
            .append_to_stream("t", "s", expected, events(1))
            .await
            .unwrap_err();
        match err {
            Error::WrongExpectedVersion {
                stream,
                expected: e,
                actual,
            } => {
                assert_eq!(stream, "s");
                assert_eq!(e, expected);
                assert_eq!(actual, Some(1));
            }
            other => panic!("expected a conflict, got {other}"),
        }
        assert!(err_kind_is_conflict(expected, &o).await);
    }
    assert_eq!(o.log.head(), 2);
    let err = o
        .log
        .append_to_stream("t", "empty", ExpectedVersion::Exact(0), events(1))
        .await
        .unwrap_err();
    assert!(matches!(
        err,
        Error::WrongExpectedVersion { actual: None, .. }
    ));
    o.log
        .append_to_stream("t", "s", ExpectedVersion::Exact(1), events(1))
        .await
        .unwrap();
    o.log
        .append_to_stream("t", "s", ExpectedVersion::Any, events(1))
        .await
        .unwrap();
    assert_eq!(o.log.stream_version("t", "s").await.unwrap(), Some(3));
    assert_eq!(o.log.head(), 4);
}

async fn err_kind_is_conflict(expected: ExpectedVersion, o: &Opened) -> bool {
    o.log
        .append_to_stream("t", "s", expected, events(1))
        .await
        .unwrap_err()
        .kind()
        == crate::ErrorKind::Conflict
}

pub async fn duplicate_ids_return_original_positions_across_reopen(open_store: OpenStore) {
    let dir = tempfile::tempdir().unwrap();
    let batches: Vec<Vec<NewEvent>> = (0..10).map(|_| events(1000)).collect();
    let mut first = Vec::new();
    {
        let o = open(open_store, dir.path(), Durability::Sync);
        for (i, b) in batches.iter().enumerate() {
            let out = o
                .log
                .append_to_stream("t", &format!("s-{i}"), ExpectedVersion::NoStream, b.clone())
                .await
                .unwrap();
            first.push(out.positions);
        }
        assert_eq!(o.log.head(), 10_000);
        // The same ids again, in the same process, under any expectation.
        for (i, b) in batches.iter().enumerate() {
            let out = o
                .log
                .append_to_stream("t", &format!("s-{i}"), ExpectedVersion::NoStream, b.clone())
                .await
                .unwrap();
            assert_eq!(out.positions, first[i]);
            assert_eq!(out.duplicates, 1000);
        }
        assert_eq!(o.log.head(), 10_000);
    }
    let o = open(open_store, dir.path(), Durability::Sync);
    assert_eq!(o.log.head(), 10_000);
    for (i, b) in batches.iter().enumerate() {
        let out = o
            .log
            .append_to_stream("t", &format!("s-{i}"), ExpectedVersion::Exact(3), b.clone())
            .await
            .unwrap();
        assert_eq!(out.positions, first[i]);
    }
    assert_eq!(o.log.head(), 10_000);
    // Duplicates mixed with new events: only the new ones are written.
    let mut mixed = vec![batches[0][0].clone()];
    mixed.extend(events(2));
    let out = o
        .log
        .append_to_stream("t", "s-0", ExpectedVersion::Exact(999), mixed.clone())
        .await
        .unwrap();
    assert_eq!(out.positions, vec![first[0][0], 10_000, 10_001]);
    assert_eq!(out.duplicates, 1);
    // The same id twice in one batch is one event.
    let e = ev("sent", "{}");
    let out = o
        .log
        .append_to_stream("t", "s-x", ExpectedVersion::Any, vec![e.clone(), e])
        .await
        .unwrap();
    assert_eq!(out.positions, vec![10_002, 10_002]);
    assert_eq!(o.log.head(), 10_003);
    // Another tenant's id space is its own.
    let out = o
        .log
        .append_to_stream(
            "u",
            "s-0",
            ExpectedVersion::Any,
            vec![batches[0][0].clone()],
        )
        .await
        .unwrap();
    assert_eq!(out.positions, vec![10_003]);
    o.log
        .verify(&TenantFilter::All, 0..u64::MAX, None)
        .await
        .unwrap();
}

pub async fn a_failed_append_writes_nothing_of_its_batch(open_store: OpenStore) {
    let dir = tempfile::tempdir().unwrap();
    let o = open(open_store, dir.path(), Durability::Sync);
    o.log
        .append_to_stream("t", "b", ExpectedVersion::Any, events(1))
        .await
        .unwrap();
    let batch = vec![
        StreamAppend::new("a", ExpectedVersion::NoStream, events(5)),
        StreamAppend::new("b", ExpectedVersion::NoStream, events(1)),
    ];
    let err = o.log.append("t", batch).await.unwrap_err();
    assert!(matches!(err, Error::WrongExpectedVersion { .. }));
    assert_eq!(o.log.head(), 1);
    assert!(o.log.read_stream("t", "a", 0, 10).await.unwrap().is_empty());
    let mut bad = events(3);
    bad[2].event_type = "has space".into();
    let err = o
        .log
        .append_to_stream("t", "a", ExpectedVersion::Any, bad)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::InvalidInput(_)));
    let mut big = events(2);
    big[1].payload = vec![0; crate::MAX_EVENT_BYTES + 1];
    assert!(
        o.log
            .append_to_stream("t", "a", ExpectedVersion::Any, big)
            .await
            .is_err()
    );
    for (tenant, stream) in [("Bad Tenant", "a"), ("t", ""), ("t", "a b"), ("", "a")] {
        let err = o
            .log
            .append_to_stream(tenant, stream, ExpectedVersion::Any, events(1))
            .await
            .unwrap_err();
        assert_eq!(err.kind(), crate::ErrorKind::InvalidInput);
    }
    assert_eq!(o.log.head(), 1);
    // Two streams in one append both land, in order.
    let out = o
        .log
        .append(
            "t",
            vec![
                StreamAppend::new("a", ExpectedVersion::NoStream, events(2)),
                StreamAppend::new("b", ExpectedVersion::Exact(0), events(1)),
            ],
        )
        .await
        .unwrap();
    assert_eq!(out[0].positions, vec![1, 2]);
    assert_eq!(out[1].positions, vec![3]);
    assert_eq!(out[1].stream_version, Some(1));
}

pub async fn reads_of_the_whole_log_page_both_ways_and_filter_tenants(open_store: OpenStore) {
    let dir = tempfile::tempdir().unwrap();
    let o = open(open_store, dir.path(), Durability::Sync);
    for i in 0..30 {
        let tenant = if i % 3 == 0 { "a" } else { "b" };
        o.log
            .append_to_stream(tenant, "s", ExpectedVersion::Any, events(1))
            .await
            .unwrap();
    }
    let all = o
        .log
        .read_all(&TenantFilter::All, 0, Direction::Forward, 1000)
        .await
        .unwrap();
    assert_eq!(
        all.records.iter().map(|r| r.position).collect::<Vec<_>>(),
        (0..30).collect::<Vec<_>>()
    );
    assert_eq!(all.next, Some(30));
    // Forward in pages of 7 for tenant a.
    let only_a = TenantFilter::Only("a".into());
    let mut got = Vec::new();
    let mut from = 0;
    loop {
        let page = o
            .log
            .read_all(&only_a, from, Direction::Forward, 7)
            .await
            .unwrap();
        assert!(page.records.len() <= 7);
        got.extend(page.records.iter().map(|r| r.position));
        let next = page.next.unwrap();
        if page.records.is_empty() || next >= 30 {
            break;
        }
        from = next;
    }
    assert_eq!(got, (0..30).filter(|i| i % 3 == 0).collect::<Vec<_>>());
    // Backward from beyond the head, in pages of 4.
    let mut back = Vec::new();
    let mut from = Some(u64::MAX);
    while let Some(f) = from {
        let page = o
            .log
            .read_all(&TenantFilter::All, f, Direction::Backward, 4)
            .await
            .unwrap();
        back.extend(page.records.iter().map(|r| r.position));
        from = page.next;
    }
    assert_eq!(back, (0..30).rev().collect::<Vec<_>>());
    let none = o
        .log
        .read_all(&TenantFilter::Only("c".into()), 0, Direction::Forward, 10)
        .await
        .unwrap();
    assert!(none.records.is_empty());
}

pub async fn subscriptions_catch_up_then_go_live_without_gap_or_duplicate(open_store: OpenStore) {
    let dir = tempfile::tempdir().unwrap();
    let o = open(open_store, dir.path(), Durability::Sync);
    for _ in 0..50 {
        o.log
            .append_to_stream("t", "s", ExpectedVersion::Any, events(1))
            .await
            .unwrap();
    }
    let mut sub = o.log.subscribe(TenantFilter::All, 10);
    let mut only_u = o.log.subscribe(TenantFilter::Only("u".into()), 0);
    let writer = {
        let log = o.log.clone();
        tokio::spawn(async move {
            for i in 0..60 {
                let tenant = if i % 2 == 0 { "t" } else { "u" };
                log.append_to_stream(tenant, "s", ExpectedVersion::Any, events(1))
                    .await
                    .unwrap();
                if i % 10 == 0 {
                    tokio::task::yield_now().await;
                }
            }
        })
    };
    let mut seen = Vec::new();
    while seen.len() < 100 {
        let r = tokio::time::timeout(std::time::Duration::from_secs(20), sub.next())
            .await
            .expect("subscription stalled")
            .unwrap();
        seen.push(r.position);
    }
    writer.await.unwrap();
    assert_eq!(seen, (10..110).collect::<Vec<_>>());
    let mut u = Vec::new();
    while u.len() < 30 {
        let r = only_u.next().await.unwrap();
        assert_eq!(r.tenant, "u");
        u.push(r.position);
    }
    assert!(u.windows(2).all(|w| w[0] < w[1]));
    // Nothing more arrives until something is appended.
    assert!(
        tokio::time::timeout(std::time::Duration::from_millis(50), sub.next())
            .await
            .is_err()
    );
}

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

fn put_raw(store: &Arc<dyn Store>, position: u64, frame: Vec<u8>) {
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

/// An event id and a stream name belong to their tenant: the same id in
/// another tenant is a new event, not a duplicate, and the same stream name
/// there starts at version 0; also when both tenants' appends share one
/// group, and after a reopen (the writer's caches cold).
pub async fn event_ids_and_streams_are_the_tenant_s_own(open_store: OpenStore) {
    // One event of id `id`, appended to `tenant`'s stream `stream`.
    async fn one(
        log: &dyn EventLog,
        tenant: &str,
        stream: &str,
        expected: ExpectedVersion,
        id: Uuid,
    ) -> crate::AppendOutcome {
        log.append_to_stream(
            tenant,
            stream,
            expected,
            vec![NewEvent::new(id, "sent", b"{}".to_vec())],
        )
        .await
        .unwrap()
    }
    let dir = tempfile::tempdir().unwrap();
    let id = Uuid::now_v7();
    let a_first = {
        let o = open(open_store, dir.path(), Durability::Sync);
        let log = o.log.as_ref();
        let a = one(log, "a", "s", ExpectedVersion::NoStream, id).await;
        let b = one(log, "b", "s", ExpectedVersion::NoStream, id).await;
        assert_eq!(
            (b.duplicates, b.stream_version),
            (0, Some(0)),
            "b's id is b's"
        );
        assert_ne!(a.positions, b.positions);
        // Both tenants in flight at once, with one shared id.
        let shared = Uuid::now_v7();
        let (x, y) = tokio::join!(
            one(log, "a", "t", ExpectedVersion::NoStream, shared),
            one(log, "b", "t", ExpectedVersion::NoStream, shared),
        );
        assert_eq!((x.duplicates, y.duplicates), (0, 0));
        assert_ne!(x.positions, y.positions);
        a.positions
    };
    let o = open(open_store, dir.path(), Durability::Sync);
    let log = o.log.as_ref();
    let retried = one(log, "a", "s", ExpectedVersion::Any, id).await;
    assert_eq!((retried.duplicates, retried.positions), (1, a_first));
    assert_eq!(log.stream_version("b", "s").await.unwrap(), Some(0));
    let c = one(log, "c", "s", ExpectedVersion::NoStream, id).await;
    assert_eq!(
        (c.duplicates, c.stream_version),
        (0, Some(0)),
        "c's id is c's"
    );
    assert_eq!(log.head(), 5);
}

pub async fn tenants_chain_and_read_apart(open_store: OpenStore) {
    let dir = tempfile::tempdir().unwrap();
    let o = open(open_store, dir.path(), Durability::Sync);
    for i in 0..12 {
        let tenant = ["a", "b", "c"][i % 3];
        o.log
            .append_to_stream(tenant, "s", ExpectedVersion::Any, events(1))
            .await
            .unwrap();
    }
    let all = o
        .log
        .read_all(&TenantFilter::All, 0, Direction::Forward, 100)
        .await
        .unwrap();
    let mut last: HashMap<&str, [u8; 32]> = HashMap::new();
    for r in &all.records {
        let prev = last
            .get(r.tenant.as_str())
            .copied()
            .unwrap_or(crate::GENESIS_HASH);
        assert_eq!(
            r.prev_hash, prev,
            "record {} chains to its own tenant",
            r.position
        );
        last.insert(&r.tenant, r.hash);
    }
    for t in ["a", "b", "c"] {
        let f = TenantFilter::Only(t.into());
        let report = o.log.verify(&f, 0..u64::MAX, None).await.unwrap();
        assert_eq!(report.records, 4);
        assert_eq!(report.tenants, 1);
    }
    // Corrupting tenant b's record leaves a's and c's verification intact.
    let b_pos = all
        .records
        .iter()
        .find(|r| r.tenant == "b")
        .unwrap()
        .position;
    let mut frame = o
        .store
        .get(Space::Log, &b_pos.to_be_bytes())
        .unwrap()
        .unwrap();
    frame[12] ^= 1;
    put_raw(&o.store, b_pos, frame);
    assert!(
        o.log
            .verify(&TenantFilter::Only("b".into()), 0..u64::MAX, None)
            .await
            .is_err()
    );
    let ev_a = all.records.iter().find(|r| r.tenant == "a").unwrap();
    assert!(
        o.log
            .find_event("b", ev_a.event_id)
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        o.log
            .find_event("a", ev_a.event_id)
            .await
            .unwrap()
            .is_some()
    );
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

pub async fn eight_concurrent_writers_keep_a_dense_order(open_store: OpenStore) {
    let dir = tempfile::tempdir().unwrap();
    let o = open(open_store, dir.path(), Durability::Sync);
    let mut tasks = Vec::new();
    for w in 0..8 {
        let log = o.log.clone();
        tasks.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            let mut versions: [Option<u64>; 3] = [None; 3];
            for i in 0..50u64 {
                let s = (i % 3) as usize;
                let stream = format!("w{w}-s{s}");
                let expected =
                    versions[s].map_or(ExpectedVersion::NoStream, ExpectedVersion::Exact);
                let batch = events(1 + (i as usize % 4));
                versions[s] = Some(versions[s].map_or(0, |v| v + 1) + batch.len() as u64 - 1);
                ids.extend(batch.iter().map(|e| e.id));
                log.append_to_stream(if w % 2 == 0 { "a" } else { "b" }, &stream, expected, batch)
                    .await
                    .unwrap();
            }
            ids
        }));
    }
    let mut expected_ids = HashSet::new();
    for t in tasks {
        expected_ids.extend(t.await.unwrap());
    }
    let head = o.log.head();
    assert_eq!(head as usize, expected_ids.len());
    let mut positions = Vec::new();
    let mut from = 0;
    let mut versions: HashMap<(String, String), u64> = HashMap::new();
    while from < head {
        let page = o
            .log
            .read_all(&TenantFilter::All, from, Direction::Forward, 500)
            .await
            .unwrap();
        for r in &page.records {
            assert!(expected_ids.remove(&r.event_id));
            let v = versions
                .entry((r.tenant.clone(), r.stream.clone()))
                .or_insert(0);
            assert_eq!(r.stream_version, *v, "stream versions are gapless");
            *v += 1;
            positions.push(r.position);
        }
        from = page.next.unwrap();
    }
    assert!(expected_ids.is_empty());
    assert_eq!(positions, (0..head).collect::<Vec<_>>());
    o.log
        .verify(&TenantFilter::All, 0..u64::MAX, None)
        .await
        .unwrap();
}

pub async fn links_index_an_event_in_further_streams(open_store: OpenStore) {
    let dir = tempfile::tempdir().unwrap();
    let linked = |ty: &str| ev(ty, "{}").with_link("contact-a");
    let first = linked("sent");
    {
        let o = open(open_store, dir.path(), Durability::Sync);
        o.log
            .append_to_stream(
                "t",
                "message-1",
                ExpectedVersion::NoStream,
                vec![first.clone()],
            )
            .await
            .unwrap();
        let out = o
            .log
            .append(
                "t",
                vec![
                    StreamAppend {
                        stream: "message-2".into(),
                        expected: ExpectedVersion::Any,
                        events: vec![linked("sent"), linked("delivered")],
                    },
                    StreamAppend {
                        stream: "contact-a".into(),
                        expected: ExpectedVersion::Any,
                        events: vec![ev("unsubscribed", "{}")],
                    },
                ],
            )
            .await
            .unwrap();
        assert_eq!(
            out[1].stream_version,
            Some(3),
            "direct events follow the links"
        );
        // A retried event adds no second link.
        o.log
            .append_to_stream("t", "message-1", ExpectedVersion::Any, vec![first.clone()])
            .await
            .unwrap();
        let conflict = o
            .log
            .append(
                "t",
                vec![
                    StreamAppend {
                        stream: "message-3".into(),
                        expected: ExpectedVersion::Any,
                        events: vec![linked("sent")],
                    },
                    StreamAppend {
                        stream: "contact-a".into(),
                        expected: ExpectedVersion::Exact(3),
                        events: vec![ev("unsubscribed", "{}")],
                    },
                ],
            )
            .await;
        assert!(matches!(conflict, Err(Error::InvalidInput(_))));
    }
    let o = open(open_store, dir.path(), Durability::Sync);
    assert_eq!(
        o.log.stream_version("t", "contact-a").await.unwrap(),
        Some(3)
    );
    assert_eq!(o.log.stream_version("u", "contact-a").await.unwrap(), None);
    let records = o.log.read_stream("t", "contact-a", 0, 10).await.unwrap();
    let streams: Vec<&str> = records.iter().map(|r| r.stream.as_str()).collect();
    assert_eq!(
        streams,
        ["message-1", "message-2", "message-2", "contact-a"]
    );
    assert_eq!(records[0].event_id, first.id);
    assert_eq!(
        o.log.stream_version("t", "message-2").await.unwrap(),
        Some(1)
    );
    o.log
        .verify(&TenantFilter::All, 0..u64::MAX, None)
        .await
        .unwrap();
}

/// Every record of the log, read forward from position 0.
async fn read_everything(log: &dyn EventLog) -> Vec<crate::Record> {
    let mut out = Vec::new();
    let mut from = 0;
    loop {
        let batch = log
            .read_all(&TenantFilter::All, from, Direction::Forward, 100)
            .await
            .unwrap();
        out.extend(batch.records);
        match batch.next {
            Some(n) if n > from && n < log.head() => from = n,
            _ => return out,
        }
    }
}

/// The stored frame of every position below `head`.
fn frames(store: &Arc<dyn Store>, head: u64) -> Vec<Vec<u8>> {
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

/// Expands to one `#[tokio::test]` per check, for a backend's `OpenStore`.
///
/// `conformance_tests!(open, when = ready)` runs each check only when
/// `ready()` (a `fn() -> bool`) says the backend's service is there, for a
/// backend that needs a server the tests do not start themselves; `ready`
/// says why when it answers no, and decides whether that fails the run.
#[macro_export]
macro_rules! conformance_tests {
    ($open:expr) => {
        $crate::conformance_tests!($open, when = || true);
    };
    ($open:expr, when = $when:expr) => {
        $crate::conformance_tests!(@each $open, $when;
            append_then_read_returns_what_was_written,
            wrong_expected_version_is_a_conflict_and_writes_nothing,
            duplicate_ids_return_original_positions_across_reopen,
            a_failed_append_writes_nothing_of_its_batch,
            reads_of_the_whole_log_page_both_ways_and_filter_tenants,
            subscriptions_catch_up_then_go_live_without_gap_or_duplicate,
            verify_names_the_first_bad_position,
            open_refuses_a_corrupt_tail_and_names_it,
            event_ids_and_streams_are_the_tenant_s_own,
            tenants_chain_and_read_apart,
            reopen_continues_positions_versions_and_chains,
            eight_concurrent_writers_keep_a_dense_order,
            links_index_an_event_in_further_streams,
            no_append_changes_a_record_already_written,
        );
    };
    (@each $open:expr, $when:expr; $($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                if ($when)() {
                    $crate::conformance::$name($open).await;
                }
            }
        )*
    };
}
