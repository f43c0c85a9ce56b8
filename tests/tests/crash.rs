//! Kills a writing process with SIGKILL at random moments and checks that
//! the log it leaves behind kept every acknowledged event exactly once,
//! with no torn record, gapless stream versions and an intact chain.
//!
//! SIGKILL leaves the kernel's page cache as it was, so this cannot catch a
//! missing fsync: `power_cut.rs` does, on a lazy file system.
//! `MAILLEDGER_CRASH_ROUNDS` sets the rounds per backend (default 30).

#![allow(clippy::unwrap_used)]

use std::collections::HashSet;
use std::path::Path;
use std::time::Duration;

use mailledger_tests::rounds::{Rng, Writer, check_log, rounds, seed};

#[test]
fn sigkill_loses_no_acknowledged_event_and_tears_no_record() {
    let seed = seed();
    let rounds = rounds("MAILLEDGER_CRASH_ROUNDS", 30);
    eprintln!("crash test seed {seed}, {rounds} rounds per backend");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let exe = Path::new(env!("CARGO_BIN_EXE_crash-writer"));
    for backend in mailledger_tests::DURABLE_BACKENDS {
        let mut rng = Rng(seed);
        let dir = tempfile::tempdir().unwrap();
        let mut acked = HashSet::new();
        for round in 0..rounds {
            let mut writer = Writer::start(exe, backend, dir.path(), round);
            writer.run_for(Duration::from_millis(5 + rng.below(150)));
            let ids = writer.kill();
            assert!(!ids.is_empty());
            acked.extend(ids);
            check_log(backend, dir.path(), &acked, &rt, "a SIGKILL");
        }
        eprintln!(
            "{backend}: {rounds} rounds, {} acknowledged events all present",
            acked.len()
        );
    }
}
