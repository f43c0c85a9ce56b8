//! Growth: does the cost of an event stay flat as the log grows?
//!
//! One fjall log, filled with the shared traffic model
//! (`mailledger_core::traffic`), measured twice in the same run: sealed,
//! durable in-process appends of 100 events by `MAILLEDGER_GROWTH_APPENDERS`
//! concurrent appenders (default 64), once the log holds
//! `MAILLEDGER_GROWTH_FIRST` events (default 1 M) and again at
//! `MAILLEDGER_GROWTH_EVENTS` (default 20 M). As the Postgres peer's clients
//! (`benches/peer/pg_growth.py`), each appender goes through its own
//! batches, generated before the clock starts, one append after another,
//! without waiting for the others, on a runtime whose threads may block
//! (`blocking_allowed`, one thread per core), as the server's ingest
//! runtime runs appends. Between the two measurements it fills
//! the log with the same appends in larger batches (1,000 events, 8
//! appenders).
//!
//! For each measurement it prints, from counters in the store layer
//! (`mailledger_core::counting`), not estimates:
//! - events per second, and the ratio of the later to the first;
//! - CPU time per event (all the process's threads) and the cores busy on
//!   average, from `/proc/self/stat`;
//! - keys written per event, and bytes written per event, in all and
//!   *scattered* (keys landing below their space's end, see the module);
//! - write amplification: bytes the process sent to storage
//!   (`/proc/self/io` `write_bytes`) per byte of record appended;
//! - bytes on disk per event.
//!
//! Run: `cargo bench -p mailledger-benches --bench growth`, with
//! `MAILLEDGER_GROWTH_DIR` to put the log on another disk (the 20 M log
//! takes about 15 GB).
#![allow(missing_docs)]

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

// Links the benches' library for its global allocator: the binary's
// (mimalloc), not the system's.
use mailledger_benches as _;
use mailledger_core::counting::{CountingStore, SpaceCount, WriteCounts};
use mailledger_core::crypto::SecretKey;
use mailledger_core::email::{CanonicalEvent, EmailLedger};
use mailledger_core::keys::FileKeyStore;
use mailledger_core::traffic::{Traffic, TrafficConfig};
use mailledger_core::{Durability, EventLog, Ledger, LedgerConfig, Space};

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.replace('_', "").parse().ok())
        .unwrap_or(default)
}

/// Bytes this process has sent to the storage layer so far.
fn write_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/io")
        .ok()
        .and_then(|io| {
            io.lines()
                .find_map(|l| l.strip_prefix("write_bytes: ").map(str::to_owned))
        })
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0)
}

/// CPU time this process has used so far, user and system, in seconds:
/// `/proc/self/stat` fields 14 and 15, in clock ticks (100 a second on
/// Linux).
fn cpu_seconds() -> f64 {
    std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|stat| {
            // The command name may hold spaces: fields count from its `)`.
            let rest = &stat[stat.rfind(')')? + 2..];
            let f: Vec<&str> = rest.split(' ').collect();
            let ticks = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
            Some(ticks as f64 / 100.0)
        })
        .unwrap_or(0.0)
}

