//! The canonical JSON of an event read back ([`ReadEvent`]), by one
//! `Serialize` impl: [`ReadEvent::to_json`] builds a `Value` from it, and
//! a replay writes it straight to its output with `serde_json::to_writer`,
//! without a map of owned keys and values per event in between.

use serde::Serialize;
use serde::ser::{SerializeMap, Serializer};
use serde_json::Value;

use super::canonical::ReadEvent;
use super::model::{EventBody, Field};
use super::times::{push_rfc3339, rfc3339};

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

impl ReadEvent {
    /// Writes [`ReadEvent::to_json`]'s object to `out` as compact JSON,
    /// the same bytes `serde_json::to_writer` writes, without serde's
    /// escaping pass over keys and values that cannot need it (a replay
    /// writes one per event).
    ///
    /// # Errors
    /// Only as `serde_json` fails to write a value into memory.
    pub fn write_json(&self, out: &mut Vec<u8>) -> Result<(), serde_json::Error> {
        out.push(b'{');
        entries(self, &mut Line { out, first: true })?;
        out.push(b'}');
        Ok(())
    }
}

impl Serialize for ReadEvent {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(None)?;
        entries(self, &mut Map(&mut m))?;
        m.end()
    }
}

/// The entries of `e`'s object, in order.
fn entries<E: Entries>(e: &ReadEvent, m: &mut E) -> Result<(), E::Error> {
    let env = &e.event.envelope;
    let mut id = uuid::Uuid::encode_buffer();
    m.clean("id", e.id.hyphenated().encode_lower(&mut id))?;
    m.clean("type", e.event.body.event_type())?;
    m.value("position", &e.position)?;
    m.str("stream", &e.stream)?;
    m.value("stream_version", &e.stream_version)?;
    m.time("recorded_at", e.recorded_at)?;
    m.value("jurisdiction", &e.jurisdiction)?;
    m.time("occurred_at", env.occurred_at)?;
    m.hex("contact", env.contact.as_bytes())?;
    for (key, v) in [
        ("message_id", &env.message_id),
        ("provider", &env.provider),
        ("provider_event_id", &env.provider_event_id),
        ("campaign", &env.campaign),
        ("sending_domain", &env.sending_domain),
        ("recipient_domain", &env.recipient_domain),
    ] {
        if let Some(v) = v {
            m.str(key, v)?;
        }
    }
    if !env.tags.is_empty() {
        m.value("tags", &env.tags)?;
    }
    opt_field(m, "recipient", &env.recipient)?;
    opt_field(m, "raw", &env.raw)?;
    body(m, &e.event.body)
}

/// Where the entries of an event's object go: a serde map ([`Map`]) or a
/// line of JSON being written ([`Line`]). [`entries`] lists them once for
/// both, so the two cannot differ.
trait Entries {
    type Error;
    /// Text that may need escaping.
    fn str(&mut self, key: &'static str, v: &str) -> Result<(), Self::Error>;
    /// Text that never needs escaping: UUIDs, times, type names.
    fn clean(&mut self, key: &'static str, v: &str) -> Result<(), Self::Error>;
    /// Bytes, as their lower-case hex.
    fn hex(&mut self, key: &'static str, v: &[u8]) -> Result<(), Self::Error>;
    /// A time (µs since the epoch), as its RFC 3339 text.
    fn time(&mut self, key: &'static str, micros: i64) -> Result<(), Self::Error>;
    /// Any other value.
    fn value<T: Serialize + ?Sized>(&mut self, key: &'static str, v: &T)
    -> Result<(), Self::Error>;

    /// A personal field: its plaintext, or `{"erased": true}`.
    fn field(&mut self, key: &'static str, v: &Field) -> Result<(), Self::Error> {
        match v {
            Field::Value(p) => self.str(key, p.expose()),
            Field::Erased => self.value(key, &FieldJson(v)),
        }
    }
}

/// The entries of a `serde` map.
struct Map<'a, M>(&'a mut M);

impl<M: SerializeMap> Entries for Map<'_, M> {
    type Error = M::Error;
    fn str(&mut self, key: &'static str, v: &str) -> Result<(), M::Error> {
        self.0.serialize_entry(key, v)
    }
    fn clean(&mut self, key: &'static str, v: &str) -> Result<(), M::Error> {
        self.0.serialize_entry(key, v)
    }
    fn hex(&mut self, key: &'static str, v: &[u8]) -> Result<(), M::Error> {
        self.0.serialize_entry(key, &crate::hex(v))
    }
    fn time(&mut self, key: &'static str, micros: i64) -> Result<(), M::Error> {
        self.0.serialize_entry(key, &rfc3339(micros))
    }
    fn value<T: Serialize + ?Sized>(&mut self, key: &'static str, v: &T) -> Result<(), M::Error> {
        self.0.serialize_entry(key, v)
    }
}

/// The entries of an object being written as compact JSON.
struct Line<'a> {
    out: &'a mut Vec<u8>,
    first: bool,
}

impl Line<'_> {
    /// Writes `"key":` (the keys are names in this file: nothing to
    /// escape).
    fn key(&mut self, key: &str) {
        if !std::mem::take(&mut self.first) {
            self.out.push(b',');
        }
        self.quoted(key);
        self.out.push(b':');
    }

    fn quoted(&mut self, v: &str) {
        self.out.push(b'"');
        self.out.extend_from_slice(v.as_bytes());
        self.out.push(b'"');
    }
}

impl Entries for Line<'_> {
    type Error = serde_json::Error;
    fn str(&mut self, key: &'static str, v: &str) -> Result<(), serde_json::Error> {
        self.key(key);
        if needs_escape(v) {
            serde_json::to_writer(&mut *self.out, v)
        } else {
            self.quoted(v);
            Ok(())
        }
    }
    fn clean(&mut self, key: &'static str, v: &str) -> Result<(), serde_json::Error> {
        debug_assert!(!needs_escape(v), "`{key}` holds text to escape");
        self.key(key);
        self.quoted(v);
        Ok(())
    }
    fn hex(&mut self, key: &'static str, v: &[u8]) -> Result<(), serde_json::Error> {
        self.key(key);
        self.out.push(b'"');
        crate::push_hex_bytes(self.out, v);
        self.out.push(b'"');
        Ok(())
    }
    fn time(&mut self, key: &'static str, micros: i64) -> Result<(), serde_json::Error> {
        self.key(key);
        self.out.push(b'"');
        push_rfc3339(self.out, micros);
        self.out.push(b'"');
        Ok(())
    }
    fn value<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        v: &T,
    ) -> Result<(), serde_json::Error> {
        self.key(key);
        serde_json::to_writer(&mut *self.out, v)
    }
}

