//! Making a log's signed checkpoints and reading them back.
//!
//! A checkpoint covers a tenant's chain up to its last record and is then
//! appended to the tenant's own log ([`CHECKPOINT_STREAM`]), so the next
//! checkpoint covers the one before it too. A tenant with nothing new
//! since its last checkpoint gets none.

use mailledger_core::residency::Jurisdiction;
use mailledger_core::{EventLog, ExpectedVersion, NewEvent};
use uuid::Uuid;

use crate::Result;
use crate::checkpoint::{CHECKPOINT_EVENT, CHECKPOINT_STREAM, Checkpoint, SignedCheckpoint};
use crate::key::AuditKey;

/// Signs a checkpoint of every tenant that wrote since its last one and
/// appends each to its tenant's log. Returns the new checkpoints.
///
/// # Errors
/// A log error; checkpoints appended before it stay.
pub async fn sign_checkpoints(
    log: &dyn EventLog,
    key: &AuditKey,
    jurisdiction: Jurisdiction,
    now_micros: i64,
) -> Result<Vec<SignedCheckpoint>> {
    let mut made = Vec::new();
    for (tenant, head) in log.chain_heads().await? {
        if let Some(last) = last_checkpoint_position(log, &tenant).await?
            && last == head.last_position
        {
            continue;
        }
        let signed = Checkpoint {
            tenant: tenant.clone(),
            position: head.last_position,
            hash: head.hash,
            count: head.count,
            signed_at_micros: now_micros,
            jurisdiction,
            key_id: key.public().id(),
        }
        .sign(key)?;
        let id = checkpoint_id(&tenant, head.last_position);
        log.append_to_stream(
            &tenant,
            CHECKPOINT_STREAM,
            ExpectedVersion::Any,
            vec![NewEvent::new(id, CHECKPOINT_EVENT, signed.to_payload()?).at(now_micros)],
        )
        .await?;
        made.push(signed);
    }
    Ok(made)
}

/// The position of the record of `tenant`'s last checkpoint.
async fn last_checkpoint_position(log: &dyn EventLog, tenant: &str) -> Result<Option<u64>> {
    let Some(v) = log.stream_version(tenant, CHECKPOINT_STREAM).await? else {
        return Ok(None);
    };
    let records = log.read_stream(tenant, CHECKPOINT_STREAM, v, 1).await?;
    Ok(records.first().map(|r| r.position))
}

/// A checkpoint's event id: one per tenant and position covered.
fn checkpoint_id(tenant: &str, position: u64) -> Uuid {
    let mut h = blake3::Hasher::new_derive_key("mailledger 2026-12 checkpoint event id v1");
    h.update(&(tenant.len() as u64).to_le_bytes());
    h.update(tenant.as_bytes());
    h.update(&position.to_be_bytes());
    let mut b = [0; 16];
    b.copy_from_slice(&h.finalize().as_bytes()[..16]);
    uuid::Builder::from_custom_bytes(b).into_uuid()
}

/// Up to `max` of `tenant`'s checkpoints from the `from`th on (0 is the
/// first), oldest first, each with its place.
///
/// # Errors
/// A log error, or a checkpoint record that does not decode.
pub async fn checkpoints(
    log: &dyn EventLog,
    tenant: &str,
    from: u64,
    max: usize,
) -> Result<Vec<(u64, SignedCheckpoint)>> {
    let records = log
        .read_stream(tenant, CHECKPOINT_STREAM, from, max)
        .await?;
    records
        .iter()
        .enumerate()
        .map(|(i, r)| Ok((from + i as u64, SignedCheckpoint::from_payload(&r.payload)?)))
        .collect()
}

/// Every checkpoint of every tenant (of `tenant` only, when given), in
/// tenant order, oldest first.
///
/// # Errors
/// As [`checkpoints`].
pub async fn all_checkpoints(
    log: &dyn EventLog,
    tenant: Option<&str>,
) -> Result<Vec<SignedCheckpoint>> {
    let tenants: Vec<String> = match tenant {
        Some(t) => vec![t.to_owned()],
        None => log.chain_heads().await?.into_keys().collect(),
    };
    let mut out = Vec::new();
    for t in tenants {
        let mut from = 0;
        loop {
            let page = checkpoints(log, &t, from, 1000).await?;
            let Some((last, _)) = page.last() else { break };
            from = last + 1;
            out.extend(page.into_iter().map(|(_, c)| c));
        }
    }
    Ok(out)
}
