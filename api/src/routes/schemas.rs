//! OpenAPI schemas for types of `mailledger-core`, which does not depend on
//! utoipa. They mirror the core types field by field; only the document
//! uses them.

#![allow(dead_code)]

use std::borrow::Cow;

use mailledger_core::email::{EventType, MAX_PERSONAL_LEN, MAX_TAGS, MAX_TEXT_LEN};
use serde_json::json;
use utoipa::openapi::schema::{
    AdditionalProperties, ArrayBuilder, Discriminator, KnownFormat, ObjectBuilder, OneOfBuilder,
    Schema, SchemaFormat, Type,
};
use utoipa::openapi::{RefOr, schema::SchemaType};
use utoipa::{PartialSchema, ToSchema};

/// A sealed personal field as it is read back: its plaintext, or
/// `{"erased": true}` once the contact's key was destroyed. The one schema
/// of every sealed field in a response.
#[derive(Debug)]
pub struct Erasable;

impl PartialSchema for Erasable {
    fn schema() -> RefOr<Schema> {
        OneOfBuilder::new()
            .description(Some(
                "A personal field: its plaintext, or `{\"erased\": true}` once the contact was erased",
            ))
            .item(ObjectBuilder::new().schema_type(Type::String))
            .item(
                ObjectBuilder::new()
                    .schema_type(Type::Object)
                    .property(
                        "erased",
                        ObjectBuilder::new()
                            .schema_type(Type::Boolean)
                            .enum_values(Some([true])),
                    )
                    .required("erased")
                    .additional_properties(Some(AdditionalProperties::FreeForm(false))),
            )
            .into()
    }
}

impl ToSchema for Erasable {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("Erasable")
    }
}

/// An address as the API accepts it: `local@domain`, at most 254 bytes, no
/// white space (normalised and hashed; checked in full by the server).
pub(crate) fn address_schema() -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .format(Some(SchemaFormat::KnownFormat(KnownFormat::Email)))
        .min_length(Some(3))
        .max_length(Some(mailledger_core::pseudonym::MAX_ADDRESS_LEN))
        .examples([json!("ann@example.org")])
}

/// Clear text of an event: 1 to 256 bytes, no `@`.
fn clear_text() -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .min_length(Some(1))
        .max_length(Some(MAX_TEXT_LEN))
        .pattern(Some("^[^@]*$"))
}

fn personal_text() -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .max_length(Some(MAX_PERSONAL_LEN))
}

fn date_time() -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .format(Some(SchemaFormat::KnownFormat(KnownFormat::DateTime)))
}

fn integer(max: u64) -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::Integer)
        .minimum(Some(0))
        .maximum(Some(max as f64))
}

fn one_of(values: &[&str]) -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(values.iter().copied()))
}

/// The schema of one field of a canonical event, by name, and its
/// description.
fn event_field(name: &str, kind: EventType) -> (ObjectBuilder, &'static str) {
    match name {
        "id" => (
            ObjectBuilder::new()
                .schema_type(Type::String)
                .format(Some(SchemaFormat::KnownFormat(KnownFormat::Uuid))),
            "The idempotency key: the same id twice is one event (ids beginning 45524153- are the ledger's)",
        ),
        "type" => (one_of(&[kind.as_str()]), "The event type"),
        "message_id" | "provider_event_id" => (
            ObjectBuilder::new()
                .schema_type(Type::String)
                .min_length(Some(1))
                .max_length(Some(MAX_TEXT_LEN)),
            "Clear text, 1 to 256 bytes",
        ),
        "recipient" => (
            address_schema(),
            "The recipient's address (personal; sealed)",
        ),
        "occurred_at" | "next_retry_at" | "expires_at" => (date_time(), "RFC 3339"),
        "tags" => (
            ObjectBuilder::new(),
            "Up to 16 tags, each 1 to 256 bytes without `@`",
        ),
        "raw" | "subject" | "diagnostic" | "ip" | "user_agent" | "url" => (
            personal_text(),
            "Personal (sealed under the contact's key); at most 64 KiB",
        ),
        "size" => (
            ObjectBuilder::new()
                .schema_type(Type::Integer)
                .minimum(Some(0)),
            "Size in bytes (up to 2^64 - 1)",
        ),
        "attempt" => (integer(u64::from(u32::MAX)), "Attempt number"),
        "smtp_code" => (integer(u64::from(u16::MAX)), "SMTP code"),
        "tls" | "machine" | "bot" => (ObjectBuilder::new().schema_type(Type::Boolean), ""),
        "reason" if kind == EventType::Rejected => (
            one_of(&["suppressed", "invalid", "policy", "quota"]),
            "Why it was rejected",
        ),
        "class" => (
            one_of(&["hard", "soft", "block", "undetermined"]),
            "The bounce class",
        ),
        "scope" => (clear_text(), "`all` (default) or a topic"),
        _ => (clear_text(), "Clear text, 1 to 256 bytes, no `@`"),
    }
}

