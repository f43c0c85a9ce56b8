//! What one record shows in a replay, and its line: the filters, the
//! opening (or the raw record), and the JSON or CSV written. Pure per
//! record, so a page's records can be shown on several threads at once;
//! what a replay accumulates (the summary, the access record's lists) is
//! kept by [`super::Replay`] from the [`Showing`] each record gives.

use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use mailledger_core::codec::{self, RecordRef};
use mailledger_core::email::{
    ContactKeys, EmailLedger, EventBody, decode_payload, is_email_type, payload_contact, rfc3339,
};
use mailledger_core::pseudonym::Pseudonym;
use mailledger_core::residency::Jurisdiction;
use mailledger_core::{Error, FrameBatch, Hash, hex};
use serde::Serialize;

use super::{Format, ReplayFilter, Shown};
use crate::Result;

/// The prefix of the streams the audit itself writes.
const AUDIT_STREAMS: &str = "audit-";

/// What a replay shows of each record, shared by its threads.
pub(super) struct Show {
    pub(super) email: Arc<EmailLedger>,
    pub(super) filter: ReplayFilter,
    pub(super) shown: Shown,
    pub(super) format: Format,
    pub(super) message_stream: Option<String>,
    /// Bytes to make room for per record shown: what the runs so far
    /// wrote, and a little more. A run's buffer that must grow copies all
    /// it holds, and the lines of an opened event or of a raw record are
    /// longer than a fixed guess would be for the other.
    pub(super) line_len: AtomicUsize,
}

/// What one record gave.
pub(super) enum Showing {
    /// Left out by the filters.
    No,
    /// Shown as stored.
    Raw,
    /// Shown opened: whose event, whether erased, which message.
    Opened {
        contact: Pseudonym,
        erased: bool,
        message: Option<String>,
    },
}

/// A record's place in its tenant's chain, which the replay checks in
/// order.
pub(super) struct Link {
    pub(super) position: u64,
    pub(super) prev_hash: Hash,
    pub(super) hash: Hash,
}

impl Link {
    fn of(r: &RecordRef<'_>) -> Self {
        Self {
            position: r.position,
            prev_hash: r.prev_hash,
            hash: r.hash,
        }
    }
}

/// One record's outcome in its chunk.
pub(super) struct Done {
    /// Its place in the chain; `None` for a frame that did not decode
    /// (`showing` says why).
    pub(super) link: Option<Link>,
    /// Whether its hash matched its bytes (it was shown only if so).
    pub(super) hash_ok: bool,
    /// The chunk's output length once its line (if any) was written.
    pub(super) end: usize,
    pub(super) showing: Result<Showing>,
}

impl Show {
    /// Bytes to make room for per record of a run.
    pub(super) fn line_len(&self) -> usize {
        self.line_len.load(Ordering::Relaxed)
    }

    /// Notes that a run of `records` wrote `bytes`.
    pub(super) fn note_lines(&self, bytes: usize, records: usize) {
        if let Some(per) = bytes.checked_div(records) {
            self.line_len.store(per + per / 8 + 16, Ordering::Relaxed);
        }
    }

    /// Shows the records of `frames[part]` into `out`, one [`Done`] per
    /// record, stopping after the first whose stored hash is not the hash
    /// of its bytes, or that does not decode or show: nothing past it is
    /// shown.
    ///
    /// The keys of the contacts whose events it opens are looked up first,
    /// in one call to the key store rather than one per event.
    pub(super) fn chunk(
        &self,
        frames: &FrameBatch,
        part: Range<usize>,
        out: &mut Vec<u8>,
    ) -> Vec<Done> {
        let (records, last) = decode(frames, part);
        let mut keys = self.keys(&records).map_err(Some);
        let mut done = Vec::with_capacity(records.len() + 1);
        let mut scratch = Vec::new();
        for r in &records {
            let start = out.len();
            let showing = self.one(r, &mut keys, out, &mut scratch);
            if showing.is_err() {
                out.truncate(start);
            }
            let stop = showing.is_err();
            done.push(Done {
                link: Some(Link::of(r)),
                hash_ok: true,
                end: out.len(),
                showing,
            });
            if stop {
                return done;
            }
        }
        if let Some(mut last) = last {
            last.end = out.len();
            done.push(last);
        }
        done
    }

