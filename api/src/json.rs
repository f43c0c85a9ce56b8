//! [`ApiJson`]: axum's `Json` with problem+json rejections that never quote
//! input values.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRequest, Request};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::problem::{Problem, ProblemType, describe_json_error};

/// A JSON request or response body.
///
/// As an extractor it requires `Content-Type: application/json` (415
/// otherwise), a body within the limit (413), and JSON that deserialises
/// into `T` (400 naming the field or the line and column, never a value).
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiJson<T>(pub T);

/// Whether a request's content type is JSON (`application/json` or `+json`).
fn is_json(req: &Request) -> bool {
    req.headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|m| m.trim().to_ascii_lowercase())
        .is_some_and(|m| {
            m == "application/json" || (m.starts_with("application/") && m.ends_with("+json"))
        })
}

/// The problem for a body that could not be read.
pub(crate) fn body_problem(r: &BytesRejection) -> Problem {
    if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
        Problem::for_status(StatusCode::PAYLOAD_TOO_LARGE)
    } else {
        Problem::invalid("the request body could not be read")
    }
}

impl<T, S> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = Problem;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let JsonBytes(bytes) = JsonBytes::from_request(req, state).await?;
        parse(&bytes).map(ApiJson)
    }
}

/// A JSON request body read but not yet parsed, for handlers that parse it
/// elsewhere (on the ingest runtime, [`AppState::with_ingest_runtime`](crate::AppState::with_ingest_runtime)): the checks of
/// [`ApiJson`] but the parse, which [`parse`] does.
#[derive(Debug, Clone)]
pub struct JsonBytes(pub Bytes);

impl<S: Send + Sync> FromRequest<S> for JsonBytes {
    type Rejection = Problem;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        if !is_json(&req) {
            return Err(Problem::new(
                ProblemType::UnsupportedMediaType,
                "the body must be JSON, with Content-Type: application/json",
            ));
        }
        Bytes::from_request(req, state)
            .await
            .map(JsonBytes)
            .map_err(|r| body_problem(&r))
    }
}

/// Parses a JSON body as [`ApiJson`] does: 400 naming the field, or the
/// line and column, never a value.
///
/// # Errors
/// The 400 problem.
pub fn parse<'de, T: Deserialize<'de>>(bytes: &'de [u8]) -> Result<T, Problem> {
    serde_json::from_slice(bytes).map_err(|e| Problem::invalid(describe_json_error(&e)))
}

impl<T: Serialize> IntoResponse for ApiJson<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}
