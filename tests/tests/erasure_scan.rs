//! Invariants 6 and 8 on real backends: no plaintext personal data in any
//! file the ledger writes, and no trace of a destroyed key in any file once
//! erasure returns.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::sync::Arc;

use mailledger_core::crypto::{Personal, SecretKey};
use mailledger_core::email::{ContactRef, EmailLedger, TenantPolicy, parse_event};
use mailledger_core::keys::FileKeyStore;
use mailledger_core::{Direction, EventLog, Ledger, LedgerConfig, TenantFilter};
use mailledger_tests::{DURABLE_BACKENDS, open_store};

const CONTACTS: usize = 1_000;
const EVENTS_PER_CONTACT: usize = 10;
const ERASED: usize = 100;
/// Every canary address, subject and URL holds this marker.
const MARKER: &[u8] = b"cnry";
/// Every canary IP address starts with this (TEST-NET-2).
const IP_PREFIX: &[u8] = b"198.51.";

fn address(i: usize) -> String {
    format!("cnry-addr-{i:04}@example.org")
}

fn kek() -> SecretKey {
    SecretKey::from_hex(&"5a".repeat(32)).unwrap()
}

fn open(backend: &str, data: &Path, keys: &Path) -> (EmailLedger, Arc<FileKeyStore>) {
    let store = open_store(backend, data).unwrap();
    let log: Arc<dyn EventLog> = Arc::new(Ledger::open(store, LedgerConfig::new()).unwrap());
    let ks = Arc::new(FileKeyStore::open(keys, &kek()).unwrap());
    (EmailLedger::new(log, ks.clone()), ks)
}

/// Every file under `dir`, with its bytes.
fn files(dir: &Path) -> Vec<(std::path::PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                todo.push(path);
            } else {
                out.push((path.clone(), std::fs::read(&path).unwrap()));
            }
        }
    }
    out
}

fn hits(haystack: &[u8], needle: &[u8]) -> usize {
    haystack
        .windows(needle.len())
        .filter(|w| *w == needle)
        .count()
}

/// Occurrences of any of `needles` (each at least 8 bytes) in one pass.
fn hits_any(haystack: &[u8], needles: &[&[u8]]) -> usize {
    let prefix = |b: &[u8]| u64::from_le_bytes(b[..8].try_into().unwrap());
    let mut by_prefix: std::collections::HashMap<u64, Vec<&[u8]>> = Default::default();
    for n in needles {
        by_prefix.entry(prefix(n)).or_default().push(n);
    }
    let mut count = 0;
    for at in 0..haystack.len().saturating_sub(7) {
        if let Some(ns) = by_prefix.get(&prefix(&haystack[at..])) {
            count += ns.iter().filter(|n| haystack[at..].starts_with(n)).count();
        }
    }
    count
}

