//! Replay: a tenant's events in log order, filtered, each opened (or shown
//! erased, or raw), with the tenant's hash chain verified as it is read.
//!
//! Replay always reads the tenant's whole range of the log in order, so
//! every record's hash is recomputed and every link checked, whatever the
//! filters keep; the filters decide only what is shown. Starting past
//! position 0, the chain is followed from the first record read. The
//! audit's own records (checkpoints, access records) are verified but
//! shown only when their type is asked for.

use std::collections::HashSet;
use std::ops::Range;

use mailledger_core::codec;
use mailledger_core::email::{EmailLedger, EventBody, decode_payload, message_stream};
use mailledger_core::pseudonym::Pseudonym;
use mailledger_core::{Direction, GENESIS_HASH, Hash, Record, TenantFilter, hex};
use serde_json::{Value, json};

use crate::Result;

/// The prefix of the streams the audit itself writes.
const AUDIT_STREAMS: &str = "audit-";

/// Which events a replay shows. Every filter given must hold.
#[derive(Debug, Clone, Default)]
pub struct ReplayFilter {
    /// Positions (default: all).
    pub positions: Option<Range<u64>>,
    /// When the events occurred, µs since the epoch, end excluded.
    pub time: Option<Range<i64>>,
    /// One message's events.
    pub message_id: Option<String>,
    /// These event types only (`sent`, `bounced`, …).
    pub types: Option<Vec<String>>,
    /// One contact's events.
    pub contact: Option<Pseudonym>,
}

/// How a replayed event's personal fields are shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shown {
    /// Opened: plaintext where the contact's key exists, the erased
    /// marker where it was destroyed.
    Opened,
    /// As stored: the record with its sealed payload (hex), nothing opened.
    Raw,
}

/// What a replay read, at its end.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct ReplaySummary {
    /// Events shown.
    pub events: u64,
    /// Records of the tenant read (and verified).
    pub records: u64,
    /// Distinct erased contacts whose events were shown.
    pub erased_contacts: u64,
    /// The position of the last record read.
    pub head_position: Option<u64>,
    /// Its hash: the chain head the replay reached.
    pub head_hash: Option<String>,
    /// Whether every record read had its hash and its link.
    pub verified: bool,
    /// The first record that did not (position), when one did not.
    pub first_bad_position: Option<u64>,
    /// Why it did not.
    pub problem: Option<String>,
}

/// A replay in progress: call [`Replay::next_page`] until it gives `None`,
/// then read [`Replay::summary`].
pub struct Replay<'a> {
    email: &'a EmailLedger,
    tenant: String,
    filter: ReplayFilter,
    shown: Shown,
    message_stream: Option<String>,
    next: Option<u64>,
    end: u64,
    last_hash: Option<Hash>,
    anchored: bool,
    erased: HashSet<Pseudonym>,
    opened_contacts: HashSet<String>,
    opened_messages: HashSet<String>,
    summary: ReplaySummary,
}

impl<'a> Replay<'a> {
    /// A replay of `tenant`'s log.
    ///
    /// # Errors
    /// A bad tenant name.
    pub fn new(
        email: &'a EmailLedger,
        tenant: &str,
        filter: ReplayFilter,
        shown: Shown,
    ) -> Result<Self> {
        mailledger_core::validate_tenant(tenant)?;
        let head = email.log().head();
        let range = filter.positions.clone().unwrap_or(0..u64::MAX);
        Ok(Self {
            email,
            tenant: tenant.to_owned(),
            message_stream: filter.message_id.as_deref().map(message_stream),
            next: Some(range.start),
            end: range.end.min(head),
            last_hash: None,
            anchored: range.start == 0,
            erased: HashSet::new(),
            opened_contacts: HashSet::new(),
            opened_messages: HashSet::new(),
            summary: ReplaySummary {
                verified: true,
                ..ReplaySummary::default()
            },
            filter,
            shown,
        })
    }

    /// The next events shown, as JSON objects; `None` once the range is
    /// read (or the chain broke: see the summary).
    ///
    /// # Errors
    /// A log error, or a record that does not decode or open.
    pub async fn next_page(&mut self) -> Result<Option<Vec<Value>>> {
        let Some(from) = self.next.filter(|n| *n < self.end) else {
            return Ok(None);
        };
        if !self.summary.verified {
            return Ok(None);
        }
        let batch = self
            .email
            .log()
            .read_all(
                &TenantFilter::Only(self.tenant.clone()),
                from,
                Direction::Forward,
                1000,
            )
            .await?;
        self.next = batch.next.filter(|n| *n > from);
        let mut out = Vec::new();
        let end = self.end;
        for r in batch.records.iter().filter(|r| r.position < end) {
            if let Err(problem) = self.check(r) {
                self.summary.verified = false;
                self.summary.first_bad_position = Some(r.position);
                self.summary.problem = Some(problem);
                self.next = None;
                break;
            }
            if let Some(v) = self.show(r)? {
                out.push(v);
            }
        }
        self.summary.events += out.len() as u64;
        Ok(Some(out))
    }

