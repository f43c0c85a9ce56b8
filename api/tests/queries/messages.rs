//! Messages: the timeline, listings with filters and cursors, bad parameters named.

use super::*;

#[tokio::test]
async fn a_messages_timeline_shows_every_event_and_a_missing_one_is_404() {
    let e = env();
    let key = e.key("acme", &[Scope::Ingest, Scope::Read]);
    ingest(
        &e,
        &key,
        vec![
            at(
                &uuid(),
                "sent",
                "ann@example.org",
                "m-1",
                "2026-11-22T10:00:00Z",
            ),
            at(
                &uuid(),
                "delivered",
                "ann@example.org",
                "m-1",
                "2026-11-22T10:00:05Z",
            ),
            at(
                &uuid(),
                "opened",
                "ann@example.org",
                "m-1",
                "2026-11-22T10:03:00Z",
            ),
        ],
    )
    .await;
    e.project().await;
    let m = e.ok(Method::GET, "/v1/messages/m-1", &key, None).await;
    assert_eq!(m["message_id"], "m-1");
    assert_eq!(m["status"], "delivered");
    assert_eq!(m["recipient"], "ann@example.org");
    assert_eq!(m["events"], 3);
    let types: Vec<&str> = m["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["type"].as_str().unwrap())
        .collect();
    assert_eq!(types, ["sent", "delivered", "opened"]);
    let r = e
        .call(Method::GET, "/v1/messages/m-2", Some(&key), None)
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.content_type(), PROBLEM);
    assert_eq!(r.json()["type"], "urn:mailledger:problem:not-found");
    assert!(!r.text().contains("m-2"));
}

#[tokio::test]
async fn listings_filter_and_page_with_cursors_newest_first() {
    let e = env();
    let key = e.key("acme", &[Scope::Ingest, Scope::Read]);
    let mut events = Vec::new();
    for i in 0..5 {
        let t = format!("2026-11-22T1{i}:00:00Z");
        let mut s = at(&uuid(), "sent", "ann@example.org", &format!("m-{i}"), &t);
        s["tags"] = json!([if i % 2 == 0 { "even" } else { "odd" }]);
        s["campaign"] = "november".into();
        events.push(s);
    }
    let mut bounce = at(
        &uuid(),
        "bounced",
        "bob@example.org",
        "m-9",
        "2026-11-23T09:00:00Z",
    );
    bounce["sending_domain"] = "Other.Example.com".into();
    events.push(bounce);
    ingest(&e, &key, events).await;
    e.project().await;
    let all = e.ok(Method::GET, "/v1/messages", &key, None).await;
    assert_eq!(ids(&all), ["m-9", "m-4", "m-3", "m-2", "m-1", "m-0"]);
    assert_eq!(all["next"], Value::Null);
    assert_eq!(all["items"][0]["recipient"], "bob@example.org");
    // Pages of two, following the cursor.
    let mut seen = Vec::new();
    let mut uri = "/v1/messages?limit=2&campaign=november".to_owned();
    loop {
        let page = e.ok(Method::GET, &uri, &key, None).await;
        seen.extend(ids(&page));
        match page["next"].as_str() {
            Some(c) => uri = format!("/v1/messages?limit=2&campaign=november&cursor={c}"),
            None => break,
        }
    }
    assert_eq!(seen, ["m-4", "m-3", "m-2", "m-1", "m-0"]);
    let even = e.ok(Method::GET, "/v1/messages?tag=even", &key, None).await;
    assert_eq!(ids(&even), ["m-4", "m-2", "m-0"]);
    let bounced = e
        .ok(Method::GET, "/v1/messages?status=bounced", &key, None)
        .await;
    assert_eq!(ids(&bounced), ["m-9"]);
    let domain = e
        .ok(
            Method::GET,
            "/v1/messages?sending_domain=OTHER.example.com",
            &key,
            None,
        )
        .await;
    assert_eq!(ids(&domain), ["m-9"]);
    let range = e
        .ok(
            Method::GET,
            "/v1/messages?from=2026-11-22T11:00:00Z&to=2026-11-22T13:00:00%2B00:00",
            &key,
            None,
        )
        .await;
    assert_eq!(ids(&range), ["m-2", "m-1"]);
    // The body form, with the recipient.
    let search = e
        .ok(
            Method::POST,
            "/v1/messages/search",
            &key,
            Some(&json!({"recipient": "ann@Example.ORG", "tag": "odd", "limit": 10})),
        )
        .await;
    assert_eq!(ids(&search), ["m-3", "m-1"]);
    let nobody = e
        .ok(
            Method::POST,
            "/v1/messages/search",
            &key,
            Some(&json!({"recipient": "nobody@example.org"})),
        )
        .await;
    assert_eq!(nobody, json!({"items": [], "next": null}));
}

