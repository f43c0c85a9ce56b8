//! The delivery log: one row per message (recipient and subject still
//! sealed, domains, tags, campaign, current status, counts) and indexes to
//! list messages by status, tag, campaign, sending domain, recipient and
//! time, newest first, with cursors that stay valid while events arrive.
//!
//! A message's timeline is not copied here, only where it is: the row
//! keeps the log positions of the message's events (up to
//! [`MAX_TIMELINE_POSITIONS`]), and [`crate::Projections::message`] reads
//! and opens those records straight, without the log's stream index, a
//! randomly keyed tree whose reads contend with ingest. A message with more
//! events is read from its `message-…` stream.
//!
//! # Rules
//!
//! - A message's place in every listing is fixed when its first event is
//!   applied: that event's `occurred_at`, then its position. So a cursor
//!   (the last place returned) stays valid while new events arrive; only a
//!   status change can move a message in or out of a status listing.
//! - The current status is that of the status event (`sent`, `deferred`,
//!   `delivered`, `bounced`, `rejected`, `complained`) with the latest
//!   `occurred_at` (ties: the later position), except that `complained`,
//!   once seen, stays: a complaint always follows a delivery.
//! - Tags are the union over the message's events (at most
//!   [`MAX_MESSAGE_TAGS`]); campaign, sending domain, recipient domain,
//!   recipient and subject come from the first event that has them.
//!
//! # Keys (after `tenant \0`)
//!
//! | table | key | value |
//! |---|---|---|
//! | `M` | the position of the message's first event (8, big endian) | [`MessageRow`] |
//! | `I` | index kind (1), value (u16-prefixed), place: `occurred_at` of the first event (8, [`crate::codec::time_bytes`]) and its position (8) | empty |
//!
//! Index kinds: `T` time (no value), `S` status, `G` tag, `C` campaign, `D`
//! sending domain, `R` recipient pseudonym.
//!
//! Rows are keyed by the position of their message's first event
//! ([`crate::MessageRef::first`]), and every index entry by value, then
//! time: so nearly every write lands at the recent end of its range, in
//! the log's order, and a store that grows keeps rewriting only its
//! newest tables. A message is found by id through the log: its stream's
//! version 0 is that first position. The place's position is the row's
//! key, so a listing reads rows straight from its index entries.

use mailledger_core::Record;
use mailledger_core::crypto::Sealed;
use mailledger_core::email::EventBody;
use mailledger_core::pseudonym::Pseudonym;
use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::codec::{dec, enc, hex, prefix_end, push_part, tenant_key, time_bytes, u64_be, unhex};
use crate::error::{Error, Result};
use crate::projection::{Input, MessageRef, Projection, from_position, opens_message};
use crate::state::{StateStore, Tx};

/// The version of this projection's state layout ([`Projection::format`]).
/// 3: rows keyed by their message's first position, index entries by place
/// alone. 4: rows keep their events' positions.
pub const FORMAT: u32 = 4;

/// The projection's name.
pub const NAME: &str = "delivery-log";

/// The most tags kept per message.
pub const MAX_MESSAGE_TAGS: usize = 32;

/// The most event positions a row keeps ([`MessageRow::positions`]): a
/// message's usual events (sent, deferrals, delivered, a few opens and
/// clicks) fit, and a row of a much-opened message stays small.
pub const MAX_TIMELINE_POSITIONS: usize = 64;

/// The largest page a listing returns.
pub const MAX_PAGE: usize = 1000;

/// How many index entries one page examines at most before it returns
/// (with a cursor to go on), so a filter that matches little stays cheap.
pub const MAX_EXAMINED: usize = 20_000;

const ROWS: u8 = b'M';
const INDEX: u8 = b'I';

/// A message's delivery status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Handed to the provider.
    Sent,
    /// Delivery was deferred; it will be retried.
    Deferred,
    /// Accepted by the receiving server.
    Delivered,
    /// Bounced.
    Bounced,
    /// Rejected before sending.
    Rejected,
    /// The recipient complained.
    Complained,
}

