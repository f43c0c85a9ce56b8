//! Appending canonical events, step by step: check each event, identify
//! its contact, make the keys new contacts need, seal the personal fields,
//! group the events by stream, append, and tell each event's outcome.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use uuid::Uuid;

use super::{
    Appended, CanonicalEvent, Checked, EmailEventOf, EmailLedger, Envelope, EventBody, EventType,
    SealedEvent, TenantPolicy, ad, encode_payload, message_stream, strip,
};
use crate::crypto::{Cipher, Personal, SecretKey};
use crate::error::{Error, Result};
use crate::keys::{ContactKey, KeyState};
use crate::pseudonym::{Pseudonym, normalize};
use crate::record::{AppendOutcome, ExpectedVersion, NewEvent, StreamAppend};

/// An event's contact: its pseudonym and its recipient's domain.
struct Contact {
    pseudonym: Pseudonym,
    domain: String,
}

/// An event left out of a lenient append, and why (naming fields, never
/// values).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    /// Its index in the request.
    pub index: usize,
    /// The rule it broke.
    pub reason: String,
}

/// The events of an append that passed their checks, each with its
/// contact; and, in a lenient append, those that did not.
struct Admitted {
    policy: TenantPolicy,
    checked: Vec<Checked>,
    contacts: Vec<Contact>,
    skipped: Vec<Skipped>,
}

/// How each event of an append is written.
struct Plan {
    /// The position of the log's record of the event's id, when it is
    /// already there (nothing is written).
    known: Vec<Option<u64>>,
    /// For a late event of an erased contact: the destroyed key's
    /// generation. Its personal fields are sealed under a one-time key that
    /// is dropped at once (no key is made or kept), so they read as erased
    /// from the moment they are written; its raw payload is not kept.
    unkeyed: Vec<Option<u32>>,
    /// The live keys of the append's contacts, as the key store gave them
    /// while planning (or made them): sealing takes them from here, so
    /// each contact's key is looked up once an append.
    keys: HashMap<Pseudonym, ContactKey>,
}

/// The log appends that hold the sealed events, and where each event went
/// (`None`: not written, its id is already in the log).
struct Grouped {
    appends: Vec<StreamAppend>,
    slots: Vec<Option<(usize, usize)>>,
}

impl EmailLedger {
    /// Appends canonical events atomically: all are written, or none.
    ///
    /// Personal fields are sealed under each contact's key, made durable
    /// first when new. An event whose id the tenant's log already holds is
    /// not written again; its original position is returned.
    ///
    /// # Errors
    /// Invalid input (naming the field and the event's index), or a storage
    /// failure; nothing is appended then.
    pub async fn append(&self, tenant: &str, events: Vec<CanonicalEvent>) -> Result<Vec<Appended>> {
        self.append_scoped(tenant, events, &[], |id, _| id).await
    }

    /// As [`EmailLedger::append`], but the events at the indexes
    /// `per_recipient` names take the id `scope(id, contact)`: for provider
    /// ids that do not tell one message's recipients apart. Each contact's
    /// pseudonym is computed once, here.
    ///
    /// # Errors
    /// As [`EmailLedger::append`].
    pub async fn append_scoped(
        &self,
        tenant: &str,
        events: Vec<CanonicalEvent>,
        per_recipient: &[usize],
        scope: fn(Uuid, &Pseudonym) -> Uuid,
    ) -> Result<Vec<Appended>> {
        let admitted = self
            .admit(tenant, events, per_recipient, scope, false)
            .await?;
        self.write(tenant, admitted).await
    }

    /// As [`EmailLedger::append_scoped`], but an event that fails its
    /// checks (a field, its address) is left out and named in the second
    /// list, and the others are appended: for a provider's batch, whose
    /// good items must not be lost with a bad one. Outcomes are in the
    /// order of the events appended.
    ///
    /// # Errors
    /// A bad tenant or a storage failure; nothing is appended then.
    pub async fn append_valid(
        &self,
        tenant: &str,
        events: Vec<CanonicalEvent>,
        per_recipient: &[usize],
        scope: fn(Uuid, &Pseudonym) -> Uuid,
    ) -> Result<(Vec<Appended>, Vec<Skipped>)> {
        let mut admitted = self
            .admit(tenant, events, per_recipient, scope, true)
            .await?;
        let skipped = std::mem::take(&mut admitted.skipped);
        Ok((self.write(tenant, admitted).await?, skipped))
    }

