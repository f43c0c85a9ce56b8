//! Queries that open sealed fields: what the API and the CLI show.

use mailledger_core::email::{EmailLedger, Field, FieldName, ReadEvent, message_stream, rfc3339};
use mailledger_core::pseudonym::Pseudonym;
use serde_json::{Value, json};

use crate::analytics::{Analytics, Bucket, Counts, Query};
use crate::delivery::{DeliveryLog, MessageFilter, MessageRow, Page, SealedRef};
use crate::error::Result;
use crate::suppression::{Decision, Entry, SuppressionList};
use crate::{Projections, analytics, delivery, suppression};

/// A message of the delivery log with its timeline, personal fields opened
/// (or shown erased).
#[derive(Debug, Clone)]
pub struct MessageView {
    /// The row, sealed fields as stored.
    pub row: MessageRow,
    /// The recipient, opened.
    pub recipient: Option<Field>,
    /// The subject, opened.
    pub subject: Option<Field>,
    /// Every event of the message, by `occurred_at` then position.
    pub timeline: Vec<ReadEvent>,
}

fn field_json(f: Option<&Field>) -> Value {
    match f {
        None => Value::Null,
        Some(Field::Value(p)) => Value::String(p.expose().to_owned()),
        Some(Field::Erased) => json!({ "erased": true }),
    }
}

fn open(
    email: &EmailLedger,
    tenant: &str,
    contact: &Pseudonym,
    name: FieldName,
    s: Option<&SealedRef>,
) -> Result<Option<Field>> {
    s.map(|s| {
        email.open_field(
            tenant,
            contact,
            s.generation,
            s.event_id,
            s.position,
            name,
            &s.sealed,
        )
    })
    .transpose()
    .map_err(Into::into)
}

fn summary_json(row: &MessageRow, recipient: Option<&Field>, subject: Option<&Field>) -> Value {
    json!({
        "message_id": row.message_id,
        "contact": row.contact.to_string(),
        "recipient": field_json(recipient),
        "subject": field_json(subject),
        "status": row.status.map(delivery::Status::as_str),
        "sending_domain": row.sending_domain,
        "recipient_domain": row.recipient_domain,
        "tags": row.tags,
        "campaign": row.campaign,
        "first_event_at": rfc3339(row.first_at),
        "last_event_at": rfc3339(row.last_at),
        "events": row.events,
    })
}

/// The JSON of a delivery log row, recipient and subject opened.
///
/// # Errors
/// When a sealed field does not open under a live key (corruption) or the
/// key store fails.
pub fn row_json(email: &EmailLedger, tenant: &str, row: &MessageRow) -> Result<Value> {
    let (r, s) = open_row(email, tenant, row)?;
    Ok(summary_json(row, r.as_ref(), s.as_ref()))
}

/// A row's recipient and subject, opened.
fn open_row(
    email: &EmailLedger,
    tenant: &str,
    row: &MessageRow,
) -> Result<(Option<Field>, Option<Field>)> {
    let field = |name, sealed| open(email, tenant, &row.contact, name, sealed);
    Ok((
        field(FieldName::Recipient, row.recipient.as_ref())?,
        field(FieldName::Subject, row.subject.as_ref())?,
    ))
}

impl MessageView {
    /// The message as JSON: its summary and `timeline`, each event in
    /// canonical JSON.
    #[must_use]
    pub fn to_json(&self) -> Value {
        let mut v = summary_json(&self.row, self.recipient.as_ref(), self.subject.as_ref());
        if let Value::Object(m) = &mut v {
            m.insert(
                "timeline".into(),
                Value::Array(self.timeline.iter().map(ReadEvent::to_json).collect()),
            );
        }
        v
    }
}

/// The JSON of a suppression entry.
#[must_use]
pub fn entry_json(e: &Entry, now: i64) -> Value {
    json!({
        "contact": e.contact.to_string(),
        "scope": e.scope,
        "reason": e.reason.as_str(),
        "note": e.note,
        "since": rfc3339(e.since),
        "event_id": e.event_id,
        "position": e.position,
        "expires_at": e.expires_at.map(rfc3339),
        "active": e.active_at(now),
    })
}

