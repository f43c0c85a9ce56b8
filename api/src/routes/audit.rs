//! The audit routes: `GET /v1/audit/checkpoints`, the tenant's signed
//! checkpoints, which an auditor checks with `mailledger verify --against`;
//! `POST /v1/audit/replay`, the tenant's events as JSON lines with the
//! chain verified as they are read; `GET /v1/audit/access`, the records
//! of reads of personal data; `POST /v1/audit/as-of`, a message's or a
//! contact's state at a moment.

use axum::body::{Body, Bytes};
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use mailledger_audit::replay::{Replay, ReplayFilter, Shown};
use mailledger_audit::{AccessFilter, AccessRecord, CheckpointJson};
use mailledger_core::crypto::Personal;
use mailledger_core::pseudonym::Pseudonym;
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::{IntoParams, ToSchema};

use crate::auth::{Auth, scope};
use crate::json::ApiJson;
use crate::problem::{Problem, ProblemBody};
use crate::routes::params::{self, Src};
use crate::routes::schemas;
use crate::state::AppState;

/// Parameters of `GET /v1/audit/checkpoints`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct CheckpointsQuery {
    /// `next` of the previous page.
    #[param(pattern = "^[0-9]{1,19}$")]
    pub cursor: Option<String>,
    /// Page size, 1 to 1000 (default 50).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 1000)]
    pub limit: Option<String>,
}

/// A page of signed checkpoints.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CheckpointPage {
    /// Checkpoints, oldest first; each line of an export file is one.
    pub items: Vec<CheckpointJson>,
    /// The cursor of the next page; `null` on the last.
    pub next: Option<String>,
}

/// The tenant's signed checkpoints, oldest first, a page at a time.
///
/// Each signs where the tenant's hash chain stood: the position and hash
/// of its last record, its record count, the time and the node's
/// jurisdiction. Save the items as JSON lines and check the log against
/// them with `mailledger verify --against FILE --public-key KEY`.
#[utoipa::path(
    get,
    path = "/v1/audit/checkpoints",
    tag = "audit",
    params(CheckpointsQuery),
    responses(
        (status = 200, description = "A page of checkpoints", body = CheckpointPage),
        (status = 400, description = "A bad parameter, named", body = ProblemBody, content_type = "application/problem+json"),
        (status = 403, description = "The key lacks the audit scope", body = ProblemBody, content_type = "application/problem+json"),
    ),
    security(("bearer" = []), ("basic" = []))
)]
pub async fn checkpoints(
    State(state): State<AppState>,
    auth: Auth<scope::Audit>,
    query: Result<Query<CheckpointsQuery>, QueryRejection>,
) -> Result<ApiJson<CheckpointPage>, Problem> {
    let Query(q) = query.map_err(|r| params::query_problem(&r))?;
    let limit = params::limit_text(Src::Query, q.limit.as_deref())?;
    let from = params::place(Src::Query, q.cursor.as_deref())?;
    let page =
        mailledger_audit::checkpoints(state.email.log().as_ref(), auth.tenant(), from, limit + 1)
            .await?;
    let next = (page.len() > limit).then(|| (from + limit as u64).to_string());
    Ok(ApiJson(CheckpointPage {
        items: page.iter().take(limit).map(|(_, c)| c.to_json()).collect(),
        next,
    }))
}

/// `POST /v1/audit/replay`: which events to replay. Every filter given must
/// hold.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReplayRequest {
    /// The first position to show.
    pub from_position: Option<u64>,
    /// The position to stop before.
    pub to_position: Option<u64>,
    /// Events that occurred at or after this time (RFC 3339).
    #[schema(format = DateTime, example = "2026-03-01T00:00:00Z")]
    pub since: Option<String>,
    /// Events that occurred before this time (RFC 3339).
    #[schema(format = DateTime, example = "2026-04-01T00:00:00Z")]
    pub until: Option<String>,
    /// One message's events.
    #[schema(min_length = 1, max_length = 256)]
    pub message_id: Option<String>,
    /// Event types to show (`sent`, `bounced`, …; `accessed` and
    /// `checkpoint` show the audit's own records), at most 32.
    #[schema(max_items = 32)]
    pub types: Option<Vec<String>>,
    /// One contact's events, by address (normalised and hashed, never
    /// stored or logged).
    #[schema(value_type = Option<String>, format = Email, min_length = 3, max_length = 254)]
    pub contact: Option<Personal>,
    /// One contact's events, by pseudonym (32 hex digits).
    #[schema(pattern = "^[0-9a-fA-F]{32}$")]
    pub contact_pseudonym: Option<String>,
    /// Records as stored (sealed fields as ciphertext), nothing opened.
    #[serde(default)]
    pub raw: bool,
}

