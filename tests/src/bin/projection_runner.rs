//! A child process for the projection crash test: opens the fjall log in
//! `ARGV[1]` and the projections in `ARGV[2]`, prints `ready`, and catches
//! the projections up with the log until killed or done.

use std::io::Write as _;
use std::path::PathBuf;
use std::sync::Arc;

use mailledger_core::{EventLog, Ledger, LedgerConfig};
use mailledger_projections::Projections;

fn main() -> std::process::ExitCode {
    let mut args = std::env::args_os().skip(1).map(PathBuf::from);
    let (Some(log_dir), Some(proj_dir)) = (args.next(), args.next()) else {
        eprintln!("usage: projection-runner LOG_DIR PROJECTIONS_DIR");
        return std::process::ExitCode::FAILURE;
    };
    let run = async {
        let store = mailledger_fjall::FjallStore::open(&log_dir)?;
        let log: Arc<dyn EventLog> = Arc::new(Ledger::open(store, LedgerConfig::new())?);
        let p = Projections::open(&proj_dir)?;
        println!("ready");
        std::io::stdout().flush()?;
        p.catch_up(log.as_ref()).await?;
        println!("done");
        Ok::<_, Box<dyn std::error::Error>>(())
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build();
    match rt.map(|rt| rt.block_on(run)) {
        Ok(Ok(())) => std::process::ExitCode::SUCCESS,
        Ok(Err(e)) => {
            eprintln!("projection-runner: {e}");
            std::process::ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("projection-runner: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
