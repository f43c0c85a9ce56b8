//! The projection-backed routes: messages, suppressions, sends/check,
//! analytics; readiness and metrics of the projections; tenant isolation.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use axum::http::{Method, StatusCode};
use common::{Env, env, env_without_projections, event, uuid};
use mailledger_api::Scope;
use serde_json::{Value, json};

const PROBLEM: &str = "application/problem+json";

/// An event at a given time, with tags and a campaign.
fn at(id: &str, t: &str, address: &str, message: &str, time: &str) -> Value {
    let mut e = event(id, t, address, message);
    e["occurred_at"] = time.into();
    e
}

async fn ingest(e: &Env, key: &str, events: Vec<Value>) -> Value {
    e.ok(
        Method::POST,
        "/v1/events",
        key,
        Some(&json!({ "events": events })),
    )
    .await
}

fn ids(page: &Value) -> Vec<String> {
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["message_id"].as_str().unwrap().to_owned())
        .collect()
}

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

#[tokio::test]
async fn manual_suppressions_are_events_checked_listed_and_removed() {
    let e = env();
    let key = e.key("acme", &[Scope::Ingest, Scope::Read]);
    // A v4 id carries no time, so its retry could not be told from a new
    // entry: refused. A v7 id's time is the entry's time.
    let v4 = json!({"address": "ann@Example.org", "reason": "asked by phone", "id": uuid()});
    let r = e
        .call(Method::POST, "/v1/suppressions", Some(&key), Some(&v4))
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text());
    assert!(r.text().contains("UUID v7"), "{}", r.text());
    let id = uuid::Uuid::now_v7().to_string();
    let add = json!({"address": "ann@Example.org", "scope": "newsletter",
                     "reason": "asked by phone", "id": id});
    let first = e
        .ok(Method::POST, "/v1/suppressions", &key, Some(&add))
        .await;
    assert_eq!(first["id"], id.as_str());
    assert_eq!(first["duplicate"], false);
    let head = e.state.email.log().head();
    let again = e
        .ok(Method::POST, "/v1/suppressions", &key, Some(&add))
        .await;
    assert_eq!(again["duplicate"], true);
    assert_eq!(again["position"], first["position"]);
    assert_eq!(e.state.email.log().head(), head);
    // Without an id, a new UUID v7.
    let other = e
        .ok(
            Method::POST,
            "/v1/suppressions",
            &key,
            Some(
                &json!({"address": "bob@example.org", "reason": "legal hold",
                         "expires_at": "2999-01-01T00:00:00Z"}),
            ),
        )
        .await;
    assert_eq!(
        uuid::Uuid::parse_str(other["id"].as_str().unwrap())
            .unwrap()
            .get_version_num(),
        7
    );
    e.project().await;
    let check = |scope: Option<&str>| {
        let mut b = json!({"address": "ann@example.org"});
        if let Some(s) = scope {
            b["scope"] = s.into();
        }
        b
    };
    let refused = e
        .ok(
            Method::POST,
            "/v1/sends/check",
            &key,
            Some(&check(Some("newsletter"))),
        )
        .await;
    assert_eq!(refused["allowed"], false);
    assert_eq!(refused["reason"], "manual");
    assert_eq!(refused["scope"], "newsletter");
    assert_eq!(refused["event_id"], id.as_str());
    assert_eq!(refused["position"], first["position"]);
    assert_eq!(refused["expires_at"], Value::Null);
    assert!(refused["since"].is_string());
    // A topic's entry does not suppress all mail.
    let allowed = e
        .ok(Method::POST, "/v1/sends/check", &key, Some(&check(None)))
        .await;
    assert_eq!(allowed, json!({"allowed": true}));
    let bob = e
        .ok(
            Method::POST,
            "/v1/sends/check",
            &key,
            Some(&json!({"address": "bob@example.org", "scope": "anything"})),
        )
        .await;
    assert_eq!(bob["allowed"], false);
    assert_eq!(bob["scope"], "all");
    assert_eq!(bob["expires_at"], "2999-01-01T00:00:00Z");
    let lookup = e
        .ok(
            Method::POST,
            "/v1/suppressions/lookup",
            &key,
            Some(&json!({"address": "ann@example.org"})),
        )
        .await;
    let entries = lookup["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0]["note"], "asked by phone");
    assert_eq!(entries[0]["active"], true);
    let list = e.ok(Method::GET, "/v1/suppressions", &key, None).await;
    assert_eq!(list["items"].as_array().unwrap().len(), 2);
    let page = e
        .ok(Method::GET, "/v1/suppressions?limit=1", &key, None)
        .await;
    assert_eq!(page["items"].as_array().unwrap().len(), 1);
    let c = page["next"].as_str().unwrap();
    let rest = e
        .ok(
            Method::GET,
            &format!("/v1/suppressions?limit=1&cursor={c}&include_lapsed=true"),
            &key,
            None,
        )
        .await;
    assert_eq!(rest["items"].as_array().unwrap().len(), 1);
    assert_ne!(rest["items"][0]["contact"], page["items"][0]["contact"]);
    // Removal is an event too.
    let removed = e
        .ok(
            Method::POST,
            "/v1/suppressions/remove",
            &key,
            Some(&json!({"address": "ann@example.org", "scope": "newsletter"})),
        )
        .await;
    assert_eq!(removed["duplicate"], false);
    e.project().await;
    let now = e
        .ok(
            Method::POST,
            "/v1/sends/check",
            &key,
            Some(&check(Some("newsletter"))),
        )
        .await;
    assert_eq!(now, json!({"allowed": true}));
    let metrics = e.scrape().await.text();
    assert!(metrics.contains("mailledger_suppression_checks_total{outcome=\"allowed\"} 2"));
    assert!(metrics.contains("mailledger_suppression_checks_total{outcome=\"suppressed\"} 2"));
    assert!(!metrics.contains("ann@"));
}

