//! The projections against a real log and key store: suppression rules,
//! delivery log queries, analytics, erasure, rebuilds and their equivalence
//! with incremental application.
#![allow(clippy::unwrap_used, missing_docs)]

mod analytics_counts;
mod delivery_queries;
mod incremental;
mod runner;
mod suppression_rules;

use std::sync::Arc;

use mailledger_core::crypto::{Personal, SecretKey};
use mailledger_core::email::{ContactRef, EmailLedger, TenantPolicy, parse_event, rfc3339};
use mailledger_core::keys::FileKeyStore;
use mailledger_core::{Direction, EventLog, Ledger, LedgerConfig, MemoryStore, TenantFilter};
use mailledger_projections::analytics::{Dimension, Granularity, Query};
use mailledger_projections::delivery::{MessageFilter, Status};
use mailledger_projections::state::{FORMAT_KEY, FjallState, MemoryState, StateStore};
use mailledger_projections::suppression::{Decision, Reason};
use mailledger_projections::{
    Input, MessageStarts, Projections, RebuildSizes, analytics, delivery, suppression,
};
use proptest::prelude::*;
use serde_json::{Value, json};

/// 2026-11-01T00:00:00Z in µs.
pub(crate) const T0: i64 = 1_793_491_200_000_000;
pub(crate) const SEC: i64 = 1_000_000;
pub(crate) const DAY: i64 = 86_400 * SEC;

pub(crate) struct Fx {
    _dir: tempfile::TempDir,
    email: Arc<EmailLedger>,
    log: Arc<dyn EventLog>,
}

pub(crate) fn fx() -> Fx {
    let dir = tempfile::tempdir().unwrap();
    let keys = Arc::new(FileKeyStore::open(dir.path(), &SecretKey::generate().unwrap()).unwrap());
    let log: Arc<dyn EventLog> =
        Arc::new(Ledger::open(MemoryStore::new(), LedgerConfig::new()).unwrap());
    let email = Arc::new(EmailLedger::new(Arc::clone(&log), keys));
    Fx {
        _dir: dir,
        email,
        log,
    }
}

pub(crate) static NEXT_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// A canonical event: `ty` to `to` of message `msg`, at `at` µs, plus fields.
pub(crate) fn ev(ty: &str, to: &str, msg: Option<&str>, at: i64, extra: Value) -> Value {
    let n = NEXT_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut v = json!({
        "id": uuid::Uuid::from_u128(u128::from(n) << 64 | 0x8000_0000_0000_0000 | u128::from(n)),
        "type": ty,
        "recipient": to,
        "occurred_at": rfc3339(at),
    });
    if let Some(m) = msg {
        v["message_id"] = json!(m);
    }
    if let (Value::Object(m), Value::Object(e)) = (&mut v, extra) {
        m.extend(e);
    }
    v
}

pub(crate) async fn append(f: &Fx, tenant: &str, events: &[Value]) {
    let events = events
        .iter()
        .map(|e| parse_event(&e.to_string()).unwrap())
        .collect();
    f.email.append(tenant, events).await.unwrap();
}

pub(crate) async fn contact(
    f: &Fx,
    tenant: &str,
    address: &str,
) -> mailledger_core::pseudonym::Pseudonym {
    f.email
        .pseudonym(tenant, &Personal::new(address.to_owned()))
        .await
        .unwrap()
}
