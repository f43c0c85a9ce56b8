//! The suppression list: who may not be mailed, in which scope, why, since
//! when, and which event put them there. Keyed by contact pseudonym and
//! scope, so an entry survives the contact's erasure (invariant 9).
//!
//! # Rules (per tenant, from its policy's [`SuppressionRules`])
//!
//! | event | effect |
//! |---|---|
//! | `bounced`, class hard | entry in scope `all`, reason `hard_bounce` |
//! | `bounced`, class soft | counted; the threshold-th soft bounce within the window adds (or renews) an entry in `all`, reason `soft_bounces`, expiring the expiry period after that bounce |
//! | `bounced`, block or undetermined | nothing: the fault may be the sender's |
//! | `complained` | entry in `all`, reason `complaint` |
//! | `unsubscribed` (scope S) | entry in S, reason `unsubscribe` |
//! | `resubscribed` (scope S) | removes an `unsubscribe` entry in S |
//! | `suppressed` (scope S) | entry in S, reason `manual`, with its reason text and expiry |
//! | `unsuppressed` (scope S) | removes the entry in S; a `complaint` entry only when the event gives a reason |
//! | `erased` | nothing: entries are keyed by pseudonym and stay |
//!
//! When an entry already exists in the scope, the stronger reason stays
//! (complaint > hard bounce, manual > unsubscribe > soft bounces); an entry
//! of the same reason keeps its original `since` (a soft-bounce entry's
//! expiry is renewed). An entry that had expired by the new event's time is
//! replaced. Expiry is judged at query time against the clock, so state is
//! fed by events alone and a rebuild reproduces it.
//!
//! # Keys (after `tenant \0`)
//!
//! | table | key | value |
//! |---|---|---|
//! | `S` | pseudonym (16), scope (u16-prefixed) | [`Entry`] |
//! | `B` | pseudonym (16) | soft bounce times in the window |

use mailledger_core::Record;
use mailledger_core::email::{BounceClass, EventBody, SuppressionRules};
use mailledger_core::pseudonym::Pseudonym;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::codec::{dec, enc, hex, prefix_end, push_part, tenant_key, unhex};
use crate::delivery::{MAX_PAGE, Page};
use crate::error::{Error, Result};
use crate::projection::{Input, Projection, from_position, policy, store_policy};
use crate::state::{StateStore, Tx};

/// The version of this projection's state layout ([`Projection::format`]).
/// 2: the stored tenant policy gained `case_sensitive_local_part`.
pub const FORMAT: u32 = 2;

/// The projection's name.
pub const NAME: &str = "suppressions";

/// The scope that covers all mail.
pub const ALL: &str = "all";

const ENTRIES: u8 = b'S';
const SOFT: u8 = b'B';
const DAY_MICROS: i64 = 86_400_000_000;

/// Why an address is suppressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// A hard bounce.
    HardBounce,
    /// Too many soft bounces within the window.
    SoftBounces,
    /// The recipient complained.
    Complaint,
    /// The recipient unsubscribed from the scope.
    Unsubscribe,
    /// Added by hand (a `suppressed` event).
    Manual,
}

impl Reason {
    /// The reason's name, as JSON shows it.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::HardBounce => "hard_bounce",
            Self::SoftBounces => "soft_bounces",
            Self::Complaint => "complaint",
            Self::Unsubscribe => "unsubscribe",
            Self::Manual => "manual",
        }
    }

    fn rank(self) -> u8 {
        match self {
            Self::SoftBounces => 1,
            Self::Unsubscribe => 2,
            Self::Manual => 3,
            Self::HardBounce => 4,
            Self::Complaint => 5,
        }
    }
}

/// One suppression.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// The suppressed contact.
    pub contact: Pseudonym,
    /// `all`, or a topic.
    pub scope: String,
    /// Why.
    pub reason: Reason,
    /// The reason text of a manual entry (no personal data).
    pub note: Option<String>,
    /// Since when, µs since the epoch (the originating event's time).
    pub since: i64,
    /// The event that put the entry there.
    pub event_id: Uuid,
    /// That event's position.
    pub position: u64,
    /// When it lapses, µs since the epoch; `None`: never.
    pub expires_at: Option<i64>,
}

impl Entry {
    /// Whether the entry still applies at `now`.
    #[must_use]
    pub fn active_at(&self, now: i64) -> bool {
        self.expires_at.is_none_or(|e| now < e)
    }
}

/// The answer to "may I send to this contact in this scope?".
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Nothing suppresses the contact in the scope.
    Allowed,
    /// This entry does.
    Suppressed(Entry),
}

/// The suppression list projection.
#[derive(Debug, Default, Clone, Copy)]
pub struct SuppressionList;

fn entry_key(tenant: &str, contact: &Pseudonym, scope: &str) -> Vec<u8> {
    let mut k = tenant_key(tenant, ENTRIES);
    k.extend_from_slice(contact.as_bytes());
    push_part(&mut k, scope.as_bytes());
    k
}

fn soft_key(tenant: &str, contact: &Pseudonym) -> Vec<u8> {
    let mut k = tenant_key(tenant, SOFT);
    k.extend_from_slice(contact.as_bytes());
    k
}

