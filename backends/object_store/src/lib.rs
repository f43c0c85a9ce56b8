//! The object_store backend: the log as immutable segment objects on local
//! files or any S3-compatible object store, the path past one machine.
//!
//! Every committed [`WriteBatch`] (one group commit of the log) becomes one
//! object, `PREFIX/segments/{seq:020}.seg`, written with
//! [`PutMode::Create`]: the store refuses to create a name that exists, so
//! two writers that both try to extend the log at the same sequence number
//! cannot both succeed. The loser learns it from the store
//! ([`object_store::Error::AlreadyExists`]), is *fenced* (every later commit
//! fails at once) and must reopen, which reads what the winner wrote.
//! Nothing is ever overwritten or deleted.
//!
//! # What is kept where
//!
//! - In the object store: the segments, nothing else. Contact keys and
//!   tenant secrets never go there (the key store is a local directory of
//!   its own): bucket versioning and backups would resurrect a destroyed
//!   key.
//! - In memory: the index spaces (event ids, stream entries, chain heads),
//!   rebuilt by reading every segment on [`SegmentStore::open`], and for
//!   each record of the log only where it is (segment, offset, length).
//!   Record bytes are read from their segment on demand, through a cache of
//!   whole segments bounded by [`SegmentStoreBuilder::cache_bytes`].
//!   So memory grows with the number of events (by the keys' sizes,
//!   roughly 100 bytes of index per event and stream link: an estimate,
//!   not measured), not with their size.
//! - Snapshots of that index, `PREFIX/snapshots/{end:020}.snap`, the index
//!   as the first `end` segments make it: the first after
//!   [`SegmentStoreBuilder::snapshot_every`] segments, then whenever the
//!   segments since the last one reach that many and an eighth of the log. Opening loads the newest snapshot that
//!   decodes and reads only the segments after it, so a restart does not
//!   read the whole log again. A snapshot is a cache of what the segments
//!   say: it is written in the background after the commit that fills its
//!   last segment, a failed or missing one costs only time, and one that
//!   does not decode is passed over (with a warning) for an older one or
//!   for the segments themselves.
//!
//! # Durability
//!
//! A commit returns only once its segment's `PUT` returned: on S3 that is
//! durable storage; on local files the object is written to a staging
//! file, `fsync`ed, hard-linked to its name and its directory `fsync`ed
//! ([`LocalFileSystem::with_fsync`]). Both `sync` settings therefore give
//! durable commits: an object store has no cheaper tier that still survives
//! a crash of the process. A `PUT` is atomic, so no segment is ever torn.
//! When a `PUT` fails, the segment may or may not exist (a timeout can come
//! after the store took it): the store is then poisoned, its caller (the
//! log) stops writing, and a reopen shows either the whole batch or none of
//! it. A batch that was never acknowledged may so appear after a reopen;
//! an acknowledged one is never lost.
//!
//! # Segment layout (format 1)
//!
//! All integers are big-endian.
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 4 | magic `MLSG` |
//! | 4 | 1 | format version, 1 |
//! | 5 | 8 | sequence number (the object's name says the same) |
//! | 13 | 4 | number of puts `n` |
//! | 17 | … | `n` puts: space (1: 0 log, 1 event ids, 2 streams, 3 tenants), key length (4), key, value length (4), value |
//! | end − 32 | 32 | blake3 hash of every byte before it |
//!
//! The puts are the batch's, in its order (a later put to a key wins).
//! Opening checks that the sequence numbers run from 0 without a gap, and
//! each segment it reads (those after the snapshot it loaded, all of them
//! without one) for its magic, version, sequence number, lengths and hash;
//! a segment that fails any check stops the open with an error naming it.
//! A segment before the snapshot is checked the same way when it is read
//! (a record read, a scan, `verify`).
//! The format is frozen by `tests/testdata/segment-v1.bin`.
//!
//! # Snapshot layout (format 1)
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 4 | magic `MLSN` |
//! | 4 | 1 | format version, 1 |
//! | 5 | 8 | `end`: the segments it covers, 0 to `end` − 1 (its name says the same) |
//! | 13 | 8 | number of entries `n` |
//! | 21 | … | `n` entries, each: kind (1: 0 a record's place, 1 event ids, 2 streams, 3 tenants), key length (4), key, then for a record's place its segment (8), offset (4) and length (4), else value length (4) and value |
//! | end − 32 | 32 | blake3 hash of every byte before it |

#[cfg(feature = "test-util")]
pub mod testing;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use bytes::Bytes;
use futures_util::{StreamExt, TryStreamExt};
use mailledger_core::{KeyRange, Space, Store, StoreError, Visit, WriteBatch, scan_in_chunks};
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};

const BACKEND: &str = "object_store";
const MAGIC: &[u8; 4] = b"MLSG";
/// The segment format this build writes (and the only one it reads).
pub const SEGMENT_FORMAT: u8 = 1;
const HEADER: usize = 17;
const HASH: usize = 32;
const SEGMENTS: &str = "segments";
const SNAPSHOTS: &str = "snapshots";
const SNAP_MAGIC: &[u8; 4] = b"MLSN";
const SNAP_SUFFIX: &str = ".snap";
const SNAP_HEADER: usize = 21;
const SUFFIX: &str = ".seg";
/// Segments fetched at once while opening.
const OPEN_FETCHES: usize = 8;

