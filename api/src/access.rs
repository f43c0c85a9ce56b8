//! Tenants, API keys and per-tenant provider secrets: the access store.
//!
//! They live outside the log, in one small JSON file, `access.json` in the
//! data directory, so that the admin commands (`mailledger tenant …`,
//! `mailledger key …`) work while the server holds the log open. Every
//! change takes an exclusive advisory lock on `access.lock`, reads the file
//! afresh, writes `access.json.tmp` (mode 0600), `fsync`s it, renames it over
//! `access.json` and `fsync`s the directory: a reader sees the old file or
//! the new one, never a torn one. The server re-reads the file when its
//! inode, length or modification time changed (checked on each request),
//! and at least every two seconds.
//!
//! # API keys
//!
//! A key reads `mlk_<id>_<secret>`: `id` is 16 hex digits (64 random bits,
//! not secret), `secret` 48 hex digits (192 random bits). The store keeps
//! only `blake3::keyed_hash(K, id ‖ 0 ‖ secret)`, where `K` is derived from
//! the key-encryption key (KEK) with `blake3::derive_key`: neither the
//! access file nor the KEK alone can test a guessed key. Hashes are compared
//! in constant time (`blake3::Hash` equality), and a key of an unknown id is
//! hashed all the same, so timing does not tell which part was wrong.
//!
//! # Webhook secrets
//!
//! Each tenant's webhook secrets are one [`ProviderSecrets`] document (JSON:
//! Mailgun's signing key, Postal's and SendGrid's public keys, SNS
//! certificates and topics, whether unsigned webhooks are accepted), sealed
//! with AES-256-GCM under a second key derived from the KEK, with associated
//! data binding the tenant. Only the names of the configured providers are
//! kept in clear.

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
use utoipa::ToSchema;
use zeroize::Zeroizing;

use crate::webhooks::ProviderSecrets;

/// The access file's name in the data directory.
pub const ACCESS_FILE: &str = "access.json";
/// The lock file's name in the data directory.
pub const LOCK_FILE: &str = "access.lock";
/// The prefix of every API key.
pub const KEY_PREFIX: &str = "mlk_";
/// The tenant `init` and the first start of the server create.
pub const DEFAULT_TENANT: &str = "default";

const FORMAT: u32 = 1;
const ID_BYTES: usize = 8;
const SECRET_BYTES: usize = 24;
const HASH_CONTEXT: &str = "mailledger 2026-11 api key hash v1";
const SECRET_CONTEXT: &str = "mailledger 2026-11 provider secret seal v1";
const SECRET_AD: &[u8] = b"mailledger provider secret v1";
const RELOAD_EVERY: Duration = Duration::from_secs(2);
/// The longest webhook secrets document accepted (a few PEM certificates
/// fit easily).
pub const MAX_WEBHOOK_SECRETS_LEN: usize = 64 * 1024;
/// The longest key name.
pub const MAX_KEY_NAME_LEN: usize = 128;

/// What a key may do.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// Append events and webhooks.
    Ingest,
    /// Read messages, suppressions, analytics; export a contact.
    Read,
    /// Erase contacts.
    Erase,
    /// Manage tenants, keys and provider secrets (of every tenant).
    Admin,
}

impl Scope {
    /// Every scope.
    pub const ALL: [Scope; 4] = [Scope::Ingest, Scope::Read, Scope::Erase, Scope::Admin];

    /// The scope's name.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Ingest => "ingest",
            Self::Read => "read",
            Self::Erase => "erase",
            Self::Admin => "admin",
        }
    }
}

impl std::str::FromStr for Scope {
    type Err = AccessError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Scope::ALL
            .into_iter()
            .find(|c| c.name() == s.trim())
            .ok_or_else(|| AccessError::Invalid("scopes are ingest, read, erase and admin".into()))
    }
}

