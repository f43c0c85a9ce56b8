//! The delivery log: rows keyed by a message's first event, status and timeline, filtered listings with cursors.

use crate::*;

/// Each message's state is keyed by its first event: found in the batch
/// when the message opens there, otherwise looked up in the log; the same
/// either way, so batching cannot change the state.
#[tokio::test]
async fn each_message_is_keyed_by_its_first_event_wherever_the_batch_starts() {
    let f = fx();
    let (a, b) = ("a@example.org", "b@example.org");
    append(&f, "t", &[ev("sent", a, Some("m1"), T0, json!({}))]).await;
    append(
        &f,
        "t",
        &[
            ev("sent", b, Some("m2"), T0 + SEC, json!({})),
            ev("delivered", a, Some("m1"), T0 + 2 * SEC, json!({})),
            ev("delivered", b, Some("m2"), T0 + 3 * SEC, json!({})),
        ],
    )
    .await;
    let records = f
        .log
        .read_all(&TenantFilter::All, 0, Direction::Forward, 100)
        .await
        .unwrap()
        .records;
    let opened: std::collections::HashMap<&str, u64> = records
        .iter()
        .filter(|r| r.stream_version == 0)
        .map(|r| (r.stream.as_str(), r.position))
        .collect();
    let mut looked_up = 0;
    let warm = Arc::new(MessageStarts::new());
    Input::decode_all(f.log.as_ref(), records.clone(), &warm)
        .await
        .unwrap();
    for start in 0..records.len() {
        let batch = records[start..].to_vec();
        // With an empty memory of message starts, and with one that has
        // seen the whole log: the same answers.
        let fresh = Arc::new(MessageStarts::new());
        let (batch, inputs) = Input::decode_all(f.log.as_ref(), batch, &fresh)
            .await
            .unwrap();
        let (_, again) = Input::decode_all(f.log.as_ref(), batch.clone(), &warm)
            .await
            .unwrap();
        for ((r, i), j) in batch.iter().zip(&inputs).zip(&again) {
            let (Input::Email(_, Some(m)), Input::Email(_, Some(n))) = (i, j) else {
                continue;
            };
            assert_eq!(m, n);
            assert_eq!(m.first, opened[r.stream.as_str()], "{}", r.position);
            if m.first < batch[0].position {
                looked_up += 1;
            }
        }
    }
    assert!(looked_up > 0, "some first events came from the log");
    // And the row is found by the message's id.
    let p = Projections::in_memory();
    p.catch_up(f.log.as_ref()).await.unwrap();
    for m in ["m1", "m2"] {
        let view = p.message(&f.email, "t", m).await.unwrap().unwrap();
        assert_eq!(
            (view.row.events, view.row.status),
            (2, Some(Status::Delivered))
        );
    }
    assert!(p.message(&f.email, "t", "m3").await.unwrap().is_none());
}

#[tokio::test]
async fn the_delivery_log_tracks_status_and_the_timeline() {
    let f = fx();
    f.email
        .set_policy(
            "t",
            TenantPolicy {
                keep_subjects: true,
                ..TenantPolicy::default()
            },
        )
        .await
        .unwrap();
    let to = "bob@example.org";
    let tags = json!({"tags": ["welcome"], "campaign": "nov", "sending_domain": "mail.example.com", "subject": "Hi Bob"});
    append(
        &f,
        "t",
        &[
            ev("sent", to, Some("m1"), T0, tags),
            ev(
                "deferred",
                to,
                Some("m1"),
                T0 + SEC,
                json!({"smtp_code": 451}),
            ),
            // Reported late, but it happened first: it must not win.
            ev("delivered", to, Some("m1"), T0 + 3 * SEC, json!({})),
            ev("deferred", to, Some("m1"), T0 + 2 * SEC, json!({})),
            ev("opened", to, Some("m1"), T0 + 60 * SEC, json!({})),
        ],
    )
    .await;
    let p = Projections::in_memory();
    p.catch_up(f.log.as_ref()).await.unwrap();
    let v = p.message(&f.email, "t", "m1").await.unwrap().unwrap();
    assert_eq!(v.row.status, Some(Status::Delivered));
    assert_eq!(v.row.events, 5);
    assert_eq!(v.timeline.len(), 5);
    let times: Vec<i64> = v
        .timeline
        .iter()
        .map(|e| e.event.envelope.occurred_at)
        .collect();
    assert!(
        times.windows(2).all(|w| w[0] <= w[1]),
        "timeline in time order"
    );
    let j = v.to_json();
    assert_eq!(j["recipient"], json!(to));
    assert_eq!(j["subject"], json!("Hi Bob"));
    assert_eq!(j["campaign"], json!("nov"));
    assert!(p.message(&f.email, "other", "m1").await.unwrap().is_none());
    // Nothing in the projection's store holds the address or subject.
    let store = p.store(delivery::NAME).unwrap();
    let mut all = Vec::new();
    store
        .scan(&[0], &[0xff; 8], false, &mut |k, v| {
            all.extend_from_slice(k);
            all.extend_from_slice(v);
            true
        })
        .unwrap();
    assert!(!all.windows(to.len()).any(|w| w == to.as_bytes()));
    assert!(!all.windows(6).any(|w| w == b"Hi Bob"));
}