#[tokio::test]
async fn bad_suppression_bodies_are_refused_and_append_nothing() {
    let e = env();
    let key = e.key("acme", &[Scope::Ingest, Scope::Read]);
    for (uri, body, field) in [
        (
            "/v1/suppressions",
            json!({"address": "a@example.org"}),
            "reason",
        ),
        (
            "/v1/suppressions",
            json!({"address": "a@example.org", "reason": "r", "expires_at": "soon"}),
            "expires_at",
        ),
        (
            "/v1/suppressions",
            json!({"address": "a@example.org", "reason": "r", "id": "zed"}),
            "id",
        ),
        (
            "/v1/suppressions",
            json!({"address": "a@example.org", "reason": "mail zed@secret.example"}),
            "reason",
        ),
        (
            "/v1/suppressions",
            json!({"address": "a@example.org", "reason": "r", "scope": ""}),
            "scope",
        ),
        (
            "/v1/suppressions",
            json!({"address": "zed-not-an-address", "reason": "r"}),
            "address",
        ),
        (
            "/v1/suppressions/remove",
            json!({"address": "a@example.org", "reason": ""}),
            "reason",
        ),
        (
            "/v1/sends/check",
            json!({"address": "a@example.org", "scope": "x@y"}),
            "scope",
        ),
        ("/v1/sends/check", json!({}), "address"),
        ("/v1/suppressions/lookup", json!({"address": 7}), "line"),
    ] {
        let r = e.call(Method::POST, uri, Some(&key), Some(&body)).await;
        assert_eq!(
            r.status,
            StatusCode::BAD_REQUEST,
            "{uri} {body}: {}",
            r.text()
        );
        assert_eq!(r.content_type(), PROBLEM);
        let detail = r.json()["detail"].as_str().unwrap().to_owned();
        assert!(
            detail.contains(field),
            "{uri}: {detail} should name {field}"
        );
        assert!(!detail.contains("zed"), "{detail}");
    }
    assert_eq!(e.state.email.log().head(), 0);
    // A read key may not add or remove; an erase-only key may not check.
    let read = e.key("acme", &[Scope::Read]);
    let erase = e.key("acme", &[Scope::Erase]);
    let body = json!({"address": "a@example.org", "reason": "r"});
    for (uri, k) in [
        ("/v1/suppressions", &read),
        ("/v1/suppressions/remove", &read),
        ("/v1/sends/check", &erase),
        ("/v1/suppressions/lookup", &erase),
    ] {
        let r = e.call(Method::POST, uri, Some(k), Some(&body)).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{uri}");
    }
    // An ingest key may check (the sending system asks before sending).
    let ingest = e.key("acme", &[Scope::Ingest]);
    e.ok(
        Method::POST,
        "/v1/sends/check",
        &ingest,
        Some(&json!({"address": "a@example.org"})),
    )
    .await;
}

