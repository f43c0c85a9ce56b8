//! Verification of the hash chain over a range of the log.

use std::collections::{BTreeMap, HashMap};
use std::ops::Range;

use super::Shared;
use super::keys::{TenantHead, id_key, stream_key, u64_be};
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
                    let by_id = self
                        .store
                        .get(Space::EventIds, &id_key(r.tenant, r.event_id))?;
                    if by_id.as_deref().and_then(u64_be) != Some(pos) {
                        return Err(Error::corrupt(
                            pos,
                            "event id index does not point at this record",
                        ));
                    }
                    let by_stream = self.store.get(
                        Space::Streams,
                        &stream_key(r.tenant, r.stream, r.stream_version),
                    )?;
                    if by_stream.as_deref().and_then(u64_be) != Some(pos) {
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
        if end == head {
            let mut heads = Vec::new();
            self.store
                .scan(Space::Tenants, &[], None, false, &mut |k, v| {
                    heads.push((k.to_vec(), v.to_vec()));
                    Visit::Continue
                })?;
            let mut seen = 0;
            for (k, v) in heads {
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

/// What verification has seen of one tenant.
struct Seen {
    /// Its last record so far: position and hash.
    last: (u64, Hash),
    /// Its records by where they were written.
    written_in: BTreeMap<Option<Jurisdiction>, u64>,
}
