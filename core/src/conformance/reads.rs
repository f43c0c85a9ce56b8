//! Checks of reads: the whole log both ways, subscriptions, and tenants kept apart.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use super::*;

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

/// An event id and a stream name belong to their tenant: the same id in
/// another tenant is a new event, not a duplicate, and the same stream name
/// there starts at version 0; also when both tenants' appends share one
/// group, and after a reopen (the writer's caches cold). A stream's first
/// position is found in its own tenant.
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
    assert_eq!((retried.duplicates, &retried.positions), (1, &a_first));
    assert_eq!(log.stream_version("b", "s").await.unwrap(), Some(0));
    let c = one(log, "c", "s", ExpectedVersion::NoStream, id).await;
    assert_eq!(
        (c.duplicates, c.stream_version),
        (0, Some(0)),
        "c's id is c's"
    );
    assert_eq!(log.head(), 5);
    // A stream's first position is its tenant's; an unknown stream has none.
    let firsts = log
        .first_positions(vec![
            ("a".into(), "s".into()),
            ("c".into(), "s".into()),
            ("a".into(), "none".into()),
            ("d".into(), "s".into()),
        ])
        .await
        .unwrap();
    assert_eq!(
        firsts,
        vec![Some(a_first[0]), Some(c.positions[0]), None, None]
    );
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
    // Each chain head names its tenant's last record, its hash and count.
    let heads = o.log.chain_heads().await.unwrap();
    assert_eq!(heads.len(), 3);
    for t in ["a", "b", "c"] {
        let mine: Vec<_> = all.records.iter().filter(|r| r.tenant == t).collect();
        let last = mine.last().unwrap();
        assert_eq!(
            heads[t],
            crate::ChainHead {
                last_position: last.position,
                hash: last.hash,
                count: mine.len() as u64,
            },
            "tenant {t}'s chain head"
        );
    }
    // Records read by position are the tenant's own, in the order asked:
    // another tenant's, and a position past the head, read as missing.
    let mine: Vec<&crate::Record> = all
        .records
        .iter()
        .filter(|r| r.tenant == "a")
        .rev()
        .collect();
    let mut asked: Vec<u64> = mine.iter().map(|r| r.position).collect();
    asked.insert(
        1,
        all.records
            .iter()
            .find(|r| r.tenant == "b")
            .unwrap()
            .position,
    );
    asked.push(o.log.head() + 3);
    let read = o.log.read_positions("a", asked.clone()).await.unwrap();
    assert_eq!(read.iter().collect::<Vec<_>>(), mine);
    // Through a window, as the audit's state as of a moment reads: only
    // the positions before its cut.
    let cut = mine[mine.len() / 2].position;
    let window = crate::Window::new(Arc::clone(&o.log), cut, all.records.clone());
    let before: Vec<&crate::Record> = mine.iter().copied().filter(|r| r.position < cut).collect();
    assert!(!before.is_empty() && before.len() < mine.len());
    let read = window.read_positions("a", asked).await.unwrap();
    assert_eq!(read.iter().collect::<Vec<_>>(), before);
    let too_many = vec![0; crate::log::MAX_READ_BATCH + 1];
    assert!(matches!(
        o.log.read_positions("a", too_many).await,
        Err(crate::Error::InvalidInput(_))
    ));
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
            .find_event("b", crate::time_of_id(ev_a.event_id), ev_a.event_id)
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        o.log
            .find_event("a", crate::time_of_id(ev_a.event_id), ev_a.event_id)
            .await
            .unwrap()
            .is_some()
    );
}

/// Every record of the log, read forward from position 0.
pub(super) async fn read_everything(log: &dyn EventLog) -> Vec<crate::Record> {
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
