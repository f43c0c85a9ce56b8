//! `mailledger tenant …` and `mailledger key …`: tenants, API keys and
//! provider secrets in the access store (`DATA_DIR/access.json`).
//!
//! These commands touch only the access store and the KEK, never the log or
//! the key store, so they work while `mailledger serve` runs; the server
//! picks changes up on its next request.

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, anyhow, bail};
use clap::Subcommand;
use mailledger_api::access::{AccessStore, DEFAULT_TENANT, parse_scopes};
use mailledger_core::crypto::SecretKey;
use mailledger_core::keys::read_kek_file;
use mailledger_core::residency::Jurisdiction;

use crate::Cli;

/// `mailledger tenant …`.
#[derive(Debug, Subcommand)]
pub enum TenantCommand {
    /// Creates a tenant.
    Create {
        /// The name: 1 to 64 of a-z 0-9 _ -.
        name: String,
        /// Where its data may be kept, comma-separated: EU or ISO 3166-1
        /// alpha-2 codes [default: the jurisdictions this node allows].
        /// Refused when this node or one of its stores lies outside them.
        #[arg(long)]
        jurisdictions: Option<String>,
    },
    /// Lists tenants (JSON lines).
    List,
    /// Sets a tenant's webhook secrets from a TOML (or, for a `.json` file,
    /// JSON) document, read from a file or standard input, replacing any set
    /// before. Keys: require_signatures, mailgun_signing_key,
    /// postal_public_key, sendgrid_public_key, sns_certificates,
    /// sns_topic_arns, max_signature_age_secs. Stored sealed under the KEK.
    WebhookSecrets {
        /// The tenant.
        #[arg(long, default_value = DEFAULT_TENANT)]
        tenant: String,
        /// The document; standard input when absent or `-`.
        #[arg(long, short)]
        file: Option<PathBuf>,
        /// Remove the tenant's webhook secrets instead.
        #[arg(long, conflicts_with = "file")]
        remove: bool,
    },
}

/// `mailledger key …`.
#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    /// Creates an API key and prints it, alone, on standard output. It is
    /// shown this once: only a keyed hash of it is stored.
    Create {
        /// The tenant the key acts for.
        #[arg(long, default_value = DEFAULT_TENANT)]
        tenant: String,
        /// What it may do: a comma-separated list of ingest, read, erase, admin.
        #[arg(long)]
        scopes: String,
        /// A label for the key.
        #[arg(long)]
        name: Option<String>,
    },
    /// Lists API keys (JSON lines; never their secrets).
    List {
        /// Only this tenant's keys.
        #[arg(long)]
        tenant: Option<String>,
    },
    /// Revokes an API key: it fails authentication from the next request on.
    Revoke {
        /// The key's id (the part after `mlk_`), or the whole key.
        id: String,
    },
}

/// The KEK as `--help` describes: `--kek-file`, `MAILLEDGER_KEK`, or the
/// file `init` generated in the keys directory.
pub fn find_kek(keys_dir: &Path, kek_file: Option<&Path>) -> Result<SecretKey> {
    if let Some(f) = kek_file {
        return Ok(read_kek_file(f)?);
    }
    if let Ok(hex) = std::env::var("MAILLEDGER_KEK") {
        return SecretKey::from_hex(&hex).context("MAILLEDGER_KEK");
    }
    let generated = keys_dir.join(crate::GENERATED_KEK);
    if generated.exists() {
        return Ok(read_kek_file(&generated)?);
    }
    bail!(
        "no key-encryption key: pass --kek-file, set MAILLEDGER_KEK_FILE or MAILLEDGER_KEK, or run `mailledger init` to generate one"
    )
}

/// Opens the access store of the data directory.
pub fn open_access(
    data_dir: &Path,
    keys_dir: &Path,
    kek_file: Option<&Path>,
) -> Result<AccessStore> {
    let kek = find_kek(keys_dir, kek_file)?;
    AccessStore::open(data_dir, &kek).context("cannot open the access store")
}

