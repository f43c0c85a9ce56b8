//! `mailledger tenant …`: tenants, and their webhook secrets, in the
//! access store (`DATA_DIR/access.json`).
//!
//! Like `mailledger key`, it touches only the access store and the KEK,
//! never the log or the key store, so it works while `mailledger serve`
//! runs; the server picks changes up on its next request.

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, anyhow};
use clap::Subcommand;
use mailledger_access::DEFAULT_TENANT;

use crate::Cli;
use crate::open;

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
    /// postal_public_key, postal_require_sha256, sendgrid_public_key,
    /// sns_certificates, sns_topic_arns (required with sns_certificates),
    /// sns_signature_v2_only, max_signature_age_secs. Stored sealed under
    /// the KEK.
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

/// Runs `mailledger tenant …`.
pub fn run(cli: &Cli, command: &TenantCommand) -> Result<ExitCode> {
    let access = open::admin_access(cli)?;
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
            mailledger_api::webhooks::check_secrets_document(&json).map_err(|m| anyhow!(m))?;
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
