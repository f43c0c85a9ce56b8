//! Analytics: counters in hourly buckets per tenant, overall and by tag,
//! campaign, sending domain and recipient domain; queries roll them up to
//! days and derive rates.
//!
//! The recipient domain (the part after `@`, lower-cased) is the only value
//! derived from an address that any projection keeps in clear: it is what
//! deliverability is judged by (a mailbox provider), and it names no person.
//!
//! # What is counted
//!
//! Each event counts in the hour of its `occurred_at`, under every dimension
//! it has; an event that lacks a tag, campaign or sending domain (opens and
//! clicks often do) takes its message's, from the first event of the
//! message that had them.
//!
//! - `opened` counts people's opens; opens flagged `machine` (privacy
//!   proxies such as Apple Mail Privacy Protection prefetching) count as
//!   `machine_opened` instead. `unique_opened` counts a message's first
//!   human open.
//! - `clicked` counts people's clicks; a click flagged `bot`, or made within
//!   the tenant's `bot_click_window_secs` of the message's delivery (link
//!   scanners follow links as the message arrives), counts as `bot_clicked`.
//!   `unique_clicked` counts a message's first human click.
//! - Rates: delivery = delivered / sent, bounce = bounced / sent, open =
//!   unique opened / delivered, click = unique clicked / delivered,
//!   complaint = complained / delivered; absent when the divisor is 0.
//!
//! # Keys (after `tenant \0`)
//!
//! | table | key | value |
//! |---|---|---|
//! | `A` | dimension (1), value (u16-prefixed), hour (8, time order) | [`Counts`] |
//! | `U` | the position of the message's first event (8, big endian; [`crate::MessageRef::first`]) | what analytics remembers of the message: its attributes, first delivery time, whether a person opened or clicked |
//!
//! Both tables are written at their recent end: buckets by hour within
//! each dimension and value, message states in the log's order.

use std::collections::BTreeMap;

use mailledger_core::Record;
use mailledger_core::email::{BounceClass, EventBody, SealedEvent};
use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};

use crate::codec::{dec, enc, prefix_end, push_part, start_key, tenant_key, time_bytes, time_from};
use crate::error::{Error, Result};
use crate::projection::{Input, Projection, from_position, opens_message, policy, store_policy};
use crate::state::{StateStore, Tx};

/// The version of this projection's state layout ([`Projection::format`]).
/// 3: the stored tenant policy gained `case_sensitive_local_part`.
/// 4: message states keyed by their message's first position.
pub const FORMAT: u32 = 4;

/// The projection's name.
pub const NAME: &str = "analytics";

const BUCKETS: u8 = b'A';
const MESSAGES: u8 = b'U';
const HOUR_MICROS: i64 = 3_600_000_000;
const DAY_MICROS: i64 = 24 * HOUR_MICROS;

/// The most buckets one query returns.
pub const MAX_BUCKETS: usize = 10_000;

/// What counts are grouped by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Dimension {
    /// No grouping: the tenant's totals.
    Total,
    /// By tag (an event with two tags counts under both).
    Tag,
    /// By campaign.
    Campaign,
    /// By sending domain.
    SendingDomain,
    /// By recipient domain.
    RecipientDomain,
}

impl Dimension {
    fn byte(self) -> u8 {
        match self {
            Self::Total => b'*',
            Self::Tag => b'g',
            Self::Campaign => b'c',
            Self::SendingDomain => b's',
            Self::RecipientDomain => b'r',
        }
    }

    /// Parses `tag`, `campaign`, `sending_domain` or `recipient_domain`.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for another name.
    pub fn parse(s: &str) -> Result<Self> {
        Ok(match s {
            "tag" => Self::Tag,
            "campaign" => Self::Campaign,
            "sending_domain" => Self::SendingDomain,
            "recipient_domain" => Self::RecipientDomain,
            _ => {
                return Err(Error::InvalidInput(
                    "group_by must be tag, campaign, sending_domain or recipient_domain".into(),
                ));
            }
        })
    }
}

