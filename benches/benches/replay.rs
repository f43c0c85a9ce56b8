//! Replay: how fast an auditor's replay reads a log, against a raw scan of
//! the same log in the same run.
//!
//! One fjall log of `MAILLEDGER_REPLAY_EVENTS` events (default 1,000,000)
//! from the shared traffic model, one tenant (replay reads one tenant's
//! chain) with `MAILLEDGER_REPLAY_CONTACTS` contacts (default 200,000, the
//! model's). Then, each timed on the same log:
//! - **raw scan**: every record read in position order (`read_all`), its
//!   bytes summed: the floor any replay pays;
//! - **verified, none shown**: the replay's reading and verification
//!   alone (a type filter no record passes);
//! - **replay, raw**: `mailledger_audit::Replay` with `Shown::Raw`, every
//!   record's hash recomputed and link checked, each written as a JSON
//!   line to a file;
//! - **replay, decrypted**: the same with every personal field opened.
//!
//! The store's merges after the fill are waited out first. Each replay
//! runs as `mailledger replay` does: on every core
//! (`Replay::workers`; `MAILLEDGER_REPLAY_WORKERS` sets another number),
//! the next page read while one is shown. The raw
//! scan is one reader, as any scan of the log is.
//!
//! Each replay is timed between two raw scans and taken as a ratio to
//! their mean, so a swing in the machine's speed meets both. Prints, for
//! each of `MAILLEDGER_REPLAY_ROUNDS` rounds (default 3), events per
//! second of each and its ratio; then the median round of each ratio (the
//! target is at least 0.3 decrypted).
//!
//! Run: `cargo bench -p mailledger-benches --bench replay`.
#![allow(missing_docs)]

use std::io::{BufWriter, Write};
use std::sync::Arc;
use std::time::Instant;

use mailledger_audit::replay::{Replay, ReplayFilter, Shown};
use mailledger_core::crypto::SecretKey;
use mailledger_core::email::EmailLedger;
use mailledger_core::keys::{FileKeyStore, KEY_CACHE_ENTRY_BYTES};
use mailledger_core::traffic::{Traffic, TrafficConfig};
use mailledger_core::{Direction, Durability, EventLog, Ledger, LedgerConfig, TenantFilter};

const TENANT: &str = "acme";

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.replace('_', "").parse().ok())
        .unwrap_or(default)
}

async fn fill(email: &Arc<EmailLedger>, events: u64) {
    let mut traffic = Traffic::new(&TrafficConfig {
        tenants: vec![(TENANT.into(), 1)],
        contacts: env_or("MAILLEDGER_REPLAY_CONTACTS", 200_000),
        ..TrafficConfig::default()
    });
    let started = Instant::now();
    let mut done = 0;
    while done < events {
        let mut tasks = Vec::new();
        for _ in 0..8 {
            let batch = traffic
                .next_batch(1000)
                .parsed()
                .expect("generated events parse");
            let email = Arc::clone(email);
            tasks.push(tokio::spawn(
                async move { email.append(TENANT, batch).await },
            ));
        }
        for t in tasks {
            t.await.expect("append task").expect("append");
        }
        done += 8000;
        if done % 200_000 == 0 {
            eprintln!(
                "replay: filled {done} events ({:.0}/s)",
                done as f64 / started.elapsed().as_secs_f64()
            );
        }
    }
}

