//! The suppression list: `GET /v1/suppressions`, `POST
//! /v1/suppressions/lookup`, `POST /v1/suppressions` (a manual entry),
//! `POST /v1/suppressions/remove`, and `POST /v1/sends/check` (may I send
//! to this address?).
//!
//! Entries are keyed by the contact's pseudonym, so they survive the
//! contact's erasure. Manual changes are events (`suppressed`,
//! `unsuppressed`) appended to the log like any other; the list is the
//! suppression projection of the log, so a change shows once the projection
//! runner has applied it (its lag is in `/readyz` and `/metrics`). Ingest
//! never waits for projections.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use mailledger_core::crypto::Personal;
use mailledger_core::email::{CanonicalEvent, rfc3339};
use mailledger_projections::entry_json;
use mailledger_projections::suppression::{ALL, Decision, Reason};
use serde::Deserialize;
use serde_json::{Value, json};
use std::time::Duration;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::auth::{Auth, scope};
use crate::json::ApiJson;
use crate::problem::{Problem, ProblemBody, ProblemType};
use crate::routes::events::{EventOutcome, Refused, append_events};
use crate::routes::params::{self, Src};
use crate::routes::schemas;
use crate::state::AppState;

/// How long a removal waits for the suppression projection to reach the
/// log's head before it checks for a complaint entry.
const SETTLE: Duration = Duration::from_secs(2);

/// Parameters of `GET /v1/suppressions`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct SuppressionsQuery {
    /// `next` of the previous page.
    #[param(pattern = "^([0-9a-fA-F]{2}){1,1024}$")]
    pub cursor: Option<String>,
    /// Page size, 1 to 1000 (default 50).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 1000)]
    pub limit: Option<String>,
    /// Also list entries that have expired (default false).
    #[param(value_type = Option<bool>, example = true)]
    pub include_lapsed: Option<String>,
}

/// `POST /v1/suppressions/lookup` and `POST /v1/sends/check`'s contact.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LookupRequest {
    /// The contact's address (turned into its pseudonym; never stored).
    #[schema(value_type = String, format = Email, min_length = 3, max_length = 254, example = "ann@example.org")]
    pub address: Personal,
}

/// `POST /v1/sends/check`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CheckRequest {
    /// The address about to be mailed.
    #[schema(value_type = String, format = Email, min_length = 3, max_length = 254, example = "ann@example.org")]
    pub address: Personal,
    /// `all` (default) or a topic: an entry in `all` suppresses every
    /// scope, an entry in a topic that topic.
    #[schema(min_length = 1, max_length = 256, pattern = "^[^@]*$")]
    pub scope: Option<String>,
}

/// `POST /v1/suppressions`: a manual entry.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddSuppression {
    /// The contact's address (sealed in the event; the entry is keyed by
    /// its pseudonym).
    #[schema(value_type = String, format = Email, min_length = 3, max_length = 254, example = "ann@example.org")]
    pub address: Personal,
    /// `all` (default) or a topic.
    #[schema(min_length = 1, max_length = 256, pattern = "^[^@]*$")]
    pub scope: Option<String>,
    /// Why (free text, 1 to 256 bytes, no personal data, no `@`).
    #[schema(min_length = 1, max_length = 256, pattern = "^[^@]*$")]
    pub reason: String,
    /// When the entry lapses (RFC 3339); never when absent.
    #[schema(format = DateTime)]
    pub expires_at: Option<String>,
    /// The event id, a UUID v7, the idempotency key: its time is the
    /// entry's time, so a retry with the same id is the same event (an id
    /// and a time make an event's identity). A new UUID v7 when absent.
    #[schema(format = Uuid, value_type = Option<String>, pattern = "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-7[0-9a-fA-F]{3}-[89abAB][0-9a-fA-F]{3}-[0-9a-fA-F]{12}$", example = "0190f5d6-4c3a-7b8e-9a1b-2c3d4e5f6a01")]
    pub id: Option<String>,
}

