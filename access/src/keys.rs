//! API keys: what they may do ([`Scope`]), how they are made, listed and
//! revoked, and how a key authenticates to a [`Caller`] (see the crate
//! docs for what is stored).

use std::path::PathBuf;

use mailledger_core::hex;
use mailledger_core::residency::Jurisdiction;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::store::{KeyEntry, now};
use crate::{AccessError, AccessStore, DEFAULT_TENANT, KEY_PREFIX, MAX_KEY_NAME_LEN};

const ID_BYTES: usize = 8;
const SECRET_BYTES: usize = 24;

/// A provider whose webhooks a `webhook:<provider>` scope admits, named as
/// in `POST /v1/webhooks/{provider}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum WebhookProvider {
    /// `postal`.
    Postal,
    /// `ses` (Amazon SES through SNS).
    Ses,
    /// `postmark`.
    Postmark,
    /// `mailgun`.
    Mailgun,
    /// `sendgrid`.
    Sendgrid,
}

impl WebhookProvider {
    /// Every provider.
    pub const ALL: [WebhookProvider; 5] = [
        Self::Postal,
        Self::Ses,
        Self::Postmark,
        Self::Mailgun,
        Self::Sendgrid,
    ];

    /// The provider's name in URLs and scopes.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Postal => "postal",
            Self::Ses => "ses",
            Self::Postmark => "postmark",
            Self::Mailgun => "mailgun",
            Self::Sendgrid => "sendgrid",
        }
    }

    /// The provider of a name (exact, lower case).
    #[must_use]
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.name() == name)
    }
}

/// What a key may do.
///
/// In the access file and the API a scope is its [`name`](Scope::name):
/// `ingest`, `read`, `erase`, `admin`, `webhook` or `webhook:<provider>`.
/// Files written before the `webhook` scope existed hold only the first
/// four, and read as before.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Scope {
    /// Append canonical events, post provider webhooks, add and remove
    /// suppressions.
    Ingest,
    /// Read messages, suppressions, analytics; export a contact.
    Read,
    /// Erase contacts.
    Erase,
    /// Manage tenants, keys and provider secrets (of every tenant).
    Admin,
    /// Audit the tenant's log: replay, signed checkpoints, access records
    /// and the erasure register.
    Audit,
    /// Post provider webhooks (`POST /v1/webhooks/{provider}`) and nothing
    /// else: of every provider (`webhook`), or of one (`webhook:ses`). The
    /// credential a provider's webhook URL carries, which can neither post
    /// unsigned canonical events, nor lift suppressions, nor ask whether an
    /// address is suppressed.
    Webhook(Option<WebhookProvider>),
}

impl Scope {
    /// The general scopes, which the first key of a new installation gets
    /// (`ingest` includes every webhook, so `webhook` is not among them).
    pub const ALL: [Scope; 5] = [
        Scope::Ingest,
        Scope::Read,
        Scope::Erase,
        Scope::Admin,
        Scope::Audit,
    ];

    /// The scope's name.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Ingest => "ingest",
            Self::Read => "read",
            Self::Erase => "erase",
            Self::Admin => "admin",
            Self::Audit => "audit",
            Self::Webhook(None) => "webhook",
            Self::Webhook(Some(WebhookProvider::Postal)) => "webhook:postal",
            Self::Webhook(Some(WebhookProvider::Ses)) => "webhook:ses",
            Self::Webhook(Some(WebhookProvider::Postmark)) => "webhook:postmark",
            Self::Webhook(Some(WebhookProvider::Mailgun)) => "webhook:mailgun",
            Self::Webhook(Some(WebhookProvider::Sendgrid)) => "webhook:sendgrid",
        }
    }

    /// Every scope a key may have, each by its name: the general ones,
    /// `webhook`, and `webhook:<provider>` of each provider.
    #[must_use]
    pub fn every() -> Vec<Scope> {
        let mut all = Self::ALL.to_vec();
        all.push(Self::Webhook(None));
        all.extend(
            WebhookProvider::ALL
                .into_iter()
                .map(|p| Self::Webhook(Some(p))),
        );
        all
    }
}

impl std::fmt::Display for Scope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Scope {
    type Err = AccessError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        Scope::every()
            .into_iter()
            .find(|c| c.name() == s)
            .ok_or_else(|| {
                AccessError::Invalid(
                    "scopes are ingest, read, erase, admin, audit, webhook, and webhook:<provider> \
                     (postal, ses, postmark, mailgun, sendgrid)"
                        .into(),
                )
            })
    }
}

impl Serialize for Scope {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

impl<'de> Deserialize<'de> for Scope {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse()
            .map_err(|_| serde::de::Error::custom("an unknown scope"))
    }
}

/// Parses a comma-separated scope list, such as `ingest,read` or
/// `webhook:ses`.
///
/// # Errors
/// An unknown or empty list.
pub fn parse_scopes(list: &str) -> Result<Vec<Scope>, AccessError> {
    let scopes: Vec<Scope> = list
        .split(',')
        .filter(|s| !s.trim().is_empty())
        .map(str::parse)
        .collect::<Result<_, _>>()?;
    sorted(scopes)
}

/// `scopes` sorted, each once; refused when there is none.
fn sorted(mut scopes: Vec<Scope>) -> Result<Vec<Scope>, AccessError> {
    scopes.sort_unstable();
    scopes.dedup();
    if scopes.is_empty() {
        return Err(AccessError::Invalid("give at least one scope".into()));
    }
    Ok(scopes)
}

/// An API key as the store lists it: never its secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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

impl KeyInfo {
    fn new(id: &str, k: &KeyEntry) -> Self {
        Self {
            id: id.to_owned(),
            tenant: k.tenant.clone(),
            scopes: k.scopes.clone(),
            name: k.name.clone(),
            created_at: k.created_at.clone(),
            revoked_at: k.revoked_at.clone(),
        }
    }
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

    /// Whether the key may post `provider`'s webhooks: an `ingest` key
    /// (which may append canonical events anyway), a `webhook` key, or a
    /// `webhook:<provider>` key of that provider.
    #[must_use]
    pub fn may_post_webhook(&self, provider: WebhookProvider) -> bool {
        self.has(Scope::Ingest)
            || self.has(Scope::Webhook(None))
            || self.has(Scope::Webhook(Some(provider)))
    }
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
pub(crate) fn split_key(token: &str) -> Option<(&str, &str)> {
    let rest = token.strip_prefix(KEY_PREFIX)?;
    let (id, secret) = rest.split_once('_')?;
    (is_lower_hex(id, ID_BYTES * 2) && is_lower_hex(secret, SECRET_BYTES * 2))
        .then_some((id, secret))
}

impl AccessStore {
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
        let stored = blake3::Hash::from_hex(&entry.hash)
            .map_err(|_| self.corrupt(format!("key {id} has a malformed hash")))?;
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
        let scopes = sorted(scopes.to_vec())?;
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
        let info = KeyInfo::new(&id, &entry);
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
            .map(|(id, k)| KeyInfo::new(id, k))
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
            Ok(KeyInfo::new(id, k))
        })
    }
}
