//! Webhook credentials and signatures through `router(state)`: keys with
//! the `webhook` scope post webhooks and nothing else, provider-limited
//! ones only their provider's; unsafe webhook secrets are refused when
//! set; a replayed Mailgun signature is refused; metrics are not on the
//! API's router.

#![allow(clippy::unwrap_used)]

mod common;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use base64::Engine as _;
use common::{Env, env};
use mailledger_api::Scope;
use mailledger_api::access::WebhookProvider;
use serde_json::{Value, json};

fn sample(path: &str) -> String {
    std::fs::read_to_string(format!(
        "{}/testdata/webhooks/{path}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

/// Posts a webhook with `key` as the basic-auth password, as a provider's
/// webhook URL carries it.
async fn webhook(e: &Env, provider: &str, key: &str, body: String) -> common::Reply {
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("api:{key}"));
    e.send(
        Request::post(format!("/v1/webhooks/{provider}"))
            .header(header::AUTHORIZATION, format!("Basic {basic}"))
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(body))
            .unwrap(),
    )
    .await
}

#[tokio::test]
async fn a_webhook_key_posts_webhooks_and_nothing_else() {
    let e = env();
    let key = e.key("acme", &[Scope::Webhook(None)]);
    let r = webhook(&e, "postmark", &key, sample("postmark/delivery.json")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.json()["appended"], 1);
    let head = e.state.email.log().head();
    let address = json!({"address": "john@example.org"});
    let event =
        json!({"events": [common::event(&common::uuid(), "sent", "ann@example.org", "m-1")]});
    for (method, path, body) in [
        (Method::POST, "/v1/events", Some(&event)),
        (
            Method::POST,
            "/v1/suppressions",
            Some(&json!({"address": "john@example.org", "reason": "manual"})),
        ),
        (Method::POST, "/v1/suppressions/remove", Some(&address)),
        (Method::POST, "/v1/suppressions/lookup", Some(&address)),
        (Method::POST, "/v1/sends/check", Some(&address)),
        (Method::GET, "/v1/messages", None),
        (Method::POST, "/v1/contacts/export", Some(&address)),
        (Method::POST, "/v1/erasures", Some(&address)),
        (Method::GET, "/v1/admin/tenants", None),
    ] {
        let r = e.call(method.clone(), path, Some(&key), body).await;
        assert_eq!(
            r.status,
            StatusCode::FORBIDDEN,
            "{method} {path}: {}",
            r.text()
        );
        assert_eq!(r.json()["type"], "urn:mailledger:problem:forbidden");
        assert!(!r.text().contains("john@"), "{}", r.text());
    }
    assert_eq!(e.state.email.log().head(), head, "nothing was appended");
}

#[tokio::test]
async fn a_webhook_key_of_one_provider_is_refused_for_another() {
    let e = env();
    let postmark = e.key("acme", &[Scope::Webhook(Some(WebhookProvider::Postmark))]);
    let r = webhook(&e, "postmark", &postmark, sample("postmark/delivery.json")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let head = e.state.email.log().head();
    e.state
        .access
        .set_webhook_secrets("acme", Some(r#"{"require_signatures": false}"#))
        .unwrap();
    for provider in ["ses", "mailgun", "sparkpost"] {
        let r = webhook(&e, provider, &postmark, sample("mailgun/delivered.json")).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{provider}: {}", r.text());
        assert_eq!(r.json()["type"], "urn:mailledger:problem:forbidden");
    }
    assert_eq!(e.state.email.log().head(), head, "nothing was appended");
    // A key of every provider learns that a name is no provider; ingest
    // keys keep posting webhooks as before.
    let any = e.key("acme", &[Scope::Webhook(None)]);
    let r = webhook(&e, "sparkpost", &any, sample("postmark/delivery.json")).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.text());
    let ingest = e.key("acme", &[Scope::Ingest]);
    let r = webhook(&e, "mailgun", &ingest, sample("mailgun/delivered.json")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
}

#[tokio::test]
async fn keys_with_webhook_scopes_are_made_and_listed_by_name() {
    let e = env();
    e.key("acme", &[Scope::Read]);
    let r = e
        .call(
            Method::POST,
            "/v1/admin/keys",
            Some(&e.admin),
            Some(&json!({"tenant": "acme", "scopes": ["webhook:ses", "webhook"]})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    assert_eq!(r.json()["scopes"], json!(["webhook", "webhook:ses"]));
    let key = r.json()["key"].as_str().unwrap().to_owned();
    let listed = e
        .call(
            Method::GET,
            "/v1/admin/keys?tenant=acme",
            Some(&e.admin),
            None,
        )
        .await
        .json();
    assert!(
        listed["keys"]
            .as_array()
            .unwrap()
            .iter()
            .any(|k| k["scopes"] == json!(["webhook", "webhook:ses"])),
        "{listed}"
    );
    let r = webhook(&e, "postmark", &key, sample("postmark/delivery.json")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    for bad in ["webhook:sparkpost", "webhook:", "hooks"] {
        let r = e
            .call(
                Method::POST,
                "/v1/admin/keys",
                Some(&e.admin),
                Some(&json!({"tenant": "acme", "scopes": [bad]})),
            )
            .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{bad}: {}", r.text());
    }
    // The document lists every scope name.
    let doc = e
        .call(Method::GET, "/openapi.json", None, None)
        .await
        .json();
    let names = &doc["components"]["schemas"]["Scope"]["enum"];
    for s in [
        "ingest",
        "admin",
        "webhook",
        "webhook:ses",
        "webhook:sendgrid",
    ] {
        assert!(
            names.as_array().unwrap().contains(&json!(s)),
            "{s} in {names}"
        );
    }
}

#[tokio::test]
async fn metrics_are_served_on_their_own_router_not_the_apis() {
    let e = env();
    let r = e.call(Method::GET, "/metrics", None, None).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.text());
    let r = e.call(Method::GET, "/metrics", Some(&e.admin), None).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.text());
    let doc = e
        .call(Method::GET, "/openapi.json", None, None)
        .await
        .json();
    assert!(doc["paths"].get("/metrics").is_none());
    let r = e.scrape().await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.text().contains("mailledger_http_requests_total"));
}

#[tokio::test]
async fn sns_certificates_without_a_topic_allow_list_answer_422_naming_the_field() {
    let e = env();
    e.key("acme", &[Scope::Read]);
    let path = "/v1/admin/tenants/acme/webhook-secrets";
    let r = e
        .call(
            Method::PUT,
            path,
            Some(&e.admin),
            Some(&json!({"mailgun_signing_key": "key-before"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text());
    let r = e
        .call(
            Method::PUT,
            path,
            Some(&e.admin),
            Some(&json!({"sns_certificates": ["-----BEGIN CERTIFICATE-----\nzed-cert\n-----END CERTIFICATE-----"],
                         "mailgun_signing_key": "key-zed-secret"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text());
    assert_eq!(r.content_type(), "application/problem+json");
    assert_eq!(r.json()["type"], "urn:mailledger:problem:unsafe-settings");
    let detail = r.json()["detail"].as_str().unwrap().to_owned();
    assert!(detail.contains("sns_topic_arns"), "{detail}");
    assert!(!r.text().contains("zed"), "{}", r.text());
    // Nothing changed.
    assert_eq!(
        e.state
            .access
            .webhook_secrets("acme")
            .unwrap()
            .mailgun_signing_key
            .as_deref(),
        Some("key-before")
    );
    let r = e
        .call(
            Method::PUT,
            path,
            Some(&e.admin),
            Some(&json!({"sns_certificates": [include_str!("../testdata/webhooks/keys/sns-cert.pem")],
                         "sns_topic_arns": ["arn:aws:sns:eu-west-1:123456789012:ses-events"],
                         "sns_signature_v2_only": true, "postal_require_sha256": true})),
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text());
    // The document describes the new settings.
    let doc = e
        .call(Method::GET, "/openapi.json", None, None)
        .await
        .json();
    let fields = &doc["components"]["schemas"]["WebhookSecrets"]["properties"];
    for f in [
        "sns_signature_v2_only",
        "postal_require_sha256",
        "sns_topic_arns",
    ] {
        assert!(fields.get(f).is_some(), "{f} in {fields}");
    }
    assert!(
        doc["paths"]["/v1/admin/tenants/{tenant}/webhook-secrets"]["put"]["responses"]
            .get("422")
            .is_some(),
        "422 documented"
    );
}

const MAILGUN_KEY: &str = "route-test-mailgun-key";

fn now_secs() -> i64 {
    mailledger_core::now_micros() / 1_000_000
}

/// The Mailgun sample `file` signed now with `token`, its event id
/// replaced by `event_id`.
fn mailgun_body(file: &str, token: &str, event_id: &str) -> String {
    let mut v: Value = serde_json::from_str(&sample(&format!("mailgun/{file}"))).unwrap();
    let ts = now_secs().to_string();
    let tag = ring::hmac::sign(
        &ring::hmac::Key::new(ring::hmac::HMAC_SHA256, MAILGUN_KEY.as_bytes()),
        format!("{ts}{token}").as_bytes(),
    );
    v["signature"] = json!({"timestamp": ts, "token": token,
                            "signature": mailledger_core::hex(tag.as_ref())});
    v["event-data"]["id"] = json!(event_id);
    serde_json::to_string(&v).unwrap()
}

#[tokio::test]
async fn a_replayed_mailgun_signature_is_refused_and_stores_nothing() {
    let e = env();
    let key = e.key("acme", &[Scope::Webhook(Some(WebhookProvider::Mailgun))]);
    e.state
        .access
        .set_webhook_secrets(
            "acme",
            Some(&json!({"mailgun_signing_key": MAILGUN_KEY}).to_string()),
        )
        .unwrap();
    let first = mailgun_body("delivered.json", "token-one", "event-a");
    let r = webhook(&e, "mailgun", &key, first.clone()).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.json()["authentication"], "verified");
    assert_eq!(r.json()["appended"], 1);
    let head = e.state.email.log().head();
    // The captured signature with other events, and the same request again.
    for body in [
        mailgun_body("delivered.json", "token-one", "event-b"),
        first,
    ] {
        let r = webhook(&e, "mailgun", &key, body).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.text());
        assert_eq!(r.json()["type"], "urn:mailledger:problem:bad-signature");
        assert!(
            r.json()["detail"].as_str().unwrap().contains("replay"),
            "{}",
            r.text()
        );
    }
    assert_eq!(e.state.email.log().head(), head, "nothing was appended");
    // A fresh token passes; another tenant's memory is its own.
    let r = webhook(
        &e,
        "mailgun",
        &key,
        mailgun_body("delivered.json", "token-two", "event-b"),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let other = e.key("globex", &[Scope::Webhook(None)]);
    e.state
        .access
        .set_webhook_secrets(
            "globex",
            Some(&json!({"mailgun_signing_key": MAILGUN_KEY}).to_string()),
        )
        .unwrap();
    let r = webhook(
        &e,
        "mailgun",
        &other,
        mailgun_body("delivered.json", "token-one", "event-a"),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let metrics = e.scrape().await.text();
    assert!(
        metrics.contains(
            "mailledger_webhook_requests_total{outcome=\"replayed\",provider=\"mailgun\"} 2"
        ),
        "{metrics}"
    );
}

/// A log sink for one test.
#[derive(Clone, Default)]
struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn an_unverified_sns_topic_is_logged_escaped_and_bounded() {
    let logs = Captured::default();
    let sink = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_ansi(false)
        .with_writer(move || sink.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let e = env();
    let key = e.key("acme", &[Scope::Webhook(Some(WebhookProvider::Ses))]);
    e.state
        .access
        .set_webhook_secrets("acme", Some(r#"{"require_signatures": false}"#))
        .unwrap();
    let mut confirmation: Value =
        serde_json::from_str(&sample("ses/sns-subscription-confirmation.json")).unwrap();
    let forged = format!(
        "arn:aws:sns:eu-west-1:1:t\n2026-12-06T00:00:00Z ERROR forged line \u{1b}[31m{}",
        "x".repeat(5000)
    );
    confirmation["TopicArn"] = json!(forged);
    let r = webhook(&e, "ses", &key, confirmation.to_string()).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let text = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    let line = text
        .lines()
        .find(|l| l.contains("SNS subscription confirmation recorded"))
        .unwrap_or_else(|| panic!("not logged: {text}"));
    assert!(line.contains(r"\n2026-12-06"), "{line}");
    assert!(
        !text
            .lines()
            .any(|l| l.starts_with("2026-12-06T00:00:00Z ERROR forged")),
        "{text}"
    );
    assert!(!text.contains('\u{1b}'), "{text}");
    assert!(line.len() < 1000, "{} bytes: {line}", line.len());
}
