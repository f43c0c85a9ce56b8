//! Reading the whole log forward (200,000 records, batches of 1,000)
//! against a raw fjall scan of the same bytes, measured in the same run.
#![allow(missing_docs)]

use std::time::Duration;

use criterion::Throughput;
use fjall::{Database, KeyspaceCreateOptions};
use mailledger_benches::{Row, frame_len, ledger, record, summary};
use mailledger_core::{Direction, Durability, ExpectedVersion, TenantFilter};

const RECORDS: u64 = 200_000;

fn main() {
    let mut c = mailledger_benches::criterion();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let mut g = c.benchmark_group("read");
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(5))
        .throughput(Throughput::Elements(RECORDS));
    let mut dirs = Vec::new();
    for backend in ["fjall", "sled", "objects"] {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = ledger(backend, dir.path(), Durability::Buffered);
        rt.block_on(async {
            for chunk in 0..RECORDS / 1000 {
                let events = (0..1000).map(|i| record(chunk * 1000 + i)).collect();
                log.append_to_stream(
                    "default",
                    &format!("message-{}", chunk % 50),
                    ExpectedVersion::Any,
                    events,
                )
                .await
                .expect("append");
            }
            log.sync().await.expect("sync");
        });
        g.bench_function(format!("{backend}-read-all"), |b| {
            b.iter(|| {
                rt.block_on(async {
                    let mut from = 0;
                    let mut n = 0u64;
                    while from < RECORDS {
                        let batch = log
                            .read_all(&TenantFilter::All, from, Direction::Forward, 1000)
                            .await
                            .expect("read");
                        n += batch.records.len() as u64;
                        from = batch.next.expect("next");
                    }
                    assert_eq!(n, RECORDS);
                })
            });
        });
        dirs.push(dir);
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let db = Database::builder(dir.path()).open().expect("fjall");
    let ks = db
        .keyspace("log", KeyspaceCreateOptions::default)
        .expect("keyspace");
    let value = vec![7u8; frame_len()];
    for chunk in 0..RECORDS / 1000 {
        let mut wb = db.batch();
        for i in 0..1000 {
            wb.insert(&ks, (chunk * 1000 + i).to_be_bytes(), value.as_slice());
        }
        wb.commit().expect("commit");
    }
    g.bench_function("raw-fjall-scan", |b| {
        b.iter(|| {
            let mut n = 0u64;
            let mut bytes = 0usize;
            for guard in ks.iter() {
                let (_, v) = guard.into_inner().expect("entry");
                bytes += v.len();
                n += 1;
            }
            assert_eq!(n, RECORDS);
            bytes
        });
    });
    g.finish();
    c.final_summary();
    let rows: Vec<Row> = ["fjall", "sled", "objects"]
        .iter()
        .map(|b| Row {
            case: ("read".into(), format!("{b}-read-all")),
            elements: RECORDS as f64,
            baseline: Some(("read".into(), "raw-fjall-scan".into(), RECORDS as f64)),
            target: Some(1_000_000.0),
            min_ratio: None,
        })
        .collect();
    summary(
        &format!("full-log reads of {RECORDS} records vs a raw fjall scan"),
        &rows,
    );
}
