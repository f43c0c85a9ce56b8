//! Reads: records by position, streams, the whole log, event ids, and the
//! source a subscription reads from.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use async_trait::async_trait;
use uuid::Uuid;

use super::Shared;
use super::keys::{
    LAYOUT_KEY, TenantHead, id_key, names_stream, stream_end, stream_key, stream_position,
    stream_prefix, u64_be,
};
use crate::codec;
use crate::error::{Error, Result};
use crate::log::{ChainHead, FrameBatch, MAX_READ_BATCH, ReadBatch, SubscriptionSource};
use crate::record::{Direction, Record, TenantFilter};
use crate::store::{Space, Store, Visit};

/// The last version of a stream in the index, acknowledged or not.
///
/// # Errors
/// A storage failure, or [`Error::InvalidInput`] when another stream of
/// the tenant holds the stream's 64-bit hash (see [`super::keys`]): the
/// stream cannot be written.
pub(super) fn read_stream_version<S: Store>(
    store: &S,
    tenant: &str,
    stream: &str,
) -> Result<Option<u64>> {
    last_version(store, tenant, stream)?.ok_or_else(|| {
        Error::invalid(
            "this stream name shares its 64-bit index hash with another stream of the tenant; use another name",
        )
    })
}

/// The last version of a stream in the index (`Some(None)`: no such
/// stream), or `None` when another stream of the tenant holds its hash.
pub(super) fn last_version<S: Store>(
    store: &S,
    tenant: &str,
    stream: &str,
) -> Result<Option<Option<u64>>> {
    // A stream's index entries are never removed, so a stream with any
    // event has its version 0. That point read settles a new stream (most
    // message streams are new when first appended to) through the store's
    // filters; a backwards range scan would visit every table.
    let Some(first) = store.get(Space::Streams, &stream_key(tenant, stream, 0))? else {
        return Ok(Some(None));
    };
    if !names_stream(&first, stream) {
        return Ok(None);
    }
    let start = stream_prefix(tenant, stream);
    let end = stream_end(tenant, stream);
    let mut found = None;
    store.scan(Space::Streams, &start, Some(&end), true, &mut |k, _| {
        found = k.get(start.len()..).and_then(u64_be);
        Visit::Stop
    })?;
    Ok(Some(found))
}

impl<S: Store> Shared<S> {
    pub(super) fn published_head(&self) -> u64 {
        *self.head.borrow()
    }

    /// Every tenant's stored chain head, committed (not yet necessarily
    /// published).
    pub(super) fn chain_heads(&self) -> Result<std::collections::BTreeMap<String, ChainHead>> {
        let mut raw = Vec::new();
        self.store
            .scan(Space::Tenants, &[], None, false, &mut |k, v| {
                if k != LAYOUT_KEY {
                    raw.push((k.to_vec(), v.to_vec()));
                }
                Visit::Continue
            })?;
        let head = self.published_head();
        raw.into_iter()
            .map(|(k, v)| {
                let th = TenantHead::decode(&v)
                    .ok_or_else(|| Error::corrupt(head, "a chain head does not decode"))?;
                let tenant = String::from_utf8(k).map_err(|_| {
                    Error::corrupt(
                        th.last_position,
                        "a chain head names a tenant that is not UTF-8",
                    )
                })?;
                Ok((
                    tenant,
                    ChainHead {
                        last_position: th.last_position,
                        hash: th.hash,
                        count: th.count,
                    },
                ))
            })
            .collect()
    }

    pub(super) fn record_at(&self, position: u64) -> Result<Option<Record>> {
        let Some(frame) = self.store.get(Space::Log, &position.to_be_bytes())? else {
            return Ok(None);
        };
        let r = codec::decode(&frame).map_err(|e| Error::corrupt(position, e.to_string()))?;
        if r.position != position {
            return Err(Error::corrupt(position, "record holds another position"));
        }
        Ok(Some(r.to_record()))
    }

    pub(super) fn read_positions(&self, tenant: &str, positions: &[u64]) -> Result<Vec<Record>> {
        if positions.len() > MAX_READ_BATCH {
            return Err(Error::InvalidInput(format!(
                "at most {MAX_READ_BATCH} positions are read at once"
            )));
        }
        let head = self.published_head();
        let mut out = Vec::with_capacity(positions.len());
        for &p in positions.iter().filter(|p| **p < head) {
            if let Some(r) = self.record_at(p)?.filter(|r| r.tenant.as_str() == tenant) {
                out.push(r);
            }
        }
        Ok(out)
    }

    /// The position of the stream's version 0, when acknowledged: one
    /// point read of the stream index, whose version 0 entry names the
    /// stream (another name there: the hash is another stream's).
    pub(super) fn first_position(&self, tenant: &str, stream: &str) -> Result<Option<u64>> {
        let head = self.published_head();
        Ok(self
            .store
            .get(Space::Streams, &stream_key(tenant, stream, 0))?
            .filter(|v| names_stream(v, stream))
            .and_then(|v| stream_position(&v))
            .filter(|p| *p < head))
    }

