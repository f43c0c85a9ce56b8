//! [`FileKeyStore`]: the key store in one file of fixed slots.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

#[cfg(feature = "test-util")]
use zeroize::Zeroizing;

use crate::crypto::{Cipher, KEY_LEN, Sealed, SecretKey};
use crate::error::{Error, Result, StoreError};
use crate::pseudonym::Pseudonym;

use super::slots::*;
use super::{ContactKey, Erasure, KeyState, KeyStore};

/// The key store in a directory: one file of fixed slots, see the module
/// docs. One process at a time: the file is locked while open.
pub struct FileKeyStore {
    dir: PathBuf,
    file: File,
    kek: Cipher,
    inner: Mutex<Inner>,
    cache_entries: usize,
    /// Runs once in [`KeyStore::ensure`] between its lookups and taking
    /// the lock, so a test can put other calls in that window.
    #[cfg(test)]
    pub(super) before_ensure_locks: Mutex<Option<EnsureHook>>,
}

#[cfg(test)]
pub(super) type EnsureHook = Box<dyn FnOnce(&FileKeyStore) + Send>;

/// A contact's live key as memory keeps it: the 32 bytes, not the cipher.
/// A cipher holds its key schedules (about a kilobyte); made again on
/// each use it costs well under a microsecond, so the same memory holds
/// some ten times the keys, and a miss (a slot read and an unwrap) costs
/// far more than that.
#[derive(Clone)]
struct Cached {
    generation: u32,
    key: SecretKey,
}

impl Cached {
    fn contact_key(&self) -> ContactKey {
        ContactKey::new(self.generation, &self.key)
    }
}

/// What a contact's slot holds, its key unwrapped.
enum SlotKey {
    Live(Cached),
    Erased(Erasure),
}

impl SlotKey {
    fn state(&self) -> KeyState {
        match self {
            Self::Live(c) => KeyState::Live(c.contact_key()),
            Self::Erased(e) => KeyState::Erased(*e),
        }
    }
}

struct Inner {
    /// Slot of each owner.
    index: OwnerMap<u64>,
    /// Zeroed slots to reuse.
    free: Vec<u64>,
    /// Slots in the file, header included.
    len: u64,
    cache: OwnerMap<Cached>,
    /// Keys written but not yet synced by the call that made them.
    pending: OwnerMap<Cached>,
    tenants: HashMap<String, Arc<SecretKey>>,
    /// Slot writes begun, counted under the lock: a reader that read a
    /// slot outside the lock and finds the count unchanged knows the slot
    /// still holds what it read, without reading it again.
    writes: u64,
    /// A sync failed: nothing is known durable any more.
    poisoned: bool,
}

/// A contact key's raw bytes and its wrapped bytes as the key file holds them.
#[cfg(feature = "test-util")]
pub type KeyMaterial = (Zeroizing<Vec<u8>>, Vec<u8>);

/// How many contact keys are kept unwrapped in memory at most, unless
/// [`FileKeyStore::with_cache_entries`] says otherwise.
pub const KEY_CACHE_ENTRIES: usize = 100_000;

