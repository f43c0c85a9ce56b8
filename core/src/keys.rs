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
//! | 48..60 | nonce of the wrapped key (zero once erased) |
//! | 60..108 | the key sealed under the KEK, with tag; associated data: owner, generation, kind (zero once erased) |
//! | 108..112 | zero |
//! | 112..128 | checksum |
//!
//! A slot that fails its checksum was torn by a crash while being written,
//! so its write was never acknowledged; opening the store overwrites it
//! with zeros (finishing an interrupted erasure) before anything else.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::os::unix::fs::{FileExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use zeroize::Zeroizing;

use crate::crypto::{Cipher, KEY_LEN, NONCE_LEN, Sealed, SecretKey};
use crate::error::{Error, Result, StoreError};
use crate::pseudonym::Pseudonym;

/// Size of one slot of the key file.
pub const SLOT_LEN: usize = 128;
/// The key file's name inside the key directory.
pub const KEY_FILE: &str = "keys.slots";

const MAGIC: &[u8; 8] = b"MLKEYS\0\0";
const FORMAT: u32 = 1;
const CHECKED: usize = 112;
const KEK_CHECK_AD: &[u8] = b"mailledger key store v1 kek check";
const OWNER_CONTEXT: &str = "mailledger 2026-11 key owner v1";
const STORE: &str = "keys";

const LIVE: u8 = 1;
const ERASED: u8 = 2;

const KIND_CONTACT: u8 = 1;
const KIND_TENANT: u8 = 2;

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
}

/// A contact's data key, ready to seal and open; `Debug` shows no key bytes.
#[derive(Debug, Clone)]
pub struct ContactKey {
    /// 0 for the contact's first key, one more after each erasure.
    pub generation: u32,
    cipher: Arc<Cipher>,
}

