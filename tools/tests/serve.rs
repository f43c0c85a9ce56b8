//! `mailledger serve` with the admin commands beside it, as an operator runs them.

#![allow(clippy::unwrap_used)]

use std::io::{Read, Write};
use std::net::TcpStream;

mod common;

use common::{Server, command, run as mailledger};

impl Server {
    /// Sends one request; returns the status and body.
    fn request(&self, method: &str, path: &str, key: &str, body: &str) -> (u16, String) {
        let mut s = TcpStream::connect(&self.addr).unwrap();
        write!(
            s,
            "{method} {path} HTTP/1.1\r\nHost: test\r\nAuthorization: Bearer {key}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        let mut reply = String::new();
        s.read_to_string(&mut reply).unwrap();
        let status = reply
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        let body = reply.split("\r\n\r\n").nth(1).unwrap_or("").to_owned();
        (status, body)
    }
}

#[test]
fn key_create_prints_just_a_key_that_authenticates_while_the_server_runs() {
    let root = tempfile::tempdir().unwrap();
    let mut server = Server::start(root.path(), true);
    assert!(server.first_key.starts_with("mlk_"), "{}", server.first_key);
    let out = mailledger(
        root.path(),
        &["key", "create", "--tenant", "default", "--scopes", "read"],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 1, "{stdout}");
    let key = lines[0];
    assert!(
        key.starts_with("mlk_") && key.len() == 4 + 16 + 1 + 48,
        "{key}"
    );
    let export = r#"{"address": "ann@example.org"}"#;
    let (status, body) = server.request("POST", "/v1/contacts/export", key, export);
    assert_eq!(status, 200, "{body}");
    // The new key has only the read scope.
    let (status, _) = server.request("POST", "/v1/erasures", key, export);
    assert_eq!(status, 403);
    // Revoked while the server runs: refused from the next request on.
    let id = key.split('_').nth(1).unwrap();
    let out = mailledger(root.path(), &["key", "revoke", id]);
    assert!(out.status.success());
    let (status, _) = server.request("POST", "/v1/contacts/export", key, export);
    assert_eq!(status, 401);
    // The first key still works; SIGTERM stops the server cleanly.
    let (status, _) = server.request("GET", "/v1/admin/tenants", &server.first_key.clone(), "");
    assert_eq!(status, 200);
    assert!(server.terminate().success());
}

/// The value of `name` in the environment of process `pid`.
fn environment_of(pid: u32, name: &str) -> Option<String> {
    let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap();
    environ.split(|&b| b == 0).find_map(|entry| {
        let entry = String::from_utf8_lossy(entry);
        entry
            .strip_prefix(name)
            .and_then(|rest| rest.strip_prefix('='))
            .map(str::to_owned)
    })
}

// Allocator settings are the operator's: the server runs with the
// environment it was given and never runs itself again to change it (a
// re-exec would show as a setting the operator did not make).
#[test]
fn the_server_runs_with_the_environment_it_was_given() {
    let root = tempfile::tempdir().unwrap();
    let mut cmd = command(root.path());
    cmd.env_remove("MIMALLOC_PURGE_DELAY");
    let mut server = Server::start_with(cmd, true);
    assert_eq!(
        environment_of(server.child.id(), "MIMALLOC_PURGE_DELAY"),
        None,
        "nothing was added to the server's environment"
    );
    assert!(server.terminate().success());
    let mut cmd = command(root.path());
    cmd.env("MIMALLOC_PURGE_DELAY", "250");
    let mut server = Server::start_with(cmd, false);
    assert_eq!(
        environment_of(server.child.id(), "MIMALLOC_PURGE_DELAY").as_deref(),
        Some("250")
    );
    assert!(server.terminate().success());
}

#[test]
fn a_sigterm_as_soon_as_the_server_listens_stops_it_gracefully() {
    // The handlers are installed before "listening" is printed; installed
    // later, a signal in between killed the server (seen in CI).
    let root = tempfile::tempdir().unwrap();
    let mut first = true;
    for _ in 0..10 {
        let mut server = Server::start(root.path(), first);
        first = false;
        assert!(
            server.terminate().success(),
            "SIGTERM right after listening must end in a graceful exit (0)"
        );
    }
}

/// The `/proc` directories of the threads of process `pid` named `name`.
#[cfg(target_os = "linux")]
fn threads_named(pid: u32, name: &str) -> Vec<std::path::PathBuf> {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .filter_map(|t| t.ok().map(|t| t.path()))
        .filter(|t| std::fs::read_to_string(t.join("comm")).is_ok_and(|c| c.trim() == name))
        .collect()
}

/// The nice value of a thread, from its `/proc` directory.
#[cfg(target_os = "linux")]
fn nice_of(task: &std::path::Path) -> i32 {
    // The fields after the command name (in parentheses): the nice value
    // is the 17th of them.
    stat_field(task, 16)
}

/// The scheduling policy of a thread (0 normal, 1 `SCHED_FIFO`), from its
/// `/proc` directory.
#[cfg(target_os = "linux")]
fn policy_of(task: &std::path::Path) -> i32 {
    // The 39th field after the command name.
    stat_field(task, 38)
}

/// Field `n` (from 0) after the command name of a thread's `stat`.
#[cfg(target_os = "linux")]
fn stat_field(task: &std::path::Path, n: usize) -> i32 {
    let stat = std::fs::read_to_string(task.join("stat")).unwrap();
    let after_name = &stat[stat.rfind(')').unwrap() + 2..];
    after_name.split(' ').nth(n).unwrap().parse().unwrap()
}

/// Whether this process may raise a thread's priority: tried on a thread
/// of its own, which then ends.
#[cfg(target_os = "linux")]
fn may_raise_priority() -> bool {
    std::thread::spawn(|| {
        rustix::process::setpriority_process(Some(rustix::thread::gettid()), -1).is_ok()
    })
    .join()
    .unwrap()
}

/// Whether this process may run a thread as `SCHED_FIFO` (a right apart
/// from raising a nice value: a cgroup without real-time time refuses it
/// even to root): tried on a thread of its own, which then ends.
#[cfg(target_os = "linux")]
fn may_run_fifo() -> bool {
    use thread_priority::{
        RealtimeThreadSchedulePolicy, ThreadPriority, ThreadSchedulePolicy,
        set_thread_priority_and_policy, thread_native_id,
    };
    std::thread::spawn(|| {
        let fifo = ThreadSchedulePolicy::Realtime(RealtimeThreadSchedulePolicy::Fifo);
        set_thread_priority_and_policy(thread_native_id(), ThreadPriority::Min, fifo).is_ok()
    })
    .join()
    .unwrap()
}

/// The nice value of each of the server's threads named `names` (as the
/// kernel keeps them: 15 bytes), each asserted to exist.
#[cfg(target_os = "linux")]
fn nice_by_name(pid: u32, names: &[&str]) -> Vec<(String, i32)> {
    let mut out = Vec::new();
    for name in names {
        let tasks = threads_named(pid, name);
        assert!(!tasks.is_empty(), "no {name} thread");
        out.extend(tasks.iter().map(|t| ((*name).to_owned(), nice_of(t))));
    }
    out
}

// The server's threads as the kernel names them: request serving, ingest,
// the log's writer and committer, the projections' runner.
#[cfg(target_os = "linux")]
const THREADS: [&str; 5] = [
    "http",
    "ingest",
    "mailledger-writ",
    "mailledger-comm",
    "projections",
];

#[test]
#[cfg(target_os = "linux")]
fn thread_priorities_are_left_alone_unless_configured() {
    let root = tempfile::tempdir().unwrap();
    let mut server = Server::start(root.path(), true);
    // One request first, so the runtime has started its threads.
    let (status, _) = server.request("GET", "/healthz", "", "");
    assert_eq!(status, 200);
    for (name, nice) in nice_by_name(server.child.id(), &THREADS) {
        assert_eq!(nice, 0, "{name} keeps the default priority");
    }
    assert!(server.terminate().success());
}

#[test]
#[cfg(target_os = "linux")]
fn with_thread_priorities_requests_run_above_the_bulk_threads_and_projections_below() {
    let root = tempfile::tempdir().unwrap();
    let mut command = common::command(root.path());
    command.env("MAILLEDGER_THREAD_PRIORITIES", "true");
    let mut server = Server::start_with(command, true);
    let (status, _) = server.request("GET", "/healthz", "", "");
    assert_eq!(status, 200);
    // Request threads run as `SCHED_FIFO` where the system allows it,
    // else at `threads::REQUEST_NICE`; the projections at
    // `PROJECTIONS_NICE` (the binary's, which a test cannot import).
    let fifo = may_run_fifo();
    let request_nice = if may_raise_priority() { -2 } else { 0 };
    let pid = server.child.id();
    for (name, nice) in nice_by_name(pid, &THREADS) {
        let expected = match name.as_str() {
            "http" if !fifo => request_nice,
            "projections" => 10,
            _ => 0,
        };
        assert_eq!(nice, expected, "{name}");
    }
    for name in THREADS {
        for task in threads_named(pid, name) {
            let expected = i32::from(fifo && name == "http");
            assert_eq!(policy_of(&task), expected, "{name}'s scheduling policy");
        }
    }
    assert!(server.terminate().success());
}

#[test]
#[cfg(target_os = "linux")]
fn appends_for_new_contacts_keep_the_ingest_threads_at_their_number() {
    let root = tempfile::tempdir().unwrap();
    let mut server = Server::start(root.path(), true);
    let pid = server.child.id();
    let pool = threads_named(pid, "ingest").len();
    assert!(pool >= 1, "no ingest threads");
    // Each batch makes (and syncs) keys for ten new contacts.
    for b in 0..20 {
        let events: Vec<String> = (0..10)
            .map(|i| {
                format!(
                    r#"{{"id": "0193a0c4-7b1e-7d2a-9c3f-{b:04x}{i:08x}", "type": "sent", "message_id": "m-{b}-{i}", "recipient": "c{b}-{i}@example.org", "occurred_at": "2026-11-22T10:00:00Z"}}"#
                )
            })
            .collect();
        let body = format!(r#"{{"events": [{}]}}"#, events.join(","));
        let (status, reply) = server.request("POST", "/v1/events", &server.first_key, &body);
        assert_eq!(status, 200, "{reply}");
    }
    // Key creation runs in place on the pool's threads: it does not hand
    // each thread's other tasks to a new one (which grew the pool to about
    // 150 threads under the load bench's warm-up).
    assert_eq!(threads_named(pid, "ingest").len(), pool);
    assert!(server.terminate().success());
}

#[test]
fn init_creates_tenant_default_and_tenants_can_be_listed_and_created() {
    let root = tempfile::tempdir().unwrap();
    assert!(mailledger(root.path(), &["init"]).status.success());
    let out = mailledger(root.path(), &["tenant", "create", "acme"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = mailledger(root.path(), &["tenant", "list"]);
    let text = String::from_utf8(out.stdout).unwrap();
    let names: Vec<String> = text
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["name"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(names, ["acme", "default"]);
    let out = mailledger(
        root.path(),
        &["key", "create", "--tenant", "nobody", "--scopes", "read"],
    );
    assert!(!out.status.success());
    assert!(out.stdout.is_empty());
    let out = mailledger(root.path(), &["key", "create", "--scopes", "read,flying"]);
    assert!(!out.status.success());
    let secrets = root.path().join("webhooks.toml");
    std::fs::write(
        &secrets,
        "require_signatures = false\nmailgun_signing_key = \"key-zed\"\n",
    )
    .unwrap();
    let out = mailledger(
        root.path(),
        &[
            "tenant",
            "webhook-secrets",
            "--tenant",
            "acme",
            "--file",
            secrets.to_str().unwrap(),
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = mailledger(root.path(), &["tenant", "list"]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains(r#""webhook_providers":["mailgun"]"#),
        "{text}"
    );
    assert!(!text.contains("key-zed"));
    let access = std::fs::read_to_string(root.path().join("data/access.json")).unwrap();
    assert!(!access.contains("key-zed"));
}

/// `GET path` on `addr`, unauthenticated; the status and the raw body.
fn get(addr: &str, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut reply = String::new();
    s.read_to_string(&mut reply).unwrap();
    let status = reply
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = reply.split("\r\n\r\n").nth(1).unwrap_or("").to_owned();
    (status, body)
}

#[test]
fn the_projection_runner_inside_serve_feeds_queries_and_readiness() {
    let root = tempfile::tempdir().unwrap();
    let mut metrics_on = command(root.path());
    metrics_on.env("MAILLEDGER_METRICS_LISTEN", "127.0.0.1:0");
    let mut server = Server::start_with(metrics_on, true);
    let metrics_addr = server
        .banner
        .split("metrics on http://")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .unwrap_or_else(|| panic!("no metrics address in {}", server.banner))
        .to_owned();
    let key = server.first_key.clone();
    let wait_for = |server: &Server, path: &str, method: &str, body: &str| -> String {
        for _ in 0..200 {
            let (status, text) = server.request(method, path, &key, body);
            if status == 200 {
                return text;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        panic!("{path} never answered 200");
    };
    let ready = wait_for(&server, "/readyz", "GET", "");
    assert!(ready.contains("\"delivery-log\""), "{ready}");
    let events = r#"{"events": [
        {"id": "0193a0c4-7b1e-7d2a-9c3f-2f6a1c9e0b11", "type": "sent", "message_id": "m-42",
         "recipient": "ann@example.org", "occurred_at": "2026-11-22T10:00:00Z"},
        {"id": "0193a0c4-7b1e-7d2a-9c3f-2f6a1c9e0b12", "type": "bounced", "message_id": "m-42",
         "recipient": "ann@example.org", "occurred_at": "2026-11-22T10:00:01Z",
         "class": "hard", "status": "5.1.1", "diagnostic": "550 5.1.1 user unknown"}]}"#;
    let (status, body) = server.request("POST", "/v1/events", &key, events);
    assert_eq!(status, 200, "{body}");
    // Ingest does not wait; the runner applies the events shortly after.
    let timeline = wait_for(&server, "/v1/messages/m-42", "GET", "");
    let t: serde_json::Value = serde_json::from_str(&timeline).unwrap();
    assert_eq!(t["status"], "bounced");
    assert_eq!(t["timeline"].as_array().unwrap().len(), 2);
    let (status, check) = server.request(
        "POST",
        "/v1/sends/check",
        &key,
        r#"{"address": "ann@example.org"}"#,
    );
    assert_eq!(status, 200);
    assert!(check.contains("\"allowed\":false"), "{check}");
    // Metrics are on their own listener only, even for an admin key.
    let (status, _) = server.request("GET", "/metrics", &key, "");
    assert_eq!(status, 404);
    let (status, metrics) = get(&metrics_addr, "/metrics");
    assert_eq!(status, 200);
    assert!(
        metrics.contains("mailledger_projection_lag_events{projection=\"delivery-log\"} 0"),
        "{metrics}"
    );
    assert!(server.terminate().success());
    // The projections persist in the data directory: after a restart the
    // message is there at once. The node now declares Austria (within the
    // EU the tenant allows): what it records carries AT, what came before
    // keeps EU.
    let mut austrian = command(root.path());
    austrian.env("MAILLEDGER_JURISDICTION", "AT");
    let server = Server::start_with(austrian, false);
    let again = wait_for(&server, "/readyz", "GET", "");
    assert!(again.contains("\"lag\":0"), "{again}");
    let delivered = r#"{"events": [
        {"id": "0193a0c4-7b1e-7d2a-9c3f-2f6a1c9e0b13", "type": "sent", "message_id": "m-43",
         "recipient": "bob@example.org", "occurred_at": "2026-11-22T10:00:02Z"}]}"#;
    let (status, body) = server.request("POST", "/v1/events", &key, delivered);
    assert_eq!(status, 200, "{body}");
    let places = |message: &str| -> Vec<String> {
        let t: serde_json::Value =
            serde_json::from_str(&wait_for(&server, message, "GET", "")).unwrap();
        t["timeline"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["jurisdiction"].as_str().unwrap_or_default().to_owned())
            .collect()
    };
    assert_eq!(places("/v1/messages/m-42"), ["EU", "EU"]);
    assert_eq!(places("/v1/messages/m-43"), ["AT"]);
}

/// `serve` on a log in an S3-compatible bucket: what it acknowledged is
/// there after a restart; a second writer (the command line, beside the
/// running server) fences the server out instead of both extending the
/// log; the restarted server reads what both wrote.
#[test]
fn serve_on_an_s3_log_keeps_what_it_acknowledged_and_a_second_writer_fences_it_out() {
    let Some(endpoint) = mailledger_object_store::testing::s3_endpoint() else {
        return;
    };
    let root = tempfile::tempdir().unwrap();
    let url = format!(
        "s3://{}/serve-{}",
        mailledger_object_store::testing::bucket(),
        uuid::Uuid::now_v7().simple()
    );
    let aws = mailledger_object_store::testing::aws_settings(&endpoint);
    let on_s3 = || {
        let mut c = command(root.path());
        c.envs(aws.iter().map(|(k, v)| (k, v)));
        c
    };
    let mut first = on_s3();
    first.args(["--log", &url]);
    let server = Server::start_with(first, true);
    let key = server.first_key.clone();
    let sent = r#"{"events": [
        {"id": "0193a0c4-7b1e-7d2a-9c3f-2f6a1c9e0c01", "type": "sent", "message_id": "m-1",
         "recipient": "ann@example.org", "occurred_at": "2026-11-22T10:00:00Z"}]}"#;
    let (status, body) = server.request("POST", "/v1/events", &key, sent);
    assert_eq!(status, 200, "{body}");

    // The command line appends a record to the same log while the server
    // runs (raw records need no key store, which the server holds).
    let line = r#"{"id": "0193a0c4-7b1e-7d2a-9c3f-2f6a1c9e0c02", "stream": "ops-1", "type": "noted", "payload": {"n": 1}}"#;
    let mut append = on_s3()
        .args(["append", "--records"])
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    append
        .stdin
        .take()
        .unwrap()
        .write_all(line.as_bytes())
        .unwrap();
    let out = append.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The server's next commit finds its segment taken: refused, never
    // written beside the other's.
    let bounced = r#"{"events": [
        {"id": "0193a0c4-7b1e-7d2a-9c3f-2f6a1c9e0c03", "type": "bounced", "message_id": "m-2",
         "recipient": "bob@example.org", "occurred_at": "2026-11-22T10:00:02Z", "class": "hard"}]}"#;
    let (status, body) = server.request("POST", "/v1/events", &key, bounced);
    assert!(status >= 500, "{status} {body}");
    assert!(!body.contains("bob@"), "{body}");
    let (status, _) = server.request("POST", "/v1/events", &key, bounced);
    assert!(status >= 500, "a fenced server stays fenced: {status}");
    // And says so where a load balancer looks.
    let (status, body) = server.request("GET", "/readyz", &key, "");
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("another writer"), "{body}");
    drop(server);

    // Restarted, it reads both writers' records and takes appends again.
    let head = |expected: &str| {
        let out = on_s3().arg("head").output().unwrap();
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            expected,
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    head("2");
    let mut server = Server::start_with(on_s3(), false);
    let (status, body) = server.request("POST", "/v1/events", &key, bounced);
    assert_eq!(status, 200, "{body}");
    let raw = on_s3()
        .args(["read", "--raw", "--stream", "ops-1"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&raw.stdout).contains("\"noted\""));
    let mut timeline = String::new();
    for _ in 0..200 {
        let (status, text) = server.request("GET", "/v1/messages/m-2", &key, "");
        if status == 200 {
            timeline = text;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let t: serde_json::Value = serde_json::from_str(&timeline).unwrap();
    assert_eq!(t["status"], "bounced", "{timeline}");
    assert!(server.terminate().success());
    // The bounce, the access record of the timeline read, and the
    // checkpoint a graceful stop signs.
    head("5");
    let raw = on_s3().args(["read", "--raw"]).output().unwrap();
    let types: Vec<String> = String::from_utf8_lossy(&raw.stdout)
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["type"].to_string())
        .collect();
    assert_eq!(
        types[2..],
        ["\"bounced\"", "\"accessed\"", "\"checkpoint\""],
        "{types:?}"
    );
}
