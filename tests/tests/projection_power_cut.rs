//! Cuts the power under a projection runner (`projection-runner`), with the
//! log and the projections' directory on a lazy file system that drops
//! every unsynced write at the cut (`mailledger-lazyfs`), during
//! incremental application and during a rebuild into fresh generations.
//! After every cut the machine "restarts" on the directory beneath: each
//! projection's state must be exactly that of a fresh build up to its own
//! checkpoint (no event applied twice, none lost, no torn state), and the
//! last run, let finish, must equal a rebuild from 0.
//!
//! Each round mounts the lazy file system, starts the runner, lets it work
//! a random while, freezes it (SIGSTOP), cuts (clean, or torn on odd
//! rounds), kills it and unmounts. `MAILLEDGER_POWER_CUT_ROUNDS` sets the
//! rounds (default 10). Without FUSE the tests say why they skipped.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mailledger_core::email::{EmailLedger, parse_event, rfc3339};
use mailledger_core::keys::FileKeyStore;
use mailledger_core::{EventLog, Ledger, LedgerConfig};
use mailledger_lazyfs::{CutMode, LazyFs, fuse_or_skip};
use mailledger_projections::state::{
    CHECKPOINT_KEY, FORMAT_KEY, FjallState, StateStore, checkpoint,
};
use mailledger_projections::{NAMES, Projections};
use mailledger_tests::rounds::{Rng, Writer, rounds, seed};

/// The two tests take turns: mounts and runner children of one test never
/// overlap the other's (a child forked while the other test mounts could
/// inherit its FUSE descriptor and keep that mount busy).
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

const EVENTS: usize = 12_000;
/// The incremental test's log: this many at first, and a chunk more
/// before each round, so that every round has events to apply.
const FIRST: usize = 4_000;
const CHUNK: usize = 1_500;
const T0: i64 = 1_793_491_200_000_000;

