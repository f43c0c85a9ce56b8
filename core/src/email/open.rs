//! Opening: a record's sealed fields in plaintext under the contact's key
//! of the event's generation, or shown erased where that key was
//! destroyed. One record at a time ([`EmailLedger::open`]), or many with
//! their contacts' keys looked up together first
//! ([`EmailLedger::contact_keys`], then [`EmailLedger::open_decoded`]), as
//! a replay opens a page.

use uuid::Uuid;

use super::{
    EmailLedger, EventBody, Field, FieldName, ReadEvent, SealedEvent, ad, decode_payload,
    is_email_type,
};
use crate::codec::RecordRef;
use crate::crypto::Personal;
use crate::error::{Error, Result};
use crate::keys::{ContactKey, KeyState};
use crate::pseudonym::Pseudonym;
use crate::record::Record;

/// What the key store held for some contacts of one tenant, looked up
/// together by [`EmailLedger::contact_keys`].
#[derive(Debug)]
pub struct ContactKeys {
    tenant: String,
    /// By contact, sorted: one allocation for a page's keys, where a map
    /// would take one and a table's worth of memory touched more.
    keys: Vec<(Pseudonym, KeyState)>,
}

impl ContactKeys {
    fn get(&self, contact: &Pseudonym) -> Option<&KeyState> {
        self.keys
            .binary_search_by(|(p, _)| p.cmp(contact))
            .ok()
            .map(|i| &self.keys[i].1)
    }

    /// How many contacts it holds.
    #[must_use]
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether it holds none.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

impl EmailLedger {
    /// What the key store holds for each of `contacts` (in any order,
    /// repeated or not), in one call to the store: for many events opened
    /// together with [`EmailLedger::open_decoded`].
    ///
    /// # Errors
    /// A storage failure, or a slot that does not unwrap under the KEK.
    pub fn contact_keys(&self, tenant: &str, mut contacts: Vec<Pseudonym>) -> Result<ContactKeys> {
        contacts.sort_unstable();
        contacts.dedup();
        let states = self.keys.contacts(tenant, &contacts)?;
        Ok(ContactKeys {
            tenant: tenant.to_owned(),
            keys: contacts.into_iter().zip(states).collect(),
        })
    }

    /// Opens an email record as [`EmailLedger::open`] does, its payload
    /// already decoded ([`decode_payload`]) into `sealed`, with the keys
    /// looked up before; a contact they do not hold (or another tenant's
    /// record) is looked up on its own.
    ///
    /// # Errors
    /// As [`EmailLedger::open`].
    pub fn open_decoded(
        &self,
        record: &RecordRef<'_>,
        sealed: SealedEvent,
        keys: &ContactKeys,
    ) -> Result<ReadEvent> {
        let known = (keys.tenant == record.tenant)
            .then(|| keys.get(&sealed.envelope.contact))
            .flatten();
        match known {
            Some(state) => open_sealed(record, sealed, state),
            None => {
                let state = self.keys.contact(record.tenant, &sealed.envelope.contact)?;
                open_sealed(record, sealed, &state)
            }
        }
    }

    /// Opens one sealed field of `contact` written by event `event_id` under
    /// key `generation`: its plaintext, or [`Field::Erased`] when that key
    /// was destroyed. Projections keep sealed fields as they received them
    /// and open them with this at query time.
    ///
    /// # Errors
    /// As [`EmailLedger::open`].
    #[allow(clippy::too_many_arguments)]
    pub fn open_field(
        &self,
        tenant: &str,
        contact: &Pseudonym,
        generation: u32,
        event_id: Uuid,
        position: u64,
        field: FieldName,
        sealed: &crate::crypto::Sealed,
    ) -> Result<Field> {
        let state = self.keys.contact(tenant, contact)?;
        match pick(&state, generation, position, false)? {
            None => Ok(Field::Erased),
            Some(k) => open_with(k, tenant, contact, event_id, position, field, sealed),
        }
    }

    /// Opens an email record: personal fields in plaintext, or
    /// [`Field::Erased`] where the contact's key was destroyed. `None` for a
    /// record that is not an email event (such as a policy change).
    ///
    /// # Errors
    /// [`Error::Corrupt`] for a payload that does not decode or a field that
    /// does not open under a live key; [`Error::Config`] when the key store
    /// has no key at all for the contact (the wrong key directory).
    pub fn open(&self, record: &Record) -> Result<Option<ReadEvent>> {
        if !is_email_type(&record.event_type) {
            return Ok(None);
        }
        let sealed = decode_payload(record.position, &record.payload)?;
        let state = self
            .keys
            .contact(&record.tenant, &sealed.envelope.contact)?;
        open_sealed(&record.borrowed(), sealed, &state).map(Some)
    }
}

/// Opens `sealed`, the decoded payload of `record`, with what the key store
/// holds for its contact.
fn open_sealed(record: &RecordRef<'_>, sealed: SealedEvent, state: &KeyState) -> Result<ReadEvent> {
    let contact = sealed.envelope.contact;
    let erased_event = matches!(sealed.body, EventBody::ContactErased { .. });
    let position = record.position;
    let key = pick(
        state,
        sealed.envelope.key_generation,
        position,
        erased_event,
    )?;
    let tenant = record.tenant;
    let id = record.event_id;
    let event = sealed.try_map(|name, s| match key {
        None => Ok(Field::Erased),
        Some(k) => open_with(k, tenant, &contact, id, position, name, &s),
    })?;
    Ok(ReadEvent::new(record, event))
}

/// The live key of `generation` in `state`, `None` when it was destroyed.
fn pick(
    state: &KeyState,
    generation: u32,
    position: u64,
    erased_event: bool,
) -> Result<Option<&ContactKey>> {
    Ok(match state {
        KeyState::Live(k) if k.generation == generation => Some(k),
        KeyState::Live(k) if k.generation > generation => None,
        KeyState::Erased(e) if e.generation >= generation => None,
        _ if erased_event => None,
        _ => {
            return Err(Error::config(format!(
                "no key for the contact of position {position}: is this the key directory the log was written with?"
            )));
        }
    })
}

fn open_with(
    key: &ContactKey,
    tenant: &str,
    contact: &Pseudonym,
    id: Uuid,
    position: u64,
    name: FieldName,
    sealed: &crate::crypto::Sealed,
) -> Result<Field> {
    let mut plain = key
        .cipher()
        .open(sealed, &ad(tenant, contact, id, name))
        .ok_or_else(|| {
            Error::corrupt(
                position,
                format!("sealed field `{}` does not open", name.json_name()),
            )
        })?;
    // The plaintext's own buffer becomes the value's, not a copy of it.
    let text = String::from_utf8(std::mem::take(&mut *plain)).map_err(|e| {
        drop(zeroize::Zeroizing::new(e.into_bytes()));
        Error::corrupt(position, "sealed field is not UTF-8")
    })?;
    Ok(Field::Value(Personal::new(text)))
}
