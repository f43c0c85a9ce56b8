//! Secrets and sealing: AES-256-GCM under 256-bit keys with random 96-bit
//! nonces (RustCrypto `aes-gcm`, whose key schedules are zeroized on drop).
//!
//! Three types carry the rules:
//! - [`SecretKey`]: key material, zeroized on drop, never printed;
//! - [`Personal`]: a personal value in plaintext, zeroized on drop, never
//!   printed by `Debug`; it has no `Display` and is not stored anywhere;
//! - [`Sealed`]: what is stored instead, built only by encrypting.
//!
//! A sealed value is `nonce (12 bytes) ‖ ciphertext ‖ tag (16 bytes)`. The
//! caller binds it to its place with associated data, so a ciphertext moved
//! to another tenant, contact, event or field fails to open.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use serde::{Deserialize, Serialize};
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::error::{Error, Result};

/// Bytes in a key.
pub const KEY_LEN: usize = 32;
/// Bytes in a nonce.
pub const NONCE_LEN: usize = 12;
/// Bytes in an authentication tag.
pub const TAG_LEN: usize = 16;

/// Fills `buf` from the operating system's random source.
pub(crate) fn random(buf: &mut [u8]) -> Result<()> {
    getrandom::fill(buf).map_err(|e| Error::config(format!("no system randomness: {e}")))
}

/// Nonces drawn from the operating system's random source at once, per
/// thread: one `getrandom` call per nonce cost a system call per sealed
/// event, which showed in the server's profile while ingesting.
const NONCES_PER_DRAW: usize = 128;

/// A thread's unused random nonce bytes, handed out once each.
struct NoncePool {
    bytes: [u8; NONCE_LEN * NONCES_PER_DRAW],
    used: usize,
}

thread_local! {
    static NONCES: std::cell::RefCell<NoncePool> = const {
        std::cell::RefCell::new(NoncePool {
            bytes: [0; NONCE_LEN * NONCES_PER_DRAW],
            used: NONCES_PER_DRAW,
        })
    };
}

/// A fresh random nonce: the next unused one of this thread's pool, which
/// is refilled from the operating system's random source when empty.
fn random_nonce() -> Result<[u8; NONCE_LEN]> {
    NONCES.with_borrow_mut(|pool| {
        if pool.used == NONCES_PER_DRAW {
            random(&mut pool.bytes)?;
            pool.used = 0;
        }
        let mut nonce = [0u8; NONCE_LEN];
        let at = pool.used * NONCE_LEN;
        nonce.copy_from_slice(&pool.bytes[at..at + NONCE_LEN]);
        // Handed out once: never left in the pool to be read again.
        pool.bytes[at..at + NONCE_LEN].fill(0);
        pool.used += 1;
        Ok(nonce)
    })
}

/// 256 bits of secret key material. Zeroized on drop; `Debug` prints no bytes.
#[derive(Clone, Zeroize, ZeroizeOnDrop, PartialEq, Eq)]
pub struct SecretKey([u8; KEY_LEN]);

impl SecretKey {
    /// A new random key.
    ///
    /// # Errors
    /// When the system has no randomness to give.
    pub fn generate() -> Result<Self> {
        let mut k = [0u8; KEY_LEN];
        random(&mut k)?;
        let key = Self(k);
        k.zeroize();
        Ok(key)
    }

    /// A key from 64 hexadecimal digits (surrounding whitespace ignored).
    ///
    /// # Errors
    /// When the text is not 64 hex digits; the error does not echo it.
    pub fn from_hex(text: &str) -> Result<Self> {
        let text = text.trim().as_bytes();
        if text.len() != KEY_LEN * 2 {
            return Err(Error::config("a key must be 64 hexadecimal digits"));
        }
        let mut k = Self([0; KEY_LEN]);
        // On failure `k` is dropped, and so zeroized, with any part decoded.
        if crate::unhex_into(text, &mut k.0) {
            Ok(k)
        } else {
            Err(Error::config("a key must be 64 hexadecimal digits"))
        }
    }

    /// The key as 64 lower-case hex digits, in a buffer zeroized on drop.
    #[must_use]
    pub fn to_hex(&self) -> Zeroizing<String> {
        let mut s = Zeroizing::new(String::with_capacity(KEY_LEN * 2));
        // Made with its full size, so the push never moves (and leaves
        // behind) a partial copy.
        crate::push_hex(&mut s, &self.0);
        s
    }

    pub(crate) fn from_bytes(bytes: [u8; KEY_LEN]) -> Self {
        Self(bytes)
    }

    pub(crate) fn expose(&self) -> &[u8; KEY_LEN] {
        &self.0
    }
}

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretKey(..)")
    }
}

/// A personal value in plaintext: an address, a subject, an IP address.
///
/// Zeroized on drop. `Debug` prints only that it is redacted, and there is no
/// `Display`: the value leaves only through [`Personal::expose`], which the
/// sealing code and the output of an authorised read call.
#[derive(Clone, PartialEq, Eq, Zeroize, ZeroizeOnDrop, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Personal(String);

impl Personal {
    /// Wraps a plaintext value.
    #[must_use]
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The plaintext.
    #[must_use]
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Personal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Personal(<redacted>)")
    }
}

/// A personal value encrypted under a contact's key. Only sealing builds one
/// from plaintext; reading one back from storage yields ciphertext only.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sealed {
    nonce: [u8; NONCE_LEN],
    #[serde(with = "serde_bytes")]
    ciphertext: Vec<u8>,
}

