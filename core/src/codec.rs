//! The record frame, format version 2 (format 1 is still read).
//!
//! Every record is stored as one frame. The layout is fixed per format
//! version and frozen by the vectors in `core/testdata/`:
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 1 | format version, `2` (`1` for records written before it) |
//! | 1 | 4 | body length `N`, u32 little-endian, at most [`MAX_BODY_LEN`] |
//! | 5 | N | body, bincode 2.0.1 (see below) |
//! | 5 + N | 32 | `hash = blake3(bytes 0 .. 5 + N)` |
//!
//! The body is bincode 2.0.1 with its standard configuration (little-endian,
//! variable-length integers: a value below 251 is one byte, otherwise a marker
//! byte 251/252/253 followed by a u16/u32/u64; signed integers zig-zag first;
//! strings and byte strings are a varint length and the bytes), holding in
//! this order:
//!
//! 1. `position`: u64, the record's global position;
//! 2. `tenant`: string;
//! 3. `stream`: string;
//! 4. `stream_version`: u64;
//! 5. `event_id`: 16 raw bytes (the UUID, big-endian as written);
//! 6. `recorded_at`: i64, microseconds since the Unix epoch;
//! 7. `event_type`: string;
//! 8. `payload`: byte string;
//! 9. `metadata`: byte string;
//! 10. `prev_hash`: 32 raw bytes, the hash of the tenant's previous record
//!     ([`GENESIS_HASH`](crate::GENESIS_HASH) for its first);
//! 11. format 2 only: `jurisdiction`: 2 raw ASCII bytes, the jurisdiction
//!     the writing node declared ([`Jurisdiction::code`]): `EU`, or an
//!     ISO 3166-1 alpha-2 code in capitals. Anything else is corruption.
//!
//! Format 1 is format 2 without field 11: such a record reads with no
//! jurisdiction ([`RecordRef::jurisdiction`] is `None`). A log may hold
//! both; each frame is read by its own version byte.
//!
//! Because `prev_hash` sits inside the hashed bytes, each hash commits to the
//! tenant's whole history: changing any byte of any earlier record of the
//! tenant breaks the chain at that record. The hash covers bytes as stored,
//! so for sealed personal data it covers ciphertext, never plaintext, and it
//! covers the jurisdiction, so a record's declared place cannot be changed
//! without breaking the chain.
//!
//! A later format gets a new version byte; readers dispatch on it.

use bincode::config::{self, Configuration, Limit, LittleEndian, Varint};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::record::{Hash, Record};
use crate::residency::Jurisdiction;
use crate::wire::{Reader, WireError};

/// The format version this build writes.
pub const FORMAT_VERSION: u8 = 2;
/// The oldest format version this build reads.
pub const OLDEST_FORMAT_VERSION: u8 = 1;
/// The largest body a frame may carry: bigger lengths are corruption.
pub const MAX_BODY_LEN: usize = 16 * 1024 * 1024;
/// Bytes before the body.
pub const HEADER_LEN: usize = 5;
/// Bytes after the body.
pub const TRAILER_LEN: usize = 32;

type Codec = Configuration<LittleEndian, Varint, Limit<MAX_BODY_LEN>>;

const fn codec() -> Codec {
    config::standard().with_limit::<MAX_BODY_LEN>()
}

/// The body of format 1, which format 2 extends; written only by tests
/// (old logs hold it) and the reference for the hand-written decoder.
#[derive(Serialize, Deserialize)]
struct BodyV1<'a> {
    position: u64,
    tenant: &'a str,
    stream: &'a str,
    stream_version: u64,
    event_id: [u8; 16],
    recorded_at: i64,
    event_type: &'a str,
    #[serde(with = "serde_bytes")]
    payload: &'a [u8],
    #[serde(with = "serde_bytes")]
    metadata: &'a [u8],
    prev_hash: Hash,
}

/// The body of format 2: [`BodyV1`], then the jurisdiction.
#[derive(Serialize, Deserialize)]
struct BodyV2<'a> {
    #[serde(borrow)]
    v1: BodyV1<'a>,
    jurisdiction: [u8; 2],
}

