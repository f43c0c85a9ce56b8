//! What reaches the lower directory, and when: fsyncs forward, cuts
//! discard. The lower directory always holds exactly the durable state
//! (plus the limbo directory, which no crash would leave reachable).

use std::ffi::OsStr;
use std::fs::{self, OpenOptions};
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

use crate::data::Rng;
use crate::state::{Ino, Kind, LIMBO_NAME, Phase, ROOT, State};

/// How a cut treats the writes no fsync covered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CutMode {
    /// Every unsynced change is lost.
    Clean,
    /// Each file keeps a random prefix of its unsynced writes (whole writes,
    /// then a whole number of 512-byte sectors of the next one), drawn
    /// from `seed`: the same seed and the same writes keep the same
    /// prefixes. Namespace changes are lost as in a clean cut.
    Torn {
        /// Seeds the random prefixes.
        seed: u64,
    },
}

/// What a cut did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CutReport {
    /// Files whose unsynced writes a torn cut had to choose from.
    pub torn_files: usize,
    /// The bytes of unsynced writes that a torn cut kept.
    pub kept_bytes: u64,
}

fn gone(what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::NotFound,
        format!("no durable place for {what}"),
    )
}

impl State {
    fn limbo_root(&self) -> PathBuf {
        self.lower.join(LIMBO_NAME)
    }

    fn limbo_path(&self, ino: Ino) -> PathBuf {
        self.limbo_root().join(ino.to_string())
    }

    fn ensure_limbo(&self) -> io::Result<()> {
        match fs::create_dir(self.limbo_root()) {
            Err(e) if e.kind() != io::ErrorKind::AlreadyExists => Err(e),
            _ => Ok(()),
        }
    }

    /// Where the durable copy of `ino` is in the lower directory, if it has one.
    pub(crate) fn durable_path(&self, ino: Ino) -> Option<PathBuf> {
        if ino == ROOT {
            return Some(self.lower.clone());
        }
        let node = self.nodes.get(&ino)?;
        if node.limbo {
            return Some(self.limbo_path(ino));
        }
        let (dir, name) = node.durable_links.first()?;
        Some(self.durable_path(*dir)?.join(name))
    }

    /// Opens the durable bytes of the file `ino`, when it has any.
    pub(crate) fn ensure_handle(&mut self, ino: Ino) -> io::Result<()> {
        let path = self.durable_path(ino);
        if let Some(Kind::File(f)) = self.nodes.get_mut(&ino).map(|n| &mut n.kind)
            && f.handle.is_none()
            && let Some(path) = path
        {
            f.handle = Some(OpenOptions::new().read(true).write(true).open(path)?);
        }
        Ok(())
    }

    /// fsync and fdatasync of a file: forwards its data writes and size
    /// changes, in order, and its mode. A file no durable name reaches
    /// keeps its durable bytes in limbo until one does.
    pub(crate) fn fsync_file(&mut self, ino: Ino) -> io::Result<()> {
        self.ensure_handle(ino)?;
        let limbo = self.limbo_path(ino);
        let needs_limbo = matches!(
            self.nodes.get(&ino).map(|n| &n.kind),
            Some(Kind::File(f)) if f.handle.is_none()
        );
        if needs_limbo {
            self.ensure_limbo()?;
        }
        let Some(node) = self.nodes.get_mut(&ino) else {
            return Err(gone("an unknown inode"));
        };
        let Kind::File(f) = &mut node.kind else {
            return Ok(());
        };
        if f.handle.is_none() {
            f.handle = Some(
                OpenOptions::new()
                    .read(true)
                    .write(true)
                    .create_new(true)
                    .open(limbo)?,
            );
            node.limbo = true;
        }
        let Some(handle) = f.handle.as_ref() else {
            return Err(gone("a file"));
        };
        f.pending.forward(handle)?;
        f.durable_size = f.size;
        handle.set_permissions(fs::Permissions::from_mode(node.meta.perm.into()))
    }

