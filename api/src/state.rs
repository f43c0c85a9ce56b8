//! The state every handler shares: [`AppState`], its [`Limits`], the
//! readiness flag and the per-key rate limiter.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use mailledger_access::AccessStore;
use mailledger_audit::{AccessLog, AccessRecord};
use mailledger_core::email::EmailLedger;
use mailledger_core::residency::{Jurisdiction, Residency};
use mailledger_projections::Projections;
use serde::{Deserialize, Serialize};
use tokio::sync::{Semaphore, watch};

use crate::metrics::Metrics;

/// Limits on requests. Every field has a default; a configuration file or
/// environment variables override them (see `mailledger serve --help`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// The largest request body, in bytes (413 above). Default 1 MiB.
    pub max_body_bytes: usize,
    /// The most events in one `POST /v1/events` (400 above). Default 1,000.
    pub max_events_per_request: usize,
    /// How long a request may take before it is answered 503, in
    /// milliseconds. Default 30,000.
    pub request_timeout_ms: u64,
    /// Requests handled at once; more are answered 503 at once. Default 1,024.
    pub max_concurrent_requests: usize,
    /// Ingest requests sealing and appending at once; more wait their turn,
    /// parsed but not yet sealed. A request holds
    /// its permit while its group commit syncs, so the bound also caps how
    /// many requests one group can take: too few and the log's groups stay
    /// too small to fill (the load bench measured it; benches/RESULTS.md).
    /// Default 16.
    pub max_concurrent_appends: usize,
    /// Requests per second each API key may make on average (a token
    /// bucket); 0 turns the limit off. Default 1,000.
    pub rate_limit_per_second: f64,
    /// The bucket's size: how many requests a key may make in a burst.
    /// Default 2,000.
    pub rate_limit_burst: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_body_bytes: 1024 * 1024,
            max_events_per_request: 1000,
            request_timeout_ms: 30_000,
            max_concurrent_requests: 1024,
            max_concurrent_appends: 16,
            rate_limit_per_second: 1000.0,
            rate_limit_burst: 2000,
        }
    }
}

impl Limits {
    /// The request timeout.
    #[must_use]
    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.request_timeout_ms.max(1))
    }
}

/// Whether the server is ready: `GET /readyz` answers 200 once set. With
/// projections, [`AppState::become_ready`] sets it once every projection
/// has caught up with the log's head; without, the server sets it once
/// listening.
#[derive(Debug, Clone, Default)]
pub struct ReadyFlag(Arc<AtomicBool>);

impl ReadyFlag {
    /// Sets readiness.
    pub fn set(&self, ready: bool) {
        self.0.store(ready, Ordering::Release);
    }

