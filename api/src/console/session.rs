//! Console sessions: signed in with an API key, held in this process's
//! memory, named by a random 256-bit id in an `HttpOnly`, `SameSite=Strict`
//! cookie (`Secure` when the request came over TLS).
//!
//! The cookie holds only the session id; the key stays here (zeroised when
//! the session ends) and is authenticated again on every request, so a
//! revoked key or a deleted tenant ends its sessions at once. A session
//! lapses [`TTL`] after sign-in.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Redirect, Response};
use mailledger_access::Caller;
use zeroize::Zeroizing;

use crate::auth::authenticate_key;
use crate::console::csrf;
use crate::console::error_page;
use crate::problem::Problem;
use crate::state::AppState;

/// The session cookie's name.
pub const COOKIE: &str = "mailledger_session";

/// How long a session lasts after sign-in.
pub const TTL: Duration = Duration::from_secs(8 * 60 * 60);

/// The most sessions held at once; past it the oldest-expiring go first.
const MAX_SESSIONS: usize = 10_000;

/// One signed-in browser.
struct Entry {
    key: Zeroizing<String>,
    csrf: String,
    expires: Instant,
}

/// The sessions of this process.
#[derive(Default)]
pub struct Sessions {
    map: Mutex<HashMap<String, Entry>>,
}

impl std::fmt::Debug for Sessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sessions").finish_non_exhaustive()
    }
}

/// 32 random bytes as 64 hex digits.
pub(crate) fn random_token() -> Result<String, Problem> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|_| Problem::internal())?;
    Ok(mailledger_core::hex(&bytes))
}

impl Sessions {
    /// Starts a session for `key` (already authenticated): its id and CSRF
    /// token.
    ///
    /// # Errors
    /// 500 when the system's random source fails.
    pub fn start(&self, key: String) -> Result<(String, String), Problem> {
        let id = random_token()?;
        let token = random_token()?;
        let now = Instant::now();
        let mut map = self.map.lock().unwrap_or_else(PoisonError::into_inner);
        map.retain(|_, e| e.expires > now);
        if map.len() >= MAX_SESSIONS
            && let Some(oldest) = map
                .iter()
                .min_by_key(|(_, e)| e.expires)
                .map(|(k, _)| k.clone())
        {
            map.remove(&oldest);
        }
        map.insert(
            id.clone(),
            Entry {
                key: Zeroizing::new(key),
                csrf: token.clone(),
                expires: now + TTL,
            },
        );
        Ok((id, token))
    }

    /// The key and CSRF token of a live session.
    fn get(&self, id: &str) -> Option<(Zeroizing<String>, String)> {
        let mut map = self.map.lock().unwrap_or_else(PoisonError::into_inner);
        match map.get(id) {
            Some(e) if e.expires > Instant::now() => Some((e.key.clone(), e.csrf.clone())),
            Some(_) => {
                map.remove(id);
                None
            }
            None => None,
        }
    }

    /// Ends a session (sign-out).
    pub fn end(&self, id: &str) {
        self.map
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(id);
    }
}

/// A cookie's value from a request's `Cookie` headers.
pub(crate) fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// Whether the request reached us over TLS (directly, or through a proxy
/// that says so): the cookie is then `Secure`.
pub(crate) fn over_tls(headers: &HeaderMap) -> bool {
    headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("https"))
}

/// The `Set-Cookie` value of a cookie, `max_age` seconds (0 deletes it).
pub(crate) fn set_cookie(name: &str, value: &str, max_age: u64, secure: bool) -> String {
    let secure = if secure { "; Secure" } else { "" };
    format!("{name}={value}; Path=/console; HttpOnly; SameSite=Strict; Max-Age={max_age}{secure}")
}

/// A signed-in console user: the session and the caller its key stands for.
#[derive(Debug, Clone)]
pub struct Session {
    /// The session id (the cookie's value).
    pub id: String,
    /// The caller, authenticated again for this request.
    pub caller: Caller,
    /// The session's CSRF token, for the forms of the page.
    pub csrf: String,
}

impl Session {
    /// Whether the key has `scope`.
    #[must_use]
    pub fn has(&self, scope: mailledger_access::Scope) -> bool {
        self.caller.has(scope)
    }
}

/// What a request without a live session gets: a GET goes to the sign-in
/// page; anything else is refused (403), as a forged form would be.
#[derive(Debug)]
pub enum NoSession {
    /// Go and sign in.
    SignIn,
    /// Refused.
    Refused(Problem),
}

impl IntoResponse for NoSession {
    fn into_response(self) -> Response {
        match self {
            Self::SignIn => Redirect::to("/console/signin").into_response(),
            Self::Refused(p) => error_page(&p),
        }
    }
}

impl FromRequestParts<AppState> for Session {
    type Rejection = NoSession;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, NoSession> {
        let is_get = matches!(
            parts.method,
            axum::http::Method::GET | axum::http::Method::HEAD
        );
        let none = || {
            if is_get {
                NoSession::SignIn
            } else {
                NoSession::Refused(csrf::refused())
            }
        };
        let id = cookie(&parts.headers, COOKIE).ok_or_else(none)?;
        let (key, token) = state.console.get(id).ok_or_else(none)?;
        let caller = match authenticate_key(&key, state) {
            Ok(c) => c,
            Err(p) if p.kind() == crate::ProblemType::Unauthorized => {
                // The key was revoked, or its tenant deleted.
                state.console.end(id);
                return Err(none());
            }
            Err(p) => return Err(NoSession::Refused(p)),
        };
        Ok(Session {
            id: id.to_owned(),
            caller,
            csrf: token,
        })
    }
}
