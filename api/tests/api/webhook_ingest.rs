//! Provider webhooks through the router: retries, two recipients at one instant, refusals, unsigned ones, SNS confirmations.

use super::*;

pub(crate) fn sample(path: &str) -> String {
    std::fs::read_to_string(format!(
        "{}/testdata/webhooks/{path}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

pub(crate) async fn webhook(
    e: &common::Env,
    provider: &str,
    key: &str,
    body: String,
) -> common::Reply {
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
