//! Errors as `application/problem+json` (RFC 9457).
//!
//! Every error the API answers is a [`Problem`]: a stable `type` URI
//! (`urn:mailledger:problem:<slug>`, listed in [`ProblemType`]), a `title`
//! that belongs to the type, the HTTP `status`, and a `detail` written for
//! the caller. A detail never holds internal detail (storage messages, file
//! names, panics) or personal data: input errors name the field, never the
//! value, and server-side failures say only that something failed.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use mailledger_core::ErrorKind;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

// Describes a JSON error without quoting a value (the access store's
// messages use it too, so it lives there).
pub use mailledger_access::describe_json_error;

/// The media type of every error body.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// The kinds of problem the API reports; each has a stable `type` URI.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProblemType {
    /// The request was malformed (JSON, a field, a rule of the taxonomy).
    InvalidRequest,
    /// The body is not JSON (`Content-Type` is not `application/json`).
    UnsupportedMediaType,
    /// The body is larger than the limit.
    PayloadTooLarge,
    /// Missing or bad credentials; the same for every reason.
    Unauthorized,
    /// A valid key without the scope this route needs.
    Forbidden,
    /// No such resource (or one of another tenant's).
    NotFound,
    /// No route has this path.
    NoRoute,
    /// The route exists, the method does not.
    MethodNotAllowed,
    /// The resource exists already, or the state does not allow the change.
    Conflict,
    /// Too many requests for this key; see `Retry-After`.
    RateLimited,
    /// Too many requests in flight, a timeout, or the log is unavailable.
    Unavailable,
    /// Something failed inside the server; the detail says no more.
    Internal,
    /// A provider webhook's signature is missing, wrong or stale.
    BadSignature,
    /// The tenant has not configured what this request needs (a webhook
    /// secret); the provider should retry once it is.
    NotConfigured,
    /// Settings that parse but would make a check prove nothing (SNS
    /// certificates without a topic allow-list); the detail names the
    /// field, never a value.
    UnsafeSettings,
    /// This server runs without projections, so queries, suppression
    /// checks and analytics are not available.
    ProjectionsUnavailable,
    /// The change needs a `reason` (removing a complaint's suppression).
    ReasonRequired,
    /// An erasure request id already names the erasure of another contact;
    /// nothing was destroyed.
    RequestIdConflict,
    /// The tenant's data may not be kept where this node keeps it (the
    /// node or one of its stores lies outside the tenant's allowed
    /// jurisdictions); `GET /v1/admin/residency` shows where.
    ResidencyViolation,
}

