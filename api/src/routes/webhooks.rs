//! `POST /v1/webhooks/{provider}`: provider webhooks in, canonical events
//! appended.
//!
//! Authenticated by a key with the `webhook` scope (or `webhook:<provider>`
//! for this provider, or `ingest`) as a Bearer token or as the basic-auth
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

use crate::auth::WebhookAuth;
use crate::json::{ApiJson, body_problem};
use crate::problem::{Problem, ProblemBody, ProblemType};
use crate::routes::access_bodies::SnsSubscription;
use crate::routes::events::{EventOutcome, Refused, append_events};
use crate::state::AppState;
use crate::webhooks::replay::signature_token;
use crate::webhooks::{
    Authentication, EventSource, Provider, RawPolicy, SnsConfirmationKind, WebhookError,
    WebhookErrorKind, WebhookOutcome,
};

/// A provider event that gave no canonical event: one with no canonical
/// type, or a bad item of a batch (a SendGrid array element, a recipient of
/// an SES record) whose other items were appended.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SkippedEvent {
    /// The JSON path of the event in the payload, or of the bad field of a
    /// bad item (`[3].email`).
    pub field: String,
    /// The provider's event type (`unknown` for an item whose type is not
    /// one the adapter knows).
    pub event_type: String,
    /// The bad item's index in the provider's batch (a SendGrid array, an
    /// SES record's recipient list); absent for an event with no canonical
    /// type and for a body that is one event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index: Option<usize>,
    /// Why it was skipped: `no canonical type`; what is wrong with the bad
    /// item; or `refused by the ledger: ...` (an address that does not
    /// normalise). It names the field and the kind of problem, never a
    /// value.
    #[serde(default)]
    pub reason: String,
}

/// What `reason` says of an event with no canonical type.
pub const NO_CANONICAL_TYPE: &str = "no canonical type";

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
    /// Provider events with no canonical type, and bad items of a batch
    /// (the others were appended; a batch with no usable item answers 400).
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

/// A request-derived text as a log field: control characters and quotes
/// escaped (no forged log lines), at most 200 characters.
pub(crate) fn loggable(text: &str) -> String {
    const MAX: usize = 200;
    let mut out: String = text
        .chars()
        .take(MAX)
        .flat_map(char::escape_debug)
        .collect();
    if text.chars().nth(MAX).is_some() {
        out.push('…');
    }
    out
}

fn now_secs() -> i64 {
    mailledger_core::now_micros() / 1_000_000
}

/// A mapped event the ledger refused, named by where it came from in the
/// payload and by the ledger's reason (which names fields, never values).
fn refused_event(source: Option<&EventSource>, reason: &str) -> SkippedEvent {
    SkippedEvent {
        field: source.map_or_else(String::new, |s| s.field.clone()),
        event_type: source.map_or("unknown", |s| s.event_type).to_owned(),
        index: source.and_then(|s| s.index),
        reason: format!("refused by the ledger: {reason}"),
    }
}

