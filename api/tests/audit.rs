//! The audit routes: the erasure register, signed checkpoints and replay,
//! each within the caller's tenant and scope.

#![allow(clippy::unwrap_used)]

mod common;

use axum::http::{Method, StatusCode};
use common::{env, event, uuid};
use mailledger_api::Scope;
use serde_json::{Value, json};

async fn ingest(e: &common::Env, key: &str, events: Vec<Value>) {
    e.ok(
        Method::POST,
        "/v1/events",
        key,
        Some(&json!({ "events": events })),
    )
    .await;
}

fn ndjson(text: &str) -> Vec<Value> {
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[tokio::test]
async fn the_erasure_register_pages_every_receipt_of_the_callers_tenant_only() {
    let e = env();
    let dpo = e.key("acme", &[Scope::Erase]);
    let auditor = e.key("acme", &[Scope::Audit]);
    let reader = e.key("acme", &[Scope::Read]);
    let other = e.key("other", &[Scope::Erase]);
    for i in 0..3 {
        e.ok(
            Method::POST,
            "/v1/erasures",
            &dpo,
            Some(
                &json!({"address": format!("p{i}@example.org"), "request_id": format!("dsr-{i}")}),
            ),
        )
        .await;
    }
    let first = e
        .ok(Method::GET, "/v1/erasures?limit=2", &auditor, None)
        .await;
    assert_eq!(first["items"].as_array().unwrap().len(), 2);
    assert_eq!(first["items"][0]["request_id"], "dsr-0");
    let next = first["next"].as_str().unwrap();
    let second = e
        .ok(
            Method::GET,
            &format!("/v1/erasures?limit=2&cursor={next}"),
            &dpo,
            None,
        )
        .await;
    assert_eq!(second["items"][0]["request_id"], "dsr-2");
    assert_eq!(second["next"], Value::Null);
    let theirs = e.ok(Method::GET, "/v1/erasures", &other, None).await;
    assert_eq!(theirs["items"], json!([]), "another tenant's register");
    let r = e
        .call(Method::GET, "/v1/erasures", Some(&reader), None)
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = e
        .call(Method::GET, "/v1/erasures?cursor=abc", Some(&dpo), None)
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(!first.to_string().contains("example.org"));
}

#[tokio::test]
async fn checkpoints_signed_in_the_log_are_listed_to_audit_keys() {
    let e = env();
    let ingest_key = e.key("acme", &[Scope::Ingest]);
    let auditor = e.key("acme", &[Scope::Audit]);
    ingest(
        &e,
        &ingest_key,
        vec![event(&uuid(), "sent", "ann@example.org", "m1")],
    )
    .await;
    let key = mailledger_audit::AuditKey::from_seed([7; 32]);
    let log = e.state.email.log();
    let made = mailledger_audit::sign_checkpoints(log.as_ref(), &key, "EU".parse().unwrap(), 1)
        .await
        .unwrap();
    assert_eq!(made.len(), 1);
    let page = e
        .ok(Method::GET, "/v1/audit/checkpoints", &auditor, None)
        .await;
    let items = page["items"].as_array().unwrap();
    assert_eq!(items.len(), 1);
    let line = serde_json::to_string(&items[0]).unwrap();
    let parsed = mailledger_audit::parse_lines(&line).unwrap();
    parsed[0].verify(&key.public()).unwrap();
    let report = mailledger_audit::verify_against(log.as_ref(), &parsed, &key.public(), None)
        .await
        .unwrap();
    assert_eq!(report.checkpoints, 1);
    let r = e
        .call(
            Method::GET,
            "/v1/audit/checkpoints",
            Some(&ingest_key),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn replay_streams_the_tenants_events_opened_then_a_verified_summary() {
    let e = env();
    let ingest_key = e.key("acme", &[Scope::Ingest, Scope::Erase]);
    let auditor = e.key("acme", &[Scope::Audit]);
    let other = e.key("other", &[Scope::Ingest, Scope::Audit]);
    ingest(
        &e,
        &ingest_key,
        vec![
            event(&uuid(), "sent", "ann@example.org", "m1"),
            event(&uuid(), "bounced", "ann@example.org", "m1"),
            event(&uuid(), "sent", "bob@example.org", "m2"),
        ],
    )
    .await;
    ingest(
        &e,
        &other,
        vec![event(&uuid(), "sent", "cy@example.org", "x1")],
    )
    .await;

    let r = e
        .call(
            Method::POST,
            "/v1/audit/replay",
            Some(&auditor),
            Some(&json!({})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.content_type(), "application/x-ndjson");
    let lines = ndjson(&r.text());
    assert_eq!(lines.len(), 4, "three events and the summary");
    assert_eq!(lines[0]["recipient"], "ann@example.org");
    assert_eq!(lines[3]["summary"]["verified"], true);
    assert_eq!(lines[3]["summary"]["events"], 3);
    assert!(!r.text().contains("cy@example.org"), "another tenant's");

    // A contact by address in the body; a type; raw.
    let ann = e
        .call(
            Method::POST,
            "/v1/audit/replay",
            Some(&auditor),
            Some(&json!({"contact": "ann@example.org", "types": ["bounced"]})),
        )
        .await;
    let lines = ndjson(&ann.text());
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["type"], "bounced");
    let raw = e
        .call(
            Method::POST,
            "/v1/audit/replay",
            Some(&auditor),
            Some(&json!({"raw": true})),
        )
        .await;
    assert!(!raw.text().contains("example.org"));

    e.ok(
        Method::POST,
        "/v1/erasures",
        &ingest_key,
        Some(&json!({"address": "ann@example.org", "request_id": "dsr-1"})),
    )
    .await;
    let after = e
        .call(
            Method::POST,
            "/v1/audit/replay",
            Some(&auditor),
            Some(&json!({})),
        )
        .await;
    let lines = ndjson(&after.text());
    assert_eq!(lines[0]["recipient"], json!({"erased": true}));
    assert_eq!(lines.last().unwrap()["summary"]["erased_contacts"], 1);
    assert!(!after.text().contains("ann@example.org"));

    // Bad input is named; the address is never echoed.
    let bad = e
        .call(
            Method::POST,
            "/v1/audit/replay",
            Some(&auditor),
            Some(&json!({"since": "ann@example.org"})),
        )
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(!bad.text().contains("ann@example.org"));
    let r = e
        .call(
            Method::POST,
            "/v1/audit/replay",
            Some(&ingest_key),
            Some(&json!({})),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn every_read_that_opens_personal_data_leaves_one_access_record_and_no_address() {
    let e = env();
    let writer = e.key("acme", &[Scope::Ingest]);
    let reader = e.key("acme", &[Scope::Read]);
    let auditor = e.key("acme", &[Scope::Audit]);
    ingest(
        &e,
        &writer,
        vec![
            event(&uuid(), "sent", "ann@example.org", "m1"),
            event(&uuid(), "bounced", "ann@example.org", "m1"),
            event(&uuid(), "sent", "bob@example.org", "m2"),
        ],
    )
    .await;
    e.project().await;
    let reads: Vec<(&str, Method, &str, &str, Option<Value>)> = vec![
        (
            "GET /v1/messages/{id}",
            Method::GET,
            "/v1/messages/m1",
            &reader,
            None,
        ),
        (
            "GET /v1/messages",
            Method::GET,
            "/v1/messages",
            &reader,
            None,
        ),
        (
            "POST /v1/messages/search",
            Method::POST,
            "/v1/messages/search",
            &reader,
            Some(json!({"recipient": "ann@example.org"})),
        ),
        (
            "POST /v1/suppressions/lookup",
            Method::POST,
            "/v1/suppressions/lookup",
            &reader,
            Some(json!({"address": "ann@example.org"})),
        ),
        (
            "POST /v1/contacts/export",
            Method::POST,
            "/v1/contacts/export",
            &reader,
            Some(json!({"address": "bob@example.org"})),
        ),
        (
            "POST /v1/audit/replay",
            Method::POST,
            "/v1/audit/replay",
            &auditor,
            Some(json!({})),
        ),
        (
            "POST /v1/audit/as-of",
            Method::POST,
            "/v1/audit/as-of",
            &auditor,
            Some(json!({"at": "2100-01-01T00:00:00Z", "message_id": "m2"})),
        ),
    ];
    for (_, method, uri, key, body) in &reads {
        let r = e.call(method.clone(), uri, Some(key), body.as_ref()).await;
        assert_eq!(r.status, StatusCode::OK, "{uri}: {}", r.text());
    }
    // Reads that open nothing leave none: a raw replay, the register.
    let r = e
        .call(
            Method::POST,
            "/v1/audit/replay",
            Some(&auditor),
            Some(&json!({"raw": true})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let page = e.ok(Method::GET, "/v1/audit/access", &auditor, None).await;
    let items = page["items"].as_array().unwrap();
    let routes: Vec<&str> = items.iter().map(|r| r["route"].as_str().unwrap()).collect();
    let expected: Vec<&str> = reads.iter().map(|r| r.0).collect();
    assert_eq!(routes, expected, "one record per read, in order");
    let reader_id = reader.split('_').nth(1).unwrap();
    assert_eq!(items[0]["key_id"], reader_id);
    assert_eq!(items[0]["message_ids"], json!(["m1"]));
    assert_eq!(items[0]["count"], 2);
    assert_eq!(items[3]["contacts"].as_array().unwrap().len(), 1);
    // Filters: by contact (ann's pseudonym), by key.
    let ann = items[3]["contacts"][0].as_str().unwrap();
    let annes = e
        .ok(
            Method::GET,
            &format!("/v1/audit/access?contact={ann}"),
            &auditor,
            None,
        )
        .await;
    let routes_of_ann: Vec<&str> = annes["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["route"].as_str().unwrap())
        .collect();
    assert_eq!(
        routes_of_ann,
        [
            "GET /v1/messages/{id}",
            "GET /v1/messages",
            "POST /v1/messages/search",
            "POST /v1/suppressions/lookup",
            "POST /v1/audit/replay"
        ]
    );
    let audits = e
        .ok(
            Method::GET,
            &format!(
                "/v1/audit/access?key_id={}",
                auditor.split('_').nth(1).unwrap()
            ),
            &auditor,
            None,
        )
        .await;
    assert_eq!(audits["items"].as_array().unwrap().len(), 2);
    // Another tenant's auditor sees none of them, nor its checkpoints.
    let other = e.key("other", &[Scope::Audit]);
    let theirs = e.ok(Method::GET, "/v1/audit/access", &other, None).await;
    assert_eq!(theirs["items"], json!([]));
    // No address anywhere in the log's bytes, access records included.
    let log = e.state.email.log();
    let all = log
        .read_all(
            &mailledger_core::TenantFilter::All,
            0,
            mailledger_core::Direction::Forward,
            10_000,
        )
        .await
        .unwrap();
    for r in &all.records {
        for bytes in [&r.payload, &r.metadata] {
            assert!(
                !bytes
                    .windows(15)
                    .any(|w| w == b"ann@example.org" || w == b"bob@example.org"),
                "position {} ({}) holds an address",
                r.position,
                r.event_type
            );
        }
    }
}

#[tokio::test]
async fn the_audit_routes_answer_as_the_openapi_document_says() {
    use common::contract::{Contract, call};
    let e = env();
    let c = Contract::of(&e).await;
    let key = e.key(
        "acme",
        &[Scope::Ingest, Scope::Read, Scope::Erase, Scope::Audit],
    );
    ingest(
        &e,
        &key,
        vec![event(&uuid(), "bounced", "ann@example.org", "m1")],
    )
    .await;
    e.project().await;
    let audit_key = mailledger_audit::AuditKey::from_seed([8; 32]);
    mailledger_audit::sign_checkpoints(
        e.state.email.log().as_ref(),
        &audit_key,
        "EU".parse().unwrap(),
        1,
    )
    .await
    .unwrap();
    e.ok(
        Method::POST,
        "/v1/erasures",
        &key,
        Some(&json!({"address": "bob@example.org", "request_id": "dsr-7"})),
    )
    .await;
    let checks: Vec<(Method, &str, &str, Option<Value>)> = vec![
        (Method::GET, "/v1/erasures", "/v1/erasures?limit=1", None),
        (
            Method::GET,
            "/v1/audit/checkpoints",
            "/v1/audit/checkpoints",
            None,
        ),
        (
            Method::POST,
            "/v1/audit/replay",
            "/v1/audit/replay",
            Some(json!({"types": ["bounced"]})),
        ),
        (
            Method::GET,
            "/v1/audit/access",
            "/v1/audit/access?limit=5",
            None,
        ),
        (
            Method::POST,
            "/v1/audit/as-of",
            "/v1/audit/as-of",
            Some(json!({"at": "2100-01-01T00:00:00Z", "message_id": "m1"})),
        ),
        (
            Method::POST,
            "/v1/audit/as-of",
            "/v1/audit/as-of",
            Some(json!({"at": "2100-01-01T00:00:00Z", "contact": "ann@example.org"})),
        ),
    ];
    for (method, path, uri, body) in checks {
        let r = call(&e, &c, method, path, uri, Some(&key), body.as_ref()).await;
        assert_eq!(r.status, StatusCode::OK, "{uri}: {}", r.text());
    }
    for (method, path, uri, body) in [
        (
            Method::GET,
            "/v1/audit/access",
            "/v1/audit/access?contact=nothex",
            None,
        ),
        (
            Method::POST,
            "/v1/audit/as-of",
            "/v1/audit/as-of",
            Some(json!({"at": "2100-01-01T00:00:00Z"})),
        ),
        (
            Method::POST,
            "/v1/audit/replay",
            "/v1/audit/replay",
            Some(json!({"contact_pseudonym": "xyz"})),
        ),
        (
            Method::POST,
            "/v1/audit/replay",
            "/v1/audit/replay",
            Some(json!({"to_position": 9_223_372_036_854_775_808_u64})),
        ),
    ] {
        let r = call(&e, &c, method, path, uri, Some(&key), body.as_ref()).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{uri}: {}", r.text());
    }
}