impl Status {
    /// The status name, as JSON shows it.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sent => "sent",
            Self::Deferred => "deferred",
            Self::Delivered => "delivered",
            Self::Bounced => "bounced",
            Self::Rejected => "rejected",
            Self::Complained => "complained",
        }
    }

    /// Parses a status name.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for an unknown name.
    pub fn parse(s: &str) -> Result<Self> {
        Ok(match s {
            "sent" => Self::Sent,
            "deferred" => Self::Deferred,
            "delivered" => Self::Delivered,
            "bounced" => Self::Bounced,
            "rejected" => Self::Rejected,
            "complained" => Self::Complained,
            _ => {
                return Err(Error::InvalidInput(
                    "status must be one of sent, deferred, delivered, bounced, rejected, complained"
                        .into(),
                ));
            }
        })
    }

    fn of<S>(body: &EventBody<S>) -> Option<Self> {
        Some(match body {
            EventBody::MessageSent { .. } => Self::Sent,
            EventBody::DeliveryDeferred { .. } => Self::Deferred,
            EventBody::Delivered { .. } => Self::Delivered,
            EventBody::Bounced { .. } => Self::Bounced,
            EventBody::MessageRejected { .. } => Self::Rejected,
            EventBody::ComplaintReceived { .. } => Self::Complained,
            _ => return None,
        })
    }
}

/// A sealed field as a projection keeps it: the ciphertext and what opening
/// it needs (the event whose associated data it is bound to, and the key
/// generation).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SealedRef {
    /// The event that carried the field.
    pub event_id: Uuid,
    /// That event's position.
    pub position: u64,
    /// The contact key generation it is sealed under.
    pub generation: u32,
    /// The ciphertext.
    pub sealed: Sealed,
}

/// One message of the delivery log, personal fields sealed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageRow {
    /// The message id.
    pub message_id: String,
    /// The recipient's pseudonym.
    pub contact: Pseudonym,
    /// The recipient address (sealed).
    pub recipient: Option<SealedRef>,
    /// The subject (sealed), when the tenant keeps subjects.
    pub subject: Option<SealedRef>,
    /// The sending domain.
    pub sending_domain: Option<String>,
    /// The recipient's domain.
    pub recipient_domain: Option<String>,
    /// The tags of all its events.
    pub tags: Vec<String>,
    /// The campaign.
    pub campaign: Option<String>,
    /// The current status, once a status event was seen.
    pub status: Option<Status>,
    /// `occurred_at` and position of the event that set the status.
    pub status_at: (i64, u64),
    /// `occurred_at` of the first event applied: the message's place.
    pub first_at: i64,
    /// Position of the first event applied.
    pub first_position: u64,
    /// The latest `occurred_at` of its events.
    pub last_at: i64,
    /// How many events it has.
    pub events: u32,
    /// The log positions of its events, in log order, while there are at
    /// most [`MAX_TIMELINE_POSITIONS`]; then no more are added, and
    /// [`MessageRow::timeline_positions`] is `None`.
    pub positions: Vec<u64>,
}

impl MessageRow {
    /// Where all of the message's events are in the log, when the row
    /// holds them all.
    #[must_use]
    pub fn timeline_positions(&self) -> Option<&[u64]> {
        (self.positions.len() == self.events as usize).then_some(self.positions.as_slice())
    }

    fn place(&self) -> [u8; 16] {
        let mut p = [0u8; 16];
        p[..8].copy_from_slice(&time_bytes(self.first_at));
        p[8..].copy_from_slice(&self.first_position.to_be_bytes());
        p
    }
}

/// The delivery log projection.
#[derive(Debug, Default, Clone, Copy)]
pub struct DeliveryLog;

fn index_prefix(tenant: &str, kind: u8, value: &[u8]) -> Vec<u8> {
    let mut k = tenant_key(tenant, INDEX);
    k.push(kind);
    push_part(&mut k, value);
    k
}

fn row_key(tenant: &str, first: u64) -> Vec<u8> {
    let mut k = Vec::new();
    write_row_key(&mut k, tenant, first);
    k
}

fn write_row_key(k: &mut Vec<u8>, tenant: &str, first: u64) {
    crate::codec::start_key(k, tenant, ROWS);
    k.extend_from_slice(&first.to_be_bytes());
}

