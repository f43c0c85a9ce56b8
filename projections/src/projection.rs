//! The [`Projection`] contract and what a projection is fed.

use mailledger_core::Record;
use mailledger_core::email::{
    POLICY_EVENT, POLICY_STREAM, SealedEvent, TenantPolicy, decode_payload, is_email_type,
    is_message_stream, message_stream_of_hash,
};

use std::sync::Arc;

use mailledger_core::EventLog;

use crate::codec::{dec, enc, message_key, tenant_key};
use crate::error::{Error, Result};
use crate::starts::MessageStarts;
use crate::state::Tx;

/// The message an email event names, as projections key it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MessageRef {
    /// [`crate::codec::message_key`] of the message id.
    pub key: [u8; 16],
    /// The position of the message's first event: version 0 of its stream
    /// (the event's own position when that comes later, which only a raw
    /// append outside the message's stream can make). State kept per
    /// message is keyed by it, so it lands in the log's time order.
    pub first: u64,
}

/// A record of the log as projections see it: decoded once by the runner
/// and handed to every projection.
#[derive(Debug)]
pub enum Input {
    /// An email event, personal fields still sealed, and its message when
    /// it names one: found once here for every projection.
    Email(Box<SealedEvent>, Option<MessageRef>),
    /// A change of the tenant's policy (it carries the suppression and
    /// analytics rules).
    Policy(TenantPolicy),
    /// Anything else: projections skip it.
    Other,
}

impl Input {
    /// Decodes a record alone. Its message's first event is taken to be
    /// the record itself; [`Input::decode_all`] finds the real one.
    ///
    /// # Errors
    /// [`mailledger_core::Error::Corrupt`] naming the position of an email
    /// or policy record that does not decode.
    pub fn decode(record: &Record) -> Result<Self> {
        if is_email_type(&record.event_type) {
            let event: SealedEvent = decode_payload(record.position, &record.payload)?;
            let key = event.envelope.message_id.as_deref().map(|id| MessageRef {
                key: message_key(id),
                first: record.position,
            });
            return Ok(Self::Email(Box::new(event), key));
        }
        if record.event_type == POLICY_EVENT && record.stream == POLICY_STREAM {
            let policy = serde_json::from_slice(&record.payload).map_err(|_| {
                mailledger_core::Error::Corrupt {
                    position: record.position,
                    reason: "policy event does not decode".into(),
                }
            })?;
            return Ok(Self::Policy(policy));
        }
        Ok(Self::Other)
    }

    /// Decodes a batch of records (on a thread that may block) and finds
    /// the first event of each message they name: in `starts` (where the
    /// batch's own openings are added), otherwise from the log's stream
    /// index, in one call for the batch. The answer depends on the log
    /// alone, not on how it is batched or what `starts` holds, so a
    /// rebuild and live application key messages alike.
    ///
    /// # Errors
    /// As [`Input::decode`], or a failed read of the log.
    pub async fn decode_all(
        log: &dyn EventLog,
        records: Vec<Record>,
        starts: &Arc<MessageStarts>,
    ) -> Result<(Vec<Record>, Vec<Self>)> {
        let known = Arc::clone(starts);
        let (records, mut inputs, pending) =
            tokio::task::spawn_blocking(move || decode_batch(records, &known))
                .await
                .map_err(|_| Error::Stopped)??;
        if pending.is_empty() {
            return Ok((records, inputs));
        }
        let mut asks = Vec::with_capacity(pending.len());
        for &i in &pending {
            if let (Some(r), Some(Self::Email(_, Some(m)))) = (records.get(i), inputs.get(i)) {
                asks.push((r.tenant.clone(), message_stream_of_hash(&m.key)));
            }
        }
        let found = log.first_positions(asks).await?;
        starts.with(|known| {
            for (&i, first) in pending.iter().zip(found) {
                if let (Some(r), Some(Self::Email(_, Some(m)))) =
                    (records.get(i), inputs.get_mut(i))
                    && let Some(p) = first.filter(|p| *p < m.first)
                {
                    m.first = p;
                    known.insert(&r.tenant, m.key, p);
                }
            }
        });
        Ok((records, inputs))
    }
}

/// Decodes `records`; returns them, their inputs, and the indexes of the
/// inputs whose message's first position `starts` does not know (their
/// `first` is their own position until looked up). A position known is
/// taken only when it comes before the record, as the log's answer is.
fn decode_batch(
    records: Vec<Record>,
    starts: &MessageStarts,
) -> Result<(Vec<Record>, Vec<Input>, Vec<usize>)> {
    let mut inputs = Vec::with_capacity(records.len());
    for r in &records {
        inputs.push(Input::decode(r)?);
    }
    let mut pending = Vec::new();
    starts.with(|known| {
        for (i, (r, input)) in records.iter().zip(inputs.iter_mut()).enumerate() {
            let Input::Email(_, Some(m)) = input else {
                continue;
            };
            if opens_message(r, &m.key) {
                known.insert(&r.tenant, m.key, r.position);
            } else {
                match known.get(&r.tenant, &m.key) {
                    Some(p) if p < r.position => m.first = p,
                    Some(_) => {}
                    None => pending.push(i),
                }
            }
        }
    });
    Ok((records, inputs, pending))
}