/// Bytes one cached key takes at most, the table's slack included: a
/// 32-byte owner, a 36-byte key and generation (40 aligned) and a control
/// byte, in a table that doubles when seven eighths full (so at worst
/// 7/16 full). Budgets divide by this.
pub const KEY_CACHE_ENTRY_BYTES: usize = 168;

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
            // The file's name, and the directory's in its parent: without
            // the parent's sync a power cut could drop the whole key
            // directory (found by
            // an_acknowledged_event_of_a_new_contact_still_decrypts_after_a_power_cut).
            crate::sync_tree(dir).map_err(io)?;
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
                index: OwnerMap::default(),
                free: Vec::new(),
                len: 0,
                cache: OwnerMap::default(),
                pending: OwnerMap::default(),
                tenants: HashMap::new(),
                writes: 0,
                poisoned: false,
            }),
            cache_entries: KEY_CACHE_ENTRIES,
            #[cfg(test)]
            before_ensure_locks: Mutex::new(None),
        };
        store.recover(bytes)?;
        Ok(store)
    }

    /// Keeps at most `n` contact keys unwrapped in memory (at least one),
    /// each taking at most [`KEY_CACHE_ENTRY_BYTES`]; when full the cache
    /// is emptied. Default: [`KEY_CACHE_ENTRIES`].
    #[must_use]
    pub fn with_cache_entries(mut self, n: usize) -> Self {
        self.cache_entries = n.max(1);
        self
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

    fn cache(&self, inner: &mut Inner, owner: [u8; 32], key: Cached) {
        if inner.cache.len() >= self.cache_entries {
            inner.cache.clear();
        }
        inner.cache.insert(owner, key);
    }

    /// What a contact's slot holds: its key, unwrapped, or its erasure.
    fn slot_key(&self, slot: &[u8; SLOT_LEN]) -> Result<SlotKey> {
        let s = parse(slot).ok_or_else(|| Error::config("a contact key slot is damaged"))?;
        Ok(match s.state {
            LIVE => SlotKey::Live(Cached {
                generation: s.generation,
                key: self.unwrap_key(slot, &s)?,
            }),
            _ => SlotKey::Erased(Erasure {
                generation: s.generation,
                events: s.count,
                erased_at: erased_at(slot),
            }),
        })
    }

    /// Caches keys read from their slots (owner, slot, its bytes, the key)
    /// outside the lock, each only if it is still its slot's durable key:
    /// an erasure or a new key may have been written since the slot was
    /// read. When no slot was written since `writes` was taken, none
    /// changed; otherwise each slot is read again to tell.
    fn cache_read(
        &self,
        writes: u64,
        read: impl IntoIterator<Item = ([u8; 32], u64, [u8; SLOT_LEN], Cached)>,
    ) -> Result<()> {
        let mut inner = self.lock_ok()?;
        let unchanged = inner.writes == writes;
        for (o, at, slot, k) in read {
            if !inner.pending.contains_key(&o) && (unchanged || self.read_slot(at)? == slot) {
                self.cache(&mut inner, o, k);
            }
        }
        Ok(())
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
            inner.writes += 1;
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
        let (at, writes) = {
            let inner = self.lock_ok()?;
            if let Some(k) = inner.cache.get(&o).or_else(|| inner.pending.get(&o)) {
                let k = k.clone();
                // The cipher is made outside the lock.
                drop(inner);
                return Ok(KeyState::Live(k.contact_key()));
            }
            match inner.index.get(&o) {
                Some(&at) => (at, inner.writes),
                None => return Ok(KeyState::Unknown),
            }
        };
        let slot = self.read_slot(at)?;
        let read = self.slot_key(&slot)?;
        let state = read.state();
        if let SlotKey::Live(k) = read {
            self.cache_read(writes, [(o, at, slot, k)])?;
        }
        Ok(state)
    }

    fn contacts(&self, tenant: &str, contacts: &[Pseudonym]) -> Result<Vec<KeyState>> {
        // Hashed before the lock is taken, which is then held only for the
        // lookups in memory.
        let owners: Vec<[u8; 32]> = contacts
            .iter()
            .map(|c| owner(KIND_CONTACT, tenant, Some(c)))
            .collect();
        let mut found = Vec::with_capacity(owners.len());
        let mut misses = Vec::new();
        let writes = {
            let inner = self.lock_ok()?;
            for (i, o) in owners.iter().enumerate() {
                found.push(match inner.cache.get(o).or_else(|| inner.pending.get(o)) {
                    Some(k) => Some(k.clone()),
                    None => {
                        // Read below; `Unknown` stands until then.
                        if let Some(&at) = inner.index.get(o) {
                            misses.push((at, i));
                        }
                        None
                    }
                });
            }
            inner.writes
        };
        // Ciphers are made outside the lock.
        let mut out: Vec<KeyState> = found
            .into_iter()
            .map(|k| k.map_or(KeyState::Unknown, |k| KeyState::Live(k.contact_key())))
            .collect();
        // In file order: neighbouring slots share the pages they read.
        misses.sort_unstable();
        let mut read = Vec::with_capacity(misses.len());
        for (at, i) in misses {
            let slot = self.read_slot(at)?;
            let key = self.slot_key(&slot)?;
            out[i] = key.state();
            if let SlotKey::Live(k) = key {
                read.push((owners[i], at, slot, k));
            }
        }
        self.cache_read(writes, read)?;
        Ok(out)
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
        #[cfg(test)]
        {
            let hook = self.before_ensure_locks.lock().unwrap().take();
            if let Some(hook) = hook {
                hook(self);
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
                out[i] = Some(k.contact_key());
                continue;
            }
            if let Some(k) = inner.pending.get(&o) {
                out[i] = Some(k.contact_key());
                need_sync = true;
                continue;
            }
            // What `contact` gave above may be stale: since then another
            // call may have made this key, synced it and seen it leave a
            // full cache, or destroyed it. Its slot, read under the lock,
            // says which: a live key there is the contact's and is never
            // overwritten (events may be sealed under it already).
            let mut generation = generation;
            if let Some(&at) = inner.index.get(&o) {
                match self.read_slot(at).and_then(|slot| self.slot_key(&slot)) {
                    Ok(SlotKey::Live(k)) if k.generation >= generation => {
                        out[i] = Some(k.contact_key());
                        continue;
                    }
                    Ok(SlotKey::Erased(e)) => generation = generation.max(e.generation + 1),
                    Ok(_) => {}
                    Err(e) => {
                        failed = Some(e);
                        break;
                    }
                }
            }
            let key = SecretKey::generate()?;
            let slot = self.live_slot(KIND_CONTACT, &o, generation, *base, &key)?;
            let fresh = !inner.index.contains_key(&o);
            let at = Self::place(&mut inner, o);
            inner.writes += 1;
            if let Err(e) = self.file.write_all_at(&slot, at * SLOT_LEN as u64) {
                if fresh {
                    inner.index.remove(&o);
                    inner.free.push(at);
                }
                failed = Some(io(e));
                break;
            }
            need_sync = true;
            written.push(o);
            out[i] = Some(ContactKey::new(generation, &key));
            inner.pending.insert(o, Cached { generation, key });
        }
        drop(inner);
        let synced = match failed {
            Some(e) => Err(e),
            None if need_sync => self.file.sync_data().map_err(io),
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
            return Err(e);
        }
        for o in written {
            if let Some(k) = inner.pending.remove(&o) {
                self.cache(&mut inner, o, k);
            }
        }
        Ok(out.into_iter().flatten().collect())
    }

    fn destroy(
        &self,
        tenant: &str,
        contact: &Pseudonym,
        stream_len: u64,
        at_time: i64,
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
                erased_at: erased_at(&old),
            }));
        }
        let erasure = Erasure {
            generation: s.generation,
            events: stream_len.saturating_sub(s.count),
            erased_at: at_time,
        };
        let mut slot = [0u8; SLOT_LEN];
        slot[0] = ERASED;
        slot[1] = KIND_CONTACT;
        slot[4..8].copy_from_slice(&s.generation.to_le_bytes());
        slot[8..40].copy_from_slice(&o);
        slot[40..48].copy_from_slice(&erasure.events.to_le_bytes());
        slot[ERASED_AT].copy_from_slice(&erasure.erased_at.to_le_bytes());
        seal_checksum(&mut slot);
        inner.writes += 1;
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
mod cache_tests {
    use super::{Cached, KEY_CACHE_ENTRY_BYTES};

    #[test]
    fn a_cached_key_takes_no_more_than_the_budgeted_bytes() {
        // A bucket and its control byte, in a table at worst 7/16 full.
        let bucket = std::mem::size_of::<([u8; 32], Cached)>() + 1;
        assert!(bucket * 16 / 7 <= KEY_CACHE_ENTRY_BYTES, "{bucket}");
    }
}
