//! Provider webhook adapters: Postal, Amazon SES (through SNS), Postmark,
//! Mailgun and SendGrid payloads checked for their signature and mapped onto
//! canonical email events.
//!
//! One pure function, [`parse_with_policy`], takes the provider, the request
//! headers, the raw body, the tenant's [`ProviderSecrets`], what the
//! tenant's policy keeps ([`RawPolicy`]) and the current time, and returns
//! either canonical events ([`WebhookOutcome::Events`]) or an SNS
//! subscription (un)confirmation ([`WebhookOutcome::SubscriptionConfirmation`]);
//! [`parse`] is the same under the default policy.
//! It does no I/O: nothing is fetched (not SNS's `SubscribeURL`, not its
//! `SigningCertURL`), nothing is logged.
//!
//! ```
//! use mailledger_api::webhooks::{parse, Provider, ProviderSecrets, WebhookOutcome};
//!
//! let body = br#"{"RecordType": "Delivery", "MessageID": "m-1",
//!   "Recipient": "ann@example.org", "DeliveredAt": "2026-11-22T10:00:00Z"}"#;
//! let out = parse(Provider::Postmark, &http::HeaderMap::new(), body,
//!                 &ProviderSecrets::default(), 1_795_000_000).unwrap();
//! let WebhookOutcome::Events { events, .. } = out else { unreachable!() };
//! assert_eq!(events[0].event_type, "delivered");
//! ```
//!
//! # What every adapter does
//!
//! - **Ids.** The canonical `id` is derived, never random: blake3
//!   `derive_key` under the context [`EVENT_ID_CONTEXT`] of the provider name,
//!   a zero byte and the event's *id source* (below), first 16 bytes, as a
//!   UUID version 8 ([`derive_event_id`]). A retried webhook therefore yields
//!   the same ids and the ledger appends it once. Ids never include the
//!   recipient address (an unkeyed hash of an address would survive its
//!   erasure).
//! - **Envelope.** `provider` is the provider name, `provider_event_id` the
//!   provider's id of the event (or the documented composite), `recipient`
//!   the address the event is about, `occurred_at` the provider's time of the
//!   event (in UTC), `message_id` the provider's message id without angle
//!   brackets, `tags`, `campaign` and `sending_domain` where the payload has
//!   them. `raw` is the provider's payload of that event (the whole body, the
//!   SES record, the Mailgun `event-data` or the SendGrid array element);
//!   like every personal field it is sealed by the core. A `raw` larger than
//!   the core's limit is left out rather than cut.
//! - **`raw` obeys the policy, and holds only this contact's data.** It is
//!   scrubbed by one set of rules (`util::scrub`), each adapter saying only
//!   where its provider puts things: headers that list recipients (`To`,
//!   `Cc`, `Bcc`, `Resent-*`, `Delivered-To`, `X-Original-To`, ...) go
//!   wherever they occur, as keys (SES `commonHeaders.to`, Mailgun
//!   `message.headers.to`, Postal `message.to`) or `{name, value}` entries
//!   (SES `mail.headers`), with each provider's own recipient fields
//!   (Mailgun `envelope.targets` and `message.recipients`, the Postmark
//!   bounce dump `Content`), whatever the policy; subjects (any `subject`
//!   key or header) unless [`RawPolicy::keep_subjects`]; IPs and user
//!   agents and what the provider derives from them (Postal `ip_address`,
//!   `user_agent`; SES `open`/`click` `ipAddress`, `userAgent` and
//!   `complaint.userAgent`; Postmark `Geo`, `UserAgent`, `Client`, `OS`,
//!   `Platform`; Mailgun `ip`, `client-info`, `geolocation`; SendGrid `ip`,
//!   `useragent`) unless [`RawPolicy::keep_engagement_details`]. An SES
//!   record for several recipients gives each event a copy whose recipient
//!   lists (`mail.destination`, `bouncedRecipients`, ...) hold that
//!   recipient's entries only (within a budget; beyond it, no `raw`).
//! - **Clear fields hold no personal data.** `smtp_response`, `detail`,
//!   `feedback_type`, tags and the other unsealed texts are dropped when they
//!   contain an `@` (an address, most likely), have control characters
//!   flattened and are cut to 256 bytes. Diagnostics, IPs, user agents, URLs
//!   and subjects go to the sealed fields.
//! - **Events without a canonical type** (Postal `MessageHeld`, SES
//!   `Rendering Failure`, SendGrid `account_status_change`, ...) are listed in
//!   [`WebhookOutcome::Events::skipped`], not errors. An event type the
//!   adapter does not know at all, a missing or mistyped field, or a body
//!   that is not JSON is an error ([`WebhookError`]) whose text names the
//!   field by its JSON path (`event-data.recipient`, `[3].email`,
//!   `Message.bounce.bouncedRecipients[0].emailAddress`) and never quotes a
//!   value of the payload.
//! - **One bad item does not lose a batch.** In a SendGrid array, or the
//!   recipient list of an SES record, an item that is malformed or of an
//!   unknown type is [`Skipped`] with its index and its error, and the
//!   other items are mapped; the request is an error only when no item is
//!   usable (every one bad).
//! - **Every event returned passed the core's
//!   [`CanonicalEvent::validate`]**.
//!
//! # Signatures and [`ProviderSecrets`]
//!
//! When a provider's secret is configured the signature is always checked,
//! and a missing, malformed or wrong signature or a stale timestamp is
//! refused. When it is not configured the request is refused with
//! [`WebhookError::NotConfigured`] unless the secrets say
//! `require_signatures = false` (default `true`), in which case it is
//! accepted and reported as [`Authentication::Unverified`]. Postmark signs
//! nothing ([`Authentication::ProviderDoesNotSign`]): its endpoint must be
//! protected by the API's own authentication (HTTP basic auth in the webhook
//! URL, which Postmark supports). MACs and signatures are compared in
//! constant time by `ring`.
//!
//! # Postal
//!
//! Body `{"event", "timestamp", "uuid", "payload"}`.
//!
//! | Postal `event` | canonical | own fields |
//! |---|---|---|
//! | `MessageSent` (status `Sent`) | `delivered` | `smtp_response` ← `output`, `mx_host` ← host in `details`, `tls` ← `sent_with_ssl` |
//! | `MessageDelayed` (`SoftFail`) | `deferred` | `smtp_code`, `enhanced_status` ← `output`, `mx_host` ← `details` |
//! | `MessageDeliveryFailed` (`HardFail`) | `bounced` | `class` from the status in `output` (5.1.x hard, 5.7.x block, 4.x soft, else undetermined), `sub_type` `hard_fail`, `status`, `diagnostic` ← `output` |
//! | `MessageBounced` | `bounced` | `class` undetermined (Postal does not say what the bounce message says); the event is about `original_message`, at `bounce.timestamp` |
//! | `MessageLinkClicked` | `clicked` | `url`, `ip` ← `ip_address`, `user_agent`, `bot` false |
//! | `MessageLoaded` | `opened` | `ip` ← `ip_address`, `user_agent`, `machine` false |
//! | `MessageHeld`, `DomainDNSError`, `SendLimitApproaching`, `SendLimitExceeded` | skipped | |
//!
//! `recipient` ← `message.to`, `message_id` ← `message.message_id`, `tags` ←
//! `message.tag`, `sending_domain` ← domain of `message.from`, `occurred_at` ←
//! `payload.timestamp` (status events), `bounce.timestamp` (bounces) or the
//! envelope `timestamp`. Messages with `direction` `incoming` are skipped.
//! **Id:** `provider_event_id` = id source = the envelope `uuid` (the same for
//! every delivery attempt). **Signature:** RSA PKCS#1 v1.5 over the raw body;
//! `X-Postal-Signature-256` (SHA-256) when present, and then only it, else the
//! legacy `X-Postal-Signature` (SHA-1) that older Postal versions send alone,
//! unless `postal_require_sha256` is set ([`WebhookError::WeakSignature`]).
//! Keys of 1024 to 8192 bits (Postal generates 1024-bit keys). The key is
//! configured as Postal shows it: base64 DER, PEM, or the DKIM record whose
//! `p=` it is. Postal signs no timestamp, so a replayed request verifies; it
//! carries the same `uuid` and so the same ids, and the ledger appends it
//! once.
//!
//! # Amazon SES (via SNS)
//!
//! Body: an SNS message. `Type` `SubscriptionConfirmation` or
//! `UnsubscribeConfirmation` gives [`WebhookOutcome::SubscriptionConfirmation`]
//! (topic, message id, and the `SubscribeURL`, reported and never fetched);
//! `Notification` carries an SES record (event publishing, `eventType`, or
//! identity notifications, `notificationType`) as a JSON string in `Message`.
//!
//! | SES type | canonical | recipients | own fields |
//! |---|---|---|---|
//! | `Send` | `sent` | `mail.destination[i]` | `subject` ← `mail.commonHeaders.subject` |
//! | `Reject` | `rejected` | `mail.destination[i]` | `reason` policy, `detail` ← `reject.reason` |
//! | `Delivery` | `delivered` | `delivery.recipients[i]` | `smtp_response` ← `delivery.smtpResponse` |
//! | `Bounce` | `bounced` | `bounce.bouncedRecipients[i].emailAddress` | `class`: `Permanent` hard, `Transient` soft (`ContentRejected`, `AttachmentRejected` block), `Undetermined`; `sub_type` ← `bounceSubType`; `status`, `diagnostic` ← `diagnosticCode` |
//! | `Complaint` | `complained` | `complaint.complainedRecipients[i].emailAddress` | `feedback_type` ← `complaintFeedbackType` |
//! | `DeliveryDelay` | `deferred` | `deliveryDelay.delayedRecipients[i].emailAddress` | `smtp_code`, `enhanced_status` ← `status` / `diagnosticCode` |
//! | `Open` | `opened` | the only `mail.destination` | `ip`, `user_agent`; `machine` false |
//! | `Click` | `clicked` | the only `mail.destination` | `url` ← `link`, `ip`, `user_agent`; `bot` false |
//! | `Rendering Failure`, `Subscription`, `Received`, `AmazonSnsSubscriptionSucceeded` | skipped | | |
//!
//! An `Open` or `Click` of a message with several recipients cannot be
//! attributed to one and is skipped. `message_id` ← `mail.messageId`,
//! `sending_domain` ← the `ses:from-domain` tag or the domain of
//! `mail.source`, `tags` ← the custom `mail.tags` as `name=value`,
//! `occurred_at` ← the type's own `timestamp` (`mail.timestamp` for `Send` and
//! `Reject`). **Id:** `provider_event_id` = id source = `<SNS MessageId>:<i>`,
//! `i` the recipient's index in its list (SNS keeps the `MessageId` across
//! retries). An SES record POSTed without the SNS envelope (raw message
//! delivery) is accepted only unsigned (see above), with
//! `raw-<first 32 hex digits of blake3(body)>` instead of the `MessageId`.
//! **Signature:** SNS `SignatureVersion` 1 (SHA1withRSA) or 2
//! (SHA256withRSA) over the documented string (`Message`, `MessageId`,
//! `Subject` if present, `Timestamp`, `TopicArn`, `Type` for notifications;
//! `Message`, `MessageId`, `SubscribeURL`, `Timestamp`, `Token`, `TopicArn`,
//! `Type` for confirmations, each as `name\nvalue\n`), verified against the
//! configured certificates valid at `now`. The `SigningCertURL` is never
//! fetched, but must be `https` on a host `sns.<region>.amazonaws.com` with a
//! `.pem` path. SNS signs every AWS account's topics with the same
//! certificates, so certificates without `sns_topic_arns` are a
//! configuration error ([`WebhookError::BadSecret`]; the access store
//! refuses to store them), and any `TopicArn` not listed is refused. The
//! signed `Timestamp` must lie within `max_signature_age_secs` of `now`
//! ([`WebhookError::StaleTimestamp`]); SNS keeps it across its delivery
//! retries, so a delivery policy that retries for longer needs a longer
//! age. With `sns_signature_v2_only`, version 1 is refused
//! ([`WebhookError::WeakSignature`]). A replay within the age yields the
//! same ids.
//!
//! # Postmark
//!
//! Body: one object with `RecordType`.
//!
//! | `RecordType` | canonical | own fields |
//! |---|---|---|
//! | `Delivery` | `delivered` | `smtp_response` ← `Details` |
//! | `Bounce` | `bounced` | `class` by `Type`: `HardBounce`, `BadEmailAddress` hard; `SoftBounce`, `Transient`, `DnsError` soft; `Blocked`, `SpamNotification`, `VirusNotification`, `DMARCPolicy` block; others by the status in `Details`, else undetermined; `sub_type` ← `Type`; `diagnostic` ← `Details` |
//! | `Bounce` of `Type` `SpamComplaint` / `ManuallyDeactivated` / `TemplateRenderingFailed` | `complained` / `suppressed` / `rejected` (reason invalid) | |
//! | `Bounce` of `Type` `AutoResponder`, `Subscribe`, `Unsubscribe`, `AddressChange`, `ChallengeVerification`, `OpenRelayTest`, `InboundError`, `SMTPApiError`, `Unconfirmed` | skipped | |
//! | `SpamComplaint` | `complained` | |
//! | `Open` | `opened` | `ip` ← `Geo.IP`, `user_agent` ← `UserAgent`, `machine` false |
//! | `Click` | `clicked` | `url` ← `OriginalLink`, `ip` ← `Geo.IP`, `user_agent`, `bot` false |
//! | `SubscriptionChange` | `suppressed` / `unsuppressed` by `SuppressSending`; `unsubscribed` / `resubscribed` when `Origin` is `Recipient` and `SuppressionReason` `ManualSuppression` | `scope` ← `MessageStream` (Postmark suppresses per stream), `reason` ← `SuppressionReason` |
//!
//! `recipient` ← `Recipient` (`Email` for bounces and complaints),
//! `message_id` ← `MessageID`, `tags` ← `Tag`, `sending_domain` ← domain of
//! `From`, `occurred_at` ← `DeliveredAt` / `BouncedAt` / `ReceivedAt` /
//! `ChangedAt`. **Id:** bounces and complaints have Postmark's `ID`:
//! `provider_event_id` = `ID`, id source = `<RecordType>:<ID>`. Other records
//! have no event id; `provider_event_id` = id source =
//! `<RecordType>:<MessageID or ->:<time as sent>` (Postmark's times have
//! 100 ns precision), plus `:suppress` / `:reactivate` for subscription
//! changes; such an id does not tell the recipients of one message apart,
//! so the route makes it per recipient with [`scope_to_recipient`] (through
//! the recipient's keyed pseudonym). **Signature:** none exists (see above).
//!
//! # Mailgun
//!
//! Body `{"signature": {...}, "event-data": {...}}`.
//!
//! | `event-data.event` | canonical | own fields |
//! |---|---|---|
//! | `accepted` | `sent` | `size` ← `message.size`, `subject` ← `message.headers.subject` |
//! | `rejected` | `rejected` | `reason` policy, `detail` ← `reject.reason` |
//! | `delivered` | `delivered` | `smtp_response` ← `delivery-status.code` + `message`, `mx_host` ← `delivery-status.mx-host`, `tls` |
//! | `failed`, `severity` `temporary` | `deferred` | `attempt` ← `attempt-no`, `smtp_code` ← `code`, `enhanced_status`, `mx_host`, `next_retry_at` ← timestamp + `retry-seconds` |
//! | `failed`, `reason` `suppress-bounce` / `-unsubscribe` / `-complaint` | `rejected` | `reason` suppressed, `detail` ← `reason` |
//! | `failed`, otherwise | `bounced` | `class`: `espblock` block, `delivery-status.bounce-type` if given, else by the status codes, else hard; `sub_type` ← `reason`, `status`, `diagnostic` ← `delivery-status.message` / `description` |
//! | `opened` | `opened` | `ip`, `user_agent` ← `client-info.user-agent`, `machine` ← `client-info.bot` set (Apple MPP, Gmail proxy) |
//! | `clicked` | `clicked` | `url`, `ip`, `user_agent`, `bot` ← `client-info.bot` set |
//! | `unsubscribed` | `unsubscribed` | `scope` all |
//! | `complained` | `complained` | |
//! | `stored`, `list_member_uploaded`, `list_member_upload_error`, `list_uploaded` | skipped | |
//!
//! `recipient` ← `recipient`, `message_id` ← `message.headers.message-id`,
//! `tags` ← `tags`, `campaign` ← `campaigns[0].name`, `sending_domain` ←
//! `domain.name` or the domain of `envelope.sender`, `occurred_at` ←
//! `timestamp`. **Id:** `provider_event_id` = `event-data.id`; Mailgun
//! guarantees that id unique only within a day, so the id source is
//! `<event>:<id>:<timestamp as sent>`. **Signature:** HMAC-SHA256 under the
//! HTTP webhook signing key of `signature.timestamp` ‖ `signature.token`,
//! hex, equal to `signature.signature`; the timestamp may be at most
//! `max_signature_age_secs` (default 300) from `now`. Mailgun's signature
//! does not cover `event-data`: a captured signature could be replayed with
//! another body while its timestamp is fresh. Mailgun therefore advises
//! refusing a token seen before: [`parse`] is pure, so the route does it
//! with [`replay::signature_token`] and [`replay::SeenTokens`] (per tenant,
//! per process, while the timestamp is fresh).
//!
//! # SendGrid
//!
//! Body: a JSON array of events.
//!
//! | `event` | canonical | own fields |
//! |---|---|---|
//! | `processed` | `sent` | |
//! | `dropped` | `rejected` | `reason`: `Bounced/Unsubscribed/Spam Reporting Address` suppressed, `Invalid…` invalid, `Recipient List over Package Quota` quota, else policy; `detail` ← `reason` |
//! | `deferred` | `deferred` | `attempt`, `smtp_code` and `enhanced_status` ← `response` / `status` |
//! | `delivered` | `delivered` | `smtp_response` ← `response`, `tls` |
//! | `bounce` | `bounced` | `class`: `type` `blocked` block; by `bounce_classification` (Invalid Address, Mailbox Unavailable hard; Technical soft; Content, Reputation, Frequency or Volume block; Unclassified undetermined); else by `status`, else hard. `sub_type` ← classification or `type`, `status`, `diagnostic` ← `reason` |
//! | `open` | `opened` | `ip`, `user_agent` ← `useragent`, `machine` ← `sg_machine_open` (Apple MPP) |
//! | `click` | `clicked` | `url`, `ip`, `user_agent`, `bot` false |
//! | `spamreport` | `complained` | |
//! | `unsubscribe` | `unsubscribed` | `scope` all |
//! | `group_unsubscribe` / `group_resubscribe` | `unsubscribed` / `resubscribed` | `scope` `group-<asm_group_id>` |
//! | `account_status_change` | skipped | |
//!
//! `recipient` ← `email`, `message_id` ← `sg_message_id` up to `.filter` (the
//! X-Message-Id of the send call; `smtp-id` when absent), `tags` ← `category`
//! (a string or an array), `campaign` ← `marketing_campaign_name` or `_id`,
//! `occurred_at` ← `timestamp`. **Id:** `provider_event_id` = id source =
//! `sg_event_id`. **Signature:** ECDSA P-256 SHA-256 (ASN.1 DER, base64 in
//! `X-Twilio-Email-Event-Webhook-Signature`) over the
//! `X-Twilio-Email-Event-Webhook-Timestamp` value followed by the raw body,
//! under the verification key as SendGrid shows it (base64 DER
//! SubjectPublicKeyInfo, or PEM); the timestamp may be at most
//! `max_signature_age_secs` from `now`.