    /// fsync of a directory: makes its durable names those it has now.
    /// Names it lost are removed first (an inode still in use waits in
    /// limbo), then the names it gained are made: by moving the inode
    /// from a durable name it no longer has (the other half of a rename,
    /// so it is never durable twice), or from limbo, or as a hard link of
    /// a durable name it still has, or else new and empty.
    pub(crate) fn fsync_dir(&mut self, dir: Ino) -> io::Result<()> {
        if self.durable_path(dir).is_none() {
            self.ensure_limbo()?;
            fs::create_dir(self.limbo_path(dir))?;
            self.node_mut(dir).map_err(|_| gone("a directory"))?.limbo = true;
        }
        let d = self.dir(dir).map_err(|_| gone("a directory"))?;
        let (visible, durable) = (d.entries.clone(), d.durable.clone());
        for (name, ino) in &durable {
            if visible.get(name) != Some(ino) {
                self.detach(dir, name, *ino)?;
            }
        }
        for (name, ino) in &visible {
            if self.dir(dir).ok().and_then(|d| d.durable.get(name)) != Some(ino) {
                self.place(dir, name, *ino)?;
            }
        }
        Ok(())
    }

    fn add_durable(&mut self, dir: Ino, name: &OsStr, ino: Ino) {
        if let Ok(d) = self.dir_mut(dir) {
            d.durable.insert(name.to_owned(), ino);
        }
        if let Ok(node) = self.node_mut(ino) {
            node.durable_links.push((dir, name.to_owned()));
        }
    }

    fn remove_durable(&mut self, dir: Ino, name: &OsStr, ino: Ino) {
        if let Ok(d) = self.dir_mut(dir) {
            d.durable.remove(name);
        }
        if let Ok(node) = self.node_mut(ino) {
            node.durable_links
                .retain(|(d, n)| !(*d == dir && n == name));
        }
    }

    /// Gives `ino` the durable name `name` in `dir`.
    fn place(&mut self, dir: Ino, name: &OsStr, ino: Ino) -> io::Result<()> {
        self.break_cycle(dir, ino)?;
        let path = self
            .durable_path(dir)
            .ok_or_else(|| gone("a directory"))?
            .join(name);
        let node = self.node(ino).map_err(|_| gone("an unknown inode"))?;
        let stale = node
            .durable_links
            .iter()
            .find(|(d, n)| self.dir(*d).ok().and_then(|d| d.entries.get(n)) != Some(&ino))
            .cloned();
        if let Some((old_dir, old_name)) = stale {
            let from = self
                .durable_path(old_dir)
                .ok_or_else(|| gone("a directory"))?;
            fs::rename(from.join(&old_name), &path)?;
            self.remove_durable(old_dir, &old_name, ino);
        } else if !node.durable_links.is_empty() {
            let from = self.durable_path(ino).ok_or_else(|| gone("a file"))?;
            fs::hard_link(from, &path)?;
        } else if node.limbo {
            fs::rename(self.limbo_path(ino), &path)?;
            self.node_mut(ino).map_err(|_| gone("an inode"))?.limbo = false;
        } else {
            let perm = fs::Permissions::from_mode(node.meta.perm.into());
            match &node.kind {
                Kind::File(_) => {
                    let file = OpenOptions::new()
                        .read(true)
                        .write(true)
                        .create_new(true)
                        .open(&path)?;
                    file.set_permissions(perm)?;
                    if let Ok(f) = self.file_mut(ino) {
                        f.durable_size = 0;
                        f.handle = Some(file);
                    }
                }
                Kind::Dir(_) => {
                    fs::create_dir(&path)?;
                    fs::set_permissions(&path, perm)?;
                }
                Kind::Symlink(target) => std::os::unix::fs::symlink(target, &path)?,
            }
        }
        self.add_durable(dir, name, ino);
        Ok(())
    }

    /// Moving the directory `ino` into `dir` while `dir` is durably inside
    /// it (two renames, synced in the other order) would nest it in itself:
    /// the first durable name on the way up from `dir` that the mount no
    /// longer shows is taken away first (the source half of the other
    /// rename), which leaves `dir` in limbo until its new parent is synced.
    fn break_cycle(&mut self, dir: Ino, ino: Ino) -> io::Result<()> {
        let mut chain = Vec::new();
        let mut at = dir;
        while at != ino {
            let Some(node) = self.nodes.get(&at) else {
                return Ok(());
            };
            let Some((parent, name)) = node.durable_links.first().filter(|_| !node.limbo) else {
                return Ok(());
            };
            chain.push((*parent, name.clone(), at));
            at = *parent;
            if chain.len() > self.nodes.len() {
                return Err(io::Error::other("the durable names form a cycle"));
            }
        }
        for (parent, name, child) in chain {
            if self.dir(parent).ok().and_then(|d| d.entries.get(&name)) != Some(&child) {
                return self.detach(parent, &name, child);
            }
        }
        Err(io::Error::other("a directory would be nested in itself"))
    }