/// Replays the tenant's events in log order as JSON lines, verifying its
/// hash chain as it reads.
///
/// Each line is an event with its envelope and personal fields: opened,
/// `{"erased": true}` where the contact was erased, or, with `raw`, the
/// record as stored. The last line is `{"summary": {...}}`: events shown,
/// records read, erased contacts met, the chain head reached and whether
/// every record verified (if not, the first bad position). A failure
/// after the first line ends the stream with `{"error": "..."}`.
#[utoipa::path(
    post,
    path = "/v1/audit/replay",
    tag = "audit",
    request_body = ReplayRequest,
    responses(
        (status = 200, description = "Events, then the summary, one JSON object per line", content_type = "application/x-ndjson", body = String),
        (status = 400, description = "A bad filter, named", body = ProblemBody, content_type = "application/problem+json"),
        (status = 403, description = "The key lacks the audit scope", body = ProblemBody, content_type = "application/problem+json"),
    ),
    security(("bearer" = []), ("basic" = []))
)]
pub async fn replay(
    State(state): State<AppState>,
    auth: Auth<scope::Audit>,
    ApiJson(req): ApiJson<ReplayRequest>,
) -> Result<Response, Problem> {
    let tenant = auth.tenant().to_owned();
    let since = params::opt_time(Src::Body, "since", req.since.as_deref())?;
    let until = params::opt_time(Src::Body, "until", req.until.as_deref())?;
    let time = (since.is_some() || until.is_some())
        .then(|| since.unwrap_or(i64::MIN)..until.unwrap_or(i64::MAX));
    // Positions are documented as int64: larger ones are refused, as the
    // document says, not read as "to the end".
    for (name, p) in [
        ("from_position", req.from_position),
        ("to_position", req.to_position),
    ] {
        if p.is_some_and(|p| i64::try_from(p).is_err()) {
            return Err(Src::Body.bad(name, "is out of range"));
        }
    }
    let positions = (req.from_position.is_some() || req.to_position.is_some())
        .then(|| req.from_position.unwrap_or(0)..req.to_position.unwrap_or(u64::MAX));
    if req.contact.is_some() && req.contact_pseudonym.is_some() {
        return Err(Src::Body.bad("contact", "give contact or contact_pseudonym, not both"));
    }
    let mut contact = match &req.contact_pseudonym {
        Some(hex) => Some(
            Pseudonym::from_hex(hex)
                .map_err(|_| Src::Body.bad("contact_pseudonym", "must be 32 hex digits"))?,
        ),
        None => None,
    };
    if let Some(address) = req.contact {
        contact = Some(params::pseudonym(&state, &tenant, address).await?);
    }
    if req.types.as_ref().is_some_and(|t| t.len() > 32) {
        return Err(Src::Body.bad("types", "may name at most 32 types"));
    }
    let types = req.types;
    let filter = ReplayFilter {
        positions,
        time,
        message_id: match req.message_id {
            Some(m) if m.is_empty() || m.len() > 256 => {
                return Err(Src::Body.bad("message_id", "must be 1 to 256 bytes"));
            }
            m => m,
        },
        types,
        contact,
    };
    let shown = if req.raw { Shown::Raw } else { Shown::Opened };
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(4);
    let email = std::sync::Arc::clone(&state.email);
    let caller = auth.caller().clone();
    tokio::spawn(async move {
        let mut replay = match Replay::new(email, &tenant, filter, shown) {
            Ok(r) => r,
            Err(e) => {
                let _ = tx.send(line(&json!({ "error": e.to_string() }))).await;
                return;
            }
        };
        loop {
            match replay.next_page().await {
                Ok(Some(page)) => {
                    if !page.lines.is_empty() && tx.send(Bytes::from(page.lines)).await.is_err() {
                        break;
                    }
                }
                Ok(None) => {
                    let _ = tx.send(line(&json!({ "summary": replay.summary() }))).await;
                    break;
                }
                Err(e) => {
                    tracing::error!(error = %e, "replay failed");
                    let _ = tx.send(line(&json!({ "error": e.to_string() }))).await;
                    break;
                }
            }
        }
        // What was opened, however far the replay went.
        if shown == Shown::Opened && replay.summary().events > 0 {
            let (contacts, messages) = replay.opened();
            state.accessed(
                &caller,
                "POST /v1/audit/replay",
                contacts,
                messages,
                replay.summary().events,
            );
        }
    });
    let body = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|b| (Ok::<_, std::convert::Infallible>(b), rx))
    });
    Ok((
        [(header::CONTENT_TYPE, "application/x-ndjson")],
        Body::from_stream(body),
    )
        .into_response())
}

