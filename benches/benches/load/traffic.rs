//! The events the bench sends, from the shared traffic model
//! (`mailledger_core::traffic`: uneven tenants, provider-style random ids,
//! each message's events spread over time and batches), and the in-process
//! baseline it measures first.

use mailledger_core::email::CanonicalEvent;
use mailledger_core::traffic::{Traffic, TrafficConfig};

use super::*;

pub(crate) fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The traffic every part of the run draws from (the baseline with a
/// generator of its own, so both see the same mix).
pub(crate) fn traffic_config() -> TrafficConfig {
    TrafficConfig::default()
}

/// The tenants' names, in the generator's order.
pub(crate) fn tenant_names() -> Vec<String> {
    traffic_config()
        .tenants
        .into_iter()
        .map(|(name, _)| name)
        .collect()
}

/// One generator shared by every ingest client: each takes the next batch.
pub(crate) struct Feed(Mutex<Traffic>);

impl Feed {
    pub(crate) fn new() -> Self {
        Self(Mutex::new(Traffic::new(&traffic_config())))
    }

    /// The next batch of [`BATCH`] events: its tenant (an index into
    /// [`tenant_names`]) and the request body.
    pub(crate) fn next_body(&self) -> (usize, String) {
        let batch = self.0.lock().expect("feed").next_batch(BATCH);
        (batch.tenant, batch.body())
    }
}

/// The messages sent in a request body (the `message_id` of each `sent`),
/// whose timelines the readers ask for.
pub(crate) fn sent_messages(body: &str) -> Vec<String> {
    let v: serde_json::Value = serde_json::from_str(body).expect("generated body");
    v["events"]
        .as_array()
        .expect("events")
        .iter()
        .filter(|e| e["type"] == "sent")
        .filter_map(|e| e["message_id"].as_str().map(str::to_owned))
        .collect()
}

// ---------------------------------------------------------------- baseline

/// The next batch of `traffic`, parsed as the server parses a request (the
/// lock is held only to generate it): its tenant's name and its events.
fn next_parsed(traffic: &Mutex<Traffic>) -> (String, Vec<CanonicalEvent>) {
    let batch = traffic.lock().expect("traffic").next_batch(BATCH);
    let parsed = batch.parsed().expect("generated events parse");
    (batch.tenant_name, parsed)
}

/// In-process appends of the same traffic, after the same warm-up:
/// events per second. Each task generates and parses its batch inside the
/// clock, as the server parses each request.
pub(crate) fn baseline(rt: &tokio::runtime::Runtime, secs: u64) -> f64 {
    let data = tempfile::tempdir_in(target_dir()).expect("tempdir");
    let keys = tempfile::tempdir_in(target_dir()).expect("tempdir");
    let log = mailledger_benches::ledger("fjall", data.path(), Durability::Sync);
    let ks = FileKeyStore::open(keys.path(), &SecretKey::generate().expect("key")).expect("keys");
    let email = Arc::new(EmailLedger::new(Arc::clone(&log), Arc::new(ks)));
    let traffic = Arc::new(Mutex::new(Traffic::new(&traffic_config())));
    rt.block_on(async {
        for _ in 0..WARM_BATCHES {
            let (tenant, events) = next_parsed(&traffic);
            email.append(&tenant, events).await.expect("warm-up append");
        }
    });
    let events = Arc::new(AtomicU64::new(0));
    let run = Duration::from_secs(secs);
    let start = Instant::now();
    rt.block_on(async {
        let tasks: Vec<_> = (0..BASELINE_TASKS)
            .map(|_| {
                let (email, traffic, events) = (
                    Arc::clone(&email),
                    Arc::clone(&traffic),
                    Arc::clone(&events),
                );
                tokio::spawn(async move {
                    while start.elapsed() < run {
                        let (tenant, batch) = next_parsed(&traffic);
                        email.append(&tenant, batch).await.expect("append");
                        events.fetch_add(BATCH as u64, Ordering::Relaxed);
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.expect("task");
        }
    });
    let elapsed = start.elapsed().as_secs_f64();
    drop(email);
    drop(log);
    events.load(Ordering::Relaxed) as f64 / elapsed
}
