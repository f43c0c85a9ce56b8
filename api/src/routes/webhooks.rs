//! `POST /v1/webhooks/{provider}`: provider webhooks in, canonical events
//! appended.
//!
//! Authenticated by an ingest key as a Bearer token or as the basic-auth
//! password (`https://api:mlk_…@host/v1/webhooks/postmark`), and, where the
//! provider signs, by the signature under the tenant's webhook secrets (see
//! [`crate::webhooks`]). Event ids derive from the provider's own event ids,
//! so a retried webhook appends nothing.
//!
//! An SNS subscription confirmation is recorded in the access store (the
//! tenant listing of the admin API shows it, with its `SubscribeURL`) and
//! reported in the answer; mailledger never follows the URL: an operator
//! confirms the subscription by opening it.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::auth::{Auth, scope};
use crate::json::{ApiJson, body_problem};
use crate::problem::{Problem, ProblemBody, ProblemType};
use crate::routes::access_bodies::SnsSubscription;
use crate::routes::events::{EventOutcome, append_events};
use crate::state::AppState;
use crate::webhooks::{
    Authentication, Provider, SnsConfirmationKind, WebhookError, WebhookErrorKind, WebhookOutcome,
};

/// A provider event that maps to no canonical type (not an error).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SkippedEvent {
    /// The JSON path of the event in the payload.
    pub field: String,
    /// The provider's event type.
    pub event_type: String,
}

/// The answer to a webhook.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct WebhookResponse {
    /// The provider.
    pub provider: String,
    /// `verified` (signature checked), `unverified` (no secret configured
    /// and unsigned webhooks allowed) or `provider_does_not_sign`.
    pub authentication: String,
    /// Events written by this request.
    pub appended: usize,
    /// Events already in the log (a retried webhook).
    pub duplicates: usize,
    /// One outcome per canonical event.
    pub events: Vec<EventOutcome>,
    /// Provider events with no canonical type.
    pub skipped: Vec<SkippedEvent>,
    /// An SNS subscription (un)confirmation: recorded, never followed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subscription_confirmation: Option<SnsSubscription>,
}

fn authentication(a: Authentication) -> &'static str {
    match a {
        Authentication::Verified => "verified",
        Authentication::Unverified => "unverified",
        Authentication::ProviderDoesNotSign => "provider_does_not_sign",
    }
}

fn problem(e: &WebhookError) -> Problem {
    match e.kind() {
        WebhookErrorKind::Invalid => Problem::invalid(e.to_string()),
        WebhookErrorKind::Unauthenticated => Problem::new(ProblemType::BadSignature, e.to_string()),
        WebhookErrorKind::TooLarge => {
            Problem::for_status(axum::http::StatusCode::PAYLOAD_TOO_LARGE)
        }
        WebhookErrorKind::Configuration => Problem::new(
            ProblemType::NotConfigured,
            format!(
                "{e}; an operator sets it with PUT /v1/admin/tenants/{{tenant}}/webhook-secrets or `mailledger tenant webhook-secrets`"
            ),
        )
        .retry_after(60),
    }
}

fn now_secs() -> i64 {
    mailledger_core::now_micros() / 1_000_000
}