    /// Whether ready.
    #[must_use]
    pub fn get(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

/// A token bucket per API key, in memory.
#[derive(Debug)]
pub struct RateLimiter {
    per_second: f64,
    burst: f64,
    buckets: Mutex<HashMap<String, (f64, Instant)>>,
}

impl RateLimiter {
    /// `per_second` tokens a second, at most `burst` saved; 0 turns it off.
    #[must_use]
    pub fn new(per_second: f64, burst: u32) -> Self {
        Self {
            per_second,
            burst: f64::from(burst.max(1)),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes a token for `key`: `Ok` or `Err(seconds to wait)`.
    ///
    /// # Errors
    /// The seconds until a token is available, rounded up.
    pub fn take(&self, key: &str) -> Result<(), u64> {
        if self.per_second <= 0.0 || !self.per_second.is_finite() {
            return Ok(());
        }
        let now = Instant::now();
        let mut b = self.buckets.lock().unwrap_or_else(PoisonError::into_inner);
        let (tokens, at) = b.entry(key.to_owned()).or_insert((self.burst, now));
        *tokens =
            (*tokens + now.duration_since(*at).as_secs_f64() * self.per_second).min(self.burst);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            Ok(())
        } else {
            let wait = (1.0 - *tokens) / self.per_second;
            // Truncation is fine: the value is small and positive.
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            Err(wait.ceil().max(1.0) as u64)
        }
    }
}

/// What every handler shares. Cheap to clone (every field is shared).
///
/// To add a dependency for new routes, add a field here and set it in
/// [`AppState::new`] (or with a builder method like
/// [`AppState::with_limits`]), so that existing callers keep compiling.
#[derive(Clone)]
pub struct AppState {
    /// The email layer: append, open, erase, receipts.
    pub email: Arc<EmailLedger>,
    /// Tenants, API keys and provider secrets.
    pub access: Arc<AccessStore>,
    /// Prometheus metrics.
    pub metrics: Arc<Metrics>,
    /// Request limits.
    pub limits: Arc<Limits>,
    /// Readiness, for `GET /readyz`.
    pub ready: ReadyFlag,
    /// Per-key rate limiter.
    pub rate: Arc<RateLimiter>,
    /// Permits for requests in flight (the global concurrency limit).
    pub inflight: Arc<Semaphore>,
    /// Permits for ingest appends in flight.
    pub appends: Arc<Semaphore>,
    /// The projections (delivery log, suppression list, analytics) the
    /// query routes read; `None` (the default) makes those routes answer
    /// 503 `projections-unavailable`.
    pub projections: Option<Arc<Projections>>,
    /// Where ingest work (parsing, sealing, appending) runs; `None` (the
    /// default) runs it on the runtime that serves the request.
    pub ingest: Option<tokio::runtime::Handle>,
    /// The node's declared residency: a tenant is served only when the
    /// node and its stores lie within the tenant's allowed jurisdictions.
    /// The default is a node in the EU, allowing the EU, with no store
    /// declared.
    pub residency: Arc<Residency>,
    /// The tokens of verified Mailgun signatures seen, per tenant, so a
    /// replayed one is refused (in this process's memory only).
    pub seen_tokens: Arc<crate::webhooks::replay::SeenTokens>,
    /// Where reads that open personal data leave their access records;
    /// `None` (the default) records none.
    pub access_log: Option<AccessLog>,
    /// The web console's sessions (in this process's memory).
    pub console: Arc<crate::console::Sessions>,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("limits", &self.limits)
            .field("ready", &self.ready.get())
            .finish_non_exhaustive()
    }
}

impl AppState {
    /// The state over an email ledger and an access store, with default
    /// limits, fresh metrics, and not ready.
    #[must_use]
    pub fn new(email: Arc<EmailLedger>, access: Arc<AccessStore>) -> Self {
        let limits = Limits::default();
        Self {
            email,
            access,
            metrics: Arc::new(Metrics::new()),
            rate: Arc::new(RateLimiter::new(
                limits.rate_limit_per_second,
                limits.rate_limit_burst,
            )),
            inflight: Arc::new(Semaphore::new(limits.max_concurrent_requests.max(1))),
            appends: Arc::new(Semaphore::new(limits.max_concurrent_appends.max(1))),
            limits: Arc::new(limits),
            ready: ReadyFlag::default(),
            projections: None,
            ingest: None,
            residency: Arc::new(Residency::new(Jurisdiction::DEFAULT, Vec::new())),
            seen_tokens: Arc::default(),
            access_log: None,
            console: Arc::default(),
        }
    }

    /// The same state leaving an access record of every read that opens
    /// personal data in `access_log`.
    #[must_use]
    pub fn with_access_log(mut self, access_log: AccessLog) -> Self {
        self.access_log = Some(access_log);
        self
    }

    /// Records that `caller` opened personal data through `route`: the
    /// contacts' pseudonyms, the messages, how many events or entries.
    pub(crate) fn accessed(
        &self,
        caller: &mailledger_access::Caller,
        route: &str,
        contacts: impl IntoIterator<Item = String>,
        message_ids: impl IntoIterator<Item = String>,
        count: u64,
    ) {
        if let Some(log) = &self.access_log {
            log.record(
                &caller.tenant,
                AccessRecord::now(&caller.key_id, route, contacts, message_ids, count),
            );
        }
    }

    /// The same state on a node of `residency`.
    #[must_use]
    pub fn with_residency(mut self, residency: Residency) -> Self {
        self.residency = Arc::new(residency);
        self
    }

    /// The same state running ingest work on the runtime of `handle`, whose
    /// threads must do nothing else: blocking work (a new contact's key,
    /// made and synced) then runs in place on them. A tokio runtime has no
    /// priorities, so on the runtime that serves requests a query queued
    /// behind ingest batches waits for all of them; on a runtime of its own
    /// the kernel shares the cores between the two.
    #[must_use]
    pub fn with_ingest_runtime(mut self, handle: tokio::runtime::Handle) -> Self {
        self.ingest = Some(handle);
        self
    }

    /// Runs `work` on the ingest runtime, or here when there is none. On
    /// the ingest runtime the work goes on to its end even when the
    /// request is dropped (a client that hangs up mid-append): an append is
    /// atomic either way.
    pub(crate) async fn run_ingest<T: Send + 'static>(
        &self,
        work: impl Future<Output = Result<T, crate::Problem>> + Send + 'static,
    ) -> Result<T, crate::Problem> {
        match &self.ingest {
            Some(handle) => handle
                .spawn(mailledger_core::blocking_allowed(work))
                .await
                .map_err(|_| crate::Problem::internal())?,
            None => work.await,
        }
    }

    /// The same state with projections for the query routes. Feeding them
    /// (the runner, [`Projections::run`]) is the caller's business.
    #[must_use]
    pub fn with_projections(mut self, projections: Arc<Projections>) -> Self {
        self.projections = Some(projections);
        self
    }

    /// Sets the ready flag once every projection has applied every event
    /// up to the log's head (lag 0), at least once since this call; at once
    /// when there are no projections. Returns early when `stop` turns true
    /// or its sender is dropped.
    pub async fn become_ready(&self, mut stop: watch::Receiver<bool>) {
        let Some(p) = self.projections.clone() else {
            self.ready.set(true);
            return;
        };
        let log = Arc::clone(self.email.log());
        loop {
            if *stop.borrow() {
                return;
            }
            let head = log.head();
            if p.status(head).iter().all(|s| s.lag == 0) {
                self.ready.set(true);
                return;
            }
            tokio::select! {
                _ = p.wait_for(head, Duration::from_millis(500)) => {}
                r = stop.changed() => if r.is_err() { return },
            }
        }
    }

    /// The same state with other limits (and a rate limiter and concurrency
    /// limit to match).
    #[must_use]
    pub fn with_limits(mut self, limits: Limits) -> Self {
        self.rate = Arc::new(RateLimiter::new(
            limits.rate_limit_per_second,
            limits.rate_limit_burst,
        ));
        self.inflight = Arc::new(Semaphore::new(limits.max_concurrent_requests.max(1)));
        self.appends = Arc::new(Semaphore::new(limits.max_concurrent_appends.max(1)));
        self.limits = Arc::new(limits);
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_allows_its_burst_then_asks_to_wait() {
        let r = RateLimiter::new(1.0, 3);
        for _ in 0..3 {
            assert!(r.take("k").is_ok());
        }
        assert_eq!(r.take("k"), Err(1));
        assert!(r.take("other").is_ok());
        assert!(RateLimiter::new(0.0, 1).take("k").is_ok());
    }
}
