//! Erasure: destroy a contact's key, record it in the log, answer with a
//! receipt; and the event ids erasures alone may use.
//!
//! A request id belongs to one contact: the erasure's event id is derived
//! from the tenant's secret and the request id, so the same id for the same
//! contact finds the same receipt, the same id for another contact is a
//! conflict that destroys nothing, and nobody without the secret can
//! predict (and claim first) an erasure's id. Every erasure id begins with
//! [`ERASURE_ID_PREFIX`], which ingest refuses.

use std::sync::Arc;

use uuid::Uuid;
use zeroize::Zeroizing;

use super::{
    ContactRef, EmailEventOf, EmailLedger, Envelope, ErasureReceipt, EventBody, SealedEvent,
    decode_payload, encode_payload, rfc3339, validate_request_id,
};
use crate::crypto::SecretKey;
use crate::error::{Error, Result};
use crate::pseudonym::Pseudonym;
use crate::record::{ExpectedVersion, NewEvent, Record};

const ERASURE_ID_CONTEXT: &str = "mailledger 2026-12 erasure event id v2";

/// The first four bytes of every erasure's event id (`45524153-…`, "ERAS"),
/// which no other event may carry.
pub const ERASURE_ID_PREFIX: [u8; 4] = *b"ERAS";

/// The event id of the `erased` event for a request: a keyed hash of the
/// tenant and request id under the tenant's secret, so the same request id
/// always gives the same event and nobody without the secret can tell it
/// in advance. It begins with [`ERASURE_ID_PREFIX`].
#[must_use]
pub fn erasure_event_id(tenant_secret: &SecretKey, tenant: &str, request_id: &str) -> Uuid {
    let key = Zeroizing::new(blake3::derive_key(
        ERASURE_ID_CONTEXT,
        tenant_secret.expose(),
    ));
    let mut h = blake3::Hasher::new_keyed(&key);
    h.update(&(tenant.len() as u64).to_le_bytes());
    h.update(tenant.as_bytes());
    h.update(request_id.as_bytes());
    let mut b = [0u8; 16];
    b.copy_from_slice(&h.finalize().as_bytes()[..16]);
    b[..4].copy_from_slice(&ERASURE_ID_PREFIX);
    uuid::Builder::from_custom_bytes(b).into_uuid()
}

/// The time an erasure's event is indexed under, whatever its request's
/// time: a request id retried at any later moment must find its first
/// erasure. Erasures are few, so their entries at the start of the
/// tenant's range cost nothing to keep there.
pub(crate) const ERASURE_TIME: i64 = 0;

/// The stream of a tenant's log that lists every erasure (each `erased`
/// event is linked into it): the erasure register.
pub const ERASURES_STREAM: &str = "audit-erasures";

/// Whether `id` lies in the space of erasure ids, which ingest refuses.
#[must_use]
pub fn is_erasure_id(id: Uuid) -> bool {
    id.as_bytes()[..4] == ERASURE_ID_PREFIX
}

/// `id`, moved out of the erasure id space if it fell in it: for ids
/// derived by hashing (a provider's event id), which land there once in
/// 2^32.
#[must_use]
pub fn unreserved_id(id: Uuid) -> Uuid {
    if !is_erasure_id(id) {
        return id;
    }
    let mut b = *id.as_bytes();
    b[0] ^= 0x80;
    Uuid::from_bytes(b)
}