/// Why a segment could not be read, or a commit was refused.
#[derive(Debug, thiserror::Error)]
pub enum SegmentError {
    /// The segment's bytes do not decode.
    #[error("segment {seq} is corrupt: {reason}")]
    Corrupt {
        /// The segment's sequence number.
        seq: u64,
        /// What is wrong, never the bytes themselves.
        reason: &'static str,
    },
    /// Segment numbers do not run from 0 without a gap.
    #[error("segment {seq} is missing: the log's objects were removed or renamed")]
    Missing {
        /// The first missing sequence number.
        seq: u64,
    },
    /// An object under the segments prefix that this backend did not write.
    #[error("unexpected object {name:?} among the segments")]
    Unexpected {
        /// The object's name.
        name: String,
    },
    /// Another writer created this segment first.
    #[error(
        "another writer extended the log first (segment {seq} exists): this store is fenced; reopen it to read what was written"
    )]
    Fenced {
        /// The sequence number both tried to write.
        seq: u64,
    },
    /// An earlier commit failed, so what is stored is unknown until a reopen.
    #[error("an earlier commit failed; reopen the store")]
    Poisoned,
    /// A batch too large for the segment format.
    #[error("a batch of {0} puts or a key or value over 4 GiB does not fit a segment")]
    TooLarge(usize),
    /// The object store failed.
    #[error("object store: {0}")]
    Objects(#[from] object_store::Error),
    /// The backend's runtime stopped.
    #[error("the object store runtime stopped")]
    Runtime,
}

impl From<SegmentError> for StoreError {
    fn from(e: SegmentError) -> Self {
        StoreError::new(BACKEND, e)
    }
}

fn space_tag(space: Space) -> u8 {
    match space {
        Space::Log => 0,
        Space::EventIds => 1,
        Space::Streams => 2,
        Space::Tenants => 3,
    }
}

fn tag_space(tag: u8) -> Option<Space> {
    Some(match tag {
        0 => Space::Log,
        1 => Space::EventIds,
        2 => Space::Streams,
        3 => Space::Tenants,
        _ => return None,
    })
}

/// Where a record of the log is: its segment and its value's bytes there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Loc {
    seq: u64,
    offset: u32,
    len: u32,
}

/// A record's bytes in its segment.
fn slice(segment: &Bytes, loc: Loc) -> Result<&[u8], SegmentError> {
    let start = loc.offset as usize;
    segment
        .get(start..start + loc.len as usize)
        .ok_or(SegmentError::Corrupt {
            seq: loc.seq,
            reason: "a value lies outside its segment",
        })
}

/// A scanned entry: an index value, or where a record's bytes are.
enum Found {
    Value(Vec<u8>),
    At(Loc),
}

/// A put as a segment holds it.
#[derive(Debug, PartialEq, Eq)]
struct SegmentPut {
    space: Space,
    key: Vec<u8>,
    /// The value's place in the segment.
    offset: u32,
    len: u32,
}

/// Encodes a batch as segment `seq`; returns the bytes and where each
/// value lies in them.
fn encode(
    seq: u64,
    puts: &[(Space, Vec<u8>, Vec<u8>)],
) -> Result<(Vec<u8>, Vec<Loc>), SegmentError> {
    let too_large = || SegmentError::TooLarge(puts.len());
    let size: usize = puts.iter().map(|(_, k, v)| 9 + k.len() + v.len()).sum();
    let mut out = Vec::with_capacity(HEADER + size + HASH);
    out.extend_from_slice(MAGIC);
    out.push(SEGMENT_FORMAT);
    out.extend_from_slice(&seq.to_be_bytes());
    out.extend_from_slice(
        &u32::try_from(puts.len())
            .map_err(|_| too_large())?
            .to_be_bytes(),
    );
    let mut locs = Vec::with_capacity(puts.len());
    for (space, k, v) in puts {
        out.push(space_tag(*space));
        out.extend_from_slice(
            &u32::try_from(k.len())
                .map_err(|_| too_large())?
                .to_be_bytes(),
        );
        out.extend_from_slice(k);
        let len = u32::try_from(v.len()).map_err(|_| too_large())?;
        out.extend_from_slice(&len.to_be_bytes());
        let offset = u32::try_from(out.len()).map_err(|_| too_large())?;
        out.extend_from_slice(v);
        locs.push(Loc { seq, offset, len });
    }
    u32::try_from(out.len() + HASH).map_err(|_| too_large())?;
    let hash = blake3::hash(&out);
    out.extend_from_slice(hash.as_bytes());
    Ok((out, locs))
}

/// The body of a segment or snapshot object (`magic`, `header` bytes at
/// least) whose trailing hash matches, whose format this build reads, and
/// whose number (after magic and version) is `n`, the one its name gives:
/// a reader positioned after that number. Never panics.
fn open_frame<'a>(
    bytes: &'a [u8],
    magic: &[u8; 4],
    header: usize,
    n: u64,
) -> Result<Reader<'a>, &'static str> {
    if bytes.len() < header + HASH || u32::try_from(bytes.len()).is_err() {
        return Err("shorter than its header and hash, or over 4 GiB");
    }
    let (body, hash) = bytes.split_at(bytes.len() - HASH);
    if blake3::hash(body).as_bytes() != hash {
        return Err("its hash does not match its bytes");
    }
    if &body[..4] != magic {
        return Err("not a mailledger object of its kind");
    }
    if body[4] != SEGMENT_FORMAT {
        return Err("unknown format version");
    }
    let mut r = Reader { bytes: body, at: 5 };
    if r.u64() != Some(n) {
        return Err("its number differs from its name");
    }
    Ok(r)
}

/// Checks that `bytes` are a whole segment `seq` of this format, without
/// decoding its puts (what a read of a record needs).
fn check_segment(seq: u64, bytes: &[u8]) -> Result<(), SegmentError> {
    open_frame(bytes, MAGIC, HEADER, seq)
        .map(|_| ())
        .map_err(|reason| SegmentError::Corrupt { seq, reason })
}

