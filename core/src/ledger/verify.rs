//! Verification of the hash chain over a range of the log.

use std::collections::{BTreeMap, HashMap};
use std::ops::Range;

use super::Shared;
use super::keys::{
    LAYOUT_KEY, TenantHead, names_stream, parse_id_key, stream_key, stream_position, u64_be,
};
use crate::codec;
use crate::error::{Error, Result};
use crate::log::{ProgressFn, VerifyProgress, VerifyReport};
use crate::record::{GENESIS_HASH, Hash, TenantFilter};
use crate::residency::Jurisdiction;
use crate::store::{Space, Store, Visit};

impl<S: Store> Shared<S> {
    pub(super) fn verify(
        &self,
        filter: &TenantFilter,
        range: Range<u64>,
        progress: Option<&ProgressFn>,
    ) -> Result<VerifyReport> {
        const CHUNK: usize = 2048;
        let head = self.published_head();
        let end = range.end.min(head);
        let start = range.start.min(end);
        let anchored = start == 0;
        let total = end - start;
        // Per tenant checked: its last record so far, and its records
        // counted by where they were written.
        let mut seen_by: HashMap<String, Seen> = HashMap::new();
        let mut expected = start;
        let mut checked = 0;
        let mut chunk: Vec<(Vec<u8>, Vec<u8>)> = Vec::with_capacity(CHUNK);
        let mut ids = IdCheck::new(start..end);
        while expected < end {
            chunk.clear();
            self.store.scan(
                Space::Log,
                &expected.to_be_bytes(),
                Some(&end.to_be_bytes()),
                false,
                &mut |k, v| {
                    chunk.push((k.to_vec(), v.to_vec()));
                    if chunk.len() >= CHUNK {
                        Visit::Stop
                    } else {
                        Visit::Continue
                    }
                },
            )?;
            if chunk.is_empty() {
                return Err(Error::corrupt(expected, "record missing"));
            }
            for (k, v) in &chunk {
                let pos = u64_be(k)
                    .ok_or_else(|| Error::corrupt(expected, "log key is not a position"))?;
                if pos != expected {
                    return Err(Error::corrupt(expected, "record missing"));
                }
                let r =
                    codec::decode_verified(v).map_err(|e| Error::corrupt(pos, e.to_string()))?;
                if r.position != pos {
                    return Err(Error::corrupt(pos, "record holds another position"));
                }
                if filter.admits(r.tenant) {
                    let seen = seen_by.get_mut(r.tenant);
                    match seen.as_ref().map(|s| s.last) {
                        Some((p, h)) if h != r.prev_hash => {
                            return Err(Error::corrupt(
                                pos,
                                format!("chain broken: prev_hash is not the hash of position {p}"),
                            ));
                        }
                        None if anchored && r.prev_hash != GENESIS_HASH => {
                            return Err(Error::corrupt(
                                pos,
                                "chain broken: the tenant's first record does not start from genesis",
                            ));
                        }
                        _ => {}
                    }
                    ids.record(r.tenant, r.event_id, pos);
                    let by_stream = self.store.get(
                        Space::Streams,
                        &stream_key(r.tenant, r.stream, r.stream_version),
                    )?;
                    let names = |v: &[u8]| r.stream_version != 0 || names_stream(v, r.stream);
                    if by_stream.as_deref().and_then(stream_position) != Some(pos)
                        || !by_stream.as_deref().is_some_and(names)
                    {
                        return Err(Error::corrupt(
                            pos,
                            "stream index does not point at this record",
                        ));
                    }
                    let seen = match seen {
                        Some(seen) => {
                            seen.last = (pos, r.hash);
                            seen
                        }
                        None => seen_by.entry(r.tenant.to_owned()).or_insert(Seen {
                            last: (pos, r.hash),
                            written_in: BTreeMap::new(),
                        }),
                    };
                    *seen.written_in.entry(r.jurisdiction).or_insert(0) += 1;
                    checked += 1;
                }
                expected += 1;
            }
            if let Some(p) = progress {
                p(VerifyProgress {
                    checked: expected - start,
                    total,
                });
            }
        }
        self.check_ids(filter, &mut ids)?;
        if end == head {
            let mut heads = Vec::new();
            self.store
                .scan(Space::Tenants, &[], None, false, &mut |k, v| {
                    heads.push((k.to_vec(), v.to_vec()));
                    Visit::Continue
                })?;
            let mut seen = 0;
            for (k, v) in heads {
                if k == LAYOUT_KEY {
                    continue;
                }
                let tenant = String::from_utf8_lossy(&k).into_owned();
                if !filter.admits(&tenant) {
                    continue;
                }
                let th = TenantHead::decode(&v)
                    .ok_or_else(|| Error::corrupt(end, "a chain head does not decode"))?;
                match seen_by.get(&tenant).map(|s| s.last) {
                    Some((p, h)) => {
                        seen += 1;
                        if p != th.last_position || h != th.hash {
                            return Err(Error::corrupt(
                                p.max(th.last_position),
                                "the tenant's stored chain head is not its last record",
                            ));
                        }
                    }
                    None if th.last_position >= start => {
                        return Err(Error::corrupt(
                            th.last_position,
                            "the tenant's chain head names a record that is not there",
                        ));
                    }
                    None => {}
                }
            }
            if seen != seen_by.len() {
                let p = seen_by.values().map(|s| s.last.0).max().unwrap_or(end);
                return Err(Error::corrupt(
                    p,
                    "a tenant has records but no stored chain head",
                ));
            }
        }
        Ok(VerifyReport {
            range: start..end,
            records: checked,
            tenants: seen_by.len(),
            anchored,
            written_in: seen_by
                .into_iter()
                .map(|(tenant, s)| (tenant, s.written_in))
                .collect(),
        })
    }
}