    /// Checks each event and identifies its contact (its address normalised
    /// as the tenant's policy says), scoping the ids `per_recipient` names
    /// to it. A failed event is an error, or with `lenient` a skip.
    async fn admit(
        &self,
        tenant: &str,
        events: Vec<CanonicalEvent>,
        per_recipient: &[usize],
        scope: fn(Uuid, &Pseudonym) -> Uuid,
        lenient: bool,
    ) -> Result<Admitted> {
        crate::record::validate_tenant(tenant)?;
        let policy = self.policy(tenant).await?;
        let case = policy.local_part_case();
        let mut out = Admitted {
            policy,
            checked: Vec::with_capacity(events.len()),
            contacts: Vec::with_capacity(events.len()),
            skipped: Vec::new(),
        };
        let mut normal = Vec::with_capacity(events.len());
        for (index, e) in events.into_iter().enumerate() {
            let checked = e.validate().and_then(|c| {
                let n = normalize(c.recipient.expose(), case)?;
                Ok((c, n))
            });
            match checked {
                Ok((c, n)) => normal.push((index, c, n)),
                Err(err) if lenient => out.skipped.push(Skipped {
                    index,
                    reason: strip(&err),
                }),
                Err(err) => {
                    return Err(Error::invalid(format!("event {index}: {}", strip(&err))));
                }
            }
        }
        if normal.is_empty() {
            return Ok(out);
        }
        // Cached after a tenant's first use; that first call writes a slot.
        let secret = self.keys.tenant_secret(tenant)?;
        for (index, mut c, n) in normal {
            let pseudonym = Pseudonym::of_normalized(&secret, &n);
            if per_recipient.contains(&index) {
                c.id = scope(c.id, &pseudonym);
            }
            out.checked.push(c);
            out.contacts.push(Contact {
                pseudonym,
                domain: n.domain,
            });
        }
        Ok(out)
    }

    /// Writes admitted events: keys, sealing, one log append.
    async fn write(&self, tenant: &str, admitted: Admitted) -> Result<Vec<Appended>> {
        let Admitted {
            policy,
            checked,
            contacts,
            ..
        } = admitted;
        let mut plan = self.provision_keys(tenant, &checked, &contacts).await?;
        let ids: Vec<Uuid> = checked.iter().map(|c| c.id).collect();
        let keys = std::mem::take(&mut plan.keys);
        let grouped = self.seal_by_stream(tenant, checked, &contacts, &plan, keys, &policy)?;
        let outcomes = if grouped.appends.is_empty() {
            Vec::new()
        } else {
            self.log.append(tenant, grouped.appends).await?
        };
        Ok(outcomes_of(&outcomes, grouped.slots, &plan.known, &ids))
    }

