//! Erasure and export: `POST /v1/erasures`, `GET /v1/erasures` (the
//! register), `GET /v1/erasures/{request_id}`, `POST /v1/contacts/export`.
//! Addresses travel only in request bodies.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use mailledger_core::crypto::Personal;
use mailledger_core::email::{ContactRef, ErasureReceipt, EventBody, ReadEvent};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::auth::{Auth, scope};
use crate::json::ApiJson;
use crate::problem::{Problem, ProblemBody};
use crate::routes::params::{self, Src};
use crate::routes::schemas;
use crate::state::AppState;

/// The most events an export returns; beyond it `truncated` is true.
pub const MAX_EXPORT_EVENTS: usize = 100_000;

/// `POST /v1/erasures`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ErasureRequest {
    /// The contact's address; normalised and hashed, never stored.
    #[schema(value_type = String, format = Email, min_length = 3, max_length = 254, example = "ann@example.org")]
    pub address: Personal,
    /// Your id for the request (1 to 128 of A-Z a-z 0-9 - _ . :); a new
    /// UUID when absent. An id belongs to one contact: the same id for the
    /// same contact returns the same receipt, for another contact 409.
    #[schema(pattern = "^[A-Za-z0-9_.:-]{1,128}$", example = "dsr-2026-0001")]
    pub request_id: Option<String>,
}

/// Proof that a contact's key was destroyed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Receipt {
    /// The request id.
    pub request_id: String,
    /// The erased contact's pseudonym (32 hex digits).
    pub contact: String,
    /// When the key was destroyed (RFC 3339).
    pub erased_at: String,
    /// The position of the `erased` event in the log.
    pub position: u64,
    /// How many of the contact's events became unreadable.
    pub events_unreadable: u64,
    /// Whether the ledger held a key of the contact; false records that it
    /// held no data of the address.
    pub key_found: bool,
}

impl From<ErasureReceipt> for Receipt {
    fn from(r: ErasureReceipt) -> Self {
        Self {
            request_id: r.request_id,
            contact: r.contact,
            erased_at: r.erased_at,
            position: r.position,
            events_unreadable: r.events_unreadable,
            key_found: r.key_found,
        }
    }
}

/// `POST /v1/contacts/export`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ExportRequest {
    /// The contact's address.
    #[schema(value_type = String, format = Email, min_length = 3, max_length = 254, example = "ann@example.org")]
    pub address: Personal,
}

/// Everything held about a contact, decrypted.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ExportResponse {
    /// The contact's pseudonym.
    pub contact: String,
    /// Whether the contact was erased (its personal fields read
    /// `{"erased": true}`).
    pub erased: bool,
    /// The contact's events in order, each personal field in plaintext or
    /// `{"erased": true}`.
    #[schema(value_type = Vec<schemas::ReadEvent>)]
    pub events: Vec<serde_json::Value>,
    /// True when more than the maximum were held and only the first were
    /// returned.
    pub truncated: bool,
}

/// Erases a contact: destroys its key and returns the receipt.
///
/// Afterwards every personal field of its events reads `{"erased": true}`;
/// the log's hash chain still verifies. Idempotent: the same request id for
/// the same contact returns the same receipt; a new request id for a
/// contact erased before returns a receipt of its own. `key_found` false
/// records that the ledger held no data of the address.
#[utoipa::path(
    post,
    path = "/v1/erasures",
    tag = "erasure",
    request_body = ErasureRequest,
    responses(
        (status = 200, description = "The receipt", body = Receipt),
        (status = 400, description = "A bad address or request id", body = ProblemBody, content_type = "application/problem+json"),
        (status = 403, description = "The key lacks the erase scope", body = ProblemBody, content_type = "application/problem+json"),
        (status = 409, description = "`request-id-conflict`: the request id names the erasure of another contact; nothing was erased", body = ProblemBody, content_type = "application/problem+json"),
    ),
    security(("bearer" = []), ("basic" = []))
)]
pub async fn erase(
    State(state): State<AppState>,
    auth: Auth<scope::Erase>,
    ApiJson(req): ApiJson<ErasureRequest>,
) -> Result<ApiJson<Receipt>, Problem> {
    let request_id = req.request_id.unwrap_or_else(|| Uuid::now_v7().to_string());
    let receipt = state
        .email
        .erase(auth.tenant(), ContactRef::Address(req.address), &request_id)
        .await?;
    state.metrics.erasures.inc();
    Ok(ApiJson(receipt.into()))
}

/// Parameters of `GET /v1/erasures`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct RegisterQuery {
    /// `next` of the previous page.
    #[param(pattern = "^[0-9]{1,19}$")]
    pub cursor: Option<String>,
    /// Page size, 1 to 1000 (default 50).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 1000)]
    pub limit: Option<String>,
}

