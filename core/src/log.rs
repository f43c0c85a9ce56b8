//! The [`EventLog`] contract that every backend fulfils.

use std::collections::{BTreeMap, VecDeque};
use std::ops::Range;
use std::sync::Arc;

use async_trait::async_trait;
use tokio::sync::watch;
use uuid::Uuid;

use crate::error::{Error, Result};
use crate::record::{
    AppendOutcome, Direction, ExpectedVersion, NewEvent, Record, StreamAppend, TenantFilter,
};
use crate::residency::Jurisdiction;

/// The largest batch one read returns; larger `max` values are clamped.
pub const MAX_READ_BATCH: usize = 10_000;

/// A batch of records from a read of the whole log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadBatch {
    /// The records, in the direction of the read.
    pub records: Vec<Record>,
    /// Where to continue in the same direction: forward, the position after
    /// the last one examined (the head once caught up); backward, the
    /// position before it, or `None` once position 0 was examined.
    pub next: Option<u64>,
}

/// Records as they are stored: each one's frame ([`crate::codec`]), in
/// position order, for readers that check the bytes that were written
/// ([`EventLog::read_frames`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FrameBatch {
    bytes: Vec<u8>,
    ends: Vec<usize>,
    positions: Vec<u64>,
    /// Where to continue, as in [`ReadBatch::next`].
    pub next: Option<u64>,
}

impl FrameBatch {
    /// An empty batch with room for `frames` frames of `bytes` bytes in all.
    #[must_use]
    pub fn with_capacity(frames: usize, bytes: usize) -> Self {
        Self {
            bytes: Vec::with_capacity(bytes),
            ends: Vec::with_capacity(frames),
            positions: Vec::with_capacity(frames),
            next: None,
        }
    }

    /// Adds the frame of the record at `position`.
    pub fn push(&mut self, position: u64, frame: &[u8]) {
        self.bytes.extend_from_slice(frame);
        self.ends.push(self.bytes.len());
        self.positions.push(position);
    }

    /// How many frames it holds.
    #[must_use]
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// Whether it holds none.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// The `i`th frame, if there is one.
    #[must_use]
    pub fn frame(&self, i: usize) -> Option<&[u8]> {
        let end = *self.ends.get(i)?;
        let start = i.checked_sub(1).map_or(0, |j| self.ends[j]);
        self.bytes.get(start..end)
    }

    /// The position of the `i`th frame's record, if there is one.
    #[must_use]
    pub fn position(&self, i: usize) -> Option<u64> {
        self.positions.get(i).copied()
    }

    /// Keeps the frames of records before position `end`.
    pub fn truncate_at(&mut self, end: u64) {
        let keep = self.positions.partition_point(|p| *p < end);
        self.positions.truncate(keep);
        self.ends.truncate(keep);
        self.bytes.truncate(self.ends.last().copied().unwrap_or(0));
    }
}

/// Progress of a verification, reported as it goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VerifyProgress {
    /// Records checked so far.
    pub checked: u64,
    /// Records the verification will check in all.
    pub total: u64,
}

/// Called with progress during [`EventLog::verify`].
pub type ProgressFn = Arc<dyn Fn(VerifyProgress) + Send + Sync>;

/// What a verification checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    /// The positions checked.
    pub range: Range<u64>,
    /// How many records were checked (those of the filtered tenants).
    pub records: u64,
    /// How many tenants' chains were followed.
    pub tenants: usize,
    /// Whether each tenant's chain was followed from its first record (the
    /// range started at 0) rather than from its first record in the range.
    pub anchored: bool,
    /// For each tenant checked, how many of its records were written by a
    /// node of each jurisdiction ([`Record::jurisdiction`]; `None` counts
    /// records from before records carried it). Each count covers verified
    /// records only, so it is proof of where they were written as far as
    /// the chain is.
    pub written_in: BTreeMap<String, BTreeMap<Option<Jurisdiction>, u64>>,
}

/// Where a tenant's chain stood after its last record: what a signed
/// checkpoint commits to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChainHead {
    /// The position of the tenant's last record.
    pub last_position: u64,
    /// That record's hash ([`Record::hash`]).
    pub hash: crate::record::Hash,
    /// How many records the tenant has, up to and including that one.
    pub count: u64,
}

