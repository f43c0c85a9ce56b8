//! `mailledger erasures`: the erasure register of a tenant, as JSON lines
//! or CSV, oldest first.

use std::io::{BufWriter, Write};
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Args, ValueEnum};
use mailledger_core::email::ErasureReceipt;

use crate::open::{self, Needs};
use crate::{Cli, STDOUT};

/// How a listing is printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// One JSON object per line.
    Json,
    /// Comma-separated values with a header line.
    Csv,
}

/// `mailledger erasures`' flags.
#[derive(Debug, Args)]
pub struct ErasuresArgs {
    /// The tenant.
    #[arg(long, default_value = "default")]
    tenant: String,
    /// The output format.
    #[arg(long, value_enum, default_value = "json")]
    format: Format,
}

/// Runs `mailledger erasures`.
pub fn run(cli: &Cli, args: &ErasuresArgs) -> Result<ExitCode> {
    open::log(cli, Needs::EMAIL, async |o| {
        let email = o.email()?;
        let mut out = BufWriter::new(std::io::stdout().lock());
        if args.format == Format::Csv {
            writeln!(
                out,
                "request_id,contact,erased_at,position,events_unreadable,key_found"
            )
            .context(STDOUT)?;
        }
        let mut from = 0;
        let mut listed = 0u64;
        loop {
            let page = email.erasures(&args.tenant, from, 1000).await?;
            let Some((last, _)) = page.last() else { break };
            from = last + 1;
            for (_, r) in &page {
                match args.format {
                    Format::Json => writeln!(out, "{}", json(r)),
                    Format::Csv => writeln!(out, "{}", csv(r)),
                }
                .context(STDOUT)?;
            }
            listed += page.len() as u64;
        }
        out.flush().context(STDOUT)?;
        eprintln!("{listed} erasure(s) of tenant {}", args.tenant);
        Ok(ExitCode::SUCCESS)
    })
}

fn json(r: &ErasureReceipt) -> serde_json::Value {
    serde_json::json!({
        "request_id": r.request_id,
        "contact": r.contact,
        "erased_at": r.erased_at,
        "position": r.position,
        "events_unreadable": r.events_unreadable,
        "key_found": r.key_found,
    })
}

/// A CSV line. Request ids hold only `A-Z a-z 0-9 - _ . :` and pseudonyms
/// only hex digits, so no field needs quoting.
fn csv(r: &ErasureReceipt) -> String {
    format!(
        "{},{},{},{},{},{}",
        r.request_id, r.contact, r.erased_at, r.position, r.events_unreadable, r.key_found
    )
}
