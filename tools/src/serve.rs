//! `mailledger serve`: the HTTP API.
//!
//! Settings, lowest precedence first: built-in defaults, the TOML file of
//! `--config` (or `MAILLEDGER_CONFIG`), environment variables
//! (`MAILLEDGER_*`), command-line flags. The file may set every setting:
//!
//! ```toml
//! listen = "127.0.0.1:8080"
//! metrics_listen = "127.0.0.1:9464"   # GET /metrics; not served unless set
//! data_dir = "./mailledger-data"
//! keys_dir = "./mailledger-keys"
//! kek_file = "/run/secrets/mailledger-kek"
//! log = "fjall:./mailledger-data/log"
//! durability = "sync"
//! max_group_records = 400
//! memory_budget = "1GiB"              # what the stores and caches share
//! audit_key_file = "/run/secrets/mailledger-audit.key"  # default: keys_dir/audit.key
//! checkpoint_interval_secs = 600      # signed checkpoints; 0: none
//!
//! [residency]
//! jurisdiction = "EU"  # where this node runs
//! allowed = "EU"       # comma-separated; default: jurisdiction
//! data = "EU"          # the data directory (and the log); default: jurisdiction
//! log = "EU"           # the log, when kept elsewhere; default: data (Amazon S3: its region)
//! keys = "EU"          # the key directory; default: jurisdiction
//!
//! [limits]
//! max_body_bytes = 1048576
//! max_events_per_request = 1000
//! request_timeout_ms = 30000
//! max_concurrent_requests = 1024
//! max_concurrent_appends = 16
//! rate_limit_per_second = 1000.0
//! rate_limit_burst = 2000
//! ```
//!
//! (`data_dir`, `keys_dir`, `kek_file`, `log`, `durability` and each
//! `[residency]` setting from the file apply when neither the flag nor its
//! environment variable is given.) The server checks residency (see
//! `crate::residency`) before it opens any store, and refuses to start,
//! naming each violation, when the node or a store lies outside the
//! jurisdictions the node or a tenant allows.
//!
//! Prometheus metrics (`GET /metrics`) count every tenant's requests, so
//! they are never served on the API's listener: `metrics_listen`
//! (`--metrics-listen`, `MAILLEDGER_METRICS_LISTEN`) serves them on a
//! listener of their own, as Prometheus exporters usually are, for an
//! address only the monitoring network reaches; without it they are not
//! served at all.
//!
//! `max_group_records` bounds the records the log writes in one group
//! commit ([`mailledger_core::LedgerConfig::max_group_records`]); the
//! server's default, [`DEFAULT_MAX_GROUP_RECORDS`], is far below the
//! library's. A group is written in one store call that cannot stop to let
//! a query run, and the writer prepares the next group while the committer
//! writes one, so groups of a few requests keep both busy and the commit
//! short (the load bench measured both more ingest and a lower query p99
//! with the bound; benches/RESULTS.md).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use clap::Args;
use mailledger_access::DEFAULT_TENANT;
use mailledger_api::{AppState, Limits};
use mailledger_core::email::EmailLedger;
use mailledger_core::{Durability, LedgerConfig};
use serde::Deserialize;

use crate::Cli;
use crate::memory::{DEFAULT_BUDGET, MemoryPlan};
use crate::residency::ResidencyArgs;

/// The default address to listen on.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";

/// The most records the server's log writes in one group commit, unless
/// set (see the module docs for why it is small).
pub const DEFAULT_MAX_GROUP_RECORDS: usize = 400;