/// Fields every event type may carry.
const EVENT_COMMON: [&str; 11] = [
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

/// The fields a type requires besides `id`, `type`, `recipient` and
/// `occurred_at`.
fn required_own(kind: EventType) -> &'static [&'static str] {
    match kind {
        EventType::Rejected => &["reason"],
        EventType::Bounced => &["class"],
        EventType::Clicked => &["url"],
        _ => &[],
    }
}

/// One email event in canonical JSON, flat: a union tagged by `type`, each
/// type with its own fields (`EventType::own_fields`). Unknown fields,
/// fields of another type and message bodies are refused. Personal fields
/// are sealed under the contact's key before anything is stored.
#[derive(Debug)]
pub struct CanonicalEvent;

impl PartialSchema for CanonicalEvent {
    fn schema() -> RefOr<Schema> {
        let mut union = OneOfBuilder::new()
            .description(Some(
                "One email event, tagged by `type`; each type carries the common fields and its own",
            ))
            .discriminator(Some(Discriminator::new("type")));
        for kind in EventType::ALL.into_iter().filter(|t| t.ingestible()) {
            let mut o = ObjectBuilder::new()
                .schema_type(SchemaType::from(Type::Object))
                .title(Some(kind.as_str()))
                .additional_properties(Some(AdditionalProperties::FreeForm(false)));
            for name in EVENT_COMMON.iter().chain(kind.own_fields()) {
                let (schema, description) = event_field(name, kind);
                let required = ["id", "type", "recipient", "occurred_at"].contains(name)
                    || required_own(kind).contains(name);
                let schema = if *name == "tags" {
                    let (item, _) = event_field("campaign", kind);
                    RefOr::T(
                        ArrayBuilder::new()
                            .items(item)
                            .max_items(Some(MAX_TAGS))
                            .description(Some(description))
                            .build()
                            .into(),
                    )
                } else if description.is_empty() {
                    RefOr::T(schema.into())
                } else {
                    RefOr::T(schema.description(Some(description)).into())
                };
                // An optional field may be null: null is read as absent
                // (`tags` aside, which is a list or absent).
                let schema = if required || *name == "tags" {
                    schema
                } else {
                    RefOr::T(
                        OneOfBuilder::new()
                            .item(ObjectBuilder::new().schema_type(Type::Null))
                            .item(schema)
                            .into(),
                    )
                };
                o = o.property(*name, schema);
            }
            for name in ["id", "type", "recipient", "occurred_at"]
                .iter()
                .chain(required_own(kind))
            {
                o = o.required(*name);
            }
            let example = example_event(kind);
            o = o.examples([example]);
            union = union.item(o);
        }
        union.into()
    }
}

impl ToSchema for CanonicalEvent {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("CanonicalEvent")
    }
}

