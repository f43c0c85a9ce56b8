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
        let mut value: serde_json::Value = parse_object(&bytes)?;
        whole_floats_as_integers(&mut value);
        T::deserialize(value)
            .map(ApiJson)
            .map_err(|e| Problem::invalid(describe_json_error(&e)))
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

/// Rewrites each number of `value` that is a whole float (`2.0`) as the
/// integer it equals: JSON (and the schemas of `/openapi.json`) make no
/// difference between `2.0` and `2`, serde's integer fields do.
pub fn whole_floats_as_integers(value: &mut serde_json::Value) {
    use serde_json::Value;
    match value {
        Value::Number(n) => {
            if let Some(f) = n.as_f64().filter(|_| n.is_f64())
                && f.fract() == 0.0
                && f.abs() <= 9_007_199_254_740_992.0
            {
                // Exact: a whole float within 2^53 is an integer of i64.
                #[allow(clippy::cast_possible_truncation)]
                let i = f as i64;
                *n = i.into();
            }
        }
        Value::Array(items) => items.iter_mut().for_each(whole_floats_as_integers),
        Value::Object(map) => map.values_mut().for_each(whole_floats_as_integers),
        _ => {}
    }
}

/// Parses a JSON request body that must be an object: anything else (an
/// array, `null`, a string) is refused with the same 400 as any other
/// invalid body, before `T` sees it.
///
/// # Errors
/// The 400 problem.
pub fn parse_object<'de, T: Deserialize<'de>>(bytes: &'de [u8]) -> Result<T, Problem> {
    let first = bytes.iter().find(|b| !b.is_ascii_whitespace());
    if first != Some(&b'{') {
        return Err(Problem::invalid("the request body must be a JSON object"));
    }
    parse(bytes)
}

impl<T: Serialize> IntoResponse for ApiJson<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}