/// Decodes segment `seq`, checking everything it holds; never panics.
fn decode(seq: u64, bytes: &[u8]) -> Result<Vec<SegmentPut>, SegmentError> {
    let corrupt = |reason| SegmentError::Corrupt { seq, reason };
    let mut r = open_frame(bytes, MAGIC, HEADER, seq).map_err(corrupt)?;
    let body = r.bytes;
    let n = r.u32().ok_or_else(|| corrupt("truncated header"))? as usize;
    // Each put takes at least 9 bytes: no allocation beyond what is there.
    if n > (body.len() - HEADER) / 9 {
        return Err(corrupt("it claims more puts than its bytes hold"));
    }
    let mut puts = Vec::with_capacity(n);
    for _ in 0..n {
        let space = r
            .u8()
            .and_then(tag_space)
            .ok_or_else(|| corrupt("a put names no known space"))?;
        let klen = r.u32().ok_or_else(|| corrupt("truncated put"))? as usize;
        let key = r
            .take(klen)
            .ok_or_else(|| corrupt("truncated key"))?
            .to_vec();
        let len = r.u32().ok_or_else(|| corrupt("truncated put"))?;
        let offset = u32::try_from(r.at).map_err(|_| corrupt("over 4 GiB"))?;
        r.take(len as usize)
            .ok_or_else(|| corrupt("truncated value"))?;
        puts.push(SegmentPut {
            space,
            key,
            offset,
            len,
        });
    }
    if r.at != body.len() {
        return Err(corrupt("bytes after its last put"));
    }
    Ok(puts)
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.at.checked_add(n)?;
        let out = self.bytes.get(self.at..end)?;
        self.at = end;
        Some(out)
    }
    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }
    fn u32(&mut self) -> Option<u32> {
        self.take(4)?.try_into().ok().map(u32::from_be_bytes)
    }
    fn u64(&mut self) -> Option<u64> {
        self.take(8)?.try_into().ok().map(u64::from_be_bytes)
    }
}

/// Encodes `index` as the snapshot of the first `end` segments.
fn encode_snapshot(end: u64, index: &Index) -> Vec<u8> {
    let n = index.log.len() + index.spaces.iter().map(BTreeMap::len).sum::<usize>();
    let mut out = Vec::with_capacity(SNAP_HEADER + n * 48 + HASH);
    out.extend_from_slice(SNAP_MAGIC);
    out.push(SEGMENT_FORMAT);
    out.extend_from_slice(&end.to_be_bytes());
    out.extend_from_slice(&(n as u64).to_be_bytes());
    // Keys and values in an index came from segments, whose format bounds
    // their lengths by u32.
    let len = |n: usize| u32::try_from(n).unwrap_or(u32::MAX).to_be_bytes();
    for (k, loc) in &index.log {
        out.push(0);
        out.extend_from_slice(&len(k.len()));
        out.extend_from_slice(k);
        out.extend_from_slice(&loc.seq.to_be_bytes());
        out.extend_from_slice(&loc.offset.to_be_bytes());
        out.extend_from_slice(&loc.len.to_be_bytes());
    }
    for (tag, map) in (1u8..).zip(&index.spaces) {
        for (k, v) in map {
            out.push(tag);
            out.extend_from_slice(&len(k.len()));
            out.extend_from_slice(k);
            out.extend_from_slice(&len(v.len()));
            out.extend_from_slice(v);
        }
    }
    let hash = blake3::hash(&out);
    out.extend_from_slice(hash.as_bytes());
    out
}

/// Decodes the snapshot of the first `end` segments; never panics.
fn decode_snapshot(end: u64, bytes: &[u8]) -> Result<Index, &'static str> {
    let mut r = open_frame(bytes, SNAP_MAGIC, SNAP_HEADER, end)?;
    let body = r.bytes;
    let n = r.u64().ok_or("truncated header")?;
    if n > ((body.len() - SNAP_HEADER) / 9) as u64 {
        return Err("it claims more entries than its bytes hold");
    }
    let mut index = Index::default();
    for _ in 0..n {
        let tag = r.u8().ok_or("truncated entry")?;
        let klen = r.u32().ok_or("truncated entry")? as usize;
        let key = r.take(klen).ok_or("truncated key")?.to_vec();
        if tag == 0 {
            let (seq, offset, len) = (r.u64(), r.u32(), r.u32());
            let (Some(seq), Some(offset), Some(len)) = (seq, offset, len) else {
                return Err("truncated record place");
            };
            if seq >= end {
                return Err("a record lies in a segment it does not cover");
            }
            index.log.insert(key, Loc { seq, offset, len });
        } else {
            let space = tag_space(tag)
                .filter(|s| *s != Space::Log)
                .ok_or("an entry of no known kind")?;
            let vlen = r.u32().ok_or("truncated entry")? as usize;
            let value = r.take(vlen).ok_or("truncated value")?.to_vec();
            index.space_mut(space).insert(key, value);
        }
    }
    if r.at != body.len() {
        return Err("bytes after its last entry");
    }
    Ok(index)
}

/// Where an S3 client configured by the `AWS_*` environment variables (as
/// [`SegmentStore::open_s3`] makes it) sends its requests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum S3Target {
    /// Amazon S3 itself, in this region (`AWS_REGION` or
    /// `AWS_DEFAULT_REGION`; the client's default is `us-east-1`).
    Amazon {
        /// The region's name, such as `eu-central-1`.
        region: String,
    },
    /// Another S3-compatible store (`AWS_ENDPOINT`): where it is, only its
    /// operator can say.
    Endpoint,
}