#[tokio::test]
async fn removing_a_complaint_needs_a_reason() {
    let e = env();
    let key = e.key("acme", &[Scope::Ingest, Scope::Read]);
    ingest(
        &e,
        &key,
        vec![event(&uuid(), "complained", "ann@example.org", "m-1")],
    )
    .await;
    // Not projected yet: the removal waits for the projection itself.
    let head = e.state.email.log().head();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let runner = tokio::spawn(
        std::sync::Arc::clone(&e.projections)
            .run(std::sync::Arc::clone(e.state.email.log()), stopped),
    );
    let addr = json!({"address": "ann@example.org"});
    let r = e
        .call(
            Method::POST,
            "/v1/suppressions/remove",
            Some(&key),
            Some(&addr),
        )
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.text());
    assert_eq!(r.content_type(), PROBLEM);
    assert_eq!(r.json()["type"], "urn:mailledger:problem:reason-required");
    assert_eq!(e.state.email.log().head(), head);
    let r = e
        .ok(
            Method::POST,
            "/v1/suppressions/remove",
            &key,
            Some(&json!({"address": "ann@example.org", "reason": "complaint made in error"})),
        )
        .await;
    assert_eq!(r["position"].as_u64().unwrap(), head);
    assert!(
        e.projections
            .wait_for(e.state.email.log().head(), Duration::from_secs(10))
            .await
    );
    let now = e
        .ok(Method::POST, "/v1/sends/check", &key, Some(&addr))
        .await;
    assert_eq!(now, json!({"allowed": true}));
    stop.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(10), runner)
        .await
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn an_erased_contact_shows_the_marker_and_its_hard_bounce_still_refuses() {
    let e = env();
    let key = e.key("acme", &[Scope::Ingest, Scope::Read, Scope::Erase]);
    ingest(
        &e,
        &key,
        vec![
            event(&uuid(), "sent", "ann@example.org", "m-1"),
            event(&uuid(), "bounced", "ann@example.org", "m-1"),
        ],
    )
    .await;
    e.ok(
        Method::POST,
        "/v1/erasures",
        &key,
        Some(&json!({"address": "ann@example.org"})),
    )
    .await;
    e.project().await;
    let r = e
        .call(Method::GET, "/v1/messages/m-1", Some(&key), None)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let m = r.json();
    assert_eq!(m["recipient"], json!({"erased": true}));
    assert_eq!(m["status"], "bounced");
    assert_eq!(m["timeline"][1]["diagnostic"], json!({"erased": true}));
    assert!(!r.text().contains("ann@") && !r.text().contains("user unknown"));
    let list = e.ok(Method::GET, "/v1/messages", &key, None).await;
    assert_eq!(list["items"][0]["recipient"], json!({"erased": true}));
    let check = e
        .ok(
            Method::POST,
            "/v1/sends/check",
            &key,
            Some(&json!({"address": "ann@example.org"})),
        )
        .await;
    assert_eq!(check["allowed"], false);
    assert_eq!(check["reason"], "hard_bounce");
    assert_eq!(check["scope"], "all");
}

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