fn event(i: usize, n: usize) -> String {
    let id = uuid::Uuid::now_v7();
    let common = format!(
        r#""id": "{id}", "recipient": "{}", "message_id": "m-{i}-{}", "occurred_at": "2026-11-22T10:00:00Z", "sending_domain": "mail.example.com""#,
        address(i),
        n / 5
    );
    let ip = format!("198.51.{}.{}", i / 256, i % 256);
    match n % 5 {
        0 => format!(r#"{{{common}, "type": "sent", "subject": "cnry-subject-{i}-{n}"}}"#),
        1 => format!(r#"{{{common}, "type": "delivered"}}"#),
        2 => format!(
            r#"{{{common}, "type": "opened", "ip": "{ip}", "user_agent": "cnry-agent-{i}"}}"#
        ),
        3 => format!(
            r#"{{{common}, "type": "clicked", "url": "https://cnry-url-{i}.example/p", "ip": "{ip}"}}"#
        ),
        _ => format!(
            r#"{{{common}, "type": "bounced", "class": "soft", "diagnostic": "452 cnry mailbox {} full"}}"#,
            address(i)
        ),
    }
}

async fn scan_then_erase(backend: &str) {
    let data = tempfile::tempdir().unwrap();
    let keys = tempfile::tempdir().unwrap();
    let mut material = Vec::new();
    {
        let (ledger, ks) = open(backend, data.path(), keys.path());
        ledger
            .set_policy(
                "t",
                TenantPolicy {
                    keep_subjects: true,
                    keep_engagement_details: true,
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        for chunk in (0..CONTACTS).collect::<Vec<_>>().chunks(100) {
            let batch = chunk
                .iter()
                .flat_map(|&i| (0..EVENTS_PER_CONTACT).map(move |n| event(i, n)))
                .map(|j| parse_event(&j).unwrap())
                .collect();
            ledger.append("t", batch).await.unwrap();
        }
        assert_eq!(
            ledger.log().head(),
            1 + (CONTACTS * EVENTS_PER_CONTACT) as u64
        );
        ledger.log().sync().await.unwrap();
        // The projections live in the data directory too: build them there,
        // so the scans below cover them (decoded, and as files).
        let projections =
            mailledger_projections::Projections::open(&data.path().join("projections")).unwrap();
        projections.catch_up(ledger.log().as_ref()).await.unwrap();
        projections.flush().unwrap();
        for name in mailledger_projections::NAMES {
            let mut text = Vec::new();
            projections
                .store(name)
                .unwrap()
                .scan(&[0], &[0xff; 8], false, &mut |k, v| {
                    text.extend_from_slice(k);
                    text.extend_from_slice(v);
                    true
                })
                .unwrap();
            assert!(text.len() > 1000, "{backend}: {name} holds state");
            assert_eq!(
                hits(&text, MARKER) + hits(&text, IP_PREFIX),
                0,
                "{backend}: plaintext in projection {name}"
            );
        }
        drop(projections);

        // fjall compresses its blocks, which could hide plaintext from a byte
        // scan of its files, so the stored records are scanned decoded too.
        let mut from = 0;
        while from < ledger.log().head() {
            let b = ledger
                .log()
                .read_all(&TenantFilter::All, from, Direction::Forward, 1000)
                .await
                .unwrap();
            for r in &b.records {
                let text = [r.payload.as_slice(), &r.metadata, r.stream.as_bytes()].concat();
                assert_eq!(
                    hits(&text, MARKER) + hits(&text, IP_PREFIX),
                    0,
                    "{backend}: position {}",
                    r.position
                );
            }
            from = b.next.unwrap();
        }
        for (path, bytes) in files(data.path()).into_iter().chain(files(keys.path())) {
            assert_eq!(
                hits(&bytes, MARKER),
                0,
                "{backend}: canary in {}",
                path.display()
            );
            assert_eq!(
                hits(&bytes, IP_PREFIX),
                0,
                "{backend}: IP in {}",
                path.display()
            );
        }
        if backend == "objects" {
            let snapshots = files(data.path())
                .iter()
                .filter(|(p, _)| p.to_string_lossy().contains("/snapshots/"))
                .count();
            assert!(snapshots > 0, "the scan covers the index snapshots");
        }

        for i in 0..ERASED {
            let p = ledger
                .pseudonym("t", &Personal::new(address(i)))
                .await
                .unwrap();
            let (raw, wrapped) = ks.key_material("t", &p).unwrap().unwrap();
            material.push((raw, wrapped));
            let receipt = ledger
                .erase(
                    "t",
                    ContactRef::Address(Personal::new(address(i))),
                    &format!("req-{i}"),
                )
                .await
                .unwrap();
            assert_eq!(receipt.events_unreadable, EVENTS_PER_CONTACT as u64);
        }
        ledger.log().sync().await.unwrap();
    }

    let (ledger, _ks) = open(backend, data.path(), keys.path());
    let needles: Vec<&[u8]> = material
        .iter()
        .flat_map(|(raw, wrapped)| [raw.as_slice(), wrapped.as_slice()])
        .collect();
    for (path, bytes) in files(data.path()).into_iter().chain(files(keys.path())) {
        assert_eq!(
            hits_any(&bytes, &needles),
            0,
            "{backend}: a destroyed key's bytes in {}",
            path.display()
        );
    }
    let mut readable = std::collections::HashSet::new();
    let mut erased = 0;
    let mut from = 0;
    while from < ledger.log().head() {
        let b = ledger
            .log()
            .read_all(&TenantFilter::All, from, Direction::Forward, 1000)
            .await
            .unwrap();
        for r in &b.records {
            let Some(e) = ledger.open(r).unwrap() else {
                continue;
            };
            let json = e.to_json();
            if json["type"] == "erased" {
                continue;
            }
            match json["recipient"].as_str() {
                Some(a) => {
                    readable.insert(a.to_owned());
                }
                None => {
                    assert_eq!(json["recipient"], serde_json::json!({"erased": true}));
                    erased += 1;
                }
            }
        }
        from = b.next.unwrap();
    }
    assert_eq!(erased, ERASED * EVENTS_PER_CONTACT, "{backend}");
    assert_eq!(
        readable.len(),
        CONTACTS - ERASED,
        "{backend}: the others still decrypt"
    );
    assert!(readable.contains(&address(CONTACTS - 1)));
    ledger
        .log()
        .verify(&TenantFilter::All, 0..u64::MAX, None)
        .await
        .unwrap();
    let again = ledger
        .erase("t", ContactRef::Address(Personal::new(address(0))), "req-0")
        .await
        .unwrap();
    assert_eq!(again.events_unreadable, EVENTS_PER_CONTACT as u64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_plaintext_and_no_destroyed_key_is_left_in_any_file() {
    for backend in DURABLE_BACKENDS {
        scan_then_erase(backend).await;
    }
}
