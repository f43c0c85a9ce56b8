//! Append throughput of the ledger against raw fjall writes of the same
//! bytes with the same batching and concurrency, measured in the same run;
//! and sealed email appends against unsealed appends of the same size.
#![allow(missing_docs)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput};
use fjall::{Database, KeyspaceCreateOptions, PersistMode};
use mailledger_benches::{Row, frame_len, ledger, record, summary};
use mailledger_core::crypto::SecretKey;
use mailledger_core::email::{CanonicalEvent, EmailLedger, message_stream, parse_event};
use mailledger_core::keys::FileKeyStore;
use mailledger_core::{Durability, ExpectedVersion, NewEvent, StreamAppend};

const BATCHES: [usize; 3] = [1, 100, 1000];
const APPENDERS: [usize; 2] = [1, 64];

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

fn durability_name(d: Durability) -> &'static str {
    match d {
        Durability::Sync => "sync",
        Durability::Buffered => "buffered",
    }
}

fn case(d: Durability, batch: usize, appenders: usize) -> String {
    format!("{}-b{batch}-w{appenders}", durability_name(d))
}

/// The backends measured: `objects` is the object_store backend on local
/// segment files.
const BACKENDS: [&str; 3] = ["fjall", "sled", "objects"];

/// Cases not run: batches of 1,000 but on fjall, and buffered appends on
/// segment files, where every commit is durable anyway.
fn skipped(backend: &str, d: Durability, batch: usize) -> bool {
    (backend != "fjall" && batch == 1000) || (backend == "objects" && d == Durability::Buffered)
}

/// Rounds per iteration: keeps one iteration near 64 fsyncs or 64k records.
fn rounds(d: Durability, batch: usize, appenders: usize) -> usize {
    match (d, batch * appenders) {
        (Durability::Sync, n) if n < 64 => 16,
        (_, n) if n >= 64_000 => 1,
        (_, n) => (6_400 / n).clamp(1, 64),
    }
}

fn bench_ledger(c: &mut Criterion, rt: &tokio::runtime::Runtime) {
    for backend in BACKENDS {
        let mut g = c.benchmark_group(format!("append-{backend}"));
        g.sample_size(10)
            .warm_up_time(Duration::from_millis(500))
            .measurement_time(Duration::from_secs(3));
        for d in [Durability::Sync, Durability::Buffered] {
            if skipped(backend, d, 0) {
                continue;
            }
            let dir = tempfile::tempdir().expect("tempdir");
            let log = ledger(backend, dir.path(), d);
            let counter = Arc::new(AtomicU64::new(0));
            for batch in BATCHES {
                for appenders in APPENDERS {
                    if skipped(backend, d, batch) {
                        continue;
                    }
                    let r = rounds(d, batch, appenders);
                    g.throughput(Throughput::Elements((batch * appenders * r) as u64));
                    g.bench_function(
                        BenchmarkId::from_parameter(case(d, batch, appenders)),
                        |b| {
                            b.iter_custom(|iters| {
                                let start = Instant::now();
                                for _ in 0..iters {
                                    rt.block_on(async {
                                        let tasks: Vec<_> = (0..appenders)
                                            .map(|w| {
                                                let log = Arc::clone(&log);
                                                let counter = Arc::clone(&counter);
                                                tokio::spawn(async move {
                                                    for _ in 0..r {
                                                        let events: Vec<NewEvent> = (0..batch)
                                                            .map(|_| {
                                                                record(counter.fetch_add(
                                                                    1,
                                                                    Ordering::Relaxed,
                                                                ))
                                                            })
                                                            .collect();
                                                        log.append_to_stream(
                                                            "default",
                                                            &format!("message-{w}"),
                                                            ExpectedVersion::Any,
                                                            events,
                                                        )
                                                        .await
                                                        .expect("append");
                                                    }
                                                })
                                            })
                                            .collect();
                                        for t in tasks {
                                            t.await.expect("task");
                                        }
                                    });
                                }
                                start.elapsed()
                            });
                        },
                    );
                }
            }
        }
        g.finish();
    }
}