fn line(v: &serde_json::Value) -> Bytes {
    let mut b = v.to_string().into_bytes();
    b.push(b'\n');
    Bytes::from(b)
}

/// Parameters of `GET /v1/audit/access`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AccessQuery {
    /// Reads that opened this contact's data, by pseudonym (32 hex digits).
    #[param(pattern = "^[0-9a-fA-F]{32}$")]
    pub contact: Option<String>,
    /// Reads made with this key id (or `operator`, the command line).
    #[param(pattern = "^[A-Za-z0-9_-]{1,64}$")]
    pub key_id: Option<String>,
    /// Reads at or after this time (RFC 3339).
    #[param(format = DateTime)]
    pub from: Option<String>,
    /// Reads before this time (RFC 3339).
    #[param(format = DateTime)]
    pub to: Option<String>,
    /// `next` of the previous page.
    #[param(pattern = "^[0-9]{1,19}$")]
    pub cursor: Option<String>,
    /// Page size, 1 to 1000 (default 50).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 1000)]
    pub limit: Option<String>,
}

/// A page of access records.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AccessPage {
    /// Records, oldest first.
    pub items: Vec<AccessRecord>,
    /// The cursor of the next page; `null` on the last.
    pub next: Option<String>,
}

/// Who read personal data of the tenant: one record per read that opened
/// it (timelines, message pages and searches, suppression lookups by
/// address, exports, decrypted replays, and the command line's `read` and
/// `replay`), oldest first.
///
/// Each names the key id (or `operator`), the route, the contacts'
/// pseudonyms and the messages read, how many events, and when; never an
/// address. Records are written in batches a moment after the read.
#[utoipa::path(
    get,
    path = "/v1/audit/access",
    tag = "audit",
    params(AccessQuery),
    responses(
        (status = 200, description = "A page of access records", body = AccessPage),
        (status = 400, description = "A bad parameter, named", body = ProblemBody, content_type = "application/problem+json"),
        (status = 403, description = "The key lacks the audit scope", body = ProblemBody, content_type = "application/problem+json"),
    ),
    security(("bearer" = []), ("basic" = []))
)]
pub async fn access(
    State(state): State<AppState>,
    auth: Auth<scope::Audit>,
    query: Result<Query<AccessQuery>, QueryRejection>,
) -> Result<ApiJson<AccessPage>, Problem> {
    let Query(q) = query.map_err(|r| params::query_problem(&r))?;
    let limit = params::limit_text(Src::Query, q.limit.as_deref())?;
    let from_place = params::place(Src::Query, q.cursor.as_deref())?;
    let since = params::opt_time(Src::Query, "from", q.from.as_deref())?;
    let until = params::opt_time(Src::Query, "to", q.to.as_deref())?;
    if let Some(c) = &q.contact
        && Pseudonym::from_hex(c).is_err()
    {
        return Err(Src::Query.bad("contact", "must be a pseudonym, 32 hex digits"));
    }
    if let Some(k) = &q.key_id
        && (k.is_empty()
            || k.len() > 64
            || !k
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-'))
    {
        return Err(Src::Query.bad("key_id", "is not a key id"));
    }
    let filter = AccessFilter {
        contact: q.contact,
        key_id: q.key_id,
        time: (since.is_some() || until.is_some())
            .then(|| since.unwrap_or(i64::MIN)..until.unwrap_or(i64::MAX)),
    };
    // Records of reads just made are written a moment later: write them.
    if let Some(log) = &state.access_log {
        log.flush().await;
    }
    let (items, next) = mailledger_audit::access_records(
        state.email.log().as_ref(),
        auth.tenant(),
        &filter,
        from_place,
        limit,
    )
    .await?;
    Ok(ApiJson(AccessPage {
        items,
        next: next.map(|n| n.to_string()),
    }))
}

/// `POST /v1/audit/as-of`: whose state, and when. Give `message_id`, or a
/// contact (by address or pseudonym).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AsOfRequest {
    /// The moment (RFC 3339): what the ledger had recorded by then.
    #[schema(format = DateTime, example = "2026-03-01T09:00:00Z")]
    pub at: String,
    /// A message: its status and timeline then.
    #[schema(min_length = 1, max_length = 256)]
    pub message_id: Option<String>,
    /// A contact by address: its suppressions then, in every scope.
    #[schema(value_type = Option<String>, format = Email, min_length = 3, max_length = 254)]
    pub contact: Option<Personal>,
    /// A contact by pseudonym (32 hex digits).
    #[schema(pattern = "^[0-9a-fA-F]{32}$")]
    pub contact_pseudonym: Option<String>,
}

