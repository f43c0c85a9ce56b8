//! The admin API (scope `admin`): tenants, API keys, webhook secrets.
//!
//! The admin scope is operator-wide: an admin key manages every tenant, not
//! only its own, so only keys of the operator tenant `default` may carry it
//! (`Caller::has` and `AccessStore::create_key` enforce this). The same operations are `mailledger tenant …` and
//! `mailledger key …` on the command line.

use std::sync::Arc;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use mailledger_access::{AccessError, AccessStore};
use mailledger_core::residency::{Jurisdiction, ResidencyError, ResidencyReport};

use crate::auth::{Auth, scope};
use crate::json::ApiJson;
use crate::problem::{Problem, ProblemBody, ProblemType};
use crate::routes::access_bodies::{KeyInfo, Scope, TenantInfo};
use crate::routes::schemas;
use crate::state::AppState;

impl From<AccessError> for Problem {
    fn from(e: AccessError) -> Self {
        match e {
            AccessError::Invalid(m) => Problem::invalid(m),
            AccessError::TenantExists(_) => {
                Problem::new(ProblemType::Conflict, "the tenant exists already")
            }
            AccessError::UnknownTenant(_) => Problem::not_found("tenant"),
            AccessError::UnknownKey(_) => Problem::not_found("key"),
            e @ AccessError::UnsafeSetting { .. } => {
                Problem::new(ProblemType::UnsafeSettings, e.to_string())
            }
            e @ (AccessError::Io { .. } | AccessError::Corrupt { .. }) => {
                tracing::error!(error = %e, "access store failure");
                Problem::internal()
            }
        }
    }
}

/// Runs a blocking access store operation off the async threads.
async fn blocking<T: Send + 'static>(
    access: &Arc<AccessStore>,
    f: impl FnOnce(&AccessStore) -> Result<T, AccessError> + Send + 'static,
) -> Result<T, Problem> {
    let a = Arc::clone(access);
    crate::routes::params::blocking(move || f(&a).map_err(Problem::from)).await
}

/// A jurisdiction: `EU` or an ISO 3166-1 alpha-2 code (two letters, read
/// in capitals; white space around is ignored).
#[derive(Debug)]
pub struct JurisdictionCode;

impl utoipa::PartialSchema for JurisdictionCode {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{ObjectBuilder, Type};
        ObjectBuilder::new()
            .schema_type(Type::String)
            .description(Some("`EU` or an ISO 3166-1 alpha-2 code"))
            .pattern(Some(r"^\s*[A-Za-z]{2}\s*$"))
            .examples([serde_json::json!("EU")])
            .into()
    }
}

impl ToSchema for JurisdictionCode {}

/// `POST /v1/admin/tenants`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTenant {
    /// The name: 1 to 64 of a-z 0-9 _ -.
    #[schema(pattern = "^[a-z0-9_-]{1,64}$", example = "acme")]
    pub name: String,
    /// Where its data may be kept: `EU` or ISO 3166-1 alpha-2 codes.
    /// Default: the jurisdictions this node allows. Refused (403
    /// `residency-violation`) when the node or one of its stores lies
    /// outside them.
    #[schema(example = json!(["EU"]), value_type = Option<Vec<JurisdictionCode>>, min_items = 1)]
    pub jurisdictions: Option<Vec<String>>,
}

/// A list of tenants.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct TenantList {
    /// The tenants, by name.
    pub tenants: Vec<TenantInfo>,
}

/// `POST /v1/admin/keys`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateKey {
    /// The tenant the key acts for.
    #[schema(pattern = "^[a-z0-9_-]{1,64}$", example = "acme")]
    pub tenant: String,
    /// What it may do: `ingest`, `read`, `erase`, `admin`, `webhook`
    /// (provider webhooks only, for a provider's webhook URL), or
    /// `webhook:<provider>` (that provider's webhooks only).
    #[schema(min_items = 1, example = json!(["ingest", "read"]))]
    pub scopes: Vec<Scope>,
    /// A label: 1 to 128 bytes, no `@`, no control characters.
    #[schema(
        pattern = "^[^@\\x00-\\x1f\\x7f-\\x9f]{1,128}$",
        example = "ingest from the app"
    )]
    pub name: Option<String>,
}

/// A new key: `key` is shown this once and never again.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct CreatedKey {
    /// The API key, `mlk_<id>_<secret>`.
    pub key: String,
    /// The key's details.
    #[serde(flatten)]
    pub info: KeyInfo,
}

/// A list of keys (never their secrets).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct KeyList {
    /// The keys, by id.
    pub keys: Vec<KeyInfo>,
}

/// Filters of `GET /v1/admin/keys`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct KeysQuery {
    /// Only this tenant's keys.
    #[param(example = "default")]
    pub tenant: Option<String>,
}

