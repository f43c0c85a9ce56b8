//! Refusing a replayed signature: the tokens of verified Mailgun webhooks,
//! remembered while their signed timestamp is fresh.
//!
//! Mailgun's signature covers `signature.timestamp` and `signature.token`
//! but not `event-data`, so a captured signature could be sent again with
//! another body while its timestamp is fresh. Mailgun therefore advises
//! refusing a token seen before. [`signature_token`] gives the token of a
//! webhook [`super::parse`] verified; [`SeenTokens`] remembers it per
//! tenant until its timestamp is older than `max_signature_age_secs`
//! (after which the freshness check refuses it anyway).
//!
//! The other providers need no such memory: Postal and SNS sign the whole
//! body (a replay is the same events, whose derived ids the ledger appends
//! once), and SendGrid signs its timestamp with the body.

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, PoisonError};

use super::{Provider, ProviderSecrets, WebhookError};

/// The most tokens remembered per tenant. At Mailgun's pace of one request
/// per event and the default age of 300 s this covers 3,300 events a
/// second; beyond it the oldest are forgotten first (a token forgotten
/// before its timestamp is stale could be replayed), never refused.
pub const MAX_TOKENS_PER_TENANT: usize = 1_000_000;

/// A once-only token of a verified webhook signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SignatureToken {
    /// The provider whose signature it is.
    pub provider: Provider,
    /// A blake3 fingerprint of the token (the token itself is not kept).
    fingerprint: u128,
    /// Until when (Unix seconds) the signature counts as fresh.
    pub fresh_until: i64,
}

/// The once-only token of a webhook that [`super::parse`] verified under
/// `secrets`: Mailgun's `signature.token`, fresh until its
/// `signature.timestamp` plus `max_signature_age_secs`. `None` for every
/// other provider, for a Mailgun tenant without a signing key (nothing was
/// verified), and for a body without the fields.
#[must_use]
pub fn signature_token(
    provider: Provider,
    body: &[u8],
    secrets: &ProviderSecrets,
) -> Option<SignatureToken> {
    if provider != Provider::Mailgun {
        return None;
    }
    let (token, timestamp) = super::mailgun::signature_token(body, secrets)?;
    let hash = blake3::hash(token.as_bytes());
    let mut first = [0u8; 16];
    first.copy_from_slice(hash.as_bytes().get(..16)?);
    Some(SignatureToken {
        provider,
        fingerprint: u128::from_le_bytes(first),
        fresh_until: timestamp.saturating_add(secrets.max_signature_age_secs.max(0)),
    })
}

/// One tenant's tokens: when each stops being fresh, and the order they
/// came in (to forget the oldest first).
#[derive(Debug, Default)]
struct Tokens {
    fresh_until: HashMap<(Provider, u128), i64>,
    order: VecDeque<(i64, (Provider, u128))>,
}

/// The tokens of verified signatures seen, per tenant, each kept while its
/// signature is fresh; at most [`MAX_TOKENS_PER_TENANT`] per tenant.
///
/// **Per process**: each server process remembers only the tokens it saw,
/// and forgets them when it stops. Behind a load balancer spreading one
/// tenant's webhooks over several processes, a token replayed to another
/// process is not recognised; route a tenant's webhooks to one process
/// (or keep `max_signature_age_secs` short) where that matters.
#[derive(Debug)]
pub struct SeenTokens {
    capacity: usize,
    tenants: Mutex<HashMap<String, Tokens>>,
}

impl Default for SeenTokens {
    fn default() -> Self {
        Self::new(MAX_TOKENS_PER_TENANT)
    }
}

impl SeenTokens {
    /// A memory of at most `capacity` tokens per tenant (at least 1).
    #[must_use]
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            tenants: Mutex::new(HashMap::new()),
        }
    }

    /// Records `token` for `tenant` at `now` (Unix seconds).
    ///
    /// # Errors
    /// [`WebhookError::Replayed`] when the tenant's memory holds the token
    /// and it is still fresh; nothing changes then.
    pub fn claim(
        &self,
        tenant: &str,
        token: &SignatureToken,
        now: i64,
    ) -> Result<(), WebhookError> {
        let mut tenants = self.tenants.lock().unwrap_or_else(PoisonError::into_inner);
        let t = tenants.entry(tenant.to_owned()).or_default();
        // Forget what is stale, and the oldest when full.
        while let Some(&(until, key)) = t.order.front() {
            if until >= now && t.order.len() < self.capacity {
                break;
            }
            t.order.pop_front();
            if t.fresh_until.get(&key) == Some(&until) {
                t.fresh_until.remove(&key);
            }
        }
        let key = (token.provider, token.fingerprint);
        if t.fresh_until.get(&key).is_some_and(|&until| until >= now) {
            return Err(WebhookError::Replayed {
                what: "field signature.token",
            });
        }
        t.fresh_until.insert(key, token.fresh_until);
        t.order.push_back((token.fresh_until, key));
        Ok(())
    }

    /// Forgets a token [`claim`](Self::claim)ed by a request that then
    /// failed before it stored anything, so that the provider's retry of
    /// the same delivery is not taken for a replay.
    pub fn release(&self, tenant: &str, token: &SignatureToken) {
        let mut tenants = self.tenants.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(t) = tenants.get_mut(tenant) {
            let key = (token.provider, token.fingerprint);
            if t.fresh_until.get(&key) == Some(&token.fresh_until) {
                t.fresh_until.remove(&key);
            }
        }
    }

    /// How many tokens `tenant`'s memory holds (stale ones included until
    /// the next claim forgets them).
    #[must_use]
    pub fn remembered(&self, tenant: &str) -> usize {
        let tenants = self.tenants.lock().unwrap_or_else(PoisonError::into_inner);
        tenants.get(tenant).map_or(0, |t| t.fresh_until.len())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn token(n: u128, fresh_until: i64) -> SignatureToken {
        SignatureToken {
            provider: Provider::Mailgun,
            fingerprint: n,
            fresh_until,
        }
    }

    #[test]
    fn a_fresh_token_is_taken_once_per_tenant_and_again_once_stale() {
        let seen = SeenTokens::new(10);
        let t = token(1, 1300);
        assert!(seen.claim("acme", &t, 1000).is_ok());
        assert_eq!(
            seen.claim("acme", &t, 1001),
            Err(WebhookError::Replayed {
                what: "field signature.token"
            })
        );
        // Another tenant's memory is its own.
        assert!(seen.claim("globex", &t, 1001).is_ok());
        // Stale: the freshness check refuses it anyway, so it is forgotten.
        assert!(seen.claim("acme", &token(2, 2000), 1301).is_ok());
        assert_eq!(seen.remembered("acme"), 1);
        // A released claim (the request failed) may be claimed again.
        let u = token(3, 2000);
        seen.claim("acme", &u, 1400).unwrap();
        seen.release("acme", &u);
        assert!(seen.claim("acme", &u, 1401).is_ok());
        assert!(seen.claim("acme", &u, 1402).is_err());
    }

    #[test]
    fn the_memory_is_bounded_and_forgets_the_oldest_first() {
        let seen = SeenTokens::new(3);
        for n in 0..10 {
            seen.claim("acme", &token(n, 5000), 1000).unwrap();
            assert!(seen.remembered("acme") <= 3);
        }
        // The newest are remembered, the oldest forgotten.
        assert!(seen.claim("acme", &token(9, 5000), 1000).is_err());
        assert!(seen.claim("acme", &token(0, 5000), 1000).is_ok());
    }
}