/// Counters of one bucket.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[allow(missing_docs)]
pub struct Counts {
    pub sent: u64,
    pub delivered: u64,
    pub deferred: u64,
    pub rejected: u64,
    pub bounced_hard: u64,
    pub bounced_soft: u64,
    pub bounced_block: u64,
    pub bounced_undetermined: u64,
    pub complained: u64,
    pub opened: u64,
    pub unique_opened: u64,
    pub machine_opened: u64,
    pub clicked: u64,
    pub unique_clicked: u64,
    pub bot_clicked: u64,
    pub unsubscribed: u64,
}

impl Counts {
    fn add(&mut self, o: &Self) {
        self.sent += o.sent;
        self.delivered += o.delivered;
        self.deferred += o.deferred;
        self.rejected += o.rejected;
        self.bounced_hard += o.bounced_hard;
        self.bounced_soft += o.bounced_soft;
        self.bounced_block += o.bounced_block;
        self.bounced_undetermined += o.bounced_undetermined;
        self.complained += o.complained;
        self.opened += o.opened;
        self.unique_opened += o.unique_opened;
        self.machine_opened += o.machine_opened;
        self.clicked += o.clicked;
        self.unique_clicked += o.unique_clicked;
        self.bot_clicked += o.bot_clicked;
        self.unsubscribed += o.unsubscribed;
    }

    /// Bounces of every class.
    #[must_use]
    pub fn bounced(&self) -> u64 {
        self.bounced_hard + self.bounced_soft + self.bounced_block + self.bounced_undetermined
    }

    fn is_zero(&self) -> bool {
        *self == Self::default()
    }

    /// The rates these counts give.
    #[must_use]
    pub fn rates(&self) -> Rates {
        #[allow(clippy::cast_precision_loss)]
        let r = |n: u64, d: u64| (d > 0).then(|| n as f64 / d as f64);
        Rates {
            delivery: r(self.delivered, self.sent),
            bounce: r(self.bounced(), self.sent),
            open: r(self.unique_opened, self.delivered),
            click: r(self.unique_clicked, self.delivered),
            complaint: r(self.complained, self.delivered),
        }
    }
}

/// Rates derived from counts; `None` where the divisor is 0.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[allow(missing_docs)]
pub struct Rates {
    pub delivery: Option<f64>,
    pub bounce: Option<f64>,
    pub open: Option<f64>,
    pub click: Option<f64>,
    pub complaint: Option<f64>,
}

/// What a message's first attributed event said, for events that lack it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Attributes {
    tags: Vec<String>,
    campaign: Option<String>,
    sending_domain: Option<String>,
}

/// What analytics remembers of a message.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct MessageState {
    /// From the first event of the message that had attributes.
    attributes: Option<Attributes>,
    /// `occurred_at` of its first `delivered` event.
    delivered_at: Option<i64>,
    /// A person opened it.
    opened: bool,
    /// A person clicked in it.
    clicked: bool,
}

/// The analytics projection.
#[derive(Debug, Default, Clone, Copy)]
pub struct Analytics;

/// State decoded during a batch, written back once at its end: bucket
/// deltas (many events land in the same hour) and message states.
#[derive(Default)]
struct Batch {
    buckets: FxHashMap<Vec<u8>, Counts>,
    // Each message state read in the batch, and whether the batch changed it.
    messages: FxHashMap<Vec<u8>, (MessageState, bool)>,
    // The tenant whose bot-click window (µs) was last read, and that window.
    window: Option<(String, i64)>,
    // Reused to build keys, so a key already in a map costs no allocation.
    key: Vec<u8>,
}

/// The state of the message whose key is in `key`, read once per batch
/// (not at all for a `new` message: see [`opens_message`]).
fn message<'b>(
    messages: &'b mut FxHashMap<Vec<u8>, (MessageState, bool)>,
    tx: &mut Tx<'_>,
    key: &[u8],
    new: bool,
) -> Result<&'b mut (MessageState, bool)> {
    if !messages.contains_key(key) {
        let stored = if new { None } else { tx.read(key)? };
        let state = match stored {
            Some(v) => dec(&v, "an analytics message state")?,
            None => MessageState::default(),
        };
        messages.insert(key.to_vec(), (state, false));
    }
    messages
        .get_mut(key)
        .ok_or_else(|| Error::Corrupt("analytics message state vanished".into()))
}

