//! Residency: stores outside the allowed jurisdictions stop every command first; the report.

use super::*;

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
