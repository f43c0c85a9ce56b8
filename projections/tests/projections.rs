//! The projections against a real log and key store: suppression rules,
//! delivery log queries, analytics, erasure, rebuilds and their equivalence
//! with incremental application.
#![allow(clippy::unwrap_used, missing_docs)]

use std::sync::Arc;

use mailledger_core::crypto::{Personal, SecretKey};
use mailledger_core::email::{ContactRef, EmailLedger, TenantPolicy, parse_event, rfc3339};
use mailledger_core::keys::FileKeyStore;
use mailledger_core::{Direction, EventLog, Ledger, LedgerConfig, MemoryStore, TenantFilter};
use mailledger_projections::analytics::{Dimension, Granularity, Query};
use mailledger_projections::delivery::{MessageFilter, Status};
use mailledger_projections::state::{FORMAT_KEY, FjallState, MemoryState, StateStore};
use mailledger_projections::suppression::{Decision, Reason};
use mailledger_projections::{
    Input, MessageStarts, Projections, RebuildSizes, analytics, delivery, suppression,
};
use proptest::prelude::*;
use serde_json::{Value, json};

/// 2026-11-01T00:00:00Z in µs.
const T0: i64 = 1_793_491_200_000_000;
const SEC: i64 = 1_000_000;
const DAY: i64 = 86_400 * SEC;

struct Fx {
    _dir: tempfile::TempDir,
    email: Arc<EmailLedger>,
    log: Arc<dyn EventLog>,
}

fn fx() -> Fx {
    let dir = tempfile::tempdir().unwrap();
    let keys = Arc::new(FileKeyStore::open(dir.path(), &SecretKey::generate().unwrap()).unwrap());
    let log: Arc<dyn EventLog> =
        Arc::new(Ledger::open(MemoryStore::new(), LedgerConfig::new()).unwrap());
    let email = Arc::new(EmailLedger::new(Arc::clone(&log), keys));
    Fx {
        _dir: dir,
        email,
        log,
    }
}

static NEXT_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// A canonical event: `ty` to `to` of message `msg`, at `at` µs, plus fields.
fn ev(ty: &str, to: &str, msg: Option<&str>, at: i64, extra: Value) -> Value {
    let n = NEXT_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut v = json!({
        "id": uuid::Uuid::from_u128(u128::from(n) << 64 | 0x8000_0000_0000_0000 | u128::from(n)),
        "type": ty,
        "recipient": to,
        "occurred_at": rfc3339(at),
    });
    if let Some(m) = msg {
        v["message_id"] = json!(m);
    }
    if let (Value::Object(m), Value::Object(e)) = (&mut v, extra) {
        m.extend(e);
    }
    v
}

async fn append(f: &Fx, tenant: &str, events: &[Value]) {
    let events = events
        .iter()
        .map(|e| parse_event(&e.to_string()).unwrap())
        .collect();
    f.email.append(tenant, events).await.unwrap();
}

async fn contact(f: &Fx, tenant: &str, address: &str) -> mailledger_core::pseudonym::Pseudonym {
    f.email
        .pseudonym(tenant, &Personal::new(address.to_owned()))
        .await
        .unwrap()
}

// ---------------------------------------------------------------- suppressions

