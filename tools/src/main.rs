//! `mailledger`: the one binary. Appends email events (sealed on the way
//! in), reads them (opened, or shown erased), erases contacts, and reads and
//! verifies the log underneath.

/// Prints a line on standard output, like `println!`, but a closed pipe
/// (`mailledger residency | head`) is an error the command returns, not a
/// panic.
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::print_line(format_args!($($arg)*))
            .map_err(|e| anyhow::anyhow!("{}: {e}", $crate::STDOUT))?
    };
}

mod admin;
mod allocator;
mod location;
mod migrate;
mod projections_cmd;
mod residency;
mod serve;

use std::io::{BufRead, BufWriter, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result, anyhow, bail};
use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use mailledger_core::crypto::Personal;
use mailledger_core::email::{ContactRef, EmailLedger, message_stream, parse_event};
use mailledger_core::keys::{FileKeyStore, KeyStore, generate_kek_file};
use mailledger_core::pseudonym::Pseudonym;
use mailledger_core::{
    Direction, Durability, EventLog, ExpectedVersion, LedgerConfig, NewEvent, Record, StreamAppend,
    TenantFilter, VerifyProgress, hex,
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
    /// The log's backend and place: fjall:PATH, sled:PATH, objects:PATH (segment files), s3://BUCKET/PREFIX (segment objects; the client's settings come from AWS_* variables) or memory:. Default: fjall inside the data directory.
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
    /// The key directory: contact keys and tenant secrets, kept apart from the log (never copy it with backups of the data).
    #[arg(
        long,
        global = true,
        env = "MAILLEDGER_KEYS_DIR",
        default_value = "./mailledger-keys"
    )]
    keys_dir: PathBuf,
    /// A file holding the key-encryption key (64 hex digits, mode 0600). Or set MAILLEDGER_KEK to the hex itself. Without either, the key `init` generated in the keys directory is used (fine for trying out; production should keep the KEK elsewhere).
    #[arg(long, global = true, env = "MAILLEDGER_KEK_FILE")]
    kek_file: Option<PathBuf>,
    /// The jurisdiction this node runs in: EU or an ISO 3166-1 alpha-2 code such as DE [default: EU].
    #[arg(long, global = true, env = "MAILLEDGER_JURISDICTION")]
    jurisdiction: Option<String>,
    /// The jurisdictions this node allows data in, comma-separated [default: the node's own]. Nothing starts when the node or a store lies outside them, or outside a tenant's.
    #[arg(long, global = true, env = "MAILLEDGER_ALLOWED_JURISDICTIONS")]
    allowed_jurisdictions: Option<String>,
    /// Where the data directory (and the log, unless --log-jurisdiction says otherwise) is kept (your declaration: a disk cannot say) [default: the node's jurisdiction].
    #[arg(long, global = true, env = "MAILLEDGER_DATA_JURISDICTION")]
    data_jurisdiction: Option<String>,
    /// Where the log is kept, when not with the data directory (such as a bucket elsewhere) [default: the data directory's]. For a log on Amazon S3 its region decides.
    #[arg(long, global = true, env = "MAILLEDGER_LOG_JURISDICTION")]
    log_jurisdiction: Option<String>,
    /// Where the key directory is kept [default: the node's jurisdiction].
    #[arg(long, global = true, env = "MAILLEDGER_KEYS_JURISDICTION")]
    keys_jurisdiction: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Creates the data directory and an empty log.
    Init,
    /// Appends email events given as canonical JSON lines, from a file or standard input.
    ///
    /// Each line is one event, such as {"id": UUID, "type": "bounced",
    /// "recipient": "ann@example.org", "message_id": "m-42", "occurred_at":
    /// "2026-11-22T10:00:00Z", "class": "hard", ...}. Personal fields are
    /// sealed under the contact's key before anything is stored. Every line is
    /// checked before anything is written; up to 10,000 lines are appended as
    /// one atomic batch. With --records, lines are raw log records instead:
    /// {"id", "stream", "type", "payload", "metadata"?, "expected_version"?}.
    Append {
        /// The file to read; standard input when absent or `-`.
        #[arg(long, short)]
        file: Option<PathBuf>,
        /// The tenant the events belong to.
        #[arg(long, default_value = "default")]
        tenant: String,
        /// Lines are raw log records, not email events.
        #[arg(long)]
        records: bool,
    },
    /// Prints records as JSON lines: one stream, or the whole log.
    Read {
        /// Read this stream only, in version order.
        #[arg(long)]
        stream: Option<String>,
        /// Read one message's events (its stream), by message id.
        #[arg(long, conflicts_with = "stream")]
        message: Option<String>,
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
        /// Print raw records (sealed fields as ciphertext), as stored and hashed.
        #[arg(long)]
        raw: bool,
    },
    /// Erases a contact: destroys its key and prints the receipt (JSON).
    ///
    /// Afterwards its events read with {"erased": true} in place of each
    /// personal field, and the chain still verifies. Repeating an erasure
    /// prints the first receipt again.
    Erase {
        /// The contact's address.
        #[arg(long, required_unless_present = "contact", conflicts_with = "contact")]
        address: Option<String>,
        /// The contact's pseudonym (32 hex digits), as reads show it.
        #[arg(long)]
        contact: Option<String>,
        /// Your id for this request (letters, digits, - _ . :); a new one by default.
        #[arg(long)]
        request_id: Option<String>,
        /// The tenant.
        #[arg(long, default_value = "default")]
        tenant: String,
    },
    /// Shows, or with flags sets, what a tenant keeps of optional personal data.
    Policy {
        /// The tenant.
        #[arg(long, default_value = "default")]
        tenant: String,
        /// Keep (sealed) subject lines.
        #[arg(long)]
        keep_subjects: Option<bool>,
        /// Keep (sealed) IP addresses and user agents of opens and clicks.
        #[arg(long)]
        keep_engagement_details: Option<bool>,
        /// Replaces the suppression rules, as JSON such as {"soft_bounce_threshold": 5}; fields left out take their defaults (hard_bounce, complaint, unsubscribe: true; soft_bounce_threshold 3, soft_bounce_window_days 7, soft_bounce_expiry_days 30).
        #[arg(long)]
        suppression: Option<String>,
        /// Replaces the analytics rules, as JSON such as {"bot_click_window_secs": 5} (default 10; 0 turns the rule off).
        #[arg(long)]
        analytics: Option<String>,
    },
    /// Prints the head: the position the next record will get.
    Head,
    /// Runs the HTTP API (default 127.0.0.1:8080); initialises an empty data directory first.
    ///
    /// The first start creates tenant `default` and prints one API key with
    /// every scope. Stops on SIGTERM or SIGINT after finishing requests in
    /// flight. Settings come from --config FILE (TOML), MAILLEDGER_*
    /// environment variables and flags, in rising precedence.
    Serve(serve::ServeArgs),
    /// Creates and lists tenants, and sets their webhook secrets (works while the server runs).
    Tenant {
        #[command(subcommand)]
        command: admin::TenantCommand,
    },
    /// Creates, lists and revokes API keys (works while the server runs).
    Key {
        #[command(subcommand)]
        command: admin::KeyCommand,
    },
    /// Rebuilds projections from position 0 into fresh stores and swaps them in.
    ///
    /// With a progress bar (events done, events/s, time left). An
    /// interrupted rebuild resumes where it stopped. Needs the log to
    /// itself: stop `mailledger serve` first.
    Rebuild {
        /// delivery-log, suppressions, analytics, or all.
        #[arg(default_value = "all")]
        which: String,
    },
    /// Shows each projection's checkpoint and lag behind the head (JSON lines).
    Projections,
    /// Checks every record's hash, the per-tenant chains and the indexes,
    /// then counts where each tenant's records were written (exit 3 on
    /// corruption; exit 4 when records were written by a node outside
    /// their tenant's allowed jurisdictions).
    Verify {
        /// Check one tenant's chain only.
        #[arg(long)]
        tenant: Option<String>,
    },
    /// Prints the residency report (JSON): this node's jurisdiction and
    /// what it allows, each store with its declared jurisdiction, each
    /// tenant with its allowed ones, and any violation.
    ///
    /// Made from the configuration this command is given (the same flags
    /// and environment as the other commands; `serve` also reads its
    /// file's [residency] table, and `GET /v1/admin/residency` reports what
    /// the running server uses). Exit status 4 when something lies outside
    /// an allowed jurisdiction: the other commands then refuse to start.
    /// Works while the server runs.
    Residency,
    /// Copies the log to another backend (such as objects:PATH or
    /// s3://BUCKET/PREFIX), byte for byte, verifies the copy, then points
    /// the data directory at it.
    ///
    /// The target must be empty and lie where the node and every tenant
    /// allow (checked before anything is written). With a progress bar.
    /// The old log is left as it was. Needs the log to itself: stop
    /// `mailledger serve` first.
    Migrate {
        /// Where the log goes, as --log names it.
        #[arg(long)]
        to: String,
    },
}