/// `POST /v1/suppressions/remove`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RemoveSuppression {
    /// The contact's address.
    #[schema(value_type = String, format = Email, min_length = 3, max_length = 254, example = "ann@example.org")]
    pub address: Personal,
    /// `all` (default) or a topic.
    #[schema(min_length = 1, max_length = 256, pattern = "^[^@]*$")]
    pub scope: Option<String>,
    /// Why; required to remove a complaint's entry.
    #[schema(min_length = 1, max_length = 256, pattern = "^[^@]*$")]
    pub reason: Option<String>,
    /// The event id, a UUID v7, the idempotency key: its time is the
    /// entry's time, so a retry with the same id is the same event (an id
    /// and a time make an event's identity). A new UUID v7 when absent.
    #[schema(format = Uuid, value_type = Option<String>, pattern = "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-7[0-9a-fA-F]{3}-[89abAB][0-9a-fA-F]{3}-[0-9a-fA-F]{12}$", example = "0190f5d6-4c3a-7b8e-9a1b-2c3d4e5f6a01")]
    pub id: Option<String>,
}

/// The scope of a body, `all` when absent.
fn scope_of(value: Option<String>) -> Result<String, Problem> {
    Ok(params::text(Src::Body, "scope", value)?.unwrap_or_else(|| ALL.to_owned()))
}

/// The id of a body, a new UUID v7 when absent. Only a v7: the entry's
/// time is taken from it, so that a retry carries the same id and time.
fn id_of(value: Option<&str>) -> Result<Uuid, Problem> {
    match value {
        None => Ok(Uuid::now_v7()),
        Some(v) => Uuid::parse_str(v)
            .ok()
            .filter(|id| id.get_version_num() == 7 && id.hyphenated().to_string().len() == v.len())
            .ok_or_else(|| Src::Body.bad("id", "must be a UUID v7 (its time is the entry's time)")),
    }
}

/// The time of a UUID v7 ([`id_of`] gives no other), now for any other.
fn time_of(id: Uuid) -> OffsetDateTime {
    let micros = mailledger_core::time_of_id(id);
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(micros) * 1_000)
        .ok()
        .filter(|_| micros != 0)
        .unwrap_or_else(OffsetDateTime::now_utc)
}

/// A `suppressed` or `unsuppressed` event, built directly so the address
/// is never copied out of its [`Personal`].
fn suppression_event(
    id: Uuid,
    event_type: &str,
    recipient: Personal,
    scope: String,
    reason: Option<String>,
    expires_at: Option<OffsetDateTime>,
) -> CanonicalEvent {
    CanonicalEvent {
        reason,
        scope: Some(scope),
        expires_at,
        ..CanonicalEvent::new(id, event_type, recipient, time_of(id))
    }
}

/// Appends one manual suppression event.
async fn append_one(
    state: &AppState,
    tenant: &str,
    event: CanonicalEvent,
) -> Result<ApiJson<EventOutcome>, Problem> {
    let (out, _) = append_events(state, tenant, vec![event], &[], Refused::Batch)
        .await
        .map_err(|p| {
            // The core names the event's index; here there is one.
            let d = p.detail().strip_prefix("event 0: ").map(str::to_owned);
            match d {
                Some(d) if p.kind() == ProblemType::InvalidRequest => Problem::invalid(d),
                _ => p,
            }
        })?;
    out.events
        .into_iter()
        .next()
        .map(ApiJson)
        .ok_or_else(Problem::internal)
}

/// The tenant's suppression list, a page at a time, in pseudonym order.
///
/// Live entries only, unless `include_lapsed=true`. Reflects the events the
/// projections have applied.
#[utoipa::path(
    get,
    path = "/v1/suppressions",
    operation_id = "list_suppressions",
    tag = "suppressions",
    params(SuppressionsQuery),
    responses(
        (status = 200, description = "A page of entries", body = schemas::SuppressionPage),
        (status = 400, description = "A bad parameter, named", body = ProblemBody, content_type = "application/problem+json"),
        (status = 403, description = "The key lacks the read scope", body = ProblemBody, content_type = "application/problem+json"),
        (status = 503, description = "No projections on this server (`projections-unavailable`)", body = ProblemBody, content_type = "application/problem+json"),
    ),
    security(("bearer" = []), ("basic" = []))
)]
pub async fn list(
    State(state): State<AppState>,
    auth: Auth<scope::Read>,
    query: Result<Query<SuppressionsQuery>, QueryRejection>,
) -> Result<ApiJson<Value>, Problem> {
    let Query(q) = query.map_err(|r| params::query_problem(&r))?;
    let limit = params::limit_text(Src::Query, q.limit.as_deref())?;
    let lapsed = params::boolean(Src::Query, "include_lapsed", q.include_lapsed.as_deref())?;
    let cursor = params::cursor(Src::Query, q.cursor, params::suppression_cursor_len)?;
    let p = params::projections(&state)?;
    let tenant = auth.tenant().to_owned();
    params::blocking(move || {
        let now = params::now_micros();
        let page = p.suppressions(&tenant, cursor.as_deref(), limit, now, lapsed)?;
        let items: Vec<Value> = page.items.iter().map(|e| entry_json(e, now)).collect();
        Ok(ApiJson(json!({ "items": items, "next": page.next })))
    })
    .await
}

