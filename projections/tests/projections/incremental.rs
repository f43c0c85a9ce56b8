//! Incremental application equals a rebuild, on random histories, a rebuild stopped midway included.

use crate::*;

/// A store that fails its n-th commit, as a crash mid-rebuild would stop it.
struct FailingAfter {
    inner: MemoryState,
    commits_left: std::sync::atomic::AtomicI64,
}

impl StateStore for FailingAfter {
    fn get(&self, key: &[u8]) -> mailledger_projections::Result<Option<Vec<u8>>> {
        self.inner.get(key)
    }
    fn scan(
        &self,
        start: &[u8],
        end: &[u8],
        reverse: bool,
        visit: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> mailledger_projections::Result<()> {
        self.inner.scan(start, end, reverse, visit)
    }
    fn commit(
        &self,
        writes: Vec<mailledger_projections::state::Write>,
    ) -> mailledger_projections::Result<()> {
        if self
            .commits_left
            .fetch_sub(1, std::sync::atomic::Ordering::SeqCst)
            <= 0
        {
            return Err(mailledger_projections::Error::Storage(
                "injected failure".into(),
            ));
        }
        self.inner.commit(writes)
    }
    fn flush(&self) -> mailledger_projections::Result<()> {
        Ok(())
    }
}

/// Random histories: several tenants and contacts, every event type,
/// out-of-order provider times, duplicates, policy changes and erasures.
#[derive(Debug, Clone)]
enum Step {
    Event {
        ty: usize,
        contact: u8,
        message: u8,
        at: i64,
        dup: bool,
    },
    Erase {
        contact: u8,
    },
    Policy {
        threshold: u32,
    },
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        8 => (0usize..13, 0u8..6, 0u8..8, 0i64..(20 * DAY), any::<bool>())
            .prop_map(|(ty, contact, message, at, dup)| Step::Event { ty, contact, message, at, dup }),
        1 => (0u8..6).prop_map(|contact| Step::Erase { contact }),
        1 => (0u32..4).prop_map(|threshold| Step::Policy { threshold }),
    ]
}

fn event_of(ty: usize, to: &str, msg: &str, at: i64) -> Value {
    let (t, extra) = match ty {
        0 => (
            "sent",
            json!({"tags": ["a", "b"], "campaign": "c", "sending_domain": "s.example"}),
        ),
        1 => ("delivered", json!({})),
        2 => ("deferred", json!({})),
        3 => ("bounced", json!({"class": "hard"})),
        4 => ("bounced", json!({"class": "soft"})),
        5 => ("bounced", json!({"class": "block"})),
        6 => ("complained", json!({})),
        7 => ("opened", json!({"machine": at % 2 == 0})),
        8 => (
            "clicked",
            json!({"url": "https://x.example/", "bot": at % 3 == 0}),
        ),
        9 => ("unsubscribed", json!({"scope": "news"})),
        10 => ("resubscribed", json!({"scope": "news"})),
        11 => ("suppressed", json!({"scope": "all", "reason": "manual"})),
        _ => ("unsuppressed", json!({"scope": "all", "reason": "ok"})),
    };
    ev(t, to, Some(msg), T0 + at, extra)
}

async fn play(f: &Fx, steps: &[Step]) -> Vec<u64> {
    let mut heads = Vec::new();
    let mut appended: Vec<(String, Value)> = Vec::new();
    for (i, s) in steps.iter().enumerate() {
        let tenant = if i % 4 == 3 { "u" } else { "t" };
        match s {
            Step::Event {
                ty,
                contact,
                message,
                at,
                dup,
            } => {
                let e = if *dup && !appended.is_empty() {
                    appended[i % appended.len()].clone()
                } else {
                    let to = format!("c{contact}@example.org");
                    (
                        tenant.to_owned(),
                        event_of(*ty, &to, &format!("m{message}"), *at),
                    )
                };
                let parsed = parse_event(&e.1.to_string()).unwrap();
                // An event of an erased contact is refused; that is fine.
                let _ = f.email.append(&e.0, vec![parsed]).await;
                appended.push(e);
            }
            Step::Erase { contact } => {
                let to = format!("c{contact}@example.org");
                f.email
                    .erase(
                        tenant,
                        ContactRef::Address(Personal::new(to)),
                        // Unique also when steps are played one at a time:
                        // a request id belongs to one contact.
                        &format!("r{i}-{}", f.log.head()),
                    )
                    .await
                    .unwrap();
            }
            Step::Policy { threshold } => {
                let mut p = TenantPolicy::default();
                p.suppression.soft_bounce_threshold = *threshold;
                f.email.set_policy(tenant, p).await.unwrap();
            }
        }
        heads.push(f.log.head());
    }
    heads
}