/// One suppression rule: the events, then the check and what it must say.
struct Rule {
    name: &'static str,
    policy: Option<Value>,
    events: Vec<(&'static str, i64, Value)>,
    scope: Option<&'static str>,
    now_after_last: i64,
    expect: Option<Reason>,
}

fn rules() -> Vec<Rule> {
    let bounce = |class: &str| json!({ "class": class });
    let r = |name, events, scope, expect| Rule {
        name,
        policy: None,
        events,
        scope,
        now_after_last: SEC,
        expect,
    };
    vec![
        r(
            "hard bounce suppresses all mail",
            vec![("bounced", 0, bounce("hard"))],
            None,
            Some(Reason::HardBounce),
        ),
        r(
            "hard bounce suppresses every topic too",
            vec![("bounced", 0, bounce("hard"))],
            Some("news"),
            Some(Reason::HardBounce),
        ),
        r(
            "block bounce does not suppress",
            vec![("bounced", 0, bounce("block"))],
            None,
            None,
        ),
        r(
            "undetermined bounce does not suppress",
            vec![("bounced", 0, bounce("undetermined"))],
            None,
            None,
        ),
        r(
            "two soft bounces in the window do not suppress",
            vec![
                ("bounced", 0, bounce("soft")),
                ("bounced", DAY, bounce("soft")),
            ],
            None,
            None,
        ),
        r(
            "three soft bounces within seven days suppress",
            vec![
                ("bounced", 0, bounce("soft")),
                ("bounced", 3 * DAY, bounce("soft")),
                ("bounced", 6 * DAY, bounce("soft")),
            ],
            None,
            Some(Reason::SoftBounces),
        ),
        r(
            "three soft bounces spread over more than seven days do not",
            vec![
                ("bounced", 0, bounce("soft")),
                ("bounced", 5 * DAY, bounce("soft")),
                ("bounced", 10 * DAY, bounce("soft")),
            ],
            None,
            None,
        ),
        Rule {
            name: "a soft bounce suppression expires after thirty days",
            policy: None,
            events: vec![
                ("bounced", 0, bounce("soft")),
                ("bounced", DAY, bounce("soft")),
                ("bounced", 2 * DAY, bounce("soft")),
            ],
            scope: None,
            now_after_last: 30 * DAY + SEC,
            expect: None,
        },
        Rule {
            name: "a soft bounce suppression holds until its thirty days are up",
            policy: None,
            events: vec![
                ("bounced", 0, bounce("soft")),
                ("bounced", DAY, bounce("soft")),
                ("bounced", 2 * DAY, bounce("soft")),
            ],
            scope: None,
            now_after_last: 30 * DAY - SEC,
            expect: Some(Reason::SoftBounces),
        },
        Rule {
            name: "a fourth soft bounce renews the expiry",
            policy: None,
            events: vec![
                ("bounced", 0, bounce("soft")),
                ("bounced", DAY, bounce("soft")),
                ("bounced", 2 * DAY, bounce("soft")),
                ("bounced", 20 * DAY, bounce("soft")),
                ("bounced", 21 * DAY, bounce("soft")),
                ("bounced", 22 * DAY, bounce("soft")),
            ],
            scope: None,
            now_after_last: 20 * DAY,
            expect: Some(Reason::SoftBounces),
        },
        r(
            "a complaint suppresses",
            vec![("complained", 0, json!({}))],
            None,
            Some(Reason::Complaint),
        ),
        r(
            "an unsubscribe suppresses its scope",
            vec![("unsubscribed", 0, json!({"scope": "news"}))],
            Some("news"),
            Some(Reason::Unsubscribe),
        ),
        r(
            "an unsubscribe leaves other scopes",
            vec![("unsubscribed", 0, json!({"scope": "news"}))],
            Some("billing"),
            None,
        ),
        r(
            "a topic unsubscribe leaves all-mail checks",
            vec![("unsubscribed", 0, json!({"scope": "news"}))],
            None,
            None,
        ),
        r(
            "a resubscribe lifts the unsubscribe",
            vec![
                ("unsubscribed", 0, json!({"scope": "news"})),
                ("resubscribed", SEC, json!({"scope": "news"})),
            ],
            Some("news"),
            None,
        ),
        r(
            "a resubscribe does not lift a complaint",
            vec![
                ("complained", 0, json!({})),
                ("resubscribed", SEC, json!({"scope": "all"})),
            ],
            None,
            Some(Reason::Complaint),
        ),
        r(
            "a manual entry suppresses with its reason",
            vec![(
                "suppressed",
                0,
                json!({"scope": "all", "reason": "support ticket 7"}),
            )],
            None,
            Some(Reason::Manual),
        ),
        r(
            "a removal lifts a manual entry",
            vec![
                ("suppressed", 0, json!({"scope": "all", "reason": "ticket"})),
                (
                    "unsuppressed",
                    SEC,
                    json!({"scope": "all", "reason": "resolved"}),
                ),
            ],
            None,
            None,
        ),
        r(
            "a complaint is not lifted by a removal without a reason",
            vec![
                ("complained", 0, json!({})),
                ("unsuppressed", SEC, json!({"scope": "all"})),
            ],
            None,
            Some(Reason::Complaint),
        ),
        r(
            "a complaint is lifted by a removal with a reason",
            vec![
                ("complained", 0, json!({})),
                (
                    "unsuppressed",
                    SEC,
                    json!({"scope": "all", "reason": "confirmed opt-in"}),
                ),
            ],
            None,
            None,
        ),
        r(
            "a complaint outranks an earlier hard bounce",
            vec![
                ("bounced", 0, bounce("hard")),
                ("complained", SEC, json!({})),
            ],
            None,
            Some(Reason::Complaint),
        ),
        Rule {
            name: "a tenant can turn the hard bounce rule off",
            policy: Some(json!({"hard_bounce": false})),
            events: vec![("bounced", 0, bounce("hard"))],
            scope: None,
            now_after_last: SEC,
            expect: None,
        },
        Rule {
            name: "a tenant can lower the soft bounce threshold",
            policy: Some(json!({"soft_bounce_threshold": 1})),
            events: vec![("bounced", 0, bounce("soft"))],
            scope: None,
            now_after_last: SEC,
            expect: Some(Reason::SoftBounces),
        },
    ]
}

#[tokio::test]
async fn each_suppression_rule_decides_as_documented() {
    for (i, rule) in rules().into_iter().enumerate() {
        let f = fx();
        let tenant = "t";
        let to = format!("rule{i}@example.org");
        if let Some(p) = &rule.policy {
            let policy = TenantPolicy {
                suppression: serde_json::from_value(p.clone()).unwrap(),
                ..TenantPolicy::default()
            };
            f.email.set_policy(tenant, policy).await.unwrap();
        }
        let events: Vec<Value> = rule
            .events
            .iter()
            .map(|(ty, at, extra)| ev(ty, &to, None, T0 + at, extra.clone()))
            .collect();
        append(&f, tenant, &events).await;
        let p = Projections::in_memory();
        p.catch_up(f.log.as_ref()).await.unwrap();
        let last = rule.events.iter().map(|e| e.1).max().unwrap_or(0);
        let now = T0 + last + rule.now_after_last;
        let got = p
            .check(tenant, &contact(&f, tenant, &to).await, rule.scope, now)
            .unwrap();
        let got = match got {
            Decision::Allowed => None,
            Decision::Suppressed(e) => Some(e.reason),
        };
        assert_eq!(got, rule.expect, "rule: {}", rule.name);
    }
}

#[tokio::test]
async fn a_suppression_names_its_event_and_since() {
    let f = fx();
    let events = vec![ev(
        "bounced",
        "ann@example.org",
        Some("m1"),
        T0,
        json!({"class": "hard"}),
    )];
    append(&f, "t", &events).await;
    let p = Projections::in_memory();
    p.catch_up(f.log.as_ref()).await.unwrap();
    let Decision::Suppressed(e) = p
        .check(
            "t",
            &contact(&f, "t", "ann@EXAMPLE.org").await,
            None,
            T0 + SEC,
        )
        .unwrap()
    else {
        panic!("a hard-bounced address must be suppressed");
    };
    assert_eq!(e.since, T0);
    assert_eq!(e.event_id.to_string(), events[0]["id"].as_str().unwrap());
    let record = f
        .log
        .find_event("t", e.since, e.event_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(e.position, record.position);
}

#[tokio::test]
async fn an_erased_hard_bounced_address_is_still_refused() {
    let f = fx();
    append(
        &f,
        "t",
        &[ev(
            "bounced",
            "gone@example.org",
            Some("m1"),
            T0,
            json!({"class": "hard"}),
        )],
    )
    .await;
    f.email
        .erase(
            "t",
            ContactRef::Address(Personal::new("gone@example.org".to_owned())),
            "dsr-1",
        )
        .await
        .unwrap();
    let p = Projections::in_memory();
    p.catch_up(f.log.as_ref()).await.unwrap();
    let c = contact(&f, "t", "gone@example.org").await;
    assert!(matches!(
        p.check("t", &c, None, T0 + DAY).unwrap(),
        Decision::Suppressed(e) if e.reason == Reason::HardBounce
    ));
    // And the delivery log shows the erased marker, not the address.
    let view = p.message(&f.email, "t", "m1").await.unwrap().unwrap();
    let json = view.to_json();
    assert_eq!(json["recipient"], json!({"erased": true}));
    assert!(!json.to_string().contains("gone@example.org"));
}

#[tokio::test]
async fn suppressions_of_one_tenant_do_not_reach_another() {
    let f = fx();
    append(
        &f,
        "a",
        &[ev("complained", "x@example.org", None, T0, json!({}))],
    )
    .await;
    append(
        &f,
        "b",
        &[ev("sent", "x@example.org", Some("m"), T0, json!({}))],
    )
    .await;
    let p = Projections::in_memory();
    p.catch_up(f.log.as_ref()).await.unwrap();
    assert!(matches!(
        p.check(
            "b",
            &contact(&f, "b", "x@example.org").await,
            None,
            T0 + SEC
        )
        .unwrap(),
        Decision::Allowed
    ));
    assert_eq!(
        p.suppressions("b", None, 100, T0, false)
            .unwrap()
            .items
            .len(),
        0
    );
    assert_eq!(
        p.suppressions("a", None, 100, T0, false)
            .unwrap()
            .items
            .len(),
        1
    );
}

#[tokio::test]
async fn the_suppression_list_pages_with_a_cursor() {
    let f = fx();
    let events: Vec<Value> = (0..25)
        .map(|i| {
            ev(
                "complained",
                &format!("p{i}@example.org"),
                None,
                T0 + i,
                json!({}),
            )
        })
        .collect();
    append(&f, "t", &events).await;
    let p = Projections::in_memory();
    p.catch_up(f.log.as_ref()).await.unwrap();
    let mut seen = Vec::new();
    let mut cursor = None;
    loop {
        let page = p
            .suppressions("t", cursor.as_deref(), 10, T0, false)
            .unwrap();
        seen.extend(page.items.iter().map(|e| e.contact));
        match page.next {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    let mut unique = seen.clone();
    unique.sort();
    unique.dedup();
    assert_eq!((seen.len(), unique.len()), (25, 25));
    assert!(p.suppressions("t", Some("zz"), 10, T0, false).is_err());
}

// ---------------------------------------------------------------- delivery log

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

// ---------------------------------------------------------------- analytics

#[tokio::test]
async fn analytics_counts_rates_machines_and_bots_apart() {
    let f = fx();
    let a = json!({"tags": ["promo"], "campaign": "nov", "sending_domain": "mail.example.com"});
    let mut events = Vec::new();
    for i in 0..10 {
        let to = format!("u{i}@Example.ORG");
        let m = format!("a{i}");
        events.push(ev("sent", &to, Some(&m), T0, a.clone()));
        if i < 8 {
            events.push(ev("delivered", &to, Some(&m), T0 + 60 * SEC, json!({})));
        } else {
            events.push(ev(
                "bounced",
                &to,
                Some(&m),
                T0 + 60 * SEC,
                json!({"class": "hard"}),
            ));
        }
    }
    // a0: two human opens (one unique), one machine open; a1: a scanner's
    // click 2 s after delivery, then a person's click; a2: a flagged bot.
    events.push(ev(
        "opened",
        "u0@example.org",
        Some("a0"),
        T0 + 2 * 3600 * SEC,
        json!({}),
    ));
    events.push(ev(
        "opened",
        "u0@example.org",
        Some("a0"),
        T0 + 2 * 3600 * SEC + 1,
        json!({}),
    ));
    events.push(ev(
        "opened",
        "u0@example.org",
        Some("a0"),
        T0 + 61 * SEC,
        json!({"machine": true}),
    ));
    events.push(ev(
        "clicked",
        "u1@example.org",
        Some("a1"),
        T0 + 62 * SEC,
        json!({"url": "https://x.example/1"}),
    ));
    events.push(ev(
        "clicked",
        "u1@example.org",
        Some("a1"),
        T0 + 3600 * SEC,
        json!({"url": "https://x.example/1"}),
    ));
    events.push(ev(
        "clicked",
        "u2@example.org",
        Some("a2"),
        T0 + 3600 * SEC,
        json!({"url": "https://x.example/2", "bot": true}),
    ));
    events.push(ev(
        "complained",
        "u3@example.org",
        Some("a3"),
        T0 + 5 * 3600 * SEC,
        json!({}),
    ));
    append(&f, "t", &events).await;
    let p = Projections::in_memory();
    p.catch_up(f.log.as_ref()).await.unwrap();

    let q = |granularity, group_by| Query {
        from: T0,
        to: T0 + DAY,
        granularity,
        group_by,
    };
    let (hours, total) = p
        .analytics("t", &q(Granularity::Hour, Dimension::Total))
        .unwrap();
    assert_eq!(total.sent, 10);
    assert_eq!(total.delivered, 8);
    assert_eq!(total.bounced_hard, 2);
    assert_eq!(
        (total.opened, total.unique_opened, total.machine_opened),
        (2, 1, 1)
    );
    assert_eq!(
        (total.clicked, total.unique_clicked, total.bot_clicked),
        (1, 1, 2)
    );
    assert_eq!(total.complained, 1);
    let rates = total.rates();
    assert_eq!(rates.delivery, Some(0.8));
    assert_eq!(rates.bounce, Some(0.2));
    assert_eq!(rates.open, Some(1.0 / 8.0));
    assert_eq!(rates.complaint, Some(1.0 / 8.0));
    assert_eq!(hours.len(), 4, "hours 0, 1, 2 and 5 have events");

    let (days, _) = p
        .analytics("t", &q(Granularity::Day, Dimension::Total))
        .unwrap();
    assert_eq!(days.len(), 1);
    assert_eq!(days[0].counts, total);

    // Opens and clicks carry no campaign: they count under their message's.
    let (by_campaign, _) = p
        .analytics("t", &q(Granularity::Day, Dimension::Campaign))
        .unwrap();
    assert_eq!(by_campaign.len(), 1);
    assert_eq!(by_campaign[0].group.as_deref(), Some("nov"));
    assert_eq!(by_campaign[0].counts.unique_opened, 1);

    let (by_domain, _) = p
        .analytics("t", &q(Granularity::Day, Dimension::RecipientDomain))
        .unwrap();
    assert_eq!(
        by_domain[0].group.as_deref(),
        Some("example.org"),
        "lower-cased"
    );

    assert!(
        p.analytics("t", &q(Granularity::Hour, Dimension::Tag))
            .unwrap()
            .0
            .iter()
            .all(|b| b.group.as_deref() == Some("promo"))
    );
    assert!(
        p.analytics("other", &q(Granularity::Day, Dimension::Total))
            .unwrap()
            .0
            .is_empty()
    );
    let bad = Query {
        from: T0,
        to: T0,
        granularity: Granularity::Hour,
        group_by: Dimension::Total,
    };
    assert!(p.analytics("t", &bad).is_err());
}

// ---------------------------------------------------------------- runner and rebuilds

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkpoints_report_lag_and_the_live_runner_follows_the_head() {
    let f = fx();
    append(
        &f,
        "t",
        &[ev("sent", "a@example.org", Some("m"), T0, json!({}))],
    )
    .await;
    let p = Arc::new(Projections::in_memory());
    assert!(p.status(f.log.head()).iter().all(|s| s.lag == 1));
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(Arc::clone(&p).run(Arc::clone(&f.log), stop));
    assert!(p.wait_for(1, std::time::Duration::from_secs(10)).await);
    append(
        &f,
        "t",
        &[ev(
            "delivered",
            "a@example.org",
            Some("m"),
            T0 + 1,
            json!({}),
        )],
    )
    .await;
    assert!(p.wait_for(2, std::time::Duration::from_secs(10)).await);
    assert!(
        p.status(f.log.head())
            .iter()
            .all(|s| s.lag == 0 && s.checkpoint == 2)
    );
    let row = p
        .messages("t", &MessageFilter::default(), None, 1)
        .unwrap()
        .items;
    assert_eq!(row[0].status, Some(Status::Delivered));
    stop_tx.send(true).unwrap();
    task.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_caller_s_hook_runs_first_on_every_thread_the_runner_and_a_rebuild_start() {
    use mailledger_core::{ThreadHook, ThreadRole};
    let f = fx();
    append(&f, "t", &sent(10, 2)).await;
    // Each thread the hook ran on, by name, with the role it was told.
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let hook = {
        let seen = Arc::clone(&seen);
        ThreadHook::new(move |role| {
            let name = std::thread::current().name().map(str::to_owned);
            seen.lock().unwrap().push((name, role));
        })
    };
    let p = Arc::new(Projections::in_memory().with_thread_hook(hook));
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    let runner = p.spawn_runner(Arc::clone(&f.log), stop).unwrap();
    // Applied on the runner's blocking pool, so its threads have started.
    assert!(p.wait_for(10, std::time::Duration::from_secs(10)).await);
    stop_tx.send(true).unwrap();
    tokio::task::spawn_blocking(move || runner.join().unwrap())
        .await
        .unwrap();
    assert!(p.start_rebuild(Arc::clone(&f.log), Vec::new()).unwrap());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while p.rebuild_status().is_some_and(|s| s.running) {
        assert!(
            std::time::Instant::now() < deadline,
            "the rebuild never ended"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(p.rebuild_status().unwrap().error, None);
    let seen = seen.lock().unwrap();
    for thread in [
        "projections",
        "projection-pool",
        "projection-rebuild",
        "rebuild-pool",
        "projection-commit",
    ] {
        assert!(
            seen.iter().any(|(name, _)| name.as_deref() == Some(thread)),
            "the hook did not run on {thread}: {seen:?}"
        );
    }
    assert!(
        seen.iter()
            .all(|(_, role)| *role == ThreadRole::Projections),
        "{seen:?}"
    );
}

/// `n` messages, one `sent` event each, to `contacts` recipients in turn.
fn sent(n: i64, contacts: i64) -> Vec<Value> {
    (0..n)
        .map(|i| {
            ev(
                "sent",
                &format!("x{}@example.org", i % contacts),
                Some(&format!("m{i}")),
                T0 + i,
                json!({}),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fjall_rebuild_is_swapped_in_and_survives_reopen() {
    let f = fx();
    let dir = tempfile::tempdir().unwrap();
    append(&f, "t", &sent(500, 50)).await;
    let p = Projections::open(dir.path()).unwrap();
    p.catch_up(f.log.as_ref()).await.unwrap();
    let before = p
        .messages("t", &MessageFilter::default(), None, 1000)
        .unwrap();
    // Reads go on during the rebuild, through whichever store is current,
    // and see every message each time.
    let p = Arc::new(p);
    let rebuilding = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let reader = {
        let (p, rebuilding) = (Arc::clone(&p), Arc::clone(&rebuilding));
        std::thread::spawn(move || {
            let mut reads = 0;
            while rebuilding.load(std::sync::atomic::Ordering::Acquire) || reads == 0 {
                let page = p
                    .messages("t", &MessageFilter::default(), None, 1000)
                    .unwrap();
                assert_eq!(page.items.len(), 500);
                reads += 1;
            }
            reads
        })
    };
    let done = std::sync::atomic::AtomicU64::new(0);
    let progress = |pr: mailledger_projections::Progress| {
        done.store(pr.done, std::sync::atomic::Ordering::Relaxed);
    };
    p.rebuild(f.log.as_ref(), &[], Some(&progress))
        .await
        .unwrap();
    rebuilding.store(false, std::sync::atomic::Ordering::Release);
    assert!(reader.join().unwrap() > 0);
    assert_eq!(done.load(std::sync::atomic::Ordering::Relaxed), 500);
    let after = p
        .messages("t", &MessageFilter::default(), None, 1000)
        .unwrap();
    assert_eq!(before, after);
    assert!(dir.path().join("delivery-log/gen-1").exists());
    assert!(
        !dir.path().join("delivery-log/gen-0").exists(),
        "the old store is removed"
    );
    drop(p);
    let p = Projections::open(dir.path()).unwrap();
    assert!(p.status(f.log.head()).iter().all(|s| s.lag == 0));
    assert_eq!(
        p.messages("t", &MessageFilter::default(), None, 1000)
            .unwrap(),
        after
    );
    assert!(p.rebuild(f.log.as_ref(), &["nope"], None).await.is_err());
}

#[tokio::test]
async fn a_store_in_another_format_is_dropped_and_rebuilt_from_the_log() {
    let f = fx();
    let dir = tempfile::tempdir().unwrap();
    append(&f, "t", &sent(100, 10)).await;
    let p = Projections::open(dir.path()).unwrap();
    p.catch_up(f.log.as_ref()).await.unwrap();
    let before = p
        .messages("t", &MessageFilter::default(), None, 1000)
        .unwrap();
    assert_eq!(before.items.len(), 100);
    drop(p);
    // A build with another layout of the delivery log wrote this store;
    // it also left a row this build would misread.
    {
        let store = FjallState::open(&dir.path().join("delivery-log/gen-0")).unwrap();
        store
            .commit(vec![
                (FORMAT_KEY.to_vec(), Some(999u32.to_be_bytes().to_vec())),
                (b"t\0Mbogus-row-key-".to_vec(), Some(b"not a row".to_vec())),
            ])
            .unwrap();
    }
    let p = Projections::open(dir.path()).unwrap();
    let head = f.log.head();
    let lag = |p: &Projections, name: &str| {
        p.status(head)
            .into_iter()
            .find(|s| s.name == name)
            .unwrap()
            .lag
    };
    assert_eq!(
        lag(&p, delivery::NAME),
        head,
        "the delivery log starts over"
    );
    assert_eq!(lag(&p, suppression::NAME), 0, "the others are kept");
    p.catch_up(f.log.as_ref()).await.unwrap();
    assert_eq!(
        p.messages("t", &MessageFilter::default(), None, 1000)
            .unwrap(),
        before
    );
    let store = p.store(delivery::NAME).unwrap();
    assert_eq!(store.get(b"t\0Mbogus-row-key-").unwrap(), None);
    assert_eq!(
        store.get(FORMAT_KEY).unwrap(),
        Some(delivery::FORMAT.to_be_bytes().to_vec())
    );
}

/// A store that fails its n-th commit, as a crash mid-rebuild would stop it.
struct FailingAfter {
    inner: MemoryState,
    commits_left: std::sync::atomic::AtomicI64,
}

impl StateStore for FailingAfter {
    fn get(&self, key: &[u8]) -> mailledger_projections::Result<Option<Vec<u8>>> {
        self.inner.get(key)
    }
    fn scan(
        &self,
        start: &[u8],
        end: &[u8],
        reverse: bool,
        visit: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> mailledger_projections::Result<()> {
        self.inner.scan(start, end, reverse, visit)
    }
    fn commit(
        &self,
        writes: Vec<mailledger_projections::state::Write>,
    ) -> mailledger_projections::Result<()> {
        if self
            .commits_left
            .fetch_sub(1, std::sync::atomic::Ordering::SeqCst)
            <= 0
        {
            return Err(mailledger_projections::Error::Storage(
                "injected failure".into(),
            ));
        }
        self.inner.commit(writes)
    }
    fn flush(&self) -> mailledger_projections::Result<()> {
        Ok(())
    }
}

/// Random histories: several tenants and contacts, every event type,
/// out-of-order provider times, duplicates, policy changes and erasures.
#[derive(Debug, Clone)]
enum Step {
    Event {
        ty: usize,
        contact: u8,
        message: u8,
        at: i64,
        dup: bool,
    },
    Erase {
        contact: u8,
    },
    Policy {
        threshold: u32,
    },
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        8 => (0usize..13, 0u8..6, 0u8..8, 0i64..(20 * DAY), any::<bool>())
            .prop_map(|(ty, contact, message, at, dup)| Step::Event { ty, contact, message, at, dup }),
        1 => (0u8..6).prop_map(|contact| Step::Erase { contact }),
        1 => (0u32..4).prop_map(|threshold| Step::Policy { threshold }),
    ]
}

fn event_of(ty: usize, to: &str, msg: &str, at: i64) -> Value {
    let (t, extra) = match ty {
        0 => (
            "sent",
            json!({"tags": ["a", "b"], "campaign": "c", "sending_domain": "s.example"}),
        ),
        1 => ("delivered", json!({})),
        2 => ("deferred", json!({})),
        3 => ("bounced", json!({"class": "hard"})),
        4 => ("bounced", json!({"class": "soft"})),
        5 => ("bounced", json!({"class": "block"})),
        6 => ("complained", json!({})),
        7 => ("opened", json!({"machine": at % 2 == 0})),
        8 => (
            "clicked",
            json!({"url": "https://x.example/", "bot": at % 3 == 0}),
        ),
        9 => ("unsubscribed", json!({"scope": "news"})),
        10 => ("resubscribed", json!({"scope": "news"})),
        11 => ("suppressed", json!({"scope": "all", "reason": "manual"})),
        _ => ("unsuppressed", json!({"scope": "all", "reason": "ok"})),
    };
    ev(t, to, Some(msg), T0 + at, extra)
}

async fn play(f: &Fx, steps: &[Step]) -> Vec<u64> {
    let mut heads = Vec::new();
    let mut appended: Vec<(String, Value)> = Vec::new();
    for (i, s) in steps.iter().enumerate() {
        let tenant = if i % 4 == 3 { "u" } else { "t" };
        match s {
            Step::Event {
                ty,
                contact,
                message,
                at,
                dup,
            } => {
                let e = if *dup && !appended.is_empty() {
                    appended[i % appended.len()].clone()
                } else {
                    let to = format!("c{contact}@example.org");
                    (
                        tenant.to_owned(),
                        event_of(*ty, &to, &format!("m{message}"), *at),
                    )
                };
                let parsed = parse_event(&e.1.to_string()).unwrap();
                // An event of an erased contact is refused; that is fine.
                let _ = f.email.append(&e.0, vec![parsed]).await;
                appended.push(e);
            }
            Step::Erase { contact } => {
                let to = format!("c{contact}@example.org");
                f.email
                    .erase(
                        tenant,
                        ContactRef::Address(Personal::new(to)),
                        // Unique also when steps are played one at a time:
                        // a request id belongs to one contact.
                        &format!("r{i}-{}", f.log.head()),
                    )
                    .await
                    .unwrap();
            }
            Step::Policy { threshold } => {
                let mut p = TenantPolicy::default();
                p.suppression.soft_bounce_threshold = *threshold;
                f.email.set_policy(tenant, p).await.unwrap();
            }
        }
        heads.push(f.log.head());
    }
    heads
}

fn dumps(stores: &[Arc<MemoryState>]) -> Vec<std::collections::BTreeMap<Vec<u8>, Vec<u8>>> {
    stores.iter().map(|s| s.dump()).collect()
}

fn memory_stores() -> (Vec<Arc<MemoryState>>, [Arc<dyn StateStore>; 3]) {
    let s: Vec<Arc<MemoryState>> = (0..3).map(|_| Arc::new(MemoryState::new())).collect();
    let dyns: [Arc<dyn StateStore>; 3] = [
        Arc::clone(&s[0]) as Arc<dyn StateStore>,
        Arc::clone(&s[1]) as Arc<dyn StateStore>,
        Arc::clone(&s[2]) as Arc<dyn StateStore>,
    ];
    (s, dyns)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn incremental_rebuilt_and_interrupted_builds_agree(
        steps in prop::collection::vec(step(), 1..60),
        fail_after in 0i64..6,
    ) {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        rt.block_on(async {
            let f = fx();
            // Incremental: caught up after every step.
            let (inc, inc_dyn) = memory_stores();
            let incremental = Projections::with_stores(inc_dyn).unwrap();
            let mut steps_heads = Vec::new();
            for s in &steps {
                steps_heads.extend(play(&f, std::slice::from_ref(s)).await);
                incremental.catch_up(f.log.as_ref()).await.unwrap();
            }
            // From 0 in one go.
            let (full, full_dyn) = memory_stores();
            Projections::with_stores(full_dyn).unwrap().catch_up(f.log.as_ref()).await.unwrap();
            prop_assert_eq!(dumps(&inc), dumps(&full));

            // Interrupted: each store fails after some commits, then a
            // restart over what was committed resumes.
            let failing: Vec<Arc<FailingAfter>> = (0..3).map(|i| Arc::new(FailingAfter {
                inner: MemoryState::new(),
                commits_left: std::sync::atomic::AtomicI64::new(fail_after + i),
            })).collect();
            let fdyn: [Arc<dyn StateStore>; 3] = [
                Arc::clone(&failing[0]) as Arc<dyn StateStore>,
                Arc::clone(&failing[1]) as Arc<dyn StateStore>,
                Arc::clone(&failing[2]) as Arc<dyn StateStore>,
            ];
            // Small batches, so the failure lands mid-history.
            let first = Projections::with_stores(fdyn.clone()).unwrap();
            for until in steps_heads.iter().copied() {
                if first.catch_up_with(f.log.as_ref(), until, None).await.is_err() {
                    break;
                }
            }
            drop(first);
            for s in &failing {
                s.commits_left.store(i64::MAX, std::sync::atomic::Ordering::SeqCst);
            }
            let resumed = Projections::with_stores(fdyn).unwrap();
            resumed.catch_up(f.log.as_ref()).await.unwrap();
            let resumed_dumps: Vec<_> = failing.iter().map(|s| s.inner.dump()).collect();
            prop_assert_eq!(resumed_dumps, dumps(&full));

            // And the rebuild path (fresh stores, swapped in) gives the same:
            // in memory with the default sizes, and into fjall stores with
            // reads and commits small enough that a rebuild crosses many of
            // each (commits handed to the committer while the next events
            // read the writes in flight, then fjall's sorted ingestion).
            let rebuilt = Projections::in_memory();
            rebuilt.rebuild(f.log.as_ref(), &[], None).await.unwrap();
            let dir = tempfile::tempdir().unwrap();
            let on_disk = Projections::open(dir.path())
                .unwrap()
                .with_rebuild_sizes(RebuildSizes { read: 3, commit: 5 });
            on_disk.rebuild(f.log.as_ref(), &[], None).await.unwrap();
            for built in [&rebuilt, &on_disk] {
                for (i, name) in [delivery::NAME, suppression::NAME, analytics::NAME].iter().enumerate() {
                    let store = built.store(name).unwrap();
                    let mut got = std::collections::BTreeMap::new();
                    store.scan(&[1], &[0xff; 4], false, &mut |k, v| { got.insert(k.to_vec(), v.to_vec()); true }).unwrap();
                    prop_assert_eq!(&got, &full[i].dump());
                }
            }
            Ok(())
        })?;
    }
}