/// Every suppression entry of a contact, live or lapsed, in every scope.
///
/// An address another tenant suppressed answers exactly like one never
/// seen: `{"entries": []}`.
#[utoipa::path(
    post,
    path = "/v1/suppressions/lookup",
    tag = "suppressions",
    request_body = LookupRequest,
    responses(
        (status = 200, description = "The contact's entries", body = schemas::SuppressionLookup),
        (status = 400, description = "Not an address, or a bad field", body = ProblemBody, content_type = "application/problem+json"),
        (status = 403, description = "The key lacks the read scope", body = ProblemBody, content_type = "application/problem+json"),
        (status = 503, description = "No projections on this server (`projections-unavailable`)", body = ProblemBody, content_type = "application/problem+json"),
    ),
    security(("bearer" = []), ("basic" = []))
)]
pub async fn lookup(
    State(state): State<AppState>,
    auth: Auth<scope::Read>,
    ApiJson(req): ApiJson<LookupRequest>,
) -> Result<ApiJson<Value>, Problem> {
    let p = params::projections(&state)?;
    let contact = params::pseudonym(&state, auth.tenant(), req.address).await?;
    let now = params::now_micros();
    let tenant = auth.tenant().to_owned();
    let pseudonym = contact.to_string();
    let found = params::blocking(move || Ok(p.suppressions_of(&tenant, &contact)?)).await?;
    let entries: Vec<Value> = found.iter().map(|e| entry_json(e, now)).collect();
    state.accessed(
        auth.caller(),
        "POST /v1/suppressions/lookup",
        [pseudonym],
        [],
        entries.len() as u64,
    );
    Ok(ApiJson(json!({ "entries": entries })))
}

/// Adds a manual suppression: appends a `suppressed` event (scope ingest).
///
/// The entry is the suppression projection's view of that event, so it
/// shows in listings and checks once the projection runner has applied it
/// (this call does not wait). Idempotent by `id`: the same id again appends
/// nothing and answers the original position. A stronger entry in the same
/// scope (a complaint, a hard bounce) stays.
#[utoipa::path(
    post,
    path = "/v1/suppressions",
    tag = "suppressions",
    request_body = AddSuppression,
    responses(
        (status = 200, description = "The `suppressed` event (or the one already holding this id)", body = EventOutcome),
        (status = 400, description = "A bad field, named", body = ProblemBody, content_type = "application/problem+json"),
        (status = 403, description = "The key lacks the ingest scope", body = ProblemBody, content_type = "application/problem+json"),
        (status = 503, description = "No projections on this server (`projections-unavailable`)", body = ProblemBody, content_type = "application/problem+json"),
    ),
    security(("bearer" = []), ("basic" = []))
)]
pub async fn add(
    State(state): State<AppState>,
    auth: Auth<scope::Ingest>,
    ApiJson(req): ApiJson<AddSuppression>,
) -> Result<ApiJson<EventOutcome>, Problem> {
    params::projections(&state)?;
    let scope = scope_of(req.scope)?;
    let reason = params::text(Src::Body, "reason", Some(req.reason))?;
    let expires_at = req
        .expires_at
        .as_deref()
        .map(|t| {
            OffsetDateTime::parse(t, &Rfc3339).map_err(|_| {
                Src::Body.bad(
                    "expires_at",
                    "must be an RFC 3339 time, like 2026-11-22T10:00:00Z",
                )
            })
        })
        .transpose()?;
    let id = id_of(req.id.as_deref())?;
    let event = suppression_event(id, "suppressed", req.address, scope, reason, expires_at);
    append_one(&state, auth.tenant(), event).await
}

