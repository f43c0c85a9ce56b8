//! Contact pseudonyms: the only identifier of a person the ledger keeps in
//! clear.
//!
//! A pseudonym is the first 16 bytes of blake3's keyed hash of the
//! normalised address, under a key derived from the tenant's secret (kept in
//! the key store). The same address in two tenants gives unrelated
//! pseudonyms, and nobody without the secret can test a guessed address.
//!
//! Normalisation, applied before hashing, treats an address as mailbox
//! providers do, so that one person is one contact:
//! 1. surrounding whitespace is trimmed; what is left must be at most 254
//!    bytes and hold no whitespace or control character;
//! 2. the whole address is put in Unicode normalization form C (NFC): `é`
//!    precomposed and `e` followed by a combining acute accent are one
//!    character;
//! 3. it splits at its last `@` into a local part and a domain, both
//!    non-empty;
//! 4. the domain is mapped to lower-case ASCII by UTS #46 (IDNA) ToASCII:
//!    nontransitional processing, CheckHyphens off, VerifyDnsLength on, the
//!    WHATWG URL standard's forbidden domain code points (`%#/:<>?@[\]^|`,
//!    besides whitespace and controls) refused. `BÜCHER.de`, `bücher.de` and
//!    `xn--bcher-kva.de` all become `xn--bcher-kva.de`. A domain that this
//!    refuses (a disallowed code point, a label that is not valid Punycode,
//!    an empty label, a label over 63 bytes, a name over 253) makes the
//!    address invalid. One trailing `.` (the root) is then dropped. An
//!    address literal, `[` ASCII `]` with no `[`, `\` or `]` inside (such as
//!    `[192.0.2.1]` or `[IPv6:2001:db8::1]`), is not a name: it is only
//!    lower-cased;
//! 5. the local part is lower-cased (Unicode lower case, then NFC again,
//!    since lower-casing can leave text that is not NFC), unless the
//!    tenant's policy sets `case_sensitive_local_part`
//!    ([`LocalPartCase::Sensitive`]): then it stays as step 2 left it.
//!    RFC 5321 lets a mailbox's local part be case-sensitive, but mailbox
//!    providers treat `Ann@x.org` and `ann@x.org` as one mailbox;
//! 6. the hash input is `local@domain` in UTF-8.
//!
//! Nothing else changes: dots and `+` tags in the local part are kept
//! (providers differ on them), and so is a quoted local part's quoting. The
//! domain of step 4 is also what an event keeps in clear as its
//! `recipient_domain`.
//!
//! Format notes: the hash input above, the key derivation context and the
//! use of the hash's first 16 bytes are frozen by a known-answer test
//! (`pseudonyms_are_frozen`). Steps 2, 4 (the IDNA mapping) and 5
//! (lower-casing) were added before the first release: normalisation
//! changed before release, when the local part kept its case and the domain
//! was only lower-cased; no released data holds a pseudonym of that older
//! normalisation, so the context string stayed `v1`.

use icu_normalizer::ComposingNormalizerBorrowed;
use idna::uts46::{AsciiDenyList, DnsLength, Hyphens, Uts46};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::crypto::{Personal, SecretKey};
use crate::error::{Error, Result};

/// Bytes in a pseudonym.
pub const PSEUDONYM_LEN: usize = 16;

/// The longest address accepted, in bytes.
pub const MAX_ADDRESS_LEN: usize = 254;

const CONTEXT: &str = "mailledger 2026-11 contact pseudonym v1";

/// Whether an address's local part keeps its case (step 5 of the module
/// docs). A tenant's policy chooses:
/// [`TenantPolicy::local_part_case`](crate::email::TenantPolicy::local_part_case).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum LocalPartCase {
    /// Lower-cased: `Ann@x.org` and `ann@x.org` are one contact. The default.
    #[default]
    Insensitive,
    /// Kept as given (in NFC): `Ann@x.org` and `ann@x.org` are two contacts.
    Sensitive,
}

