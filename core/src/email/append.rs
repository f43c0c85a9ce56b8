//! Appending canonical events, step by step: check each event, identify
//! its contact, make the keys new contacts need, seal the personal fields,
//! group the events by stream, append, and tell each event's outcome.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use uuid::Uuid;

use super::{
    Appended, CanonicalEvent, Checked, EmailEventOf, EmailLedger, Envelope, EventBody, SealedEvent,
    TenantPolicy, ad, encode_payload, message_stream, strip,
};
use crate::crypto::{Cipher, Personal};
use crate::error::{Error, Result};
use crate::keys::{ContactKey, KeyState};
use crate::pseudonym::{Pseudonym, normalize};
use crate::record::{AppendOutcome, ExpectedVersion, NewEvent, StreamAppend};

/// An event's contact: its pseudonym and its recipient's domain.
struct Contact {
    pseudonym: Pseudonym,
    domain: String,
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
        crate::record::validate_tenant(tenant)?;
        let policy = self.policy(tenant).await?;
        let mut checked = check(events)?;
        let contacts = self.identify(tenant, &mut checked, per_recipient, scope)?;
        let known = self.provision_keys(tenant, &checked, &contacts).await?;
        let ids: Vec<Uuid> = checked.iter().map(|c| c.id).collect();
        let grouped = self.seal_by_stream(tenant, checked, &contacts, &known, &policy)?;
        let outcomes = if grouped.appends.is_empty() {
            Vec::new()
        } else {
            self.log.append(tenant, grouped.appends).await?
        };
        Ok(outcomes_of(&outcomes, grouped.slots, &known, &ids))
    }

    /// Each event's contact, and the ids `per_recipient` names scoped to it.
    fn identify(
        &self,
        tenant: &str,
        checked: &mut [Checked],
        per_recipient: &[usize],
        scope: fn(Uuid, &Pseudonym) -> Uuid,
    ) -> Result<Vec<Contact>> {
        // Cached after a tenant's first use; that first call writes a slot.
        let secret = self.keys.tenant_secret(tenant)?;
        let mut contacts = Vec::with_capacity(checked.len());
        for (i, c) in checked.iter_mut().enumerate() {
            let n = normalize(c.recipient.expose())
                .map_err(|err| Error::invalid(format!("event {i}: {}", strip(&err))))?;
            let pseudonym = Pseudonym::of(&secret, &c.recipient)?;
            if per_recipient.contains(&i) {
                c.id = scope(c.id, &pseudonym);
            }
            contacts.push(Contact {
                pseudonym,
                domain: n.domain,
            });
        }
        Ok(contacts)
    }

    /// Makes a key for each contact that has no live one, and returns, per
    /// event, the position of the log's record of its id where a contact
    /// without a live key already has it. A retried event for an erased
    /// contact must not bring a key back, so those ids are looked up first.
    async fn provision_keys(
        &self,
        tenant: &str,
        checked: &[Checked],
        contacts: &[Contact],
    ) -> Result<Vec<Option<u64>>> {
        let mut distinct: Vec<Pseudonym> = contacts.iter().map(|c| c.pseudonym).collect();
        distinct.sort_unstable();
        distinct.dedup();
        let mut known = vec![None; checked.len()];
        let mut need = Vec::new();
        for p in distinct {
            if matches!(self.keys.contact(tenant, &p)?, KeyState::Live(_)) {
                continue;
            }
            let mut any_new = false;
            for (i, c) in checked.iter().enumerate() {
                if contacts[i].pseudonym == p {
                    match self.log.find_event(tenant, c.id).await? {
                        Some(r) => known[i] = Some(r.position),
                        None => any_new = true,
                    }
                }
            }
            if any_new {
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
            crate::blocking::run(move || keys.ensure(&owned_tenant, &need)).await?;
        }
        Ok(known)
    }

    /// Seals each event not already `known` under its contact's key and
    /// groups them into one append per stream: a message's stream linked
    /// into its contact's, or the contact's alone.
    fn seal_by_stream(
        &self,
        tenant: &str,
        checked: Vec<Checked>,
        contacts: &[Contact],
        known: &[Option<u64>],
        policy: &TenantPolicy,
    ) -> Result<Grouped> {
        let mut keys: HashMap<Pseudonym, ContactKey> = HashMap::new();
        let mut appends: Vec<StreamAppend> = Vec::new();
        let mut slots = Vec::with_capacity(checked.len());
        let mut stream_index: HashMap<String, usize> = HashMap::new();
        for (i, c) in checked.into_iter().enumerate() {
            if known[i].is_some() {
                slots.push(None);
                continue;
            }
            let contact = &contacts[i];
            let p = contact.pseudonym;
            if let std::collections::hash_map::Entry::Vacant(slot) = keys.entry(p) {
                match self.keys.contact(tenant, &p)? {
                    KeyState::Live(k) => {
                        slot.insert(k);
                    }
                    // Erased between the check and now: refuse rather than
                    // recreate silently.
                    _ => {
                        return Err(Error::invalid(format!(
                            "event {i}: the contact was erased while this append ran; retry"
                        )));
                    }
                }
            }
            let key = &keys[&p];
            let (stream, link) = match c.message_id.as_deref().map(message_stream) {
                Some(s) => (s, Some(p.stream())),
                None => (p.stream(), None),
            };
            let (id, event) = seal(
                tenant,
                p,
                key.generation,
                key.cipher(),
                c,
                policy,
                contact.domain.clone(),
            )?;
            let mut ne = NewEvent::new(id, event.body.event_type(), encode_payload(&event)?);
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
}

/// Checks every event; the first error names its index.
fn check(events: Vec<CanonicalEvent>) -> Result<Vec<Checked>> {
    events
        .into_iter()
        .enumerate()
        .map(|(i, e)| {
            e.validate()
                .map_err(|err| Error::invalid(format!("event {i}: {}", strip(&err))))
        })
        .collect()
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
