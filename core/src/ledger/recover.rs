//! Opening a log: the check of its tail and the load of its chain heads.

use std::collections::HashMap;

use super::keys::{LAYOUT, LAYOUT_KEY, TenantHead, u64_be};
use crate::codec;
use crate::error::{Error, Result};
use crate::store::WriteBatch;
use crate::store::{Space, Store, Visit};

/// The log's head and the recording time of its last record, once its
/// last records have passed their checks.
pub(super) fn check_tail<S: Store>(store: &S) -> Result<(u64, i64)> {
    const TAIL: usize = 256;
    let mut frames: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
    store.scan(Space::Log, &[], None, true, &mut |k, v| {
        frames.push((k.to_vec(), v.to_vec()));
        if frames.len() >= TAIL {
            Visit::Stop
        } else {
            Visit::Continue
        }
    })?;
    let Some((last_key, _)) = frames.first() else {
        return Ok((0, 0));
    };
    let last = u64_be(last_key).ok_or_else(|| Error::corrupt(0, "log key is not a position"))?;
    let mut last_recorded = 0;
    for (i, (k, v)) in frames.iter().enumerate() {
        let expected = last - i as u64;
        let pos = u64_be(k).ok_or_else(|| Error::corrupt(expected, "log key is not a position"))?;
        if pos != expected {
            return Err(Error::corrupt(pos + 1, "record missing"));
        }
        let r = codec::decode_verified(v).map_err(|e| Error::corrupt(pos, e.to_string()))?;
        if r.position != pos {
            return Err(Error::corrupt(pos, "record holds another position"));
        }
        if i == 0 {
            last_recorded = r.recorded_at_micros;
        }
    }
    Ok((last + 1, last_recorded))
}

/// Every tenant's chain head, each checked against the record it names.
pub(super) fn load_tenants<S: Store>(store: &S, head: u64) -> Result<HashMap<String, TenantHead>> {
    let mut raw = Vec::new();
    store.scan(Space::Tenants, &[], None, false, &mut |k, v| {
        raw.push((k.to_vec(), v.to_vec()));
        Visit::Continue
    })?;
    let mut tenants = HashMap::with_capacity(raw.len());
    for (k, v) in raw {
        if k == LAYOUT_KEY {
            continue;
        }
        let tenant = String::from_utf8(k)
            .map_err(|_| Error::corrupt(head, "a chain head names a tenant that is not UTF-8"))?;
        let th = TenantHead::decode(&v)
            .ok_or_else(|| Error::corrupt(head, "a chain head does not decode"))?;
        if th.last_position >= head {
            return Err(Error::corrupt(
                th.last_position,
                "a chain head names a record past the end of the log",
            ));
        }
        let frame = store
            .get(Space::Log, &th.last_position.to_be_bytes())?
            .ok_or_else(|| Error::corrupt(th.last_position, "record missing"))?;
        let r = codec::decode_verified(&frame)
            .map_err(|e| Error::corrupt(th.last_position, e.to_string()))?;
        if r.tenant != tenant || r.hash != th.hash {
            return Err(Error::corrupt(
                th.last_position,
                "record disagrees with its tenant's chain head",
            ));
        }
        tenants.insert(tenant, th);
    }
    Ok(tenants)
}

/// Checks that the log's indexes are in the layout this build reads
/// ([`LAYOUT`]). `Ok(true)`: the log is empty and unstamped; the first
/// batch written stamps it ([`stamp`]), so opening writes nothing.
///
/// # Errors
/// [`Error::Config`] for a log written in another layout: nothing is
/// released that wrote one, so there is no conversion; copy the events
/// into a new log instead.
pub(super) fn check_layout<S: Store>(store: &S, head: u64) -> Result<bool> {
    let stamped = store.get(Space::Tenants, LAYOUT_KEY)?;
    match stamped.as_deref().map(<[u8; 4]>::try_from) {
        Some(Ok(v)) if u32::from_be_bytes(v) == LAYOUT => Ok(false),
        None if head == 0 && is_empty(store)? => Ok(true),
        Some(Ok(v)) => Err(Error::Config(format!(
            "the log's indexes are in layout {}; this build reads layout {LAYOUT} only",
            u32::from_be_bytes(v)
        ))),
        _ => Err(Error::Config(format!(
            "the log's indexes are in layout 1 (before time-ordered event ids); this build reads layout {LAYOUT} only"
        ))),
    }
}

/// Adds the layout stamp to a batch.
pub(super) fn stamp(batch: &mut WriteBatch) {
    batch.put(
        Space::Tenants,
        LAYOUT_KEY.to_vec(),
        LAYOUT.to_be_bytes().to_vec(),
    );
}

/// Whether no space holds an entry.
fn is_empty<S: Store>(store: &S) -> Result<bool> {
    for space in Space::ALL {
        let mut any = false;
        store.scan(space, &[], None, false, &mut |_, _| {
            any = true;
            Visit::Stop
        })?;
        if any {
            return Ok(false);
        }
    }
    Ok(true)
}
