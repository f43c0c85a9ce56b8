//! [`Window`]: a read-only view of a log as it stood before a position,
//! whose whole-log reads show only records chosen by the caller.
//!
//! It lets code that reads an [`EventLog`] (a projection's catch-up, a
//! query) run unchanged over the past, or over one subject's records: the
//! audit's state-as-of-a-moment feeds the live projections' own code
//! through it, so the two cannot disagree.

use std::collections::BTreeMap;
use std::ops::Range;
use std::sync::Arc;

use async_trait::async_trait;
use tokio::sync::watch;
use uuid::Uuid;

use crate::error::{Error, Result};
use crate::log::{
    ChainHead, EventLog, ProgressFn, ReadBatch, Subscription, SubscriptionSource, VerifyReport,
};
use crate::record::{AppendOutcome, Direction, Record, StreamAppend, TenantFilter};

/// A log before position `cut`: stream reads and lookups go to the log
/// underneath and stop at the cut; whole-log reads return the chosen
/// records only. Appends are refused.
pub struct Window {
    inner: Arc<dyn EventLog>,
    cut: u64,
    records: Arc<Vec<Record>>,
    head: watch::Sender<u64>,
}

impl std::fmt::Debug for Window {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Window")
            .field("cut", &self.cut)
            .field("records", &self.records.len())
            .finish_non_exhaustive()
    }
}

impl Window {
    /// The log `inner` before `cut` (at most its head), whose whole-log
    /// reads return `records` (those before the cut, in position order,
    /// each once).
    #[must_use]
    pub fn new(inner: Arc<dyn EventLog>, cut: u64, records: Vec<Record>) -> Self {
        let cut = cut.min(inner.head());
        let mut by_position: BTreeMap<u64, Record> = BTreeMap::new();
        for r in records.into_iter().filter(|r| r.position < cut) {
            by_position.insert(r.position, r);
        }
        Self {
            inner,
            cut,
            records: Arc::new(by_position.into_values().collect()),
            head: watch::channel(cut).0,
        }
    }

    /// The position the window stops before.
    #[must_use]
    pub fn cut(&self) -> u64 {
        self.cut
    }
}

/// The chosen records from `from` in `direction`, as a whole-log read
/// returns them.
fn read(
    records: &[Record],
    cut: u64,
    filter: &TenantFilter,
    from: u64,
    direction: Direction,
    max: usize,
) -> ReadBatch {
    let max = max.clamp(1, crate::MAX_READ_BATCH);
    match direction {
        Direction::Forward => {
            let start = records.partition_point(|r| r.position < from);
            let picked: Vec<Record> = records[start..]
                .iter()
                .filter(|r| filter.admits(&r.tenant))
                .take(max)
                .cloned()
                .collect();
            let next = match picked.last() {
                Some(last) if picked.len() == max => last.position + 1,
                _ => cut.max(from),
            };
            ReadBatch {
                records: picked,
                next: Some(next),
            }
        }
        Direction::Backward => {
            let end = records.partition_point(|r| r.position <= from);
            let picked: Vec<Record> = records[..end]
                .iter()
                .rev()
                .filter(|r| filter.admits(&r.tenant))
                .take(max)
                .cloned()
                .collect();
            let next = match picked.last() {
                Some(last) if picked.len() == max => last.position.checked_sub(1),
                _ => None,
            };
            ReadBatch {
                records: picked,
                next,
            }
        }
    }
}

struct Source {
    records: Arc<Vec<Record>>,
    cut: u64,
}

#[async_trait]
impl SubscriptionSource for Source {
    async fn read_forward(
        &self,
        filter: &TenantFilter,
        from: u64,
        max: usize,
    ) -> Result<ReadBatch> {
        Ok(read(
            &self.records,
            self.cut,
            filter,
            from,
            Direction::Forward,
            max,
        ))
    }

    fn is_closed(&self) -> bool {
        true
    }
}

#[async_trait]
impl EventLog for Window {
    fn backend(&self) -> &'static str {
        self.inner.backend()
    }

    async fn append(&self, _: &str, _: Vec<StreamAppend>) -> Result<Vec<AppendOutcome>> {
        Err(Error::InvalidInput(
            "a window of the log is read-only".into(),
        ))
    }

    async fn read_stream(
        &self,
        tenant: &str,
        stream: &str,
        from_version: u64,
        max: usize,
    ) -> Result<Vec<Record>> {
        let mut records = self
            .inner
            .read_stream(tenant, stream, from_version, max)
            .await?;
        // A stream's versions come in position order.
        records.truncate(records.partition_point(|r| r.position < self.cut));
        Ok(records)
    }

    async fn read_positions(&self, tenant: &str, mut positions: Vec<u64>) -> Result<Vec<Record>> {
        positions.retain(|p| *p < self.cut);
        self.inner.read_positions(tenant, positions).await
    }

    async fn first_positions(&self, streams: Vec<(String, String)>) -> Result<Vec<Option<u64>>> {
        let found = self.inner.first_positions(streams).await?;
        Ok(found
            .into_iter()
            .map(|p| p.filter(|p| *p < self.cut))
            .collect())
    }

    async fn stream_version(&self, tenant: &str, stream: &str) -> Result<Option<u64>> {
        let mut version = self.inner.stream_version(tenant, stream).await?;
        while let Some(v) = version {
            let r = self.inner.read_stream(tenant, stream, v, 1).await?;
            if r.first().is_some_and(|r| r.position < self.cut) {
                break;
            }
            version = v.checked_sub(1);
        }
        Ok(version)
    }

    async fn find_event(&self, tenant: &str, time: i64, id: Uuid) -> Result<Option<Record>> {
        Ok(self
            .inner
            .find_event(tenant, time, id)
            .await?
            .filter(|r| r.position < self.cut))
    }

    async fn read_all(
        &self,
        filter: &TenantFilter,
        from: u64,
        direction: Direction,
        max: usize,
    ) -> Result<ReadBatch> {
        Ok(read(&self.records, self.cut, filter, from, direction, max))
    }

    fn head(&self) -> u64 {
        self.cut
    }

    fn accepts_appends(&self) -> bool {
        false
    }

    async fn chain_heads(&self) -> Result<BTreeMap<String, ChainHead>> {
        Err(Error::InvalidInput(
            "a window of the log has no chain heads".into(),
        ))
    }

    fn watch_head(&self) -> watch::Receiver<u64> {
        self.head.subscribe()
    }

    fn subscribe(&self, filter: TenantFilter, from: u64) -> Subscription {
        Subscription::new(
            Arc::new(Source {
                records: Arc::clone(&self.records),
                cut: self.cut,
            }),
            filter,
            from,
            self.head.subscribe(),
        )
    }

    async fn verify(
        &self,
        _: &TenantFilter,
        _: Range<u64>,
        _: Option<ProgressFn>,
    ) -> Result<VerifyReport> {
        Err(Error::InvalidInput(
            "verify the log itself, not a window of it".into(),
        ))
    }

    async fn sync(&self) -> Result<()> {
        Ok(())
    }
}
