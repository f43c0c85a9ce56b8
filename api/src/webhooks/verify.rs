//! Signature primitives: HMAC-SHA256 (Mailgun), RSA PKCS#1 v1.5 (Postal,
//! SNS) and ECDSA P-256 (SendGrid), all with `ring`; key and certificate
//! parsing; timestamp freshness.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use http::HeaderMap;
use ring::signature::{self, UnparsedPublicKey};
use x509_cert::Certificate;
use x509_cert::der::Decode as _;
use x509_cert::der::asn1::ObjectIdentifier;
use x509_cert::spki::SubjectPublicKeyInfoOwned;

use super::{Provider, WebhookError};

/// rsaEncryption (RFC 8017).
const RSA_ENCRYPTION: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");
/// id-ecPublicKey (RFC 5480).
const EC_PUBLIC_KEY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
/// prime256v1 / secp256r1 (RFC 5480).
const P256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");

/// Reads a header as text; `None` when absent.
pub(crate) fn header<'h>(
    headers: &'h HeaderMap,
    name: &'static str,
) -> Result<Option<&'h str>, WebhookError> {
    match headers.get(name) {
        None => Ok(None),
        Some(v) => v
            .to_str()
            .map(|s| Some(s.trim()))
            .map_err(|_| WebhookError::Malformed {
                field: format!("header {name}"),
                problem: "is not visible ASCII",
            }),
    }
}

/// Decodes standard base64, ignoring whitespace (line breaks in PEM bodies
/// and in some providers' headers).
pub(crate) fn base64(text: &str) -> Option<Vec<u8>> {
    let compact: String = text.chars().filter(|c| !c.is_whitespace()).collect();
    STANDARD.decode(compact.as_bytes()).ok()
}

/// Decodes lower- or upper-case hex, surrounding whitespace ignored.
fn hex(text: &str) -> Option<Vec<u8>> {
    mailledger_core::unhex(text.trim())
}

/// Whether `signature_hex` is the HMAC-SHA256 of `data` under `key`,
/// compared in constant time by `ring`.
pub(crate) fn hmac_sha256_hex_matches(key: &[u8], data: &[u8], signature_hex: &str) -> bool {
    let Some(tag) = hex(signature_hex) else {
        return false;
    };
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key);
    ring::hmac::verify(&key, data, &tag).is_ok()
}

/// Refuses a signature timestamp more than `max_age_secs` away from `now`
/// (in either direction: a timestamp from the future is as suspect).
pub(crate) fn check_fresh(
    field: &'static str,
    timestamp: i64,
    now: i64,
    max_age_secs: i64,
) -> Result<(), WebhookError> {
    if now.saturating_sub(timestamp).saturating_abs() > max_age_secs.max(0) {
        return Err(WebhookError::StaleTimestamp {
            field,
            max_age_secs: max_age_secs.max(0),
        });
    }
    Ok(())
}

/// The body of a PEM block with the given label, when the text is PEM.
fn pem_body<'t>(text: &'t str, label: &str) -> Option<&'t str> {
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let start = text.find(&begin)? + begin.len();
    let rest = text.get(start..)?;
    let stop = rest.find(&end)?;
    rest.get(..stop)
}

/// What a configured public key text turned out to be.
enum KeyDer {
    /// A SubjectPublicKeyInfo (`PUBLIC KEY`).
    Spki(Vec<u8>),
    /// A bare PKCS#1 RSAPublicKey (`RSA PUBLIC KEY`).
    Pkcs1(Vec<u8>),
}

/// Reads a configured public key: PEM (`PUBLIC KEY` or `RSA PUBLIC KEY`),
/// base64 DER, or a DKIM record whose `p=` holds the key (what Postal's
/// `postal default-dkim-record` prints).
fn key_der(text: &str) -> Option<KeyDer> {
    if let Some(body) = pem_body(text, "RSA PUBLIC KEY") {
        return base64(body).map(KeyDer::Pkcs1);
    }
    if let Some(body) = pem_body(text, "PUBLIC KEY") {
        return base64(body).map(KeyDer::Spki);
    }
    let text = match text
        .split(';')
        .map(str::trim)
        .find_map(|t| t.strip_prefix("p="))
    {
        Some(p) => p,
        None => text,
    };
    let der = base64(text)?;
    Some(if SubjectPublicKeyInfoOwned::from_der(&der).is_ok() {
        KeyDer::Spki(der)
    } else {
        KeyDer::Pkcs1(der)
    })
}

/// The PKCS#1 RSAPublicKey inside a SubjectPublicKeyInfo, as `ring` wants
/// it.
fn rsa_from_spki(spki: &SubjectPublicKeyInfoOwned) -> Option<Vec<u8>> {
    (spki.algorithm.oid == RSA_ENCRYPTION)
        .then(|| spki.subject_public_key.as_bytes().map(<[u8]>::to_vec))
        .flatten()
}

