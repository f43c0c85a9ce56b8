//! The segment: one committed batch as one object,
//! `PREFIX/segments/{seq:020}.seg`, and where each record lies in it.
//!
//! # Segment layout (format 1)
//!
//! All integers are big-endian.
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 4 | magic `MLSG` |
//! | 4 | 1 | format version, 1 |
//! | 5 | 8 | sequence number (the object's name says the same) |
//! | 13 | 4 | number of puts `n` |
//! | 17 | … | `n` puts: space (1: 0 log, 1 event ids, 2 streams, 3 tenants), key length (4), key, value length (4), value |
//! | end − 32 | 32 | blake3 hash of every byte before it |
//!
//! The puts are the batch's, in its order (a later put to a key wins).
//! Opening checks that the sequence numbers run from 0 without a gap, and
//! each segment it reads (those after the snapshot it loaded, all of them
//! without one) for its magic, version, sequence number, lengths and hash;
//! a segment that fails any check stops the open with an error naming it.
//! A segment before the snapshot is checked the same way when it is read
//! (a record read, a scan, `verify`).
//! The format is frozen by `tests/testdata/segment-v1.bin`.

use bytes::Bytes;
use mailledger_core::Space;

use crate::SegmentError;
use crate::frame::{HASH, open_frame};

const MAGIC: &[u8; 4] = b"MLSG";
/// The segment format this build writes (and the only one it reads).
pub const SEGMENT_FORMAT: u8 = 1;
const HEADER: usize = 17;
/// The suffix of a segment's name.
pub(crate) const SUFFIX: &str = ".seg";

/// The tag a put of `space` carries (a snapshot's entries use the same).
pub(crate) fn space_tag(space: Space) -> u8 {
    match space {
        Space::Log => 0,
        Space::EventIds => 1,
        Space::Streams => 2,
        Space::Tenants => 3,
    }
}

/// The space a [`space_tag`] names, if any.
pub(crate) fn tag_space(tag: u8) -> Option<Space> {
    Some(match tag {
        0 => Space::Log,
        1 => Space::EventIds,
        2 => Space::Streams,
        3 => Space::Tenants,
        _ => return None,
    })
}

/// Where a record of the log is: its segment and its value's bytes there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Loc {
    pub(crate) seq: u64,
    pub(crate) offset: u32,
    pub(crate) len: u32,
}

/// A record's bytes in its segment.
pub(crate) fn slice(segment: &Bytes, loc: Loc) -> Result<&[u8], SegmentError> {
    let start = loc.offset as usize;
    segment
        .get(start..start + loc.len as usize)
        .ok_or(SegmentError::Corrupt {
            seq: loc.seq,
            reason: "a value lies outside its segment",
        })
}

/// A put as a segment holds it.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct SegmentPut {
    pub(crate) space: Space,
    pub(crate) key: Vec<u8>,
    /// The value's place in the segment.
    pub(crate) offset: u32,
    pub(crate) len: u32,
}

/// Encodes a batch as segment `seq`; returns the bytes and where each
/// value lies in them.
pub(crate) fn encode(
    seq: u64,
    puts: &[(Space, Vec<u8>, Vec<u8>)],
) -> Result<(Vec<u8>, Vec<Loc>), SegmentError> {
    let too_large = || SegmentError::TooLarge(puts.len());
    let size: usize = puts.iter().map(|(_, k, v)| 9 + k.len() + v.len()).sum();
    let mut out = Vec::with_capacity(HEADER + size + HASH);
    out.extend_from_slice(MAGIC);
    out.push(SEGMENT_FORMAT);
    out.extend_from_slice(&seq.to_be_bytes());
    out.extend_from_slice(
        &u32::try_from(puts.len())
            .map_err(|_| too_large())?
            .to_be_bytes(),
    );
    let mut locs = Vec::with_capacity(puts.len());
    for (space, k, v) in puts {
        out.push(space_tag(*space));
        out.extend_from_slice(
            &u32::try_from(k.len())
                .map_err(|_| too_large())?
                .to_be_bytes(),
        );
        out.extend_from_slice(k);
        let len = u32::try_from(v.len()).map_err(|_| too_large())?;
        out.extend_from_slice(&len.to_be_bytes());
        let offset = u32::try_from(out.len()).map_err(|_| too_large())?;
        out.extend_from_slice(v);
        locs.push(Loc { seq, offset, len });
    }
    u32::try_from(out.len() + HASH).map_err(|_| too_large())?;
    let hash = blake3::hash(&out);
    out.extend_from_slice(hash.as_bytes());
    Ok((out, locs))
}