mod error;
mod json;
mod mailgun;
mod postal;
mod postmark;
pub mod replay;
mod sendgrid;
mod ses;
#[cfg(any(test, feature = "test-util"))]
pub mod signing;
mod util;
mod verify;

/// Checks each secret a webhook secrets document (JSON) sets, as the
/// adapters will read it, before it is stored: the API's `PUT
/// …/webhook-secrets` and `mailledger tenant webhook-secrets` both call
/// this. A document that does not parse passes: the access store refuses
/// it with an error naming the field.
///
/// # Errors
/// The message naming the first bad field (never its value), for a 422
/// `unsafe-settings` problem.
pub fn check_secrets_document(json: &str) -> Result<(), String> {
    let Ok(parsed) = serde_json::from_str::<mailledger_access::ProviderSecrets>(json) else {
        return Ok(());
    };
    parsed.check().map_err(|e| e.to_string())?;
    verify::check_secrets(&parsed)
        .map_err(|(field, rule)| format!("webhook secrets: field `{field}` {rule}"))
}

#[cfg(test)]
mod tests;

use std::fmt;
use std::str::FromStr;

use http::HeaderMap;
use mailledger_core::email::CanonicalEvent;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

pub use error::{WebhookError, WebhookErrorKind};
pub use mailledger_access::ProviderSecrets;
pub use util::{EVENT_ID_CONTEXT, derive_event_id, scope_to_recipient};

