//! The web console: server-rendered HTML pages over the same handlers the
//! API routes run, for support agents, marketers, data protection officers
//! and operators, under `/console`.
//!
//! - Sign-in with an API key, then a session ([`session`]); every form
//!   carries the session's CSRF token ([`csrf`]).
//! - Each page calls the API handler of its route with the session's
//!   caller ([`crate::auth::Auth::permit`]): the same scope check, rate
//!   limit, queries and access records.
//! - Every response carries a strict Content-Security-Policy,
//!   `X-Frame-Options: DENY` and `Referrer-Policy: no-referrer`; every
//!   asset is compiled into the binary ([`assets`]); nothing is fetched
//!   from another origin.
//! - Addresses travel only in POST bodies, never in a URL.
//!
//! The console is not part of the OpenAPI document: it is HTML, not the API.

pub mod assets;
pub mod csrf;
pub(crate) mod layout;
pub mod pages;
pub mod session;

use axum::Router;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware;
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use maud::html;

use crate::problem::Problem;
use crate::state::AppState;

pub use session::{Session, Sessions};

/// The Content-Security-Policy of every console response: nothing but
/// this origin, no inline script or style.
pub const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'";

/// The console's routes (kept out of the OpenAPI document).
pub fn router() -> Router<AppState> {
    use pages::{activity, admin, analytics, erasure, keys, message, signin, suppressions};
    Router::new()
        .route(
            "/console",
            get(|| async { Redirect::to("/console/activity") }),
        )
        .route(
            "/console/",
            get(|| async { Redirect::to("/console/activity") }),
        )
        .route("/console/signin", get(signin::form).post(signin::submit))
        .route("/console/signout", post(signin::sign_out))
        .route("/console/activity", get(activity::activity))
        .route(
            "/console/search",
            get(activity::search_form).post(activity::search),
        )
        .route("/console/messages/{id}", get(message::message))
        .route("/console/suppressions", get(suppressions::list))
        .route("/console/suppressions/lookup", post(suppressions::lookup))
        .route("/console/suppressions/add", post(suppressions::add))
        .route("/console/suppressions/remove", post(suppressions::remove))
        .route("/console/analytics", get(analytics::analytics))
        .route("/console/erasure", get(erasure::show).post(erasure::erase))
        .route("/console/audit/access", get(erasure::access))
        .route("/console/audit/checkpoints", get(erasure::checkpoints))
        .route(
            "/console/admin/tenants",
            get(admin::tenants).post(admin::create_tenant),
        )
        .route("/console/admin/keys", get(keys::list).post(keys::create))
        .route("/console/admin/keys/{id}/revoke", post(keys::revoke))
        .route(
            "/console/admin/webhook-secrets",
            get(admin::webhook_form).post(admin::set_webhook_secrets),
        )
        .route("/console/admin/residency", get(admin::residency))
        .route(
            "/console/admin/projections",
            get(admin::projections).post(admin::rebuild),
        )
        .route("/console/assets/{name}", get(assets::serve))
        .layer(middleware::map_response(security_headers))
}

/// Adds the console's security headers to a response; pages (not assets)
/// are never cached, so a shown key or address is not kept on disk.
pub async fn security_headers(mut res: Response) -> Response {
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    res
}

/// An error page for `p`: its status, title and detail (never a value
/// from the request), with a way back.
pub fn error_page(p: &Problem) -> Response {
    let status = p.kind().status();
    let markup = html! {
        (maud::DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (p.kind().title()) " · mailledger console" }
                link rel="stylesheet" href=(assets::CSS_PATH);
            }
            body {
                main.narrow #main {
                    h1 { (p.kind().title()) }
                    p.problem role="alert" { (p.detail()) }
                    p { a href="/console/activity" { "Back to the console" } " · " a href="/console/signin" { "Sign in" } }
                }
            }
        }
    };
    (status, Html(markup.into_string())).into_response()
}

/// The 404 page of a console path no route has, with the console's headers.
pub async fn not_found() -> Response {
    security_headers(error_page(&Problem::not_found("page"))).await
}

/// A page handler's failure: an error page.
#[derive(Debug)]
pub struct Failed(Box<Response>);

impl From<Problem> for Failed {
    fn from(p: Problem) -> Self {
        Self(Box::new(error_page(&p)))
    }
}

impl From<session::NoSession> for Failed {
    fn from(n: session::NoSession) -> Self {
        Self(Box::new(n.into_response()))
    }
}

impl IntoResponse for Failed {
    fn into_response(self) -> Response {
        *self.0
    }
}

/// What a page handler answers.
pub type PageResult = Result<Response, Failed>;

/// A 400 for a form or query that does not fit, naming no value.
pub(crate) fn bad_input(what: &str) -> Failed {
    Failed::from(Problem::invalid(what.to_owned()))
}

/// A 303 to `to` (after a POST that changed something).
pub(crate) fn see_other(to: &str) -> Response {
    (StatusCode::SEE_OTHER, [(header::LOCATION, to.to_owned())]).into_response()
}
