//! `mailledger verify`: the chain and indexes (exit 3 on corruption), then
//! where the verified records were written against where their tenants
//! allow (exit 4 when some were written outside).

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Result;
use clap::Args;
use mailledger_core::{TenantFilter, VerifyProgress};

use crate::Cli;
use crate::open::{self, Needs, Opened};

/// `mailledger verify`'s flags.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// Check one tenant's chain only.
    #[arg(long)]
    tenant: Option<String>,
}

/// Runs `mailledger verify`.
pub fn run(cli: &Cli, args: &VerifyArgs) -> Result<ExitCode> {
    open::log(cli, Needs::LOG, async |o| {
        verify(o, args.tenant.clone()).await
    })
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
