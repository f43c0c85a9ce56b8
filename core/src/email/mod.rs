//! The email layer: canonical email events sealed on the way in, opened (or
//! shown erased) on the way out, and erasure by destroying a contact's key.
//!
//! [`EmailLedger`] sits on an [`EventLog`] and a [`KeyStore`]:
//!
//! - **append**: each event's recipient is normalised and turned into the
//!   contact's pseudonym; the contact's key is made (durably) if it has none;
//!   every personal field is sealed with AES-256-GCM under that key, with
//!   associated data binding tenant, pseudonym, event id and field; the
//!   event goes to stream `message-{hash of message id}` linked into
//!   `contact-{pseudonym}` (or to the contact stream alone when it names no
//!   message). Plaintext exists only in memory, in [`Personal`] values.
//! - **read**: a record's payload is decoded and each sealed field opened
//!   with the contact's key of the same generation; when that key was
//!   destroyed the field is [`Field::Erased`].
//! - **erase**: destroys the key in the key store (in place, synced), then
//!   appends a `ContactErased` event and returns its receipt. It reads two
//!   stream heads and writes one key slot and one event, whatever the
//!   contact's history.
//!
//! # Stored payload (format 1)
//!
//! An email event's record payload is one format byte (1) followed by the
//! bincode 2 (standard config: little endian, varint integers) serde
//! encoding of [`SealedEvent`]: the [`Envelope`] fields in declaration order,
//! then the [`EventBody`] variant index and its fields in order. A
//! [`Sealed`](crate::crypto::Sealed) value encodes as its 12-byte nonce then a length-prefixed
//! ciphertext-and-tag. Field order never changes within a format; a new
//! format gets a new first byte.

mod append;
pub use append::Skipped;
mod canonical;
mod erase;
mod event_json;
mod event_type;
mod model;
mod open;
mod payload;
mod times;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use serde::{Deserialize, Serialize};
use uuid::Uuid;

pub use canonical::{
    CanonicalEvent, Checked, ErasureReceipt, MAX_PERSONAL_LEN, MAX_TAGS, MAX_TEXT_LEN, ReadEvent,
    parse_event,
};
pub use erase::{
    ERASURE_ID_PREFIX, ERASURES_STREAM, erasure_event_id, is_erasure_id, unreserved_id,
};
pub use event_type::EventType;
pub use model::{
    BounceClass, EmailEvent, EmailEventOf, Envelope, EventBody, Field, FieldName, RejectReason,
    SealedEvent,
};
pub use open::ContactKeys;
pub use times::{push_rfc3339, rfc3339};

use crate::crypto::Personal;
use crate::error::{Error, Result};
use crate::keys::KeyStore;
use crate::log::EventLog;
use crate::pseudonym::{LocalPartCase, Pseudonym};
use crate::record::{ExpectedVersion, NewEvent, Record};

/// The first byte of an email event's payload.
pub const PAYLOAD_FORMAT: u8 = 1;

/// The stream holding a tenant's policy changes.
pub const POLICY_STREAM: &str = "tenant-policy";

/// The event type of a policy change.
pub const POLICY_EVENT: &str = "policy_set";

/// The longest erasure request id.
pub const MAX_REQUEST_ID_LEN: usize = 128;

const AD_PREFIX: &[u8] = b"mailledger sealed field v1";
const MESSAGE_STREAM_CONTEXT: &str = "mailledger 2026-11 message stream v1";

/// A tenant's settings that are events in its log (so a projection rebuild
/// sees exactly what incremental application saw): what it keeps of
/// optional personal data (both off by default: data minimisation first),
/// how its addresses are told apart, and the rules its suppression list and
/// analytics follow.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantPolicy {
    /// Keep (sealed) subject lines of sent messages. Off: subjects given are
    /// dropped before anything is stored.
    #[serde(default)]
    pub keep_subjects: bool,
    /// Keep (sealed) IP addresses and user agents of opens and clicks. Off:
    /// they are dropped before anything is stored.
    #[serde(default)]
    pub keep_engagement_details: bool,
    /// When events put an address on the suppression list.
    #[serde(default)]
    pub suppression: SuppressionRules,
    /// How analytics tells machines from people.
    #[serde(default)]
    pub analytics: AnalyticsRules,
    /// Tell addresses apart by the case of their local part: `Ann@x.org`
    /// and `ann@x.org` become two contacts, with two pseudonyms, two
    /// suppression entries and two erasures. Off (the default), local parts
    /// are lower-cased before hashing, as mailbox providers treat them (see
    /// [`crate::pseudonym`]). Unlike the other settings it applies to every
    /// pseudonym computed after it changes, lookups and erasures of older
    /// contacts included: changing it once the tenant has contacts whose
    /// address has an upper-case local part splits or merges them, so set
    /// it before the first event.
    #[serde(default)]
    pub case_sensitive_local_part: bool,
}