    /// Decides, per event, how it is written, and makes the keys new
    /// contacts need. A retried event of a contact without a live key must
    /// not bring a key back, so those ids are looked up first (`known`).
    /// Late events of an erased contact (an open or a bounce of mail sent
    /// before the erasure, which routinely arrives hours later) make no key
    /// either (`unkeyed`); only a `sent` or `resubscribed` after the
    /// erasure starts a new generation, and then only events after the
    /// erasure are sealed under it.
    async fn provision_keys(
        &self,
        tenant: &str,
        checked: &[Checked],
        contacts: &[Contact],
    ) -> Result<Plan> {
        let mut distinct: Vec<Pseudonym> = contacts.iter().map(|c| c.pseudonym).collect();
        distinct.sort_unstable();
        distinct.dedup();
        // One call for all: the key store hashes and reads outside its
        // lock, which the request path shares, and takes it once.
        let states = self.keys.contacts(tenant, &distinct)?;
        let mut plan = Plan {
            known: vec![None; checked.len()],
            unkeyed: vec![None; checked.len()],
            keys: HashMap::with_capacity(distinct.len()),
        };
        let mut need = Vec::new();
        for (p, state) in distinct.into_iter().zip(states) {
            let erased = match state {
                KeyState::Live(k) => {
                    plan.keys.insert(p, k);
                    continue;
                }
                KeyState::Unknown => None,
                KeyState::Erased(e) => Some(e),
            };
            let mut new = Vec::new();
            for (i, c) in checked.iter().enumerate() {
                if contacts[i].pseudonym == p {
                    match self.log.find_event(tenant, c.occurred_at, c.id).await? {
                        Some(r) => plan.known[i] = Some(r.position),
                        None => new.push(i),
                    }
                }
            }
            let after = |i: usize| erased.is_none_or(|e| checked[i].occurred_at > e.erased_at);
            let starts_generation = |i: usize| {
                after(i)
                    && (erased.is_none()
                        || matches!(
                            checked[i].body.kind(),
                            EventType::Sent | EventType::Resubscribed
                        ))
            };
            let revived = new.iter().any(|&i| starts_generation(i));
            if let Some(e) = erased {
                for &i in &new {
                    if !(revived && after(i)) {
                        plan.unkeyed[i] = Some(e.generation);
                    }
                }
            }
            if revived {
                let base = self
                    .log
                    .stream_version(tenant, &p.stream())
                    .await?
                    .map_or(0, |v| v + 1);
                need.push((p, base));
            }
        }
        if !need.is_empty() {
            let keys = Arc::clone(&self.keys);
            let owned_tenant = tenant.to_owned();
            let made: Vec<Pseudonym> = need.iter().map(|(p, _)| *p).collect();
            let made_keys = crate::blocking::run(move || keys.ensure(&owned_tenant, &need)).await?;
            // One key for each contact asked, in order; anything else and
            // sealing asks the store.
            if made_keys.len() == made.len() {
                plan.keys.extend(made.into_iter().zip(made_keys));
            }
        }
        Ok(plan)
    }

    /// Seals each event not already `known` under its contact's key (from
    /// `keys`, those planning found or made) and groups them into one
    /// append per stream: a message's stream linked into its contact's, or
    /// the contact's alone.
    fn seal_by_stream(
        &self,
        tenant: &str,
        checked: Vec<Checked>,
        contacts: &[Contact],
        plan: &Plan,
        mut keys: HashMap<Pseudonym, ContactKey>,
        policy: &TenantPolicy,
    ) -> Result<Grouped> {
        let mut appends: Vec<StreamAppend> = Vec::new();
        let mut slots = Vec::with_capacity(checked.len());
        let mut stream_index: HashMap<String, usize> = HashMap::new();
        for (i, mut c) in checked.into_iter().enumerate() {
            if plan.known[i].is_some() {
                slots.push(None);
                continue;
            }
            let contact = &contacts[i];
            let p = contact.pseudonym;
            let one_time;
            let (generation, cipher) = if let Some(generation) = plan.unkeyed[i] {
                c.raw = None;
                one_time = Cipher::new(&SecretKey::generate()?);
                (generation, &one_time)
            } else {
                let key = self.live_key(tenant, p, i, &mut keys)?;
                (key.generation, key.cipher())
            };
            let (stream, link) = match c.message_id.as_deref().map(message_stream) {
                Some(s) => (s, Some(p.stream())),
                None => (p.stream(), None),
            };
            let occurred_at = c.occurred_at;
            let (id, event) = seal(
                tenant,
                p,
                generation,
                cipher,
                c,
                policy,
                contact.domain.clone(),
            )?;
            let mut ne =
                NewEvent::new(id, event.body.event_type(), encode_payload(&event)?).at(occurred_at);
            if let Some(l) = link {
                ne = ne.with_link(l);
            }
            let si = *stream_index.entry(stream.clone()).or_insert_with(|| {
                appends.push(StreamAppend {
                    stream,
                    expected: ExpectedVersion::Any,
                    events: Vec::new(),
                });
                appends.len() - 1
            });
            appends[si].events.push(ne);
            slots.push(Some((si, appends[si].events.len() - 1)));
        }
        Ok(Grouped { appends, slots })
    }