/// A valid event of `kind`, for the document's examples.
pub(crate) fn example_event(kind: EventType) -> serde_json::Value {
    let mut e = json!({
        "id": "0190f5d6-4c3a-7b8e-9a1b-2c3d4e5f6a7b",
        "type": kind.as_str(),
        "message_id": "msg-1",
        "recipient": "ann@example.org",
        "occurred_at": "2026-01-02T03:04:05Z",
    });
    let own = match kind {
        EventType::Rejected => json!({"reason": "policy"}),
        EventType::Bounced => json!({"class": "hard"}),
        EventType::Clicked => json!({"url": "https://example.org/a"}),
        EventType::Sent => json!({"subject": "Hello", "size": 1024}),
        _ => json!({}),
    };
    if let (Some(e), serde_json::Value::Object(own)) = (e.as_object_mut(), own) {
        e.extend(own);
    }
    e
}

/// An email event read back: the canonical fields plus `position`,
/// `stream`, `stream_version`, `recorded_at`, `jurisdiction` and `contact`; each personal
/// field of an erased contact reads `{"erased": true}`.
#[derive(Debug, ToSchema)]
pub struct ReadEvent {
    #[schema(format = Uuid, value_type = String)]
    id: String,
    r#type: String,
    position: u64,
    stream: String,
    stream_version: u64,
    #[schema(format = DateTime)]
    recorded_at: String,
    /// Where the node that recorded the event declared itself: `EU` or an
    /// ISO 3166-1 alpha-2 code; `null` for events recorded before records
    /// carried it.
    jurisdiction: Option<String>,
    #[schema(format = DateTime)]
    occurred_at: String,
    /// The contact's pseudonym (32 hex digits).
    contact: String,
    /// The address, or `{"erased": true}`; absent from the ledger's own
    /// `erased` event.
    recipient: Option<Erasable>,
    /// `erased` events: the erasure's request id.
    request_id: Option<String>,
    /// `erased` events: how many of the contact's events became unreadable.
    events_unreadable: Option<u64>,
    /// `erased` events: whether the ledger held a key of the contact.
    key_found: Option<bool>,
}

/// A tenant's webhook secrets: every field is optional. Without a secret
/// for a provider that signs (Postal, SES via SNS, Mailgun, SendGrid) its
/// webhooks are refused unless `require_signatures` is false; Postmark signs
/// nothing and relies on the API key alone.
#[derive(Debug, serde::Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WebhookSecrets {
    /// Refuse webhooks of a signing provider without a configured secret
    /// (default true).
    #[schema(nullable = false)]
    require_signatures: Option<bool>,
    /// Mailgun's HTTP webhook signing key.
    mailgun_signing_key: Option<String>,
    /// The Postal server's RSA public key: base64 DER, PEM, or its DKIM record.
    postal_public_key: Option<String>,
    /// SendGrid's signed event webhook verification key (base64 DER or PEM).
    sendgrid_public_key: Option<String>,
    /// SNS signing certificates (PEM) trusted for SES notifications; never
    /// downloaded: copy the one the `SigningCertURL` of your topic's
    /// messages names. Requires `sns_topic_arns` (422 without).
    #[schema(nullable = false)]
    sns_certificates: Option<Vec<String>>,
    /// The only SNS topics accepted (their ARNs). Required with
    /// `sns_certificates`: SNS signs every AWS account's topics with the
    /// same certificates, so only this list makes a signed message yours.
    #[schema(nullable = false, example = json!(["arn:aws:sns:eu-west-1:123456789012:ses-events"]))]
    sns_topic_arns: Option<Vec<String>>,
    /// Refuse SNS `SignatureVersion` 1 (SHA1withRSA); accept only version 2
    /// (SHA256withRSA, the topic's `SignatureVersion` attribute). Default
    /// false.
    #[schema(nullable = false)]
    sns_signature_v2_only: Option<bool>,
    /// Refuse Postal webhooks signed only with SHA-1 (`X-Postal-Signature`);
    /// accept only `X-Postal-Signature-256`. Default false.
    #[schema(nullable = false)]
    postal_require_sha256: Option<bool>,
    /// How far (seconds) a signed timestamp (Mailgun's, SendGrid's, the SNS
    /// `Timestamp`) may be from now, either way; default 300. SNS keeps a
    /// message's `Timestamp` across delivery retries: with a delivery policy
    /// that retries for longer, raise this to match. Mailgun tokens are
    /// remembered this long and a repeated one is refused.
    #[schema(nullable = false, minimum = 1, maximum = 604_800)]
    max_signature_age_secs: Option<i64>,
}