impl ProblemType {
    /// The short name in the type URI.
    #[must_use]
    pub fn slug(self) -> &'static str {
        match self {
            Self::InvalidRequest => "invalid-request",
            Self::UnsupportedMediaType => "unsupported-media-type",
            Self::PayloadTooLarge => "payload-too-large",
            Self::Unauthorized => "unauthorized",
            Self::Forbidden => "forbidden",
            Self::NotFound => "not-found",
            Self::NoRoute => "no-route",
            Self::MethodNotAllowed => "method-not-allowed",
            Self::Conflict => "conflict",
            Self::RateLimited => "rate-limited",
            Self::Unavailable => "unavailable",
            Self::Internal => "internal",
            Self::BadSignature => "bad-signature",
            Self::NotConfigured => "not-configured",
            Self::UnsafeSettings => "unsafe-settings",
            Self::ProjectionsUnavailable => "projections-unavailable",
            Self::ReasonRequired => "reason-required",
            Self::ResidencyViolation => "residency-violation",
            Self::RequestIdConflict => "request-id-conflict",
        }
    }

    /// The stable `type` URI.
    #[must_use]
    pub fn uri(self) -> String {
        format!("urn:mailledger:problem:{}", self.slug())
    }

    /// The title of the type (the same for every occurrence).
    #[must_use]
    pub fn title(self) -> &'static str {
        match self {
            Self::InvalidRequest => "Invalid request",
            Self::UnsupportedMediaType => "Unsupported media type",
            Self::PayloadTooLarge => "Payload too large",
            Self::Unauthorized => "Unauthorized",
            Self::Forbidden => "Forbidden",
            Self::NotFound => "Not found",
            Self::NoRoute => "No such route",
            Self::MethodNotAllowed => "Method not allowed",
            Self::Conflict => "Conflict",
            Self::RateLimited => "Too many requests",
            Self::Unavailable => "Service unavailable",
            Self::Internal => "Internal error",
            Self::BadSignature => "Bad webhook signature",
            Self::NotConfigured => "Not configured",
            Self::UnsafeSettings => "Unsafe settings",
            Self::ProjectionsUnavailable => "Projections unavailable",
            Self::ReasonRequired => "Reason required",
            Self::ResidencyViolation => "Outside the allowed jurisdictions",
            Self::RequestIdConflict => "Request id used for another contact",
        }
    }

    /// The HTTP status of the type.
    #[must_use]
    pub fn status(self) -> StatusCode {
        match self {
            Self::InvalidRequest => StatusCode::BAD_REQUEST,
            Self::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::Unauthorized | Self::BadSignature => StatusCode::UNAUTHORIZED,
            Self::Forbidden | Self::ResidencyViolation => StatusCode::FORBIDDEN,
            Self::NotFound | Self::NoRoute => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::Conflict | Self::ReasonRequired | Self::RequestIdConflict => StatusCode::CONFLICT,
            Self::RateLimited => StatusCode::TOO_MANY_REQUESTS,
            Self::Unavailable | Self::NotConfigured | Self::ProjectionsUnavailable => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            Self::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            Self::UnsafeSettings => StatusCode::UNPROCESSABLE_ENTITY,
        }
    }
}

/// An RFC 9457 problem, as the body of every error response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ProblemBody {
    /// A stable URI naming the kind of problem, `urn:mailledger:problem:<slug>`.
    #[serde(rename = "type")]
    pub type_uri: String,
    /// A short summary of the kind of problem.
    pub title: String,
    /// The HTTP status.
    pub status: u16,
    /// What went wrong with this request, without personal data or internals.
    pub detail: String,
}

/// An error response: a [`ProblemType`], a detail, and optional
/// `Retry-After` seconds.
#[derive(Debug, Clone)]
pub struct Problem {
    kind: ProblemType,
    detail: String,
    retry_after: Option<u64>,
}

impl Problem {
    /// A problem of `kind` with `detail`.
    #[must_use]
    pub fn new(kind: ProblemType, detail: impl Into<String>) -> Self {
        Self {
            kind,
            detail: detail.into(),
            retry_after: None,
        }
    }

    /// 400, naming what is wrong.
    #[must_use]
    pub fn invalid(detail: impl Into<String>) -> Self {
        Self::new(ProblemType::InvalidRequest, detail)
    }

    /// 404 for a resource; the same for a missing one and another tenant's.
    #[must_use]
    pub fn not_found(what: &str) -> Self {
        Self::new(ProblemType::NotFound, format!("no such {what}"))
    }

    /// 500, with a generic detail; the cause goes to the server log only.
    #[must_use]
    pub fn internal() -> Self {
        Self::new(
            ProblemType::Internal,
            "the server failed to handle the request; it was logged",
        )
    }

    /// The one 401 every authentication failure answers.
    #[must_use]
    pub fn unauthorized() -> Self {
        Self::new(
            ProblemType::Unauthorized,
            "a valid API key is required, as `Authorization: Bearer mlk_...` or as the basic-auth password",
        )
    }

    /// Adds a `Retry-After` header.
    #[must_use]
    pub fn retry_after(mut self, seconds: u64) -> Self {
        self.retry_after = Some(seconds.max(1));
        self
    }

    /// The kind.
    #[must_use]
    pub fn kind(&self) -> ProblemType {
        self.kind
    }

    /// The detail.
    #[must_use]
    pub fn detail(&self) -> &str {
        &self.detail
    }

