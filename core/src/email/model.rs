//! The email event model: the canonical taxonomy as Rust types, generic over
//! how a personal field is held (sealed, opened, plaintext input).

use serde::{Deserialize, Serialize};

use super::EventType;
use crate::crypto::Personal;
use crate::error::{Error, Result};
use crate::pseudonym::Pseudonym;

/// The personal fields, each bound into its ciphertext's associated data so
/// a ciphertext cannot be moved to another field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum FieldName {
    /// The recipient address.
    Recipient = 1,
    /// The subject line.
    Subject = 2,
    /// A bounce's diagnostic text.
    Diagnostic = 3,
    /// The IP address of an open or click.
    Ip = 4,
    /// The user agent of an open or click.
    UserAgent = 5,
    /// The clicked URL.
    Url = 6,
    /// The provider's raw payload.
    Raw = 7,
}

impl FieldName {
    /// The field's name in canonical JSON.
    #[must_use]
    pub fn json_name(self) -> &'static str {
        match self {
            Self::Recipient => "recipient",
            Self::Subject => "subject",
            Self::Diagnostic => "diagnostic",
            Self::Ip => "ip",
            Self::UserAgent => "user_agent",
            Self::Url => "url",
            Self::Raw => "raw",
        }
    }
}

/// A personal field as a read shows it: its plaintext, or the marker that
/// the contact was erased.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Field {
    /// The plaintext.
    Value(Personal),
    /// The contact's key was destroyed: the value is gone for good.
    Erased,
}

impl Field {
    /// The plaintext, unless erased.
    #[must_use]
    pub fn value(&self) -> Option<&str> {
        match self {
            Self::Value(p) => Some(p.expose()),
            Self::Erased => None,
        }
    }

    /// Whether this is the erased marker.
    #[must_use]
    pub fn is_erased(&self) -> bool {
        matches!(self, Self::Erased)
    }
}

/// Why a message was rejected before sending.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RejectReason {
    /// The address is on the suppression list.
    Suppressed,
    /// The address is not valid.
    Invalid,
    /// A sending policy refused it.
    Policy,
    /// A quota was exhausted.
    Quota,
}

/// The class of a bounce.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BounceClass {
    /// Permanent: the mailbox does not exist or never will accept.
    Hard,
    /// Temporary: full mailbox, greylisting.
    Soft,
    /// Refused by policy or reputation.
    Block,
    /// The provider could not tell.
    Undetermined,
}

/// What happened, with the event type's own fields. `S` is how a personal
/// field is held: [`crate::crypto::Sealed`] in storage, [`Field`] when read,
/// [`Personal`] on the way in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum EventBody<S> {
    /// `sent`: the message left for the recipient.
    MessageSent {
        /// The subject, kept only when the tenant allows.
        subject: Option<S>,
        /// The message size in bytes.
        size: Option<u64>,
    },
    /// `rejected`: the message was not sent.
    MessageRejected {
        /// Why.
        reason: RejectReason,
        /// More detail, without personal data.
        detail: Option<String>,
    },
    /// `deferred`: a delivery attempt failed temporarily.
    DeliveryDeferred {
        /// Which attempt this was.
        attempt: Option<u32>,
        /// The SMTP reply code.
        smtp_code: Option<u16>,
        /// The enhanced status code, such as `4.2.2`.
        enhanced_status: Option<String>,
        /// The receiving MX host.
        mx_host: Option<String>,
        /// When the next attempt is due, µs since the epoch.
        next_retry_at: Option<i64>,
    },
    /// `delivered`: the receiving server accepted the message.
    Delivered {
        /// The server's reply.
        smtp_response: Option<String>,
        /// The receiving MX host.
        mx_host: Option<String>,
        /// Whether the connection used TLS.
        tls: Option<bool>,
    },
    /// `bounced`: delivery failed.
    Bounced {
        /// The bounce class.
        class: BounceClass,
        /// The provider's sub-type, such as `no_mailbox`.
        sub_type: Option<String>,
        /// The enhanced status code.
        status: Option<String>,
        /// The diagnostic text (personal: it often quotes the address).
        diagnostic: Option<S>,
    },
    /// `complained`: the recipient reported the message as spam.
    ComplaintReceived {
        /// The feedback type, such as `abuse`.
        feedback_type: Option<String>,
    },
    /// `opened`: the message was opened (or prefetched).
    Opened {
        /// The opener's IP address, when the tenant keeps it.
        ip: Option<S>,
        /// The opener's user agent, when the tenant keeps it.
        user_agent: Option<S>,
        /// A machine open (privacy proxy prefetch), not a person.
        machine: bool,
    },
    /// `clicked`: a link was followed.
    LinkClicked {
        /// The URL.
        url: S,
        /// The clicker's IP address, when the tenant keeps it.
        ip: Option<S>,
        /// The clicker's user agent, when the tenant keeps it.
        user_agent: Option<S>,
        /// A link scanner, not a person.
        bot: bool,
    },
    /// `unsubscribed` or `resubscribed`.
    SubscriptionChanged {
        /// True for `resubscribed`.
        subscribed: bool,
        /// `all`, or a topic name.
        scope: String,
    },
    /// `suppressed`: an entry was added to the suppression list.
    SuppressionAdded {
        /// Why, without personal data.
        reason: Option<String>,
        /// `all`, or a topic name.
        scope: String,
        /// When the entry lapses, µs since the epoch.
        expires_at: Option<i64>,
    },
    /// `unsuppressed`: an entry was removed.
    SuppressionRemoved {
        /// Why, without personal data.
        reason: Option<String>,
        /// `all`, or a topic name.
        scope: String,
    },
    /// `erased`: the contact's key was destroyed. Written by the ledger only.
    ContactErased {
        /// The caller's id for the erasure request.
        request_id: String,
        /// How many of the contact's events became unreadable.
        events_unreadable: u64,
        /// Whether the contact had a key (so the ledger held data of it):
        /// false records "no data held".
        key_found: bool,
    },
}

