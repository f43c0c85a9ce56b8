//! The store: [`SegmentStore`] and its settings. It opens a log (lists the
//! segments, loads the newest snapshot that decodes, reads the segments
//! after it), commits each batch as a new segment by conditional create,
//! writes no more until a reopen once fenced by another writer or poisoned
//! by a failed `PUT`, and answers the log's reads from the index and the
//! cache.

use std::sync::{Arc, Mutex, PoisonError, RwLock};

use bytes::Bytes;
use futures_util::{StreamExt, TryStreamExt};
use mailledger_core::{KeyRange, Space, Store, StoreError, Visit, WriteBatch, scan_in_chunks};
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};

use crate::cache::Cache;
use crate::frame::{object_name, parse_name};
use crate::index::Index;
use crate::s3::parse_s3_url;
use crate::segment::{Loc, SUFFIX, check_segment, decode, encode, slice};
use crate::snapshot::{SNAP_SUFFIX, decode_snapshot, encode_snapshot};
use crate::{BACKEND, SegmentError};

const SEGMENTS: &str = "segments";
const SNAPSHOTS: &str = "snapshots";
/// Segments fetched at once while opening.
const OPEN_FETCHES: usize = 8;

/// A scanned entry: an index value, or where a record's bytes are.
enum Found {
    Value(Vec<u8>),
    At(Loc),
}

#[derive(Debug)]
struct Writer {
    next_seq: u64,
    /// The segments the newest snapshot covers (loaded or written).
    last_snapshot: u64,
    /// Set once a commit failed or another writer won: nothing more is
    /// written until a reopen.
    stopped: Option<Stopped>,
}

/// Why a store writes no more.
#[derive(Debug, Clone, Copy)]
enum Stopped {
    /// Another writer created segment `seq` first.
    Fenced { seq: u64 },
    /// A put failed: whether its segment exists is unknown until a reopen.
    Failed,
}

impl Stopped {
    fn error(self) -> SegmentError {
        match self {
            Self::Fenced { seq } => SegmentError::Fenced { seq },
            Self::Failed => SegmentError::Poisoned,
        }
    }
}

/// Settings of a [`SegmentStore`]; [`SegmentStore::builder`] makes one.
#[derive(Debug, Clone)]
pub struct SegmentStoreBuilder {
    cache_bytes: usize,
    snapshot_every: u64,
}

impl Default for SegmentStoreBuilder {
    fn default() -> Self {
        Self {
            cache_bytes: 64 << 20,
            snapshot_every: 1024,
        }
    }
}

impl SegmentStoreBuilder {
    /// The most bytes of whole segments kept in memory for reads.
    ///
    /// Default: 64 MiB.
    #[must_use]
    pub fn cache_bytes(mut self, bytes: usize) -> Self {
        self.cache_bytes = bytes;
        self
    }

    /// How many segments at least between two snapshots of the index (0:
    /// none); past eight times this, the interval is an eighth of the log.
    /// Writing one holds commits up while the index is encoded in memory.
    ///
    /// Default: 1024 (with groups of a few hundred records, the first
    /// snapshot after a few hundred thousand records).
    #[must_use]
    pub fn snapshot_every(mut self, segments: u64) -> Self {
        self.snapshot_every = segments;
        self
    }

    /// Opens the log kept as segment files under the directory `dir`
    /// (created when missing), each written durably (`fsync` of the file and
    /// its directory).
    ///
    /// # Errors
    /// The directory cannot be made or read; as [`SegmentStoreBuilder::open`].
    pub fn open_dir(self, dir: &std::path::Path) -> Result<SegmentStore, StoreError> {
        std::fs::create_dir_all(dir).map_err(|e| {
            StoreError::new(BACKEND, format!("cannot create {}: {e}", dir.display()))
        })?;
        let local = LocalFileSystem::new_with_prefix(dir)
            .map_err(SegmentError::from)?
            .with_fsync(true);
        self.open(Arc::new(local), "")
    }