#[tokio::test]
async fn listings_filter_and_page_newest_first_with_stable_cursors() {
    let f = fx();
    let mut events = Vec::new();
    for i in 0..30i64 {
        let to = format!("r{}@example.org", i % 3);
        let extra = json!({"tags": [if i % 2 == 0 { "even" } else { "odd" }], "campaign": "c1"});
        events.push(ev("sent", &to, Some(&format!("m{i}")), T0 + i * SEC, extra));
        if i % 5 == 0 {
            events.push(ev(
                "bounced",
                &to,
                Some(&format!("m{i}")),
                T0 + i * SEC + 1,
                json!({"class": "soft"}),
            ));
        }
    }
    append(&f, "t", &events).await;
    let p = Projections::in_memory();
    p.catch_up(f.log.as_ref()).await.unwrap();

    let page = p
        .messages("t", &MessageFilter::default(), None, 10)
        .unwrap();
    let ids: Vec<&str> = page.items.iter().map(|r| r.message_id.as_str()).collect();
    assert_eq!(ids[..3], ["m29", "m28", "m27"]);
    let cursor = page.next.clone().unwrap();

    // New messages arrive: the cursor still continues where it was.
    append(
        &f,
        "t",
        &[ev(
            "sent",
            "late@example.org",
            Some("m-new"),
            T0 + 100 * SEC,
            json!({}),
        )],
    )
    .await;
    p.catch_up(f.log.as_ref()).await.unwrap();
    let page2 = p
        .messages("t", &MessageFilter::default(), Some(&cursor), 10)
        .unwrap();
    assert_eq!(page2.items[0].message_id, "m19");

    let bounced = MessageFilter {
        status: Some(Status::Bounced),
        ..MessageFilter::default()
    };
    let b = p.messages("t", &bounced, None, 100).unwrap();
    assert_eq!(b.items.len(), 6);
    assert!(b.next.is_none());

    let even_r0 = MessageFilter {
        tag: Some("even".into()),
        recipient: Some(contact(&f, "t", "r0@example.org").await),
        ..MessageFilter::default()
    };
    let items = p.messages("t", &even_r0, None, 100).unwrap().items;
    assert_eq!(items.len(), 5, "i even and i % 3 == 0: 0, 6, 12, 18, 24");

    let window = MessageFilter {
        from: Some(T0 + 10 * SEC),
        to: Some(T0 + 20 * SEC),
        campaign: Some("c1".into()),
        ..MessageFilter::default()
    };
    let mut all = Vec::new();
    let mut cursor = None;
    loop {
        let page = p.messages("t", &window, cursor.as_deref(), 3).unwrap();
        all.extend(page.items.into_iter().map(|r| r.message_id));
        match page.next {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    let expected: Vec<String> = (10..20).rev().map(|i| format!("m{i}")).collect();
    assert_eq!(all, expected);
    assert!(
        p.messages("t", &MessageFilter::default(), Some("not-a-cursor"), 10)
            .is_err()
    );
    assert!(p.messages("t", &MessageFilter::default(), None, 0).is_err());
}

/// A message's row keeps where its events are in the log, so its timeline
/// is read from there and is the one its stream gives; a message with more
/// events than a row keeps room for is read from its stream, every event.
#[tokio::test]
async fn the_timeline_is_read_where_the_row_says_and_past_its_room_from_the_stream() {
    let f = fx();
    let to = "carol@example.org";
    // m1's events over three batches, m2's between them.
    append(
        &f,
        "t",
        &[
            ev("sent", to, Some("m1"), T0, json!({})),
            ev("sent", to, Some("m2"), T0, json!({})),
        ],
    )
    .await;
    append(
        &f,
        "t",
        &[ev("delivered", to, Some("m1"), T0 + SEC, json!({}))],
    )
    .await;
    append(
        &f,
        "t",
        &[
            ev("delivered", to, Some("m2"), T0 + SEC, json!({})),
            ev("opened", to, Some("m1"), T0 + 3600 * SEC, json!({})),
        ],
    )
    .await;
    let room = delivery::MAX_TIMELINE_POSITIONS;
    let many: Vec<Value> = (0..room + 3)
        .map(|i| {
            let ty = if i == 0 { "sent" } else { "opened" };
            ev(ty, to, Some("m3"), T0 + i as i64 * SEC, json!({}))
        })
        .collect();
    append(&f, "t", &many).await;
    let p = Projections::in_memory();
    p.catch_up(f.log.as_ref()).await.unwrap();
    for m in ["m1", "m2"] {
        let v = p.message(&f.email, "t", m).await.unwrap().unwrap();
        let stream = mailledger_core::email::message_stream(m);
        let in_stream: Vec<u64> = f
            .log
            .read_stream("t", &stream, 0, 100)
            .await
            .unwrap()
            .iter()
            .map(|r| r.position)
            .collect();
        assert!(in_stream.len() > 1, "{m}: events in more than one batch");
        assert_eq!(
            v.row.timeline_positions(),
            Some(in_stream.as_slice()),
            "{m}"
        );
        let shown: Vec<u64> = v.timeline.iter().map(|e| e.position).collect();
        assert_eq!(shown, in_stream, "{m}'s timeline");
    }
    let v = p.message(&f.email, "t", "m3").await.unwrap().unwrap();
    assert_eq!(v.row.positions.len(), room);
    assert_eq!(v.row.timeline_positions(), None);
    assert_eq!(v.timeline.len(), room + 3);
    // Another tenant's reader finds none of it.
    assert!(p.message(&f.email, "u", "m1").await.unwrap().is_none());
}
