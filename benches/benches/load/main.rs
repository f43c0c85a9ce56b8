//! Load: the release `mailledger serve` on a loopback port, durable (sync)
//! appends, fed the shared traffic model (`mailledger_core::traffic`: five
//! tenants of uneven size, each with its own key; random provider-style
//! ids; each message's events spread over time and batches) as canonical
//! events over HTTP/1.1 keep-alive in batches of 100 by concurrent clients
//! for a fixed time, while other clients ask for timelines
//! (`GET /v1/messages/{id}`) of messages sent in the warm-up. Its targets
//! (`TARGET_EVENTS_PER_SEC`, `TARGET_P99`) are the README's. Baseline,
//! measured in the same run before the server starts: the same traffic
//! (built as JSON, parsed, sealed, appended) through an in-process
//! `EmailLedger::append` on fjall with sync appends, batches of 100 from 64
//! tasks. After the run it reports the rate by minute, the server's peak
//! resident memory, and how long the stopped server takes to listen again
//! on the same data.
//!
//! ```sh
//! cargo bench -p mailledger-benches --bench load
//! ```
//!
//! The server is the release binary `target/release/mailledger`: the bench
//! runs `cargo build --release -p mailledger` first (a no-op when it is up
//! to date), or uses `MAILLEDGER_BIN` when set. Knobs (environment):
//! `MAILLEDGER_LOAD_SECS` (ingest time, default 30: long enough for the
//! stores to flush and merge their tables several times, which stalls
//! reads; much shorter runs meet few of those stalls; the storage targets
//! are judged on 1200, where the rate of the last five minutes is set
//! against the first five), `MAILLEDGER_LOAD_CLIENTS`
//! (concurrent ingest clients, default 16), `MAILLEDGER_LOAD_PACE` (events/s:
//! after the saturating phase, a second phase offers batches on a fixed
//! schedule at this rate, such as 51000, for `MAILLEDGER_LOAD_PACED_SECS`
//! (default the same time), with up to 64 requests in flight, and reports
//! the rate acknowledged within the schedule's window, how late sends fell
//! behind it and the latencies at that load; default 0, no such phase),
//! `MAILLEDGER_LOAD_QUERY_RATE`
//! (timeline queries per second, default 500), `MAILLEDGER_LOAD_BASELINE_SECS`
//! (default 5), `MAILLEDGER_LOAD_KEEP` (a directory to keep the server's
//! data in, for a look afterwards), `MAILLEDGER_LOAD_SERVER_LOG` (a file
//! for the last 200 lines the server wrote to stderr, up to its exit). The timeline readers run as `SCHED_FIFO`, or at nice -10,
//! where the system allows it ([`raise_priority`] says why). The server runs with the
//! per-key rate limit off
//! (`--rate-limit-per-second 0`) and its thread priorities on
//! (`--thread-priorities`: request threads as `SCHED_FIFO` where the system
//! allows it; `MAILLEDGER_LOAD_THREAD_PRIORITIES=false` turns them
//! off); everything else is the default
//! configuration (the memory budget too, unless `MAILLEDGER_MEMORY_BUDGET`
//! is set in the bench's environment, which the server inherits). Traffic goes to 127.0.0.1 only; the server is stopped with
//! SIGTERM at the end and killed if the bench fails. Client, server and disk
//! share the machine, so the figures are those of one box doing both sides.
#![allow(missing_docs)]

mod client;
mod phase;
mod report;
mod server;
mod stolen;
mod traffic;

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use mailledger_benches::{percentile, summary_header, summary_line};
use mailledger_core::Durability;
use mailledger_core::crypto::SecretKey;
use mailledger_core::email::EmailLedger;
use mailledger_core::keys::FileKeyStore;

use client::*;
use phase::*;
use report::*;
use server::*;
use traffic::*;

/// Events per request (and per in-process append).
const BATCH: usize = 100;
/// Batches ingested before the load; the messages they send are the ones
/// whose timelines are asked.
const WARM_BATCHES: u64 = 200;
/// In-process appenders of the baseline.
const BASELINE_TASKS: usize = 64;
const TARGET_EVENTS_PER_SEC: f64 = 50_000.0;
const TARGET_P99: Duration = Duration::from_millis(5);
/// Timeline queries this slow are listed with the time they began.
const SLOW: Duration = Duration::from_millis(50);

/// The server's data directory, removed at the end unless kept.
struct Root {
    path: PathBuf,
    remove_after: bool,
}

