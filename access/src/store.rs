//! The access file: its format, and [`AccessStore`], which reads it
//! (cached, re-read when it changed) and writes every change atomically
//! under a lock (see the crate docs).

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use mailledger_core::crypto::{Cipher, Sealed, SecretKey};
use mailledger_core::hex;
use mailledger_core::residency::{Jurisdiction, TenantResidency};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::keys::Scope;
use crate::webhook_secrets::SnsSubscription;
use crate::{ACCESS_FILE, AccessError, LOCK_FILE};

const FORMAT: u32 = 1;
const HASH_CONTEXT: &str = "mailledger 2026-11 api key hash v1";
const SECRET_CONTEXT: &str = "mailledger 2026-11 provider secret seal v1";
const RELOAD_EVERY: Duration = Duration::from_secs(2);

/// The file, `access.json`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AccessFile {
    format: u32,
    #[serde(default)]
    pub(crate) tenants: BTreeMap<String, TenantEntry>,
    #[serde(default)]
    pub(crate) keys: BTreeMap<String, KeyEntry>,
}

impl AccessFile {
    /// A file with nothing in it.
    fn empty() -> Self {
        Self {
            format: FORMAT,
            ..Self::default()
        }
    }
}

/// A tenant in the file.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TenantEntry {
    pub(crate) created_at: String,
    /// The sealed [`ProviderSecrets`](crate::ProviderSecrets) JSON.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) webhook_secrets: Option<Sealed>,
    #[serde(default)]
    pub(crate) webhook_providers: Vec<String>,
    #[serde(default = "yes")]
    pub(crate) require_signatures: bool,
    #[serde(default)]
    pub(crate) sns_subscriptions: Vec<SnsSubscription>,
    /// Files written before residency existed hold tenants of the
    /// product's default, the EU.
    #[serde(default = "eu")]
    pub(crate) jurisdictions: Vec<Jurisdiction>,
}

fn yes() -> bool {
    true
}

fn eu() -> Vec<Jurisdiction> {
    vec![Jurisdiction::EU]
}

/// An API key in the file: never its secret.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct KeyEntry {
    pub(crate) tenant: String,
    pub(crate) scopes: Vec<Scope>,
    /// Hex of the keyed hash of id and secret.
    pub(crate) hash: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) name: Option<String>,
    pub(crate) created_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) revoked_at: Option<String>,
}

/// The identity of a version of the file on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    dev: u64,
    ino: u64,
    len: u64,
    mtime: i64,
    mtime_nsec: i64,
}

struct Cached {
    stamp: Option<Stamp>,
    read_at: Instant,
    file: Arc<AccessFile>,
}

/// The access store over `DATA_DIR/access.json`; see the crate docs.
pub struct AccessStore {
    dir: PathBuf,
    /// The key of API key hashes.
    pub(crate) hash_key: Zeroizing<[u8; 32]>,
    /// The cipher of webhook secrets.
    pub(crate) seal: Cipher,
    cache: Mutex<Cached>,
}

impl std::fmt::Debug for AccessStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessStore")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

/// Now, as the file records times (RFC 3339).
pub(crate) fn now() -> String {
    mailledger_core::email::rfc3339(mailledger_core::now_micros())
}

impl AccessStore {
    /// The store in `data_dir` (created on the first change), with hashing
    /// and sealing keys derived from `kek`.
    ///
    /// # Errors
    /// When an existing file cannot be read or does not parse.
    pub fn open(data_dir: &Path, kek: &SecretKey) -> Result<Self, AccessError> {
        let kek_hex = kek.to_hex();
        let hash_key = Zeroizing::new(blake3::derive_key(HASH_CONTEXT, kek_hex.as_bytes()));
        let seal_key = Zeroizing::new(blake3::derive_key(SECRET_CONTEXT, kek_hex.as_bytes()));
        let seal_key = SecretKey::from_hex(&hex(seal_key.as_slice()))
            .map_err(|_| AccessError::Invalid("cannot derive the provider secret key".into()))?;
        let store = Self {
            dir: data_dir.to_path_buf(),
            hash_key,
            seal: Cipher::new(&seal_key),
            cache: Mutex::new(Cached {
                stamp: None,
                read_at: Instant::now(),
                file: Arc::new(AccessFile::empty()),
            }),
        };
        store.reload()?;
        Ok(store)
    }

    /// The file's path.
    #[must_use]
    pub fn path(&self) -> PathBuf {
        self.dir.join(ACCESS_FILE)
    }

    fn io(&self, e: impl std::fmt::Display) -> AccessError {
        AccessError::Io {
            path: self.path(),
            message: e.to_string(),
        }
    }

    /// A [`AccessError::Corrupt`] of this store's file.
    pub(crate) fn corrupt(&self, message: String) -> AccessError {
        AccessError::Corrupt {
            path: self.path(),
            message,
        }
    }

