//! The key file's slots.
//!
//! # Layout of `keys.slots` (format 1)
//!
//! Slot 0 is the header; slot `n ≥ 1` holds one key. All integers are little
//! endian. Every slot ends in a checksum: the first 16 bytes of blake3 of its
//! bytes 0..112.
//!
//! | header bytes | field |
//! |---|---|
//! | 0..8 | magic `MLKEYS\0\0` |
//! | 8..12 | format version, 1 |
//! | 12..16 | slot size, 128 |
//! | 16..28 | KEK check nonce |
//! | 28..60 | KEK check: 16 zero bytes sealed under the KEK |
//! | 60..112 | zero |
//! | 112..128 | checksum |
//!
//! | slot bytes | field |
//! |---|---|
//! | 0 | state: 1 live, 2 erased (a free slot is all zero) |
//! | 1 | kind: 1 contact data key, 2 tenant secret |
//! | 2..4 | zero |
//! | 4..8 | generation: 0 for a contact's first key, +1 after each erasure |
//! | 8..40 | owner: blake3 derive-key hash of kind, tenant and pseudonym |
//! | 40..48 | live: the contact stream's length when the key was made; erased: the events that became unreadable |
//! | 48..60 | live: nonce of the wrapped key; erased: bytes 48..56 the time of the erasure (i64 µs since the epoch), then zero |
//! | 60..108 | the key sealed under the KEK, with tag; associated data: owner, generation, kind (zero once erased) |
//! | 108..112 | zero |
//! | 112..128 | checksum |
//!
//! A slot that fails its checksum was torn by a crash while being written,
//! so its write was never acknowledged; opening the store overwrites it
//! with zeros (finishing an interrupted erasure) before anything else.

use crate::crypto::NONCE_LEN;
use crate::error::{Error, StoreError};
use crate::pseudonym::Pseudonym;

/// Size of one slot of the key file.
pub const SLOT_LEN: usize = 128;
/// The key file's name inside the key directory.
pub const KEY_FILE: &str = "keys.slots";

pub(super) const MAGIC: &[u8; 8] = b"MLKEYS\0\0";
pub(super) const FORMAT: u32 = 1;
pub(super) const CHECKED: usize = 112;
pub(super) const KEK_CHECK_AD: &[u8] = b"mailledger key store v1 kek check";
pub(super) const OWNER_CONTEXT: &str = "mailledger 2026-11 key owner v1";
pub(super) const STORE: &str = "keys";

pub(super) const LIVE: u8 = 1;
pub(super) const ERASED: u8 = 2;

pub(super) const KIND_CONTACT: u8 = 1;
pub(super) const KIND_TENANT: u8 = 2;

pub(super) fn io(e: std::io::Error) -> Error {
    Error::Storage(StoreError::new(STORE, e))
}

pub(super) fn checksum(slot: &[u8; SLOT_LEN]) -> [u8; 16] {
    let mut c = [0u8; 16];
    c.copy_from_slice(&blake3::hash(&slot[..CHECKED]).as_bytes()[..16]);
    c
}

pub(super) fn seal_checksum(slot: &mut [u8; SLOT_LEN]) {
    let c = checksum(slot);
    slot[CHECKED..].copy_from_slice(&c);
}

pub(super) fn owner(kind: u8, tenant: &str, contact: Option<&Pseudonym>) -> [u8; 32] {
    // Deriving the context's key is a hash of its own; every key lookup
    // names an owner, so it is done once.
    static OWNER_HASHER: std::sync::LazyLock<blake3::Hasher> =
        std::sync::LazyLock::new(|| blake3::Hasher::new_derive_key(OWNER_CONTEXT));
    let mut h = OWNER_HASHER.clone();
    h.update(&[kind]);
    h.update(&(tenant.len() as u64).to_le_bytes());
    h.update(tenant.as_bytes());
    if let Some(p) = contact {
        h.update(p.as_bytes());
    }
    *h.finalize().as_bytes()
}

/// A map keyed by [`owner`] hashes. They are blake3 outputs, already
/// uniform and not chosen by any caller, so their first eight bytes serve
/// as the table's hash instead of hashing 32 bytes again with SipHash on
/// every lookup (a replay looks up one key per event).
pub(super) type OwnerMap<V> =
    std::collections::HashMap<[u8; 32], V, std::hash::BuildHasherDefault<OwnerHasher>>;

/// The hasher of [`OwnerMap`]: folds what it is given eight bytes at a
/// time, so a 32-byte owner's hash is its leading word mixed with the rest.
#[derive(Default)]
pub(super) struct OwnerHasher(u64);

impl std::hash::Hasher for OwnerHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.0 = self.0.rotate_left(29) ^ u64::from_le_bytes(word);
        }
    }
}

pub(super) fn nonce_at(bytes: &[u8], at: usize) -> [u8; NONCE_LEN] {
    let mut n = [0u8; NONCE_LEN];
    n.copy_from_slice(&bytes[at..at + NONCE_LEN]);
    n
}

pub(super) fn wrap_ad(owner: &[u8; 32], generation: u32, kind: u8) -> [u8; 37] {
    let mut ad = [0u8; 37];
    ad[..32].copy_from_slice(owner);
    ad[32..36].copy_from_slice(&generation.to_le_bytes());
    ad[36] = kind;
    ad
}

/// A parsed entry slot.
pub(super) struct Slot {
    pub(super) state: u8,
    pub(super) kind: u8,
    pub(super) generation: u32,
    pub(super) owner: [u8; 32],
    pub(super) count: u64,
}

pub(super) fn parse(slot: &[u8; SLOT_LEN]) -> Option<Slot> {
    if slot[CHECKED..] != checksum(slot) {
        return None;
    }
    let mut owner = [0u8; 32];
    owner.copy_from_slice(&slot[8..40]);
    let mut gen4 = [0u8; 4];
    gen4.copy_from_slice(&slot[4..8]);
    let mut c8 = [0u8; 8];
    c8.copy_from_slice(&slot[40..48]);
    Some(Slot {
        state: slot[0],
        kind: slot[1],
        generation: u32::from_le_bytes(gen4),
        owner,
        count: u64::from_le_bytes(c8),
    })
}

/// Where an erased slot keeps the time of its erasure (the wrapped key's
/// nonce while the slot was live).
pub(super) const ERASED_AT: std::ops::Range<usize> = 48..56;

/// The time an erased slot records, µs since the epoch.
pub(super) fn erased_at(slot: &[u8; SLOT_LEN]) -> i64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&slot[ERASED_AT]);
    i64::from_le_bytes(b)
}