/// Creates a tenant.
#[utoipa::path(
    post,
    path = "/v1/admin/tenants",
    tag = "admin",
    request_body = CreateTenant,
    responses(
        (status = 201, description = "Created", body = TenantInfo),
        (status = 400, description = "A bad name or jurisdiction", body = ProblemBody, content_type = "application/problem+json"),
        (status = 403, description = "The key lacks the admin scope, or this node keeps data outside the tenant's jurisdictions (`residency-violation`)", body = ProblemBody, content_type = "application/problem+json"),
        (status = 409, description = "The tenant exists", body = ProblemBody, content_type = "application/problem+json"),
    ),
    security(("bearer" = []), ("basic" = []))
)]
pub async fn create_tenant(
    State(state): State<AppState>,
    _auth: Auth<scope::Admin>,
    ApiJson(req): ApiJson<CreateTenant>,
) -> Result<(StatusCode, ApiJson<TenantInfo>), Problem> {
    let given = req
        .jurisdictions
        .as_deref()
        .map(|list| {
            list.iter()
                .map(|j| j.parse::<Jurisdiction>())
                .collect::<Result<Vec<_>, _>>()
        })
        .transpose()
        .map_err(|e| Problem::invalid(format!("jurisdictions: {e}")))?;
    let jurisdictions = state.residency.new_tenant(given).map_err(|e| match e {
        ResidencyError::Violated(_) => Problem::new(
            ProblemType::ResidencyViolation,
            "this node keeps data outside those jurisdictions, so it cannot serve the tenant; see GET /v1/admin/residency",
        ),
        e => Problem::invalid(format!("jurisdictions: {e}")),
    })?;
    let t = blocking(&state.access, move |a| {
        a.create_tenant(&req.name, &jurisdictions)
    })
    .await?;
    Ok((StatusCode::CREATED, ApiJson(t.into())))
}

/// The residency report of this node: its jurisdiction and what it allows,
/// every store it keeps data in with its declared jurisdiction, every
/// tenant with its allowed jurisdictions, and any violation. Made from the
/// running configuration.
#[utoipa::path(
    get,
    path = "/v1/admin/residency",
    tag = "admin",
    responses(
        (status = 200, description = "The report", body = schemas::ResidencyReport),
        (status = 403, description = "The key lacks the admin scope", body = ProblemBody, content_type = "application/problem+json"),
    ),
    security(("bearer" = []), ("basic" = []))
)]
pub async fn residency(
    State(state): State<AppState>,
    _auth: Auth<scope::Admin>,
) -> Result<ApiJson<ResidencyReport>, Problem> {
    let tenants = blocking(&state.access, AccessStore::residencies).await?;
    Ok(ApiJson(state.residency.report(tenants)))
}

/// Lists tenants.
#[utoipa::path(
    get,
    path = "/v1/admin/tenants",
    tag = "admin",
    responses(
        (status = 200, description = "The tenants", body = TenantList),
        (status = 403, description = "The key lacks the admin scope", body = ProblemBody, content_type = "application/problem+json"),
    ),
    security(("bearer" = []), ("basic" = []))
)]
pub async fn list_tenants(
    State(state): State<AppState>,
    _auth: Auth<scope::Admin>,
) -> Result<ApiJson<TenantList>, Problem> {
    let tenants = blocking(&state.access, AccessStore::tenants).await?;
    Ok(ApiJson(TenantList {
        tenants: tenants.into_iter().map(Into::into).collect(),
    }))
}

/// Creates an API key; the answer holds the key, shown this once.
#[utoipa::path(
    post,
    path = "/v1/admin/keys",
    tag = "admin",
    request_body = CreateKey,
    responses(
        (status = 201, description = "Created", body = CreatedKey),
        (status = 400, description = "No scopes, an unknown scope, or a bad name", body = ProblemBody, content_type = "application/problem+json"),
        (status = 403, description = "The key lacks the admin scope", body = ProblemBody, content_type = "application/problem+json"),
        (status = 404, description = "No such tenant", body = ProblemBody, content_type = "application/problem+json"),
    ),
    security(("bearer" = []), ("basic" = []))
)]
pub async fn create_key(
    State(state): State<AppState>,
    _auth: Auth<scope::Admin>,
    ApiJson(req): ApiJson<CreateKey>,
) -> Result<(StatusCode, ApiJson<CreatedKey>), Problem> {
    let scopes: Vec<_> = req.scopes.into_iter().map(Into::into).collect();
    let (info, key) = blocking(&state.access, move |a| {
        a.create_key(&req.tenant, &scopes, req.name.as_deref())
    })
    .await?;
    Ok((
        StatusCode::CREATED,
        ApiJson(CreatedKey {
            key: key.as_str().to_owned(),
            info: info.into(),
        }),
    ))
}

