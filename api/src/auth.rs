//! Authentication, scopes and the per-key rate limit, as one extractor.
//!
//! A handler that takes [`Auth<S>`] runs only for a request carrying a valid
//! API key with one of the scopes `S` names:
//!
//! - the key comes as `Authorization: Bearer mlk_…`, or as the password of
//!   HTTP basic auth (`Authorization: Basic base64(user:mlk_…)`, the user is
//!   ignored), because many providers' webhooks can only put credentials in
//!   the URL's user-info;
//! - every authentication failure (no header, a malformed one, an unknown
//!   key id, a wrong secret, a revoked key, a deleted tenant) answers the
//!   same 401 with the same body;
//! - a valid key without the scope answers 403 `forbidden`: the caller has
//!   proved who it is, and learns only that its own key lacks a scope. A
//!   `webhook` key has no scope but its own, so every route answers it 403
//!   except `POST /v1/webhooks/{provider}` ([`WebhookAuth`]), which answers
//!   a `webhook:<provider>` key 403 for any other provider;
//! - then the key's token bucket is charged: 429 with `Retry-After` when
//!   empty.
//!
//! The tenant is the key's, never taken from the request.

use std::marker::PhantomData;

use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;
use base64::Engine as _;
use mailledger_access::{Caller, Scope, WebhookProvider};

use crate::problem::{Problem, ProblemType};
use crate::state::AppState;

/// The scopes a route accepts (any one of them).
pub trait RequiredScope: Send + Sync + 'static {
    /// The accepted scopes.
    const SCOPES: &'static [Scope];
}

/// Marker types for [`Auth`].
pub mod scope {
    use super::{RequiredScope, Scope};

    /// The `ingest` scope.
    #[derive(Debug)]
    pub struct Ingest;
    /// The `read` scope.
    #[derive(Debug)]
    pub struct Read;
    /// The `erase` scope.
    #[derive(Debug)]
    pub struct Erase;
    /// The `erase` or the `read` scope.
    #[derive(Debug)]
    pub struct EraseOrRead;
    /// The `admin` scope.
    #[derive(Debug)]
    pub struct Admin;
    /// The `audit` scope.
    #[derive(Debug)]
    pub struct Audit;
    /// The `erase` or the `audit` scope (a data protection officer's key, or
    /// an auditor's).
    #[derive(Debug)]
    pub struct EraseOrAudit;
    /// The `ingest` or the `read` scope (a sending system's key, or a
    /// reader's).
    #[derive(Debug)]
    pub struct IngestOrRead;

    impl RequiredScope for Ingest {
        const SCOPES: &'static [Scope] = &[Scope::Ingest];
    }
    impl RequiredScope for Read {
        const SCOPES: &'static [Scope] = &[Scope::Read];
    }
    impl RequiredScope for Erase {
        const SCOPES: &'static [Scope] = &[Scope::Erase];
    }
    impl RequiredScope for EraseOrRead {
        const SCOPES: &'static [Scope] = &[Scope::Erase, Scope::Read];
    }
    impl RequiredScope for Audit {
        const SCOPES: &'static [Scope] = &[Scope::Audit];
    }
    impl RequiredScope for EraseOrAudit {
        const SCOPES: &'static [Scope] = &[Scope::Erase, Scope::Audit];
    }
    impl RequiredScope for Admin {
        const SCOPES: &'static [Scope] = &[Scope::Admin];
    }
    impl RequiredScope for IngestOrRead {
        const SCOPES: &'static [Scope] = &[Scope::Ingest, Scope::Read];
    }
}

/// An authenticated caller with one of the scopes of `S`.
#[derive(Debug)]
pub struct Auth<S: RequiredScope>(pub Caller, PhantomData<S>);

impl<S: RequiredScope> Auth<S> {
    /// The caller.
    #[must_use]
    pub fn caller(&self) -> &Caller {
        &self.0
    }

    /// The caller's tenant.
    #[must_use]
    pub fn tenant(&self) -> &str {
        &self.0.tenant
    }
}

/// The API key a request carries, from a Bearer token or a basic-auth
/// password; `None` when there is none or the header is malformed.
#[must_use]
pub fn presented_key(parts: &Parts) -> Option<String> {
    let value = parts.headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, rest) = value.trim().split_once(' ')?;
    let rest = rest.trim();
    if scheme.eq_ignore_ascii_case("bearer") {
        return Some(rest.to_owned());
    }
    if scheme.eq_ignore_ascii_case("basic") {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(rest)
            .ok()?;
        let text = String::from_utf8(decoded).ok()?;
        let (_, password) = text.split_once(':')?;
        return Some(password.to_owned());
    }
    None
}

