//! The sled 0.34.7 backend: the log's key spaces in one sled tree, each key
//! prefixed by one byte naming its space, so a group commit is one atomic
//! `apply_batch`.
//!
//! # Durability
//!
//! sled 0.34's `flush` writes its dirty buffers with `pwrite` and, on Linux,
//! `sync_file_range(WAIT_BEFORE | WRITE | WAIT_AFTER)`. That starts and waits
//! for the data pages' writeback, but it does not flush the drive's volatile
//! write cache and it does not persist the file's metadata (a grown file
//! size, newly allocated extents), so on power loss a flushed write can
//! still vanish. sled's own background flusher calls `fsync` only every
//! 500 ms.
//!
//! With `sync` durability this backend therefore follows every `flush` with
//! an `fsync` of sled's data file (`<dir>/db`, through a descriptor of its
//! own: `fsync` acts on the file, not on the descriptor), which makes an
//! acknowledged batch as durable as an fjall one. What sled still cannot
//! give: its recovery is its own (sled 0.34 is frozen upstream and has
//! known open issues), so the fjall backend stays the default.
//! With `buffered`, the batch is in sled's page cache and its log buffers:
//! it survives a crash of the process only once sled's flusher has written
//! it (within 500 ms), so `buffered` on sled can lose the last half second
//! even without power loss.

use std::fs::File;
use std::path::Path;

use mailledger_core::{Space, Store, StoreError, Visit, WriteBatch, scan_iter};

const BACKEND: &str = "sled";

/// The log kept in a sled database.
pub struct SledStore {
    db: sled::Db,
    data_file: File,
}

impl std::fmt::Debug for SledStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SledStore").finish_non_exhaustive()
    }
}

fn err(e: impl std::fmt::Display) -> StoreError {
    StoreError::new(BACKEND, e)
}

fn tag(space: Space) -> u8 {
    match space {
        Space::Log => b'L',
        Space::EventIds => b'I',
        Space::Streams => b'S',
        Space::Tenants => b'T',
    }
}

/// How long [`SledStore::open`] waits for sled's directory lock.
pub const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(3);

/// The page cache [`SledStore::open`] gives sled: 256 MiB, a quarter of
/// sled's own default, which alone would take a process's whole budget.
pub const DEFAULT_CACHE_BYTES: u64 = 256 << 20;

fn is_lock_conflict(e: &sled::Error) -> bool {
    matches!(e, sled::Error::Io(io) if io.to_string().contains("could not acquire lock"))
}

fn prefixed(space: Space, key: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(key.len() + 1);
    k.push(tag(space));
    k.extend_from_slice(key);
    k
}

impl SledStore {
    /// Opens the database in `path`, creating it when missing, with a page
    /// cache of [`DEFAULT_CACHE_BYTES`].
    ///
    /// # Errors
    /// When sled cannot open or recover the directory.
    /// sled takes an exclusive lock on its `db` file. Its background I/O
    /// threads can keep the previous handle's file open for a moment after
    /// the last `Db` is dropped, so a lock conflict is retried for up to
    /// [`LOCK_WAIT`] before it is reported (another live process holding the
    /// directory is then the likely cause).
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        Self::open_with(path, DEFAULT_CACHE_BYTES)
    }

    /// Opens the store in `path` as [`SledStore::open`] does, with a page
    /// cache of `cache_bytes` (sled's own default is 1 GiB).
    ///
    /// # Errors
    /// As [`SledStore::open`].
    pub fn open_with(path: &Path, cache_bytes: u64) -> Result<Self, StoreError> {
        std::fs::create_dir_all(path).map_err(err)?;
        let deadline = std::time::Instant::now() + LOCK_WAIT;
        let db = loop {
            match sled::Config::new()
                .path(path)
                .cache_capacity(cache_bytes)
                .open()
            {
                Ok(db) => break db,
                Err(e) if is_lock_conflict(&e) && std::time::Instant::now() < deadline => {
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
                Err(e) if is_lock_conflict(&e) => {
                    return Err(StoreError::new(
                        BACKEND,
                        "the sled directory is locked: is another mailledger process using it?",
                    ));
                }
                Err(e) => return Err(err(e)),
            }
        };
        // sled syncs no directory: without this the names of the files it
        // just made (its data file above all) are not durable, and a power
        // cut loses the whole store (the power-cut test found it).
        mailledger_core::sync_tree(path).map_err(err)?;
        let data_file = File::open(path.join("db")).map_err(err)?;
        Ok(Self { db, data_file })
    }

    fn flush_durably(&self) -> Result<(), StoreError> {
        self.db.flush().map_err(err)?;
        self.data_file.sync_all().map_err(err)
    }
}

impl Store for SledStore {
    fn backend(&self) -> &'static str {
        BACKEND
    }

    fn commit(&self, batch: WriteBatch, sync: bool) -> Result<(), StoreError> {
        let mut b = sled::Batch::default();
        for (space, k, v) in batch.puts {
            b.insert(prefixed(space, &k), v);
        }
        self.db.apply_batch(b).map_err(err)?;
        if sync {
            self.flush_durably()?;
        }
        Ok(())
    }

    fn get(&self, space: Space, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self
            .db
            .get(prefixed(space, key))
            .map_err(err)?
            .map(|v| v.to_vec()))
    }

    fn scan(
        &self,
        space: Space,
        start: &[u8],
        end: Option<&[u8]>,
        reverse: bool,
        visit: &mut dyn FnMut(&[u8], &[u8]) -> Visit,
    ) -> Result<(), StoreError> {
        let lo = prefixed(space, start);
        let hi = match end {
            Some(end) => prefixed(space, end),
            None => vec![tag(space) + 1],
        };
        scan_iter(self.db.range(lo..hi), reverse, |item| {
            let (k, v) = item.map_err(err)?;
            Ok(visit(&k[1..], &v))
        })
    }

    fn sync(&self) -> Result<(), StoreError> {
        self.flush_durably()
    }
}