/// Lists API keys (never their secrets).
#[utoipa::path(
    get,
    path = "/v1/admin/keys",
    tag = "admin",
    params(KeysQuery),
    responses(
        (status = 200, description = "The keys", body = KeyList),
        (status = 400, description = "An unknown query parameter", body = ProblemBody, content_type = "application/problem+json"),
        (status = 403, description = "The key lacks the admin scope", body = ProblemBody, content_type = "application/problem+json"),
    ),
    security(("bearer" = []), ("basic" = []))
)]
pub async fn list_keys(
    State(state): State<AppState>,
    _auth: Auth<scope::Admin>,
    query: Result<Query<KeysQuery>, QueryRejection>,
) -> Result<ApiJson<KeyList>, Problem> {
    let Query(q) = query.map_err(|_| Problem::invalid("the query string takes only `tenant`"))?;
    let keys = blocking(&state.access, move |a| a.keys(q.tenant.as_deref())).await?;
    Ok(ApiJson(KeyList {
        keys: keys.into_iter().map(Into::into).collect(),
    }))
}

/// Revokes an API key (idempotent); it fails authentication from then on.
#[utoipa::path(
    post,
    path = "/v1/admin/keys/{id}/revoke",
    tag = "admin",
    params(("id" = String, Path, description = "The key id (the part after `mlk_`)", example = "0123456789abcdef")),
    responses(
        (status = 200, description = "Revoked", body = KeyInfo),
        (status = 403, description = "The key lacks the admin scope", body = ProblemBody, content_type = "application/problem+json"),
        (status = 404, description = "No such key", body = ProblemBody, content_type = "application/problem+json"),
    ),
    security(("bearer" = []), ("basic" = []))
)]
pub async fn revoke_key(
    State(state): State<AppState>,
    _auth: Auth<scope::Admin>,
    Path(id): Path<String>,
) -> Result<ApiJson<KeyInfo>, Problem> {
    let info = blocking(&state.access, move |a| a.revoke_key(&id)).await?;
    Ok(ApiJson(info.into()))
}

/// Sets a tenant's webhook secrets (replacing any set before).
///
/// The body is one document with every provider's secret; it is checked,
/// sealed under a key derived from the KEK, and never shown again (tenant
/// listings show only which providers are configured).
#[utoipa::path(
    put,
    path = "/v1/admin/tenants/{tenant}/webhook-secrets",
    tag = "admin",
    params(("tenant" = String, Path, description = "The tenant", example = "default")),
    request_body = schemas::WebhookSecrets,
    responses(
        (status = 204, description = "Set"),
        (status = 400, description = "A field that is not a webhook setting, or a value of the wrong type", body = ProblemBody, content_type = "application/problem+json"),
        (status = 403, description = "The key lacks the admin scope", body = ProblemBody, content_type = "application/problem+json"),
        (status = 404, description = "No such tenant", body = ProblemBody, content_type = "application/problem+json"),
        (status = 422, description = "`unsafe-settings`: a secret that does not parse as what its provider signs with (`postal_public_key` not an RSA public key, `sendgrid_public_key` not an ECDSA P-256 one, an `sns_certificates` entry not PEM X.509, an empty `mailgun_signing_key`), or settings that would make a signature prove nothing (`sns_certificates` without `sns_topic_arns`). Names the field, never a value; nothing is changed", body = ProblemBody, content_type = "application/problem+json"),
    ),
    security(("bearer" = []), ("basic" = []))
)]
pub async fn set_webhook_secrets(
    State(state): State<AppState>,
    _auth: Auth<scope::Admin>,
    Path(tenant): Path<String>,
    ApiJson(doc): ApiJson<serde_json::Value>,
) -> Result<StatusCode, Problem> {
    // `ApiJson` has read whole floats (`300.0`) as the integers they are.
    let text = zeroize::Zeroizing::new(doc.to_string());
    // Each secret is checked now, as the adapters will read it, so a bad
    // one is refused here rather than on the provider's first webhook.
    crate::webhooks::check_secrets_document(&text)
        .map_err(|m| Problem::new(ProblemType::UnsafeSettings, m))?;
    blocking(&state.access, move |a| {
        a.set_webhook_secrets(&tenant, Some(text.as_str()))
    })
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Removes a tenant's webhook secrets.
#[utoipa::path(
    delete,
    path = "/v1/admin/tenants/{tenant}/webhook-secrets",
    tag = "admin",
    params(("tenant" = String, Path, description = "The tenant", example = "default")),
    responses(
        (status = 204, description = "Removed (or none were set)"),
        (status = 403, description = "The key lacks the admin scope", body = ProblemBody, content_type = "application/problem+json"),
        (status = 404, description = "No such tenant", body = ProblemBody, content_type = "application/problem+json"),
    ),
    security(("bearer" = []), ("basic" = []))
)]
pub async fn remove_webhook_secrets(
    State(state): State<AppState>,
    _auth: Auth<scope::Admin>,
    Path(tenant): Path<String>,
) -> Result<StatusCode, Problem> {
    blocking(&state.access, move |a| a.set_webhook_secrets(&tenant, None)).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Which projections to rebuild.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RebuildRequest {
    /// `delivery-log`, `suppressions`, `analytics`, or `all` (the default).
    #[schema(
        pattern = "^(delivery-log|suppressions|analytics|all)$",
        example = "all"
    )]
    pub projection: Option<String>,
}