    pub(super) fn read_stream(
        &self,
        tenant: &str,
        stream: &str,
        from: u64,
        max: usize,
    ) -> Result<Vec<Record>> {
        let head = self.published_head();
        let max = max.min(MAX_READ_BATCH);
        // The entry of version 0 names the stream: with another name there,
        // the hash is another stream's, and this one holds nothing.
        if self.first_position(tenant, stream)?.is_none() {
            return Ok(Vec::new());
        }
        let start = stream_key(tenant, stream, from);
        let end = stream_end(tenant, stream);
        let mut positions = Vec::new();
        self.store
            .scan(Space::Streams, &start, Some(&end), false, &mut |_, v| {
                match stream_position(v) {
                    Some(p) if p < head => positions.push(p),
                    _ => return Visit::Stop,
                }
                if positions.len() >= max {
                    Visit::Stop
                } else {
                    Visit::Continue
                }
            })?;
        let mut out = Vec::with_capacity(positions.len());
        for p in positions {
            let r = self
                .record_at(p)?
                .ok_or_else(|| Error::corrupt(p, "stream index names a missing record"))?;
            out.push(r);
        }
        Ok(out)
    }

    pub(super) fn read_all(
        &self,
        filter: &TenantFilter,
        from: u64,
        direction: Direction,
        max: usize,
    ) -> Result<ReadBatch> {
        let head = self.published_head();
        let max = max.clamp(1, MAX_READ_BATCH);
        let span = usize::try_from(head.saturating_sub(from.min(head))).unwrap_or(max);
        let mut records = Vec::with_capacity(match direction {
            Direction::Forward => max.min(span),
            Direction::Backward => max,
        });
        let next = self.scan_log(filter, from, direction, max, |r, _| {
            records.push(r.to_record());
        })?;
        Ok(ReadBatch { records, next })
    }

    /// [`Shared::read_all`] forward, the records' frames as stored.
    pub(super) fn read_frames(
        &self,
        filter: &TenantFilter,
        from: u64,
        max: usize,
    ) -> Result<FrameBatch> {
        let max = max.clamp(1, MAX_READ_BATCH);
        let head = self.published_head();
        let span = usize::try_from(head.saturating_sub(from.min(head))).unwrap_or(max);
        // Records run to a few hundred bytes: a guess that seldom regrows.
        let mut frames = FrameBatch::with_capacity(max.min(span), max.min(span) * 512);
        frames.next = self.scan_log(filter, from, Direction::Forward, max, |r, frame| {
            frames.push(r.position, frame);
        })?;
        Ok(frames)
    }

    /// Reads the log from `from` in `direction`, giving each record that
    /// passes `filter` (up to `max`) and its frame to `keep`; returns where
    /// to continue ([`ReadBatch::next`]).
    fn scan_log(
        &self,
        filter: &TenantFilter,
        from: u64,
        direction: Direction,
        max: usize,
        mut keep: impl FnMut(&codec::RecordRef<'_>, &[u8]),
    ) -> Result<Option<u64>> {
        let head = self.published_head();
        let mut kept = 0;
        let mut failure = None;
        let mut last_seen = None;
        let (start, end, reverse) = match direction {
            Direction::Forward => (from.min(head), head, false),
            Direction::Backward => (0, from.saturating_add(1).min(head), true),
        };
        if start < end {
            self.store.scan(
                Space::Log,
                &start.to_be_bytes(),
                Some(&end.to_be_bytes()),
                reverse,
                &mut |k, v| {
                    let pos = u64_be(k).unwrap_or(u64::MAX);
                    match codec::decode(v) {
                        Ok(r) if r.position == pos => {
                            last_seen = Some(pos);
                            if filter.admits(r.tenant) {
                                keep(&r, v);
                                kept += 1;
                            }
                        }
                        Ok(_) => {
                            failure = Some(Error::corrupt(pos, "record holds another position"));
                            return Visit::Stop;
                        }
                        Err(e) => {
                            failure = Some(Error::corrupt(pos, e.to_string()));
                            return Visit::Stop;
                        }
                    }
                    if kept >= max {
                        Visit::Stop
                    } else {
                        Visit::Continue
                    }
                },
            )?;
        }
        if let Some(e) = failure {
            return Err(e);
        }
        Ok(match (direction, last_seen) {
            (Direction::Forward, Some(p)) if kept >= max => Some(p + 1),
            (Direction::Forward, _) => Some(head.max(start)),
            (Direction::Backward, Some(p)) if kept >= max => p.checked_sub(1),
            (Direction::Backward, _) => None,
        })
    }

    pub(super) fn find_event(&self, tenant: &str, time: i64, id: Uuid) -> Result<Option<Record>> {
        let Some(v) = self.store.get(Space::EventIds, &id_key(tenant, time, id))? else {
            return Ok(None);
        };
        let p =
            u64_be(&v).ok_or_else(|| Error::corrupt(0, "event id index entry does not decode"))?;
        if p >= self.published_head() {
            return Ok(None);
        }
        let r = self
            .record_at(p)?
            .ok_or_else(|| Error::corrupt(p, "event id index names a missing record"))?;
        if r.tenant != tenant || r.event_id != id {
            return Err(Error::corrupt(p, "event id index names another record"));
        }
        Ok(Some(r))
    }
}

/// What a subscription reads from: the log's shared state.
pub(super) struct SourceHandle<S: Store>(pub(super) Arc<Shared<S>>);

#[async_trait]
impl<S: Store> SubscriptionSource for SourceHandle<S> {
    async fn read_forward(
        &self,
        filter: &TenantFilter,
        from: u64,
        max: usize,
    ) -> Result<ReadBatch> {
        let shared = Arc::clone(&self.0);
        let filter = filter.clone();
        crate::blocking::run(move || shared.read_all(&filter, from, Direction::Forward, max)).await
    }

    fn is_closed(&self) -> bool {
        self.0.closed.load(Ordering::SeqCst)
    }
}
