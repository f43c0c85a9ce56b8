//! The runner and rebuilds: lag, the caller's thread hook, fjall rebuilds swapped in, stores of another format rebuilt.

use crate::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkpoints_report_lag_and_the_live_runner_follows_the_head() {
    let f = fx();
    append(
        &f,
        "t",
        &[ev("sent", "a@example.org", Some("m"), T0, json!({}))],
    )
    .await;
    let p = Arc::new(Projections::in_memory());
    assert!(p.status(f.log.head()).iter().all(|s| s.lag == 1));
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(Arc::clone(&p).run(Arc::clone(&f.log), stop));
    assert!(p.wait_for(1, std::time::Duration::from_secs(10)).await);
    append(
        &f,
        "t",
        &[ev(
            "delivered",
            "a@example.org",
            Some("m"),
            T0 + 1,
            json!({}),
        )],
    )
    .await;
    assert!(p.wait_for(2, std::time::Duration::from_secs(10)).await);
    assert!(
        p.status(f.log.head())
            .iter()
            .all(|s| s.lag == 0 && s.checkpoint == 2)
    );
    let row = p
        .messages("t", &MessageFilter::default(), None, 1)
        .unwrap()
        .items;
    assert_eq!(row[0].status, Some(Status::Delivered));
    stop_tx.send(true).unwrap();
    task.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_caller_s_hook_runs_first_on_every_thread_the_runner_and_a_rebuild_start() {
    use mailledger_core::{ThreadHook, ThreadRole};
    let f = fx();
    append(&f, "t", &sent(10, 2)).await;
    // Each thread the hook ran on, by name, with the role it was told.
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let hook = {
        let seen = Arc::clone(&seen);
        ThreadHook::new(move |role| {
            let name = std::thread::current().name().map(str::to_owned);
            seen.lock().unwrap().push((name, role));
        })
    };
    let p = Arc::new(Projections::in_memory().with_thread_hook(hook));
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    let runner = p.spawn_runner(Arc::clone(&f.log), stop).unwrap();
    // Applied on the runner's blocking pool, so its threads have started.
    assert!(p.wait_for(10, std::time::Duration::from_secs(10)).await);
    stop_tx.send(true).unwrap();
    tokio::task::spawn_blocking(move || runner.join().unwrap())
        .await
        .unwrap();
    assert!(p.start_rebuild(Arc::clone(&f.log), Vec::new()).unwrap());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while p.rebuild_status().is_some_and(|s| s.running) {
        assert!(
            std::time::Instant::now() < deadline,
            "the rebuild never ended"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(p.rebuild_status().unwrap().error, None);
    let seen = seen.lock().unwrap();
    for thread in [
        "projections",
        "projection-pool",
        "projection-rebuild",
        "rebuild-pool",
        "projection-commit",
    ] {
        assert!(
            seen.iter().any(|(name, _)| name.as_deref() == Some(thread)),
            "the hook did not run on {thread}: {seen:?}"
        );
    }
    assert!(
        seen.iter()
            .all(|(_, role)| *role == ThreadRole::Projections),
        "{seen:?}"
    );
}

/// `n` messages, one `sent` event each, to `contacts` recipients in turn.
fn sent(n: i64, contacts: i64) -> Vec<Value> {
    (0..n)
        .map(|i| {
            ev(
                "sent",
                &format!("x{}@example.org", i % contacts),
                Some(&format!("m{i}")),
                T0 + i,
                json!({}),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fjall_rebuild_is_swapped_in_and_survives_reopen() {
    let f = fx();
    let dir = tempfile::tempdir().unwrap();
    append(&f, "t", &sent(500, 50)).await;
    let p = Projections::open(dir.path()).unwrap();
    p.catch_up(f.log.as_ref()).await.unwrap();
    let before = p
        .messages("t", &MessageFilter::default(), None, 1000)
        .unwrap();
    // Reads go on during the rebuild, through whichever store is current,
    // and see every message each time.
    let p = Arc::new(p);
    let rebuilding = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let reader = {
        let (p, rebuilding) = (Arc::clone(&p), Arc::clone(&rebuilding));
        std::thread::spawn(move || {
            let mut reads = 0;
            while rebuilding.load(std::sync::atomic::Ordering::Acquire) || reads == 0 {
                let page = p
                    .messages("t", &MessageFilter::default(), None, 1000)
                    .unwrap();
                assert_eq!(page.items.len(), 500);
                reads += 1;
            }
            reads
        })
    };
    let done = std::sync::atomic::AtomicU64::new(0);
    let progress = |pr: mailledger_projections::Progress| {
        done.store(pr.done, std::sync::atomic::Ordering::Relaxed);
    };
    p.rebuild(f.log.as_ref(), &[], Some(&progress))
        .await
        .unwrap();
    rebuilding.store(false, std::sync::atomic::Ordering::Release);
    assert!(reader.join().unwrap() > 0);
    assert_eq!(done.load(std::sync::atomic::Ordering::Relaxed), 500);
    let after = p
        .messages("t", &MessageFilter::default(), None, 1000)
        .unwrap();
    assert_eq!(before, after);
    assert!(dir.path().join("delivery-log/gen-1").exists());
    assert!(
        !dir.path().join("delivery-log/gen-0").exists(),
        "the old store is removed"
    );
    drop(p);
    let p = Projections::open(dir.path()).unwrap();
    assert!(p.status(f.log.head()).iter().all(|s| s.lag == 0));
    assert_eq!(
        p.messages("t", &MessageFilter::default(), None, 1000)
            .unwrap(),
        after
    );
    assert!(p.rebuild(f.log.as_ref(), &["nope"], None).await.is_err());
}

#[tokio::test]
async fn a_store_in_another_format_is_dropped_and_rebuilt_from_the_log() {
    let f = fx();
    let dir = tempfile::tempdir().unwrap();
    append(&f, "t", &sent(100, 10)).await;
    let p = Projections::open(dir.path()).unwrap();
    p.catch_up(f.log.as_ref()).await.unwrap();
    let before = p
        .messages("t", &MessageFilter::default(), None, 1000)
        .unwrap();
    assert_eq!(before.items.len(), 100);
    drop(p);
    // A build with another layout of the delivery log wrote this store;
    // it also left a row this build would misread.
    {
        let store = FjallState::open(&dir.path().join("delivery-log/gen-0")).unwrap();
        store
            .commit(vec![
                (FORMAT_KEY.to_vec(), Some(999u32.to_be_bytes().to_vec())),
                (b"t\0Mbogus-row-key-".to_vec(), Some(b"not a row".to_vec())),
            ])
            .unwrap();
    }
    let p = Projections::open(dir.path()).unwrap();
    let head = f.log.head();
    let lag = |p: &Projections, name: &str| {
        p.status(head)
            .into_iter()
            .find(|s| s.name == name)
            .unwrap()
            .lag
    };
    assert_eq!(
        lag(&p, delivery::NAME),
        head,
        "the delivery log starts over"
    );
    assert_eq!(lag(&p, suppression::NAME), 0, "the others are kept");
    p.catch_up(f.log.as_ref()).await.unwrap();
    assert_eq!(
        p.messages("t", &MessageFilter::default(), None, 1000)
            .unwrap(),
        before
    );
    let store = p.store(delivery::NAME).unwrap();
    assert_eq!(store.get(b"t\0Mbogus-row-key-").unwrap(), None);
    assert_eq!(
        store.get(FORMAT_KEY).unwrap(),
        Some(delivery::FORMAT.to_be_bytes().to_vec())
    );
}
