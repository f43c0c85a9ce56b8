//! What segment and snapshot objects share: their names (a number in 20
//! digits, then the kind's suffix) and their frame (a magic, the format
//! version and that number first, a blake3 hash of every byte before it
//! last), read through a [`Reader`] that never panics.

use crate::segment::SEGMENT_FORMAT;

/// The length of the trailing blake3 hash.
pub(crate) const HASH: usize = 32;

/// An object's name: its number in 20 digits, then `suffix`
/// ([`SUFFIX`](crate::segment::SUFFIX) for segments,
/// [`SNAP_SUFFIX`](crate::snapshot::SNAP_SUFFIX) for snapshots).
pub(crate) fn object_name(n: u64, suffix: &str) -> String {
    format!("{n:020}{suffix}")
}

/// The number in an [`object_name`], if `name` is one with `suffix`.
pub(crate) fn parse_name(name: &str, suffix: &str) -> Option<u64> {
    let digits = name.strip_suffix(suffix)?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// The body of a segment or snapshot object (`magic`, `header` bytes at
/// least) whose trailing hash matches, whose format this build reads, and
/// whose number (after magic and version) is `n`, the one its name gives:
/// a reader positioned after that number. Never panics.
pub(crate) fn open_frame<'a>(
    bytes: &'a [u8],
    magic: &[u8; 4],
    header: usize,
    n: u64,
) -> Result<Reader<'a>, &'static str> {
    if bytes.len() < header + HASH || u32::try_from(bytes.len()).is_err() {
        return Err("shorter than its header and hash, or over 4 GiB");
    }
    let (body, hash) = bytes.split_at(bytes.len() - HASH);
    if blake3::hash(body).as_bytes() != hash {
        return Err("its hash does not match its bytes");
    }
    if &body[..4] != magic {
        return Err("not a mailledger object of its kind");
    }
    if body[4] != SEGMENT_FORMAT {
        return Err("unknown format version");
    }
    let mut r = Reader { bytes: body, at: 5 };
    if r.u64() != Some(n) {
        return Err("its number differs from its name");
    }
    Ok(r)
}

/// Big-endian fields read one after another from a frame's body.
pub(crate) struct Reader<'a> {
    /// The body, without its hash.
    pub(crate) bytes: &'a [u8],
    /// Where the next field starts.
    pub(crate) at: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.at.checked_add(n)?;
        let out = self.bytes.get(self.at..end)?;
        self.at = end;
        Some(out)
    }
    pub(crate) fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }
    pub(crate) fn u32(&mut self) -> Option<u32> {
        self.take(4)?.try_into().ok().map(u32::from_be_bytes)
    }
    pub(crate) fn u64(&mut self) -> Option<u64> {
        self.take(8)?.try_into().ok().map(u64::from_be_bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::segment::SUFFIX;
    use crate::snapshot::SNAP_SUFFIX;

    #[test]
    fn segment_names_are_twenty_digits_and_nothing_else_parses() {
        assert_eq!(object_name(42, SUFFIX), "00000000000000000042.seg");
        assert_eq!(
            parse_name(&object_name(u64::MAX, SUFFIX), SUFFIX),
            Some(u64::MAX)
        );
        assert_eq!(
            parse_name(&object_name(7, SNAP_SUFFIX), SNAP_SUFFIX),
            Some(7)
        );
        assert_eq!(parse_name(&object_name(7, SNAP_SUFFIX), SUFFIX), None);
        for bad in [
            "42.seg",
            "0000000000000000004x.seg",
            "00000000000000000042",
            "00000000000000000042.seg.tmp",
        ] {
            assert_eq!(parse_name(bad, SUFFIX), None, "{bad}");
        }
    }
}