/// Why a frame could not be read. Carries no record contents.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// Fewer bytes than the header and trailer need, or than the length says.
    #[error("frame truncated: {0} bytes")]
    Truncated(usize),
    /// A format version this build does not read.
    #[error("unknown format version {0}")]
    UnknownVersion(u8),
    /// The length field is out of bounds or disagrees with the frame size.
    #[error("bad body length {0}")]
    BadLength(u64),
    /// The stored hash is not the hash of the frame's bytes.
    #[error("hash mismatch")]
    HashMismatch,
    /// The body does not decode.
    #[error("body does not decode: {0}")]
    Undecodable(String),
    /// Two bytes where the jurisdiction belongs that are not two capital
    /// letters.
    #[error("a record's jurisdiction must be EU or two capital letters")]
    BadJurisdiction,
}

/// The fields of a record that its writer chooses; the codec adds the rest.
#[derive(Debug, Clone, Copy)]
pub struct RecordFields<'a> {
    /// Global position.
    pub position: u64,
    /// Tenant.
    pub tenant: &'a str,
    /// Stream.
    pub stream: &'a str,
    /// Stream version.
    pub stream_version: u64,
    /// Event id.
    pub event_id: Uuid,
    /// Microseconds since the Unix epoch.
    pub recorded_at_micros: i64,
    /// Event type name.
    pub event_type: &'a str,
    /// Payload bytes.
    pub payload: &'a [u8],
    /// Metadata bytes.
    pub metadata: &'a [u8],
    /// The tenant's previous hash.
    pub prev_hash: Hash,
    /// The jurisdiction the writing node declared.
    pub jurisdiction: Jurisdiction,
}

/// Encodes a record into a frame of format [`FORMAT_VERSION`], returning
/// the frame and its hash.
///
/// # Errors
/// [`FrameError::BadLength`] if the body would exceed [`MAX_BODY_LEN`].
pub fn encode(fields: &RecordFields<'_>) -> Result<(Vec<u8>, Hash), FrameError> {
    let body = BodyV2 {
        v1: body_v1(fields),
        jurisdiction: fields.jurisdiction.code(),
    };
    frame_of(FORMAT_VERSION, &body, fields)
}

/// Encodes a record as format 1 wrote it, without its jurisdiction: for
/// tests of logs written before format 2.
///
/// # Errors
/// As [`encode`].
#[cfg(any(test, feature = "test-util"))]
#[doc(hidden)]
pub fn encode_v1(fields: &RecordFields<'_>) -> Result<(Vec<u8>, Hash), FrameError> {
    frame_of(1, &body_v1(fields), fields)
}

/// The hash of the frame `record` was read from, recomputed from its
/// fields in its own format (1 when it carries no jurisdiction): equal to
/// [`Record::hash`] exactly when the record is what was written. Readers
/// that verify as they go (the audit's replay) compare the two.
///
/// # Errors
/// [`FrameError::BadLength`] for a record too large to be framed.
pub fn recomputed_hash(record: &crate::record::Record) -> Result<Hash, FrameError> {
    let fields = RecordFields {
        position: record.position,
        tenant: &record.tenant,
        stream: &record.stream,
        stream_version: record.stream_version,
        event_id: record.event_id,
        recorded_at_micros: record.recorded_at_micros,
        event_type: &record.event_type,
        payload: &record.payload,
        metadata: &record.metadata,
        prev_hash: record.prev_hash,
        jurisdiction: record.jurisdiction.unwrap_or_default(),
    };
    let (_, hash) = match record.jurisdiction {
        Some(_) => encode(&fields)?,
        None => frame_of(1, &body_v1(&fields), &fields)?,
    };
    Ok(hash)
}

fn body_v1<'a>(fields: &RecordFields<'a>) -> BodyV1<'a> {
    BodyV1 {
        position: fields.position,
        tenant: fields.tenant,
        stream: fields.stream,
        stream_version: fields.stream_version,
        event_id: *fields.event_id.as_bytes(),
        recorded_at: fields.recorded_at_micros,
        event_type: fields.event_type,
        payload: fields.payload,
        metadata: fields.metadata,
        prev_hash: fields.prev_hash,
    }
}

