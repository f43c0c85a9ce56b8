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
//!
//! # Modules
//!
//! - `store`: the file's format, [`AccessStore`], and how a change is
//!   written and a reader sees it.
//! - `keys`: API keys, their [`Scope`]s, and authentication to a [`Caller`].
//! - `tenants`: [`TenantInfo`], creating tenants, and the first start's
//!   tenant and key.
//! - `webhook_secrets`: [`ProviderSecrets`], sealed per tenant, and the
//!   [`SnsSubscription`]s received.
//!
//! The types here are the store's own; an HTTP API that shows them defines
//! its own bodies.

mod keys;
mod store;
mod tenants;
mod webhook_secrets;

#[cfg(test)]
mod tests;

use std::path::PathBuf;

pub use keys::{Caller, KeyInfo, Scope, WebhookProvider, parse_scopes};
pub use store::AccessStore;
pub use tenants::TenantInfo;
pub use webhook_secrets::{ProviderSecrets, SNS_TOPICS_RULE, SnsSubscription};

/// The access file's name in the data directory.
pub const ACCESS_FILE: &str = "access.json";
/// The lock file's name in the data directory.
pub const LOCK_FILE: &str = "access.lock";
/// The prefix of every API key.
pub const KEY_PREFIX: &str = "mlk_";
/// The tenant `init` and the first start of the server create.
pub const DEFAULT_TENANT: &str = "default";
/// The longest webhook secrets document accepted (a few PEM certificates
/// fit easily).
pub const MAX_WEBHOOK_SECRETS_LEN: usize = 64 * 1024;
/// The longest key name.
pub const MAX_KEY_NAME_LEN: usize = 128;

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
    /// Settings that parse but would make a check prove nothing (SNS
    /// certificates without a topic allow-list): names the field and the
    /// rule, never a value.
    #[error("webhook secrets: field `{field}` {rule}")]
    UnsafeSetting {
        /// The field.
        field: &'static str,
        /// What it must be.
        rule: &'static str,
    },
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

/// Describes a serde_json error without quoting any input value: unknown
/// and missing field names (when they look like field names), or the line
/// and column of a syntax error or a value of the wrong type.
///
/// Here because a webhook secrets document that does not parse must be
/// refused without echoing a secret; the HTTP API describes its request
/// bodies' errors with it too.
#[must_use]
pub fn describe_json_error(e: &serde_json::Error) -> String {
    let text = e.to_string();
    let name_ok = |n: &str| {
        !n.is_empty() && n.len() <= 64 && n.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
    };
    if let Some(rest) = text.strip_prefix("unknown field `") {
        let name = rest.split('`').next().unwrap_or_default();
        if name_ok(name) {
            return format!("unknown field `{name}`");
        }
        return "unknown field".to_owned();
    }
    if let Some(rest) = text.strip_prefix("missing field `") {
        let name = rest.split('`').next().unwrap_or_default();
        if name_ok(name) {
            return format!("missing field `{name}`");
        }
    }
    match e.classify() {
        serde_json::error::Category::Syntax | serde_json::error::Category::Eof => {
            format!("not valid JSON (line {}, column {})", e.line(), e.column())
        }
        _ => format!(
            "a field has the wrong type or an invalid value (line {}, column {})",
            e.line(),
            e.column()
        ),
    }
}