impl S3Target {
    /// What the environment configures, without connecting anywhere.
    #[must_use]
    pub fn from_env() -> Self {
        use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
        let b = AmazonS3Builder::from_env();
        if b.get_config_value(&AmazonS3ConfigKey::Endpoint).is_some()
            || b.get_config_value(&AmazonS3ConfigKey::S3Endpoint).is_some()
        {
            return Self::Endpoint;
        }
        Self::Amazon {
            region: b
                .get_config_value(&AmazonS3ConfigKey::Region)
                .unwrap_or_else(|| "us-east-1".into()),
        }
    }
}

/// The country an Amazon S3 region keeps its data in (ISO 3166-1 alpha-2),
/// for the regions this build knows. London (`eu-west-2`) and Zurich
/// (`eu-central-2`) are named `eu-` but lie outside the EU.
#[must_use]
pub fn aws_region_country(region: &str) -> Option<&'static str> {
    Some(match region {
        "eu-central-1" | "eusc-de-east-1" => "DE",
        "eu-west-1" => "IE",
        "eu-west-3" => "FR",
        "eu-north-1" => "SE",
        "eu-south-1" => "IT",
        "eu-south-2" => "ES",
        "eu-west-2" => "GB",
        "eu-central-2" => "CH",
        "us-east-1" | "us-east-2" | "us-west-1" | "us-west-2" => "US",
        "ca-central-1" | "ca-west-1" => "CA",
        "mx-central-1" => "MX",
        "sa-east-1" => "BR",
        "af-south-1" => "ZA",
        "il-central-1" => "IL",
        "me-south-1" => "BH",
        "me-central-1" => "AE",
        "ap-east-1" => "HK",
        "ap-northeast-1" | "ap-northeast-3" => "JP",
        "ap-northeast-2" => "KR",
        "ap-south-1" | "ap-south-2" => "IN",
        "ap-southeast-1" => "SG",
        "ap-southeast-2" | "ap-southeast-4" => "AU",
        "ap-southeast-3" => "ID",
        "ap-southeast-5" => "MY",
        "ap-southeast-7" => "TH",
        _ => return None,
    })
}

/// Splits `s3://BUCKET[/PREFIX]` into bucket and prefix.
///
/// # Errors
/// Anything else, with what was expected.
pub fn parse_s3_url(url: &str) -> Result<(&str, &str), StoreError> {
    let bad = |why: &str| {
        StoreError::new(
            BACKEND,
            format!("{url:?}: {why}; expected s3://BUCKET or s3://BUCKET/PREFIX"),
        )
    };
    let rest = url
        .strip_prefix("s3://")
        .ok_or_else(|| bad("not an s3:// URL"))?;
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    let prefix = prefix.trim_end_matches('/');
    if bucket.is_empty()
        || !bucket
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
    {
        return Err(bad(
            "a bucket name is lowercase letters, digits, '-' and '.'",
        ));
    }
    if prefix.contains("//")
        || prefix.starts_with('/')
        || prefix.contains('?')
        || prefix.contains('#')
    {
        return Err(bad("the prefix has an empty part, a query or a fragment"));
    }
    Ok((bucket, prefix))
}

/// An object's name: its number in 20 digits, then `suffix`
/// ([`SUFFIX`] for segments, [`SNAP_SUFFIX`] for snapshots).
fn object_name(n: u64, suffix: &str) -> String {
    format!("{n:020}{suffix}")
}