/// Parses a comma-separated scope list, such as `ingest,read`.
///
/// # Errors
/// An unknown or empty list.
pub fn parse_scopes(list: &str) -> Result<Vec<Scope>, AccessError> {
    let mut out: Vec<Scope> = list
        .split(',')
        .filter(|s| !s.trim().is_empty())
        .map(str::parse)
        .collect::<Result<_, _>>()?;
    out.sort_unstable();
    out.dedup();
    if out.is_empty() {
        return Err(AccessError::Invalid("give at least one scope".into()));
    }
    Ok(out)
}

/// An access store failure.
#[derive(Debug, thiserror::Error)]
pub enum AccessError {
    /// Bad input: names the rule.
    #[error("{0}")]
    Invalid(String),
    /// The tenant exists already.
    #[error("tenant `{0}` exists already")]
    TenantExists(String),
    /// No such tenant.
    #[error("no tenant `{0}`")]
    UnknownTenant(String),
    /// No such key.
    #[error("no key `{0}`")]
    UnknownKey(String),
    /// The file could not be read or written.
    #[error("access store {path}: {message}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What failed.
        message: String,
    },
    /// The file does not parse, or a sealed secret does not open.
    #[error("access store {path} is damaged: {message}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

/// A tenant as the admin API and CLI show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TenantInfo {
    /// The tenant's name (`[a-z0-9_-]{1,64}`).
    pub name: String,
    /// When it was created (RFC 3339).
    pub created_at: String,
    /// Providers whose webhook secret is set (the secrets are never shown).
    pub webhook_providers: Vec<String>,
    /// Whether webhooks of a signing provider without a configured secret
    /// are refused (the default) rather than accepted unverified.
    pub require_signatures: bool,
    /// SNS subscription confirmations received (recorded, never followed).
    pub sns_subscriptions: Vec<SnsSubscription>,
    /// Where the tenant's data may be kept: `EU` or ISO 3166-1 alpha-2
    /// country codes. A node serves the tenant only when the node and every
    /// store it keeps data in lie within these.
    #[schema(value_type = Vec<String>, example = json!(["EU"]))]
    pub jurisdictions: Vec<Jurisdiction>,
}

/// An SNS subscription (or unsubscription) confirmation, recorded for an
/// operator to act on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SnsSubscription {
    /// `subscribe` or `unsubscribe`.
    pub kind: String,
    /// The SNS topic.
    pub topic_arn: String,
    /// The URL that confirms the subscription (never followed by mailledger).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subscribe_url: Option<String>,
    /// The SNS message id.
    pub message_id: String,
    /// When it arrived (RFC 3339).
    pub received_at: String,
}

/// An API key as the admin API and CLI list it: never its secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct KeyInfo {
    /// The key's id: the part after `mlk_`, up to the next `_`.
    pub id: String,
    /// The tenant the key acts for.
    pub tenant: String,
    /// What it may do.
    pub scopes: Vec<Scope>,
    /// A label.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// When it was created (RFC 3339).
    pub created_at: String,
    /// When it was revoked (RFC 3339), if it was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<String>,
}

/// Who a request acts for: the tenant comes from the key alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The tenant.
    pub tenant: String,
    /// The key's id.
    pub key_id: String,
    /// The key's scopes.
    pub scopes: Vec<Scope>,
    /// Where the tenant's data may be kept.
    pub jurisdictions: Vec<Jurisdiction>,
}

