//! What the object_store backend adds to the conformance suite: writers
//! fenced by conditional create, stores that fail mid-commit, damaged
//! segments, reads through a cache too small to hold them, and the frozen
//! segment format.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};

use async_trait::async_trait;
use futures_util::stream::BoxStream;
use mailledger_core::{
    Direction, ErrorKind, EventLog, ExpectedVersion, Ledger, LedgerConfig, NewEvent, Space, Store,
    TenantFilter, WriteBatch,
};
use mailledger_object_store::SegmentStore;
use mailledger_object_store::testing as common;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    ObjectStoreExt, PutMode, PutMultipartOptions, PutOptions, PutPayload, PutResult,
};
use uuid::Uuid;

fn events(n: usize) -> Vec<NewEvent> {
    (0..n)
        .map(|i| {
            NewEvent::new(
                Uuid::now_v7(),
                "sent",
                format!("{{\"i\":{i}}}").into_bytes(),
            )
        })
        .collect()
}

fn log_over(
    objects: Arc<dyn ObjectStore>,
    prefix: &str,
) -> mailledger_core::Result<Ledger<SegmentStore>> {
    Ledger::open(SegmentStore::open(objects, prefix)?, LedgerConfig::new())
}

async fn ids(log: &dyn EventLog) -> Vec<Uuid> {
    log.read_all(&TenantFilter::All, 0, Direction::Forward, 10_000)
        .await
        .unwrap()
        .records
        .iter()
        .map(|r| r.event_id)
        .collect()
}

async fn append(log: &dyn EventLog, evs: &[NewEvent]) -> mailledger_core::Result<()> {
    log.append_to_stream("acme", "message-1", ExpectedVersion::Any, evs.to_vec())
        .await
        .map(|_| ())
}

/// Two writers opened on the same log: the one that extends it first wins;
/// the other's commit is refused by the store (its segment name exists),
/// it writes nothing more, and a reopen reads only what the winner wrote.
async fn a_second_writer_is_fenced(objects: Arc<dyn ObjectStore>, prefix: &str) {
    let first = events(3);
    let a = log_over(Arc::clone(&objects), prefix).unwrap();
    append(&a, &first).await.unwrap();
    let b = log_over(Arc::clone(&objects), prefix).unwrap();
    assert_eq!(
        ids(&b).await,
        first.iter().map(|e| e.id).collect::<Vec<_>>()
    );

    let won = events(2);
    append(&a, &won).await.unwrap();
    let lost = events(1);
    let err = append(&b, &lost).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Storage, "{err}");
    assert!(
        err.to_string()
            .contains("another writer extended the log first"),
        "{err}"
    );
    // Fenced for good: nothing it is given is written.
    assert!(append(&b, &events(1)).await.is_err());
    assert!(b.store().commit(WriteBatch::new(), true).is_err());
    drop(b);

    let c = log_over(Arc::clone(&objects), prefix).unwrap();
    let expected: Vec<_> = first.iter().chain(&won).map(|e| e.id).collect();
    assert_eq!(ids(&c).await, expected);
    c.verify(&TenantFilter::All, 0..u64::MAX, None)
        .await
        .unwrap();
    // The winner goes on writing after the loser's attempt.
    let more = events(1);
    append(&a, &more).await.unwrap();
    drop(a);
    drop(c);
    let d = log_over(objects, prefix).unwrap();
    assert_eq!(ids(&d).await.len(), expected.len() + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_writer_is_fenced_and_only_the_first_writers_events_are_read_back() {
    a_second_writer_is_fenced(Arc::new(InMemory::new()), "log").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_writer_is_fenced_on_an_s3_compatible_server() {
    if common::s3_ready() {
        let dir = tempfile::tempdir().unwrap();
        a_second_writer_is_fenced(common::s3(), &common::prefix_for(dir.path())).await;
    }
}

/// How the next `put` of a [`Failing`] store goes.
const PASS: u8 = 0;
/// Refused, nothing stored.
const REFUSE: u8 = 1;
/// Stored, and then answered with an error (a timeout after the store
/// took it).
const STORE_THEN_FAIL: u8 = 2;

/// An object store whose puts fail on demand, and which counts the
/// segments read from it.
#[derive(Debug)]
struct Failing {
    inner: InMemory,
    next_put: AtomicU8,
    segment_gets: AtomicUsize,
}

impl Failing {
    fn new() -> Self {
        Self {
            inner: InMemory::new(),
            next_put: AtomicU8::new(PASS),
            segment_gets: AtomicUsize::new(0),
        }
    }
}

impl fmt::Display for Failing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Failing({})", self.inner)
    }
}

