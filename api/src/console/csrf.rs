//! CSRF protection: every console form carries its session's token in a
//! hidden `csrf` field, and a POST whose token does not match (compared in
//! constant time) is refused with 403 and changes nothing. The sign-in
//! form, before any session, carries a token that must match a cookie of
//! its own (a double-submit token).
//!
//! [`Posted`] is the extractor of every console POST: the session, the
//! checked token, and the form's other fields.

use axum::extract::{Form, FromRequest, FromRequestParts, Request};
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};
use subtle::ConstantTimeEq;

use crate::console::session::{NoSession, Session};
use crate::problem::{Problem, ProblemType};
use crate::state::AppState;

/// The form field that carries the token.
pub const FIELD: &str = "csrf";

/// Whether `given` is `expected`, in time independent of where they differ.
#[must_use]
pub fn matches(expected: &str, given: &str) -> bool {
    expected.len() == given.len() && bool::from(expected.as_bytes().ct_eq(given.as_bytes()))
}

/// The 403 of a POST without a valid token (or without a session).
#[must_use]
pub fn refused() -> Problem {
    Problem::new(
        ProblemType::Forbidden,
        "this form is not one the console gave this session (a missing or stale CSRF token, or the session ended); reload the page and try again",
    )
}

/// A form's fields: empty values dropped (an empty input is no value);
/// a repeated name keeps every value in `all`.
#[derive(Debug, Default)]
pub struct Fields {
    /// Every (name, value) pair, in order, empty values included.
    pub all: Vec<(String, String)>,
}

impl Fields {
    /// Every non-empty value of `name`.
    #[must_use]
    pub fn values(&self, name: &str) -> Vec<&str> {
        self.all
            .iter()
            .filter(|(k, v)| k == name && !v.is_empty())
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// The fields as a JSON object of strings (last value wins), empty
    /// values left out, for deserialising into a form's struct.
    fn object(&self) -> Value {
        let mut m = Map::new();
        for (k, v) in &self.all {
            if k != FIELD && !v.is_empty() {
                m.insert(k.clone(), Value::String(v.clone()));
            }
        }
        Value::Object(m)
    }
}

/// Reads a urlencoded form body, refusing anything else with 400.
pub(crate) async fn read_fields(req: Request, state: &AppState) -> Result<Fields, Problem> {
    let Form(all): Form<Vec<(String, String)>> = Form::from_request(req, state)
        .await
        .map_err(|_| Problem::invalid("the form could not be read"))?;
    Ok(Fields { all })
}

/// A console POST: a live session, a matching CSRF token, and the form's
/// fields as `T` (400 naming no value when they do not fit).
#[derive(Debug)]
pub struct Posted<T> {
    /// The session.
    pub session: Session,
    /// The form, typed.
    pub form: T,
    /// Every field as sent.
    pub fields: Fields,
}

impl<T: DeserializeOwned> FromRequest<AppState> for Posted<T> {
    type Rejection = axum::response::Response;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        use axum::response::IntoResponse as _;
        let (mut parts, body) = req.into_parts();
        let session = Session::from_request_parts(&mut parts, state)
            .await
            .map_err(|_| NoSession::Refused(refused()).into_response())?;
        let req = Request::from_parts(parts, body);
        let fields = read_fields(req, state)
            .await
            .map_err(|p| crate::console::error_page(&p))?;
        let token = fields
            .all
            .iter()
            .find(|(k, _)| k == FIELD)
            .map(|(_, v)| v.as_str())
            .unwrap_or_default();
        if !matches(&session.csrf, token) {
            return Err(crate::console::error_page(&refused()));
        }
        let form = T::deserialize(fields.object()).map_err(|_| {
            crate::console::error_page(&Problem::invalid(
                "a field of the form is missing or not of the expected kind",
            ))
        })?;
        Ok(Posted {
            session,
            form,
            fields,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_match_only_when_equal() {
        assert!(matches("abc", "abc"));
        assert!(!matches("abc", "abd"));
        assert!(!matches("abc", "ab"));
        assert!(!matches("abc", ""));
    }
}
