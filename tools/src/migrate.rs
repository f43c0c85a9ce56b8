//! `mailledger migrate --to URL`: copies the log to another backend byte
//! for byte (every space, so positions, hashes, chains, event ids and
//! stream versions stay what they were), verifies the copy, and only then
//! points the data directory at it. The old log is left as it was.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result, anyhow, bail};
use clap::Args;
use indicatif::ProgressBar;
use mailledger_core::{
    EventLog, Ledger, LedgerConfig, Space, Store, TenantFilter, Visit, WriteBatch,
};

use crate::location::{self, LogLocation};
use crate::{Cli, residency};

/// `mailledger migrate`'s flags.
#[derive(Debug, Args)]
pub struct MigrateArgs {
    /// Where the log goes, as --log names it.
    #[arg(long)]
    to: String,
}

/// Puts per copied batch, and the bytes at which a batch is written early.
const BATCH_PUTS: usize = 20_000;
const BATCH_BYTES: usize = 8 << 20;

/// Runs `mailledger migrate --to TO`.
///
/// # Errors
/// No ledger here; a target that is the same log, kept in memory, outside
/// an allowed jurisdiction or not empty; a failed copy or verification
/// (the data directory then still points at the old log).
pub fn run(cli: &Cli, args: &MigrateArgs) -> Result<ExitCode> {
    let to = args.to.as_str();
    let (from, recorded) = location::peek(&cli.data_dir, cli.log.as_deref())?;
    if !recorded {
        bail!(
            "no ledger in {}; nothing to migrate",
            cli.data_dir.display()
        );
    }
    let target = LogLocation::parse(to)?;
    if target == from {
        bail!("--to {to} is the log this data directory already uses");
    }
    if target == LogLocation::Memory {
        bail!("--to memory: would keep nothing; migrate to a durable backend");
    }
    // Where the log goes must be allowed as much as where it is, checked
    // before anything is written.
    let tenants = residency::enforce(&cli.residency()?, &cli.data_dir)?;
    let after = cli
        .residency_args()
        .declare(&cli.data_dir, &target, &cli.keys_dir)?;
    after.check(&tenants).map_err(|e| {
        anyhow!("the log would move outside an allowed jurisdiction: {e}. Nothing was written")
    })?;

    let runtime = crate::open::runtime()?;
    // The directories opening the copy makes: their names must be durable
    // before the marker names the copy (see `sync_new_dirs`).
    let existed = local_path(&target).map(first_existing);
    // Source and copy are open at once: each takes half the log's share.
    let memory = cli.memory()?.logs(2);
    let source = location::open_store(&from, &memory)?;
    // Opening checks the source's tail and chain heads first.
    let head = Ledger::open(Arc::clone(&source), LedgerConfig::new())?.head();
    let dest = location::open_store(&target, &memory)?;
    for space in Space::ALL {
        let mut any = false;
        dest.scan(space, &[], None, false, &mut |_, _| {
            any = true;
            Visit::Stop
        })?;
        if any {
            bail!(
                "{} is not empty: migrate copies into an empty log only (an interrupted migration leaves a partial copy; remove it first)",
                target.describe()
            );
        }
    }
    let bar = crate::projections_cmd::progress_bar(head, "copying", "records");
    let mut puts = 0u64;
    for space in Space::ALL {
        puts += copy_space(source.as_ref(), dest.as_ref(), space, &bar)?;
    }
    bar.finish_and_clear();
    drop(source);

    let copy = Ledger::open(dest, LedgerConfig::new()).context("the copy does not open")?;
    if copy.head() != head {
        bail!(
            "the copy holds {} records, the log {head}; the data directory still uses {}",
            copy.head(),
            from.describe()
        );
    }
    let report = runtime
        .block_on(copy.verify(&TenantFilter::All, 0..u64::MAX, None))
        .with_context(|| {
            format!(
                "the copy does not verify; the data directory still uses {}",
                from.describe()
            )
        })?;
    drop(copy);
    if let (Some(path), Some(existed)) = (local_path(&target), existed) {
        sync_new_dirs(path, &existed)
            .with_context(|| format!("cannot make {} durable", path.display()))?;
    }
    location::switch(&cli.data_dir, &target)?;
    out!(
        "migrated {head} records ({puts} entries) from {} to {}; the copy verified ({} records of {} tenant(s)); {} now uses it",
        from.describe(),
        target.describe(),
        report.records,
        report.tenants,
        cli.data_dir.display()
    );
    eprintln!(
        "the old log ({}) is left as it was: remove it once it is no longer needed",
        from.describe()
    );
    Ok(ExitCode::SUCCESS)
}

/// Copies every entry of `space`, in key order, in synced batches; returns
/// how many.
fn copy_space(
    source: &dyn Store,
    dest: &dyn Store,
    space: Space,
    bar: &ProgressBar,
) -> Result<u64> {
    let mut batch = WriteBatch::new();
    let mut bytes = 0;
    let mut copied = 0u64;
    let mut failed = None;
    let mut flush = |batch: &mut WriteBatch, bytes: &mut usize| -> Result<()> {
        let n = batch.puts.len() as u64;
        dest.commit(std::mem::take(batch), true)?;
        *bytes = 0;
        copied += n;
        if space == Space::Log {
            bar.inc(n);
        }
        Ok(())
    };
    source.scan(space, &[], None, false, &mut |k, v| {
        bytes += k.len() + v.len();
        batch.put(space, k.to_vec(), v.to_vec());
        let full = batch.puts.len() >= BATCH_PUTS || bytes >= BATCH_BYTES;
        if let Err(e) = full.then(|| flush(&mut batch, &mut bytes)).transpose() {
            failed = Some(e);
            return Visit::Stop;
        }
        Visit::Continue
    })?;
    if let Some(e) = failed {
        return Err(e);
    }
    if !batch.is_empty() {
        flush(&mut batch, &mut bytes)?;
    }
    Ok(copied)
}

/// The directory a log on the local disk lives in.
fn local_path(location: &LogLocation) -> Option<&Path> {
    match location {
        LogLocation::Fjall { path }
        | LogLocation::Sled { path }
        | LogLocation::Objects { path } => Some(path),
        LogLocation::S3 { .. } | LogLocation::Memory => None,
    }
}

/// `path` or its nearest ancestor that exists.
fn first_existing(path: &Path) -> PathBuf {
    path.ancestors()
        .find(|a| a.exists())
        .unwrap_or(path)
        .to_path_buf()
}

/// Makes the copy's directory reachable after a power cut: the stores sync
/// their own files and directory, but the names of `path` and of the
/// directories made above it (up to `existed`, which was there before) live
/// in their parents, which nothing synced. Syncs `path`, then each parent
/// up to and including `existed`, before the marker may name the copy.
fn sync_new_dirs(path: &Path, existed: &Path) -> std::io::Result<()> {
    std::fs::File::open(path)?.sync_all()?;
    for dir in path.ancestors().skip(1) {
        std::fs::File::open(dir)?.sync_all()?;
        if dir == existed || !dir.starts_with(existed) {
            break;
        }
    }
    Ok(())
}
