//! Analytics: counts and rates, machine opens and bot clicks apart.

use crate::*;

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