/// A message's or a contact's state at a moment.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AsOfResponse {
    /// The moment asked about.
    pub as_of: String,
    /// The log's position then: records before it were known.
    pub position: u64,
    /// The message asked about.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message_id: Option<String>,
    /// The message then (`null`: it had no event yet).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<schemas::MessageTimeline>)]
    pub message: Option<serde_json::Value>,
    /// The contact asked about (pseudonym).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub contact: Option<String>,
    /// Whether an entry suppressed the contact then.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub suppressed: Option<bool>,
    /// The contact's suppression entries then, in every scope.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<schemas::SuppressionEntry>>)]
    pub entries: Option<Vec<serde_json::Value>>,
}

/// A message's status and timeline, or a contact's suppressions in every
/// scope, as the projections held them at a moment: rebuilt from the log
/// alone, through the same projection code as the live ones.
///
/// Answers "was this address suppressed when you sent to it on 1 March?".
/// Personal fields open under today's keys, so an erased contact reads
/// erased at every moment.
#[utoipa::path(
    post,
    path = "/v1/audit/as-of",
    tag = "audit",
    request_body = AsOfRequest,
    responses(
        (status = 200, description = "The state then", body = AsOfResponse),
        (status = 400, description = "A bad field, named", body = ProblemBody, content_type = "application/problem+json"),
        (status = 403, description = "The key lacks the audit scope", body = ProblemBody, content_type = "application/problem+json"),
    ),
    security(("bearer" = []), ("basic" = []))
)]
pub async fn as_of(
    State(state): State<AppState>,
    auth: Auth<scope::Audit>,
    ApiJson(req): ApiJson<AsOfRequest>,
) -> Result<ApiJson<AsOfResponse>, Problem> {
    use mailledger_audit::as_of::{cut_at, message_as_of, suppression_as_of};
    let tenant = auth.tenant().to_owned();
    let at = params::time(Src::Body, "at", &req.at)?;
    let given = usize::from(req.message_id.is_some())
        + usize::from(req.contact.is_some())
        + usize::from(req.contact_pseudonym.is_some());
    if given != 1 {
        return Err(Src::Body.bad(
            "message_id",
            "give exactly one of message_id, contact and contact_pseudonym",
        ));
    }
    let log = state.email.log();
    let cut = cut_at(log.as_ref(), at).await?;
    let mut answer = AsOfResponse {
        as_of: mailledger_core::email::rfc3339(at),
        position: cut,
        message_id: None,
        message: None,
        contact: None,
        suppressed: None,
        entries: None,
    };
    if let Some(id) = req.message_id {
        if id.is_empty() || id.len() > 256 {
            return Err(Src::Body.bad("message_id", "must be 1 to 256 bytes"));
        }
        let view = message_as_of(&state.email, &tenant, &id, cut).await?;
        if let Some(v) = &view {
            state.accessed(
                auth.caller(),
                "POST /v1/audit/as-of",
                v.timeline
                    .iter()
                    .map(|e| e.event.envelope.contact.to_string()),
                [id.clone()],
                v.timeline.len() as u64,
            );
        }
        answer.message = Some(view.map_or(serde_json::Value::Null, |v| v.to_json()));
        answer.message_id = Some(id);
        return Ok(ApiJson(answer));
    }
    let contact = match (req.contact, req.contact_pseudonym) {
        (Some(address), _) => params::pseudonym(&state, &tenant, address).await?,
        (None, hex) => Pseudonym::from_hex(hex.as_deref().unwrap_or_default())
            .map_err(|_| Src::Body.bad("contact_pseudonym", "must be 32 hex digits"))?,
    };
    let entries = suppression_as_of(&state.email, &tenant, &contact, cut).await?;
    answer.suppressed = Some(entries.iter().any(|e| e.active_at(at)));
    answer.entries = Some(
        entries
            .iter()
            .map(|e| mailledger_projections::entry_json(e, at))
            .collect(),
    );
    answer.contact = Some(contact.to_string());
    Ok(ApiJson(answer))
}
