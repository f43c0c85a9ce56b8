//! The delivery log: `GET /v1/messages/{id}` (a message's timeline),
//! `GET /v1/messages` (a filtered listing) and `POST /v1/messages/search`
//! (the same filters plus the recipient's address, which never goes in a
//! URL).
//!
//! These read the projections, which follow the log: an event appended a
//! moment ago shows once the projection runner has applied it (its lag is
//! in `/readyz` and `/metrics`). Ingest never waits for them.

use std::sync::Arc;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use mailledger_access::Caller;
use mailledger_core::crypto::Personal;
use mailledger_projections::delivery::{MessageFilter, Status};
use mailledger_projections::row_json;
use serde::Deserialize;
use serde_json::{Value, json};
use utoipa::{IntoParams, ToSchema};

use crate::auth::{Auth, scope};
use crate::json::ApiJson;
use crate::problem::{Problem, ProblemBody};
use crate::routes::params::{self, Src};
use crate::routes::schemas;
use crate::state::AppState;

/// Filters of `GET /v1/messages`. Every filter given must hold; messages
/// come newest first (by their first event's time).
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct MessagesQuery {
    /// Current status: sent, deferred, delivered, bounced, rejected or
    /// complained.
    #[param(
        pattern = "^(sent|deferred|delivered|bounced|rejected|complained)$",
        example = "delivered"
    )]
    pub status: Option<String>,
    /// Carries this tag.
    #[param(min_length = 1, max_length = 256, pattern = "^[^@]*$")]
    pub tag: Option<String>,
    /// Belongs to this campaign.
    #[param(min_length = 1, max_length = 256, pattern = "^[^@]*$")]
    pub campaign: Option<String>,
    /// Sent from this domain.
    #[param(min_length = 1, max_length = 256, pattern = "^[^@]*$")]
    pub sending_domain: Option<String>,
    /// Sent to an address of this domain.
    #[param(min_length = 1, max_length = 256, pattern = "^[^@]*$")]
    pub recipient_domain: Option<String>,
    /// First event at or after this time (RFC 3339); with `to`, before it
    /// (400 otherwise).
    #[param(format = DateTime)]
    pub from: Option<String>,
    /// First event before this time (RFC 3339).
    #[param(format = DateTime)]
    pub to: Option<String>,
    /// `next` of the previous page.
    #[param(pattern = "^[0-9a-fA-F]{32}$")]
    pub cursor: Option<String>,
    /// Page size, 1 to 1000 (default 50).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 1000)]
    pub limit: Option<String>,
}

/// `POST /v1/messages/search`: the filters of `GET /v1/messages`, plus the
/// recipient's address.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SearchRequest {
    /// Messages to this address (turned into its pseudonym; never stored).
    #[schema(value_type = Option<String>, format = Email, min_length = 3, max_length = 254, example = "ann@example.org")]
    pub recipient: Option<Personal>,
    /// Current status: sent, deferred, delivered, bounced, rejected or
    /// complained.
    #[schema(pattern = "^(sent|deferred|delivered|bounced|rejected|complained)$")]
    pub status: Option<String>,
    /// Carries this tag.
    #[schema(min_length = 1, max_length = 256, pattern = "^[^@]*$")]
    pub tag: Option<String>,
    /// Belongs to this campaign.
    #[schema(min_length = 1, max_length = 256, pattern = "^[^@]*$")]
    pub campaign: Option<String>,
    /// Sent from this domain.
    #[schema(min_length = 1, max_length = 256, pattern = "^[^@]*$")]
    pub sending_domain: Option<String>,
    /// Sent to an address of this domain.
    #[schema(min_length = 1, max_length = 256, pattern = "^[^@]*$")]
    pub recipient_domain: Option<String>,
    /// First event at or after this time (RFC 3339); with `to`, before it
    /// (400 otherwise).
    #[schema(format = DateTime)]
    pub from: Option<String>,
    /// First event before this time (RFC 3339).
    #[schema(format = DateTime)]
    pub to: Option<String>,
    /// `next` of the previous page.
    #[schema(pattern = "^[0-9a-fA-F]{32}$")]
    pub cursor: Option<String>,
    /// Page size, 1 to 1000 (default 50).
    #[schema(value_type = Option<u32>, minimum = 1, maximum = 1000)]
    pub limit: Option<Value>,
}

