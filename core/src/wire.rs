//! Reading values as bincode 2.0.1's standard configuration writes them
//! (little-endian; variable-length integers: a value below 251 is one byte,
//! otherwise a marker byte 251/252/253 followed by a u16/u32/u64; signed
//! integers zig-zag first; strings, byte strings and sequences are a varint
//! length and their contents; an `Option` is a byte 0 or 1 and the value; a
//! `bool` is a byte 0 or 1; an enum is its variant index as a varint u32 and
//! the variant's fields; a fixed array is its bytes).
//!
//! By hand rather than through bincode's serde decoder, which visits each
//! byte of a fixed array (a pseudonym, a nonce, a hash) as an element of its
//! own and was most of the cost of reading the log. The frame codec and the
//! email payload decode with it; their property tests hold each decoder to
//! bincode's, byte for byte.

/// Why bytes could not be read (no byte of them is kept).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WireError {
    /// Fewer bytes than a value needs.
    End,
    /// A length above what the reader allows.
    Limit,
    /// A string that is not UTF-8.
    Utf8,
    /// A marker, tag or variant index that no value has.
    Malformed,
}

impl WireError {
    /// The reason in words.
    pub(crate) fn reason(self) -> &'static str {
        match self {
            Self::End => "unexpected end",
            Self::Limit => "length limit exceeded",
            Self::Utf8 => "invalid UTF-8",
            Self::Malformed => "malformed body",
        }
    }
}

type Result<T> = std::result::Result<T, WireError>;

/// The unread rest of some bytes, and the longest length it accepts.
pub(crate) struct Reader<'a> {
    rest: &'a [u8],
    max_len: usize,
}

impl<'a> Reader<'a> {
    /// A reader of `bytes` that refuses lengths above `max_len`.
    pub(crate) fn new(bytes: &'a [u8], max_len: usize) -> Self {
        Self {
            rest: bytes,
            max_len,
        }
    }

    /// How many bytes are left unread.
    pub(crate) fn remaining(&self) -> usize {
        self.rest.len()
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        if n > self.rest.len() {
            return Err(WireError::End);
        }
        let (taken, rest) = self.rest.split_at(n);
        self.rest = rest;
        Ok(taken)
    }

    /// A fixed array: its bytes.
    pub(crate) fn array<const N: usize>(&mut self) -> Result<[u8; N]> {
        let mut out = [0; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    /// A byte, as such.
    fn byte(&mut self) -> Result<u8> {
        let [b] = self.array()?;
        Ok(b)
    }

    /// A varint whose widest form is `widest` (251: u16, 252: u32, 253:
    /// u64). A longer form of a small value is accepted, as bincode
    /// accepts it; a form wider than the type is not.
    fn varint(&mut self, widest: u8) -> Result<u64> {
        let first = self.byte()?;
        if first > widest {
            return Err(WireError::Malformed);
        }
        Ok(match first {
            0..=250 => u64::from(first),
            251 => u64::from(u16::from_le_bytes(self.array()?)),
            252 => u64::from(u32::from_le_bytes(self.array()?)),
            _ => u64::from_le_bytes(self.array()?),
        })
    }

    /// A varint u64.
    pub(crate) fn u64(&mut self) -> Result<u64> {
        self.varint(253)
    }

    /// A varint u32.
    pub(crate) fn u32(&mut self) -> Result<u32> {
        u32::try_from(self.varint(252)?).map_err(|_| WireError::Malformed)
    }

    /// A varint u16.
    pub(crate) fn u16(&mut self) -> Result<u16> {
        u16::try_from(self.varint(251)?).map_err(|_| WireError::Malformed)
    }

    /// A zig-zag varint i64.
    pub(crate) fn i64(&mut self) -> Result<i64> {
        let n = self.u64()?;
        // n >> 1 is below 2^63, so it fits; odd n are the negatives.
        let half = i64::from_le_bytes((n >> 1).to_le_bytes());
        Ok(if n & 1 == 0 { half } else { !half })
    }

    /// A bool: the byte 0 or 1.
    pub(crate) fn bool(&mut self) -> Result<bool> {
        match self.byte()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(WireError::Malformed),
        }
    }

    /// An `Option`'s tag: whether a value follows.
    pub(crate) fn some(&mut self) -> Result<bool> {
        self.bool()
    }

    /// A length: a varint within the limit.
    pub(crate) fn len(&mut self) -> Result<usize> {
        match usize::try_from(self.u64()?) {
            Ok(len) if len <= self.max_len => Ok(len),
            _ => Err(WireError::Limit),
        }
    }

    /// A byte string.
    pub(crate) fn bytes(&mut self) -> Result<&'a [u8]> {
        let len = self.len()?;
        self.take(len)
    }

    /// A string.
    pub(crate) fn str(&mut self) -> Result<&'a str> {
        std::str::from_utf8(self.bytes()?).map_err(|_| WireError::Utf8)
    }

    /// An owned string.
    pub(crate) fn string(&mut self) -> Result<String> {
        self.str().map(str::to_owned)
    }

    /// An `Option` of what `read` reads.
    pub(crate) fn opt<T>(
        &mut self,
        read: impl FnOnce(&mut Self) -> Result<T>,
    ) -> Result<Option<T>> {
        if self.some()? {
            read(self).map(Some)
        } else {
            Ok(None)
        }
    }

    /// An optional owned string.
    pub(crate) fn opt_string(&mut self) -> Result<Option<String>> {
        self.opt(Self::string)
    }
}