impl TenantPolicy {
    /// How this tenant's pseudonyms treat the local part of an address.
    #[must_use]
    pub const fn local_part_case(&self) -> LocalPartCase {
        if self.case_sensitive_local_part {
            LocalPartCase::Sensitive
        } else {
            LocalPartCase::Insensitive
        }
    }
}

/// When events suppress an address. Each rule applies to events appended
/// after it was set (a rebuild replays the rule changes in log order).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SuppressionRules {
    /// A hard bounce suppresses the address for all mail. Default: true.
    pub hard_bounce: bool,
    /// A complaint suppresses the address for all mail. Default: true.
    pub complaint: bool,
    /// An unsubscribe suppresses its scope. Default: true.
    pub unsubscribe: bool,
    /// This many soft bounces within [`Self::soft_bounce_window_days`]
    /// suppress the address for all mail; 0 turns the rule off. Default: 3.
    pub soft_bounce_threshold: u32,
    /// The window soft bounces are counted in, in days. Default: 7.
    pub soft_bounce_window_days: u32,
    /// How long a soft-bounce suppression lasts after the bounce that set or
    /// last renewed it, in days. Default: 30.
    pub soft_bounce_expiry_days: u32,
}

impl Default for SuppressionRules {
    fn default() -> Self {
        Self {
            hard_bounce: true,
            complaint: true,
            unsubscribe: true,
            soft_bounce_threshold: 3,
            soft_bounce_window_days: 7,
            soft_bounce_expiry_days: 30,
        }
    }
}

/// How analytics separates machine opens and bot clicks from people's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AnalyticsRules {
    /// A click within this many seconds of the message's delivery counts as
    /// a link scanner's (besides clicks the provider flags as bots); 0 turns
    /// the rule off. Default: 10.
    pub bot_click_window_secs: u32,
}

impl Default for AnalyticsRules {
    fn default() -> Self {
        Self {
            bot_click_window_secs: 10,
        }
    }
}

/// Who to erase.
#[derive(Debug, Clone)]
pub enum ContactRef {
    /// By address; it is normalised (as the tenant's policy says) and
    /// hashed, never stored.
    Address(Personal),
    /// By pseudonym.
    Pseudonym(Pseudonym),
}

/// The outcome of appending one canonical event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Appended {
    /// The event id.
    pub id: Uuid,
    /// Its position in the log.
    pub position: u64,
    /// True when the log already held the id: nothing was written.
    pub duplicate: bool,
}

/// The stream of a message: `message-` and 32 hex digits of blake3 of the
/// message id (message ids look like addresses, and stream names never hold
/// one).
#[must_use]
pub fn message_stream(message_id: &str) -> String {
    message_stream_of_hash(&message_hash(message_id))
}

/// The stream [`message_stream`] names for the message whose
/// [`message_hash`] is `hash`.
#[must_use]
pub fn message_stream_of_hash(hash: &[u8; 16]) -> String {
    let mut s = String::with_capacity(40);
    s.push_str("message-");
    crate::push_hex(&mut s, hash);
    s
}

/// Whether `stream` is the stream [`message_stream`] names for the message
/// whose [`message_hash`] is `hash`.
#[must_use]
pub fn is_message_stream(stream: &str, hash: &[u8; 16]) -> bool {
    stream
        .strip_prefix("message-")
        .is_some_and(|h| crate::is_hex_of(h.as_bytes(), hash))
}

/// The 16-byte hash of a message id that names its stream, for indexes
/// that key messages by a fixed-length value holding no message id.
#[must_use]
pub fn message_hash(message_id: &str) -> [u8; 16] {
    let h = blake3::derive_key(MESSAGE_STREAM_CONTEXT, message_id.as_bytes());
    let mut k = [0u8; 16];
    k.copy_from_slice(&h[..16]);
    k
}

