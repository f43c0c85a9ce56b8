//! `mailledger rebuild`: projections rebuilt from position 0 into fresh
//! stores, with a progress bar, and swapped in.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Result, bail};
use clap::Args;
use mailledger_core::EventLog;
use mailledger_projections::{NAMES, Progress};

use crate::memory::MemoryPlan;
use crate::open::{self, Needs};
use crate::{Cli, projections_cmd};

/// `mailledger rebuild`'s arguments.
#[derive(Debug, Args)]
pub struct RebuildArgs {
    /// delivery-log, suppressions, analytics, or all.
    #[arg(default_value = "all")]
    which: String,
}

/// Runs `mailledger rebuild`.
pub fn run(cli: &Cli, args: &RebuildArgs) -> Result<ExitCode> {
    let memory = cli.memory()?;
    open::log(cli, Needs::LOG, async |o| {
        rebuild(&o.log, &cli.data_dir, &memory, &args.which).await
    })
}

/// Rebuilds `which` (a projection's name, or `all`) from position 0 into a
/// fresh store, with a progress bar, and swaps it in.
async fn rebuild(
    log: &Arc<dyn EventLog>,
    data_dir: &Path,
    memory: &MemoryPlan,
    which: &str,
) -> Result<ExitCode> {
    let names: Vec<&str> = match which {
        "all" => Vec::new(),
        n if NAMES.contains(&n) => vec![n],
        other => bail!(
            "no projection named {other:?}: use one of {}, or all",
            NAMES.join(", ")
        ),
    };
    let p = projections_cmd::open(data_dir, memory)?;
    let head = log.head();
    let bar = projections_cmd::progress_bar(head, "rebuilding", "events");
    let started = std::time::Instant::now();
    let b = bar.clone();
    let progress = move |pr: Progress| {
        b.set_length(pr.total);
        b.set_position(pr.done);
    };
    let result = p.rebuild(log.as_ref(), &names, Some(&progress)).await;
    bar.finish_and_clear();
    result?;
    let secs = started.elapsed().as_secs_f64();
    #[allow(clippy::cast_precision_loss)]
    let rate = if secs > 0.0 { head as f64 / secs } else { 0.0 };
    eprintln!(
        "rebuilt {} from {head} events in {secs:.1} s ({rate:.0} events/s) and swapped in",
        if names.is_empty() {
            NAMES.join(", ")
        } else {
            names.join(", ")
        },
    );
    Ok(ExitCode::SUCCESS)
}