/// A page of the erasure register.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RegisterPage {
    /// Receipts, oldest first.
    pub items: Vec<Receipt>,
    /// The cursor of the next page; `null` on the last.
    pub next: Option<String>,
}

/// The erasure register: every erasure receipt of the tenant, oldest
/// first, a page at a time.
///
/// The record a data protection officer keeps of erasure requests: request
/// id, pseudonym, when, how many events became unreadable and whether a
/// key was found. It reads the log, not the projections.
#[utoipa::path(
    get,
    path = "/v1/erasures",
    operation_id = "list_erasures",
    tag = "erasure",
    params(RegisterQuery),
    responses(
        (status = 200, description = "A page of receipts", body = RegisterPage),
        (status = 400, description = "A bad parameter, named", body = ProblemBody, content_type = "application/problem+json"),
        (status = 403, description = "The key lacks the erase and audit scopes", body = ProblemBody, content_type = "application/problem+json"),
    ),
    security(("bearer" = []), ("basic" = []))
)]
pub async fn register(
    State(state): State<AppState>,
    auth: Auth<scope::EraseOrAudit>,
    query: Result<Query<RegisterQuery>, QueryRejection>,
) -> Result<ApiJson<RegisterPage>, Problem> {
    let Query(q) = query.map_err(|r| params::query_problem(&r))?;
    let limit = params::limit_text(Src::Query, q.limit.as_deref())?;
    let from = params::place(Src::Query, q.cursor.as_deref())?;
    let page = state.email.erasures(auth.tenant(), from, limit + 1).await?;
    let next = (page.len() > limit).then(|| (from + limit as u64).to_string());
    Ok(ApiJson(RegisterPage {
        items: page
            .into_iter()
            .take(limit)
            .map(|(_, r)| r.into())
            .collect(),
        next,
    }))
}

/// The receipt of an earlier erasure request, again.
///
/// Another tenant's request id answers exactly like an unknown one.
#[utoipa::path(
    get,
    path = "/v1/erasures/{request_id}",
    tag = "erasure",
    params(("request_id" = String, Path, description = "The erasure's request id", example = "dsr-2026-0001")),
    responses(
        (status = 200, description = "The receipt", body = Receipt),
        (status = 400, description = "A malformed request id", body = ProblemBody, content_type = "application/problem+json"),
        (status = 404, description = "No such erasure", body = ProblemBody, content_type = "application/problem+json"),
    ),
    security(("bearer" = []), ("basic" = []))
)]
pub async fn receipt(
    State(state): State<AppState>,
    auth: Auth<scope::EraseOrRead>,
    Path(request_id): Path<String>,
) -> Result<ApiJson<Receipt>, Problem> {
    match state.email.receipt(auth.tenant(), &request_id).await? {
        Some(r) => Ok(ApiJson(r.into())),
        None => Err(Problem::not_found("erasure")),
    }
}

/// Everything held about a contact, decrypted: for a data subject access
/// request.
///
/// A contact never seen (or another tenant's) answers with no events.
#[utoipa::path(
    post,
    path = "/v1/contacts/export",
    tag = "erasure",
    request_body = ExportRequest,
    responses(
        (status = 200, description = "The contact's events", body = ExportResponse),
        (status = 400, description = "Not an address", body = ProblemBody, content_type = "application/problem+json"),
        (status = 403, description = "The key lacks the read scope", body = ProblemBody, content_type = "application/problem+json"),
    ),
    security(("bearer" = []), ("basic" = []))
)]
pub async fn export(
    State(state): State<AppState>,
    auth: Auth<scope::Read>,
    ApiJson(req): ApiJson<ExportRequest>,
) -> Result<ApiJson<ExportResponse>, Problem> {
    let tenant = auth.tenant().to_owned();
    // The tenant's secret is made (and synced) on its first use.
    let contact = crate::routes::params::pseudonym(&state, &tenant, req.address).await?;
    let (opened, truncated) = state
        .email
        .open_stream(&tenant, &contact.stream(), MAX_EXPORT_EVENTS)
        .await?;
    let erased = opened
        .iter()
        .any(|e| e.is_erased() || matches!(e.event.body, EventBody::ContactErased { .. }));
    let events: Vec<serde_json::Value> = opened.iter().map(ReadEvent::to_json).collect();
    state.accessed(
        auth.caller(),
        "POST /v1/contacts/export",
        [contact.to_string()],
        opened
            .iter()
            .filter_map(|e| e.event.envelope.message_id.clone()),
        events.len() as u64,
    );
    Ok(ApiJson(ExportResponse {
        contact: contact.to_string(),
        erased,
        events,
        truncated,
    }))
}