fn get_entry(tx: &mut Tx<'_>, key: &[u8]) -> Result<Option<Entry>> {
    tx.get(key)?
        .map(|v| dec(v, "a suppression entry"))
        .transpose()
}

/// Puts `new` in its scope unless a stronger live entry is there.
fn upsert(tx: &mut Tx<'_>, tenant: &str, new: Entry) -> Result<()> {
    let key = entry_key(tenant, &new.contact, &new.scope);
    let keep = match get_entry(tx, &key)? {
        None => new,
        Some(old) if !old.active_at(new.since) => new,
        Some(old) if old.reason == new.reason => match new.reason {
            Reason::SoftBounces => Entry {
                expires_at: old.expires_at.max(new.expires_at),
                ..old
            },
            Reason::Manual => Entry {
                since: old.since,
                ..new
            },
            _ => old,
        },
        Some(old) if new.reason.rank() > old.reason.rank() => new,
        Some(old) => old,
    };
    tx.put(key, enc(&keep)?);
    Ok(())
}

impl Projection for SuppressionList {
    fn name(&self) -> &'static str {
        NAME
    }

    fn format(&self) -> u32 {
        FORMAT
    }

    fn apply_batch(
        &self,
        tx: &mut Tx<'_>,
        records: &[Record],
        inputs: &[Input],
        from: u64,
    ) -> Result<()> {
        let mut rules = None;
        for (r, i) in from_position(records, inputs, from) {
            apply_one(tx, &mut rules, r, i)?;
        }
        Ok(())
    }
}

/// The rules of the tenant last read in this batch, so a batch decodes a
/// tenant's policy once (a policy event clears it).
type RulesCache = Option<(String, SuppressionRules)>;

fn apply_one(
    tx: &mut Tx<'_>,
    cache: &mut RulesCache,
    record: &Record,
    input: &Input,
) -> Result<()> {
    let tenant = record.tenant.as_str();
    let event = match input {
        Input::Policy(p) => {
            *cache = None;
            return store_policy(tx, tenant, p);
        }
        Input::Email(e, _) => e,
        Input::Other => return Ok(()),
    };
    if !matches!(
        event.body,
        EventBody::Bounced { .. }
            | EventBody::ComplaintReceived { .. }
            | EventBody::SubscriptionChanged { .. }
            | EventBody::SuppressionAdded { .. }
            | EventBody::SuppressionRemoved { .. }
    ) {
        return Ok(());
    }
    let rules = match cache {
        Some((t, rules)) if t == tenant => *rules,
        _ => {
            let rules = policy(tx, tenant)?.suppression;
            *cache = Some((tenant.to_owned(), rules));
            rules
        }
    };
    let contact = event.envelope.contact;
    let at = event.envelope.occurred_at;
    let entry = |scope: &str, reason: Reason| Entry {
        contact,
        scope: scope.to_owned(),
        reason,
        note: None,
        since: at,
        event_id: record.event_id,
        position: record.position,
        expires_at: None,
    };
    match &event.body {
        EventBody::Bounced {
            class: BounceClass::Hard,
            ..
        } if rules.hard_bounce => upsert(tx, tenant, entry(ALL, Reason::HardBounce))?,
        EventBody::Bounced {
            class: BounceClass::Soft,
            ..
        } if rules.soft_bounce_threshold > 0 => {
            let window = i64::from(rules.soft_bounce_window_days) * DAY_MICROS;
            let key = soft_key(tenant, &contact);
            let mut times: Vec<i64> = match tx.get(&key)? {
                Some(v) => dec(v, "soft bounce history")?,
                None => Vec::new(),
            };
            times.push(at);
            times.sort_unstable();
            let newest = times.last().copied().unwrap_or(at);
            times.retain(|t| *t >= newest.saturating_sub(window));
            let threshold = rules.soft_bounce_threshold as usize;
            // Keep no more history than the rule can use.
            if times.len() > threshold {
                times.drain(..times.len() - threshold);
            }
            let in_window = times
                .iter()
                .filter(|t| **t <= at && **t >= at.saturating_sub(window))
                .count();
            tx.put(key, enc(&times)?);
            if in_window >= threshold {
                let mut e = entry(ALL, Reason::SoftBounces);
                e.expires_at =
                    Some(at.saturating_add(i64::from(rules.soft_bounce_expiry_days) * DAY_MICROS));
                upsert(tx, tenant, e)?;
            }
        }
        EventBody::ComplaintReceived { .. } if rules.complaint => {
            upsert(tx, tenant, entry(ALL, Reason::Complaint))?;
        }
        EventBody::SubscriptionChanged {
            subscribed: false,
            scope,
        } if rules.unsubscribe => upsert(tx, tenant, entry(scope, Reason::Unsubscribe))?,
        EventBody::SubscriptionChanged {
            subscribed: true,
            scope,
        } => {
            let key = entry_key(tenant, &contact, scope);
            if get_entry(tx, &key)?.is_some_and(|e| e.reason == Reason::Unsubscribe) {
                tx.delete(key);
            }
        }
        EventBody::SuppressionAdded {
            reason,
            scope,
            expires_at,
        } => {
            let mut e = entry(scope, Reason::Manual);
            e.note.clone_from(reason);
            e.expires_at = *expires_at;
            upsert(tx, tenant, e)?;
        }
        EventBody::SuppressionRemoved { reason, scope } => {
            let key = entry_key(tenant, &contact, scope);
            if let Some(old) = get_entry(tx, &key)?
                && (old.reason != Reason::Complaint || reason.is_some())
            {
                tx.delete(key);
                if scope == ALL {
                    tx.delete(soft_key(tenant, &contact));
                }
            }
        }
        _ => {}
    }
    Ok(())
}

