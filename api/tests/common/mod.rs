//! Shared test setup: an in-memory log, in-memory projections, a key store
//! and an access store in a temporary directory, and a helper to send one
//! request.

#![allow(dead_code, clippy::unwrap_used)]

pub mod contract;

use std::sync::Arc;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, Method, Request, StatusCode, header};
use mailledger_api::{AccessStore, AppState, Limits, Scope, router};
use mailledger_core::crypto::SecretKey;
use mailledger_core::email::EmailLedger;
use mailledger_core::keys::FileKeyStore;
use mailledger_core::residency::Jurisdiction;
use mailledger_core::{Ledger, LedgerConfig, MemoryStore};
use mailledger_projections::Projections;
use serde_json::Value;
use tower::ServiceExt;

pub struct Env {
    pub dir: tempfile::TempDir,
    pub state: AppState,
    pub admin: String,
    /// The projections the state holds (not fed by a runner: call
    /// [`Env::project`] before querying).
    pub projections: Arc<Projections>,
}

pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    pub fn content_type(&self) -> &str {
        self.headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

pub fn env() -> Env {
    env_with(Limits::default())
}

pub fn env_with(limits: Limits) -> Env {
    let dir = tempfile::tempdir().unwrap();
    let kek = SecretKey::generate().unwrap();
    let keys = FileKeyStore::open(&dir.path().join("keys"), &kek).unwrap();
    let log = Ledger::open(MemoryStore::new(), LedgerConfig::new()).unwrap();
    let email = EmailLedger::new(Arc::new(log), Arc::new(keys));
    let access = AccessStore::open(&dir.path().join("data"), &kek).unwrap();
    let (_, admin) = access.bootstrap(&[Jurisdiction::EU]).unwrap().unwrap();
    let projections = Arc::new(Projections::in_memory());
    let email = Arc::new(email);
    let access_log = mailledger_audit::AccessLog::start(Arc::clone(email.log()));
    let state = AppState::new(email, Arc::new(access))
        .with_access_log(access_log)
        .with_limits(limits)
        .with_projections(Arc::clone(&projections));
    state.ready.set(true);
    Env {
        dir,
        state,
        admin: admin.as_str().to_owned(),
        projections,
    }
}

/// An environment whose ingest work runs on a runtime of its own, as in
/// `mailledger serve`. The runtime lives as long as the test process: a
/// runtime cannot be dropped from the async test that would drop it.
pub fn env_with_ingest_runtime() -> Env {
    static INGEST: std::sync::OnceLock<tokio::runtime::Runtime> = std::sync::OnceLock::new();
    let rt = INGEST.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("ingest")
            .enable_all()
            .build()
            .unwrap()
    });
    let mut e = env();
    e.state = e.state.with_ingest_runtime(rt.handle().clone());
    e
}

/// An environment whose state has no projections.
pub fn env_without_projections() -> Env {
    let mut e = env();
    e.state.projections = None;
    e
}

impl Env {
    pub fn app(&self) -> Router {
        router(self.state.clone())
    }

    /// A new key of `tenant` (created when missing) with `scopes`.
    pub fn key(&self, tenant: &str, scopes: &[Scope]) -> String {
        if self.state.access.tenant(tenant).unwrap().is_none() {
            self.state
                .access
                .create_tenant(tenant, &[Jurisdiction::EU])
                .unwrap();
        }
        let (_, k) = self.state.access.create_key(tenant, scopes, None).unwrap();
        k.as_str().to_owned()
    }

    /// Applies every event up to the log's head to the projections.
    pub async fn project(&self) {
        // The access records of reads so far are events too.
        if let Some(access) = &self.state.access_log {
            access.flush().await;
        }
        let log = Arc::clone(self.state.email.log());
        self.projections.catch_up(log.as_ref()).await.unwrap();
    }

    /// Sends `body` (JSON) and expects 200; returns the JSON answer.
    pub async fn ok(&self, method: Method, uri: &str, key: &str, body: Option<&Value>) -> Value {
        let r = self.call(method, uri, Some(key), body).await;
        assert_eq!(r.status, StatusCode::OK, "{uri}: {}", r.text());
        r.json()
    }

    pub async fn call(
        &self,
        method: Method,
        uri: &str,
        key: Option<&str>,
        body: Option<&Value>,
    ) -> Reply {
        let mut req = Request::builder().method(method).uri(uri);
        if let Some(k) = key {
            req = req.header(header::AUTHORIZATION, format!("Bearer {k}"));
        }
        let req = match body {
            Some(b) => req
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(serde_json::to_vec(b).unwrap())),
            None => req.body(Body::empty()),
        }
        .unwrap();
        self.send(req).await
    }

    pub async fn send(&self, req: Request<Body>) -> Reply {
        Self::answer(self.app(), req).await
    }

    /// `GET /metrics` from the metrics listener's router (it is not on the
    /// API's).
    pub async fn scrape(&self) -> Reply {
        let req = Request::get("/metrics").body(Body::empty()).unwrap();
        Self::answer(mailledger_api::metrics_router(self.state.clone()), req).await
    }

    async fn answer(app: Router, req: Request<Body>) -> Reply {
        let res = app.oneshot(req).await.unwrap();
        let status = res.status();
        let headers = res.headers().clone();
        let body = axum::body::to_bytes(res.into_body(), usize::MAX)
            .await
            .unwrap();
        Reply {
            status,
            headers,
            body,
        }
    }
}

/// A canonical event for `address`.
pub fn event(id: &str, event_type: &str, address: &str, message: &str) -> Value {
    let mut e = serde_json::json!({
        "id": id,
        "type": event_type,
        "message_id": message,
        "recipient": address,
        "occurred_at": "2026-11-22T10:00:00Z",
        "sending_domain": "mail.example.com",
    });
    if event_type == "bounced" {
        e["class"] = "hard".into();
        e["diagnostic"] = "550 5.1.1 user unknown".into();
    }
    e
}

/// A fresh UUID (v4) as text.
pub fn uuid() -> String {
    uuid::Uuid::new_v4().to_string()
}
