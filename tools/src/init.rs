//! `mailledger init`: the data directory, an empty log, the key store, and
//! tenant `default` in the access store.

use std::process::ExitCode;

use anyhow::Result;
use mailledger_access::DEFAULT_TENANT;

use crate::Cli;
use crate::open::{self, Needs};

/// Runs `mailledger init`. (The first admin key is made and printed by the
/// first `serve`.)
pub fn run(cli: &Cli) -> Result<ExitCode> {
    let needs = Needs {
        create: true,
        keys: true,
    };
    open::log(cli, needs, async |o| {
        o.email()?.keys().tenant_secret(DEFAULT_TENANT)?;
        open::audit_key(&cli.keys_dir, cli.audit_key_file.as_deref(), true)?;
        // Tenant `default` allows what this node allows.
        let access = open::access(&cli.data_dir, &cli.keys_dir, cli.kek_file.as_deref())?;
        if access.tenants()?.is_empty() {
            access.create_tenant(DEFAULT_TENANT, o.declared.allowed())?;
        }
        eprintln!(
            "initialised {} with a {} log ({} records) and keys in {}",
            cli.data_dir.display(),
            o.location.backend(),
            o.log.head(),
            cli.keys_dir.display()
        );
        Ok(ExitCode::SUCCESS)
    })
}