    /// The body.
    #[must_use]
    pub fn body(&self) -> ProblemBody {
        ProblemBody {
            type_uri: self.kind.uri(),
            title: self.kind.title().to_owned(),
            status: self.kind.status().as_u16(),
            detail: self.detail.clone(),
        }
    }

    /// A problem for a bare error status from a layer (timeout, body limit,
    /// method not allowed) that wrote no problem body.
    #[must_use]
    pub fn for_status(status: StatusCode) -> Self {
        match status {
            StatusCode::NOT_FOUND => Self::new(ProblemType::NoRoute, "no route has this path"),
            StatusCode::METHOD_NOT_ALLOWED => Self::new(
                ProblemType::MethodNotAllowed,
                "this route does not answer this method",
            ),
            StatusCode::PAYLOAD_TOO_LARGE => Self::new(
                ProblemType::PayloadTooLarge,
                "the request body is larger than the limit",
            ),
            StatusCode::UNSUPPORTED_MEDIA_TYPE => Self::new(
                ProblemType::UnsupportedMediaType,
                "the body must be application/json",
            ),
            StatusCode::REQUEST_TIMEOUT | StatusCode::SERVICE_UNAVAILABLE => Self::new(
                ProblemType::Unavailable,
                "the request took too long, or the service is unavailable; retry later",
            )
            .retry_after(1),
            s if s.is_client_error() => Self::invalid("the request was refused"),
            _ => Self::internal(),
        }
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = self.kind.status();
        let body = serde_json::to_vec(&self.body()).unwrap_or_default();
        let mut res = (status, body).into_response();
        let h = res.headers_mut();
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        if let Some(s) = self.retry_after {
            h.insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        if self.kind == ProblemType::Unauthorized {
            h.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(r#"Bearer realm="mailledger", Basic realm="mailledger""#),
            );
        }
        res
    }
}

impl From<mailledger_core::Error> for Problem {
    fn from(e: mailledger_core::Error) -> Self {
        match e.kind() {
            // Core errors of this kind name the rule and the field, never a
            // value (an invariant of mailledger-core, tested there).
            ErrorKind::InvalidInput => match e {
                mailledger_core::Error::InvalidInput(msg) => Self::invalid(msg),
                other => Self::invalid(other.to_string()),
            },
            ErrorKind::Conflict => match e {
                mailledger_core::Error::RequestIdConflict => Self::new(
                    ProblemType::RequestIdConflict,
                    "this request id names the erasure of another contact; nothing was erased: use a new request id",
                ),
                _ => Self::new(
                    ProblemType::Conflict,
                    "a stream was not at the expected version; read it and retry",
                ),
            },
            ErrorKind::Unavailable => {
                tracing::error!(error = %e, "log unavailable");
                Self::new(
                    ProblemType::Unavailable,
                    "the ledger is not accepting requests; retry later",
                )
                .retry_after(5)
            }
            _ => {
                tracing::error!(error = %e, "request failed");
                Self::internal()
            }
        }
    }
}

impl From<mailledger_projections::Error> for Problem {
    fn from(e: mailledger_projections::Error) -> Self {
        use mailledger_projections::Error as E;
        match e {
            // Projection input errors name the parameter, never a value.
            E::InvalidInput(msg) => Self::invalid(msg),
            E::Log(e) => Self::from(e),
            E::Stopped => Self::new(
                ProblemType::Unavailable,
                "the projections are not running; retry later",
            )
            .retry_after(5),
            other => {
                tracing::error!(error = %other, "projection query failed");
                Self::internal()
            }
        }
    }
}

impl From<mailledger_audit::AuditError> for Problem {
    fn from(e: mailledger_audit::AuditError) -> Self {
        match e {
            mailledger_audit::AuditError::Log(e) => Self::from(e),
            mailledger_audit::AuditError::Projection(e) => Self::from(e),
            other => {
                tracing::error!(error = %other, "audit request failed");
                Self::internal()
            }
        }
    }
}
