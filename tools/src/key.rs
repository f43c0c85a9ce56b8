//! `mailledger key …`: API keys in the access store
//! (`DATA_DIR/access.json`).
//!
//! Like `mailledger tenant`, it touches only the access store and the KEK,
//! never the log or the key store, so it works while `mailledger serve`
//! runs; the server picks changes up on its next request.

use std::process::ExitCode;

use anyhow::Result;
use clap::Subcommand;
use mailledger_access::{DEFAULT_TENANT, parse_scopes};

use crate::Cli;
use crate::open;

/// `mailledger key …`.
#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    /// Creates an API key and prints it, alone, on standard output. It is
    /// shown this once: only a keyed hash of it is stored.
    Create {
        /// The tenant the key acts for.
        #[arg(long, default_value = DEFAULT_TENANT)]
        tenant: String,
        /// What it may do: a comma-separated list of ingest, read, erase,
        /// admin, webhook (provider webhooks only, for a provider's webhook
        /// URL) or webhook:PROVIDER (postal, ses, postmark, mailgun,
        /// sendgrid: that provider's webhooks only).
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

/// Runs `mailledger key …`.
pub fn run(cli: &Cli, command: &KeyCommand) -> Result<ExitCode> {
    let access = open::admin_access(cli)?;
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