fn injected() -> object_store::Error {
    object_store::Error::Generic {
        store: "Failing",
        source: "injected failure".into(),
    }
}

#[async_trait]
impl ObjectStore for Failing {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        match self.next_put.swap(PASS, Ordering::SeqCst) {
            REFUSE => Err(injected()),
            STORE_THEN_FAIL => {
                self.inner.put_opts(location, payload, opts).await?;
                Err(injected())
            }
            _ => self.inner.put_opts(location, payload, opts).await,
        }
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(
        &self,
        location: &Path,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        if location.as_ref().starts_with("segments/") {
            self.segment_gets.fetch_add(1, Ordering::SeqCst);
        }
        self.inner.get_opts(location, options).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.inner.list(prefix)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(
        &self,
        from: &Path,
        to: &Path,
        options: CopyOptions,
    ) -> object_store::Result<()> {
        self.inner.copy_opts(from, to, options).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_put_loses_no_acknowledged_event_and_leaves_no_part_of_its_batch() {
    let objects = Arc::new(Failing::new());
    let acked = events(4);
    let log = log_over(objects.clone(), "").unwrap();
    append(&log, &acked[..2]).await.unwrap();
    append(&log, &acked[2..]).await.unwrap();

    // Refused: the append fails, the log stops writing, and a reopen shows
    // the acknowledged events and nothing of the refused batch.
    objects.next_put.store(REFUSE, Ordering::SeqCst);
    let err = append(&log, &events(3)).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Storage, "{err}");
    assert!(
        append(&log, &events(1)).await.is_err(),
        "a failed store writes no more"
    );
    drop(log);
    let log = log_over(objects.clone(), "").unwrap();
    assert_eq!(
        ids(&log).await,
        acked.iter().map(|e| e.id).collect::<Vec<_>>()
    );

    // Stored, but answered with an error: never acknowledged, and after a
    // reopen the batch is there whole (a put is atomic), never in part.
    let unanswered = events(5);
    objects.next_put.store(STORE_THEN_FAIL, Ordering::SeqCst);
    assert!(append(&log, &unanswered).await.is_err());
    drop(log);
    let log = log_over(objects.clone(), "").unwrap();
    let expected: Vec<_> = acked.iter().chain(&unanswered).map(|e| e.id).collect();
    assert_eq!(ids(&log).await, expected);
    log.verify(&TenantFilter::All, 0..u64::MAX, None)
        .await
        .unwrap();
    append(&log, &events(1)).await.unwrap();
}

/// Flips one bit of the object at `path`, at the offset `at` picks from
/// its length.
async fn flip(objects: &dyn ObjectStore, path: &Path, at: impl FnOnce(usize) -> usize, bit: u8) {
    let mut bytes = objects
        .get(path)
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap()
        .to_vec();
    let i = at(bytes.len());
    bytes[i] ^= bit;
    objects.put(path, bytes.into()).await.unwrap();
}

/// Three segments of a log in `objects`, and its records' ids.
async fn three_segments(objects: &Arc<InMemory>) -> Vec<Uuid> {
    let evs = events(3);
    let log = log_over(objects.clone(), "").unwrap();
    for e in &evs {
        append(&log, std::slice::from_ref(e)).await.unwrap();
    }
    assert_eq!(log.store().segments(), 3);
    evs.iter().map(|e| e.id).collect()
}

fn open_error(objects: &Arc<InMemory>) -> String {
    SegmentStore::open(objects.clone(), "")
        .unwrap_err()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_refuses_a_missing_a_changed_or_a_foreign_segment_and_names_it() {
    let objects = Arc::new(InMemory::new());
    let ids_written = three_segments(&objects).await;
    let one = Path::from("segments/00000000000000000001.seg");
    let original = objects.get(&one).await.unwrap().bytes().await.unwrap();

    flip(objects.as_ref(), &one, |n| n / 2, 0x20).await;
    let err = open_error(&objects);
    assert!(err.contains("segment 1 is corrupt"), "{err}");

    objects.delete(&one).await.unwrap();
    let err = open_error(&objects);
    assert!(err.contains("segment 1 is missing"), "{err}");

    objects.put(&one, original.clone().into()).await.unwrap();
    let foreign = Path::from("segments/notes.txt");
    objects
        .put(&foreign, b"hello".to_vec().into())
        .await
        .unwrap();
    let err = open_error(&objects);
    assert!(err.contains("unexpected object"), "{err}");
    objects.delete(&foreign).await.unwrap();

    // Put back as it was, the log opens and reads whole.
    let log = log_over(objects.clone(), "").unwrap();
    assert_eq!(ids(&log).await, ids_written);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_read_through_a_cache_too_small_for_a_segment_come_from_the_objects() {
    let objects = Arc::new(InMemory::new());
    let ids_written = three_segments(&objects).await;
    let store = SegmentStore::builder()
        .cache_bytes(0)
        .open(objects.clone(), "")
        .unwrap();
    let log = Ledger::open(store, LedgerConfig::new()).unwrap();
    assert_eq!(ids(&log).await, ids_written);
    log.verify(&TenantFilter::All, 0..u64::MAX, None)
        .await
        .unwrap();

    // A segment changed after open is found when it is read.
    let two = Path::from("segments/00000000000000000002.seg");
    flip(objects.as_ref(), &two, |n| n - 40, 1).await;
    let err = log
        .read_all(&TenantFilter::All, 0, Direction::Forward, 10)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("segment 2 is corrupt"), "{err}");
}

#[test]
fn no_segment_is_ever_overwritten() {
    // A writer that opened before another committed tries the same
    // sequence number: its commit fails and the segment keeps the first
    // writer's bytes (a put that could overwrite would replace them).
    let rt = tokio::runtime::Runtime::new().unwrap();
    let objects = Arc::new(InMemory::new());
    let first = SegmentStore::open(objects.clone(), "").unwrap();
    let stale = SegmentStore::open(objects.clone(), "").unwrap();
    let batch = |value: &[u8]| {
        let mut b = WriteBatch::new();
        b.put(Space::Tenants, b"acme".to_vec(), value.to_vec());
        b
    };
    first.commit(batch(b"one"), true).unwrap();
    let zero = Path::from("segments/00000000000000000000.seg");
    let written = rt.block_on(async { objects.get(&zero).await.unwrap().bytes().await.unwrap() });
    assert!(stale.commit(batch(b"two"), true).is_err());
    let after = rt.block_on(async { objects.get(&zero).await.unwrap().bytes().await.unwrap() });
    assert_eq!(after, written);
    assert_eq!(
        stale.get(Space::Tenants, b"acme").unwrap(),
        None,
        "nothing of it applied"
    );
    // The store itself refuses to create a name that exists.
    let again = rt.block_on(objects.put_opts(
        &zero,
        b"x".to_vec().into(),
        PutOptions::from(PutMode::Create),
    ));
    assert!(matches!(
        again,
        Err(object_store::Error::AlreadyExists { .. })
    ));
}

/// The bytes of a segment of a known batch. Frozen: if this test fails,
/// the segment format changed, which needs a new format version (and a
/// reader of the old one), not a new vector.
#[test]
fn the_segment_format_is_frozen() {
    let dir = tempfile::tempdir().unwrap();
    let store = SegmentStore::open_dir(dir.path()).unwrap();
    store.commit(frozen_batch(), true).unwrap();
    let written = std::fs::read(dir.path().join("segments/00000000000000000000.seg")).unwrap();
    let frozen = include_bytes!("testdata/segment-v1.bin");
    assert_eq!(written, frozen.as_slice());
}

/// The batch of the frozen vectors.
fn frozen_batch() -> WriteBatch {
    let mut batch = WriteBatch::new();
    batch.put(
        Space::Log,
        0u64.to_be_bytes().to_vec(),
        b"a record frame".to_vec(),
    );
    batch.put(
        Space::EventIds,
        b"acme\0\x01\x02".to_vec(),
        0u64.to_be_bytes().to_vec(),
    );
    batch.put(
        Space::Streams,
        b"acme\0message-1\0\0\0\0\0\0\0\0\0".to_vec(),
        0u64.to_be_bytes().to_vec(),
    );
    batch.put(Space::Tenants, b"acme".to_vec(), b"head".to_vec());
    batch
}

/// The bytes of the snapshot of that segment, frozen the same way.
#[test]
fn the_snapshot_format_is_frozen() {
    let dir = tempfile::tempdir().unwrap();
    let local = object_store::local::LocalFileSystem::new_with_prefix(dir.path()).unwrap();
    let store = SegmentStore::builder()
        .snapshot_every(1)
        .open(Arc::new(local), "")
        .unwrap();
    store.commit(frozen_batch(), true).unwrap();
    let path = dir.path().join("snapshots/00000000000000000001.snap");
    for _ in 0..500 {
        if path.exists() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let written = std::fs::read(&path).unwrap();
    let frozen = include_bytes!("testdata/snapshot-v1.bin");
    assert_eq!(written, frozen.as_slice());
}

/// Every entry of every space of `store`.
fn contents(store: &SegmentStore) -> Vec<(Space, Vec<u8>, Vec<u8>)> {
    let mut out = Vec::new();
    for space in Space::ALL {
        store
            .scan(space, &[], None, false, &mut |k, v| {
                out.push((space, k.to_vec(), v.to_vec()));
                mailledger_core::Visit::Continue
            })
            .unwrap();
    }
    out
}

/// Waits until `objects` holds `path` (snapshots are written in the background).
async fn wait_for(objects: &Failing, path: &str) {
    for _ in 0..500 {
        if objects.inner.head(&Path::from(path)).await.is_ok() {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("{path} was never written");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reopen_loads_the_newest_snapshot_and_reads_only_the_segments_after_it() {
    let objects = Arc::new(Failing::new());
    let builder = SegmentStore::builder().snapshot_every(2).cache_bytes(0);
    let written: Vec<NewEvent> = events(5);
    {
        let store = builder.clone().open(objects.clone(), "").unwrap();
        let log = Ledger::open(store, LedgerConfig::new()).unwrap();
        for e in &written {
            append(&log, std::slice::from_ref(e)).await.unwrap();
        }
        assert_eq!(log.store().segments(), 5);
        wait_for(&objects, "snapshots/00000000000000000002.snap").await;
        wait_for(&objects, "snapshots/00000000000000000004.snap").await;
    }
    // What the segments alone say, read from a copy without the snapshots.
    let segments_only = Arc::new(InMemory::new());
    for seq in 0..5 {
        let path = Path::from(format!("segments/{seq:020}.seg"));
        let bytes = objects
            .inner
            .get(&path)
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        segments_only.put(&path, bytes.into()).await.unwrap();
    }
    let expected = contents(&SegmentStore::open(segments_only, "").unwrap());

    objects.segment_gets.store(0, Ordering::SeqCst);
    let store = builder.clone().open(objects.clone(), "").unwrap();
    assert_eq!(
        objects.segment_gets.load(Ordering::SeqCst),
        1,
        "only segment 4 is read"
    );
    assert_eq!(contents(&store), expected);
    let log = Ledger::open(store, LedgerConfig::new()).unwrap();
    assert_eq!(
        ids(&log).await,
        written.iter().map(|e| e.id).collect::<Vec<_>>()
    );
    log.verify(&TenantFilter::All, 0..u64::MAX, None)
        .await
        .unwrap();
    // Duplicates are known from the snapshot, and appends continue.
    let again = log
        .append_to_stream(
            "acme",
            "message-1",
            ExpectedVersion::Any,
            written[..1].to_vec(),
        )
        .await
        .unwrap();
    assert_eq!(again.duplicates, 1);
    append(&log, &events(1)).await.unwrap();
    wait_for(&objects, "snapshots/00000000000000000006.snap").await;
    drop(log);

    // A snapshot that does not decode is passed over for an older one.
    let newest = Path::from("snapshots/00000000000000000006.snap");
    flip(&objects.inner, &newest, |n| n / 2, 1).await;
    objects.segment_gets.store(0, Ordering::SeqCst);
    let store = SegmentStore::builder()
        .snapshot_every(0)
        .cache_bytes(0)
        .open(objects.clone(), "")
        .unwrap();
    assert_eq!(
        objects.segment_gets.load(Ordering::SeqCst),
        2,
        "segments 4 and 5, after snapshot 4"
    );
    assert_eq!(store.segments(), 6);
    let log = Ledger::open(store, LedgerConfig::new()).unwrap();
    assert_eq!(ids(&log).await.len(), 6);
    log.verify(&TenantFilter::All, 0..u64::MAX, None)
        .await
        .unwrap();
}
