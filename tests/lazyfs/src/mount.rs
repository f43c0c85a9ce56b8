//! The handle tests hold: mounting, cutting, unmounting; and whether FUSE
//! can be had here at all.

use std::fs::OpenOptions;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use fuser::{BackgroundSession, Config, MountOption};

use crate::durable::{CutMode, CutReport};
use crate::fs::LazyFilesystem;
use crate::state::{CONTROL_NAME, Phase, Shared, State, lock};

/// Why FUSE cannot be had here.
#[derive(Clone, Debug, thiserror::Error)]
pub enum Unavailable {
    /// The kernel offers no FUSE device.
    #[error("there is no /dev/fuse (no fuse module, or a container without the device)")]
    NoDevFuse,
    /// The device is there but this process may not open it.
    #[error("not permitted to open /dev/fuse: {0}")]
    DevFuseNotPermitted(String),
    /// Only root mounts without the setuid helper.
    #[error("not root, and no fusermount3 or fusermount on PATH (Debian package fuse3)")]
    NoFusermount,
    /// The kernel refused the mount.
    #[error("mounting is not permitted here: {0}")]
    MountNotPermitted(String),
    /// A trial mount failed otherwise.
    #[error("a trial mount failed: {0}")]
    MountFailed(String),
}

/// What can go wrong with a lazy file system.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Reading, writing or mounting failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The failure.
        #[source]
        source: io::Error,
    },
}

impl Error {
    fn io(what: impl Into<String>, source: io::Error) -> Self {
        Self::Io {
            what: what.into(),
            source,
        }
    }
}

/// A mounted lazy file system over a lower directory. Dropping it
/// unmounts it, as [`LazyFs::unmount`] does.
#[derive(Debug)]
pub struct LazyFs {
    shared: Shared,
    session: Option<BackgroundSession>,
    lower: PathBuf,
    mountpoint: PathBuf,
}

impl LazyFs {
    /// Mounts a lazy file system over `lower` (a directory, whose contents
    /// are taken as durable) on `mountpoint` (an existing directory),
    /// served by a background thread.
    ///
    /// # Errors
    /// When `lower` cannot be read (or holds other than files, directories
    /// and symlinks), or the mount fails.
    pub fn mount(lower: &Path, mountpoint: &Path) -> Result<Self, Error> {
        let state =
            State::load(lower).map_err(|e| Error::io(format!("loading {}", lower.display()), e))?;
        let lower = state.lower.clone();
        let shared = Arc::new(Mutex::new(state));
        let mut config = Config::default();
        config.mount_options = vec![
            MountOption::FSName("lazyfs".into()),
            MountOption::Subtype("lazyfs".into()),
        ];
        let fs = LazyFilesystem {
            shared: Arc::clone(&shared),
        };
        let session = fuser::spawn_mount(fs, mountpoint, &config)
            .map_err(|e| Error::io(format!("mounting on {}", mountpoint.display()), e))?;
        Ok(Self {
            shared,
            session: Some(session),
            lower,
            mountpoint: mountpoint.to_owned(),
        })
    }

    /// The power cut: discards everything no fsync forwarded. From then on
    /// every request to the mount fails with EIO until it is unmounted; the
    /// lower directory holds what survived. Cutting again does nothing.
    ///
    /// # Errors
    /// When the lower directory cannot be written (a torn cut writes) or
    /// its limbo cannot be removed.
    pub fn cut(&self, mode: CutMode) -> Result<CutReport, Error> {
        let mut state = lock(&self.shared);
        if state.phase != Phase::Live {
            return Ok(CutReport::default());
        }
        state
            .cut(mode)
            .map_err(|e| Error::io(format!("cutting {}", self.lower.display()), e))
    }

    /// Whether it has been cut (by [`LazyFs::cut`] or the control file).
    #[must_use]
    pub fn is_cut(&self) -> bool {
        lock(&self.shared).phase == Phase::Cut
    }

    /// The directory the durable state is in.
    #[must_use]
    pub fn lower(&self) -> &Path {
        &self.lower
    }

    /// Where it is mounted.
    #[must_use]
    pub fn mountpoint(&self) -> &Path {
        &self.mountpoint
    }

    /// The control file: writing `cut`, `cut clean` or `cut torn SEED` to
    /// it cuts; reading it says `live` or `cut`.
    #[must_use]
    pub fn control_file(&self) -> PathBuf {
        self.mountpoint.join(CONTROL_NAME)
    }

    /// Unmounts it. Unless it was cut, everything pending is forwarded
    /// first, as unmounting a real file system writes its cache back, so
    /// the lower directory then holds what the mount showed.
    ///
    /// # Errors
    /// When the unmount fails (a file still open under it) or forwarding
    /// fails.
    pub fn unmount(mut self) -> Result<(), Error> {
        self.finish()
    }