/// An append-only, hash-chained log of records, partitioned by tenant and
/// stream, with one global order.
///
/// Usable as `Arc<dyn EventLog>`. Reads only ever return acknowledged
/// records: a record is visible once the append that wrote it has returned
/// (or is about to).
#[async_trait]
pub trait EventLog: Send + Sync + 'static {
    /// A short name of the storage backend, such as `fjall`.
    fn backend(&self) -> &'static str;

    /// Appends events to one or more streams of `tenant`, atomically: either
    /// every event is written, or on error none is.
    ///
    /// For each stream, events that are new get consecutive stream versions
    /// and global positions. An event whose id the tenant's log already holds
    /// (from any earlier append, also before a restart) is not written again:
    /// its outcome reports the original position. When every event of a
    /// stream is such a duplicate the stream's expected version is not
    /// checked, so a retried append succeeds with the original result.
    /// Otherwise the stream's last version must satisfy its
    /// [`ExpectedVersion`], or the append fails with
    /// [`Error::WrongExpectedVersion`] carrying both versions.
    ///
    /// Returns once the records are durable as the log's durability setting
    /// promises (with `sync`, on stable storage). Concurrent appends share a
    /// storage sync (group commit).
    ///
    /// # Errors
    /// [`Error::WrongExpectedVersion`], [`Error::InvalidInput`] for bad names
    /// or oversized events, [`Error::Storage`] or [`Error::Poisoned`] when
    /// the engine fails; in each case nothing was written.
    async fn append(&self, tenant: &str, streams: Vec<StreamAppend>) -> Result<Vec<AppendOutcome>>;

    /// Appends `events` to one stream; see [`EventLog::append`].
    ///
    /// # Errors
    /// As [`EventLog::append`].
    async fn append_to_stream(
        &self,
        tenant: &str,
        stream: &str,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<AppendOutcome> {
        let mut out = self
            .append(tenant, vec![StreamAppend::new(stream, expected, events)])
            .await?;
        out.pop()
            .ok_or_else(|| Error::InvalidInput("append returned no outcome".into()))
    }

    /// Up to `max` records of one stream, from version `from_version` on, in
    /// version order. An unknown stream reads as empty.
    ///
    /// # Errors
    /// [`Error::Corrupt`] naming the position of a record that fails to
    /// decode, or a storage error.
    async fn read_stream(
        &self,
        tenant: &str,
        stream: &str,
        from_version: u64,
        max: usize,
    ) -> Result<Vec<Record>>;

    /// The records at `positions` (at most [`MAX_READ_BATCH`]), in the
    /// order given, leaving out any that are not `tenant`'s or not
    /// yet acknowledged: a reader that already knows where a subject's
    /// records are (the delivery log keeps each message's positions) reads
    /// them straight, without the stream index.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for more than [`MAX_READ_BATCH`] positions;
    /// [`Error::Corrupt`] naming a position that fails to decode; a storage
    /// error.
    async fn read_positions(&self, tenant: &str, positions: Vec<u64>) -> Result<Vec<Record>>;

    /// The position of each stream's first event (version 0), `None` for a
    /// stream with no acknowledged event: `(tenant, stream)` pairs resolved
    /// in one call, for readers that resolve many at once (projections find
    /// each message's first event so, to key its state by that position).
    ///
    /// # Errors
    /// A storage error.
    async fn first_positions(&self, streams: Vec<(String, String)>) -> Result<Vec<Option<u64>>>;

    /// The version of a stream's last event, `None` for a stream with none.
    ///
    /// # Errors
    /// A storage error.
    async fn stream_version(&self, tenant: &str, stream: &str) -> Result<Option<u64>>;

    /// The record of the event with this time and id
    /// ([`NewEvent::time`](crate::NewEvent::time)) in `tenant`'s log, if
    /// any. Another tenant's event reads as missing.
    ///
    /// # Errors
    /// A storage or corruption error.
    async fn find_event(&self, tenant: &str, time: i64, id: Uuid) -> Result<Option<Record>>;

    /// Up to `max` records of the whole log that pass `filter`, from
    /// position `from` (inclusive) in `direction`. Backward reads from
    /// beyond the head start at the last record.
    ///
    /// # Errors
    /// [`Error::Corrupt`] naming the position of a record that fails to
    /// decode, or a storage error.
    async fn read_all(
        &self,
        filter: &TenantFilter,
        from: u64,
        direction: Direction,
        max: usize,
    ) -> Result<ReadBatch>;

    /// [`EventLog::read_all`] forward, each record as its stored frame: a
    /// reader that verifies the log as it goes (the audit's replay) hashes
    /// the bytes that were written ([`crate::codec::decode_checked`]),
    /// where and on as many threads as it likes, instead of encoding each
    /// record again.
    ///
    /// The default frames the records [`EventLog::read_all`] gives, each
    /// with the hash it carries, so a record that is not what was hashed
    /// still fails the check.
    ///
    /// # Errors
    /// As [`EventLog::read_all`].
    async fn read_frames(
        &self,
        filter: &TenantFilter,
        from: u64,
        max: usize,
    ) -> Result<FrameBatch> {
        let batch = self.read_all(filter, from, Direction::Forward, max).await?;
        let mut frames = FrameBatch {
            next: batch.next,
            ..FrameBatch::default()
        };
        let mut frame = Vec::new();
        for r in &batch.records {
            crate::codec::recomputed_hash_in(r, &mut frame)
                .map_err(|e| Error::corrupt(r.position, e.to_string()))?;
            frame.extend_from_slice(&r.hash);
            frames.push(r.position, &frame);
        }
        Ok(frames)
    }

    /// The position the next record will get: the number of records.
    fn head(&self) -> u64;

    /// Every tenant's chain head, each naming an acknowledged record.
    ///
    /// # Errors
    /// A storage error, or [`Error::Corrupt`] when a stored head does not
    /// decode.
    async fn chain_heads(&self) -> Result<BTreeMap<String, ChainHead>>;

    /// Whether appends can still succeed: false once the log is closed, or
    /// once a failed write (a storage error, or another writer that
    /// extended the same log first) stopped it until it is reopened.
    fn accepts_appends(&self) -> bool {
        true
    }

    /// A watch on [`EventLog::head`], updated after each acknowledged append.
    fn watch_head(&self) -> watch::Receiver<u64>;

    /// Every record from `from` on that passes `filter`, then each new one
    /// as it is appended: catch-up, then live, with no gap and no duplicate
    /// at the switch.
    fn subscribe(&self, filter: TenantFilter, from: u64) -> Subscription;

    /// Checks every record in `range` (clamped to the head) that passes
    /// `filter`: its frame decodes, its hash matches its bytes, its position
    /// matches its key, its `prev_hash` is the hash of the tenant's previous
    /// record, and the indexes point at it. When the range reaches the head,
    /// each tenant's stored chain head must be its last record.
    ///
    /// # Errors
    /// [`Error::Corrupt`] naming the first bad position.
    async fn verify(
        &self,
        filter: &TenantFilter,
        range: Range<u64>,
        progress: Option<ProgressFn>,
    ) -> Result<VerifyReport>;

    /// Makes every acknowledged record durable (a no-op with `sync`
    /// durability, the way to flush with `buffered`).
    ///
    /// # Errors
    /// A storage error.
    async fn sync(&self) -> Result<()>;
}

