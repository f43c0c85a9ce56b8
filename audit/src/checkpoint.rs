//! A signed checkpoint: where one tenant's chain stood, signed by the
//! node's audit key, so an auditor holding the public key can later prove
//! the log still holds exactly that past.
//!
//! # The signed bytes (format 1)
//!
//! | bytes | field |
//! |---|---|
//! | 24 | the domain, `mailledger checkpoint v1\n` |
//! | 1 | the tenant name's length *n* |
//! | *n* | the tenant name (UTF-8) |
//! | 8 | the position of the tenant's last record covered (u64 BE) |
//! | 32 | that record's hash |
//! | 8 | the tenant's records up to and including it (u64 BE) |
//! | 8 | when it was signed, microseconds since the Unix epoch (i64 BE) |
//! | 2 | the signing node's jurisdiction (`EU`, `DE`, …) |
//! | 8 | the key id: the first 8 bytes of blake3 of the public key |
//!
//! The Ed25519 signature is over exactly these bytes. In the log, a
//! checkpoint is a `checkpoint` record of the tenant's
//! [`CHECKPOINT_STREAM`] whose payload is these bytes followed by the 64
//! bytes of the signature. Exported, it is one JSON line
//! ([`SignedCheckpoint::to_json`]) from which the same bytes are rebuilt.
//! The layout is frozen by the vector in this module's tests.

use ed25519_dalek::{Signature, Signer, Verifier};
use mailledger_core::residency::Jurisdiction;
use mailledger_core::{Hash, hex, unhex_into};
use serde::{Deserialize, Serialize};

use crate::key::{AuditKey, PublicKey};
use crate::{AuditError, Result};

/// The stream of a tenant's log that holds its signed checkpoints.
pub const CHECKPOINT_STREAM: &str = "audit-checkpoints";
/// The event type of a signed checkpoint's record.
pub const CHECKPOINT_EVENT: &str = "checkpoint";

const DOMAIN: &[u8; 24] = b"mailledger checkpoint v1";
const SIGNATURE_LEN: usize = 64;

/// Where one tenant's chain stood when the node signed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// The tenant.
    pub tenant: String,
    /// The position of the tenant's last record covered.
    pub position: u64,
    /// That record's hash.
    pub hash: Hash,
    /// The tenant's records up to and including it.
    pub count: u64,
    /// When it was signed, in microseconds since the Unix epoch.
    pub signed_at_micros: i64,
    /// The jurisdiction of the node that signed it.
    pub jurisdiction: Jurisdiction,
    /// The first 8 bytes of blake3 of the signing public key.
    pub key_id: [u8; 8],
}

impl Checkpoint {
    /// The bytes the signature covers (the module docs give the layout).
    ///
    /// # Errors
    /// A tenant name longer than 255 bytes (no valid tenant is).
    pub fn signed_bytes(&self) -> Result<Vec<u8>> {
        let name = self.tenant.as_bytes();
        let len = u8::try_from(name.len())
            .map_err(|_| AuditError::BadCheckpoint("tenant name too long".into()))?;
        let mut b = Vec::with_capacity(DOMAIN.len() + 1 + name.len() + 66);
        b.extend_from_slice(DOMAIN);
        b.push(len);
        b.extend_from_slice(name);
        b.extend_from_slice(&self.position.to_be_bytes());
        b.extend_from_slice(&self.hash);
        b.extend_from_slice(&self.count.to_be_bytes());
        b.extend_from_slice(&self.signed_at_micros.to_be_bytes());
        b.extend_from_slice(&self.jurisdiction.code());
        b.extend_from_slice(&self.key_id);
        Ok(b)
    }

    /// Parses [`Checkpoint::signed_bytes`]; `None` when they are not a
    /// format 1 checkpoint.
    fn parse(bytes: &[u8]) -> Option<Self> {
        let rest = bytes.strip_prefix(DOMAIN.as_slice())?;
        let (&len, rest) = rest.split_first()?;
        let (name, rest) = rest.split_at_checked(usize::from(len))?;
        if rest.len() != 8 + 32 + 8 + 8 + 2 + 8 {
            return None;
        }
        let u64_at = |i: usize| -> Option<[u8; 8]> { rest.get(i..i + 8)?.try_into().ok() };
        let mut hash = [0; 32];
        hash.copy_from_slice(&rest[8..40]);
        let code: [u8; 2] = rest[56..58].try_into().ok()?;
        Some(Self {
            tenant: std::str::from_utf8(name).ok()?.to_owned(),
            position: u64::from_be_bytes(u64_at(0)?),
            hash,
            count: u64::from_be_bytes(u64_at(40)?),
            signed_at_micros: i64::from_be_bytes(u64_at(48)?),
            jurisdiction: Jurisdiction::from_code(code)?,
            key_id: rest[58..66].try_into().ok()?,
        })
    }

