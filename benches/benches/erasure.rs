//! Erasure latency for contacts with 10 and with 10,000 events: it must not
//! grow with history (it never scans or rewrites the log), p99 ≤ 10 ms.
#![allow(missing_docs)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::BatchSize;
use mailledger_benches::ledger;
use mailledger_core::Durability;
use mailledger_core::crypto::{Personal, SecretKey};
use mailledger_core::email::{CanonicalEvent, ContactRef, EmailLedger, parse_event};
use mailledger_core::keys::FileKeyStore;

fn event(contact: &str, n: usize) -> CanonicalEvent {
    parse_event(&format!(
        r#"{{"id": "{}", "type": "delivered", "recipient": "{contact}@example.org", "message_id": "m-{contact}-{n}", "occurred_at": "2026-11-22T10:00:00Z"}}"#,
        uuid::Uuid::now_v7()
    ))
    .expect("event")
}

struct Setup {
    email: Arc<EmailLedger>,
    _dirs: (tempfile::TempDir, tempfile::TempDir),
}

fn setup() -> Setup {
    let data = tempfile::tempdir().expect("tempdir");
    let keys = tempfile::tempdir().expect("tempdir");
    let log = ledger("fjall", data.path(), Durability::Sync);
    let ks = FileKeyStore::open(keys.path(), &SecretKey::generate().expect("key")).expect("keys");
    Setup {
        email: Arc::new(EmailLedger::new(log, Arc::new(ks))),
        _dirs: (data, keys),
    }
}

async fn populate(email: &EmailLedger, contact: &str, events: usize) {
    let mut n = 0;
    while n < events {
        let batch = (n..events.min(n + 1000))
            .map(|i| event(contact, i))
            .collect();
        email.append("default", batch).await.expect("append");
        n = events.min(n + 1000);
    }
}

async fn erase(email: &EmailLedger, contact: &str) -> Duration {
    let start = Instant::now();
    let r = email
        .erase(
            "default",
            ContactRef::Address(Personal::new(format!("{contact}@example.org"))),
            &format!("req-{contact}"),
        )
        .await
        .expect("erase");
    let took = start.elapsed();
    assert!(r.events_unreadable > 0);
    took
}

fn main() {
    let mut c = mailledger_benches::criterion();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let s = setup();
    let mut g = c.benchmark_group("erasure");
    g.sample_size(20).measurement_time(Duration::from_secs(3));
    let mut next = 0u64;
    g.bench_function("contact-with-10-events", |b| {
        b.iter_batched(
            || {
                next += 1;
                let contact = format!("c10-{next}");
                rt.block_on(populate(&s.email, &contact, 10));
                contact
            },
            |contact| rt.block_on(erase(&s.email, &contact)),
            BatchSize::PerIteration,
        );
    });
    g.finish();
    c.final_summary();

    // Percentiles need every sample, which criterion does not expose: the
    // same erasure, timed one by one, for a pool of contacts of each size.
    let mut results = Vec::new();
    for (events, contacts) in [(10usize, 200usize), (10_000, 30)] {
        for i in 0..contacts {
            rt.block_on(populate(&s.email, &format!("p{events}-{i}"), events));
        }
        let mut samples: Vec<Duration> = (0..contacts)
            .map(|i| rt.block_on(erase(&s.email, &format!("p{events}-{i}"))))
            .collect();
        samples.sort();
        results.push((
            events,
            contacts,
            mailledger_benches::percentile(&samples, 0.5),
            mailledger_benches::percentile(&samples, 0.99),
        ));
    }
    println!("\n== erasure latency (fjall, sync), measured in this run ==");
    for (events, contacts, p50, p99) in &results {
        println!(
            "contact with {events:>6} events: p50 {:>8.3} ms  p99 {:>8.3} ms  ({contacts} erasures)  {} p99 <= 10 ms",
            p50.as_secs_f64() * 1e3,
            p99.as_secs_f64() * 1e3,
            if p99.as_millis() <= 10 {
                "PASS"
            } else {
                "MISS"
            }
        );
    }
    let growth = results[1].3.as_secs_f64() / results[0].3.as_secs_f64();
    println!("p99 ratio 10,000 events / 10 events: {growth:.2} (no growth with history is ~1)");
}
