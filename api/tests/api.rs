//! The HTTP API through `router(state)`, one request at a time.

#![allow(clippy::unwrap_used)]

mod common;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use base64::Engine as _;
use common::{Env, env, env_with, env_with_ingest_runtime, event, uuid};
use mailledger_api::{Limits, Scope};
use serde_json::{Value, json};

const PROBLEM: &str = "application/problem+json";

#[tokio::test]
async fn every_auth_failure_answers_the_same_401() {
    let e = env();
    let key = e.key("acme", &[Scope::Read]);
    let revoked = e.key("acme", &[Scope::Read]);
    let revoked_id = revoked.split('_').nth(1).unwrap().to_owned();
    e.state.access.revoke_key(&revoked_id).unwrap();
    let (id, _) = key.trim_start_matches("mlk_").split_once('_').unwrap();
    let wrong_secret = format!("mlk_{id}_{}", "0".repeat(48));
    let unknown_id = format!("mlk_{}_{}", "1".repeat(16), "2".repeat(48));
    let body = json!({"address": "ann@example.org"});
    let headers: Vec<Option<String>> = vec![
        None,
        Some("Bearer".into()),
        Some("Bearer junk".into()),
        Some(format!("Bearer {wrong_secret}")),
        Some(format!("Bearer {unknown_id}")),
        Some(format!("Bearer {revoked}")),
        Some(format!("Token {key}")),
        Some("Basic !!!".into()),
        Some(format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("api:{wrong_secret}"))
        )),
    ];
    let mut first: Option<(StatusCode, Vec<u8>)> = None;
    for h in headers {
        let mut req =
            Request::post("/v1/contacts/export").header(header::CONTENT_TYPE, "application/json");
        if let Some(h) = &h {
            req = req.header(header::AUTHORIZATION, h);
        }
        let r = e
            .send(req.body(Body::from(body.to_string())).unwrap())
            .await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{h:?}");
        assert_eq!(r.content_type(), PROBLEM);
        assert!(r.headers.contains_key(header::WWW_AUTHENTICATE));
        match &first {
            None => first = Some((r.status, r.body.to_vec())),
            Some((_, b)) => assert_eq!(b, &r.body.to_vec(), "{h:?}"),
        }
    }
    // The valid key works.
    let r = e
        .call(Method::POST, "/v1/contacts/export", Some(&key), Some(&body))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
}

#[tokio::test]
async fn a_key_works_as_the_basic_auth_password() {
    let e = env();
    let key = e.key("acme", &[Scope::Ingest]);
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("postal:{key}"));
    let body = json!({"events": [event(&uuid(), "sent", "ann@example.org", "m-1")]});
    let req = Request::post("/v1/events")
        .header(header::AUTHORIZATION, format!("Basic {basic}"))
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.to_string()))
        .unwrap();
    let r = e.send(req).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.json()["appended"], 1);
}

#[tokio::test]
async fn a_key_without_the_scope_gets_403() {
    let e = env();
    let ingest = e.key("acme", &[Scope::Ingest]);
    let read = e.key("acme", &[Scope::Read]);
    let cases = [
        (
            Method::POST,
            "/v1/contacts/export",
            &ingest,
            Some(json!({"address": "a@b.example"})),
        ),
        (
            Method::POST,
            "/v1/events",
            &read,
            Some(json!({"events": []})),
        ),
        (
            Method::POST,
            "/v1/erasures",
            &read,
            Some(json!({"address": "a@b.example"})),
        ),
        (Method::GET, "/v1/admin/tenants", &read, None),
        (
            Method::POST,
            "/v1/admin/keys",
            &ingest,
            Some(json!({"tenant": "acme", "scopes": ["admin"]})),
        ),
    ];
    for (m, uri, key, body) in cases {
        let r = e.call(m, uri, Some(key), body.as_ref()).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{uri}");
        assert_eq!(r.content_type(), PROBLEM);
        assert_eq!(r.json()["type"], "urn:mailledger:problem:forbidden");
    }
}

// A request id belongs to one contact: reused for another, the answer is
// 409 `request-id-conflict` and nothing is erased; a new id for a contact
// erased before gets a receipt of its own, found again by its id; an address
// the tenant never saw is receipted with `key_found: false`.
#[tokio::test]
async fn an_erasure_request_id_belongs_to_one_contact() {
    let e = env();
    let ingest = e.key("acme", &[Scope::Ingest]);
    let erase = e.key("acme", &[Scope::Erase, Scope::Read]);
    let body = json!({"events": [
        event(&uuid(), "sent", "ann@example.org", "m-1"),
        event(&uuid(), "sent", "john@example.com", "m-2"),
    ]});
    let r = e
        .call(Method::POST, "/v1/events", Some(&ingest), Some(&body))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let erase_as = |address: &str, id: &str| json!({"address": address, "request_id": id});
    let ann = e
        .call(
            Method::POST,
            "/v1/erasures",
            Some(&erase),
            Some(&erase_as("ann@example.org", "dsr-1")),
        )
        .await;
    assert_eq!(ann.status, StatusCode::OK, "{}", ann.text());
    assert_eq!(ann.json()["key_found"], true);
    let john = e
        .call(
            Method::POST,
            "/v1/erasures",
            Some(&erase),
            Some(&erase_as("john@example.com", "dsr-1")),
        )
        .await;
    assert_eq!(john.status, StatusCode::CONFLICT, "{}", john.text());
    assert_eq!(
        john.json()["type"],
        "urn:mailledger:problem:request-id-conflict"
    );
    assert!(!john.text().contains("john"), "no address in the answer");
    e.project().await;
    let timeline = e
        .call(Method::GET, "/v1/messages/m-2", Some(&erase), None)
        .await;
    assert!(
        timeline.text().contains("john@example.com"),
        "John's data is still readable: {}",
        timeline.text()
    );
    let again = e
        .call(
            Method::POST,
            "/v1/erasures",
            Some(&erase),
            Some(&erase_as("ann@example.org", "dsr-2")),
        )
        .await;
    assert_eq!(again.status, StatusCode::OK);
    assert_eq!(again.json()["request_id"], "dsr-2");
    let found = e
        .call(Method::GET, "/v1/erasures/dsr-2", Some(&erase), None)
        .await;
    assert_eq!(found.json(), again.json());
    let never = e
        .call(
            Method::POST,
            "/v1/erasures",
            Some(&erase),
            Some(&erase_as("nobody@example.net", "dsr-3")),
        )
        .await;
    assert_eq!(never.json()["key_found"], false);
    assert_eq!(never.json()["events_unreadable"], 0);
}

