//! The file system as programs see it (the page cache): every inode, its
//! names and its data with the unsynced changes laid over the durable
//! bytes; and, beside each, what is durable (kept by `durable.rs`, read
//! in by `load.rs`).

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::SystemTime;

use crate::data::{self, Pending};

pub(crate) type Ino = u64;
pub(crate) const ROOT: Ino = 1;
pub(crate) const CONTROL: Ino = 2;
/// The control file's name, in the mount's root.
pub const CONTROL_NAME: &str = ".lazyfs-control";
/// Where the lower directory keeps durable inodes that no durable name
/// reaches (fsynced before their directory was); emptied by every cut and
/// unmount, and hidden from the mount.
pub const LIMBO_NAME: &str = ".lazyfs-limbo";

/// An errno for the kernel.
pub(crate) type Errno = i32;
pub(crate) type OpResult<T> = Result<T, Errno>;

/// What the control file, the mount and the handle see of the whole.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Phase {
    Live,
    Cut,
    Unmounted,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum NodeType {
    File,
    Dir,
    Symlink,
}

/// The attributes a `stat` shows.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Attr {
    pub ino: Ino,
    pub kind: NodeType,
    pub size: u64,
    pub perm: u16,
    pub nlink: u32,
    pub uid: u32,
    pub gid: u32,
    pub atime: SystemTime,
    pub mtime: SystemTime,
    pub ctime: SystemTime,
}

#[derive(Debug)]
pub(crate) struct Meta {
    pub perm: u16,
    pub uid: u32,
    pub gid: u32,
    pub atime: SystemTime,
    pub mtime: SystemTime,
    pub ctime: SystemTime,
}

#[derive(Debug, Default)]
pub(crate) struct FileNode {
    /// The size programs see.
    pub size: u64,
    pub pending: Pending,
    /// The size of the durable bytes (0 when there are none).
    pub durable_size: u64,
    /// The durable bytes, open while the file is.
    pub handle: Option<File>,
}

#[derive(Debug, Default)]
pub(crate) struct DirNode {
    pub entries: BTreeMap<OsString, Ino>,
    pub durable: BTreeMap<OsString, Ino>,
    pub parent: Ino,
}

#[derive(Debug)]
pub(crate) enum Kind {
    File(FileNode),
    Dir(DirNode),
    Symlink(PathBuf),
}

#[derive(Debug)]
pub(crate) struct Node {
    pub kind: Kind,
    pub meta: Meta,
    /// Names that programs see (0 or 1 for a directory).
    pub links: u32,
    /// Open handles.
    pub open: u32,
    /// Names in the lower directory: `(directory, name)`.
    pub durable_links: Vec<(Ino, OsString)>,
    /// Whether its durable copy waits in the limbo directory.
    pub limbo: bool,
}

impl Node {
    pub(crate) fn alive(&self) -> bool {
        self.links > 0 || (matches!(self.kind, Kind::File(_)) && self.open > 0)
    }
}

/// Changes a `setattr` asks for.
#[derive(Debug, Default)]
pub(crate) struct SetAttr {
    pub mode: Option<u32>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub size: Option<u64>,
    pub atime: Option<SystemTime>,
    pub mtime: Option<SystemTime>,
}

/// The state, shared by the FUSE thread and the test's handle.
pub(crate) type Shared = Arc<Mutex<State>>;

/// Locks the state; a panic elsewhere while it was held leaves it usable.
pub(crate) fn lock(shared: &Shared) -> MutexGuard<'_, State> {
    shared.lock().unwrap_or_else(PoisonError::into_inner)
}

#[derive(Debug)]
pub(crate) struct State {
    pub lower: PathBuf,
    pub nodes: BTreeMap<Ino, Node>,
    next_ino: Ino,
    pub phase: Phase,
}

impl State {
    /// A state of nothing but the root directory of `lower`.
    pub(crate) fn empty(lower: PathBuf, root: Meta) -> Self {
        let root = Node {
            kind: Kind::Dir(DirNode {
                parent: ROOT,
                ..DirNode::default()
            }),
            meta: root,
            links: 1,
            open: 0,
            durable_links: Vec::new(),
            limbo: false,
        };
        Self {
            lower,
            nodes: BTreeMap::from([(ROOT, root)]),
            next_ino: CONTROL + 1,
            phase: Phase::Live,
        }
    }

