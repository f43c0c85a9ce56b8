//! `mailledger append`: email events (sealed on the way in), or with
//! `--records` raw log records, from JSON lines.

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, anyhow, bail};
use clap::Args;
use mailledger_core::email::parse_event;
use mailledger_core::{ExpectedVersion, NewEvent, StreamAppend};
use serde::Deserialize;
use uuid::Uuid;

use crate::Cli;
use crate::open::{self, Needs};

/// `mailledger append`'s flags.
#[derive(Debug, Args)]
pub struct AppendArgs {
    /// The file to read; standard input when absent or `-`.
    #[arg(long, short)]
    file: Option<PathBuf>,
    /// The tenant the events belong to.
    #[arg(long, default_value = "default")]
    tenant: String,
    /// Lines are raw log records, not email events.
    #[arg(long)]
    records: bool,
}

/// The most lines appended as one atomic batch.
const APPEND_BATCH: usize = 10_000;

/// Runs `mailledger append`: every line is checked before anything is
/// written, then the lines are appended in batches.
pub fn run(cli: &Cli, args: &AppendArgs) -> Result<ExitCode> {
    let needs = Needs {
        keys: !args.records,
        ..Needs::LOG
    };
    open::log(cli, needs, async |o| {
        let tenant = args.tenant.as_str();
        mailledger_core::validate_tenant(tenant)?;
        let lines = input(args.file.as_deref())?;
        let (what, (appended, duplicates)) = if args.records {
            let parsed = parse_lines(lines, parse_record)?;
            let counts = in_batches(&parsed, "records", async |batch| {
                let out = o.log.append(tenant, batch).await?;
                Ok(out.iter().fold((0, 0), |(a, d), o| {
                    (a + o.positions.len() - o.duplicates, d + o.duplicates)
                }))
            })
            .await?;
            ("records", counts)
        } else {
            let email = o.email()?;
            let parsed = parse_lines(lines, |line| {
                let event = parse_event(line)?;
                // Check now so a bad line is named before anything is written.
                event.clone().validate()?;
                Ok(event)
            })?;
            let counts = in_batches(&parsed, "events", async |batch| {
                let out = email.append(tenant, batch).await?;
                let duplicates = out.iter().filter(|a| a.duplicate).count();
                Ok((out.len() - duplicates, duplicates))
            })
            .await?;
            ("events", counts)
        };
        eprintln!(
            "appended {appended} {what} ({duplicates} already present); head is {}",
            o.log.head()
        );
        Ok(ExitCode::SUCCESS)
    })
}

/// The lines of `file`, or of standard input when absent or `-`.
fn input(file: Option<&Path>) -> Result<Box<dyn BufRead>> {
    Ok(match file {
        None => Box::new(std::io::stdin().lock()),
        Some(p) if p.as_os_str() == "-" => Box::new(std::io::stdin().lock()),
        Some(p) => Box::new(std::io::BufReader::new(
            std::fs::File::open(p).with_context(|| format!("cannot open {}", p.display()))?,
        )),
    })
}

/// Every non-blank line parsed, with its line number; the first line that
/// does not parse fails them all.
fn parse_lines<T>(
    input: Box<dyn BufRead>,
    parse: impl Fn(&str) -> Result<T>,
) -> Result<Vec<(usize, T)>> {
    let mut parsed = Vec::new();
    for (i, line) in input.lines().enumerate() {
        let n = i + 1;
        let line = line.with_context(|| format!("line {n}: cannot read"))?;
        if line.trim().is_empty() {
            continue;
        }
        let item = parse(&line).map_err(|e| anyhow!("line {n}: {e}; nothing was written"))?;
        parsed.push((n, item));
    }
    Ok(parsed)
}

/// Appends `parsed` in atomic batches of [`APPEND_BATCH`] lines with
/// `append`, which returns how many of a batch's `what` were appended and
/// how many were present already; returns the sums.
async fn in_batches<T: Clone>(
    parsed: &[(usize, T)],
    what: &str,
    mut append: impl AsyncFnMut(Vec<T>) -> Result<(usize, usize)>,
) -> Result<(usize, usize)> {
    let (mut appended, mut duplicates) = (0usize, 0usize);
    for chunk in parsed.chunks(APPEND_BATCH) {
        let first = chunk.first().map_or(0, |(n, _)| *n);
        let last = chunk.last().map_or(0, |(n, _)| *n);
        let batch = chunk.iter().map(|(_, item)| item.clone()).collect();
        let (a, d) = append(batch).await.map_err(|e| {
            anyhow!(
                "lines {first}-{last}: {e}; nothing of these lines was written ({appended} {what} from earlier lines were)"
            )
        })?;
        appended += a;
        duplicates += d;
    }
    Ok((appended, duplicates))
}

/// A line of `append --records`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct InputRecord {
    id: Uuid,
    stream: String,
    #[serde(rename = "type")]
    event_type: String,
    payload: serde_json::Value,
    #[serde(default)]
    metadata: Option<serde_json::Value>,
    #[serde(default)]
    expected_version: Option<InputVersion>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum InputVersion {
    Exact(u64),
    Named(String),
}

/// Parses and checks a line of `append --records`.
fn parse_record(line: &str) -> Result<StreamAppend> {
    let rec: InputRecord = serde_json::from_str(line)?;
    let expected = match rec.expected_version {
        None => ExpectedVersion::Any,
        Some(InputVersion::Exact(n)) => ExpectedVersion::Exact(n),
        Some(InputVersion::Named(s)) if s == "any" => ExpectedVersion::Any,
        Some(InputVersion::Named(s)) if s == "no_stream" => ExpectedVersion::NoStream,
        Some(InputVersion::Named(_)) => {
            bail!("expected_version must be \"any\", \"no_stream\" or a number")
        }
    };
    mailledger_core::validate_stream(&rec.stream)?;
    let mut event = NewEvent::new(rec.id, rec.event_type, serde_json::to_vec(&rec.payload)?);
    if let Some(m) = rec.metadata {
        event.metadata = serde_json::to_vec(&m)?;
    }
    mailledger_core::validate_event(&event)?;
    Ok(StreamAppend::new(rec.stream, expected, vec![event]))
}
