//! A realistic model of email traffic, shared by the benches and the tests
//! (feature `test-util`), so neither flatters the storage layout.
//!
//! What makes it realistic, as the log sees it:
//! - **Tenants of uneven size**: each tenant's share of the mail is its
//!   weight (by default 60, 20, 10, 7 and 3 per cent).
//! - **Provider-style ids**: every event id is random, as a webhook's id
//!   (derived by hashing the provider's own id) is.
//! - **A message's events spread over time and batches**: `sent`; then
//!   `delivered` seconds later, or a `deferred` and a delivery minutes
//!   later, or a hard or soft `bounced`; opens from seconds (machine
//!   opens) to hours later, clicks after opens, a few complaints and
//!   unsubscribes. Each tenant's events come out in time order, so the
//!   later events of a message land many batches after its `sent`.
//!
//! Everything is derived from the seed: two generators of one config give
//! the same events. Events come as canonical JSON (what `POST /v1/events`
//! takes); [`Batch::parsed`] gives them as the in-process API takes them.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use uuid::Uuid;

use crate::email::{CanonicalEvent, parse_event, rfc3339};
use crate::error::Result;

/// What a [`Traffic`] generates.
#[derive(Debug, Clone)]
pub struct TrafficConfig {
    /// The seed every choice derives from. Default 1.
    pub seed: u64,
    /// Tenant names and their relative share of messages. Default five
    /// tenants, `t0` to `t4`, weighted 60, 20, 10, 7 and 3.
    pub tenants: Vec<(String, u32)>,
    /// Contacts across all tenants, shared out by weight. Default 200,000.
    pub contacts: u64,
    /// Messages sent per simulated second across all tenants. Default 20:
    /// with opens up to three hours later, about 200,000 messages are
    /// in flight at once.
    pub messages_per_second: u64,
    /// The simulated time of the first send, in microseconds since the
    /// Unix epoch. Default 2026-01-05T08:00:00Z.
    pub start_micros: i64,
}

impl Default for TrafficConfig {
    fn default() -> Self {
        Self {
            seed: 1,
            tenants: [60, 20, 10, 7, 3]
                .iter()
                .enumerate()
                .map(|(i, &w)| (format!("t{i}"), w))
                .collect(),
            contacts: 200_000,
            messages_per_second: 20,
            start_micros: 1_767_600_000_000_000,
        }
    }
}

/// A small, fast, seeded generator (SplitMix64): the model needs
/// reproducible choices, not cryptographic ones.
#[derive(Debug, Clone)]
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A value in `lo..hi` (`lo` when the range is empty).
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        if hi <= lo {
            lo
        } else {
            lo + self.next() % (hi - lo)
        }
    }

    /// True with probability `per_mille` / 1000.
    fn chance(&mut self, per_mille: u64) -> bool {
        self.next() % 1000 < per_mille
    }

    fn uuid(&mut self) -> Uuid {
        let mut b = [0u8; 16];
        b[..8].copy_from_slice(&self.next().to_le_bytes());
        b[8..].copy_from_slice(&self.next().to_le_bytes());
        uuid::Builder::from_random_bytes(b).into_uuid()
    }
}

const SECOND: i64 = 1_000_000;
const MINUTE: i64 = 60 * SECOND;
const HOUR: i64 = 60 * MINUTE;

/// An event due at a time: what happens to a message after its send.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Due {
    Delivered,
    Deferred,
    HardBounce,
    SoftBounce,
    Opened { machine: bool },
    Clicked,
    Complained,
    Unsubscribed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Pending {
    at: i64,
    seq: u64,
    message: u64,
    contact: u64,
    due: Due,
}

/// One tenant's traffic: its clock, its next send, its events due.
#[derive(Debug)]
struct TenantTraffic {
    name: String,
    /// Simulated microseconds between two of its sends.
    interval: i64,
    contacts: u64,
    next_send: i64,
    messages: u64,
    seq: u64,
    due: BinaryHeap<Reverse<Pending>>,
}