/// `mailledger serve`'s own flags.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// A TOML configuration file (see the settings below; every one may be set there).
    #[arg(long, env = "MAILLEDGER_CONFIG")]
    config: Option<PathBuf>,
    /// The address to listen on [default: 127.0.0.1:8080].
    #[arg(long, env = "MAILLEDGER_LISTEN")]
    listen: Option<String>,
    /// Serves Prometheus metrics (GET /metrics, counts of every tenant) on
    /// this address of their own, such as 127.0.0.1:9464; keep it off the
    /// public network. Never served on the API's address [default: not served].
    #[arg(long, env = "MAILLEDGER_METRICS_LISTEN")]
    metrics_listen: Option<String>,
    /// The largest request body, in bytes [default: 1048576].
    #[arg(long, env = "MAILLEDGER_MAX_BODY_BYTES")]
    max_body_bytes: Option<usize>,
    /// The most events in one POST /v1/events [default: 1000].
    #[arg(long, env = "MAILLEDGER_MAX_EVENTS_PER_REQUEST")]
    max_events_per_request: Option<usize>,
    /// How long a request may take, in milliseconds [default: 30000].
    #[arg(long, env = "MAILLEDGER_REQUEST_TIMEOUT_MS")]
    request_timeout_ms: Option<u64>,
    /// Requests handled at once; more are answered 503 [default: 1024].
    #[arg(long, env = "MAILLEDGER_MAX_CONCURRENT_REQUESTS")]
    max_concurrent_requests: Option<usize>,
    /// Ingest requests sealing and appending at once; more wait [default: 16].
    #[arg(long, env = "MAILLEDGER_MAX_CONCURRENT_APPENDS")]
    max_concurrent_appends: Option<usize>,
    /// The most records the log writes in one group commit; an append
    /// larger than this goes in a group of its own [default: 400].
    #[arg(long, env = "MAILLEDGER_MAX_GROUP_RECORDS")]
    max_group_records: Option<usize>,
    /// Seconds between signed checkpoints of every tenant's chain (one
    /// more is signed on a graceful stop); 0 signs none [default: 600].
    #[arg(long, env = "MAILLEDGER_CHECKPOINT_INTERVAL_SECS")]
    checkpoint_interval_secs: Option<u64>,
    /// Sets thread priorities: request threads as SCHED_FIFO (needs
    /// CAP_SYS_NICE; else nice -2, where allowed), so a query takes a core
    /// at once under load, and a long request runs ahead of ingest; the
    /// projections' at nice 10. Off by default.
    #[arg(long, env = "MAILLEDGER_THREAD_PRIORITIES")]
    thread_priorities: bool,
    /// Requests per second per API key; 0 turns the limit off [default: 1000].
    #[arg(long, env = "MAILLEDGER_RATE_LIMIT_PER_SECOND")]
    rate_limit_per_second: Option<f64>,
    /// Requests a key may make in a burst [default: 2000].
    #[arg(long, env = "MAILLEDGER_RATE_LIMIT_BURST")]
    rate_limit_burst: Option<u32>,
}

/// The configuration file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    listen: Option<String>,
    metrics_listen: Option<String>,
    data_dir: Option<PathBuf>,
    keys_dir: Option<PathBuf>,
    kek_file: Option<PathBuf>,
    log: Option<String>,
    durability: Option<String>,
    max_group_records: Option<usize>,
    memory_budget: Option<String>,
    audit_key_file: Option<PathBuf>,
    checkpoint_interval_secs: Option<u64>,
    #[serde(default)]
    limits: Option<Limits>,
    #[serde(default)]
    residency: Option<ResidencyArgs>,
}

/// The settings in force.
#[derive(Debug)]
struct Settings {
    listen: String,
    metrics_listen: Option<String>,
    data_dir: PathBuf,
    keys_dir: PathBuf,
    kek_file: Option<PathBuf>,
    log: Option<String>,
    durability: String,
    max_group_records: usize,
    audit_key_file: Option<PathBuf>,
    checkpoint_interval: Option<std::time::Duration>,
    memory: MemoryPlan,
    limits: Limits,
    residency: ResidencyArgs,
}

/// Whether a global flag was left at its default (neither the flag with
/// another value nor its environment variable was given).
fn defaulted(value: &Path, default: &str, env: &str) -> bool {
    value == Path::new(default) && std::env::var_os(env).is_none()
}

