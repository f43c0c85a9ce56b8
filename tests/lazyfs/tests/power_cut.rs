//! The lazy file system's own tests: each mounts it over a fresh lower
//! directory, works through the mount, cuts (or not), unmounts, then
//! looks at the lower directory directly.

#![allow(clippy::unwrap_used)]

use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use mailledger_lazyfs::{CutMode, LIMBO_NAME, LazyFs, fuse_or_skip};
use tempfile::TempDir;

struct Dirs {
    _tmp: TempDir,
    lower: PathBuf,
    mnt: PathBuf,
}

fn dirs() -> Dirs {
    let tmp = tempfile::tempdir().unwrap();
    let (lower, mnt) = (tmp.path().join("lower"), tmp.path().join("mnt"));
    fs::create_dir(&lower).unwrap();
    fs::create_dir(&mnt).unwrap();
    Dirs {
        _tmp: tmp,
        lower,
        mnt,
    }
}

fn sync_dir(path: &Path) {
    File::open(path).unwrap().sync_all().unwrap();
}

fn create(path: &Path, bytes: &[u8]) -> File {
    let mut f = File::create(path).unwrap();
    f.write_all(bytes).unwrap();
    f
}

/// The names in `dir`, sorted; the limbo must never outlive a mount.
fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert!(
        !names.iter().any(|n| n == LIMBO_NAME),
        "limbo left in {}",
        dir.display()
    );
    names
}

#[test]
fn an_unsynced_write_is_gone_after_a_cut() {
    if !fuse_or_skip("an_unsynced_write_is_gone_after_a_cut") {
        return;
    }
    let d = dirs();
    fs::write(d.lower.join("kept.txt"), b"old").unwrap();
    let lazy = LazyFs::mount(&d.lower, &d.mnt).unwrap();
    fs::write(d.mnt.join("kept.txt"), b"new and longer").unwrap();
    drop(create(&d.mnt.join("fresh.txt"), b"never synced"));
    assert_eq!(fs::read(d.mnt.join("kept.txt")).unwrap(), b"new and longer");
    assert_eq!(fs::read(d.lower.join("kept.txt")).unwrap(), b"old");

    lazy.cut(CutMode::Clean).unwrap();
    assert!(lazy.is_cut());
    let after = fs::read(d.mnt.join("kept.txt")).unwrap_err();
    assert_eq!(after.raw_os_error(), Some(libc::EIO), "{after}");
    lazy.unmount().unwrap();

    assert_eq!(fs::read(d.lower.join("kept.txt")).unwrap(), b"old");
    assert_eq!(names(&d.lower), ["kept.txt"]);
}

#[test]
fn a_rename_not_followed_by_a_directory_sync_is_undone() {
    if !fuse_or_skip("a_rename_not_followed_by_a_directory_sync_is_undone") {
        return;
    }
    let d = dirs();
    fs::write(d.lower.join("a.txt"), b"A").unwrap();

    let lazy = LazyFs::mount(&d.lower, &d.mnt).unwrap();
    fs::rename(d.mnt.join("a.txt"), d.mnt.join("b.txt")).unwrap();
    // The file's own fsync does not make its new name durable.
    File::open(d.mnt.join("b.txt")).unwrap().sync_all().unwrap();
    assert_eq!(names(&d.mnt), ["b.txt"]);
    lazy.cut(CutMode::Clean).unwrap();
    lazy.unmount().unwrap();
    assert_eq!(names(&d.lower), ["a.txt"]);

    // With the directory synced, the rename survives.
    let lazy = LazyFs::mount(&d.lower, &d.mnt).unwrap();
    fs::rename(d.mnt.join("a.txt"), d.mnt.join("b.txt")).unwrap();
    sync_dir(&d.mnt);
    lazy.cut(CutMode::Clean).unwrap();
    lazy.unmount().unwrap();
    assert_eq!(names(&d.lower), ["b.txt"]);
    assert_eq!(fs::read(d.lower.join("b.txt")).unwrap(), b"A");
}

