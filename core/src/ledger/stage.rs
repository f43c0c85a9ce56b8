//! Staging one append into the group being prepared: checks of ids and
//! versions, positions, frames and hash chain, index entries.

use std::collections::{HashMap, HashSet};

use super::keys::{TenantHead, id_key, stream_key, stream_value};
use super::writer::{EventKey, Group, Slot, Writer};
use crate::codec::RecordFields;
use crate::error::{Error, Result};
use crate::record::{
    AppendOutcome, ExpectedVersion, GENESIS_HASH, StreamAppend, validate_event, validate_stream,
    validate_tenant,
};
use crate::store::{Space, Store};

impl<S: Store> Writer<S> {
    /// Stages one append into `g`, or changes nothing and says why not.
    pub(super) fn stage(
        &mut self,
        g: &mut Group,
        tenant: &str,
        streams: &[StreamAppend],
    ) -> Result<Vec<AppendOutcome>> {
        validate_tenant(tenant)?;
        for s in streams {
            validate_stream(&s.stream)?;
            for e in &s.events {
                validate_event(e)?;
            }
        }
        // Check everything before changing anything, so a failed append
        // leaves the group as it was.
        let mut slots: Vec<Vec<Slot>> = Vec::with_capacity(streams.len());
        let mut actuals: Vec<Option<u64>> = Vec::with_capacity(streams.len());
        let events: usize = streams.iter().map(|s| s.events.len()).sum();
        let mut seen: HashMap<EventKey, (usize, usize)> = HashMap::with_capacity(events);
        let mut local_versions: HashMap<&str, Option<u64>> = HashMap::with_capacity(streams.len());
        for (si, s) in streams.iter().enumerate() {
            let mut row = Vec::with_capacity(s.events.len());
            for (ei, e) in s.events.iter().enumerate() {
                let key = (e.time, e.id);
                if let Some(p) = self.lookup_id(g, tenant, key)? {
                    row.push(Slot::Existing(p));
                } else if let Some(&(s2, e2)) = seen.get(&key) {
                    row.push(Slot::SameAs(s2, e2));
                } else {
                    seen.insert(key, (si, ei));
                    row.push(Slot::New);
                }
            }
            let actual = match local_versions.get(s.stream.as_str()) {
                Some(&v) => v,
                None => self.version(g, tenant, &s.stream)?,
            };
            let new = row.iter().filter(|x| matches!(x, Slot::New)).count() as u64;
            if new > 0 && !s.expected.matches(actual) {
                return Err(Error::WrongExpectedVersion {
                    stream: s.stream.clone(),
                    expected: s.expected,
                    actual,
                });
            }
            let after = if new == 0 {
                actual
            } else {
                Some(actual.map_or(new - 1, |v| v + new))
            };
            local_versions.insert(&s.stream, after);
            actuals.push(actual);
            slots.push(row);
        }
        // A link moves a stream's version without an expectation of its own,
        // so a stream with an exact expectation may not also be linked to
        // from the same append. Most appends expect nothing (`Any`): then
        // there is nothing to look up.
        let exact: HashSet<&str> = streams
            .iter()
            .filter(|t| t.expected != ExpectedVersion::Any)
            .map(|t| t.stream.as_str())
            .collect();
        if !exact.is_empty() {
            for link in streams
                .iter()
                .flat_map(|s| &s.events)
                .flat_map(|e| &e.links)
            {
                if exact.contains(link.as_str()) {
                    return Err(Error::invalid(format!(
                        "stream {link} is appended to with an expected version and linked to in the same append"
                    )));
                }
            }
        }
        let mut th = g
            .tenants
            .get(tenant)
            .or_else(|| self.tenants.get(tenant))
            .copied()
            .unwrap_or(TenantHead {
                last_position: 0,
                hash: GENESIS_HASH,
                count: 0,
            });
        let mut next = g.head;
        let mut puts = Vec::new();
        let mut assigned: Vec<Vec<u64>> = Vec::with_capacity(streams.len());
        let mut outcomes = Vec::with_capacity(streams.len());
        let mut new_ids = Vec::new();
        // Versions as this append leaves them, for its streams and links.
        // Borrowed names: a contact's stream is linked from most events, and
        // an owned key cloned its name at every link.
        let mut current: HashMap<&str, Option<u64>> = HashMap::with_capacity(2 * streams.len());
        for (si, s) in streams.iter().enumerate() {
            let mut version = match current.get(s.stream.as_str()) {
                Some(&v) => v,
                None => actuals[si],
            };
            let mut positions = Vec::with_capacity(s.events.len());
            let mut duplicates = 0;
            for (ei, e) in s.events.iter().enumerate() {
                let position = match slots[si][ei] {
                    Slot::Existing(p) => {
                        duplicates += 1;
                        p
                    }
                    Slot::SameAs(s2, e2) => {
                        duplicates += 1;
                        if s2 == si {
                            positions[e2]
                        } else {
                            assigned[s2][e2]
                        }
                    }
                    Slot::New => {
                        let v = version.map_or(0, |v| v + 1);
                        let (frame, hash) = self.config.encode(&RecordFields {
                            position: next,
                            tenant,
                            stream: &s.stream,
                            stream_version: v,
                            event_id: e.id,
                            recorded_at_micros: g.recorded_at,
                            event_type: &e.event_type,
                            payload: &e.payload,
                            metadata: &e.metadata,
                            prev_hash: th.hash,
                            jurisdiction: self.config.node_jurisdiction(),
                        })?;
                        puts.push((Space::Log, next.to_be_bytes().to_vec(), frame));
                        puts.push((
                            Space::EventIds,
                            id_key(tenant, e.time, e.id),
                            next.to_be_bytes().to_vec(),
                        ));
                        puts.push((
                            Space::Streams,
                            stream_key(tenant, &s.stream, v),
                            stream_value(next, v, &s.stream),
                        ));
                        for link in &e.links {
                            let lv = match current.get(link.as_str()) {
                                Some(&v) => v,
                                None => self.version(g, tenant, link)?,
                            }
                            .map_or(0, |v| v + 1);
                            puts.push((
                                Space::Streams,
                                stream_key(tenant, link, lv),
                                stream_value(next, lv, link),
                            ));
                            current.insert(link, Some(lv));
                        }
                        new_ids.push(((e.time, e.id), next));
                        th = TenantHead {
                            last_position: next,
                            hash,
                            count: th.count + 1,
                        };
                        version = Some(v);
                        next += 1;
                        next - 1
                    }
                };
                positions.push(position);
            }
            current.insert(&s.stream, version);
            assigned.push(positions.clone());
            outcomes.push(AppendOutcome {
                positions,
                stream_version: version,
                duplicates,
            });
        }
        if next > g.head {
            g.head = next;
            g.tenants.insert(tenant.to_owned(), th);
            for (id, p) in new_ids {
                g.ids.insert(tenant, id, p, g.events);
            }
            for (stream, v) in current {
                g.versions.insert(tenant, stream.to_owned(), v, g.events);
            }
            for (space, k, v) in puts {
                g.batch.put(space, k, v);
            }
        }
        Ok(outcomes)
    }
}
