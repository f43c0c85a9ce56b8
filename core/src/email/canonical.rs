//! The canonical JSON form: one flat object per event, as `mailledger
//! append` and `POST /v1/events` accept it and reads print it.
//!
//! Input is checked strictly: unknown fields, fields that do not belong to
//! the event's type, and message bodies are refused with an error naming the
//! field (never its value).

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

use super::EventType;
use super::model::{BounceClass, EmailEvent, EventBody, Field, RejectReason};
use crate::crypto::Personal;
use crate::error::{Error, Result};

/// The longest tag, campaign, domain, provider id or other clear text field.
pub const MAX_TEXT_LEN: usize = 256;
/// The most tags one event may carry.
pub const MAX_TAGS: usize = 16;
/// The largest personal field, in bytes (a raw provider payload included).
pub const MAX_PERSONAL_LEN: usize = 64 * 1024;

/// An event in canonical JSON, as it comes in: personal fields in plaintext
/// (held as [`Personal`], so `Debug` shows none of them).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)]
pub struct CanonicalEvent {
    /// The idempotency key.
    pub id: Uuid,
    /// The event type: `sent`, `bounced`, ...
    #[serde(rename = "type")]
    pub event_type: String,
    pub message_id: Option<String>,
    pub recipient: Option<Personal>,
    #[serde(with = "time::serde::rfc3339")]
    pub occurred_at: OffsetDateTime,
    pub provider: Option<String>,
    pub provider_event_id: Option<String>,
    #[serde(default)]
    pub tags: Vec<String>,
    pub campaign: Option<String>,
    pub sending_domain: Option<String>,
    pub raw: Option<Personal>,
    pub subject: Option<Personal>,
    pub size: Option<u64>,
    pub reason: Option<String>,
    pub detail: Option<String>,
    pub attempt: Option<u32>,
    pub smtp_code: Option<u16>,
    pub enhanced_status: Option<String>,
    pub mx_host: Option<String>,
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub next_retry_at: Option<OffsetDateTime>,
    pub smtp_response: Option<String>,
    pub tls: Option<bool>,
    pub class: Option<BounceClass>,
    pub sub_type: Option<String>,
    pub status: Option<String>,
    pub diagnostic: Option<Personal>,
    pub feedback_type: Option<String>,
    pub ip: Option<Personal>,
    pub user_agent: Option<Personal>,
    pub machine: Option<bool>,
    pub url: Option<Personal>,
    pub bot: Option<bool>,
    pub scope: Option<String>,
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub expires_at: Option<OffsetDateTime>,
}

impl CanonicalEvent {
    /// An event of `event_type` to `recipient` with only these fields set;
    /// the caller fills in the type's own fields (adapters, manual entries).
    #[must_use]
    pub fn new(
        id: Uuid,
        event_type: &str,
        recipient: Personal,
        occurred_at: OffsetDateTime,
    ) -> Self {
        Self {
            id,
            event_type: event_type.to_owned(),
            message_id: None,
            recipient: Some(recipient),
            occurred_at,
            provider: None,
            provider_event_id: None,
            tags: Vec::new(),
            campaign: None,
            sending_domain: None,
            raw: None,
            subject: None,
            size: None,
            reason: None,
            detail: None,
            attempt: None,
            smtp_code: None,
            enhanced_status: None,
            mx_host: None,
            next_retry_at: None,
            smtp_response: None,
            tls: None,
            class: None,
            sub_type: None,
            status: None,
            diagnostic: None,
            feedback_type: None,
            ip: None,
            user_agent: None,
            machine: None,
            url: None,
            bot: None,
            scope: None,
            expires_at: None,
        }
    }
}

/// Fields any event type may carry.
const COMMON: &[&str] = &[
    "id",
    "type",
    "message_id",
    "recipient",
    "occurred_at",
    "provider",
    "provider_event_id",
    "tags",
    "campaign",
    "sending_domain",
    "raw",
];

/// Names of message body fields, refused with their own message.
const BODY_FIELDS: &[&str] = &["body", "html", "text", "html_body", "text_body", "content"];

/// Parses one canonical JSON event, with errors that name the field.
///
/// # Errors
/// Malformed JSON, an unknown field, a missing or misplaced field, or a
/// message body. The error never quotes a value.
pub fn parse_event(json: &str) -> Result<CanonicalEvent> {
    serde_json::from_str::<CanonicalEvent>(json).map_err(|e| describe(&e))
}