    pub(crate) fn add(&mut self, kind: Kind) -> Ino {
        let ino = self.next_ino;
        self.next_ino += 1;
        let now = SystemTime::now();
        let meta = Meta {
            perm: 0o644,
            uid: 0,
            gid: 0,
            atime: now,
            mtime: now,
            ctime: now,
        };
        self.nodes.insert(
            ino,
            Node {
                kind,
                meta,
                links: 0,
                open: 0,
                durable_links: Vec::new(),
                limbo: false,
            },
        );
        ino
    }

    pub(crate) fn node(&self, ino: Ino) -> OpResult<&Node> {
        self.nodes.get(&ino).ok_or(libc::ENOENT)
    }

    pub(crate) fn node_mut(&mut self, ino: Ino) -> OpResult<&mut Node> {
        self.nodes.get_mut(&ino).ok_or(libc::ENOENT)
    }

    pub(crate) fn dir(&self, ino: Ino) -> OpResult<&DirNode> {
        match &self.node(ino)?.kind {
            Kind::Dir(d) => Ok(d),
            _ => Err(libc::ENOTDIR),
        }
    }

    pub(crate) fn dir_mut(&mut self, ino: Ino) -> OpResult<&mut DirNode> {
        match &mut self.node_mut(ino)?.kind {
            Kind::Dir(d) => Ok(d),
            _ => Err(libc::ENOTDIR),
        }
    }

    pub(crate) fn file_mut(&mut self, ino: Ino) -> OpResult<&mut FileNode> {
        match &mut self.node_mut(ino)?.kind {
            Kind::File(f) => Ok(f),
            Kind::Dir(_) => Err(libc::EISDIR),
            Kind::Symlink(_) => Err(libc::EINVAL),
        }
    }

    pub(crate) fn attr(&self, ino: Ino) -> OpResult<Attr> {
        let node = self.node(ino)?;
        let (kind, size, nlink) = match &node.kind {
            Kind::File(f) => (NodeType::File, f.size, node.links),
            Kind::Dir(d) => {
                let subdirs = d
                    .entries
                    .values()
                    .filter(|c| matches!(self.nodes.get(c).map(|n| &n.kind), Some(Kind::Dir(_))))
                    .count();
                let subdirs = u32::try_from(subdirs).unwrap_or(u32::MAX);
                (
                    NodeType::Dir,
                    4096,
                    (node.links + 1).saturating_add(subdirs),
                )
            }
            Kind::Symlink(t) => (NodeType::Symlink, t.as_os_str().len() as u64, node.links),
        };
        let m = &node.meta;
        Ok(Attr {
            ino,
            kind,
            size,
            perm: m.perm,
            nlink,
            uid: m.uid,
            gid: m.gid,
            atime: m.atime,
            mtime: m.mtime,
            ctime: m.ctime,
        })
    }

    pub(crate) fn lookup(&self, parent: Ino, name: &OsStr) -> OpResult<Attr> {
        let ino = *self.dir(parent)?.entries.get(name).ok_or(libc::ENOENT)?;
        self.attr(ino)
    }

    fn check_new_name(&self, parent: Ino, name: &OsStr) -> OpResult<()> {
        if name.is_empty() || name.as_bytes().contains(&b'/') || name == "." || name == ".." {
            return Err(libc::EINVAL);
        }
        if name.len() > 255 {
            return Err(libc::ENAMETOOLONG);
        }
        if parent == ROOT && name == LIMBO_NAME {
            return Err(libc::EPERM);
        }
        if (parent == ROOT && name == CONTROL_NAME) || self.dir(parent)?.entries.contains_key(name)
        {
            return Err(libc::EEXIST);
        }
        Ok(())
    }

    /// Gives `ino` the name `name` in `parent`, which must be free.
    fn insert(&mut self, parent: Ino, name: &OsStr, ino: Ino) -> OpResult<()> {
        let now = SystemTime::now();
        let d = self.dir_mut(parent)?;
        d.entries.insert(name.to_owned(), ino);
        let p = self.node_mut(parent)?;
        p.meta.mtime = now;
        p.meta.ctime = now;
        let node = self.node_mut(ino)?;
        node.links += 1;
        node.meta.ctime = now;
        Ok(())
    }

