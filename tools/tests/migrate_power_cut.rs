//! Cuts the power under `mailledger migrate --to URL`, with the data
//! directory, the old log and the new one on a lazy file system that drops
//! every unsynced write at the cut (`mailledger-lazyfs`), at random points:
//! while copying, while verifying, while switching `ledger.json`, or after
//! the command returned. After the "reboot" (the lazy file system mounted
//! again over what the cut left) the data directory must open either the
//! old log or the verified new one, whole: `head`, `read --raw` and
//! `verify` show exactly the log written before, never a half-switched or
//! half-copied one.
//!
//! `MAILLEDGER_POWER_CUT_ROUNDS` sets the rounds (default 10). Without FUSE
//! the test says why it skipped.

#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use mailledger_lazyfs::{CutMode, LazyFs, fuse_or_skip};

const RECORDS: usize = 3_000;

/// xorshift, from a seed the test prints.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n.max(1)
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Runs `mailledger ARGS` on `root` with `stdin`, and asserts it succeeded.
fn ok(root: &Path, args: &[&str], stdin: &str, what: &str) -> String {
    use std::io::Write as _;
    let mut child = common::command(root)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    let stdin = stdin.to_owned();
    let feeder = std::thread::spawn(move || {
        let _ = input.write_all(stdin.as_bytes());
    });
    let out = child.wait_with_output().unwrap();
    feeder.join().unwrap();
    assert!(
        out.status.success(),
        "{what}: mailledger {args:?} failed: {}",
        text(&out.stderr)
    );
    text(&out.stdout)
}

/// What the data directory in `root` shows: its head, every record raw,
/// and the backend `residency` names.
fn snapshot(root: &Path, what: &str) -> (u64, String, String) {
    let head = ok(root, &["head"], "", what).trim().parse().unwrap();
    let records = ok(
        root,
        &["read", "--raw", "--all-tenants", "--limit", "100000"],
        "",
        what,
    );
    let verify = ok(root, &["verify"], "", what);
    assert!(
        verify.contains(&format!("{head} records")),
        "{what}: verify says {verify}"
    );
    let residency = ok(root, &["residency"], "", what);
    (head, records, residency)
}

#[test]
fn a_power_cut_during_migrate_leaves_the_old_log_or_the_verified_new_one() {
    if !fuse_or_skip("a_power_cut_during_migrate_leaves_the_old_log_or_the_verified_new_one") {
        return;
    }
    let seed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64)
        | 1;
    let rounds: usize = std::env::var("MAILLEDGER_POWER_CUT_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10);
    eprintln!("migrate power-cut seed {seed}, {rounds} rounds");
    let started = Instant::now();
    let mut rng = Rng(seed);
    let lower = tempfile::tempdir().unwrap();
    // The mount point stays the same across reboots: the marker names the
    // logs by absolute path, as on a real machine.
    let mnt = tempfile::tempdir().unwrap();
    let root = mnt.path();

    // The ledger, written through the mount and unmounted whole.
    let fs = LazyFs::mount(lower.path(), root).unwrap();
    ok(root, &["init"], "", "init");
    let raw: String = (0..RECORDS)
        .map(|i| {
            let id = uuid::Uuid::from_u128(0x0193_0000_0000_7000_8000_0000_0000_0000 | i as u128);
            format!(
                "{{\"id\":\"{id}\",\"stream\":\"message-{}\",\"type\":\"noted\",\"payload\":{{\"n\":{i},\"pad\":\"{}\"}}}}\n",
                i % 50,
                "x".repeat(200)
            )
        })
        .collect();
    ok(root, &["append", "--records"], &raw, "append");
    fs.unmount().unwrap();
    let fs = LazyFs::mount(lower.path(), root).unwrap();
    let (head, records, first) = snapshot(root, "before any migration");
    fs.unmount().unwrap();
    assert_eq!(head, RECORDS as u64);
    eprintln!("wrote {head} records in {:?}", started.elapsed());

    let backends = ["sled", "objects", "fjall"];
    let mut residency = first;
    let (mut switched, mut kept, mut returned) = (0, 0, 0);
    let mut spread = 1_500;
    for round in 0..rounds {
        let backend = backends[round % backends.len()];
        let target = root.join(format!("log-{round}")).display().to_string();
        let to = format!("{backend}:{target}");
        let uses_target = |residency: &str| residency.contains(&format!("\"at\": \"{target}\""));
        let fs = LazyFs::mount(lower.path(), root).unwrap();
        let t = Instant::now();
        let mut child = common::command(root)
            .args(["migrate", "--to", &to])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let pause = Duration::from_millis(rng.below(spread));
        while t.elapsed() < pause && child.try_wait().unwrap().is_none() {
            std::thread::sleep(Duration::from_millis(1));
        }
        let pid = rustix::process::Pid::from_raw(child.id() as i32).unwrap();
        let done = match child.try_wait().unwrap() {
            Some(status) => {
                let out = child.wait_with_output().unwrap();
                assert!(
                    status.success(),
                    "round {round}: migrate failed: {}",
                    text(&out.stderr)
                );
                // A run that returned sets how long the next pauses may be.
                spread = (t.elapsed().as_millis() as u64 * 5 / 4).max(50);
                None
            }
            None => {
                let _ = rustix::process::kill_process(pid, rustix::process::Signal::STOP);
                Some(child)
            }
        };
        let mode = if round.is_multiple_of(2) {
            CutMode::Clean
        } else {
            CutMode::Torn {
                seed: rng.below(u64::MAX),
            }
        };
        fs.cut(mode).unwrap();
        let finished = done.is_none();
        if let Some(mut child) = done {
            let _ = child.kill();
            let _ = child.wait();
        }
        fs.unmount().unwrap();

        // The reboot.
        let what = format!(
            "round {round} ({mode:?}, migrate to {to} {})",
            if finished { "returned" } else { "cut" }
        );
        let fs = LazyFs::mount(lower.path(), root).unwrap();
        let (h, r, now) = snapshot(root, &what);
        fs.unmount().unwrap();
        assert_eq!(
            h, head,
            "{what}: the data directory opens a log of {h} records, not {head}"
        );
        assert_eq!(
            r, records,
            "{what}: the data directory's records differ from the log's"
        );
        if finished {
            returned += 1;
            assert!(
                uses_target(&now),
                "{what}: migrate returned, but after the cut the data directory does not use the new log: {now}"
            );
        }
        if now == residency {
            kept += 1;
        } else {
            switched += 1;
        }
        residency = now;
        eprintln!(
            "{what}: {} after {:?}",
            if uses_target(&residency) {
                "switched"
            } else {
                "kept the old log"
            },
            t.elapsed()
        );
    }
    eprintln!(
        "{rounds} power cuts: {switched} switched, {kept} kept the old log, {returned} after migrate returned; {:?}",
        started.elapsed()
    );
    assert!(kept > 0 || rounds < 3, "no cut landed before the switch");
}
