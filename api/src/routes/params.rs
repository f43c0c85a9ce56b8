//! Shared parts of the projection-backed routes: the projections (or 503),
//! and parsing of query parameters and body fields with errors that name
//! the parameter, never its value.

use std::sync::Arc;

use axum::extract::rejection::QueryRejection;
use mailledger_core::crypto::Personal;
use mailledger_core::pseudonym::Pseudonym;
use mailledger_projections::Projections;
use mailledger_projections::delivery::MAX_PAGE;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::problem::{Problem, ProblemType};
use crate::state::AppState;

/// The page size when none is given.
pub const DEFAULT_LIMIT: usize = 50;

/// The longest filter value (a tag, campaign, domain or scope), as the
/// taxonomy allows.
const MAX_TEXT: usize = mailledger_core::email::MAX_TEXT_LEN;

/// The projections of `state`, or 503 `projections-unavailable`.
pub(crate) fn projections(state: &AppState) -> Result<Arc<Projections>, Problem> {
    state.projections.clone().ok_or_else(|| {
        Problem::new(
            ProblemType::ProjectionsUnavailable,
            "this server runs without projections: queries, suppression checks and analytics are not available",
        )
    })
}

/// Whether `n` looks like a parameter name (so it may be quoted back).
fn name_ok(n: &str) -> bool {
    !n.is_empty() && n.len() <= 64 && n.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// The problem for a query string that does not deserialise: an unknown or
/// repeated parameter is named; nothing else is quoted.
pub(crate) fn query_problem(r: &QueryRejection) -> Problem {
    let text = r.body_text();
    for (marker, what) in [
        ("unknown field `", "unknown query parameter"),
        ("duplicate field `", "query parameter given twice:"),
    ] {
        if let Some(rest) = text.split(marker).nth(1) {
            let name = rest.split('`').next().unwrap_or_default();
            if name_ok(name) {
                return Problem::invalid(format!("{what} `{name}`"));
            }
            return Problem::invalid(what.trim_end_matches(':').to_owned());
        }
    }
    Problem::invalid("the query string is malformed")
}

/// Where a value came from, for error messages: `parameter` (query string)
/// or `field` (JSON body).
#[derive(Debug, Clone, Copy)]
pub(crate) enum Src {
    /// A query parameter.
    Query,
    /// A field of a JSON body.
    Body,
}

impl Src {
    fn word(self) -> &'static str {
        match self {
            Self::Query => "parameter",
            Self::Body => "field",
        }
    }

    /// A 400 about `name`.
    pub(crate) fn bad(self, name: &str, what: &str) -> Problem {
        Problem::invalid(format!("{} `{name}` {what}", self.word()))
    }
}

/// An RFC 3339 time as µs since the epoch.
pub(crate) fn time(src: Src, name: &str, value: &str) -> Result<i64, Problem> {
    let t = OffsetDateTime::parse(value, &Rfc3339)
        .map_err(|_| src.bad(name, "must be an RFC 3339 time, like 2026-11-22T10:00:00Z"))?;
    i64::try_from(t.unix_timestamp_nanos() / 1000).map_err(|_| src.bad(name, "is out of range"))
}

/// An optional RFC 3339 time.
pub(crate) fn opt_time(src: Src, name: &str, value: Option<&str>) -> Result<Option<i64>, Problem> {
    value.map(|v| time(src, name, v)).transpose()
}

/// A page size from text: 1 to [`MAX_PAGE`], [`DEFAULT_LIMIT`] when absent.
pub(crate) fn limit_text(src: Src, value: Option<&str>) -> Result<usize, Problem> {
    match value {
        None => Ok(DEFAULT_LIMIT),
        Some(v) => v
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=MAX_PAGE).contains(n))
            .ok_or_else(|| src.bad("limit", &format!("must be an integer from 1 to {MAX_PAGE}"))),
    }
}

/// A page size from JSON: 1 to [`MAX_PAGE`], [`DEFAULT_LIMIT`] when absent.
pub(crate) fn limit_json(value: Option<&serde_json::Value>) -> Result<usize, Problem> {
    match value {
        None | Some(serde_json::Value::Null) => Ok(DEFAULT_LIMIT),
        Some(v) => v
            .as_u64()
            .and_then(|n| usize::try_from(n).ok())
            .filter(|n| (1..=MAX_PAGE).contains(n))
            .ok_or_else(|| {
                Src::Body.bad("limit", &format!("must be an integer from 1 to {MAX_PAGE}"))
            }),
    }
}

