//! Every route, and the OpenAPI document they make.
//!
//! # Adding a route
//!
//! Write the handler with a `#[utoipa::path(...)]` annotation (method, path,
//! tag, request body, responses with [`ProblemBody`] for the errors the
//! handler itself answers, and `security(("bearer" = []), ("basic" = []))`
//! when it takes an [`Auth`]; the 401, 403, 413, 429, 500 and 503 of the
//! layers and of `Auth` are added by `add_common_responses`),
//! derive `ToSchema` for its bodies, and add it to [`api`] with
//! `.routes(routes!(handler))`. Never add a route with a plain `.route()`:
//! going through `routes!` is what keeps `/openapi.json` complete, and the
//! test `every_route_is_in_the_openapi_document` walks the document.
//!
//! [`Auth`]: crate::auth::Auth

pub mod access_bodies;
pub mod admin;
pub mod analytics;
pub mod audit;
pub mod erasure;
pub mod events;
pub mod health;
pub mod messages;
pub(crate) mod params;
pub mod schemas;
pub mod suppressions;
pub mod webhooks;

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::problem::ProblemBody;
use crate::state::AppState;

/// The document's fixed parts; paths and schemas come from the handlers.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "mailledger",
        description = "An event-sourced, hash-chained ledger of email activity, with personal data sealed under per-contact keys and erasure by key destruction. Authenticate with an API key (`mlk_<id>_<secret>`) as a Bearer token or as the HTTP basic-auth password. Every error is application/problem+json (RFC 9457). Addresses travel only in request bodies, never in a path or query string."
    ),
    modifiers(&SecuritySchemes),
    components(schemas(ProblemBody)),
    tags(
        (name = "ingest", description = "Events and provider webhooks in"),
        (name = "queries", description = "The delivery log and analytics, from the projections (which follow the log; their lag is in /readyz and /metrics)"),
        (name = "suppressions", description = "The suppression list, manual entries and the check before sending"),
        (name = "erasure", description = "Erasure receipts and data subject exports"),
        (name = "audit", description = "Replay with verification, signed checkpoints and access records, for auditors (scope audit)"),
        (name = "admin", description = "Tenants, API keys, provider secrets and the residency report (scope admin, operator-wide)"),
        (name = "operations", description = "Health, readiness and this document (Prometheus metrics are served on a listener of their own, `mailledger serve --metrics-listen`)"),
    )
)]
pub struct ApiDoc;

/// Adds the `bearer` and `basic` security schemes.
#[derive(Debug)]
pub struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi
            .components
            .get_or_insert_with(utoipa::openapi::Components::new);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("mlk_<id>_<secret>")
                    .description(Some("An API key as a Bearer token"))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "basic",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Basic)
                    .description(Some(
                        "An API key as the basic-auth password (any user name)",
                    ))
                    .build(),
            ),
        );
    }
}

/// The responses the layers every route goes through, and [`Auth`], give:
/// (status, description, to whom: `Any` operation, a `Secured` one, one
/// that takes a `Body`).
///
/// [`Auth`]: crate::auth::Auth
const COMMON_RESPONSES: [(&str, &str, Applies); 7] = [
    ("401", "No valid API key", Applies::Secured),
    (
        "403",
        "The key lacks the scope this route needs",
        Applies::Secured,
    ),
    ("413", "Body over the limit", Applies::Body),
    (
        "415",
        "The body is not JSON (`Content-Type: application/json`)",
        Applies::Body,
    ),
    (
        "429",
        "Rate limited (per key); Retry-After says when to try again",
        Applies::Secured,
    ),
    (
        "500",
        "An internal error (details are logged, never sent)",
        Applies::Any,
    ),
    (
        "503",
        "The request timed out, or the server is at its concurrency limit",
        Applies::Any,
    ),
];

#[derive(Clone, Copy, PartialEq, Eq)]
enum Applies {
    Any,
    Secured,
    Body,
}

/// Adds [`COMMON_RESPONSES`] to every operation of `doc` that can give
/// them and does not describe them itself, so no route's documentation
/// drifts from what its layers answer.
pub(crate) fn add_common_responses(doc: &mut utoipa::openapi::OpenApi) {
    use utoipa::openapi::schema::{Object, Type};
    use utoipa::openapi::{ContentBuilder, Ref, RefOr, ResponseBuilder, header::Header};
    for item in doc.paths.paths.values_mut() {
        let operations = [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.patch,
        ];
        for op in operations.into_iter().flatten() {
            let secured = op.security.as_ref().is_some_and(|s| !s.is_empty());
            let body = op.request_body.is_some();
            for (status, description, applies) in COMMON_RESPONSES {
                let applies = match applies {
                    Applies::Any => true,
                    Applies::Secured => secured,
                    Applies::Body => body,
                };
                if !applies {
                    continue;
                }
                if let Some(own) = op.responses.responses.get_mut(status) {
                    // A route's own 503 (no projections, say) can still
                    // also be the layers' one.
                    if let (RefOr::T(own), "503") = (own, status) {
                        own.description = format!("{}; or: {description}", own.description);
                    }
                    continue;
                }
                let mut response = ResponseBuilder::new().description(description).content(
                    "application/problem+json",
                    ContentBuilder::new()
                        .schema(Some(Ref::from_schema_name("ProblemBody")))
                        .build(),
                );
                if status == "429" {
                    response = response
                        .header("Retry-After", Header::new(Object::with_type(Type::Integer)));
                }
                op.responses
                    .responses
                    .insert(status.to_owned(), response.build().into());
            }
        }
    }
}

/// Every route of the API, with its OpenAPI description (completed by
/// `add_common_responses`).
pub fn api() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(health::healthz))
        .routes(routes!(health::readyz))
        .routes(routes!(health::openapi_json))
        .routes(routes!(events::ingest))
        .routes(routes!(webhooks::receive))
        .routes(routes!(erasure::erase, erasure::register))
        .routes(routes!(audit::checkpoints))
        .routes(routes!(audit::replay))
        .routes(routes!(audit::access))
        .routes(routes!(audit::as_of))
        .routes(routes!(erasure::receipt))
        .routes(routes!(erasure::export))
        .routes(routes!(admin::create_tenant, admin::list_tenants))
        .routes(routes!(admin::create_key, admin::list_keys))
        .routes(routes!(admin::revoke_key))
        .routes(routes!(admin::residency))
        .routes(routes!(admin::projections))
        .routes(routes!(admin::rebuild_projections))
        .routes(routes!(
            admin::set_webhook_secrets,
            admin::remove_webhook_secrets
        ))
        .routes(routes!(messages::message))
        .routes(routes!(messages::list))
        .routes(routes!(messages::search))
        .routes(routes!(suppressions::list, suppressions::add))
        .routes(routes!(suppressions::lookup))
        .routes(routes!(suppressions::remove))
        .routes(routes!(suppressions::check))
        .routes(routes!(analytics::analytics))
}