/// Associated data of a sealed field.
fn ad(tenant: &str, contact: &Pseudonym, id: Uuid, field: FieldName) -> Vec<u8> {
    let mut ad = Vec::with_capacity(AD_PREFIX.len() + tenant.len() + 42);
    ad.extend_from_slice(AD_PREFIX);
    ad.extend_from_slice(&(tenant.len() as u16).to_le_bytes());
    ad.extend_from_slice(tenant.as_bytes());
    ad.extend_from_slice(contact.as_bytes());
    ad.extend_from_slice(id.as_bytes());
    ad.push(field as u8);
    ad
}

fn codec() -> bincode::config::Configuration {
    bincode::config::standard()
}

/// Encodes a sealed event as a record payload (format 1).
///
/// # Errors
/// Only if encoding fails, which it does not for well-formed values.
pub fn encode_payload(event: &SealedEvent) -> Result<Vec<u8>> {
    // Room for a typical sealed event (about 200 bytes): growing from one
    // byte by doubling took six or seven allocations per event.
    let mut out = Vec::with_capacity(256);
    out.push(PAYLOAD_FORMAT);
    bincode::serde::encode_into_std_write(event, &mut out, codec())
        .map_err(|e| Error::invalid(format!("cannot encode event: {e}")))?;
    Ok(out)
}

/// Decodes a record payload written by [`encode_payload`].
///
/// # Errors
/// [`Error::Corrupt`] naming `position` when the bytes are not a format 1
/// payload.
pub fn decode_payload(position: u64, payload: &[u8]) -> Result<SealedEvent> {
    match payload.split_first() {
        Some((&PAYLOAD_FORMAT, body)) => payload::decode(body)
            .ok_or_else(|| Error::corrupt(position, "email payload does not decode")),
        Some((v, _)) => Err(Error::corrupt(
            position,
            format!("email payload format {v} is not known to this build"),
        )),
        None => Err(Error::corrupt(position, "empty email payload")),
    }
}

/// The contact of an email event's record payload, read without decoding
/// the rest (to look up the keys of many events' contacts at once before
/// opening them); `None` for a payload that does not start as one.
#[must_use]
pub fn payload_contact(payload: &[u8]) -> Option<Pseudonym> {
    match payload.split_first() {
        Some((&PAYLOAD_FORMAT, body)) => payload::contact(body),
        _ => None,
    }
}

/// Whether a record's type is one of the email taxonomy's.
#[must_use]
pub fn is_email_type(event_type: &str) -> bool {
    event_type.parse::<EventType>().is_ok()
}

fn validate_request_id(id: &str) -> Result<()> {
    if id.is_empty()
        || id.len() > MAX_REQUEST_ID_LEN
        || !id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
    {
        return Err(Error::invalid(format!(
            "request id must be 1 to {MAX_REQUEST_ID_LEN} of A-Z a-z 0-9 - _ . :"
        )));
    }
    Ok(())
}

/// Email events over a log and a key store; see the module docs.
pub struct EmailLedger {
    log: Arc<dyn EventLog>,
    keys: Arc<dyn KeyStore>,
    policies: Mutex<HashMap<String, TenantPolicy>>,
    /// Held by an erasure from its first check to its event, so two
    /// erasures with one request id cannot both destroy a key.
    erasing: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for EmailLedger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmailLedger")
            .field("backend", &self.log.backend())
            .finish_non_exhaustive()
    }
}

impl EmailLedger {
    /// The email layer over `log`, with keys in `keys`.
    pub fn new(log: Arc<dyn EventLog>, keys: Arc<dyn KeyStore>) -> Self {
        Self {
            log,
            keys,
            policies: Mutex::new(HashMap::new()),
            erasing: tokio::sync::Mutex::new(()),
        }
    }

    /// The log underneath.
    #[must_use]
    pub fn log(&self) -> &Arc<dyn EventLog> {
        &self.log
    }

    /// The key store.
    #[must_use]
    pub fn keys(&self) -> &Arc<dyn KeyStore> {
        &self.keys
    }

    /// The pseudonym of `address` in `tenant`, normalised as the tenant's
    /// policy says ([`TenantPolicy::case_sensitive_local_part`]): the one
    /// its appends give the address, so the one to look it up by. The
    /// tenant's secret is made (and synced) on its first use, off the async
    /// threads.
    ///
    /// # Errors
    /// When the address is not one (the error does not echo it), the policy
    /// does not read, or the key store fails.
    pub async fn pseudonym(&self, tenant: &str, address: &Personal) -> Result<Pseudonym> {
        let case = self.policy(tenant).await?.local_part_case();
        let secret = self.tenant_secret(tenant).await?;
        Pseudonym::of(&secret, address, case)
    }

