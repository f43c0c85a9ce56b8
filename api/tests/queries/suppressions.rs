//! Suppressions: manual ones as events, refused bodies, reasons for removals, erased contacts still refused.

use super::*;

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
    // Removal is an event too. A removal without a reason waits for the
    // suppression list to reach the log's head, which the access records
    // of the reads above (appended in the background) have moved: this
    // test projects by hand, so it does so first.
    e.project().await;
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
