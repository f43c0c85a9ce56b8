//! Migration between backends: a byte-for-byte copy, verified, switched to only then.

use super::*;

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