/// Adds `c` to the bucket of `dim`, `value` and `hour`, building its key in
/// `key`.
#[allow(clippy::too_many_arguments)]
fn add(
    buckets: &mut FxHashMap<Vec<u8>, Counts>,
    key: &mut Vec<u8>,
    tenant: &str,
    dim: Dimension,
    value: &str,
    hour: i64,
    c: &Counts,
) {
    write_bucket_key(key, tenant, dim, value, hour);
    match buckets.get_mut(key.as_slice()) {
        Some(b) => b.add(c),
        None => {
            buckets.insert(key.clone(), *c);
        }
    }
}

/// The tenant's bot-click window in µs as of the event being applied, read
/// once per batch and tenant (a policy event in the batch clears `window`).
fn bot_click_window(
    window: &mut Option<(String, i64)>,
    tx: &mut Tx<'_>,
    tenant: &str,
) -> Result<i64> {
    if let Some((t, w)) = window.as_ref()
        && t == tenant
    {
        return Ok(*w);
    }
    let w = i64::from(policy(tx, tenant)?.analytics.bot_click_window_secs) * 1_000_000;
    *window = Some((tenant.to_owned(), w));
    Ok(w)
}

impl Batch {
    fn flush(self, tx: &mut Tx<'_>) -> Result<()> {
        for (k, delta) in self.buckets {
            let mut c: Counts = match tx.read(&k)? {
                Some(v) => dec(&v, "an analytics bucket")?,
                None => Counts::default(),
            };
            c.add(&delta);
            tx.put(k, enc(&c)?);
        }
        for (k, (m, changed)) in self.messages {
            if changed {
                tx.put(k, enc(&m)?);
            }
        }
        Ok(())
    }
}

fn write_bucket_key(k: &mut Vec<u8>, tenant: &str, dim: Dimension, value: &str, hour: i64) {
    start_key(k, tenant, BUCKETS);
    k.push(dim.byte());
    push_part(k, value.as_bytes());
    k.extend_from_slice(&time_bytes(hour));
}

/// The key of the state of the message whose first event is at `first`.
fn write_message_key(k: &mut Vec<u8>, tenant: &str, first: u64) {
    start_key(k, tenant, MESSAGES);
    k.extend_from_slice(&first.to_be_bytes());
}

fn bucket_key(tenant: &str, dim: Dimension, value: &str, hour: i64) -> Vec<u8> {
    let mut k = Vec::new();
    write_bucket_key(&mut k, tenant, dim, value, hour);
    k
}

fn hour_of(micros: i64) -> i64 {
    micros.div_euclid(HOUR_MICROS) * HOUR_MICROS
}

impl Projection for Analytics {
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
        let mut batch = Batch::default();
        batch.messages.reserve(records.len());
        for (r, i) in from_position(records, inputs, from) {
            apply_one(tx, &mut batch, r, i)?;
        }
        batch.flush(tx)
    }
}

