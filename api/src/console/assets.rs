//! The console's assets, compiled into the binary: htmx (vendored from its
//! npm package, version in the file name), the console's own stylesheet
//! and its one small script (local times for `<time>` elements). Served
//! under `/console/assets/`, cached for a year (the names change with the
//! content's version).

use axum::extract::Path;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};

use crate::problem::Problem;

/// htmx 2.0.4, from the npm package `htmx.org` (licence 0BSD).
pub const HTMX: &str = include_str!("assets/htmx-2.0.4.min.js");
/// The console's stylesheet.
pub const CSS: &str = include_str!("assets/console.css");
/// The console's script: local times, with UTC kept in `title`.
pub const JS: &str = include_str!("assets/console.js");

/// Where the stylesheet is served.
pub const CSS_PATH: &str = "/console/assets/console-1.css";
/// Where the console's script is served.
pub const JS_PATH: &str = "/console/assets/console-1.js";
/// Where htmx is served.
pub const HTMX_PATH: &str = "/console/assets/htmx-2.0.4.min.js";

/// Every asset: (name under /console/assets/, content type, body).
const ALL: [(&str, &str, &str); 3] = [
    ("htmx-2.0.4.min.js", "text/javascript; charset=utf-8", HTMX),
    ("console-1.css", "text/css; charset=utf-8", CSS),
    ("console-1.js", "text/javascript; charset=utf-8", JS),
];

/// The bytes every asset adds to the binary.
#[must_use]
pub fn total_bytes() -> usize {
    ALL.iter().map(|(_, _, body)| body.len()).sum()
}

/// `GET /console/assets/{name}`.
pub async fn serve(Path(name): Path<String>) -> Response {
    match ALL.iter().find(|(n, _, _)| *n == name) {
        Some((_, ct, body)) => {
            let mut res = (*body).into_response();
            let h = res.headers_mut();
            h.insert(header::CONTENT_TYPE, HeaderValue::from_static(ct));
            h.insert(
                header::CACHE_CONTROL,
                HeaderValue::from_static("public, max-age=31536000, immutable"),
            );
            res
        }
        None => super::error_page(&Problem::not_found("asset")),
    }
}
