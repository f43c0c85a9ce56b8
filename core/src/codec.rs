//! The record frame, format version 1.
//!
//! Every record is stored as one frame. The layout is fixed for format
//! version 1 and frozen by the vectors in `core/testdata/`:
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 1 | format version, `1` |
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
//!     ([`GENESIS_HASH`](crate::GENESIS_HASH) for its first).
//!
//! Because `prev_hash` sits inside the hashed bytes, each hash commits to the
//! tenant's whole history: changing any byte of any earlier record of the
//! tenant breaks the chain at that record. The hash covers bytes as stored,
//! so for sealed personal data it covers ciphertext, never plaintext.
//!
//! A later format gets a new version byte; readers dispatch on it.

use bincode::config::{self, Configuration, Limit, LittleEndian, Varint};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::record::{Hash, Record};
use crate::wire::{Reader, WireError};

/// The format version this build writes.
pub const FORMAT_VERSION: u8 = 1;
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
}

/// Encodes a record into a frame, returning the frame and its hash.
///
/// # Errors
/// [`FrameError::BadLength`] if the body would exceed [`MAX_BODY_LEN`].
pub fn encode(fields: &RecordFields<'_>) -> Result<(Vec<u8>, Hash), FrameError> {
    let body = BodyV1 {
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
    };
    let estimate = HEADER_LEN
        + TRAILER_LEN
        + 64
        + fields.tenant.len()
        + fields.stream.len()
        + fields.event_type.len()
        + fields.payload.len()
        + fields.metadata.len();
    let mut frame = Vec::with_capacity(estimate);
    frame.push(FORMAT_VERSION);
    frame.extend_from_slice(&[0; 4]);
    bincode::serde::encode_into_std_write(&body, &mut frame, codec())
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
            hash: self.hash,
        }
    }
}

fn split(frame: &[u8]) -> Result<(&[u8], &[u8], Hash), FrameError> {
    if frame.len() < HEADER_LEN + TRAILER_LEN {
        return Err(FrameError::Truncated(frame.len()));
    }
    let (header, rest) = frame.split_at(HEADER_LEN);
    let version = header[0];
    if version != FORMAT_VERSION {
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
    Ok((&frame[..HEADER_LEN + len], body, hash))
}

fn decode_body(body: &[u8], hash: Hash) -> Result<RecordRef<'_>, FrameError> {
    let mut b = Reader::new(body, MAX_BODY_LEN);
    let record =
        read_body(&mut b, hash).map_err(|e| FrameError::Undecodable(e.reason().to_owned()))?;
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
        hash,
    })
}

/// Decodes a frame without checking its hash: the fast path for reads of a
/// log whose integrity `verify` answers for.
///
/// # Errors
/// A [`FrameError`] when the frame is malformed.
pub fn decode(frame: &[u8]) -> Result<RecordRef<'_>, FrameError> {
    let (_, body, hash) = split(frame)?;
    decode_body(body, hash)
}

/// Decodes a frame and checks that its stored hash is the hash of its bytes.
///
/// # Errors
/// [`FrameError::HashMismatch`] or another [`FrameError`].
pub fn decode_verified(frame: &[u8]) -> Result<RecordRef<'_>, FrameError> {
    let (hashed, body, hash) = split(frame)?;
    if blake3::hash(hashed) != blake3::Hash::from(hash) {
        return Err(FrameError::HashMismatch);
    }
    decode_body(body, hash)
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
        }
    }

    fn vector_path(name: &str) -> std::path::PathBuf {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("testdata")
            .join(name)
    }

    // Frozen vectors: regenerate only with MAILLEDGER_BLESS=1 and a new
    // format version, never to make a change pass.
    fn check_vector(name: &str, fields: &RecordFields<'_>) {
        let (frame, hash) = encode(fields).unwrap();
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
    }

    #[test]
    fn format_v1_vectors_are_frozen() {
        check_vector("frame-v1-small.bin", &sample(b"{\"class\":\"hard\"}"));
        let big = vec![0xAB; 300];
        let mut f = sample(&big);
        f.position = u64::MAX;
        f.stream_version = 70_000;
        f.recorded_at_micros = -5;
        f.prev_hash = crate::GENESIS_HASH;
        check_vector("frame-v1-large.bin", &f);
    }

    #[test]
    fn format_v1_layout_matches_the_docs() {
        let (frame, hash) = encode(&sample(b"x")).unwrap();
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
    fn unknown_version_and_bad_lengths_are_errors() {
        let (frame, _) = encode(&sample(b"p")).unwrap();
        let mut v2 = frame.clone();
        v2[0] = 2;
        assert_eq!(decode(&v2).unwrap_err(), FrameError::UnknownVersion(2));
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
        ) {
            let mut f = sample(&payload);
            f.position = position;
            f.stream_version = version;
            f.recorded_at_micros = at;
            f.stream = &stream;
            let (frame, _) = encode(&f).unwrap();
            // The body, then changed: bytes overwritten, its end cut off.
            let mut body = frame[HEADER_LEN..frame.len() - TRAILER_LEN].to_vec();
            for (at, byte) in &edits {
                let i = at.index(body.len());
                body[i] = *byte;
            }
            if let Some(cut) = cut {
                body.truncate(cut.index(body.len() + 1));
            }
            agrees_with_bincode(&body)?;
        }

        #[test]
        fn the_hand_decoder_refuses_what_bincode_refuses(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            agrees_with_bincode(&bytes)?;
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
            agrees_with_bincode(&changed).unwrap();
        }
        assert_eq!(
            decode_body(&[[251, 41, 0].as_slice(), &body[1..]].concat(), [0; 32])
                .unwrap()
                .position,
            41
        );
        for refused in [[254].as_slice(), &[255]] {
            let changed = [refused, &[41, 0, 0, 0, 0, 0, 0, 0], &body[1..]].concat();
            assert!(decode_body(&changed, [0; 32]).is_err());
        }
    }

    /// The hand-written decoder and bincode's serde decoder (the reference)
    /// both refuse `body`, or both read the same record from it.
    fn agrees_with_bincode(body: &[u8]) -> Result<(), TestCaseError> {
        let reference = bincode::serde::borrow_decode_from_slice::<BodyV1<'_>, _>(body, codec())
            .ok()
            .filter(|(_, used)| *used == body.len())
            .map(|(b, _)| b);
        let hand = decode_body(body, [7; 32]).ok();
        match (reference, hand) {
            (None, None) => {}
            (Some(b), Some(r)) => {
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
