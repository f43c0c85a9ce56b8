//! The README's newcomer path, end to end, against the real `mailledger
//! serve` on a loopback port: first start prints the admin key; a key is
//! made with `mailledger key create` while the server runs; the tenant's
//! webhook secrets are set with `mailledger tenant webhook-secrets`; every
//! provider's sample webhook (signed where the provider signs) and a
//! canonical batch go in; then a timeline, a suppression check, an export,
//! an erasure and its marker, `/metrics` on the metrics listener (not the
//! API's) through `promtool check metrics` (when promtool is on PATH), and
//! SIGTERM with exit status 0.
//!
//! The webhooks go in with a key of the `webhook` scope, as the README's
//! setup makes one for providers' webhook URLs. Every provider is signed:
//! Postal (RSA, `keys/postal-2048.pk8`), SES (an SNS SignatureVersion 2
//! envelope signed now with `keys/sns-2048.pk8`, trusted through
//! `keys/sns-cert.pem`; the pre-signed SignatureVersion 1 sample of 2016 is
//! refused as stale), Mailgun (HMAC under a test signing key), SendGrid
//! (a P-256 key made for this run); Postmark signs nothing and is
//! authenticated by the API key as the basic-auth password, as Postmark's
//! webhook URLs carry it. So `require_signatures` stays at its default
//! (true).

#![allow(clippy::unwrap_used)]

use std::io::Write as _;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Instant;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use mailledger_api::webhooks::signing;
use ring::signature::EcdsaKeyPair;
use serde_json::{Value, json};

/// How long a query may take to reflect ingested events (projections apply
/// them asynchronously).
/// The SNS topic of the test notifications (and the only one allowed).
const TOPIC: &str = "arn:aws:sns:eu-west-1:123456789012:ses-events";
const CERT_URL: &str =
    "https://sns.eu-west-1.amazonaws.com/SimpleNotificationService-0000000000000000000000.pem";
const MAILGUN_KEY: &str = "e2e-test-only-mailgun-signing-key";

// ------------------------------------------------------------- the process

mod common;

use common::http::{Http as _, Reply, http, poll};
use common::{Server, run_ok as mailledger};

// ------------------------------------------------------ provider signatures

fn testdata(path: &str) -> Vec<u8> {
    let full = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../api/testdata/webhooks")
        .join(path);
    std::fs::read(&full).unwrap_or_else(|e| panic!("{}: {e}", full.display()))
}

fn testdata_text(path: &str) -> String {
    String::from_utf8(testdata(path)).unwrap()
}

fn now_secs() -> i64 {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    i64::try_from(d.as_secs()).unwrap()
}

fn rsa_sha256(key_file: &str, message: &[u8]) -> String {
    signing::rsa_sha256(&testdata(key_file), message)
}

/// An SES record in an SNS Notification sent now, signed
/// (SignatureVersion 2) with the test SNS key.
fn sns_notification(ses_record: &str, message_id: &str) -> Vec<u8> {
    let now = mailledger_core::email::rfc3339(mailledger_core::now_micros());
    let mut n = json!({
        "Type": "Notification",
        "MessageId": message_id,
        "TopicArn": TOPIC,
        "Message": ses_record,
        "Timestamp": now,
        "SigningCertURL": CERT_URL,
        "UnsubscribeURL": "https://sns.eu-west-1.amazonaws.com/?Action=Unsubscribe&SubscriptionArn=x",
    });
    let mut canonical = String::new();
    for name in [
        "Message",
        "MessageId",
        "Subject",
        "Timestamp",
        "TopicArn",
        "Type",
    ] {
        if let Some(v) = n.get(name).and_then(Value::as_str) {
            canonical.push_str(&format!("{name}\n{v}\n"));
        }
    }
    n["SignatureVersion"] = json!("2");
    n["Signature"] = json!(rsa_sha256("keys/sns-2048.pk8", canonical.as_bytes()));
    serde_json::to_vec(&n).unwrap()
}

/// A Mailgun sample with a `signature` made now under [`MAILGUN_KEY`].
fn mailgun_body(file: &str) -> Vec<u8> {
    let mut v: Value = serde_json::from_slice(&testdata(&format!("mailgun/{file}"))).unwrap();
    let ts = now_secs().to_string();
    let token = format!("e2e-token-{ts}-{}", uuid::Uuid::new_v4().simple());
    let signature = signing::mailgun_signature(MAILGUN_KEY, &ts, &token);
    v["signature"] = json!({"timestamp": ts, "token": token, "signature": signature});
    serde_json::to_vec(&v).unwrap()
}