/// One batch of one tenant's events, in time order.
#[derive(Debug, Clone)]
pub struct Batch {
    /// The index of the tenant in [`TrafficConfig::tenants`].
    pub tenant: usize,
    /// The tenant's name.
    pub tenant_name: String,
    /// The events, as canonical JSON objects.
    pub events: Vec<String>,
}

impl Batch {
    /// The events parsed, as `EmailLedger::append` takes them.
    ///
    /// # Errors
    /// Never for generated events; a parse error otherwise.
    pub fn parsed(&self) -> Result<Vec<CanonicalEvent>> {
        self.events.iter().map(|e| parse_event(e)).collect()
    }

    /// The request body of `POST /v1/events`: `{"events": [...]}`.
    #[must_use]
    pub fn body(&self) -> String {
        let mut body =
            String::with_capacity(20 + self.events.iter().map(|e| e.len() + 1).sum::<usize>());
        body.push_str(r#"{"events":["#);
        for (i, e) in self.events.iter().enumerate() {
            if i > 0 {
                body.push(',');
            }
            body.push_str(e);
        }
        body.push_str("]}");
        body
    }
}

/// The generator: [`Traffic::next_batch`] picks a tenant by weight and
/// gives its next events.
#[derive(Debug)]
pub struct Traffic {
    rng: Rng,
    tenants: Vec<TenantTraffic>,
    weights: Vec<u64>,
    total_weight: u64,
    generated: u64,
}

impl Traffic {
    /// A generator of `config`'s traffic.
    ///
    /// # Panics
    /// If `config` has no tenant, or only weights of 0 (a caller's bug).
    #[must_use]
    pub fn new(config: &TrafficConfig) -> Self {
        let weights: Vec<u64> = config.tenants.iter().map(|(_, w)| u64::from(*w)).collect();
        let total_weight: u64 = weights.iter().sum();
        assert!(total_weight > 0, "traffic needs a tenant with a weight");
        let rate = config.messages_per_second.max(1);
        let tenants = config
            .tenants
            .iter()
            .zip(&weights)
            .map(|((name, _), &w)| {
                // This tenant's sends per simulated second: its share of
                // the rate, so its clock runs as fast as the others'.
                let per_second = (rate * w).max(1);
                TenantTraffic {
                    name: name.clone(),
                    interval: i64::try_from(SECOND as u64 * total_weight / per_second)
                        .unwrap_or(SECOND)
                        .max(1),
                    contacts: (config.contacts * w / total_weight).max(1),
                    next_send: config.start_micros,
                    messages: 0,
                    seq: 0,
                    due: BinaryHeap::new(),
                }
            })
            .collect();
        Self {
            rng: Rng(config.seed),
            tenants,
            weights,
            total_weight,
            generated: 0,
        }
    }

    /// Events generated so far.
    #[must_use]
    pub fn generated(&self) -> u64 {
        self.generated
    }

    /// The next `n` events of one tenant, chosen by weight.
    pub fn next_batch(&mut self, n: usize) -> Batch {
        let mut pick = self.rng.range(0, self.total_weight);
        let mut tenant = 0;
        for (i, &w) in self.weights.iter().enumerate() {
            if pick < w {
                tenant = i;
                break;
            }
            pick -= w;
        }
        let events = (0..n).map(|_| self.next_event(tenant)).collect();
        self.generated += n as u64;
        Batch {
            tenant,
            tenant_name: self.tenants[tenant].name.clone(),
            events,
        }
    }

    /// The tenant's next event in time: a due event, or its next send.
    fn next_event(&mut self, tenant: usize) -> String {
        let rng = &mut self.rng;
        let t = &mut self.tenants[tenant];
        if let Some(Reverse(p)) = t.due.peek().copied()
            && p.at <= t.next_send
        {
            t.due.pop();
            return t.follow_up(rng, p);
        }
        t.send(rng)
    }
}

impl TenantTraffic {
    fn schedule(&mut self, at: i64, message: u64, contact: u64, due: Due) {
        self.seq += 1;
        self.due.push(Reverse(Pending {
            at,
            seq: self.seq,
            message,
            contact,
            due,
        }));
    }