fn disk_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => disk_bytes(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

fn total(counts: &WriteCounts) -> SpaceCount {
    counts
        .all()
        .iter()
        .fold(SpaceCount::default(), |a, (_, c)| SpaceCount {
            puts: a.puts + c.puts,
            bytes: a.bytes + c.bytes,
            scattered_puts: a.scattered_puts + c.scattered_puts,
            scattered_bytes: a.scattered_bytes + c.scattered_bytes,
        })
}

struct Bench {
    rt: tokio::runtime::Runtime,
    email: Arc<EmailLedger>,
    counts: Arc<WriteCounts>,
    traffic: Traffic,
    appended: u64,
}

impl Bench {
    /// Fills: 8 concurrent appends of 1,000 events, generated first.
    fn fill_round(&mut self) {
        let batches: Vec<(String, Vec<CanonicalEvent>)> = (0..8)
            .map(|_| {
                let b = self.traffic.next_batch(1_000);
                let parsed = b.parsed().expect("generated events parse");
                (b.tenant_name, parsed)
            })
            .collect();
        self.rt.block_on(async {
            let tasks: Vec<_> = batches
                .into_iter()
                .map(|(tenant, events)| {
                    let email = Arc::clone(&self.email);
                    tokio::spawn(mailledger_core::blocking_allowed(async move {
                        email.append(&tenant, events).await.expect("append");
                    }))
                })
                .collect();
            for t in tasks {
                t.await.expect("task");
            }
        });
        self.appended += 8_000;
    }

    fn fill_to(&mut self, target: u64) {
        let started = Instant::now();
        let mut next_report = self.appended + 1_000_000;
        while self.appended < target {
            self.fill_round();
            if self.appended >= next_report {
                eprintln!(
                    "growth: filled {:>5.1} M events in {:.0} s",
                    self.appended as f64 / 1e6,
                    started.elapsed().as_secs_f64()
                );
                next_report += 1_000_000;
            }
        }
    }

    /// Measures `window` events of sealed appends of 100 by `appenders`
    /// concurrent appenders, each through its own batches.
    fn measure(&mut self, dir: &Path, window: u64, appenders: usize) -> Measure {
        let batches = window.div_ceil(100) as usize;
        let mut queues: Vec<Vec<(String, Vec<CanonicalEvent>)>> = vec![Vec::new(); appenders];
        for i in 0..batches {
            let b = self.traffic.next_batch(100);
            let parsed = b.parsed().expect("generated events parse");
            queues[i % appenders].push((b.tenant_name, parsed));
        }
        let events = (batches * 100) as u64;
        let before = total(&self.counts);
        let log_before = self.counts.of(Space::Log);
        let written_before = write_bytes();
        let cpu_before = cpu_seconds();
        let start = Instant::now();
        self.rt.block_on(async {
            let tasks: Vec<_> = queues
                .into_iter()
                .map(|queue| {
                    let email = Arc::clone(&self.email);
                    tokio::spawn(mailledger_core::blocking_allowed(async move {
                        for (tenant, events) in queue {
                            email.append(&tenant, events).await.expect("append");
                        }
                    }))
                })
                .collect();
            for t in tasks {
                t.await.expect("task");
            }
        });
        let spent = start.elapsed();
        let cpu = cpu_seconds() - cpu_before;
        self.appended += events;
        let after = total(&self.counts).since(&before);
        let log = self.counts.of(Space::Log).since(&log_before);
        let written = write_bytes() - written_before;
        Measure {
            at: self.appended,
            rate: events as f64 / spent.as_secs_f64(),
            cpu_micros: cpu * 1e6 / events as f64,
            cores: cpu / spent.as_secs_f64(),
            keys: after.puts as f64 / events as f64,
            bytes: after.bytes as f64 / events as f64,
            scattered_keys: after.scattered_puts as f64 / events as f64,
            scattered_bytes: after.scattered_bytes as f64 / events as f64,
            amplification: written as f64 / log.bytes.max(1) as f64,
            disk: disk_bytes(dir) as f64 / self.appended as f64,
            spaces: self.counts.all().map(|(s, _)| s),
        }
    }
}

struct Measure {
    at: u64,
    rate: f64,
    /// CPU time per event, all threads, in microseconds.
    cpu_micros: f64,
    /// Cores busy on average while measuring.
    cores: f64,
    keys: f64,
    bytes: f64,
    scattered_keys: f64,
    scattered_bytes: f64,
    amplification: f64,
    disk: f64,
    spaces: [Space; 4],
}

fn print(m: &Measure) {
    println!(
        "{:>8.1} M {:>12.0} {:>8.1} {:>6.2} {:>10.2} {:>10.0} {:>10.2} {:>10.0} {:>8.2} {:>10.0}",
        m.at as f64 / 1e6,
        m.rate,
        m.cpu_micros,
        m.cores,
        m.keys,
        m.bytes,
        m.scattered_keys,
        m.scattered_bytes,
        m.amplification,
        m.disk
    );
}

fn main() {
    // `cargo bench` passes `--bench`; any filter argument is not ours.
    let first = env_or("MAILLEDGER_GROWTH_FIRST", 1_000_000);
    let last = env_or("MAILLEDGER_GROWTH_EVENTS", 20_000_000).max(first);
    let window = env_or("MAILLEDGER_GROWTH_WINDOW", 320_000);
    let appenders = env_or("MAILLEDGER_GROWTH_APPENDERS", 64).max(1) as usize;
    let parent =
        std::env::var_os("MAILLEDGER_GROWTH_DIR").map_or_else(std::env::temp_dir, Into::into);
    let data = tempfile::tempdir_in(&parent).expect("data dir");
    let keys = tempfile::tempdir_in(&parent).expect("keys dir");
    let fjall = Arc::new(mailledger_fjall::FjallStore::open(data.path()).expect("open fjall"));
    let store = CountingStore::new(Arc::clone(&fjall));
    let counts = store.counts();
    let log: Arc<dyn EventLog> = Arc::new(
        Ledger::open(store, LedgerConfig::new().durability(Durability::Sync)).expect("ledger"),
    );
    let ks = FileKeyStore::open(keys.path(), &SecretKey::generate().expect("key")).expect("keys");
    // Threads that may block, as the server's ingest runtime: one per core
    // unless `MAILLEDGER_GROWTH_THREADS` says otherwise.
    let threads = std::thread::available_parallelism().map_or(2, std::num::NonZero::get);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(env_or("MAILLEDGER_GROWTH_THREADS", threads as u64).max(1) as usize)
        .enable_all()
        .build()
        .expect("runtime");
    let mut bench = Bench {
        rt,
        email: Arc::new(EmailLedger::new(log, Arc::new(ks))),
        counts,
        traffic: Traffic::new(&TrafficConfig::default()),
        appended: 0,
    };
    eprintln!(
        "growth: filling to {first} events, measuring {window}, filling to {last}, measuring again"
    );
    bench.fill_to(first.saturating_sub(window));
    let early = bench.measure(data.path(), window, appenders);
    let early_memory = pinned(&fjall);
    bench.fill_to(last.saturating_sub(window));
    let late = bench.measure(data.path(), window, appenders);
    let late_memory = pinned(&fjall);
    println!(
        "\ngrowth: sealed in-process appends of 100 by {appenders} appenders on fjall, realistic traffic"
    );
    println!(
        "{:>10} {:>12} {:>8} {:>6} {:>10} {:>10} {:>10} {:>10} {:>8} {:>10}",
        "log",
        "events/s",
        "cpu µs/ev",
        "cores",
        "keys/ev",
        "bytes/ev",
        "scat k/ev",
        "scat b/ev",
        "w-amp",
        "disk b/ev"
    );
    print(&early);
    print(&late);
    println!(
        "ratio {:.2} (events/s with {:.1} M in the log / with {:.1} M); spaces counted: {:?}",
        late.rate / early.rate,
        late.at as f64 / 1e6,
        early.at as f64 / 1e6,
        late.spaces.map(Space::name)
    );
    for (m, memory) in [(&early, early_memory), (&late, late_memory)] {
        println!(
            "held outside the block cache with {:.1} M in the log (MiB, index + filters): {}",
            m.at as f64 / 1e6,
            memory
        );
    }
}

/// Each log keyspace's pinned index and filter blocks, in MiB.
fn pinned(fjall: &mailledger_fjall::FjallStore) -> String {
    fjall
        .memory()
        .iter()
        .map(|(name, m)| {
            format!(
                "{name} {:.1} + {:.1}",
                m.pinned_index as f64 / 1048576.0,
                m.pinned_filters as f64 / 1048576.0
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}
