//! `mailledger erase`: destroys contacts' keys and prints the receipts.
//!
//! Addresses come from standard input or `--address-file`, one per line,
//! so that none lands in the process list (`ps`) or a shell's history.
//! `--address` still works, with a warning. Every address is checked (and
//! its pseudonym computed) before any key is destroyed: bad input erases
//! nothing, and errors name the line, never the address.

use std::io::{IsTerminal as _, Read as _};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::Args;
use mailledger_core::crypto::Personal;
use mailledger_core::email::ContactRef;
use mailledger_core::pseudonym::Pseudonym;
use uuid::Uuid;
use zeroize::Zeroizing;

use crate::Cli;
use crate::open::{self, Needs};

/// The longest line of an address list: an address has at most 254
/// characters; anything much longer is not one.
const MAX_LINE: usize = 1024;
/// The most bytes of an address list.
const MAX_INPUT: u64 = 64 * 1024 * 1024;

/// `mailledger erase`'s flags.
#[derive(Debug, Args)]
pub struct EraseArgs {
    /// A file of addresses to erase, one per line (`-`: standard input).
    /// Without --address-file, --contact or --address, the addresses are
    /// read from standard input.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["contact", "address"])]
    address_file: Option<PathBuf>,
    /// The contact's pseudonym (32 hex digits), as reads show it.
    #[arg(long, conflicts_with = "address")]
    contact: Option<String>,
    /// One address on the command line. Discouraged: it shows in `ps` and
    /// stays in shell history; give addresses on standard input or with
    /// --address-file instead.
    #[arg(long)]
    address: Option<String>,
    /// Your id for this request (letters, digits, - _ . :); a new one by
    /// default. With several addresses, the n-th gets `ID:n`.
    #[arg(long)]
    request_id: Option<String>,
    /// The tenant.
    #[arg(long, default_value = "default")]
    tenant: String,
}

/// Who to erase, as given.
enum Targets {
    /// A pseudonym.
    Contact(String),
    /// Addresses, each with the line it came from (1 for `--address`).
    Addresses(Vec<(usize, Personal)>),
}

/// The addresses of `text`, one per non-blank line (surrounding spaces
/// trimmed), each with its line number. Errors name the line, never its
/// text.
fn addresses(text: &str, source: &str) -> Result<Vec<(usize, Personal)>> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        if line.len() > MAX_LINE {
            bail!(
                "{source}, line {}: longer than {MAX_LINE} bytes, so not an address",
                i + 1
            );
        }
        out.push((i + 1, Personal::new(line.to_owned())));
    }
    if out.is_empty() {
        bail!("{source} holds no address: give one address per line");
    }
    Ok(out)
}

/// Reads the address list of `path` (`-`: standard input) or standard input.
fn read_list(path: Option<&PathBuf>) -> Result<Vec<(usize, Personal)>> {
    let mut text = Zeroizing::new(String::new());
    let source = match path {
        Some(p) if p.as_os_str() != "-" => {
            std::fs::File::open(p)
                .and_then(|f| f.take(MAX_INPUT).read_to_string(&mut text))
                .with_context(|| format!("cannot read the address file {}", p.display()))?;
            format!("the address file {}", p.display())
        }
        _ => {
            let stdin = std::io::stdin();
            if stdin.is_terminal() {
                eprintln!(
                    "mailledger: reading addresses to erase from standard input, one per line; end with Ctrl-D"
                );
            }
            stdin
                .lock()
                .take(MAX_INPUT)
                .read_to_string(&mut text)
                .context("cannot read addresses from standard input")?;
            "standard input".to_owned()
        }
    };
    addresses(&text, &source)
}

fn targets(args: &EraseArgs) -> Result<Targets> {
    if let Some(c) = &args.contact {
        return Ok(Targets::Contact(c.clone()));
    }
    if let Some(a) = &args.address {
        eprintln!(
            "mailledger: warning: --address puts the address in the process list and your shell history; \
             give addresses on standard input (`mailledger erase < addresses.txt`) or with --address-file"
        );
        return Ok(Targets::Addresses(vec![(1, Personal::new(a.clone()))]));
    }
    read_list(args.address_file.as_ref()).map(Targets::Addresses)
}

/// Runs `mailledger erase`.
pub fn run(cli: &Cli, args: &EraseArgs) -> Result<ExitCode> {
    // Read (and so check) the input before anything is opened.
    let targets = targets(args)?;
    open::log(cli, Needs::EMAIL, async |o| {
        let email = o.email()?;
        let tenant = args.tenant.as_str();
        // Every pseudonym first: an address that is none erases nothing.
        let mut contacts: Vec<Pseudonym> = Vec::new();
        match &targets {
            Targets::Contact(hex) => contacts.push(Pseudonym::from_hex(hex)?),
            Targets::Addresses(list) => {
                for (line, address) in list {
                    let p = email
                        .pseudonym(tenant, address)
                        .await
                        .with_context(|| format!("line {line}"))?;
                    // The same contact twice is erased once.
                    if !contacts.contains(&p) {
                        contacts.push(p);
                    }
                }
            }
        }
        let total = contacts.len();
        let several = total > 1;
        for (n, p) in contacts.into_iter().enumerate() {
            let request_id = match (&args.request_id, several) {
                (Some(id), true) => format!("{id}:{}", n + 1),
                (Some(id), false) => id.clone(),
                (None, _) => Uuid::now_v7().to_string(),
            };
            let receipt = email
                .erase(tenant, ContactRef::Pseudonym(p), &request_id)
                .await
                .with_context(|| {
                    format!(
                        "erasing contact {} of {total} (request id {request_id}); receipts printed before this stand",
                        n + 1
                    )
                })?;
            out!("{}", serde_json::to_string_pretty(&receipt)?);
        }
        Ok(ExitCode::SUCCESS)
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn address_lists_skip_blank_lines_and_errors_name_lines_not_addresses() {
        let list = addresses("ann@example.org\n\n  bob@example.org  \r\n", "stdin").unwrap();
        let lines: Vec<usize> = list.iter().map(|(l, _)| *l).collect();
        assert_eq!(lines, [1, 3]);
        let err = addresses(" \n\n", "stdin").unwrap_err().to_string();
        assert!(err.contains("no address"), "{err}");
        let long = format!("ann@example.org\n{}@example.org\n", "zed".repeat(400));
        let err = addresses(&long, "stdin").unwrap_err().to_string();
        assert!(err.contains("line 2") && !err.contains("zed"), "{err}");
    }
}
