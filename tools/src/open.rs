//! What the commands share: the key-encryption key (KEK), the key store,
//! the access store, and the log, opened the usual way around a command.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result, anyhow, bail};
use mailledger_access::AccessStore;
use mailledger_audit::{AUDIT_KEY_FILE, AuditKey};
use mailledger_core::crypto::SecretKey;
use mailledger_core::email::EmailLedger;
use mailledger_core::keys::{FileKeyStore, KeyStore, generate_kek_file, read_kek_file};
use mailledger_core::residency::{Residency, TenantResidency};
use mailledger_core::{Durability, EventLog, LedgerConfig};

use crate::location::{self, LogLocation};
use crate::memory::MemoryPlan;
use crate::{Cli, residency};

/// The name of the KEK file `init` generates when no KEK is configured.
const GENERATED_KEK: &str = "kek";

/// The KEK as `--help` describes: `--kek-file`, `MAILLEDGER_KEK`, or the
/// file `init` generated in the keys directory.
pub fn find_kek(keys_dir: &Path, kek_file: Option<&Path>) -> Result<SecretKey> {
    if let Some(f) = kek_file {
        return Ok(read_kek_file(f)?);
    }
    if let Ok(hex) = std::env::var("MAILLEDGER_KEK") {
        return SecretKey::from_hex(&hex).context("MAILLEDGER_KEK");
    }
    let generated = keys_dir.join(GENERATED_KEK);
    if generated.exists() {
        return Ok(read_kek_file(&generated)?);
    }
    bail!(
        "no key-encryption key: pass --kek-file, set MAILLEDGER_KEK_FILE or MAILLEDGER_KEK, or run `mailledger init` to generate one"
    )
}

/// Opens the key store, finding the KEK as `--help` describes; with
/// `create` and no KEK configured, generates one in the keys directory.
pub fn keys(
    data_dir: &Path,
    keys_dir: &Path,
    kek_file: Option<&Path>,
    create: bool,
    memory: &MemoryPlan,
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
        find_kek(keys_dir, kek_file)?
    };
    Ok(Arc::new(
        FileKeyStore::open(keys_dir, &kek)?.with_cache_entries(memory.key_cache_entries()),
    ))
}

/// The node's audit key: `--audit-key-file`, or `audit.key` in the keys
/// directory, generated there when `create` and missing.
pub fn audit_key(keys_dir: &Path, audit_key_file: Option<&Path>, create: bool) -> Result<AuditKey> {
    if let Some(f) = audit_key_file {
        return Ok(AuditKey::read_file(f)?);
    }
    let path = keys_dir.join(AUDIT_KEY_FILE);
    if path.exists() {
        return Ok(AuditKey::read_file(&path)?);
    }
    if !create {
        bail!(
            "no audit key in {}: run `mailledger init` or `mailledger serve` to generate one, or pass --audit-key-file",
            keys_dir.display()
        );
    }
    std::os::unix::fs::DirBuilderExt::mode(std::fs::DirBuilder::new().recursive(true), 0o700)
        .create(keys_dir)
        .with_context(|| format!("cannot create {}", keys_dir.display()))?;
    let key = AuditKey::generate_file(&path)?;
    eprintln!(
        "note: generated the node's audit key in {}; give auditors its public key ({}), from `mailledger checkpoint public-key`",
        path.display(),
        key.public()
    );
    Ok(key)
}

/// Opens the access store of the data directory.
pub fn access(data_dir: &Path, keys_dir: &Path, kek_file: Option<&Path>) -> Result<AccessStore> {
    let kek = find_kek(keys_dir, kek_file)?;
    AccessStore::open(data_dir, &kek).context("cannot open the access store")
}

/// The access store of an existing ledger, for `mailledger tenant` and
/// `mailledger key`, which open nothing else.
pub fn admin_access(cli: &Cli) -> Result<AccessStore> {
    if !cli.data_dir.join(location::MARKER).exists() {
        bail!(
            "no ledger in {}; run `mailledger init --data-dir {}` or `mailledger serve` first",
            cli.data_dir.display(),
            cli.data_dir.display()
        );
    }
    access(&cli.data_dir, &cli.keys_dir, cli.kek_file.as_deref())
}

/// A multi-threaded async runtime.
pub fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

/// What a command needs opened besides the log.
#[derive(Debug, Clone, Copy)]
pub struct Needs {
    /// Create the data directory (and a KEK, when none is configured)
    /// rather than refuse a directory without a ledger.
    pub create: bool,
    /// Open the key store too, for [`Opened::email`].
    pub keys: bool,
}

impl Needs {
    /// The log of an existing data directory, alone.
    pub const LOG: Self = Self {
        create: false,
        keys: false,
    };
    /// The log of an existing data directory, and the key store.
    pub const EMAIL: Self = Self {
        create: false,
        keys: true,
    };
}

/// What a command runs over: the log, and what was checked before it
/// opened.
pub struct Opened {
    /// The log.
    pub log: Arc<dyn EventLog>,
    /// The email layer over it, when the key store was opened.
    email: Option<Arc<EmailLedger>>,
    /// Where the log is.
    pub location: LogLocation,
    /// The residency the flags and the data directory declare.
    pub declared: Residency,
    /// The tenants of the access file, checked against `declared`.
    pub tenants: Vec<TenantResidency>,
}

impl Opened {
    /// The email layer (asked for with [`Needs::keys`]).
    pub fn email(&self) -> Result<&Arc<EmailLedger>> {
        self.email
            .as_ref()
            .ok_or_else(|| anyhow!("the key store is not open"))
    }
}

/// Runs `command` over the log of `cli`'s data directory, and syncs the log
/// after it. Residency is checked before anything is created or opened (a
/// fresh `init` has no tenant yet; it makes `default` allowing what the
/// node allows).
pub fn log(
    cli: &Cli,
    needs: Needs,
    command: impl AsyncFnOnce(&Opened) -> Result<ExitCode>,
) -> Result<ExitCode> {
    let durability: Durability = cli.durability.parse()?;
    let declared = cli.residency()?;
    let tenants = residency::enforce(&declared, &cli.data_dir)?;
    let config = LedgerConfig::new()
        .durability(durability)
        .jurisdiction(declared.node());
    let location = location::resolve(&cli.data_dir, cli.log.as_deref(), needs.create)?;
    let memory = cli.memory()?;
    let runtime = runtime()?;
    let keys = if needs.keys {
        Some(keys(
            &cli.data_dir,
            &cli.keys_dir,
            cli.kek_file.as_deref(),
            needs.create,
            &memory,
        )?)
    } else {
        None
    };
    runtime.block_on(async move {
        let log = location::open(&location, config, &memory)?;
        let email = keys.map(|k| Arc::new(EmailLedger::new(Arc::clone(&log), k)));
        let opened = Opened {
            log,
            email,
            location,
            declared,
            tenants,
        };
        let code = command(&opened).await?;
        opened.log.sync().await?;
        if matches!(opened.location, LogLocation::Memory) {
            eprintln!("note: the memory: backend keeps nothing after this command");
        }
        Ok(code)
    })
}
