//! The mailledger HTTP API.
//!
//! [`router`] builds the axum [`Router`] over an [`AppState`]:
//! the email ledger, the [`access`] store (tenants, API keys, provider
//! secrets), [`metrics`], [`Limits`] and the readiness flag.
//!
//! - Authentication: [`auth::Auth`], an extractor taking an API key as a
//!   Bearer token or basic-auth password; the tenant comes from the key.
//! - Errors: every error is a [`problem::Problem`], answered as
//!   `application/problem+json`.
//! - Limits: body size (413), a request timeout and a global concurrency
//!   limit (503), a per-key rate limit (429 with `Retry-After`), and a panic
//!   guard (500, no detail).
//! - Routes: [`routes::api`] lists them; `/openapi.json` is generated from
//!   their annotations.
//! - Metrics: `GET /metrics` (Prometheus text, counts of every tenant) is
//!   not among them: [`metrics_router`] ([`metrics::router`]) serves it, for
//!   a listener of its own that only the monitoring network reaches, as
//!   Prometheus exporters are usually deployed.
//!
//! ```no_run
//! # async fn run(state: mailledger_api::AppState) -> std::io::Result<()> {
//! let app = mailledger_api::router(state);
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! axum::serve(listener, app).await
//! # }
//! ```

pub mod auth;
pub mod console;
pub mod json;
pub mod metrics;
pub mod problem;
pub mod routes;
pub mod state;
pub mod webhooks;

/// The access store, of its own crate; the API authenticates against it
/// and its admin routes manage it.
pub use mailledger_access as access;

use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::header;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::timeout::TimeoutLayer;

pub use access::{AccessStore, Caller, Scope};
pub use metrics::router as metrics_router;
pub use problem::{Problem, ProblemType};
pub use state::{AppState, Limits, ReadyFlag};

use crate::problem::PROBLEM_JSON;
use crate::routes::health::OpenApiJson;

/// The OpenAPI document of every route [`router`] serves.
#[must_use]
pub fn openapi() -> utoipa::openapi::OpenApi {
    let mut doc = routes::api().into_openapi();
    routes::add_common_responses(&mut doc);
    doc
}

/// The API over `state`, with every layer: metrics, panic guard, problem
/// bodies for bare error statuses, timeout, body limit and concurrency
/// limit.
pub fn router(state: AppState) -> Router {
    let (router, mut doc) = routes::api().split_for_parts();
    routes::add_common_responses(&mut doc);
    let doc = OpenApiJson(Arc::new(doc.to_pretty_json().unwrap_or_default()));
    // The console is HTML, not the API: merged after the document is made.
    with_layers(
        router.layer(axum::Extension(doc)).merge(console::router()),
        state,
    )
}

/// Adds the fallback and every layer to `router`.
fn with_layers(router: Router<AppState>, state: AppState) -> Router {
    let limits = Arc::clone(&state.limits);
    router
        .fallback(no_route)
        .layer(middleware::from_fn_with_state(
            state.clone(),
            limit_concurrency,
        ))
        .layer(DefaultBodyLimit::max(limits.max_body_bytes))
        .layer(RequestBodyLimitLayer::new(limits.max_body_bytes))
        .layer(TimeoutLayer::with_status_code(
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            limits.request_timeout(),
        ))
        .layer(middleware::map_response(problem_bodies))
        .layer(CatchPanicLayer::custom(panic_response))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            metrics::track,
        ))
        .with_state(state)
}

/// The answer for a path no route has: a problem, or the console's 404
/// page under `/console/`.
pub(crate) async fn no_route(uri: axum::http::Uri) -> Response {
    if uri.path().starts_with("/console/") {
        return console::not_found().await;
    }
    Problem::for_status(axum::http::StatusCode::NOT_FOUND).into_response()
}