    /// Makes a file, directory or symlink named `name` in `parent`.
    pub(crate) fn make(
        &mut self,
        parent: Ino,
        name: &OsStr,
        kind: NodeType,
        perm: u32,
        owner: (u32, u32),
        target: Option<&Path>,
    ) -> OpResult<Attr> {
        self.check_new_name(parent, name)?;
        let kind = match (kind, target) {
            (NodeType::File, _) => Kind::File(FileNode::default()),
            (NodeType::Dir, _) => Kind::Dir(DirNode {
                parent,
                ..DirNode::default()
            }),
            (NodeType::Symlink, Some(t)) => Kind::Symlink(t.to_owned()),
            (NodeType::Symlink, None) => return Err(libc::EINVAL),
        };
        let ino = self.add(kind);
        let node = self.node_mut(ino)?;
        node.meta.perm = perm_bits(perm);
        (node.meta.uid, node.meta.gid) = owner;
        self.insert(parent, name, ino)?;
        self.attr(ino)
    }

    pub(crate) fn link(&mut self, ino: Ino, parent: Ino, name: &OsStr) -> OpResult<Attr> {
        if matches!(self.node(ino)?.kind, Kind::Dir(_)) {
            return Err(libc::EPERM);
        }
        self.check_new_name(parent, name)?;
        self.insert(parent, name, ino)?;
        self.attr(ino)
    }

    /// Takes the name `name` away from its inode.
    fn remove(&mut self, parent: Ino, name: &OsStr) -> OpResult<Ino> {
        let now = SystemTime::now();
        let ino = self
            .dir_mut(parent)?
            .entries
            .remove(name)
            .ok_or(libc::ENOENT)?;
        let p = self.node_mut(parent)?;
        p.meta.mtime = now;
        p.meta.ctime = now;
        let node = self.node_mut(ino)?;
        node.links = node.links.saturating_sub(1);
        node.meta.ctime = now;
        Ok(ino)
    }

    pub(crate) fn unlink(&mut self, parent: Ino, name: &OsStr) -> OpResult<()> {
        let ino = *self.dir(parent)?.entries.get(name).ok_or(libc::ENOENT)?;
        if matches!(self.node(ino)?.kind, Kind::Dir(_)) {
            return Err(libc::EISDIR);
        }
        self.remove(parent, name)?;
        self.reap(ino);
        Ok(())
    }

    pub(crate) fn rmdir(&mut self, parent: Ino, name: &OsStr) -> OpResult<()> {
        let ino = *self.dir(parent)?.entries.get(name).ok_or(libc::ENOENT)?;
        if !self.dir(ino)?.entries.is_empty() {
            return Err(libc::ENOTEMPTY);
        }
        self.remove(parent, name)?;
        self.reap(ino);
        Ok(())
    }

    pub(crate) fn rename(
        &mut self,
        parent: Ino,
        name: &OsStr,
        new_parent: Ino,
        new_name: &OsStr,
        no_replace: bool,
    ) -> OpResult<()> {
        let ino = *self.dir(parent)?.entries.get(name).ok_or(libc::ENOENT)?;
        let is_dir = matches!(self.node(ino)?.kind, Kind::Dir(_));
        let target = self.dir(new_parent)?.entries.get(new_name).copied();
        match target {
            Some(_) if no_replace => return Err(libc::EEXIST),
            Some(t) if t == ino => return Ok(()),
            Some(t) => match (&self.node(t)?.kind, is_dir) {
                (Kind::Dir(d), true) if !d.entries.is_empty() => return Err(libc::ENOTEMPTY),
                (Kind::Dir(_), false) => return Err(libc::EISDIR),
                (Kind::File(_) | Kind::Symlink(_), true) => return Err(libc::ENOTDIR),
                _ => {}
            },
            None => self.check_new_name(new_parent, new_name)?,
        }
        if is_dir {
            let mut p = new_parent;
            while p != ROOT {
                if p == ino {
                    return Err(libc::EINVAL);
                }
                p = self.dir(p)?.parent;
            }
        }
        if target.is_some() {
            self.remove(new_parent, new_name)?;
        }
        self.remove(parent, name)?;
        self.insert(new_parent, new_name, ino)?;
        if is_dir {
            self.dir_mut(ino)?.parent = new_parent;
        }
        if let Some(t) = target {
            self.reap(t);
        }
        Ok(())
    }