impl<S> EventBody<S> {
    /// The event's type.
    #[must_use]
    pub fn kind(&self) -> EventType {
        match self {
            Self::MessageSent { .. } => EventType::Sent,
            Self::MessageRejected { .. } => EventType::Rejected,
            Self::DeliveryDeferred { .. } => EventType::Deferred,
            Self::Delivered { .. } => EventType::Delivered,
            Self::Bounced { .. } => EventType::Bounced,
            Self::ComplaintReceived { .. } => EventType::Complained,
            Self::Opened { .. } => EventType::Opened,
            Self::LinkClicked { .. } => EventType::Clicked,
            Self::SubscriptionChanged {
                subscribed: false, ..
            } => EventType::Unsubscribed,
            Self::SubscriptionChanged { .. } => EventType::Resubscribed,
            Self::SuppressionAdded { .. } => EventType::Suppressed,
            Self::SuppressionRemoved { .. } => EventType::Unsuppressed,
            Self::ContactErased { .. } => EventType::Erased,
        }
    }

    /// The canonical JSON `type` of the event.
    #[must_use]
    pub fn event_type(&self) -> &'static str {
        self.kind().as_str()
    }

    /// The same body with each personal field passed through `f`.
    ///
    /// # Errors
    /// The first error `f` returns.
    pub fn try_map<T>(self, mut f: impl FnMut(FieldName, S) -> Result<T>) -> Result<EventBody<T>> {
        let mut opt = |n, v: Option<S>| v.map(|v| f(n, v)).transpose();
        Ok(match self {
            Self::MessageSent { subject, size } => EventBody::MessageSent {
                subject: opt(FieldName::Subject, subject)?,
                size,
            },
            Self::MessageRejected { reason, detail } => {
                EventBody::MessageRejected { reason, detail }
            }
            Self::DeliveryDeferred {
                attempt,
                smtp_code,
                enhanced_status,
                mx_host,
                next_retry_at,
            } => EventBody::DeliveryDeferred {
                attempt,
                smtp_code,
                enhanced_status,
                mx_host,
                next_retry_at,
            },
            Self::Delivered {
                smtp_response,
                mx_host,
                tls,
            } => EventBody::Delivered {
                smtp_response,
                mx_host,
                tls,
            },
            Self::Bounced {
                class,
                sub_type,
                status,
                diagnostic,
            } => EventBody::Bounced {
                class,
                sub_type,
                status,
                diagnostic: opt(FieldName::Diagnostic, diagnostic)?,
            },
            Self::ComplaintReceived { feedback_type } => {
                EventBody::ComplaintReceived { feedback_type }
            }
            Self::Opened {
                ip,
                user_agent,
                machine,
            } => EventBody::Opened {
                ip: opt(FieldName::Ip, ip)?,
                user_agent: opt(FieldName::UserAgent, user_agent)?,
                machine,
            },
            Self::LinkClicked {
                url,
                ip,
                user_agent,
                bot,
            } => {
                let url = opt(FieldName::Url, Some(url))?;
                EventBody::LinkClicked {
                    url: url.ok_or_else(|| Error::invalid("clicked events need a url"))?,
                    ip: opt(FieldName::Ip, ip)?,
                    user_agent: opt(FieldName::UserAgent, user_agent)?,
                    bot,
                }
            }
            Self::SubscriptionChanged { subscribed, scope } => {
                EventBody::SubscriptionChanged { subscribed, scope }
            }
            Self::SuppressionAdded {
                reason,
                scope,
                expires_at,
            } => EventBody::SuppressionAdded {
                reason,
                scope,
                expires_at,
            },
            Self::SuppressionRemoved { reason, scope } => {
                EventBody::SuppressionRemoved { reason, scope }
            }
            Self::ContactErased {
                request_id,
                events_unreadable,
                key_found,
            } => EventBody::ContactErased {
                request_id,
                events_unreadable,
                key_found,
            },
        })
    }
}