    fn finish(&mut self) -> Result<(), Error> {
        let unmounted = match self.session.take() {
            // The session's loop may end reading "connection aborted" when
            // the kernel tears the connection down as the unmount goes
            // through (seen under load): the mount is gone all the same.
            Some(session) => session.umount_and_join().or_else(|e| match e.kind() {
                std::io::ErrorKind::ConnectionAborted => {
                    detach(&self.mountpoint);
                    Ok(())
                }
                _ => Err(e),
            }),
            None => return Ok(()),
        };
        if unmounted.is_err() {
            detach(&self.mountpoint);
        }
        let mut state = lock(&self.shared);
        let flushed = match state.phase {
            Phase::Live => state.flush_all(),
            _ => Ok(()),
        };
        state.phase = Phase::Unmounted;
        state.nodes.clear();
        let at = self.mountpoint.display();
        unmounted.map_err(|e| Error::io(format!("unmounting {at}"), e))?;
        flushed.map_err(|e| Error::io(format!("writing back {}", self.lower.display()), e))
    }
}

impl Drop for LazyFs {
    fn drop(&mut self) {
        let _ = self.finish();
    }
}

/// After a failed unmount (a file still open under it), detaches the
/// mount lazily, so that it does not outlive the test as a dead mount.
fn detach(mountpoint: &Path) {
    if rustix::mount::unmount(mountpoint, rustix::mount::UnmountFlags::DETACH).is_err() {
        let _ = std::process::Command::new("fusermount3")
            .args(["-u", "-z", "--"])
            .arg(mountpoint)
            .output();
    }
}

/// Whether FUSE can be had here: `/dev/fuse` opens, and a trial mount
/// works. Found out once per process.
///
/// # Errors
/// Why it cannot.
pub fn availability() -> Result<(), Unavailable> {
    static FOUND: OnceLock<Result<(), Unavailable>> = OnceLock::new();
    FOUND.get_or_init(probe).clone()
}

/// For a test that needs FUSE: true when it can run; otherwise it says
/// on stderr why `test` is skipped and returns false.
///
/// # Panics
/// When FUSE is unavailable and `MAILLEDGER_REQUIRE_FUSE=1` (as `.ci/run`
/// sets): then skipping would hide a broken setup.
#[must_use]
pub fn fuse_or_skip(test: &str) -> bool {
    match availability() {
        Ok(()) => true,
        Err(why) => {
            let required = std::env::var("MAILLEDGER_REQUIRE_FUSE").is_ok_and(|v| v == "1");
            assert!(
                !required,
                "MAILLEDGER_REQUIRE_FUSE=1 but {test} cannot run: FUSE is unavailable: {why}"
            );
            eprintln!(
                "skipped {test}: FUSE is unavailable: {why} (MAILLEDGER_REQUIRE_FUSE=1 makes this a failure)"
            );
            false
        }
    }
}

fn on_path(program: &str) -> bool {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/sbin", "/usr/sbin", "/bin", "/usr/bin"].map(PathBuf::from))
        .any(|dir| {
            std::fs::metadata(dir.join(program))
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

fn probe() -> Result<(), Unavailable> {
    let dev = Path::new("/dev/fuse");
    if let Err(e) = OpenOptions::new().read(true).write(true).open(dev) {
        return Err(match e.kind() {
            io::ErrorKind::NotFound => Unavailable::NoDevFuse,
            _ => Unavailable::DevFuseNotPermitted(e.to_string()),
        });
    }
    let helper = on_path("fusermount3") || on_path("fusermount");
    if !rustix::process::geteuid().is_root() && !helper {
        return Err(Unavailable::NoFusermount);
    }
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let dir = std::env::temp_dir().join(format!("lazyfs-probe-{}-{nanos}", std::process::id()));
    let (lower, mnt) = (dir.join("lower"), dir.join("mnt"));
    let made = std::fs::create_dir_all(&lower).and_then(|()| std::fs::create_dir_all(&mnt));
    if let Err(e) = made {
        return Err(Unavailable::MountFailed(format!("{}: {e}", dir.display())));
    }
    let result = match LazyFs::mount(&lower, &mnt) {
        Ok(fs) => {
            let seen = std::fs::read(fs.control_file());
            let unmounted = fs.unmount();
            match (seen, unmounted) {
                (Ok(_), Ok(())) => Ok(()),
                (Err(e), _) => Err(Unavailable::MountFailed(format!("the trial mount: {e}"))),
                (_, Err(e)) => Err(Unavailable::MountFailed(e.to_string())),
            }
        }
        Err(Error::Io { source, .. })
            if source.kind() == io::ErrorKind::PermissionDenied
                || source.raw_os_error() == Some(libc::EPERM) =>
        {
            let hint = if helper {
                ""
            } else {
                " (and no fusermount3: Debian package fuse3)"
            };
            Err(Unavailable::MountNotPermitted(format!("{source}{hint}")))
        }
        Err(e) => Err(Unavailable::MountFailed(e.to_string())),
    };
    let _ = std::fs::remove_dir_all(&dir);
    result
}
