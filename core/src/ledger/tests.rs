//! Unit tests of the log engine.

use super::by_tenant::ByTenant;
use super::commit::sort_puts;
use super::keys::TenantHead;
use super::*;
use crate::residency::Jurisdiction;
use crate::store::{Visit, WriteBatch};

#[test]
fn sorted_puts_keep_the_order_of_puts_to_one_key() {
    // Puts to a few keys of two spaces, interleaved, each numbered.
    let mut puts: Vec<(Space, Vec<u8>, Vec<u8>)> = (0..200u8)
        .map(|n| {
            let space = if n % 3 == 0 {
                Space::Log
            } else {
                Space::Streams
            };
            (space, vec![b"cab"[usize::from(n % 3)]; 2], vec![n])
        })
        .collect();
    sort_puts(&mut puts);
    assert!(
        puts.windows(2)
            .all(|w| (w[0].0, &w[0].1) <= (w[1].0, &w[1].1)),
        "not in order of space and key"
    );
    assert!(
        puts.windows(2)
            .filter(|w| (w[0].0, &w[0].1) == (w[1].0, &w[1].1))
            .all(|w| w[0].2 < w[1].2),
        "puts to one key changed their order"
    );
}

#[test]
fn tenant_head_round_trips() {
    let th = TenantHead {
        last_position: 7,
        hash: [3; 32],
        count: 9,
    };
    assert_eq!(TenantHead::decode(&th.encode()), Some(th));
    assert_eq!(TenantHead::decode(&[0; 47]), None);
}

/// A store whose next commit, once armed, waits until released, then
/// succeeds or fails as told: a group held in flight.
struct Gated {
    inner: crate::MemoryStore,
    gate: Mutex<Option<(mpsc::Sender<()>, mpsc::Receiver<bool>)>>,
    // The records of each batch committed, in order.
    committed: Mutex<Vec<usize>>,
}

impl Gated {
    /// Arms the gate: returns (entered, release).
    fn arm(&self) -> (mpsc::Receiver<()>, mpsc::Sender<bool>) {
        let (entered_tx, entered) = mpsc::channel();
        let (release, release_rx) = mpsc::channel();
        *self.gate.lock().unwrap() = Some((entered_tx, release_rx));
        (entered, release)
    }
}

impl Store for Gated {
    fn backend(&self) -> &'static str {
        "gated"
    }
    fn commit(&self, batch: WriteBatch, sync: bool) -> Result<(), crate::StoreError> {
        let gate = self.gate.lock().unwrap().take();
        if let Some((entered, release)) = gate {
            entered.send(()).unwrap();
            if !release.recv().unwrap() {
                return Err(crate::StoreError::new("gated", "refused"));
            }
        }
        let records = batch.puts.iter().filter(|p| p.0 == Space::Log).count();
        self.inner.commit(batch, sync)?;
        self.committed.lock().unwrap().push(records);
        Ok(())
    }
    fn get(&self, space: Space, key: &[u8]) -> Result<Option<Vec<u8>>, crate::StoreError> {
        self.inner.get(space, key)
    }
    fn scan(
        &self,
        space: Space,
        start: &[u8],
        end: Option<&[u8]>,
        reverse: bool,
        visit: &mut dyn FnMut(&[u8], &[u8]) -> Visit,
    ) -> Result<(), crate::StoreError> {
        self.inner.scan(space, start, end, reverse, visit)
    }
    fn sync(&self) -> Result<(), crate::StoreError> {
        self.inner.sync()
    }
}

fn gated_log() -> Arc<Ledger<Gated>> {
    gated_log_with(LedgerConfig::new())
}

fn gated_log_with(config: LedgerConfig) -> Arc<Ledger<Gated>> {
    let store = Gated {
        inner: crate::MemoryStore::new(),
        gate: Mutex::new(None),
        committed: Mutex::new(Vec::new()),
    };
    Arc::new(Ledger::open(store, config).unwrap())
}