/// A message of the delivery log: its summary, recipient and subject opened
/// (or `{"erased": true}`).
#[derive(Debug, ToSchema)]
pub struct MessageSummary {
    /// The message id.
    message_id: String,
    /// The recipient's pseudonym (32 hex digits).
    contact: String,
    /// The recipient's address, or `{"erased": true}`.
    recipient: Option<Erasable>,
    /// The subject (when the tenant keeps subjects), or `{"erased": true}`.
    subject: Option<Erasable>,
    /// sent, deferred, delivered, bounced, rejected or complained; null
    /// before a status event.
    status: Option<String>,
    sending_domain: Option<String>,
    /// The recipient's domain (lower-cased).
    recipient_domain: Option<String>,
    tags: Vec<String>,
    campaign: Option<String>,
    #[schema(format = DateTime)]
    first_event_at: String,
    #[schema(format = DateTime)]
    last_event_at: String,
    /// How many events the message has.
    events: u32,
}

/// A message with its timeline: the fields of [`MessageSummary`] plus
/// `timeline`, every event of the message by time.
#[derive(Debug, ToSchema)]
pub struct MessageTimeline {
    message_id: String,
    /// The recipient's pseudonym (32 hex digits).
    contact: String,
    /// The recipient's address, or `{"erased": true}`.
    recipient: Option<Erasable>,
    /// The subject, or `{"erased": true}`.
    subject: Option<Erasable>,
    status: Option<String>,
    sending_domain: Option<String>,
    recipient_domain: Option<String>,
    tags: Vec<String>,
    campaign: Option<String>,
    #[schema(format = DateTime)]
    first_event_at: String,
    #[schema(format = DateTime)]
    last_event_at: String,
    events: u32,
    /// The events, by `occurred_at` then position.
    timeline: Vec<ReadEvent>,
}

/// A page of messages, newest first.
#[derive(Debug, ToSchema)]
pub struct MessagePage {
    items: Vec<MessageSummary>,
    /// The cursor of the next page; null on the last.
    next: Option<String>,
}

/// A suppression entry.
#[derive(Debug, ToSchema)]
pub struct SuppressionEntry {
    /// The contact's pseudonym (32 hex digits).
    contact: String,
    /// `all` or a topic.
    scope: String,
    /// hard_bounce, soft_bounces, complaint, unsubscribe or manual.
    reason: String,
    /// A manual entry's reason text.
    note: Option<String>,
    /// Since when (the originating event's time).
    #[schema(format = DateTime)]
    since: String,
    /// The event that made the entry.
    #[schema(format = Uuid, value_type = String)]
    event_id: String,
    /// That event's position in the log.
    position: u64,
    /// When it lapses; null: never.
    #[schema(format = DateTime)]
    expires_at: Option<String>,
    /// Whether it applies now.
    active: bool,
}

/// A page of the suppression list.
#[derive(Debug, ToSchema)]
pub struct SuppressionPage {
    items: Vec<SuppressionEntry>,
    /// The cursor of the next page; null on the last.
    next: Option<String>,
}

/// Every entry of one contact.
#[derive(Debug, ToSchema)]
pub struct SuppressionLookup {
    entries: Vec<SuppressionEntry>,
}