fn frame_of<B: Serialize>(
    version: u8,
    body: &B,
    fields: &RecordFields<'_>,
) -> Result<(Vec<u8>, Hash), FrameError> {
    let estimate = HEADER_LEN
        + TRAILER_LEN
        + 64
        + fields.tenant.len()
        + fields.stream.len()
        + fields.event_type.len()
        + fields.payload.len()
        + fields.metadata.len();
    let mut frame = Vec::with_capacity(estimate);
    frame.push(version);
    frame.extend_from_slice(&[0; 4]);
    bincode::serde::encode_into_std_write(body, &mut frame, codec())
        .map_err(|_| FrameError::BadLength(estimate as u64))?;
    let body_len = frame.len() - HEADER_LEN;
    let len = u32::try_from(body_len)
        .ok()
        .filter(|&l| l as usize <= MAX_BODY_LEN)
        .ok_or(FrameError::BadLength(body_len as u64))?;
    frame[1..HEADER_LEN].copy_from_slice(&len.to_le_bytes());
    let hash: Hash = blake3::hash(&frame).into();
    frame.extend_from_slice(&hash);
    Ok((frame, hash))
}

/// A record decoded in place, borrowing from its frame.
#[derive(Debug, Clone, Copy)]
pub struct RecordRef<'a> {
    /// Global position.
    pub position: u64,
    /// Tenant.
    pub tenant: &'a str,
    /// Stream.
    pub stream: &'a str,
    /// Stream version.
    pub stream_version: u64,
    /// Event id.
    pub event_id: Uuid,
    /// Microseconds since the Unix epoch.
    pub recorded_at_micros: i64,
    /// Event type name.
    pub event_type: &'a str,
    /// Payload bytes.
    pub payload: &'a [u8],
    /// Metadata bytes.
    pub metadata: &'a [u8],
    /// The tenant's previous hash.
    pub prev_hash: Hash,
    /// The jurisdiction the writing node declared; `None` for a record of
    /// format 1, which did not record it.
    pub jurisdiction: Option<Jurisdiction>,
    /// The hash stored in the frame (checked only by [`decode_verified`]).
    pub hash: Hash,
}

impl RecordRef<'_> {
    /// An owned copy.
    #[must_use]
    pub fn to_record(&self) -> Record {
        Record {
            position: self.position,
            tenant: self.tenant.to_owned(),
            stream: self.stream.to_owned(),
            stream_version: self.stream_version,
            event_id: self.event_id,
            recorded_at_micros: self.recorded_at_micros,
            event_type: self.event_type.to_owned(),
            payload: self.payload.to_vec(),
            metadata: self.metadata.to_vec(),
            prev_hash: self.prev_hash,
            jurisdiction: self.jurisdiction,
            hash: self.hash,
        }
    }
}

/// A frame taken apart: its version, the bytes its hash covers, its body
/// and its stored hash.
struct Parts<'a> {
    version: u8,
    hashed: &'a [u8],
    body: &'a [u8],
    hash: Hash,
}

fn split(frame: &[u8]) -> Result<Parts<'_>, FrameError> {
    if frame.len() < HEADER_LEN + TRAILER_LEN {
        return Err(FrameError::Truncated(frame.len()));
    }
    let (header, rest) = frame.split_at(HEADER_LEN);
    let version = header[0];
    if !(OLDEST_FORMAT_VERSION..=FORMAT_VERSION).contains(&version) {
        return Err(FrameError::UnknownVersion(version));
    }
    let mut len_bytes = [0; 4];
    len_bytes.copy_from_slice(&header[1..HEADER_LEN]);
    let len = u32::from_le_bytes(len_bytes) as usize;
    if len > MAX_BODY_LEN {
        return Err(FrameError::BadLength(len as u64));
    }
    if rest.len() != len + TRAILER_LEN {
        return Err(FrameError::BadLength(len as u64));
    }
    let (body, trailer) = rest.split_at(len);
    let mut hash = [0; 32];
    hash.copy_from_slice(trailer);
    Ok(Parts {
        version,
        hashed: &frame[..HEADER_LEN + len],
        body,
        hash,
    })
}

