//! The FUSE side: each request of the kernel, answered from `State` (the
//! control file's in `control.rs`).

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::time::{Duration, SystemTime};

use fuser::{
    Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo, LockOwner,
    OpenFlags, RenameFlags, ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory, ReplyEmpty,
    ReplyEntry, ReplyOpen, ReplyStatfs, ReplyWrite, ReplyXattr, Request, TimeOrNow, WriteFlags,
};

use crate::control;
use crate::state::{
    Attr, CONTROL, CONTROL_NAME, NodeType, OpResult, Phase, ROOT, SetAttr, Shared, State, lock,
};

/// How long the kernel may keep names and attributes: nothing changes
/// them behind its back while the mount is live.
const TTL: Duration = Duration::from_secs(1);

pub(crate) struct LazyFilesystem {
    pub(crate) shared: Shared,
}

impl LazyFilesystem {
    /// Runs `f` on the live state; after a cut every request fails with EIO.
    fn live<T>(&self, f: impl FnOnce(&mut State) -> OpResult<T>) -> Result<T, Errno> {
        let mut state = lock(&self.shared);
        if state.phase != Phase::Live {
            return Err(Errno::EIO);
        }
        f(&mut state).map_err(Errno::from_i32)
    }

    fn make(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        kind: NodeType,
        mode: u32,
        target: Option<&Path>,
    ) -> Result<FileAttr, Errno> {
        let owner = (req.uid(), req.gid());
        self.live(|s| s.make(parent.0, name, kind, mode, owner, target))
            .map(|a| file_attr(&a))
    }
}

pub(crate) fn file_attr(a: &Attr) -> FileAttr {
    FileAttr {
        ino: INodeNo(a.ino),
        size: a.size,
        blocks: a.size.div_ceil(512),
        atime: a.atime,
        mtime: a.mtime,
        ctime: a.ctime,
        crtime: a.ctime,
        kind: file_type(a.kind),
        perm: a.perm,
        nlink: a.nlink,
        uid: a.uid,
        gid: a.gid,
        rdev: 0,
        blksize: 4096,
        flags: 0,
    }
}

fn file_type(kind: NodeType) -> FileType {
    match kind {
        NodeType::File => FileType::RegularFile,
        NodeType::Dir => FileType::Directory,
        NodeType::Symlink => FileType::Symlink,
    }
}

fn entry(reply: ReplyEntry, result: Result<FileAttr, Errno>) {
    match result {
        Ok(attr) => reply.entry(&TTL, &attr, Generation(0)),
        Err(e) => reply.error(e),
    }
}

fn empty(reply: ReplyEmpty, result: Result<(), Errno>) {
    match result {
        Ok(()) => reply.ok(),
        Err(e) => reply.error(e),
    }
}

fn time(t: TimeOrNow) -> SystemTime {
    match t {
        TimeOrNow::SpecificTime(t) => t,
        TimeOrNow::Now => SystemTime::now(),
    }
}

