//! `mailledger verify`: the chain and indexes (exit 3 on corruption), then
//! where the verified records were written against where their tenants
//! allow (exit 4 when some were written outside). With `--against FILE
//! --public-key KEY`, also that the log holds exactly what each exported
//! checkpoint signed (exit 3 naming the first bad position); this needs
//! the binary, the log and the public key, not the node's keys.

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use clap::Args;
use mailledger_audit::{AuditError, PublicKey, SignedCheckpoint};
use mailledger_core::{TenantFilter, VerifyProgress};

use crate::Cli;
use crate::open::{self, Needs, Opened};

/// `mailledger verify`'s flags.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// Check one tenant's chain only.
    #[arg(long, conflicts_with = "against")]
    tenant: Option<String>,
    /// Exported checkpoints (`mailledger checkpoint export`, or the items of
    /// GET /v1/audit/checkpoints as JSON lines) the log must still hold.
    #[arg(long, value_name = "FILE", requires = "public_key")]
    against: Option<PathBuf>,
    /// The audit key's public half: 64 hex digits, or a file holding them.
    #[arg(long, value_name = "KEY", requires = "against")]
    public_key: Option<String>,
}

/// The largest checkpoint file read (a checkpoint is about 400 bytes).
const MAX_CHECKPOINT_FILE: u64 = 256 << 20;

/// Runs `mailledger verify`.
pub fn run(cli: &Cli, args: &VerifyArgs) -> Result<ExitCode> {
    if let (Some(file), Some(key)) = (&args.against, &args.public_key) {
        let public = public_key(key)?;
        let checkpoints = read_checkpoints(file)?;
        return refused_open(open::log(cli, Needs::LOG, async |o| {
            against(o, &checkpoints, &public).await
        }));
    }
    refused_open(open::log(cli, Needs::LOG, async |o| {
        verify(o, args.tenant.clone()).await
    }))
}

/// A log that opening found corrupt fails verification (exit 3), naming
/// the position, like one that verification finds corrupt.
pub fn refused_open(result: Result<ExitCode>) -> Result<ExitCode> {
    match result {
        Err(e) => match e.downcast_ref::<mailledger_core::Error>() {
            Some(c @ mailledger_core::Error::Corrupt { .. }) => {
                eprintln!("verification failed: {c}");
                Ok(ExitCode::from(3))
            }
            _ => Err(e),
        },
        ok => ok,
    }
}

async fn verify(o: &Opened, tenant: Option<String>) -> Result<ExitCode> {
    let filter = tenant.map_or(TenantFilter::All, TenantFilter::Only);
    let head = o.log.head();
    let bar =
        (head > 10_000).then(|| crate::projections_cmd::progress_bar(head, "verifying", "records"));
    let progress = bar.clone().map(|b| {
        Arc::new(move |p: VerifyProgress| b.set_position(p.checked)) as mailledger_core::ProgressFn
    });
    let result = o.log.verify(&filter, 0..u64::MAX, progress).await;
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    match result {
        Ok(report) => {
            out!(
                "ok: {} records of {} tenant(s) verified, positions {}..{}; every hash and chain link holds",
                report.records,
                report.tenants,
                report.range.start,
                report.range.end
            );
            for (tenant, places) in &report.written_in {
                let counts: Vec<String> = places
                    .iter()
                    .map(|(place, n)| match place {
                        Some(j) => format!("{j} {n}"),
                        None => format!("not recorded (written before format 2) {n}"),
                    })
                    .collect();
                out!("tenant {tenant}: records written in {}", counts.join(", "));
            }
            let outside = o.declared.records_outside(&report.written_in, &o.tenants);
            if outside.is_empty() {
                return Ok(ExitCode::SUCCESS);
            }
            for o in &outside {
                eprintln!("residency: {o}");
            }
            Ok(ExitCode::from(4))
        }
        Err(e @ mailledger_core::Error::Corrupt { .. }) => {
            eprintln!("verification failed: {e}");
            Ok(ExitCode::from(3))
        }
        Err(e) => Err(e.into()),
    }
}

/// The public key given as hex, or in a file.
fn public_key(given: &str) -> Result<PublicKey> {
    if let Ok(k) = given.parse() {
        return Ok(k);
    }
    let path = Path::new(given);
    if !path.is_file() {
        bail!("--public-key: neither 64 hex digits nor a file holding them");
    }
    let mut text = String::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(1024).read_to_string(&mut text))
        .with_context(|| format!("cannot read {}", path.display()))?;
    text.parse()
        .with_context(|| format!("{} does not hold a public key", path.display()))
}

fn read_checkpoints(file: &Path) -> Result<Vec<SignedCheckpoint>> {
    let mut text = String::new();
    std::fs::File::open(file)
        .and_then(|f| f.take(MAX_CHECKPOINT_FILE + 1).read_to_string(&mut text))
        .with_context(|| format!("cannot read {}", file.display()))?;
    if text.len() as u64 > MAX_CHECKPOINT_FILE {
        bail!(
            "{} is larger than {MAX_CHECKPOINT_FILE} bytes",
            file.display()
        );
    }
    let checkpoints =
        mailledger_audit::parse_lines(&text).with_context(|| format!("{}", file.display()))?;
    if checkpoints.is_empty() {
        bail!("{} holds no checkpoint", file.display());
    }
    Ok(checkpoints)
}

async fn against(
    o: &Opened,
    checkpoints: &[SignedCheckpoint],
    public: &PublicKey,
) -> Result<ExitCode> {
    let head = o.log.head();
    let bar =
        (head > 10_000).then(|| crate::projections_cmd::progress_bar(head, "verifying", "records"));
    let progress = bar.clone().map(|b| {
        Arc::new(move |p: VerifyProgress| b.set_position(p.checked)) as mailledger_core::ProgressFn
    });
    let result =
        mailledger_audit::verify_against(o.log.as_ref(), checkpoints, public, progress).await;
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    match result {
        Ok(r) => {
            out!(
                "ok: the log holds exactly what {} checkpoint(s) of {} tenant(s) signed, and has only grown since: {} records verified up to position {}",
                r.checkpoints,
                r.tenants,
                r.records,
                r.head
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(e @ (AuditError::Tampered { .. } | AuditError::Signature { .. })) => {
            eprintln!("verification failed: {e}");
            Ok(ExitCode::from(3))
        }
        Err(AuditError::Log(e @ mailledger_core::Error::Corrupt { .. })) => {
            eprintln!("verification failed: {e}");
            Ok(ExitCode::from(3))
        }
        Err(e) => Err(e.into()),
    }
}