/// The largest webhook body accepted, in bytes.
pub const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;

/// A webhook provider, named in `POST /v1/webhooks/{provider}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Provider {
    /// Postal (postalserver.io).
    Postal,
    /// Amazon SES notifications delivered by Amazon SNS.
    Ses,
    /// Postmark.
    Postmark,
    /// Mailgun.
    Mailgun,
    /// Twilio SendGrid.
    Sendgrid,
}

impl Provider {
    /// Every provider.
    pub const ALL: [Provider; 5] = [
        Self::Postal,
        Self::Ses,
        Self::Postmark,
        Self::Mailgun,
        Self::Sendgrid,
    ];

    /// The provider's name in URLs, configuration and the canonical
    /// `provider` field: `postal`, `ses`, `postmark`, `mailgun`, `sendgrid`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Postal => "postal",
            Self::Ses => "ses",
            Self::Postmark => "postmark",
            Self::Mailgun => "mailgun",
            Self::Sendgrid => "sendgrid",
        }
    }
}

impl fmt::Display for Provider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Provider {
    type Err = WebhookError;

    /// Parses a provider name (exact, lower case).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or(WebhookError::UnknownProvider)
    }
}

/// The outcome for a provider whose secret is not configured in `secrets`.
fn unsigned(secrets: &ProviderSecrets, provider: Provider) -> Result<Authentication, WebhookError> {
    if secrets.require_signatures {
        Err(WebhookError::NotConfigured { provider })
    } else {
        Ok(Authentication::Unverified)
    }
}

