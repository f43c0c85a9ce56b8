//! The audit commands as an auditor and a data protection officer run
//! them: checkpoints and `verify --against`, the erasure register, replay.

#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::process::Output;

use mailledger_core::{Space, Store, WriteBatch};

fn mailledger(root: &Path, args: &[&str], stdin: Option<&str>) -> Output {
    common::run_with_input(root, args, stdin)
}

fn ok(root: &Path, args: &[&str], stdin: Option<&str>) -> Output {
    let out = mailledger(root, args, stdin);
    assert!(
        out.status.success(),
        "mailledger {args:?}: {}",
        text(&out.stderr)
    );
    out
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn json_lines(out: &Output) -> Vec<serde_json::Value> {
    text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn event(ty: &str, recipient: &str, message: &str, at: &str, extra: &str) -> String {
    format!(
        r#"{{"id": "{}", "type": "{ty}", "recipient": "{recipient}", "message_id": "{message}", "occurred_at": "{at}"{extra}}}"#,
        uuid::Uuid::new_v4()
    ) + "\n"
}

/// Two tenants' mail: ann is sent to, bounces hard, and is sent to again.
fn history(root: &Path) {
    ok(root, &["init"], None);
    ok(root, &["tenant", "create", "other"], None);
    let acme = [
        event("sent", "ann@example.org", "m1", "2026-03-01T09:00:00Z", ""),
        event(
            "delivered",
            "ann@example.org",
            "m1",
            "2026-03-01T09:00:05Z",
            "",
        ),
        event("sent", "bob@example.org", "m2", "2026-03-01T10:00:00Z", ""),
        event(
            "bounced",
            "ann@example.org",
            "m3",
            "2026-03-02T09:00:00Z",
            r#", "class": "hard", "diagnostic": "550 no such user""#,
        ),
        event("sent", "bob@example.org", "m4", "2026-03-03T09:00:00Z", ""),
    ]
    .concat();
    ok(root, &["append"], Some(&acme));
    let other = event("sent", "ann@example.org", "x1", "2026-03-01T09:00:00Z", "");
    ok(root, &["append", "--tenant", "other"], Some(&other));
}

#[test]
fn checkpoints_verify_the_log_and_a_changed_byte_or_another_key_fails_naming_it() {
    let root = tempfile::tempdir().unwrap();
    let root = root.path();
    history(root);
    let signed = json_lines(&ok(root, &["checkpoint"], None));
    assert_eq!(signed.len(), 2, "one checkpoint per tenant");
    // Nothing new: no new checkpoint.
    assert!(json_lines(&ok(root, &["checkpoint"], None)).is_empty());
    ok(
        root,
        &["append"],
        Some(&event(
            "sent",
            "cy@example.org",
            "m5",
            "2026-03-04T09:00:00Z",
            "",
        )),
    );
    assert_eq!(json_lines(&ok(root, &["checkpoint"], None)).len(), 1);
    let export = ok(root, &["checkpoint", "export"], None);
    assert_eq!(json_lines(&export).len(), 3);
    let file = root.join("checkpoints.jsonl");
    std::fs::write(&file, &export.stdout).unwrap();
    let public = text(&ok(root, &["checkpoint", "public-key"], None).stdout);
    let public = public.trim();
    assert_eq!(public.len(), 64);

    // The auditor needs the binary, the log and the public key: no keys.
    std::fs::rename(root.join("keys"), root.join("keys-elsewhere")).unwrap();
    let verify = |key: &str| {
        mailledger(
            root,
            &[
                "verify",
                "--against",
                file.to_str().unwrap(),
                "--public-key",
                key,
            ],
            None,
        )
    };
    let out = verify(public);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("3 checkpoint(s) of 2 tenant(s)"));

    let other_key = mailledger_audit::AuditKey::from_seed([9; 32])
        .public()
        .to_string();
    let out = verify(&other_key);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("not signed by this public key"));

    // A byte changed behind the ledger's back.
    {
        let store = mailledger_fjall::FjallStore::open(&root.join("data").join("log")).unwrap();
        let key = 2u64.to_be_bytes();
        let mut frame = store.get(Space::Log, &key).unwrap().unwrap();
        let mid = frame.len() / 2;
        frame[mid] ^= 0x20;
        let mut batch = WriteBatch::new();
        batch.put(Space::Log, key.to_vec(), frame);
        store.commit(batch, true).unwrap();
    }
    let out = verify(public);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("position 2"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn the_erasure_register_lists_every_receipt_as_json_lines_or_csv() {
    let root = tempfile::tempdir().unwrap();
    let root = root.path();
    history(root);
    assert!(json_lines(&ok(root, &["erasures"], None)).is_empty());
    ok(
        root,
        &["erase", "--request-id", "dsr-1"],
        Some("ann@example.org\n"),
    );
    ok(
        root,
        &["erase", "--request-id", "dsr-2"],
        Some("nobody@example.org\n"),
    );
    // Repeating a request adds nothing to the register.
    ok(
        root,
        &["erase", "--request-id", "dsr-1"],
        Some("ann@example.org\n"),
    );
    let register = json_lines(&ok(root, &["erasures"], None));
    assert_eq!(register.len(), 2);
    assert_eq!(register[0]["request_id"], "dsr-1");
    assert_eq!(register[0]["events_unreadable"], 3);
    assert_eq!(register[0]["key_found"], true);
    assert_eq!(register[1]["request_id"], "dsr-2");
    assert_eq!(register[1]["key_found"], false);
    let csv = text(&ok(root, &["erasures", "--format", "csv"], None).stdout);
    let rows: Vec<&str> = csv.lines().collect();
    assert_eq!(
        rows[0],
        "request_id,contact,erased_at,position,events_unreadable,key_found"
    );
    assert!(rows[1].starts_with("dsr-1,"));
    assert!(rows[2].ends_with(",0,false"));
    // Another tenant's register is its own.
    assert!(json_lines(&ok(root, &["erasures", "--tenant", "other"], None)).is_empty());
    assert!(!csv.contains("example.org"), "no address in the register");
}

#[test]
fn replay_filters_opens_shows_erased_and_verifies_the_chain() {
    let root = tempfile::tempdir().unwrap();
    let root = root.path();
    history(root);
    let all = mailledger(root, &["replay"], None);
    assert!(all.status.success(), "{}", text(&all.stderr));
    let events = json_lines(&all);
    assert_eq!(events.len(), 5, "the default tenant's events only");
    assert_eq!(events[0]["recipient"], "ann@example.org");
    let summary: serde_json::Value =
        serde_json::from_str(text(&all.stderr).lines().last().unwrap()).unwrap();
    assert_eq!(summary["summary"]["verified"], true);
    assert_eq!(summary["summary"]["events"], 5);

    // By time, type, message; the contact's address from standard input.
    let march_1 = json_lines(&ok(
        root,
        &[
            "replay",
            "--since",
            "2026-03-01T00:00:00Z",
            "--until",
            "2026-03-02T00:00:00Z",
        ],
        None,
    ));
    assert_eq!(march_1.len(), 3);
    let bounces = json_lines(&ok(root, &["replay", "--type", "bounced"], None));
    assert_eq!(bounces.len(), 1);
    assert_eq!(bounces[0]["diagnostic"], "550 no such user");
    assert_eq!(
        json_lines(&ok(root, &["replay", "--message", "m1"], None)).len(),
        2
    );
    let anns = json_lines(&ok(
        root,
        &["replay", "--contact-stdin"],
        Some("Ann@example.org\n"),
    ));
    assert_eq!(anns.len(), 3);

    // After the erasure: the marker, the erased contact counted.
    ok(
        root,
        &["erase", "--request-id", "dsr-9"],
        Some("ann@example.org\n"),
    );
    let after = mailledger(root, &["replay", "--format", "csv"], None);
    assert!(after.status.success());
    let csv = text(&after.stdout);
    assert!(!csv.contains("ann@example.org"));
    assert!(csv.contains("bob@example.org"));
    assert_eq!(csv.lines().count(), 1 + 6, "a header and six events");
    let summary: serde_json::Value =
        serde_json::from_str(text(&after.stderr).lines().last().unwrap()).unwrap();
    assert_eq!(summary["summary"]["erased_contacts"], 1);

    // Raw: ciphertext only.
    let raw = text(&ok(root, &["replay", "--raw"], None).stdout);
    assert!(!raw.contains("bob@example.org"));
    assert!(raw.contains("payload_hex"));

    // Every replay that opened events left one access record; raw ones none.
    let access = json_lines(&ok(root, &["access-log"], None));
    assert_eq!(access.len(), 6, "{access:?}");
    assert!(
        access
            .iter()
            .all(|a| a["route"] == "mailledger replay" && a["key_id"] == "operator")
    );
    assert!(
        !text(&ok(root, &["access-log", "--format", "csv"], None).stdout).contains("example.org")
    );

    // No address in argv: a pseudonym, or standard input.
    let bad = mailledger(root, &["replay", "--contact", "ann@example.org"], None);
    assert!(!bad.status.success());
    assert!(!text(&bad.stderr).contains("ann@example.org"));

    // A changed byte stops the replay at its position, exit 3.
    {
        let store = mailledger_fjall::FjallStore::open(&root.join("data").join("log")).unwrap();
        let key = 1u64.to_be_bytes();
        let mut frame = store.get(Space::Log, &key).unwrap().unwrap();
        let last = frame.len() - 40;
        frame[last] ^= 1;
        let mut batch = WriteBatch::new();
        batch.put(Space::Log, key.to_vec(), frame);
        store.commit(batch, true).unwrap();
    }
    let broken = mailledger(root, &["replay", "--raw"], None);
    assert_eq!(broken.status.code(), Some(3), "{}", text(&broken.stderr));
    // A small log's tail is checked on open, which names the position.
    assert!(
        text(&broken.stderr).contains("position 1"),
        "{}",
        text(&broken.stderr)
    );
}
