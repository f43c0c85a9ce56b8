//! Ingest: retries append nothing, size and count limits, bad bodies, back-pressure and rate limits.

use super::*;

#[tokio::test]
async fn a_retried_batch_appends_nothing_and_returns_the_same_positions() {
    // Inline, and on an ingest runtime of its own, as `mailledger serve` runs it.
    for e in [env(), env_with_ingest_runtime()] {
        retried_batch(&e).await;
    }
}

pub(crate) async fn retried_batch(e: &Env) {
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