/// Whether `record` is the first event of the message keyed `mkey`:
/// version 0 of that message's stream (`message-` and the key in hex, as
/// [`mailledger_core::email::message_stream`] names it). No projection
/// holds state for a message before its first event, so reading that
/// state can be skipped; most messages are new when first seen. The
/// answer depends on the record alone, so a rebuild and live application
/// skip the same reads.
pub(crate) fn opens_message(record: &Record, mkey: &[u8; 16]) -> bool {
    record.stream_version == 0 && is_message_stream(&record.stream, mkey)
}

/// A view of the log kept up to date event by event.
///
/// `apply_batch` is called with the records of the log in order, from the
/// projection's checkpoint on; its writes go through `tx`, which the runner
/// commits atomically with the new checkpoint. It must be deterministic:
/// the same records in the same order give the same state, however they
/// are batched (a rebuild from position 0 must equal incremental
/// application). It may not look at the clock or at anything but `tx` and
/// the records.
pub trait Projection: Send + Sync + 'static {
    /// The projection's name, such as `delivery-log`.
    fn name(&self) -> &'static str;

    /// The version of the projection's state layout (keys and values).
    /// Raise it with any change to that layout: a store written under
    /// another version is dropped on open and rebuilt from the log.
    fn format(&self) -> u32;

    /// Applies a batch of records, in order: `records[i]` decoded as
    /// `inputs[i]`, skipping those before position `from`. A projection
    /// may keep decoded state across the batch (rows, counters) and write
    /// it once at the end, provided the result is the same as one record
    /// at a time.
    ///
    /// # Errors
    /// A storage failure or undecodable state; the batch is then not
    /// committed and the runner stops.
    fn apply_batch(
        &self,
        tx: &mut Tx<'_>,
        records: &[Record],
        inputs: &[Input],
        from: u64,
    ) -> Result<()>;
}

/// The records of a batch at or after position `from`, each with its input.
pub(crate) fn from_position<'a>(
    records: &'a [Record],
    inputs: &'a [Input],
    from: u64,
) -> impl Iterator<Item = (&'a Record, &'a Input)> {
    records
        .iter()
        .zip(inputs)
        .filter(move |(r, _)| r.position >= from)
}

/// The table of a projection's copy of each tenant's policy.
const POLICY_TABLE: u8 = b'P';

/// Stores `policy` as the tenant's current one in this projection's state.
///
/// # Errors
/// A storage failure.
pub fn store_policy(tx: &mut Tx<'_>, tenant: &str, policy: &TenantPolicy) -> Result<()> {
    tx.put(tenant_key(tenant, POLICY_TABLE), enc(policy)?);
    Ok(())
}

/// The tenant's policy as of the record being applied.
///
/// # Errors
/// A storage failure or undecodable state.
pub fn policy(tx: &mut Tx<'_>, tenant: &str) -> Result<TenantPolicy> {
    match tx.get(&tenant_key(tenant, POLICY_TABLE))? {
        Some(v) => dec(v, "a stored policy"),
        None => Ok(TenantPolicy::default()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mailledger_core::email::message_stream;

    fn record(stream: String, stream_version: u64) -> Record {
        Record {
            position: 7,
            tenant: "t".into(),
            stream,
            stream_version,
            event_id: uuid::Uuid::nil(),
            recorded_at_micros: 0,
            event_type: "delivered".into(),
            payload: Vec::new(),
            metadata: Vec::new(),
            prev_hash: [0; 32],
            jurisdiction: None,
            hash: [0; 32],
        }
    }

    #[test]
    fn only_version_0_of_the_message_s_own_stream_opens_the_message() {
        let mkey = message_key("<m-1@example.org>");
        let own = message_stream("<m-1@example.org>");
        assert!(opens_message(&record(own.clone(), 0), &mkey));
        assert!(!opens_message(&record(own.clone(), 1), &mkey));
        let other = message_stream("<m-2@example.org>");
        assert!(!opens_message(&record(other, 0), &mkey));
        assert!(!opens_message(&record(own.to_uppercase(), 0), &mkey));
        assert!(!opens_message(&record(format!("{own}0"), 0), &mkey));
        assert!(!opens_message(&record("contact-00".into(), 0), &mkey));
    }
}