fn bench_raw_fjall(c: &mut Criterion, rt: &tokio::runtime::Runtime) {
    let value = vec![7u8; frame_len()];
    let mut g = c.benchmark_group("append-raw-fjall");
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    for d in [Durability::Sync, Durability::Buffered] {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = Database::builder(dir.path()).open().expect("fjall");
        let ks = db
            .keyspace("log", KeyspaceCreateOptions::default)
            .expect("keyspace");
        let next = Arc::new(AtomicU64::new(0));
        for batch in BATCHES {
            for appenders in APPENDERS {
                let r = rounds(d, batch, appenders);
                g.throughput(Throughput::Elements((batch * appenders * r) as u64));
                g.bench_function(
                    BenchmarkId::from_parameter(case(d, batch, appenders)),
                    |b| {
                        b.iter_custom(|iters| {
                            let start = Instant::now();
                            for _ in 0..iters {
                                rt.block_on(async {
                                    let tasks: Vec<_> = (0..appenders)
                                        .map(|_| {
                                            let (db, ks, next, value) = (
                                                db.clone(),
                                                ks.clone(),
                                                Arc::clone(&next),
                                                value.clone(),
                                            );
                                            tokio::task::spawn_blocking(move || {
                                                for _ in 0..r {
                                                    let mut wb = db.batch();
                                                    if d == Durability::Sync {
                                                        wb = wb.durability(Some(
                                                            PersistMode::SyncData,
                                                        ));
                                                    }
                                                    for _ in 0..batch {
                                                        let k =
                                                            next.fetch_add(1, Ordering::Relaxed);
                                                        wb.insert(
                                                            &ks,
                                                            k.to_be_bytes(),
                                                            value.as_slice(),
                                                        );
                                                    }
                                                    wb.commit().expect("commit");
                                                }
                                            })
                                        })
                                        .collect();
                                    for t in tasks {
                                        t.await.expect("task");
                                    }
                                });
                            }
                            start.elapsed()
                        });
                    },
                );
            }
        }
    }
    g.finish();
}

/// One canonical email event with every personal field this tenant keeps.
fn email_event(contact: u64, n: u64) -> CanonicalEvent {
    parse_event(&format!(
        r#"{{"id": "{}", "type": "delivered", "recipient": "contact-{contact}@example.org", "message_id": "m-{contact}-{n}", "occurred_at": "2026-11-22T10:00:00Z", "sending_domain": "mail.example.com", "smtp_response": "250 2.0.0 OK queued as 4Bq1x2"}}"#,
        uuid::Uuid::now_v7()
    ))
    .expect("event")
}