impl Root {
    fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for Root {
    fn drop(&mut self) {
        if self.remove_after {
            let _ = std::fs::remove_dir_all(&self.path);
        } else {
            eprintln!("load: the server's data is kept in {}", self.path.display());
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if !args.iter().any(|a| a == "--bench") || args.iter().any(|a| a == "--test") {
        println!("load: skipped (run it with `cargo bench -p mailledger-benches --bench load`)");
        return;
    }
    let secs: u64 = env_or("MAILLEDGER_LOAD_SECS", 30);
    let clients: usize = env_or("MAILLEDGER_LOAD_CLIENTS", 16);
    let query_rate: u64 = env_or("MAILLEDGER_LOAD_QUERY_RATE", 500);
    let baseline_secs: u64 = env_or("MAILLEDGER_LOAD_BASELINE_SECS", 5);
    let pace: f64 = env_or("MAILLEDGER_LOAD_PACE", 0.0);
    let paced_secs: u64 = env_or("MAILLEDGER_LOAD_PACED_SECS", secs);

    let bin = server_binary();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");

    eprintln!(
        "load: baseline: in-process EmailLedger::append, {BASELINE_TASKS} tasks, {baseline_secs} s"
    );
    let base_rate = baseline(&rt, baseline_secs);

    // The server's data: kept in MAILLEDGER_LOAD_KEEP (an empty or new
    // directory) when set, for a look afterwards; removed otherwise.
    let root = match std::env::var_os("MAILLEDGER_LOAD_KEEP") {
        Some(dir) => {
            let dir = PathBuf::from(dir);
            std::fs::create_dir_all(&dir).expect("MAILLEDGER_LOAD_KEEP");
            tempfile::Builder::new()
                .prefix("load-")
                .tempdir_in(dir)
                .expect("tempdir")
                .keep()
        }
        None => tempfile::tempdir_in(target_dir()).expect("tempdir").keep(),
    };
    let remove_after = std::env::var_os("MAILLEDGER_LOAD_KEEP").is_none();
    let root = Root {
        path: root,
        remove_after,
    };
    let mut server = Server::start(&bin, root.path(), true);
    assert!(server.admin_key.starts_with("mlk_"), "no first key printed");
    let keys = tenant_names()
        .iter()
        .map(|tenant| {
            create_tenant(&bin, root.path(), tenant);
            create_key(&bin, root.path(), tenant)
        })
        .collect();
    eprintln!(
        "load: {} at http://{}: {clients} clients x batches of {BATCH} for {secs} s, {query_rate} timeline queries/s; server thread priorities {}",
        bin.display(),
        server.addr,
        if server::thread_priorities() {
            "on"
        } else {
            "off"
        }
    );
    let mut target = Target {
        base: format!("http://{}", server.addr),
        metrics_base: format!("http://{}", server.metrics),
        keys,
        admin_key: server.admin_key.clone(),
        feed: Feed::new(),
        messages: Vec::new(),
    };
    let pid = server.child.id();
    let (idle, saturated, paced) = rt.block_on(async {
        let client = client();
        let idle = warm_up(&client, &mut target).await;
        let target = Arc::new(target);
        let saturated = phase(
            &client,
            &target,
            secs,
            Offer::Saturate { clients },
            query_rate,
            pid,
        )
        .await;
        let paced = if pace > 0.0 && paced_secs > 0 {
            eprintln!(
                "load: paced: {pace:.0} events/s offered for {paced_secs} s, up to {PACED_IN_FLIGHT} requests in flight"
            );
            Some(
                phase(
                    &client,
                    &target,
                    paced_secs,
                    Offer::Paced {
                        events_per_sec: pace,
                        in_flight: PACED_IN_FLIGHT,
                    },
                    query_rate,
                    pid,
                )
                .await,
            )
        } else {
            None
        };
        (idle, saturated, paced)
    });
    let peak_rss = server.peak_rss();
    let clean = server.stop();
    if !clean {
        let server_log = server.log.lock().map(|l| l.join("")).unwrap_or_default();
        eprintln!("server log:\n{server_log}");
    }
    if let Some(path) = std::env::var_os("MAILLEDGER_LOAD_SERVER_LOG") {
        // The last lines the server wrote, its exit's included (such as
        // the allocator's statistics with MIMALLOC_SHOW_STATS=1).
        std::thread::sleep(std::time::Duration::from_millis(500));
        let lines = server.log.lock().map(|l| l.clone()).unwrap_or_default();
        let text: String = lines
            .iter()
            .map(|l| format!("{}\n", l.trim_end()))
            .collect();
        if let Err(e) = std::fs::write(&path, text) {
            eprintln!("load: cannot write the server's log: {e}");
        }
    }
    drop(server);
    // A restart on the data the run left: how long until it listens.
    let restarted = Instant::now();
    let mut again = Server::start(&bin, root.path(), false);
    let restart = restarted.elapsed();
    again.stop();
    drop(again);

    summary_header(&format!(
        "load: POST /v1/events over loopback (release server, sync, batches of {BATCH}) \
         vs in-process EmailLedger::append (fjall, sync, batches of {BATCH}, {BASELINE_TASKS} tasks)"
    ));
    summary_line(
        &format!("load/http-ingest-b{BATCH}-c{clients}"),
        Some(saturated.events as f64 / saturated.elapsed.as_secs_f64()),
        Some(base_rate),
        Some(TARGET_EVENTS_PER_SEC),
        None,
    );
    if let Some(p) = &paced {
        summary_line(
            &format!("load/http-ingest-b{BATCH}-paced{pace:.0}"),
            Some(p.in_window() as f64 / paced_secs as f64),
            Some(base_rate),
            Some(TARGET_EVENTS_PER_SEC),
            None,
        );
    }
    summary_line(
        &format!("load/inprocess-append-b{BATCH}-w{BASELINE_TASKS}"),
        Some(base_rate),
        None,
        None,
        None,
    );

    let both = |m: &Measured, rate: f64| {
        let p99 = {
            let mut q = m.query_latency.clone();
            q.sort();
            percentile(&q, 0.99)
        };
        rate >= TARGET_EVENTS_PER_SEC
            && m.failures == 0
            && m.query_failures == 0
            && !m.query_latency.is_empty()
            && p99 < TARGET_P99
    };
    report(&saturated, Some(&idle), clean);
    report_growth(&saturated, peak_rss, restart, base_rate);
    let mut verdict = format!(
        "both targets (ingest >= {TARGET_EVENTS_PER_SEC:.0}/s and timeline p99 < {} ms at once): saturating {}",
        TARGET_P99.as_millis(),
        if both(
            &saturated,
            saturated.events as f64 / saturated.elapsed.as_secs_f64()
        ) {
            "PASS"
        } else {
            "MISS"
        }
    );
    if let Some(p) = &paced {
        report(p, None, clean);
        verdict.push_str(&format!(
            ", paced {}",
            if both(p, p.in_window() as f64 / paced_secs as f64) {
                "PASS"
            } else {
                "MISS"
            }
        ));
    }
    println!("\n{verdict}");
}
