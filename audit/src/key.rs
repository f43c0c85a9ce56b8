//! The node's audit key (Ed25519), which signs checkpoints, and its public
//! half, which is all an auditor needs to check them.
//!
//! The key file holds the 32-byte seed as 64 hex digits and a newline,
//! mode 0600. It lives in the keys directory (`audit.key`) or wherever
//! `--audit-key-file` says, never in the data: whoever can write the log
//! must not be able to sign a rewritten one.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::Path;

use ed25519_dalek::{SigningKey, VerifyingKey};
use mailledger_core::{hex, unhex_into};
use zeroize::Zeroizing;

use crate::{AuditError, Result};

/// The name of the audit key's file in the keys directory.
pub const AUDIT_KEY_FILE: &str = "audit.key";

/// The node's signing key.
pub struct AuditKey(SigningKey);

impl std::fmt::Debug for AuditKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AuditKey({})", hex(&self.public().id()))
    }
}

impl AuditKey {
    /// The key of a seed.
    #[must_use]
    pub fn from_seed(seed: [u8; 32]) -> Self {
        Self(SigningKey::from_bytes(&seed))
    }

    /// A new key from the system's randomness.
    ///
    /// # Errors
    /// [`AuditError::Key`] when the system has no randomness to give.
    pub fn generate() -> Result<Self> {
        let mut seed = Zeroizing::new([0u8; 32]);
        getrandom::fill(seed.as_mut())
            .map_err(|e| AuditError::Key(format!("no system randomness: {e}")))?;
        Ok(Self::from_seed(*seed))
    }

    /// Reads a key file.
    ///
    /// # Errors
    /// [`AuditError::Key`] when the file cannot be read, is readable by
    /// others, or does not hold 64 hex digits.
    pub fn read_file(path: &Path) -> Result<Self> {
        let shown = path.display();
        let meta = std::fs::metadata(path)
            .map_err(|e| AuditError::Key(format!("cannot read {shown}: {e}")))?;
        if std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o077 != 0 {
            return Err(AuditError::Key(format!(
                "{shown} is readable by others: chmod 600 it"
            )));
        }
        let text = Zeroizing::new(
            std::fs::read_to_string(path)
                .map_err(|e| AuditError::Key(format!("cannot read {shown}: {e}")))?,
        );
        let mut seed = Zeroizing::new([0u8; 32]);
        if !unhex_into(text.trim().as_bytes(), seed.as_mut()) {
            return Err(AuditError::Key(format!(
                "{shown} does not hold an audit key (64 hex digits)"
            )));
        }
        Ok(Self::from_seed(*seed))
    }

    /// Writes a new key to `path` (mode 0600, synced), which must not exist.
    ///
    /// # Errors
    /// [`AuditError::Key`] when the file exists or cannot be written.
    pub fn generate_file(path: &Path) -> Result<Self> {
        let key = Self::generate()?;
        let shown = path.display();
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map_err(|e| AuditError::Key(format!("cannot create {shown}: {e}")))?;
        let text = Zeroizing::new(format!("{}\n", hex(key.0.as_bytes())));
        f.write_all(text.as_bytes())
            .and_then(|()| f.sync_all())
            .map_err(|e| AuditError::Key(format!("cannot write {shown}: {e}")))?;
        if let Some(dir) = path.parent() {
            mailledger_core::sync_tree(dir)
                .map_err(|e| AuditError::Key(format!("cannot sync {}: {e}", dir.display())))?;
        }
        Ok(key)
    }

    /// The public half.
    #[must_use]
    pub fn public(&self) -> PublicKey {
        PublicKey(self.0.verifying_key())
    }

    pub(crate) fn signing(&self) -> &SigningKey {
        &self.0
    }
}

/// An audit key's public half: 64 hex digits as text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PublicKey(VerifyingKey);

impl PublicKey {
    /// The key id checkpoints carry: the first 8 bytes of blake3 of the
    /// key's bytes.
    #[must_use]
    pub fn id(&self) -> [u8; 8] {
        let mut id = [0; 8];
        id.copy_from_slice(&blake3::hash(self.0.as_bytes()).as_bytes()[..8]);
        id
    }

    pub(crate) fn verifying(&self) -> &VerifyingKey {
        &self.0
    }
}

impl std::fmt::Display for PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&hex(self.0.as_bytes()))
    }
}

impl std::str::FromStr for PublicKey {
    type Err = AuditError;

    /// Parses 64 hex digits (surrounding white space ignored).
    fn from_str(s: &str) -> Result<Self> {
        let bad = || AuditError::Key("a public key is 64 hex digits".into());
        let mut b = [0; 32];
        if !unhex_into(s.trim().as_bytes(), &mut b) {
            return Err(bad());
        }
        VerifyingKey::from_bytes(&b).map(Self).map_err(|_| bad())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_file_is_private_and_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(AUDIT_KEY_FILE);
        let key = AuditKey::generate_file(&path).unwrap();
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(&path).unwrap().permissions(),
        );
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(AuditKey::read_file(&path).unwrap().public(), key.public());
        assert!(AuditKey::generate_file(&path).is_err(), "never overwritten");
        let public: PublicKey = key.public().to_string().parse().unwrap();
        assert_eq!(public, key.public());
        assert!("zz".parse::<PublicKey>().is_err());
    }

    #[test]
    fn a_key_file_others_can_read_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k");
        std::fs::write(&path, format!("{}\n", hex(&[9; 32]))).unwrap();
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o644))
            .unwrap();
        let err = AuditKey::read_file(&path).unwrap_err();
        assert!(err.to_string().contains("chmod 600"), "{err}");
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .unwrap();
        assert!(AuditKey::read_file(&path).is_ok());
        std::fs::write(&path, "not hex").unwrap();
        assert!(AuditKey::read_file(&path).is_err());
    }
}