    /// A `sent`, and what will happen to the message after it.
    fn send(&mut self, rng: &mut Rng) -> String {
        let at = self.next_send;
        self.next_send += self.interval;
        let message = self.messages;
        self.messages += 1;
        let contact = rng.range(0, self.contacts);
        let after = |rng: &mut Rng, lo: i64, hi: i64| {
            at + i64::try_from(rng.range(lo as u64, hi as u64)).unwrap_or(lo)
        };
        let roll = rng.range(0, 1000);
        let delivered = if roll < 20 {
            let when = after(rng, SECOND, 30 * SECOND);
            self.schedule(when, message, contact, Due::HardBounce);
            None
        } else if roll < 30 {
            let when = after(rng, SECOND, 30 * SECOND);
            self.schedule(when, message, contact, Due::SoftBounce);
            None
        } else if roll < 60 {
            let deferred = after(rng, SECOND, 10 * SECOND);
            self.schedule(deferred, message, contact, Due::Deferred);
            let when = after(rng, 5 * MINUTE, 30 * MINUTE);
            self.schedule(when, message, contact, Due::Delivered);
            Some(when)
        } else if roll < 70 {
            None
        } else {
            let when = after(rng, SECOND, 20 * SECOND);
            self.schedule(when, message, contact, Due::Delivered);
            Some(when)
        };
        if let Some(d) = delivered {
            self.engagement(rng, d, message, contact);
        }
        let id = rng.uuid();
        let size = rng.range(2_000, 80_000);
        format!(
            r#"{{"id":"{id}","type":"sent","message_id":"{m}","recipient":"{r}","occurred_at":"{ts}","subject":"Your order {message} has shipped","size":{size},{common}}}"#,
            m = self.message_id(message),
            r = self.address(contact),
            ts = rfc3339(at),
            common = self.common(message),
        )
    }

    /// Opens, clicks, complaints and unsubscribes after a delivery at `d`.
    fn engagement(&mut self, rng: &mut Rng, d: i64, message: u64, contact: u64) {
        let at = |rng: &mut Rng, lo: i64, hi: i64| {
            d + i64::try_from(rng.range(lo as u64, hi as u64)).unwrap_or(lo)
        };
        if rng.chance(150) {
            let when = at(rng, SECOND, 5 * SECOND);
            self.schedule(when, message, contact, Due::Opened { machine: true });
        }
        if rng.chance(350) {
            let open = at(rng, MINUTE, 3 * HOUR);
            self.schedule(open, message, contact, Due::Opened { machine: false });
            if rng.chance(200) {
                let again = open + i64::try_from(rng.range(60, 3_600)).unwrap_or(60) * SECOND;
                self.schedule(again, message, contact, Due::Opened { machine: false });
            }
            if rng.chance(250) {
                let click = open + i64::try_from(rng.range(5, 120)).unwrap_or(5) * SECOND;
                self.schedule(click, message, contact, Due::Clicked);
            }
            if rng.chance(10) {
                let when = open + i64::try_from(rng.range(10, 600)).unwrap_or(10) * SECOND;
                self.schedule(when, message, contact, Due::Unsubscribed);
            }
        }
        if rng.chance(2) {
            let when = at(rng, MINUTE, 3 * HOUR);
            self.schedule(when, message, contact, Due::Complained);
        }
    }