    /// The live key of contact `p` (of event `i`), from `keys` (what
    /// planning found or made) or else the key store.
    fn live_key<'k>(
        &self,
        tenant: &str,
        p: Pseudonym,
        i: usize,
        keys: &'k mut HashMap<Pseudonym, ContactKey>,
    ) -> Result<&'k ContactKey> {
        match keys.entry(p) {
            std::collections::hash_map::Entry::Occupied(k) => Ok(k.into_mut()),
            std::collections::hash_map::Entry::Vacant(slot) => {
                match self.keys.contact(tenant, &p)? {
                    KeyState::Live(k) => Ok(slot.insert(k)),
                    // Erased between the check and now: refuse rather than
                    // recreate silently.
                    _ => Err(Error::invalid(format!(
                        "event {i}: the contact was erased while this append ran; retry"
                    ))),
                }
            }
        }
    }
}

/// Each event's outcome, in order: its position and whether it was already
/// there. New records sit above every older one, so the `fresh` highest
/// distinct positions are this append's; any other position, or a repeat
/// within the batch, is a duplicate.
fn outcomes_of(
    outcomes: &[AppendOutcome],
    slots: Vec<Option<(usize, usize)>>,
    known: &[Option<u64>],
    ids: &[Uuid],
) -> Vec<Appended> {
    let fresh: usize = outcomes
        .iter()
        .map(|o| o.positions.len() - o.duplicates)
        .sum();
    let mut all: Vec<u64> = outcomes
        .iter()
        .flat_map(|o| o.positions.iter().copied())
        .collect();
    all.sort_unstable_by(|a, b| b.cmp(a));
    all.dedup();
    let new_positions: HashSet<u64> = all.into_iter().take(fresh).collect();
    let mut seen = HashSet::new();
    let mut out = Vec::with_capacity(slots.len());
    for (i, slot) in slots.into_iter().enumerate() {
        let position = match (slot, known[i]) {
            (Some((si, ei)), _) => outcomes[si].positions[ei],
            (None, Some(p)) => p,
            (None, None) => continue,
        };
        let duplicate = !new_positions.contains(&position) || !seen.insert(position);
        out.push(Appended {
            id: ids[i],
            position,
            duplicate,
        });
    }
    out
}

/// Seals a checked event under its contact's key, applying the tenant's
/// policy. Returns the event id and the sealed event.
fn seal(
    tenant: &str,
    contact: Pseudonym,
    generation: u32,
    cipher: &Cipher,
    c: Checked,
    policy: &TenantPolicy,
    recipient_domain: String,
) -> Result<(Uuid, SealedEvent)> {
    let id = c.id;
    let mut body = c.body;
    match &mut body {
        EventBody::MessageSent { subject, .. } if !policy.keep_subjects => *subject = None,
        EventBody::Opened { ip, user_agent, .. }
        | EventBody::LinkClicked { ip, user_agent, .. }
            if !policy.keep_engagement_details =>
        {
            *ip = None;
            *user_agent = None;
        }
        _ => {}
    }
    let plain = EmailEventOf {
        envelope: Envelope {
            message_id: c.message_id,
            contact,
            key_generation: generation,
            occurred_at: c.occurred_at,
            provider: c.provider,
            provider_event_id: c.provider_event_id,
            tags: c.tags,
            campaign: c.campaign,
            sending_domain: c.sending_domain,
            recipient_domain: Some(recipient_domain),
            recipient: Some(c.recipient),
            raw: c.raw,
        },
        body,
    };
    let sealed = plain.try_map(|name, v: Personal| {
        cipher.seal(v.expose().as_bytes(), &ad(tenant, &contact, id, name))
    })?;
    Ok((id, sealed))
}
