//! `POST /v1/events`: canonical events in, positions out.

use std::time::Instant;

use axum::extract::State;
use mailledger_core::email::{CanonicalEvent, EventType, Skipped, parse_event};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::auth::{Auth, scope};
use crate::json::{self, ApiJson, JsonBytes};
use crate::problem::{Problem, ProblemBody};
use crate::routes::schemas;
use crate::state::AppState;

/// The body of `POST /v1/events`: `{"events": [...]}`, 1 to 1,000 canonical
/// events (the limit is configurable). Each event is borrowed from the
/// body, unparsed, until [`parse_batch`] parses it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IngestBody<'a> {
    #[serde(borrow)]
    events: Vec<&'a RawValue>,
}

/// The body of `POST /v1/events` as documented.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"events": [schemas::example_event(EventType::Sent)]}))]
#[allow(dead_code)]
pub struct IngestRequest {
    /// The events, appended atomically (all or none): 1 to 1,000 (the
    /// server's `max_events_per_request`, 1,000 unless configured lower).
    #[schema(min_items = 1, max_items = 1000, value_type = Vec<schemas::CanonicalEvent>)]
    events: Vec<serde_json::Value>,
}

/// What happened to one event.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct EventOutcome {
    /// The event id.
    pub id: Uuid,
    /// Its position in the log.
    pub position: u64,
    /// True when the log held the id already: nothing was written and the
    /// position is the original one.
    pub duplicate: bool,
}

/// The answer to `POST /v1/events`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct IngestResponse {
    /// Events written by this request.
    pub appended: usize,
    /// Events whose id the log already held.
    pub duplicates: usize,
    /// One outcome per event, in request order.
    pub events: Vec<EventOutcome>,
}

/// Parses the events of a batch, naming the index and field of a bad one.
pub(crate) fn parse_batch(raw: &[&RawValue], max: usize) -> Result<Vec<CanonicalEvent>, Problem> {
    if raw.is_empty() || raw.len() > max {
        return Err(Problem::invalid(format!(
            "field `events`: give 1 to {max} events per request (got {})",
            raw.len()
        )));
    }
    raw.iter()
        .enumerate()
        .map(|(i, r)| {
            parse_event(r.get())
                .or_else(|e| parse_with_whole_floats(r.get()).ok_or(e))
                .map_err(|e| match e {
                    mailledger_core::Error::InvalidInput(m) => {
                        Problem::invalid(format!("event {i}: {m}"))
                    }
                    other => Problem::from(other),
                })
        })
        .collect()
}

/// Parses an event again after rewriting its whole floats (`26.0`) as
/// integers, which JSON and the published schemas treat as equal: the
/// fallback of a failed parse, so the usual path reads the bytes once.
fn parse_with_whole_floats(raw: &str) -> Option<CanonicalEvent> {
    let mut value: serde_json::Value = serde_json::from_str(raw).ok()?;
    json::whole_floats_as_integers(&mut value);
    parse_event(&serde_json::to_string(&value).ok()?).ok()
}

/// An event type as a metric label: one of the taxonomy's names (append
/// refuses any other), so labels stay a small fixed set.
fn type_label(event_type: &str) -> &'static str {
    event_type
        .parse::<EventType>()
        .map_or("other", EventType::as_str)
}

/// How [`append_events`] treats an event the ledger refuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refused {
    /// The whole batch is refused (the canonical API: atomic batches).
    Batch,
    /// The event is skipped and the others appended (a provider's batch).
    Event,
}

/// Appends parsed events for `tenant`, with metrics; the events at the
/// indexes `per_recipient` names take ids scoped to their recipient
/// ([`crate::webhooks::scope_to_recipient`]). Returns the outcomes of the
/// events appended, in order, and (with [`Refused::Event`]) those skipped.
pub(crate) async fn append_events(
    state: &AppState,
    tenant: &str,
    events: Vec<CanonicalEvent>,
    per_recipient: &[usize],
    refused: Refused,
) -> Result<(IngestResponse, Vec<Skipped>), Problem> {
    let types: Vec<&'static str> = events.iter().map(|e| type_label(&e.event_type)).collect();
    let started = Instant::now();
    let _permit = state
        .appends
        .acquire()
        .await
        .map_err(|_| Problem::internal())?;
    let scope = crate::webhooks::scope_to_recipient;
    let (out, skipped) = match refused {
        Refused::Batch => (
            state
                .email
                .append_scoped(tenant, events, per_recipient, scope)
                .await?,
            Vec::new(),
        ),
        Refused::Event => {
            state
                .email
                .append_valid(tenant, events, per_recipient, scope)
                .await?
        }
    };
    state
        .metrics
        .append_duration
        .observe(started.elapsed().as_secs_f64());
    // The outcomes are those of the events not skipped, in order.
    let kept = types
        .iter()
        .enumerate()
        .filter(|(i, _)| !skipped.iter().any(|s| s.index == *i))
        .map(|(_, t)| *t);
    let mut appended = 0;
    let mut duplicates = 0;
    for (a, t) in out.iter().zip(kept) {
        if a.duplicate {
            duplicates += 1;
            state.metrics.events_duplicate.inc();
        } else {
            appended += 1;
            state.metrics.events_appended.with_label_values(&[t]).inc();
        }
    }
    let response = IngestResponse {
        appended,
        duplicates,
        events: out
            .into_iter()
            .map(|a| EventOutcome {
                id: a.id,
                position: a.position,
                duplicate: a.duplicate,
            })
            .collect(),
    };
    Ok((response, skipped))
}

/// Appends a batch of canonical events.
///
/// Every event is checked before anything is written, and the batch is
/// appended atomically. Idempotent by event id: an id the log already holds
/// is not written again and answers its original position, so a retried
/// batch appends nothing and returns the same positions.
#[utoipa::path(
    post,
    path = "/v1/events",
    tag = "ingest",
    request_body = IngestRequest,
    responses(
        (status = 200, description = "Appended (or already present)", body = IngestResponse),
        (status = 400, description = "A malformed event, named by index and field; nothing was written", body = ProblemBody, content_type = "application/problem+json"),
        (status = 403, description = "The key lacks the ingest scope", body = ProblemBody, content_type = "application/problem+json"),
    ),
    security(("bearer" = []), ("basic" = []))
)]
pub async fn ingest(
    State(state): State<AppState>,
    auth: Auth<scope::Ingest>,
    JsonBytes(body): JsonBytes,
) -> Result<ApiJson<IngestResponse>, Problem> {
    let tenant = auth.tenant().to_owned();
    let st = state.clone();
    let work = async move {
        let body: IngestBody<'_> = json::parse_object(&body)?;
        let events = parse_batch(&body.events, st.limits.max_events_per_request)?;
        append_events(&st, &tenant, events, &[], Refused::Batch)
            .await
            .map(|(r, _)| r)
    };
    state.run_ingest(work).await.map(ApiJson)
}
