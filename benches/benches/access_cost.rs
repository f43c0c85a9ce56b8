//! The cost of access records: timeline p99 and ingest rate with them and
//! without, on the same log in the same run.
//!
//! The API in process (`mailledger_api::router`) over a fjall log with
//! synced appends and the projections fed by their runner. Two states
//! share the log, the keys and the projections; one leaves an access
//! record of every timeline read, the other none. Phases alternate as
//! without, with, with, without, twice (so the log's growth through the
//! run weighs on both alike; `MAILLEDGER_ACCESS_PHASE_SECS` each, default
//! 10): 8 tasks post batches of 100 events from the traffic model
//! while one asks for timelines of messages already in the ledger, 500 a
//! second. Prints each phase, then the ratios with/without of ingest rate
//! and of timeline p99 (target: at least 0.95 for both, ingest as
//! with/without and p99 as without/with).
//!
//! Run: `cargo bench -p mailledger-benches --bench access_cost`.
#![allow(missing_docs)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use mailledger_api::{AccessStore, AppState, Limits, router};
use mailledger_benches as _;
use mailledger_core::crypto::SecretKey;
use mailledger_core::email::EmailLedger;
use mailledger_core::keys::FileKeyStore;
use mailledger_core::residency::Jurisdiction;
use mailledger_core::traffic::{Traffic, TrafficConfig};
use mailledger_core::{EventLog, Ledger, LedgerConfig};
use mailledger_projections::Projections;
use tokio::sync::Mutex;
use tower::ServiceExt;

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

async fn send(app: &Router, req: Request<Body>) -> StatusCode {
    let res = app.clone().oneshot(req).await.expect("router");
    let status = res.status();
    let _ = axum::body::to_bytes(res.into_body(), usize::MAX).await;
    status
}

/// Message ids of the events in a batch body.
fn message_ids(body: &str) -> Vec<String> {
    let v: serde_json::Value = serde_json::from_str(body).expect("batch JSON");
    v["events"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["message_id"].as_str().map(str::to_owned))
        .collect()
}

struct Phase {
    events_per_sec: f64,
    p99_ms: f64,
    queries: usize,
}

async fn phase(
    app: &Router,
    key: &str,
    traffic: &Arc<Mutex<Traffic>>,
    ids: &Arc<Mutex<Vec<String>>>,
    secs: u64,
) -> Phase {
    let stop = Arc::new(AtomicBool::new(false));
    let ingested = Arc::new(AtomicU64::new(0));
    let mut writers = Vec::new();
    for _ in 0..8 {
        let (app, key, traffic, ids) = (app.clone(), key.to_owned(), traffic.clone(), ids.clone());
        let (stop, ingested) = (stop.clone(), ingested.clone());
        writers.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let body = traffic.lock().await.next_batch(100).body();
                let found = message_ids(&body);
                let req = Request::post("/v1/events")
                    .header(header::AUTHORIZATION, format!("Bearer {key}"))
                    .header(header::CONTENT_TYPE, "application/json")
                    .body(Body::from(body))
                    .expect("request");
                assert_eq!(send(&app, req).await, StatusCode::OK);
                ingested.fetch_add(100, Ordering::Relaxed);
                let mut ids = ids.lock().await;
                if ids.len() < 100_000 {
                    ids.extend(found);
                }
            }
        }));
    }
    let started = Instant::now();
    let mut latencies = Vec::new();
    let mut tick = tokio::time::interval(Duration::from_millis(2));
    let mut n = 0u64;
    while started.elapsed() < Duration::from_secs(secs) {
        tick.tick().await;
        let id = {
            let ids = ids.lock().await;
            if ids.is_empty() {
                continue;
            }
            // The older half: messages the projections have applied.
            n = n.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            ids[(n >> 33) as usize % ids.len().div_ceil(2)].clone()
        };
        let uri = format!("/v1/messages/{}", percent(&id));
        let req = Request::get(uri)
            .header(header::AUTHORIZATION, format!("Bearer {key}"))
            .body(Body::empty())
            .expect("request");
        let t = Instant::now();
        let status = send(app, req).await;
        latencies.push(t.elapsed());
        assert!(
            status == StatusCode::OK || status == StatusCode::NOT_FOUND,
            "{status}"
        );
    }
    let elapsed = started.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.await.expect("writer");
    }
    latencies.sort_unstable();
    let p99 = latencies
        .get(latencies.len() * 99 / 100)
        .copied()
        .unwrap_or_default();
    Phase {
        events_per_sec: ingested.load(Ordering::Relaxed) as f64 / elapsed,
        p99_ms: p99.as_secs_f64() * 1000.0,
        queries: latencies.len(),
    }
}