impl EmailLedger {
    /// Erases a contact: destroys its key, appends a `ContactErased` event
    /// (pseudonym, request id, time, count, whether a key was found; no
    /// personal data) and returns the receipt.
    ///
    /// The same request id for the same contact returns the same receipt;
    /// a new request id for a contact erased before returns a receipt of
    /// its own (the key stays destroyed, the count is the first erasure's).
    ///
    /// # Errors
    /// [`Error::RequestIdConflict`] when the request id was used for
    /// another contact (nothing is destroyed); a bad request id or address,
    /// or a storage failure. If the key was destroyed but the event could
    /// not be appended, a retry appends it.
    pub async fn erase(
        &self,
        tenant: &str,
        contact: ContactRef,
        request_id: &str,
    ) -> Result<ErasureReceipt> {
        crate::record::validate_tenant(tenant)?;
        validate_request_id(request_id)?;
        let p = match contact {
            ContactRef::Pseudonym(p) => p,
            ContactRef::Address(a) => self.pseudonym(tenant, &a).await?,
        };
        let secret = self.tenant_secret(tenant).await?;
        let event_id = erasure_event_id(&secret, tenant, request_id);
        let _one_at_a_time = self.erasing.lock().await;
        if let Some(r) = self.log.find_event(tenant, ERASURE_TIME, event_id).await? {
            return same_contact(receipt_of(&r)?, &p);
        }
        let stream = p.stream();
        let len = self
            .log
            .stream_version(tenant, &stream)
            .await?
            .map_or(0, |v| v + 1);
        let keys = Arc::clone(&self.keys);
        let t = tenant.to_owned();
        let now = crate::now_micros();
        let erasure = crate::blocking::run(move || keys.destroy(&t, &p, len, now)).await?;
        let key_found = erasure.is_some();
        let (generation, events) = erasure.map_or((0, 0), |e| (e.generation, e.events));
        let event: SealedEvent = EmailEventOf {
            envelope: Envelope {
                message_id: None,
                contact: p,
                key_generation: generation,
                occurred_at: now,
                provider: None,
                provider_event_id: None,
                tags: Vec::new(),
                campaign: None,
                sending_domain: None,
                recipient_domain: None,
                recipient: None,
                raw: None,
            },
            body: EventBody::ContactErased {
                request_id: request_id.to_owned(),
                events_unreadable: events,
                key_found,
            },
        };
        let out = self
            .log
            .append_to_stream(
                tenant,
                &stream,
                ExpectedVersion::Any,
                vec![
                    NewEvent::new(event_id, "erased", encode_payload(&event)?)
                        .at(ERASURE_TIME)
                        .with_link(ERASURES_STREAM),
                ],
            )
            .await?;
        let position = out.positions[0];
        if out.duplicates > 0
            && let Some(r) = self.log.find_event(tenant, ERASURE_TIME, event_id).await?
        {
            return same_contact(receipt_of(&r)?, &p);
        }
        tracing::info!(contact = %p, position, events, key_found, "contact erased");
        Ok(ErasureReceipt {
            request_id: request_id.to_owned(),
            contact: p.to_string(),
            erased_at: rfc3339(now),
            position,
            events_unreadable: events,
            key_found,
        })
    }

    /// The receipt of an earlier erasure request, if there was one.
    ///
    /// # Errors
    /// A bad request id or a storage failure.
    pub async fn receipt(&self, tenant: &str, request_id: &str) -> Result<Option<ErasureReceipt>> {
        crate::record::validate_tenant(tenant)?;
        validate_request_id(request_id)?;
        let secret = self.tenant_secret(tenant).await?;
        match self
            .log
            .find_event(
                tenant,
                ERASURE_TIME,
                erasure_event_id(&secret, tenant, request_id),
            )
            .await?
        {
            Some(r) => receipt_of(&r).map(Some),
            None => Ok(None),
        }
    }
}

impl EmailLedger {
    /// The erasure register: up to `max` receipts of `tenant`'s erasures,
    /// in the order they were made, from the `from`th on (0 is the first).
    /// Each comes with its place in the register, the cursor of the next
    /// page being the last place plus one.
    ///
    /// # Errors
    /// A bad tenant name, or a storage or corruption error.
    pub async fn erasures(
        &self,
        tenant: &str,
        from: u64,
        max: usize,
    ) -> Result<Vec<(u64, ErasureReceipt)>> {
        crate::record::validate_tenant(tenant)?;
        let records = self
            .log
            .read_stream(tenant, ERASURES_STREAM, from, max)
            .await?;
        records
            .iter()
            .enumerate()
            .map(|(i, r)| Ok((from + i as u64, receipt_of(r)?)))
            .collect()
    }
}

/// `receipt` when it is `contact`'s; a conflict when the request id named
/// the erasure of another contact.
fn same_contact(receipt: ErasureReceipt, contact: &Pseudonym) -> Result<ErasureReceipt> {
    if receipt.contact == contact.to_string() {
        Ok(receipt)
    } else {
        Err(Error::RequestIdConflict)
    }
}

/// The receipt an `erased` record holds.
fn receipt_of(r: &Record) -> Result<ErasureReceipt> {
    let e = decode_payload(r.position, &r.payload)?;
    match e.body {
        EventBody::ContactErased {
            request_id,
            events_unreadable,
            key_found,
        } => Ok(ErasureReceipt {
            request_id,
            contact: e.envelope.contact.to_string(),
            erased_at: rfc3339(e.envelope.occurred_at),
            position: r.position,
            events_unreadable,
            key_found,
        }),
        _ => Err(Error::corrupt(r.position, "expected an erased event")),
    }
}