impl SuppressionList {
    /// May `contact` be mailed in `scope` (`None`: all mail) at `now`? An
    /// entry in `all` suppresses every scope; an entry in a topic suppresses
    /// that topic.
    ///
    /// # Errors
    /// A storage failure or an undecodable entry.
    pub fn check(
        store: &dyn StateStore,
        tenant: &str,
        contact: &Pseudonym,
        scope: Option<&str>,
        now: i64,
    ) -> Result<Decision> {
        let mut scopes = vec![ALL];
        if let Some(s) = scope.filter(|s| *s != ALL) {
            scopes.push(s);
        }
        for s in scopes {
            if let Some(v) = store.get(&entry_key(tenant, contact, s))? {
                let e: Entry = dec(&v, "a suppression entry")?;
                if e.active_at(now) {
                    return Ok(Decision::Suppressed(e));
                }
            }
        }
        Ok(Decision::Allowed)
    }

    /// Every entry of `contact`, live or lapsed.
    ///
    /// # Errors
    /// A storage failure or an undecodable entry.
    pub fn entries_of(
        store: &dyn StateStore,
        tenant: &str,
        contact: &Pseudonym,
    ) -> Result<Vec<Entry>> {
        let mut prefix = tenant_key(tenant, ENTRIES);
        prefix.extend_from_slice(contact.as_bytes());
        let mut raw = Vec::new();
        store.scan(&prefix, &prefix_end(&prefix), false, &mut |_, v| {
            raw.push(v.to_vec());
            true
        })?;
        raw.iter().map(|v| dec(v, "a suppression entry")).collect()
    }

    /// The tenant's entries (live at `now` unless `include_lapsed`), in
    /// pseudonym order, up to `limit` after `cursor`.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for a bad cursor or limit; a storage failure.
    pub fn list(
        store: &dyn StateStore,
        tenant: &str,
        cursor: Option<&str>,
        limit: usize,
        now: i64,
        include_lapsed: bool,
    ) -> Result<Page<Entry>> {
        if limit == 0 || limit > MAX_PAGE {
            return Err(Error::InvalidInput(format!(
                "limit must be 1 to {MAX_PAGE}"
            )));
        }
        let prefix = tenant_key(tenant, ENTRIES);
        let mut start = prefix.clone();
        if let Some(c) = cursor {
            let tail = unhex_any(c).ok_or_else(|| {
                Error::InvalidInput("cursor is not one this service returned".into())
            })?;
            start.extend_from_slice(&tail);
            start.push(0);
        }
        let end = prefix_end(&prefix);
        let mut items = Vec::new();
        let mut next = None;
        let mut failure = None;
        store.scan(&start, &end, false, &mut |k, v| {
            if items.len() == limit {
                next = k.get(prefix.len()..).map(hex);
                return false;
            }
            match dec::<Entry>(v, "a suppression entry") {
                Ok(e) => {
                    if include_lapsed || e.active_at(now) {
                        items.push((k.to_vec(), e));
                    }
                    true
                }
                Err(e) => {
                    failure = Some(e);
                    false
                }
            }
        })?;
        if let Some(e) = failure {
            return Err(e);
        }
        // The cursor names the last key returned; the next page starts after it.
        if next.is_some() {
            next = items
                .last()
                .and_then(|(k, _)| k.get(prefix.len()..))
                .map(hex);
        }
        Ok(Page {
            items: items.into_iter().map(|(_, e)| e).collect(),
            next,
        })
    }
}

fn unhex_any(text: &str) -> Option<Vec<u8>> {
    if text.is_empty() || !text.len().is_multiple_of(2) || text.len() > 2 * 1024 {
        return None;
    }
    unhex(text, text.len() / 2)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The layout, frozen: a change here is a new [`FORMAT`].
    #[test]
    fn keys_are_frozen() {
        let p = Pseudonym::from_hex(&"ab".repeat(16)).expect("pseudonym");
        let mut want = b"acme\0S".to_vec();
        want.extend_from_slice(&[0xab; 16]);
        let soft = {
            let mut w = b"acme\0B".to_vec();
            w.extend_from_slice(&[0xab; 16]);
            w
        };
        want.extend_from_slice(b"\0\x03all");
        assert_eq!(entry_key("acme", &p, "all"), want);
        assert_eq!(soft_key("acme", &p), soft);
    }
}