/// Checks that `bytes` are a whole segment `seq` of this format, without
/// decoding its puts (what a read of a record needs).
pub(crate) fn check_segment(seq: u64, bytes: &[u8]) -> Result<(), SegmentError> {
    open_frame(bytes, MAGIC, HEADER, seq)
        .map(|_| ())
        .map_err(|reason| SegmentError::Corrupt { seq, reason })
}

/// Decodes segment `seq`, checking everything it holds; never panics.
pub(crate) fn decode(seq: u64, bytes: &[u8]) -> Result<Vec<SegmentPut>, SegmentError> {
    let corrupt = |reason| SegmentError::Corrupt { seq, reason };
    let mut r = open_frame(bytes, MAGIC, HEADER, seq).map_err(corrupt)?;
    let body = r.bytes;
    let n = r.u32().ok_or_else(|| corrupt("truncated header"))? as usize;
    // Each put takes at least 9 bytes: no allocation beyond what is there.
    if n > (body.len() - HEADER) / 9 {
        return Err(corrupt("it claims more puts than its bytes hold"));
    }
    let mut puts = Vec::with_capacity(n);
    for _ in 0..n {
        let space = r
            .u8()
            .and_then(tag_space)
            .ok_or_else(|| corrupt("a put names no known space"))?;
        let klen = r.u32().ok_or_else(|| corrupt("truncated put"))? as usize;
        let key = r
            .take(klen)
            .ok_or_else(|| corrupt("truncated key"))?
            .to_vec();
        let len = r.u32().ok_or_else(|| corrupt("truncated put"))?;
        let offset = u32::try_from(r.at).map_err(|_| corrupt("over 4 GiB"))?;
        r.take(len as usize)
            .ok_or_else(|| corrupt("truncated value"))?;
        puts.push(SegmentPut {
            space,
            key,
            offset,
            len,
        });
    }
    if r.at != body.len() {
        return Err(corrupt("bytes after its last put"));
    }
    Ok(puts)
}

#[cfg(test)]
pub(crate) mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// A batch with a put to every space (the snapshot's tests use it too).
    pub(crate) fn puts() -> Vec<(Space, Vec<u8>, Vec<u8>)> {
        vec![
            (Space::Log, 7u64.to_be_bytes().to_vec(), b"frame".to_vec()),
            (
                Space::EventIds,
                b"acme\0id".to_vec(),
                7u64.to_be_bytes().to_vec(),
            ),
            (Space::Streams, b"acme\0s\0v".to_vec(), vec![]),
            (Space::Tenants, b"acme".to_vec(), b"head".to_vec()),
        ]
    }

    #[test]
    fn a_segment_decodes_to_the_puts_it_was_encoded_from() {
        let puts = puts();
        let (bytes, locs) = encode(3, &puts).unwrap();
        let decoded = decode(3, &bytes).unwrap();
        assert_eq!(decoded.len(), puts.len());
        for ((d, (space, k, v)), loc) in decoded.iter().zip(&puts).zip(&locs) {
            assert_eq!((d.space, &d.key), (*space, k));
            assert_eq!((d.offset, d.len), (loc.offset, loc.len));
            let at = d.offset as usize;
            assert_eq!(&bytes[at..at + d.len as usize], v.as_slice());
        }
    }

    #[test]
    fn every_flipped_byte_and_every_truncation_is_refused_without_a_panic() {
        let (bytes, _) = encode(3, &puts()).unwrap();
        for i in 0..bytes.len() {
            let mut b = bytes.clone();
            b[i] ^= 0x01;
            assert!(
                matches!(decode(3, &b), Err(SegmentError::Corrupt { seq: 3, .. })),
                "flip at {i}"
            );
            assert!(decode(3, &bytes[..i]).is_err(), "truncated to {i}");
        }
        let err = decode(4, &bytes).unwrap_err().to_string();
        assert!(err.contains("its number differs from its name"), "{err}");
    }
}