    pub(crate) fn setattr(&mut self, ino: Ino, set: &SetAttr) -> OpResult<Attr> {
        let now = SystemTime::now();
        if let Some(size) = set.size {
            let f = self.file_mut(ino)?;
            f.pending.set_len(size);
            f.size = size;
            self.node_mut(ino)?.meta.mtime = now;
        }
        let m = &mut self.node_mut(ino)?.meta;
        if let Some(mode) = set.mode {
            m.perm = perm_bits(mode);
        }
        if let Some(uid) = set.uid {
            m.uid = uid;
        }
        if let Some(gid) = set.gid {
            m.gid = gid;
        }
        if let Some(t) = set.atime {
            m.atime = t;
        }
        if let Some(t) = set.mtime {
            m.mtime = t;
        }
        m.ctime = now;
        self.attr(ino)
    }

    pub(crate) fn open(&mut self, ino: Ino, truncate: bool) -> OpResult<()> {
        if truncate {
            self.setattr(
                ino,
                &SetAttr {
                    size: Some(0),
                    ..SetAttr::default()
                },
            )?;
        }
        self.node_mut(ino)?.open += 1;
        Ok(())
    }

    pub(crate) fn release(&mut self, ino: Ino) {
        if let Ok(node) = self.node_mut(ino) {
            node.open = node.open.saturating_sub(1);
            if node.open == 0
                && let Kind::File(f) = &mut node.kind
            {
                f.handle = None;
            }
        }
        self.reap(ino);
    }

    pub(crate) fn read(&mut self, ino: Ino, at: u64, len: usize) -> OpResult<Vec<u8>> {
        self.file_mut(ino)?;
        self.ensure_handle(ino).map_err(|_| libc::EIO)?;
        let f = self.file_mut(ino)?;
        if at >= f.size {
            return Ok(Vec::new());
        }
        let len = usize::try_from(f.size - at).map_or(len, |left| left.min(len));
        let mut buf = vec![0; len];
        data::read_base(f.handle.as_ref(), f.durable_size, &mut buf, at).map_err(|_| libc::EIO)?;
        let size = f.pending.overlay(&mut buf, at, f.durable_size);
        buf.truncate(usize::try_from(size.saturating_sub(at)).map_or(len, |n| n.min(len)));
        Ok(buf)
    }

    pub(crate) fn write(&mut self, ino: Ino, at: u64, bytes: &[u8]) -> OpResult<u32> {
        let end = at.checked_add(bytes.len() as u64).ok_or(libc::EFBIG)?;
        let written = u32::try_from(bytes.len()).map_err(|_| libc::EINVAL)?;
        let f = self.file_mut(ino)?;
        f.pending.write(at, bytes);
        f.size = f.size.max(end);
        let now = SystemTime::now();
        let m = &mut self.node_mut(ino)?.meta;
        m.mtime = now;
        m.ctime = now;
        Ok(written)
    }

    pub(crate) fn readlink(&self, ino: Ino) -> OpResult<&Path> {
        match &self.node(ino)?.kind {
            Kind::Symlink(t) => Ok(t),
            _ => Err(libc::EINVAL),
        }
    }

    /// `.`, `..` and the names in `ino`, in name order.
    pub(crate) fn readdir(&self, ino: Ino) -> OpResult<Vec<(Ino, NodeType, OsString)>> {
        let d = self.dir(ino)?;
        let mut out = vec![
            (ino, NodeType::Dir, OsString::from(".")),
            (d.parent, NodeType::Dir, OsString::from("..")),
        ];
        for (name, &c) in &d.entries {
            out.push((c, self.attr(c)?.kind, name.clone()));
        }
        Ok(out)
    }
}

pub(crate) fn perm_bits(mode: u32) -> u16 {
    u16::try_from(mode & 0o7777).unwrap_or(0o644)
}