fn decode_body(version: u8, body: &[u8], hash: Hash) -> Result<RecordRef<'_>, FrameError> {
    let mut b = Reader::new(body, MAX_BODY_LEN);
    let mut record =
        read_body(&mut b, hash).map_err(|e| FrameError::Undecodable(e.reason().to_owned()))?;
    if version >= 2 {
        let code = b
            .array()
            .map_err(|e| FrameError::Undecodable(e.reason().to_owned()))?;
        record.jurisdiction =
            Some(Jurisdiction::from_code(code).ok_or(FrameError::BadJurisdiction)?);
    }
    if b.remaining() > 0 {
        return Err(FrameError::Undecodable(format!(
            "{} trailing bytes",
            b.remaining()
        )));
    }
    Ok(record)
}

fn read_body<'a>(b: &mut Reader<'a>, hash: Hash) -> Result<RecordRef<'a>, WireError> {
    Ok(RecordRef {
        position: b.u64()?,
        tenant: b.str()?,
        stream: b.str()?,
        stream_version: b.u64()?,
        event_id: Uuid::from_bytes(b.array()?),
        recorded_at_micros: b.i64()?,
        event_type: b.str()?,
        payload: b.bytes()?,
        metadata: b.bytes()?,
        prev_hash: b.array()?,
        jurisdiction: None,
        hash,
    })
}

/// Decodes a frame without checking its hash: the fast path for reads of a
/// log whose integrity `verify` answers for.
///
/// # Errors
/// A [`FrameError`] when the frame is malformed.
pub fn decode(frame: &[u8]) -> Result<RecordRef<'_>, FrameError> {
    let p = split(frame)?;
    decode_body(p.version, p.body, p.hash)
}

