//! Making a directory tree's names durable.
//!
//! A file's `fsync` makes its bytes durable, not its name: that takes an
//! `fsync` of the directory holding it. Storage engines that create files
//! and folders as they open (fjall's keyspaces, sled's data file) do not
//! all sync every directory they made, so after a power cut a file they
//! had synced could be unreachable (found by the power-cut tests on a lazy
//! file system). Backends call [`sync_tree`] once their engine has opened.

use std::fs::File;
use std::io;
use std::path::Path;

/// `fsync`s every directory in the tree under `root` (children before
/// their parents), `root` itself, and `root`'s parent (which holds its
/// name).
///
/// # Errors
/// The first directory that cannot be read or synced.
pub fn sync_tree(root: &Path) -> io::Result<()> {
    sync_below(root)?;
    if let Some(parent) = root.parent().filter(|p| !p.as_os_str().is_empty()) {
        File::open(parent)?.sync_all()?;
    }
    Ok(())
}

fn sync_below(dir: &Path) -> io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            sync_below(&entry.path())?;
        }
    }
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_directory_of_a_tree_is_synced_and_a_missing_root_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("db");
        std::fs::create_dir_all(root.join("a/b")).unwrap();
        std::fs::write(root.join("a/b/file"), b"x").unwrap();
        super::sync_tree(&root).unwrap();
        assert!(super::sync_tree(&dir.path().join("missing")).is_err());
    }
}