impl ContactKey {
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
    /// `stream_len` is the contact stream's length now. Returns the erasure,
    /// also when the key was destroyed before (then unchanged), or `None`
    /// for a contact that never had a key.
    ///
    /// # Errors
    /// A storage failure.
    fn destroy(
        &self,
        tenant: &str,
        contact: &Pseudonym,
        stream_len: u64,
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

/// The key store in a directory: one file of fixed slots, see the module
/// docs. One process at a time: the file is locked while open.
pub struct FileKeyStore {
    dir: PathBuf,
    file: File,
    kek: Cipher,
    inner: Mutex<Inner>,
}

struct Inner {
    /// Slot of each owner.
    index: HashMap<[u8; 32], u64>,
    /// Zeroed slots to reuse.
    free: Vec<u64>,
    /// Slots in the file, header included.
    len: u64,
    cache: HashMap<[u8; 32], ContactKey>,
    /// Keys written but not yet synced by the call that made them.
    pending: HashMap<[u8; 32], ContactKey>,
    tenants: HashMap<String, Arc<SecretKey>>,
    /// A sync failed: nothing is known durable any more.
    poisoned: bool,
}

/// A contact key's raw bytes and its wrapped bytes as the key file holds them.
#[cfg(feature = "test-util")]
pub type KeyMaterial = (Zeroizing<Vec<u8>>, Vec<u8>);

/// How many contact keys are kept unwrapped in memory at most.
pub const KEY_CACHE_ENTRIES: usize = 100_000;

fn io(e: std::io::Error) -> Error {
    Error::Storage(StoreError::new(STORE, e))
}

fn checksum(slot: &[u8; SLOT_LEN]) -> [u8; 16] {
    let mut c = [0u8; 16];
    c.copy_from_slice(&blake3::hash(&slot[..CHECKED]).as_bytes()[..16]);
    c
}

fn seal_checksum(slot: &mut [u8; SLOT_LEN]) {
    let c = checksum(slot);
    slot[CHECKED..].copy_from_slice(&c);
}

fn owner(kind: u8, tenant: &str, contact: Option<&Pseudonym>) -> [u8; 32] {
    let mut h = blake3::Hasher::new_derive_key(OWNER_CONTEXT);
    h.update(&[kind]);
    h.update(&(tenant.len() as u64).to_le_bytes());
    h.update(tenant.as_bytes());
    if let Some(p) = contact {
        h.update(p.as_bytes());
    }
    *h.finalize().as_bytes()
}

fn nonce_at(bytes: &[u8], at: usize) -> [u8; NONCE_LEN] {
    let mut n = [0u8; NONCE_LEN];
    n.copy_from_slice(&bytes[at..at + NONCE_LEN]);
    n
}

fn wrap_ad(owner: &[u8; 32], generation: u32, kind: u8) -> [u8; 37] {
    let mut ad = [0u8; 37];
    ad[..32].copy_from_slice(owner);
    ad[32..36].copy_from_slice(&generation.to_le_bytes());
    ad[36] = kind;
    ad
}

/// A parsed entry slot.
struct Slot {
    state: u8,
    kind: u8,
    generation: u32,
    owner: [u8; 32],
    count: u64,
}

fn parse(slot: &[u8; SLOT_LEN]) -> Option<Slot> {
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

impl std::fmt::Debug for FileKeyStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileKeyStore")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

impl FileKeyStore {
    /// Opens the key store in `dir` under `kek`, creating it (directory mode
    /// 0700, file mode 0600) when missing. Slots torn by a crash are
    /// overwritten with zeros first.
    ///
    /// # Errors
    /// When another process holds the store, when `kek` is not the KEK the
    /// store was made with, or on a storage failure.
    pub fn open(dir: &Path, kek: &SecretKey) -> Result<Self> {
        std::os::unix::fs::DirBuilderExt::mode(std::fs::DirBuilder::new().recursive(true), 0o700)
            .create(dir)
            .map_err(io)?;
        let path = dir.join(KEY_FILE);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .map_err(io)?;
        file.try_lock().map_err(|_| {
            Error::config(format!(
                "the key store {} is in use by another process",
                dir.display()
            ))
        })?;
        let kek = Cipher::new(kek);
        let mut bytes = file.metadata().map_err(io)?.len();
        if bytes == 0 {
            let mut header = [0u8; SLOT_LEN];
            header[..8].copy_from_slice(MAGIC);
            header[8..12].copy_from_slice(&FORMAT.to_le_bytes());
            header[12..16].copy_from_slice(&(SLOT_LEN as u32).to_le_bytes());
            let check = kek.seal(&[0u8; 16], KEK_CHECK_AD)?;
            header[16..28].copy_from_slice(check.nonce());
            header[28..60].copy_from_slice(check.ciphertext());
            seal_checksum(&mut header);
            file.write_all_at(&header, 0).map_err(io)?;
            file.sync_all().map_err(io)?;
            File::open(dir).and_then(|d| d.sync_all()).map_err(io)?;
            bytes = SLOT_LEN as u64;
        }
        let mut header = [0u8; SLOT_LEN];
        file.read_exact_at(&mut header, 0).map_err(io)?;
        if &header[..8] != MAGIC || header[CHECKED..] != checksum(&header) {
            return Err(Error::config(format!(
                "{} is not a mailledger key file, or its header is damaged",
                path.display()
            )));
        }
        let check = Sealed::from_parts(nonce_at(&header, 16), header[28..60].to_vec());
        if kek.open(&check, KEK_CHECK_AD).is_none() {
            return Err(Error::config(
                "the key-encryption key does not open this key store: check --kek-file / MAILLEDGER_KEK_FILE",
            ));
        }
        let store = Self {
            dir: dir.to_path_buf(),
            file,
            kek,
            inner: Mutex::new(Inner {
                index: HashMap::new(),
                free: Vec::new(),
                len: 0,
                cache: HashMap::new(),
                pending: HashMap::new(),
                tenants: HashMap::new(),
                poisoned: false,
            }),
        };
        store.recover(bytes)?;
        Ok(store)
    }

    /// The directory of the store.
    #[must_use]
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn recover(&self, bytes: u64) -> Result<()> {
        let whole = bytes / SLOT_LEN as u64;
        let mut scrubbed = 0u64;
        if !bytes.is_multiple_of(SLOT_LEN as u64) {
            // A slot torn while the file grew: zero it, then cut it off.
            let tail = (bytes % SLOT_LEN as u64) as usize;
            self.file
                .write_all_at(&vec![0u8; tail], whole * SLOT_LEN as u64)
                .map_err(io)?;
            self.file.sync_data().map_err(io)?;
            self.file.set_len(whole * SLOT_LEN as u64).map_err(io)?;
            scrubbed += 1;
        }
        let mut inner = self.lock();
        let mut generations: HashMap<[u8; 32], (u64, u32)> = HashMap::new();
        let mut buf = vec![0u8; SLOT_LEN * 4096];
        let mut n = 1;
        while n < whole {
            let count = (whole - n).min(4096);
            let chunk = &mut buf[..count as usize * SLOT_LEN];
            self.file
                .read_exact_at(chunk, n * SLOT_LEN as u64)
                .map_err(io)?;
            for (i, raw) in chunk.chunks_exact(SLOT_LEN).enumerate() {
                let at = n + i as u64;
                let mut slot = [0u8; SLOT_LEN];
                slot.copy_from_slice(raw);
                let parsed = parse(&slot).filter(|s| {
                    matches!(s.state, LIVE | ERASED) && matches!(s.kind, KIND_CONTACT | KIND_TENANT)
                });
                match parsed {
                    None if slot.iter().all(|&b| b == 0) => inner.free.push(at),
                    None => {
                        self.file
                            .write_all_at(&[0u8; SLOT_LEN], at * SLOT_LEN as u64)
                            .map_err(io)?;
                        inner.free.push(at);
                        scrubbed += 1;
                    }
                    Some(s) => {
                        if let Some(&(other, g)) = generations.get(&s.owner) {
                            // Never written by this code; keep the newer key.
                            let drop_at = if g >= s.generation { at } else { other };
                            self.file
                                .write_all_at(&[0u8; SLOT_LEN], drop_at * SLOT_LEN as u64)
                                .map_err(io)?;
                            inner.free.push(drop_at);
                            scrubbed += 1;
                            if drop_at == at {
                                continue;
                            }
                        }
                        generations.insert(s.owner, (at, s.generation));
                        inner.index.insert(s.owner, at);
                    }
                }
            }
            n += count;
        }
        inner.len = whole.max(1);
        if scrubbed > 0 {
            self.file.sync_data().map_err(io)?;
            tracing::warn!(
                slots = scrubbed,
                "key store: overwrote slots torn by a crash"
            );
        }
        Ok(())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn lock_ok(&self) -> Result<std::sync::MutexGuard<'_, Inner>> {
        let inner = self.lock();
        if inner.poisoned {
            return Err(Error::Storage(StoreError::new(
                STORE,
                "a sync of the key file failed; reopen the key store",
            )));
        }
        Ok(inner)
    }

    fn read_slot(&self, at: u64) -> Result<[u8; SLOT_LEN]> {
        let mut slot = [0u8; SLOT_LEN];
        self.file
            .read_exact_at(&mut slot, at * SLOT_LEN as u64)
            .map_err(io)?;
        Ok(slot)
    }

    fn unwrap_key(&self, slot: &[u8; SLOT_LEN], s: &Slot) -> Result<SecretKey> {
        let bad = || Error::config("a key slot does not unwrap under the key-encryption key");
        let sealed = Sealed::from_parts(nonce_at(slot, 48), slot[60..108].to_vec());
        let raw = self
            .kek
            .open(&sealed, &wrap_ad(&s.owner, s.generation, s.kind))
            .ok_or_else(bad)?;
        let mut k = [0u8; KEY_LEN];
        if raw.len() != KEY_LEN {
            return Err(bad());
        }
        k.copy_from_slice(&raw);
        let key = SecretKey::from_bytes(k);
        zeroize::Zeroize::zeroize(&mut k);
        Ok(key)
    }

    fn live_slot(
        &self,
        kind: u8,
        owner: &[u8; 32],
        generation: u32,
        count: u64,
        key: &SecretKey,
    ) -> Result<[u8; SLOT_LEN]> {
        let mut slot = [0u8; SLOT_LEN];
        slot[0] = LIVE;
        slot[1] = kind;
        slot[4..8].copy_from_slice(&generation.to_le_bytes());
        slot[8..40].copy_from_slice(owner);
        slot[40..48].copy_from_slice(&count.to_le_bytes());
        let sealed = self
            .kek
            .seal(key.expose(), &wrap_ad(owner, generation, kind))?;
        slot[48..60].copy_from_slice(sealed.nonce());
        slot[60..108].copy_from_slice(sealed.ciphertext());
        seal_checksum(&mut slot);
        Ok(slot)
    }

    /// Takes a slot for `owner`: its own, a free one, or a new one at the end.
    fn place(inner: &mut Inner, owner: [u8; 32]) -> u64 {
        if let Some(&at) = inner.index.get(&owner) {
            return at;
        }
        let at = inner.free.pop().unwrap_or_else(|| {
            inner.len += 1;
            inner.len - 1
        });
        inner.index.insert(owner, at);
        at
    }

    fn cache(inner: &mut Inner, owner: [u8; 32], key: ContactKey) {
        if inner.cache.len() >= KEY_CACHE_ENTRIES {
            inner.cache.clear();
        }
        inner.cache.insert(owner, key);
    }

    /// The raw and wrapped bytes of a contact's live key, for tests that
    /// scan files for them.
    ///
    /// # Errors
    /// A storage failure.
    #[cfg(feature = "test-util")]
    pub fn key_material(&self, tenant: &str, contact: &Pseudonym) -> Result<Option<KeyMaterial>> {
        let o = owner(KIND_CONTACT, tenant, Some(contact));
        let Some(at) = self.lock().index.get(&o).copied() else {
            return Ok(None);
        };
        let slot = self.read_slot(at)?;
        match parse(&slot) {
            Some(s) if s.state == LIVE => {
                let key = self.unwrap_key(&slot, &s)?;
                Ok(Some((
                    Zeroizing::new(key.expose().to_vec()),
                    slot[60..108].to_vec(),
                )))
            }
            _ => Ok(None),
        }
    }
}

impl KeyStore for FileKeyStore {
    fn tenant_secret(&self, tenant: &str) -> Result<Arc<SecretKey>> {
        let mut inner = self.lock_ok()?;
        if let Some(s) = inner.tenants.get(tenant) {
            return Ok(Arc::clone(s));
        }
        let o = owner(KIND_TENANT, tenant, None);
        let secret = if let Some(&at) = inner.index.get(&o) {
            let slot = self.read_slot(at)?;
            let s = parse(&slot)
                .filter(|s| s.state == LIVE)
                .ok_or_else(|| Error::config("a tenant secret slot is damaged"))?;
            self.unwrap_key(&slot, &s)?
        } else {
            let secret = SecretKey::generate()?;
            let slot = self.live_slot(KIND_TENANT, &o, 0, 0, &secret)?;
            let at = Self::place(&mut inner, o);
            let written = self
                .file
                .write_all_at(&slot, at * SLOT_LEN as u64)
                .and_then(|()| self.file.sync_data());
            if let Err(e) = written {
                inner.index.remove(&o);
                return Err(io(e));
            }
            secret
        };
        let secret = Arc::new(secret);
        inner.tenants.insert(tenant.to_owned(), Arc::clone(&secret));
        Ok(secret)
    }

    fn contact(&self, tenant: &str, contact: &Pseudonym) -> Result<KeyState> {
        let o = owner(KIND_CONTACT, tenant, Some(contact));
        let at = {
            let inner = self.lock_ok()?;
            if let Some(k) = inner.cache.get(&o).or_else(|| inner.pending.get(&o)) {
                return Ok(KeyState::Live(k.clone()));
            }
            match inner.index.get(&o) {
                Some(&at) => at,
                None => return Ok(KeyState::Unknown),
            }
        };
        let slot = self.read_slot(at)?;
        let s = parse(&slot).ok_or_else(|| Error::config("a contact key slot is damaged"))?;
        match s.state {
            LIVE => {
                let key = self.unwrap_key(&slot, &s)?;
                let k = ContactKey {
                    generation: s.generation,
                    cipher: Arc::new(Cipher::new(&key)),
                };
                let mut inner = self.lock_ok()?;
                // Cache only what is still the slot's durable key: an erasure
                // or a new key may have been written since the slot was read.
                if !inner.pending.contains_key(&o) && self.read_slot(at)? == slot {
                    Self::cache(&mut inner, o, k.clone());
                }
                Ok(KeyState::Live(k))
            }
            _ => Ok(KeyState::Erased(Erasure {
                generation: s.generation,
                events: s.count,
            })),
        }
    }

    fn ensure(&self, tenant: &str, contacts: &[(Pseudonym, u64)]) -> Result<Vec<ContactKey>> {
        let mut out: Vec<Option<ContactKey>> = Vec::with_capacity(contacts.len());
        let mut missing = Vec::new();
        for (i, (p, _)) in contacts.iter().enumerate() {
            match self.contact(tenant, p)? {
                KeyState::Live(k) => out.push(Some(k)),
                KeyState::Unknown => {
                    out.push(None);
                    missing.push((i, 0));
                }
                KeyState::Erased(e) => {
                    out.push(None);
                    missing.push((i, e.generation + 1));
                }
            }
        }
        let mut inner = self.lock_ok()?;
        // A key another call wrote but has not synced yet is only returned
        // after this call has synced too.
        let mut need_sync = contacts.iter().any(|(p, _)| {
            inner
                .pending
                .contains_key(&owner(KIND_CONTACT, tenant, Some(p)))
        });
        let mut written = Vec::new();
        let mut failed = None;
        for &(i, generation) in &missing {
            let (p, base) = &contacts[i];
            let o = owner(KIND_CONTACT, tenant, Some(p));
            if let Some(k) = inner.cache.get(&o) {
                out[i] = Some(k.clone());
                continue;
            }
            if let Some(k) = inner.pending.get(&o) {
                out[i] = Some(k.clone());
                need_sync = true;
                continue;
            }
            let key = SecretKey::generate()?;
            let slot = self.live_slot(KIND_CONTACT, &o, generation, *base, &key)?;
            let fresh = !inner.index.contains_key(&o);
            let at = Self::place(&mut inner, o);
            if let Err(e) = self.file.write_all_at(&slot, at * SLOT_LEN as u64) {
                if fresh {
                    inner.index.remove(&o);
                    inner.free.push(at);
                }
                failed = Some(e);
                break;
            }
            need_sync = true;
            written.push(o);
            let k = ContactKey {
                generation,
                cipher: Arc::new(Cipher::new(&key)),
            };
            inner.pending.insert(o, k.clone());
            out[i] = Some(k);
        }
        drop(inner);
        let synced = match failed {
            Some(e) => Err(e),
            None if need_sync => self.file.sync_data(),
            None => Ok(()),
        };
        let mut inner = self.lock();
        if let Err(e) = synced {
            // Whether the new keys reached the disk is unknown: refuse all
            // further work until the store is reopened, so no event is ever
            // sealed under a key that may be lost.
            for o in &written {
                inner.pending.remove(o);
            }
            inner.poisoned = true;
            return Err(io(e));
        }
        for o in written {
            if let Some(k) = inner.pending.remove(&o) {
                Self::cache(&mut inner, o, k);
            }
        }
        Ok(out.into_iter().flatten().collect())
    }

    fn destroy(
        &self,
        tenant: &str,
        contact: &Pseudonym,
        stream_len: u64,
    ) -> Result<Option<Erasure>> {
        let o = owner(KIND_CONTACT, tenant, Some(contact));
        let mut inner = self.lock_ok()?;
        inner.cache.remove(&o);
        inner.pending.remove(&o);
        let Some(&at) = inner.index.get(&o) else {
            return Ok(None);
        };
        let old = self.read_slot(at)?;
        let s = parse(&old).ok_or_else(|| Error::config("a contact key slot is damaged"))?;
        if s.state == ERASED {
            return Ok(Some(Erasure {
                generation: s.generation,
                events: s.count,
            }));
        }
        let erasure = Erasure {
            generation: s.generation,
            events: stream_len.saturating_sub(s.count),
        };
        let mut slot = [0u8; SLOT_LEN];
        slot[0] = ERASED;
        slot[1] = KIND_CONTACT;
        slot[4..8].copy_from_slice(&s.generation.to_le_bytes());
        slot[8..40].copy_from_slice(&o);
        slot[40..48].copy_from_slice(&erasure.events.to_le_bytes());
        seal_checksum(&mut slot);
        self.file
            .write_all_at(&slot, at * SLOT_LEN as u64)
            .and_then(|()| self.file.sync_data())
            .map_err(|e| {
                inner.poisoned = true;
                io(e)
            })?;
        Ok(Some(erasure))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::Personal;

    fn kek() -> SecretKey {
        SecretKey::from_bytes([7; 32])
    }

    fn contact(n: u8) -> Pseudonym {
        Pseudonym::of(
            &SecretKey::from_bytes([1; 32]),
            &Personal::new(format!("c{n}@x.org")),
        )
        .unwrap()
    }

    #[test]
    fn keys_survive_reopen_and_seal_the_same() {
        let dir = tempfile::tempdir().unwrap();
        let sealed = {
            let ks = FileKeyStore::open(dir.path(), &kek()).unwrap();
            let k = ks.ensure("t", &[(contact(1), 0)]).unwrap();
            k[0].cipher().seal(b"hello", b"ad").unwrap()
        };
        let ks = FileKeyStore::open(dir.path(), &kek()).unwrap();
        let KeyState::Live(k) = ks.contact("t", &contact(1)).unwrap() else {
            panic!("key lost")
        };
        assert_eq!(&**k.cipher().open(&sealed, b"ad").unwrap(), b"hello");
        assert!(matches!(
            ks.contact("u", &contact(1)).unwrap(),
            KeyState::Unknown
        ));
    }

    #[test]
    fn a_wrong_kek_is_refused_clearly() {
        let dir = tempfile::tempdir().unwrap();
        drop(FileKeyStore::open(dir.path(), &kek()).unwrap());
        let e = FileKeyStore::open(dir.path(), &SecretKey::from_bytes([8; 32])).unwrap_err();
        assert!(matches!(e, Error::Config(_)), "{e}");
    }

    #[test]
    fn a_second_process_is_refused_while_the_store_is_open() {
        let dir = tempfile::tempdir().unwrap();
        let _ks = FileKeyStore::open(dir.path(), &kek()).unwrap();
        assert!(FileKeyStore::open(dir.path(), &kek()).is_err());
    }

    #[test]
    fn destroy_overwrites_the_wrapped_key_in_place_and_is_idempotent() {
        let dir = tempfile::tempdir().unwrap();
        let ks = FileKeyStore::open(dir.path(), &kek()).unwrap();
        ks.ensure("t", &[(contact(1), 0), (contact(2), 0)]).unwrap();
        let (raw, wrapped) = ks.key_material("t", &contact(1)).unwrap().unwrap();
        let file = dir.path().join(KEY_FILE);
        let before = std::fs::read(&file).unwrap();
        assert!(
            before
                .windows(wrapped.len())
                .any(|w| w == wrapped.as_slice())
        );
        let e = ks.destroy("t", &contact(1), 5).unwrap().unwrap();
        assert_eq!(
            e,
            Erasure {
                generation: 0,
                events: 5
            }
        );
        let after = std::fs::read(&file).unwrap();
        assert_eq!(after.len(), before.len(), "overwritten in place");
        assert!(
            !after
                .windows(wrapped.len())
                .any(|w| w == wrapped.as_slice())
        );
        assert!(!after.windows(raw.len()).any(|w| w == raw.as_slice()));
        assert_eq!(ks.destroy("t", &contact(1), 9).unwrap(), Some(e));
        assert!(matches!(
            ks.contact("t", &contact(1)).unwrap(),
            KeyState::Erased(_)
        ));
        assert!(matches!(
            ks.contact("t", &contact(2)).unwrap(),
            KeyState::Live(_)
        ));
        assert_eq!(ks.destroy("t", &contact(3), 0).unwrap(), None);
        drop(ks);
        let ks = FileKeyStore::open(dir.path(), &kek()).unwrap();
        assert!(matches!(
            ks.contact("t", &contact(1)).unwrap(),
            KeyState::Erased(_)
        ));
        let again = ks.ensure("t", &[(contact(1), 7)]).unwrap();
        assert_eq!(again[0].generation, 1, "a returning contact gets a new key");
    }

    #[test]
    fn torn_slots_are_zeroed_on_open() {
        let dir = tempfile::tempdir().unwrap();
        {
            let ks = FileKeyStore::open(dir.path(), &kek()).unwrap();
            ks.ensure("t", &[(contact(1), 0), (contact(2), 0)]).unwrap();
        }
        let file = dir.path().join(KEY_FILE);
        let mut bytes = std::fs::read(&file).unwrap();
        // Tear slot 2 (contact 2) halfway, and leave half a slot at the end.
        for b in &mut bytes[2 * SLOT_LEN + 40..2 * SLOT_LEN + 70] {
            *b = 0;
        }
        bytes.extend_from_slice(&[9u8; 50]);
        std::fs::write(&file, &bytes).unwrap();
        let ks = FileKeyStore::open(dir.path(), &kek()).unwrap();
        let after = std::fs::read(&file).unwrap();
        assert_eq!(after.len(), 3 * SLOT_LEN);
        assert!(after[2 * SLOT_LEN..].iter().all(|&b| b == 0));
        assert!(matches!(
            ks.contact("t", &contact(2)).unwrap(),
            KeyState::Unknown
        ));
        assert!(matches!(
            ks.contact("t", &contact(1)).unwrap(),
            KeyState::Live(_)
        ));
    }

    #[test]
    fn tenant_secrets_are_stable_and_distinct() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = {
            let ks = FileKeyStore::open(dir.path(), &kek()).unwrap();
            (
                ks.tenant_secret("a").unwrap(),
                ks.tenant_secret("b").unwrap(),
            )
        };
        assert_ne!(a, b);
        let ks = FileKeyStore::open(dir.path(), &kek()).unwrap();
        assert_eq!(ks.tenant_secret("a").unwrap(), a);
    }

    #[test]
    fn kek_files_must_be_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kek");
        let k = generate_kek_file(&path).unwrap();
        assert_eq!(read_kek_file(&path).unwrap(), k);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(read_kek_file(&path), Err(Error::Config(_))));
        assert!(generate_kek_file(&path).is_err(), "never overwrites a KEK");
    }
}