/// Sealed email appends (validation, pseudonym, key lookup, AES-GCM) against
/// plain appends of payloads of the same size, 64 appenders, batch 100.
fn bench_sealed(c: &mut Criterion, rt: &tokio::runtime::Runtime) -> usize {
    const CONTACTS: u64 = 1_000;
    let data = tempfile::tempdir().expect("tempdir");
    let keys = tempfile::tempdir().expect("tempdir");
    let log = ledger("fjall", data.path(), Durability::Sync);
    let ks = FileKeyStore::open(keys.path(), &SecretKey::generate().expect("key")).expect("keys");
    let email = Arc::new(EmailLedger::new(Arc::clone(&log), Arc::new(ks)));
    // Keys exist before measuring: key creation is a one-off per contact.
    rt.block_on(email.append(
        "default",
        (0..CONTACTS).map(|c| email_event(c, 0)).collect(),
    ))
    .expect("warm keys");
    let sample = rt
        .block_on(log.read_stream("default", &message_stream("m-0-0"), 0, 1))
        .expect("read");
    let payload_len = sample[0].payload.len();
    let counter = Arc::new(AtomicU64::new(1));
    let mut g = c.benchmark_group("sealed");
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(4));
    const W: usize = 64;
    const B: usize = 100;
    g.throughput(Throughput::Elements((W * B) as u64));
    g.bench_function("sealed-b100-w64", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                // Parsing JSON is the caller's work, not sealing: done
                // before the clock starts, as the unsealed side has none.
                let batches: Vec<Vec<CanonicalEvent>> = (0..W as u64)
                    .map(|w| {
                        (0..B as u64)
                            .map(|i| {
                                email_event(
                                    (w * 97 + i) % CONTACTS,
                                    counter.fetch_add(1, Ordering::Relaxed),
                                )
                            })
                            .collect()
                    })
                    .collect();
                let start = Instant::now();
                rt.block_on(async {
                    let tasks: Vec<_> = batches
                        .into_iter()
                        .map(|events| {
                            let email = Arc::clone(&email);
                            tokio::spawn(async move {
                                email.append("default", events).await.expect("append");
                            })
                        })
                        .collect();
                    for t in tasks {
                        t.await.expect("task");
                    }
                });
                total += start.elapsed();
            }
            total
        });
    });
    g.bench_function("unsealed-b100-w64", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                // The same streams as the sealed side: a new message stream
                // per event, linked into its contact's stream.
                let batches: Vec<Vec<(String, NewEvent)>> = (0..W as u64)
                    .map(|w| {
                        (0..B as u64)
                            .map(|i| {
                                let n = counter.fetch_add(1, Ordering::Relaxed);
                                let contact = (w * 97 + i) % CONTACTS;
                                let e = NewEvent::new(
                                    uuid::Uuid::now_v7(),
                                    "delivered",
                                    vec![b'x'; payload_len],
                                )
                                .with_link(format!("contact-plain-{contact}"));
                                (message_stream(&format!("plain-{contact}-{n}")), e)
                            })
                            .collect()
                    })
                    .collect();
                let start = Instant::now();
                rt.block_on(async {
                    let tasks: Vec<_> = batches
                        .into_iter()
                        .map(|events| {
                            let log = Arc::clone(&log);
                            tokio::spawn(async move {
                                let appends = events
                                    .into_iter()
                                    .map(|(stream, e)| {
                                        StreamAppend::new(stream, ExpectedVersion::Any, vec![e])
                                    })
                                    .collect();
                                log.append("default", appends).await.expect("append");
                            })
                        })
                        .collect();
                    for t in tasks {
                        t.await.expect("task");
                    }
                });
                total += start.elapsed();
            }
            total
        });
    });
    g.finish();
    payload_len
}

fn main() {
    let mut c = mailledger_benches::criterion();
    let rt = runtime();
    bench_ledger(&mut c, &rt);
    bench_raw_fjall(&mut c, &rt);
    let payload_len = bench_sealed(&mut c, &rt);
    c.final_summary();

    let mut rows = Vec::new();
    for backend in BACKENDS {
        for d in [Durability::Sync, Durability::Buffered] {
            for batch in BATCHES {
                for appenders in APPENDERS {
                    if skipped(backend, d, batch) {
                        continue;
                    }
                    let id = case(d, batch, appenders);
                    let elements = (batch * appenders * rounds(d, batch, appenders)) as f64;
                    let target = match (d, appenders) {
                        (Durability::Sync, 64) if backend == "fjall" => Some(100_000.0),
                        (Durability::Buffered, 64) if backend == "fjall" => Some(200_000.0),
                        _ => None,
                    };
                    rows.push(Row {
                        case: (format!("append-{backend}"), id.clone()),
                        elements,
                        baseline: Some(("append-raw-fjall".into(), id, elements)),
                        target: target.filter(|_| batch >= 100),
                        min_ratio: None,
                    });
                }
            }
        }
    }
    summary(
        &format!(
            "appends of {}-byte records vs raw fjall writes of the same bytes",
            frame_len()
        ),
        &rows,
    );
    summary(
        &format!(
            "sealed email appends vs unsealed appends of {payload_len}-byte payloads (fjall, sync)"
        ),
        &[Row {
            case: ("sealed".into(), "sealed-b100-w64".into()),
            elements: 6_400.0,
            baseline: Some(("sealed".into(), "unsealed-b100-w64".into(), 6_400.0)),
            target: None,
            min_ratio: Some(0.8),
        }],
    );
}
