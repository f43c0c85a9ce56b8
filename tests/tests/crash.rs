//! Kills a writing process with SIGKILL at random moments and checks that
//! the log it leaves behind kept every acknowledged event exactly once,
//! with no torn record, gapless stream versions and an intact chain.
//!
//! `MAILLEDGER_CRASH_ROUNDS` sets the rounds per backend (default 30).

#![allow(clippy::unwrap_used)]

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use mailledger_core::{Direction, EventLog, Ledger, LedgerConfig, TenantFilter};
use uuid::Uuid;

fn rounds() -> usize {
    std::env::var("MAILLEDGER_CRASH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(30)
}

struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

fn crash_round(backend: &str, dir: &std::path::Path, round: usize, rng: &mut Rng) -> Vec<Uuid> {
    let mut child = Command::new(env!("CARGO_BIN_EXE_crash-writer"))
        .arg(backend)
        .arg(dir)
        .arg(round.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut acked = Vec::new();
    // Wait for the writer to be under way, then let it run a random while.
    let first = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("writer acknowledged nothing");
    acked.push(first);
    let run_for = Duration::from_millis(5 + rng.below(150));
    let started = Instant::now();
    while started.elapsed() < run_for {
        if let Ok(line) = rx.recv_timeout(Duration::from_millis(1)) {
            acked.push(line);
        }
    }
    child.kill().unwrap();
    child.wait().unwrap();
    reader.join().unwrap();
    acked.extend(rx.try_iter());
    acked
        .iter()
        .filter_map(|l| l.strip_prefix("ack "))
        .map(|id| Uuid::parse_str(id).expect("a whole ack line"))
        .collect()
}

fn check_log(
    backend: &str,
    dir: &std::path::Path,
    acked: &HashSet<Uuid>,
    rt: &tokio::runtime::Runtime,
) {
    rt.block_on(async {
        let store = mailledger_tests::open_store(backend, dir).unwrap();
        let log = Ledger::open(store, LedgerConfig::new()).expect("the log reopens after a crash");
        let head = log.head();
        let mut seen: HashMap<Uuid, u64> = HashMap::new();
        let mut versions: HashMap<(String, String), u64> = HashMap::new();
        let mut from = 0;
        while from < head {
            let batch = log
                .read_all(&TenantFilter::All, from, Direction::Forward, 5000)
                .await
                .expect("every record decodes");
            for r in &batch.records {
                assert!(
                    seen.insert(r.event_id, r.position).is_none(),
                    "event {} twice",
                    r.event_id
                );
                let v = versions
                    .entry((r.tenant.clone(), r.stream.clone()))
                    .or_insert(0);
                assert_eq!(r.stream_version, *v, "stream {} has a gap", r.stream);
                *v += 1;
            }
            from = batch.next.unwrap();
        }
        assert_eq!(seen.len() as u64, head);
        for id in acked {
            assert!(seen.contains_key(id), "acknowledged event {id} was lost");
        }
        log.verify(&TenantFilter::All, 0..u64::MAX, None)
            .await
            .expect("the chain verifies after a crash");
    });
}

#[test]
fn sigkill_loses_no_acknowledged_event_and_tears_no_record() {
    let seed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        | 1;
    eprintln!("crash test seed {seed}, {} rounds per backend", rounds());
    let rt = tokio::runtime::Runtime::new().unwrap();
    for backend in mailledger_tests::DURABLE_BACKENDS {
        let mut rng = Rng(seed);
        let dir = tempfile::tempdir().unwrap();
        let mut acked = HashSet::new();
        for round in 0..rounds() {
            let ids = crash_round(backend, dir.path(), round, &mut rng);
            assert!(!ids.is_empty());
            acked.extend(ids);
            check_log(backend, dir.path(), &acked, &rt);
        }
        eprintln!(
            "{backend}: {} rounds, {} acknowledged events all present",
            rounds(),
            acked.len()
        );
    }
}
