//! Email events through the command line: sealed, read back, erased (addresses from standard input or a file only), bad lines and a wrong KEK refused.

use super::*;

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
