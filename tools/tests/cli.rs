//! The `mailledger` command as a user runs it.

#![allow(clippy::unwrap_used)]

mod common;

use std::io::Write;
use std::path::Path;
use std::process::{Output, Stdio};

use mailledger_core::{Space, Store, WriteBatch};

/// A temporary root holding a data directory and, beside it, a keys directory.
struct Dir(#[allow(dead_code)] tempfile::TempDir, std::path::PathBuf);

impl Dir {
    fn new() -> Self {
        let root = tempfile::tempdir().unwrap();
        let data = root.path().join("data");
        Self(root, data)
    }

    fn path(&self) -> &Path {
        &self.1
    }
}

fn keys_dir(data_dir: &Path) -> std::path::PathBuf {
    data_dir.parent().unwrap().join("keys")
}

fn mailledger(data_dir: &Path, args: &[&str], stdin: Option<&str>) -> Output {
    // The data directory and, beside it, the keys directory, with no
    // MAILLEDGER_* setting of the caller's environment.
    let mut cmd = common::command(data_dir.parent().unwrap());
    finish(cmd.args(args), stdin)
}

/// Runs `cmd`, writing `stdin` to it, and waits for its output.
fn finish(cmd: &mut std::process::Command, stdin: Option<&str>) -> Output {
    let mut child = cmd
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

const BACKENDS: [&str; 3] = ["fjall", "sled", "objects"];

fn log_arg(dir: &Path, backend: &str) -> String {
    format!("{backend}:{}", dir.join("log").display())
}

#[test]
fn append_read_and_head_round_trip_on_each_backend() {
    for backend in BACKENDS {
        let dir = Dir::new();
        let log = log_arg(dir.path(), backend);
        let init = mailledger(dir.path(), &["--log", &log, "init"], None);
        assert!(init.status.success(), "{backend}: {}", text(&init.stderr));
        let out = mailledger(dir.path(), &["append", "--records"], Some(&lines(250, 1)));
        assert!(out.status.success(), "{backend}: {}", text(&out.stderr));
        assert!(text(&out.stderr).contains("appended 250 records"));
        assert_eq!(head(dir.path(), &[]), 250);
        let read = mailledger(
            dir.path(),
            &["read", "--raw", "--stream", "message-7"],
            None,
        );
        let records: Vec<serde_json::Value> = text(&read.stdout)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(records.len(), 3, "{backend}");
        assert_eq!(records[1]["version"], 1);
        assert_eq!(records[0]["payload"]["n"], 7);
        assert_eq!(records[0]["tenant"], "default");
        let all = mailledger(dir.path(), &["read", "--raw", "--from", "240"], None);
        assert_eq!(text(&all.stdout).lines().count(), 10);
        let back = mailledger(
            dir.path(),
            &["read", "--raw", "--backward", "--from", "9", "--limit", "3"],
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
        let other = mailledger(
            dir.path(),
            &["read", "--raw", "--tenant", "someone-else"],
            None,
        );
        assert!(text(&other.stdout).is_empty());
        let verify = mailledger(dir.path(), &["verify"], None);
        assert!(verify.status.success(), "{}", text(&verify.stderr));
        assert!(text(&verify.stdout).contains("250 records"));
    }
}

/// `mailledger ARGS` with exactly the `AWS_*` variables given.
fn with_aws<V: AsRef<std::ffi::OsStr>>(
    data_dir: &Path,
    aws: &[(&str, V)],
    args: &[&str],
    stdin: Option<&str>,
) -> Output {
    let mut cmd = common::command(data_dir.parent().unwrap());
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("AWS_") {
            cmd.env_remove(name);
        }
    }
    finish(cmd.envs(aws.iter().map(|(k, v)| (k, v))).args(args), stdin)
}

/// The log store of a residency report.
fn log_store(out: &Output) -> serde_json::Value {
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    report["stores"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["role"] == "log")
        .unwrap()
        .clone()
}

#[test]
fn an_s3_log_on_amazon_lies_in_its_regions_country_and_outside_the_eu_is_refused() {
    let dir = Dir::new();
    let log = ["--log", "s3://eu-ledger/log"];
    // London and Zurich are named eu- but lie outside the EU; with no
    // region the client uses us-east-1. Refused before anything is made,
    // whatever the data directory is declared to be.
    for (region, country) in [
        (Some("eu-west-2"), "GB"),
        (Some("eu-central-2"), "CH"),
        (None, "US"),
    ] {
        let aws: Vec<(&str, &str)> = region.map(|r| ("AWS_REGION", r)).into_iter().collect();
        let args = [&log[..], &["--data-jurisdiction", "EU", "init"]].concat();
        let out = with_aws(dir.path(), &aws, &args, None);
        assert!(!out.status.success(), "{region:?}");
        let err = text(&out.stderr);
        assert!(
            err.contains(&format!("store log is in {country}")),
            "{region:?}: {err}"
        );
        assert!(
            !dir.path().exists(),
            "{region:?}: init created the data directory"
        );
    }
    let args = [&log[..], &["init"]].concat();
    let out = with_aws(dir.path(), &[("AWS_REGION", "mars-north-1")], &args, None);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("AWS region \"mars-north-1\""),
        "{}",
        text(&out.stderr)
    );
    // Frankfurt is within the EU; the report places the log in Germany
    // (and connects to nothing).
    let args = [&log[..], &["residency"]].concat();
    let out = with_aws(
        dir.path(),
        &[("AWS_DEFAULT_REGION", "eu-central-1")],
        &args,
        None,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let store = log_store(&out);
    assert_eq!(store["jurisdiction"], "DE", "{store}");
    assert!(
        store["at"]
            .as_str()
            .unwrap()
            .contains("region eu-central-1"),
        "{store}"
    );
    // A declared log jurisdiction that the region contradicts is refused.
    let args = [&log[..], &["--log-jurisdiction", "FR", "residency"]].concat();
    let out = with_aws(dir.path(), &[("AWS_REGION", "eu-central-1")], &args, None);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("region eu-central-1, which lies in DE"),
        "{}",
        text(&out.stderr)
    );
    // Another S3-compatible store is where its operator declares it: the
    // data directory's jurisdiction, or the log's own when given.
    let aws = [
        ("AWS_ENDPOINT", "http://127.0.0.1:9"),
        ("AWS_REGION", "us-east-1"),
    ];
    let args = [&log[..], &["--data-jurisdiction", "FR", "residency"]].concat();
    let store = log_store(&with_aws(dir.path(), &aws, &args, None));
    assert_eq!(store["jurisdiction"], "FR", "{store}");
    let args = [&log[..], &["--log-jurisdiction", "NL", "residency"]].concat();
    let store = log_store(&with_aws(dir.path(), &aws, &args, None));
    assert_eq!(store["jurisdiction"], "NL", "{store}");
    // A bucket declared outside the EU is refused before anything is made.
    let args = [&log[..], &["--log-jurisdiction", "US", "init"]].concat();
    let out = with_aws(dir.path(), &aws, &args, None);
    assert!(
        text(&out.stderr).contains("store log is in US"),
        "{}",
        text(&out.stderr)
    );
    assert!(!dir.path().exists());
}

#[test]
fn a_log_on_an_s3_compatible_store_is_written_read_and_verified_across_runs() {
    let Some(endpoint) = mailledger_object_store::testing::s3_endpoint() else {
        return;
    };
    let dir = Dir::new();
    let url = format!(
        "s3://{}/cli-{}",
        mailledger_object_store::testing::bucket(),
        uuid::Uuid::now_v7().simple()
    );
    let aws = mailledger_object_store::testing::aws_settings(&endpoint);
    let run = |args: &[&str], stdin: Option<&str>| with_aws(dir.path(), &aws, args, stdin);
    let init = run(&["--log", &url, "init"], None);
    assert!(init.status.success(), "{}", text(&init.stderr));
    for seed in [3, 4] {
        let out = run(&["append", "--records"], Some(&lines(150, seed)));
        assert!(out.status.success(), "{}", text(&out.stderr));
    }
    // The data directory remembers the log; each run reads it from the bucket.
    let head = run(&["head"], None);
    assert_eq!(text(&head.stdout).trim(), "300", "{}", text(&head.stderr));
    let again = run(&["append", "--records"], Some(&lines(150, 3)));
    assert!(text(&again.stderr).contains("appended 0 records (150 already present)"));
    let verify = run(&["verify"], None);
    assert!(verify.status.success(), "{}", text(&verify.stderr));
    assert!(text(&verify.stdout).contains("300 records"));
    let report = run(&["residency"], None);
    assert!(
        text(&report.stdout).contains(&url),
        "{}",
        text(&report.stdout)
    );
    // Nothing of the log is kept locally: only the marker, keys and access file.
    assert!(!dir.path().join("log").exists());
    // Migrated out of the bucket, it reads the same from local segments.
    let before = run(&["read", "--raw"], None);
    let local = dir.path().parent().unwrap().join("local-segments");
    let to = format!("objects:{}", local.display());
    let out = run(&["migrate", "--to", &to], None);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let after = mailledger(dir.path(), &["read", "--raw"], None);
    assert_eq!(text(&after.stdout), text(&before.stdout));
}

#[test]
fn the_same_ten_thousand_records_twice_across_a_restart_leave_ten_thousand() {
    let dir = Dir::new();
    assert!(mailledger(dir.path(), &["init"], None).status.success());
    let input = lines(10_000, 2);
    for _ in 0..2 {
        let out = mailledger(dir.path(), &["append", "--records"], Some(&input));
        assert!(out.status.success(), "{}", text(&out.stderr));
        assert_eq!(head(dir.path(), &[]), 10_000);
    }
    let out = mailledger(dir.path(), &["append", "--records"], Some(&input));
    assert!(text(&out.stderr).contains("appended 0 records (10000 already present)"));
}

#[test]
fn a_bad_line_names_its_number_and_nothing_is_written() {
    let dir = Dir::new();
    assert!(mailledger(dir.path(), &["init"], None).status.success());
    let mut input = lines(5, 3);
    input.push_str("{\"id\":\"not-a-uuid\",\"stream\":\"s\",\"type\":\"sent\",\"payload\":{}}\n");
    input.push_str(&lines(5, 4));
    let out = mailledger(dir.path(), &["append", "--records"], Some(&input));
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(err.contains("line 6"), "{err}");
    assert_eq!(head(dir.path(), &[]), 0);
    let unknown_field = "{\"id\":\"0193a0c4-7b1e-7d2a-9c3f-2f6a1c9e0b11\",\"stream\":\"s\",\"type\":\"sent\",\"payload\":{},\"surprise\":1}\n";
    let out = mailledger(dir.path(), &["append", "--records"], Some(unknown_field));
    assert!(text(&out.stderr).contains("line 1"));
    let conflict = "{\"id\":\"0193a0c4-7b1e-7d2a-9c3f-2f6a1c9e0b11\",\"stream\":\"s\",\"type\":\"sent\",\"payload\":{},\"expected_version\":4}\n";
    let out = mailledger(dir.path(), &["append", "--records"], Some(conflict));
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
    let dir = Dir::new();
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
    let missing = Dir::new();
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
        "sled" => Box::new(mailledger_sled::SledStore::open(path).unwrap()),
        _ => Box::new(mailledger_object_store::SegmentStore::open_dir(path).unwrap()),
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
        let dir = Dir::new();
        let log = log_arg(dir.path(), backend);
        assert!(
            mailledger(dir.path(), &["--log", &log, "init"], None)
                .status
                .success()
        );
        assert!(
            mailledger(dir.path(), &["append", "--records"], Some(&lines(100, 5)))
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

fn event_line(ty: &str, recipient: &str, message: &str, extra: &str) -> String {
    format!(
        r#"{{"id": "{}", "type": "{ty}", "recipient": "{recipient}", "message_id": "{message}", "occurred_at": "2026-11-22T10:00:00Z"{extra}}}"#,
        uuid::Uuid::now_v7()
    ) + "\n"
}

fn json_lines(out: &Output) -> Vec<serde_json::Value> {
    text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn email_events_are_sealed_read_back_erased_and_still_verify() {
    for backend in BACKENDS {
        let dir = Dir::new();
        let log = log_arg(dir.path(), backend);
        let init = mailledger(dir.path(), &["--log", &log, "init"], None);
        assert!(init.status.success(), "{}", text(&init.stderr));
        assert!(text(&init.stderr).contains("Production should keep the KEK elsewhere"));
        let kek = keys_dir(dir.path()).join("kek");
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(&kek).unwrap().permissions(),
        );
        assert_eq!(mode & 0o777, 0o600);
        let input = [
            event_line("sent", "ann@example.org", "m1", ""),
            event_line(
                "bounced",
                "ann@example.org",
                "m1",
                r#", "class": "hard", "diagnostic": "550 no ann""#,
            ),
            event_line("sent", "bob@example.org", "m2", ""),
        ]
        .concat();
        let out = mailledger(dir.path(), &["append"], Some(&input));
        assert!(out.status.success(), "{}", text(&out.stderr));
        let events = json_lines(&mailledger(dir.path(), &["read"], None));
        assert_eq!(events.len(), 3);
        assert_eq!(events[0]["recipient"], "ann@example.org");
        assert_eq!(events[0]["jurisdiction"], "EU", "the default node's");
        assert_eq!(events[1]["diagnostic"], "550 no ann");
        let m1 = json_lines(&mailledger(dir.path(), &["read", "--message", "m1"], None));
        assert_eq!(m1.len(), 2);

        // The address on standard input: never in `ps` or shell history.
        let erase = mailledger(
            dir.path(),
            &["erase", "--request-id", "dsr-1"],
            Some("ann@example.org\n"),
        );
        assert!(erase.status.success(), "{}", text(&erase.stderr));
        let receipt: serde_json::Value = serde_json::from_slice(&erase.stdout).unwrap();
        assert_eq!(receipt["events_unreadable"], 2);
        assert_eq!(receipt["request_id"], "dsr-1");
        let again = mailledger(
            dir.path(),
            &["erase", "--request-id", "dsr-1"],
            Some("ann@example.org\n"),
        );
        let again: serde_json::Value = serde_json::from_slice(&again.stdout).unwrap();
        assert_eq!(again, receipt, "re-erasing returns the first receipt");

        // Each `read` that opened events left an access record (operator).
        let access = json_lines(&mailledger(dir.path(), &["access-log"], None));
        assert_eq!(access.len(), 2, "{backend}: {access:?}");
        assert_eq!(access[0]["key_id"], "operator");
        assert_eq!(access[0]["route"], "mailledger read");
        assert_eq!(access[1]["message_ids"], serde_json::json!(["m1"]));
        let events: Vec<_> = json_lines(&mailledger(dir.path(), &["read"], None))
            .into_iter()
            .filter(|e| e["type"] != "accessed")
            .collect();
        assert_eq!(events[0]["recipient"], serde_json::json!({"erased": true}));
        assert_eq!(events[1]["diagnostic"], serde_json::json!({"erased": true}));
        assert_eq!(events[2]["recipient"], "bob@example.org");
        assert_eq!(events[3]["type"], "erased");
        let verify = mailledger(dir.path(), &["verify"], None);
        assert!(verify.status.success(), "{}", text(&verify.stderr));
    }
}

#[test]
fn a_bad_event_line_is_named_and_a_wrong_kek_is_refused() {
    let dir = Dir::new();
    assert!(mailledger(dir.path(), &["init"], None).status.success());
    let input = [
        event_line("sent", "ann@example.org", "m1", ""),
        event_line("sent", "ann@example.org", "m1", r#", "body": "hello ann""#),
    ]
    .concat();
    let out = mailledger(dir.path(), &["append"], Some(&input));
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(
        err.contains("line 2") && err.contains("bodies are never accepted"),
        "{err}"
    );
    assert!(!err.contains("ann"), "{err}");
    assert_eq!(head(dir.path(), &[]), 0);

    let other = keys_dir(dir.path()).parent().unwrap().join("other-kek");
    std::fs::write(&other, "11".repeat(32)).unwrap();
    std::fs::set_permissions(&other, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let out = mailledger(
        dir.path(),
        &["--kek-file", other.to_str().unwrap(), "read"],
        None,
    );
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("does not open this key store"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn a_store_outside_the_allowed_jurisdictions_stops_every_command_before_anything_is_created() {
    let d = Dir::new();
    // A fresh directory: init refuses, and creates nothing.
    let out = mailledger(d.path(), &["--data-jurisdiction", "US", "init"], None);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(err.contains("store log is in US"), "{err}");
    assert!(
        err.contains("outside node's allowed jurisdictions (EU)"),
        "{err}"
    );
    assert!(!d.path().exists(), "init created the data directory");
    assert!(
        !keys_dir(d.path()).exists(),
        "init created the keys directory"
    );
    // The same for serve, on the same fresh directory.
    let out = mailledger(
        d.path(),
        &[
            "--keys-jurisdiction",
            "CH",
            "serve",
            "--listen",
            "127.0.0.1:0",
        ],
        None,
    );
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("store keys is in CH"),
        "{}",
        text(&out.stderr)
    );
    assert!(!d.path().exists(), "serve created the data directory");
    // An existing ledger: a command under a bad declaration opens nothing.
    let out = mailledger(d.path(), &["init"], None);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let events = "{\"id\":\"0193a0c4-7b1e-7d2a-9c3f-2f6a1c9e0b11\",\"type\":\"sent\",\"message_id\":\"m-1\",\"recipient\":\"ann@example.org\",\"occurred_at\":\"2026-11-22T10:00:00Z\"}\n";
    let out = mailledger(
        d.path(),
        &["--data-jurisdiction", "US", "append"],
        Some(events),
    );
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(err.contains("store log is in US"), "{err}");
    assert!(
        err.contains("outside tenant default's allowed jurisdictions (EU)"),
        "{err}"
    );
    assert_eq!(head(d.path(), &[]), 0, "a refused command appended");
    // A German node whose stores are declared where it is (the default)
    // serves tenant `default`, which allows the EU: the input goes in.
    let out = mailledger(d.path(), &["--jurisdiction", "DE", "append"], Some(events));
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(head(d.path(), &[]), 1);
    // The record carries where it was written, opened or raw, whatever the
    // node that reads it declares.
    let opened = json_lines(&mailledger(d.path(), &["read"], None));
    assert_eq!(opened[0]["jurisdiction"], "DE");
    let raw = json_lines(&mailledger(d.path(), &["read", "--raw"], None));
    assert_eq!(raw[0]["jurisdiction"], "DE");
    // `verify` counts where each tenant's records were written ...
    let out = mailledger(d.path(), &["verify"], None);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("tenant default: records written in DE 1"),
        "{}",
        text(&out.stdout)
    );
    // ... and a record written outside what its tenant allows now (the
    // access file narrowed by hand to France) fails it with status 4.
    let access = d.path().join("access.json");
    let mut file: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&access).unwrap()).unwrap();
    file["tenants"]["default"]["jurisdictions"] = serde_json::json!(["FR"]);
    std::fs::write(&access, serde_json::to_vec(&file).unwrap()).unwrap();
    let out = mailledger(d.path(), &["--jurisdiction", "FR", "verify"], None);
    assert_eq!(out.status.code(), Some(4), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains(
            "tenant default has 1 record(s) written in DE, outside its allowed jurisdictions (FR)"
        ),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn the_residency_report_comes_from_the_configuration_and_tenants_it_is_given() {
    let d = Dir::new();
    assert!(mailledger(d.path(), &["init"], None).status.success());
    let report = |args: &[&str]| {
        let mut all = args.to_vec();
        all.push("residency");
        let out = mailledger(d.path(), &all, None);
        let json: serde_json::Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{e}: {}", text(&out.stderr)));
        (out.status.code(), json)
    };
    let (code, r) = report(&[]);
    assert_eq!(code, Some(0));
    assert_eq!(r["compliant"], true);
    assert_eq!(r["node_jurisdiction"], "EU");
    assert_eq!(r["node_allowed"], serde_json::json!(["EU"]));
    let stores: Vec<(&str, &str, &str)> = r["stores"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["role"].as_str().unwrap(),
                s["backend"].as_str().unwrap(),
                s["jurisdiction"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        stores,
        [
            ("log", "fjall", "EU"),
            ("projections", "fjall", "EU"),
            ("access", "files", "EU"),
            ("keys", "files", "EU")
        ]
    );
    let keys = std::path::absolute(keys_dir(d.path())).unwrap();
    assert_eq!(r["stores"][3]["at"], keys.display().to_string());
    assert_eq!(
        r["tenants"],
        serde_json::json!([{"tenant": "default", "allowed": ["EU"]}])
    );
    // A German-only tenant: refused on a node that only says "EU"...
    let out = mailledger(
        d.path(),
        &["tenant", "create", "acme", "--jurisdictions", "DE"],
        None,
    );
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(
        err.contains(
            "cannot serve a tenant whose data may be kept only in DE: node is in EU; store log is in EU"
        ),
        "{err}"
    );
    // ...made by one declared in Germany.
    let german = ["--jurisdiction", "DE"];
    let mut args = german.to_vec();
    args.extend(["tenant", "create", "acme", "--jurisdictions", "de"]);
    let out = mailledger(d.path(), &args, None);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let (code, r) = report(&german);
    assert_eq!(code, Some(0), "{r}");
    assert_eq!(r["node_jurisdiction"], "DE");
    // Back on the EU-only declaration, the report names every violation
    // and exits 4, and the other commands refuse to start.
    let (code, r) = report(&[]);
    assert_eq!(code, Some(4));
    assert_eq!(r["compliant"], false);
    let v = r["violations"].as_array().unwrap();
    assert_eq!(v.len(), 5, "the node and four stores: {r}");
    assert!(v.iter().all(|v| v["outside_of"] == "tenant acme"));
    let out = mailledger(d.path(), &["head"], None);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("tenant acme"),
        "{}",
        text(&out.stderr)
    );
    let out = mailledger(d.path(), &["--jurisdiction", "mars", "residency"], None);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("--jurisdiction: \"mars\" is not a jurisdiction"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn a_closed_standard_output_is_an_error_not_a_panic() {
    let d = Dir::new();
    assert!(mailledger(d.path(), &["init"], None).status.success());
    let out = mailledger(d.path(), &["append", "--records"], Some(&lines(2_000, 9)));
    assert!(out.status.success(), "{}", text(&out.stderr));
    for args in [&["read", "--raw"][..], &["residency"], &["tenant", "list"]] {
        // The read end is closed before the command starts, so its first
        // write meets a pipe with no reader.
        let mut child = common::command(d.path().parent().unwrap())
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        drop(child.stdout.take());
        let out = child.wait_with_output().unwrap();
        let err = text(&out.stderr);
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert!(
            err.contains("cannot write to standard output"),
            "{args:?}: {err}"
        );
    }
}

#[test]
fn migrate_copies_the_log_byte_for_byte_verifies_it_and_switches_only_then() {
    let dir = Dir::new();
    assert!(mailledger(dir.path(), &["init"], None).status.success());
    let events = [
        event_line("sent", "ann@example.org", "m1", ""),
        event_line("delivered", "ann@example.org", "m1", ""),
    ]
    .concat();
    assert!(
        mailledger(dir.path(), &["append"], Some(&events))
            .status
            .success()
    );
    // Raw records of a type the projections skip (raw `sent` records
    // carry no email payload).
    let raw = lines(1_200, 7).replace("\"type\":\"sent\"", "\"type\":\"noted\"");
    assert!(
        mailledger(dir.path(), &["append", "--records"], Some(&raw))
            .status
            .success()
    );
    let before = mailledger(
        dir.path(),
        &["read", "--raw", "--all-tenants", "--limit", "5000"],
        None,
    );
    let records = text(&before.stdout);
    let n = head(dir.path(), &[]);
    assert_eq!(records.lines().count() as u64, n);
    assert!(n >= 1_202);

    // A target outside what the node allows, and one that is not empty,
    // are refused, and the data directory keeps its log.
    let segments = dir.path().parent().unwrap().join("segments");
    let to = format!("objects:{}", segments.display());
    let out = mailledger(
        dir.path(),
        &["--data-jurisdiction", "US", "migrate", "--to", &to],
        None,
    );
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("store log is in US"),
        "{}",
        text(&out.stderr)
    );
    assert!(!segments.exists(), "a refused migration wrote something");
    let occupied = dir.path().parent().unwrap().join("occupied");
    let occupied_url = format!("objects:{}", occupied.display());
    let store = mailledger_object_store::SegmentStore::open_dir(&occupied).unwrap();
    let mut batch = WriteBatch::new();
    batch.put(Space::Tenants, b"x".to_vec(), b"y".to_vec());
    store.commit(batch, true).unwrap();
    drop(store);
    let out = mailledger(dir.path(), &["migrate", "--to", &occupied_url], None);
    assert!(
        text(&out.stderr).contains("is not empty"),
        "{}",
        text(&out.stderr)
    );
    assert!(text(&mailledger(dir.path(), &["residency"], None).stdout).contains("\"fjall\""));

    // Projections built on the old log stay valid on the copy: the same
    // positions, so their checkpoints still name the head.
    assert!(mailledger(dir.path(), &["rebuild"], None).status.success());
    let out = mailledger(dir.path(), &["migrate", "--to", &to], None);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let status = json_lines(&mailledger(dir.path(), &["projections"], None));
    assert_eq!(status.len(), 3);
    for p in &status {
        assert_eq!(
            (p["checkpoint"].as_u64(), p["lag"].as_u64()),
            (Some(n), Some(0)),
            "{p}"
        );
    }
    assert!(
        text(&out.stdout).contains(&format!("migrated {n} records")),
        "{}",
        text(&out.stdout)
    );
    // The data directory now reads the copy: the same records, byte for
    // byte (hashes and chains included), opened and verified; duplicates
    // are still recognised and new appends continue the chain.
    let after = mailledger(
        dir.path(),
        &["read", "--raw", "--all-tenants", "--limit", "5000"],
        None,
    );
    assert_eq!(text(&after.stdout), records);
    let m1 = json_lines(&mailledger(dir.path(), &["read", "--message", "m1"], None));
    assert_eq!(m1[1]["recipient"], "ann@example.org");
    let again = mailledger(dir.path(), &["append", "--records"], Some(&raw));
    assert!(text(&again.stderr).contains("appended 0 records (1200 already present)"));
    assert!(
        mailledger(dir.path(), &["append", "--records"], Some(&lines(3, 8)))
            .status
            .success()
    );
    let verify = mailledger(dir.path(), &["verify"], None);
    assert!(verify.status.success(), "{}", text(&verify.stderr));
    // The copied records, the three appended, and the access record the
    // `read` above left.
    assert!(text(&verify.stdout).contains(&format!("{} records", n + 4)));
    let report = text(&mailledger(dir.path(), &["residency"], None).stdout);
    assert!(report.contains("\"object_store\""), "{report}");
    // The old log is left where it was.
    assert!(dir.path().join("log").exists());
}

/// The `erased` events of the log, as `read` prints them.
fn erased_count(dir: &Path) -> usize {
    json_lines(&mailledger(dir, &["read"], None))
        .iter()
        .filter(|e| e["type"] == "erased")
        .count()
}

#[test]
fn erase_takes_addresses_from_standard_input_or_a_file_and_never_from_argv_silently() {
    let dir = Dir::new();
    assert!(mailledger(dir.path(), &["init"], None).status.success());
    let input = ["ann", "bob", "cyd", "dee"]
        .map(|n| event_line("sent", &format!("{n}@example.org"), "m1", ""))
        .concat();
    assert!(
        mailledger(dir.path(), &["append"], Some(&input))
            .status
            .success()
    );

    // Bad input erases nothing and names the line, never the address.
    let out = mailledger(dir.path(), &["erase"], Some("\n  \n"));
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("no address"),
        "{}",
        text(&out.stderr)
    );
    let out = mailledger(
        dir.path(),
        &["erase"],
        Some("ann@example.org\nzed-not-an-address\n"),
    );
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(err.contains("line 2") && !err.contains("zed"), "{err}");
    assert_eq!(erased_count(dir.path()), 0, "nothing was erased");

    // A file of addresses: each erased once, request ids numbered.
    let list = dir.path().parent().unwrap().join("addresses.txt");
    std::fs::write(
        &list,
        "ann@example.org\n\nbob@example.org\nann@example.org\n",
    )
    .unwrap();
    let out = mailledger(
        dir.path(),
        &[
            "erase",
            "--address-file",
            list.to_str().unwrap(),
            "--request-id",
            "dsr-7",
        ],
        None,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let receipts: Vec<serde_json::Value> = serde_json::Deserializer::from_slice(&out.stdout)
        .into_iter()
        .map(Result::unwrap)
        .collect();
    let ids: Vec<&str> = receipts
        .iter()
        .map(|r| r["request_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["dsr-7:1", "dsr-7:2"]);
    assert_eq!(erased_count(dir.path()), 2);

    // Standard input, explicitly.
    let out = mailledger(
        dir.path(),
        &["erase", "--address-file", "-"],
        Some("cyd@example.org\n"),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(erased_count(dir.path()), 3);

    // --address still works, with a warning that does not repeat it.
    let out = mailledger(dir.path(), &["erase", "--address", "dee@example.org"], None);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(
        err.contains("warning") && err.contains("--address-file"),
        "{err}"
    );
    assert!(!err.contains("dee@"), "{err}");
    assert_eq!(erased_count(dir.path()), 4);
    let events = json_lines(&mailledger(dir.path(), &["read"], None));
    assert!(
        events
            .iter()
            .filter(|e| e["type"] == "sent")
            .all(|e| e["recipient"] == serde_json::json!({"erased": true})),
        "{events:?}"
    );
}