    fn follow_up(&mut self, rng: &mut Rng, p: Pending) -> String {
        let (kind, extra) = match p.due {
            Due::Delivered => (
                "delivered",
                format!(
                    r#","smtp_response":"250 2.0.0 OK {:x}","mx_host":"mx{}.example.net","tls":true"#,
                    rng.next(),
                    p.contact % 7
                ),
            ),
            Due::Deferred => (
                "deferred",
                r#","smtp_code":451,"enhanced_status":"4.7.1","attempt":1"#.to_owned(),
            ),
            Due::HardBounce => (
                "bounced",
                r#","class":"hard","status":"5.1.1","diagnostic":"550 5.1.1 user unknown""#
                    .to_owned(),
            ),
            Due::SoftBounce => (
                "bounced",
                r#","class":"soft","status":"4.2.2","diagnostic":"452 4.2.2 mailbox full""#
                    .to_owned(),
            ),
            Due::Opened { machine } => (
                "opened",
                format!(
                    r#","machine":{machine},"ip":"198.51.100.{}","user_agent":"Mozilla/5.0 (X11; Linux x86_64)""#,
                    p.contact % 250
                ),
            ),
            Due::Clicked => (
                "clicked",
                format!(
                    r#","url":"https://shop.example.com/orders/{}","bot":false,"ip":"198.51.100.{}""#,
                    p.message,
                    p.contact % 250
                ),
            ),
            Due::Complained => ("complained", r#","feedback_type":"abuse""#.to_owned()),
            Due::Unsubscribed => ("unsubscribed", String::new()),
        };
        let id = rng.uuid();
        format!(
            r#"{{"id":"{id}","type":"{kind}","message_id":"{m}","recipient":"{r}","occurred_at":"{ts}",{common}{extra}}}"#,
            m = self.message_id(p.message),
            r = self.address(p.contact),
            ts = rfc3339(p.at),
            common = self.common(p.message),
        )
    }

    fn message_id(&self, message: u64) -> String {
        format!("{}-{message:x}@mail.example.com", self.name)
    }

    fn address(&self, contact: u64) -> String {
        format!("c{contact}@{}.example.org", self.name)
    }

    /// The clear fields every event of a message carries.
    fn common(&self, message: u64) -> String {
        format!(
            r#""provider":"postal","tags":["order","{tag}"],"campaign":"c{campaign}","sending_domain":"mail.{name}.example.com""#,
            tag = ["eu", "us", "vip"][usize::try_from(message % 3).unwrap_or(0)],
            campaign = message / 50_000,
            name = self.name,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_seed_gives_the_same_events_and_every_event_parses() {
        let config = TrafficConfig::default();
        let (mut a, mut b) = (Traffic::new(&config), Traffic::new(&config));
        for _ in 0..50 {
            let (x, y) = (a.next_batch(100), b.next_batch(100));
            assert_eq!(x.events, y.events);
            let parsed = x.parsed().expect("generated events parse");
            assert_eq!(parsed.len(), 100);
            for e in parsed {
                e.validate().expect("generated events are valid");
            }
        }
    }

    #[test]
    fn a_messages_events_spread_over_batches_and_tenants_are_uneven() {
        let mut traffic = Traffic::new(&TrafficConfig::default());
        let mut first_batch: std::collections::HashMap<String, usize> = Default::default();
        let mut spreads = Vec::new();
        let mut per_tenant = [0u64; 5];
        let mut types: std::collections::BTreeMap<String, u64> = Default::default();
        let mut ids = std::collections::HashSet::new();
        for n in 0..3_000 {
            let batch = traffic.next_batch(100);
            per_tenant[batch.tenant] += 100;
            for e in batch.parsed().unwrap() {
                assert!(ids.insert(e.id), "ids are unique");
                assert_ne!(
                    e.id.get_version_num(),
                    7,
                    "ids are random, not time-ordered"
                );
                *types.entry(e.event_type.clone()).or_default() += 1;
                let key = format!("{}/{}", batch.tenant, e.message_id.unwrap());
                match first_batch.get(&key) {
                    Some(&b) => spreads.push(n - b),
                    None => {
                        first_batch.insert(key, n);
                    }
                }
            }
        }
        // The largest tenant has several times the smallest one's events.
        assert!(per_tenant[0] > 10 * per_tenant[4], "{per_tenant:?}");
        // Later events of a message mostly come in later batches, some
        // far later (the opens hours after the send).
        let later = spreads.iter().filter(|&&d| d > 0).count();
        assert!(
            later * 10 > spreads.len() * 8,
            "{later} of {}",
            spreads.len()
        );
        assert!(
            spreads.iter().any(|&d| d > 500),
            "some events come hundreds of batches later"
        );
        for kind in [
            "sent",
            "delivered",
            "deferred",
            "bounced",
            "opened",
            "clicked",
        ] {
            assert!(types.get(kind).is_some_and(|&n| n > 0), "{kind}: {types:?}");
        }
    }
}
