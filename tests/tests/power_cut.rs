//! Cuts the power under a writing process, on a lazy file system that
//! keeps every unsynced write in memory and drops it at the cut
//! (`mailledger-lazyfs`), and checks that the log left on the disk beneath
//! kept every acknowledged event exactly once, with gapless stream
//! versions and an intact chain. Unlike SIGKILL, which leaves the page
//! cache, this catches a missing or misplaced fsync.
//!
//! Each round mounts the lazy file system over the backend's directory,
//! lets the writer run a random while, freezes it (SIGSTOP: every
//! acknowledgement it printed is of an append that had returned), cuts the
//! power (clean, or torn: each file keeps a random prefix of its unsynced
//! writes), kills it, unmounts and opens the directory as a restarted
//! machine would. `MAILLEDGER_POWER_CUT_ROUNDS` sets the rounds per backend
//! (default 10), `MAILLEDGER_POWER_CUT_BACKENDS` (comma-separated) runs
//! some backends only. Without FUSE the test says why it skipped; with
//! `MAILLEDGER_REQUIRE_FUSE=1` (as in CI) it fails instead.

#![allow(clippy::unwrap_used)]

use std::collections::HashSet;
use std::path::Path;
use std::time::Duration;

use mailledger_lazyfs::{CutMode, LazyFs, fuse_or_skip};
use mailledger_tests::rounds::{Rng, Writer, check_log, rounds, seed};

#[test]
fn a_power_cut_loses_no_acknowledged_event_and_tears_no_record() {
    if !fuse_or_skip("a_power_cut_loses_no_acknowledged_event_and_tears_no_record") {
        return;
    }
    let seed = seed();
    let rounds = rounds("MAILLEDGER_POWER_CUT_ROUNDS", 10);
    eprintln!("power-cut test seed {seed}, {rounds} rounds per backend");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let exe = Path::new(env!("CARGO_BIN_EXE_crash-writer"));
    // `MAILLEDGER_POWER_CUT_BACKENDS=fjall,sled` runs some backends only.
    let only = std::env::var("MAILLEDGER_POWER_CUT_BACKENDS").ok();
    for backend in mailledger_tests::DURABLE_BACKENDS {
        if only
            .as_deref()
            .is_some_and(|o| !o.split(',').any(|b| b == backend))
        {
            continue;
        }
        let mut rng = Rng(seed);
        let lower = tempfile::tempdir().unwrap();
        let mount = tempfile::tempdir().unwrap();
        let mut acked = HashSet::new();
        for round in 0..rounds {
            let fs = LazyFs::mount(lower.path(), mount.path()).unwrap();
            let mut writer = Writer::start(exe, backend, mount.path(), round);
            writer.run_for(Duration::from_millis(5 + rng.below(150)));
            writer.freeze();
            let mode = if round % 2 == 0 {
                CutMode::Clean
            } else {
                CutMode::Torn {
                    seed: rng.below(u64::MAX),
                }
            };
            fs.cut(mode).unwrap();
            let ids = writer.kill();
            fs.unmount().unwrap();
            assert!(!ids.is_empty());
            acked.extend(ids);
            check_log(
                backend,
                lower.path(),
                &acked,
                &rt,
                &format!("a power cut ({mode:?}, round {round})"),
            );
        }
        eprintln!(
            "{backend}: {rounds} power cuts, {} acknowledged events all present",
            acked.len()
        );
    }
}