/// A contact's identifier within its tenant: printed as 32 hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Pseudonym([u8; PSEUDONYM_LEN]);

impl Pseudonym {
    /// The pseudonym of `address` under a tenant's secret, its local part
    /// treated as `case` says (the tenant's policy:
    /// [`EmailLedger::pseudonym`](crate::email::EmailLedger::pseudonym)
    /// takes care of both).
    ///
    /// # Errors
    /// When the address is not one (see the module docs); the error does not
    /// echo it.
    pub fn of(tenant_secret: &SecretKey, address: &Personal, case: LocalPartCase) -> Result<Self> {
        Ok(Self::of_normalized(
            tenant_secret,
            &normalize(address.expose(), case)?,
        ))
    }

    /// The pseudonym of an address [`normalize`] returned.
    pub(crate) fn of_normalized(tenant_secret: &SecretKey, normal: &Normalized) -> Self {
        let key = Zeroizing::new(blake3::derive_key(CONTEXT, tenant_secret.expose()));
        let hash = blake3::keyed_hash(&key, normal.address.as_bytes());
        let mut p = [0u8; PSEUDONYM_LEN];
        p.copy_from_slice(&hash.as_bytes()[..PSEUDONYM_LEN]);
        Self(p)
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
pub(crate) fn normalize(address: &str, case: LocalPartCase) -> Result<Normalized> {
    let bad = || Error::invalid("recipient is not an email address");
    let a = address.trim();
    if a.len() > MAX_ADDRESS_LEN {
        return Err(Error::invalid(format!(
            "recipient is longer than {MAX_ADDRESS_LEN} bytes"
        )));
    }
    if a.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(bad());
    }
    let a = nfc(a);
    let (local, domain) = a.rsplit_once('@').ok_or_else(bad)?;
    if local.is_empty() || domain.is_empty() {
        return Err(bad());
    }
    let domain = ascii_domain(domain)?;
    let lower;
    let local = match case {
        LocalPartCase::Sensitive => local,
        LocalPartCase::Insensitive => {
            lower = nfc(&Zeroizing::new(local.to_lowercase()));
            lower.as_str()
        }
    };
    let mut address = Zeroizing::new(String::with_capacity(local.len() + 1 + domain.len()));
    address.push_str(local);
    address.push('@');
    address.push_str(&domain);
    Ok(Normalized { address, domain })
}

/// `text` in NFC. The buffer is sized for the most NFC can grow UTF-8
/// (threefold), so no reallocation leaves a copy behind unzeroed.
fn nfc(text: &str) -> Zeroizing<String> {
    let nfc = ComposingNormalizerBorrowed::new_nfc();
    let (head, tail) = nfc.split_normalized(text);
    let mut out = Zeroizing::new(String::with_capacity(head.len() + 3 * tail.len()));
    out.push_str(head);
    if !tail.is_empty() {
        // Writing to a `String` does not fail.
        let _ = nfc.normalize_to(tail, &mut *out);
    }
    out
}

/// Step 4 of the module docs: the domain in lower-case ASCII, without its
/// root dot.
fn ascii_domain(domain: &str) -> Result<String> {
    if let Some(literal) = domain.strip_prefix('[').and_then(|d| d.strip_suffix(']')) {
        let dtext = |b: u8| b.is_ascii_graphic() && !matches!(b, b'[' | b'\\' | b']');
        if literal.is_empty() || !literal.bytes().all(dtext) {
            return Err(Error::invalid("recipient's address literal is not valid"));
        }
        return Ok(domain.to_ascii_lowercase());
    }
    let ascii = Uts46::new()
        .to_ascii(
            domain.as_bytes(),
            AsciiDenyList::URL,
            Hyphens::Allow,
            DnsLength::VerifyAllowRootDot,
        )
        .map_err(|_| Error::invalid("recipient's domain is not a valid domain name"))?;
    let ascii = ascii.strip_suffix('.').unwrap_or(&ascii);
    if ascii.is_empty() {
        return Err(Error::invalid("recipient is not an email address"));
    }
    Ok(ascii.to_owned())
}

/// The domain of an address as the module docs normalise it (lower-case
/// ASCII, IDNA-mapped): the only address-derived value kept in clear (for
/// per-domain analytics).
///
/// # Errors
/// When the address is not one.
pub fn recipient_domain(address: &Personal) -> Result<String> {
    Ok(normalize(address.expose(), LocalPartCase::Sensitive)?.domain)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(b: u8) -> SecretKey {
        SecretKey::from_bytes([b; 32])
    }

    fn p(s: &SecretKey, a: &str) -> Result<Pseudonym> {
        Pseudonym::of(s, &Personal::new(a), LocalPartCase::Insensitive)
    }

    fn p_sensitive(s: &SecretKey, a: &str) -> Result<Pseudonym> {
        Pseudonym::of(s, &Personal::new(a), LocalPartCase::Sensitive)
    }

    fn normal(a: &str, case: LocalPartCase) -> String {
        normalize(a, case).unwrap().address.to_string()
    }

    #[test]
    fn trimming_case_and_the_root_dot_do_not_change_the_pseudonym() {
        let s = secret(1);
        let base = p(&s, "ann@example.org").unwrap();
        assert_eq!(p(&s, "  ann@EXAMPLE.org\n").unwrap(), base);
        assert_eq!(p(&s, "ann@example.org.").unwrap(), base);
        assert_eq!(p(&s, "Ann@example.org").unwrap(), base);
    }

    #[test]
    fn one_person_with_a_capitalised_address_is_one_contact() {
        let s = secret(1);
        assert_eq!(
            p(&s, "John@Example.com").unwrap(),
            p(&s, "john@example.com").unwrap()
        );
        assert_eq!(
            normal("John@Example.com", LocalPartCase::Insensitive),
            "john@example.com"
        );
    }

    #[test]
    fn an_internationalised_domain_is_one_contact_in_every_spelling() {
        let s = secret(1);
        let base = p(&s, "ann@xn--bcher-kva.de").unwrap();
        for spelling in [
            "ann@bücher.de",
            "ann@BÜCHER.de",
            "ann@bu\u{308}cher.de",
            "ann@XN--BCHER-KVA.DE",
            "ann@bücher.de.",
            "ann@bücher\u{3002}de",
        ] {
            assert_eq!(p(&s, spelling).unwrap(), base, "{spelling}");
        }
        assert_eq!(
            normal("Ann@BÜCHER.de", LocalPartCase::Insensitive),
            "ann@xn--bcher-kva.de"
        );
    }

    #[test]
    fn canonically_equivalent_local_parts_are_one_contact() {
        let s = secret(1);
        let nfc = "jos\u{e9}@example.org";
        let nfd = "jose\u{301}@example.org";
        assert_eq!(p(&s, nfc).unwrap(), p(&s, nfd).unwrap());
        assert_eq!(p_sensitive(&s, nfc).unwrap(), p_sensitive(&s, nfd).unwrap());
        assert_eq!(
            p(&s, "JOSE\u{301}@example.org").unwrap(),
            p(&s, nfc).unwrap()
        );
        assert_eq!(normal(nfd, LocalPartCase::Insensitive), nfc);
    }

    #[test]
    fn a_case_sensitive_tenant_keeps_john_and_john_apart() {
        let s = secret(1);
        assert_ne!(
            p_sensitive(&s, "John@example.com").unwrap(),
            p_sensitive(&s, "john@example.com").unwrap()
        );
        // The domain is still one, whatever its spelling.
        assert_eq!(
            p_sensitive(&s, "John@BÜCHER.de").unwrap(),
            p_sensitive(&s, "John@xn--bcher-kva.de").unwrap()
        );
        assert_eq!(
            normal("John@Example.COM.", LocalPartCase::Sensitive),
            "John@example.com"
        );
        // An address already lower-case has one pseudonym in both modes.
        assert_eq!(
            p_sensitive(&s, "john@example.com").unwrap(),
            p(&s, "John@example.com").unwrap()
        );
    }

    #[test]
    fn dots_and_tags_in_the_local_part_are_kept() {
        let s = secret(1);
        let base = p(&s, "ann@example.org").unwrap();
        assert_ne!(p(&s, "a.nn@example.org").unwrap(), base);
        assert_ne!(p(&s, "ann+news@example.org").unwrap(), base);
    }

    #[test]
    fn address_literals_are_only_lower_cased() {
        assert_eq!(
            normal("Ann@[IPv6:2001:DB8::1]", LocalPartCase::Insensitive),
            "ann@[ipv6:2001:db8::1]"
        );
        assert_eq!(
            normal("ann@[192.0.2.1]", LocalPartCase::Insensitive),
            "ann@[192.0.2.1]"
        );
        for bad in ["ann@[]", "ann@[a]b]", "ann@[ü]"] {
            assert!(p(&secret(1), bad).is_err(), "{bad}");
        }
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
            "ann@.",
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
    fn a_domain_idna_refuses_is_refused_without_echo() {
        let long_label = format!("ann@{}.org", "a".repeat(64));
        for (bad, domain) in [
            // Not valid Punycode.
            ("secret-ann@xn--zzzz-.de", "xn--zzzz-"),
            // A disallowed code point.
            ("secret-ann@b\u{FFFF}cher.de", "cher.de"),
            // Forbidden in a domain name.
            ("secret-ann@exa/mple.org", "exa/mple"),
            ("secret-ann@exa%mple.org", "exa%mple"),
            // An empty label, a label of 64 bytes.
            ("secret-ann@example..org", "example..org"),
            ("secret-ann@example.org..", "example.org"),
            (long_label.as_str(), "aaaa"),
        ] {
            let e = p(&secret(1), bad).unwrap_err();
            assert!(matches!(e, Error::InvalidInput(_)), "{bad}");
            let text = e.to_string();
            assert!(!text.contains("secret-ann"), "{text}");
            assert!(!text.contains(domain), "{text}");
            assert!(recipient_domain(&Personal::new(bad)).is_err(), "{bad}");
        }
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
    fn recipient_domain_is_lower_case_ascii() {
        assert_eq!(
            recipient_domain(&Personal::new("Ann@Mail.Example.ORG")).unwrap(),
            "mail.example.org"
        );
        assert_eq!(
            recipient_domain(&Personal::new("ann@BÜCHER.de.")).unwrap(),
            "xn--bcher-kva.de"
        );
    }

    /// Known answers: a stored contact's pseudonym must never change, so
    /// neither may the normalisation, the key derivation or the truncation.
    #[test]
    fn pseudonyms_are_frozen() {
        let s = secret(7);
        for (address, case, normalised, expected) in [
            (
                "ann@example.org",
                LocalPartCase::Insensitive,
                "ann@example.org",
                "1ab62cbbee7ea8ee16dbaa188c5f835a",
            ),
            (
                "John@BÜCHER.de.",
                LocalPartCase::Insensitive,
                "john@xn--bcher-kva.de",
                "304b7c36414e8c7e4245337e08c16618",
            ),
            (
                "John@BÜCHER.de.",
                LocalPartCase::Sensitive,
                "John@xn--bcher-kva.de",
                "3bda806eb464be7b3db5695f5adbceb7",
            ),
        ] {
            assert_eq!(normal(address, case), normalised);
            let key = blake3::derive_key(CONTEXT, &[7; 32]);
            let hash = blake3::keyed_hash(&key, normalised.as_bytes());
            assert_eq!(&hash.to_hex()[..32], expected, "{address} {case:?}");
            let got = Pseudonym::of(&s, &Personal::new(address), case).unwrap();
            assert_eq!(got.to_string(), expected, "{address} {case:?}");
        }
    }
}