/// Each projection's place, and the last rebuild started here.
#[derive(Debug, Serialize, ToSchema)]
pub struct ProjectionsStatus {
    /// The log's head.
    pub head: u64,
    /// Each projection's checkpoint and lag.
    pub projections: Vec<crate::routes::health::ProjectionStatus>,
    /// The last rebuild started through this API, if any.
    pub rebuild: Option<RebuildState>,
}

/// A rebuild's progress.
#[derive(Debug, Serialize, ToSchema)]
pub struct RebuildState {
    /// The projections it rebuilds.
    pub projections: Vec<String>,
    /// Whether it is still running.
    pub running: bool,
    /// Events applied so far.
    pub done: u64,
    /// Events to apply in all.
    pub total: u64,
    /// Why it failed, if it did (the old stores stay in use).
    pub error: Option<String>,
}

fn projections_status(state: &AppState) -> Result<ProjectionsStatus, Problem> {
    let p = crate::routes::params::projections(state)?;
    let (head, projections) = crate::routes::health::projection_status(state);
    Ok(ProjectionsStatus {
        head,
        projections,
        rebuild: p.rebuild_status().map(|r| RebuildState {
            projections: r.projections,
            running: r.running,
            done: r.done,
            total: r.total,
            error: r.error,
        }),
    })
}

/// Each projection's checkpoint and lag, and the progress of the last
/// rebuild started through `POST /v1/admin/projections/rebuild`.
#[utoipa::path(
    get,
    path = "/v1/admin/projections",
    tag = "admin",
    responses(
        (status = 200, description = "Where each projection stands", body = ProjectionsStatus),
        (status = 403, description = "The key lacks the admin scope", body = ProblemBody, content_type = "application/problem+json"),
        (status = 503, description = "No projections on this server", body = ProblemBody, content_type = "application/problem+json"),
    ),
    security(("bearer" = []), ("basic" = []))
)]
pub async fn projections(
    State(state): State<AppState>,
    _auth: Auth<scope::Admin>,
) -> Result<ApiJson<ProjectionsStatus>, Problem> {
    Ok(ApiJson(projections_status(&state)?))
}

/// Rebuilds projections from position 0 into fresh stores in the
/// background and swaps each in when done; queries go on reading the old
/// stores meanwhile. Answers 202 at once; `GET /v1/admin/projections`
/// shows progress. 409 while another rebuild runs.
#[utoipa::path(
    post,
    path = "/v1/admin/projections/rebuild",
    tag = "admin",
    request_body = RebuildRequest,
    responses(
        (status = 202, description = "Started", body = ProjectionsStatus),
        (status = 400, description = "An unknown projection", body = ProblemBody, content_type = "application/problem+json"),
        (status = 403, description = "The key lacks the admin scope", body = ProblemBody, content_type = "application/problem+json"),
        (status = 409, description = "A rebuild is running", body = ProblemBody, content_type = "application/problem+json"),
        (status = 503, description = "No projections on this server", body = ProblemBody, content_type = "application/problem+json"),
    ),
    security(("bearer" = []), ("basic" = []))
)]
pub async fn rebuild_projections(
    State(state): State<AppState>,
    _auth: Auth<scope::Admin>,
    ApiJson(req): ApiJson<RebuildRequest>,
) -> Result<(StatusCode, ApiJson<ProjectionsStatus>), Problem> {
    let p = crate::routes::params::projections(&state)?;
    let names = match req.projection.as_deref() {
        None | Some("all") => Vec::new(),
        Some(n) if mailledger_projections::NAMES.contains(&n) => vec![n.to_owned()],
        Some(_) => {
            return Err(Problem::invalid(
                "field `projection`: one of delivery-log, suppressions, analytics, all",
            ));
        }
    };
    let started = p
        .start_rebuild(Arc::clone(state.email.log()), names)
        .map_err(|_| Problem::invalid("field `projection`: no such projection"))?;
    if !started {
        return Err(Problem::new(
            ProblemType::Conflict,
            "a rebuild is running: wait for it (GET /v1/admin/projections)",
        ));
    }
    Ok((StatusCode::ACCEPTED, ApiJson(projections_status(&state)?)))
}
