//! `mailledger rebuild` and `mailledger projections`.

use std::io::IsTerminal;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use indicatif::{ProgressBar, ProgressStyle};
use mailledger_core::EventLog;
use mailledger_projections::{NAMES, Progress, Projections};

/// Where the projections of a data directory live.
pub fn dir(data_dir: &Path) -> std::path::PathBuf {
    data_dir.join("projections")
}

/// Opens the projections of `data_dir`.
pub fn open(data_dir: &Path) -> Result<Projections> {
    let d = dir(data_dir);
    Projections::open(&d).with_context(|| format!("cannot open the projections in {}", d.display()))
}

/// Prints each projection's checkpoint and lag, as JSON lines.
pub fn status(log: &Arc<dyn EventLog>, data_dir: &Path) -> Result<ExitCode> {
    let p = open(data_dir)?;
    let head = log.head();
    for s in p.status(head) {
        out!(
            "{}",
            serde_json::json!({"projection": s.name, "checkpoint": s.checkpoint, "head": head, "lag": s.lag})
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Rebuilds `which` (a projection's name, or `all`) from position 0 into a
/// fresh store, with a progress bar, and swaps it in.
pub async fn rebuild(log: &Arc<dyn EventLog>, data_dir: &Path, which: &str) -> Result<ExitCode> {
    let names: Vec<&str> = match which {
        "all" => Vec::new(),
        n if NAMES.contains(&n) => vec![n],
        other => bail!(
            "no projection named {other:?}: use one of {}, or all",
            NAMES.join(", ")
        ),
    };
    let p = open(data_dir)?;
    let head = log.head();
    let bar = progress_bar(head, "rebuilding", "events");
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
