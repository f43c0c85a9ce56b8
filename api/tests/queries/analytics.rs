//! Analytics through the API: counts and rates by bucket and group.

use super::*;

#[tokio::test]
async fn analytics_count_and_rate_by_bucket_and_group() {
    let e = env();
    let key = e.key("acme", &[Scope::Ingest, Scope::Read]);
    let mut events = Vec::new();
    for (i, domain) in ["a.example", "a.example", "b.example"].iter().enumerate() {
        let m = format!("m-{i}");
        let addr = format!("user{i}@{domain}");
        events.push(at(&uuid(), "sent", &addr, &m, "2026-11-22T10:00:00Z"));
        if i < 2 {
            events.push(at(&uuid(), "delivered", &addr, &m, "2026-11-22T11:00:00Z"));
        }
    }
    ingest(&e, &key, events).await;
    e.project().await;
    let day = e
        .ok(
            Method::GET,
            "/v1/analytics?from=2026-11-22T00:00:00Z&to=2026-11-23T00:00:00Z",
            &key,
            None,
        )
        .await;
    assert_eq!(day["total"]["counts"]["sent"], 3);
    assert_eq!(day["total"]["counts"]["delivered"], 2);
    let rate = day["total"]["rates"]["delivery"].as_f64().unwrap();
    assert!((rate - 2.0 / 3.0).abs() < 1e-9);
    assert_eq!(day["buckets"].as_array().unwrap().len(), 1);
    assert_eq!(day["buckets"][0]["start"], "2026-11-22T00:00:00Z");
    let hourly = e
        .ok(
            Method::GET,
            "/v1/analytics?from=2026-11-22T00:00:00Z&to=2026-11-23T00:00:00Z&granularity=hour&group_by=recipient_domain",
            &key,
            None,
        )
        .await;
    let groups: Vec<(String, String)> = hourly["buckets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| {
            (
                b["group"].as_str().unwrap().to_owned(),
                b["start"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        groups,
        [
            ("a.example".to_owned(), "2026-11-22T10:00:00Z".to_owned()),
            ("a.example".to_owned(), "2026-11-22T11:00:00Z".to_owned()),
            ("b.example".to_owned(), "2026-11-22T10:00:00Z".to_owned()),
        ]
    );
}