    /// Opens the log at `url`, `s3://BUCKET/PREFIX`, on an S3-compatible
    /// store configured by the standard `AWS_*` environment variables
    /// (`AWS_ENDPOINT` for a store other than Amazon's, `AWS_REGION`,
    /// `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_ALLOW_HTTP=true`
    /// for a plain-HTTP endpoint). The store must support conditional
    /// create (`If-None-Match: *`), as Amazon S3, Ceph, Garage and MinIO do.
    ///
    /// # Errors
    /// A URL that is not `s3://BUCKET[/PREFIX]`, settings the client
    /// refuses; as [`SegmentStoreBuilder::open`].
    pub fn open_s3(self, url: &str) -> Result<SegmentStore, StoreError> {
        let (bucket, prefix) = parse_s3_url(url)?;
        let s3 = object_store::aws::AmazonS3Builder::from_env()
            .with_bucket_name(bucket)
            .build()
            .map_err(SegmentError::from)?;
        self.open(Arc::new(s3), prefix)
    }

    /// Opens the log kept under `prefix` of `objects`: lists every segment
    /// and checks that none is missing, loads the newest snapshot that
    /// decodes, then reads and checks every segment after it (see the
    /// module docs). An empty prefix is an empty log.
    ///
    /// # Errors
    /// A segment that is missing, corrupt or unexpected; a failure of the
    /// object store.
    pub fn open(
        self,
        objects: Arc<dyn ObjectStore>,
        prefix: &str,
    ) -> Result<SegmentStore, StoreError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("object-store")
            .enable_all()
            .build()
            .map_err(|e| StoreError::new(BACKEND, format!("cannot start its runtime: {e}")))?;
        let store = SegmentStore {
            runtime: Some(runtime),
            objects,
            dir: Path::from(prefix).join(SEGMENTS),
            snapshots: Path::from(prefix).join(SNAPSHOTS),
            snapshot_every: self.snapshot_every,
            index: RwLock::new(Index::default()),
            writer: Mutex::new(Writer {
                next_seq: 0,
                last_snapshot: 0,
                stopped: None,
            }),
            cache: Mutex::new(Cache::new(self.cache_bytes)),
        };
        let (next, snapshot) = store.load()?;
        let mut writer = store.writer();
        writer.next_seq = next;
        writer.last_snapshot = snapshot;
        drop(writer);
        Ok(store)
    }
}

/// The log kept as segment objects in an [`ObjectStore`].
pub struct SegmentStore {
    /// Runs the object store's futures; taken on drop.
    runtime: Option<tokio::runtime::Runtime>,
    objects: Arc<dyn ObjectStore>,
    dir: Path,
    snapshots: Path,
    snapshot_every: u64,
    index: RwLock<Index>,
    writer: Mutex<Writer>,
    cache: Mutex<Cache>,
}

impl std::fmt::Debug for SegmentStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SegmentStore")
            .field("objects", &self.objects.to_string())
            .field("dir", &self.dir.as_ref())
            .finish_non_exhaustive()
    }
}

