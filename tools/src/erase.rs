//! `mailledger erase`: destroys a contact's key and prints the receipt.

use std::process::ExitCode;

use anyhow::{Result, bail};
use clap::Args;
use mailledger_core::crypto::Personal;
use mailledger_core::email::ContactRef;
use mailledger_core::pseudonym::Pseudonym;
use uuid::Uuid;

use crate::Cli;
use crate::open::{self, Needs};

/// `mailledger erase`'s flags.
#[derive(Debug, Args)]
pub struct EraseArgs {
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
}

/// Runs `mailledger erase`.
pub fn run(cli: &Cli, args: &EraseArgs) -> Result<ExitCode> {
    open::log(cli, Needs::EMAIL, async |o| {
        let target = match (&args.address, &args.contact) {
            (Some(a), _) => ContactRef::Address(Personal::new(a.clone())),
            (None, Some(p)) => ContactRef::Pseudonym(Pseudonym::from_hex(p)?),
            (None, None) => bail!("give --address or --contact"),
        };
        let request_id = args
            .request_id
            .clone()
            .unwrap_or_else(|| Uuid::now_v7().to_string());
        let receipt = o.email()?.erase(&args.tenant, target, &request_id).await?;
        out!("{}", serde_json::to_string_pretty(&receipt)?);
        Ok(ExitCode::SUCCESS)
    })
}
