//! Checks of appends: what is written, conflicts, duplicates, atomicity, concurrency and links.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use super::*;

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
    let found = o
        .log
        .find_event("acme", evs[1].time, evs[1].id)
        .await
        .unwrap()
        .unwrap();
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
    // An id with its time is the event's identity: the same id at another
    // time is another event, and each is found by its own time.
    let again = batches[1][0].clone().at(batches[1][0].time + 1);
    let out = o
        .log
        .append_to_stream("t", "s-1", ExpectedVersion::Any, vec![again.clone()])
        .await
        .unwrap();
    assert_eq!((out.positions, out.duplicates), (vec![10_003], 0));
    let found = |time| o.log.find_event("t", time, again.id);
    assert_eq!(found(again.time).await.unwrap().unwrap().position, 10_003);
    assert_eq!(
        found(batches[1][0].time).await.unwrap().unwrap().position,
        first[1][0]
    );
    assert!(found(again.time + 1).await.unwrap().is_none());
    let o = {
        drop(o);
        open(open_store, dir.path(), Durability::Sync)
    };
    let out = o
        .log
        .append_to_stream("t", "s-1", ExpectedVersion::Any, vec![again])
        .await
        .unwrap();
    assert_eq!((out.positions, out.duplicates), (vec![10_003], 1));
    assert_eq!(o.log.head(), 10_004);
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
    assert_eq!(out.positions, vec![10_004]);
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
