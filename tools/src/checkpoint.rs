//! `mailledger checkpoint`: signs a checkpoint of every tenant's chain;
//! `checkpoint export` prints them for an auditor; `checkpoint public-key`
//! prints the key they verify with.

use std::io::{BufWriter, Write};
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};

use crate::open::{self, Needs};
use crate::{Cli, STDOUT};

/// `mailledger checkpoint`'s flags.
#[derive(Debug, Args)]
pub struct CheckpointArgs {
    #[command(subcommand)]
    command: Option<CheckpointCommand>,
}

#[derive(Debug, Subcommand)]
enum CheckpointCommand {
    /// Prints every signed checkpoint as JSON lines, oldest first per tenant (the file `verify --against` reads).
    Export {
        /// One tenant's only.
        #[arg(long)]
        tenant: Option<String>,
    },
    /// Prints the audit key's public half (64 hex digits): what an auditor keeps.
    PublicKey,
}

/// Runs `mailledger checkpoint`.
pub fn run(cli: &Cli, args: &CheckpointArgs) -> Result<ExitCode> {
    match &args.command {
        Some(CheckpointCommand::PublicKey) => {
            let key = open::audit_key(&cli.keys_dir, cli.audit_key_file.as_deref(), false)?;
            out!("{}", key.public());
            Ok(ExitCode::SUCCESS)
        }
        Some(CheckpointCommand::Export { tenant }) => open::log(cli, Needs::LOG, async |o| {
            let all = mailledger_audit::all_checkpoints(o.log.as_ref(), tenant.as_deref()).await?;
            let mut out = BufWriter::new(std::io::stdout().lock());
            for c in &all {
                writeln!(out, "{}", serde_json::to_string(&c.to_json())?).context(STDOUT)?;
            }
            out.flush().context(STDOUT)?;
            eprintln!("{} checkpoint(s) exported", all.len());
            Ok(ExitCode::SUCCESS)
        }),
        None => {
            let key = open::audit_key(&cli.keys_dir, cli.audit_key_file.as_deref(), false)?;
            open::log(cli, Needs::LOG, async |o| {
                let made = mailledger_audit::sign_checkpoints(
                    o.log.as_ref(),
                    &key,
                    o.declared.node(),
                    mailledger_core::now_micros(),
                )
                .await?;
                for c in &made {
                    out!("{}", serde_json::to_string(&c.to_json())?);
                }
                eprintln!(
                    "{} tenant(s) checkpointed (tenants with nothing new since their last checkpoint get none)",
                    made.len()
                );
                Ok(ExitCode::SUCCESS)
            })
        }
    }
}