    /// Verifies one record: its hash, and its link to the one before.
    fn check(&mut self, r: &Record) -> std::result::Result<(), String> {
        match codec::recomputed_hash(r) {
            Ok(hash) if hash == r.hash => {}
            _ => return Err("the record's hash does not match its bytes".into()),
        }
        // The first record read links to genesis when the replay starts at
        // position 0; past it, the chain is followed from that record.
        let expected = match self.last_hash {
            Some(h) => Some(h),
            None => self.anchored.then_some(GENESIS_HASH),
        };
        if expected.is_some_and(|e| e != r.prev_hash) {
            return Err(
                "the chain is broken: its link is not the hash of the tenant's record before it"
                    .into(),
            );
        }
        self.last_hash = Some(r.hash);
        self.summary.records += 1;
        self.summary.head_position = Some(r.position);
        self.summary.head_hash = Some(hex(&r.hash));
        Ok(())
    }

    /// The record as shown, if the filters keep it.
    fn show(&mut self, r: &Record) -> Result<Option<Value>> {
        match &self.filter.types {
            Some(types) if !types.contains(&r.event_type) => return Ok(None),
            // The audit's own records (checkpoints, access records, the
            // register's links) show when asked for by type.
            None if r.stream.starts_with(AUDIT_STREAMS) => return Ok(None),
            _ => {}
        }
        if let Some(stream) = &self.message_stream
            && r.stream != *stream
        {
            return Ok(None);
        }
        let email_event = mailledger_core::email::is_email_type(&r.event_type);
        if self.filter.time.is_some() || self.filter.contact.is_some() {
            if !email_event {
                return Ok(None);
            }
            let sealed = decode_payload(r.position, &r.payload)?;
            if let Some(t) = &self.filter.time
                && !t.contains(&sealed.envelope.occurred_at)
            {
                return Ok(None);
            }
            if let Some(c) = &self.filter.contact
                && sealed.envelope.contact != *c
            {
                return Ok(None);
            }
        }
        if self.shown == Shown::Raw || !email_event {
            return Ok(Some(raw_json(r)));
        }
        let Some(opened) = self.email.open(r)? else {
            return Ok(Some(raw_json(r)));
        };
        let e = &opened.event;
        let erased = e.envelope.recipient.as_ref().is_some_and(|f| f.is_erased())
            || matches!(e.body, EventBody::ContactErased { .. });
        if erased && self.erased.insert(e.envelope.contact) {
            self.summary.erased_contacts += 1;
        }
        if self.opened_contacts.len() < crate::access::MAX_LISTED {
            self.opened_contacts.insert(e.envelope.contact.to_string());
        }
        if let Some(m) = &e.envelope.message_id
            && self.opened_messages.len() < crate::access::MAX_LISTED
        {
            self.opened_messages.insert(m.clone());
        }
        Ok(Some(opened.to_json()))
    }

    /// What an access record of this replay lists: the contacts and the
    /// messages whose events it opened (at most
    /// [`MAX_LISTED`](crate::access::MAX_LISTED) of each), sorted.
    #[must_use]
    pub fn opened(&self) -> (Vec<String>, Vec<String>) {
        let mut contacts: Vec<String> = self.opened_contacts.iter().cloned().collect();
        let mut messages: Vec<String> = self.opened_messages.iter().cloned().collect();
        contacts.sort_unstable();
        messages.sort_unstable();
        (contacts, messages)
    }

    /// What the replay read so far (all of it, once `next_page` gave
    /// `None`).
    #[must_use]
    pub fn summary(&self) -> &ReplaySummary {
        &self.summary
    }
}

/// A record as stored: its envelope fields and the payload in hex.
#[must_use]
pub fn raw_json(r: &Record) -> Value {
    json!({
        "position": r.position,
        "tenant": r.tenant,
        "stream": r.stream,
        "stream_version": r.stream_version,
        "id": r.event_id,
        "type": r.event_type,
        "recorded_at": mailledger_core::email::rfc3339(r.recorded_at_micros),
        "jurisdiction": r.jurisdiction,
        "payload_hex": hex(&r.payload),
        "hash": hex(&r.hash),
        "prev_hash": hex(&r.prev_hash),
    })
}
