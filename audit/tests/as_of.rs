//! State as of a moment equals what the live projections held then: at
//! every position of random histories, for every message and contact.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use mailledger_audit::as_of::{cut_at, message_as_of, suppression_as_of};
use mailledger_core::crypto::{Personal, SecretKey};
use mailledger_core::email::{EmailLedger, parse_event};
use mailledger_core::keys::FileKeyStore;
use mailledger_core::pseudonym::Pseudonym;
use mailledger_core::{
    Direction, EventLog, Ledger, LedgerConfig, MemoryStore, TenantFilter, Window,
};
use mailledger_projections::Projections;

/// A seeded generator (SplitMix64).
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        (z ^ (z >> 31)) % n
    }
}

const CONTACTS: u64 = 4;
const MESSAGES: u64 = 7;

fn address(c: u64) -> String {
    format!("c{c}@example.org")
}

/// One random event of message `m` (whose contact is `m % CONTACTS`).
fn event(rng: &mut Rng, n: u64) -> String {
    let m = rng.below(MESSAGES);
    let (kind, extra) = match rng.below(9) {
        0 | 1 => ("sent", String::new()),
        2 | 3 => ("delivered", String::new()),
        4 => (
            "bounced",
            r#","class":"hard","diagnostic":"550 5.1.1 unknown""#.into(),
        ),
        5 => (
            "bounced",
            r#","class":"soft","diagnostic":"452 4.2.2 full""#.into(),
        ),
        6 => ("complained", r#","feedback_type":"abuse""#.into()),
        7 => ("unsubscribed", String::new()),
        _ => ("resubscribed", String::new()),
    };
    format!(
        r#"{{"id":"{}","type":"{kind}","message_id":"m{m}","recipient":"{}","occurred_at":"2026-03-01T{:02}:{:02}:00Z"{extra}}}"#,
        uuid::Uuid::new_v4(),
        address(m % CONTACTS),
        (n / 60) % 24,
        n % 60,
    )
}

async fn history(seed: u64, events: u64) -> (tempfile::TempDir, EmailLedger) {
    let dir = tempfile::tempdir().unwrap();
    let keys =
        FileKeyStore::open(&dir.path().join("keys"), &SecretKey::generate().unwrap()).unwrap();
    let log = Ledger::open(MemoryStore::new(), LedgerConfig::new()).unwrap();
    let email = EmailLedger::new(Arc::new(log), Arc::new(keys));
    let mut rng = Rng(seed);
    let mut n = 0;
    while n < events {
        let size = 1 + rng.below(4);
        let batch = (0..size)
            .map(|i| parse_event(&event(&mut rng, n + i)).unwrap())
            .collect();
        email.append("acme", batch).await.unwrap();
        n += size;
    }
    (dir, email)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_as_of_every_position_equals_the_live_projections_then() {
    for seed in [1, 2, 3] {
        let (_dir, email) = history(seed, 60).await;
        let log = Arc::clone(email.log());
        let head = log.head();
        let all = log
            .read_all(&TenantFilter::All, 0, Direction::Forward, 10_000)
            .await
            .unwrap()
            .records;
        assert_eq!(all.len() as u64, head);
        let mut contacts = Vec::new();
        for c in 0..CONTACTS {
            contacts.push(
                email
                    .pseudonym("acme", &Personal::new(address(c)))
                    .await
                    .unwrap(),
            );
        }
        let live = Projections::in_memory();
        let mut suppressed_somewhere = false;
        for cut in 0..=head {
            // The live projections, applied incrementally up to the cut.
            let window: Arc<dyn EventLog> =
                Arc::new(Window::new(Arc::clone(&log), cut, all.clone()));
            live.catch_up(window.as_ref()).await.unwrap();
            let then = EmailLedger::new(Arc::clone(&window), Arc::clone(email.keys()));
            for m in 0..MESSAGES {
                let id = format!("m{m}");
                let expected = live
                    .message(&then, "acme", &id)
                    .await
                    .unwrap()
                    .map(|v| v.to_json());
                let got = message_as_of(&email, "acme", &id, cut)
                    .await
                    .unwrap()
                    .map(|v| v.to_json());
                assert_eq!(got, expected, "seed {seed}, message {id}, position {cut}");
            }
            for c in &contacts {
                let expected = live.suppressions_of("acme", c).unwrap();
                let got = suppression_as_of(&email, "acme", c, cut).await.unwrap();
                suppressed_somewhere |= !got.is_empty();
                assert_eq!(got, expected, "seed {seed}, contact {c}, position {cut}");
            }
        }
        assert!(
            suppressed_somewhere,
            "seed {seed}: the history suppressed nobody"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_moment_is_the_position_of_the_first_record_after_it() {
    let (_dir, email) = history(9, 12).await;
    let log = email.log();
    let all = log
        .read_all(&TenantFilter::All, 0, Direction::Forward, 100)
        .await
        .unwrap()
        .records;
    assert_eq!(cut_at(log.as_ref(), i64::MIN).await.unwrap(), 0);
    assert_eq!(cut_at(log.as_ref(), i64::MAX).await.unwrap(), log.head());
    for r in &all {
        let cut = cut_at(log.as_ref(), r.recorded_at_micros).await.unwrap();
        assert!(cut > r.position, "a record is known at its own moment");
        assert!(
            all.iter()
                .filter(|x| x.position >= cut)
                .all(|x| x.recorded_at_micros > r.recorded_at_micros)
        );
    }
    // A contact never seen: no entries at any moment.
    let nobody: Pseudonym = email
        .pseudonym("acme", &Personal::new("nobody@example.org"))
        .await
        .unwrap();
    assert!(
        suppression_as_of(&email, "acme", &nobody, log.head())
            .await
            .unwrap()
            .is_empty()
    );
}