/// Gives a bare error response from a layer or from axum (405, 408, 413,
/// 503, ...) a problem body; responses that are problems already pass.
async fn problem_bodies(res: Response) -> Response {
    let status = res.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return res;
    }
    // The console's error pages are HTML of their own.
    let own_body = res
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with(PROBLEM_JSON) || v.starts_with("text/html"));
    if own_body {
        return res;
    }
    let allow = res.headers().get(header::ALLOW).cloned();
    // The problem's own status, so the answer and its body agree (a bare
    // 431 from hyper, say, becomes a 400 `invalid-request`).
    let mut out = Problem::for_status(status).into_response();
    if let Some(a) = allow {
        out.headers_mut().insert(header::ALLOW, a);
    }
    out
}

/// The answer when a handler panicked: 500, no detail.
pub(crate) fn panic_response(_: Box<dyn std::any::Any + Send + 'static>) -> Response {
    tracing::error!("a request handler panicked");
    Problem::internal().into_response()
}

/// The global concurrency limit: 503 at once when every permit is taken.
async fn limit_concurrency(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let Ok(_permit) = Arc::clone(&state.inflight).try_acquire_owned() else {
        return Problem::new(
            ProblemType::Unavailable,
            "the server is handling as many requests as it may; retry shortly",
        )
        .retry_after(1)
        .into_response();
    };
    next.run(req).await
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use axum::routing::get;
    use mailledger_core::crypto::SecretKey;
    use mailledger_core::email::EmailLedger;
    use mailledger_core::keys::FileKeyStore;
    use mailledger_core::{Ledger, LedgerConfig, MemoryStore};
    use tower::ServiceExt;

    use super::*;

    fn state(dir: &std::path::Path, limits: Limits) -> AppState {
        let kek = SecretKey::generate().unwrap();
        let keys = FileKeyStore::open(&dir.join("keys"), &kek).unwrap();
        let log = Ledger::open(MemoryStore::new(), LedgerConfig::new()).unwrap();
        let access = AccessStore::open(&dir.join("data"), &kek).unwrap();
        AppState::new(
            Arc::new(EmailLedger::new(Arc::new(log), Arc::new(keys))),
            Arc::new(access),
        )
        .with_limits(limits)
    }

    #[allow(clippy::panic)]
    async fn boom() -> &'static str {
        panic!("secret detail zed@example.org")
    }

    async fn slow() -> &'static str {
        tokio::time::sleep(std::time::Duration::from_secs(5)).await;
        "late"
    }

    async fn get_body(app: Router, uri: &str) -> (StatusCode, String, String) {
        let res = app
            .oneshot(Request::get(uri).body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = res.status();
        let ct = res
            .headers()
            .get(header::CONTENT_TYPE)
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        let body = axum::body::to_bytes(res.into_body(), usize::MAX)
            .await
            .unwrap();
        (status, ct, String::from_utf8_lossy(&body).into_owned())
    }

    #[tokio::test]
    async fn a_panicking_handler_answers_500_problem_json_without_detail() {
        let dir = tempfile::tempdir().unwrap();
        let st = state(dir.path(), Limits::default());
        let app = with_layers(Router::new().route("/boom", get(boom)), st.clone());
        let (status, ct, body) = get_body(app, "/boom").await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(ct, PROBLEM_JSON);
        assert!(!body.contains("zed") && !body.contains("secret"), "{body}");
        assert!(st.metrics.render().contains("status=\"500\""));
    }

    #[tokio::test]
    async fn a_request_over_the_timeout_answers_503_problem_json() {
        let dir = tempfile::tempdir().unwrap();
        let st = state(
            dir.path(),
            Limits {
                request_timeout_ms: 50,
                ..Limits::default()
            },
        );
        let app = with_layers(Router::new().route("/slow", get(slow)), st);
        let (status, ct, body) = get_body(app, "/slow").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(ct, PROBLEM_JSON);
        assert!(
            body.contains("urn:mailledger:problem:unavailable"),
            "{body}"
        );
    }
}