/// For `init`: creates tenant `default`, its data allowed in
/// `jurisdictions`, in the access store when it has no tenant. (The first
/// admin key is made and printed by the first `serve`.)
pub fn init_access(
    data_dir: &Path,
    keys_dir: &Path,
    kek_file: Option<&Path>,
    jurisdictions: &[Jurisdiction],
) -> Result<()> {
    let access = open_access(data_dir, keys_dir, kek_file)?;
    if access.tenants()?.is_empty() {
        access.create_tenant(DEFAULT_TENANT, jurisdictions)?;
    }
    Ok(())
}

fn access_of(cli: &Cli) -> Result<AccessStore> {
    if !cli.data_dir.join(crate::location::MARKER).exists() {
        bail!(
            "no ledger in {}; run `mailledger init --data-dir {}` or `mailledger serve` first",
            cli.data_dir.display(),
            cli.data_dir.display()
        );
    }
    open_access(&cli.data_dir, &cli.keys_dir, cli.kek_file.as_deref())
}

/// Runs `mailledger tenant …`.
pub fn tenant(cli: &Cli, command: &TenantCommand) -> Result<ExitCode> {
    let access = access_of(cli)?;
    match command {
        TenantCommand::Create {
            name,
            jurisdictions,
        } => {
            let allowed =
                crate::residency::new_tenant(&cli.residency()?, jurisdictions.as_deref())?;
            let t = access.create_tenant(name, &allowed)?;
            out!("{}", serde_json::to_string(&t)?);
        }
        TenantCommand::List => {
            for t in access.tenants()? {
                out!("{}", serde_json::to_string(&t)?);
            }
        }
        TenantCommand::WebhookSecrets {
            tenant,
            remove: true,
            ..
        } => {
            access.set_webhook_secrets(tenant, None)?;
            eprintln!("removed the webhook secrets of tenant {tenant}");
        }
        TenantCommand::WebhookSecrets { tenant, file, .. } => {
            let mut text = zeroize::Zeroizing::new(String::new());
            match file.as_deref() {
                Some(p) if p.as_os_str() != "-" => {
                    *text = std::fs::read_to_string(p)
                        .with_context(|| format!("cannot read {}", p.display()))?;
                }
                _ => {
                    std::io::stdin().read_to_string(&mut text)?;
                }
            }
            let is_json = file
                .as_deref()
                .and_then(Path::extension)
                .is_some_and(|e| e == "json");
            let json = if is_json {
                zeroize::Zeroizing::new(text.trim().to_owned())
            } else {
                let value: serde_json::Value = toml::from_str(&text)
                    .map_err(|e| anyhow!("webhook secrets: {}", e.message()))?;
                zeroize::Zeroizing::new(serde_json::to_string(&value)?)
            };
            access.set_webhook_secrets(tenant, Some(&json))?;
            let t = access.tenant(tenant)?;
            eprintln!(
                "set the webhook secrets of tenant {tenant} (providers: {})",
                t.map(|t| t.webhook_providers.join(", "))
                    .unwrap_or_default()
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Runs `mailledger key …`.
pub fn key(cli: &Cli, command: &KeyCommand) -> Result<ExitCode> {
    let access = access_of(cli)?;
    match command {
        KeyCommand::Create {
            tenant,
            scopes,
            name,
        } => {
            let scopes = parse_scopes(scopes)?;
            let (info, key) = access.create_key(tenant, &scopes, name.as_deref())?;
            out!("{}", key.as_str());
            eprintln!(
                "created key {} for tenant {} (scopes {}); it is shown only this once",
                info.id,
                info.tenant,
                info.scopes
                    .iter()
                    .map(|s| s.name())
                    .collect::<Vec<_>>()
                    .join(",")
            );
        }
        KeyCommand::List { tenant } => {
            for k in access.keys(tenant.as_deref())? {
                out!("{}", serde_json::to_string(&k)?);
            }
        }
        KeyCommand::Revoke { id } => {
            let k = access.revoke_key(id)?;
            out!("{}", serde_json::to_string(&k)?);
        }
    }
    Ok(ExitCode::SUCCESS)
}