/// A clear text value (tag, campaign, domain, scope): 1 to 256 bytes, no
/// `@` (addresses go only in `address` or `recipient` fields of bodies).
pub(crate) fn text(src: Src, name: &str, value: Option<String>) -> Result<Option<String>, Problem> {
    match value {
        None => Ok(None),
        Some(v) if v.is_empty() || v.len() > MAX_TEXT => {
            Err(src.bad(name, &format!("must be 1 to {MAX_TEXT} bytes")))
        }
        Some(v) if v.contains('@') => Err(src.bad(
            name,
            "may not hold an `@`: addresses go only in request bodies, as `address` or `recipient`",
        )),
        Some(v) => Ok(Some(v)),
    }
}

/// A cursor: hex digits, of the length `ok` accepts (the projection checks
/// the rest).
pub(crate) fn cursor(
    src: Src,
    value: Option<String>,
    ok: impl Fn(usize) -> bool,
) -> Result<Option<String>, Problem> {
    match value {
        Some(c) if !ok(c.len()) || !c.bytes().all(|b| b.is_ascii_hexdigit()) => {
            Err(src.bad("cursor", "is not one this service returned"))
        }
        c => Ok(c),
    }
}

/// A place cursor (a decimal count, as the erasure register and the
/// checkpoint list return in `next`); 0 when absent.
pub(crate) fn place(src: Src, value: Option<&str>) -> Result<u64, Problem> {
    match value {
        None => Ok(0),
        Some(v) => v
            .parse::<u64>()
            .ok()
            .filter(|_| v.len() <= 19 && v.bytes().all(|b| b.is_ascii_digit()))
            .ok_or_else(|| src.bad("cursor", "is not one this service returned")),
    }
}

/// The length of a delivery log cursor.
pub(crate) fn message_cursor_len(n: usize) -> bool {
    n == 32
}

/// The lengths of a suppression list cursor.
pub(crate) fn suppression_cursor_len(n: usize) -> bool {
    n > 0 && n <= 2048 && n.is_multiple_of(2)
}

/// `true` or `false`.
pub(crate) fn boolean(src: Src, name: &str, value: Option<&str>) -> Result<bool, Problem> {
    match value {
        None | Some("false") => Ok(false),
        Some("true") => Ok(true),
        Some(_) => Err(src.bad(name, "must be true or false")),
    }
}

/// The pseudonym of `address` in `tenant`, normalised as the tenant's
/// policy says.
pub(crate) async fn pseudonym(
    state: &AppState,
    tenant: &str,
    address: Personal,
) -> Result<Pseudonym, Problem> {
    Ok(state.email.pseudonym(tenant, &address).await?)
}

pub(crate) use mailledger_core::now_micros;

/// Runs blocking work (a projection read, a key file, an access store
/// operation) so that it never holds up the other requests of its async
/// thread: [`mailledger_core::run_blocking`].
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, Problem> + Send + 'static,
) -> Result<T, Problem> {
    mailledger_core::run_blocking(f)
        .await
        .unwrap_or_else(|| Err(Problem::internal()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// Work that waits for another task of the same runtime: it completes
    /// only if that task can run while the work blocks.
    async fn blocking_work_lets_other_tasks_run() {
        let (release, released) = std::sync::mpsc::channel::<()>();
        let other = tokio::spawn(async move {
            let _ = release.send(());
        });
        let waited = blocking(move || {
            released
                .recv_timeout(Duration::from_secs(10))
                .map_err(|_| Problem::internal())
        });
        tokio::time::timeout(Duration::from_secs(20), waited)
            .await
            .expect("blocking work finished")
            .expect("the other task ran while the work blocked");
        other.await.expect("other task");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn blocking_work_on_the_one_async_thread_lets_its_other_tasks_run() {
        // Spawned, so that it runs on the runtime's one worker thread (the
        // test's own body runs on a thread of its own).
        tokio::spawn(blocking_work_lets_other_tasks_run())
            .await
            .expect("task");
    }

    #[tokio::test(flavor = "current_thread")]
    async fn blocking_work_on_a_current_thread_runtime_lets_its_other_tasks_run() {
        blocking_work_lets_other_tasks_run().await;
    }
}
