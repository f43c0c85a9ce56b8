//! Tenants: creating and listing them, and what the first start makes.

use mailledger_core::residency::Jurisdiction;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::store::{TenantEntry, now};
use crate::{AccessError, AccessStore, DEFAULT_TENANT, KeyInfo, Scope, SnsSubscription};

/// A tenant as the store lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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
    pub jurisdictions: Vec<Jurisdiction>,
}

impl TenantInfo {
    fn new(name: &str, t: &TenantEntry) -> Self {
        Self {
            name: name.to_owned(),
            created_at: t.created_at.clone(),
            webhook_providers: t.webhook_providers.clone(),
            require_signatures: t.require_signatures,
            sns_subscriptions: t.sns_subscriptions.clone(),
            jurisdictions: t.jurisdictions.clone(),
        }
    }
}

impl AccessStore {
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

    /// One tenant.
    ///
    /// # Errors
    /// A storage failure.
    pub fn tenant(&self, name: &str) -> Result<Option<TenantInfo>, AccessError> {
        let f = self.snapshot()?;
        Ok(f.tenants.get(name).map(|t| TenantInfo::new(name, t)))
    }

    /// Every tenant, by name.
    ///
    /// # Errors
    /// A storage failure.
    pub fn tenants(&self) -> Result<Vec<TenantInfo>, AccessError> {
        let f = self.snapshot()?;
        Ok(f.tenants
            .iter()
            .map(|(n, t)| TenantInfo::new(n, t))
            .collect())
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