/// The tenant of a row key (`tenant \0 M` and 8 bytes).
fn row_key_tenant(key: &[u8]) -> &[u8] {
    key.get(..key.len().saturating_sub(10)).unwrap_or_default()
}

/// The key of an index entry: `tenant \0 I`, the kind, the value
/// (u16-prefixed) and the message's place.
fn index_key(tenant: &[u8], kind: u8, value: &[u8], place: &[u8; 16]) -> Vec<u8> {
    let mut key = Vec::with_capacity(tenant.len() + 21 + value.len());
    key.extend_from_slice(tenant);
    key.extend_from_slice(&[0, INDEX, kind]);
    push_part(&mut key, value);
    key.extend_from_slice(place);
    key
}

/// A row decoded during a batch: as the store held it, and as the batch
/// leaves it. Written back, with its index changes, once at the batch's end.
struct Cached {
    stored: Option<MessageRow>,
    row: MessageRow,
}

/// Rows by row key.
type Rows = FxHashMap<Vec<u8>, Cached>;

/// Writes each row and the index entries that changed between its stored
/// and final state (so a status that changes twice in a batch writes once).
fn flush(tx: &mut Tx<'_>, rows: Rows) -> Result<()> {
    for (k, c) in rows {
        let row = &c.row;
        let tenant = row_key_tenant(&k);
        let place = row.place();
        let index = |kind: u8, value: &[u8]| index_key(tenant, kind, value, &place);
        let mut put = |kind: u8, value: &[u8]| tx.put_blind(index(kind, value), Vec::new());
        let old = c.stored.as_ref();
        if old.is_none() {
            put(b'T', b"");
            put(b'R', row.contact.as_bytes());
        }
        for tag in &row.tags {
            if !old.is_some_and(|o| o.tags.contains(tag)) {
                put(b'G', tag.as_bytes());
            }
        }
        if let Some(v) = &row.campaign
            && old.is_none_or(|o| o.campaign.is_none())
        {
            put(b'C', v.as_bytes());
        }
        if let Some(v) = &row.sending_domain
            && old.is_none_or(|o| o.sending_domain.is_none())
        {
            put(b'D', v.as_bytes());
        }
        let old_status = old.and_then(|o| o.status);
        if old_status != row.status {
            if let Some(s) = row.status {
                put(b'S', s.as_str().as_bytes());
            }
            if let Some(s) = old_status {
                tx.delete_blind(index(b'S', s.as_str().as_bytes()));
            }
        }
        let value = enc(row)?;
        tx.put(k, value);
    }
    Ok(())
}

impl Projection for DeliveryLog {
    fn name(&self) -> &'static str {
        NAME
    }

    fn format(&self) -> u32 {
        FORMAT
    }

    fn apply_batch(
        &self,
        tx: &mut Tx<'_>,
        records: &[Record],
        inputs: &[Input],
        from: u64,
    ) -> Result<()> {
        let mut rows = Rows::with_capacity_and_hasher(records.len(), Default::default());
        let mut key = Vec::new();
        for (r, i) in from_position(records, inputs, from) {
            apply_one(tx, &mut rows, &mut key, r, i)?;
        }
        flush(tx, rows)
    }
}

