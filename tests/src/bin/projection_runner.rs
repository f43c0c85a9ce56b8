//! A child process for the projection crash tests: opens the fjall log in
//! `ARGV[1]` and the projections in `ARGV[2]`, prints `ready`, and catches
//! the projections up with the log until killed or done. With `rebuild` as
//! `ARGV[3]` it rebuilds every projection instead, reading and committing
//! in small steps so that a kill lands between commits of the fresh stores.
//! With `steps` as `ARGV[3]` it catches up in steps of 256 events (one
//! commit each), so that a cut lands between commits of the live stores.

use std::io::Write as _;
use std::path::PathBuf;
use std::sync::Arc;

use mailledger_core::{EventLog, Ledger, LedgerConfig};
use mailledger_projections::{Projections, RebuildSizes};

fn main() -> std::process::ExitCode {
    let mut args = std::env::args_os().skip(1).map(PathBuf::from);
    let (Some(log_dir), Some(proj_dir)) = (args.next(), args.next()) else {
        eprintln!("usage: projection-runner LOG_DIR PROJECTIONS_DIR [rebuild|steps]");
        return std::process::ExitCode::FAILURE;
    };
    let mode = args.next();
    let rebuild = mode.as_ref().is_some_and(|a| a.as_os_str() == "rebuild");
    let steps = mode.as_ref().is_some_and(|a| a.as_os_str() == "steps");
    let run = async {
        let store = mailledger_fjall::FjallStore::open(&log_dir)?;
        let log: Arc<dyn EventLog> = Arc::new(Ledger::open(store, LedgerConfig::new())?);
        let p = Projections::open(&proj_dir)?;
        println!("ready");
        std::io::stdout().flush()?;
        if rebuild {
            p.with_rebuild_sizes(RebuildSizes {
                read: 256,
                commit: 1000,
            })
            .rebuild(log.as_ref(), &[], None)
            .await?;
        } else if steps {
            let mut until = 0;
            while until < log.head() {
                until = (until + 256).min(log.head());
                p.catch_up_with(log.as_ref(), until, None).await?;
            }
        } else {
            p.catch_up(log.as_ref()).await?;
        }
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