fn settings(cli: &Cli, args: &ServeArgs) -> Result<Settings> {
    let file: FileConfig = match &args.config {
        Some(p) => {
            let text = std::fs::read_to_string(p)
                .with_context(|| format!("cannot read the configuration file {}", p.display()))?;
            toml::from_str(&text).with_context(|| format!("configuration file {}", p.display()))?
        }
        None => FileConfig::default(),
    };
    let pick_path =
        |cli_value: &Path, default: &str, env: &str, from_file: &Option<PathBuf>| match from_file {
            Some(f) if defaulted(cli_value, default, env) => f.clone(),
            _ => cli_value.to_path_buf(),
        };
    let mut limits = file.limits.unwrap_or_default();
    if let Some(v) = args.max_body_bytes {
        limits.max_body_bytes = v;
    }
    if let Some(v) = args.max_events_per_request {
        limits.max_events_per_request = v;
    }
    if let Some(v) = args.request_timeout_ms {
        limits.request_timeout_ms = v;
    }
    if let Some(v) = args.max_concurrent_requests {
        limits.max_concurrent_requests = v;
    }
    if let Some(v) = args.max_concurrent_appends {
        limits.max_concurrent_appends = v;
    }
    if let Some(v) = args.rate_limit_per_second {
        limits.rate_limit_per_second = v;
    }
    if let Some(v) = args.rate_limit_burst {
        limits.rate_limit_burst = v;
    }
    if limits.max_body_bytes == 0 || limits.max_events_per_request == 0 {
        bail!("max_body_bytes and max_events_per_request must be above 0");
    }
    let max_group_records = args
        .max_group_records
        .or(file.max_group_records)
        .unwrap_or(DEFAULT_MAX_GROUP_RECORDS);
    if max_group_records == 0 {
        bail!("max_group_records must be above 0");
    }
    Ok(Settings {
        listen: args
            .listen
            .clone()
            .or(file.listen)
            .unwrap_or_else(|| DEFAULT_LISTEN.to_owned()),
        metrics_listen: args.metrics_listen.clone().or(file.metrics_listen),
        data_dir: pick_path(
            &cli.data_dir,
            "./mailledger-data",
            "MAILLEDGER_DATA_DIR",
            &file.data_dir,
        ),
        keys_dir: pick_path(
            &cli.keys_dir,
            "./mailledger-keys",
            "MAILLEDGER_KEYS_DIR",
            &file.keys_dir,
        ),
        kek_file: cli.kek_file.clone().or(file.kek_file),
        log: cli.log.clone().or(file.log),
        durability: if cli.durability == "sync"
            && std::env::var_os("MAILLEDGER_DURABILITY").is_none()
        {
            file.durability.unwrap_or_else(|| cli.durability.clone())
        } else {
            cli.durability.clone()
        },
        max_group_records,
        audit_key_file: cli.audit_key_file.clone().or(file.audit_key_file),
        checkpoint_interval: match args
            .checkpoint_interval_secs
            .or(file.checkpoint_interval_secs)
            .unwrap_or(DEFAULT_CHECKPOINT_INTERVAL_SECS)
        {
            0 => None,
            secs => Some(std::time::Duration::from_secs(secs)),
        },
        memory: match file.memory_budget {
            Some(budget)
                if cli.memory_budget == DEFAULT_BUDGET
                    && std::env::var_os("MAILLEDGER_MEMORY_BUDGET").is_none() =>
            {
                MemoryPlan::parse(&budget)?
            }
            _ => cli.memory()?,
        },
        limits,
        residency: cli.residency_args().or(file.residency.unwrap_or_default()),
    })
}

/// The default of `checkpoint_interval_secs`: ten minutes.
const DEFAULT_CHECKPOINT_INTERVAL_SECS: u64 = 600;

/// Signs every tenant's checkpoint each `every`, from one `every` after
/// the start.
async fn checkpoint_every(
    every: std::time::Duration,
    log: Arc<dyn mailledger_core::EventLog>,
    key: Arc<mailledger_audit::AuditKey>,
    node: mailledger_core::residency::Jurisdiction,
) {
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        sign_checkpoints(log.as_ref(), &key, node).await;
    }
}

/// Signs every tenant's checkpoint now; a failure is logged, and the next
/// round covers what this one missed.
async fn sign_checkpoints(
    log: &dyn mailledger_core::EventLog,
    key: &mailledger_audit::AuditKey,
    node: mailledger_core::residency::Jurisdiction,
) {
    match mailledger_audit::sign_checkpoints(log, key, node, mailledger_core::now_micros()).await {
        Ok(made) => tracing::info!(tenants = made.len(), "signed checkpoints"),
        Err(e) => tracing::warn!(error = %e, "cannot sign checkpoints"),
    }
}

