//! Erasure and export: request ids, receipts, erased markers, tenants apart, no address echoed.

use super::*;

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