fn apply_one(tx: &mut Tx<'_>, batch: &mut Batch, record: &Record, input: &Input) -> Result<()> {
    let tenant = record.tenant.as_str();
    let Batch {
        buckets,
        messages,
        window,
        key,
    } = batch;
    let (event, mkey): (&SealedEvent, _) = match input {
        Input::Policy(p) => {
            *window = None;
            return store_policy(tx, tenant, p);
        }
        Input::Email(e, mkey) => (e, mkey),
        Input::Other => return Ok(()),
    };
    let env = &event.envelope;
    let at = env.occurred_at;
    // The message's state, when the event names a message.
    let mut state = match mkey {
        Some(m) => {
            write_message_key(key, tenant, m.first);
            Some(message(messages, tx, key, opens_message(record, &m.key))?)
        }
        None => None,
    };
    let mut c = Counts::default();
    match &event.body {
        EventBody::MessageSent { .. } => c.sent = 1,
        EventBody::Delivered { .. } => {
            c.delivered = 1;
            if let Some((m, changed)) = state.as_deref_mut()
                && m.delivered_at.is_none()
            {
                m.delivered_at = Some(at);
                *changed = true;
            }
        }
        EventBody::DeliveryDeferred { .. } => c.deferred = 1,
        EventBody::MessageRejected { .. } => c.rejected = 1,
        EventBody::Bounced { class, .. } => match class {
            BounceClass::Hard => c.bounced_hard = 1,
            BounceClass::Soft => c.bounced_soft = 1,
            BounceClass::Block => c.bounced_block = 1,
            BounceClass::Undetermined => c.bounced_undetermined = 1,
        },
        EventBody::ComplaintReceived { .. } => c.complained = 1,
        EventBody::Opened { machine: true, .. } => c.machine_opened = 1,
        EventBody::Opened { .. } => {
            c.opened = 1;
            if let Some((m, changed)) = state.as_deref_mut()
                && !m.opened
            {
                m.opened = true;
                *changed = true;
                c.unique_opened = 1;
            }
        }
        EventBody::LinkClicked { bot, .. } => {
            let delivered = state.as_ref().and_then(|(m, _)| m.delivered_at);
            let scanner = *bot
                || match delivered {
                    Some(d) if at >= d => {
                        let w = bot_click_window(window, tx, tenant)?;
                        w > 0 && at - d < w
                    }
                    _ => false,
                };
            if scanner {
                c.bot_clicked = 1;
            } else {
                c.clicked = 1;
                if let Some((m, changed)) = state.as_deref_mut()
                    && !m.clicked
                {
                    m.clicked = true;
                    *changed = true;
                    c.unique_clicked = 1;
                }
            }
        }
        EventBody::SubscriptionChanged {
            subscribed: false, ..
        } => c.unsubscribed = 1,
        _ => {}
    }
    if c.is_zero() {
        return Ok(());
    }
    // An event without attributes takes its message's; the first event
    // that has them gives them to its message.
    let own = !env.tags.is_empty() || env.campaign.is_some() || env.sending_domain.is_some();
    let mut kept: Option<&Attributes> = None;
    if let Some((m, changed)) = state {
        match &m.attributes {
            Some(_) => kept = m.attributes.as_ref(),
            None if own => {
                m.attributes = Some(Attributes {
                    tags: env.tags.clone(),
                    campaign: env.campaign.clone(),
                    sending_domain: env.sending_domain.clone(),
                });
                *changed = true;
            }
            None => {}
        }
    }
    let tags = match kept {
        Some(a) if env.tags.is_empty() => &a.tags,
        _ => &env.tags,
    };
    let campaign = env
        .campaign
        .as_deref()
        .or_else(|| kept.and_then(|a| a.campaign.as_deref()));
    let sending_domain = env
        .sending_domain
        .as_deref()
        .or_else(|| kept.and_then(|a| a.sending_domain.as_deref()));
    let hour = hour_of(at);
    let mut count = |dim, value: &str| add(buckets, key, tenant, dim, value, hour, &c);
    count(Dimension::Total, "");
    for t in tags {
        count(Dimension::Tag, t);
    }
    if let Some(v) = campaign {
        count(Dimension::Campaign, v);
    }
    if let Some(v) = sending_domain {
        count(Dimension::SendingDomain, v);
    }
    if let Some(v) = &env.recipient_domain {
        count(Dimension::RecipientDomain, v);
    }
    Ok(())
}

/// The bucket size of a query.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Granularity {
    /// One bucket per hour.
    Hour,
    /// One bucket per day (UTC).
    Day,
}

/// An analytics query: `[from, to)` in µs since the epoch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    /// Start of the range, inclusive.
    pub from: i64,
    /// End of the range, exclusive.
    pub to: i64,
    /// Bucket size.
    pub granularity: Granularity,
    /// Grouping; [`Dimension::Total`] for none.
    pub group_by: Dimension,
}

