//! Appends from 8 tasks until killed, printing `ack <event id>` for every
//! event once its append has returned. Used by the crash test.
//!
//! Usage: crash-writer BACKEND DIR ROUND

use std::io::Write;
use std::sync::Arc;

use mailledger_core::{EventLog, ExpectedVersion, Ledger, LedgerConfig, NewEvent};
use uuid::Uuid;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let [_, backend, dir, round] = args.as_slice() else {
        return Err("usage: crash-writer BACKEND DIR ROUND".into());
    };
    let store = mailledger_tests::open_store(backend, std::path::Path::new(dir))?;
    let log: Arc<dyn EventLog> = Arc::new(Ledger::open(store, LedgerConfig::new())?);
    let mut tasks = Vec::new();
    for task in 0..8u64 {
        let log = Arc::clone(&log);
        let round = round.clone();
        tasks.push(tokio::spawn(async move {
            let mut versions = [None::<u64>; 4];
            for i in 0u64.. {
                let s = (i % 4) as usize;
                let stream = format!("r{round}-w{task}-s{s}");
                let n = 1 + (i % 5) as usize;
                let events: Vec<NewEvent> = (0..n)
                    .map(|_| NewEvent::new(Uuid::now_v7(), "sent", vec![b'x'; 200]))
                    .collect();
                let expected =
                    versions[s].map_or(ExpectedVersion::NoStream, ExpectedVersion::Exact);
                let ids: Vec<Uuid> = events.iter().map(|e| e.id).collect();
                let tenant = if task % 2 == 0 { "even" } else { "odd" };
                let out = log
                    .append_to_stream(tenant, &stream, expected, events)
                    .await
                    .map_err(|e| e.to_string())?;
                versions[s] = out.stream_version;
                let mut stdout = std::io::stdout().lock();
                for id in ids {
                    writeln!(stdout, "ack {id}").map_err(|e| e.to_string())?;
                }
                stdout.flush().map_err(|e| e.to_string())?;
            }
            Ok::<(), String>(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    Ok(())
}