fn event(id: Uuid) -> crate::NewEvent {
    crate::NewEvent::new(id, "sent", b"{}".to_vec())
}

/// Appends one event of id `id` to stream `s` of tenant `t`, in the
/// background.
fn spawn_append(
    rt: &tokio::runtime::Runtime,
    log: &Arc<Ledger<Gated>>,
    expected: crate::ExpectedVersion,
    id: Uuid,
) -> tokio::task::JoinHandle<Result<AppendOutcome>> {
    use crate::EventLog;
    let log = Arc::clone(log);
    rt.spawn(async move {
        log.append_to_stream("t", "s", expected, vec![event(id)])
            .await
    })
}

#[test]
fn appends_prepared_while_the_group_before_commits_see_its_ids_and_versions() {
    use crate::{EventLog, ExpectedVersion};
    let rt = tokio::runtime::Runtime::new().unwrap();
    let log = gated_log();
    let (entered, release) = log.store().arm();
    let x = Uuid::now_v7();
    let first = spawn_append(&rt, &log, ExpectedVersion::NoStream, x);
    entered.recv().unwrap();
    // The first group is in flight; these are prepared on top of it.
    let again = spawn_append(&rt, &log, ExpectedVersion::Any, x);
    let next = spawn_append(&rt, &log, ExpectedVersion::Exact(0), Uuid::now_v7());
    std::thread::sleep(std::time::Duration::from_millis(200));
    assert!(
        !again.is_finished() && !next.is_finished(),
        "answered before the group they build on was durable"
    );
    assert_eq!(log.head(), 0, "head published before its commit");
    release.send(true).unwrap();
    let first = rt.block_on(first).unwrap().unwrap();
    let again = rt.block_on(again).unwrap().unwrap();
    let next = rt.block_on(next).unwrap().unwrap();
    assert_eq!(first.positions, vec![0]);
    assert_eq!(
        (again.positions, again.duplicates),
        (vec![0], 1),
        "the id in flight was appended again"
    );
    assert_eq!((next.positions, next.stream_version), (vec![1], Some(1)));
    assert_eq!(
        rt.block_on(log.read_stream("t", "s", 0, 10)).unwrap().len(),
        2
    );
    rt.block_on(log.verify(&crate::TenantFilter::All, 0..log.head(), None))
        .unwrap();
}

// Each record carries the jurisdiction its node declared, inside the
// hashed bytes. A log written before format 2 goes on: its records read
// with no jurisdiction, and the chain verifies across both formats.
#[test]
fn records_carry_their_nodes_jurisdiction_and_older_records_read_without() {
    use crate::{EventLog, ExpectedVersion};
    let rt = tokio::runtime::Runtime::new().unwrap();
    let store = Arc::new(crate::MemoryStore::new());
    let germany: Jurisdiction = "DE".parse().unwrap();
    for config in [
        LedgerConfig::new().format_v1(),
        LedgerConfig::new().jurisdiction(germany),
        LedgerConfig::new(),
    ] {
        let log = Ledger::open(Arc::clone(&store), config).unwrap();
        rt.block_on(log.append_to_stream(
            "t",
            "s",
            ExpectedVersion::Any,
            vec![event(Uuid::now_v7())],
        ))
        .unwrap();
        log.close();
    }
    let log = Ledger::open(Arc::clone(&store), LedgerConfig::new()).unwrap();
    let records = rt.block_on(log.read_stream("t", "s", 0, 10)).unwrap();
    let places: Vec<_> = records.iter().map(|r| r.jurisdiction).collect();
    assert_eq!(places, [None, Some(germany), Some(Jurisdiction::EU)]);
    let report = rt
        .block_on(log.verify(&crate::TenantFilter::All, 0..log.head(), None))
        .unwrap();
    let counted: Vec<_> = report.written_in["t"]
        .iter()
        .map(|(j, n)| (*j, *n))
        .collect();
    assert_eq!(
        counted,
        [(None, 1), (Some(germany), 1), (Some(Jurisdiction::EU), 1)]
    );
}