    /// Signs the checkpoint with `key` (whose id it must carry).
    ///
    /// # Errors
    /// As [`Checkpoint::signed_bytes`].
    pub fn sign(self, key: &AuditKey) -> Result<SignedCheckpoint> {
        let signature = key.signing().sign(&self.signed_bytes()?).to_bytes();
        Ok(SignedCheckpoint {
            checkpoint: self,
            signature,
        })
    }
}

/// A [`Checkpoint`] and its Ed25519 signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedCheckpoint {
    /// What was signed.
    pub checkpoint: Checkpoint,
    /// The signature over [`Checkpoint::signed_bytes`].
    pub signature: [u8; SIGNATURE_LEN],
}

/// A signed checkpoint as one exported JSON line.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CheckpointJson {
    /// Always 1.
    pub format: u32,
    /// The tenant.
    pub tenant: String,
    /// The position of the tenant's last record covered.
    pub position: u64,
    /// That record's hash (64 hex digits).
    pub hash: String,
    /// The tenant's records up to and including it.
    pub count: u64,
    /// When it was signed (RFC 3339, for people; the next field is signed).
    pub signed_at: String,
    /// When it was signed, in microseconds since the Unix epoch.
    pub signed_at_micros: i64,
    /// The signing node's jurisdiction.
    pub jurisdiction: String,
    /// The signing key's id (16 hex digits).
    pub key_id: String,
    /// The Ed25519 signature (128 hex digits).
    pub signature: String,
}

impl SignedCheckpoint {
    /// Checks the signature with `public` (and that the checkpoint names
    /// its key).
    ///
    /// # Errors
    /// [`AuditError::Signature`] when it does not verify.
    pub fn verify(&self, public: &PublicKey) -> Result<()> {
        let bad = || AuditError::Signature {
            tenant: self.checkpoint.tenant.clone(),
            position: self.checkpoint.position,
        };
        if self.checkpoint.key_id != public.id() {
            return Err(bad());
        }
        let signature = Signature::from_bytes(&self.signature);
        public
            .verifying()
            .verify(&self.checkpoint.signed_bytes()?, &signature)
            .map_err(|_| bad())
    }

    /// The payload of its record in the log: the signed bytes, then the
    /// signature.
    ///
    /// # Errors
    /// As [`Checkpoint::signed_bytes`].
    pub fn to_payload(&self) -> Result<Vec<u8>> {
        let mut b = self.checkpoint.signed_bytes()?;
        b.extend_from_slice(&self.signature);
        Ok(b)
    }

    /// Parses a record's payload ([`SignedCheckpoint::to_payload`]).
    ///
    /// # Errors
    /// [`AuditError::BadCheckpoint`] when it is not one.
    pub fn from_payload(payload: &[u8]) -> Result<Self> {
        let bad = || AuditError::BadCheckpoint("a checkpoint record does not decode".into());
        let split = payload.len().checked_sub(SIGNATURE_LEN).ok_or_else(bad)?;
        let (bytes, signature) = payload.split_at(split);
        Ok(Self {
            checkpoint: Checkpoint::parse(bytes).ok_or_else(bad)?,
            signature: signature.try_into().map_err(|_| bad())?,
        })
    }

    /// The exported form.
    #[must_use]
    pub fn to_json(&self) -> CheckpointJson {
        let c = &self.checkpoint;
        CheckpointJson {
            format: 1,
            tenant: c.tenant.clone(),
            position: c.position,
            hash: hex(&c.hash),
            count: c.count,
            signed_at: mailledger_core::email::rfc3339(c.signed_at_micros),
            signed_at_micros: c.signed_at_micros,
            jurisdiction: c.jurisdiction.to_string(),
            key_id: hex(&c.key_id),
            signature: hex(&self.signature),
        }
    }

    /// Parses the exported form; the signature is not checked here.
    ///
    /// # Errors
    /// [`AuditError::BadCheckpoint`] naming the field that is wrong.
    pub fn from_json(j: &CheckpointJson) -> Result<Self> {
        let bad = |what: &str| AuditError::BadCheckpoint(format!("{what} is not valid"));
        if j.format != 1 {
            return Err(bad("format"));
        }
        mailledger_core::validate_tenant(&j.tenant).map_err(|_| bad("tenant"))?;
        let mut hash = [0; 32];
        let mut key_id = [0; 8];
        let mut signature = [0; SIGNATURE_LEN];
        if !unhex_into(j.hash.as_bytes(), &mut hash) {
            return Err(bad("hash"));
        }
        if !unhex_into(j.key_id.as_bytes(), &mut key_id) {
            return Err(bad("key_id"));
        }
        if !unhex_into(j.signature.as_bytes(), &mut signature) {
            return Err(bad("signature"));
        }
        let jurisdiction: Jurisdiction = j.jurisdiction.parse().map_err(|_| bad("jurisdiction"))?;
        if mailledger_core::email::rfc3339(j.signed_at_micros) != j.signed_at {
            return Err(bad("signed_at (it disagrees with signed_at_micros)"));
        }
        Ok(Self {
            checkpoint: Checkpoint {
                tenant: j.tenant.clone(),
                position: j.position,
                hash,
                count: j.count,
                signed_at_micros: j.signed_at_micros,
                jurisdiction,
                key_id,
            },
            signature,
        })
    }
}

