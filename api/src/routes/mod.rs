//! Every route, and the OpenAPI document they make.
//!
//! # Adding a route
//!
//! Write the handler with a `#[utoipa::path(...)]` annotation (method, path,
//! tag, request body, responses with [`ProblemBody`] for errors, and
//! `security(("bearer" = []), ("basic" = []))` when it takes an [`Auth`]),
//! derive `ToSchema` for its bodies, and add it to [`api`] with
//! `.routes(routes!(handler))`. Never add a route with a plain `.route()`:
//! going through `routes!` is what keeps `/openapi.json` complete, and the
//! test `every_route_is_in_the_openapi_document` walks the document.
//!
//! [`Auth`]: crate::auth::Auth

pub mod admin;
pub mod analytics;
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
        (name = "admin", description = "Tenants, API keys and provider secrets (scope admin, operator-wide)"),
        (name = "operations", description = "Health, readiness, metrics and this document"),
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

/// Every route of the API, with its OpenAPI description.
pub fn api() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(health::healthz))
        .routes(routes!(health::readyz))
        .routes(routes!(health::metrics))
        .routes(routes!(health::openapi_json))
        .routes(routes!(events::ingest))
        .routes(routes!(webhooks::receive))
        .routes(routes!(erasure::erase))
        .routes(routes!(erasure::receipt))
        .routes(routes!(erasure::export))
        .routes(routes!(admin::create_tenant, admin::list_tenants))
        .routes(routes!(admin::create_key, admin::list_keys))
        .routes(routes!(admin::revoke_key))
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