/// What every email event carries besides its body. Fields the log record
/// already holds (event id, tenant, stream, version, position, recorded_at,
/// hashes) are not repeated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope<S> {
    /// The message this event is about, if any.
    pub message_id: Option<String>,
    /// The contact's pseudonym.
    pub contact: Pseudonym,
    /// The generation of the contact key the personal fields are sealed under.
    pub key_generation: u32,
    /// When it happened at the provider, µs since the epoch.
    pub occurred_at: i64,
    /// The provider that reported it (`postal`, `ses`, ...).
    pub provider: Option<String>,
    /// The provider's own id of the event.
    pub provider_event_id: Option<String>,
    /// The sender's tags.
    pub tags: Vec<String>,
    /// The sender's campaign.
    pub campaign: Option<String>,
    /// The domain the message was sent from.
    pub sending_domain: Option<String>,
    /// The recipient's lower-cased domain: the only address-derived value
    /// kept in clear.
    pub recipient_domain: Option<String>,
    /// The recipient address.
    pub recipient: Option<S>,
    /// The provider's raw payload.
    pub raw: Option<S>,
}

/// An email event: envelope and body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EmailEventOf<S> {
    /// The envelope.
    pub envelope: Envelope<S>,
    /// The body.
    pub body: EventBody<S>,
}

/// An email event as stored: personal fields sealed.
pub type SealedEvent = EmailEventOf<crate::crypto::Sealed>;

/// An email event as read: personal fields opened, or the erased marker.
pub type EmailEvent = EmailEventOf<Field>;

impl<S> EmailEventOf<S> {
    /// The same event with each personal field passed through `f`.
    ///
    /// # Errors
    /// The first error `f` returns.
    pub fn try_map<T>(
        self,
        mut f: impl FnMut(FieldName, S) -> Result<T>,
    ) -> Result<EmailEventOf<T>> {
        Ok(EmailEventOf {
            envelope: self.envelope.try_map(&mut f)?,
            body: self.body.try_map(f)?,
        })
    }
}

impl<S> Envelope<S> {
    /// The same envelope with each personal field passed through `f`.
    fn try_map<T>(self, mut f: impl FnMut(FieldName, S) -> Result<T>) -> Result<Envelope<T>> {
        Ok(Envelope {
            recipient: self
                .recipient
                .map(|v| f(FieldName::Recipient, v))
                .transpose()?,
            raw: self.raw.map(|v| f(FieldName::Raw, v)).transpose()?,
            message_id: self.message_id,
            contact: self.contact,
            key_generation: self.key_generation,
            occurred_at: self.occurred_at,
            provider: self.provider,
            provider_event_id: self.provider_event_id,
            tags: self.tags,
            campaign: self.campaign,
            sending_domain: self.sending_domain,
            recipient_domain: self.recipient_domain,
        })
    }
}
