//! OpenAPI schemas for types of `mailledger-core`, which does not depend on
//! utoipa. They mirror the core types field by field; only the document
//! uses them.

#![allow(dead_code)]

use utoipa::ToSchema;

/// One email event in canonical JSON, flat. Which fields an event may carry
/// depends on its `type`; unknown fields and message bodies are refused.
/// Personal fields (`recipient`, `subject`, `diagnostic`, `ip`,
/// `user_agent`, `url`, `raw`) are sealed under the contact's key before
/// anything is stored.
#[derive(Debug, ToSchema)]
pub struct CanonicalEvent {
    /// The idempotency key: the same id twice is one event.
    #[schema(format = Uuid, value_type = String)]
    id: String,
    /// sent, rejected, deferred, delivered, bounced, complained, opened,
    /// clicked, unsubscribed, resubscribed, suppressed, unsuppressed.
    r#type: String,
    message_id: Option<String>,
    /// The recipient's address (personal; sealed).
    recipient: String,
    /// When it happened at the provider (RFC 3339).
    #[schema(format = DateTime)]
    occurred_at: String,
    provider: Option<String>,
    provider_event_id: Option<String>,
    tags: Option<Vec<String>>,
    campaign: Option<String>,
    sending_domain: Option<String>,
    /// The raw provider payload (personal; sealed).
    raw: Option<String>,
    /// sent: the subject (sealed; kept only if the tenant's policy says so).
    subject: Option<String>,
    /// sent: size in bytes.
    size: Option<u64>,
    /// rejected: suppressed, invalid, policy, quota; suppressed/unsuppressed: free text.
    reason: Option<String>,
    /// rejected: detail.
    detail: Option<String>,
    /// deferred: attempt number.
    attempt: Option<u32>,
    /// deferred: SMTP code.
    smtp_code: Option<u16>,
    /// deferred: enhanced status code.
    enhanced_status: Option<String>,
    /// deferred, delivered: the MX host.
    mx_host: Option<String>,
    /// deferred: the next retry (RFC 3339).
    #[schema(format = DateTime)]
    next_retry_at: Option<String>,
    /// delivered: the SMTP response.
    smtp_response: Option<String>,
    /// delivered: whether TLS was used.
    tls: Option<bool>,
    /// bounced: hard, soft, block, undetermined.
    class: Option<String>,
    /// bounced: the provider's sub-type.
    sub_type: Option<String>,
    /// bounced: the status code.
    status: Option<String>,
    /// bounced: the diagnostic text (personal; sealed).
    diagnostic: Option<String>,
    /// complained: the feedback type.
    feedback_type: Option<String>,
    /// opened, clicked: IP address (personal; sealed; kept only if the policy says so).
    ip: Option<String>,
    /// opened, clicked: user agent (personal; sealed; kept only if the policy says so).
    user_agent: Option<String>,
    /// opened: a machine open.
    machine: Option<bool>,
    /// clicked: the URL (personal; sealed).
    url: Option<String>,
    /// clicked: a bot click.
    bot: Option<bool>,
    /// unsubscribed, resubscribed, suppressed, unsuppressed: `all` or a topic.
    scope: Option<String>,
    /// suppressed: when the suppression ends (RFC 3339).
    #[schema(format = DateTime)]
    expires_at: Option<String>,
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
    /// The address, or `{"erased": true}`.
    #[schema(value_type = Object)]
    recipient: Option<serde_json::Value>,
}

/// A tenant's webhook secrets: every field is optional. Without a secret
/// for a provider that signs (Postal, SES via SNS, Mailgun, SendGrid) its
/// webhooks are refused unless `require_signatures` is false; Postmark signs
/// nothing and relies on the API key alone.
#[derive(Debug, ToSchema)]
pub struct WebhookSecrets {
    /// Refuse webhooks of a signing provider without a configured secret
    /// (default true).
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
    sns_certificates: Option<Vec<String>>,
    /// The only SNS topics accepted (their ARNs). Required with
    /// `sns_certificates`: SNS signs every AWS account's topics with the
    /// same certificates, so only this list makes a signed message yours.
    #[schema(example = json!(["arn:aws:sns:eu-west-1:123456789012:ses-events"]))]
    sns_topic_arns: Option<Vec<String>>,
    /// Refuse SNS `SignatureVersion` 1 (SHA1withRSA); accept only version 2
    /// (SHA256withRSA, the topic's `SignatureVersion` attribute). Default
    /// false.
    sns_signature_v2_only: Option<bool>,
    /// Refuse Postal webhooks signed only with SHA-1 (`X-Postal-Signature`);
    /// accept only `X-Postal-Signature-256`. Default false.
    postal_require_sha256: Option<bool>,
    /// How far (seconds) a signed timestamp (Mailgun's, SendGrid's, the SNS
    /// `Timestamp`) may be from now, either way; default 300. SNS keeps a
    /// message's `Timestamp` across delivery retries: with a delivery policy
    /// that retries for longer, raise this to match. Mailgun tokens are
    /// remembered this long and a repeated one is refused.
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
    #[schema(value_type = Object)]
    recipient: Option<serde_json::Value>,
    /// The subject (when the tenant keeps subjects), or `{"erased": true}`.
    #[schema(value_type = Object)]
    subject: Option<serde_json::Value>,
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
    #[schema(value_type = Object)]
    recipient: Option<serde_json::Value>,
    /// The subject, or `{"erased": true}`.
    #[schema(value_type = Object)]
    subject: Option<serde_json::Value>,
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
