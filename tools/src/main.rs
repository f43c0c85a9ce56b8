//! `mailledger`: the one binary. Appends to, reads and verifies the log.

mod location;

use std::io::{BufRead, BufWriter, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result, anyhow, bail};
use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use mailledger_core::{
    Direction, Durability, EventLog, ExpectedVersion, LedgerConfig, NewEvent, Record, StreamAppend,
    TenantFilter, VerifyProgress,
};
use serde::Deserialize;
use uuid::Uuid;

use crate::location::LogLocation;

/// An event-sourced ledger of email activity.
#[derive(Debug, Parser)]
#[command(name = "mailledger", version, about)]
struct Cli {
    /// The data directory: it holds the log (fjall by default) and remembers its backend.
    #[arg(
        long,
        global = true,
        env = "MAILLEDGER_DATA_DIR",
        default_value = "./mailledger-data"
    )]
    data_dir: PathBuf,
    /// The log's backend and place: fjall:PATH, sled:PATH or memory:. Default: fjall inside the data directory.
    #[arg(long = "log", global = true, env = "MAILLEDGER_LOG")]
    log: Option<String>,
    /// When appends return: sync (on stable storage) or buffered (handed to the OS; the last moments may be lost on power loss).
    #[arg(
        long,
        global = true,
        env = "MAILLEDGER_DURABILITY",
        default_value = "sync"
    )]
    durability: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Creates the data directory and an empty log.
    Init,
    /// Appends records given as JSON lines, from a file or standard input.
    ///
    /// Each line: {"id": UUID, "stream": S, "type": T, "payload": JSON,
    /// "metadata": JSON (optional), "expected_version": "any" | "no_stream" | N (optional)}.
    /// Every line is checked before anything is written; up to 10,000 lines
    /// are appended as one atomic batch.
    Append {
        /// The file to read; standard input when absent or `-`.
        #[arg(long, short)]
        file: Option<PathBuf>,
        /// The tenant the records belong to.
        #[arg(long, default_value = "default")]
        tenant: String,
    },
    /// Prints records as JSON lines: one stream, or the whole log.
    Read {
        /// Read this stream only, in version order.
        #[arg(long)]
        stream: Option<String>,
        /// The tenant to read.
        #[arg(long, default_value = "default", conflicts_with = "all_tenants")]
        tenant: String,
        /// Read every tenant's records (whole-log reads only).
        #[arg(long, conflicts_with = "stream")]
        all_tenants: bool,
        /// The first position (whole log) or version (stream) to print.
        #[arg(long, default_value_t = 0)]
        from: u64,
        /// Read the whole log from `--from` towards position 0.
        #[arg(long, conflicts_with = "stream")]
        backward: bool,
        /// Print at most this many records.
        #[arg(long)]
        limit: Option<u64>,
    },
    /// Prints the head: the position the next record will get.
    Head,
    /// Checks every record's hash, the per-tenant chains and the indexes.
    Verify {
        /// Check one tenant's chain only.
        #[arg(long)]
        tenant: Option<String>,
    },
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("MAILLEDGER_LOG_LEVEL")
                .unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<ExitCode> {
    let durability: Durability = cli.durability.parse()?;
    let config = LedgerConfig::new().durability(durability);
    let create = matches!(cli.command, Command::Init);
    let location = location::resolve(&cli.data_dir, cli.log.as_deref(), create)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async move {
        let log = location::open(&location, config)?;
        let code = match cli.command {
            Command::Init => {
                eprintln!(
                    "initialised {} with a {} log ({} records)",
                    cli.data_dir.display(),
                    location.backend(),
                    log.head()
                );
                ExitCode::SUCCESS
            }
            Command::Append { file, tenant } => append(&log, file, &tenant).await?,
            Command::Read {
                stream,
                tenant,
                all_tenants,
                from,
                backward,
                limit,
            } => {
                let filter = if all_tenants {
                    TenantFilter::All
                } else {
                    TenantFilter::Only(tenant.clone())
                };
                read(
                    &log,
                    stream.as_deref(),
                    &tenant,
                    &filter,
                    from,
                    backward,
                    limit,
                )
                .await?
            }
            Command::Head => {
                println!("{}", log.head());
                ExitCode::SUCCESS
            }
            Command::Verify { tenant } => verify(&log, tenant).await?,
        };
        log.sync().await?;
        if matches!(location, LogLocation::Memory) {
            eprintln!("note: the memory: backend keeps nothing after this command");
        }
        Ok(code)
    })
}

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

const APPEND_BATCH: usize = 10_000;