impl Filesystem for LazyFilesystem {
    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        if parent.0 == ROOT && name.as_bytes() == CONTROL_NAME.as_bytes() {
            return reply.entry(&TTL, &control::attr(), Generation(0));
        }
        entry(
            reply,
            self.live(|s| s.lookup(parent.0, name))
                .map(|a| file_attr(&a)),
        );
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        if ino.0 == CONTROL {
            return reply.attr(&TTL, &control::attr());
        }
        match self.live(|s| s.attr(ino.0)) {
            Ok(a) => reply.attr(&TTL, &file_attr(&a)),
            Err(e) => reply.error(e),
        }
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        // `echo cut > .lazyfs-control` truncates it first: nothing to do.
        if ino.0 == CONTROL {
            return reply.attr(&TTL, &control::attr());
        }
        let set = SetAttr {
            mode,
            uid,
            gid,
            size,
            atime: atime.map(time),
            mtime: mtime.map(time),
        };
        match self.live(|s| s.setattr(ino.0, &set)) {
            Ok(a) => reply.attr(&TTL, &file_attr(&a)),
            Err(e) => reply.error(e),
        }
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        match self.live(|s| s.readlink(ino.0).map(|t| t.as_os_str().as_bytes().to_vec())) {
            Ok(t) => reply.data(&t),
            Err(e) => reply.error(e),
        }
    }

    /// Regular files only: other kinds are refused with EPERM.
    fn mknod(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        _rdev: u32,
        reply: ReplyEntry,
    ) {
        if mode & libc::S_IFMT != libc::S_IFREG {
            return reply.error(Errno::EPERM);
        }
        entry(
            reply,
            self.make(req, parent, name, NodeType::File, mode & !umask, None),
        );
    }

    fn mkdir(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        reply: ReplyEntry,
    ) {
        entry(
            reply,
            self.make(req, parent, name, NodeType::Dir, mode & !umask, None),
        );
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        empty(reply, self.live(|s| s.unlink(parent.0, name)));
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        empty(reply, self.live(|s| s.rmdir(parent.0, name)));
    }

    fn symlink(
        &self,
        req: &Request,
        parent: INodeNo,
        link_name: &OsStr,
        target: &Path,
        reply: ReplyEntry,
    ) {
        entry(
            reply,
            self.make(
                req,
                parent,
                link_name,
                NodeType::Symlink,
                0o777,
                Some(target),
            ),
        );
    }

    /// `RENAME_NOREPLACE` is honoured; `RENAME_EXCHANGE` and
    /// `RENAME_WHITEOUT` are refused with EINVAL.
    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        if !(flags - RenameFlags::RENAME_NOREPLACE).is_empty() {
            return reply.error(Errno::EINVAL);
        }
        let no_replace = flags.contains(RenameFlags::RENAME_NOREPLACE);
        empty(
            reply,
            self.live(|s| s.rename(parent.0, name, newparent.0, newname, no_replace)),
        );
    }

    fn link(
        &self,
        _req: &Request,
        ino: INodeNo,
        newparent: INodeNo,
        newname: &OsStr,
        reply: ReplyEntry,
    ) {
        entry(
            reply,
            self.live(|s| s.link(ino.0, newparent.0, newname))
                .map(|a| file_attr(&a)),
        );
    }

    /// `O_DIRECT` is refused with EINVAL (as tmpfs does): this file system
    /// is a page cache, there is nothing to go around.
    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        if ino.0 == CONTROL {
            return reply.opened(FileHandle(0), FopenFlags::FOPEN_DIRECT_IO);
        }
        if flags.0 & libc::O_DIRECT != 0 {
            return reply.error(Errno::EINVAL);
        }
        let truncate = flags.0 & libc::O_TRUNC != 0;
        match self.live(|s| s.open(ino.0, truncate)) {
            Ok(()) => reply.opened(FileHandle(0), FopenFlags::empty()),
            Err(e) => reply.error(e),
        }
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock: Option<LockOwner>,
        reply: ReplyData,
    ) {
        if ino.0 == CONTROL {
            return reply.data(&control::read(&self.shared, offset));
        }
        let len = usize::try_from(size).unwrap_or(usize::MAX);
        match self.live(|s| s.read(ino.0, offset, len)) {
            Ok(data) => reply.data(&data),
            Err(e) => reply.error(e),
        }
    }

    fn write(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        data: &[u8],
        _wf: WriteFlags,
        _flags: OpenFlags,
        _lock: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        if ino.0 == CONTROL {
            return match control::write(&self.shared, data) {
                Ok(n) => reply.written(n),
                Err(e) => reply.error(e),
            };
        }
        match self.live(|s| s.write(ino.0, offset, data)) {
            Ok(n) => reply.written(n),
            Err(e) => reply.error(e),
        }
    }

    /// close(2) makes nothing durable.
    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lock: LockOwner,
        reply: ReplyEmpty,
    ) {
        reply.ok();
    }

    fn release(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _flags: OpenFlags,
        _lock: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        let mut state = lock(&self.shared);
        if state.phase == Phase::Live && ino.0 != CONTROL {
            state.release(ino.0);
        }
        reply.ok();
    }

    /// fsync and fdatasync alike forward the file's data writes and size
    /// changes (and its mode); neither makes its name durable.
    fn fsync(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        if ino.0 == CONTROL {
            return reply.ok();
        }
        empty(
            reply,
            self.live(|s| s.fsync_file(ino.0).map_err(|_| libc::EIO)),
        );
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let entries = match self.live(|s| s.readdir(ino.0)) {
            Ok(entries) => entries,
            Err(e) => return reply.error(e),
        };
        let skip = usize::try_from(offset).unwrap_or(usize::MAX);
        for (i, (child, kind, name)) in entries.iter().enumerate().skip(skip) {
            if reply.add(INodeNo(*child), i as u64 + 1, file_type(*kind), name) {
                break;
            }
        }
        reply.ok();
    }

    /// Forwards the directory's names (see `State::fsync_dir`).
    fn fsyncdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        empty(
            reply,
            self.live(|s| s.fsync_dir(ino.0).map_err(|_| libc::EIO)),
        );
    }

    /// Figures of a roomy disk: nothing here is short of space.
    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        reply.statfs(1 << 28, 1 << 28, 1 << 28, 1 << 24, 1 << 24, 4096, 255, 4096);
    }

    // Extended attributes are not modelled. ENOSYS tells the kernel so once;
    // from then on it answers EOPNOTSUPP itself, without asking.
    fn setxattr(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _name: &OsStr,
        _value: &[u8],
        _flags: i32,
        _position: u32,
        reply: ReplyEmpty,
    ) {
        reply.error(Errno::ENOSYS);
    }

    fn getxattr(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _name: &OsStr,
        _size: u32,
        reply: ReplyXattr,
    ) {
        reply.error(Errno::ENOSYS);
    }

    fn listxattr(&self, _req: &Request, _ino: INodeNo, _size: u32, reply: ReplyXattr) {
        reply.error(Errno::ENOSYS);
    }

    fn removexattr(&self, _req: &Request, _ino: INodeNo, _name: &OsStr, reply: ReplyEmpty) {
        reply.error(Errno::ENOSYS);
    }

    fn access(&self, _req: &Request, _ino: INodeNo, _mask: fuser::AccessFlags, reply: ReplyEmpty) {
        reply.ok();
    }

    fn create(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        if flags & libc::O_DIRECT != 0 {
            return reply.error(Errno::EINVAL);
        }
        let owner = (req.uid(), req.gid());
        let made = self.live(|s| {
            let attr = s.make(parent.0, name, NodeType::File, mode & !umask, owner, None)?;
            s.open(attr.ino, false)?;
            Ok(attr)
        });
        match made {
            Ok(a) => reply.created(
                &TTL,
                &file_attr(&a),
                Generation(0),
                FileHandle(0),
                FopenFlags::empty(),
            ),
            Err(e) => reply.error(e),
        }
    }

    /// Mode 0 grows the file like a size change; `FALLOC_FL_KEEP_SIZE`
    /// alone does nothing (space is not modelled); other modes are
    /// refused with EOPNOTSUPP.
    fn fallocate(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        length: u64,
        mode: i32,
        reply: ReplyEmpty,
    ) {
        let result = match mode {
            0 => self.live(|s| {
                let end = offset.checked_add(length).ok_or(libc::EFBIG)?;
                if end > s.attr(ino.0)?.size {
                    s.setattr(
                        ino.0,
                        &SetAttr {
                            size: Some(end),
                            ..SetAttr::default()
                        },
                    )?;
                }
                Ok(())
            }),
            libc::FALLOC_FL_KEEP_SIZE => self.live(|s| s.attr(ino.0).map(|_| ())),
            _ => Err(Errno::EOPNOTSUPP),
        };
        empty(reply, result);
    }
}
