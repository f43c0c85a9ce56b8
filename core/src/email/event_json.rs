//! The canonical JSON of an event read back ([`ReadEvent`]), by one
//! `Serialize` impl: [`ReadEvent::to_json`] builds a `Value` from it, and
//! a replay writes it straight to its output with `serde_json::to_writer`,
//! without a map of owned keys and values per event in between.

use std::fmt::Display;

use serde::Serialize;
use serde::ser::{SerializeMap, Serializer};
use serde_json::Value;

use super::canonical::{ReadEvent, rfc3339};
use super::model::{EventBody, Field};

impl ReadEvent {
    /// The canonical JSON of the event, with `position`, `stream`,
    /// `stream_version`, `recorded_at`, `jurisdiction` (the recording
    /// node's, `null` for records from before format 2) and `contact`
    /// added. Each personal field of an erased contact reads
    /// `{"erased": true}`. The same object the event's `Serialize` writes.
    #[must_use]
    pub fn to_json(&self) -> Value {
        // The impl below only writes string keys and plain values, which a
        // `Value` always takes.
        serde_json::to_value(self).unwrap_or(Value::Null)
    }
}

impl Serialize for ReadEvent {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let e = &self.event.envelope;
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("id", &self.id)?;
        m.serialize_entry("type", self.event.body.event_type())?;
        m.serialize_entry("position", &self.position)?;
        m.serialize_entry("stream", &self.stream)?;
        m.serialize_entry("stream_version", &self.stream_version)?;
        m.serialize_entry("recorded_at", &rfc3339(self.recorded_at))?;
        m.serialize_entry("jurisdiction", &self.jurisdiction)?;
        m.serialize_entry("occurred_at", &rfc3339(e.occurred_at))?;
        m.serialize_entry("contact", &AsStr(&e.contact))?;
        opt(&mut m, "message_id", e.message_id.as_ref())?;
        opt(&mut m, "provider", e.provider.as_ref())?;
        opt(&mut m, "provider_event_id", e.provider_event_id.as_ref())?;
        opt(&mut m, "campaign", e.campaign.as_ref())?;
        opt(&mut m, "sending_domain", e.sending_domain.as_ref())?;
        opt(&mut m, "recipient_domain", e.recipient_domain.as_ref())?;
        if !e.tags.is_empty() {
            m.serialize_entry("tags", &e.tags)?;
        }
        opt(&mut m, "recipient", e.recipient.as_ref().map(FieldJson))?;
        opt(&mut m, "raw", e.raw.as_ref().map(FieldJson))?;
        body(&mut m, &self.event.body)?;
        m.end()
    }
}

/// A personal field: its plaintext, or `{"erased": true}`.
struct FieldJson<'a>(&'a Field);

impl Serialize for FieldJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            Field::Value(p) => s.serialize_str(p.expose()),
            Field::Erased => {
                let mut m = s.serialize_map(Some(1))?;
                m.serialize_entry("erased", &true)?;
                m.end()
            }
        }
    }
}

/// A value written as its `Display` string, without building the string.
struct AsStr<'a, T>(&'a T);

impl<T: Display> Serialize for AsStr<'_, T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self.0)
    }
}

/// An entry present only when it has a value (absent rather than `null`).
fn opt<M: SerializeMap, T: Serialize>(m: &mut M, key: &str, v: Option<T>) -> Result<(), M::Error> {
    match v {
        Some(v) => m.serialize_entry(key, &v),
        None => Ok(()),
    }
}

fn body<M: SerializeMap>(m: &mut M, body: &EventBody<Field>) -> Result<(), M::Error> {
    fn f(v: &Option<Field>) -> Option<FieldJson<'_>> {
        v.as_ref().map(FieldJson)
    }
    let t = |v: &Option<i64>| v.map(rfc3339);
    match body {
        EventBody::MessageSent { subject, size } => {
            opt(m, "subject", f(subject))?;
            opt(m, "size", size.as_ref())
        }
        EventBody::MessageRejected { reason, detail } => {
            m.serialize_entry("reason", reason)?;
            opt(m, "detail", detail.as_ref())
        }
        EventBody::DeliveryDeferred {
            attempt,
            smtp_code,
            enhanced_status,
            mx_host,
            next_retry_at,
        } => {
            opt(m, "attempt", attempt.as_ref())?;
            opt(m, "smtp_code", smtp_code.as_ref())?;
            opt(m, "enhanced_status", enhanced_status.as_ref())?;
            opt(m, "mx_host", mx_host.as_ref())?;
            opt(m, "next_retry_at", t(next_retry_at))
        }
        EventBody::Delivered {
            smtp_response,
            mx_host,
            tls,
        } => {
            opt(m, "smtp_response", smtp_response.as_ref())?;
            opt(m, "mx_host", mx_host.as_ref())?;
            opt(m, "tls", tls.as_ref())
        }
        EventBody::Bounced {
            class,
            sub_type,
            status,
            diagnostic,
        } => {
            m.serialize_entry("class", class)?;
            opt(m, "sub_type", sub_type.as_ref())?;
            opt(m, "status", status.as_ref())?;
            opt(m, "diagnostic", f(diagnostic))
        }
        EventBody::ComplaintReceived { feedback_type } => {
            opt(m, "feedback_type", feedback_type.as_ref())
        }
        EventBody::Opened {
            ip,
            user_agent,
            machine,
        } => {
            opt(m, "ip", f(ip))?;
            opt(m, "user_agent", f(user_agent))?;
            m.serialize_entry("machine", machine)
        }
        EventBody::LinkClicked {
            url,
            ip,
            user_agent,
            bot,
        } => {
            m.serialize_entry("url", &FieldJson(url))?;
            opt(m, "ip", f(ip))?;
            opt(m, "user_agent", f(user_agent))?;
            m.serialize_entry("bot", bot)
        }
        EventBody::SubscriptionChanged { scope, .. } => m.serialize_entry("scope", scope),
        EventBody::SuppressionAdded {
            reason,
            scope,
            expires_at,
        } => {
            opt(m, "reason", reason.as_ref())?;
            m.serialize_entry("scope", scope)?;
            opt(m, "expires_at", t(expires_at))
        }
        EventBody::SuppressionRemoved { reason, scope } => {
            opt(m, "reason", reason.as_ref())?;
            m.serialize_entry("scope", scope)
        }
        EventBody::ContactErased {
            request_id,
            events_unreadable,
            key_found,
        } => {
            m.serialize_entry("request_id", request_id)?;
            m.serialize_entry("events_unreadable", events_unreadable)?;
            m.serialize_entry("key_found", key_found)
        }
    }
}
