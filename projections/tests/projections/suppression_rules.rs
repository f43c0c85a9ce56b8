//! The suppression list: every rule as documented, what each entry names, erasure, tenants apart, paging.

use crate::*;

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