/// How a webhook was authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Authentication {
    /// Its signature verified under the configured secret.
    Verified,
    /// No secret is configured and the secrets allow unsigned webhooks.
    Unverified,
    /// The provider signs nothing (Postmark); the caller's own
    /// authentication of the request is all there is.
    ProviderDoesNotSign,
}

/// A provider event that gives no canonical event: it has no place in the
/// canonical taxonomy, or it is one bad item of a batch whose other items
/// are kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    /// The JSON path of the event (`event`, `[3]`, `Message.eventType`), or
    /// of the bad field of a bad item (`[3].email`).
    pub field: String,
    /// The provider's event type (from the adapter's own list, never copied
    /// from the payload; `unknown` when the item's type is not one).
    pub event_type: &'static str,
    /// The item's index in the provider's batch (the SendGrid array, an SES
    /// record's recipient list), for a bad item.
    pub index: Option<usize>,
    /// Why a bad item was refused (its message names the field and the kind
    /// of problem, never a value); `None` for an event with no canonical
    /// type.
    pub error: Option<WebhookError>,
}

impl Skipped {
    /// A provider event with no canonical type.
    pub(crate) fn unmapped(field: impl Into<String>, event_type: &'static str) -> Self {
        Self {
            field: field.into(),
            event_type,
            index: None,
            error: None,
        }
    }