    fn stamp(&self) -> Result<Option<Stamp>, AccessError> {
        match std::fs::metadata(self.path()) {
            Ok(m) => Ok(Some(Stamp {
                dev: m.dev(),
                ino: m.ino(),
                len: m.len(),
                mtime: m.mtime(),
                mtime_nsec: m.mtime_nsec(),
            })),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(self.io(e)),
        }
    }

    fn read_file(&self) -> Result<(Option<Stamp>, AccessFile), AccessError> {
        let stamp = self.stamp()?;
        let text = match std::fs::read(self.path()) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok((None, AccessFile::empty()));
            }
            Err(e) => return Err(self.io(e)),
        };
        Ok((stamp, parse_file(&self.path(), &text)?))
    }

    /// Every tenant of the access file in `data_dir` and where its data may
    /// be kept, read without the KEK (nothing of it is sealed), for the
    /// residency check before a store opens. No file: no tenant.
    ///
    /// # Errors
    /// When the file cannot be read or does not parse.
    pub fn tenant_residency(data_dir: &Path) -> Result<Vec<TenantResidency>, AccessError> {
        let path = data_dir.join(ACCESS_FILE);
        let text = match std::fs::read(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => {
                return Err(AccessError::Io {
                    path,
                    message: e.to_string(),
                });
            }
        };
        Ok(residencies(&parse_file(&path, &text)?))
    }

    /// Every tenant and where its data may be kept, from the cached file.
    ///
    /// # Errors
    /// A storage failure.
    pub fn residencies(&self) -> Result<Vec<TenantResidency>, AccessError> {
        Ok(residencies(&*self.snapshot()?))
    }

    fn reload(&self) -> Result<Arc<AccessFile>, AccessError> {
        let (stamp, file) = self.read_file()?;
        let file = Arc::new(file);
        let mut c = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        c.stamp = stamp;
        c.read_at = Instant::now();
        c.file = Arc::clone(&file);
        Ok(file)
    }

    /// The current contents: cached, re-read when the file changed.
    pub(crate) fn snapshot(&self) -> Result<Arc<AccessFile>, AccessError> {
        let stamp = self.stamp()?;
        {
            let c = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
            if c.stamp == stamp && c.read_at.elapsed() < RELOAD_EVERY {
                return Ok(Arc::clone(&c.file));
            }
        }
        self.reload()
    }

    /// Applies `f` to the file under the lock and writes the result
    /// atomically. Blocking: call from a blocking thread in async code.
    pub(crate) fn update<T>(
        &self,
        f: impl FnOnce(&mut AccessFile) -> Result<T, AccessError>,
    ) -> Result<T, AccessError> {
        std::os::unix::fs::DirBuilderExt::mode(std::fs::DirBuilder::new().recursive(true), 0o700)
            .create(&self.dir)
            .map_err(|e| self.io(e))?;
        let lock = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(self.dir.join(LOCK_FILE))
            .map_err(|e| self.io(e))?;
        lock.lock().map_err(|e| self.io(e))?;
        let (_, mut file) = self.read_file()?;
        let out = f(&mut file)?;
        let tmp = self.dir.join(format!("{ACCESS_FILE}.tmp"));
        let bytes = serde_json::to_vec_pretty(&file).map_err(|e| self.io(e))?;
        let mut t = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(|e| self.io(e))?;
        t.write_all(&bytes)
            .and_then(|()| t.sync_all())
            .map_err(|e| self.io(e))?;
        drop(t);
        std::fs::rename(&tmp, self.path()).map_err(|e| self.io(e))?;
        File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| self.io(e))?;
        drop(lock);
        self.reload()?;
        Ok(out)
    }

    /// Applies `f` to `tenant`'s entry, as [`update`](Self::update) does.
    ///
    /// # Errors
    /// An unknown tenant, what `f` returns, or a storage failure.
    pub(crate) fn update_tenant<T>(
        &self,
        tenant: &str,
        f: impl FnOnce(&mut TenantEntry) -> T,
    ) -> Result<T, AccessError> {
        self.update(|file| {
            let t = file
                .tenants
                .get_mut(tenant)
                .ok_or_else(|| AccessError::UnknownTenant(tenant.to_owned()))?;
            Ok(f(t))
        })
    }
}

/// Every tenant of `file` and where its data may be kept.
fn residencies(file: &AccessFile) -> Vec<TenantResidency> {
    file.tenants
        .iter()
        .map(|(tenant, t)| TenantResidency {
            tenant: tenant.clone(),
            allowed: t.jurisdictions.clone(),
        })
        .collect()
}

/// Parses the access file at `path`, whose bytes are `text`.
fn parse_file(path: &Path, text: &[u8]) -> Result<AccessFile, AccessError> {
    let file: AccessFile = serde_json::from_slice(text).map_err(|e| AccessError::Corrupt {
        path: path.to_path_buf(),
        message: format!(
            "not an access file (line {}, column {})",
            e.line(),
            e.column()
        ),
    })?;
    if file.format != FORMAT {
        return Err(AccessError::Corrupt {
            path: path.to_path_buf(),
            message: format!("format {} is not known to this build", file.format),
        });
    }
    Ok(file)
}
