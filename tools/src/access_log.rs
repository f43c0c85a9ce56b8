//! `mailledger access-log`: who read a tenant's personal data, one access
//! record per read (JSON lines or CSV), oldest first.

use std::io::{BufWriter, Write};
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Args;
use mailledger_audit::{AccessFilter, AccessRecord};
use mailledger_core::pseudonym::Pseudonym;

use crate::erasures::Format;
use crate::open::{self, Needs};
use crate::{Cli, STDOUT};

/// `mailledger access-log`'s flags.
#[derive(Debug, Args)]
pub struct AccessLogArgs {
    /// The tenant.
    #[arg(long, default_value = "default")]
    tenant: String,
    /// Reads that opened this contact's data, by pseudonym (32 hex digits).
    #[arg(long)]
    contact: Option<String>,
    /// Reads made with this API key id (or `operator`: this command line).
    #[arg(long)]
    key_id: Option<String>,
    /// Reads at or after this time (RFC 3339).
    #[arg(long)]
    since: Option<String>,
    /// Reads before this time (RFC 3339).
    #[arg(long)]
    until: Option<String>,
    /// The output format.
    #[arg(long, value_enum, default_value = "json")]
    format: Format,
}

/// Runs `mailledger access-log`.
pub fn run(cli: &Cli, args: &AccessLogArgs) -> Result<ExitCode> {
    if let Some(c) = &args.contact {
        Pseudonym::from_hex(c)?;
    }
    let since = args
        .since
        .as_deref()
        .map(|t| crate::replay::micros("since", t))
        .transpose()?;
    let until = args
        .until
        .as_deref()
        .map(|t| crate::replay::micros("until", t))
        .transpose()?;
    let filter = AccessFilter {
        contact: args.contact.clone(),
        key_id: args.key_id.clone(),
        time: (since.is_some() || until.is_some())
            .then(|| since.unwrap_or(i64::MIN)..until.unwrap_or(i64::MAX)),
    };
    open::log(cli, Needs::LOG, async |o| {
        let mut out = BufWriter::new(std::io::stdout().lock());
        if args.format == Format::Csv {
            writeln!(out, "at,key_id,route,count,contacts,message_ids").context(STDOUT)?;
        }
        let mut from = Some(0);
        let mut listed = 0u64;
        while let Some(place) = from {
            let (page, next) = mailledger_audit::access_records(
                o.log.as_ref(),
                &args.tenant,
                &filter,
                place,
                1000,
            )
            .await?;
            for r in &page {
                match args.format {
                    Format::Json => writeln!(out, "{}", serde_json::to_string(r)?),
                    Format::Csv => writeln!(out, "{}", csv(r)),
                }
                .context(STDOUT)?;
            }
            listed += page.len() as u64;
            from = next;
        }
        out.flush().context(STDOUT)?;
        eprintln!("{listed} access record(s) of tenant {}", args.tenant);
        Ok(ExitCode::SUCCESS)
    })
}

/// A CSV line; the lists are space-separated in one field each.
fn csv(r: &AccessRecord) -> String {
    let quote = |s: &str| {
        if s.contains([',', '"', '\n', '\r']) {
            format!("\"{}\"", s.replace('"', "\"\""))
        } else {
            s.to_owned()
        }
    };
    format!(
        "{},{},{},{},{},{}",
        r.at,
        quote(&r.key_id),
        quote(&r.route),
        r.count,
        r.contacts.join(" "),
        quote(&r.message_ids.join(" "))
    )
}