/// Authenticates a request against the access store, without a scope check
/// or rate limit.
///
/// # Errors
/// The one 401, or 500 when the access store cannot be read.
pub fn authenticate(parts: &Parts, state: &AppState) -> Result<Caller, Problem> {
    let Some(token) = presented_key(parts) else {
        return Err(Problem::unauthorized());
    };
    authenticate_key(&token, state)
}

/// Authenticates an API key's text against the access store, as
/// [`authenticate`] does a request's.
///
/// # Errors
/// The one 401, 403 `residency-violation`, or 500 when the access store
/// cannot be read.
pub fn authenticate_key(token: &str, state: &AppState) -> Result<Caller, Problem> {
    match state.access.authenticate(token) {
        // A tenant created elsewhere (by `mailledger tenant create` with
        // another configuration) that this node may not serve.
        Ok(Some(c)) if !state.residency.permits(&c.jurisdictions) => Err(Problem::new(
            ProblemType::ResidencyViolation,
            "this tenant's data may not be kept where this node keeps it; an operator can see where in GET /v1/admin/residency",
        )),
        Ok(Some(c)) => Ok(c),
        Ok(None) => Err(Problem::unauthorized()),
        Err(e) => {
            tracing::error!(error = %e, "cannot read the access store");
            Err(Problem::internal())
        }
    }
}

/// The 403 of a key without any of the scopes `names`.
fn forbidden(names: &[&str]) -> Problem {
    Problem::new(
        ProblemType::Forbidden,
        format!(
            "this API key lacks the scope this route needs: {}",
            names.join(" or ")
        ),
    )
}

/// Charges the caller's token bucket: 429 when it is empty.
fn charge(caller: &Caller, state: &AppState) -> Result<(), Problem> {
    if let Err(wait) = state.rate.take(&caller.key_id) {
        state.metrics.rate_limited.inc();
        return Err(Problem::new(
            ProblemType::RateLimited,
            "this API key made too many requests; retry after the time Retry-After gives",
        )
        .retry_after(wait));
    }
    Ok(())
}

impl<S: RequiredScope> FromRequestParts<AppState> for Auth<S> {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Problem> {
        let caller = authenticate(parts, state)?;
        Self::permit(caller, state)
    }
}

impl<S: RequiredScope> Auth<S> {
    /// `caller`, authenticated some other way (the console's session), as
    /// this extractor would give it: 403 without one of the scopes of `S`,
    /// 429 when the key's bucket is empty.
    pub(crate) fn permit(caller: Caller, state: &AppState) -> Result<Self, Problem> {
        if !S::SCOPES.iter().any(|s| caller.has(*s)) {
            let names: Vec<&str> = S::SCOPES.iter().map(|s| s.name()).collect();
            return Err(forbidden(&names));
        }
        charge(&caller, state)?;
        Ok(Auth(caller, PhantomData))
    }
}

/// An authenticated caller that may post the webhooks of the provider the
/// path names (`POST /v1/webhooks/{provider}`): a key with `ingest`,
/// `webhook`, or `webhook:<that provider>`. A provider-limited key gets 403
/// for any other provider, and for a name that is no provider; the others
/// learn of an unknown provider from the handler's 404.
#[derive(Debug)]
pub struct WebhookAuth(pub Caller);

impl WebhookAuth {
    /// The caller's tenant.
    #[must_use]
    pub fn tenant(&self) -> &str {
        &self.0.tenant
    }
}

impl FromRequestParts<AppState> for WebhookAuth {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Problem> {
        let caller = authenticate(parts, state)?;
        let provider = axum::extract::Path::<String>::from_request_parts(parts, state)
            .await
            .ok()
            .and_then(|p| WebhookProvider::from_name(&p.0));
        let allowed = match provider {
            Some(p) => caller.may_post_webhook(p),
            // No such provider: the handler answers 404 to a key that may
            // post any provider's webhooks.
            None => caller.has(Scope::Ingest) || caller.has(Scope::Webhook(None)),
        };
        if !allowed {
            let own = provider.map_or("webhook:<provider>", |p| Scope::Webhook(Some(p)).name());
            return Err(forbidden(&["ingest", "webhook", own]));
        }
        charge(&caller, state)?;
        Ok(WebhookAuth(caller))
    }
}