/// Decodes a frame and checks that its stored hash is the hash of its bytes.
///
/// # Errors
/// [`FrameError::HashMismatch`] or another [`FrameError`].
pub fn decode_verified(frame: &[u8]) -> Result<RecordRef<'_>, FrameError> {
    let p = split(frame)?;
    if blake3::hash(p.hashed) != blake3::Hash::from(p.hash) {
        return Err(FrameError::HashMismatch);
    }
    decode_body(p.version, p.body, p.hash)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample(payload: &[u8]) -> RecordFields<'_> {
        RecordFields {
            position: 41,
            tenant: "acme",
            stream: "message-m-42",
            stream_version: 3,
            event_id: Uuid::from_u128(0x0193_a0c4_7b1e_7d2a_9c3f_2f6a_1c9e_0b11),
            recorded_at_micros: 1_795_860_000_000_000,
            event_type: "bounced",
            payload,
            metadata: b"{\"source\":\"test\"}",
            prev_hash: [7; 32],
            jurisdiction: Jurisdiction::EU,
        }
    }

    fn vector_path(name: &str) -> std::path::PathBuf {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("testdata")
            .join(name)
    }

    type Encoder = fn(&RecordFields<'_>) -> Result<(Vec<u8>, Hash), FrameError>;

    // Frozen vectors: regenerate only with MAILLEDGER_BLESS=1 and a new
    // format version, never to make a change pass.
    fn check_vector(name: &str, encoder: Encoder, fields: &RecordFields<'_>) {
        let (frame, hash) = encoder(fields).unwrap();
        let path = vector_path(name);
        if std::env::var_os("MAILLEDGER_BLESS").is_some() {
            std::fs::write(&path, &frame).unwrap();
        }
        let frozen = std::fs::read(&path).unwrap();
        assert_eq!(frame, frozen, "encoding of {name} changed");
        let back = decode_verified(&frozen).unwrap();
        assert_eq!(back.hash, hash);
        assert_eq!(back.position, fields.position);
        assert_eq!(back.tenant, fields.tenant);
        assert_eq!(back.stream, fields.stream);
        assert_eq!(back.stream_version, fields.stream_version);
        assert_eq!(back.event_id, fields.event_id);
        assert_eq!(back.recorded_at_micros, fields.recorded_at_micros);
        assert_eq!(back.event_type, fields.event_type);
        assert_eq!(back.payload, fields.payload);
        assert_eq!(back.metadata, fields.metadata);
        assert_eq!(back.prev_hash, fields.prev_hash);
        let expected = (frame[0] >= 2).then_some(fields.jurisdiction);
        assert_eq!(back.jurisdiction, expected);
    }

    fn de() -> Jurisdiction {
        "DE".parse().unwrap()
    }

    fn large(big: &[u8]) -> RecordFields<'_> {
        let mut f = sample(big);
        f.position = u64::MAX;
        f.stream_version = 70_000;
        f.recorded_at_micros = -5;
        f.prev_hash = crate::GENESIS_HASH;
        f.jurisdiction = de();
        f
    }

    #[test]
    fn format_v1_vectors_still_read_without_a_jurisdiction() {
        let small = sample(b"{\"class\":\"hard\"}");
        check_vector("frame-v1-small.bin", encode_v1, &small);
        check_vector("frame-v1-large.bin", encode_v1, &large(&[0xAB; 300]));
    }

    #[test]
    fn format_v2_vectors_are_frozen() {
        let small = sample(b"{\"class\":\"hard\"}");
        check_vector("frame-v2-small.bin", encode, &small);
        check_vector("frame-v2-large.bin", encode, &large(&[0xAB; 300]));
    }

    #[test]
    fn format_v2_layout_matches_the_docs() {
        let mut fields = sample(b"x");
        fields.jurisdiction = "FR".parse().unwrap();
        let (frame, hash) = encode(&fields).unwrap();
        assert_eq!(frame[0], 2);
        let len = u32::from_le_bytes(frame[1..5].try_into().unwrap()) as usize;
        assert_eq!(frame.len(), HEADER_LEN + len + TRAILER_LEN);
        assert_eq!(&frame[HEADER_LEN + len..], &hash);
        assert_eq!(blake3::hash(&frame[..HEADER_LEN + len]).as_bytes(), &hash);
        assert_eq!(&frame[5..11], &[41, 4, b'a', b'c', b'm', b'e']);
        // prev_hash, then the jurisdiction's two bytes close the body
        assert_eq!(
            &frame[HEADER_LEN + len - 34..HEADER_LEN + len - 2],
            &[7; 32]
        );
        assert_eq!(&frame[HEADER_LEN + len - 2..HEADER_LEN + len], b"FR");
        // format 2 is format 1 with those two bytes added
        let (v1, _) = encode_v1(&fields).unwrap();
        assert_eq!(v1[0], 1);
        assert_eq!(
            &v1[HEADER_LEN..v1.len() - TRAILER_LEN],
            &frame[HEADER_LEN..HEADER_LEN + len - 2]
        );
    }

    #[test]
    fn a_jurisdiction_that_is_not_two_capitals_is_neither_read_nor_written() {
        let (frame, _) = encode(&sample(b"x")).unwrap();
        let end = frame.len() - TRAILER_LEN;
        for bad in [*b"eu", *b"E1", *b"\0\0", [b'D', 0xC3]] {
            let mut body = frame[HEADER_LEN..end].to_vec();
            let n = body.len();
            body[n - 2..].copy_from_slice(&bad);
            assert_eq!(
                decode_body(2, &body, [0; 32]).unwrap_err(),
                FrameError::BadJurisdiction,
                "{bad:?} was read"
            );
        }
        // Nor can the encoder be given one: a Jurisdiction is always two
        // capitals (`residency`'s tests), and what it writes reads back.
        for j in ["EU", "DE", "se"] {
            let mut fields = sample(b"x");
            fields.jurisdiction = j.parse().unwrap();
            let (frame, _) = encode(&fields).unwrap();
            assert_eq!(
                decode(&frame).unwrap().jurisdiction,
                Some(fields.jurisdiction)
            );
        }
        for (code, expected) in [(*b"EU", Jurisdiction::EU), (*b"DE", de())] {
            let mut body = frame[HEADER_LEN..end].to_vec();
            let n = body.len();
            body[n - 2..].copy_from_slice(&code);
            let r = decode_body(2, &body, [0; 32]).unwrap();
            assert_eq!(r.jurisdiction, Some(expected));
        }
    }

    #[test]
    fn format_v1_layout_matches_the_docs() {
        let (frame, hash) = encode_v1(&sample(b"x")).unwrap();
        assert_eq!(frame[0], 1);
        let len = u32::from_le_bytes(frame[1..5].try_into().unwrap()) as usize;
        assert_eq!(frame.len(), HEADER_LEN + len + TRAILER_LEN);
        assert_eq!(&frame[HEADER_LEN + len..], &hash);
        assert_eq!(blake3::hash(&frame[..HEADER_LEN + len]).as_bytes(), &hash);
        // position 41 is a single varint byte, then tenant "acme" with its length
        assert_eq!(&frame[5..11], &[41, 4, b'a', b'c', b'm', b'e']);
        // prev_hash closes the body
        assert_eq!(&frame[HEADER_LEN + len - 32..HEADER_LEN + len], &[7; 32]);
    }

    #[test]
    fn every_flipped_byte_is_detected() {
        let (frame, _) = encode(&sample(b"payload")).unwrap();
        for i in 0..frame.len() {
            let mut bad = frame.clone();
            bad[i] ^= 0x01;
            assert!(
                decode_verified(&bad).is_err(),
                "flip at byte {i} went unseen"
            );
        }
    }

    #[test]
    fn a_records_hash_is_recomputed_in_its_own_format() {
        let fields = sample(b"payload");
        for (frame, hash) in [encode(&fields).unwrap(), encode_v1(&fields).unwrap()] {
            let mut r = decode_verified(&frame).unwrap().to_record();
            assert_eq!(recomputed_hash(&r).unwrap(), hash);
            r.payload[0] ^= 1;
            assert_ne!(recomputed_hash(&r).unwrap(), hash, "a changed field");
        }
    }

    #[test]
    fn unknown_version_and_bad_lengths_are_errors() {
        let (frame, _) = encode(&sample(b"p")).unwrap();
        for version in [0, 3, 255] {
            let mut other = frame.clone();
            other[0] = version;
            assert_eq!(
                decode(&other).unwrap_err(),
                FrameError::UnknownVersion(version)
            );
        }
        assert!(matches!(
            decode(&frame[..frame.len() - 1]),
            Err(FrameError::BadLength(_))
        ));
        assert!(matches!(
            decode(&frame[..10]),
            Err(FrameError::Truncated(10))
        ));
        assert!(matches!(decode(&frame[..3]), Err(FrameError::Truncated(3))));
        let mut huge = frame;
        huge[1..5].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(decode(&huge), Err(FrameError::BadLength(_))));
    }

    proptest! {
        #[test]
        fn decode_never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = decode(&bytes);
            let _ = decode_verified(&bytes);
        }

        #[test]
        fn encode_then_decode_round_trips(
            position in any::<u64>(), version in any::<u64>(), at in any::<i64>(),
            payload in proptest::collection::vec(any::<u8>(), 0..300),
            stream in "[a-z0-9-]{1,40}",
        ) {
            let mut f = sample(&payload);
            f.position = position;
            f.stream_version = version;
            f.recorded_at_micros = at;
            f.stream = &stream;
            let (frame, hash) = encode(&f).unwrap();
            let r = decode_verified(&frame).unwrap();
            prop_assert_eq!(r.hash, hash);
            prop_assert_eq!(r.position, position);
            prop_assert_eq!(r.stream, stream.as_str());
            prop_assert_eq!(r.payload, payload.as_slice());
            prop_assert_eq!(r.recorded_at_micros, at);
        }

        #[test]
        fn the_hand_decoder_reads_exactly_what_bincode_reads(
            position in any::<u64>(), version in any::<u64>(), at in any::<i64>(),
            payload in proptest::collection::vec(any::<u8>(), 0..300),
            stream in "\\PC{0,40}",
            edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..3),
            cut in proptest::option::of(any::<prop::sample::Index>()),
            format in 1u8..=2,
        ) {
            let mut f = sample(&payload);
            f.position = position;
            f.stream_version = version;
            f.recorded_at_micros = at;
            f.stream = &stream;
            let (frame, _) = if format == 1 { encode_v1(&f) } else { encode(&f) }.unwrap();
            // The body, then changed: bytes overwritten, its end cut off.
            let mut body = frame[HEADER_LEN..frame.len() - TRAILER_LEN].to_vec();
            for (at, byte) in &edits {
                let i = at.index(body.len());
                body[i] = *byte;
            }
            if let Some(cut) = cut {
                body.truncate(cut.index(body.len() + 1));
            }
            agrees_with_bincode(format, &body)?;
        }

        #[test]
        fn the_hand_decoder_refuses_what_bincode_refuses(
            bytes in proptest::collection::vec(any::<u8>(), 0..200),
            format in 1u8..=2,
        ) {
            agrees_with_bincode(format, &bytes)?;
        }
    }

    #[test]
    fn every_varint_form_is_read_or_refused_as_bincode_does() {
        let (frame, _) = encode(&sample(b"payload")).unwrap();
        let body = &frame[HEADER_LEN..frame.len() - TRAILER_LEN];
        // The position (41) comes first, in one byte: each other form of it,
        // then the rest of the body.
        let forms: [&[u8]; 9] = [
            &[41],
            &[250],
            &[251, 41, 0],
            &[252, 41, 0, 0, 0],
            &[253, 41, 0, 0, 0, 0, 0, 0, 0],
            &[254, 41, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            &[254, 41, 0, 0, 0, 0, 0, 0, 0],
            &[255, 41],
            &[251, 41],
        ];
        for form in forms {
            let changed = [form, &body[1..]].concat();
            agrees_with_bincode(2, &changed).unwrap();
        }
        assert_eq!(
            decode_body(2, &[[251, 41, 0].as_slice(), &body[1..]].concat(), [0; 32])
                .unwrap()
                .position,
            41
        );
        for refused in [[254].as_slice(), &[255]] {
            let changed = [refused, &[41, 0, 0, 0, 0, 0, 0, 0], &body[1..]].concat();
            assert!(decode_body(2, &changed, [0; 32]).is_err());
        }
    }

    /// The hand-written decoder and bincode's serde decoder (the reference)
    /// both refuse `body` of frame format `format`, or both read the same
    /// record from it. Bincode reads any two bytes as a jurisdiction; the
    /// hand decoder also requires two capitals.
    fn agrees_with_bincode(format: u8, body: &[u8]) -> Result<(), TestCaseError> {
        fn whole<'a, B: serde::Deserialize<'a>>(body: &'a [u8]) -> Option<B> {
            bincode::serde::borrow_decode_from_slice::<B, _>(body, codec())
                .ok()
                .filter(|(_, used)| *used == body.len())
                .map(|(b, _)| b)
        }
        let reference = if format == 1 {
            whole::<BodyV1<'_>>(body).map(|b| (b, None))
        } else {
            whole::<BodyV2<'_>>(body)
                .and_then(|b| Some((b.v1, Some(Jurisdiction::from_code(b.jurisdiction)?))))
        };
        let hand = decode_body(format, body, [7; 32]).ok();
        match (reference, hand) {
            (None, None) => {}
            (Some((b, jurisdiction)), Some(r)) => {
                prop_assert_eq!(r.jurisdiction, jurisdiction);
                prop_assert_eq!(r.position, b.position);
                prop_assert_eq!(r.tenant, b.tenant);
                prop_assert_eq!(r.stream, b.stream);
                prop_assert_eq!(r.stream_version, b.stream_version);
                prop_assert_eq!(r.event_id, Uuid::from_bytes(b.event_id));
                prop_assert_eq!(r.recorded_at_micros, b.recorded_at);
                prop_assert_eq!(r.event_type, b.event_type);
                prop_assert_eq!(r.payload, b.payload);
                prop_assert_eq!(r.metadata, b.metadata);
                prop_assert_eq!(r.prev_hash, b.prev_hash);
            }
            (reference, hand) => prop_assert!(
                false,
                "bincode {} the body, the hand decoder {} it",
                if reference.is_some() {
                    "reads"
                } else {
                    "refuses"
                },
                if hand.is_some() { "reads" } else { "refuses" }
            ),
        }
        Ok(())
    }
}
