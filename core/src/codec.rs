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
    frame_of(FORMAT_VERSION, &body_v2(fields), fields)
}

fn body_v2<'a>(fields: &RecordFields<'a>) -> BodyV2<'a> {
    BodyV2 {
        v1: body_v1(fields),
        jurisdiction: fields.jurisdiction.code(),
    }
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
    recomputed_hash_in(record, &mut Vec::new())
}

/// [`recomputed_hash`], the frame made in `frame` (cleared first): a
/// reader that verifies many records reuses one buffer instead of
/// allocating one per record.
///
/// # Errors
/// As [`recomputed_hash`].
pub fn recomputed_hash_in(
    record: &crate::record::Record,
    frame: &mut Vec<u8>,
) -> Result<Hash, FrameError> {
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
    match record.jurisdiction {
        Some(_) => frame_into(FORMAT_VERSION, &body_v2(&fields), &fields, frame),
        None => frame_into(1, &body_v1(&fields), &fields, frame),
    }
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
    let mut frame = Vec::new();
    let hash = frame_into(version, body, fields, &mut frame)?;
    frame.extend_from_slice(&hash);
    Ok((frame, hash))
}

/// Writes the frame of `body` but its hash into `frame` (cleared first);
/// returns the hash.
fn frame_into<B: Serialize>(
    version: u8,
    body: &B,
    fields: &RecordFields<'_>,
    frame: &mut Vec<u8>,
) -> Result<Hash, FrameError> {
    let estimate = HEADER_LEN
        + TRAILER_LEN
        + 64
        + fields.tenant.len()
        + fields.stream.len()
        + fields.event_type.len()
        + fields.payload.len()
        + fields.metadata.len();
    frame.clear();
    frame.reserve(estimate);
    frame.push(version);
    frame.extend_from_slice(&[0; 4]);
    bincode::serde::encode_into_std_write(body, &mut *frame, codec())
        .map_err(|_| FrameError::BadLength(estimate as u64))?;
    let body_len = frame.len() - HEADER_LEN;
    let len = u32::try_from(body_len)
        .ok()
        .filter(|&l| l as usize <= MAX_BODY_LEN)
        .ok_or(FrameError::BadLength(body_len as u64))?;
    frame[1..HEADER_LEN].copy_from_slice(&len.to_le_bytes());
    Ok(blake3::hash(frame).into())
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

impl Record {
    /// A view of the record as [`decode`] gives one: what code that reads
    /// both owned records and frames takes.
    #[must_use]
    pub fn borrowed(&self) -> RecordRef<'_> {
        RecordRef {
            position: self.position,
            tenant: &self.tenant,
            stream: &self.stream,
            stream_version: self.stream_version,
            event_id: self.event_id,
            recorded_at_micros: self.recorded_at_micros,
            event_type: &self.event_type,
            payload: &self.payload,
            metadata: &self.metadata,
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

/// Decodes a frame and tells whether its stored hash is the hash of its
/// bytes: for readers that report a mismatch at its record rather than
/// fail the read (the audit's replay), hashing the stored bytes instead of
/// encoding the record again.
///
/// # Errors
/// A [`FrameError`] other than [`FrameError::HashMismatch`] when the frame
/// is malformed.
pub fn decode_checked(frame: &[u8]) -> Result<(RecordRef<'_>, bool), FrameError> {
    let p = split(frame)?;
    let matches = blake3::hash(p.hashed) == blake3::Hash::from(p.hash);
    Ok((decode_body(p.version, p.body, p.hash)?, matches))
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
mod tests;
