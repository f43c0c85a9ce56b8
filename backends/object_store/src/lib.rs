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
//!   segments since the last one reach that many and an eighth of the log.
//!   Opening loads the newest snapshot that decodes and reads only the
//!   segments after it, so a restart does not read the whole log again. A
//!   snapshot is a cache of what the segments say: it is written in the
//!   background after the commit that fills its last segment, a failed or
//!   missing one costs only time, and one that does not decode is passed
//!   over (with a warning) for an older one or for the segments themselves.
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
//! # Where the code is
//!
//! - `segment`: the segment format (its byte layout is documented there),
//!   encoded on commit and decoded on open and on every read.
//! - `snapshot`: the snapshot format (its byte layout likewise).
//! - `frame`: what both share, their names and their frame (magic,
//!   version, number, trailing hash).
//! - `index`: the in-memory index; `cache`: the cache of whole segments.
//! - `store`: [`SegmentStore`] and [`SegmentStoreBuilder`]: opening,
//!   fenced commits, poisoning, and the log's [`Store`] trait.
//! - `s3`: [`S3Target`], [`aws_region_country`] and [`parse_s3_url`].
//! - `error`: [`SegmentError`].
//!
//! [`WriteBatch`]: mailledger_core::WriteBatch
//! [`Store`]: mailledger_core::Store
//! [`PutMode::Create`]: object_store::PutMode::Create
//! [`LocalFileSystem::with_fsync`]: object_store::local::LocalFileSystem::with_fsync

#[cfg(feature = "test-util")]
pub mod testing;

mod cache;
mod error;
mod frame;
mod index;
mod s3;
mod segment;
mod snapshot;
mod store;

pub use error::SegmentError;
pub use s3::{S3Target, aws_region_country, parse_s3_url};
pub use segment::SEGMENT_FORMAT;
pub use store::{SegmentStore, SegmentStoreBuilder};

/// The backend's name in a [`StoreError`](mailledger_core::StoreError).
const BACKEND: &str = "object_store";
