//! Each tenant's webhook secrets, sealed under a key derived from the KEK
//! (see the crate docs), and the SNS subscription confirmations received
//! for it.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::{AccessError, AccessStore, MAX_WEBHOOK_SECRETS_LEN, describe_json_error};

const SECRET_AD: &[u8] = b"mailledger provider secret v1";

/// The SNS subscriptions kept per tenant, the latest.
const MAX_SNS_SUBSCRIPTIONS: usize = 100;

/// Why SNS certificates need a topic allow-list.
pub const SNS_TOPICS_RULE: &str = "is required when sns_certificates is set: SNS signs every AWS account's topics with the same certificates, so only the topic allow-list makes a signed message this tenant's";

/// A tenant's webhook secrets, from configuration. Every secret is optional;
/// the webhook adapters (`mailledger_api::webhooks`) say what a missing one
/// means.
///
/// ```toml
/// require_signatures = true
/// mailgun_signing_key = "key-…"
/// postal_public_key = "MIGfMA0GCSqGSIb3DQEBAQUAA4GNADCBiQKBgQ…"
/// sendgrid_public_key = "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE…"
/// sns_certificates = ["-----BEGIN CERTIFICATE-----\n…"]
/// sns_topic_arns = ["arn:aws:sns:eu-west-1:123456789012:ses-events"]
/// sns_signature_v2_only = true
/// postal_require_sha256 = true
/// max_signature_age_secs = 300
/// ```
///
/// A document that configures SNS certificates without a topic allow-list
/// is refused ([`AccessError::UnsafeSetting`]): any AWS account can have
/// SNS sign messages of its own topics with the same certificates.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProviderSecrets {
    /// Refuse webhooks of a signing provider whose secret is not configured
    /// (default `true`). With `false` such webhooks are accepted unverified;
    /// a configured secret is always checked either way.
    pub require_signatures: bool,
    /// Mailgun's HTTP webhook signing key.
    pub mailgun_signing_key: Option<String>,
    /// The Postal server's RSA public key: base64 DER (as Postal shows it),
    /// PEM, or the DKIM record holding it in `p=`.
    pub postal_public_key: Option<String>,
    /// SendGrid's signed event webhook verification key (ECDSA P-256): base64
    /// DER SubjectPublicKeyInfo as SendGrid shows it, or PEM.
    pub sendgrid_public_key: Option<String>,
    /// SNS signing certificates (PEM) trusted for SES notifications. They
    /// are never downloaded: copy the certificate that the `SigningCertURL`
    /// of your topic's messages names. Needs `sns_topic_arns`.
    pub sns_certificates: Vec<String>,
    /// The only SNS topics accepted. Required with `sns_certificates`: SNS
    /// signs every account's topics with the same certificates, so the
    /// signature proves only that SNS sent the message, not whose topic.
    pub sns_topic_arns: Vec<String>,
    /// Refuse SNS messages of `SignatureVersion` 1 (SHA1withRSA); accept
    /// only version 2 (SHA256withRSA), which the topic's
    /// `SignatureVersion` attribute selects. Default `false`.
    pub sns_signature_v2_only: bool,
    /// Refuse Postal webhooks signed only with SHA-1 (`X-Postal-Signature`);
    /// accept only `X-Postal-Signature-256`, which Postal sends since
    /// version 3. Default `false`.
    pub postal_require_sha256: bool,
    /// How far (seconds) a signed timestamp (Mailgun, SendGrid, the SNS
    /// `Timestamp`) may be from now, in either direction; default 300.
    /// SNS keeps a message's `Timestamp` across its delivery retries, so
    /// with a delivery policy that retries for longer, raise this to match.
    pub max_signature_age_secs: i64,
}

impl Default for ProviderSecrets {
    fn default() -> Self {
        Self {
            require_signatures: true,
            mailgun_signing_key: None,
            postal_public_key: None,
            sendgrid_public_key: None,
            sns_certificates: Vec::new(),
            sns_topic_arns: Vec::new(),
            sns_signature_v2_only: false,
            postal_require_sha256: false,
            max_signature_age_secs: 300,
        }
    }
}

