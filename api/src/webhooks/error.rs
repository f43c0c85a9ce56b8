//! Why a webhook was refused, and the coarse kind the HTTP answer follows.

use super::{MAX_BODY_BYTES, Provider};

/// A refused webhook. No message ever contains a value of the payload: a
/// field is named by its JSON path only.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WebhookError {
    /// The provider name is not one of [`Provider::ALL`].
    #[error("unknown webhook provider")]
    UnknownProvider,
    /// The body is larger than [`MAX_BODY_BYTES`].
    #[error("webhook body larger than {MAX_BODY_BYTES} bytes")]
    TooLarge,
    /// The provider signs but this tenant configured no secret for it and
    /// requires signatures.
    #[error("no {provider} webhook secret is configured and unsigned webhooks are not allowed")]
    NotConfigured {
        /// The provider.
        provider: Provider,
    },
    /// A configured secret cannot be used.
    #[error("the configured {provider} webhook secret is unusable: {reason}")]
    BadSecret {
        /// The provider.
        provider: Provider,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The signature (header or field) is absent.
    #[error("missing webhook signature: {what}")]
    MissingSignature {
        /// Which header or field.
        what: &'static str,
    },
    /// The signature does not verify.
    #[error("bad webhook signature: {what}")]
    BadSignature {
        /// Which header or field.
        what: &'static str,
    },
    /// The signed timestamp is too far from now (a replay, or a clock off).
    #[error("signed timestamp `{field}` is more than {max_age_secs} s from now")]
    StaleTimestamp {
        /// Which header or field.
        field: &'static str,
        /// The allowed distance.
        max_age_secs: i64,
    },
    /// The SNS `SigningCertURL` is not an SNS certificate URL.
    #[error("field `SigningCertURL` is not an https URL on sns.<region>.amazonaws.com")]
    UntrustedCertUrl,
    /// The SNS topic is not among the configured ones.
    #[error("field `TopicArn` is not an allowed SNS topic")]
    TopicNotAllowed,
    /// The signature uses SHA-1, which the tenant's secrets refuse
    /// (`sns_signature_v2_only`, `postal_require_sha256`).
    #[error("webhook signature {what} uses SHA-1, which this tenant's `{setting}` refuses")]
    WeakSignature {
        /// Which header or field.
        what: &'static str,
        /// The setting that refuses it.
        setting: &'static str,
    },
    /// A signature seen before within its age (a Mailgun token used
    /// twice): a captured signature replayed, perhaps with another body.
    #[error("webhook signature {what} was used before (a replay)")]
    Replayed {
        /// Which field.
        what: &'static str,
    },
    /// The body is not JSON.
    #[error("webhook body is not valid JSON (line {line}, column {column})")]
    InvalidJson {
        /// The line of the error.
        line: usize,
        /// The column of the error.
        column: usize,
    },
    /// A field is missing, mistyped or unusable.
    #[error("malformed webhook payload: field `{field}` {problem}")]
    Malformed {
        /// The JSON path of the field.
        field: String,
        /// What is wrong.
        problem: &'static str,
    },
    /// The event type field holds a type this adapter does not know.
    #[error("unknown webhook event type in field `{field}`")]
    UnknownEvent {
        /// The JSON path of the type field.
        field: String,
    },
    /// A mapped event broke a rule of the canonical taxonomy (the core's
    /// message, which names the field and never its value).
    #[error("webhook event refused by the canonical checks: {detail}")]
    Rejected {
        /// The core's message.
        detail: String,
    },
}

/// How the API should answer a [`WebhookError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WebhookErrorKind {
    /// The request is not authentic (401).
    Unauthenticated,
    /// The request is malformed (400).
    Invalid,
    /// The request is too large (413).
    TooLarge,
    /// The tenant's configuration prevents checking it (the provider should
    /// retry later; 503 or 500).
    Configuration,
}

impl WebhookError {
    /// The JSON path (or header name) of the field the error is about, for
    /// a 400 that names it.
    #[must_use]
    pub fn field(&self) -> Option<&str> {
        match self {
            Self::Malformed { field, .. } | Self::UnknownEvent { field } => Some(field),
            Self::MissingSignature { what }
            | Self::BadSignature { what }
            | Self::WeakSignature { what, .. }
            | Self::Replayed { what } => Some(what),
            Self::StaleTimestamp { field, .. } => Some(field),
            Self::UntrustedCertUrl => Some("SigningCertURL"),
            Self::TopicNotAllowed => Some("TopicArn"),
            _ => None,
        }
    }

    /// The kind of error, for choosing the HTTP status.
    #[must_use]
    pub fn kind(&self) -> WebhookErrorKind {
        match self {
            Self::MissingSignature { .. }
            | Self::BadSignature { .. }
            | Self::StaleTimestamp { .. }
            | Self::UntrustedCertUrl
            | Self::TopicNotAllowed
            | Self::WeakSignature { .. }
            | Self::Replayed { .. } => WebhookErrorKind::Unauthenticated,
            Self::NotConfigured { .. } | Self::BadSecret { .. } => WebhookErrorKind::Configuration,
            Self::TooLarge => WebhookErrorKind::TooLarge,
            Self::UnknownProvider
            | Self::InvalidJson { .. }
            | Self::Malformed { .. }
            | Self::UnknownEvent { .. }
            | Self::Rejected { .. } => WebhookErrorKind::Invalid,
        }
    }
}
