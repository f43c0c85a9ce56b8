//! The log through the command line: append, read and head on each backend, S3 stores, restarts, bad lines, verification, a closed standard output.

use super::*;

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