    /// A bad item of a batch: `item` is its JSON path, `index` its index.
    pub(crate) fn bad(
        item: &str,
        index: usize,
        event_type: &'static str,
        error: WebhookError,
    ) -> Self {
        Self {
            field: error.field().unwrap_or(item).to_owned(),
            event_type,
            index: Some(index),
            error: Some(error),
        }
    }
}

/// Where a canonical event came from in the provider's payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventSource {
    /// The JSON path of the provider event (`[3]`,
    /// `Message.bounce.bouncedRecipients[1]`, `event-data`; `(root)` for a
    /// body that is one event).
    pub field: String,
    /// Its index in the provider's batch, when it is an item of one.
    pub index: Option<usize>,
    /// The provider's event type (from the adapter's own list).
    pub event_type: &'static str,
}

impl EventSource {
    /// The source of the one event a body holds.
    pub(crate) fn single(field: &str, event_type: &'static str) -> Self {
        Self {
            field: if field.is_empty() { "(root)" } else { field }.to_owned(),
            index: None,
            event_type,
        }
    }
}

/// The outcome of a batch whose bad items were set aside: the good events
/// (each with its source) and the skips, or, when no item at all was usable
/// (every one bad), the first item's error.
pub(crate) fn batch(
    events: Vec<(CanonicalEvent, EventSource)>,
    skipped: Vec<Skipped>,
    authentication: Authentication,
) -> Result<WebhookOutcome, WebhookError> {
    if events.is_empty()
        && skipped.iter().all(|s| s.error.is_some())
        && let Some(error) = skipped.first().and_then(|s| s.error.clone())
    {
        return Err(error);
    }
    let (events, sources) = events.into_iter().unzip();
    Ok(WebhookOutcome::Events {
        events,
        skipped,
        authentication,
        recipient_scoped: Vec::new(),
        sources,
    })
}