fn apply_one(
    tx: &mut Tx<'_>,
    rows: &mut Rows,
    key: &mut Vec<u8>,
    record: &Record,
    input: &Input,
) -> Result<()> {
    let Input::Email(event, Some(MessageRef { key: mkey, first })) = input else {
        return Ok(());
    };
    let env = &event.envelope;
    let Some(message_id) = env.message_id.as_deref() else {
        return Ok(());
    };
    write_row_key(key, record.tenant.as_str(), *first);
    if !rows.contains_key(key.as_slice()) {
        let stored: Option<MessageRow> = if opens_message(record, mkey) {
            None
        } else {
            tx.read(key)?
                .map(|v| dec(&v, "a delivery log row"))
                .transpose()?
        };
        let row = stored.clone().unwrap_or_else(|| MessageRow {
            message_id: message_id.to_owned(),
            contact: env.contact,
            recipient: None,
            subject: None,
            sending_domain: None,
            recipient_domain: None,
            tags: Vec::new(),
            campaign: None,
            status: None,
            status_at: (i64::MIN, 0),
            first_at: env.occurred_at,
            first_position: *first,
            last_at: env.occurred_at,
            events: 0,
            positions: Vec::new(),
        });
        rows.insert(key.clone(), Cached { stored, row });
    }
    let Some(cached) = rows.get_mut(key.as_slice()) else {
        return Ok(());
    };
    let row = &mut cached.row;
    let sref = |s: &Sealed| SealedRef {
        event_id: record.event_id,
        position: record.position,
        generation: env.key_generation,
        sealed: s.clone(),
    };
    if row.recipient.is_none() {
        row.recipient = env.recipient.as_ref().map(sref);
    }
    if let EventBody::MessageSent {
        subject: Some(s), ..
    } = &event.body
        && row.subject.is_none()
    {
        row.subject = Some(sref(s));
    }
    for tag in &env.tags {
        if row.tags.len() < MAX_MESSAGE_TAGS && !row.tags.contains(tag) {
            row.tags.push(tag.clone());
        }
    }
    if row.campaign.is_none() {
        row.campaign.clone_from(&env.campaign);
    }
    if row.sending_domain.is_none() {
        row.sending_domain.clone_from(&env.sending_domain);
    }
    if row.recipient_domain.is_none() {
        row.recipient_domain.clone_from(&env.recipient_domain);
    }
    if let Some(status) = Status::of(&event.body) {
        let at = (env.occurred_at, record.position);
        let wins = match row.status {
            None => true,
            Some(Status::Complained) => false,
            Some(_) if status == Status::Complained => true,
            Some(_) => at > row.status_at,
        };
        if wins {
            row.status = Some(status);
            row.status_at = at;
        }
    }
    row.last_at = row.last_at.max(env.occurred_at);
    if row.positions.len() == row.events as usize && row.positions.len() < MAX_TIMELINE_POSITIONS {
        row.positions.push(record.position);
    }
    row.events = row.events.saturating_add(1);
    Ok(())
}

/// Which messages a listing returns; every filter given must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MessageFilter {
    /// Current status.
    pub status: Option<Status>,
    /// Carries this tag.
    pub tag: Option<String>,
    /// Belongs to this campaign.
    pub campaign: Option<String>,
    /// Sent from this domain.
    pub sending_domain: Option<String>,
    /// Sent to an address of this domain (lower-case; checked on each row,
    /// no index of its own).
    pub recipient_domain: Option<String>,
    /// Sent to this contact.
    pub recipient: Option<Pseudonym>,
    /// First event at or after this time (µs since the epoch).
    pub from: Option<i64>,
    /// First event before this time (µs since the epoch).
    pub to: Option<i64>,
}

/// A page of a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<T> {
    /// The items, newest first.
    pub items: Vec<T>,
    /// Where the next page starts; `None` on the last page.
    pub next: Option<String>,
}

/// A cursor: the place of the last message returned, as 32 hex digits.
fn parse_cursor(cursor: &str) -> Result<[u8; 16]> {
    unhex(cursor, 16)
        .and_then(|v| <[u8; 16]>::try_from(v).ok())
        .ok_or_else(|| Error::InvalidInput("cursor is not one this service returned".into()))
}

impl DeliveryLog {
    /// The row of the message whose first event is at position `first`
    /// (version 0 of its stream), if the tenant has it.
    ///
    /// # Errors
    /// A storage failure or an undecodable row.
    pub fn message(store: &dyn StateStore, tenant: &str, first: u64) -> Result<Option<MessageRow>> {
        store
            .get(&row_key(tenant, first))?
            .map(|v| dec(&v, "a delivery log row"))
            .transpose()
    }