/// The replay's threads: `MAILLEDGER_REPLAY_WORKERS`, or every core as
/// the command line takes.
fn workers() -> std::num::NonZeroUsize {
    std::env::var("MAILLEDGER_REPLAY_WORKERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .or_else(|| std::thread::available_parallelism().ok())
        .unwrap_or(std::num::NonZeroUsize::MIN)
}

/// Waits until the store's flushes and merges after the fill are done (the
/// process idles), so no phase shares the cores with them.
async fn settle() {
    let started = Instant::now();
    let mut before = mailledger_benches::cpu_secs("self").unwrap_or(0.0);
    loop {
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        let now = mailledger_benches::cpu_secs("self").unwrap_or(0.0);
        if now - before < 0.05 || started.elapsed().as_secs() > 120 {
            break;
        }
        before = now;
    }
    eprintln!(
        "replay: the store settled in {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

/// Reads every record in position order; returns (records, bytes).
async fn raw_scan(log: &dyn EventLog) -> (u64, u64) {
    let filter = TenantFilter::Only(TENANT.into());
    let (mut records, mut bytes, mut next) = (0u64, 0u64, 0u64);
    let head = log.head();
    while next < head {
        let batch = log
            .read_all(&filter, next, Direction::Forward, 1000)
            .await
            .expect("read");
        for r in &batch.records {
            records += 1;
            bytes += (r.payload.len() + r.metadata.len() + r.stream.len()) as u64;
        }
        match batch.next {
            Some(n) if n > next => next = n,
            _ => break,
        }
    }
    (records, bytes)
}

/// Replays the tenant with every record verified and none shown (a type
/// no record has): what verification alone costs; returns records read.
async fn verify_only(email: &Arc<EmailLedger>) -> u64 {
    let filter = ReplayFilter {
        types: Some(vec!["-".into()]),
        ..ReplayFilter::default()
    };
    let workers = workers();
    let mut replay = Replay::new(Arc::clone(email), TENANT, filter, Shown::Raw)
        .expect("replay")
        .workers(workers);
    while replay.next_page().await.expect("replay page").is_some() {}
    assert!(replay.summary().verified, "the chain verifies");
    replay.summary().records
}

/// Replays into a file; returns the events written.
async fn replay(email: &Arc<EmailLedger>, shown: Shown, path: &std::path::Path) -> u64 {
    let mut out = BufWriter::new(std::fs::File::create(path).expect("output file"));
    let workers = workers();
    let mut replay = Replay::new(Arc::clone(email), TENANT, ReplayFilter::default(), shown)
        .expect("replay")
        .workers(workers);
    while let Some(page) = replay.next_page().await.expect("replay page") {
        out.write_all(&page.lines).expect("write");
    }
    out.flush().expect("flush");
    assert!(replay.summary().verified, "the chain verifies");
    replay.summary().events
}

fn main() {
    let events = env_or("MAILLEDGER_REPLAY_EVENTS", 1_000_000);
    let dir = tempfile::tempdir().expect("tempdir");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let store = mailledger_fjall::FjallStore::open(&dir.path().join("log")).expect("fjall");
        let log: Arc<dyn EventLog> = Arc::new(
            Ledger::open(store, LedgerConfig::new().durability(Durability::Buffered))
                .expect("ledger"),
        );
        // The key cache `mailledger replay` has at its default budget
        // (1 GiB, a sixteenth for keys).
        let keys = FileKeyStore::open(&dir.path().join("keys"), &SecretKey::generate().expect("kek"))
            .expect("keys")
            .with_cache_entries((1 << 30) / 16 / KEY_CACHE_ENTRY_BYTES);
        let email = Arc::new(EmailLedger::new(Arc::clone(&log), Arc::new(keys)));
        fill(&email, events).await;
        log.sync().await.expect("sync");
        settle().await;
        let out = dir.path().join("replay.jsonl");
        // Warm the caches the same for all three: one untimed scan.
        raw_scan(log.as_ref()).await;
        // The machine's speed swings within seconds: each replay is timed
        // between two raw scans and taken against their mean, and each
        // round times all three; the median round of each ratio is the
        // figure.
        let rounds = env_or("MAILLEDGER_REPLAY_ROUNDS", 3).max(1);
        let mut ratios: [Vec<f64>; 3] = Default::default();
        let mut payload = 0;
        let scan = async || {
            let t = Instant::now();
            let (records, bytes) = raw_scan(log.as_ref()).await;
            (records, bytes, records as f64 / t.elapsed().as_secs_f64())
        };
        for round in 1..=rounds {
            let (records, bytes, mut before) = scan().await;
            payload = bytes;
            let mut line = format!("replay: round {round}:");
            for (phase, (name, ratio)) in ["verified, none shown", "replay raw", "replay decrypted"]
                .into_iter()
                .zip(ratios.iter_mut())
                .enumerate()
            {
                let t = Instant::now();
                let n = match phase {
                    0 => verify_only(&email).await,
                    1 => replay(&email, Shown::Raw, &out).await,
                    _ => replay(&email, Shown::Opened, &out).await,
                };
                let rate = n as f64 / t.elapsed().as_secs_f64();
                assert_eq!(n, records);
                let (_, _, after) = scan().await;
                let base = f64::midpoint(before, after);
                ratio.push(rate / base);
                line += &format!(" {name} {rate:.0}/s against a raw scan of {base:.0}/s ({:.2}x);", rate / base);
                before = after;
            }
            eprintln!("{line}");
        }
        let [verified, raw, opened] = ratios.map(|mut r| {
            r.sort_by(f64::total_cmp);
            r[r.len() / 2]
        });
        println!(
            "replay: {events} events ({} MB of payload), median of {rounds} rounds, each against the raw scans around it: verified, none shown {verified:.2}x; replay raw {raw:.2}x; replay decrypted {opened:.2}x",
            payload >> 20,
        );
    });
}