impl<S: Store> Shared<S> {
    /// Checks the event-id index against the records [`IdCheck`] saw: each
    /// entry of an admitted tenant whose position is in the range names a
    /// record seen, of its tenant and id, no record twice, and every record
    /// seen has its entry. The entry's time cannot be checked: the record
    /// does not hold it.
    fn check_ids(&self, filter: &TenantFilter, ids: &mut IdCheck) -> Result<()> {
        // Time comes first in the key, so one tenant's entries are spread
        // over the whole space: every entry is read, and others skipped.
        let mut failure = None;
        self.store
            .scan(Space::EventIds, &[], None, false, &mut |k, v| {
                let Some((tenant, id)) = parse_id_key(k) else {
                    failure = Some(Error::corrupt(
                        ids.range.start,
                        "event id index key does not decode",
                    ));
                    return Visit::Stop;
                };
                if !filter.admits(tenant) {
                    return Visit::Continue;
                }
                let Some(p) = u64_be(v) else {
                    failure = Some(Error::corrupt(
                        ids.range.start,
                        "event id index entry does not decode",
                    ));
                    return Visit::Stop;
                };
                match ids.entry(tenant, id, p) {
                    Ok(()) => Visit::Continue,
                    Err(e) => {
                        failure = Some(e);
                        Visit::Stop
                    }
                }
            })?;
        if let Some(e) = failure {
            return Err(e);
        }
        ids.finish()
    }
}

/// The check of the event-id index over a range of positions. Records and
/// entries each add a 128-bit hash of (tenant, id, position) to a sum, so
/// equal sums mean the same entries as records without holding either in
/// memory; two bitmaps of the range (a bit per position) say which
/// records were seen and which were named, so a failure names a position.
struct IdCheck {
    range: Range<u64>,
    seen: Vec<u64>,
    named: Vec<u64>,
    records: u128,
    entries: u128,
}

impl IdCheck {
    fn new(range: Range<u64>) -> Self {
        let words = usize::try_from((range.end - range.start).div_ceil(64)).unwrap_or(0);
        Self {
            range,
            seen: vec![0; words],
            named: vec![0; words],
            records: 0,
            entries: 0,
        }
    }

    fn term(tenant: &str, id: uuid::Uuid, position: u64) -> u128 {
        let mut h = blake3::Hasher::new();
        h.update(tenant.as_bytes());
        h.update(&[0]);
        h.update(id.as_bytes());
        h.update(&position.to_be_bytes());
        let mut b = [0; 16];
        b.copy_from_slice(&h.finalize().as_bytes()[..16]);
        u128::from_le_bytes(b)
    }

    fn bit(&self, position: u64) -> (usize, u64) {
        let i = position - self.range.start;
        (usize::try_from(i / 64).unwrap_or(usize::MAX), 1 << (i % 64))
    }

    fn record(&mut self, tenant: &str, id: uuid::Uuid, position: u64) {
        let (w, b) = self.bit(position);
        if let Some(word) = self.seen.get_mut(w) {
            *word |= b;
        }
        self.records = self.records.wrapping_add(Self::term(tenant, id, position));
    }

    fn entry(&mut self, tenant: &str, id: uuid::Uuid, position: u64) -> Result<()> {
        if !self.range.contains(&position) {
            return Ok(());
        }
        let (w, b) = self.bit(position);
        if self.seen.get(w).is_none_or(|word| word & b == 0) {
            return Err(Error::corrupt(
                position,
                "event id index names a record of another tenant",
            ));
        }
        let named = &mut self.named[w];
        if *named & b != 0 {
            return Err(Error::corrupt(
                position,
                "two event id index entries name this record",
            ));
        }
        *named |= b;
        self.entries = self.entries.wrapping_add(Self::term(tenant, id, position));
        Ok(())
    }

    fn finish(&self) -> Result<()> {
        for (w, (seen, named)) in self.seen.iter().zip(&self.named).enumerate() {
            let missing = seen & !named;
            if missing != 0 {
                let p = self.range.start + w as u64 * 64 + u64::from(missing.trailing_zeros());
                return Err(Error::corrupt(
                    p,
                    "no event id index entry names this record",
                ));
            }
        }
        if self.records != self.entries {
            return Err(Error::corrupt(
                self.range.start,
                "an event id index entry names a record with another id",
            ));
        }
        Ok(())
    }
}

/// What verification has seen of one tenant.
struct Seen {
    /// Its last record so far: position and hash.
    last: (u64, Hash),
    /// Its records by where they were written.
    written_in: BTreeMap<Option<Jurisdiction>, u64>,
}