/// What a tenant keeps of the optional personal data a provider payload
/// carries: the two settings of the tenant's
/// [`TenantPolicy`](mailledger_core::email::TenantPolicy) that drop fields.
/// The `raw` payload kept with each event is scrubbed by them as the fields
/// are (see the module docs). The default keeps neither, as the tenant
/// policy's default.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RawPolicy {
    /// Keep subject lines (`TenantPolicy::keep_subjects`).
    pub keep_subjects: bool,
    /// Keep IP addresses and user agents, and what a provider derives from
    /// them (`TenantPolicy::keep_engagement_details`).
    pub keep_engagement_details: bool,
}

impl From<&mailledger_core::email::TenantPolicy> for RawPolicy {
    fn from(p: &mailledger_core::email::TenantPolicy) -> Self {
        Self {
            keep_subjects: p.keep_subjects,
            keep_engagement_details: p.keep_engagement_details,
        }
    }
}

/// Whether an SNS message subscribes or unsubscribes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SnsConfirmationKind {
    /// `SubscriptionConfirmation`.
    Subscribe,
    /// `UnsubscribeConfirmation`.
    Unsubscribe,
}

/// An SNS subscription or unsubscription confirmation: to be recorded and
/// shown to an operator. The `SubscribeURL` is never followed here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnsConfirmation {
    /// Subscribe or unsubscribe.
    pub kind: SnsConfirmationKind,
    /// The topic.
    pub topic_arn: String,
    /// SNS's message id.
    pub message_id: String,
    /// When SNS sent it.
    pub timestamp: OffsetDateTime,
    /// The URL that would confirm the subscription (not fetched).
    pub subscribe_url: Option<String>,
    /// How the message was authenticated.
    pub authentication: Authentication,
}