/// What a failed write to standard output says.
const STDOUT: &str = "cannot write to standard output";

/// Writes `line` and a newline to standard output.
///
/// # Errors
/// Standard output is closed or cannot be written.
fn print_line(line: std::fmt::Arguments<'_>) -> std::io::Result<()> {
    let mut stdout = std::io::stdout().lock();
    stdout.write_fmt(line)?;
    stdout.write_all(b"\n")
}

fn main() -> ExitCode {
    allocator::keep_freed_memory();
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

impl Cli {
    /// The residency settings of the flags and environment.
    fn residency_args(&self) -> residency::ResidencyArgs {
        residency::ResidencyArgs {
            jurisdiction: self.jurisdiction.clone(),
            allowed: self.allowed_jurisdictions.clone(),
            data: self.data_jurisdiction.clone(),
            log: self.log_jurisdiction.clone(),
            keys: self.keys_jurisdiction.clone(),
        }
    }

    /// The residency these flags and this data directory declare.
    fn residency(&self) -> Result<mailledger_core::residency::Residency> {
        self.residency_args()
            .declare_for(&self.data_dir, self.log.as_deref(), &self.keys_dir)
    }
}

fn run(cli: Cli) -> Result<ExitCode> {
    // These never open the log the usual way (the server holds it).
    match &cli.command {
        Command::Serve(args) => return serve::run(&cli, args),
        Command::Tenant { command } => return admin::tenant(&cli, command),
        Command::Key { command } => return admin::key(&cli, command),
        Command::Residency => return residency::report(&cli.residency()?, &cli.data_dir),
        Command::Migrate { to } => return migrate::run(&cli, to),
        _ => {}
    }
    let durability: Durability = cli.durability.parse()?;
    let create = matches!(cli.command, Command::Init);
    // Checked before anything is created or opened (a fresh `init` has no
    // tenant yet; it makes `default` allowing what the node allows).
    let declared = cli.residency()?;
    let tenants = residency::enforce(&declared, &cli.data_dir)?;
    let config = LedgerConfig::new()
        .durability(durability)
        .jurisdiction(declared.node());
    let location = location::resolve(&cli.data_dir, cli.log.as_deref(), create)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let needs_keys = match &cli.command {
        Command::Init | Command::Erase { .. } | Command::Policy { .. } => true,
        Command::Append { records, .. } => !records,
        Command::Read { raw, .. } => !raw,
        Command::Head
        | Command::Verify { .. }
        | Command::Rebuild { .. }
        | Command::Projections
        | Command::Serve(_)
        | Command::Tenant { .. }
        | Command::Key { .. }
        | Command::Residency
        | Command::Migrate { .. } => false,
    };
    let keys = if needs_keys {
        Some(open_keys(
            &cli.data_dir,
            &cli.keys_dir,
            cli.kek_file.as_deref(),
            create,
        )?)
    } else {
        None
    };
    runtime.block_on(async move {
        let log = location::open(&location, config)?;
        let email = keys.map(|k| EmailLedger::new(Arc::clone(&log), k));
        let email = || {
            email
                .as_ref()
                .ok_or_else(|| anyhow!("the key store is not open"))
        };
        let code = match cli.command {
            Command::Init => {
                email()?.keys().tenant_secret("default")?;
                admin::init_access(
                    &cli.data_dir,
                    &cli.keys_dir,
                    cli.kek_file.as_deref(),
                    declared.allowed(),
                )?;
                eprintln!(
                    "initialised {} with a {} log ({} records) and keys in {}",
                    cli.data_dir.display(),
                    location.backend(),
                    log.head(),
                    cli.keys_dir.display()
                );
                ExitCode::SUCCESS
            }
            Command::Append {
                file,
                tenant,
                records: true,
            } => append_records(&log, file, &tenant).await?,
            Command::Append { file, tenant, .. } => append_events(email()?, file, &tenant).await?,
            Command::Read {
                stream,
                message,
                tenant,
                all_tenants,
                from,
                backward,
                limit,
                raw,
            } => {
                let filter = if all_tenants {
                    TenantFilter::All
                } else {
                    TenantFilter::Only(tenant.clone())
                };
                let email = if raw { None } else { Some(email()?) };
                let stream = stream.or(message.as_deref().map(message_stream));
                read(
                    &log,
                    email,
                    stream.as_deref(),
                    &tenant,
                    &filter,
                    from,
                    backward,
                    limit,
                )
                .await?
            }
            Command::Erase {
                address,
                contact,
                request_id,
                tenant,
            } => {
                let target = match (address, contact) {
                    (Some(a), _) => ContactRef::Address(Personal::new(a)),
                    (None, Some(p)) => ContactRef::Pseudonym(Pseudonym::from_hex(&p)?),
                    (None, None) => bail!("give --address or --contact"),
                };
                let request_id = request_id.unwrap_or_else(|| Uuid::now_v7().to_string());
                let receipt = email()?.erase(&tenant, target, &request_id).await?;
                out!("{}", serde_json::to_string_pretty(&receipt)?);
                ExitCode::SUCCESS
            }
            Command::Policy {
                tenant,
                keep_subjects,
                keep_engagement_details,
                suppression,
                analytics,
            } => {
                let email = email()?;
                let mut policy = email.policy(&tenant).await?;
                let changed = keep_subjects.is_some()
                    || keep_engagement_details.is_some()
                    || suppression.is_some()
                    || analytics.is_some();
                if let Some(j) = suppression {
                    policy.suppression = serde_json::from_str(&j)
                        .context("--suppression: not valid suppression rules")?;
                }
                if let Some(j) = analytics {
                    policy.analytics = serde_json::from_str(&j)
                        .context("--analytics: not valid analytics rules")?;
                }
                if changed {
                    policy.keep_subjects = keep_subjects.unwrap_or(policy.keep_subjects);
                    policy.keep_engagement_details =
                        keep_engagement_details.unwrap_or(policy.keep_engagement_details);
                    email.set_policy(&tenant, policy).await?;
                }
                out!("{}", serde_json::to_string(&policy)?);
                ExitCode::SUCCESS
            }
            Command::Head => {
                out!("{}", log.head());
                ExitCode::SUCCESS
            }
            Command::Verify { tenant } => verify(&log, tenant, &declared, &tenants).await?,
            Command::Rebuild { which } => {
                projections_cmd::rebuild(&log, &cli.data_dir, &which).await?
            }
            Command::Projections => projections_cmd::status(&log, &cli.data_dir)?,
            Command::Serve(_)
            | Command::Tenant { .. }
            | Command::Key { .. }
            | Command::Residency
            | Command::Migrate { .. } => {
                bail!("handled before the log is opened")
            }
        };
        log.sync().await?;
        if matches!(location, LogLocation::Memory) {
            eprintln!("note: the memory: backend keeps nothing after this command");
        }
        Ok(code)
    })
}

/// The name of the KEK file `init` generates when no KEK is configured.
const GENERATED_KEK: &str = "kek";

/// Opens the key store, finding the KEK as `--help` describes.
fn open_keys(
    data_dir: &Path,
    keys_dir: &Path,
    kek_file: Option<&Path>,
    create: bool,
) -> Result<Arc<dyn KeyStore>> {
    let data = std::path::absolute(data_dir)?;
    let keys = std::path::absolute(keys_dir)?;
    if keys.starts_with(&data) {
        bail!(
            "the keys directory {} is inside the data directory: keys must live apart from the log, which may be copied or backed up",
            keys_dir.display()
        );
    }
    let generated = keys_dir.join(GENERATED_KEK);
    let nothing_configured =
        kek_file.is_none() && std::env::var_os("MAILLEDGER_KEK").is_none() && !generated.exists();
    let kek = if create && nothing_configured {
        std::os::unix::fs::DirBuilderExt::mode(std::fs::DirBuilder::new().recursive(true), 0o700)
            .create(keys_dir)
            .with_context(|| format!("cannot create {}", keys_dir.display()))?;
        let kek = generate_kek_file(&generated)?;
        eprintln!(
            "warning: generated a key-encryption key in {} (mode 0600). Production should keep the KEK elsewhere (--kek-file or MAILLEDGER_KEK_FILE), away from the keys it protects.",
            generated.display()
        );
        kek
    } else {
        admin::find_kek(keys_dir, kek_file)?
    };
    Ok(Arc::new(FileKeyStore::open(keys_dir, &kek)?))
}

fn input(file: Option<PathBuf>) -> Result<Box<dyn BufRead>> {
    Ok(match file.as_deref() {
        None => Box::new(std::io::stdin().lock()),
        Some(p) if p.as_os_str() == "-" => Box::new(std::io::stdin().lock()),
        Some(p) => Box::new(std::io::BufReader::new(
            std::fs::File::open(p).with_context(|| format!("cannot open {}", p.display()))?,
        )),
    })
}

async fn append_events(
    email: &EmailLedger,
    file: Option<PathBuf>,
    tenant: &str,
) -> Result<ExitCode> {
    mailledger_core::validate_tenant(tenant)?;
    let mut parsed = Vec::new();
    for (i, line) in input(file)?.lines().enumerate() {
        let n = i + 1;
        let line = line.with_context(|| format!("line {n}: cannot read"))?;
        if line.trim().is_empty() {
            continue;
        }
        let event = parse_event(&line)
            .and_then(|e| {
                // Check now so a bad line is named before anything is written.
                e.clone().validate()?;
                Ok(e)
            })
            .map_err(|e| anyhow!("line {n}: {e}; nothing was written"))?;
        parsed.push((n, event));
    }
    let (mut appended, mut duplicates) = (0usize, 0usize);
    for chunk in parsed.chunks(APPEND_BATCH) {
        let first = chunk.first().map_or(0, |(n, _)| *n);
        let last = chunk.last().map_or(0, |(n, _)| *n);
        let batch = chunk.iter().map(|(_, e)| e.clone()).collect();
        let out = email.append(tenant, batch).await.map_err(|e| {
            anyhow!(
                "lines {first}-{last}: {e}; nothing of these lines was written ({appended} events from earlier lines were)"
            )
        })?;
        for a in out {
            if a.duplicate {
                duplicates += 1;
            } else {
                appended += 1;
            }
        }
    }
    eprintln!(
        "appended {appended} events ({duplicates} already present); head is {}",
        email.log().head()
    );
    Ok(ExitCode::SUCCESS)
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

async fn append_records(
    log: &Arc<dyn EventLog>,
    file: Option<PathBuf>,
    tenant: &str,
) -> Result<ExitCode> {
    mailledger_core::validate_tenant(tenant)?;
    let reader = input(file)?;
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
        "jurisdiction": r.jurisdiction,
        "payload": opaque(&r.payload),
        "metadata": if r.metadata.is_empty() { serde_json::Value::Null } else { opaque(&r.metadata) },
        "prev_hash": hex(&r.prev_hash),
        "hash": hex(&r.hash),
    })
}

