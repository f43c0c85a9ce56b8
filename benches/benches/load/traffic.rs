//! The events the bench sends and the in-process baseline it measures first.

use super::*;

pub(crate) fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

// ------------------------------------------------------------------ events

/// A fresh event id: a UUIDv7 of the current time whose other bits count
/// up (each run starts a fresh log, so ids need only differ within it).
/// `Uuid::now_v7` asks the kernel for randomness once per id, which was a
/// tenth of this bench's own CPU, taken from the server it shares the
/// cores with.
pub(crate) fn event_id() -> uuid::Uuid {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut bits = [0u8; 10];
    bits[2..].copy_from_slice(&COUNTER.fetch_add(1, Ordering::Relaxed).to_be_bytes());
    let millis = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    uuid::Builder::from_unix_timestamp_millis(millis, &bits).into_uuid()
}

/// One canonical event.
pub(crate) fn event(kind: &str, message: &str, contact: u64, second: u64) -> String {
    let id = event_id();
    let (mm, ss) = ((second / 60) % 60, second % 60);
    let extra = if kind == "delivered" {
        r#","smtp_response":"250 2.0.0 OK queued as 4Bq1x2","mx_host":"mx.example.org""#
    } else {
        ""
    };
    format!(
        r#"{{"id":"{id}","type":"{kind}","message_id":"{message}","recipient":"c{contact}@example.org","occurred_at":"2026-11-22T10:{mm:02}:{ss:02}Z","sending_domain":"mail.example.com","tags":["load"],"campaign":"bench"{extra}}}"#
    )
}

/// The events of one batch: `BATCH / 2` messages, each `sent` then
/// `delivered`, named `{prefix}-{n}-{i}`, recipients spread over
/// [`CONTACTS`].
pub(crate) fn batch_events(prefix: &str, n: u64) -> Vec<String> {
    let mut out = Vec::with_capacity(BATCH);
    for i in 0..(BATCH / 2) as u64 {
        let message = format!("{prefix}-{n}-{i}");
        let contact = (n * (BATCH as u64 / 2) + i) % CONTACTS;
        out.push(event("sent", &message, contact, n + i));
        out.push(event("delivered", &message, contact, n + i + 1));
    }
    out
}

/// The request body of one batch, `{"events": [...]}`, built in one buffer.
pub(crate) fn batch_body(prefix: &str, n: u64) -> String {
    let mut body = String::with_capacity(BATCH * 400);
    body.push_str(r#"{"events":["#);
    for (i, e) in batch_events(prefix, n).iter().enumerate() {
        if i > 0 {
            body.push(',');
        }
        body.push_str(e);
    }
    body.push_str("]}");
    body
}

/// One batch, parsed as the server parses it.
pub(crate) fn parse_batch(prefix: &str, n: u64) -> Vec<CanonicalEvent> {
    batch_events(prefix, n)
        .iter()
        .map(|e| parse_event(e).expect("event"))
        .collect()
}

// ---------------------------------------------------------------- baseline

/// In-process appends of the same events: events per second.
pub(crate) fn baseline(rt: &tokio::runtime::Runtime, secs: u64) -> f64 {
    let data = tempfile::tempdir_in(target_dir()).expect("tempdir");
    let keys = tempfile::tempdir_in(target_dir()).expect("tempdir");
    let log = mailledger_benches::ledger("fjall", data.path(), Durability::Sync);
    let ks = FileKeyStore::open(keys.path(), &SecretKey::generate().expect("key")).expect("keys");
    let email = Arc::new(EmailLedger::new(Arc::clone(&log), Arc::new(ks)));
    // The contacts' keys exist before measuring, as on the server side.
    rt.block_on(async {
        for n in 0..CONTACTS / (BATCH as u64 / 2) {
            email
                .append("default", parse_batch("w", n))
                .await
                .expect("warm-up append");
        }
    });
    let next = Arc::new(AtomicU64::new(0));
    let events = Arc::new(AtomicU64::new(0));
    let run = Duration::from_secs(secs);
    let start = Instant::now();
    rt.block_on(async {
        let tasks: Vec<_> = (0..BASELINE_TASKS)
            .map(|_| {
                let (email, next, events) =
                    (Arc::clone(&email), Arc::clone(&next), Arc::clone(&events));
                tokio::spawn(async move {
                    while start.elapsed() < run {
                        let n = next.fetch_add(1, Ordering::Relaxed);
                        let batch = parse_batch("b", n);
                        email.append("default", batch).await.expect("append");
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