#[test]
fn a_replacing_rename_keeps_the_old_file_until_the_directory_is_synced() {
    if !fuse_or_skip("a_replacing_rename_keeps_the_old_file_until_the_directory_is_synced") {
        return;
    }
    let d = dirs();
    fs::write(d.lower.join("state"), b"v1").unwrap();
    for sync in [false, true] {
        let lazy = LazyFs::mount(&d.lower, &d.mnt).unwrap();
        create(&d.mnt.join("state.tmp"), b"v2").sync_all().unwrap();
        fs::rename(d.mnt.join("state.tmp"), d.mnt.join("state")).unwrap();
        if sync {
            sync_dir(&d.mnt);
        }
        lazy.cut(CutMode::Clean).unwrap();
        lazy.unmount().unwrap();
        assert_eq!(names(&d.lower), ["state"]);
        let want: &[u8] = if sync { b"v2" } else { b"v1" };
        assert_eq!(
            fs::read(d.lower.join("state")).unwrap(),
            want,
            "sync {sync}"
        );
    }
}

#[test]
fn a_synced_write_survives_a_cut() {
    if !fuse_or_skip("a_synced_write_survives_a_cut") {
        return;
    }
    let d = dirs();
    let lazy = LazyFs::mount(&d.lower, &d.mnt).unwrap();
    fs::create_dir(d.mnt.join("dir")).unwrap();
    create(&d.mnt.join("dir/full"), b"hello")
        .sync_all()
        .unwrap();
    let mut half = create(&d.mnt.join("dir/half"), b"synced");
    half.sync_data().unwrap();
    half.write_all(b" and not").unwrap();
    half.set_len(3).unwrap();
    drop(half);
    assert_eq!(fs::read(d.mnt.join("dir/half")).unwrap(), b"syn");
    sync_dir(&d.mnt.join("dir"));
    sync_dir(&d.mnt);
    lazy.cut(CutMode::Clean).unwrap();
    lazy.unmount().unwrap();

    assert_eq!(names(&d.lower.join("dir")), ["full", "half"]);
    assert_eq!(fs::read(d.lower.join("dir/full")).unwrap(), b"hello");
    assert_eq!(fs::read(d.lower.join("dir/half")).unwrap(), b"synced");
}

#[test]
fn a_created_file_whose_directory_was_not_synced_is_gone_though_fsynced() {
    if !fuse_or_skip("a_created_file_whose_directory_was_not_synced_is_gone_though_fsynced") {
        return;
    }
    let d = dirs();
    let lazy = LazyFs::mount(&d.lower, &d.mnt).unwrap();
    create(&d.mnt.join("orphan"), b"data").sync_all().unwrap();
    // A synced directory whose own name was never synced is gone too.
    fs::create_dir(d.mnt.join("sub")).unwrap();
    create(&d.mnt.join("sub/inner"), b"data")
        .sync_all()
        .unwrap();
    sync_dir(&d.mnt.join("sub"));
    lazy.cut(CutMode::Clean).unwrap();
    lazy.unmount().unwrap();
    assert!(names(&d.lower).is_empty());

    // Synced all the way up, both survive.
    let lazy = LazyFs::mount(&d.lower, &d.mnt).unwrap();
    fs::create_dir(d.mnt.join("sub")).unwrap();
    create(&d.mnt.join("sub/inner"), b"data")
        .sync_all()
        .unwrap();
    sync_dir(&d.mnt.join("sub"));
    sync_dir(&d.mnt);
    lazy.cut(CutMode::Clean).unwrap();
    lazy.unmount().unwrap();
    assert_eq!(fs::read(d.lower.join("sub/inner")).unwrap(), b"data");
}

