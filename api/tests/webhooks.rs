//! Provider webhooks through the real route: what their `raw` payloads keep
//! (the tenant's policy, never another recipient), and batches with bad
//! items.

#![allow(clippy::unwrap_used)]

mod common;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use base64::Engine as _;
use common::{Env, Reply, env};
use mailledger_api::Scope;
use mailledger_core::email::TenantPolicy;
use mailledger_core::{Direction, TenantFilter};
use serde_json::{Value, json};

/// A subject line.
const SUBJECT: &str = "zq-subject-canary";
/// A user agent.
const UA: &str = "ZqCanaryAgent/9.1";
/// An IP address (TEST-NET-2).
const IP: &str = "198.51.100.213";
/// Another recipient of the message.
const OTHER: &str = "zq-other@canary.example";

fn sample(path: &str) -> Value {
    let text = std::fs::read_to_string(format!(
        "{}/testdata/webhooks/{path}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    serde_json::from_str(&text).unwrap()
}

async fn webhook(e: &Env, provider: &str, key: &str, body: &Value) -> Reply {
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("api:{key}"));
    e.send(
        Request::post(format!("/v1/webhooks/{provider}"))
            .header(header::AUTHORIZATION, format!("Basic {basic}"))
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(serde_json::to_vec(body).unwrap()))
            .unwrap(),
    )
    .await
}

/// An SES record in an SNS envelope (unsigned: the tenants below allow it).
fn sns(record: &Value, message_id: &str) -> Value {
    json!({"Type": "Notification", "MessageId": message_id,
           "TopicArn": "arn:aws:sns:eu-west-1:123456789012:ses-events",
           "Timestamp": "2017-08-05T00:41:03.100Z", "Message": record.to_string()})
}