/// A request with another tenant's data, and the same with missing data.
type Pair = (Method, String, Option<Value>, String, Option<Value>);

#[tokio::test]
async fn another_tenants_data_answers_exactly_like_missing_data() {
    let e = env();
    let acme = e.key("acme", &[Scope::Ingest, Scope::Read]);
    let globex = e.key("globex", &[Scope::Ingest, Scope::Read]);
    ingest(
        &e,
        &acme,
        vec![
            event(&uuid(), "sent", "ann@example.org", "m-1"),
            event(&uuid(), "bounced", "ann@example.org", "m-1"),
            event(&uuid(), "sent", "bob@example.org", "m-2"),
            event(&uuid(), "complained", "bob@example.org", "m-2"),
        ],
    )
    .await;
    e.project().await;
    // acme's cursors.
    let page = e.ok(Method::GET, "/v1/messages?limit=1", &acme, None).await;
    let message_cursor = page["next"].as_str().unwrap().to_owned();
    let page = e
        .ok(Method::GET, "/v1/suppressions?limit=1", &acme, None)
        .await;
    let suppression_cursor = page["next"].as_str().unwrap().to_owned();
    // What globex gets for acme's things, and for things nobody has.
    let cases: Vec<Pair> = vec![
        (
            Method::GET,
            "/v1/messages/m-1".into(),
            None,
            "/v1/messages/m-404".into(),
            None,
        ),
        (
            Method::GET,
            format!("/v1/messages?limit=1&cursor={message_cursor}"),
            None,
            format!("/v1/messages?limit=1&cursor={}", "7".repeat(32)),
            None,
        ),
        (
            Method::GET,
            format!("/v1/suppressions?limit=1&cursor={suppression_cursor}"),
            None,
            format!(
                "/v1/suppressions?limit=1&cursor={}",
                "7".repeat(suppression_cursor.len())
            ),
            None,
        ),
        (
            Method::POST,
            "/v1/messages/search".into(),
            Some(json!({"recipient": "ann@example.org"})),
            "/v1/messages/search".into(),
            Some(json!({"recipient": "nobody@example.org"})),
        ),
        (
            Method::POST,
            "/v1/suppressions/lookup".into(),
            Some(json!({"address": "ann@example.org"})),
            "/v1/suppressions/lookup".into(),
            Some(json!({"address": "nobody@example.org"})),
        ),
        (
            Method::POST,
            "/v1/sends/check".into(),
            Some(json!({"address": "bob@example.org"})),
            "/v1/sends/check".into(),
            Some(json!({"address": "nobody@example.org"})),
        ),
        (
            Method::GET,
            "/v1/analytics?from=2026-11-22T00:00:00Z&to=2026-11-23T00:00:00Z".into(),
            None,
            // A day in which nobody sent anything.
            "/v1/analytics?from=2020-01-01T00:00:00Z&to=2020-01-02T00:00:00Z".into(),
            None,
        ),
    ];
    for (method, theirs, theirs_body, missing, missing_body) in cases {
        let a = e
            .call(method.clone(), &theirs, Some(&globex), theirs_body.as_ref())
            .await;
        let b = e
            .call(
                method.clone(),
                &missing,
                Some(&globex),
                missing_body.as_ref(),
            )
            .await;
        assert_eq!(a.status, b.status, "{method} {theirs}");
        assert_eq!(a.body, b.body, "{method} {theirs}");
        assert!(a.status == StatusCode::OK || a.status == StatusCode::NOT_FOUND);
        assert!(!a.text().contains("ann@") && !a.text().contains("m-1\""));
        // And acme sees its own.
        let mine = e
            .call(method, &theirs, Some(&acme), theirs_body.as_ref())
            .await;
        assert_eq!(mine.status, StatusCode::OK, "{theirs}: {}", mine.text());
    }
    let analytics = e
        .ok(
            Method::GET,
            "/v1/analytics?from=2026-11-22T00:00:00Z&to=2026-11-23T00:00:00Z",
            &globex,
            None,
        )
        .await;
    assert_eq!(analytics["total"]["counts"]["sent"], 0);
    // Removing a suppression without a reason: acme's complained contact
    // needs one from acme; from globex the same address answers like any
    // other, so a 409 cannot tell globex that acme's contact complained.
    let remove = |key: &str, address: &str| {
        let body = json!({ "address": address });
        let key = key.to_owned();
        let e = &e;
        async move {
            let r = e
                .call(
                    Method::POST,
                    "/v1/suppressions/remove",
                    Some(&key),
                    Some(&body),
                )
                .await;
            // Each removal is an event: projected before the next check.
            e.project().await;
            r
        }
    };
    // The reads above left access records: applied, like any event.
    e.project().await;
    let theirs = remove(&globex, "bob@example.org").await;
    let missing = remove(&globex, "nobody@example.org").await;
    assert_eq!(theirs.status, StatusCode::OK, "{}", theirs.text());
    assert_eq!(theirs.status, missing.status);
    assert!(!theirs.text().contains("bob@"));
    let mine = remove(&acme, "bob@example.org").await;
    assert_eq!(mine.status, StatusCode::CONFLICT, "{}", mine.text());
}