/// Writes 16 appends of 4 KiB, each of its own byte, over an empty durable
/// file, tears the cut with `seed`, and returns what the file kept.
fn torn_round(d: &Dirs, seed: u64, expected: &[u8]) -> usize {
    fs::write(d.lower.join("log"), b"").unwrap();
    let lazy = LazyFs::mount(&d.lower, &d.mnt).unwrap();
    let mut log = OpenOptions::new()
        .append(true)
        .open(d.mnt.join("log"))
        .unwrap();
    for chunk in expected.chunks(4096) {
        log.write_all(chunk).unwrap();
    }
    drop(log);
    let report = lazy.cut(CutMode::Torn { seed }).unwrap();
    lazy.unmount().unwrap();
    let kept = fs::read(d.lower.join("log")).unwrap();
    assert_eq!(report.kept_bytes, kept.len() as u64);
    assert!(
        kept.len().is_multiple_of(512),
        "seed {seed}: {} bytes",
        kept.len()
    );
    assert_eq!(kept, expected[..kept.len()], "seed {seed}: not a prefix");
    kept.len()
}

#[test]
fn a_torn_cut_keeps_a_prefix_of_the_unsynced_writes() {
    if !fuse_or_skip("a_torn_cut_keeps_a_prefix_of_the_unsynced_writes") {
        return;
    }
    let d = dirs();
    let expected: Vec<u8> = (1..=16u8).flat_map(|i| [i; 4096]).collect();
    let kept: Vec<usize> = (1..=6)
        .map(|seed| torn_round(&d, seed, &expected))
        .collect();
    assert!(
        kept.iter().any(|&n| n > 0 && n < expected.len()),
        "no seed tore the writes: {kept:?}"
    );
    assert_eq!(
        torn_round(&d, 3, &expected),
        kept[2],
        "the same seed tears the same way"
    );
}

#[test]
fn the_control_file_cuts_and_refuses_bad_commands() {
    if !fuse_or_skip("the_control_file_cuts_and_refuses_bad_commands") {
        return;
    }
    let d = dirs();
    fs::write(d.lower.join("f"), b"durable").unwrap();
    let lazy = LazyFs::mount(&d.lower, &d.mnt).unwrap();
    let control = lazy.control_file();
    fs::write(d.mnt.join("f"), b"pending").unwrap();
    for bad in [&b"bogus\n"[..], b"cut torn x", b"\xff"] {
        let err = fs::write(&control, bad).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput, "{bad:?}: {err}");
    }
    assert_eq!(fs::read_to_string(&control).unwrap(), "live\n");
    assert!(!names(&d.mnt).contains(&mailledger_lazyfs::CONTROL_NAME.to_owned()));

    fs::write(&control, b"cut\n").unwrap();
    assert!(lazy.is_cut());
    assert_eq!(fs::read_to_string(&control).unwrap(), "cut\n");
    assert!(fs::read(d.mnt.join("f")).is_err());
    lazy.unmount().unwrap();
    assert_eq!(fs::read(d.lower.join("f")).unwrap(), b"durable");
}

#[test]
fn unmounting_without_a_cut_writes_everything_back() {
    if !fuse_or_skip("unmounting_without_a_cut_writes_everything_back") {
        return;
    }
    let d = dirs();
    fs::write(d.lower.join("old"), b"gone soon").unwrap();
    fs::write(d.lower.join("moved"), b"m").unwrap();
    let lazy = LazyFs::mount(&d.lower, &d.mnt).unwrap();
    fs::create_dir_all(d.mnt.join("a/b")).unwrap();
    fs::write(d.mnt.join("a/b/f"), b"x").unwrap();
    fs::hard_link(d.mnt.join("a/b/f"), d.mnt.join("a/g")).unwrap();
    std::os::unix::fs::symlink("a/b/f", d.mnt.join("s")).unwrap();
    fs::remove_file(d.mnt.join("old")).unwrap();
    fs::rename(d.mnt.join("moved"), d.mnt.join("a/moved")).unwrap();
    lazy.unmount().unwrap();

    assert_eq!(names(&d.lower), ["a", "s"]);
    assert_eq!(names(&d.lower.join("a")), ["b", "g", "moved"]);
    assert_eq!(fs::read(d.lower.join("a/b/f")).unwrap(), b"x");
    assert_eq!(fs::metadata(d.lower.join("a/g")).unwrap().nlink(), 2);
    assert_eq!(fs::read(d.lower.join("a/moved")).unwrap(), b"m");
    assert_eq!(
        fs::read_link(d.lower.join("s")).unwrap(),
        Path::new("a/b/f")
    );
}
