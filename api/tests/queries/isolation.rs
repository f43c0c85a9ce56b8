//! Tenants apart: another tenant's data answers exactly like missing data.

use super::*;

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