// The caller's thread policy reaches the log's own threads: its hook runs
// on the writer and on the committer, each named for its role, before they
// take any work.
#[test]
fn the_callers_thread_hook_runs_on_the_writer_and_the_committer() {
    use crate::{EventLog, ExpectedVersion, ThreadHook, ThreadRole};
    let seen = Arc::new(Mutex::new(Vec::new()));
    let hook = {
        let seen = Arc::clone(&seen);
        ThreadHook::new(move |role: ThreadRole| {
            let name = std::thread::current().name().map(str::to_owned);
            seen.lock().unwrap().push((role, name));
        })
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    let log = gated_log_with(LedgerConfig::new().thread_hook(hook));
    rt.block_on(log.append_to_stream(
        "t",
        "s",
        ExpectedVersion::NoStream,
        vec![event(Uuid::now_v7())],
    ))
    .unwrap();
    let mut seen = seen.lock().unwrap().clone();
    seen.sort_by_key(|(role, _)| *role == ThreadRole::LogCommitter);
    assert_eq!(
        seen,
        vec![
            (ThreadRole::LogWriter, Some("mailledger-writer".to_owned())),
            (
                ThreadRole::LogCommitter,
                Some("mailledger-commit".to_owned())
            ),
        ]
    );
}

// `mailledger serve` bounds groups far below the default (400 records,
// with requests of up to 1,000 events): the bound must hold while
// appends queue behind a group in flight, and an append larger than it
// must still go in whole, as one batch, never split across two.
#[test]
fn groups_stop_at_their_bound_and_a_larger_append_goes_in_whole() {
    use crate::{EventLog, ExpectedVersion, StreamAppend};
    const BOUND: usize = 3;
    const BIG: usize = 5;
    let rt = tokio::runtime::Runtime::new().unwrap();
    let log = gated_log_with(LedgerConfig::new().max_group_records(BOUND));
    let (entered, release) = log.store().arm();
    let first = spawn_append(&rt, &log, ExpectedVersion::NoStream, Uuid::now_v7());
    entered.recv().unwrap();
    // Queued behind the group in flight: twenty single events, then
    // one append of five.
    let mut singles = Vec::new();
    for i in 0..20 {
        let log = Arc::clone(&log);
        singles.push(rt.spawn(async move {
            log.append_to_stream(
                "t",
                &format!("single-{i}"),
                ExpectedVersion::NoStream,
                vec![event(Uuid::now_v7())],
            )
            .await
        }));
    }
    std::thread::sleep(std::time::Duration::from_millis(100));
    let big = {
        let log = Arc::clone(&log);
        rt.spawn(async move {
            let events = (0..BIG).map(|_| event(Uuid::now_v7())).collect();
            log.append(
                "t",
                vec![StreamAppend::new("big", ExpectedVersion::NoStream, events)],
            )
            .await
        })
    };
    std::thread::sleep(std::time::Duration::from_millis(100));
    release.send(true).unwrap();
    rt.block_on(first).unwrap().unwrap();
    for s in singles {
        assert_eq!(rt.block_on(s).unwrap().unwrap().positions.len(), 1);
    }
    let big = rt.block_on(big).unwrap().unwrap().remove(0);
    let p = &big.positions;
    assert_eq!(p.len(), BIG);
    assert!(
        p.windows(2).all(|w| w[1] == w[0] + 1),
        "{p:?} not contiguous"
    );
    assert_eq!(log.head(), 1 + 20 + BIG as u64);
    let committed = log.store().committed.lock().unwrap().clone();
    assert_eq!(committed.iter().sum::<usize>(), 1 + 20 + BIG);
    // A group takes jobs while it holds fewer than BOUND records, so
    // only the job that crosses the bound may take it past.
    for &n in &committed {
        assert!(
            n <= BOUND - 1 + BIG,
            "a group of {n} records: {committed:?}"
        );
    }
    assert!(
        committed.iter().any(|&n| n >= BIG),
        "the large append was split: {committed:?}"
    );
    assert!(
        committed.len() > 20 / BOUND,
        "twenty queued appends went in {} groups: {committed:?}",
        committed.len() - 1
    );
    rt.block_on(log.verify(&crate::TenantFilter::All, 0..log.head(), None))
        .unwrap();
}

#[test]
fn a_failed_commit_fails_the_group_prepared_on_top_of_it_unwritten() {
    use crate::{EventLog, ExpectedVersion};
    let rt = tokio::runtime::Runtime::new().unwrap();
    let log = gated_log();
    assert!(log.accepts_appends());
    let (entered, release) = log.store().arm();
    let first = spawn_append(&rt, &log, ExpectedVersion::NoStream, Uuid::now_v7());
    entered.recv().unwrap();
    let second = spawn_append(&rt, &log, ExpectedVersion::Exact(0), Uuid::now_v7());
    std::thread::sleep(std::time::Duration::from_millis(200));
    release.send(false).unwrap();
    assert!(matches!(
        rt.block_on(first).unwrap(),
        Err(Error::Storage(_))
    ));
    assert!(matches!(rt.block_on(second).unwrap(), Err(Error::Poisoned)));
    let mut records = 0;
    log.store()
        .inner
        .scan(Space::Log, &[], None, false, &mut |_, _| {
            records += 1;
            Visit::Continue
        })
        .unwrap();
    assert_eq!(records, 0, "a group prepared on a failed one was written");
    assert_eq!(log.head(), 0);
    assert!(
        !log.accepts_appends(),
        "a poisoned log says it takes no appends"
    );
}

#[test]
fn reads_run_in_place_on_a_thread_that_may_block() {
    use crate::{EventLog, ExpectedVersion, MemoryStore, NewEvent};
    // One blocking thread, kept busy: a read that hands over to the
    // blocking pool cannot finish until it is free.
    let rt = tokio::runtime::Builder::new_current_thread()
        .max_blocking_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let log = Ledger::open(MemoryStore::new(), LedgerConfig::new()).unwrap();
    let event = NewEvent::new(uuid::Uuid::now_v7(), "sent", b"{}".to_vec());
    rt.block_on(log.append_to_stream("t", "s", ExpectedVersion::NoStream, vec![event]))
        .unwrap();
    let (release, wait) = std::sync::mpsc::channel::<()>();
    let busy = rt.spawn_blocking(move || wait.recv());
    let handed_over = rt.block_on(async {
        tokio::time::timeout(
            std::time::Duration::from_millis(200),
            log.read_stream("t", "s", 0, 10),
        )
        .await
    });
    assert!(
        handed_over.is_err(),
        "without the marker the read waits for the pool"
    );
    let in_place = crate::on_blocking_thread(|| rt.block_on(log.read_stream("t", "s", 0, 10)));
    assert_eq!(in_place.unwrap().len(), 1, "with it the read runs here");
    assert!(
        !crate::blocking::may_block(),
        "the marker is cleared afterwards"
    );
    release.send(()).unwrap();
    rt.block_on(busy).unwrap().unwrap();
}

#[test]
fn by_tenant_keeps_tenants_apart() {
    let mut a: ByTenant<String, u64> = ByTenant::default();
    a.insert("t", "s".into(), 1, 4);
    a.insert("t", "s".into(), 2, 4);
    a.insert("u", "s".into(), 3, 4);
    assert_eq!(a.get("t", "s"), Some(2));
    assert_eq!(a.get("u", "s"), Some(3));
    assert!(!a.contains("v", "s") && !a.contains("t", "x"));
    let mut all: Vec<_> = a.into_entries().collect();
    all.sort();
    assert_eq!(
        all,
        [("t".into(), "s".into(), 2), ("u".into(), "s".into(), 3)]
    );
    let mut c: ByTenant<String, u64> = ByTenant::default();
    c.insert("t", "s".into(), 1, 0);
    c.clear();
    assert_eq!(c.get("t", "s"), None);
}