/// Turns a serde error into a message without input values: serde's
/// messages quote unknown field names (input keys), never values, but an
/// invalid value is described by its type only.
fn describe(e: &serde_json::Error) -> Error {
    let text = e.to_string();
    if let Some(rest) = text.strip_prefix("unknown field `") {
        let name = rest.split('`').next().unwrap_or_default();
        if BODY_FIELDS.contains(&name) {
            return Error::invalid(format!("field `{name}`: message bodies are never accepted"));
        }
        if name.len() <= 64 && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            return Error::invalid(format!("unknown field `{name}`"));
        }
        return Error::invalid("unknown field");
    }
    if let Some(rest) = text.strip_prefix("missing field `") {
        let name = rest.split('`').next().unwrap_or_default();
        return Error::invalid(format!("missing field `{name}`"));
    }
    match e.classify() {
        serde_json::error::Category::Syntax | serde_json::error::Category::Eof => Error::invalid(
            format!("not valid JSON (line {}, column {})", e.line(), e.column()),
        ),
        _ => Error::invalid(format!(
            "a field has the wrong type or an invalid value (column {})",
            e.column()
        )),
    }
}

fn micros(t: OffsetDateTime) -> i64 {
    i64::try_from(t.unix_timestamp_nanos() / 1000).unwrap_or(i64::MAX)
}

fn text(name: &str, v: &Option<String>) -> Result<()> {
    if let Some(v) = v {
        if v.is_empty() || v.len() > MAX_TEXT_LEN {
            return Err(Error::invalid(format!(
                "field `{name}` must be 1 to {MAX_TEXT_LEN} bytes"
            )));
        }
        if v.contains('@') && name != "message_id" && name != "provider_event_id" {
            return Err(Error::invalid(format!(
                "field `{name}` may not hold an `@`: addresses go only in `recipient`"
            )));
        }
    }
    Ok(())
}

fn personal(name: &str, v: &Option<Personal>) -> Result<()> {
    if let Some(v) = v
        && v.expose().len() > MAX_PERSONAL_LEN
    {
        return Err(Error::invalid(format!(
            "field `{name}` is longer than {MAX_PERSONAL_LEN} bytes"
        )));
    }
    Ok(())
}

fn scope(v: Option<String>) -> Result<String> {
    let s = v.unwrap_or_else(|| "all".to_owned());
    text("scope", &Some(s.clone()))?;
    Ok(s)
}

