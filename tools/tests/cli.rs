//! The `mailledger` command as a user runs it.

#![allow(clippy::unwrap_used)]

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use mailledger_core::{Space, Store, WriteBatch};

fn mailledger(data_dir: &Path, args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_mailledger"))
        .arg("--data-dir")
        .arg(data_dir)
        .args(args)
        .env_remove("MAILLEDGER_LOG")
        .env_remove("MAILLEDGER_DATA_DIR")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
    }
    drop(child.stdin.take());
    child.wait_with_output().unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn lines(n: usize, seed: u128) -> String {
    (0..n)
        .map(|i| {
            let id = uuid::Uuid::from_u128(seed * 1_000_000 + i as u128);
            format!(
                "{{\"id\":\"{id}\",\"stream\":\"message-{}\",\"type\":\"sent\",\"payload\":{{\"n\":{i},\"pad\":\"{}\"}}}}\n",
                i % 100,
                "x".repeat(200)
            )
        })
        .collect()
}

fn head(dir: &Path, log: &[&str]) -> u64 {
    let mut args = log.to_vec();
    args.push("head");
    let out = mailledger(dir, &args, None);
    assert!(out.status.success(), "{}", text(&out.stderr));
    text(&out.stdout).trim().parse().unwrap()
}

const BACKENDS: [&str; 2] = ["fjall", "sled"];

fn log_arg(dir: &Path, backend: &str) -> String {
    format!("{backend}:{}", dir.join("log").display())
}

#[test]
fn append_read_and_head_round_trip_on_each_backend() {
    for backend in BACKENDS {
        let dir = tempfile::tempdir().unwrap();
        let log = log_arg(dir.path(), backend);
        let init = mailledger(dir.path(), &["--log", &log, "init"], None);
        assert!(init.status.success(), "{backend}: {}", text(&init.stderr));
        let out = mailledger(dir.path(), &["append"], Some(&lines(250, 1)));
        assert!(out.status.success(), "{backend}: {}", text(&out.stderr));
        assert!(text(&out.stderr).contains("appended 250 records"));
        assert_eq!(head(dir.path(), &[]), 250);
        let read = mailledger(dir.path(), &["read", "--stream", "message-7"], None);
        let records: Vec<serde_json::Value> = text(&read.stdout)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(records.len(), 3, "{backend}");
        assert_eq!(records[1]["version"], 1);
        assert_eq!(records[0]["payload"]["n"], 7);
        assert_eq!(records[0]["tenant"], "default");
        let all = mailledger(dir.path(), &["read", "--from", "240"], None);
        assert_eq!(text(&all.stdout).lines().count(), 10);
        let back = mailledger(
            dir.path(),
            &["read", "--backward", "--from", "9", "--limit", "3"],
            None,
        );
        let positions: Vec<u64> = text(&back.stdout)
            .lines()
            .map(|l| {
                serde_json::from_str::<serde_json::Value>(l).unwrap()["position"]
                    .as_u64()
                    .unwrap()
            })
            .collect();
        assert_eq!(positions, vec![9, 8, 7]);
        let other = mailledger(dir.path(), &["read", "--tenant", "someone-else"], None);
        assert!(text(&other.stdout).is_empty());
        let verify = mailledger(dir.path(), &["verify"], None);
        assert!(verify.status.success(), "{}", text(&verify.stderr));
        assert!(text(&verify.stdout).contains("250 records"));
    }
}

#[test]
fn the_same_ten_thousand_records_twice_across_a_restart_leave_ten_thousand() {
    let dir = tempfile::tempdir().unwrap();
    assert!(mailledger(dir.path(), &["init"], None).status.success());
    let input = lines(10_000, 2);
    for _ in 0..2 {
        let out = mailledger(dir.path(), &["append"], Some(&input));
        assert!(out.status.success(), "{}", text(&out.stderr));
        assert_eq!(head(dir.path(), &[]), 10_000);
    }
    let out = mailledger(dir.path(), &["append"], Some(&input));
    assert!(text(&out.stderr).contains("appended 0 records (10000 already present)"));
}

#[test]
fn a_bad_line_names_its_number_and_nothing_is_written() {
    let dir = tempfile::tempdir().unwrap();
    assert!(mailledger(dir.path(), &["init"], None).status.success());
    let mut input = lines(5, 3);
    input.push_str("{\"id\":\"not-a-uuid\",\"stream\":\"s\",\"type\":\"sent\",\"payload\":{}}\n");
    input.push_str(&lines(5, 4));
    let out = mailledger(dir.path(), &["append"], Some(&input));
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(err.contains("line 6"), "{err}");
    assert_eq!(head(dir.path(), &[]), 0);
    let unknown_field = "{\"id\":\"0193a0c4-7b1e-7d2a-9c3f-2f6a1c9e0b11\",\"stream\":\"s\",\"type\":\"sent\",\"payload\":{},\"surprise\":1}\n";
    let out = mailledger(dir.path(), &["append"], Some(unknown_field));
    assert!(text(&out.stderr).contains("line 1"));
    let conflict = "{\"id\":\"0193a0c4-7b1e-7d2a-9c3f-2f6a1c9e0b11\",\"stream\":\"s\",\"type\":\"sent\",\"payload\":{},\"expected_version\":4}\n";
    let out = mailledger(dir.path(), &["append"], Some(conflict));
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("expected 4"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(head(dir.path(), &[]), 0);
}

#[test]
fn a_data_directory_refuses_another_backend() {
    let dir = tempfile::tempdir().unwrap();
    let sled = log_arg(dir.path(), "sled");
    assert!(
        mailledger(dir.path(), &["--log", &sled, "init"], None)
            .status
            .success()
    );
    let fjall = log_arg(dir.path(), "fjall");
    let out = mailledger(dir.path(), &["--log", &fjall, "head"], None);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("holds a sled"),
        "{}",
        text(&out.stderr)
    );
    let missing = tempfile::tempdir().unwrap();
    let out = mailledger(missing.path(), &["head"], None);
    assert!(
        text(&out.stderr).contains("mailledger init"),
        "{}",
        text(&out.stderr)
    );
}

fn flip_byte(backend: &str, path: &Path, position: u64) {
    let store: Box<dyn Store> = match backend {
        "fjall" => Box::new(mailledger_fjall::FjallStore::open(path).unwrap()),
        _ => Box::new(mailledger_sled::SledStore::open(path).unwrap()),
    };
    let key = position.to_be_bytes();
    let mut frame = store.get(Space::Log, &key).unwrap().unwrap();
    let mid = frame.len() / 2;
    frame[mid] ^= 0x20;
    let mut batch = WriteBatch::new();
    batch.put(Space::Log, key.to_vec(), frame);
    store.commit(batch, true).unwrap();
}

#[test]
fn verify_fails_naming_the_position_of_a_changed_byte() {
    for backend in BACKENDS {
        let dir = tempfile::tempdir().unwrap();
        let log = log_arg(dir.path(), backend);
        assert!(
            mailledger(dir.path(), &["--log", &log, "init"], None)
                .status
                .success()
        );
        assert!(
            mailledger(dir.path(), &["append"], Some(&lines(100, 5)))
                .status
                .success()
        );
        flip_byte(backend, &dir.path().join("log"), 42);
        let out = mailledger(dir.path(), &["verify"], None);
        assert!(
            !out.status.success(),
            "{backend}: verify passed a changed byte"
        );
        let err = text(&out.stderr);
        assert!(err.contains("position 42"), "{backend}: {err}");
    }
}
