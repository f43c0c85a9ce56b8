//! The snapshot: the in-memory index as the first `end` segments make it,
//! one object, `PREFIX/snapshots/{end:020}.snap`, so that an open reads
//! only the segments after it. A cache of what the segments say, never the
//! only copy of anything.
//!
//! # Snapshot layout (format 1)
//!
//! All integers are big-endian.
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 4 | magic `MLSN` |
//! | 4 | 1 | format version, 1 |
//! | 5 | 8 | `end`: the segments it covers, 0 to `end` − 1 (its name says the same) |
//! | 13 | 8 | number of entries `n` |
//! | 21 | … | `n` entries, each: kind (1: 0 a record's place, 1 event ids, 2 streams, 3 tenants), key length (4), key, then for a record's place its segment (8), offset (4) and length (4), else value length (4) and value |
//! | end − 32 | 32 | blake3 hash of every byte before it |
//!
//! The format is frozen by `tests/testdata/snapshot-v1.bin`.

use std::collections::BTreeMap;

use mailledger_core::Space;

use crate::frame::{HASH, open_frame};
use crate::index::Index;
use crate::segment::{Loc, SEGMENT_FORMAT, tag_space};

const SNAP_MAGIC: &[u8; 4] = b"MLSN";
/// The suffix of a snapshot's name.
pub(crate) const SNAP_SUFFIX: &str = ".snap";
const SNAP_HEADER: usize = 21;

/// Encodes `index` as the snapshot of the first `end` segments.
pub(crate) fn encode_snapshot(end: u64, index: &Index) -> Vec<u8> {
    let n = index.log.len() + index.spaces.iter().map(BTreeMap::len).sum::<usize>();
    let mut out = Vec::with_capacity(SNAP_HEADER + n * 48 + HASH);
    out.extend_from_slice(SNAP_MAGIC);
    out.push(SEGMENT_FORMAT);
    out.extend_from_slice(&end.to_be_bytes());
    out.extend_from_slice(&(n as u64).to_be_bytes());
    // Keys and values in an index came from segments, whose format bounds
    // their lengths by u32.
    let len = |n: usize| u32::try_from(n).unwrap_or(u32::MAX).to_be_bytes();
    for (k, loc) in &index.log {
        out.push(0);
        out.extend_from_slice(&len(k.len()));
        out.extend_from_slice(k);
        out.extend_from_slice(&loc.seq.to_be_bytes());
        out.extend_from_slice(&loc.offset.to_be_bytes());
        out.extend_from_slice(&loc.len.to_be_bytes());
    }
    for (tag, map) in (1u8..).zip(&index.spaces) {
        for (k, v) in map {
            out.push(tag);
            out.extend_from_slice(&len(k.len()));
            out.extend_from_slice(k);
            out.extend_from_slice(&len(v.len()));
            out.extend_from_slice(v);
        }
    }
    let hash = blake3::hash(&out);
    out.extend_from_slice(hash.as_bytes());
    out
}

/// Decodes the snapshot of the first `end` segments; never panics.
pub(crate) fn decode_snapshot(end: u64, bytes: &[u8]) -> Result<Index, &'static str> {
    let mut r = open_frame(bytes, SNAP_MAGIC, SNAP_HEADER, end)?;
    let body = r.bytes;
    let n = r.u64().ok_or("truncated header")?;
    if n > ((body.len() - SNAP_HEADER) / 9) as u64 {
        return Err("it claims more entries than its bytes hold");
    }
    let mut index = Index::default();
    for _ in 0..n {
        let tag = r.u8().ok_or("truncated entry")?;
        let klen = r.u32().ok_or("truncated entry")? as usize;
        let key = r.take(klen).ok_or("truncated key")?.to_vec();
        if tag == 0 {
            let (seq, offset, len) = (r.u64(), r.u32(), r.u32());
            let (Some(seq), Some(offset), Some(len)) = (seq, offset, len) else {
                return Err("truncated record place");
            };
            if seq >= end {
                return Err("a record lies in a segment it does not cover");
            }
            index.log.insert(key, Loc { seq, offset, len });
        } else {
            let space = tag_space(tag)
                .filter(|s| *s != Space::Log)
                .ok_or("an entry of no known kind")?;
            let vlen = r.u32().ok_or("truncated entry")? as usize;
            let value = r.take(vlen).ok_or("truncated value")?.to_vec();
            index.space_mut(space).insert(key, value);
        }
    }
    if r.at != body.len() {
        return Err("bytes after its last entry");
    }
    Ok(index)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::segment::tests::puts;
    use crate::segment::{decode, encode};

    #[test]
    fn a_snapshot_reads_back_its_index_and_refuses_every_flipped_byte_and_truncation() {
        let mut index = Index::default();
        let (bytes, locs) = encode(0, &puts()).unwrap();
        for (put, loc) in decode(0, &bytes).unwrap().into_iter().zip(locs) {
            let (at, len) = (put.offset as usize, put.len as usize);
            index.apply(put.space, put.key, loc, || bytes[at..at + len].to_vec());
        }
        let snap = encode_snapshot(1, &index);
        let back = decode_snapshot(1, &snap).unwrap();
        assert_eq!(back.log, index.log);
        assert_eq!(back.spaces, index.spaces);
        assert!(decode_snapshot(2, &snap).is_err(), "another end");
        for i in 0..snap.len() {
            let mut b = snap.clone();
            b[i] ^= 0x01;
            assert!(decode_snapshot(1, &b).is_err(), "flip at {i}");
            assert!(decode_snapshot(1, &snap[..i]).is_err(), "truncated to {i}");
        }
    }
}
