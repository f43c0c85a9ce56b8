//! Projections: a full rebuild of all three (delivery log, suppressions,
//! analytics) from 1,000,000 sealed email events in a fjall log, into fresh
//! fjall stores, against a raw fjall scan of as many values of the same
//! size measured in the same run; and the timeline lookup of a message with
//! 20 events, decoded and decrypted, with its p99.
//!
//! `MAILLEDGER_BENCH_EVENTS` changes the log's size (default 1,000,000).
#![allow(missing_docs)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::Throughput;
use fjall::{Database, KeyspaceCreateOptions};
use mailledger_benches::{Row, summary};
use mailledger_core::crypto::SecretKey;
use mailledger_core::email::{EmailLedger, TenantPolicy, parse_event, rfc3339};
use mailledger_core::keys::FileKeyStore;
use mailledger_core::{Direction, Durability, TenantFilter};
use mailledger_projections::Projections;

const T0: i64 = 1_793_491_200_000_000;
const TYPES: [(&str, &str); 6] = [
    (
        "sent",
        r#""tags": ["welcome"], "campaign": "nov", "sending_domain": "mail.example.com", "subject": "Hello there""#,
    ),
    ("delivered", r#""mx_host": "mx.example.org", "tls": true"#),
    (
        "opened",
        r#""machine": false, "ip": "192.0.2.1", "user_agent": "Mozilla/5.0""#,
    ),
    (
        "clicked",
        r#""url": "https://example.com/offer?id=1", "bot": false"#,
    ),
    (
        "bounced",
        r#""class": "soft", "status": "4.2.2", "diagnostic": "452 mailbox full""#,
    ),
    ("complained", r#""feedback_type": "abuse""#),
];

fn events() -> u64 {
    std::env::var("MAILLEDGER_BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000)
}

fn line(i: u64, message: &str, to: &str, at: i64, ty: usize) -> String {
    let (t, extra) = TYPES[ty];
    format!(
        r#"{{"id": "{}", "type": "{t}", "message_id": "{message}", "recipient": "{to}", "occurred_at": "{}", {extra}}}"#,
        uuid::Uuid::from_u128(0x0193_0000_0000_7000_8000_0000_0000_0000 | u128::from(i)),
        rfc3339(at),
    )
}

fn main() {
    let n = events();
    let mut c = mailledger_benches::criterion();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let log = mailledger_benches::ledger("fjall", &dir.path().join("log"), Durability::Buffered);
    let keys = Arc::new(
        FileKeyStore::open(
            &dir.path().join("keys"),
            &SecretKey::generate().expect("kek"),
        )
        .expect("keys"),
    );
    let email = Arc::new(EmailLedger::new(Arc::clone(&log), keys));
    let started = Instant::now();
    rt.block_on(async {
        email
            .set_policy(
                "default",
                TenantPolicy {
                    keep_subjects: true,
                    keep_engagement_details: true,
                    ..TenantPolicy::default()
                },
            )
            .await
            .expect("policy");
        // Messages of 5 events (a type each, in order), 50,000 contacts.
        let mut batch = Vec::with_capacity(1000);
        for i in 0..n {
            let m = i / 5;
            let to = format!("user{}@example.org", m % 50_000);
            let at = T0 + i64::try_from(i).unwrap_or(0) * 1_000;
            batch.push(
                parse_event(&line(i, &format!("m{m}"), &to, at, (i % 5) as usize)).expect("event"),
            );
            if batch.len() == 1000 {
                email
                    .append("default", std::mem::take(&mut batch))
                    .await
                    .expect("append");
            }
        }
        // The timeline benchmark's message: 20 events.
        for j in 0..20u64 {
            batch.push(
                parse_event(&line(
                    n + j,
                    "timeline",
                    "tl@example.org",
                    T0 + i64::try_from(j).unwrap_or(0),
                    (j % 6) as usize,
                ))
                .expect("event"),
            );
        }
        email.append("default", batch).await.expect("append");
        log.sync().await.expect("sync");
    });
    let head = log.head();
    eprintln!("wrote {head} events in {:.1?}", started.elapsed());

    // The baseline holds each record of this log as a raw fjall value: its
    // payload (ciphertext and all), type, stream, id and hashes, so it scans
    // the same bytes the rebuild reads.
    let raw_dir = tempfile::tempdir().expect("tempdir");
    let db = Database::builder(raw_dir.path()).open().expect("fjall");
    let ks = db
        .keyspace("raw", KeyspaceCreateOptions::default)
        .expect("keyspace");
    let mut stored = 0usize;
    rt.block_on(async {
        let mut from = 0;
        while from < head {
            let b = log
                .read_all(&TenantFilter::All, from, Direction::Forward, 10_000)
                .await
                .expect("read");
            let mut wb = db.batch();
            for r in &b.records {
                let value = [
                    r.payload.as_slice(),
                    r.event_type.as_bytes(),
                    r.stream.as_bytes(),
                    r.event_id.as_bytes(),
                    &r.prev_hash,
                    &r.hash,
                ]
                .concat();
                stored += value.len();
                wb.insert(&ks, r.position.to_be_bytes(), value);
            }
            wb.commit().expect("commit");
            from = b.next.expect("next");
        }
    });
    let mean_len = stored / usize::try_from(head).unwrap_or(1).max(1);

    let mut g = c.benchmark_group("projections");
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(100))
        .measurement_time(Duration::from_secs(20))
        .throughput(Throughput::Elements(head));
    // CPU seconds and wall seconds of the timed rebuilds: how many of the
    // machine's cores a rebuild keeps busy.
    let mut rebuild_cpu = (0.0f64, 0.0f64, 0u32);
    g.bench_function("rebuild-all", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let pdir = tempfile::tempdir().expect("tempdir");
                let p = Projections::open(pdir.path()).expect("projections");
                let cpu = mailledger_benches::cpu_secs("self");
                let t = Instant::now();
                rt.block_on(p.rebuild(log.as_ref(), &[], None))
                    .expect("rebuild");
                let took = t.elapsed();
                if let Some((c0, c1)) = cpu.zip(mailledger_benches::cpu_secs("self")) {
                    rebuild_cpu.0 += c1 - c0;
                    rebuild_cpu.1 += took.as_secs_f64();
                    rebuild_cpu.2 += 1;
                }
                total += took;
                assert!(p.status(head).iter().all(|s| s.checkpoint >= head));
            }
            total
        });
    });
    g.bench_function("read-and-decode", |b| {
        b.iter(|| {
            rt.block_on(async {
                let mut from = 0;
                let mut n = 0u64;
                while from < head {
                    let batch = log
                        .read_all(&TenantFilter::All, from, Direction::Forward, 10_000)
                        .await
                        .expect("read");
                    for r in &batch.records {
                        mailledger_projections::Input::decode(r).expect("decode");
                    }
                    n += batch.records.len() as u64;
                    from = batch.next.expect("next");
                }
                n
            })
        });
    });
    g.bench_function("rebuild-all-in-memory", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let p = Projections::in_memory();
                let t = Instant::now();
                rt.block_on(p.rebuild(log.as_ref(), &[], None))
                    .expect("rebuild");
                total += t.elapsed();
            }
            total
        });
    });
    g.bench_function("raw-fjall-scan", |b| {
        b.iter(|| {
            let mut count = 0u64;
            let mut bytes = 0usize;
            for guard in ks.iter() {
                let (_, v) = guard.into_inner().expect("entry");
                bytes += v.len();
                count += 1;
            }
            assert!(count >= head);
            bytes
        });
    });
    g.finish();

    // Timeline lookups.
    let pdir = tempfile::tempdir().expect("tempdir");
    let p = Projections::open(pdir.path()).expect("projections");
    rt.block_on(p.catch_up(log.as_ref())).expect("catch up");
    let mut t = c.benchmark_group("timeline");
    t.sample_size(50).throughput(Throughput::Elements(1));
    // Lookups run as the API's handler runs them: on a thread that may
    // block (`on_blocking_thread`), so the log's reads run in place.
    let lookup = || {
        mailledger_core::on_blocking_thread(|| {
            rt.block_on(p.message(&email, "default", "timeline"))
        })
    };
    t.bench_function("lookup-20-events", |b| {
        b.iter(|| {
            let v = lookup().expect("lookup").expect("message");
            assert_eq!(v.timeline.len(), 20);
            v
        });
    });
    t.finish();
    let mut samples: Vec<Duration> = (0..20_000)
        .map(|_| {
            let s = Instant::now();
            let v = lookup().expect("lookup");
            let d = s.elapsed();
            assert!(v.is_some_and(|v| v.timeline.len() == 20));
            d
        })
        .collect();
    samples.sort_unstable();
    let pct = |q: f64| mailledger_benches::percentile(&samples, q);
    c.final_summary();
    summary(
        &format!(
            "projections: full rebuild of all three from {head} events vs a raw fjall scan of the same {head} records (mean {mean_len} bytes)"
        ),
        &[Row {
            case: ("projections".into(), "rebuild-all".into()),
            elements: head as f64,
            baseline: Some(("projections".into(), "raw-fjall-scan".into(), head as f64)),
            target: Some(500_000.0),
            min_ratio: None,
        }],
    );
    if rebuild_cpu.1 > 0.0 {
        println!(
            "rebuild CPU: {:.2} µs per event over the timed rebuilds, {:.2} of {} cores busy",
            rebuild_cpu.0 * 1e6 / (f64::from(rebuild_cpu.2) * head as f64),
            rebuild_cpu.0 / rebuild_cpu.1,
            std::thread::available_parallelism().map_or(0, std::num::NonZero::get),
        );
    }
    let p99 = pct(0.99);
    println!(
        "timeline lookup of a message with 20 events, decoded and decrypted (20,000 lookups): p50 {:.1?}, p99 {:.1?}, max {:.1?}: {} target p99 <= 200 µs",
        pct(0.5),
        p99,
        samples[samples.len() - 1],
        if p99 <= Duration::from_micros(200) {
            "PASS"
        } else {
            "MISS"
        },
    );
}
