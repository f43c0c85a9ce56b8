//! What operators and clients rely on: metrics, health and readiness, problem answers, every route in the OpenAPI document.

use super::*;

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

/// Fills `{param}` segments of a documented path with a plausible value.
pub(crate) fn concrete(path: &str) -> String {
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
        ("src/lib.rs", include_str!("../../src/lib.rs")),
        ("src/routes/mod.rs", include_str!("../../src/routes/mod.rs")),
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