/// Whether JSON must escape a byte of `v`: a quote, a backslash or a
/// control character. Looked for in blocks, without a branch per byte,
/// which the compiler turns into vector compares.
fn needs_escape(v: &str) -> bool {
    v.as_bytes().chunks(16).any(|block| {
        block.iter().fold(false, |any, &b| {
            any | (b < 0x20) | (b == b'"') | (b == b'\\')
        })
    })
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

/// A personal field's entry, present only when it has a value.
fn opt_field<E: Entries>(m: &mut E, key: &'static str, v: &Option<Field>) -> Result<(), E::Error> {
    v.as_ref().map_or(Ok(()), |v| m.field(key, v))
}

/// An entry present only when it has a value (absent rather than `null`).
fn opt<E: Entries, T: Serialize>(
    m: &mut E,
    key: &'static str,
    v: Option<T>,
) -> Result<(), E::Error> {
    v.map_or(Ok(()), |v| m.value(key, &v))
}

fn body<E: Entries>(m: &mut E, body: &EventBody<Field>) -> Result<(), E::Error> {
    let t = |v: &Option<i64>| v.map(rfc3339);
    match body {
        EventBody::MessageSent { subject, size } => {
            opt_field(m, "subject", subject)?;
            opt(m, "size", size.as_ref())
        }
        EventBody::MessageRejected { reason, detail } => {
            m.value("reason", reason)?;
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
            m.value("class", class)?;
            opt(m, "sub_type", sub_type.as_ref())?;
            opt(m, "status", status.as_ref())?;
            opt_field(m, "diagnostic", diagnostic)
        }
        EventBody::ComplaintReceived { feedback_type } => {
            opt(m, "feedback_type", feedback_type.as_ref())
        }
        EventBody::Opened {
            ip,
            user_agent,
            machine,
        } => {
            opt_field(m, "ip", ip)?;
            opt_field(m, "user_agent", user_agent)?;
            m.value("machine", machine)
        }
        EventBody::LinkClicked {
            url,
            ip,
            user_agent,
            bot,
        } => {
            m.field("url", url)?;
            opt_field(m, "ip", ip)?;
            opt_field(m, "user_agent", user_agent)?;
            m.value("bot", bot)
        }
        EventBody::SubscriptionChanged { scope, .. } => m.value("scope", scope),
        EventBody::SuppressionAdded {
            reason,
            scope,
            expires_at,
        } => {
            opt(m, "reason", reason.as_ref())?;
            m.value("scope", scope)?;
            opt(m, "expires_at", t(expires_at))
        }
        EventBody::SuppressionRemoved { reason, scope } => {
            opt(m, "reason", reason.as_ref())?;
            m.value("scope", scope)
        }
        EventBody::ContactErased {
            request_id,
            events_unreadable,
            key_found,
        } => {
            m.value("request_id", request_id)?;
            m.value("events_unreadable", events_unreadable)?;
            m.value("key_found", key_found)
        }
    }
}
