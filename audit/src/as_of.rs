//! State as of a moment, from the log alone: what the projections would
//! have said then about one message or one contact.
//!
//! A moment is a position of the log: the first record recorded after it
//! ([`cut_at`]), so "as of 1 March" is what the ledger knew on 1 March.
//! The subject's own records before the cut (its stream, and the tenant's
//! policy changes) are fed through a [`Window`] to fresh in-memory
//! projections (the same code as the live ones, which is why the two
//! cannot disagree), and the same queries read the result. Personal
//! fields open under today's keys: an erased contact stays erased in the
//! past too.

use std::sync::Arc;

use mailledger_core::email::{EmailLedger, POLICY_STREAM, message_stream};
use mailledger_core::pseudonym::Pseudonym;
use mailledger_core::{Direction, EventLog, Record, TenantFilter, Window};
use mailledger_projections::suppression::Entry;
use mailledger_projections::{MessageView, Projections};

use crate::Result;

/// The position the log stood at, at `moment` (µs since the epoch): the
/// first record recorded after it, or the head. Records are recorded in
/// position order.
///
/// # Errors
/// A log error.
pub async fn cut_at(log: &dyn EventLog, moment: i64) -> Result<u64> {
    let (mut lo, mut hi) = (0, log.head());
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        let batch = log
            .read_all(&TenantFilter::All, mid, Direction::Forward, 1)
            .await?;
        let recorded = batch.records.first().map(|r| r.recorded_at_micros);
        match recorded {
            Some(t) if t <= moment => lo = mid + 1,
            _ => hi = mid,
        }
    }
    Ok(lo)
}

/// Every record of `stream` before `cut`.
async fn stream_before(
    log: &dyn EventLog,
    tenant: &str,
    stream: &str,
    cut: u64,
) -> Result<Vec<Record>> {
    let mut out = Vec::new();
    loop {
        let page = log
            .read_stream(tenant, stream, out.len() as u64, 1000)
            .await?;
        let full = page.len() == 1000;
        let before = page.partition_point(|r| r.position < cut);
        let stop = before < page.len();
        out.extend(page.into_iter().take(before));
        if !full || stop {
            return Ok(out);
        }
    }
}

/// Fresh projections fed `stream`'s records and the tenant's policy
/// changes before `cut`, and the email layer over the same window.
async fn project(
    email: &EmailLedger,
    tenant: &str,
    stream: &str,
    cut: u64,
) -> Result<(Projections, EmailLedger)> {
    let log = Arc::clone(email.log());
    let mut records = stream_before(log.as_ref(), tenant, stream, cut).await?;
    records.extend(stream_before(log.as_ref(), tenant, POLICY_STREAM, cut).await?);
    let window: Arc<dyn EventLog> = Arc::new(Window::new(log, cut, records));
    let projections = Projections::in_memory();
    projections.catch_up(window.as_ref()).await?;
    let then = EmailLedger::new(window, Arc::clone(email.keys()));
    Ok((projections, then))
}

/// A message as the delivery log showed it before position `cut`: its
/// status and its timeline; `None` when it had no event yet.
///
/// # Errors
/// A log, key store or projection error.
pub async fn message_as_of(
    email: &EmailLedger,
    tenant: &str,
    message_id: &str,
    cut: u64,
) -> Result<Option<MessageView>> {
    mailledger_core::validate_tenant(tenant)?;
    let (projections, then) = project(email, tenant, &message_stream(message_id), cut).await?;
    Ok(projections.message(&then, tenant, message_id).await?)
}

/// A contact's suppression entries, in every scope, as the suppression
/// list held them before position `cut`.
///
/// # Errors
/// A log or projection error.
pub async fn suppression_as_of(
    email: &EmailLedger,
    tenant: &str,
    contact: &Pseudonym,
    cut: u64,
) -> Result<Vec<Entry>> {
    mailledger_core::validate_tenant(tenant)?;
    let (projections, _) = project(email, tenant, &contact.stream(), cut).await?;
    Ok(projections.suppressions_of(tenant, contact)?)
}
