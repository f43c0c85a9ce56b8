//! `GET /v1/analytics`: counts and rates over a time range.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use mailledger_projections::analytics::{Dimension, Granularity, Query as AnalyticsQuery};
use mailledger_projections::analytics_json;
use serde::Deserialize;
use serde_json::Value;
use utoipa::IntoParams;

use crate::auth::{Auth, scope};
use crate::json::ApiJson;
use crate::problem::{Problem, ProblemBody};
use crate::routes::params::{self, Src};
use crate::routes::schemas;
use crate::state::AppState;

/// Parameters of `GET /v1/analytics`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AnalyticsParams {
    /// Start of the range, inclusive (RFC 3339; counts are kept per hour).
    /// Required, and before `to`.
    #[param(required = true, value_type = String, format = DateTime, example = "2026-01-01T00:00:00Z")]
    pub from: Option<String>,
    /// End of the range, exclusive (RFC 3339). Required.
    #[param(required = true, value_type = String, format = DateTime, example = "2026-02-01T00:00:00Z")]
    pub to: Option<String>,
    /// `hour` or `day` (default `day`, UTC).
    #[param(pattern = "^(hour|day)$")]
    pub granularity: Option<String>,
    /// `tag`, `campaign`, `sending_domain` or `recipient_domain`; the
    /// tenant's totals when absent.
    #[param(pattern = "^(tag|campaign|sending_domain|recipient_domain)$")]
    pub group_by: Option<String>,
}

/// Counts and rates over `[from, to)`, per bucket of the granularity, by
/// group when `group_by` is given, with the totals of the range.
///
/// Counts: sent, delivered, deferred, rejected, bounces by class,
/// complaints, human opens and clicks (total and unique per message),
/// machine opens and bot clicks apart, unsubscribes. Rates: delivery,
/// bounce, open, click, complaint (absent when the divisor is 0). The
/// recipient domain is the only address-derived value kept in clear.
/// Reflects the events the projections have applied.
#[utoipa::path(
    get,
    path = "/v1/analytics",
    tag = "queries",
    params(AnalyticsParams),
    responses(
        (status = 200, description = "Buckets and totals", body = schemas::AnalyticsResult),
        (status = 400, description = "A bad or missing parameter, named", body = ProblemBody, content_type = "application/problem+json"),
        (status = 403, description = "The key lacks the read scope", body = ProblemBody, content_type = "application/problem+json"),
        (status = 503, description = "No projections on this server (`projections-unavailable`)", body = ProblemBody, content_type = "application/problem+json"),
    ),
    security(("bearer" = []), ("basic" = []))
)]
pub async fn analytics(
    State(state): State<AppState>,
    auth: Auth<scope::Read>,
    query: Result<Query<AnalyticsParams>, QueryRejection>,
) -> Result<ApiJson<Value>, Problem> {
    let Query(q) = query.map_err(|r| params::query_problem(&r))?;
    let src = Src::Query;
    let from = q
        .from
        .as_deref()
        .ok_or_else(|| src.bad("from", "is required"))
        .and_then(|v| params::time(src, "from", v))?;
    let to =
        q.to.as_deref()
            .ok_or_else(|| src.bad("to", "is required"))
            .and_then(|v| params::time(src, "to", v))?;
    if from >= to {
        return Err(src.bad("from", "must be before `to`"));
    }
    let granularity = match q.granularity.as_deref() {
        None | Some("day") => Granularity::Day,
        Some("hour") => Granularity::Hour,
        Some(_) => return Err(src.bad("granularity", "must be hour or day")),
    };
    let group_by = match q.group_by.as_deref() {
        None => Dimension::Total,
        Some(g) => Dimension::parse(g).map_err(|_| {
            src.bad(
                "group_by",
                "must be tag, campaign, sending_domain or recipient_domain",
            )
        })?,
    };
    let p = params::projections(&state)?;
    let tenant = auth.tenant().to_owned();
    let query = AnalyticsQuery {
        from,
        to,
        granularity,
        group_by,
    };
    params::blocking(move || {
        let (buckets, total) = p.analytics(&tenant, &query)?;
        Ok(ApiJson(analytics_json(&buckets, &total)))
    })
    .await
}