/// Whether `der` is a PKCS#1 RSAPublicKey (a sequence of modulus and
/// exponent) with a modulus of 1024 to 8192 bits (Postal's default key is
/// 1024 bits).
fn is_rsa_pkcs1(der: &[u8]) -> bool {
    use x509_cert::der::asn1::UintRef;
    use x509_cert::der::{Decode, Reader, SliceReader};
    let Ok(mut reader) = SliceReader::new(der) else {
        return false;
    };
    let parts = reader.sequence(|r| {
        let n = UintRef::decode(r)?;
        let e = UintRef::decode(r)?;
        Ok::<_, x509_cert::der::Error>((n.as_bytes().len(), e.as_bytes().len()))
    });
    matches!(parts, Ok((n, e)) if (128..=1024).contains(&n) && e > 0) && reader.finish().is_ok()
}

/// A configured RSA public key as PKCS#1 DER.
pub(crate) fn rsa_public_key(provider: Provider, text: &str) -> Result<Vec<u8>, WebhookError> {
    let bad = |reason| WebhookError::BadSecret { provider, reason };
    let der = match key_der(text).ok_or_else(|| bad("not PEM or base64 DER"))? {
        KeyDer::Pkcs1(der) => der,
        KeyDer::Spki(der) => {
            let spki = SubjectPublicKeyInfoOwned::from_der(&der)
                .map_err(|_| bad("not a SubjectPublicKeyInfo"))?;
            rsa_from_spki(&spki).ok_or_else(|| bad("not an RSA public key"))?
        }
    };
    if is_rsa_pkcs1(&der) {
        Ok(der)
    } else {
        Err(bad("not an RSA public key of 1024 to 8192 bits"))
    }
}

/// The most `max_signature_age_secs` may be: a week.
pub(crate) const MAX_SIGNATURE_AGE_SECS: i64 = 7 * 24 * 3600;

/// Checks each secret a webhook document sets, as the adapters will read
/// it: the Postal key an RSA public key, the SendGrid key an ECDSA P-256
/// one, each SNS certificate PEM X.509, the Mailgun key not empty. Returns
/// the first bad field and what it must be; never a value.
pub(crate) fn check_secrets(
    s: &mailledger_access::ProviderSecrets,
) -> Result<(), (&'static str, &'static str)> {
    if s.mailgun_signing_key
        .as_deref()
        .is_some_and(|k| k.trim().is_empty())
    {
        return Err(("mailgun_signing_key", "must not be empty"));
    }
    if let Some(k) = &s.postal_public_key
        && rsa_public_key(Provider::Postal, k).is_err()
    {
        return Err((
            "postal_public_key",
            "must be an RSA public key of 1024 to 8192 bits: PEM, base64 DER, or the DKIM record holding it",
        ));
    }
    if let Some(k) = &s.sendgrid_public_key
        && p256_public_key(Provider::Sendgrid, k).is_err()
    {
        return Err((
            "sendgrid_public_key",
            "must be an ECDSA P-256 public key: PEM or base64 DER",
        ));
    }
    if s.sns_certificates
        .iter()
        .any(|c| Certificate::load_pem_chain(c.as_bytes()).map_or(true, |chain| chain.is_empty()))
    {
        return Err(("sns_certificates", "must each be a PEM X.509 certificate"));
    }
    if !(1..=MAX_SIGNATURE_AGE_SECS).contains(&s.max_signature_age_secs) {
        return Err(("max_signature_age_secs", "must be 1 to 604800 (a week)"));
    }
    if s.sns_topic_arns.iter().any(|a| a.trim().is_empty()) {
        return Err(("sns_topic_arns", "must not hold an empty ARN"));
    }
    Ok(())
}

/// A configured ECDSA P-256 public key (SubjectPublicKeyInfo, PEM or base64
/// DER, as SendGrid shows it) as the uncompressed point `ring` wants.
pub(crate) fn p256_public_key(provider: Provider, text: &str) -> Result<Vec<u8>, WebhookError> {
    let bad = |reason| WebhookError::BadSecret { provider, reason };
    let KeyDer::Spki(der) = key_der(text).ok_or_else(|| bad("not PEM or base64 DER"))? else {
        return Err(bad("not an ECDSA P-256 public key"));
    };
    let spki =
        SubjectPublicKeyInfoOwned::from_der(&der).map_err(|_| bad("not a SubjectPublicKeyInfo"))?;
    let curve = spki
        .algorithm
        .parameters
        .as_ref()
        .and_then(|p| p.decode_as::<ObjectIdentifier>().ok());
    if spki.algorithm.oid != EC_PUBLIC_KEY || curve != Some(P256) {
        return Err(bad("not an ECDSA P-256 public key"));
    }
    spki.subject_public_key
        .as_bytes()
        .map(<[u8]>::to_vec)
        .ok_or_else(|| bad("not an ECDSA P-256 public key"))
}