/// A record as `read` prints it: an email event opened, else the raw record.
fn shown(email: Option<&EmailLedger>, r: &Record) -> Result<serde_json::Value> {
    if let Some(email) = email
        && let Some(e) = email.open(r)?
    {
        return Ok(e.to_json());
    }
    Ok(record_json(r))
}

#[allow(clippy::too_many_arguments)]
async fn read(
    log: &Arc<dyn EventLog>,
    email: Option<&EmailLedger>,
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
                writeln!(out, "{}", shown(email, r)?).context(STDOUT)?;
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
                writeln!(out, "{}", shown(email, r)?).context(STDOUT)?;
            }
            left -= batch.records.len() as u64;
            next = batch.next;
        }
    }
    out.flush().context(STDOUT)?;
    Ok(ExitCode::SUCCESS)
}

/// `mailledger verify`: the chain and indexes (exit 3 on corruption), then
/// where the verified records were written against where their tenants
/// allow (exit 4 when some were written outside).
async fn verify(
    log: &Arc<dyn EventLog>,
    tenant: Option<String>,
    declared: &mailledger_core::residency::Residency,
    tenants: &[mailledger_core::residency::TenantResidency],
) -> Result<ExitCode> {
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
            let outside = declared.records_outside(&report.written_in, tenants);
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
