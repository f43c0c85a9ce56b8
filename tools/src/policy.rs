//! `mailledger policy`: what a tenant keeps of optional personal data, and
//! its suppression and analytics rules.

use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Args;

use crate::Cli;
use crate::open::{self, Needs};

/// `mailledger policy`'s flags.
#[derive(Debug, Args)]
pub struct PolicyArgs {
    /// The tenant.
    #[arg(long, default_value = "default")]
    tenant: String,
    /// Keep (sealed) subject lines.
    #[arg(long)]
    keep_subjects: Option<bool>,
    /// Keep (sealed) IP addresses and user agents of opens and clicks.
    #[arg(long)]
    keep_engagement_details: Option<bool>,
    /// Tell contacts apart by the case of their address's local part
    /// (`Ann@x.org` and `ann@x.org` two contacts); set it before the
    /// tenant's first event. Default: false, as mailbox providers treat them.
    #[arg(long)]
    case_sensitive_local_part: Option<bool>,
    /// Replaces the suppression rules, as JSON such as {"soft_bounce_threshold": 5}; fields left out take their defaults (hard_bounce, complaint, unsubscribe: true; soft_bounce_threshold 3, soft_bounce_window_days 7, soft_bounce_expiry_days 30).
    #[arg(long)]
    suppression: Option<String>,
    /// Replaces the analytics rules, as JSON such as {"bot_click_window_secs": 5} (default 10; 0 turns the rule off).
    #[arg(long)]
    analytics: Option<String>,
}

/// Runs `mailledger policy`: prints the policy, after setting what the
/// flags give.
pub fn run(cli: &Cli, args: &PolicyArgs) -> Result<ExitCode> {
    open::log(cli, Needs::EMAIL, async |o| {
        let email = o.email()?;
        let mut policy = email.policy(&args.tenant).await?;
        let changed = args.keep_subjects.is_some()
            || args.keep_engagement_details.is_some()
            || args.case_sensitive_local_part.is_some()
            || args.suppression.is_some()
            || args.analytics.is_some();
        if let Some(j) = &args.suppression {
            policy.suppression =
                serde_json::from_str(j).context("--suppression: not valid suppression rules")?;
        }
        if let Some(j) = &args.analytics {
            policy.analytics =
                serde_json::from_str(j).context("--analytics: not valid analytics rules")?;
        }
        if changed {
            policy.keep_subjects = args.keep_subjects.unwrap_or(policy.keep_subjects);
            policy.keep_engagement_details = args
                .keep_engagement_details
                .unwrap_or(policy.keep_engagement_details);
            policy.case_sensitive_local_part = args
                .case_sensitive_local_part
                .unwrap_or(policy.case_sensitive_local_part);
            email.set_policy(&args.tenant, policy).await?;
        }
        out!("{}", serde_json::to_string(&policy)?);
        Ok(ExitCode::SUCCESS)
    })
}
