//! The OpenAPI document is the contract: every response of a newcomer's
//! path through the API (tenant, key, secrets, ingest, queries,
//! suppressions, analytics, erasure, export, and the errors on the way) is
//! validated against the schema `/openapi.json` gives for its operation,
//! status and content type, with a JSON Schema validator (the `jsonschema`
//! crate, draft 2020-12, formats checked), never against the Rust types
//! that produced it. And bodies are strict: a body that is not a JSON
//! object, or has a field the schema does not list, is refused; secrets are
//! checked when they are set.

#![allow(clippy::unwrap_used, clippy::too_many_lines)]

mod common;

use axum::http::{Method, StatusCode};
use common::contract::{Contract, call, raw};
use common::env;
use serde_json::json;

const POSTAL_KEY: &str = include_str!("../testdata/webhooks/keys/postal-2048.pub.b64");

#[tokio::test]
async fn every_response_of_a_newcomers_path_is_valid_against_the_openapi_document() {
    let e = env();
    let c = Contract::of(&e).await;
    let admin = e.admin.clone();
    let admin = Some(admin.as_str());

    for (path, ok) in [("/healthz", 200), ("/readyz", 200)] {
        let r = call(&e, &c, Method::GET, path, path, None, None).await;
        assert_eq!(r.status.as_u16(), ok);
    }

    // A tenant and its key.
    let r = call(
        &e,
        &c,
        Method::POST,
        "/v1/admin/tenants",
        "/v1/admin/tenants",
        admin,
        Some(&json!({"name": "acme"})),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    let r = call(
        &e,
        &c,
        Method::POST,
        "/v1/admin/tenants",
        "/v1/admin/tenants",
        admin,
        Some(&json!({"name": "acme"})),
    )
    .await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    let r = call(
        &e,
        &c,
        Method::POST,
        "/v1/admin/keys",
        "/v1/admin/keys",
        admin,
        Some(&json!({"tenant": "acme", "scopes": ["ingest", "read", "erase"], "name": "newcomer"})),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    let key_text = r.json()["key"].as_str().unwrap().to_owned();
    let key = Some(key_text.as_str());
    let hook = call(
        &e,
        &c,
        Method::POST,
        "/v1/admin/keys",
        "/v1/admin/keys",
        admin,
        Some(&json!({"tenant": "acme", "scopes": ["webhook:postal"]})),
    )
    .await;
    assert_eq!(hook.status, StatusCode::CREATED, "{}", hook.text());
    for path in [
        "/v1/admin/tenants",
        "/v1/admin/keys",
        "/v1/admin/residency",
        "/v1/admin/projections",
    ] {
        let r = call(&e, &c, Method::GET, path, path, admin, None).await;
        assert_eq!(r.status, StatusCode::OK, "{path}: {}", r.text());
    }
    let secrets = "/v1/admin/tenants/{tenant}/webhook-secrets";
    let r = call(
        &e,
        &c,
        Method::PUT,
        secrets,
        "/v1/admin/tenants/acme/webhook-secrets",
        admin,
        Some(&json!({"postal_public_key": POSTAL_KEY.trim(), "mailgun_signing_key": "key-1"})),
    )
    .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text());

    // Events in, one of each type with its own fields.
    let events = json!({"events": [
        {"id": "0190f5d6-4c3a-7b8e-9a1b-000000000001", "type": "sent", "message_id": "m-1",
         "recipient": "Ann@Example.org", "occurred_at": "2026-01-02T03:04:05Z",
         "subject": "Hello", "size": 1024, "tags": ["welcome"], "campaign": "spring",
         "sending_domain": "mail.example.com"},
        {"id": "0190f5d6-4c3a-7b8e-9a1b-000000000002", "type": "delivered", "message_id": "m-1",
         "recipient": "ann@example.org", "occurred_at": "2026-01-02T03:04:06Z",
         "smtp_response": "250 ok", "mx_host": "mx.example.org", "tls": true},
        {"id": "0190f5d6-4c3a-7b8e-9a1b-000000000003", "type": "opened", "message_id": "m-1",
         "recipient": "ann@example.org", "occurred_at": "2026-01-02T04:00:00Z", "machine": false},
        {"id": "0190f5d6-4c3a-7b8e-9a1b-000000000004", "type": "clicked", "message_id": "m-1",
         "recipient": "ann@example.org", "occurred_at": "2026-01-02T04:00:10Z",
         "url": "https://example.org/a", "bot": false},
        {"id": "0190f5d6-4c3a-7b8e-9a1b-000000000005", "type": "bounced", "message_id": "m-2",
         "recipient": "bob@example.org", "occurred_at": "2026-01-02T03:05:00Z",
         "class": "hard", "diagnostic": "550 5.1.1 user unknown"},
        {"id": "0190f5d6-4c3a-7b8e-9a1b-000000000006", "type": "deferred", "message_id": "m-3",
         "recipient": "carol@example.org", "occurred_at": "2026-01-02T03:05:00Z",
         "attempt": 1, "smtp_code": 451, "next_retry_at": "2026-01-02T03:15:00Z"},
        {"id": "0190f5d6-4c3a-7b8e-9a1b-000000000007", "type": "rejected", "message_id": "m-4",
         "recipient": "dan@example.org", "occurred_at": "2026-01-02T03:05:00Z", "reason": "policy"},
        {"id": "0190f5d6-4c3a-7b8e-9a1b-000000000008", "type": "unsubscribed",
         "recipient": "erin@example.org", "occurred_at": "2026-01-02T03:05:00Z", "scope": "news"},
    ]});
    // The request is valid against the documented request schema too.
    let ingest = c
        .request_schemas()
        .into_iter()
        .find(|(op, _)| op == "post /v1/events")
        .unwrap()
        .1;
    let mut root = c.doc.clone();
    root["$schema"] = json!("https://json-schema.org/draft/2020-12/schema");
    root["$ref"] = ingest["$ref"].clone();
    let v = jsonschema::options()
        .should_validate_formats(true)
        .build(&root)
        .unwrap();
    let errors: Vec<String> = v.iter_errors(&events).map(|e| e.to_string()).collect();
    assert!(errors.is_empty(), "{errors:?}");
    let r = call(
        &e,
        &c,
        Method::POST,
        "/v1/events",
        "/v1/events",
        key,
        Some(&events),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.json()["appended"], 8);
    let r = call(
        &e,
        &c,
        Method::POST,
        "/v1/events",
        "/v1/events",
        key,
        Some(&json!({"events": []})),
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    e.project().await;

    // The delivery log: no subjects kept, so `subject` is null.
    let r = call(
        &e,
        &c,
        Method::GET,
        "/v1/messages",
        "/v1/messages?limit=2",
        key,
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let r = call(
        &e,
        &c,
        Method::GET,
        "/v1/messages/{id}",
        "/v1/messages/m-1",
        key,
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let r = call(
        &e,
        &c,
        Method::GET,
        "/v1/messages/{id}",
        "/v1/messages/none",
        key,
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = call(
        &e,
        &c,
        Method::POST,
        "/v1/messages/search",
        "/v1/messages/search",
        key,
        Some(&json!({"recipient": "ann@example.org", "status": "delivered"})),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let r = call(
        &e,
        &c,
        Method::GET,
        "/v1/messages",
        "/v1/messages?status=nope",
        key,
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);

    // Suppressions.
    let r = call(
        &e,
        &c,
        Method::POST,
        "/v1/suppressions",
        "/v1/suppressions",
        key,
        Some(
            &json!({"address": "frank@example.org", "reason": "asked by phone",
                     "expires_at": "2030-01-01T00:00:00Z"}),
        ),
    )
    .await;
    assert!(r.status.is_success(), "{}", r.text());
    e.project().await;
    let r = call(
        &e,
        &c,
        Method::GET,
        "/v1/suppressions",
        "/v1/suppressions",
        key,
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let r = call(
        &e,
        &c,
        Method::POST,
        "/v1/suppressions/lookup",
        "/v1/suppressions/lookup",
        key,
        Some(&json!({"address": "bob@example.org"})),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    for (address, allowed) in [("bob@example.org", false), ("ann@example.org", true)] {
        let r = call(
            &e,
            &c,
            Method::POST,
            "/v1/sends/check",
            "/v1/sends/check",
            key,
            Some(&json!({"address": address})),
        )
        .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        assert_eq!(r.json()["allowed"], allowed);
    }
    let r = call(
        &e,
        &c,
        Method::POST,
        "/v1/suppressions/remove",
        "/v1/suppressions/remove",
        key,
        Some(&json!({"address": "frank@example.org", "reason": "asked again"})),
    )
    .await;
    assert!(r.status.is_success(), "{}", r.text());

    // Analytics.
    for uri in [
        "/v1/analytics?from=2026-01-01T00:00:00Z&to=2026-02-01T00:00:00Z",
        "/v1/analytics?from=2026-01-02T00:00:00Z&to=2026-01-03T00:00:00Z&granularity=hour&group_by=tag",
    ] {
        let r = call(&e, &c, Method::GET, "/v1/analytics", uri, key, None).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    }
    let r = call(
        &e,
        &c,
        Method::GET,
        "/v1/analytics",
        "/v1/analytics?from=2026-01-01T00:00:00Z",
        key,
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);

    // Erasure, the receipt again, and the export that shows it.
    let r = call(
        &e,
        &c,
        Method::POST,
        "/v1/erasures",
        "/v1/erasures",
        key,
        Some(&json!({"address": "ann@example.org", "request_id": "dsr-1"})),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let r = call(
        &e,
        &c,
        Method::GET,
        "/v1/erasures/{request_id}",
        "/v1/erasures/dsr-1",
        key,
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let r = call(
        &e,
        &c,
        Method::POST,
        "/v1/contacts/export",
        "/v1/contacts/export",
        key,
        Some(&json!({"address": "ann@example.org"})),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.json()["erased"], true);
    let r = call(
        &e,
        &c,
        Method::POST,
        "/v1/contacts/export",
        "/v1/contacts/export",
        key,
        Some(&json!({"address": "bob@example.org"})),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    e.project().await;
    let r = call(
        &e,
        &c,
        Method::GET,
        "/v1/messages/{id}",
        "/v1/messages/m-1",
        key,
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.json()["recipient"], json!({"erased": true}));

    // Errors on the way: no key, a missing scope, not JSON, not an object.
    let r = call(
        &e,
        &c,
        Method::GET,
        "/v1/messages",
        "/v1/messages",
        None,
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let r = call(
        &e,
        &c,
        Method::GET,
        "/v1/admin/tenants",
        "/v1/admin/tenants",
        key,
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    for (path, method) in [
        ("/v1/events", Method::POST),
        ("/v1/erasures", Method::POST),
        ("/v1/suppressions", Method::POST),
        ("/v1/sends/check", Method::POST),
    ] {
        let r = raw(&e, method.clone(), path, &key_text, "{}", "text/plain").await;
        assert_eq!(r.status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{path}");
        c.check(method.as_str(), path, &r);
    }
}

#[tokio::test]
async fn a_body_that_is_not_a_json_object_is_refused_like_any_invalid_body() {
    let e = env();
    let c = Contract::of(&e).await;
    let admin = e.admin.clone();
    let cases = [
        (
            Method::POST,
            "/v1/admin/projections/rebuild",
            "/v1/admin/projections/rebuild",
        ),
        (
            Method::PUT,
            "/v1/admin/tenants/{tenant}/webhook-secrets",
            "/v1/admin/tenants/default/webhook-secrets",
        ),
        (Method::POST, "/v1/events", "/v1/events"),
        (Method::POST, "/v1/admin/tenants", "/v1/admin/tenants"),
        (Method::POST, "/v1/sends/check", "/v1/sends/check"),
    ];
    for (method, path, uri) in cases {
        for body in ["[null]", "[]", "null", "\"x\"", "1", " [{}]"] {
            let r = raw(&e, method.clone(), uri, &admin, body, "application/json").await;
            assert_eq!(r.status, StatusCode::BAD_REQUEST, "{method} {uri} {body}");
            assert_eq!(r.content_type(), "application/problem+json");
            assert_eq!(
                r.json()["detail"],
                "the request body must be a JSON object",
                "{method} {uri} {body}"
            );
            c.check(method.as_str(), path, &r);
        }
    }
    // No rebuild started.
    let r = e
        .call(Method::GET, "/v1/admin/projections", Some(&admin), None)
        .await;
    assert!(r.json()["rebuild"].is_null(), "{}", r.text());
}

#[tokio::test]
async fn every_request_body_refuses_fields_it_does_not_list() {
    let e = env();
    let c = Contract::of(&e).await;
    let mut checked = 0;
    for (op, schema) in c.request_schemas() {
        let s = c.resolve(&schema);
        if op == "post /v1/webhooks/{provider}" {
            continue; // the provider's own payload
        }
        assert_eq!(
            s["additionalProperties"],
            json!(false),
            "{op}: the document allows unknown fields"
        );
        checked += 1;
    }
    assert!(checked >= 10, "{checked}");
    // Each event type is an object of its own fields.
    let event = &c.doc["components"]["schemas"]["CanonicalEvent"];
    assert_eq!(event["discriminator"]["propertyName"], "type");
    for t in event["oneOf"].as_array().unwrap() {
        assert_eq!(t["additionalProperties"], json!(false));
    }
    // And the server refuses what the document refuses.
    let admin = e.admin.clone();
    for (uri, body) in [
        ("/v1/admin/tenants", json!({"name": "x", "colour": "red"})),
        (
            "/v1/sends/check",
            json!({"address": "a@example.org", "x": 1}),
        ),
        (
            "/v1/admin/projections/rebuild",
            json!({"projections": "all"}),
        ),
    ] {
        let r = e.call(Method::POST, uri, Some(&admin), Some(&body)).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{uri}: {}", r.text());
    }
}

#[tokio::test]
async fn operation_ids_are_unique() {
    let e = env();
    let c = Contract::of(&e).await;
    let mut ids = Vec::new();
    for item in c.doc["paths"].as_object().unwrap().values() {
        for op in item.as_object().unwrap().values() {
            if let Some(id) = op["operationId"].as_str() {
                ids.push(id.to_owned());
            }
        }
    }
    let n = ids.len();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), n, "{ids:?}");
}

#[tokio::test]
async fn a_secret_is_checked_when_it_is_set_and_named_never_echoed() {
    let e = env();
    let c = Contract::of(&e).await;
    let admin = e.admin.clone();
    let path = "/v1/admin/tenants/{tenant}/webhook-secrets";
    let uri = "/v1/admin/tenants/default/webhook-secrets";
    let canary = "Q0FOQVJZLWNhbmFyeS1zZWNyZXQ";
    for (field, body) in [
        ("postal_public_key", json!({"postal_public_key": canary})),
        (
            "postal_public_key",
            json!({"postal_public_key": format!("-----BEGIN PUBLIC KEY-----\n{canary}\n-----END PUBLIC KEY-----")}),
        ),
        (
            "sendgrid_public_key",
            json!({"sendgrid_public_key": canary}),
        ),
        // An RSA key is not what SendGrid signs with.
        (
            "sendgrid_public_key",
            json!({"sendgrid_public_key": POSTAL_KEY.trim()}),
        ),
        ("mailgun_signing_key", json!({"mailgun_signing_key": ""})),
        ("mailgun_signing_key", json!({"mailgun_signing_key": "  "})),
        (
            "sns_certificates",
            json!({"sns_certificates": [canary], "sns_topic_arns": ["arn:aws:sns:eu-west-1:1:t"]}),
        ),
    ] {
        let r = e.call(Method::PUT, uri, Some(&admin), Some(&body)).await;
        assert_eq!(
            r.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{field}: {}",
            r.text()
        );
        assert!(r.text().contains(field), "{}", r.text());
        assert!(!r.text().contains(canary), "the value was echoed");
        c.check("PUT", path, &r);
    }
    // Nothing was stored; a good key is.
    let r = e
        .call(
            Method::PUT,
            uri,
            Some(&admin),
            Some(&json!({"postal_public_key": POSTAL_KEY.trim()})),
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text());
}

#[tokio::test]
async fn a_whole_float_reads_as_the_integer_it_equals() {
    // JSON Schema's `integer` admits `300.0`; so do the bodies.
    let e = env();
    let admin = e.admin.clone();
    let r = e
        .call(
            Method::PUT,
            "/v1/admin/tenants/default/webhook-secrets",
            Some(&admin),
            Some(&json!({"max_signature_age_secs": 300.0})),
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text());
    let r = e
        .call(
            Method::POST,
            "/v1/messages/search",
            Some(&admin),
            Some(&json!({"limit": 2.0})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    // Events are parsed by the ledger's own reader; whole floats there too.
    let deferred = json!({"id": "0190f5d6-4c3a-7b8e-9a1b-2c3d4e5f6a71", "type": "deferred", "message_id": "m-float",
        "recipient": "ann@example.org", "occurred_at": "2026-01-02T03:04:05Z",
        "smtp_code": 421.0, "attempt": 2.0});
    let r = e
        .call(
            Method::POST,
            "/v1/events",
            Some(&admin),
            Some(&json!({"events": [deferred]})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let half = json!({"id": "0190f5d6-4c3a-7b8e-9a1b-2c3d4e5f6a72", "type": "deferred", "message_id": "m-float",
        "recipient": "ann@example.org", "occurred_at": "2026-01-02T03:04:06Z",
        "smtp_code": 421.5});
    let r = e
        .call(
            Method::POST,
            "/v1/events",
            Some(&admin),
            Some(&json!({"events": [half]})),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text());
    let r = e
        .call(
            Method::PUT,
            "/v1/admin/tenants/default/webhook-secrets",
            Some(&admin),
            Some(&json!({"max_signature_age_secs": 300.5})),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text());
}
