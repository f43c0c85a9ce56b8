//! `mailledger replay`: a tenant's events in log order, filtered, opened
//! (or shown erased, or raw), as JSON lines or CSV, with the tenant's
//! hash chain verified as it is read (exit 3 when it breaks). A summary
//! (JSON) goes to standard error at the end.

use std::io::{BufWriter, IsTerminal as _, Read as _, Write};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use clap::Args;
use mailledger_audit::replay::{self, Replay, ReplayFilter, Shown};
use mailledger_core::crypto::Personal;
use mailledger_core::pseudonym::Pseudonym;
use zeroize::Zeroizing;

use crate::erasures::Format;
use crate::open::{self, Needs};
use crate::{Cli, STDOUT};

/// `mailledger replay`'s flags.
#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// The tenant.
    #[arg(long, default_value = "default")]
    tenant: String,
    /// The first position to show.
    #[arg(long)]
    from_position: Option<u64>,
    /// The position to stop before.
    #[arg(long)]
    to_position: Option<u64>,
    /// Events that occurred at or after this time (RFC 3339).
    #[arg(long)]
    since: Option<String>,
    /// Events that occurred before this time (RFC 3339).
    #[arg(long)]
    until: Option<String>,
    /// One message's events, by message id.
    #[arg(long)]
    message: Option<String>,
    /// Events of these types only (comma-separated, such as bounced,complained).
    #[arg(long, value_delimiter = ',')]
    r#type: Vec<String>,
    /// One contact's events, by pseudonym (32 hex digits).
    #[arg(long, conflicts_with = "contact_stdin")]
    contact: Option<String>,
    /// One contact's events, by the address read from standard input (so it
    /// shows in no process list or shell history).
    #[arg(long)]
    contact_stdin: bool,
    /// The output format.
    #[arg(long, value_enum, default_value = "json")]
    format: Format,
    /// Show records as stored (sealed fields as ciphertext), nothing opened.
    #[arg(long, conflicts_with = "as_of")]
    raw: bool,
    /// Instead of events: the state at this moment (RFC 3339) of --message
    /// (status and timeline) or of the contact (suppressions in every
    /// scope), rebuilt from the log alone as the projections then held it.
    #[arg(long, value_name = "TIME")]
    as_of: Option<String>,
}

/// An RFC 3339 time as µs since the epoch.
pub fn micros(flag: &str, text: &str) -> Result<i64> {
    let t = time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .with_context(|| format!("--{flag} must be an RFC 3339 time, like 2026-03-01T00:00:00Z"))?;
    i64::try_from(t.unix_timestamp_nanos() / 1000)
        .with_context(|| format!("--{flag} is out of range"))
}

/// One address from standard input.
fn address_from_stdin() -> Result<Personal> {
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        eprintln!("mailledger: reading the contact's address from standard input; end with Ctrl-D");
    }
    let mut text = Zeroizing::new(String::new());
    stdin
        .lock()
        .take(4096)
        .read_to_string(&mut text)
        .context("cannot read the address from standard input")?;
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    match lines.as_slice() {
        [one] => Ok(Personal::new((*one).to_owned())),
        _ => bail!("standard input must hold exactly one address"),
    }
}

/// Runs `mailledger replay`.
pub fn run(cli: &Cli, args: &ReplayArgs) -> Result<ExitCode> {
    let time = match (&args.since, &args.until) {
        (None, None) => None,
        (since, until) => Some(
            since
                .as_deref()
                .map(|t| micros("since", t))
                .transpose()?
                .unwrap_or(i64::MIN)
                ..until
                    .as_deref()
                    .map(|t| micros("until", t))
                    .transpose()?
                    .unwrap_or(i64::MAX),
        ),
    };
    let positions = match (args.from_position, args.to_position) {
        (None, None) => None,
        (from, to) => Some(from.unwrap_or(0)..to.unwrap_or(u64::MAX)),
    };
    let address = if args.contact_stdin {
        Some(address_from_stdin()?)
    } else {
        None
    };
    let contact = args
        .contact
        .as_deref()
        .map(Pseudonym::from_hex)
        .transpose()?;
    if args.as_of.is_some() && (args.message.is_some() == (contact.is_some() || address.is_some()))
    {
        bail!("--as-of needs --message or a contact (--contact or --contact-stdin), one of them");
    }
    let needs = Needs {
        keys: true,
        ..Needs::LOG
    };
    // A log whose tail fails its checks on open fails the replay too.
    crate::verify::refused_open(open::log(cli, needs, async |o| {
        let email = o.email()?;
        let contact = match &address {
            Some(a) => Some(email.pseudonym(&args.tenant, a).await?),
            None => contact,
        };
        if let Some(t) = &args.as_of {
            let moment = micros("as-of", t)?;
            return crate::as_of::run(o, &args.tenant, moment, args.message.as_deref(), contact)
                .await;
        }
        let filter = ReplayFilter {
            positions,
            time,
            message_id: args.message.clone(),
            types: (!args.r#type.is_empty()).then(|| args.r#type.clone()),
            contact,
        };
        let shown = if args.raw { Shown::Raw } else { Shown::Opened };
        let format = match args.format {
            Format::Json => replay::Format::Json,
            Format::Csv => replay::Format::Csv,
        };
        // The command line is an auditor's own process: every core is its.
        let workers = std::thread::available_parallelism().unwrap_or(std::num::NonZeroUsize::MIN);
        let mut replay = Replay::new(Arc::clone(email), &args.tenant, filter, shown)?
            .format(format)
            .workers(workers);
        let head = o.log.head();
        let bar = crate::projections_cmd::progress_bar(head, "replaying", "positions");
        let mut out = BufWriter::new(std::io::stdout().lock());
        if let Some(header) = format.header() {
            out.write_all(header.as_bytes()).context(STDOUT)?;
        }
        while let Some(page) = replay.next_page().await? {
            out.write_all(&page.lines).context(STDOUT)?;
            if let Some(p) = replay.summary().head_position {
                bar.set_position(p + 1);
            }
        }
        bar.finish_and_clear();
        out.flush().context(STDOUT)?;
        if shown == Shown::Opened && replay.summary().events > 0 {
            let (contacts, messages) = replay.opened();
            let mut opened = crate::read::Accessed::default();
            opened.add(&args.tenant, contacts, messages, replay.summary().events);
            opened.record(&o.log, "mailledger replay").await;
        }
        let summary = replay.summary();
        eprintln!("{}", serde_json::json!({ "summary": summary }));
        Ok(if summary.verified {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(3)
        })
    }))
}
