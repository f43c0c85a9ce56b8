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
/// `stream`, `stream_version`, `recorded_at` and `contact`; each personal
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
    /// downloaded.
    sns_certificates: Option<Vec<String>>,
    /// When not empty, the only SNS topics accepted.
    sns_topic_arns: Option<Vec<String>>,
    /// How far (seconds) a signed timestamp may be from now; default 300.
    max_signature_age_secs: Option<i64>,
}
