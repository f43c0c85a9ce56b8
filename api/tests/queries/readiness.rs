//! The projections' readiness: 503 without them, /readyz and lag metrics, an admin rebuild swapped in while queries go on.

use super::*;

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