/// The SendGrid signature headers of `body`, signed now.
fn sendgrid_signature(key: &EcdsaKeyPair, body: &[u8]) -> (String, String) {
    let ts = now_secs().to_string();
    (signing::sendgrid_signature(key, &ts, body), ts)
}

/// Posts a webhook with the key as a Bearer token and extra headers.
fn webhook(
    server: &Server,
    provider: &str,
    key: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Reply {
    let auth = format!("Bearer {key}");
    let mut all = vec![
        ("Authorization", auth.as_str()),
        ("Content-Type", "application/json"),
    ];
    all.extend_from_slice(headers);
    server.request("POST", &format!("/v1/webhooks/{provider}"), &all, body)
}

/// Asserts a webhook answer: 200, the authentication, and how many events
/// were appended.
fn assert_ingested(r: &Reply, provider: &str, authentication: &str) -> usize {
    let v = r.expect(200, provider);
    assert_eq!(v["provider"], provider, "{v}");
    assert_eq!(v["authentication"], authentication, "{v}");
    let appended = usize::try_from(v["appended"].as_u64().unwrap()).unwrap();
    assert!(appended > 0, "{provider}: nothing appended: {v}");
    assert_eq!(v["duplicates"], 0, "{v}");
    appended
}

// -------------------------------------------------------------- queries

/// `GET /v1/messages/{id}` once the projections show `events` events.
fn timeline(server: &Server, key: &str, message_id: &str, events: usize) -> Value {
    poll(&format!("timeline of {message_id}"), || {
        let r = server.call(
            "GET",
            &format!("/v1/messages/{message_id}"),
            key,
            &Value::Null,
        );
        if r.status != 200 {
            return Err(format!("{} {}", r.status, r.body));
        }
        let v = r.json();
        match v["timeline"].as_array() {
            Some(t) if t.len() >= events => Ok(v),
            _ => Err(r.body),
        }
    })
}

/// `POST /v1/sends/check` until it answers `allowed == expected`.
fn check_send(server: &Server, key: &str, address: &str, expected: bool) -> Value {
    poll(&format!("sends/check of {address} == {expected}"), || {
        let r = server.call("POST", "/v1/sends/check", key, &json!({"address": address}));
        if r.status != 200 {
            return Err(format!("{} {}", r.status, r.body));
        }
        let v = r.json();
        if v["allowed"] == json!(expected) {
            Ok(v)
        } else {
            Err(r.body)
        }
    })
}

fn types_of(timeline: &Value) -> Vec<String> {
    timeline["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap_or_default().to_owned())
        .collect()
}

/// Pipes `/metrics` into `promtool check metrics` when promtool is on PATH.
fn promtool_check(metrics: &str) {
    let child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            eprintln!("note: promtool is not on PATH; /metrics was not checked with it");
            return;
        }
        Err(e) => panic!("cannot run promtool: {e}"),
    };
    child
        .stdin
        .take()
        .unwrap()
        .write_all(metrics.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("promtool check metrics: passed");
}

// ----------------------------------------------------------------- the test

#[test]
fn a_newcomer_ingests_queries_checks_erases_and_exports_through_the_real_server() {
    let started = Instant::now();
    let root = tempfile::tempdir().unwrap();
    // Metrics on a listener of their own, as `--metrics-listen` sets it.
    let mut command = common::command(root.path());
    command.env("MAILLEDGER_METRICS_LISTEN", "127.0.0.1:0");
    let mut server = Server::start_with(command, true);
    let metrics_addr = server
        .banner
        .split("metrics on http://")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .unwrap_or_else(|| panic!("no metrics address in {}", server.banner))
        .to_owned();

    // First start: the admin key, once, on stdout; how to make more on stderr.
    assert!(
        server.first_key.starts_with("mlk_"),
        "{:?}",
        server.first_key
    );
    assert!(server.banner.contains("first start"), "{}", server.banner);
    assert!(
        server.banner.contains("mailledger key create"),
        "{}",
        server.banner
    );
    let r = server.request("GET", "/healthz", &[], b"");
    assert_eq!(r.status, 200, "{}", r.body);

    // A key for the application, made with the CLI while the server runs.
    let out = mailledger(
        root.path(),
        &[
            "key",
            "create",
            "--tenant",
            "default",
            "--scopes",
            "ingest,read,erase",
            "--name",
            "e2e",
        ],
    );
    let key = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    assert!(key.starts_with("mlk_") && !key.contains('\n'), "{key}");
    let key = key.as_str();
    // The providers' key: webhooks only, for their webhook URLs.
    let out = mailledger(
        root.path(),
        &[
            "key",
            "create",
            "--tenant",
            "default",
            "--scopes",
            "webhook",
            "--name",
            "provider webhooks",
        ],
    );
    let hook_key = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    assert!(hook_key.starts_with("mlk_"), "{hook_key}");
    // No key, or a wrong one: the same 401, as problem+json.
    let r = server.call("POST", "/v1/events", "mlk_0_nope", &json!({"events": []}));
    assert_eq!(r.status, 401, "{}", r.body);
    assert!(
        r.header("content-type")
            .unwrap_or_default()
            .starts_with("application/problem+json")
    );

    // The tenant's webhook secrets, set with the CLI while the server runs.
    let (sendgrid, sendgrid_public) = signing::sendgrid_key();
    let secrets = root.path().join("webhook-secrets.json");
    std::fs::write(
        &secrets,
        serde_json::to_vec(&json!({
            "require_signatures": true,
            "mailgun_signing_key": MAILGUN_KEY,
            "postal_public_key": testdata_text("keys/postal-2048.pub.b64").trim(),
            "sendgrid_public_key": sendgrid_public,
            "sns_certificates": [testdata_text("keys/sns-cert.pem")],
            "sns_topic_arns": [TOPIC],
        }))
        .unwrap(),
    )
    .unwrap();
    let out = mailledger(
        root.path(),
        &[
            "tenant",
            "webhook-secrets",
            "--tenant",
            "default",
            "--file",
            secrets.to_str().unwrap(),
        ],
    );
    let said = String::from_utf8_lossy(&out.stderr);
    for p in ["mailgun", "postal", "sendgrid", "ses"] {
        assert!(said.contains(p), "{said}");
    }

    // ---- every provider's sample webhook.
    // Postal: a delivery and a hard failure, RSA-signed.
    for file in ["message-sent.json", "message-delivery-failed.json"] {
        let body = testdata(&format!("postal/{file}"));
        let sig = rsa_sha256("keys/postal-2048.pk8", &body);
        let r = webhook(
            &server,
            "postal",
            key,
            &[("X-Postal-Signature-256", &sig)],
            &body,
        );
        assert_ingested(&r, "postal", "verified");
        // The provider retries: the same event ids, nothing new appended.
        let again = webhook(
            &server,
            "postal",
            key,
            &[("X-Postal-Signature-256", &sig)],
            &body,
        )
        .expect(200, "postal retry");
        assert_eq!(again["appended"], 0, "{again}");
        assert!(again["duplicates"].as_u64().unwrap() > 0, "{again}");
    }
    // SES: a permanent bounce (jane@ and richard@) in a signed SNS envelope,
    // and the pre-signed SignatureVersion 1 delivery.
    let body = sns_notification(&testdata_text("ses/notification-bounce.json"), "e2e-ses-1");
    assert_eq!(
        assert_ingested(
            &webhook(&server, "ses", &hook_key, &[], &body),
            "ses",
            "verified"
        ),
        2
    );
    // The SignatureVersion 1 sample verifies, but was sent in 2016: refused.
    let body = testdata("ses/sns-notification-v1.json");
    let r = webhook(&server, "ses", &hook_key, &[], &body);
    assert_eq!(r.status, 401, "{}", r.body);
    assert!(r.body.contains("Timestamp"), "{}", r.body);
    // Postmark signs nothing: the key travels as the basic-auth password.
    let basic = format!("Basic {}", STANDARD.encode(format!("postmark:{hook_key}")));
    for file in ["delivery.json", "bounce.json"] {
        let r = server.request(
            "POST",
            "/v1/webhooks/postmark",
            &[
                ("Authorization", &basic),
                ("Content-Type", "application/json"),
            ],
            &testdata(&format!("postmark/{file}")),
        );
        assert_ingested(&r, "postmark", "provider_does_not_sign");
    }
    // Mailgun: HMAC over a fresh timestamp and token.
    for file in ["delivered.json", "failed-permanent-bounce.json"] {
        let body = mailgun_body(file);
        assert_ingested(
            &webhook(&server, "mailgun", &hook_key, &[], &body),
            "mailgun",
            "verified",
        );
    }
    // SendGrid: the documented batch, ECDSA-signed.
    let body = testdata("sendgrid/events.json");
    let (sig, ts) = sendgrid_signature(&sendgrid, &body);
    let headers = [
        ("X-Twilio-Email-Event-Webhook-Signature", sig.as_str()),
        ("X-Twilio-Email-Event-Webhook-Timestamp", ts.as_str()),
    ];
    assert!(
        assert_ingested(
            &webhook(&server, "sendgrid", &hook_key, &headers, &body),
            "sendgrid",
            "verified"
        ) > 5
    );
    // A body that is not what was signed: 401, nothing stored.
    let mut forged = body.clone();
    let at = forged.iter().position(|&b| b == b'1').unwrap();
    forged[at] = b'2';
    let r = webhook(&server, "sendgrid", &hook_key, &headers, &forged);
    assert_eq!(r.status, 401, "{}", r.body);
    // The webhook key does nothing else: no canonical events, no checks.
    let r = server.call("POST", "/v1/events", &hook_key, &json!({"events": []}));
    assert_eq!(r.status, 403, "{}", r.body);
    let r = server.call(
        "POST",
        "/v1/sends/check",
        &hook_key,
        &json!({"address": "jane@example.org"}),
    );
    assert_eq!(r.status, 403, "{}", r.body);

    // ---- a canonical batch.
    let batch = json!({"events": [
        {"id": "0193a0c4-7b1e-7d2a-9c3f-2f6a1c9e0b01", "type": "sent", "message_id": "m-e2e-1",
         "recipient": "dana@example.org", "occurred_at": "2026-11-22T10:00:00Z",
         "sending_domain": "mail.example.com", "tags": ["welcome"], "campaign": "november"},
        {"id": "0193a0c4-7b1e-7d2a-9c3f-2f6a1c9e0b02", "type": "delivered", "message_id": "m-e2e-1",
         "recipient": "dana@example.org", "occurred_at": "2026-11-22T10:00:02Z",
         "sending_domain": "mail.example.com", "smtp_response": "250 2.0.0 OK", "mx_host": "mx.example.org"},
        {"id": "0193a0c4-7b1e-7d2a-9c3f-2f6a1c9e0b03", "type": "opened", "message_id": "m-e2e-1",
         "recipient": "dana@example.org", "occurred_at": "2026-11-22T10:05:00Z", "machine": false},
        {"id": "0193a0c4-7b1e-7d2a-9c3f-2f6a1c9e0b04", "type": "sent", "message_id": "m-e2e-2",
         "recipient": "erin@example.org", "occurred_at": "2026-11-22T11:00:00Z",
         "sending_domain": "mail.example.com", "tags": ["welcome"]},
        {"id": "0193a0c4-7b1e-7d2a-9c3f-2f6a1c9e0b05", "type": "bounced", "message_id": "m-e2e-2",
         "recipient": "erin@example.org", "occurred_at": "2026-11-22T11:00:01Z",
         "sending_domain": "mail.example.com", "class": "hard", "sub_type": "no_mailbox",
         "status": "5.1.1", "diagnostic": "550 5.1.1 user unknown"}
    ]});
    let first = server
        .call("POST", "/v1/events", key, &batch)
        .expect(200, "events");
    assert_eq!(first["appended"], 5, "{first}");
    let retry = server
        .call("POST", "/v1/events", key, &batch)
        .expect(200, "events retry");
    assert_eq!(retry["appended"], 0, "{retry}");
    assert_eq!(retry["duplicates"], 5, "{retry}");
    let positions = |v: &Value| -> Vec<u64> {
        v["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["position"].as_u64().unwrap())
            .collect()
    };
    assert_eq!(positions(&retry), positions(&first), "the same positions");

    // ---- ready once the projections have caught up.
    poll("readyz", || {
        let r = server.request("GET", "/readyz", &[], b"");
        if r.status == 200 {
            Ok(())
        } else {
            Err(format!("{} {}", r.status, r.body))
        }
    });

    // ---- a timeline.
    let t = timeline(&server, key, "m-e2e-1", 3);
    assert_eq!(t["recipient"], "dana@example.org", "{t}");
    assert_eq!(types_of(&t), ["sent", "delivered", "opened"], "{t}");
    assert!(
        t["timeline"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["jurisdiction"] == "EU"),
        "each event carries the recording node's jurisdiction: {t}"
    );
    let status = t["status"].as_str().unwrap_or_default();
    assert!(
        status == "delivered" || status == "opened",
        "status {status}: {t}"
    );
    let t = timeline(&server, key, "m-e2e-2", 2);
    assert_eq!(t["recipient"], "erin@example.org", "{t}");
    assert_eq!(t["status"], "bounced", "{t}");
    // A webhook's message, by the provider's message id.
    let t = timeline(
        &server,
        key,
        "00000138111222aa-33322211-cccc-cccc-cccc-ddddaaaa0680-000000",
        2,
    );
    assert_eq!(t["status"], "bounced", "{t}");
    // A message nobody sent: 404.
    let r = server.call("GET", "/v1/messages/m-nobody", key, &Value::Null);
    assert_eq!(r.status, 404, "{}", r.body);
    // The delivery log lists what came in.
    let list = server
        .call("GET", "/v1/messages?status=bounced", key, &Value::Null)
        .expect(200, "messages");
    assert!(list.to_string().contains("m-e2e-2"), "{list}");

    // ---- suppression checks: hard bounces from the batch, SES, Postmark.
    for address in ["erin@example.org", "jane@example.org", "john@example.org"] {
        let v = check_send(&server, key, address, false);
        assert!(!v.to_string().contains(address), "no address echoed: {v}");
    }
    check_send(&server, key, "dana@example.org", true);

    // ---- export before erasure: the contact's events, decrypted.
    let export = server
        .call(
            "POST",
            "/v1/contacts/export",
            key,
            &json!({"address": "erin@example.org"}),
        )
        .expect(200, "export");
    assert_eq!(export["erased"], false, "{export}");
    assert_eq!(export["events"].as_array().unwrap().len(), 2, "{export}");
    assert!(export.to_string().contains("erin@example.org"), "{export}");

    // ---- erasure, its receipt, and the marker.
    let receipt = server
        .call(
            "POST",
            "/v1/erasures",
            key,
            &json!({"address": "erin@example.org", "request_id": "dsr-e2e-1"}),
        )
        .expect(200, "erasure");
    assert_eq!(receipt["request_id"], "dsr-e2e-1", "{receipt}");
    assert!(
        receipt["events_unreadable"].as_u64().unwrap() >= 2,
        "{receipt}"
    );
    let again = server
        .call("GET", "/v1/erasures/dsr-e2e-1", key, &Value::Null)
        .expect(200, "receipt");
    assert_eq!(again, receipt);
    let t = poll("the erased marker in the timeline", || {
        let r = server.call("GET", "/v1/messages/m-e2e-2", key, &Value::Null);
        let v = r.json();
        if r.status == 200 && v["recipient"] == json!({"erased": true}) {
            Ok(v)
        } else {
            Err(r.body)
        }
    });
    let text = t.to_string();
    assert!(!text.contains("erin@example.org"), "{text}");
    assert!(
        !text.contains("user unknown"),
        "diagnostic still readable: {text}"
    );
    assert_eq!(t["status"], "bounced", "what happened stays: {t}");
    assert_eq!(
        t["timeline"][1]["diagnostic"],
        json!({"erased": true}),
        "{t}"
    );
    // Suppression survives erasure (it is keyed by the pseudonym).
    check_send(&server, key, "erin@example.org", false);
    // The export now says erased and holds nothing readable.
    let export = server
        .call(
            "POST",
            "/v1/contacts/export",
            key,
            &json!({"address": "erin@example.org"}),
        )
        .expect(200, "export after erasure");
    assert_eq!(export["erased"], true, "{export}");
    assert!(!export.to_string().contains("erin@example.org"), "{export}");
    assert!(!export.to_string().contains("user unknown"), "{export}");

    // ---- metrics: not on the API's listener; on their own, Prometheus
    // text that promtool accepts.
    let r = server.request("GET", "/metrics", &[], b"");
    assert_eq!(r.status, 404, "{}", r.body);
    let r = http(&metrics_addr, "GET", "/metrics", &[], b"");
    assert_eq!(r.status, 200);
    assert!(
        r.header("content-type")
            .unwrap_or_default()
            .starts_with("text/plain"),
        "{:?}",
        r.header("content-type")
    );
    for canary in ["@example.org", "mlk_", MAILGUN_KEY] {
        assert!(!r.body.contains(canary), "{canary} in /metrics");
    }
    promtool_check(&r.body);

    // ---- SIGTERM: a clean stop.
    let status = server.terminate();
    assert!(status.success(), "exit status {status}");
    eprintln!("e2e: {:?}", started.elapsed());
}
