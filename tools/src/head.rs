//! `mailledger head`: the position the next record will get.

use std::process::ExitCode;

use anyhow::Result;

use crate::Cli;
use crate::open::{self, Needs};

/// Runs `mailledger head`.
pub fn run(cli: &Cli) -> Result<ExitCode> {
    open::log(cli, Needs::LOG, async |o| {
        out!("{}", o.log.head());
        Ok(ExitCode::SUCCESS)
    })
}