/// Removes a suppression: appends an `unsuppressed` event (scope ingest).
///
/// Removing a complaint's entry needs a `reason` (409 `reason-required`
/// otherwise, and nothing is appended): the suppression list ignores a
/// removal of a complaint without one. To judge that, a removal without a
/// reason first waits (up to 2 s) for the suppression projection to reach
/// the log's head, and answers 503 with `Retry-After` if it has not; the
/// removal itself shows once the projection has applied the event.
/// Idempotent by `id`.
#[utoipa::path(
    post,
    path = "/v1/suppressions/remove",
    tag = "suppressions",
    request_body = RemoveSuppression,
    responses(
        (status = 200, description = "The `unsuppressed` event (or the one already holding this id)", body = EventOutcome),
        (status = 400, description = "A bad field, named", body = ProblemBody, content_type = "application/problem+json"),
        (status = 403, description = "The key lacks the ingest scope", body = ProblemBody, content_type = "application/problem+json"),
        (status = 409, description = "The entry is a complaint's and no `reason` was given (`reason-required`)", body = ProblemBody, content_type = "application/problem+json"),
        (status = 503, description = "No projections on this server (`projections-unavailable`), or the suppression list is catching up (`unavailable`, retry)", body = ProblemBody, content_type = "application/problem+json"),
    ),
    security(("bearer" = []), ("basic" = []))
)]
pub async fn remove(
    State(state): State<AppState>,
    auth: Auth<scope::Ingest>,
    ApiJson(req): ApiJson<RemoveSuppression>,
) -> Result<ApiJson<EventOutcome>, Problem> {
    let p = params::projections(&state)?;
    let scope = scope_of(req.scope)?;
    let reason = params::text(Src::Body, "reason", req.reason)?;
    let id = id_of(req.id.as_deref())?;
    if reason.is_none() {
        let contact = params::pseudonym(&state, auth.tenant(), req.address.clone()).await?;
        if !p.wait_for(state.email.log().head(), SETTLE).await {
            return Err(Problem::new(
                ProblemType::Unavailable,
                "the suppression list is catching up with the log; retry shortly",
            )
            .retry_after(1));
        }
        let complaint = p
            .suppressions_of(auth.tenant(), &contact)?
            .iter()
            .any(|e| e.scope == scope && e.reason == Reason::Complaint);
        if complaint {
            return Err(Problem::new(
                ProblemType::ReasonRequired,
                "this entry was made by a complaint: removing it needs a `reason`",
            ));
        }
    }
    let event = suppression_event(id, "unsuppressed", req.address, scope, reason, None);
    append_one(&state, auth.tenant(), event).await
}

/// Before sending: may this address be mailed in this scope?
///
/// Answers `{"allowed": true}`, or `{"allowed": false, ...}` with the
/// entry's reason, scope, since when, the event that made it and its
/// position, and when it lapses. Entries survive the contact's erasure. An
/// ingest key (the sending system's) or a read key may ask. Reflects the
/// events the projections have applied.
#[utoipa::path(
    post,
    path = "/v1/sends/check",
    tag = "suppressions",
    request_body = CheckRequest,
    responses(
        (status = 200, description = "The decision", body = schemas::SendCheck),
        (status = 400, description = "Not an address, or a bad field", body = ProblemBody, content_type = "application/problem+json"),
        (status = 403, description = "The key has neither the ingest nor the read scope", body = ProblemBody, content_type = "application/problem+json"),
        (status = 503, description = "No projections on this server (`projections-unavailable`)", body = ProblemBody, content_type = "application/problem+json"),
    ),
    security(("bearer" = []), ("basic" = []))
)]
pub async fn check(
    State(state): State<AppState>,
    auth: Auth<scope::IngestOrRead>,
    ApiJson(req): ApiJson<CheckRequest>,
) -> Result<ApiJson<Value>, Problem> {
    let p = params::projections(&state)?;
    let scope = params::text(Src::Body, "scope", req.scope)?;
    let contact = params::pseudonym(&state, auth.tenant(), req.address).await?;
    let tenant = auth.tenant().to_owned();
    let decision = params::blocking(move || {
        Ok(p.check(&tenant, &contact, scope.as_deref(), params::now_micros())?)
    })
    .await?;
    let body = match decision {
        Decision::Allowed => {
            state
                .metrics
                .suppression_checks
                .with_label_values(&["allowed"])
                .inc();
            json!({ "allowed": true })
        }
        Decision::Suppressed(e) => {
            state
                .metrics
                .suppression_checks
                .with_label_values(&["suppressed"])
                .inc();
            json!({
                "allowed": false,
                "reason": e.reason.as_str(),
                "scope": e.scope,
                "since": rfc3339(e.since),
                "event_id": e.event_id,
                "position": e.position,
                "expires_at": e.expires_at.map(rfc3339),
            })
        }
    };
    Ok(ApiJson(body))
}
