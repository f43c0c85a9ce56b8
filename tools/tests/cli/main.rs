//! The `mailledger` command as a user runs it.

#![allow(clippy::unwrap_used)]

#[path = "../common/mod.rs"]
mod common;
mod email;
mod logs;
mod migrate;
mod residency;

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

/// The `erased` events of the log, as `read` prints them.
fn erased_count(dir: &Path) -> usize {
    json_lines(&mailledger(dir, &["read"], None))
        .iter()
        .filter(|e| e["type"] == "erased")
        .count()
}
