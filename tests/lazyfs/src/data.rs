//! A file's unsynced data: its writes and size changes since its last
//! fsync, in the order they came, over the durable bytes beneath.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

/// The unit a torn cut keeps or loses: a write is kept whole or cut after
/// a number of these bytes, counted from its start, as a device that wrote
/// some of its sectors and not the rest.
pub(crate) const SECTOR: usize = 512;

/// One change to a file's data.
#[derive(Debug)]
enum DataOp {
    Write { offset: u64, bytes: Vec<u8> },
    SetLen(u64),
}

/// The changes not yet forwarded, oldest first.
#[derive(Debug, Default)]
pub(crate) struct Pending {
    ops: Vec<DataOp>,
}

impl Pending {
    pub(crate) fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    pub(crate) fn clear(&mut self) {
        self.ops = Vec::new();
    }

    /// Records a write; one that continues the last write extends it.
    pub(crate) fn write(&mut self, offset: u64, data: &[u8]) {
        if let Some(DataOp::Write { offset: o, bytes }) = self.ops.last_mut()
            && o.checked_add(bytes.len() as u64) == Some(offset)
        {
            bytes.extend_from_slice(data);
            return;
        }
        self.ops.push(DataOp::Write {
            offset,
            bytes: data.to_vec(),
        });
    }

    /// Records a size change; a shrink right after another size change
    /// replaces it (a growth cannot: the bytes between must read as zero).
    pub(crate) fn set_len(&mut self, len: u64) {
        if let Some(DataOp::SetLen(last)) = self.ops.last_mut()
            && len <= *last
        {
            *last = len;
            return;
        }
        self.ops.push(DataOp::SetLen(len));
    }

    /// Lays the pending changes over `buf`, which holds the durable bytes
    /// from `at` on (zero past the durable size `base`), and returns the
    /// size the file then has.
    pub(crate) fn overlay(&self, buf: &mut [u8], at: u64, base: u64) -> u64 {
        let end = at.saturating_add(buf.len() as u64);
        let mut size = base;
        for op in &self.ops {
            match op {
                DataOp::Write { offset, bytes } => {
                    let w_end = offset.saturating_add(bytes.len() as u64);
                    let from = (*offset).max(at);
                    let to = w_end.min(end);
                    if from < to {
                        let dst = usize_of(from - at);
                        let src = usize_of(from - offset);
                        let n = usize_of(to - from);
                        buf[dst..dst + n].copy_from_slice(&bytes[src..src + n]);
                    }
                    size = size.max(w_end);
                }
                DataOp::SetLen(len) => {
                    // Bytes past a shrink read as zero if the file grows again.
                    if *len < size && *len < end {
                        let from = usize_of(len.saturating_sub(at));
                        buf[from..].fill(0);
                    }
                    size = *len;
                }
            }
        }
        size
    }

    /// Forwards every pending change to `file`, in order, and forgets them.
    pub(crate) fn forward(&mut self, file: &File) -> io::Result<()> {
        for op in std::mem::take(&mut self.ops) {
            apply(file, &op)?;
        }
        Ok(())
    }

    /// Forwards a prefix of the pending changes, its length drawn from
    /// `rng`: every whole change or sector of a write is as likely a place
    /// to stop as any other, none and all included. Returns the bytes kept.
    pub(crate) fn forward_torn(&mut self, file: &File, rng: &mut Rng) -> io::Result<u64> {
        let units = |op: &DataOp| match op {
            DataOp::Write { bytes, .. } => bytes.len().div_ceil(SECTOR).max(1) as u64,
            DataOp::SetLen(_) => 1,
        };
        let total: u64 = self.ops.iter().map(units).sum();
        let mut left = rng.below(total + 1);
        let mut kept = 0;
        for op in std::mem::take(&mut self.ops) {
            if left == 0 {
                break;
            }
            let n = units(&op);
            if n <= left {
                if let DataOp::Write { bytes, .. } = &op {
                    kept += bytes.len() as u64;
                }
                apply(file, &op)?;
                left -= n;
                continue;
            }
            if let DataOp::Write { offset, bytes } = &op {
                let keep = usize_of(left).saturating_mul(SECTOR).min(bytes.len());
                file.write_all_at(&bytes[..keep], *offset)?;
                kept += keep as u64;
            }
            break;
        }
        Ok(kept)
    }
}

fn apply(file: &File, op: &DataOp) -> io::Result<()> {
    match op {
        DataOp::Write { offset, bytes } => file.write_all_at(bytes, *offset),
        DataOp::SetLen(len) => file.set_len(*len),
    }
}

/// A `u64` that indexes memory: offsets within one buffer always fit.
fn usize_of(n: u64) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX)
}

/// Reads the durable bytes of `file` from `at` into `buf`, up to `size`;
/// the rest of `buf` is zero.
pub(crate) fn read_base(file: Option<&File>, size: u64, buf: &mut [u8], at: u64) -> io::Result<()> {
    buf.fill(0);
    let Some(file) = file else { return Ok(()) };
    let want = usize_of(size.saturating_sub(at)).min(buf.len());
    let mut done = 0;
    while done < want {
        match file.read_at(&mut buf[done..want], at + done as u64) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// The torn cut's random numbers (splitmix64): the same seed and the same
/// writes tear the same way.
#[derive(Debug)]
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Self {
        Self(seed)
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number below `n` (`n` > 0).
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(p: &Pending, base: &[u8], at: u64, len: usize) -> Vec<u8> {
        let mut buf = vec![0; len];
        let n = usize_of((base.len() as u64).saturating_sub(at)).min(len);
        buf[..n].copy_from_slice(&base[usize_of(at)..usize_of(at) + n]);
        let size = p.overlay(&mut buf, at, base.len() as u64);
        buf.truncate(usize_of(size.saturating_sub(at)).min(len));
        buf
    }

    #[test]
    fn writes_and_size_changes_overlay_in_order() {
        let mut p = Pending::default();
        p.write(2, b"xy");
        p.write(4, b"z");
        assert_eq!(p.ops.len(), 1, "an append extends the last write");
        assert_eq!(view(&p, b"abcdefgh", 0, 16), b"abxyzfgh");
        p.set_len(3);
        p.set_len(6);
        assert_eq!(view(&p, b"abcdefgh", 0, 16), b"abx\0\0\0");
        p.write(10, b"q");
        assert_eq!(view(&p, b"abcdefgh", 4, 16), b"\0\0\0\0\0\0q");
    }

    #[test]
    fn a_growth_after_a_shrink_reads_as_zeros() {
        let mut p = Pending::default();
        p.set_len(2);
        p.set_len(4);
        assert_eq!(view(&p, b"abcd", 0, 8), b"ab\0\0");
    }
}