#[tokio::test]
async fn without_projections_the_query_routes_answer_503() {
    let e = env_without_projections();
    let key = e.key("acme", &[Scope::Ingest, Scope::Read]);
    let addr = json!({"address": "ann@example.org", "reason": "r"});
    let check = json!({"address": "ann@example.org"});
    for (method, uri, body) in [
        (Method::GET, "/v1/messages/m-1", None),
        (Method::GET, "/v1/messages", None),
        (Method::POST, "/v1/messages/search", Some(json!({}))),
        (Method::GET, "/v1/suppressions", None),
        (Method::POST, "/v1/suppressions/lookup", Some(check.clone())),
        (Method::POST, "/v1/suppressions", Some(addr.clone())),
        (Method::POST, "/v1/suppressions/remove", Some(check.clone())),
        (Method::POST, "/v1/sends/check", Some(check.clone())),
        (
            Method::GET,
            "/v1/analytics?from=2026-11-22T00:00:00Z&to=2026-11-23T00:00:00Z",
            None,
        ),
    ] {
        let r = e.call(method, uri, Some(&key), body.as_ref()).await;
        assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{uri}");
        assert_eq!(r.content_type(), PROBLEM);
        assert_eq!(
            r.json()["type"],
            "urn:mailledger:problem:projections-unavailable",
            "{uri}"
        );
    }
    assert_eq!(e.state.email.log().head(), 0);
}

