//! Webhooks signed as each provider signs them, for tests of the receiving
//! side (feature `test-util`): the adapters' unit tests and the binary's
//! end-to-end tests sign with this one copy.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use ring::rand::SystemRandom;
use ring::signature::{self, EcdsaKeyPair, KeyPair as _, RsaKeyPair};

use mailledger_core::hex;

/// The base64 RSA PKCS#1 v1.5 SHA-256 signature of `message` under a PKCS#8
/// key (Postal's, and SNS's signature version 2).
///
/// # Panics
/// When `pkcs8` is not an RSA key.
#[must_use]
pub fn rsa_sha256(pkcs8: &[u8], message: &[u8]) -> String {
    let key = RsaKeyPair::from_pkcs8(pkcs8).expect("an RSA PKCS#8 key");
    let mut sig = vec![0; key.public().modulus_len()];
    key.sign(
        &signature::RSA_PKCS1_SHA256,
        &SystemRandom::new(),
        message,
        &mut sig,
    )
    .expect("RSA signing");
    STANDARD.encode(sig)
}

/// Mailgun's `signature.signature`: hex HMAC-SHA256 of timestamp and token
/// under the signing key.
#[must_use]
pub fn mailgun_signature(key: &str, timestamp: &str, token: &str) -> String {
    let tag = ring::hmac::sign(
        &ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key.as_bytes()),
        format!("{timestamp}{token}").as_bytes(),
    );
    hex(tag.as_ref())
}

/// A P-256 key pair made now, and its public key as SendGrid shows it
/// (base64 DER SubjectPublicKeyInfo).
///
/// # Panics
/// When the system has no randomness.
#[must_use]
pub fn sendgrid_key() -> (EcdsaKeyPair, String) {
    let rng = SystemRandom::new();
    let alg = &signature::ECDSA_P256_SHA256_ASN1_SIGNING;
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(alg, &rng).expect("a P-256 key");
    let pair = EcdsaKeyPair::from_pkcs8(alg, pkcs8.as_ref(), &rng).expect("a P-256 key");
    // SEQUENCE { SEQUENCE { id-ecPublicKey, prime256v1 }, BIT STRING point }
    let mut spki = vec![
        0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08,
        0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
    ];
    spki.extend_from_slice(pair.public_key().as_ref());
    (pair, STANDARD.encode(spki))
}

/// SendGrid's `X-Twilio-Email-Event-Webhook-Signature` of `body` sent at
/// `timestamp` (the `...-Timestamp` header), base64.
///
/// # Panics
/// When the system has no randomness.
#[must_use]
pub fn sendgrid_signature(key: &EcdsaKeyPair, timestamp: &str, body: &[u8]) -> String {
    let mut signed = timestamp.as_bytes().to_vec();
    signed.extend_from_slice(body);
    let sig = key
        .sign(&SystemRandom::new(), &signed)
        .expect("ECDSA signing");
    STANDARD.encode(sig.as_ref())
}