/// A message id as a path segment.
fn percent(id: &str) -> String {
    id.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn main() {
    let secs = env_or("MAILLEDGER_ACCESS_PHASE_SECS", 10);
    let dir = tempfile::tempdir().expect("tempdir");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let store = mailledger_fjall::FjallStore::open(&dir.path().join("log")).expect("fjall");
        let log: Arc<dyn EventLog> =
            Arc::new(Ledger::open(store, LedgerConfig::new()).expect("ledger"));
        let kek = SecretKey::generate().expect("kek");
        let keys = FileKeyStore::open(&dir.path().join("keys"), &kek).expect("keys");
        let email = Arc::new(EmailLedger::new(Arc::clone(&log), Arc::new(keys)));
        let access = Arc::new(AccessStore::open(&dir.path().join("data"), &kek).expect("access"));
        let (_, key) = access
            .bootstrap(&[Jurisdiction::EU])
            .expect("bootstrap")
            .expect("first key");
        let projections = Arc::new(Projections::in_memory());
        let (_stop, stopped) = tokio::sync::watch::channel(false);
        let _runner = projections
            .spawn_runner(Arc::clone(&log), stopped)
            .expect("runner");
        let limits = Limits {
            rate_limit_per_second: 0.0,
            ..Limits::default()
        };
        let plain = AppState::new(Arc::clone(&email), Arc::clone(&access))
            .with_limits(limits.clone())
            .with_projections(Arc::clone(&projections));
        let recorded = plain
            .clone()
            .with_access_log(mailledger_audit::AccessLog::start(Arc::clone(&log)));
        let (without, with) = (router(plain), router(recorded));
        let traffic = Arc::new(Mutex::new(Traffic::new(&TrafficConfig {
            tenants: vec![("default".into(), 1)],
            ..TrafficConfig::default()
        })));
        let ids = Arc::new(Mutex::new(Vec::new()));
        // Warm up: a ledger with messages to read.
        phase(&without, key.as_str(), &traffic, &ids, 3).await;
        let mut results: [Vec<Phase>; 2] = [Vec::new(), Vec::new()];
        // A B B A A B B A: the log grows through the run, so each side
        // meets early and late phases alike.
        for round in 0..8 {
            let (name, app, slot) = if matches!(round % 4, 0 | 3) {
                ("without", &without, 0)
            } else {
                ("with", &with, 1)
            };
            let p = phase(app, key.as_str(), &traffic, &ids, secs).await;
            println!(
                "access_cost: {name} access records: ingest {:.0} events/s, timeline p99 {:.2} ms ({} queries)",
                p.events_per_sec, p.p99_ms, p.queries
            );
            results[slot].push(p);
        }
        let mean = |ps: &[Phase], f: fn(&Phase) -> f64| ps.iter().map(f).sum::<f64>() / ps.len() as f64;
        let ingest = mean(&results[1], |p| p.events_per_sec) / mean(&results[0], |p| p.events_per_sec);
        let p99 = mean(&results[0], |p| p.p99_ms) / mean(&results[1], |p| p.p99_ms);
        println!(
            "access_cost: with/without ingest {ingest:.2}x; timeline p99 without/with {p99:.2}x (target >= 0.95 each)"
        );
    });
}