/// What a webhook request amounts to.
#[derive(Debug, Clone)]
pub enum WebhookOutcome {
    /// Canonical events to append (possibly none).
    Events {
        /// The events, each accepted by [`CanonicalEvent::validate`].
        events: Vec<CanonicalEvent>,
        /// Provider events with no canonical type.
        skipped: Vec<Skipped>,
        /// How the request was authenticated.
        authentication: Authentication,
        /// Indices of events whose provider gives no event id of its own
        /// and whose derived id does not tell recipients apart (a Postmark
        /// delivery, open or click: record type, message and time). Their
        /// ids must be made per recipient with [`scope_to_recipient`] once
        /// the recipient's pseudonym is known (the adapter has no tenant
        /// secret, and an unkeyed hash of the address would outlive an
        /// erasure).
        recipient_scoped: Vec<usize>,
        /// Where each event came from in the payload, one per event, to
        /// name an event the ledger refuses (an address that does not
        /// normalise) by the provider's own index and path.
        sources: Vec<EventSource>,
    },
    /// An SNS subscription (un)confirmation.
    SubscriptionConfirmation(SnsConfirmation),
}

/// Checks a provider webhook's signature and maps its payload onto canonical
/// events (or an SNS subscription confirmation), keeping in `raw` what the
/// default [`RawPolicy`] keeps (no subject, IP or user agent): as
/// [`parse_with_policy`] with `RawPolicy::default()`.
///
/// # Errors
/// As [`parse_with_policy`].
pub fn parse(
    provider: Provider,
    headers: &HeaderMap,
    body: &[u8],
    secrets: &ProviderSecrets,
    now_unix_secs: i64,
) -> Result<WebhookOutcome, WebhookError> {
    parse_with_policy(
        provider,
        headers,
        body,
        secrets,
        RawPolicy::default(),
        now_unix_secs,
    )
}