/// What a [`Subscription`] reads through.
#[async_trait]
pub(crate) trait SubscriptionSource: Send + Sync + 'static {
    async fn read_forward(&self, filter: &TenantFilter, from: u64, max: usize)
    -> Result<ReadBatch>;
    fn is_closed(&self) -> bool;
}

/// A catch-up-then-live feed of records, from [`EventLog::subscribe`].
///
/// Each record is delivered once, in position order. Dropping the
/// subscription ends it.
pub struct Subscription {
    source: Arc<dyn SubscriptionSource>,
    filter: TenantFilter,
    next: u64,
    buffer: VecDeque<Record>,
    head: watch::Receiver<u64>,
}

impl std::fmt::Debug for Subscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscription")
            .field("filter", &self.filter)
            .field("next", &self.next)
            .finish_non_exhaustive()
    }
}

impl Subscription {
    pub(crate) fn new(
        source: Arc<dyn SubscriptionSource>,
        filter: TenantFilter,
        from: u64,
        head: watch::Receiver<u64>,
    ) -> Self {
        Self {
            source,
            filter,
            next: from,
            buffer: VecDeque::new(),
            head,
        }
    }

    /// The position the subscription will examine next.
    #[must_use]
    pub fn position(&self) -> u64 {
        self.buffer.front().map_or(self.next, |r| r.position)
    }

    /// The next record, waiting for one to be appended when caught up.
    ///
    /// # Errors
    /// [`Error::Closed`] once the log is closed, or a read error.
    pub async fn next(&mut self) -> Result<Record> {
        loop {
            if let Some(record) = self.buffer.pop_front() {
                return Ok(record);
            }
            let head = *self.head.borrow_and_update();
            if self.next < head {
                let batch = self
                    .source
                    .read_forward(&self.filter, self.next, 1024)
                    .await?;
                self.next = batch.next.unwrap_or(head);
                self.buffer.extend(batch.records);
                continue;
            }
            if self.source.is_closed() {
                return Err(Error::Closed);
            }
            if self.head.changed().await.is_err() {
                return Err(Error::Closed);
            }
        }
    }
}
