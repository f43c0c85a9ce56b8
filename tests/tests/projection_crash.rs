//! Kills a projection runner with SIGKILL mid-batch, again and again, and
//! checks after every kill that each projection's state is exactly the
//! state of the events before its checkpoint: no event applied twice, none
//! lost. Then the last restart finishes and equals a rebuild from 0.
//!
//! The same for a rebuild into fresh stores: killed again and again, each
//! half-built store holds exactly the events before its own checkpoint, the
//! next run resumes it from there, and the finished rebuild equals one done
//! in a single pass.
//!
//! `MAILLEDGER_PROJECTION_CRASH_ROUNDS` sets the rounds (default 20).

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use mailledger_core::crypto::SecretKey;
use mailledger_core::email::{EmailLedger, parse_event, rfc3339};
use mailledger_core::keys::FileKeyStore;
use mailledger_core::{EventLog, Ledger, LedgerConfig};
use mailledger_projections::state::{FORMAT_KEY, FjallState, StateStore, checkpoint};
use mailledger_projections::{NAMES, Projections};

const EVENTS: usize = 30_000;
const T0: i64 = 1_793_491_200_000_000;

fn rounds() -> usize {
    std::env::var("MAILLEDGER_PROJECTION_CRASH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20)
}

fn dump(store: &dyn StateStore) -> BTreeMap<Vec<u8>, Vec<u8>> {
    let mut out = BTreeMap::new();
    // Everything but the checkpoint (checked on its own).
    store
        .scan(&[], &[0xff; 8], false, &mut |k, v| {
            if k != mailledger_projections::state::CHECKPOINT_KEY {
                out.insert(k.to_vec(), v.to_vec());
            }
            true
        })
        .unwrap();
    out
}

async fn write_log(log: &Arc<dyn EventLog>, keys: &std::path::Path) {
    let ks = Arc::new(FileKeyStore::open(keys, &SecretKey::generate().unwrap()).unwrap());
    let email = EmailLedger::new(Arc::clone(log), ks);
    let types = [
        ("sent", r#""tags": ["t1"], "campaign": "c""#),
        ("delivered", r#""tls": true"#),
        ("bounced", r#""class": "soft""#),
        ("opened", r#""machine": false"#),
        ("clicked", r#""url": "https://x.example/a""#),
        ("complained", r#""feedback_type": "abuse""#),
        ("bounced", r#""class": "hard""#),
        ("unsubscribed", r#""scope": "news""#),
    ];
    let mut batch = Vec::new();
    for i in 0..EVENTS {
        let (ty, extra) = types[i % types.len()];
        let line = format!(
            r#"{{"id": "{}", "type": "{ty}", "message_id": "m{}", "recipient": "r{}@example.org", "occurred_at": "{}", {extra}}}"#,
            uuid::Uuid::from_u128(0x0193_0000_0000_7000_8000_0000_0000_0000 | i as u128),
            i / 8,
            (i / 8) % 3000,
            rfc3339(T0 + (i as i64) * 1_000_000),
        );
        batch.push(parse_event(&line).unwrap());
        if batch.len() == 2000 {
            email.append("t", std::mem::take(&mut batch)).await.unwrap();
        }
    }
    if !batch.is_empty() {
        email.append("t", batch).await.unwrap();
    }
}

/// A pseudo-random pause before a kill (xorshift, seeded from the clock).
struct Pauses(u64);

impl Pauses {
    fn new() -> Self {
        Self(
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                | 1,
        )
    }

    fn next(&mut self, min_ms: u64, spread_ms: u64) -> Duration {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        Duration::from_millis(min_ms + self.0 % spread_ms)
    }
}

/// Starts the child on `log_dir` and `proj_dir` (`extra` appended to its
/// arguments), waits for its `ready`, lets it run for `pause`, and kills it.
/// Returns whether it had finished first.
fn run_and_kill(
    log_dir: &std::path::Path,
    proj_dir: &std::path::Path,
    extra: &[&str],
    pause: Duration,
) -> bool {
    let mut child = Command::new(env!("CARGO_BIN_EXE_projection-runner"))
        .arg(log_dir)
        .arg(proj_dir)
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    assert_eq!(lines.next().unwrap().unwrap(), "ready");
    std::thread::sleep(pause);
    child.kill().unwrap();
    child.wait().unwrap();
    matches!(lines.next(), Some(Ok(l)) if l == "done")
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn state_and_checkpoint_agree_after_every_kill() {
    let dir = tempfile::tempdir().unwrap();
    let log_dir = dir.path().join("log");
    let proj_dir = dir.path().join("projections");
    let rt = runtime();
    let open_log = || -> Arc<dyn EventLog> {
        let store = mailledger_fjall::FjallStore::open(&log_dir).unwrap();
        Arc::new(Ledger::open(store, LedgerConfig::new()).unwrap())
    };
    let started = std::time::Instant::now();
    {
        let log = open_log();
        rt.block_on(write_log(&log, &dir.path().join("keys")));
    }
    eprintln!("wrote {EVENTS} events in {:?}", started.elapsed());
    let mut pauses = Pauses::new();
    let mut killed_mid_way = 0;
    // One fresh in-memory build per projection, advanced to each round's
    // checkpoint (checkpoints never move back).
    let fresh: Vec<Projections> = NAMES.iter().map(|_| Projections::in_memory()).collect();
    for round in 0..rounds() {
        run_and_kill(&log_dir, &proj_dir, &[], pauses.next(5, 120));
        // After the kill: each projection's state is that of the events
        // before its checkpoint, computed afresh from the log.
        let log = open_log();
        let p = Projections::open(&proj_dir).unwrap();
        for (i, name) in NAMES.iter().enumerate() {
            let store = p.store(name).unwrap();
            let cp = checkpoint(store.as_ref()).unwrap();
            if cp > 0 && cp < log.head() {
                killed_mid_way += 1;
            }
            rt.block_on(fresh[i].catch_up_with(log.as_ref(), cp, None))
                .unwrap();
            let expected = fresh[i].store(name).unwrap();
            assert_eq!(checkpoint(expected.as_ref()).unwrap(), cp);
            assert_eq!(
                dump(store.as_ref()),
                dump(expected.as_ref()),
                "round {round}: {name} at checkpoint {cp} holds exactly the events before it"
            );
        }
    }
    eprintln!("{} rounds done at {:?}", rounds(), started.elapsed());
    assert!(
        killed_mid_way > 0,
        "no kill landed while the runner was working"
    );
    // A last run finishes, and equals a rebuild from 0.
    let log = open_log();
    let p = Projections::open(&proj_dir).unwrap();
    rt.block_on(p.catch_up(log.as_ref())).unwrap();
    // A rebuild from 0 in one pass, batched unlike anything above.
    let rebuilt = Projections::in_memory();
    rt.block_on(rebuilt.rebuild(log.as_ref(), &[], None))
        .unwrap();
    for name in NAMES {
        assert_eq!(
            dump(p.store(name).unwrap().as_ref()),
            dump(rebuilt.store(name).unwrap().as_ref()),
            "{name}"
        );
    }
}

/// The generation `proj_dir/NAME/CURRENT` names (0 when absent).
fn current_generation(proj_dir: &std::path::Path, name: &str) -> u64 {
    std::fs::read_to_string(proj_dir.join(name).join("CURRENT"))
        .map(|s| s.trim().trim_start_matches("gen-").parse().unwrap())
        .unwrap_or(0)
}

#[test]
fn an_interrupted_rebuild_resumes_from_its_own_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let log_dir = dir.path().join("log");
    let proj_dir = dir.path().join("projections");
    let rt = runtime();
    let log: Arc<dyn EventLog> = {
        let store = mailledger_fjall::FjallStore::open(&log_dir).unwrap();
        Arc::new(Ledger::open(store, LedgerConfig::new()).unwrap())
    };
    rt.block_on(write_log(&log, &dir.path().join("keys")));
    drop(log);
    let open_log = || -> Arc<dyn EventLog> {
        let store = mailledger_fjall::FjallStore::open(&log_dir).unwrap();
        Arc::new(Ledger::open(store, LedgerConfig::new()).unwrap())
    };
    let mut pauses = Pauses::new();
    // Per projection: the half-built generation and its checkpoint seen
    // after the previous kill, and a fresh build to compare with.
    let mut last: Vec<Option<(u64, u64)>> = vec![None; NAMES.len()];
    let mut fresh: Vec<Projections> = NAMES.iter().map(|_| Projections::in_memory()).collect();
    let mut resumed = 0;
    for round in 0..rounds().min(12) {
        let finished = run_and_kill(&log_dir, &proj_dir, &["rebuild"], pauses.next(30, 400));
        let log = open_log();
        for (i, name) in NAMES.iter().enumerate() {
            let building = current_generation(&proj_dir, name) + 1;
            let path = proj_dir.join(name).join(format!("gen-{building}"));
            if !path.exists() {
                // This projection's rebuild had finished and was swapped in.
                last[i] = None;
                continue;
            }
            let store = FjallState::open(&path).unwrap();
            let cp = checkpoint(&store).unwrap();
            let held = dump(&store);
            if cp == 0 && !held.contains_key(FORMAT_KEY) {
                // Killed after the new generation's store was created and
                // before its format stamp reached the disk: it must hold
                // nothing at all, which the next open stamps
                // (`stamp_format`) and builds from the start.
                assert!(
                    held.is_empty(),
                    "round {round}: an unstamped half-built {name} holds state"
                );
                last[i] = Some((building, cp));
                continue;
            }
            if let Some((generation, before)) = last[i]
                && generation == building
            {
                assert!(
                    cp >= before,
                    "round {round}: {name} went back from {before} to {cp}: the rebuild started over"
                );
                if before > 0 {
                    resumed += 1;
                }
            }
            last[i] = Some((building, cp));
            if cp < checkpoint(fresh[i].store(name).unwrap().as_ref()).unwrap() {
                fresh[i] = Projections::in_memory();
            }
            rt.block_on(fresh[i].catch_up_with(log.as_ref(), cp, None))
                .unwrap();
            let expected = fresh[i].store(name).unwrap();
            assert_eq!(checkpoint(expected.as_ref()).unwrap(), cp);
            assert_eq!(
                held,
                dump(expected.as_ref()),
                "round {round}: the half-built {name} at checkpoint {cp} holds exactly the events before it"
            );
        }
        if finished {
            eprintln!("round {round}: the rebuild finished before the kill");
        }
    }
    eprintln!("{resumed} resumed half-built stores checked");
    assert!(resumed > 0, "no run resumed a half-built store");
    // A last run finishes; the swapped-in stores equal a one-pass rebuild.
    let status = Command::new(env!("CARGO_BIN_EXE_projection-runner"))
        .arg(&log_dir)
        .arg(&proj_dir)
        .arg("rebuild")
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "the last rebuild failed: {status}");
    let log = open_log();
    let p = Projections::open(&proj_dir).unwrap();
    let rebuilt = Projections::in_memory();
    rt.block_on(rebuilt.rebuild(log.as_ref(), &[], None))
        .unwrap();
    for name in NAMES {
        let store = p.store(name).unwrap();
        assert_eq!(checkpoint(store.as_ref()).unwrap(), log.head(), "{name}");
        assert_eq!(
            dump(store.as_ref()),
            dump(rebuilt.store(name).unwrap().as_ref()),
            "{name}"
        );
    }
}
