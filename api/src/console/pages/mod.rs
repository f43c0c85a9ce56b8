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

/// The state, as the API's handlers take it.
pub(crate) fn st(state: &AppState) -> State<AppState> {
    State(state.clone())
}