    /// The tenant's secret, off the async threads (its first use makes and
    /// syncs it).
    async fn tenant_secret(&self, tenant: &str) -> Result<Arc<crate::crypto::SecretKey>> {
        let keys = Arc::clone(&self.keys);
        let t = tenant.to_owned();
        crate::blocking::run(move || keys.tenant_secret(&t)).await
    }

    /// The tenant's policy: the last one set, or the default.
    ///
    /// # Errors
    /// A storage failure or an undecodable policy event.
    pub async fn policy(&self, tenant: &str) -> Result<TenantPolicy> {
        if let Some(p) = self
            .policies
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(tenant)
        {
            return Ok(*p);
        }
        let policy = match self.log.stream_version(tenant, POLICY_STREAM).await? {
            None => TenantPolicy::default(),
            Some(v) => {
                let r = self.log.read_stream(tenant, POLICY_STREAM, v, 1).await?;
                let r = r
                    .first()
                    .ok_or_else(|| Error::corrupt(0, "policy stream head is missing"))?;
                serde_json::from_slice(&r.payload)
                    .map_err(|_| Error::corrupt(r.position, "policy event does not decode"))?
            }
        };
        self.policies
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(tenant.to_owned(), policy);
        Ok(policy)
    }

    /// Sets the tenant's policy (an event in its `tenant-policy` stream). It
    /// applies to events appended afterwards.
    ///
    /// # Errors
    /// A storage failure.
    pub async fn set_policy(&self, tenant: &str, policy: TenantPolicy) -> Result<()> {
        let payload = serde_json::to_vec(&policy).map_err(|e| Error::invalid(e.to_string()))?;
        self.log
            .append_to_stream(
                tenant,
                POLICY_STREAM,
                ExpectedVersion::Any,
                vec![NewEvent::new(Uuid::now_v7(), POLICY_EVENT, payload)],
            )
            .await?;
        self.policies
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(tenant.to_owned(), policy);
        Ok(())
    }

    /// The email events at `positions` in `tenant`'s log, opened
    /// ([`EmailLedger::open`]), in the order given; see
    /// [`EventLog::read_positions`].
    ///
    /// # Errors
    /// As [`EventLog::read_positions`] and [`EmailLedger::open`].
    pub async fn open_positions(
        &self,
        tenant: &str,
        positions: Vec<u64>,
    ) -> Result<Vec<ReadEvent>> {
        let records = self.log.read_positions(tenant, positions).await?;
        let mut events = Vec::with_capacity(records.len());
        self.open_into(&records, &mut events, usize::MAX)?;
        Ok(events)
    }

    /// The email events of `stream`, opened ([`EmailLedger::open`]), in
    /// stream order: at most `max`, and whether more were left out.
    ///
    /// # Errors
    /// A read failure, or as [`EmailLedger::open`].
    pub async fn open_stream(
        &self,
        tenant: &str,
        stream: &str,
        max: usize,
    ) -> Result<(Vec<ReadEvent>, bool)> {
        let mut events = Vec::new();
        let mut version = 0;
        loop {
            let records = self
                .log
                .read_stream(tenant, stream, version, crate::log::MAX_READ_BATCH)
                .await?;
            let Some(last) = records.last() else { break };
            version = last.stream_version + 1;
            if self.open_into(&records, &mut events, max)? {
                return Ok((events, true));
            }
            // A short read is the stream's end: no second round trip.
            if records.len() < crate::log::MAX_READ_BATCH {
                break;
            }
        }
        Ok((events, false))
    }

    /// Opens the email events among `records` onto `events`, up to `max`
    /// in all; whether one was left out for that.
    fn open_into(
        &self,
        records: &[Record],
        events: &mut Vec<ReadEvent>,
        max: usize,
    ) -> Result<bool> {
        for r in records {
            if let Some(e) = self.open(r)? {
                if events.len() == max {
                    return Ok(true);
                }
                events.push(e);
            }
        }
        Ok(false)
    }
}

/// Drops the "invalid input: " prefix of a nested error's message.
fn strip(e: &Error) -> String {
    match e {
        Error::InvalidInput(s) => s.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests;