fn parse_line(line: &str) -> Result<StreamAppend> {
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

async fn append(log: &Arc<dyn EventLog>, file: Option<PathBuf>, tenant: &str) -> Result<ExitCode> {
    mailledger_core::validate_tenant(tenant)?;
    let reader: Box<dyn BufRead> = match file.as_deref() {
        None => Box::new(std::io::stdin().lock()),
        Some(p) if p.as_os_str() == "-" => Box::new(std::io::stdin().lock()),
        Some(p) => Box::new(std::io::BufReader::new(
            std::fs::File::open(p).with_context(|| format!("cannot open {}", p.display()))?,
        )),
    };
    let mut parsed = Vec::new();
    for (i, line) in reader.lines().enumerate() {
        let n = i + 1;
        let line = line.with_context(|| format!("line {n}: cannot read"))?;
        if line.trim().is_empty() {
            continue;
        }
        let item = parse_line(&line).map_err(|e| anyhow!("line {n}: {e}; nothing was written"))?;
        parsed.push((n, item));
    }
    let (mut appended, mut duplicates) = (0usize, 0usize);
    for chunk in parsed.chunks(APPEND_BATCH) {
        let first = chunk.first().map_or(0, |(n, _)| *n);
        let last = chunk.last().map_or(0, |(n, _)| *n);
        let batch = chunk.iter().map(|(_, s)| s.clone()).collect();
        let out = log.append(tenant, batch).await.map_err(|e| {
            anyhow!(
                "lines {first}-{last}: {e}; nothing of these lines was written ({appended} records from earlier lines were)"
            )
        })?;
        for o in out {
            duplicates += o.duplicates;
            appended += o.positions.len() - o.duplicates;
        }
    }
    eprintln!(
        "appended {appended} records ({duplicates} already present); head is {}",
        log.head()
    );
    Ok(ExitCode::SUCCESS)
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

fn opaque(bytes: &[u8]) -> serde_json::Value {
    match serde_json::from_slice::<serde_json::Value>(bytes) {
        Ok(v) => v,
        Err(_) => serde_json::json!({ "hex": hex(bytes) }),
    }
}

fn record_json(r: &Record) -> serde_json::Value {
    serde_json::json!({
        "position": r.position,
        "tenant": r.tenant,
        "stream": r.stream,
        "version": r.stream_version,
        "id": r.event_id,
        "type": r.event_type,
        "recorded_at_micros": r.recorded_at_micros,
        "payload": opaque(&r.payload),
        "metadata": if r.metadata.is_empty() { serde_json::Value::Null } else { opaque(&r.metadata) },
        "prev_hash": hex(&r.prev_hash),
        "hash": hex(&r.hash),
    })
}

async fn read(
    log: &Arc<dyn EventLog>,
    stream: Option<&str>,
    tenant: &str,
    filter: &TenantFilter,
    from: u64,
    backward: bool,
    limit: Option<u64>,
) -> Result<ExitCode> {
    let stdout = std::io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    let mut left = limit.unwrap_or(u64::MAX);
    let page = |left: u64| usize::try_from(left.min(1000)).unwrap_or(1000);
    if let Some(stream) = stream {
        let mut version = from;
        while left > 0 {
            let records = log.read_stream(tenant, stream, version, page(left)).await?;
            let Some(last) = records.last() else { break };
            version = last.stream_version + 1;
            for r in &records {
                writeln!(out, "{}", record_json(r))?;
            }
            left -= records.len() as u64;
        }
    } else {
        let direction = if backward {
            Direction::Backward
        } else {
            Direction::Forward
        };
        let mut next = Some(from);
        let head = log.head();
        while let (Some(pos), true) = (next, left > 0) {
            if direction == Direction::Forward && pos >= head {
                break;
            }
            let batch = log.read_all(filter, pos, direction, page(left)).await?;
            for r in &batch.records {
                writeln!(out, "{}", record_json(r))?;
            }
            left -= batch.records.len() as u64;
            next = batch.next;
        }
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

async fn verify(log: &Arc<dyn EventLog>, tenant: Option<String>) -> Result<ExitCode> {
    let filter = tenant.map_or(TenantFilter::All, TenantFilter::Only);
    let head = log.head();
    let bar = if std::io::stderr().is_terminal() && head > 10_000 {
        let bar = ProgressBar::new(head);
        bar.set_style(
            ProgressStyle::with_template(
                "verifying {bar:40} {pos}/{len} records ({per_sec}, {eta} left)",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        Some(bar)
    } else {
        None
    };
    let progress = bar.clone().map(|b| {
        Arc::new(move |p: VerifyProgress| b.set_position(p.checked)) as mailledger_core::ProgressFn
    });
    let result = log.verify(&filter, 0..u64::MAX, progress).await;
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    match result {
        Ok(report) => {
            println!(
                "ok: {} records of {} tenant(s) verified, positions {}..{}; every hash and chain link holds",
                report.records, report.tenants, report.range.start, report.range.end
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(e @ mailledger_core::Error::Corrupt { .. }) => {
            eprintln!("verification failed: {e}");
            Ok(ExitCode::from(3))
        }
        Err(e) => Err(e.into()),
    }
}