/// The clear filters, as given.
struct Raw {
    status: Option<String>,
    tag: Option<String>,
    campaign: Option<String>,
    sending_domain: Option<String>,
    recipient_domain: Option<String>,
    from: Option<String>,
    to: Option<String>,
    cursor: Option<String>,
}

/// Checks the filters, naming a bad one.
fn filter(src: Src, raw: Raw) -> Result<(MessageFilter, Option<String>), Problem> {
    let status = raw
        .status
        .as_deref()
        .map(|s| {
            Status::parse(s).map_err(|_| {
                src.bad(
                    "status",
                    "must be one of sent, deferred, delivered, bounced, rejected, complained",
                )
            })
        })
        .transpose()?;
    let from = params::opt_time(src, "from", raw.from.as_deref())?;
    let to = params::opt_time(src, "to", raw.to.as_deref())?;
    if let (Some(f), Some(t)) = (from, to)
        && f >= t
    {
        return Err(src.bad("from", "must be before `to`"));
    }
    let f = MessageFilter {
        status,
        tag: params::text(src, "tag", raw.tag)?,
        campaign: params::text(src, "campaign", raw.campaign)?,
        // Sending domains are kept lower-cased.
        sending_domain: params::text(src, "sending_domain", raw.sending_domain)?
            .map(|d| d.to_lowercase()),
        // So are recipient domains.
        recipient_domain: params::text(src, "recipient_domain", raw.recipient_domain)?
            .map(|d| d.to_lowercase()),
        recipient: None,
        from,
        to,
    };
    Ok((
        f,
        params::cursor(src, raw.cursor, params::message_cursor_len)?,
    ))
}

/// Lists a page and opens each row's recipient and subject.
async fn page(
    state: &AppState,
    caller: &Caller,
    route: &str,
    filter: MessageFilter,
    cursor: Option<String>,
    limit: usize,
) -> Result<ApiJson<Value>, Problem> {
    let p = params::projections(state)?;
    let email = Arc::clone(&state.email);
    let tenant = caller.tenant.clone();
    let (body, contacts, ids) = params::blocking(move || {
        let page = p.messages(&tenant, &filter, cursor.as_deref(), limit)?;
        let items = page
            .items
            .iter()
            .map(|r| row_json(&email, &tenant, r))
            .collect::<Result<Vec<_>, _>>()?;
        let contacts: Vec<String> = page.items.iter().map(|r| r.contact.to_string()).collect();
        let ids: Vec<String> = page.items.iter().map(|r| r.message_id.clone()).collect();
        Ok((json!({ "items": items, "next": page.next }), contacts, ids))
    })
    .await?;
    if !ids.is_empty() {
        let count = ids.len() as u64;
        state.accessed(caller, route, contacts, ids, count);
    }
    Ok(ApiJson(body))
}

/// A message and its timeline: every event, by time, each personal field
/// opened, or `{"erased": true}` once the contact was erased.
///
/// A message of another tenant answers exactly like a missing one. A
/// message whose events were appended a moment ago shows once the
/// projections have applied them (their lag is in `/readyz`).
#[utoipa::path(
    get,
    path = "/v1/messages/{id}",
    tag = "queries",
    params(("id" = String, Path, description = "The message id (percent-encoded)", example = "msg-1")),
    responses(
        (status = 200, description = "The message and its timeline", body = schemas::MessageTimeline),
        (status = 403, description = "The key lacks the read scope", body = ProblemBody, content_type = "application/problem+json"),
        (status = 404, description = "No such message", body = ProblemBody, content_type = "application/problem+json"),
        (status = 503, description = "No projections on this server (`projections-unavailable`)", body = ProblemBody, content_type = "application/problem+json"),
    ),
    security(("bearer" = []), ("basic" = []))
)]
pub async fn message(
    State(state): State<AppState>,
    auth: Auth<scope::Read>,
    Path(id): Path<String>,
) -> Result<ApiJson<Value>, Problem> {
    let p = params::projections(&state)?;
    let email = std::sync::Arc::clone(&state.email);
    let tenant = auth.tenant().to_owned();
    // The lookup reads stores in place, which can wait (on a store's locks,
    // on the disk), so it runs as blocking work: never holding up the
    // requests queued on its async thread.
    let view = params::blocking(move || {
        let handle = tokio::runtime::Handle::current();
        Ok(handle.block_on(p.message(&email, &tenant, &id))?)
    })
    .await?;
    match view {
        Some(view) => {
            let contacts = std::iter::once(view.row.contact.to_string()).chain(
                view.timeline
                    .iter()
                    .map(|e| e.event.envelope.contact.to_string()),
            );
            state.accessed(
                auth.caller(),
                "GET /v1/messages/{id}",
                contacts,
                [view.row.message_id.clone()],
                view.timeline.len() as u64,
            );
            Ok(ApiJson(view.to_json()))
        }
        None => Err(Problem::not_found("message")),
    }
}