    /// Takes the durable name `name` in `dir` away from `ino`: an inode
    /// still in use keeps its durable copy in limbo, another is deleted.
    fn detach(&mut self, dir: Ino, name: &OsStr, ino: Ino) -> io::Result<()> {
        let path = self
            .durable_path(dir)
            .ok_or_else(|| gone("a directory"))?
            .join(name);
        let node = self.node(ino).map_err(|_| gone("an unknown inode"))?;
        let (others, alive) = (node.durable_links.len() > 1, node.alive());
        if others {
            fs::remove_file(&path)?;
        } else if alive {
            self.ensure_limbo()?;
            fs::rename(&path, self.limbo_path(ino))?;
        } else {
            self.destroy(ino, &path)?;
        }
        self.remove_durable(dir, name, ino);
        if alive && !others {
            self.node_mut(ino).map_err(|_| gone("an inode"))?.limbo = true;
        }
        Ok(())
    }

    /// Deletes the durable copy of `ino` at `path`; a directory's
    /// children are detached first, so those still in use go to limbo.
    fn destroy(&mut self, ino: Ino, path: &std::path::Path) -> io::Result<()> {
        if let Ok(d) = self.dir(ino) {
            for (name, child) in d.durable.clone() {
                self.detach(ino, &name, child)?;
            }
            fs::remove_dir_all(path)?;
        } else {
            fs::remove_file(path)?;
        }
        if let Ok(f) = self.file_mut(ino) {
            f.handle = None;
            f.durable_size = 0;
        }
        Ok(())
    }

    /// Forgets what no one can reach any more: the unsynced changes of an
    /// inode that has no name and no open handle, and its copy in limbo.
    pub(crate) fn reap(&mut self, ino: Ino) {
        let Some(node) = self.nodes.get_mut(&ino) else {
            return;
        };
        if node.alive() {
            return;
        }
        if let Kind::File(f) = &mut node.kind {
            f.pending.clear();
        }
        if node.limbo {
            let path = self.limbo_path(ino);
            // Best effort: limbo is emptied at every cut and unmount anyway.
            let _ = self.destroy(ino, &path);
            if let Ok(node) = self.node_mut(ino) {
                node.limbo = false;
            }
        }
    }

    /// What unmounting does: forwards everything, every file's data first,
    /// then every directory from the root down.
    pub(crate) fn flush_all(&mut self) -> io::Result<()> {
        let files: Vec<Ino> = self
            .nodes
            .iter()
            .filter(|(_, n)| n.links > 0)
            .filter(|(_, n)| matches!(&n.kind, Kind::File(f) if !f.pending.is_empty()))
            .map(|(&ino, _)| ino)
            .collect();
        for ino in files {
            self.fsync_file(ino)?;
            if let Ok(f) = self.file_mut(ino) {
                f.handle = None;
            }
        }
        let mut dirs = vec![ROOT];
        while let Some(dir) = dirs.pop() {
            self.fsync_dir(dir)?;
            for &child in self
                .dir(dir)
                .map(|d| d.entries.values())
                .into_iter()
                .flatten()
            {
                if matches!(self.nodes.get(&child).map(|n| &n.kind), Some(Kind::Dir(_))) {
                    dirs.push(child);
                }
            }
        }
        self.clear_limbo()
    }

    fn clear_limbo(&self) -> io::Result<()> {
        match fs::remove_dir_all(self.limbo_root()) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    /// The power cut: discards whatever was not forwarded (a torn cut
    /// first forwards a prefix of each file's unsynced writes), and from
    /// then on the mount answers every request with EIO.
    pub(crate) fn cut(&mut self, mode: CutMode) -> io::Result<CutReport> {
        let mut report = CutReport::default();
        if let CutMode::Torn { seed } = mode {
            let mut rng = Rng::new(seed);
            let torn: Vec<Ino> = self
                .nodes
                .iter()
                .filter(|(_, n)| matches!(&n.kind, Kind::File(f) if !f.pending.is_empty()))
                .filter(|(_, n)| !n.limbo && !n.durable_links.is_empty())
                .map(|(&ino, _)| ino)
                .collect();
            for ino in torn {
                self.ensure_handle(ino)?;
                if let Ok(f) = self.file_mut(ino)
                    && let Some(handle) = f.handle.take()
                {
                    report.torn_files += 1;
                    report.kept_bytes += f.pending.forward_torn(&handle, &mut rng)?;
                }
            }
        }
        self.phase = Phase::Cut;
        self.nodes.clear();
        self.clear_limbo()?;
        Ok(report)
    }
}