    /// The keys of the contacts of `records` whose events may be opened:
    /// those the filters that need no decoding keep (`None` when none, or
    /// when nothing is opened).
    fn keys(&self, records: &[RecordRef<'_>]) -> mailledger_core::Result<Option<ContactKeys>> {
        if self.shown != Shown::Opened {
            return Ok(None);
        }
        let mut contacts = Vec::with_capacity(records.len());
        let mut tenant = None;
        for r in records {
            if !self.kept_unread(r) || !is_email_type(r.event_type) {
                continue;
            }
            // A payload that does not read is left to its decoding, which
            // reports it at its record.
            if let Some(c) = payload_contact(r.payload)
                && self.filter.contact.is_none_or(|f| f == c)
            {
                tenant = Some(r.tenant);
                contacts.push(c);
            }
        }
        tenant
            .map(|t| self.email.contact_keys(t, contacts))
            .transpose()
    }

    /// Whether the filters that need no decoding keep `r`.
    fn kept_unread(&self, r: &RecordRef<'_>) -> bool {
        match &self.filter.types {
            Some(types) if !types.iter().any(|t| t == r.event_type) => return false,
            // The audit's own records (checkpoints, access records, the
            // register's links) show when asked for by type.
            None if r.stream.starts_with(AUDIT_STREAMS) => return false,
            _ => {}
        }
        self.message_stream.as_deref().is_none_or(|s| r.stream == s)
    }

    /// Writes `r`'s line into `out` if the filters keep it; `keys` are the
    /// contacts' looked up for the chunk (or why that failed, reported by
    /// the first event that needed them).
    fn one(
        &self,
        r: &RecordRef<'_>,
        keys: &mut std::result::Result<Option<ContactKeys>, Option<mailledger_core::Error>>,
        out: &mut Vec<u8>,
        scratch: &mut Vec<u8>,
    ) -> Result<Showing> {
        if !self.kept_unread(r) {
            return Ok(Showing::No);
        }
        let email_event = is_email_type(r.event_type);
        let mut decoded = None;
        if self.filter.time.is_some() || self.filter.contact.is_some() {
            if !email_event {
                return Ok(Showing::No);
            }
            let sealed = decode_payload(r.position, r.payload)?;
            if let Some(t) = &self.filter.time
                && !t.contains(&sealed.envelope.occurred_at)
            {
                return Ok(Showing::No);
            }
            if let Some(c) = &self.filter.contact
                && sealed.envelope.contact != *c
            {
                return Ok(Showing::No);
            }
            decoded = Some(sealed);
        }
        let opened = if self.shown == Shown::Opened && email_event {
            let sealed = match decoded {
                Some(s) => s,
                None => decode_payload(r.position, r.payload)?,
            };
            match keys {
                Ok(Some(keys)) => Some(self.email.open_decoded(r, sealed, keys)?),
                // Not looked up (a payload that did not read then): alone.
                Ok(None) => self.email.open(&r.to_record())?,
                Err(e) => {
                    return Err(e.take().map_or_else(
                        || crate::AuditError::Replay("the lookup of a page's keys failed".into()),
                        Into::into,
                    ));
                }
            }
        } else {
            None
        };
        let Some(mut opened) = opened else {
            let raw = RawJson::of(r);
            self.write(
                out,
                scratch,
                |o| serde_json::to_writer(o, &raw),
                || Columns::raw(r),
            )?;
            return Ok(Showing::Raw);
        };
        let e = &opened.event;
        let erased = e.envelope.recipient.as_ref().is_some_and(|f| f.is_erased())
            || matches!(e.body, EventBody::ContactErased { .. });
        let contact = e.envelope.contact;
        self.write(
            out,
            scratch,
            |o| opened.write_json(o),
            || Columns {
                position: r.position,
                recorded_at: rfc3339(r.recorded_at_micros),
                event_type: r.event_type,
                stream: r.stream,
                id: r.event_id,
                message_id: e.envelope.message_id.as_deref(),
                contact: Some(contact),
                occurred_at: Some(rfc3339(e.envelope.occurred_at)),
            },
        )?;
        // Written: the id moves into the outcome instead of being copied.
        Ok(Showing::Opened {
            contact,
            erased,
            message: opened.event.envelope.message_id.take(),
        })
    }

    /// One line: the event as JSON, or the CSV columns (made only then)
    /// and the JSON quoted.
    fn write<'c>(
        &self,
        out: &mut Vec<u8>,
        scratch: &mut Vec<u8>,
        json: impl FnOnce(&mut Vec<u8>) -> serde_json::Result<()>,
        columns: impl FnOnce() -> Columns<'c>,
    ) -> Result<()> {
        match self.format {
            Format::Json => json(out)?,
            Format::Csv => {
                scratch.clear();
                json(scratch)?;
                columns().write(out);
                quote(out, scratch);
            }
        }
        out.push(b'\n');
        Ok(())
    }
}