/// A tenant with a key to post webhooks and read, unsigned webhooks
/// allowed, and `policy`.
async fn tenant(e: &Env, name: &str, policy: TenantPolicy) -> String {
    let key = e.key(name, &[Scope::Ingest, Scope::Read]);
    e.state
        .access
        .set_webhook_secrets(name, Some(r#"{"require_signatures": false}"#))
        .unwrap();
    e.state.email.set_policy(name, policy).await.unwrap();
    key
}

/// What the ledger holds for `tenant` once `bodies` went through the route:
/// every byte of every record of the tenant and every file under the data
/// directory (as text, lossily), and the decrypted events (every record
/// opened by the `EmailLedger`, and each recipient's export), as JSON text.
struct Stored {
    bytes: String,
    opened: String,
    raws: Vec<String>,
}

async fn ingest_and_read(
    e: &Env,
    tenant_name: &str,
    key: &str,
    provider: &str,
    bodies: &[Value],
    recipients: &[&str],
) -> Stored {
    for body in bodies {
        let r = webhook(e, provider, key, body).await;
        assert_eq!(r.status, StatusCode::OK, "{provider}: {}", r.text());
        assert!(
            r.json()["appended"].as_u64().unwrap() >= 1,
            "{provider}: {}",
            r.text()
        );
    }
    let log = e.state.email.log();
    let batch = log
        .read_all(
            &TenantFilter::Only(tenant_name.to_owned()),
            0,
            Direction::Forward,
            10_000,
        )
        .await
        .unwrap();
    let mut bytes = String::new();
    let mut opened = String::new();
    let mut raws = Vec::new();
    for r in &batch.records {
        bytes.push_str(&String::from_utf8_lossy(&r.payload));
        bytes.push_str(&String::from_utf8_lossy(&r.metadata));
        bytes.push_str(&r.stream);
        if let Some(ev) = e.state.email.open(r).unwrap() {
            let j = ev.to_json();
            if let Some(raw) = j["raw"].as_str() {
                raws.push(raw.to_owned());
            }
            opened.push_str(&j.to_string());
        }
    }
    for file in walk(e.dir.path()) {
        bytes.push_str(&String::from_utf8_lossy(&std::fs::read(file).unwrap()));
    }
    for address in recipients {
        let export = e
            .ok(
                Method::POST,
                "/v1/contacts/export",
                key,
                Some(&json!({ "address": address })),
            )
            .await;
        assert!(!export["events"].as_array().unwrap().is_empty());
        opened.push_str(&export.to_string());
    }
    Stored {
        bytes,
        opened,
        raws,
    }
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}

/// Ingests `bodies` for a tenant on the default policy and asserts that no
/// canary is stored or read back; then for a tenant keeping subjects and
/// engagement details, that the subject, IP and user agent canaries are in
/// `raw` and the other recipient still is not.
async fn canaries_are_scrubbed(provider: &str, bodies: &[Value], recipients: &[&str]) {
    let e = env();
    let key = tenant(&e, "acme", TenantPolicy::default()).await;
    let stored = ingest_and_read(&e, "acme", &key, provider, bodies, recipients).await;
    assert!(!stored.raws.is_empty(), "{provider}: raw payloads kept");
    for canary in [SUBJECT, UA, IP, OTHER] {
        assert!(
            !stored.bytes.contains(canary),
            "{provider}: {canary} in the stored bytes"
        );
        assert!(
            !stored.opened.contains(canary),
            "{provider}: {canary} read back: {}",
            stored.opened
        );
    }

    let keep = TenantPolicy {
        keep_subjects: true,
        keep_engagement_details: true,
        ..TenantPolicy::default()
    };
    let key = tenant(&e, "globex", keep).await;
    let stored = ingest_and_read(&e, "globex", &key, provider, bodies, recipients).await;
    let raws = stored.raws.join("\n");
    for kept in [SUBJECT, UA, IP] {
        assert!(
            raws.contains(kept),
            "{provider}: {kept} kept in raw: {raws}"
        );
    }
    assert!(
        !stored.opened.contains(OTHER),
        "{provider}: another recipient read back: {}",
        stored.opened
    );
    assert!(!stored.bytes.contains(OTHER));
}

#[tokio::test]
async fn postal_raw_payloads_keep_no_canary_the_policy_drops_nor_another_recipient() {
    let mut loaded = sample("postal/message-loaded.json");
    loaded["payload"]["ip_address"] = json!(IP);
    loaded["payload"]["user_agent"] = json!(UA);
    loaded["payload"]["message"]["subject"] = json!(SUBJECT);
    let mut bounced = sample("postal/message-bounced.json");
    bounced["payload"]["original_message"]["subject"] = json!(SUBJECT);
    // The bounce message's own addressee.
    bounced["payload"]["bounce"]["to"] = json!(OTHER);
    canaries_are_scrubbed("postal", &[loaded, bounced], &["ann@example.org"]).await;
}

#[tokio::test]
async fn ses_raw_payloads_keep_no_canary_the_policy_drops_nor_another_recipient() {
    let mut open = sample("ses/open.json");
    open["mail"]["commonHeaders"]["subject"] = json!(SUBJECT);
    open["mail"]["commonHeaders"]["to"] = json!(["recipient@example.org", OTHER]);
    open["mail"]["commonHeaders"]["cc"] = json!([OTHER]);
    for h in open["mail"]["headers"].as_array_mut().unwrap() {
        match h["name"].as_str().unwrap() {
            "To" => h["value"] = json!(format!("recipient@example.org, {OTHER}")),
            "Subject" => h["value"] = json!(SUBJECT),
            _ => {}
        }
    }
    open["mail"]["headers"]
        .as_array_mut()
        .unwrap()
        .push(json!({"name": "Cc", "value": OTHER}));
    open["open"]["ipAddress"] = json!(IP);
    open["open"]["userAgent"] = json!(UA);
    let mut complaint = sample("ses/complaint.json");
    complaint["complaint"]["userAgent"] = json!(UA);
    // A bounce of two of three recipients: the third is named only in the
    // destination and the headers.
    let bounce: Value = serde_json::from_str(
        &sample("ses/notification-bounce.json")
            .to_string()
            .replace("mary@example.org", OTHER),
    )
    .unwrap();
    let bodies = [
        sns(&open, "11111111-0000-4000-8000-000000000001"),
        sns(&complaint, "11111111-0000-4000-8000-000000000002"),
        sns(&bounce, "11111111-0000-4000-8000-000000000003"),
    ];
    canaries_are_scrubbed(
        "ses",
        &bodies,
        &[
            "recipient@example.org",
            "jane@example.org",
            "richard@example.org",
        ],
    )
    .await;
}

#[tokio::test]
async fn each_recipient_of_an_ses_bounce_reads_back_only_its_own_address() {
    let e = env();
    let key = tenant(&e, "acme", TenantPolicy::default()).await;
    let bounce = sample("ses/notification-bounce.json");
    let r = webhook(&e, "ses", &key, &sns(&bounce, "n-1")).await;
    assert_eq!(r.json()["appended"], 2, "{}", r.text());
    for (own, others) in [
        ("jane@example.org", ["richard@", "mary@"]),
        ("richard@example.org", ["jane@", "mary@"]),
    ] {
        let export = e
            .ok(
                Method::POST,
                "/v1/contacts/export",
                &key,
                Some(&json!({ "address": own })),
            )
            .await;
        let raw = export["events"][0]["raw"].as_str().unwrap();
        assert!(raw.contains(own), "{raw}");
        for other in others {
            assert!(!raw.contains(other), "{own}'s raw names {other}: {raw}");
        }
    }
}

#[tokio::test]
async fn postmark_raw_payloads_keep_no_canary_the_policy_drops_nor_another_recipient() {
    let mut open = sample("postmark/open.json");
    open["Geo"]["IP"] = json!(IP);
    open["UserAgent"] = json!(UA);
    let mut bounce = sample("postmark/bounce.json");
    bounce["Subject"] = json!(SUBJECT);
    // The bounce dump: the returned message, headers and all.
    bounce["Content"] = json!(format!(
        "Return-Path: <>\r\nTo: john@example.org, {OTHER}\r\nSubject: {SUBJECT}\r\n\r\nBounced"
    ));
    canaries_are_scrubbed("postmark", &[open, bounce], &["john@example.org"]).await;
}

#[tokio::test]
async fn mailgun_raw_payloads_keep_no_canary_the_policy_drops_nor_another_recipient() {
    let mut opened = sample("mailgun/opened.json");
    let data = &mut opened["event-data"];
    data["ip"] = json!(IP);
    data["client-info"]["user-agent"] = json!(UA);
    data["message"]["headers"]["subject"] = json!(SUBJECT);
    data["message"]["headers"]["to"] = json!(format!("Alice <alice@example.org>, {OTHER}"));
    data["message"]["headers"]["cc"] = json!(OTHER);
    let mut accepted = sample("mailgun/accepted.json");
    let data = &mut accepted["event-data"];
    data["message"]["headers"]["subject"] = json!(SUBJECT);
    data["message"]["headers"]["to"] = json!(format!("recipient@example.org, {OTHER}"));
    data["envelope"]["targets"] = json!(format!("recipient@example.org,{OTHER}"));
    canaries_are_scrubbed(
        "mailgun",
        &[opened, accepted],
        &["alice@example.org", "recipient@example.org"],
    )
    .await;
}

#[tokio::test]
async fn sendgrid_raw_payloads_keep_no_canary_the_policy_drops_nor_another_recipient() {
    let mut events = sample("sendgrid/events.json");
    // The open and the click.
    for i in [6, 8] {
        events[i]["ip"] = json!(IP);
        events[i]["useragent"] = json!(UA);
    }
    // SendGrid sends a sender's custom arguments as fields of each event.
    events[0]["subject"] = json!(SUBJECT);
    events[0]["cc"] = json!(OTHER);
    events[2]["to"] = json!(OTHER);
    canaries_are_scrubbed("sendgrid", &[events], &["example@example.org"]).await;
}

#[tokio::test]
async fn a_sendgrid_batch_with_bad_items_appends_the_others_and_names_each_bad_one() {
    let e = env();
    let key = tenant(&e, "acme", TenantPolicy::default()).await;
    let mut events = sample("sendgrid/events.json");
    let total = events.as_array().unwrap().len();
    events[1]["event"] = json!("zed-unknown@secret.example");
    events[3]["email"] = json!(5);
    events[9]["timestamp"] = json!("zed@secret.example");
    let r = webhook(&e, "sendgrid", &key, &events).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert!(!r.text().contains("zed"), "{}", r.text());
    let j = r.json();
    // Three bad items, and the account status change with no canonical type.
    assert_eq!(j["appended"], total - 4, "{j}");
    let skipped = j["skipped"].as_array().unwrap();
    let bad: Vec<(u64, &str, &str)> = skipped
        .iter()
        .filter(|s| s.get("index").is_some())
        .map(|s| {
            (
                s["index"].as_u64().unwrap(),
                s["field"].as_str().unwrap(),
                s["event_type"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        bad,
        [
            (1, "[1].event", "unknown"),
            (3, "[3].email", "bounce"),
            (9, "[9].timestamp", "spamreport"),
        ]
    );
    for s in skipped.iter().filter(|s| s.get("index").is_some()) {
        let reason = s["reason"].as_str().unwrap();
        assert!(reason.contains(s["field"].as_str().unwrap()), "{reason}");
    }
    let unmapped: Vec<_> = skipped
        .iter()
        .filter(|s| s.get("index").is_none())
        .collect();
    assert_eq!(unmapped.len(), 1);
    assert_eq!(unmapped[0]["event_type"], "account_status_change");
    assert_eq!(unmapped[0]["reason"], "no canonical type");

    // The provider's retry appends nothing again.
    let head = e.state.email.log().head();
    let again = webhook(&e, "sendgrid", &key, &events).await;
    assert_eq!(again.json()["appended"], 0, "{}", again.text());
    assert_eq!(again.json()["duplicates"], total - 4);
    assert_eq!(e.state.email.log().head(), head);
}

#[tokio::test]
async fn a_batch_with_no_usable_item_is_400_and_stores_nothing() {
    let e = env();
    let key = tenant(&e, "acme", TenantPolicy::default()).await;
    let head = e.state.email.log().head();
    let events = json!([
        {"event": "zed-unknown@secret.example"},
        {"event": "bounce", "email": 5, "sg_event_id": "x", "timestamp": 1},
    ]);
    let r = webhook(&e, "sendgrid", &key, &events).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text());
    assert!(r.text().contains("[0].event"), "{}", r.text());
    assert!(!r.text().contains("zed"), "{}", r.text());
    assert_eq!(e.state.email.log().head(), head);
}

#[tokio::test]
async fn one_bad_recipient_of_an_ses_record_does_not_lose_the_others() {
    let e = env();
    let key = tenant(&e, "acme", TenantPolicy::default()).await;
    let mut bounce = sample("ses/notification-bounce.json");
    bounce["bounce"]["bouncedRecipients"][0]["emailAddress"] = json!("zed at secret.example");
    let r = webhook(&e, "ses", &key, &sns(&bounce, "n-2")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let j = r.json();
    assert_eq!(j["appended"], 1, "{j}");
    assert_eq!(j["skipped"][0]["index"], 0);
    assert_eq!(
        j["skipped"][0]["field"],
        "Message.bounce.bouncedRecipients[0].emailAddress"
    );
    assert!(!r.text().contains("zed"));
}

#[tokio::test]
async fn an_item_the_ledger_refuses_is_skipped_by_its_provider_index_and_the_others_kept() {
    let e = env();
    let key = tenant(&e, "acme", TenantPolicy::default()).await;
    let mut events = sample("sendgrid/events.json");
    let total = events.as_array().unwrap().len();
    // An address the adapter passes on (it has an `@`) and the ledger's
    // normalisation refuses (it has a space).
    events[2]["email"] = json!("Zed Doe <zed@secret.example>");
    events[1]["event"] = json!("zed-unknown");
    let r = webhook(&e, "sendgrid", &key, &events).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert!(
        !r.text().contains("zed@") && !r.text().contains("Zed"),
        "{}",
        r.text()
    );
    let j = r.json();
    // Item 2 refused by the ledger, item 1 by the adapter, 13 unmapped.
    assert_eq!(j["appended"], total - 3, "{j}");
    let refused: Vec<&Value> = j["skipped"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["index"] == 2)
        .collect();
    assert_eq!(refused.len(), 1, "{j}");
    assert_eq!(refused[0]["field"], "[2]");
    assert_eq!(refused[0]["event_type"], "delivered");
    assert!(
        refused[0]["reason"]
            .as_str()
            .unwrap()
            .starts_with("refused by the ledger: "),
        "{j}"
    );
    assert_eq!(j["events"].as_array().unwrap().len(), total - 3);

    // A body of one event the ledger refuses: nothing usable, 400.
    let head = e.state.email.log().head();
    let mut delivery = sample("postmark/delivery.json");
    delivery["Recipient"] = json!("Zed Doe <zed@secret.example>");
    let r = webhook(&e, "postmark", &key, &delivery).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text());
    assert!(r.text().contains("(root)"), "{}", r.text());
    assert!(
        !r.text().contains("zed@") && !r.text().contains("Zed"),
        "{}",
        r.text()
    );
    assert_eq!(e.state.email.log().head(), head);
}
