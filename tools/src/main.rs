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

mod allocator;
mod append;
mod erase;
mod head;
mod init;
mod key;
mod location;
mod memory;
mod migrate;
mod open;
mod policy;
mod projections_cmd;
mod read;
mod rebuild;
mod residency;
mod serve;
mod tenant;
mod threads;
mod verify;

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::{Parser, Subcommand};

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
    /// The memory this process's stores and caches share, such as 1GiB or 512MiB (at least 256MiB); peak resident memory stays near it.
    #[arg(
        long,
        global = true,
        env = "MAILLEDGER_MEMORY_BUDGET",
        default_value = memory::DEFAULT_BUDGET
    )]
    memory_budget: String,
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
    Append(append::AppendArgs),
    /// Prints records as JSON lines: one stream, or the whole log.
    Read(read::ReadArgs),
    /// Erases contacts: destroys their keys and prints the receipts (JSON).
    ///
    /// Addresses come from standard input (`mailledger erase < list.txt`)
    /// or --address-file, one per line, so none shows in `ps` or shell
    /// history; or give one contact's pseudonym with --contact. Every
    /// address is checked before any key is destroyed. Afterwards their
    /// events read with {"erased": true} in place of each personal field,
    /// and the chain still verifies. Repeating an erasure with its request
    /// id prints the first receipt again.
    Erase(erase::EraseArgs),
    /// Shows, or with flags sets, what a tenant keeps of optional personal data.
    Policy(policy::PolicyArgs),
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
        command: tenant::TenantCommand,
    },
    /// Creates, lists and revokes API keys (works while the server runs).
    Key {
        #[command(subcommand)]
        command: key::KeyCommand,
    },
    /// Rebuilds projections from position 0 into fresh stores and swaps them in.
    ///
    /// With a progress bar (events done, events/s, time left). An
    /// interrupted rebuild resumes where it stopped. Needs the log to
    /// itself: stop `mailledger serve` first.
    Rebuild(rebuild::RebuildArgs),
    /// Shows each projection's checkpoint and lag behind the head (JSON lines).
    Projections,
    /// Checks every record's hash, the per-tenant chains and the indexes,
    /// then counts where each tenant's records were written (exit 3 on
    /// corruption; exit 4 when records were written by a node outside
    /// their tenant's allowed jurisdictions).
    Verify(verify::VerifyArgs),
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
    Migrate(migrate::MigrateArgs),
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
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("MAILLEDGER_LOG_LEVEL")
                .unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match run(&cli) {
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

    /// The memory budget of the flags and environment, split.
    fn memory(&self) -> Result<memory::MemoryPlan> {
        memory::MemoryPlan::parse(&self.memory_budget)
    }

    /// The residency these flags and this data directory declare.
    fn residency(&self) -> Result<mailledger_core::residency::Residency> {
        self.residency_args()
            .declare_for(&self.data_dir, self.log.as_deref(), &self.keys_dir)
    }
}

/// Runs the command: each command's module opens what it needs.
fn run(cli: &Cli) -> Result<ExitCode> {
    match &cli.command {
        Command::Init => init::run(cli),
        Command::Append(args) => append::run(cli, args),
        Command::Read(args) => read::run(cli, args),
        Command::Erase(args) => erase::run(cli, args),
        Command::Policy(args) => policy::run(cli, args),
        Command::Head => head::run(cli),
        Command::Serve(args) => serve::run(cli, args),
        Command::Tenant { command } => tenant::run(cli, command),
        Command::Key { command } => key::run(cli, command),
        Command::Rebuild(args) => rebuild::run(cli, args),
        Command::Projections => projections_cmd::run(cli),
        Command::Verify(args) => verify::run(cli, args),
        Command::Residency => residency::run(cli),
        Command::Migrate(args) => migrate::run(cli, args),
    }
}