/// The records of `frames[part]`, each checked against its bytes, up to the
/// first that does not match them or does not decode; that one's outcome
/// comes second.
fn decode(frames: &FrameBatch, part: Range<usize>) -> (Vec<RecordRef<'_>>, Option<Done>) {
    let mut records = Vec::with_capacity(part.len());
    for i in part {
        let position = frames.position(i).unwrap_or_default();
        let read = frames
            .frame(i)
            .ok_or(codec::FrameError::Truncated(0))
            .and_then(codec::decode_checked);
        let stop = |link, hash_ok, showing| {
            Some(Done {
                link,
                hash_ok,
                end: 0,
                showing,
            })
        };
        match read {
            Ok((r, true)) => records.push(r),
            Ok((r, false)) => {
                return (records, stop(Some(Link::of(&r)), false, Ok(Showing::No)));
            }
            Err(e) => {
                let e = Error::Corrupt {
                    position,
                    reason: e.to_string(),
                };
                return (records, stop(None, true, Err(e.into())));
            }
        }
    }
    (records, None)
}

/// The columns of a CSV line before the event itself.
struct Columns<'a> {
    position: u64,
    recorded_at: String,
    event_type: &'a str,
    stream: &'a str,
    id: uuid::Uuid,
    message_id: Option<&'a str>,
    contact: Option<Pseudonym>,
    occurred_at: Option<String>,
}

/// The CSV header line, naming [`Columns`] and the event.
pub(super) const CSV_HEADER: &str =
    "position,recorded_at,type,stream,id,message_id,contact,occurred_at,event\n";

impl<'a> Columns<'a> {
    /// A raw record's: what its envelope holds in the clear.
    fn raw(r: &RecordRef<'a>) -> Self {
        Self {
            position: r.position,
            recorded_at: rfc3339(r.recorded_at_micros),
            event_type: r.event_type,
            stream: r.stream,
            id: r.event_id,
            message_id: None,
            contact: None,
            occurred_at: None,
        }
    }

    fn write(&self, out: &mut Vec<u8>) {
        let mut col = |v: &[u8]| {
            quote(out, v);
            out.push(b',');
        };
        col(self.position.to_string().as_bytes());
        col(self.recorded_at.as_bytes());
        col(self.event_type.as_bytes());
        col(self.stream.as_bytes());
        col(self.id.to_string().as_bytes());
        col(self.message_id.unwrap_or_default().as_bytes());
        col(self
            .contact
            .map(|c| c.to_string())
            .unwrap_or_default()
            .as_bytes());
        col(self.occurred_at.as_deref().unwrap_or_default().as_bytes());
    }
}

/// A CSV field, quoted when it must be (RFC 4180).
fn quote(out: &mut Vec<u8>, v: &[u8]) {
    if v.iter().any(|b| matches!(b, b',' | b'"' | b'\n' | b'\r')) {
        out.push(b'"');
        for &b in v {
            if b == b'"' {
                out.push(b'"');
            }
            out.push(b);
        }
        out.push(b'"');
    } else {
        out.extend_from_slice(v);
    }
}

/// A record as stored: its envelope fields and the payload in hex.
#[derive(Serialize)]
struct RawJson<'a> {
    position: u64,
    tenant: &'a str,
    stream: &'a str,
    stream_version: u64,
    id: uuid::Uuid,
    #[serde(rename = "type")]
    event_type: &'a str,
    recorded_at: String,
    jurisdiction: Option<Jurisdiction>,
    payload_hex: String,
    hash: String,
    prev_hash: String,
}

impl<'a> RawJson<'a> {
    fn of(r: &RecordRef<'a>) -> Self {
        Self {
            position: r.position,
            tenant: r.tenant,
            stream: r.stream,
            stream_version: r.stream_version,
            id: r.event_id,
            event_type: r.event_type,
            recorded_at: rfc3339(r.recorded_at_micros),
            jurisdiction: r.jurisdiction,
            payload_hex: hex(r.payload),
            hash: hex(&r.hash),
            prev_hash: hex(&r.prev_hash),
        }
    }
}