    /// Messages matching `filter`, newest first, up to `limit` (at most
    /// [`MAX_PAGE`]), after `cursor`.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for a bad cursor or limit; a storage failure.
    pub fn list(
        store: &dyn StateStore,
        tenant: &str,
        filter: &MessageFilter,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<Page<MessageRow>> {
        if limit == 0 || limit > MAX_PAGE {
            return Err(Error::InvalidInput(format!(
                "limit must be 1 to {MAX_PAGE}"
            )));
        }
        // The most selective index given drives the scan; the row checks
        // the rest.
        let (kind, value): (u8, Vec<u8>) = if let Some(r) = &filter.recipient {
            (b'R', r.as_bytes().to_vec())
        } else if let Some(t) = &filter.tag {
            (b'G', t.as_bytes().to_vec())
        } else if let Some(c) = &filter.campaign {
            (b'C', c.as_bytes().to_vec())
        } else if let Some(d) = &filter.sending_domain {
            (b'D', d.as_bytes().to_vec())
        } else if let Some(s) = filter.status {
            (b'S', s.as_str().as_bytes().to_vec())
        } else {
            (b'T', Vec::new())
        };
        let prefix = index_prefix(tenant, kind, &value);
        let mut start = prefix.clone();
        if let Some(from) = filter.from {
            start.extend_from_slice(&time_bytes(from));
        }
        let mut end = match filter.to {
            Some(to) => {
                let mut e = prefix.clone();
                e.extend_from_slice(&time_bytes(to));
                e
            }
            None => prefix_end(&prefix),
        };
        if let Some(c) = cursor {
            let c = parse_cursor(c)?;
            let mut e = prefix.clone();
            e.extend_from_slice(&c);
            end = end.min(e);
        }
        let mut items = Vec::new();
        let mut examined = 0usize;
        let mut next = None;
        // Index keys are collected in chunks and rows read outside the scan,
        // so no read of the store runs inside another.
        'pages: loop {
            let mut chunk: Vec<Vec<u8>> = Vec::new();
            store.scan(&start, &end, true, &mut |k, _| {
                chunk.push(k.to_vec());
                chunk.len() < 256
            })?;
            if chunk.is_empty() {
                break;
            }
            for k in &chunk {
                if items.len() == limit || examined == MAX_EXAMINED {
                    // The last key examined: the next page starts below it.
                    next = end.get(prefix.len()..).map(hex);
                    break 'pages;
                }
                examined += 1;
                let tail = k.get(prefix.len()..).unwrap_or_default();
                let Some(first) = tail.get(8..16).and_then(u64_be) else {
                    continue;
                };
                if let Some(v) = store.get(&row_key(tenant, first))? {
                    let row: MessageRow = dec(&v, "a delivery log row")?;
                    if matches(&row, filter) {
                        items.push((tail.to_vec(), row));
                    }
                }
                end.clone_from(k);
            }
        }
        Ok(Page {
            items: items.into_iter().map(|(_, r)| r).collect(),
            next,
        })
    }
}

fn matches(row: &MessageRow, f: &MessageFilter) -> bool {
    f.status.is_none_or(|s| row.status == Some(s))
        && f.tag.as_ref().is_none_or(|t| row.tags.contains(t))
        && f.campaign
            .as_ref()
            .is_none_or(|c| row.campaign.as_ref() == Some(c))
        && f.sending_domain
            .as_ref()
            .is_none_or(|d| row.sending_domain.as_ref() == Some(d))
        && f.recipient_domain
            .as_ref()
            .is_none_or(|d| row.recipient_domain.as_ref() == Some(d))
        && f.recipient.is_none_or(|r| row.contact == r)
        && f.from.is_none_or(|t| row.first_at >= t)
        && f.to.is_none_or(|t| row.first_at < t)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The layout, frozen: a change here is a new [`FORMAT`].
    #[test]
    fn keys_are_frozen() {
        let row = row_key("acme", 0x0102_0304_0506_0708);
        assert_eq!(row, b"acme\0M\x01\x02\x03\x04\x05\x06\x07\x08");
        assert_eq!(row_key_tenant(&row), b"acme");
        let mut place = [0u8; 16];
        place[..8].copy_from_slice(&time_bytes(1));
        place[8..].copy_from_slice(&9u64.to_be_bytes());
        assert_eq!(
            index_key(b"acme", b'G', b"news", &place),
            b"acme\0IG\0\x04news\x80\0\0\0\0\0\0\x01\0\0\0\0\0\0\0\x09"
        );
        // A later message sorts after an earlier one, in every index.
        let earlier = row_key("acme", 255);
        assert!(earlier < row_key("acme", 256));
    }
}
