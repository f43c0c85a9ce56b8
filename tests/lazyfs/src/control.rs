//! The control file, `/.lazyfs-control` under the mount: writing `cut`,
//! `cut clean` or `cut torn SEED` cuts; reading it says `live`, `cut` or
//! `unmounted`. Anything else written to it is refused with EINVAL.

use std::time::SystemTime;

use fuser::{Errno, FileAttr};

use crate::durable::CutMode;
use crate::fs::file_attr;
use crate::state::{Attr, CONTROL, NodeType, Phase, Shared, lock};

/// A command written to the control file: `cut`, `cut clean` or
/// `cut torn SEED` (decimal), with any surrounding white space.
pub(crate) fn parse(bytes: &[u8]) -> Option<CutMode> {
    let text = std::str::from_utf8(bytes).ok()?;
    let words: Vec<&str> = text.split_ascii_whitespace().collect();
    match words.as_slice() {
        ["cut"] | ["cut", "clean"] => Some(CutMode::Clean),
        ["cut", "torn", seed] => Some(CutMode::Torn {
            seed: seed.parse().ok()?,
        }),
        _ => None,
    }
}

pub(crate) fn attr() -> FileAttr {
    let now = SystemTime::now();
    file_attr(&Attr {
        ino: CONTROL,
        kind: NodeType::File,
        size: 0,
        perm: 0o600,
        nlink: 1,
        uid: 0,
        gid: 0,
        atime: now,
        mtime: now,
        ctime: now,
    })
}

pub(crate) fn read(shared: &Shared, offset: u64) -> Vec<u8> {
    let status: &[u8] = match lock(shared).phase {
        Phase::Live => b"live\n",
        Phase::Cut => b"cut\n",
        Phase::Unmounted => b"unmounted\n",
    };
    let from = usize::try_from(offset).map_or(status.len(), |o| o.min(status.len()));
    status[from..].to_vec()
}

/// Carries out one command (a whole write); after a cut, EIO.
pub(crate) fn write(shared: &Shared, data: &[u8]) -> Result<u32, Errno> {
    let mode = parse(data).ok_or(Errno::EINVAL)?;
    let mut state = lock(shared);
    if state.phase != Phase::Live {
        return Err(Errno::EIO);
    }
    state.cut(mode).map_err(|_| Errno::EIO)?;
    Ok(u32::try_from(data.len()).unwrap_or(u32::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_commands_parse_and_bad_ones_are_refused() {
        assert_eq!(parse(b"cut\n"), Some(CutMode::Clean));
        assert_eq!(parse(b"  cut clean "), Some(CutMode::Clean));
        assert_eq!(parse(b"cut torn 42\n"), Some(CutMode::Torn { seed: 42 }));
        for bad in [
            &b""[..],
            b"cut torn",
            b"cut torn -1",
            b"cut dirty",
            b"\xff\xfe",
            b"CUT",
        ] {
            assert_eq!(parse(bad), None, "{bad:?}");
        }
    }
}