/// The JSON of an analytics result.
#[must_use]
pub fn analytics_json(buckets: &[Bucket], total: &Counts) -> Value {
    json!({
        "buckets": buckets.iter().map(|b| json!({
            "start": rfc3339(b.start),
            "group": b.group,
            "counts": b.counts,
            "rates": b.rates,
        })).collect::<Vec<_>>(),
        "total": { "counts": total, "rates": total.rates() },
    })
}

impl Projections {
    /// A message with its timeline, decoded and opened; `None` when the
    /// tenant has no such message.
    ///
    /// # Errors
    /// A storage failure, or a sealed field that does not open under a live
    /// key.
    pub async fn message(
        &self,
        email: &EmailLedger,
        tenant: &str,
        message_id: &str,
    ) -> Result<Option<MessageView>> {
        // The row is keyed by the message's first position: version 0 of
        // its stream in the log.
        let stream = message_stream(message_id);
        let first = email
            .log()
            .first_positions(vec![(tenant.to_owned(), stream.clone())])
            .await?;
        let Some(first) = first.first().copied().flatten() else {
            return Ok(None);
        };
        let store = self.store(delivery::NAME)?;
        let Some(row) = DeliveryLog::message(store.as_ref(), tenant, first)? else {
            return Ok(None);
        };
        let mut timeline = match row.timeline_positions() {
            Some(positions) => email.open_positions(tenant, positions.to_vec()).await?,
            None => email.open_stream(tenant, &stream, usize::MAX).await?.0,
        };
        timeline.sort_by_key(|e| (e.event.envelope.occurred_at, e.position));
        let (recipient, subject) = open_row(email, tenant, &row)?;
        Ok(Some(MessageView {
            row,
            recipient,
            subject,
            timeline,
        }))
    }

    /// A page of messages matching `filter`, newest first; see
    /// [`DeliveryLog::list`].
    ///
    /// # Errors
    /// As [`DeliveryLog::list`].
    pub fn messages(
        &self,
        tenant: &str,
        filter: &MessageFilter,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<Page<MessageRow>> {
        let store = self.store(delivery::NAME)?;
        DeliveryLog::list(store.as_ref(), tenant, filter, cursor, limit)
    }

    /// May `contact` be mailed in `scope` at `now`? See
    /// [`SuppressionList::check`].
    ///
    /// # Errors
    /// A storage failure.
    pub fn check(
        &self,
        tenant: &str,
        contact: &Pseudonym,
        scope: Option<&str>,
        now: i64,
    ) -> Result<Decision> {
        let store = self.store(suppression::NAME)?;
        SuppressionList::check(store.as_ref(), tenant, contact, scope, now)
    }

    /// A page of the suppression list; see [`SuppressionList::list`].
    ///
    /// # Errors
    /// As [`SuppressionList::list`].
    pub fn suppressions(
        &self,
        tenant: &str,
        cursor: Option<&str>,
        limit: usize,
        now: i64,
        include_lapsed: bool,
    ) -> Result<Page<Entry>> {
        let store = self.store(suppression::NAME)?;
        SuppressionList::list(store.as_ref(), tenant, cursor, limit, now, include_lapsed)
    }

    /// Every suppression entry of a contact.
    ///
    /// # Errors
    /// A storage failure.
    pub fn suppressions_of(&self, tenant: &str, contact: &Pseudonym) -> Result<Vec<Entry>> {
        let store = self.store(suppression::NAME)?;
        SuppressionList::entries_of(store.as_ref(), tenant, contact)
    }

    /// Counts and rates; see [`Analytics::query`].
    ///
    /// # Errors
    /// As [`Analytics::query`].
    pub fn analytics(&self, tenant: &str, q: &Query) -> Result<(Vec<Bucket>, Counts)> {
        let store = self.store(analytics::NAME)?;
        Analytics::query(store.as_ref(), tenant, q)
    }
}