/// One bucket of a result.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Bucket {
    /// The bucket's start, µs since the epoch.
    pub start: i64,
    /// The group's value (a tag, campaign or domain); `None` for totals.
    pub group: Option<String>,
    /// The counts.
    pub counts: Counts,
    /// The rates.
    pub rates: Rates,
}

impl Analytics {
    /// Counts and rates over a range, per bucket (only buckets with counts),
    /// ordered by group, then time; plus the totals of the whole range.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for an empty range or one with more than
    /// [`MAX_BUCKETS`] buckets; a storage failure.
    pub fn query(store: &dyn StateStore, tenant: &str, q: &Query) -> Result<(Vec<Bucket>, Counts)> {
        if q.from >= q.to {
            return Err(Error::InvalidInput("`from` must be before `to`".into()));
        }
        let size = match q.granularity {
            Granularity::Hour => HOUR_MICROS,
            Granularity::Day => DAY_MICROS,
        };
        if (q.to - q.from) / size > MAX_BUCKETS as i64 {
            return Err(Error::InvalidInput(format!(
                "the range holds more than {MAX_BUCKETS} buckets: use a coarser granularity"
            )));
        }
        let mut prefix = tenant_key(tenant, BUCKETS);
        prefix.push(q.group_by.byte());
        let end = prefix_end(&prefix);
        // Totals are one series: seek to the range's first hour.
        let start = if q.group_by == Dimension::Total {
            bucket_key(tenant, Dimension::Total, "", hour_of(q.from))
        } else {
            prefix.clone()
        };
        let mut grouped: BTreeMap<(String, i64), Counts> = BTreeMap::new();
        let mut total = Counts::default();
        let mut failure = None;
        let (from, to) = (hour_of(q.from), q.to);
        store.scan(&start, &end, false, &mut |k, v| {
            let Some(rest) = k.get(prefix.len()..) else {
                return true;
            };
            let Some(len) = rest
                .get(..2)
                .map(|b| usize::from(u16::from_be_bytes([b[0], b[1]])))
            else {
                return true;
            };
            let (Some(value), Some(hour)) = (rest.get(2..2 + len), rest.get(2 + len..2 + len + 8))
            else {
                return true;
            };
            let Ok(hour) = <[u8; 8]>::try_from(hour).map(time_from) else {
                return true;
            };
            if hour >= to {
                // The totals series is in hour order: nothing further is in
                // range. Grouped series go on with the next value.
                return q.group_by != Dimension::Total;
            }
            if hour < from {
                return true;
            }
            match dec::<Counts>(v, "an analytics bucket") {
                Ok(c) => {
                    let start = hour.div_euclid(size) * size;
                    let group = String::from_utf8_lossy(value).into_owned();
                    grouped.entry((group, start)).or_default().add(&c);
                    if q.group_by == Dimension::Total {
                        total.add(&c);
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
        let buckets = grouped
            .into_iter()
            .map(|((group, start), counts)| Bucket {
                start,
                group: (q.group_by != Dimension::Total).then_some(group),
                rates: counts.rates(),
                counts,
            })
            .collect();
        // Grouped counts can overlap (an event with two tags), so the
        // range's totals come from the totals series.
        if q.group_by != Dimension::Total {
            let q = Query {
                group_by: Dimension::Total,
                ..q.clone()
            };
            total = Self::query(store, tenant, &q)?.1;
        }
        Ok((buckets, total))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The layout, frozen: a change here is a new [`FORMAT`].
    #[test]
    fn keys_are_frozen() {
        let mut k = Vec::new();
        write_message_key(&mut k, "acme", 0x0102);
        assert_eq!(k, b"acme\0U\0\0\0\0\0\0\x01\x02");
        assert_eq!(
            bucket_key("acme", Dimension::Tag, "news", 0),
            b"acme\0Ag\0\x04news\x80\0\0\0\0\0\0\0"
        );
    }
}
