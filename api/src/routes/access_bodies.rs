//! The access store's records as the API shows them, and the scopes it
//! takes: bodies of their own, converted from and to the store's types,
//! so that the store (`mailledger-access`) knows nothing of HTTP or
//! OpenAPI and a change to its file format is not a change to the API.

use mailledger_access as access;
use mailledger_core::residency::Jurisdiction;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::webhooks::Provider;

/// What a key may do: `ingest`, `read`, `erase`, `admin`, `audit`, `webhook`, or
/// `webhook:<provider>` (`postal`, `ses`, `postmark`, `mailgun`,
/// `sendgrid`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
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
    /// Audit the tenant's log: checkpoints, the erasure register.
    Audit,
    /// Post provider webhooks and nothing else: every provider's (`None`,
    /// `webhook`) or one's (`webhook:ses`).
    Webhook(Option<Provider>),
}

impl Scope {
    /// The scope's name, as the API shows it.
    #[must_use]
    pub fn name(self) -> &'static str {
        access::Scope::from(self).name()
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
        text.parse::<access::Scope>()
            .map(Self::from)
            .map_err(|_| serde::de::Error::custom("an unknown scope"))
    }
}

impl utoipa::PartialSchema for Scope {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{ObjectBuilder, Type};
        let names: Vec<&str> = access::Scope::every()
            .into_iter()
            .map(access::Scope::name)
            .collect();
        ObjectBuilder::new()
            .schema_type(Type::String)
            .description(Some(
                "What a key may do. `ingest`: append events, post webhooks, add and remove suppressions. \
                 `read`: messages, suppressions, analytics, exports. `erase`: erasures. \
                 `admin`: tenants, keys, provider secrets (operator tenant only). \
                 `audit`: signed checkpoints and the erasure register. \
                 `webhook`: only `POST /v1/webhooks/{provider}`, of any provider; \
                 `webhook:<provider>`: of that provider only.",
            ))
            .enum_values(Some(names))
            .into()
    }
}

impl ToSchema for Scope {}

fn provider_of(p: access::WebhookProvider) -> Provider {
    match p {
        access::WebhookProvider::Postal => Provider::Postal,
        access::WebhookProvider::Ses => Provider::Ses,
        access::WebhookProvider::Postmark => Provider::Postmark,
        access::WebhookProvider::Mailgun => Provider::Mailgun,
        access::WebhookProvider::Sendgrid => Provider::Sendgrid,
    }
}

/// The access store's name of an API provider.
#[must_use]
pub fn webhook_provider(p: Provider) -> access::WebhookProvider {
    match p {
        Provider::Postal => access::WebhookProvider::Postal,
        Provider::Ses => access::WebhookProvider::Ses,
        Provider::Postmark => access::WebhookProvider::Postmark,
        Provider::Mailgun => access::WebhookProvider::Mailgun,
        Provider::Sendgrid => access::WebhookProvider::Sendgrid,
    }
}

impl From<access::Scope> for Scope {
    fn from(s: access::Scope) -> Self {
        match s {
            access::Scope::Ingest => Self::Ingest,
            access::Scope::Read => Self::Read,
            access::Scope::Erase => Self::Erase,
            access::Scope::Admin => Self::Admin,
            access::Scope::Audit => Self::Audit,
            access::Scope::Webhook(p) => Self::Webhook(p.map(provider_of)),
        }
    }
}

impl From<Scope> for access::Scope {
    fn from(s: Scope) -> Self {
        match s {
            Scope::Ingest => Self::Ingest,
            Scope::Read => Self::Read,
            Scope::Erase => Self::Erase,
            Scope::Admin => Self::Admin,
            Scope::Audit => Self::Audit,
            Scope::Webhook(p) => Self::Webhook(p.map(webhook_provider)),
        }
    }
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

impl From<access::TenantInfo> for TenantInfo {
    fn from(t: access::TenantInfo) -> Self {
        Self {
            name: t.name,
            created_at: t.created_at,
            webhook_providers: t.webhook_providers,
            require_signatures: t.require_signatures,
            sns_subscriptions: t.sns_subscriptions.into_iter().map(Into::into).collect(),
            jurisdictions: t.jurisdictions,
        }
    }
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

impl From<access::SnsSubscription> for SnsSubscription {
    fn from(s: access::SnsSubscription) -> Self {
        Self {
            kind: s.kind,
            topic_arn: s.topic_arn,
            subscribe_url: s.subscribe_url,
            message_id: s.message_id,
            received_at: s.received_at,
        }
    }
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

impl From<access::KeyInfo> for KeyInfo {
    fn from(k: access::KeyInfo) -> Self {
        Self {
            id: k.id,
            tenant: k.tenant,
            scopes: k.scopes.into_iter().map(Into::into).collect(),
            name: k.name,
            created_at: k.created_at,
            revoked_at: k.revoked_at,
        }
    }
}
