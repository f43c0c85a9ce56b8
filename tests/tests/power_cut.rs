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

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use mailledger_core::crypto::Personal;
use mailledger_core::email::{EmailLedger, ReadEvent};
use mailledger_core::keys::{FileKeyStore, generate_kek_file, read_kek_file};
use mailledger_core::{Direction, Ledger, LedgerConfig, TenantFilter};
use uuid::Uuid;

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
            let mode = if round.is_multiple_of(2) {
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

/// The log, key store and key-encryption key of an email ledger in `root`,
/// as `email-writer` keeps them, opened after a cut.
fn open_email(backend: &str, root: &Path) -> EmailLedger {
    let store = mailledger_tests::open_store(backend, &root.join("log")).unwrap();
    let log = Ledger::open(store, LedgerConfig::new()).expect("the log reopens");
    let kek = read_kek_file(&root.join("kek")).unwrap();
    let keys = FileKeyStore::open(&root.join("keys"), &kek).expect("the key store reopens");
    EmailLedger::new(Arc::new(log), Arc::new(keys))
}

/// Every record of the log, opened.
async fn read_all(email: &EmailLedger) -> Vec<ReadEvent> {
    let log = email.log();
    let mut out = Vec::new();
    let mut from = 0;
    while from < log.head() {
        let batch = log
            .read_all(&TenantFilter::All, from, Direction::Forward, 5000)
            .await
            .unwrap();
        for r in &batch.records {
            if let Some(e) = email.open(r).expect("every record opens") {
                out.push(e);
            }
        }
        from = batch.next.unwrap();
    }
    out
}

/// One round of `email-writer MODE` on the lazy file system over `lower`:
/// what `until` waits for (if anything), a random while more, then the
/// cut. Returns every line the writer printed.
fn email_round(
    backend: &str,
    lower: &Path,
    mode: &str,
    round: usize,
    until: Option<&str>,
    rng: &mut Rng,
) -> Vec<String> {
    let mount = tempfile::tempdir().unwrap();
    let fs = LazyFs::mount(lower, mount.path()).unwrap();
    let exe = Path::new(env!("CARGO_BIN_EXE_email-writer"));
    let dir = mount.path().to_string_lossy().into_owned();
    let mut writer = Writer::start_with(exe, &[backend, &dir, mode, &round.to_string()]);
    if let Some(line) = until {
        writer.wait_for(line);
    }
    writer.run_for(Duration::from_millis(rng.below(100)));
    writer.freeze();
    let mode = if round.is_multiple_of(2) {
        CutMode::Clean
    } else {
        CutMode::Torn {
            seed: rng.below(u64::MAX),
        }
    };
    fs.cut(mode).unwrap();
    let lines = writer.kill_for_lines();
    fs.unmount().unwrap();
    lines
}

/// A fresh email ledger's directory with its key-encryption key.
fn email_dir() -> tempfile::TempDir {
    let root = tempfile::tempdir().unwrap();
    generate_kek_file(&root.path().join("kek")).unwrap();
    root
}

// An append that made a contact's key is acknowledged only once the key is
// durable with the record: after a cut every acknowledged event still opens
// to its address.
#[test]
fn an_acknowledged_event_of_a_new_contact_still_decrypts_after_a_power_cut() {
    if !fuse_or_skip("an_acknowledged_event_of_a_new_contact_still_decrypts_after_a_power_cut") {
        return;
    }
    let seed = seed();
    let rounds = rounds("MAILLEDGER_POWER_CUT_ROUNDS", 10);
    eprintln!("new-contact power-cut seed {seed}, {rounds} rounds per backend");
    let rt = tokio::runtime::Runtime::new().unwrap();
    for backend in mailledger_tests::DURABLE_BACKENDS {
        let mut rng = Rng(seed);
        let lower = email_dir();
        let mut acked: HashMap<Uuid, String> = HashMap::new();
        for round in 0..rounds {
            let lines = email_round(backend, lower.path(), "contacts", round, None, &mut rng);
            for line in lines {
                let mut parts = line.strip_prefix("ack ").unwrap().split(' ');
                let id = Uuid::parse_str(parts.next().unwrap()).unwrap();
                acked.insert(id, parts.next().unwrap().to_owned());
            }
            let email = open_email(backend, lower.path());
            let read = rt.block_on(read_all(&email));
            let by_id: HashMap<Uuid, &ReadEvent> = read.iter().map(|e| (e.id, e)).collect();
            for (id, address) in &acked {
                let e = by_id
                    .get(id)
                    .unwrap_or_else(|| panic!("{backend}: acknowledged event {id} lost"));
                assert_eq!(
                    e.to_json()["recipient"],
                    address.as_str(),
                    "{backend}: acknowledged event {id} does not open to its address"
                );
            }
        }
        eprintln!(
            "{backend}: {rounds} power cuts, {} acknowledged new contacts all open",
            acked.len()
        );
    }
}

// Erasure is key destruction also across a power cut: once `erase`
// returned, no byte of the key (raw or wrapped) is in any file, and every
// personal field of the contact's events reads as erased.
#[test]
fn an_erasure_that_returned_stays_erased_after_a_power_cut() {
    if !fuse_or_skip("an_erasure_that_returned_stays_erased_after_a_power_cut") {
        return;
    }
    let seed = seed();
    let rounds = rounds("MAILLEDGER_POWER_CUT_ROUNDS", 10);
    eprintln!("erasure power-cut seed {seed}, {rounds} rounds per backend");
    let rt = tokio::runtime::Runtime::new().unwrap();
    for backend in mailledger_tests::DURABLE_BACKENDS {
        let mut rng = Rng(seed);
        let lower = email_dir();
        for round in 0..rounds {
            let lines = email_round(
                backend,
                lower.path(),
                "erase",
                round,
                Some("erased"),
                &mut rng,
            );
            let key = lines.iter().find_map(|l| l.strip_prefix("key ")).unwrap();
            let (raw, wrapped) = key.split_once(' ').unwrap();
            let raw = mailledger_core::unhex(raw).unwrap();
            let wrapped = mailledger_core::unhex(wrapped).unwrap();
            for file in files_under(lower.path()) {
                let bytes = std::fs::read(&file).unwrap();
                for (what, key) in [("raw", &raw), ("wrapped", &wrapped)] {
                    assert!(
                        !bytes.windows(key.len()).any(|w| w == key.as_slice()),
                        "{backend}, round {round}: the erased contact's {what} key is in {}",
                        file.display()
                    );
                }
            }
            let email = open_email(backend, lower.path());
            let address = format!("erase-{round}@example.org");
            let read = rt.block_on(read_all(&email));
            let contact = rt
                .block_on(email.pseudonym("t", &Personal::new(address)))
                .unwrap();
            let events: Vec<_> = read
                .iter()
                .filter(|e| e.event.envelope.contact == contact)
                .collect();
            assert!(
                events.len() >= 3,
                "{backend}: the contact's events are there"
            );
            for e in events {
                assert!(
                    e.to_json()["type"] == "erased" || e.is_erased(),
                    "{backend}, round {round}: an event of the erased contact still opens"
                );
            }
        }
        eprintln!("{backend}: {rounds} power cuts after an erasure, every key gone");
    }
}

/// Every file under `dir`.
fn files_under(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_dir() {
            out.extend(files_under(&entry.path()));
        } else {
            out.push(entry.path());
        }
    }
    out
}