fn dumps(stores: &[Arc<MemoryState>]) -> Vec<std::collections::BTreeMap<Vec<u8>, Vec<u8>>> {
    stores.iter().map(|s| s.dump()).collect()
}

fn memory_stores() -> (Vec<Arc<MemoryState>>, [Arc<dyn StateStore>; 3]) {
    let s: Vec<Arc<MemoryState>> = (0..3).map(|_| Arc::new(MemoryState::new())).collect();
    let dyns: [Arc<dyn StateStore>; 3] = [
        Arc::clone(&s[0]) as Arc<dyn StateStore>,
        Arc::clone(&s[1]) as Arc<dyn StateStore>,
        Arc::clone(&s[2]) as Arc<dyn StateStore>,
    ];
    (s, dyns)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn incremental_rebuilt_and_interrupted_builds_agree(
        steps in prop::collection::vec(step(), 1..60),
        fail_after in 0i64..6,
    ) {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        rt.block_on(async {
            let f = fx();
            // Incremental: caught up after every step.
            let (inc, inc_dyn) = memory_stores();
            let incremental = Projections::with_stores(inc_dyn).unwrap();
            let mut steps_heads = Vec::new();
            for s in &steps {
                steps_heads.extend(play(&f, std::slice::from_ref(s)).await);
                incremental.catch_up(f.log.as_ref()).await.unwrap();
            }
            // From 0 in one go.
            let (full, full_dyn) = memory_stores();
            Projections::with_stores(full_dyn).unwrap().catch_up(f.log.as_ref()).await.unwrap();
            prop_assert_eq!(dumps(&inc), dumps(&full));

            // Interrupted: each store fails after some commits, then a
            // restart over what was committed resumes.
            let failing: Vec<Arc<FailingAfter>> = (0..3).map(|i| Arc::new(FailingAfter {
                inner: MemoryState::new(),
                commits_left: std::sync::atomic::AtomicI64::new(fail_after + i),
            })).collect();
            let fdyn: [Arc<dyn StateStore>; 3] = [
                Arc::clone(&failing[0]) as Arc<dyn StateStore>,
                Arc::clone(&failing[1]) as Arc<dyn StateStore>,
                Arc::clone(&failing[2]) as Arc<dyn StateStore>,
            ];
            // Small batches, so the failure lands mid-history.
            let first = Projections::with_stores(fdyn.clone()).unwrap();
            for until in steps_heads.iter().copied() {
                if first.catch_up_with(f.log.as_ref(), until, None).await.is_err() {
                    break;
                }
            }
            drop(first);
            for s in &failing {
                s.commits_left.store(i64::MAX, std::sync::atomic::Ordering::SeqCst);
            }
            let resumed = Projections::with_stores(fdyn).unwrap();
            resumed.catch_up(f.log.as_ref()).await.unwrap();
            let resumed_dumps: Vec<_> = failing.iter().map(|s| s.inner.dump()).collect();
            prop_assert_eq!(resumed_dumps, dumps(&full));

            // And the rebuild path (fresh stores, swapped in) gives the same:
            // in memory with the default sizes, and into fjall stores with
            // reads and commits small enough that a rebuild crosses many of
            // each (commits handed to the committer while the next events
            // read the writes in flight, then fjall's sorted ingestion).
            let rebuilt = Projections::in_memory();
            rebuilt.rebuild(f.log.as_ref(), &[], None).await.unwrap();
            let dir = tempfile::tempdir().unwrap();
            let on_disk = Projections::open(dir.path())
                .unwrap()
                .with_rebuild_sizes(RebuildSizes { read: 3, commit: 5 });
            on_disk.rebuild(f.log.as_ref(), &[], None).await.unwrap();
            for built in [&rebuilt, &on_disk] {
                for (i, name) in [delivery::NAME, suppression::NAME, analytics::NAME].iter().enumerate() {
                    let store = built.store(name).unwrap();
                    let mut got = std::collections::BTreeMap::new();
                    store.scan(&[1], &[0xff; 4], false, &mut |k, v| { got.insert(k.to_vec(), v.to_vec()); true }).unwrap();
                    prop_assert_eq!(&got, &full[i].dump());
                }
            }
            Ok(())
        })?;
    }
}