/// Checks a provider webhook's signature and maps its payload onto canonical
/// events (or an SNS subscription confirmation).
///
/// `headers` are the request's headers, `body` its raw bytes (signatures
/// cover the exact bytes), `secrets` the tenant's, `keep` what the tenant's
/// policy keeps (each event's `raw` is scrubbed by it), `now_unix_secs` the
/// current time (for timestamp freshness and certificate validity).
///
/// # Errors
/// A [`WebhookError`]: an authentication failure, a malformed payload, an
/// unknown event type; for a batch (a SendGrid array, an SES record's
/// recipients) only when no item is usable, bad items being otherwise
/// [`Skipped`]. Its message names fields, never values.
pub fn parse_with_policy(
    provider: Provider,
    headers: &HeaderMap,
    body: &[u8],
    secrets: &ProviderSecrets,
    keep: RawPolicy,
    now_unix_secs: i64,
) -> Result<WebhookOutcome, WebhookError> {
    if body.len() > MAX_BODY_BYTES {
        return Err(WebhookError::TooLarge);
    }
    match provider {
        Provider::Postal => postal::parse(headers, body, secrets, keep),
        Provider::Ses => ses::parse(body, secrets, keep, now_unix_secs),
        Provider::Postmark => postmark::parse(body, keep),
        Provider::Mailgun => mailgun::parse(body, secrets, keep, now_unix_secs),
        Provider::Sendgrid => sendgrid::parse(headers, body, secrets, keep, now_unix_secs),
    }
}
