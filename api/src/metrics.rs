//! Prometheus metrics, rendered as text at `GET /metrics` on a listener of
//! their own ([`router`]), never on the API's.
//!
//! Labels hold only route templates (axum's `MatchedPath`, never a raw path),
//! methods, status codes, event types, outcomes and projection names: never
//! an address, a tenant's secret or a key.

use std::time::Duration;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

use crate::state::AppState;

/// Every metric the API exports.
#[derive(Debug, Clone)]
pub struct Metrics {
    registry: Registry,
    /// `mailledger_http_requests_total{route, method, status}`.
    pub http_requests: IntCounterVec,
    /// `mailledger_http_request_duration_seconds{route, method}`.
    pub http_duration: HistogramVec,
    /// `mailledger_events_appended_total{type}`: new events (not duplicates).
    pub events_appended: IntCounterVec,
    /// `mailledger_events_duplicate_total`: events whose id the log held.
    pub events_duplicate: IntCounter,
    /// `mailledger_append_duration_seconds`: one append call (a batch).
    pub append_duration: Histogram,
    /// `mailledger_erasures_total`.
    pub erasures: IntCounter,
    /// `mailledger_suppression_checks_total{outcome}`: `allowed` or
    /// `suppressed` (incremented by `POST /v1/sends/check`).
    pub suppression_checks: IntCounterVec,
    /// `mailledger_projection_lag_events{projection}`: records between the
    /// log's head and a projection's checkpoint (set on each scrape of
    /// `GET /metrics`).
    pub projection_lag: IntGaugeVec,
    /// `mailledger_rate_limited_total`: requests refused by a key's limit.
    pub rate_limited: IntCounter,
    /// `mailledger_log_head`: the position the next record will get.
    pub log_head: IntGauge,
    /// `mailledger_webhook_requests_total{provider, outcome}`: `events`,
    /// `subscription`, `invalid`, `bad_signature`, `not_configured`, or
    /// `replayed` (a Mailgun signature token seen before).
    pub webhooks: IntCounterVec,
}

const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

impl Metrics {
    /// A new registry with every family registered.
    ///
    /// # Panics
    /// Never: names and labels are constants that prometheus accepts (a
    /// test builds one).
    #[must_use]
    #[allow(clippy::expect_used)]
    pub fn new() -> Self {
        Self::build().expect("metric definitions are valid")
    }

    fn build() -> prometheus::Result<Self> {
        let registry = Registry::new_custom(Some("mailledger".into()), None)?;
        let http_requests = IntCounterVec::new(
            Opts::new(
                "http_requests_total",
                "HTTP requests by route template, method and status.",
            ),
            &["route", "method", "status"],
        )?;
        let http_duration = HistogramVec::new(
            HistogramOpts::new(
                "http_request_duration_seconds",
                "HTTP request latency by route template and method.",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
            &["route", "method"],
        )?;
        let events_appended = IntCounterVec::new(
            Opts::new(
                "events_appended_total",
                "Email events appended, by type (duplicates excluded).",
            ),
            &["type"],
        )?;
        let events_duplicate = IntCounter::new(
            "events_duplicate_total",
            "Ingested events whose id the log already held (nothing appended).",
        )?;
        let append_duration = Histogram::with_opts(
            HistogramOpts::new(
                "append_duration_seconds",
                "Latency of one append of a batch of events.",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
        )?;
        let erasures = IntCounter::new(
            "erasures_total",
            "Erasure requests answered with a receipt.",
        )?;
        let suppression_checks = IntCounterVec::new(
            Opts::new("suppression_checks_total", "Suppression checks by outcome."),
            &["outcome"],
        )?;
        let projection_lag = IntGaugeVec::new(
            Opts::new(
                "projection_lag_events",
                "Records between the log head and a projection's checkpoint.",
            ),
            &["projection"],
        )?;
        let rate_limited = IntCounter::new(
            "rate_limited_total",
            "Requests refused because their key exceeded its rate limit.",
        )?;
        let log_head = IntGauge::new("log_head", "The position the next record will get.")?;
        let webhooks = IntCounterVec::new(
            Opts::new(
                "webhook_requests_total",
                "Provider webhook requests by provider and outcome.",
            ),
            &["provider", "outcome"],
        )?;
        registry.register(Box::new(http_requests.clone()))?;
        registry.register(Box::new(http_duration.clone()))?;
        registry.register(Box::new(events_appended.clone()))?;
        registry.register(Box::new(events_duplicate.clone()))?;
        registry.register(Box::new(append_duration.clone()))?;
        registry.register(Box::new(erasures.clone()))?;
        registry.register(Box::new(suppression_checks.clone()))?;
        registry.register(Box::new(projection_lag.clone()))?;
        registry.register(Box::new(rate_limited.clone()))?;
        registry.register(Box::new(log_head.clone()))?;
        registry.register(Box::new(webhooks.clone()))?;
        // Families with labels appear once they have a child; these two
        // have a known, small set of values.
        for o in ["allowed", "suppressed"] {
            suppression_checks.with_label_values(&[o]);
        }
        Ok(Self {
            registry,
            http_requests,
            http_duration,
            events_appended,
            events_duplicate,
            append_duration,
            erasures,
            suppression_checks,
            projection_lag,
            rate_limited,
            log_head,
            webhooks,
        })
    }

    /// The registry, to register more collectors.
    #[must_use]
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Every metric in the Prometheus text format.
    #[must_use]
    pub fn render(&self) -> String {
        TextEncoder::new()
            .encode_to_string(&self.registry.gather())
            .unwrap_or_default()
    }

    /// Records one HTTP request.
    pub fn observe_request(&self, route: &str, method: &str, status: u16, took: Duration) {
        self.http_requests
            .with_label_values(&[route, method, &status.to_string()])
            .inc();
        self.http_duration
            .with_label_values(&[route, method])
            .observe(took.as_secs_f64());
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// `GET /metrics` alone, in the Prometheus text format, for a listener of
/// its own (`mailledger serve --metrics-listen`): the metrics count every
/// tenant's requests, so they are not served on the API's listener, where
/// any client could read them (a separate listener is how Prometheus
/// exporters are usually deployed). No authentication (Prometheus scrapes
/// without), no rate limit; any other path answers 404. Not part of the
/// API's OpenAPI document, which describes the API's listener.
pub fn router(state: AppState) -> axum::Router {
    axum::Router::new()
        .route(
            "/metrics",
            axum::routing::get(crate::routes::health::metrics),
        )
        .fallback(crate::no_route)
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(
            crate::panic_response,
        ))
        .with_state(state)
}

/// Middleware: counts and times each request by its route template.
pub(crate) async fn track(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |m| m.as_str().to_owned());
    let method = match req.method().as_str() {
        m @ ("GET" | "POST" | "PUT" | "DELETE" | "PATCH" | "HEAD" | "OPTIONS") => m,
        _ => "other",
    }
    .to_owned();
    let started = std::time::Instant::now();
    let res = next.run(req).await;
    let took = started.elapsed();
    let status = res.status().as_u16();
    state.metrics.observe_request(&route, &method, status, took);
    // The route template only: a raw path could hold anything a client put there.
    tracing::debug!(route = %route, method = %method, status, micros = took.as_micros() as u64, "request");
    res
}