impl Sealed {
    /// Bytes of ciphertext and tag.
    #[must_use]
    pub fn len(&self) -> usize {
        self.ciphertext.len()
    }

    /// Whether the sealed value holds no ciphertext (never true for a value
    /// built by sealing).
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.ciphertext.is_empty()
    }

    /// Rebuilds a sealed value from stored bytes (ciphertext, never plaintext).
    pub(crate) fn from_parts(nonce: [u8; NONCE_LEN], ciphertext: Vec<u8>) -> Self {
        Self { nonce, ciphertext }
    }

    /// The nonce.
    pub(crate) fn nonce(&self) -> &[u8; NONCE_LEN] {
        &self.nonce
    }

    /// Ciphertext followed by the tag.
    pub(crate) fn ciphertext(&self) -> &[u8] {
        &self.ciphertext
    }

    /// A sealed value with a chosen nonce, for frozen test vectors only.
    #[cfg(test)]
    pub(crate) fn with_nonce(
        cipher: &Cipher,
        nonce: [u8; NONCE_LEN],
        plaintext: &[u8],
        ad: &[u8],
    ) -> Self {
        cipher.seal_with(nonce, plaintext, ad).expect("seal")
    }
}

impl std::fmt::Debug for Sealed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Sealed({} bytes)", self.ciphertext.len())
    }
}

/// AES-256-GCM under one key. The key schedule is zeroized on drop.
pub struct Cipher(Aes256Gcm);

impl Cipher {
    /// A cipher for `key`.
    #[must_use]
    pub fn new(key: &SecretKey) -> Self {
        Self(Aes256Gcm::new(key.expose().into()))
    }

    /// Encrypts `plaintext` bound to `ad`, under a fresh random nonce.
    ///
    /// # Errors
    /// When the system has no randomness to give.
    pub fn seal(&self, plaintext: &[u8], ad: &[u8]) -> Result<Sealed> {
        self.seal_with(random_nonce()?, plaintext, ad)
    }

    fn seal_with(&self, nonce: [u8; NONCE_LEN], plaintext: &[u8], ad: &[u8]) -> Result<Sealed> {
        let ciphertext = self
            .0
            .encrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: plaintext,
                    aad: ad,
                },
            )
            .map_err(|_| Error::invalid("value too large to seal"))?;
        Ok(Sealed { nonce, ciphertext })
    }

    /// Decrypts `sealed` if it was sealed under this key with `ad`.
    #[must_use]
    pub fn open(&self, sealed: &Sealed, ad: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
        self.0
            .decrypt(
                &Nonce::from(sealed.nonce),
                Payload {
                    msg: &sealed.ciphertext,
                    aad: ad,
                },
            )
            .ok()
            .map(Zeroizing::new)
    }
}

impl std::fmt::Debug for Cipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Cipher(..)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_values_open_only_with_their_key_and_associated_data() {
        let key = SecretKey::generate().unwrap();
        let c = Cipher::new(&key);
        let s = c.seal(b"ann@example.org", b"ad-1").unwrap();
        assert_eq!(s.len(), 15 + TAG_LEN);
        assert_eq!(&**c.open(&s, b"ad-1").unwrap(), b"ann@example.org");
        assert!(c.open(&s, b"ad-2").is_none());
        let other = Cipher::new(&SecretKey::generate().unwrap());
        assert!(other.open(&s, b"ad-1").is_none());
    }

    #[test]
    fn each_seal_uses_a_fresh_nonce() {
        let c = Cipher::new(&SecretKey::generate().unwrap());
        let a = c.seal(b"same", b"").unwrap();
        let b = c.seal(b"same", b"").unwrap();
        assert_ne!(a.nonce, b.nonce);
        assert_ne!(a.ciphertext, b.ciphertext);
    }

    #[test]
    fn nonces_stay_distinct_across_pool_refills_and_threads() {
        let draws = NONCES_PER_DRAW * 3 + 1;
        let per_thread = move || {
            let c = Cipher::new(&SecretKey::generate().unwrap());
            (0..draws)
                .map(|_| c.seal(b"x", b"").unwrap().nonce)
                .collect::<Vec<_>>()
        };
        let other = std::thread::spawn(per_thread);
        let mut all = per_thread();
        all.extend(other.join().unwrap());
        let distinct: std::collections::HashSet<_> = all.iter().collect();
        assert_eq!(distinct.len(), draws * 2);
        assert!(
            !all.contains(&[0; NONCE_LEN]),
            "a used nonce was handed out"
        );
    }

    #[test]
    fn debug_output_never_shows_secrets_or_plaintext() {
        let key = SecretKey::from_hex(&"ab".repeat(32)).unwrap();
        let p = Personal::new("ann@example.org");
        let s = Cipher::new(&key).seal(p.expose().as_bytes(), b"").unwrap();
        let printed = format!("{key:?} {p:?} {s:?} {:?}", Cipher::new(&key));
        assert!(!printed.contains("ab"), "{printed}");
        assert!(!printed.contains("ann"), "{printed}");
        assert!(!printed.contains("example"), "{printed}");
    }

    #[test]
    fn hex_keys_round_trip_and_bad_ones_are_refused() {
        let k = SecretKey::generate().unwrap();
        assert_eq!(SecretKey::from_hex(&k.to_hex()).unwrap(), k);
        assert!(SecretKey::from_hex("abc").is_err());
        assert!(SecretKey::from_hex(&"zz".repeat(32)).is_err());
    }
}