impl Drop for SegmentStore {
    fn drop(&mut self) {
        // Dropping a runtime blocks, which panics inside an async context.
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

impl SegmentStore {
    /// Settings, to open a store with.
    #[must_use]
    pub fn builder() -> SegmentStoreBuilder {
        SegmentStoreBuilder::default()
    }

    /// Opens the log kept under `prefix` of `objects` with the default
    /// settings.
    ///
    /// # Errors
    /// As [`SegmentStoreBuilder::open`].
    pub fn open(objects: Arc<dyn ObjectStore>, prefix: &str) -> Result<Self, StoreError> {
        Self::builder().open(objects, prefix)
    }

    /// Opens the log kept as segment files under the directory `dir` with
    /// the default settings ([`SegmentStoreBuilder::open_dir`]).
    ///
    /// # Errors
    /// As [`SegmentStoreBuilder::open_dir`].
    pub fn open_dir(dir: &std::path::Path) -> Result<Self, StoreError> {
        Self::builder().open_dir(dir)
    }

    /// Opens the log at `url`, `s3://BUCKET/PREFIX`, with the default
    /// settings ([`SegmentStoreBuilder::open_s3`]).
    ///
    /// # Errors
    /// As [`SegmentStoreBuilder::open_s3`].
    pub fn open_s3(url: &str) -> Result<Self, StoreError> {
        Self::builder().open_s3(url)
    }

    /// How many segments the log has (the next one's sequence number).
    #[must_use]
    pub fn segments(&self) -> u64 {
        self.writer().next_seq
    }

    fn writer(&self) -> std::sync::MutexGuard<'_, Writer> {
        self.writer.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, Cache> {
        self.cache.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs `fut` on the backend's runtime and waits for it, from any
    /// thread (the log calls the store from threads that may block).
    fn run<T: Send + 'static>(
        &self,
        fut: impl Future<Output = Result<T, SegmentError>> + Send + 'static,
    ) -> Result<T, SegmentError> {
        let rt = self.runtime.as_ref().ok_or(SegmentError::Runtime)?;
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        rt.spawn(async move {
            let _ = tx.send(fut.await);
        });
        rx.recv().map_err(|_| SegmentError::Runtime)?
    }

    fn path(&self, seq: u64) -> Path {
        self.dir.clone().join(object_name(seq, SUFFIX))
    }

    fn snapshot_path(&self, end: u64) -> Path {
        self.snapshots.clone().join(object_name(end, SNAP_SUFFIX))
    }

    /// Reads the newest snapshot and every segment after it into the
    /// index; returns the next sequence number and the snapshot's end.
    fn load(&self) -> Result<(u64, u64), SegmentError> {
        let objects = Arc::clone(&self.objects);
        let dir = self.dir.clone();
        let mut seqs = self.run(async move {
            let metas: Vec<_> = objects.list(Some(&dir)).try_collect().await?;
            let mut seqs = Vec::with_capacity(metas.len());
            for meta in metas {
                let name = meta.location.filename().unwrap_or_default();
                let seq = parse_name(name, SUFFIX).ok_or_else(|| SegmentError::Unexpected {
                    name: name.to_owned(),
                })?;
                // The name must be directly under the segments prefix.
                if meta.location != dir.clone().join(object_name(seq, SUFFIX)) {
                    return Err(SegmentError::Unexpected {
                        name: meta.location.to_string(),
                    });
                }
                seqs.push(seq);
            }
            Ok(seqs)
        })?;
        seqs.sort_unstable();
        for (expected, &seq) in (0u64..).zip(&seqs) {
            if seq != expected {
                return Err(SegmentError::Missing { seq: expected });
            }
        }
        let count = seqs.len() as u64;
        let start = self.load_snapshot(count)?;
        let objects = Arc::clone(&self.objects);
        let paths: Vec<(u64, Path)> = (start..count).map(|s| (s, self.path(s))).collect();
        let (tx, rx) = std::sync::mpsc::sync_channel(OPEN_FETCHES);
        let rt = self.runtime.as_ref().ok_or(SegmentError::Runtime)?;
        rt.spawn(async move {
            let mut fetches = futures_util::stream::iter(paths)
                .map(|(seq, path)| {
                    let objects = Arc::clone(&objects);
                    async move {
                        let bytes = objects.get(&path).await?.bytes().await?;
                        Ok::<_, SegmentError>((seq, bytes))
                    }
                })
                .buffered(OPEN_FETCHES);
            while let Some(fetched) = fetches.next().await {
                let failed = fetched.is_err();
                if tx.send(fetched).is_err() || failed {
                    return;
                }
            }
        });
        let mut index = self.index.write().unwrap_or_else(PoisonError::into_inner);
        let mut cache = self.cache();
        for _ in start..count {
            let (seq, bytes) = rx.recv().map_err(|_| SegmentError::Runtime)??;
            for put in decode(seq, &bytes)? {
                let (start, end) = (put.offset as usize, put.offset as usize + put.len as usize);
                let loc = Loc {
                    seq,
                    offset: put.offset,
                    len: put.len,
                };
                index.apply(put.space, put.key, loc, || bytes[start..end].to_vec());
            }
            cache.insert(seq, bytes);
        }
        Ok((count, start))
    }

    /// Loads the newest snapshot of at most `count` segments that decodes
    /// into the index; returns how many segments it covers (0 for none).
    fn load_snapshot(&self, count: u64) -> Result<u64, SegmentError> {
        let objects = Arc::clone(&self.objects);
        let dir = self.snapshots.clone();
        let mut ends = self.run(async move {
            let metas: Vec<_> = objects.list(Some(&dir)).try_collect().await?;
            Ok(metas
                .iter()
                .filter_map(|m| {
                    m.location
                        .filename()
                        .and_then(|n| parse_name(n, SNAP_SUFFIX))
                })
                .collect::<Vec<u64>>())
        })?;
        ends.sort_unstable_by(|a, b| b.cmp(a));
        for end in ends.into_iter().filter(|&e| e > 0 && e <= count) {
            let objects = Arc::clone(&self.objects);
            let path = self.snapshot_path(end);
            let bytes = self.run(async move { Ok(objects.get(&path).await?.bytes().await?) });
            match bytes.map(|b| decode_snapshot(end, &b)) {
                Ok(Ok(index)) => {
                    *self.index.write().unwrap_or_else(PoisonError::into_inner) = index;
                    return Ok(end);
                }
                Ok(Err(reason)) => {
                    tracing::warn!(end, reason, "passing over a snapshot of the log's index");
                }
                Err(e) => {
                    tracing::warn!(end, error = %e, "passing over a snapshot of the log's index");
                }
            }
        }
        Ok(0)
    }

    /// Writes the snapshot of the first `end` segments in the background;
    /// called with the writer locked, so the index is theirs exactly.
    fn snapshot(&self, end: u64) {
        let bytes = {
            let index = self.index.read().unwrap_or_else(PoisonError::into_inner);
            encode_snapshot(end, &index)
        };
        let Some(rt) = self.runtime.as_ref() else {
            return;
        };
        let objects = Arc::clone(&self.objects);
        let path = self.snapshot_path(end);
        rt.spawn(async move {
            let opts = PutOptions::from(PutMode::Create);
            match objects.put_opts(&path, bytes.into(), opts).await {
                Ok(_) | Err(object_store::Error::AlreadyExists { .. }) => {}
                Err(e) => {
                    tracing::warn!(end, error = %e, "a snapshot of the log's index was not written")
                }
            }
        });
    }

    fn segment(&self, seq: u64) -> Result<Bytes, SegmentError> {
        if let Some(s) = self.cache().get(seq) {
            return Ok(s);
        }
        let objects = Arc::clone(&self.objects);
        let path = self.path(seq);
        let bytes = self.run(async move { Ok(objects.get(&path).await?.bytes().await?) })?;
        // Checked again: the object could have been replaced since open.
        check_segment(seq, &bytes)?;
        self.cache().insert(seq, bytes.clone());
        Ok(bytes)
    }

    fn value(&self, loc: Loc) -> Result<Vec<u8>, SegmentError> {
        Ok(slice(&self.segment(loc.seq)?, loc)?.to_vec())
    }

    fn commit_segment(&self, batch: WriteBatch) -> Result<(), SegmentError> {
        let mut writer = self.writer();
        if let Some(stopped) = writer.stopped {
            return Err(stopped.error());
        }
        if batch.is_empty() {
            return Ok(());
        }
        let seq = writer.next_seq;
        let (bytes, locs) = encode(seq, &batch.puts)?;
        let bytes = Bytes::from(bytes);
        let objects = Arc::clone(&self.objects);
        let path = self.path(seq);
        let payload = PutPayload::from_bytes(bytes.clone());
        let put = self.run(async move {
            let opts = PutOptions::from(PutMode::Create);
            objects.put_opts(&path, payload, opts).await?;
            Ok(())
        });
        if let Err(e) = put {
            let (stopped, e) = match e {
                SegmentError::Objects(object_store::Error::AlreadyExists { .. }) => {
                    let fenced = Stopped::Fenced { seq };
                    (fenced, fenced.error())
                }
                other => (Stopped::Failed, other),
            };
            writer.stopped = Some(stopped);
            return Err(e);
        }
        {
            let mut index = self.index.write().unwrap_or_else(PoisonError::into_inner);
            for ((space, k, v), loc) in batch.puts.into_iter().zip(locs) {
                index.apply(space, k, loc, || v);
            }
        }
        self.cache().insert(seq, bytes);
        writer.next_seq = seq + 1;
        // The interval grows with the log (an eighth of it at least), so
        // the snapshots written add up to a few times the final index, and
        // an open reads at most about an eighth of the segments.
        let since = writer.next_seq - writer.last_snapshot;
        if self.snapshot_every > 0 && since >= self.snapshot_every.max(writer.last_snapshot / 8) {
            writer.last_snapshot = writer.next_seq;
            self.snapshot(writer.next_seq);
        }
        Ok(())
    }
}

impl Store for SegmentStore {
    fn backend(&self) -> &'static str {
        BACKEND
    }

    fn commit(&self, batch: WriteBatch, _sync: bool) -> Result<(), StoreError> {
        Ok(self.commit_segment(batch)?)
    }

    fn get(&self, space: Space, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let index = self.index.read().unwrap_or_else(PoisonError::into_inner);
        if space != Space::Log {
            return Ok(index.space(space).get(key).cloned());
        }
        let Some(&loc) = index.log.get(key) else {
            return Ok(None);
        };
        drop(index);
        Ok(Some(self.value(loc)?))
    }

    fn scan(
        &self,
        space: Space,
        start: &[u8],
        end: Option<&[u8]>,
        reverse: bool,
        visit: &mut dyn FnMut(&[u8], &[u8]) -> Visit,
    ) -> Result<(), StoreError> {
        // Segment reads, like `visit`, run without the index locked.
        let chunk = |range: KeyRange, n: usize| -> Vec<(Vec<u8>, Found)> {
            let index = self.index.read().unwrap_or_else(PoisonError::into_inner);
            if space == Space::Log {
                let entries = index.log.range(range);
                let take = |(k, l): (&Vec<u8>, &Loc)| (k.clone(), Found::At(*l));
                if reverse {
                    entries.rev().take(n).map(take).collect()
                } else {
                    entries.take(n).map(take).collect()
                }
            } else {
                let entries = index.space(space).range(range);
                let take = |(k, v): (&Vec<u8>, &Vec<u8>)| (k.clone(), Found::Value(v.clone()));
                if reverse {
                    entries.rev().take(n).map(take).collect()
                } else {
                    entries.take(n).map(take).collect()
                }
            }
        };
        // Consecutive records share a segment: it is looked up once.
        let mut current: Option<(u64, Bytes)> = None;
        scan_in_chunks(start, end, reverse, chunk, |k, found| match found {
            Found::Value(v) => Ok(visit(k, &v)),
            Found::At(loc) => {
                let segment = match current.take() {
                    Some((seq, segment)) if seq == loc.seq => segment,
                    _ => self.segment(loc.seq)?,
                };
                let seen = visit(k, slice(&segment, loc)?);
                current = Some((loc.seq, segment));
                Ok(seen)
            }
        })
    }

    fn sync(&self) -> Result<(), StoreError> {
        // Every commit is durable when it returns.
        match self.writer().stopped {
            Some(stopped) => Err(stopped.error().into()),
            None => Ok(()),
        }
    }
}