/// Receives a provider webhook: checks its signature, maps it onto
/// canonical events and appends them.
///
/// Providers: `postal`, `ses` (SNS notifications, including subscription
/// confirmations, which are recorded and reported but never followed),
/// `postmark`, `mailgun`, `sendgrid`. Any content type is accepted (SNS
/// sends `text/plain`). A malformed or unknown payload answers 400 naming
/// the field, and nothing is stored.
#[utoipa::path(
    post,
    path = "/v1/webhooks/{provider}",
    tag = "ingest",
    params(("provider" = String, Path, description = "postal, ses, postmark, mailgun or sendgrid")),
    request_body(content = Object, description = "The provider's webhook payload, as it sends it", content_type = "application/json"),
    responses(
        (status = 200, description = "Appended (or already present), or an SNS confirmation recorded", body = WebhookResponse),
        (status = 400, description = "A malformed or unknown payload, naming the field; nothing was stored", body = ProblemBody, content_type = "application/problem+json"),
        (status = 401, description = "No valid API key, or a bad provider signature", body = ProblemBody, content_type = "application/problem+json"),
        (status = 403, description = "The key lacks the ingest scope", body = ProblemBody, content_type = "application/problem+json"),
        (status = 404, description = "No such provider", body = ProblemBody, content_type = "application/problem+json"),
        (status = 503, description = "The tenant has no secret for this provider (the provider retries)", body = ProblemBody, content_type = "application/problem+json"),
    ),
    security(("bearer" = []), ("basic" = []))
)]
pub async fn receive(
    State(state): State<AppState>,
    auth: Auth<scope::Ingest>,
    Path(provider): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<ApiJson<WebhookResponse>, Problem> {
    let Ok(provider) = provider.parse::<Provider>() else {
        return Err(Problem::not_found("webhook provider"));
    };
    let body = body.map_err(|r| body_problem(&r))?;
    let tenant = auth.tenant().to_owned();
    let work = deliver(state.clone(), tenant, provider, headers, body);
    state.run_ingest(work).await.map(ApiJson)
}

/// Checks, maps and appends one webhook delivery for `tenant`.
async fn deliver(
    state: AppState,
    tenant: String,
    provider: Provider,
    headers: HeaderMap,
    body: Bytes,
) -> Result<WebhookResponse, Problem> {
    let count = |outcome: &str| {
        state
            .metrics
            .webhooks
            .with_label_values(&[provider.as_str(), outcome])
            .inc();
    };
    // Opening the sealed secrets reads the access file and decrypts: off
    // the async threads, with the parse.
    let access = std::sync::Arc::clone(&state.access);
    let t = tenant.clone();
    let parsed = crate::routes::params::blocking(move || {
        let secrets = access.webhook_secrets(&t)?;
        Ok(crate::webhooks::parse(
            provider,
            &headers,
            &body,
            &secrets,
            now_secs(),
        ))
    })
    .await?;
    let outcome = match parsed {
        Ok(o) => o,
        Err(e) => {
            count(match e.kind() {
                WebhookErrorKind::Invalid | WebhookErrorKind::TooLarge => "invalid",
                WebhookErrorKind::Unauthenticated => "bad_signature",
                WebhookErrorKind::Configuration => "not_configured",
            });
            return Err(problem(&e));
        }
    };
    match outcome {
        WebhookOutcome::Events {
            events,
            skipped,
            authentication: a,
            recipient_scoped,
        } => {
            // Ids that do not tell recipients apart are made per recipient,
            // through the recipient's pseudonym, as they are appended.
            let appended = if events.is_empty() {
                None
            } else {
                Some(append_events(&state, &tenant, events, &recipient_scoped).await?)
            };
            count("events");
            Ok(WebhookResponse {
                provider: provider.as_str().to_owned(),
                authentication: authentication(a).to_owned(),
                appended: appended.as_ref().map_or(0, |r| r.appended),
                duplicates: appended.as_ref().map_or(0, |r| r.duplicates),
                events: appended.map(|r| r.events).unwrap_or_default(),
                skipped: skipped
                    .into_iter()
                    .map(|s| SkippedEvent {
                        field: s.field,
                        event_type: s.event_type.to_owned(),
                    })
                    .collect(),
                subscription_confirmation: None,
            })
        }
        WebhookOutcome::SubscriptionConfirmation(c) => {
            let sub = mailledger_access::SnsSubscription {
                kind: match c.kind {
                    SnsConfirmationKind::Subscribe => "subscribe",
                    SnsConfirmationKind::Unsubscribe => "unsubscribe",
                }
                .to_owned(),
                topic_arn: c.topic_arn,
                subscribe_url: c.subscribe_url,
                message_id: c.message_id,
                received_at: mailledger_core::email::rfc3339(
                    i64::try_from(c.timestamp.unix_timestamp_nanos() / 1000).unwrap_or(0),
                ),
            };
            let record = sub.clone();
            let access = std::sync::Arc::clone(&state.access);
            let t = tenant.clone();
            crate::routes::params::blocking(move || {
                access
                    .record_sns_subscription(&t, record)
                    .map_err(Problem::from)
            })
            .await?;
            count("subscription");
            tracing::info!(tenant = %tenant, topic = %sub.topic_arn, "SNS subscription confirmation recorded (not followed)");
            Ok(WebhookResponse {
                provider: provider.as_str().to_owned(),
                authentication: authentication(c.authentication).to_owned(),
                appended: 0,
                duplicates: 0,
                events: Vec::new(),
                skipped: Vec::new(),
                subscription_confirmation: Some(sub.into()),
            })
        }
    }
}
