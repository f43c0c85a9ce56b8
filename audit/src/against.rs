//! Verification against exported checkpoints: proof that the log still
//! holds exactly what each checkpoint covers and has only grown since.
//!
//! Three steps, each naming the first bad position it finds:
//! 1. every checkpoint's signature holds under the auditor's public key;
//! 2. the whole log verifies ([`EventLog::verify`]): every record's hash,
//!    every tenant's chain from genesis to the head, the indexes;
//! 3. at each checkpoint's position the log holds the record it signed:
//!    that tenant's record, with that hash, as its tenant's count-th.
//!
//! A changed byte, a removed or swapped record or a cut tail fails step 2
//! or 3 at its own position. A log re-chained by someone without the audit
//! key holds together in step 2 but not in step 3: there, the position
//! named is the first checkpoint it breaks, and the change lies after the
//! tenant's last checkpoint that held.

use std::collections::HashMap;

use mailledger_core::{
    Direction, Error as LogError, EventLog, MAX_READ_BATCH, ProgressFn, TenantFilter,
};

use crate::checkpoint::SignedCheckpoint;
use crate::key::PublicKey;
use crate::{AuditError, Result};

/// What [`verify_against`] proved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgainstReport {
    /// Checkpoints checked.
    pub checkpoints: usize,
    /// Tenants they cover.
    pub tenants: usize,
    /// Records verified (the whole log).
    pub records: u64,
    /// The log's head when verified.
    pub head: u64,
}

/// Verifies `log` against `checkpoints`, signed by `public`'s key.
///
/// # Errors
/// [`AuditError::Signature`] for a checkpoint whose signature fails;
/// [`AuditError::Tampered`] naming the first bad position; a log error.
pub async fn verify_against(
    log: &dyn EventLog,
    checkpoints: &[SignedCheckpoint],
    public: &PublicKey,
    progress: Option<ProgressFn>,
) -> Result<AgainstReport> {
    for c in checkpoints {
        c.verify(public)?;
    }
    let report = match log.verify(&TenantFilter::All, 0..u64::MAX, progress).await {
        Ok(r) => r,
        Err(LogError::Corrupt { position, reason }) => {
            return Err(AuditError::Tampered { position, reason });
        }
        Err(e) => return Err(e.into()),
    };
    let head = report.range.end;
    let mut by_position: Vec<&SignedCheckpoint> = checkpoints.iter().collect();
    by_position.sort_by_key(|c| c.checkpoint.position);
    if let Some(last) = by_position.last()
        && last.checkpoint.position >= head
    {
        return Err(AuditError::Tampered {
            position: head,
            reason: format!(
                "the log ends before position {}, which tenant {}'s checkpoint covers: its tail was cut",
                last.checkpoint.position, last.checkpoint.tenant
            ),
        });
    }
    check_positions(log, &by_position).await?;
    let mut tenants: Vec<&str> = checkpoints
        .iter()
        .map(|c| c.checkpoint.tenant.as_str())
        .collect();
    tenants.sort_unstable();
    tenants.dedup();
    Ok(AgainstReport {
        checkpoints: checkpoints.len(),
        tenants: tenants.len(),
        records: report.records,
        head,
    })
}

/// Step 3: reads the log up to the last checkpoint, counting each tenant's
/// records, and compares the record at each checkpoint's position.
async fn check_positions(log: &dyn EventLog, sorted: &[&SignedCheckpoint]) -> Result<()> {
    let Some(end) = sorted.last().map(|c| c.checkpoint.position + 1) else {
        return Ok(());
    };
    let mut counts: HashMap<String, u64> = HashMap::new();
    // Per tenant, the position of its last checkpoint that held.
    let mut held: HashMap<&str, u64> = HashMap::new();
    let mut next = sorted.iter().peekable();
    let mut from = 0;
    while from < end {
        let max = usize::try_from(end - from).map_or(MAX_READ_BATCH, |n| n.min(MAX_READ_BATCH));
        let batch = log
            .read_all(&TenantFilter::All, from, Direction::Forward, max)
            .await?;
        for r in &batch.records {
            let count = counts.entry(r.tenant.clone()).or_insert(0);
            *count += 1;
            while let Some(c) = next.next_if(|c| c.checkpoint.position == r.position) {
                let c = &c.checkpoint;
                if c.tenant != r.tenant || c.hash != r.hash || c.count != *count {
                    let since = held.get(c.tenant.as_str()).map_or_else(
                        || "since its first record".to_owned(),
                        |p| format!("after its checkpoint at position {p}, which holds"),
                    );
                    return Err(AuditError::Tampered {
                        position: c.position,
                        reason: format!(
                            "the log is not what tenant {}'s checkpoint signed at this position: it was rewritten at or before it, {since}",
                            c.tenant
                        ),
                    });
                }
                held.insert(&c.tenant, c.position);
            }
        }
        match batch.next {
            Some(n) if n > from => from = n,
            _ => break,
        }
    }
    if let Some(c) = next.next() {
        return Err(AuditError::Tampered {
            position: c.checkpoint.position,
            reason: "the record a checkpoint covers is missing".into(),
        });
    }
    Ok(())
}
