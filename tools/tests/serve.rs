//! `mailledger serve` with the admin commands beside it, as an operator runs them.

#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};

fn base(cmd: &mut Command, root: &Path) {
    cmd.arg("--data-dir")
        .arg(root.join("data"))
        .arg("--keys-dir")
        .arg(root.join("keys"))
        .env_remove("MAILLEDGER_KEYS_DIR")
        .env_remove("MAILLEDGER_KEK_FILE")
        .env_remove("MAILLEDGER_KEK")
        .env_remove("MAILLEDGER_LOG")
        .env_remove("MAILLEDGER_DATA_DIR")
        .env_remove("MAILLEDGER_CONFIG")
        .env_remove("MAILLEDGER_LISTEN");
}

fn mailledger(root: &Path, args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_mailledger"));
    base(&mut cmd, root);
    cmd.args(args).output().unwrap()
}

/// A running server, stopped with SIGTERM on drop if still running.
struct Server {
    child: Child,
    addr: String,
    first_key: String,
}

impl Server {
    fn start(root: &Path) -> Self {
        Self::spawn(root, true)
    }

    /// Starts a server on a directory that holds a key already (no key is
    /// printed).
    fn start_again(root: &Path) -> Self {
        Self::spawn(root, false)
    }

    fn spawn(root: &Path, first: bool) -> Self {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_mailledger"));
        base(&mut cmd, root);
        let mut child = cmd
            .args(["serve", "--listen", "127.0.0.1:0"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut err = BufReader::new(child.stderr.take().unwrap());
        let mut addr = None;
        let mut line = String::new();
        while addr.is_none() {
            line.clear();
            assert!(err.read_line(&mut line).unwrap() > 0, "the server exited");
            if let Some(rest) = line.split("listening on http://").nth(1) {
                addr = rest.split_whitespace().next().map(str::to_owned);
            }
        }
        // Keep draining stderr so the server never blocks on a full pipe.
        std::thread::spawn(move || {
            let mut sink = String::new();
            let _ = err.read_to_string(&mut sink);
        });
        let mut first_key = String::new();
        if first {
            let mut out = BufReader::new(child.stdout.take().unwrap());
            out.read_line(&mut first_key).unwrap();
        }
        Self {
            child,
            addr: addr.unwrap(),
            first_key: first_key.trim().to_owned(),
        }
    }

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

    fn terminate(&mut self) -> std::process::ExitStatus {
        Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        self.child.wait().unwrap()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

#[test]
fn key_create_prints_just_a_key_that_authenticates_while_the_server_runs() {
    let root = tempfile::tempdir().unwrap();
    let mut server = Server::start(root.path());
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

#[test]
fn the_projection_runner_inside_serve_feeds_queries_and_readiness() {
    let root = tempfile::tempdir().unwrap();
    let mut server = Server::start(root.path());
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
    let (_, metrics) = server.request("GET", "/metrics", &key, "");
    assert!(
        metrics.contains("mailledger_projection_lag_events{projection=\"delivery-log\"} 0"),
        "{metrics}"
    );
    assert!(server.terminate().success());
    // The projections persist in the data directory: after a restart the
    // message is there at once.
    let server = Server::start_again(root.path());
    let again = wait_for(&server, "/readyz", "GET", "");
    assert!(again.contains("\"lag\":0"), "{again}");
    let (status, _) = server.request("GET", "/v1/messages/m-42", &key, "");
    assert_eq!(status, 200);
}