/// The number in an [`object_name`], if `name` is one with `suffix`.
fn parse_name(name: &str, suffix: &str) -> Option<u64> {
    let digits = name.strip_suffix(suffix)?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Whole segments by sequence number, oldest loaded evicted first.
#[derive(Debug, Default)]
struct Cache {
    segments: HashMap<u64, Bytes>,
    order: VecDeque<u64>,
    bytes: usize,
    limit: usize,
}

impl Cache {
    fn get(&self, seq: u64) -> Option<Bytes> {
        self.segments.get(&seq).cloned()
    }

    fn insert(&mut self, seq: u64, segment: Bytes) {
        if segment.len() > self.limit || self.segments.contains_key(&seq) {
            return;
        }
        self.bytes += segment.len();
        self.segments.insert(seq, segment);
        self.order.push_back(seq);
        while self.bytes > self.limit {
            let Some(old) = self.order.pop_front() else {
                break;
            };
            if let Some(s) = self.segments.remove(&old) {
                self.bytes -= s.len();
            }
        }
    }
}

type Map<V> = BTreeMap<Vec<u8>, V>;

/// What the segments say, in memory.
#[derive(Debug, Default)]
struct Index {
    log: Map<Loc>,
    /// Event ids, streams and tenants.
    spaces: [Map<Vec<u8>>; 3],
}

impl Index {
    fn space(&self, space: Space) -> &Map<Vec<u8>> {
        &self.spaces[usize::from(space_tag(space)) - 1]
    }

    fn space_mut(&mut self, space: Space) -> &mut Map<Vec<u8>> {
        &mut self.spaces[usize::from(space_tag(space)) - 1]
    }

    /// A put of `space`: a record's place for the log, else the value,
    /// which `value` makes only then.
    fn apply(&mut self, space: Space, key: Vec<u8>, loc: Loc, value: impl FnOnce() -> Vec<u8>) {
        if space == Space::Log {
            self.log.insert(key, loc);
        } else {
            self.space_mut(space).insert(key, value());
        }
    }
}

#[derive(Debug)]
struct Writer {
    next_seq: u64,
    /// The segments the newest snapshot covers (loaded or written).
    last_snapshot: u64,
    /// Set once a commit failed or another writer won: nothing more is
    /// written until a reopen.
    stopped: Option<Stopped>,
}

/// Why a store writes no more.
#[derive(Debug, Clone, Copy)]
enum Stopped {
    /// Another writer created segment `seq` first.
    Fenced { seq: u64 },
    /// A put failed: whether its segment exists is unknown until a reopen.
    Failed,
}

impl Stopped {
    fn error(self) -> SegmentError {
        match self {
            Self::Fenced { seq } => SegmentError::Fenced { seq },
            Self::Failed => SegmentError::Poisoned,
        }
    }
}

/// Settings of a [`SegmentStore`]; [`SegmentStore::builder`] makes one.
#[derive(Debug, Clone)]
pub struct SegmentStoreBuilder {
    cache_bytes: usize,
    snapshot_every: u64,
}

impl Default for SegmentStoreBuilder {
    fn default() -> Self {
        Self {
            cache_bytes: 64 << 20,
            snapshot_every: 1024,
        }
    }
}

impl SegmentStoreBuilder {
    /// The most bytes of whole segments kept in memory for reads.
    ///
    /// Default: 64 MiB.
    #[must_use]
    pub fn cache_bytes(mut self, bytes: usize) -> Self {
        self.cache_bytes = bytes;
        self
    }

    /// How many segments at least between two snapshots of the index (0:
    /// none); past eight times this, the interval is an eighth of the log.
    /// Writing one holds commits up while the index is encoded in memory.
    ///
    /// Default: 1024 (with groups of a few hundred records, the first
    /// snapshot after a few hundred thousand records).
    #[must_use]
    pub fn snapshot_every(mut self, segments: u64) -> Self {
        self.snapshot_every = segments;
        self
    }

    /// Opens the log kept as segment files under the directory `dir`
    /// (created when missing), each written durably (`fsync` of the file and
    /// its directory).
    ///
    /// # Errors
    /// The directory cannot be made or read; as [`SegmentStoreBuilder::open`].
    pub fn open_dir(self, dir: &std::path::Path) -> Result<SegmentStore, StoreError> {
        std::fs::create_dir_all(dir).map_err(|e| {
            StoreError::new(BACKEND, format!("cannot create {}: {e}", dir.display()))
        })?;
        let local = LocalFileSystem::new_with_prefix(dir)
            .map_err(SegmentError::from)?
            .with_fsync(true);
        self.open(Arc::new(local), "")
    }

    /// Opens the log kept under `prefix` of `objects`: lists every segment
    /// and checks that none is missing, loads the newest snapshot that
    /// decodes, then reads and checks every segment after it (see the
    /// module docs). An empty prefix is an empty log.
    ///
    /// # Errors
    /// A segment that is missing, corrupt or unexpected; a failure of the
    /// object store.
    pub fn open(
        self,
        objects: Arc<dyn ObjectStore>,
        prefix: &str,
    ) -> Result<SegmentStore, StoreError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("object-store")
            .enable_all()
            .build()
            .map_err(|e| StoreError::new(BACKEND, format!("cannot start its runtime: {e}")))?;
        let store = SegmentStore {
            runtime: Some(runtime),
            objects,
            dir: Path::from(prefix).join(SEGMENTS),
            snapshots: Path::from(prefix).join(SNAPSHOTS),
            snapshot_every: self.snapshot_every,
            index: RwLock::new(Index::default()),
            writer: Mutex::new(Writer {
                next_seq: 0,
                last_snapshot: 0,
                stopped: None,
            }),
            cache: Mutex::new(Cache {
                limit: self.cache_bytes,
                ..Cache::default()
            }),
        };
        let (next, snapshot) = store.load()?;
        let mut writer = store.writer();
        writer.next_seq = next;
        writer.last_snapshot = snapshot;
        drop(writer);
        Ok(store)
    }
}

/// The log kept as segment objects in an [`ObjectStore`].
pub struct SegmentStore {
    /// Runs the object store's futures; taken on drop.
    runtime: Option<tokio::runtime::Runtime>,
    objects: Arc<dyn ObjectStore>,
    dir: Path,
    snapshots: Path,
    snapshot_every: u64,
    index: RwLock<Index>,
    writer: Mutex<Writer>,
    cache: Mutex<Cache>,
}

impl std::fmt::Debug for SegmentStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SegmentStore")
            .field("objects", &self.objects.to_string())
            .field("dir", &self.dir.as_ref())
            .finish_non_exhaustive()
    }
}

