//! A lazy file system for power-cut tests: a FUSE file system that passes
//! through to a directory beneath it (the *lower* directory) but, like a
//! page cache over a disk, forwards only what an fsync covers, and on
//! command discards everything else, as a power cut would.
//!
//! ```no_run
//! # fn main() -> Result<(), mailledger_lazyfs::Error> {
//! use mailledger_lazyfs::{CutMode, LazyFs, fuse_or_skip};
//! # let (lower, mnt) = (std::path::Path::new("lower"), std::path::Path::new("mnt"));
//! if !fuse_or_skip("my_power_cut_test") {
//!     return Ok(());
//! }
//! let fs = LazyFs::mount(lower, mnt)?;
//! // ... run the program under test in `mnt` ...
//! fs.cut(CutMode::Clean)?;
//! fs.unmount()?;
//! // `lower` now holds what survived the power cut.
//! # Ok(()) }
//! ```
//!
//! # The model
//!
//! The lower directory holds the durable state, and only that: every
//! change that reaches it was forwarded by an fsync. What programs see
//! through the mount is held in memory on top of it:
//!
//! - **File data.** Every write and every size change (truncate, `setattr`
//!   size, `O_TRUNC`, `fallocate` growth) stays in memory until `fsync` or
//!   `fdatasync` of that file, which forwards that file's changes, in the
//!   order they were made, and its mode. Reads see the unsynced data.
//! - **Names.** Creating (files, directories, symlinks, hard links),
//!   renaming, unlinking and `rmdir` stay in memory until the directory
//!   holding the name is fsynced, which makes that directory's durable
//!   names exactly the ones it has then.
//! - **A file's fsync does not make its name durable**: a new file that
//!   was fsynced but whose directory was not is gone after a cut (its
//!   bytes wait, unreachable, in `.lazyfs-limbo` under the lower
//!   directory, which every cut and unmount empties). A directory's fsync
//!   does not make the files' data durable either: a name made durable for
//!   a file never fsynced points at an empty file.
//! - **rename is atomic, not durable**: programs see it at once; a cut
//!   before the directory's fsync restores the old name. Across two
//!   directories, syncing the target directory moves the inode (its old
//!   name goes with it, so it is never durable under both), while syncing
//!   only the source directory drops the old name and leaves the file in
//!   limbo: a program must sync both, as POSIX asks.
//! - **No order across files or directories**: each fsync forwards only
//!   what it covers, whatever else was written before it.
//! - **The cut** ([`LazyFs::cut`], or writing `cut` to the control file
//!   [`CONTROL_NAME`] in the mount's root) discards everything not
//!   forwarded. [`CutMode::Clean`] keeps nothing; [`CutMode::Torn`] keeps,
//!   for each file with a durable name, a random (seeded) prefix of its
//!   unsynced writes: whole writes, then whole 512-byte sectors of the
//!   next, as a device that wrote some pages and not others. After a cut
//!   every request to the mount fails with EIO (the machine is off) until
//!   it is unmounted; mount the lower directory again to "reboot".
//! - **Unmounting without a cut** forwards everything, as unmounting a
//!   real file system writes its cache back.
//!
//! What it does not model, and what it does with each:
//! - `sync_file_range`, `syncfs` and `sync`: FUSE does not pass them on,
//!   so they make nothing durable (POSIX promises nothing from them).
//! - `O_DIRECT`: refused with EINVAL, as tmpfs does.
//! - `mmap` writes: the kernel writes shared mappings back as ordinary
//!   writes (pending like any other), and `msync(MS_SYNC)` arrives as an
//!   fsync.
//! - Extended attributes: not supported (EOPNOTSUPP).
//! - Special files (devices, fifos, sockets): `mknod` refuses them with
//!   EPERM, and a lower directory holding one cannot be mounted.
//! - `RENAME_EXCHANGE` and `RENAME_WHITEOUT`: refused with EINVAL.
//! - Ownership and times are kept in memory and not forwarded; the mode
//!   goes with the file's fsync (a directory's mode with its creation).
//! - Space: never runs out (`statfs` shows a roomy disk); `fallocate`
//!   with modes other than 0 and `FALLOC_FL_KEEP_SIZE` is refused.
//! - Locks (`flock`, `fcntl`) are left to the kernel, which keeps them
//!   locally for the mount.
//! - The lower directory itself is not fsynced: the model stands in for
//!   the disk, and the host's own power is not the test's concern.
//!
//! Everything unsynced is held in memory, so the programs under test
//! should write megabytes, not gigabytes, between fsyncs.

mod control;
mod data;
mod durable;
mod fs;
mod load;
mod mount;
mod state;

pub use durable::{CutMode, CutReport};
pub use mount::{Error, LazyFs, Unavailable, availability, fuse_or_skip};
pub use state::{CONTROL_NAME, LIMBO_NAME};
