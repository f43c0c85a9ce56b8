//! The console's pages, one module per job.

pub mod activity;
pub mod admin;
pub mod analytics;
pub(crate) mod chart;
pub mod erasure;
pub mod keys;
pub mod message;
pub mod signin;
pub mod suppressions;

use axum::extract::State;

use crate::auth::{Auth, RequiredScope};
use crate::console::Failed;
use crate::console::session::Session;
use crate::state::AppState;

/// The session's caller as the API's extractor would give it for a route
/// of scope `S` (403 page without it, 429 page when rate limited).
pub(crate) fn auth<S: RequiredScope>(state: &AppState, s: &Session) -> Result<Auth<S>, Failed> {
    Ok(Auth::permit(s.caller.clone(), state)?)
}

/// Empty values are no value.
pub(crate) fn given(v: Option<String>) -> Option<String> {
    v.filter(|v| !v.trim().is_empty())
}

/// A form's time (`2026-11-22T10:00` from a `datetime-local` input, taken
/// as UTC) as RFC 3339; anything else passes to the API's own check.
pub(crate) fn rfc3339(v: Option<String>) -> Option<String> {
    given(v).map(|t| match t.len() {
        16 => format!("{t}:00Z"),
        19 => format!("{t}Z"),
        _ => t,
    })
}

/// The state, as the API's handlers take it.
pub(crate) fn st(state: &AppState) -> State<AppState> {
    State(state.clone())
}
