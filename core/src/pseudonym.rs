//! Contact pseudonyms: the only identifier of a person the ledger keeps in
//! clear.
//!
//! A pseudonym is the first 16 bytes of blake3's keyed hash of the
//! normalised address, under a key derived from the tenant's secret (kept in
//! the key store). The same address in two tenants gives unrelated
//! pseudonyms, and nobody without the secret can test a guessed address.
//!
//! Normalisation, applied before hashing:
//! 1. surrounding whitespace is trimmed;
//! 2. the address splits at its last `@` into a local part and a domain;
//!    both must be non-empty, and neither may hold whitespace or control
//!    characters; the whole is at most 254 bytes;
//! 3. the domain is lower-cased (Unicode lower case) and loses one trailing
//!    `.`;
//! 4. the local part is kept exactly as given: RFC 5321 lets a mailbox's
//!    local part be case-sensitive, so `Ann@x.org` and `ann@x.org` are two
//!    contacts unless the sender normalises them first.

use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::crypto::{Personal, SecretKey};
use crate::error::{Error, Result};

/// Bytes in a pseudonym.
pub const PSEUDONYM_LEN: usize = 16;

/// The longest address accepted, in bytes.
pub const MAX_ADDRESS_LEN: usize = 254;

const CONTEXT: &str = "mailledger 2026-11 contact pseudonym v1";

/// A contact's identifier within its tenant: printed as 32 hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Pseudonym([u8; PSEUDONYM_LEN]);

impl Pseudonym {
    /// The pseudonym of `address` under a tenant's secret.
    ///
    /// # Errors
    /// When the address is not one (see the module docs); the error does not
    /// echo it.
    pub fn of(tenant_secret: &SecretKey, address: &Personal) -> Result<Self> {
        let normal = normalize(address.expose())?;
        let key = Zeroizing::new(blake3::derive_key(CONTEXT, tenant_secret.expose()));
        let hash = blake3::keyed_hash(&key, normal.address.as_bytes());
        let mut p = [0u8; PSEUDONYM_LEN];
        p.copy_from_slice(&hash.as_bytes()[..PSEUDONYM_LEN]);
        Ok(Self(p))
    }

    /// Parses 32 hex digits.
    ///
    /// # Errors
    /// When the text is not a pseudonym.
    pub fn from_hex(text: &str) -> Result<Self> {
        let mut p = [0u8; PSEUDONYM_LEN];
        if crate::unhex_into(text.as_bytes(), &mut p) {
            Ok(Self(p))
        } else {
            Err(Error::invalid(
                "a contact pseudonym is 32 hexadecimal digits",
            ))
        }
    }

    /// The pseudonym with these bytes, as stored.
    pub(crate) const fn from_array(bytes: [u8; PSEUDONYM_LEN]) -> Self {
        Self(bytes)
    }

    /// The raw bytes.
    #[must_use]
    pub fn as_bytes(&self) -> &[u8; PSEUDONYM_LEN] {
        &self.0
    }

    /// The contact's stream: `contact-{pseudonym}`.
    #[must_use]
    pub fn stream(&self) -> String {
        let mut s = String::with_capacity(8 + 2 * PSEUDONYM_LEN);
        s.push_str("contact-");
        crate::push_hex(&mut s, &self.0);
        s
    }
}

impl std::fmt::Display for Pseudonym {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&crate::hex(&self.0))
    }
}

impl std::fmt::Debug for Pseudonym {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Pseudonym({self})")
    }
}

/// A normalised address and its domain.
pub(crate) struct Normalized {
    pub(crate) address: Zeroizing<String>,
    pub(crate) domain: String,
}

/// Normalises an address as the module docs describe.
pub(crate) fn normalize(address: &str) -> Result<Normalized> {
    let bad = || Error::invalid("recipient is not an email address");
    let a = address.trim();
    if a.len() > MAX_ADDRESS_LEN {
        return Err(Error::invalid(format!(
            "recipient is longer than {MAX_ADDRESS_LEN} bytes"
        )));
    }
    let (local, domain) = a.rsplit_once('@').ok_or_else(bad)?;
    let domain = domain.strip_suffix('.').unwrap_or(domain);
    if local.is_empty() || domain.is_empty() {
        return Err(bad());
    }
    if a.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(bad());
    }
    let domain = domain.to_lowercase();
    let mut address = Zeroizing::new(String::with_capacity(a.len()));
    address.push_str(local);
    address.push('@');
    address.push_str(&domain);
    Ok(Normalized { address, domain })
}

/// The lower-cased domain of an address: the only address-derived value kept
/// in clear (for per-domain analytics).
///
/// # Errors
/// When the address is not one.
pub fn recipient_domain(address: &Personal) -> Result<String> {
    Ok(normalize(address.expose())?.domain)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(b: u8) -> SecretKey {
        SecretKey::from_bytes([b; 32])
    }

    fn p(s: &SecretKey, a: &str) -> Result<Pseudonym> {
        Pseudonym::of(s, &Personal::new(a))
    }

    #[test]
    fn trimming_and_domain_case_do_not_change_the_pseudonym() {
        let s = secret(1);
        let base = p(&s, "ann@example.org").unwrap();
        assert_eq!(p(&s, "  ann@EXAMPLE.org\n").unwrap(), base);
        assert_eq!(p(&s, "ann@example.org.").unwrap(), base);
        assert_ne!(
            p(&s, "Ann@example.org").unwrap(),
            base,
            "local part is kept"
        );
    }

    #[test]
    fn the_same_address_in_two_tenants_gives_unrelated_pseudonyms() {
        assert_ne!(
            p(&secret(1), "ann@example.org").unwrap(),
            p(&secret(2), "ann@example.org").unwrap()
        );
    }

    #[test]
    fn non_addresses_are_refused_without_echo() {
        for bad in [
            "",
            "ann",
            "@example.org",
            "ann@",
            "a nn@example.org",
            "ann@exa\u{7}mple",
        ] {
            let e = p(&secret(1), bad).unwrap_err();
            assert!(matches!(e, Error::InvalidInput(_)));
            if !bad.is_empty() {
                assert!(!e.to_string().contains(bad), "{e}");
            }
        }
        let long = format!("{}@example.org", "a".repeat(300));
        assert!(p(&secret(1), &long).is_err());
    }

    #[test]
    fn pseudonyms_print_and_parse_as_hex() {
        let x = p(&secret(3), "bob@example.org").unwrap();
        let text = x.to_string();
        assert_eq!(text.len(), 32);
        assert_eq!(Pseudonym::from_hex(&text).unwrap(), x);
        assert!(Pseudonym::from_hex("zz").is_err());
        assert!(x.stream().starts_with("contact-"));
    }

    #[test]
    fn recipient_domain_is_lower_cased() {
        assert_eq!(
            recipient_domain(&Personal::new("Ann@Mail.Example.ORG")).unwrap(),
            "mail.example.org"
        );
    }
}
