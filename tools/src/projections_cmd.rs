//! `mailledger projections`, and what the commands that use the
//! projections share: where they live, opening them, a progress bar.

use std::io::IsTerminal;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use mailledger_core::EventLog;
use mailledger_projections::Projections;

use crate::Cli;
use crate::memory::MemoryPlan;
use crate::open::Needs;

/// Runs `mailledger projections`.
pub fn run(cli: &Cli) -> Result<ExitCode> {
    let memory = cli.memory()?;
    crate::open::log(cli, Needs::LOG, async |o| {
        status(&o.log, &cli.data_dir, &memory)
    })
}

/// Where the projections of a data directory live.
pub fn dir(data_dir: &Path) -> std::path::PathBuf {
    data_dir.join("projections")
}

/// Opens the projections of `data_dir`, within `memory`'s share for them.
pub fn open(data_dir: &Path, memory: &MemoryPlan) -> Result<Projections> {
    let d = dir(data_dir);
    Projections::open_with(&d, memory.projections())
        .with_context(|| format!("cannot open the projections in {}", d.display()))
}

/// Prints each projection's checkpoint and lag, as JSON lines.
fn status(log: &Arc<dyn EventLog>, data_dir: &Path, memory: &MemoryPlan) -> Result<ExitCode> {
    let p = open(data_dir, memory)?;
    let head = log.head();
    for s in p.status(head) {
        out!(
            "{}",
            serde_json::json!({"projection": s.name, "checkpoint": s.checkpoint, "head": head, "lag": s.lag})
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// A progress bar of `len` items on standard error ("`doing` {bar} pos/len
/// `items` (rate, time left)"), hidden when standard error is not a
/// terminal.
pub fn progress_bar(len: u64, doing: &str, items: &str) -> ProgressBar {
    let bar = if std::io::stderr().is_terminal() {
        ProgressBar::new(len)
    } else {
        ProgressBar::hidden()
    };
    let template =
        format!("{doing} {{bar:40}} {{pos}}/{{len}} {items} ({{per_sec}}, {{eta}} left)");
    bar.set_style(
        ProgressStyle::with_template(&template).unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar
}
