//! `GET /healthz`, `GET /readyz`, `GET /openapi.json`: no authentication;
//! and `GET /metrics`, served apart from the API by
//! [`metrics_router`](crate::metrics_router), on a listener of its own.

use std::sync::Arc;

use axum::Extension;
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::json::ApiJson;
use crate::problem::{Problem, ProblemBody, ProblemType};
use crate::state::AppState;

/// A health answer.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Health {
    /// `ok` or `ready`.
    pub status: String,
}

/// The OpenAPI document as served, shared by the router.
#[derive(Debug, Clone)]
pub struct OpenApiJson(pub Arc<String>);

/// Liveness: 200 whenever the server answers.
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "operations",
    responses((status = 200, description = "Serving", body = Health))
)]
pub async fn healthz() -> ApiJson<Health> {
    ApiJson(Health {
        status: "ok".into(),
    })
}

/// Where one projection stands.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ProjectionStatus {
    /// `delivery-log`, `suppressions` or `analytics`.
    pub name: String,
    /// The position of the first event it has not applied.
    pub checkpoint: u64,
    /// How many events it is behind the log's head.
    pub lag: u64,
}

/// A readiness answer.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Readiness {
    /// `ready`.
    pub status: String,
    /// The position the next record of the log will get.
    pub head: u64,
    /// Each projection's checkpoint and lag now (empty when the server runs
    /// without projections).
    pub projections: Vec<ProjectionStatus>,
}

/// Each projection's status against the log's head now.
pub(crate) fn projection_status(state: &AppState) -> (u64, Vec<ProjectionStatus>) {
    let head = state.email.log().head();
    let list = state
        .projections
        .as_ref()
        .map(|p| {
            p.status(head)
                .into_iter()
                .map(|s| ProjectionStatus {
                    name: s.name.to_owned(),
                    checkpoint: s.checkpoint,
                    lag: s.lag,
                })
                .collect()
        })
        .unwrap_or_default();
    (head, list)
}

/// Readiness: 200 once the server is ready to take traffic, 503 before.
///
/// With projections the server is ready once every projection has caught
/// up with the log's head (lag 0) at least once since start; afterwards it
/// stays ready while projections follow new events (their lag, shown here
/// and in `/metrics`, is usually a few events). The body shows each
/// projection's checkpoint and lag; the 503 detail shows them too.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "operations",
    responses(
        (status = 200, description = "Ready", body = Readiness),
        (status = 503, description = "Not ready: projections catching up, or the log stopped accepting appends after a failed write", body = ProblemBody, content_type = "application/problem+json"),
    )
)]
pub async fn readyz(State(state): State<AppState>) -> Result<ApiJson<Readiness>, Problem> {
    let (head, projections) = projection_status(&state);
    if !state.email.log().accepts_appends() {
        // Queries would still answer, but every append fails until a
        // restart: a load balancer should send ingest elsewhere.
        return Err(Problem::new(
            ProblemType::Unavailable,
            "the log stopped accepting appends after a failed write (a storage error, or another writer that extended the same log first); restart the server".to_owned(),
        ));
    }
    if state.ready.get() {
        return Ok(ApiJson(Readiness {
            status: "ready".into(),
            head,
            projections,
        }));
    }
    let mut detail = String::from("the server is starting");
    if !projections.is_empty() {
        let each: Vec<String> = projections
            .iter()
            .map(|p| format!("{} at {} (lag {})", p.name, p.checkpoint, p.lag))
            .collect();
        detail = format!(
            "projections are catching up with the log's head {head}: {}",
            each.join(", ")
        );
    }
    Err(Problem::new(ProblemType::Unavailable, detail).retry_after(1))
}

/// Metrics in the Prometheus text format, of every tenant: served only by
/// [`metrics_router`](crate::metrics_router), never on the API's listener.
pub async fn metrics(State(state): State<AppState>) -> Response {
    state
        .metrics
        .log_head
        .set(i64::try_from(state.email.log().head()).unwrap_or(i64::MAX));
    for p in projection_status(&state).1 {
        state
            .metrics
            .projection_lag
            .with_label_values(&[p.name.as_str()])
            .set(i64::try_from(p.lag).unwrap_or(i64::MAX));
    }
    let mut res = state.metrics.render().into_response();
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    res
}

/// This document: the OpenAPI 3.1 description of every route.
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "operations",
    responses((status = 200, description = "The OpenAPI document", body = Object, content_type = "application/json"))
)]
pub async fn openapi_json(Extension(doc): Extension<OpenApiJson>) -> Response {
    let mut res = doc.0.as_str().to_owned().into_response();
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    res
}