impl CanonicalEvent {
    fn present(&self) -> Vec<&'static str> {
        let mut p = Vec::new();
        let mut add = |name, is: bool| {
            if is {
                p.push(name);
            }
        };
        add("subject", self.subject.is_some());
        add("size", self.size.is_some());
        add("reason", self.reason.is_some());
        add("detail", self.detail.is_some());
        add("attempt", self.attempt.is_some());
        add("smtp_code", self.smtp_code.is_some());
        add("enhanced_status", self.enhanced_status.is_some());
        add("mx_host", self.mx_host.is_some());
        add("next_retry_at", self.next_retry_at.is_some());
        add("smtp_response", self.smtp_response.is_some());
        add("tls", self.tls.is_some());
        add("class", self.class.is_some());
        add("sub_type", self.sub_type.is_some());
        add("status", self.status.is_some());
        add("diagnostic", self.diagnostic.is_some());
        add("feedback_type", self.feedback_type.is_some());
        add("ip", self.ip.is_some());
        add("user_agent", self.user_agent.is_some());
        add("machine", self.machine.is_some());
        add("url", self.url.is_some());
        add("bot", self.bot.is_some());
        add("scope", self.scope.is_some());
        add("expires_at", self.expires_at.is_some());
        p
    }

    /// Checks the event and splits it into its parts: the recipient, the
    /// clear envelope fields and the typed body with plaintext fields.
    ///
    /// # Errors
    /// A rule of the taxonomy broken; the error names the field.
    pub fn validate(self) -> Result<Checked> {
        let kind = match self.event_type.parse::<EventType>() {
            Ok(EventType::Erased) => {
                return Err(Error::invalid(
                    "field `type`: `erased` events are written by the ledger only (use erase)",
                ));
            }
            Ok(kind) => kind,
            Err(_) => {
                return Err(Error::invalid(format!(
                    "field `type`: unknown event type ({})",
                    EventType::ingestible_names()
                )));
            }
        };
        if super::is_erasure_id(self.id) {
            return Err(Error::invalid(
                "field `id`: ids beginning 45524153- are reserved for the ledger's erasures",
            ));
        }
        let allowed = kind.own_fields();
        debug_assert!(allowed.iter().all(|f| !COMMON.contains(f)));
        if let Some(f) = self.present().into_iter().find(|f| !allowed.contains(f)) {
            return Err(Error::invalid(format!(
                "field `{f}` does not belong to a `{}` event",
                self.event_type
            )));
        }
        let recipient = self
            .recipient
            .clone()
            .ok_or_else(|| Error::invalid("missing field `recipient`"))?;
        for (n, v) in [
            ("message_id", &self.message_id),
            ("provider", &self.provider),
            ("provider_event_id", &self.provider_event_id),
            ("campaign", &self.campaign),
            ("sending_domain", &self.sending_domain),
            ("detail", &self.detail),
            ("enhanced_status", &self.enhanced_status),
            ("mx_host", &self.mx_host),
            ("smtp_response", &self.smtp_response),
            ("sub_type", &self.sub_type),
            ("status", &self.status),
            ("feedback_type", &self.feedback_type),
        ] {
            text(n, v)?;
        }
        if self.tags.len() > MAX_TAGS {
            return Err(Error::invalid(format!(
                "field `tags`: at most {MAX_TAGS} tags"
            )));
        }
        for t in &self.tags {
            text("tags", &Some(t.clone()))?;
        }
        for (n, v) in [
            ("recipient", &self.recipient),
            ("raw", &self.raw),
            ("subject", &self.subject),
            ("diagnostic", &self.diagnostic),
            ("ip", &self.ip),
            ("user_agent", &self.user_agent),
            ("url", &self.url),
        ] {
            personal(n, v)?;
        }
        let body = match kind {
            EventType::Sent => EventBody::MessageSent {
                subject: self.subject,
                size: self.size,
            },
            EventType::Rejected => {
                let reason = match self.reason.as_deref() {
                    Some("suppressed") => RejectReason::Suppressed,
                    Some("invalid") => RejectReason::Invalid,
                    Some("policy") => RejectReason::Policy,
                    Some("quota") => RejectReason::Quota,
                    Some(_) => {
                        return Err(Error::invalid(
                            "field `reason`: one of suppressed, invalid, policy, quota",
                        ));
                    }
                    None => return Err(Error::invalid("missing field `reason`")),
                };
                EventBody::MessageRejected {
                    reason,
                    detail: self.detail,
                }
            }
            EventType::Deferred => EventBody::DeliveryDeferred {
                attempt: self.attempt,
                smtp_code: self.smtp_code,
                enhanced_status: self.enhanced_status,
                mx_host: self.mx_host,
                next_retry_at: self.next_retry_at.map(micros),
            },
            EventType::Delivered => EventBody::Delivered {
                smtp_response: self.smtp_response,
                mx_host: self.mx_host,
                tls: self.tls,
            },
            EventType::Bounced => EventBody::Bounced {
                class: self
                    .class
                    .ok_or_else(|| Error::invalid("missing field `class`"))?,
                sub_type: self.sub_type,
                status: self.status,
                diagnostic: self.diagnostic,
            },
            EventType::Complained => EventBody::ComplaintReceived {
                feedback_type: self.feedback_type,
            },
            EventType::Opened => EventBody::Opened {
                ip: self.ip,
                user_agent: self.user_agent,
                machine: self.machine.unwrap_or(false),
            },
            EventType::Clicked => EventBody::LinkClicked {
                url: self
                    .url
                    .ok_or_else(|| Error::invalid("missing field `url`"))?,
                ip: self.ip,
                user_agent: self.user_agent,
                bot: self.bot.unwrap_or(false),
            },
            EventType::Unsubscribed | EventType::Resubscribed => EventBody::SubscriptionChanged {
                subscribed: kind == EventType::Resubscribed,
                scope: scope(self.scope)?,
            },
            EventType::Suppressed => {
                text("reason", &self.reason)?;
                EventBody::SuppressionAdded {
                    reason: self.reason,
                    scope: scope(self.scope)?,
                    expires_at: self.expires_at.map(micros),
                }
            }
            // `erased` was refused above.
            EventType::Unsuppressed | EventType::Erased => {
                text("reason", &self.reason)?;
                EventBody::SuppressionRemoved {
                    reason: self.reason,
                    scope: scope(self.scope)?,
                }
            }
        };
        Ok(Checked {
            id: self.id,
            recipient,
            message_id: self.message_id,
            occurred_at: micros(self.occurred_at),
            provider: self.provider,
            provider_event_id: self.provider_event_id,
            tags: self.tags,
            campaign: self.campaign,
            sending_domain: self.sending_domain.map(|d| d.to_lowercase()),
            raw: self.raw,
            body,
        })
    }
}

/// A canonical event that passed every check.
#[derive(Debug, Clone)]
#[allow(missing_docs)]
pub struct Checked {
    pub id: Uuid,
    pub recipient: Personal,
    pub message_id: Option<String>,
    pub occurred_at: i64,
    pub provider: Option<String>,
    pub provider_event_id: Option<String>,
    pub tags: Vec<String>,
    pub campaign: Option<String>,
    pub sending_domain: Option<String>,
    pub raw: Option<Personal>,
    pub body: EventBody<Personal>,
}