/// Receives a provider webhook: checks its signature, maps it onto
/// canonical events and appends them.
///
/// Providers: `postal`, `ses` (SNS notifications, including subscription
/// confirmations, which are recorded and reported but never followed),
/// `postmark`, `mailgun`, `sendgrid`. Any content type is accepted (SNS
/// sends `text/plain`). A malformed or unknown payload answers 400 naming
/// the field, and nothing is stored. A batch (a SendGrid array, the
/// recipients of an SES record) keeps its usable items and lists each bad
/// one in `skipped`, with its index and what is wrong (never a value); it
/// answers 400 only when no item is usable. Each event's `raw` payload is
/// scrubbed as the tenant's policy drops fields: no subject, IP or user
/// agent unless kept, and never another recipient's address.
#[utoipa::path(
    post,
    path = "/v1/webhooks/{provider}",
    tag = "ingest",
    params(("provider" = String, Path, description = "postal, ses, postmark, mailgun or sendgrid", example = "postmark")),
    request_body(content = Object, description = "The provider's webhook payload, as it sends it", content_type = "application/json",
        example = json!({"RecordType": "Delivery", "MessageStream": "outbound", "MessageID": "883953f4-6105-42a2-a16a-77a8eac79483",
                         "Recipient": "ann@example.org", "DeliveredAt": "2026-01-02T03:04:05Z", "Details": "delivered", "ServerID": 23})),
    responses(
        (status = 200, description = "Appended (or already present), or an SNS confirmation recorded; bad items of a batch are listed in `skipped`", body = WebhookResponse),
        (status = 400, description = "A malformed or unknown payload (or a batch with no usable item), naming the field; nothing was stored", body = ProblemBody, content_type = "application/problem+json"),
        (status = 401, description = "No valid API key, or a bad provider signature", body = ProblemBody, content_type = "application/problem+json"),
        (status = 403, description = "The key has neither `webhook`, nor `webhook:<this provider>`, nor `ingest`", body = ProblemBody, content_type = "application/problem+json"),
        (status = 404, description = "No such provider", body = ProblemBody, content_type = "application/problem+json"),
        (status = 503, description = "The tenant has no secret for this provider (the provider retries)", body = ProblemBody, content_type = "application/problem+json"),
    ),
    security(("bearer" = []), ("basic" = []))
)]
pub async fn receive(
    State(state): State<AppState>,
    auth: WebhookAuth,
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
    // The raw payloads are scrubbed as the tenant's policy drops fields.
    let keep = RawPolicy::from(&state.email.policy(&tenant).await?);
    // Opening the sealed secrets reads the access file and decrypts: off
    // the async threads, with the parse.
    let access = std::sync::Arc::clone(&state.access);
    let t = tenant.clone();
    let (parsed, token) = crate::routes::params::blocking(move || {
        let secrets = access.webhook_secrets(&t)?;
        let parsed = crate::webhooks::parse_with_policy(
            provider,
            &headers,
            &body,
            &secrets,
            keep,
            now_secs(),
        );
        // The once-only token of a signature just verified (Mailgun's).
        let token = parsed
            .is_ok()
            .then(|| signature_token(provider, &body, &secrets))
            .flatten();
        Ok((parsed, token))
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
    // A signature whose token was seen before is a replay (Mailgun signs
    // its token, not the events). The claim is released when nothing gets
    // stored, so that the provider's retry of this delivery still passes.
    if let Some(t) = &token
        && let Err(e) = state.seen_tokens.claim(&tenant, t, now_secs())
    {
        count("replayed");
        return Err(problem(&e));
    }
    let release = |_: &Problem| {
        if let Some(t) = &token {
            state.seen_tokens.release(&tenant, t);
        }
    };
    match outcome {
        WebhookOutcome::Events {
            events,
            skipped,
            authentication: a,
            recipient_scoped,
            sources,
        } => {
            let mut skipped: Vec<SkippedEvent> = skipped
                .into_iter()
                .map(|s| SkippedEvent {
                    reason: s
                        .error
                        .as_ref()
                        .map_or_else(|| NO_CANONICAL_TYPE.to_owned(), ToString::to_string),
                    field: s.field,
                    event_type: s.event_type.to_owned(),
                    index: s.index,
                })
                .collect();
            // Ids that do not tell recipients apart are made per recipient,
            // through the recipient's pseudonym, as they are appended. An
            // event the ledger refuses (an address that does not normalise)
            // is skipped like a bad item, named by where it came from.
            let appended = if events.is_empty() {
                None
            } else {
                let (r, refused) =
                    append_events(&state, &tenant, events, &recipient_scoped, Refused::Event)
                        .await
                        .inspect_err(release)?;
                let nothing_usable = r.events.is_empty()
                    && !refused.is_empty()
                    && skipped.iter().all(|s| s.index.is_some());
                let refused: Vec<SkippedEvent> = refused
                    .into_iter()
                    .map(|s| refused_event(sources.get(s.index), &s.reason))
                    .collect();
                if nothing_usable && let Some(first) = refused.first() {
                    let p = Problem::invalid(format!(
                        "webhook event `{}` refused: {}",
                        first.field, first.reason
                    ));
                    release(&p);
                    count("invalid");
                    return Err(p);
                }
                skipped.extend(refused);
                Some(r)
            };
            count("events");
            Ok(WebhookResponse {
                provider: provider.as_str().to_owned(),
                authentication: authentication(a).to_owned(),
                appended: appended.as_ref().map_or(0, |r| r.appended),
                duplicates: appended.as_ref().map_or(0, |r| r.duplicates),
                events: appended.map(|r| r.events).unwrap_or_default(),
                skipped,
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
            // The topic comes from the request (verified only when SNS
            // certificates are configured): logged escaped and bounded.
            tracing::info!(tenant = %tenant, topic = %loggable(&sub.topic_arn), "SNS subscription confirmation recorded (not followed)");
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