impl Drop for SegmentStore {
    fn drop(&mut self) {
        // Dropping a runtime blocks, which panics inside an async context.
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

impl SegmentStore {
    /// Settings, to open a store with.
    #[must_use]
    pub fn builder() -> SegmentStoreBuilder {
        SegmentStoreBuilder::default()
    }

    /// Opens the log kept under `prefix` of `objects` with the default
    /// settings.
    ///
    /// # Errors
    /// As [`SegmentStoreBuilder::open`].
    pub fn open(objects: Arc<dyn ObjectStore>, prefix: &str) -> Result<Self, StoreError> {
        Self::builder().open(objects, prefix)
    }

    /// Opens the log kept as segment files under the directory `dir` with
    /// the default settings ([`SegmentStoreBuilder::open_dir`]).
    ///
    /// # Errors
    /// As [`SegmentStoreBuilder::open_dir`].
    pub fn open_dir(dir: &std::path::Path) -> Result<Self, StoreError> {
        Self::builder().open_dir(dir)
    }

    /// Opens the log at `url`, `s3://BUCKET/PREFIX`, on an S3-compatible
    /// store configured by the standard `AWS_*` environment variables
    /// (`AWS_ENDPOINT` for a store other than Amazon's, `AWS_REGION`,
    /// `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_ALLOW_HTTP=true`
    /// for a plain-HTTP endpoint). The store must support conditional
    /// create (`If-None-Match: *`), as Amazon S3, Ceph, Garage and MinIO do.
    ///
    /// # Errors
    /// A URL that is not `s3://BUCKET[/PREFIX]`, settings the client
    /// refuses; as [`SegmentStoreBuilder::open`].
    pub fn open_s3(url: &str) -> Result<Self, StoreError> {
        let (bucket, prefix) = parse_s3_url(url)?;
        let s3 = object_store::aws::AmazonS3Builder::from_env()
            .with_bucket_name(bucket)
            .build()
            .map_err(SegmentError::from)?;
        Self::open(Arc::new(s3), prefix)
    }

    /// How many segments the log has (the next one's sequence number).
    #[must_use]
    pub fn segments(&self) -> u64 {
        self.writer().next_seq
    }

    fn writer(&self) -> std::sync::MutexGuard<'_, Writer> {
        self.writer.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, Cache> {
        self.cache.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs `fut` on the backend's runtime and waits for it, from any
    /// thread (the log calls the store from threads that may block).
    fn run<T: Send + 'static>(
        &self,
        fut: impl Future<Output = Result<T, SegmentError>> + Send + 'static,
    ) -> Result<T, SegmentError> {
        let rt = self.runtime.as_ref().ok_or(SegmentError::Runtime)?;
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        rt.spawn(async move {
            let _ = tx.send(fut.await);
        });
        rx.recv().map_err(|_| SegmentError::Runtime)?
    }

    fn path(&self, seq: u64) -> Path {
        self.dir.clone().join(object_name(seq, SUFFIX))
    }

    fn snapshot_path(&self, end: u64) -> Path {
        self.snapshots.clone().join(object_name(end, SNAP_SUFFIX))
    }

    /// Reads the newest snapshot and every segment after it into the
    /// index; returns the next sequence number and the snapshot's end.
    fn load(&self) -> Result<(u64, u64), SegmentError> {
        let objects = Arc::clone(&self.objects);
        let dir = self.dir.clone();
        let mut seqs = self.run(async move {
            let metas: Vec<_> = objects.list(Some(&dir)).try_collect().await?;
            let mut seqs = Vec::with_capacity(metas.len());
            for meta in metas {
                let name = meta.location.filename().unwrap_or_default();
                let seq = parse_name(name, SUFFIX).ok_or_else(|| SegmentError::Unexpected {
                    name: name.to_owned(),
                })?;
                // The name must be directly under the segments prefix.
                if meta.location != dir.clone().join(object_name(seq, SUFFIX)) {
                    return Err(SegmentError::Unexpected {
                        name: meta.location.to_string(),
                    });
                }
                seqs.push(seq);
            }
            Ok(seqs)
        })?;
        seqs.sort_unstable();
        for (expected, &seq) in (0u64..).zip(&seqs) {
            if seq != expected {
                return Err(SegmentError::Missing { seq: expected });
            }
        }
        let count = seqs.len() as u64;
        let start = self.load_snapshot(count)?;
        let objects = Arc::clone(&self.objects);
        let paths: Vec<(u64, Path)> = (start..count).map(|s| (s, self.path(s))).collect();
        let (tx, rx) = std::sync::mpsc::sync_channel(OPEN_FETCHES);
        let rt = self.runtime.as_ref().ok_or(SegmentError::Runtime)?;
        rt.spawn(async move {
            let mut fetches = futures_util::stream::iter(paths)
                .map(|(seq, path)| {
                    let objects = Arc::clone(&objects);
                    async move {
                        let bytes = objects.get(&path).await?.bytes().await?;
                        Ok::<_, SegmentError>((seq, bytes))
                    }
                })
                .buffered(OPEN_FETCHES);
            while let Some(fetched) = fetches.next().await {
                let failed = fetched.is_err();
                if tx.send(fetched).is_err() || failed {
                    return;
                }
            }
        });
        let mut index = self.index.write().unwrap_or_else(PoisonError::into_inner);
        let mut cache = self.cache();
        for _ in start..count {
            let (seq, bytes) = rx.recv().map_err(|_| SegmentError::Runtime)??;
            for put in decode(seq, &bytes)? {
                let (start, end) = (put.offset as usize, put.offset as usize + put.len as usize);
                let loc = Loc {
                    seq,
                    offset: put.offset,
                    len: put.len,
                };
                index.apply(put.space, put.key, loc, || bytes[start..end].to_vec());
            }
            cache.insert(seq, bytes);
        }
        Ok((count, start))
    }

    /// Loads the newest snapshot of at most `count` segments that decodes
    /// into the index; returns how many segments it covers (0 for none).
    fn load_snapshot(&self, count: u64) -> Result<u64, SegmentError> {
        let objects = Arc::clone(&self.objects);
        let dir = self.snapshots.clone();
        let mut ends = self.run(async move {
            let metas: Vec<_> = objects.list(Some(&dir)).try_collect().await?;
            Ok(metas
                .iter()
                .filter_map(|m| {
                    m.location
                        .filename()
                        .and_then(|n| parse_name(n, SNAP_SUFFIX))
                })
                .collect::<Vec<u64>>())
        })?;
        ends.sort_unstable_by(|a, b| b.cmp(a));
        for end in ends.into_iter().filter(|&e| e > 0 && e <= count) {
            let objects = Arc::clone(&self.objects);
            let path = self.snapshot_path(end);
            let bytes = self.run(async move { Ok(objects.get(&path).await?.bytes().await?) });
            match bytes.map(|b| decode_snapshot(end, &b)) {
                Ok(Ok(index)) => {
                    *self.index.write().unwrap_or_else(PoisonError::into_inner) = index;
                    return Ok(end);
                }
                Ok(Err(reason)) => {
                    tracing::warn!(end, reason, "passing over a snapshot of the log's index");
                }
                Err(e) => {
                    tracing::warn!(end, error = %e, "passing over a snapshot of the log's index");
                }
            }
        }
        Ok(0)
    }

    /// Writes the snapshot of the first `end` segments in the background;
    /// called with the writer locked, so the index is theirs exactly.
    fn snapshot(&self, end: u64) {
        let bytes = {
            let index = self.index.read().unwrap_or_else(PoisonError::into_inner);
            encode_snapshot(end, &index)
        };
        let Some(rt) = self.runtime.as_ref() else {
            return;
        };
        let objects = Arc::clone(&self.objects);
        let path = self.snapshot_path(end);
        rt.spawn(async move {
            let opts = PutOptions::from(PutMode::Create);
            match objects.put_opts(&path, bytes.into(), opts).await {
                Ok(_) | Err(object_store::Error::AlreadyExists { .. }) => {}
                Err(e) => {
                    tracing::warn!(end, error = %e, "a snapshot of the log's index was not written")
                }
            }
        });
    }

    fn segment(&self, seq: u64) -> Result<Bytes, SegmentError> {
        if let Some(s) = self.cache().get(seq) {
            return Ok(s);
        }
        let objects = Arc::clone(&self.objects);
        let path = self.path(seq);
        let bytes = self.run(async move { Ok(objects.get(&path).await?.bytes().await?) })?;
        // Checked again: the object could have been replaced since open.
        check_segment(seq, &bytes)?;
        self.cache().insert(seq, bytes.clone());
        Ok(bytes)
    }

    fn value(&self, loc: Loc) -> Result<Vec<u8>, SegmentError> {
        Ok(slice(&self.segment(loc.seq)?, loc)?.to_vec())
    }

    fn commit_segment(&self, batch: WriteBatch) -> Result<(), SegmentError> {
        let mut writer = self.writer();
        if let Some(stopped) = writer.stopped {
            return Err(stopped.error());
        }
        if batch.is_empty() {
            return Ok(());
        }
        let seq = writer.next_seq;
        let (bytes, locs) = encode(seq, &batch.puts)?;
        let bytes = Bytes::from(bytes);
        let objects = Arc::clone(&self.objects);
        let path = self.path(seq);
        let payload = PutPayload::from_bytes(bytes.clone());
        let put = self.run(async move {
            let opts = PutOptions::from(PutMode::Create);
            objects.put_opts(&path, payload, opts).await?;
            Ok(())
        });
        if let Err(e) = put {
            let (stopped, e) = match e {
                SegmentError::Objects(object_store::Error::AlreadyExists { .. }) => {
                    let fenced = Stopped::Fenced { seq };
                    (fenced, fenced.error())
                }
                other => (Stopped::Failed, other),
            };
            writer.stopped = Some(stopped);
            return Err(e);
        }
        {
            let mut index = self.index.write().unwrap_or_else(PoisonError::into_inner);
            for ((space, k, v), loc) in batch.puts.into_iter().zip(locs) {
                index.apply(space, k, loc, || v);
            }
        }
        self.cache().insert(seq, bytes);
        writer.next_seq = seq + 1;
        // The interval grows with the log (an eighth of it at least), so
        // the snapshots written add up to a few times the final index, and
        // an open reads at most about an eighth of the segments.
        let since = writer.next_seq - writer.last_snapshot;
        if self.snapshot_every > 0 && since >= self.snapshot_every.max(writer.last_snapshot / 8) {
            writer.last_snapshot = writer.next_seq;
            self.snapshot(writer.next_seq);
        }
        Ok(())
    }
}

impl Store for SegmentStore {
    fn backend(&self) -> &'static str {
        BACKEND
    }

    fn commit(&self, batch: WriteBatch, _sync: bool) -> Result<(), StoreError> {
        Ok(self.commit_segment(batch)?)
    }

    fn get(&self, space: Space, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let index = self.index.read().unwrap_or_else(PoisonError::into_inner);
        if space != Space::Log {
            return Ok(index.space(space).get(key).cloned());
        }
        let Some(&loc) = index.log.get(key) else {
            return Ok(None);
        };
        drop(index);
        Ok(Some(self.value(loc)?))
    }

    fn scan(
        &self,
        space: Space,
        start: &[u8],
        end: Option<&[u8]>,
        reverse: bool,
        visit: &mut dyn FnMut(&[u8], &[u8]) -> Visit,
    ) -> Result<(), StoreError> {
        // Segment reads, like `visit`, run without the index locked.
        let chunk = |range: KeyRange, n: usize| -> Vec<(Vec<u8>, Found)> {
            let index = self.index.read().unwrap_or_else(PoisonError::into_inner);
            if space == Space::Log {
                let entries = index.log.range(range);
                let take = |(k, l): (&Vec<u8>, &Loc)| (k.clone(), Found::At(*l));
                if reverse {
                    entries.rev().take(n).map(take).collect()
                } else {
                    entries.take(n).map(take).collect()
                }
            } else {
                let entries = index.space(space).range(range);
                let take = |(k, v): (&Vec<u8>, &Vec<u8>)| (k.clone(), Found::Value(v.clone()));
                if reverse {
                    entries.rev().take(n).map(take).collect()
                } else {
                    entries.take(n).map(take).collect()
                }
            }
        };
        // Consecutive records share a segment: it is looked up once.
        let mut current: Option<(u64, Bytes)> = None;
        scan_in_chunks(start, end, reverse, chunk, |k, found| match found {
            Found::Value(v) => Ok(visit(k, &v)),
            Found::At(loc) => {
                let segment = match current.take() {
                    Some((seq, segment)) if seq == loc.seq => segment,
                    _ => self.segment(loc.seq)?,
                };
                let seen = visit(k, slice(&segment, loc)?);
                current = Some((loc.seq, segment));
                Ok(seen)
            }
        })
    }

    fn sync(&self) -> Result<(), StoreError> {
        // Every commit is durable when it returns.
        match self.writer().stopped {
            Some(stopped) => Err(stopped.error().into()),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn puts() -> Vec<(Space, Vec<u8>, Vec<u8>)> {
        vec![
            (Space::Log, 7u64.to_be_bytes().to_vec(), b"frame".to_vec()),
            (
                Space::EventIds,
                b"acme\0id".to_vec(),
                7u64.to_be_bytes().to_vec(),
            ),
            (Space::Streams, b"acme\0s\0v".to_vec(), vec![]),
            (Space::Tenants, b"acme".to_vec(), b"head".to_vec()),
        ]
    }

    #[test]
    fn a_segment_decodes_to_the_puts_it_was_encoded_from() {
        let puts = puts();
        let (bytes, locs) = encode(3, &puts).unwrap();
        let decoded = decode(3, &bytes).unwrap();
        assert_eq!(decoded.len(), puts.len());
        for ((d, (space, k, v)), loc) in decoded.iter().zip(&puts).zip(&locs) {
            assert_eq!((d.space, &d.key), (*space, k));
            assert_eq!((d.offset, d.len), (loc.offset, loc.len));
            let at = d.offset as usize;
            assert_eq!(&bytes[at..at + d.len as usize], v.as_slice());
        }
    }

    #[test]
    fn every_flipped_byte_and_every_truncation_is_refused_without_a_panic() {
        let (bytes, _) = encode(3, &puts()).unwrap();
        for i in 0..bytes.len() {
            let mut b = bytes.clone();
            b[i] ^= 0x01;
            assert!(
                matches!(decode(3, &b), Err(SegmentError::Corrupt { seq: 3, .. })),
                "flip at {i}"
            );
            assert!(decode(3, &bytes[..i]).is_err(), "truncated to {i}");
        }
        let err = decode(4, &bytes).unwrap_err().to_string();
        assert!(err.contains("its number differs from its name"), "{err}");
    }

    #[test]
    fn a_snapshot_reads_back_its_index_and_refuses_every_flipped_byte_and_truncation() {
        let mut index = Index::default();
        let (bytes, locs) = encode(0, &puts()).unwrap();
        for (put, loc) in decode(0, &bytes).unwrap().into_iter().zip(locs) {
            let (at, len) = (put.offset as usize, put.len as usize);
            index.apply(put.space, put.key, loc, || bytes[at..at + len].to_vec());
        }
        let snap = encode_snapshot(1, &index);
        let back = decode_snapshot(1, &snap).unwrap();
        assert_eq!(back.log, index.log);
        assert_eq!(back.spaces, index.spaces);
        assert!(decode_snapshot(2, &snap).is_err(), "another end");
        for i in 0..snap.len() {
            let mut b = snap.clone();
            b[i] ^= 0x01;
            assert!(decode_snapshot(1, &b).is_err(), "flip at {i}");
            assert!(decode_snapshot(1, &snap[..i]).is_err(), "truncated to {i}");
        }
    }

    #[test]
    fn segment_names_are_twenty_digits_and_nothing_else_parses() {
        assert_eq!(object_name(42, SUFFIX), "00000000000000000042.seg");
        assert_eq!(
            parse_name(&object_name(u64::MAX, SUFFIX), SUFFIX),
            Some(u64::MAX)
        );
        assert_eq!(
            parse_name(&object_name(7, SNAP_SUFFIX), SNAP_SUFFIX),
            Some(7)
        );
        assert_eq!(parse_name(&object_name(7, SNAP_SUFFIX), SUFFIX), None);
        for bad in [
            "42.seg",
            "0000000000000000004x.seg",
            "00000000000000000042",
            "00000000000000000042.seg.tmp",
        ] {
            assert_eq!(parse_name(bad, SUFFIX), None, "{bad}");
        }
    }

    #[test]
    fn s3_urls_name_a_bucket_and_an_optional_prefix() {
        assert_eq!(parse_s3_url("s3://logs").unwrap(), ("logs", ""));
        assert_eq!(
            parse_s3_url("s3://logs/eu/ledger/").unwrap(),
            ("logs", "eu/ledger")
        );
        for bad in [
            "logs",
            "s3://",
            "s3://Logs",
            "s3://logs//x",
            "s3://logs/x?y",
            "file:///tmp",
        ] {
            let err = parse_s3_url(bad).unwrap_err().to_string();
            assert!(err.contains("expected s3://BUCKET"), "{bad}: {err}");
        }
    }

    #[test]
    fn aws_regions_named_eu_outside_the_eu_are_placed_where_they_are() {
        assert_eq!(aws_region_country("eu-central-1"), Some("DE"));
        assert_eq!(aws_region_country("eu-west-1"), Some("IE"));
        assert_eq!(aws_region_country("eu-west-2"), Some("GB"));
        assert_eq!(aws_region_country("eu-central-2"), Some("CH"));
        assert_eq!(aws_region_country("us-east-1"), Some("US"));
        assert_eq!(aws_region_country("eu-nowhere-9"), None);
    }

    #[test]
    fn the_cache_keeps_within_its_bound_and_evicts_the_oldest_first() {
        let mut c = Cache {
            limit: 10,
            ..Cache::default()
        };
        c.insert(1, Bytes::from_static(b"aaaa"));
        c.insert(2, Bytes::from_static(b"bbbb"));
        c.insert(3, Bytes::from_static(b"cccc"));
        assert!(c.bytes <= 10);
        assert!(c.get(1).is_none());
        assert_eq!(c.get(3).as_deref(), Some(&b"cccc"[..]));
        c.insert(4, Bytes::from_static(b"larger than the bound"));
        assert!(c.get(4).is_none());
    }
}