#[tokio::test]
async fn readyz_waits_for_the_projections_and_metrics_show_their_lag() {
    let e = env();
    e.state.ready.set(false);
    let key = e.key("acme", &[Scope::Ingest]);
    ingest(
        &e,
        &key,
        vec![
            event(&uuid(), "sent", "ann@example.org", "m-1"),
            event(&uuid(), "delivered", "ann@example.org", "m-1"),
        ],
    )
    .await;
    let head = e.state.email.log().head();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let waiter = {
        let state = e.state.clone();
        tokio::spawn(async move { state.become_ready(stopped).await })
    };
    let r = e.call(Method::GET, "/readyz", None, None).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(r.content_type(), PROBLEM);
    let detail = r.json()["detail"].as_str().unwrap().to_owned();
    assert!(
        detail.contains(&format!("delivery-log at 0 (lag {head})")),
        "{detail}"
    );
    let metrics = e.scrape().await.text();
    assert!(
        metrics.contains(&format!(
            "mailledger_projection_lag_events{{projection=\"suppressions\"}} {head}"
        )),
        "{metrics}"
    );
    e.project().await;
    tokio::time::timeout(Duration::from_secs(10), waiter)
        .await
        .unwrap()
        .unwrap();
    let ready = e.call(Method::GET, "/readyz", None, None).await;
    assert_eq!(ready.status, StatusCode::OK, "{}", ready.text());
    let r = ready.json();
    assert_eq!(r["status"], "ready");
    assert_eq!(r["head"], head);
    let names: Vec<&str> = r["projections"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            assert_eq!(p["lag"], 0);
            assert_eq!(p["checkpoint"], head);
            p["name"].as_str().unwrap()
        })
        .collect();
    assert_eq!(names, ["delivery-log", "suppressions", "analytics"]);
    let metrics = e.scrape().await.text();
    assert!(metrics.contains("mailledger_projection_lag_events{projection=\"analytics\"} 0"));
    drop(stop);
}

#[tokio::test]
async fn a_removal_without_a_reason_waits_for_the_suppression_list_or_says_retry() {
    let e = env();
    let key = e.key("acme", &[Scope::Ingest, Scope::Read]);
    ingest(
        &e,
        &key,
        vec![event(&uuid(), "complained", "ann@example.org", "m-1")],
    )
    .await;
    // No runner: the suppression list stays behind the head.
    let head = e.state.email.log().head();
    let r = e
        .call(
            Method::POST,
            "/v1/suppressions/remove",
            Some(&key),
            Some(&json!({"address": "ann@example.org"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{}", r.text());
    assert_eq!(r.content_type(), PROBLEM);
    assert!(r.headers.contains_key(axum::http::header::RETRY_AFTER));
    assert_eq!(e.state.email.log().head(), head);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_rebuild_swaps_in_the_same_state_while_queries_go_on() {
    let e = env();
    let key = e.key("acme", &[Scope::Ingest, Scope::Read]);
    let admin = e.admin.clone();
    let events: Vec<Value> = (0..50)
        .map(|i| {
            at(
                &uuid(),
                "sent",
                &format!("r{i}@example.org"),
                &format!("m-{i}"),
                "2026-11-22T10:00:00Z",
            )
        })
        .collect();
    ingest(&e, &key, events).await;
    e.project().await;
    let before = e
        .ok(Method::GET, "/v1/messages?limit=100", &key, None)
        .await;
    assert_eq!(ids(&before).len(), 50);

    let bad = e
        .call(
            Method::POST,
            "/v1/admin/projections/rebuild",
            Some(&admin),
            Some(&json!({"projection": "nope"})),
        )
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    let forbidden = e
        .call(
            Method::POST,
            "/v1/admin/projections/rebuild",
            Some(&key),
            Some(&json!({})),
        )
        .await;
    assert_eq!(forbidden.status, StatusCode::FORBIDDEN);

    let r = e
        .call(
            Method::POST,
            "/v1/admin/projections/rebuild",
            Some(&admin),
            Some(&json!({"projection": "all"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text());
    // Queries answer while it runs, and the rebuilt stores give the same.
    let mut finished = false;
    for _ in 0..200 {
        let during = e
            .ok(Method::GET, "/v1/messages?limit=100", &key, None)
            .await;
        assert_eq!(ids(&during).len(), 50);
        let s = e
            .ok(Method::GET, "/v1/admin/projections", &admin, None)
            .await;
        if s["rebuild"]["running"] == json!(false) {
            assert_eq!(s["rebuild"]["error"], Value::Null);
            assert_eq!(s["rebuild"]["projections"].as_array().unwrap().len(), 3);
            finished = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(finished, "the rebuild finished");
    let after = e
        .ok(Method::GET, "/v1/messages?limit=100", &key, None)
        .await;
    assert_eq!(before, after);
}
