//! 100 random tamperings of copies of a fjall log, made behind the
//! ledger's back with fjall itself (as anyone with the disk could), are
//! each detected by verification against exported checkpoints, naming the
//! position of the change.

#![allow(clippy::unwrap_used)]

use std::path::Path;

use mailledger_audit::{AuditError, AuditKey, SignedCheckpoint, all_checkpoints, verify_against};
use mailledger_core::codec::{self, RecordFields};
use mailledger_core::residency::Jurisdiction;
use mailledger_core::{Error, EventLog, ExpectedVersion, Ledger, LedgerConfig, NewEvent};
use mailledger_fjall::FjallStore;
use uuid::Uuid;

/// A seeded generator (SplitMix64), so a failure can be replayed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn open(dir: &Path) -> mailledger_core::Result<Ledger<FjallStore>> {
    let store = FjallStore::open(dir).map_err(Error::Storage)?;
    Ledger::open(store, LedgerConfig::new())
}

/// Two tenants' interleaved history, checkpointed as it grows, with a tail
/// written after the last checkpoint. Returns the exported checkpoints.
async fn history(dir: &Path, key: &AuditKey) -> Vec<SignedCheckpoint> {
    let log = open(dir).unwrap();
    let eu: Jurisdiction = "EU".parse().unwrap();
    for round in 0..8u64 {
        for i in 0..30u64 {
            let tenant = if i % 3 == 0 { "beta" } else { "acme" };
            let stream = format!("message-{}", (round * 30 + i) % 17);
            let events = (0..1 + i % 3)
                .map(|j| {
                    NewEvent::new(
                        Uuid::new_v4(),
                        "sent",
                        format!("{{\"round\":{round},\"i\":{i},\"j\":{j}}}").into_bytes(),
                    )
                })
                .collect();
            log.append_to_stream(tenant, &stream, ExpectedVersion::Any, events)
                .await
                .unwrap();
        }
        mailledger_audit::sign_checkpoints(&log, key, eu, 1_767_600_000_000_000 + round as i64)
            .await
            .unwrap();
    }
    for i in 0..10 {
        log.append_to_stream(
            "acme",
            "tail",
            ExpectedVersion::Any,
            vec![NewEvent::new(
                Uuid::new_v4(),
                "sent",
                format!("{{\"tail\":{i}}}").into_bytes(),
            )],
        )
        .await
        .unwrap();
    }
    all_checkpoints(&log, None).await.unwrap()
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Tamper {
    Byte,
    Remove,
    Swap,
    Truncate,
    Rechain,
}

/// Applies one tampering at `at` to the log in `dir` with fjall directly;
/// returns the positions a correct verification may name.
fn tamper(dir: &Path, kind: Tamper, at: u64, rng: &mut Rng) -> std::ops::RangeInclusive<u64> {
    let db = fjall::Database::builder(dir).open().unwrap();
    let ks = |name: &str| {
        db.keyspace(name, fjall::KeyspaceCreateOptions::default)
            .unwrap()
    };
    let (log, tenants) = (ks("log"), ks("tenants"));
    let key = |p: u64| p.to_be_bytes();
    let frame = |p: u64| log.get(key(p)).unwrap().unwrap().to_vec();
    let head = {
        let mut n = 0;
        while log.get(key(n)).unwrap().is_some() {
            n += 1;
        }
        n
    };
    let named = match kind {
        Tamper::Byte => {
            let mut f = frame(at);
            let i = rng.below(f.len() as u64) as usize;
            f[i] ^= 1 << rng.below(8);
            log.insert(key(at), f).unwrap();
            at..=at
        }
        Tamper::Remove => {
            log.remove(key(at)).unwrap();
            at..=at
        }
        Tamper::Swap => {
            let (a, b) = (frame(at), frame(at + 1));
            log.insert(key(at), b).unwrap();
            log.insert(key(at + 1), a).unwrap();
            // Either of the pair: opening checks a chain head first.
            at..=at + 1
        }
        Tamper::Truncate => {
            for p in at..head {
                log.remove(key(p)).unwrap();
            }
            at..=head
        }
        Tamper::Rechain => {
            // A forger without the audit key: change one record, then
            // re-chain every later record of its tenant and its stored
            // head, so hashes and links all hold again.
            let first = frame(at);
            let tenant = codec::decode(&first).unwrap().tenant.to_owned();
            let mut prev = None;
            let mut last = at;
            for p in at..head {
                let f = frame(p);
                let r = codec::decode(&f).unwrap();
                if r.tenant != tenant {
                    continue;
                }
                let mut payload = r.payload.to_vec();
                if p == at {
                    payload.push(b' ');
                }
                let (new, hash) = codec::encode(&RecordFields {
                    position: r.position,
                    tenant: r.tenant,
                    stream: r.stream,
                    stream_version: r.stream_version,
                    event_id: r.event_id,
                    recorded_at_micros: r.recorded_at_micros,
                    event_type: r.event_type,
                    payload: &payload,
                    metadata: r.metadata,
                    prev_hash: prev.unwrap_or(r.prev_hash),
                    jurisdiction: r.jurisdiction.unwrap(),
                })
                .unwrap();
                log.insert(key(p), new).unwrap();
                prev = Some(hash);
                last = p;
            }
            let mut th = tenants.get(&tenant).unwrap().unwrap().to_vec();
            assert_eq!(th[..8], last.to_be_bytes());
            th[8..40].copy_from_slice(&prev.unwrap());
            tenants.insert(&tenant, th).unwrap();
            at..=u64::MAX
        }
    };
    db.persist(fjall::PersistMode::SyncAll).unwrap();
    named
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_random_tamperings_are_each_detected_naming_their_position() {
    let key = AuditKey::from_seed([11; 32]);
    let original = tempfile::tempdir().unwrap();
    let checkpoints = history(original.path(), &key).await;
    assert!(checkpoints.len() >= 16, "{} checkpoints", checkpoints.len());
    let covered = checkpoints
        .iter()
        .map(|c| c.checkpoint.position)
        .max()
        .unwrap();
    // The untouched log verifies.
    {
        let log = open(original.path()).unwrap();
        let report = verify_against(&log, &checkpoints, &key.public(), None)
            .await
            .unwrap();
        assert_eq!(report.checkpoints, checkpoints.len());
        assert_eq!(report.tenants, 2);
    }
    let mut rng = Rng(27);
    let kinds = [
        Tamper::Byte,
        Tamper::Remove,
        Tamper::Swap,
        Tamper::Truncate,
        Tamper::Rechain,
    ];
    for n in 0..100 {
        let kind = kinds[n % kinds.len()];
        let at = rng.below(covered);
        let copy = tempfile::tempdir().unwrap();
        copy_dir(original.path(), copy.path());
        let may_name = tamper(copy.path(), kind, at, &mut rng);
        let named = match open(copy.path()) {
            Err(Error::Corrupt { position, .. }) => position,
            Err(e) => panic!("#{n} {kind:?} at {at}: open failed without naming a position: {e}"),
            Ok(log) => match verify_against(&log, &checkpoints, &key.public(), None).await {
                Err(AuditError::Tampered { position, reason }) => {
                    if let Tamper::Rechain = kind {
                        // The first checkpoint broken at or after the change,
                        // with the tenant's one before it still holding.
                        let tenant = &checkpoints
                            .iter()
                            .find(|c| c.checkpoint.position == position)
                            .unwrap_or_else(|| panic!("#{n}: {position} is no checkpoint"))
                            .checkpoint
                            .tenant;
                        let before = checkpoints
                            .iter()
                            .filter(|c| {
                                &c.checkpoint.tenant == tenant && c.checkpoint.position < at
                            })
                            .count();
                        assert!(
                            before == 0 || reason.contains("after its checkpoint at position"),
                            "#{n}: {reason}"
                        );
                    }
                    position
                }
                other => panic!("#{n} {kind:?} at {at}: not detected: {other:?}"),
            },
        };
        assert!(
            may_name.contains(&named),
            "#{n} {kind:?} at {at}: named position {named}, expected within {may_name:?}"
        );
        if let Tamper::Rechain = kind {
            assert!(named >= at, "#{n}: the forgery lies at or before {named}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkpoints_of_another_key_are_refused() {
    let key = AuditKey::from_seed([12; 32]);
    let dir = tempfile::tempdir().unwrap();
    let checkpoints = history(dir.path(), &key).await;
    let log = open(dir.path()).unwrap();
    let other = AuditKey::from_seed([13; 32]);
    assert!(matches!(
        verify_against(&log, &checkpoints, &other.public(), None).await,
        Err(AuditError::Signature { .. })
    ));
}