/// An email event read back, with where the log holds it.
#[derive(Debug, Clone)]
pub struct ReadEvent {
    /// The global position.
    pub position: u64,
    /// The event id.
    pub id: Uuid,
    /// The tenant.
    pub tenant: String,
    /// The stream the event was appended to.
    pub stream: String,
    /// Its version in that stream.
    pub stream_version: u64,
    /// When the ledger recorded it, µs since the epoch.
    pub recorded_at: i64,
    /// The jurisdiction of the node that recorded it; `None` for a record
    /// written before records carried it.
    pub jurisdiction: Option<crate::residency::Jurisdiction>,
    /// The event, opened.
    pub event: EmailEvent,
}

impl ReadEvent {
    pub(crate) fn new(r: &crate::codec::RecordRef<'_>, event: EmailEvent) -> Self {
        Self {
            position: r.position,
            id: r.event_id,
            tenant: r.tenant.to_owned(),
            stream: r.stream.to_owned(),
            stream_version: r.stream_version,
            recorded_at: r.recorded_at_micros,
            jurisdiction: r.jurisdiction,
            event,
        }
    }

    /// Whether any personal field shows the erased marker.
    #[must_use]
    pub fn is_erased(&self) -> bool {
        let e = &self.event.envelope;
        e.recipient.as_ref().is_some_and(Field::is_erased)
    }
}

/// An erasure receipt: proof that a contact's key was destroyed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErasureReceipt {
    /// The caller's id for the request.
    pub request_id: String,
    /// The erased contact's pseudonym.
    pub contact: String,
    /// When the key was destroyed (RFC 3339).
    pub erased_at: String,
    /// The position of the `erased` event in the log.
    pub position: u64,
    /// How many of the contact's events became unreadable.
    pub events_unreadable: u64,
    /// Whether the ledger held a key of the contact: false records that it
    /// held no data of the address.
    pub key_found: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    const BOUNCE: &str = r#"{"id": "0193a0c4-7b1e-7d2a-9c3f-2f6a1c9e0b11", "type": "bounced",
 "message_id": "m-42", "recipient": "ann@example.org",
 "occurred_at": "2026-11-22T10:00:00Z", "sending_domain": "mail.example.com",
 "tags": ["welcome"], "campaign": "november",
 "class": "hard", "sub_type": "no_mailbox", "status": "5.1.1",
 "diagnostic": "550 5.1.1 user unknown"}"#;

    #[test]
    fn the_design_example_parses_into_a_hard_bounce() {
        let c = parse_event(BOUNCE).unwrap().validate().unwrap();
        assert_eq!(c.recipient.expose(), "ann@example.org");
        assert!(matches!(
            c.body,
            EventBody::Bounced {
                class: BounceClass::Hard,
                ..
            }
        ));
        assert_eq!(c.tags, ["welcome"]);
    }

    fn err(json: &str) -> String {
        match parse_event(json).and_then(CanonicalEvent::validate) {
            Ok(_) => panic!("accepted"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn bad_input_is_refused_naming_the_field_but_not_the_value() {
        let base = r#""id": "0193a0c4-7b1e-7d2a-9c3f-2f6a1c9e0b11", "occurred_at": "2026-11-22T10:00:00Z", "recipient": "zed@secret.example""#;
        let cases = [
            (
                format!(r#"{{{base}, "type": "sent", "body": "hi zed"}}"#),
                "message bodies",
            ),
            (
                format!(r#"{{{base}, "type": "sent", "colour": 1}}"#),
                "unknown field `colour`",
            ),
            (
                format!(r#"{{{base}, "type": "sent", "url": "https://x"}}"#),
                "field `url` does not belong",
            ),
            (
                format!(r#"{{{base}, "type": "bounced"}}"#),
                "missing field `class`",
            ),
            (format!(r#"{{{base}, "type": "erased"}}"#), "ledger only"),
            (
                format!(r#"{{{base}, "type": "kissed"}}"#),
                "unknown event type",
            ),
            (
                format!(r#"{{{base}, "type": "sent", "campaign": "zed@secret.example"}}"#),
                "may not hold an `@`",
            ),
            (
                format!(r#"{{{base}, "type": "sent", "size": "zed@secret.example"}}"#),
                "wrong type",
            ),
            (r#"{"id": "x", "type": "sent"}"#.to_owned(), "wrong type"),
            ("{".to_owned(), "not valid JSON"),
        ];
        for (json, expect) in cases {
            let e = err(&json);
            assert!(e.contains(expect), "{e} should say {expect}");
            assert!(!e.contains("zed"), "{e} leaks a value");
        }
    }

    #[test]
    fn debug_of_an_input_event_shows_no_personal_value() {
        let c = parse_event(BOUNCE).unwrap();
        let printed = format!("{c:?}");
        assert!(!printed.contains("ann@"), "{printed}");
        assert!(!printed.contains("user unknown"), "{printed}");
    }
}