#[tokio::test]
async fn bad_query_parameters_are_400_problems_naming_the_parameter() {
    let e = env();
    let key = e.key("acme", &[Scope::Read]);
    let cases = [
        ("/v1/messages?status=zedlost", "status"),
        ("/v1/messages?from=zedyesterday", "from"),
        ("/v1/messages?to=2026-13-01T00:00:00Z", "to"),
        (
            "/v1/messages?from=2026-11-23T00:00:00Z&to=2026-11-22T00:00:00Z",
            "from",
        ),
        ("/v1/messages?limit=0", "limit"),
        ("/v1/messages?limit=1001", "limit"),
        ("/v1/messages?limit=zedmany", "limit"),
        ("/v1/messages?cursor=zz", "cursor"),
        ("/v1/messages?colour=zed", "colour"),
        ("/v1/messages?limit=1&limit=2", "limit"),
        ("/v1/messages?tag=zed%40secret.example", "tag"),
        ("/v1/messages?campaign=", "campaign"),
        ("/v1/suppressions?limit=0", "limit"),
        ("/v1/suppressions?include_lapsed=zedmaybe", "include_lapsed"),
        ("/v1/suppressions?cursor=zz", "cursor"),
        ("/v1/suppressions?colour=1", "colour"),
        ("/v1/analytics?to=2026-11-23T00:00:00Z", "from"),
        ("/v1/analytics?from=2026-11-22T00:00:00Z", "to"),
        (
            "/v1/analytics?from=2026-11-22T00:00:00Z&to=2026-11-23T00:00:00Z&granularity=zedweek",
            "granularity",
        ),
        (
            "/v1/analytics?from=2026-11-22T00:00:00Z&to=2026-11-23T00:00:00Z&group_by=zedcolour",
            "group_by",
        ),
        (
            "/v1/analytics?from=2026-11-23T00:00:00Z&to=2026-11-22T00:00:00Z",
            "from",
        ),
    ];
    for (uri, param) in cases {
        let r = e.call(Method::GET, uri, Some(&key), None).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{uri}: {}", r.text());
        assert_eq!(r.content_type(), PROBLEM, "{uri}");
        let detail = r.json()["detail"].as_str().unwrap().to_owned();
        assert!(
            detail.contains(&format!("`{param}`")),
            "{uri}: {detail} should name {param}"
        );
        assert!(!detail.contains("zed"), "{uri}: {detail} quotes a value");
    }
    // Bad body fields are named too.
    for (body, field) in [
        (json!({"status": "lost"}), "status"),
        (json!({"limit": 0}), "limit"),
        (json!({"limit": "ten"}), "limit"),
        (json!({"from": "soon"}), "from"),
        (json!({"recipient": "zed-without-at"}), "address"),
        (json!({"colour": "red"}), "colour"),
    ] {
        let r = e
            .call(Method::POST, "/v1/messages/search", Some(&key), Some(&body))
            .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{body}: {}", r.text());
        assert_eq!(r.content_type(), PROBLEM);
        let detail = r.json()["detail"].as_str().unwrap().to_owned();
        assert!(detail.contains(field), "{detail} should name {field}");
        assert!(
            !detail.contains("zed") && !detail.contains("soon"),
            "{detail}"
        );
    }
}