/// Everything in `store` but the checkpoint (checked on its own).
fn dump(store: &dyn StateStore) -> BTreeMap<Vec<u8>, Vec<u8>> {
    let mut out = BTreeMap::new();
    store
        .scan(&[], &[0xff; 8], false, &mut |k, v| {
            if k != CHECKPOINT_KEY {
                out.insert(k.to_vec(), v.to_vec());
            }
            true
        })
        .unwrap();
    out
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn open_log(dir: &Path) -> Arc<dyn EventLog> {
    let store = mailledger_fjall::FjallStore::open(&dir.join("log")).unwrap();
    Arc::new(Ledger::open(store, LedgerConfig::new()).expect("the log reopens"))
}

/// Events `range` of the test's email log, appended to `root/log`
/// (directly, not through a mount: the log is durable before a round).
fn write_log(root: &Path, range: std::ops::Range<usize>, rt: &tokio::runtime::Runtime) {
    let log = open_log(root);
    let kek_file = root.join("kek");
    if !kek_file.exists() {
        mailledger_core::keys::generate_kek_file(&kek_file).unwrap();
    }
    let kek = mailledger_core::keys::read_kek_file(&kek_file).unwrap();
    let ks = Arc::new(FileKeyStore::open(&root.join("keys"), &kek).unwrap());
    let email = EmailLedger::new(Arc::clone(&log), ks);
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
    rt.block_on(async {
        let mut batch = Vec::new();
        for i in range {
            let (ty, extra) = types[i % types.len()];
            let line = format!(
                r#"{{"id": "{}", "type": "{ty}", "message_id": "m{}", "recipient": "r{}@example.org", "occurred_at": "{}", {extra}}}"#,
                uuid::Uuid::from_u128(0x0193_0000_0000_7000_8000_0000_0000_0000 | i as u128),
                i / 8,
                (i / 8) % 1500,
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
    });
}

/// One round: the runner (`extra` appended to its arguments) on the lazy
/// file system over `lower`, a random while, freeze, cut, kill, unmount.
/// Returns whether it had printed `done` before the cut.
fn cut_round(lower: &Path, extra: &[&str], round: usize, rng: &mut Rng, pause: Duration) -> bool {
    let mount = tempfile::tempdir().unwrap();
    let fs = LazyFs::mount(lower, mount.path()).unwrap();
    let log_dir = mount.path().join("log").to_string_lossy().into_owned();
    let proj_dir = mount
        .path()
        .join("projections")
        .to_string_lossy()
        .into_owned();
    let mut args = vec![log_dir.as_str(), proj_dir.as_str()];
    args.extend_from_slice(extra);
    let mut runner = Writer::start_with(Path::new(env!("CARGO_BIN_EXE_projection-runner")), &args);
    runner.run_for(pause);
    runner.freeze();
    let mode = if round.is_multiple_of(2) {
        CutMode::Clean
    } else {
        CutMode::Torn {
            seed: rng.below(u64::MAX),
        }
    };
    fs.cut(mode).unwrap();
    let lines = runner.kill_for_lines();
    fs.unmount().unwrap();
    assert_eq!(lines.first().map(String::as_str), Some("ready"));
    lines.iter().any(|l| l == "done")
}

/// Checks that `store` (projection `name`, after a cut) holds exactly the
/// events before its checkpoint, against `fresh`, an in-memory build that
/// is advanced (or started over) to that checkpoint. Returns it.
fn check_against_fresh(
    store: &dyn StateStore,
    name: &str,
    fresh: &mut Projections,
    log: &dyn EventLog,
    rt: &tokio::runtime::Runtime,
    what: &str,
) -> u64 {
    let cp = checkpoint(store).unwrap();
    assert!(cp <= log.head(), "{what}: {name} is ahead of the log");
    if cp < checkpoint(fresh.store(name).unwrap().as_ref()).unwrap() {
        *fresh = Projections::in_memory();
    }
    rt.block_on(fresh.catch_up_with(log, cp, None)).unwrap();
    let expected = fresh.store(name).unwrap();
    assert_eq!(checkpoint(expected.as_ref()).unwrap(), cp);
    assert_eq!(
        dump(store),
        dump(expected.as_ref()),
        "{what}: {name} at checkpoint {cp} holds exactly the events before it"
    );
    cp
}

/// After the last round: a run let finish (`extra` as the runner's mode,
/// on the lower directory) equals a rebuild from 0, and every checkpoint
/// is the log's head.
fn finish_and_compare(lower: &Path, extra: &[&str], rt: &tokio::runtime::Runtime) {
    let status = std::process::Command::new(env!("CARGO_BIN_EXE_projection-runner"))
        .arg(lower.join("log"))
        .arg(lower.join("projections"))
        .args(extra)
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "the last run failed: {status}");
    let log = open_log(lower);
    let p = Projections::open(&lower.join("projections")).unwrap();
    let rebuilt = Projections::in_memory();
    rt.block_on(rebuilt.rebuild(log.as_ref(), &[], None))
        .unwrap();
    for name in NAMES {
        let store = p.store(name).unwrap();
        assert_eq!(checkpoint(store.as_ref()).unwrap(), log.head(), "{name}");
        assert_eq!(
            dump(store.as_ref()),
            dump(rebuilt.store(name).unwrap().as_ref()),
            "{name} after the last run"
        );
    }
}

#[test]
fn a_power_cut_during_incremental_application_leaves_state_matching_its_checkpoint() {
    if !fuse_or_skip(
        "a_power_cut_during_incremental_application_leaves_state_matching_its_checkpoint",
    ) {
        return;
    }
    let _turn = ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let seed = seed();
    let rounds = rounds("MAILLEDGER_POWER_CUT_ROUNDS", 10);
    eprintln!("projection power-cut seed {seed}, {rounds} rounds");
    let started = Instant::now();
    let rt = runtime();
    let lower = tempfile::tempdir().unwrap();
    write_log(lower.path(), 0..FIRST, &rt);
    let mut rng = Rng(seed);
    let mut fresh: Vec<Projections> = NAMES.iter().map(|_| Projections::in_memory()).collect();
    let mut mid_way = 0;
    // The pauses before a cut aim at the runner's commits: shorter after a
    // round that finished, longer after one that committed nothing.
    let mut spread = 300;
    let mut before = [0; NAMES.len()];
    for round in 0..rounds {
        let from = FIRST + round * CHUNK;
        write_log(lower.path(), from..from + CHUNK, &rt);
        let pause = Duration::from_millis(5 + rng.below(spread));
        let done = cut_round(lower.path(), &["steps"], round, &mut rng, pause);
        // The restart: the directory beneath, as the cut left it.
        let log = open_log(lower.path());
        let p = Projections::open(&lower.path().join("projections"))
            .unwrap_or_else(|e| panic!("round {round}: the projections do not reopen: {e}"));
        let mut moved = false;
        for (i, name) in NAMES.iter().enumerate() {
            let store = p.store(name).unwrap();
            let what = format!("round {round}");
            let cp = check_against_fresh(
                store.as_ref(),
                name,
                &mut fresh[i],
                log.as_ref(),
                &rt,
                &what,
            );
            if cp > 0 && cp < log.head() {
                mid_way += 1;
            }
            moved |= cp > before[i];
            before[i] = cp;
        }
        if done {
            spread = (spread * 2 / 3).max(20);
        } else if !moved {
            spread = spread * 3 / 2;
        }
        eprintln!(
            "round {round}: cut after {pause:?}, done {done}, checkpoints {before:?} of {}",
            log.head()
        );
    }
    eprintln!(
        "{rounds} power cuts, {mid_way} mid-way checkpoints, at {:?}",
        started.elapsed()
    );
    assert!(mid_way > 0, "no cut landed while the runner was working");
    finish_and_compare(lower.path(), &[], &rt);
    eprintln!("done in {:?}", started.elapsed());
}

/// The generation `proj_dir/NAME/CURRENT` names (0 when absent).
fn current_generation(proj_dir: &Path, name: &str) -> u64 {
    std::fs::read_to_string(proj_dir.join(name).join("CURRENT"))
        .map(|s| s.trim().trim_start_matches("gen-").parse().unwrap())
        .unwrap_or(0)
}

#[test]
fn a_power_cut_during_a_rebuild_leaves_every_generation_matching_its_checkpoint() {
    if !fuse_or_skip("a_power_cut_during_a_rebuild_leaves_every_generation_matching_its_checkpoint")
    {
        return;
    }
    let _turn = ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let seed = seed();
    let rounds = rounds("MAILLEDGER_POWER_CUT_ROUNDS", 10);
    eprintln!("projection rebuild power-cut seed {seed}, {rounds} rounds");
    let started = Instant::now();
    let rt = runtime();
    let lower = tempfile::tempdir().unwrap();
    let proj_dir = lower.path().join("projections");
    write_log(lower.path(), 0..EVENTS, &rt);
    // The projections caught up first, so a rebuild replaces real state.
    {
        let log = open_log(lower.path());
        let p = Projections::open(&proj_dir).unwrap();
        rt.block_on(p.catch_up(log.as_ref())).unwrap();
    }
    eprintln!(
        "wrote {EVENTS} events and caught up in {:?}",
        started.elapsed()
    );
    let mut rng = Rng(seed);
    let mut fresh_current: Vec<Projections> =
        NAMES.iter().map(|_| Projections::in_memory()).collect();
    let mut fresh_building: Vec<Projections> =
        NAMES.iter().map(|_| Projections::in_memory()).collect();
    let mut half_built = 0;
    for round in 0..rounds {
        let pause = Duration::from_millis(5 + rng.below(600));
        let finished = cut_round(lower.path(), &["rebuild"], round, &mut rng, pause);
        let log = open_log(lower.path());
        let what = format!("round {round}");
        // The half-built generations, as the cut left them (before any open
        // touches them).
        for (i, name) in NAMES.iter().enumerate() {
            let building = current_generation(&proj_dir, name) + 1;
            let path = proj_dir.join(name).join(format!("gen-{building}"));
            if !path.exists() {
                continue;
            }
            let store = FjallState::open(&path)
                .unwrap_or_else(|e| panic!("{what}: the half-built {name} does not open: {e}"));
            let held = dump(&store);
            if checkpoint(&store).unwrap() == 0 && !held.contains_key(FORMAT_KEY) {
                assert!(
                    held.is_empty(),
                    "{what}: an unstamped half-built {name} holds state"
                );
                continue;
            }
            let cp = check_against_fresh(
                &store,
                name,
                &mut fresh_building[i],
                log.as_ref(),
                &rt,
                &format!("{what} (half-built)"),
            );
            if cp > 0 {
                half_built += 1;
            }
        }
        // The generation in service, whichever the cut left current.
        let p = Projections::open(&proj_dir)
            .unwrap_or_else(|e| panic!("{what}: the projections do not reopen: {e}"));
        for (i, name) in NAMES.iter().enumerate() {
            let store = p.store(name).unwrap();
            check_against_fresh(
                store.as_ref(),
                name,
                &mut fresh_current[i],
                log.as_ref(),
                &rt,
                &what,
            );
        }
        if finished {
            eprintln!("{what}: the rebuild finished before the cut");
        }
    }
    eprintln!(
        "{rounds} power cuts, {half_built} half-built stores checked, at {:?}",
        started.elapsed()
    );
    assert!(half_built > 0, "no cut landed in a half-built store");
    finish_and_compare(lower.path(), &["rebuild"], &rt);
    eprintln!("done in {:?}", started.elapsed());
}