/// A future that resolves on SIGTERM or SIGINT, with both handlers
/// installed before it returns: a signal that arrives between "listening"
/// and the server's first poll of the future must stop it gracefully, not
/// kill it (the default action).
fn shutdown_signal() -> Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate =
        signal(SignalKind::terminate()).context("cannot install the SIGTERM handler")?;
    let mut interrupt =
        signal(SignalKind::interrupt()).context("cannot install the SIGINT handler")?;
    Ok(async move {
        tokio::select! {
            _ = terminate.recv() => {},
            _ = interrupt.recv() => {},
        }
        eprintln!("mailledger: stopping: finishing requests in flight");
    })
}

/// Runs `mailledger serve`.
pub fn run(cli: &Cli, args: &ServeArgs) -> Result<ExitCode> {
    let s = settings(cli, args)?;
    let durability: Durability = s.durability.parse()?;
    // The first start on an empty directory initialises it, as `init` does.
    // Residency is checked before anything is created or opened.
    let residency = s
        .residency
        .declare_for(&s.data_dir, s.log.as_deref(), &s.keys_dir)?;
    crate::residency::enforce(&residency, &s.data_dir)?;
    let node = residency.node();
    let location = crate::location::resolve(&s.data_dir, s.log.as_deref(), true)?;
    let keys = crate::open::keys(
        &s.data_dir,
        &s.keys_dir,
        s.kek_file.as_deref(),
        true,
        &s.memory,
    )?;
    let access = crate::open::access(&s.data_dir, &s.keys_dir, s.kek_file.as_deref())?;
    let audit_key = Arc::new(crate::open::audit_key(
        &s.keys_dir,
        s.audit_key_file.as_deref(),
        true,
    )?);
    let policy = crate::threads::ThreadPolicy::new(args.thread_priorities);
    // Named apart from the ingest threads and the projections', so `top -H`
    // and `perf sched` tell request serving from bulk work.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .thread_name("http")
        .on_thread_start(policy.on_request_thread())
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    // Ingest work (parsing, sealing, appending) on threads of its own, so
    // queries never wait behind it in one task queue.
    let threads = std::thread::available_parallelism().map_or(2, std::num::NonZero::get);
    let ingest = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .thread_name("ingest")
        .enable_all()
        .build()
        .context("cannot start the ingest threads")?;
    let ingest_handle = ingest.handle().clone();
    let result = runtime.block_on(async move {
        // The log and the projections each replay their journals on open:
        // both at once, so a restart takes the longer of the two.
        let (log, projections) = std::thread::scope(|scope| {
            let projections =
                scope.spawn(|| crate::projections_cmd::open(&s.data_dir, &s.memory));
            let log = crate::location::open(
                &location,
                LedgerConfig::new()
                    .durability(durability)
                    .max_group_records(s.max_group_records)
                    .jurisdiction(residency.node())
                    .thread_hook(policy.hook()),
                &s.memory,
            );
            let projections = projections
                .join()
                .unwrap_or_else(|_| Err(anyhow::anyhow!("opening the projections failed")));
            anyhow::Ok((log?, projections?))
        })?;
        let email = Arc::new(EmailLedger::new(Arc::clone(&log), keys));
        if let Some((info, key)) = access.bootstrap(residency.allowed())? {
            email.keys().tenant_secret(&info.tenant)?;
            eprintln!(
                "\nmailledger: first start: tenant `{DEFAULT_TENANT}` and this API key (scopes ingest, read, erase, admin, audit) were created.\n\
                 It is shown only this once; keep it somewhere safe:\n"
            );
            out!("{}", key.as_str());
            eprintln!(
                "\nMake more keys with `mailledger key create --tenant {} --scopes ingest,read` \
                 (works while the server runs) or POST /v1/admin/keys with this key.\n",
                info.tenant
            );
        }
        // The projections, fed by the runner inside the server; their
        // fjall stores allow one process, so `mailledger rebuild` and
        // `mailledger projections` run while the server is stopped.
        let projections = Arc::new(projections.with_thread_hook(policy.hook()));
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let runner = projections
            .spawn_runner(Arc::clone(&log), stopped.clone())
            .context("cannot start the projection runner")?;
        let access_log = mailledger_audit::AccessLog::start(Arc::clone(&log));
        let state = AppState::new(email, Arc::new(access))
            .with_access_log(access_log.clone())
            .with_ingest_runtime(ingest_handle)
            .with_limits(s.limits)
            .with_projections(Arc::clone(&projections))
            .with_residency(residency);
        let app = mailledger_api::router(state.clone());
        let shutdown = shutdown_signal()?;
        // Metrics on their own listener, when one is configured; it stops
        // with the server (it holds nothing to flush).
        let metrics = match &s.metrics_listen {
            Some(address) => {
                let listener = tokio::net::TcpListener::bind(address)
                    .await
                    .with_context(|| format!("cannot listen for metrics on {address}"))?;
                let addr = listener.local_addr()?;
                eprintln!("mailledger: metrics on http://{addr}/metrics");
                let app = mailledger_api::metrics_router(state.clone());
                Some(tokio::spawn(async move {
                    if let Err(e) = axum::serve(listener, app).await {
                        tracing::error!(error = %e, "the metrics listener failed");
                    }
                }))
            }
            None => None,
        };
        let listener = tokio::net::TcpListener::bind(&s.listen)
            .await
            .with_context(|| format!("cannot listen on {}", s.listen))?;
        let addr = listener.local_addr()?;
        eprintln!(
            "mailledger: listening on http://{addr} ({} log in {}, keys in {}, memory budget {} MiB); API description at /openapi.json",
            location.backend(),
            s.data_dir.display(),
            s.keys_dir.display(),
            s.memory.budget() >> 20
        );
        let checkpoints = s.checkpoint_interval.map(|every| {
            tokio::spawn(checkpoint_every(
                every,
                Arc::clone(&log),
                Arc::clone(&audit_key),
                node,
            ))
        });
        // Ready once every projection has caught up with the log's head.
        let readiness = {
            let state = state.clone();
            tokio::spawn(async move { state.become_ready(stopped).await })
        };
        // Answers go out as soon as they are written: with Nagle's
        // algorithm a response written in two parts waits for the client's
        // acknowledgement of the first, which a client may delay by 40 ms.
        let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
            if let Err(e) = tcp.set_nodelay(true) {
                tracing::debug!(error = %e, "cannot set TCP_NODELAY on a connection");
            }
        });
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(shutdown)
            .await
            .context("the server failed");
        state.ready.set(false);
        if let Some(m) = metrics {
            m.abort();
        }
        // The access records of the last reads, before the last checkpoint.
        access_log.flush().await;
        if let Some(c) = checkpoints {
            c.abort();
            // A last checkpoint covers every record acknowledged.
            sign_checkpoints(log.as_ref(), &audit_key, node).await;
        }
        // Stop the runner; a long catch-up is cut short (each batch commits
        // its state and checkpoint atomically, so nothing is half applied).
        let _ = stop.send(true);
        readiness.abort();
        let joined = tokio::task::spawn_blocking(move || runner.join());
        if tokio::time::timeout(std::time::Duration::from_secs(10), joined)
            .await
            .is_err()
        {
            tracing::warn!("the projection runner did not stop within 10 s");
        }
        served?;
        projections
            .flush()
            .context("cannot flush the projections")?;
        log.sync().await?;
        eprintln!("mailledger: stopped; the log and the projections are synced");
        Ok(ExitCode::SUCCESS)
    });
    // Whatever ingest work a dropped request left is abandoned: an append
    // is atomic either way.
    ingest.shutdown_background();
    result
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use clap::Parser;

    use super::*;

    fn parse(args: &[&str]) -> Result<Settings> {
        let cli = Cli::try_parse_from(args)?;
        match &cli.command {
            crate::Command::Serve(a) => settings(&cli, a),
            _ => bail!("not serve"),
        }
    }

    #[test]
    fn the_file_sets_what_flags_leave_and_flags_win() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("mailledger.toml");
        std::fs::write(
            &file,
            "listen = \"127.0.0.1:9999\"\ndata_dir = \"/srv/ml/data\"\nmax_group_records = 100\n\n[limits]\nmax_body_bytes = 2048\nrate_limit_burst = 5\n",
        )
        .unwrap();
        let f = file.to_str().unwrap();
        let s = parse(&[
            "mailledger",
            "serve",
            "--config",
            f,
            "--rate-limit-burst",
            "7",
        ])
        .unwrap();
        assert_eq!(s.listen, "127.0.0.1:9999");
        assert_eq!(s.metrics_listen, None, "metrics are not served by default");
        assert_eq!(s.data_dir, PathBuf::from("/srv/ml/data"));
        assert_eq!(s.limits.max_body_bytes, 2048);
        assert_eq!(s.limits.rate_limit_burst, 7);
        assert_eq!(s.limits.max_events_per_request, 1000);
        assert_eq!(s.max_group_records, 100);
        let s = parse(&[
            "mailledger",
            "--data-dir",
            "/elsewhere",
            "serve",
            "--config",
            f,
            "--listen",
            "0.0.0.0:1",
            "--max-group-records",
            "50",
        ])
        .unwrap();
        assert_eq!(s.listen, "0.0.0.0:1");
        assert_eq!(s.max_group_records, 50);
        assert_eq!(s.data_dir, PathBuf::from("/elsewhere"));
        let s = parse(&["mailledger", "serve"]).unwrap();
        assert_eq!(s.listen, DEFAULT_LISTEN);
        assert_eq!(s.limits, Limits::default());
        assert_eq!(s.max_group_records, DEFAULT_MAX_GROUP_RECORDS);
        let err = format!(
            "{:#}",
            parse(&["mailledger", "serve", "--max-group-records", "0"]).unwrap_err()
        );
        assert!(err.contains("max_group_records"), "{err}");
        std::fs::write(&file, "colour = \"red\"\n").unwrap();
        let err = format!(
            "{:#}",
            parse(&["mailledger", "serve", "--config", f]).unwrap_err()
        );
        assert!(err.contains("colour"), "{err}");
    }

    #[test]
    fn metrics_are_served_only_where_metrics_listen_says() {
        let s = parse(&["mailledger", "serve"]).unwrap();
        assert_eq!(s.metrics_listen, None);
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("mailledger.toml");
        std::fs::write(&file, "metrics_listen = \"127.0.0.1:9464\"\n").unwrap();
        let f = file.to_str().unwrap();
        let s = parse(&["mailledger", "serve", "--config", f]).unwrap();
        assert_eq!(s.metrics_listen.as_deref(), Some("127.0.0.1:9464"));
        let s = parse(&[
            "mailledger",
            "serve",
            "--config",
            f,
            "--metrics-listen",
            "10.0.0.5:9100",
        ])
        .unwrap();
        assert_eq!(s.metrics_listen.as_deref(), Some("10.0.0.5:9100"));
    }

    #[test]
    fn the_files_residency_table_applies_where_flags_and_environment_are_silent() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("mailledger.toml");
        std::fs::write(
            &file,
            "[residency]\njurisdiction = \"DE\"\nallowed = \"EU\"\nkeys = \"AT\"\n",
        )
        .unwrap();
        let f = file.to_str().unwrap();
        let log = crate::location::LogLocation::Memory;
        let declare = |s: &Settings| s.residency.declare(&s.data_dir, &log, &s.keys_dir).unwrap();
        let r = declare(&parse(&["mailledger", "serve", "--config", f]).unwrap());
        assert_eq!(r.node().to_string(), "DE");
        assert_eq!(r.allowed().len(), 1);
        let places: Vec<String> = r
            .stores()
            .iter()
            .map(|p| format!("{} {}", p.role, p.jurisdiction))
            .collect();
        assert_eq!(places, ["log DE", "projections DE", "access DE", "keys AT"]);
        let r = declare(
            &parse(&[
                "mailledger",
                "--jurisdiction",
                "FR",
                "--keys-jurisdiction",
                "FR",
                "serve",
                "--config",
                f,
            ])
            .unwrap(),
        );
        assert_eq!(r.node().to_string(), "FR");
        assert!(
            r.stores()
                .iter()
                .all(|p| p.jurisdiction.to_string() == "FR")
        );
        std::fs::write(&file, "[residency]\nplanet = \"mars\"\n").unwrap();
        let err = format!(
            "{:#}",
            parse(&["mailledger", "serve", "--config", f]).unwrap_err()
        );
        assert!(err.contains("planet"), "{err}");
    }
}