/// Messages matching the filters, newest first, a page at a time.
///
/// A message's place is its first event's time, so a cursor stays valid
/// while new events arrive. Each row's recipient is opened, or
/// `{"erased": true}`. Reflects the events the projections have applied.
#[utoipa::path(
    get,
    path = "/v1/messages",
    operation_id = "list_messages",
    tag = "queries",
    params(MessagesQuery),
    responses(
        (status = 200, description = "A page of messages", body = schemas::MessagePage),
        (status = 400, description = "A bad parameter, named", body = ProblemBody, content_type = "application/problem+json"),
        (status = 403, description = "The key lacks the read scope", body = ProblemBody, content_type = "application/problem+json"),
        (status = 503, description = "No projections on this server (`projections-unavailable`)", body = ProblemBody, content_type = "application/problem+json"),
    ),
    security(("bearer" = []), ("basic" = []))
)]
pub async fn list(
    State(state): State<AppState>,
    auth: Auth<scope::Read>,
    query: Result<Query<MessagesQuery>, QueryRejection>,
) -> Result<ApiJson<Value>, Problem> {
    let Query(q) = query.map_err(|r| params::query_problem(&r))?;
    let limit = params::limit_text(Src::Query, q.limit.as_deref())?;
    let (f, cursor) = filter(
        Src::Query,
        Raw {
            status: q.status,
            tag: q.tag,
            campaign: q.campaign,
            sending_domain: q.sending_domain,
            recipient_domain: q.recipient_domain,
            from: q.from,
            to: q.to,
            cursor: q.cursor,
        },
    )?;
    page(&state, auth.caller(), "GET /v1/messages", f, cursor, limit).await
}

/// The filters of `GET /v1/messages` in a body, plus `recipient`: messages
/// to an address (an address never goes in a URL).
///
/// An address another tenant mailed answers exactly like one never mailed.
#[utoipa::path(
    post,
    path = "/v1/messages/search",
    tag = "queries",
    request_body = SearchRequest,
    responses(
        (status = 200, description = "A page of messages", body = schemas::MessagePage),
        (status = 400, description = "A bad field, named", body = ProblemBody, content_type = "application/problem+json"),
        (status = 403, description = "The key lacks the read scope", body = ProblemBody, content_type = "application/problem+json"),
        (status = 503, description = "No projections on this server (`projections-unavailable`)", body = ProblemBody, content_type = "application/problem+json"),
    ),
    security(("bearer" = []), ("basic" = []))
)]
pub async fn search(
    State(state): State<AppState>,
    auth: Auth<scope::Read>,
    ApiJson(req): ApiJson<SearchRequest>,
) -> Result<ApiJson<Value>, Problem> {
    params::projections(&state)?;
    let limit = params::limit_json(req.limit.as_ref())?;
    let (mut f, cursor) = filter(
        Src::Body,
        Raw {
            status: req.status,
            tag: req.tag,
            campaign: req.campaign,
            sending_domain: req.sending_domain,
            recipient_domain: req.recipient_domain,
            from: req.from,
            to: req.to,
            cursor: req.cursor,
        },
    )?;
    if let Some(a) = req.recipient {
        f.recipient = Some(params::pseudonym(&state, auth.tenant(), a).await?);
    }
    page(
        &state,
        auth.caller(),
        "POST /v1/messages/search",
        f,
        cursor,
        limit,
    )
    .await
}