/// Reads exported checkpoints, one JSON line each (blank lines skipped).
///
/// # Errors
/// [`AuditError::BadCheckpoint`] naming the line that does not parse.
pub fn parse_lines(text: &str) -> Result<Vec<SignedCheckpoint>> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let j: CheckpointJson = serde_json::from_str(line).map_err(|e| {
            AuditError::BadCheckpoint(format!(
                "line {}: not a checkpoint ({})",
                i + 1,
                json_problem(&e)
            ))
        })?;
        let c = SignedCheckpoint::from_json(&j)
            .map_err(|e| AuditError::BadCheckpoint(format!("line {}: {e}", i + 1)))?;
        out.push(c);
    }
    Ok(out)
}

/// What is wrong with a line that does not parse, without its content.
fn json_problem(e: &serde_json::Error) -> &'static str {
    match e.classify() {
        serde_json::error::Category::Io => "unreadable",
        serde_json::error::Category::Syntax | serde_json::error::Category::Eof => "not JSON",
        serde_json::error::Category::Data => "a field is missing, unknown or of the wrong type",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(key: &AuditKey) -> Checkpoint {
        Checkpoint {
            tenant: "acme".into(),
            position: 41,
            hash: [7; 32],
            count: 12,
            signed_at_micros: 1_767_600_000_000_000,
            jurisdiction: "EU".parse().unwrap(),
            key_id: key.public().id(),
        }
    }

    #[test]
    fn the_signed_bytes_and_signature_are_frozen() {
        let key = AuditKey::from_seed([1; 32]);
        let signed = sample(&key).sign(&key).unwrap();
        let bytes = signed.checkpoint.signed_bytes().unwrap();
        assert_eq!(hex(&key.public().id()), FROZEN_KEY_ID);
        assert_eq!(
            hex(&bytes),
            format!("{FROZEN_BYTES}{FROZEN_KEY_ID}"),
            "the layout of the signed bytes changed"
        );
        assert_eq!(hex(&signed.signature), FROZEN_SIGNATURE);
        signed.verify(&key.public()).unwrap();
    }

    /// The signed bytes of `sample` up to the key id.
    const FROZEN_BYTES: &str = concat!(
        "6d61696c6c656467657220636865636b706f696e742076310461636d65000000",
        "0000000029070707070707070707070707070707070707070707070707070707",
        "0707070707000000000000000c0006479f721ae0004555",
    );
    const FROZEN_KEY_ID: &str = "83561adb398fd87f";
    const FROZEN_SIGNATURE: &str = concat!(
        "c5127615a615b75247db6d8694302feff8d9c827154036b5790b9119dfaee6d7",
        "8e2ffe55b5bf318abc3960791ebccb859a642279446c4749016bdb3a7d278b0d"
    );

    #[test]
    fn a_checkpoint_round_trips_through_its_record_and_its_json_line() {
        let key = AuditKey::from_seed([2; 32]);
        let signed = sample(&key).sign(&key).unwrap();
        signed.verify(&key.public()).unwrap();
        let from_payload = SignedCheckpoint::from_payload(&signed.to_payload().unwrap()).unwrap();
        assert_eq!(from_payload, signed);
        let line = serde_json::to_string(&signed.to_json()).unwrap();
        let parsed = parse_lines(&format!("{line}\n\n")).unwrap();
        assert_eq!(parsed, vec![signed]);
    }

    #[test]
    fn a_changed_field_or_another_key_fails_the_signature() {
        let key = AuditKey::from_seed([3; 32]);
        let signed = sample(&key).sign(&key).unwrap();
        let mut moved = signed.clone();
        moved.checkpoint.position += 1;
        assert!(matches!(
            moved.verify(&key.public()),
            Err(AuditError::Signature { position: 42, .. })
        ));
        let mut recounted = signed.clone();
        recounted.checkpoint.count -= 1;
        assert!(recounted.verify(&key.public()).is_err());
        let other = AuditKey::from_seed([4; 32]);
        assert!(signed.verify(&other.public()).is_err());
        // Re-signed by another key but claiming the first key's id.
        let forged = sample(&key).sign(&other).unwrap();
        assert!(forged.verify(&key.public()).is_err());
    }

    #[test]
    fn bad_lines_are_refused_naming_the_line() {
        let key = AuditKey::from_seed([5; 32]);
        let good = serde_json::to_string(&sample(&key).sign(&key).unwrap().to_json()).unwrap();
        let err = parse_lines(&format!("{good}\n{{\"format\": 1}}\n")).unwrap_err();
        assert!(err.to_string().contains("line 2"), "{err}");
        let bad_hash = good.replace("\"hash\":\"07", "\"hash\":\"zz");
        let err = parse_lines(&bad_hash).unwrap_err();
        assert!(err.to_string().contains("hash"), "{err}");
        assert!(SignedCheckpoint::from_payload(b"short").is_err());
    }
}
