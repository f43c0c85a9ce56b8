//! The key store: per-contact data keys and per-tenant secrets, wrapped by a
//! key-encryption key (KEK) that comes from configuration, kept apart from
//! the log, and destroyed physically on erasure.
//!
//! # Why a file of fixed slots
//!
//! An LSM engine (fjall) or a log-structured one (sled) never overwrites a
//! value: a delete leaves the old bytes in a journal or table until some
//! later compaction. A destroyed key must be unreadable when erasure
//! returns, so keys live in one file of fixed 128-byte slots, and erasure
//! overwrites the contact's slot in place and `fsync`s it before returning.
//! Nothing else ever holds the wrapped key: not the log, not a journal, not a
//! second file. (What the file system and the disk do below a file, such as
//! copy-on-write file systems, snapshots or SSD remapping, is outside any
//! file: keep the key directory on a plain, ideally encrypted, volume and out
//! of backups.)
//!
//! The slot layout is in the `slots` module's docs; [`FileKeyStore`] (in `file`) keeps the
//! slots.

mod file;
mod slots;
#[cfg(test)]
mod tests;

use std::fs::OpenOptions;
use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::sync::Arc;

use zeroize::Zeroizing;

use crate::crypto::{Cipher, SecretKey};
use crate::error::{Error, Result};
use crate::pseudonym::Pseudonym;

#[cfg(feature = "test-util")]
pub use file::KeyMaterial;
pub use file::{FileKeyStore, KEY_CACHE_ENTRIES, KEY_CACHE_ENTRY_BYTES};
pub use slots::{KEY_FILE, SLOT_LEN};

/// What the key store holds for a contact.
#[derive(Debug, Clone)]
pub enum KeyState {
    /// No key was ever made for this contact.
    Unknown,
    /// A live key.
    Live(ContactKey),
    /// The contact's key was destroyed.
    Erased(Erasure),
}

/// What an erasure left behind in the key store: no key, only counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Erasure {
    /// The generation of the destroyed key.
    pub generation: u32,
    /// How many of the contact's events were sealed under it.
    pub events: u64,
    /// When it was destroyed, µs since the epoch (0 for a slot erased
    /// before the key file kept the time).
    pub erased_at: i64,
}

/// A contact's data key, ready to seal and open; `Debug` shows no key bytes.
#[derive(Debug, Clone)]
pub struct ContactKey {
    /// 0 for the contact's first key, one more after each erasure.
    pub generation: u32,
    cipher: Arc<Cipher>,
}

impl ContactKey {
    /// The key of `generation` with its cipher made.
    pub(crate) fn new(generation: u32, key: &SecretKey) -> Self {
        Self {
            generation,
            cipher: Arc::new(Cipher::new(key)),
        }
    }

    /// The cipher under this key.
    #[must_use]
    pub fn cipher(&self) -> &Cipher {
        &self.cipher
    }
}

/// Where keys live. Implementations keep keys away from the log, make new
/// keys durable before returning them, and destroy keys physically.
pub trait KeyStore: Send + Sync + 'static {
    /// The tenant's secret, which keys its contact pseudonyms; made and made
    /// durable on first use.
    ///
    /// # Errors
    /// A storage failure.
    fn tenant_secret(&self, tenant: &str) -> Result<Arc<SecretKey>>;

    /// What the store holds for a contact.
    ///
    /// # Errors
    /// A storage failure, or a slot that does not unwrap under the KEK.
    fn contact(&self, tenant: &str, contact: &Pseudonym) -> Result<KeyState>;

    /// What the store holds for each of `contacts`, in their order: what
    /// [`KeyStore::contact`] gives for each. A store that serves many
    /// contacts at once for less than one at a time overrides it (a
    /// replay asks for a page's contacts together).
    ///
    /// # Errors
    /// As [`KeyStore::contact`], for any of them.
    fn contacts(&self, tenant: &str, contacts: &[Pseudonym]) -> Result<Vec<KeyState>> {
        contacts.iter().map(|c| self.contact(tenant, c)).collect()
    }

    /// A live key for each contact, in order, making the missing ones (a new
    /// generation for an erased contact). `base` is the length of the
    /// contact's stream now, so that an erasure can count the events sealed
    /// under the key. Every new key is on stable storage before this returns.
    ///
    /// # Errors
    /// A storage failure; then no key made by this call was acknowledged.
    fn ensure(&self, tenant: &str, contacts: &[(Pseudonym, u64)]) -> Result<Vec<ContactKey>>;

    /// Destroys a contact's live key: when this returns, no copy of it, raw
    /// or wrapped, is in any file of the store, and no cache holds it.
    /// `stream_len` is the contact stream's length now, `erased_at` the
    /// time the erasure is recorded with (µs since the epoch). Returns the
    /// erasure, also when the key was destroyed before (then unchanged,
    /// with its first time), or `None` for a contact that never had a key.
    ///
    /// # Errors
    /// A storage failure.
    fn destroy(
        &self,
        tenant: &str,
        contact: &Pseudonym,
        stream_len: u64,
        erased_at: i64,
    ) -> Result<Option<Erasure>>;
}

/// Reads a key-encryption key from a file of 64 hex digits that only its
/// owner may read (mode 0600 or stricter).
///
/// # Errors
/// When the file is missing, readable by group or others, or not a key.
pub fn read_kek_file(path: &Path) -> Result<SecretKey> {
    let meta = std::fs::metadata(path)
        .map_err(|e| Error::config(format!("cannot read the KEK file {}: {e}", path.display())))?;
    if meta.permissions().mode() & 0o077 != 0 {
        return Err(Error::config(format!(
            "the KEK file {} is readable by group or others: chmod 600 it",
            path.display()
        )));
    }
    let text =
        Zeroizing::new(std::fs::read_to_string(path).map_err(|e| {
            Error::config(format!("cannot read the KEK file {}: {e}", path.display()))
        })?);
    SecretKey::from_hex(&text).map_err(|_| {
        Error::config(format!(
            "the KEK file {} does not hold 64 hex digits",
            path.display()
        ))
    })
}

/// Writes a new random key-encryption key to `path` with mode 0600; fails if
/// the file exists.
///
/// # Errors
/// When the file exists or cannot be written.
pub fn generate_kek_file(path: &Path) -> Result<SecretKey> {
    let key = SecretKey::generate()?;
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| {
            Error::config(format!(
                "cannot create the KEK file {}: {e}",
                path.display()
            ))
        })?;
    let mut text = key.to_hex();
    text.push('\n');
    f.write_all(text.as_bytes())
        .and_then(|()| f.sync_all())
        .map_err(|e| Error::config(format!("cannot write the KEK file {}: {e}", path.display())))?;
    Ok(key)
}
