//! Residency settings, the check before any store opens, and `mailledger
//! residency` (the report).
//!
//! The node declares its own jurisdiction (`--jurisdiction`, default EU),
//! the jurisdictions it allows (`--allowed-jurisdictions`, default its
//! own), and where its storage is: `--data-jurisdiction` for everything in
//! the data directory and the log (default the node's), and
//! `--keys-jurisdiction` for the key directory (default the node's). Local
//! disks cannot say where they are; these are the operator's declaration,
//! and the report prints them next to the paths they cover.

use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, Result, anyhow, bail};
use mailledger_access::AccessStore;
use mailledger_core::residency::{Jurisdiction, Residency, ResidencyError, TenantResidency, list};
use serde::Deserialize;

use crate::Cli;
use crate::location::LogLocation;

/// The residency settings as given (flags, environment, a file), before
/// defaults apply.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResidencyArgs {
    /// The node's own jurisdiction.
    pub jurisdiction: Option<String>,
    /// The jurisdictions the node allows, comma-separated in a flag.
    pub allowed: Option<String>,
    /// Where the data directory (and, unless `log` says otherwise, the
    /// log) is kept.
    pub data: Option<String>,
    /// Where the log is kept, when not with the data directory (a log in
    /// an object store elsewhere).
    pub log: Option<String>,
    /// Where the key directory is kept.
    pub keys: Option<String>,
}

impl ResidencyArgs {
    /// These settings, each left unset taken from `fallback`.
    #[must_use]
    pub fn or(self, fallback: Self) -> Self {
        Self {
            jurisdiction: self.jurisdiction.or(fallback.jurisdiction),
            allowed: self.allowed.or(fallback.allowed),
            data: self.data.or(fallback.data),
            log: self.log.or(fallback.log),
            keys: self.keys.or(fallback.keys),
        }
    }

    /// The node's declared residency over the stores of `data_dir`, the
    /// log that `data_dir` and the `--log` URL `log` name, and `keys_dir`,
    /// found without creating anything ([`crate::location::peek`]).
    ///
    /// # Errors
    /// A bad `--log` or data directory marker, or a value that is not a
    /// jurisdiction.
    pub fn declare_for(
        &self,
        data_dir: &Path,
        log: Option<&str>,
        keys_dir: &Path,
    ) -> Result<Residency> {
        let (location, _) = crate::location::peek(data_dir, log)?;
        self.declare(data_dir, &location, keys_dir)
    }

    /// The node's declared residency over the stores of `data_dir`, `log`
    /// and `keys_dir`.
    ///
    /// # Errors
    /// A value that is not a jurisdiction, named by its setting.
    pub fn declare(
        &self,
        data_dir: &Path,
        log: &LogLocation,
        keys_dir: &Path,
    ) -> Result<Residency> {
        let one = |value: Option<&String>, setting: &str, default: Jurisdiction| match value {
            None => Ok(default),
            Some(v) => v
                .parse::<Jurisdiction>()
                .map_err(|e| anyhow!("{setting}: {e}")),
        };
        let node = one(
            self.jurisdiction.as_ref(),
            "--jurisdiction",
            Jurisdiction::DEFAULT,
        )?;
        let allowed = match &self.allowed {
            None => vec![node],
            Some(list) => Jurisdiction::parse_list(list)
                .map_err(|e| anyhow!("--allowed-jurisdictions: {e}"))?,
        };
        let data = one(self.data.as_ref(), "--data-jurisdiction", node)?;
        let log_declared = one(self.log.as_ref(), "--log-jurisdiction", data)?;
        let keys = one(self.keys.as_ref(), "--keys-jurisdiction", node)?;
        let abs = |p: &Path| {
            std::path::absolute(p)
                .unwrap_or_else(|_| p.to_path_buf())
                .display()
                .to_string()
        };
        let (log_at, log_in) = match log {
            LogLocation::Fjall { path }
            | LogLocation::Sled { path }
            | LogLocation::Objects { path } => (abs(path), log_declared),
            LogLocation::S3 { url } => s3_place(url, log_declared, self.log.is_some())?,
            LogLocation::Memory => ("(memory)".to_owned(), log_declared),
        };
        Ok(Residency::new(node, allowed)
            .with_store("log", log.backend(), log_at, log_in)
            .with_store(
                "projections",
                "fjall",
                abs(&crate::projections_cmd::dir(data_dir)),
                data,
            )
            .with_store(
                "access",
                "files",
                abs(&data_dir.join(mailledger_access::ACCESS_FILE)),
                data,
            )
            .with_store("keys", "files", abs(keys_dir), keys))
    }
}

