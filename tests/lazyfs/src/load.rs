//! Mounting: the lower directory's contents, taken as durable.

use std::collections::HashMap;
use std::fs::{self, Metadata};
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::state::{
    CONTROL_NAME, DirNode, FileNode, Ino, Kind, LIMBO_NAME, Meta, ROOT, State, perm_bits,
};

impl State {
    /// The state of a mount of `lower`: all of it durable. A limbo left by
    /// a test process that died is what a crash leaves of it: nothing.
    pub(crate) fn load(lower: &Path) -> io::Result<Self> {
        let lower = lower.canonicalize()?;
        match fs::remove_dir_all(lower.join(LIMBO_NAME)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        let mut state = Self::empty(lower.clone(), meta_of(&fs::metadata(&lower)?));
        state.load_dir(ROOT, &lower, &mut HashMap::new())?;
        Ok(state)
    }

    fn load_dir(
        &mut self,
        dir: Ino,
        path: &Path,
        seen: &mut HashMap<(u64, u64), Ino>,
    ) -> io::Result<()> {
        for entry in fs::read_dir(path)? {
            let entry = entry?;
            let name = entry.file_name();
            if dir == ROOT && (name == CONTROL_NAME || name == LIMBO_NAME) {
                continue;
            }
            let path = entry.path();
            let m = fs::symlink_metadata(&path)?;
            let ft = m.file_type();
            let ino = if ft.is_dir() {
                let ino = self.add(Kind::Dir(DirNode {
                    parent: dir,
                    ..DirNode::default()
                }));
                self.load_dir(ino, &path, seen)?;
                ino
            } else if ft.is_file() {
                if let Some(&ino) = seen.get(&(m.dev(), m.ino())) {
                    ino
                } else {
                    let ino = self.add(Kind::File(FileNode {
                        size: m.len(),
                        durable_size: m.len(),
                        ..FileNode::default()
                    }));
                    seen.insert((m.dev(), m.ino()), ino);
                    ino
                }
            } else if ft.is_symlink() {
                self.add(Kind::Symlink(fs::read_link(&path)?))
            } else {
                return Err(io::Error::new(
                    io::ErrorKind::Unsupported,
                    format!("{}: only files, directories and symlinks", path.display()),
                ));
            };
            let node = self.nodes.get_mut(&ino).ok_or(io::ErrorKind::NotFound)?;
            node.meta = meta_of(&m);
            node.links += 1;
            node.durable_links.push((dir, name.clone()));
            if let Ok(d) = self.dir_mut(dir) {
                d.entries.insert(name.clone(), ino);
                d.durable.insert(name, ino);
            }
        }
        Ok(())
    }
}

fn time_of(secs: i64, nsecs: i64) -> SystemTime {
    let nanos = u32::try_from(nsecs).unwrap_or(0);
    match u64::try_from(secs) {
        Ok(s) => UNIX_EPOCH + Duration::new(s, nanos),
        Err(_) => UNIX_EPOCH - Duration::from_secs(secs.unsigned_abs()) + Duration::new(0, nanos),
    }
}

fn meta_of(m: &Metadata) -> Meta {
    Meta {
        perm: perm_bits(m.mode()),
        uid: m.uid(),
        gid: m.gid(),
        atime: time_of(m.atime(), m.atime_nsec()),
        mtime: time_of(m.mtime(), m.mtime_nsec()),
        ctime: time_of(m.ctime(), m.ctime_nsec()),
    }
}
