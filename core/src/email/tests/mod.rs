//! The email layer against a real log and key store.

mod appends;
mod erasure;
mod json;
mod pseudonyms;
mod sealing;

use std::sync::Arc;

use uuid::Uuid;

use super::*;
use crate::crypto::SecretKey;
use crate::crypto::{Cipher, Sealed};
use crate::keys::{FileKeyStore, KeyState};
use crate::record::TenantFilter;
use crate::{Ledger, LedgerConfig, MemoryStore};

struct Fixture {
    ledger: EmailLedger,
    _keys_dir: tempfile::TempDir,
}

fn fixture() -> Fixture {
    let keys_dir = tempfile::tempdir().unwrap();
    let keys = FileKeyStore::open(keys_dir.path(), &SecretKey::from_bytes([9; 32])).unwrap();
    let log = Ledger::open(MemoryStore::new(), LedgerConfig::new()).unwrap();
    Fixture {
        ledger: EmailLedger::new(Arc::new(log), Arc::new(keys)),
        _keys_dir: keys_dir,
    }
}

fn event(ty: &str, recipient: &str, message: &str, extra: &str) -> CanonicalEvent {
    event_at(ty, recipient, message, extra, "2026-11-22T10:00:00Z")
}

/// As [`event`], at `occurred_at` (RFC 3339).
fn event_at(
    ty: &str,
    recipient: &str,
    message: &str,
    extra: &str,
    occurred_at: &str,
) -> CanonicalEvent {
    let json = format!(
        r#"{{"id": "{}", "type": "{ty}", "recipient": "{recipient}", "message_id": "{message}",
            "occurred_at": "{occurred_at}", "sending_domain": "mail.example.com"{extra}}}"#,
        Uuid::now_v7()
    );
    parse_event(&json).unwrap()
}

/// A time after any erasure a test makes now.
fn later() -> String {
    let t = time::OffsetDateTime::now_utc() + time::Duration::minutes(1);
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap()
}

async fn read_all(l: &EmailLedger) -> Vec<ReadEvent> {
    let batch = l
        .log()
        .read_all(&TenantFilter::All, 0, crate::Direction::Forward, 1000)
        .await
        .unwrap();
    batch
        .records
        .iter()
        .filter_map(|r| l.open(r).unwrap())
        .collect()
}

/// The contact an event was appended to.
fn contact_of(e: &ReadEvent) -> Pseudonym {
    e.event.envelope.contact
}