/// The answer of `POST /v1/sends/check`: `{"allowed": true}`, or
/// `{"allowed": false, ...}` with every other field.
#[derive(Debug, ToSchema)]
pub struct SendCheck {
    allowed: bool,
    /// hard_bounce, soft_bounces, complaint, unsubscribe or manual.
    reason: Option<String>,
    /// The scope of the entry that refuses (`all` or the topic).
    scope: Option<String>,
    /// Since when.
    #[schema(format = DateTime)]
    since: Option<String>,
    /// The event that made the entry.
    #[schema(format = Uuid, value_type = Option<String>)]
    event_id: Option<String>,
    /// Its position in the log.
    position: Option<u64>,
    /// When the entry lapses; null: never.
    #[schema(format = DateTime)]
    expires_at: Option<String>,
}

/// Counters of a bucket.
#[derive(Debug, ToSchema)]
pub struct AnalyticsCounts {
    sent: u64,
    delivered: u64,
    deferred: u64,
    rejected: u64,
    bounced_hard: u64,
    bounced_soft: u64,
    bounced_block: u64,
    bounced_undetermined: u64,
    complained: u64,
    /// Human opens.
    opened: u64,
    /// Messages with a first human open.
    unique_opened: u64,
    /// Opens by privacy proxies and prefetchers.
    machine_opened: u64,
    /// Human clicks.
    clicked: u64,
    unique_clicked: u64,
    /// Clicks flagged as bots or made within seconds of delivery.
    bot_clicked: u64,
    unsubscribed: u64,
}

/// Rates; null where the divisor is 0.
#[derive(Debug, ToSchema)]
pub struct AnalyticsRates {
    /// delivered / sent.
    delivery: Option<f64>,
    /// bounced / sent.
    bounce: Option<f64>,
    /// unique opened / delivered.
    open: Option<f64>,
    /// unique clicked / delivered.
    click: Option<f64>,
    /// complained / delivered.
    complaint: Option<f64>,
}

/// One bucket of an analytics result.
#[derive(Debug, ToSchema)]
pub struct AnalyticsBucket {
    /// The bucket's start.
    #[schema(format = DateTime)]
    start: String,
    /// The group's value; null for totals.
    group: Option<String>,
    counts: AnalyticsCounts,
    rates: AnalyticsRates,
}

/// The totals of the range.
#[derive(Debug, ToSchema)]
pub struct AnalyticsTotal {
    counts: AnalyticsCounts,
    rates: AnalyticsRates,
}

/// An analytics result: buckets with counts, ordered by group then time,
/// and the range's totals.
#[derive(Debug, ToSchema)]
pub struct AnalyticsResult {
    buckets: Vec<AnalyticsBucket>,
    total: AnalyticsTotal,
}

/// A place where the node keeps data (mirrors `residency::StorePlace`).
#[derive(Debug, ToSchema)]
pub struct StorePlace {
    /// What it holds: log, projections, access, keys.
    role: String,
    /// How: fjall, sled, files, memory.
    backend: String,
    /// Where: a directory, a file or a URL.
    at: String,
    /// The jurisdiction its operator declared for it: EU or an ISO 3166-1
    /// alpha-2 code.
    jurisdiction: String,
}

/// A tenant and where its data may be kept.
#[derive(Debug, ToSchema)]
pub struct TenantResidency {
    tenant: String,
    allowed: Vec<String>,
}

/// Something kept outside an allowed jurisdiction.
#[derive(Debug, ToSchema)]
pub struct ResidencyViolation {
    /// `node`, or `store <role>`.
    subject: String,
    /// Where it is.
    jurisdiction: String,
    /// Whose allowed jurisdictions it lies outside: `node` or `tenant <name>`.
    outside_of: String,
    /// Those allowed jurisdictions.
    allowed: Vec<String>,
}

/// The residency report of the running node (mirrors
/// `residency::ResidencyReport`).
#[derive(Debug, ToSchema)]
pub struct ResidencyReport {
    /// Whether nothing lies outside an allowed jurisdiction.
    compliant: bool,
    /// The node's own jurisdiction.
    node_jurisdiction: String,
    /// The jurisdictions the node allows.
    node_allowed: Vec<String>,
    stores: Vec<StorePlace>,
    tenants: Vec<TenantResidency>,
    violations: Vec<ResidencyViolation>,
}
