//! The settings of a [`Ledger`](super::Ledger).

use crate::codec::{self, RecordFields};
use crate::error::{Error, Result};
use crate::record::Hash;
use crate::residency::Jurisdiction;
use crate::threads::ThreadHook;

/// How far an append has gone when it returns.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Durability {
    /// On stable storage (fsync): survives power loss. The default.
    #[default]
    Sync,
    /// Handed to the operating system: survives a crash of the process, but
    /// the last moments of appends may be lost on power loss or a kernel crash.
    Buffered,
}

impl std::str::FromStr for Durability {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "sync" => Ok(Self::Sync),
            "buffered" => Ok(Self::Buffered),
            _ => Err(Error::invalid("durability must be `sync` or `buffered`")),
        }
    }
}

/// Settings of a [`Ledger`](crate::Ledger).
#[derive(Debug, Clone)]
pub struct LedgerConfig {
    durability: Durability,
    max_group_records: usize,
    stream_cache_entries: usize,
    jurisdiction: Jurisdiction,
    thread_hook: ThreadHook,
    #[cfg(test)]
    format_v1: bool,
}

impl Default for LedgerConfig {
    fn default() -> Self {
        Self {
            durability: Durability::Sync,
            max_group_records: 32_768,
            stream_cache_entries: 1 << 20,
            jurisdiction: Jurisdiction::DEFAULT,
            thread_hook: ThreadHook::default(),
            #[cfg(test)]
            format_v1: false,
        }
    }
}

impl LedgerConfig {
    /// The most memory one cached stream version takes, for sizing
    /// [`LedgerConfig::stream_cache_entries`] from a budget.
    pub const STREAM_CACHE_ENTRY_BYTES: usize = super::versions::ENTRY_BYTES;

    /// Defaults: `sync` durability, groups of at most 32,768 records,
    /// a cache of 1,048,576 stream versions, records stamped `EU`.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// When an append returns. Default: [`Durability::Sync`].
    #[must_use]
    pub fn durability(mut self, durability: Durability) -> Self {
        self.durability = durability;
        self
    }

    /// The most records one group commit takes. Default: 32,768. An append
    /// larger than this still goes in whole, in a group of its own.
    #[must_use]
    pub fn max_group_records(mut self, n: usize) -> Self {
        self.max_group_records = n.max(1);
        self
    }

    /// How many stream versions the writer keeps in memory, in two
    /// generations: past half of it, the younger becomes the older and the
    /// older is dropped, keeping what was used since. Each takes at most
    /// [`LedgerConfig::STREAM_CACHE_ENTRY_BYTES`]. Default: 1,048,576.
    #[must_use]
    pub fn stream_cache_entries(mut self, n: usize) -> Self {
        self.stream_cache_entries = n.max(1);
        self
    }

    /// The jurisdiction this node declares, written into every record it
    /// appends ([`Record::jurisdiction`](crate::Record::jurisdiction), inside the hashed bytes), so each
    /// record carries where it was written. Default: [`Jurisdiction::DEFAULT`]
    /// (the EU). Which jurisdictions a node may declare is the caller's
    /// check ([`crate::residency`]).
    #[must_use]
    pub fn jurisdiction(mut self, jurisdiction: Jurisdiction) -> Self {
        self.jurisdiction = jurisdiction;
        self
    }

    /// Runs `hook` first on each thread the log starts (its writer and its
    /// committer), for a caller's own thread policy. Default: none; the log
    /// sets no priority of its own.
    #[must_use]
    pub fn thread_hook(mut self, hook: ThreadHook) -> Self {
        self.thread_hook = hook;
        self
    }

    /// Writes frames of format 1, without the jurisdiction, as builds
    /// before format 2 did: for tests of logs that hold both.
    #[cfg(test)]
    pub(super) fn format_v1(mut self) -> Self {
        self.format_v1 = true;
        self
    }

    /// Encodes a record the way this log writes it.
    pub(super) fn encode(&self, fields: &RecordFields<'_>) -> Result<(Vec<u8>, Hash)> {
        #[cfg(test)]
        if self.format_v1 {
            return codec::encode_v1(fields).map_err(|e| Error::invalid(e.to_string()));
        }
        codec::encode(fields).map_err(|e| Error::invalid(e.to_string()))
    }
}

/// What the log's own modules read of its settings.
impl LedgerConfig {
    pub(super) fn durability_of(&self) -> Durability {
        self.durability
    }
    pub(super) fn max_group(&self) -> usize {
        self.max_group_records
    }
    pub(super) fn stream_cache(&self) -> usize {
        self.stream_cache_entries
    }
    pub(super) fn node_jurisdiction(&self) -> Jurisdiction {
        self.jurisdiction
    }
    pub(super) fn hook(&self) -> &ThreadHook {
        &self.thread_hook
    }
}
