//! An audit end to end on the real server, as a data protection officer
//! and an outside auditor would run it: a realistic history for two
//! tenants, an erasure, exported checkpoints, a decrypted replay of a time
//! range, a contact's suppression state before and after its bounce, the
//! access records of those reads, the erasure register, and finally the
//! auditor's verification against the checkpoints with the public key
//! alone.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::Server;
use common::http::{Http as _, poll};
use mailledger_core::traffic::{Traffic, TrafficConfig};
use serde_json::{Value, json};

fn ndjson(body: &str) -> Vec<Value> {
    body.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn now_rfc3339() -> String {
    mailledger_core::email::rfc3339(mailledger_core::now_micros())
}

#[test]
fn an_audit_replays_answers_as_of_lists_access_and_erasures_and_verifies_checkpoints() {
    let root = tempfile::tempdir().unwrap();
    let root = root.path();
    let mut cmd = common::command(root);
    cmd.env("MAILLEDGER_CHECKPOINT_INTERVAL_SECS", "1");
    let mut server = Server::start_with(cmd, true);
    let admin = server.first_key.clone();
    let create = |tenant: &str| -> String {
        if tenant != "default" {
            server
                .call(
                    "POST",
                    "/v1/admin/tenants",
                    &admin,
                    &json!({ "name": tenant }),
                )
                .expect(201, "create tenant");
        }
        let key = server
            .call(
                "POST",
                "/v1/admin/keys",
                &admin,
                &json!({ "tenant": tenant, "scopes": ["ingest", "read", "erase", "audit"] }),
            )
            .expect(201, "create key");
        key["key"].as_str().unwrap().to_owned()
    };
    let (acme, globex) = (create("default"), create("globex"));

    // 1. A realistic history for two tenants: the shared traffic model.
    let mut traffic = Traffic::new(&TrafficConfig {
        tenants: vec![("default".into(), 3), ("globex".into(), 1)],
        contacts: 300,
        messages_per_second: 2,
        ..TrafficConfig::default()
    });
    for _ in 0..40 {
        let batch = traffic.next_batch(50);
        let key = if batch.tenant == 0 { &acme } else { &globex };
        let body = batch.body();
        let r = server.request(
            "POST",
            "/v1/events",
            &[
                ("Authorization", &format!("Bearer {key}")),
                ("Content-Type", "application/json"),
            ],
            body.as_bytes(),
        );
        assert_eq!(r.status, 200, "{}", r.body);
    }
    // The contact the auditor asks about: sent to, then hard-bounced.
    let event = |ty: &str, extra: &str| {
        json!({
            "id": uuid::Uuid::new_v4(), "type": ty, "message_id": "audit-m1",
            "recipient": "dora@example.org", "occurred_at": "2026-03-01T09:00:00Z",
        })
        .as_object()
        .unwrap()
        .clone()
        .into_iter()
        .chain(serde_json::from_str::<serde_json::Map<String, Value>>(extra).unwrap())
        .collect::<serde_json::Map<String, Value>>()
    };
    server
        .call(
            "POST",
            "/v1/events",
            &acme,
            &json!({ "events": [event("sent", "{}")] }),
        )
        .expect(200, "sent");
    std::thread::sleep(Duration::from_millis(20));
    let before_bounce = now_rfc3339();
    std::thread::sleep(Duration::from_millis(20));
    let bounce = event(
        "bounced",
        r#"{"class": "hard", "diagnostic": "550 5.1.1 unknown"}"#,
    );
    server
        .call("POST", "/v1/events", &acme, &json!({ "events": [bounce] }))
        .expect(200, "bounced");
    std::thread::sleep(Duration::from_millis(20));
    let after_bounce = now_rfc3339();

    // 2. Erase a contact of the history.
    let erased = server
        .call(
            "POST",
            "/v1/erasures",
            &acme,
            &json!({ "address": "c1@default.example.org", "request_id": "dsr-1" }),
        )
        .expect(200, "erase");
    assert_eq!(erased["request_id"], "dsr-1");

    // 3. Export the checkpoints (signed every second while serving).
    let checkpoints = |key: &str| -> Vec<Value> {
        poll("checkpoints", || {
            let page = server
                .call("GET", "/v1/audit/checkpoints?limit=1000", key, &Value::Null)
                .expect(200, "checkpoints");
            let items = page["items"].as_array().unwrap().clone();
            if items.is_empty() {
                Err("none yet".into())
            } else {
                Ok(items)
            }
        })
    };
    let mut exported: Vec<Value> = checkpoints(&acme);
    exported.extend(checkpoints(&globex));

    // 4. Replay a time range, decrypted, with the chain verified.
    let replay = server.call(
        "POST",
        "/v1/audit/replay",
        &acme,
        &json!({ "since": "2026-01-05T08:00:00Z", "until": "2026-01-05T09:00:00Z" }),
    );
    assert_eq!(replay.status, 200, "{}", replay.body);
    let lines = ndjson(&replay.body);
    let summary = &lines.last().unwrap()["summary"];
    assert_eq!(summary["verified"], true, "{summary}");
    assert!(summary["events"].as_u64().unwrap() > 10, "{summary}");
    assert!(lines.len() > 10);
    assert!(
        lines[..lines.len() - 1]
            .iter()
            .all(|e| e["recipient"].is_string()
                || e["recipient"] == json!({"erased": true})
                || e.get("recipient").is_none())
    );

    // 5. Was dora suppressed before her bounce? After it?
    let as_of = |at: &str| {
        server
            .call(
                "POST",
                "/v1/audit/as-of",
                &acme,
                &json!({ "at": at, "contact": "dora@example.org" }),
            )
            .expect(200, "as-of")
    };
    let before = as_of(&before_bounce);
    assert_eq!(before["suppressed"], false, "{before}");
    let after = as_of(&after_bounce);
    assert_eq!(after["suppressed"], true, "{after}");
    assert_eq!(after["entries"][0]["reason"], "hard_bounce", "{after}");

    // 6. The access records of the reads just made: the replay only (the
    // suppression answers open no personal data).
    let access = server
        .call("GET", "/v1/audit/access", &acme, &Value::Null)
        .expect(200, "access");
    let routes: Vec<&str> = access["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["route"].as_str().unwrap())
        .collect();
    assert_eq!(routes, ["POST /v1/audit/replay"]);
    assert!(
        !access.to_string().contains("example.org"),
        "no address: {access}"
    );

    // 7. The erasure register.
    let register = server
        .call("GET", "/v1/erasures", &acme, &Value::Null)
        .expect(200, "register");
    assert_eq!(register["items"][0]["request_id"], "dsr-1");
    assert_eq!(register["items"].as_array().unwrap().len(), 1);

    // 8. Stop (a last checkpoint), then the auditor verifies with the
    // public key alone.
    assert!(server.terminate().success());
    let public = common::run_ok(root, &["checkpoint", "public-key"]);
    let public = String::from_utf8(public.stdout).unwrap();
    let file = root.join("exported.jsonl");
    let text: String = exported
        .iter()
        .map(|c| format!("{}\n", serde_json::to_string(c).unwrap()))
        .collect();
    std::fs::write(&file, text).unwrap();
    std::fs::rename(root.join("keys"), root.join("keys-of-the-node")).unwrap();
    let verify = common::run(
        root,
        &[
            "verify",
            "--against",
            file.to_str().unwrap(),
            "--public-key",
            public.trim(),
        ],
    );
    assert!(
        verify.status.success(),
        "{}",
        String::from_utf8_lossy(&verify.stderr)
    );
    let said = String::from_utf8(verify.stdout).unwrap();
    assert!(said.contains("of 2 tenant(s)"), "{said}");
}