#[tokio::test]
async fn another_tenants_receipt_answers_exactly_like_a_missing_one() {
    let e = env();
    let acme = e.key("acme", &[Scope::Erase, Scope::Read]);
    let other = e.key("globex", &[Scope::Erase, Scope::Read]);
    let r = e
        .call(
            Method::POST,
            "/v1/erasures",
            Some(&acme),
            Some(&json!({"address": "ann@example.org", "request_id": "dsr-1"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let mine = e
        .call(Method::GET, "/v1/erasures/dsr-1", Some(&acme), None)
        .await;
    assert_eq!(mine.status, StatusCode::OK);
    assert_eq!(mine.json(), r.json());
    let theirs = e
        .call(Method::GET, "/v1/erasures/dsr-1", Some(&other), None)
        .await;
    let missing = e
        .call(Method::GET, "/v1/erasures/dsr-2", Some(&other), None)
        .await;
    assert_eq!(theirs.status, StatusCode::NOT_FOUND);
    assert_eq!(theirs.status, missing.status);
    assert_eq!(theirs.body, missing.body);
    assert_eq!(theirs.content_type(), PROBLEM);
}

#[tokio::test]
async fn a_retried_batch_appends_nothing_and_returns_the_same_positions() {
    // Inline, and on an ingest runtime of its own, as `mailledger serve` runs it.
    for e in [env(), env_with_ingest_runtime()] {
        retried_batch(&e).await;
    }
}

async fn retried_batch(e: &Env) {
    let key = e.key("acme", &[Scope::Ingest]);
    let body = json!({"events": [
        event(&uuid(), "sent", "ann@example.org", "m-1"),
        event(&uuid(), "delivered", "ann@example.org", "m-1"),
        event(&uuid(), "bounced", "bob@example.org", "m-2"),
    ]});
    let first = e
        .call(Method::POST, "/v1/events", Some(&key), Some(&body))
        .await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.text());
    assert_eq!(first.json()["appended"], 3);
    let head = e.state.email.log().head();
    let again = e
        .call(Method::POST, "/v1/events", Some(&key), Some(&body))
        .await;
    assert_eq!(again.status, StatusCode::OK);
    assert_eq!(again.json()["appended"], 0);
    assert_eq!(again.json()["duplicates"], 3);
    let positions = |v: &Value| -> Vec<u64> {
        v["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| o["position"].as_u64().unwrap())
            .collect()
    };
    assert_eq!(positions(&first.json()), positions(&again.json()));
    assert_eq!(e.state.email.log().head(), head);
    // A bad event in a batch: 400 naming it, and nothing written.
    let bad = json!({"events": [
        event(&uuid(), "sent", "cy@example.org", "m-3"),
        {"id": uuid(), "type": "sent"},
    ]});
    let r = e
        .call(Method::POST, "/v1/events", Some(&key), Some(&bad))
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text());
    assert!(
        r.json()["detail"].as_str().unwrap().contains("event 1"),
        "{}",
        r.text()
    );
    assert_eq!(e.state.email.log().head(), head);
}

#[tokio::test]
async fn a_body_over_one_mib_is_413_problem_json() {
    let e = env();
    let key = e.key("acme", &[Scope::Ingest]);
    let big = vec![b' '; 1024 * 1024 + 1];
    let r = e
        .send(
            Request::post("/v1/events")
                .header(header::AUTHORIZATION, format!("Bearer {key}"))
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(big))
                .unwrap(),
        )
        .await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(r.content_type(), PROBLEM);
    assert_eq!(r.json()["status"], 413);
    assert_eq!(r.json()["type"], "urn:mailledger:problem:payload-too-large");
}

#[tokio::test]
async fn more_than_1000_events_is_400_and_nothing_is_written() {
    let e = env();
    let key = e.key("acme", &[Scope::Ingest]);
    let events: Vec<Value> = (0..1001)
        .map(|i| event(&uuid(), "sent", "ann@example.org", &format!("m-{i}")))
        .collect();
    let r = e
        .call(
            Method::POST,
            "/v1/events",
            Some(&key),
            Some(&json!({ "events": events })),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text());
    assert_eq!(r.content_type(), PROBLEM);
    assert!(r.json()["detail"].as_str().unwrap().contains("1000"));
    assert_eq!(e.state.email.log().head(), 0);
}

#[tokio::test]
async fn bad_bodies_are_400_problems_naming_the_field_never_the_value() {
    let e = env();
    let key = e.key("acme", &[Scope::Ingest]);
    let mut unknown = event(&uuid(), "sent", "zed@secret.example", "m-1");
    unknown["colour"] = "zed@secret.example".into();
    let mut wrong_type = event(&uuid(), "sent", "zed@secret.example", "m-1");
    wrong_type["size"] = "zed@secret.example".into();
    let cases = [
        (json!({"events": [unknown]}).to_string(), "colour"),
        (json!({"events": [wrong_type]}).to_string(), "event 0"),
        (
            json!({"events": [], "extra": "zed@secret.example"}).to_string(),
            "extra",
        ),
        ("{\"events\": [".to_owned(), "not valid JSON"),
        (
            json!([event(&uuid(), "sent", "zed@secret.example", "m")]).to_string(),
            "must be a JSON object",
        ),
    ];
    for (body, expect) in cases {
        let r = e
            .send(
                Request::post("/v1/events")
                    .header(header::AUTHORIZATION, format!("Bearer {key}"))
                    .header(header::CONTENT_TYPE, "application/json")
                    .body(Body::from(body))
                    .unwrap(),
            )
            .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text());
        assert_eq!(r.content_type(), PROBLEM);
        let detail = r.json()["detail"].as_str().unwrap().to_owned();
        assert!(detail.contains(expect), "{detail} should say {expect}");
        assert!(!r.text().contains("zed"), "{} leaks a value", r.text());
    }
    // Not JSON at all.
    let r = e
        .send(
            Request::post("/v1/events")
                .header(header::AUTHORIZATION, format!("Bearer {key}"))
                .header(header::CONTENT_TYPE, "text/plain")
                .body(Body::from("hello"))
                .unwrap(),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(r.content_type(), PROBLEM);
    assert_eq!(e.state.email.log().head(), 0);
}

#[tokio::test]
async fn erasure_then_export_shows_erased_markers() {
    let e = env();
    let key = e.key("acme", &[Scope::Ingest, Scope::Read, Scope::Erase]);
    let body = json!({"events": [
        event(&uuid(), "sent", "ann@Example.org", "m-1"),
        event(&uuid(), "bounced", "ann@example.org", "m-1"),
    ]});
    let r = e
        .call(Method::POST, "/v1/events", Some(&key), Some(&body))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let addr = json!({"address": "ann@example.org"});
    let before = e
        .call(Method::POST, "/v1/contacts/export", Some(&key), Some(&addr))
        .await;
    assert_eq!(before.status, StatusCode::OK, "{}", before.text());
    let b = before.json();
    assert_eq!(b["erased"], false);
    assert_eq!(b["events"].as_array().unwrap().len(), 2);
    assert_eq!(b["events"][1]["diagnostic"], "550 5.1.1 user unknown");
    let receipt = e
        .call(
            Method::POST,
            "/v1/erasures",
            Some(&key),
            Some(&json!({"address": "ann@example.org", "request_id": "dsr-2026-001"})),
        )
        .await;
    assert_eq!(receipt.status, StatusCode::OK, "{}", receipt.text());
    let rj = receipt.json();
    assert_eq!(rj["request_id"], "dsr-2026-001");
    assert_eq!(rj["events_unreadable"], 2);
    assert_eq!(rj["contact"], b["contact"]);
    let again = e
        .call(Method::GET, "/v1/erasures/dsr-2026-001", Some(&key), None)
        .await;
    assert_eq!(again.json(), rj);
    let after = e
        .call(Method::POST, "/v1/contacts/export", Some(&key), Some(&addr))
        .await;
    let a = after.json();
    assert_eq!(a["erased"], true);
    let events = a["events"].as_array().unwrap();
    assert_eq!(events.len(), 3, "{a}");
    assert_eq!(events[0]["recipient"], json!({"erased": true}));
    assert_eq!(events[1]["diagnostic"], json!({"erased": true}));
    assert_eq!(events[2]["type"], "erased");
    assert!(!after.text().contains("ann@"));
    assert!(!after.text().contains("user unknown"));
}

#[tokio::test]
async fn metrics_have_the_expected_families_and_no_address() {
    let e = env();
    let key = e.key("acme", &[Scope::Ingest, Scope::Erase]);
    let body = json!({"events": [event(&uuid(), "sent", "canary@example.org", "m-1")]});
    e.call(Method::POST, "/v1/events", Some(&key), Some(&body))
        .await;
    e.call(
        Method::POST,
        "/v1/erasures",
        Some(&key),
        Some(&json!({"address": "canary@example.org"})),
    )
    .await;
    e.call(Method::GET, "/v1/erasures/canary", Some(&key), None)
        .await;
    e.call(Method::GET, "/no/such/canary@example.org", None, None)
        .await;
    let r = e.scrape().await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.content_type().starts_with("text/plain"));
    let text = r.text();
    for family in [
        "mailledger_http_requests_total",
        "mailledger_http_request_duration_seconds_bucket",
        "mailledger_events_appended_total{type=\"sent\"} 1",
        "mailledger_append_duration_seconds",
        "mailledger_erasures_total 1",
        "mailledger_suppression_checks_total",
        "mailledger_log_head",
        "route=\"/v1/erasures/{request_id}\"",
        "route=\"unmatched\"",
    ] {
        assert!(text.contains(family), "{family} missing from\n{text}");
    }
    assert!(!text.contains("canary"), "{text}");
    assert!(!text.contains(&key));
    // Each scrape reports every projection's lag under its own name.
    let r = e.scrape().await;
    for name in mailledger_projections::NAMES {
        assert!(
            r.text().contains(&format!(
                "mailledger_projection_lag_events{{projection=\"{name}\"}}"
            )),
            "{name}"
        );
    }
}

#[tokio::test]
async fn readyz_follows_the_flag_and_healthz_always_answers() {
    let e = env();
    e.state.ready.set(false);
    let r = e.call(Method::GET, "/readyz", None, None).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(r.content_type(), PROBLEM);
    assert_eq!(
        e.call(Method::GET, "/healthz", None, None).await.status,
        StatusCode::OK
    );
    e.state.ready.set(true);
    assert_eq!(
        e.call(Method::GET, "/readyz", None, None).await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn unknown_routes_and_methods_answer_problem_json() {
    let e = env();
    let r = e.call(Method::GET, "/v1/nothing", None, None).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.content_type(), PROBLEM);
    assert_eq!(r.json()["type"], "urn:mailledger:problem:no-route");
    let r = e.call(Method::DELETE, "/v1/events", None, None).await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(r.content_type(), PROBLEM);
    assert_eq!(r.json()["status"], 405);
}

#[tokio::test]
async fn a_key_over_its_rate_answers_429_with_retry_after() {
    let e = env_with(Limits {
        rate_limit_per_second: 0.5,
        rate_limit_burst: 2,
        ..Limits::default()
    });
    let key = e.key("acme", &[Scope::Erase]);
    for _ in 0..2 {
        let r = e
            .call(Method::GET, "/v1/erasures/x", Some(&key), None)
            .await;
        assert_eq!(r.status, StatusCode::NOT_FOUND);
    }
    let r = e
        .call(Method::GET, "/v1/erasures/x", Some(&key), None)
        .await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(r.content_type(), PROBLEM);
    let wait: u64 = r.headers[header::RETRY_AFTER]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=2).contains(&wait), "{wait}");
    // Another key has its own bucket.
    let other = e.key("acme", &[Scope::Erase]);
    let r = e
        .call(Method::GET, "/v1/erasures/x", Some(&other), None)
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn the_admin_api_creates_tenants_and_keys_and_revokes_them() {
    let e = env();
    let admin = e.admin.clone();
    let r = e
        .call(
            Method::POST,
            "/v1/admin/tenants",
            Some(&admin),
            Some(&json!({"name": "acme"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    let r = e
        .call(
            Method::POST,
            "/v1/admin/tenants",
            Some(&admin),
            Some(&json!({"name": "acme"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    let r = e
        .call(
            Method::POST,
            "/v1/admin/tenants",
            Some(&admin),
            Some(&json!({"name": "Bad Name"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let r = e
        .call(
            Method::POST,
            "/v1/admin/keys",
            Some(&admin),
            Some(&json!({"tenant": "acme", "scopes": ["ingest", "read"], "name": "mta"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    let created = r.json();
    let key = created["key"].as_str().unwrap().to_owned();
    let id = created["id"].as_str().unwrap().to_owned();
    assert!(key.starts_with(&format!("mlk_{id}_")));
    let list = e
        .call(
            Method::GET,
            "/v1/admin/keys?tenant=acme",
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(list.status, StatusCode::OK);
    assert_eq!(list.json()["keys"].as_array().unwrap().len(), 1);
    assert!(
        !list.text().contains(&key[21..]),
        "the secret is never listed"
    );
    let bad_query = e
        .call(Method::GET, "/v1/admin/keys?colour=red", Some(&admin), None)
        .await;
    assert_eq!(bad_query.status, StatusCode::BAD_REQUEST);
    let export = json!({"address": "ann@example.org"});
    let ok = e
        .call(
            Method::POST,
            "/v1/contacts/export",
            Some(&key),
            Some(&export),
        )
        .await;
    assert_eq!(ok.status, StatusCode::OK);
    let r = e
        .call(
            Method::POST,
            &format!("/v1/admin/keys/{id}/revoke"),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.json()["revoked_at"].is_string());
    let denied = e
        .call(
            Method::POST,
            "/v1/contacts/export",
            Some(&key),
            Some(&export),
        )
        .await;
    assert_eq!(denied.status, StatusCode::UNAUTHORIZED);
    let r = e
        .call(
            Method::POST,
            "/v1/admin/keys/0000000000000000/revoke",
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = e
        .call(
            Method::PUT,
            "/v1/admin/tenants/acme/webhook-secrets",
            Some(&admin),
            Some(&json!({"mailgun_signing_key": "key-abc"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text());
    let tenants = e
        .call(Method::GET, "/v1/admin/tenants", Some(&admin), None)
        .await;
    assert!(tenants.text().contains("mailgun"));
    assert!(!tenants.text().contains("key-abc"));
    assert_eq!(
        e.state
            .access
            .webhook_secrets("acme")
            .unwrap()
            .mailgun_signing_key
            .as_deref(),
        Some("key-abc")
    );
    let r = e
        .call(
            Method::PUT,
            "/v1/admin/tenants/acme/webhook-secrets",
            Some(&admin),
            Some(&json!({"mailgun_key": "zed-secret"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.text().contains("mailgun_key") && !r.text().contains("zed"));
}

/// Fills `{param}` segments of a documented path with a plausible value.
fn concrete(path: &str) -> String {
    path.split('/')
        .map(|seg| {
            if seg.starts_with('{') && seg.ends_with('}') {
                match seg {
                    "{tenant}" => "default",
                    "{provider}" => "mailgun",
                    _ => "x",
                }
            } else {
                seg
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

#[tokio::test]
async fn every_route_is_in_the_openapi_document() {
    let e = env();
    let r = e.call(Method::GET, "/openapi.json", None, None).await;
    assert_eq!(r.status, StatusCode::OK);
    let doc = r.json();
    assert_eq!(
        doc,
        serde_json::to_value(mailledger_api::openapi()).unwrap()
    );
    // The document is built from the same routes the router serves, so a
    // handler added with a plain `.route()` would be served undocumented:
    // the router's sources add none outside their tests.
    for (file, source) in [
        ("src/lib.rs", include_str!("../src/lib.rs")),
        ("src/routes/mod.rs", include_str!("../src/routes/mod.rs")),
    ] {
        let code = source.split("#[cfg(test)]").next().unwrap();
        let plain = code
            .lines()
            .filter(|l| !l.trim_start().starts_with("//"))
            .any(|l| l.contains(".route("));
        assert!(!plain, "{file} adds a route with a plain .route()");
    }
    let schemes = &doc["components"]["securitySchemes"];
    assert_eq!(schemes["bearer"]["scheme"], "bearer");
    assert_eq!(schemes["basic"]["scheme"], "basic");
    let paths = doc["paths"].as_object().unwrap();
    // Every documented operation is served: neither "no route" nor "method
    // not allowed".
    let mut operations = 0;
    for (path, item) in paths {
        for (method, op) in item.as_object().unwrap() {
            let Ok(m) = method.to_uppercase().parse::<Method>() else {
                continue;
            };
            operations += 1;
            let body = json!({});
            let r = e
                .call(m.clone(), &concrete(path), Some(&e.admin), Some(&body))
                .await;
            assert_ne!(
                r.json()["type"],
                "urn:mailledger:problem:no-route",
                "{method} {path}"
            );
            assert_ne!(r.status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
            // Every operation documents its responses, and the
            // authenticated ones (everything under /v1/) their security.
            assert!(op["responses"].is_object(), "{method} {path}");
            // What the layers answer is documented everywhere it can be:
            // 500 and 503 on every route, 401, 403 and 429 (with its
            // Retry-After) on every authenticated one, 413 with a body.
            let responses = &op["responses"];
            for status in ["500", "503"] {
                assert!(
                    responses[status].is_object(),
                    "{method} {path} lacks {status}"
                );
            }
            if op["requestBody"].is_object() {
                assert!(responses["413"].is_object(), "{method} {path} lacks 413");
            }
            if path.starts_with("/v1/") {
                assert!(
                    op["security"].as_array().is_some_and(|s| !s.is_empty()),
                    "{method} {path} documents no security"
                );
                for status in ["401", "403", "429"] {
                    assert!(
                        responses[status].is_object(),
                        "{method} {path} lacks {status}"
                    );
                }
                assert!(
                    responses["429"]["headers"]["Retry-After"].is_object(),
                    "{method} {path}: 429 without Retry-After"
                );
            }
        }
    }
    // Every route the router serves (this list) is in the document.
    let served = [
        ("GET", "/healthz"),
        ("GET", "/readyz"),
        ("GET", "/openapi.json"),
        ("POST", "/v1/events"),
        ("POST", "/v1/erasures"),
        ("GET", "/v1/erasures/{request_id}"),
        ("POST", "/v1/contacts/export"),
        ("POST", "/v1/admin/tenants"),
        ("GET", "/v1/admin/tenants"),
        ("POST", "/v1/admin/keys"),
        ("GET", "/v1/admin/keys"),
        ("POST", "/v1/admin/keys/{id}/revoke"),
        ("GET", "/v1/admin/residency"),
        ("GET", "/v1/admin/projections"),
        ("POST", "/v1/admin/projections/rebuild"),
        ("PUT", "/v1/admin/tenants/{tenant}/webhook-secrets"),
        ("DELETE", "/v1/admin/tenants/{tenant}/webhook-secrets"),
        ("POST", "/v1/webhooks/{provider}"),
        ("GET", "/v1/messages/{id}"),
        ("GET", "/v1/messages"),
        ("POST", "/v1/messages/search"),
        ("GET", "/v1/suppressions"),
        ("POST", "/v1/suppressions"),
        ("POST", "/v1/suppressions/lookup"),
        ("POST", "/v1/suppressions/remove"),
        ("POST", "/v1/sends/check"),
        ("GET", "/v1/analytics"),
    ];
    for (m, p) in served {
        assert!(
            paths.get(p).and_then(|i| i.get(m.to_lowercase())).is_some(),
            "{m} {p} is served but not documented"
        );
    }
    assert!(operations >= served.len());
    // Schemas referenced by the document exist.
    let text = doc.to_string();
    let schemas = doc["components"]["schemas"].as_object().unwrap();
    for piece in text.split("#/components/schemas/").skip(1) {
        let name = piece.split('"').next().unwrap();
        assert!(
            schemas.contains_key(name),
            "schema {name} is referenced but missing"
        );
    }
}

#[tokio::test]
async fn export_and_erasure_reach_only_the_callers_tenant() {
    let e = env();
    let acme = e.key("acme", &[Scope::Ingest, Scope::Read, Scope::Erase]);
    let globex = e.key("globex", &[Scope::Ingest, Scope::Read, Scope::Erase]);
    let body = json!({"events": [event(&uuid(), "sent", "ann@example.org", "m-1")]});
    let r = e
        .call(Method::POST, "/v1/events", Some(&acme), Some(&body))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let addr = json!({"address": "ann@example.org"});
    // Globex holds nothing about ann: its export is empty, like any
    // unknown contact's.
    let unknown = e
        .call(
            Method::POST,
            "/v1/contacts/export",
            Some(&globex),
            Some(&json!({"address": "nobody@example.org"})),
        )
        .await;
    let other = e
        .call(
            Method::POST,
            "/v1/contacts/export",
            Some(&globex),
            Some(&addr),
        )
        .await;
    assert_eq!(other.status, unknown.status);
    assert_eq!(other.json()["events"], json!([]));
    assert_eq!(other.json()["events"], unknown.json()["events"]);
    // Globex erasing "ann" destroys its own contact only: acme still reads her.
    let r = e
        .call(
            Method::POST,
            "/v1/erasures",
            Some(&globex),
            Some(&json!({"address": "ann@example.org", "request_id": "g-1"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let mine = e
        .call(
            Method::POST,
            "/v1/contacts/export",
            Some(&acme),
            Some(&addr),
        )
        .await
        .json();
    assert_eq!(mine["erased"], false);
    assert_eq!(mine["events"][0]["recipient"], "ann@example.org");
    // And acme's receipt lookup does not see globex's request.
    let r = e
        .call(Method::GET, "/v1/erasures/g-1", Some(&acme), None)
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn tenants_are_created_and_served_only_within_their_jurisdictions() {
    use mailledger_core::residency::{Jurisdiction, Residency};
    let de: Jurisdiction = "DE".parse().unwrap();
    let e = env();
    let tenants = |e: &common::Env| e.state.access.tenants().unwrap().len();
    let before = tenants(&e);
    let create = |body: Value| {
        let e = &e;
        async move {
            e.call(
                Method::POST,
                "/v1/admin/tenants",
                Some(&e.admin),
                Some(&body),
            )
            .await
        }
    };
    // The node says only "EU", which does not prove Germany: a German-only
    // tenant is refused, and nothing is created.
    let r = create(json!({"name": "acme", "jurisdictions": ["DE"]})).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text());
    assert_eq!(
        r.json()["type"],
        "urn:mailledger:problem:residency-violation"
    );
    let r = create(json!({"name": "acme", "jurisdictions": ["mars"]})).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(
        r.json()["detail"]
            .as_str()
            .unwrap()
            .contains("jurisdictions")
    );
    assert_eq!(tenants(&e), before);
    // Left out, a tenant allows what the node allows.
    let r = create(json!({"name": "beta"})).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    assert_eq!(r.json()["jurisdictions"], json!(["EU"]));
    let report = e
        .ok(Method::GET, "/v1/admin/residency", &e.admin, None)
        .await;
    assert_eq!(report["compliant"], true);
    assert_eq!(report["node_jurisdiction"], "EU");
    assert!(
        report["tenants"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["tenant"] == "beta" && t["allowed"] == json!(["EU"]))
    );
    let read = e.key("beta", &[Scope::Read]);
    let r = e
        .call(Method::GET, "/v1/admin/residency", Some(&read), None)
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    // A German-only tenant made elsewhere (the command line under another
    // configuration) is refused on every request by this EU node...
    e.state.access.create_tenant("gamma", &[de]).unwrap();
    let (_, gamma) = e
        .state
        .access
        .create_key("gamma", &[Scope::Read], None)
        .unwrap();
    let r = e
        .call(Method::GET, "/v1/suppressions", Some(gamma.as_str()), None)
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text());
    assert_eq!(
        r.json()["type"],
        "urn:mailledger:problem:residency-violation"
    );
    let report = e
        .ok(Method::GET, "/v1/admin/residency", &e.admin, None)
        .await;
    assert_eq!(report["compliant"], false);
    assert_eq!(report["violations"][0]["outside_of"], "tenant gamma");
    // ...and served by a node declared, with its store, in Germany.
    let mut e = e;
    e.state = e.state.clone().with_residency(
        Residency::new(de, vec![Jurisdiction::EU]).with_store("log", "memory", "(memory)", de),
    );
    e.ok(Method::GET, "/v1/suppressions", gamma.as_str(), None)
        .await;
}

#[tokio::test]
async fn only_the_operator_tenant_holds_the_admin_scope() {
    let e = env();
    e.state
        .access
        .create_tenant("acme", &[mailledger_core::residency::Jurisdiction::EU])
        .unwrap();
    // Neither the API nor the store gives another tenant's key the admin
    // scope, which would let it reach every tenant.
    let r = e
        .call(
            Method::POST,
            "/v1/admin/keys",
            Some(&e.admin),
            Some(&json!({"tenant": "acme", "scopes": ["admin"]})),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text());
    assert!(
        e.state
            .access
            .create_key("acme", &[Scope::Admin], None)
            .is_err()
    );
    // And a key that carries it anyway (an edited access file) is refused.
    let forged = mailledger_api::access::Caller {
        tenant: "acme".into(),
        key_id: "k".into(),
        scopes: vec![Scope::Admin, Scope::Read],
        jurisdictions: vec![mailledger_core::residency::Jurisdiction::EU],
    };
    assert!(!forged.has(Scope::Admin));
    assert!(forged.has(Scope::Read));
    let operator = mailledger_api::access::Caller {
        tenant: "default".into(),
        ..forged
    };
    assert!(operator.has(Scope::Admin));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_waits_for_an_append_permit_instead_of_failing() {
    let e = std::sync::Arc::new(env_with(Limits {
        max_concurrent_appends: 1,
        ..Limits::default()
    }));
    let key = e.key("acme", &[Scope::Ingest]);
    let held = std::sync::Arc::clone(&e.state.appends)
        .try_acquire_owned()
        .unwrap();
    let task = {
        let e = std::sync::Arc::clone(&e);
        let body = json!({ "events": [event(&uuid(), "sent", "ann@example.org", "m-1")] });
        tokio::spawn(async move {
            e.call(Method::POST, "/v1/events", Some(&key), Some(&body))
                .await
                .status
        })
    };
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert!(
        !task.is_finished(),
        "the append waits while the permit is held"
    );
    assert_eq!(e.state.email.log().head(), 0);
    drop(held);
    assert_eq!(task.await.unwrap(), StatusCode::OK);
    assert_eq!(e.state.email.log().head(), 1);
}

#[tokio::test]
async fn requests_over_the_concurrency_limit_answer_503_with_retry_after() {
    let e = env_with(Limits {
        max_concurrent_requests: 1,
        ..Limits::default()
    });
    let held = std::sync::Arc::clone(&e.state.inflight)
        .try_acquire_owned()
        .unwrap();
    let r = e.call(Method::GET, "/healthz", None, None).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(r.content_type(), PROBLEM);
    assert!(r.headers.contains_key(header::RETRY_AFTER));
    drop(held);
    let r = e.call(Method::GET, "/healthz", None, None).await;
    assert_eq!(r.status, StatusCode::OK);
}

#[tokio::test]
async fn an_address_in_an_erasure_or_export_error_is_never_echoed() {
    let e = env();
    let key = e.key("acme", &[Scope::Read, Scope::Erase]);
    for (uri, body) in [
        (
            "/v1/erasures",
            json!({"address": "not-an-address-zed", "request_id": "r1"}),
        ),
        (
            "/v1/erasures",
            json!({"address": "zed@secret.example", "request_id": "bad id zed"}),
        ),
        ("/v1/contacts/export", json!({"address": "zed-without-at"})),
        (
            "/v1/contacts/export",
            json!({"address": "zed@secret.example", "colour": 1}),
        ),
    ] {
        let r = e.call(Method::POST, uri, Some(&key), Some(&body)).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{uri}: {}", r.text());
        assert_eq!(r.content_type(), PROBLEM);
        assert!(!r.text().contains("zed"), "{}", r.text());
    }
}

mod fuzz {
    use super::*;
    use proptest::prelude::*;

    fn bodies() -> impl Strategy<Value = String> {
        prop_oneof![
            any::<String>(),
            "[\\[\\]{}\",:a-z0-9@ .-]{0,200}",
            Just(r#"{"events": [{}]}"#.to_owned()),
            Just(r#"{"events": null}"#.to_owned()),
            Just(r#"{"address": 7}"#.to_owned()),
            Just(r#"{"name": "", "scopes": ["x"]}"#.to_owned()),
            Just(r#"{"name": "t", "jurisdictions": ["mars"]}"#.to_owned()),
            Just(r#"{"name": "t", "jurisdictions": []}"#.to_owned()),
            Just(r#"{"address": "a@b.example"}"#.to_owned()),
            Just(r#"{"address": "a@b.example", "reason": ""}"#.to_owned()),
            Just(r#"{"address": "a@b.example", "reason": "r", "id": "x"}"#.to_owned()),
            Just(r#"{"address": "a@b.example", "reason": "r", "expires_at": 1}"#.to_owned()),
            Just(r#"{"address": "a@b.example", "scope": "", "reason": "r"}"#.to_owned()),
            Just(r#"{"recipient": "a@b.example", "limit": 0}"#.to_owned()),
            Just(r#"{"status": "x", "cursor": "zz"}"#.to_owned()),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

        #[test]
        fn arbitrary_bodies_never_get_a_5xx_and_refused_ones_never_append(body in bodies(), truncate in 0usize..40) {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async {
                let e = env();
                let admin = e.admin.clone();
                let cut = body.char_indices().nth(truncate).map_or(body.len(), |(i, _)| i);
                for uri in [
                    "/v1/events",
                    "/v1/erasures",
                    "/v1/contacts/export",
                    "/v1/admin/tenants",
                    "/v1/admin/keys",
                    "/v1/messages/search",
                    "/v1/suppressions/lookup",
                    "/v1/suppressions",
                    "/v1/suppressions/remove",
                    "/v1/sends/check",
                ] {
                    for b in [body.clone(), body[..cut].to_owned()] {
                        // The server's runner would keep the projections
                        // at the head; here they are fed by hand.
                        e.project().await;
                        let before = e.state.email.log().head();
                        let r = e
                            .send(
                                Request::post(uri)
                                    .header(header::AUTHORIZATION, format!("Bearer {admin}"))
                                    .header(header::CONTENT_TYPE, "application/json")
                                    .body(Body::from(b))
                                    .unwrap(),
                            )
                            .await;
                        prop_assert!(r.status.as_u16() < 500, "{uri}: {}", r.text());
                        if !r.status.is_success() {
                            prop_assert_eq!(r.content_type(), PROBLEM);
                            // A refused body changes nothing.
                            prop_assert_eq!(e.state.email.log().head(), before, "{}", uri);
                        }
                    }
                }
                Ok(())
            })?;
        }
    }
}

fn sample(path: &str) -> String {
    std::fs::read_to_string(format!(
        "{}/testdata/webhooks/{path}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

async fn webhook(e: &common::Env, provider: &str, key: &str, body: String) -> common::Reply {
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("api:{key}"));
    e.send(
        Request::post(format!("/v1/webhooks/{provider}"))
            .header(header::AUTHORIZATION, format!("Basic {basic}"))
            .header(header::CONTENT_TYPE, "text/plain; charset=UTF-8")
            .body(Body::from(body))
            .unwrap(),
    )
    .await
}

#[tokio::test]
async fn a_postmark_webhook_is_appended_once_however_often_it_is_retried() {
    let e = env();
    let key = e.key("acme", &[Scope::Ingest]);
    let body = sample("postmark/delivery.json");
    let first = webhook(&e, "postmark", &key, body.clone()).await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.text());
    let f = first.json();
    assert_eq!(f["authentication"], "provider_does_not_sign");
    assert_eq!(f["appended"], 1);
    let head = e.state.email.log().head();
    let again = webhook(&e, "postmark", &key, body).await;
    assert_eq!(again.json()["duplicates"], 1);
    assert_eq!(again.json()["events"][0]["id"], f["events"][0]["id"]);
    assert_eq!(
        again.json()["events"][0]["position"],
        f["events"][0]["position"]
    );
    assert_eq!(e.state.email.log().head(), head);
    let metrics = e.scrape().await.text();
    assert!(
        metrics.contains(
            "mailledger_webhook_requests_total{outcome=\"events\",provider=\"postmark\"} 2"
        )
    );
    assert!(metrics.contains("route=\"/v1/webhooks/{provider}\""));
}

#[tokio::test]
async fn postmark_events_of_two_recipients_at_one_instant_are_both_kept() {
    // Postmark's deliveries, opens and clicks carry no event id: one
    // message delivered to two recipients in the same instant must still
    // give two events, and each retried one must still be a duplicate.
    let e = env();
    let key = e.key("acme", &[Scope::Ingest]);
    let john = sample("postmark/delivery.json");
    assert!(john.contains("john@example.org"));
    let jane = john.replace("john@example.org", "jane@example.org");
    let a = webhook(&e, "postmark", &key, john.clone()).await;
    let b = webhook(&e, "postmark", &key, jane.clone()).await;
    assert_eq!(a.json()["appended"], 1, "{}", a.text());
    assert_eq!(b.json()["appended"], 1, "{}", b.text());
    assert_ne!(a.json()["events"][0]["id"], b.json()["events"][0]["id"]);
    let head = e.state.email.log().head();
    for (body, first) in [(john, &a), (jane, &b)] {
        let again = webhook(&e, "postmark", &key, body).await;
        assert_eq!(again.json()["duplicates"], 1, "{}", again.text());
        assert_eq!(
            again.json()["events"][0]["id"],
            first.json()["events"][0]["id"]
        );
    }
    assert_eq!(e.state.email.log().head(), head);
    // The same payload for another tenant is that tenant's own event.
    let other = e.key("globex", &[Scope::Ingest]);
    let c = webhook(&e, "postmark", &other, sample("postmark/delivery.json")).await;
    assert_eq!(c.json()["appended"], 1, "{}", c.text());
}

#[tokio::test]
async fn malformed_or_unknown_webhooks_are_refused_and_nothing_is_stored() {
    let e = env();
    let key = e.key("acme", &[Scope::Ingest]);
    let r = webhook(&e, "postmark", &key, r#"{"RecordType": "Delivery"}"#.into()).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text());
    assert_eq!(r.content_type(), PROBLEM);
    assert!(
        r.json()["detail"].as_str().unwrap().contains("field"),
        "{}",
        r.text()
    );
    let r = webhook(&e, "postmark", &key, "not json zed@secret.example".into()).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(!r.text().contains("zed"));
    let r = webhook(&e, "sparkpost", &key, sample("postmark/delivery.json")).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.content_type(), PROBLEM);
    // A signing provider without a configured secret: refused, retryable.
    let r = webhook(&e, "mailgun", &key, sample("mailgun/delivered.json")).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{}", r.text());
    assert_eq!(r.json()["type"], "urn:mailledger:problem:not-configured");
    assert!(r.headers.contains_key(header::RETRY_AFTER));
    // A read key may not post webhooks.
    let read = e.key("acme", &[Scope::Read]);
    let r = webhook(&e, "postmark", &read, sample("postmark/delivery.json")).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(e.state.email.log().head(), 0);
}

#[tokio::test]
async fn unsigned_webhooks_pass_only_when_the_tenant_allows_them() {
    let e = env();
    let key = e.key("acme", &[Scope::Ingest]);
    e.state
        .access
        .set_webhook_secrets("acme", Some(r#"{"require_signatures": false}"#))
        .unwrap();
    let r = webhook(&e, "mailgun", &key, sample("mailgun/delivered.json")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.json()["authentication"], "unverified");
    assert_eq!(r.json()["appended"], 1);
    // With a signing key set, the sample's signature (made with another
    // key) is refused.
    e.state
        .access
        .set_webhook_secrets(
            "acme",
            Some(r#"{"mailgun_signing_key": "key-test", "max_signature_age_secs": 9000000000}"#),
        )
        .unwrap();
    let r = webhook(&e, "mailgun", &key, sample("mailgun/opened.json")).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.text());
    assert_eq!(r.json()["type"], "urn:mailledger:problem:bad-signature");
}

#[tokio::test]
async fn an_sns_subscription_confirmation_is_recorded_and_never_followed() {
    let e = env();
    let key = e.key("acme", &[Scope::Ingest]);
    e.state
        .access
        .set_webhook_secrets("acme", Some(r#"{"require_signatures": false}"#))
        .unwrap();
    let r = webhook(
        &e,
        "ses",
        &key,
        sample("ses/sns-subscription-confirmation.json"),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let c = &r.json()["subscription_confirmation"];
    assert_eq!(c["kind"], "subscribe");
    assert!(c["subscribe_url"].as_str().unwrap().starts_with("https://"));
    let tenants = e
        .call(Method::GET, "/v1/admin/tenants", Some(&e.admin), None)
        .await
        .json();
    let acme = tenants["tenants"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "acme")
        .unwrap()
        .clone();
    assert_eq!(acme["sns_subscriptions"][0]["topic_arn"], c["topic_arn"]);
    assert_eq!(e.state.email.log().head(), 0);
}