impl Caller {
    /// Whether the key has `scope`.
    #[must_use]
    pub fn has(&self, scope: Scope) -> bool {
        // The admin scope manages every tenant, so only the operator
        // tenant's keys may carry it; any other tenant's admin key (say, an
        // edited access file) is refused here, where every route checks.
        self.scopes.contains(&scope) && (scope != Scope::Admin || self.tenant == DEFAULT_TENANT)
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct AccessFile {
    format: u32,
    #[serde(default)]
    tenants: BTreeMap<String, TenantEntry>,
    #[serde(default)]
    keys: BTreeMap<String, KeyEntry>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct TenantEntry {
    created_at: String,
    /// The sealed [`ProviderSecrets`] JSON.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    webhook_secrets: Option<Sealed>,
    #[serde(default)]
    webhook_providers: Vec<String>,
    #[serde(default = "yes")]
    require_signatures: bool,
    #[serde(default)]
    sns_subscriptions: Vec<SnsSubscription>,
    /// Files written before residency existed hold tenants of the
    /// product's default, the EU.
    #[serde(default = "eu")]
    jurisdictions: Vec<Jurisdiction>,
}

fn yes() -> bool {
    true
}

fn eu() -> Vec<Jurisdiction> {
    vec![Jurisdiction::EU]
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyEntry {
    tenant: String,
    scopes: Vec<Scope>,
    /// Hex of the keyed hash of id and secret.
    hash: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    name: Option<String>,
    created_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    revoked_at: Option<String>,
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

/// The access store over `DATA_DIR/access.json`; see the module docs.
pub struct AccessStore {
    dir: PathBuf,
    hash_key: Zeroizing<[u8; 32]>,
    seal: Cipher,
    cache: Mutex<Cached>,
}

impl std::fmt::Debug for AccessStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessStore")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

fn now() -> String {
    mailledger_core::email::rfc3339(mailledger_core::now_micros())
}

fn random_hex(n: usize) -> Result<String, AccessError> {
    let mut b = Zeroizing::new(vec![0u8; n]);
    getrandom::fill(&mut b).map_err(|e| AccessError::Io {
        path: PathBuf::from("(system randomness)"),
        message: e.to_string(),
    })?;
    Ok(hex(&b))
}

fn is_lower_hex(s: &str, len: usize) -> bool {
    s.len() == len
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Splits `mlk_<id>_<secret>` into id and secret, checking their shapes.
fn split_key(token: &str) -> Option<(&str, &str)> {
    let rest = token.strip_prefix(KEY_PREFIX)?;
    let (id, secret) = rest.split_once('_')?;
    (is_lower_hex(id, ID_BYTES * 2) && is_lower_hex(secret, SECRET_BYTES * 2))
        .then_some((id, secret))
}

fn secret_ad(tenant: &str) -> Vec<u8> {
    let mut ad = SECRET_AD.to_vec();
    ad.extend_from_slice(&(tenant.len() as u16).to_le_bytes());
    ad.extend_from_slice(tenant.as_bytes());
    ad
}

/// The providers a secrets document configures.
fn configured(secrets: &ProviderSecrets) -> Vec<String> {
    let mut p = Vec::new();
    if secrets.postal_public_key.is_some() {
        p.push("postal".to_owned());
    }
    if !secrets.sns_certificates.is_empty() {
        p.push("ses".to_owned());
    }
    if secrets.mailgun_signing_key.is_some() {
        p.push("mailgun".to_owned());
    }
    if secrets.sendgrid_public_key.is_some() {
        p.push("sendgrid".to_owned());
    }
    p
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
                file: Arc::new(AccessFile {
                    format: FORMAT,
                    ..AccessFile::default()
                }),
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
                return Ok((
                    None,
                    AccessFile {
                        format: FORMAT,
                        ..AccessFile::default()
                    },
                ));
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
    fn snapshot(&self) -> Result<Arc<AccessFile>, AccessError> {
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
    fn update<T>(
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

    fn hash(&self, id: &str, secret: &str) -> blake3::Hash {
        let mut h = blake3::Hasher::new_keyed(&self.hash_key);
        h.update(id.as_bytes());
        h.update(&[0]);
        h.update(secret.as_bytes());
        h.finalize()
    }

    /// The caller a key stands for, or `None` for any failure: malformed,
    /// unknown id, wrong secret, revoked, or a tenant that no longer exists.
    /// The caller cannot tell these apart.
    ///
    /// # Errors
    /// Only when the access file cannot be read.
    pub fn authenticate(&self, token: &str) -> Result<Option<Caller>, AccessError> {
        let file = self.snapshot()?;
        let Some((id, secret)) = split_key(token) else {
            return Ok(None);
        };
        let computed = self.hash(id, secret);
        let Some(entry) = file.keys.get(id) else {
            return Ok(None);
        };
        let stored = blake3::Hash::from_hex(&entry.hash).map_err(|_| AccessError::Corrupt {
            path: self.path(),
            message: format!("key {id} has a malformed hash"),
        })?;
        // blake3::Hash equality is constant-time.
        if stored != computed || entry.revoked_at.is_some() {
            return Ok(None);
        }
        let Some(tenant) = file.tenants.get(&entry.tenant) else {
            return Ok(None);
        };
        Ok(Some(Caller {
            tenant: entry.tenant.clone(),
            key_id: id.to_owned(),
            scopes: entry.scopes.clone(),
            jurisdictions: tenant.jurisdictions.clone(),
        }))
    }

    /// Creates a tenant whose data may be kept in `jurisdictions`.
    ///
    /// # Errors
    /// A bad name, no jurisdiction, an existing tenant, or a storage
    /// failure.
    pub fn create_tenant(
        &self,
        name: &str,
        jurisdictions: &[Jurisdiction],
    ) -> Result<TenantInfo, AccessError> {
        mailledger_core::validate_tenant(name)
            .map_err(|_| AccessError::Invalid("a tenant name is 1 to 64 of a-z 0-9 _ -".into()))?;
        if jurisdictions.is_empty() {
            return Err(AccessError::Invalid(
                "a tenant needs at least one jurisdiction its data may be kept in".into(),
            ));
        }
        self.update(|f| {
            if f.tenants.contains_key(name) {
                return Err(AccessError::TenantExists(name.to_owned()));
            }
            f.tenants.insert(
                name.to_owned(),
                TenantEntry {
                    created_at: now(),
                    webhook_secrets: None,
                    webhook_providers: Vec::new(),
                    require_signatures: true,
                    sns_subscriptions: Vec::new(),
                    jurisdictions: jurisdictions.to_vec(),
                },
            );
            Ok(())
        })?;
        self.tenant(name)?
            .ok_or_else(|| AccessError::UnknownTenant(name.to_owned()))
    }

    fn tenant_info(name: &str, t: &TenantEntry) -> TenantInfo {
        TenantInfo {
            name: name.to_owned(),
            created_at: t.created_at.clone(),
            webhook_providers: t.webhook_providers.clone(),
            require_signatures: t.require_signatures,
            sns_subscriptions: t.sns_subscriptions.clone(),
            jurisdictions: t.jurisdictions.clone(),
        }
    }

    /// One tenant.
    ///
    /// # Errors
    /// A storage failure.
    pub fn tenant(&self, name: &str) -> Result<Option<TenantInfo>, AccessError> {
        let f = self.snapshot()?;
        Ok(f.tenants.get(name).map(|t| Self::tenant_info(name, t)))
    }

    /// Every tenant, by name.
    ///
    /// # Errors
    /// A storage failure.
    pub fn tenants(&self) -> Result<Vec<TenantInfo>, AccessError> {
        let f = self.snapshot()?;
        Ok(f.tenants
            .iter()
            .map(|(n, t)| Self::tenant_info(n, t))
            .collect())
    }

    /// Creates a key for `tenant` and returns it with the key text, which is
    /// shown this once and never stored.
    ///
    /// # Errors
    /// An unknown tenant, no scopes, a bad name, or a storage failure.
    pub fn create_key(
        &self,
        tenant: &str,
        scopes: &[Scope],
        name: Option<&str>,
    ) -> Result<(KeyInfo, Zeroizing<String>), AccessError> {
        let mut scopes = scopes.to_vec();
        scopes.sort_unstable();
        scopes.dedup();
        if scopes.is_empty() {
            return Err(AccessError::Invalid("give at least one scope".into()));
        }
        if scopes.contains(&Scope::Admin) && tenant != DEFAULT_TENANT {
            return Err(AccessError::Invalid(format!(
                "the admin scope manages every tenant: only keys of the operator tenant `{DEFAULT_TENANT}` may have it"
            )));
        }
        if let Some(n) = name
            && (n.is_empty()
                || n.len() > MAX_KEY_NAME_LEN
                || n.chars().any(char::is_control)
                || n.contains('@'))
        {
            return Err(AccessError::Invalid(format!(
                "a key name is 1 to {MAX_KEY_NAME_LEN} printable characters without `@`"
            )));
        }
        let id = random_hex(ID_BYTES)?;
        let secret = Zeroizing::new(random_hex(SECRET_BYTES)?);
        let hash = self.hash(&id, &secret).to_hex().to_string();
        let entry = KeyEntry {
            tenant: tenant.to_owned(),
            scopes,
            hash,
            name: name.map(str::to_owned),
            created_at: now(),
            revoked_at: None,
        };
        let info = key_info(&id, &entry);
        self.update(|f| {
            if !f.tenants.contains_key(tenant) {
                return Err(AccessError::UnknownTenant(tenant.to_owned()));
            }
            f.keys.insert(id.clone(), entry);
            Ok(())
        })?;
        let text = Zeroizing::new(format!("{KEY_PREFIX}{id}_{}", secret.as_str()));
        Ok((info, text))
    }

    /// Keys, of one tenant or of all, by id.
    ///
    /// # Errors
    /// A storage failure.
    pub fn keys(&self, tenant: Option<&str>) -> Result<Vec<KeyInfo>, AccessError> {
        let f = self.snapshot()?;
        Ok(f.keys
            .iter()
            .filter(|(_, k)| tenant.is_none_or(|t| k.tenant == t))
            .map(|(id, k)| key_info(id, k))
            .collect())
    }

    /// Whether any key was ever made (revoked ones count).
    ///
    /// # Errors
    /// A storage failure.
    pub fn has_keys(&self) -> Result<bool, AccessError> {
        Ok(!self.snapshot()?.keys.is_empty())
    }

    /// Revokes a key (idempotent; the entry stays, marked).
    ///
    /// # Errors
    /// An unknown key id or a storage failure.
    pub fn revoke_key(&self, id: &str) -> Result<KeyInfo, AccessError> {
        let id = id.strip_prefix(KEY_PREFIX).unwrap_or(id);
        let id = id.split('_').next().unwrap_or(id);
        self.update(|f| {
            let k = f
                .keys
                .get_mut(id)
                .ok_or_else(|| AccessError::UnknownKey(id.to_owned()))?;
            if k.revoked_at.is_none() {
                k.revoked_at = Some(now());
            }
            Ok(key_info(id, k))
        })
    }

    /// Sets a tenant's webhook secrets: a JSON [`ProviderSecrets`]
    /// document (checked, then sealed), or with `None` removes them.
    ///
    /// # Errors
    /// An unknown tenant, a document that does not parse (the error names
    /// the field, never a value), or a storage failure.
    pub fn set_webhook_secrets(&self, tenant: &str, json: Option<&str>) -> Result<(), AccessError> {
        let sealed = match json {
            Some(text) => {
                if text.len() > MAX_WEBHOOK_SECRETS_LEN {
                    return Err(AccessError::Invalid(format!(
                        "webhook secrets are at most {MAX_WEBHOOK_SECRETS_LEN} bytes"
                    )));
                }
                let parsed: ProviderSecrets = serde_json::from_str(text).map_err(|e| {
                    AccessError::Invalid(format!(
                        "webhook secrets: {}",
                        crate::problem::describe_json_error(&e)
                    ))
                })?;
                let sealed = self
                    .seal
                    .seal(text.as_bytes(), &secret_ad(tenant))
                    .map_err(|e| AccessError::Invalid(e.to_string()))?;
                Some((sealed, configured(&parsed), parsed.require_signatures))
            }
            None => None,
        };
        self.update(|f| {
            let t = f
                .tenants
                .get_mut(tenant)
                .ok_or_else(|| AccessError::UnknownTenant(tenant.to_owned()))?;
            match sealed {
                Some((s, providers, require)) => {
                    t.webhook_secrets = Some(s);
                    t.webhook_providers = providers;
                    t.require_signatures = require;
                }
                None => {
                    t.webhook_secrets = None;
                    t.webhook_providers = Vec::new();
                    t.require_signatures = true;
                }
            }
            Ok(())
        })
    }

    /// A tenant's webhook secrets: the document set, or the default (no
    /// secrets, signatures required) when none was.
    ///
    /// # Errors
    /// A storage failure, or a document that does not open (the wrong KEK).
    pub fn webhook_secrets(&self, tenant: &str) -> Result<ProviderSecrets, AccessError> {
        let f = self.snapshot()?;
        let Some(sealed) = f
            .tenants
            .get(tenant)
            .and_then(|t| t.webhook_secrets.as_ref())
        else {
            return Ok(ProviderSecrets::default());
        };
        let corrupt = |message: String| AccessError::Corrupt {
            path: self.path(),
            message,
        };
        let plain = self.seal.open(sealed, &secret_ad(tenant)).ok_or_else(|| {
            corrupt(format!(
                "the webhook secrets of tenant {tenant} do not open: is this the KEK they were set with?"
            ))
        })?;
        serde_json::from_slice(&plain).map_err(|_| {
            corrupt(format!(
                "the webhook secrets of tenant {tenant} do not parse"
            ))
        })
    }

    /// Records an SNS subscription confirmation for the tenant (idempotent
    /// by message id; at most the 100 latest are kept).
    ///
    /// # Errors
    /// An unknown tenant or a storage failure.
    pub fn record_sns_subscription(
        &self,
        tenant: &str,
        sub: SnsSubscription,
    ) -> Result<(), AccessError> {
        self.update(|f| {
            let t = f
                .tenants
                .get_mut(tenant)
                .ok_or_else(|| AccessError::UnknownTenant(tenant.to_owned()))?;
            if !t
                .sns_subscriptions
                .iter()
                .any(|s| s.message_id == sub.message_id)
            {
                t.sns_subscriptions.push(sub);
                let excess = t.sns_subscriptions.len().saturating_sub(100);
                t.sns_subscriptions.drain(..excess);
            }
            Ok(())
        })
    }

    /// Creates tenant `default` (its data kept in `jurisdictions`) when
    /// there is no tenant, and when no key was ever made, one key for it
    /// with every scope, returned (shown once).
    ///
    /// # Errors
    /// A storage failure.
    pub fn bootstrap(
        &self,
        jurisdictions: &[Jurisdiction],
    ) -> Result<Option<(KeyInfo, Zeroizing<String>)>, AccessError> {
        if self.tenants()?.is_empty() {
            match self.create_tenant(DEFAULT_TENANT, jurisdictions) {
                Ok(_) | Err(AccessError::TenantExists(_)) => {}
                Err(e) => return Err(e),
            }
        }
        if self.has_keys()? {
            return Ok(None);
        }
        let tenant = if self.tenant(DEFAULT_TENANT)?.is_some() {
            DEFAULT_TENANT.to_owned()
        } else {
            self.tenants()?
                .first()
                .map(|t| t.name.clone())
                .unwrap_or_else(|| DEFAULT_TENANT.to_owned())
        };
        self.create_key(&tenant, &Scope::ALL, Some("first admin key"))
            .map(Some)
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

fn key_info(id: &str, k: &KeyEntry) -> KeyInfo {
    KeyInfo {
        id: id.to_owned(),
        tenant: k.tenant.clone(),
        scopes: k.scopes.clone(),
        name: k.name.clone(),
        created_at: k.created_at.clone(),
        revoked_at: k.revoked_at.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EU: [Jurisdiction; 1] = [Jurisdiction::EU];

    fn kek() -> SecretKey {
        SecretKey::from_hex(&"ab".repeat(32)).unwrap()
    }

    #[test]
    fn a_created_key_authenticates_and_a_revoked_one_does_not() {
        let dir = tempfile::tempdir().unwrap();
        let s = AccessStore::open(dir.path(), &kek()).unwrap();
        s.create_tenant("acme", &EU).unwrap();
        let (info, key) = s.create_key("acme", &[Scope::Read], None).unwrap();
        assert!(key.starts_with("mlk_"));
        let c = s.authenticate(&key).unwrap().unwrap();
        assert_eq!(c.tenant, "acme");
        assert_eq!(c.scopes, vec![Scope::Read]);
        // Another process (the CLI) revokes through its own store.
        let other = AccessStore::open(dir.path(), &kek()).unwrap();
        other.revoke_key(&info.id).unwrap();
        assert_eq!(s.authenticate(&key).unwrap(), None);
    }

    #[test]
    fn the_file_holds_no_secret_and_another_kek_cannot_test_keys() {
        let dir = tempfile::tempdir().unwrap();
        let s = AccessStore::open(dir.path(), &kek()).unwrap();
        s.create_tenant("acme", &EU).unwrap();
        let (_, key) = s.create_key("acme", &[Scope::Ingest], None).unwrap();
        s.set_webhook_secrets(
            "acme",
            Some(r#"{"mailgun_signing_key": "signing-key-xyz"}"#),
        )
        .unwrap();
        let text = std::fs::read_to_string(s.path()).unwrap();
        let (_, secret) = split_key(&key).unwrap();
        assert!(!text.contains(secret));
        assert!(!text.contains("signing-key-xyz"));
        let wrong =
            AccessStore::open(dir.path(), &SecretKey::from_hex(&"cd".repeat(32)).unwrap()).unwrap();
        assert_eq!(wrong.authenticate(&key).unwrap(), None);
        assert_eq!(
            s.webhook_secrets("acme")
                .unwrap()
                .mailgun_signing_key
                .as_deref(),
            Some("signing-key-xyz")
        );
        assert_eq!(
            s.tenant("acme").unwrap().unwrap().webhook_providers,
            ["mailgun"]
        );
        assert!(wrong.webhook_secrets("acme").is_err());
        let err = s
            .set_webhook_secrets("acme", Some(r#"{"mailgun_key": "zed"}"#))
            .unwrap_err()
            .to_string();
        assert!(err.contains("mailgun_key") && !err.contains("zed"), "{err}");
    }

    #[test]
    fn malformed_keys_fail_quietly() {
        let dir = tempfile::tempdir().unwrap();
        let s = AccessStore::open(dir.path(), &kek()).unwrap();
        for bad in ["", "mlk_", "mlk_x_y", "Bearer", "mlk_0123456789abcdef_zz"] {
            assert_eq!(s.authenticate(bad).unwrap(), None);
        }
    }

    #[test]
    fn bootstrap_makes_default_and_one_key_once() {
        let dir = tempfile::tempdir().unwrap();
        let s = AccessStore::open(dir.path(), &kek()).unwrap();
        let (info, key) = s.bootstrap(&EU).unwrap().unwrap();
        assert_eq!(info.tenant, DEFAULT_TENANT);
        assert_eq!(info.scopes, Scope::ALL.to_vec());
        assert!(s.authenticate(&key).unwrap().is_some());
        assert!(s.bootstrap(&EU).unwrap().is_none());
    }
}