/// Whether an RSA PKCS#1 v1.5 signature verifies.
pub(crate) fn rsa_verifies(
    algorithm: &'static signature::RsaParameters,
    public_key_pkcs1: &[u8],
    message: &[u8],
    signature: &[u8],
) -> bool {
    UnparsedPublicKey::new(algorithm, public_key_pkcs1)
        .verify(message, signature)
        .is_ok()
}

/// Whether an ASN.1 DER ECDSA P-256 SHA-256 signature verifies.
pub(crate) fn p256_verifies(public_point: &[u8], message: &[u8], signature: &[u8]) -> bool {
    UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_ASN1, public_point)
        .verify(message, signature)
        .is_ok()
}

/// The RSA public keys of the configured SNS signing certificates that are
/// valid at `now`. Each configured text may hold one or more PEM
/// certificates.
pub(crate) fn sns_certificate_keys(
    pems: &[String],
    now_unix_secs: i64,
) -> Result<Vec<Vec<u8>>, WebhookError> {
    let bad = |reason| WebhookError::BadSecret {
        provider: Provider::Ses,
        reason,
    };
    let mut keys = Vec::new();
    for pem in pems {
        let chain = Certificate::load_pem_chain(pem.as_bytes())
            .map_err(|_| bad("an SNS certificate is not a PEM X.509 certificate"))?;
        if chain.is_empty() {
            return Err(bad("an SNS certificate is not a PEM X.509 certificate"));
        }
        for cert in chain {
            let tbs = cert.tbs_certificate();
            let validity = tbs.validity();
            let from = validity.not_before.to_unix_duration().as_secs();
            let until = validity.not_after.to_unix_duration().as_secs();
            let now = u64::try_from(now_unix_secs).unwrap_or(0);
            if now < from || now > until {
                continue;
            }
            let spki = tbs.subject_public_key_info();
            if let Some(key) = rsa_from_spki(spki) {
                keys.push(key);
            }
        }
    }
    Ok(keys)
}

/// Whether an SNS `SigningCertURL` is one SNS could have sent: `https`, on
/// a host `sns.<region>.amazonaws.com`, no user info or port, a `.pem`
/// path. The URL is never fetched: the certificate must be configured.
pub(crate) fn sns_cert_url_is_trusted(url: &str) -> bool {
    let Some(rest) = url.strip_prefix("https://") else {
        return false;
    };
    let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
    let Some(region) = host
        .strip_prefix("sns.")
        .and_then(|h| h.strip_suffix(".amazonaws.com"))
    else {
        return false;
    };
    !region.is_empty()
        && region
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && path.ends_with(".pem")
        && !path.contains(['?', '#'])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_sns_certificate_urls_on_amazonaws_are_trusted() {
        assert!(sns_cert_url_is_trusted(
            "https://sns.eu-west-1.amazonaws.com/SimpleNotificationService-abc.pem"
        ));
        for url in [
            "http://sns.eu-west-1.amazonaws.com/SimpleNotificationService-abc.pem",
            "https://sns.eu-west-1.amazonaws.com.evil.example/x.pem",
            "https://evil.example/sns.eu-west-1.amazonaws.com/x.pem",
            "https://user@sns.eu-west-1.amazonaws.com/x.pem",
            "https://sns.eu-west-1.amazonaws.com:8443/x.pem",
            "https://sns..amazonaws.com/x.pem",
            "https://sns.eu-west-1.amazonaws.com/x.txt",
            "https://s3.amazonaws.com/x.pem",
        ] {
            assert!(!sns_cert_url_is_trusted(url), "{url}");
        }
    }

    #[test]
    fn stale_and_future_timestamps_are_refused() {
        assert!(check_fresh("t", 1000, 1200, 300).is_ok());
        assert!(check_fresh("t", 1000, 1301, 300).is_err());
        assert!(check_fresh("t", 1400, 1000, 300).is_err());
        assert!(check_fresh("t", i64::MIN, i64::MAX, 300).is_err());
    }

    #[test]
    fn hex_signatures_of_the_wrong_shape_do_not_match() {
        assert!(!hmac_sha256_hex_matches(b"k", b"d", "zz"));
        assert!(!hmac_sha256_hex_matches(b"k", b"d", "abc"));
        assert!(!hmac_sha256_hex_matches(b"k", b"d", ""));
    }
}
