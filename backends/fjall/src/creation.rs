//! A fjall database whose creation was cut short.
//!
//! fjall 3 creates a database in this order: the folder, its `lock` file
//! (locked), the `keyspaces` folder, the first journal `0.jnl`, and last
//! the `version` marker. Nothing can be written before the marker is, so a
//! folder without it holds no data. But a process killed after the journal
//! was made and before the marker leaves a folder fjall refuses to open
//! ever after: it makes the journal with `create_new`, which fails on the
//! one already there. (A projection's rebuild, killed as it made its new
//! generation, found it.)
//!
//! [`clear_unfinished_creation`] removes what such a cut-short creation
//! left, and only that: a folder with anything else in it is left alone,
//! for fjall to open or refuse.

use std::fs::{self, OpenOptions, TryLockError};
use std::io;
use std::path::Path;

/// The names fjall 3 gives what it makes before the marker (`fjall::file`
/// keeps them private).
const LOCK_FILE: &str = "lock";
const KEYSPACES_FOLDER: &str = "keyspaces";
const FIRST_JOURNAL: &str = "0.jnl";
const VERSION_MARKER: &str = "version";

/// When `path` holds only what a cut-short fjall creation leaves (a
/// `lock` file, an empty `keyspaces` folder, a first journal, and no
/// `version` marker), removes the journal and the folder so that fjall
/// creates the database afresh. Returns whether it removed anything.
/// Does nothing when the marker is there, when anything else is in the
/// folder, or when another process holds the lock.
///
/// # Errors
/// A failure to read the folder or to remove what it names.
pub(crate) fn clear_unfinished_creation(path: &Path) -> io::Result<bool> {
    if path.join(VERSION_MARKER).try_exists()? {
        return Ok(false);
    }
    let entries = match fs::read_dir(path) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e),
    };
    let mut lock = None;
    let mut leftovers = Vec::new();
    for entry in entries {
        let entry = entry?;
        let kind = entry.file_type()?;
        match entry.file_name().to_str() {
            Some(LOCK_FILE) if kind.is_file() => lock = Some(entry.path()),
            Some(FIRST_JOURNAL) if kind.is_file() => leftovers.push((entry.path(), false)),
            Some(KEYSPACES_FOLDER) if kind.is_dir() => {
                if fs::read_dir(entry.path())?.next().is_some() {
                    return Ok(false);
                }
                leftovers.push((entry.path(), true));
            }
            _ => return Ok(false),
        }
    }
    // fjall makes the lock file first: without it, nothing was begun here.
    let Some(lock) = lock else {
        return Ok(false);
    };
    if leftovers.is_empty() {
        return Ok(false);
    }
    // Held while clearing, so a process creating the database right now
    // (it holds the lock) is never undercut.
    let file = OpenOptions::new().read(true).write(true).open(&lock)?;
    match file.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => return Ok(false),
        Err(TryLockError::Error(e)) => return Err(e),
    }
    for (leftover, is_folder) in &leftovers {
        if *is_folder {
            fs::remove_dir(leftover)?;
        } else {
            fs::remove_file(leftover)?;
        }
    }
    mailledger_core::sync_tree(path)?;
    drop(file);
    Ok(true)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    /// What fjall 3 leaves when killed after making its first journal and
    /// before its marker.
    fn cut_short(dir: &Path) {
        fs::create_dir_all(dir.join(KEYSPACES_FOLDER)).unwrap();
        fs::write(dir.join(LOCK_FILE), b"").unwrap();
        fs::write(dir.join(FIRST_JOURNAL), b"").unwrap();
    }

    #[test]
    fn a_creation_cut_short_after_the_journal_opens_once_cleared() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        cut_short(&path);
        // fjall alone refuses it, for good.
        assert!(fjall::Database::builder(&path).open().is_err());
        assert!(clear_unfinished_creation(&path).unwrap());
        let db = fjall::Database::builder(&path).open().unwrap();
        let ks = db
            .keyspace("k", fjall::KeyspaceCreateOptions::default)
            .unwrap();
        ks.insert("a", "b").unwrap();
        assert!(ks.get("a").unwrap().is_some());
        drop((ks, db));
        // A finished database is never touched again.
        assert!(!clear_unfinished_creation(&path).unwrap());
        let db = fjall::Database::builder(&path).open().unwrap();
        let ks = db
            .keyspace("k", fjall::KeyspaceCreateOptions::default)
            .unwrap();
        assert!(ks.get("a").unwrap().is_some());
    }

    #[test]
    fn a_folder_with_anything_else_in_it_is_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        cut_short(&path);
        fs::write(path.join("notes.txt"), b"mine").unwrap();
        assert!(!clear_unfinished_creation(&path).unwrap());
        assert!(path.join(FIRST_JOURNAL).exists());
        assert!(path.join("notes.txt").exists());

        let other = dir.path().join("other");
        cut_short(&other);
        fs::write(other.join(KEYSPACES_FOLDER).join("0"), b"").unwrap();
        assert!(!clear_unfinished_creation(&other).unwrap());
        assert!(other.join(FIRST_JOURNAL).exists());

        // Without fjall's lock file nothing was begun by fjall.
        let bare = dir.path().join("bare");
        fs::create_dir_all(&bare).unwrap();
        fs::write(bare.join(FIRST_JOURNAL), b"").unwrap();
        assert!(!clear_unfinished_creation(&bare).unwrap());
        assert!(bare.join(FIRST_JOURNAL).exists());
        // A missing folder is nothing to clear.
        assert!(!clear_unfinished_creation(&dir.path().join("none")).unwrap());
    }

    #[test]
    fn a_creation_in_progress_elsewhere_is_not_undercut() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        cut_short(&path);
        let holder = OpenOptions::new()
            .read(true)
            .write(true)
            .open(path.join(LOCK_FILE))
            .unwrap();
        holder.lock().unwrap();
        assert!(!clear_unfinished_creation(&path).unwrap());
        assert!(path.join(FIRST_JOURNAL).exists());
    }
}