/// Where an `s3://` log lies: on Amazon S3, in its region's country (the
/// client's settings decide where the bytes go; an explicit
/// `--log-jurisdiction` that says otherwise is refused); on another
/// S3-compatible store (`AWS_ENDPOINT`), where its operator declared it
/// (`declared`: `--log-jurisdiction` when `explicit`, else
/// `--data-jurisdiction`).
fn s3_place(url: &str, declared: Jurisdiction, explicit: bool) -> Result<(String, Jurisdiction)> {
    use mailledger_object_store::{S3Target, aws_region_country};
    match S3Target::from_env() {
        S3Target::Endpoint => Ok((format!("{url} (endpoint from AWS_ENDPOINT)"), declared)),
        S3Target::Amazon { region } => {
            let country = aws_region_country(&region).with_context(|| {
                format!(
                    "--log {url}: AWS region {region:?} is not one this build can place in a country; \
                     for a store other than Amazon S3 set AWS_ENDPOINT and declare --log-jurisdiction"
                )
            })?;
            let j = country
                .parse::<Jurisdiction>()
                .map_err(|e| anyhow!("AWS region {region}: {e}"))?;
            if explicit && !j.within(declared) {
                bail!(
                    "--log-jurisdiction {declared}, but the log is on Amazon S3 in region {region}, which lies in {j}"
                );
            }
            Ok((format!("{url} (Amazon S3 region {region})"), j))
        }
    }
}

/// The tenants of the access file in `data_dir`, and where each allows its
/// data to be kept.
///
/// # Errors
/// An access file that cannot be read.
pub fn tenants(data_dir: &Path) -> Result<Vec<TenantResidency>> {
    AccessStore::tenant_residency(data_dir).context("cannot read the tenants' jurisdictions")
}

/// Refuses to go on when the node, a store or a tenant of `data_dir` breaks
/// residency, naming every violation; returns the tenants it checked.
///
/// # Errors
/// Every violation, or an access file that cannot be read.
pub fn enforce(residency: &Residency, data_dir: &Path) -> Result<Vec<TenantResidency>> {
    let tenants = tenants(data_dir)?;
    residency.check(&tenants).map_err(|e| {
        anyhow!("{e}. Nothing was opened; fix the declared jurisdictions (mailledger residency shows them)")
    })?;
    Ok(tenants)
}

/// Runs `mailledger residency`: prints the report (JSON); exit status 4
/// when something lies outside an allowed jurisdiction.
///
/// # Errors
/// Bad settings, or an access file that cannot be read.
pub fn run(cli: &Cli) -> Result<ExitCode> {
    let report = cli.residency()?.report(tenants(&cli.data_dir)?);
    out!("{}", serde_json::to_string_pretty(&report)?);
    if report.compliant {
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!(
            "residency: {} violation(s); the ledger refuses to start like this",
            report.violations.len()
        );
        Ok(ExitCode::from(4))
    }
}

/// The jurisdictions a new tenant allows: `given`, or the node's allowed
/// ones; refused when this node could not serve it.
///
/// # Errors
/// A bad list, or a node or store outside it.
pub fn new_tenant(residency: &Residency, given: Option<&str>) -> Result<Vec<Jurisdiction>> {
    let given = given
        .map(Jurisdiction::parse_list)
        .transpose()
        .map_err(|e| anyhow!("--jurisdictions: {e}"))?;
    residency.new_tenant(given).map_err(|e| match e {
        // Every violation carries the list the tenant would allow.
        ResidencyError::Violated(outside) => {
            anyhow!(
                "this node cannot serve a tenant whose data may be kept only in {}: {}. Declare where the node and its stores are (--jurisdiction, --data-jurisdiction, --keys-jurisdiction) or allow more",
                list(
                    outside
                        .first()
                        .map(|v| v.allowed.as_slice())
                        .unwrap_or_default()
                ),
                outside
                    .iter()
                    .map(|v| format!("{} is in {}", v.subject, v.jurisdiction))
                    .collect::<Vec<_>>()
                    .join("; ")
            )
        }
        e => anyhow!("--jurisdictions: {e}"),
    })
}