impl fmt::Debug for ProviderSecrets {
    /// Shows which secrets are configured, never the Mailgun key.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProviderSecrets")
            .field("require_signatures", &self.require_signatures)
            .field(
                "mailgun_signing_key",
                &self.mailgun_signing_key.as_ref().map(|_| "<redacted>"),
            )
            .field("postal_public_key", &self.postal_public_key.is_some())
            .field("sendgrid_public_key", &self.sendgrid_public_key.is_some())
            .field("sns_certificates", &self.sns_certificates.len())
            .field("sns_topic_arns", &self.sns_topic_arns)
            .field("sns_signature_v2_only", &self.sns_signature_v2_only)
            .field("postal_require_sha256", &self.postal_require_sha256)
            .field("max_signature_age_secs", &self.max_signature_age_secs)
            .finish()
    }
}

impl ProviderSecrets {
    /// Refuses settings that would make a signature prove nothing: SNS
    /// certificates without a topic allow-list. Names the field, never a
    /// value. The SES adapter refuses such secrets too, should a document
    /// stored before this check hold them.
    ///
    /// # Errors
    /// [`AccessError::UnsafeSetting`] naming the field.
    pub fn check(&self) -> Result<(), AccessError> {
        if !self.sns_certificates.is_empty() && self.sns_topic_arns.is_empty() {
            return Err(AccessError::UnsafeSetting {
                field: "sns_topic_arns",
                rule: SNS_TOPICS_RULE,
            });
        }
        Ok(())
    }

    /// The providers this document configures.
    fn providers(&self) -> Vec<String> {
        let mut p = Vec::new();
        if self.postal_public_key.is_some() {
            p.push("postal".to_owned());
        }
        if !self.sns_certificates.is_empty() {
            p.push("ses".to_owned());
        }
        if self.mailgun_signing_key.is_some() {
            p.push("mailgun".to_owned());
        }
        if self.sendgrid_public_key.is_some() {
            p.push("sendgrid".to_owned());
        }
        p
    }
}

/// An SNS subscription (or unsubscription) confirmation, recorded for an
/// operator to act on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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

/// The associated data of a tenant's sealed secrets: a document cannot be
/// moved to another tenant.
fn secret_ad(tenant: &str) -> Vec<u8> {
    let mut ad = SECRET_AD.to_vec();
    ad.extend_from_slice(&(tenant.len() as u16).to_le_bytes());
    ad.extend_from_slice(tenant.as_bytes());
    ad
}

impl AccessStore {
    /// Sets a tenant's webhook secrets: a JSON [`ProviderSecrets`]
    /// document (checked, then sealed), or with `None` removes them.
    ///
    /// # Errors
    /// An unknown tenant, a document that does not parse (the error names
    /// the field, never a value), settings that [`ProviderSecrets::check`]
    /// refuses, or a storage failure.
    pub fn set_webhook_secrets(&self, tenant: &str, json: Option<&str>) -> Result<(), AccessError> {
        let sealed = match json {
            Some(text) => {
                if text.len() > MAX_WEBHOOK_SECRETS_LEN {
                    return Err(AccessError::Invalid(format!(
                        "webhook secrets are at most {MAX_WEBHOOK_SECRETS_LEN} bytes"
                    )));
                }
                let parsed: ProviderSecrets = serde_json::from_str(text).map_err(|e| {
                    AccessError::Invalid(format!("webhook secrets: {}", describe_json_error(&e)))
                })?;
                parsed.check()?;
                let sealed = self
                    .seal
                    .seal(text.as_bytes(), &secret_ad(tenant))
                    .map_err(|e| AccessError::Invalid(e.to_string()))?;
                Some((sealed, parsed.providers(), parsed.require_signatures))
            }
            None => None,
        };
        self.update_tenant(tenant, |t| match sealed {
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
        let plain = self.seal.open(sealed, &secret_ad(tenant)).ok_or_else(|| {
            self.corrupt(format!(
                "the webhook secrets of tenant {tenant} do not open: is this the KEK they were set with?"
            ))
        })?;
        serde_json::from_slice(&plain).map_err(|_| {
            self.corrupt(format!(
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
        self.update_tenant(tenant, |t| {
            if !t
                .sns_subscriptions
                .iter()
                .any(|s| s.message_id == sub.message_id)
            {
                t.sns_subscriptions.push(sub);
                let excess = t
                    .sns_subscriptions
                    .len()
                    .saturating_sub(MAX_SNS_SUBSCRIPTIONS);
                t.sns_subscriptions.drain(..excess);
            }
        })
    }
}
