//! The process's one memory budget (`--memory-budget`, default 1 GiB) and
//! how it is shared among the parts that hold memory of their own.
//!
//! | part | share of the budget |
//! |---|---|
//! | the log's store: fjall's block cache / memtables, or sled's page cache, or the segment cache | 2/32 + 7/32 |
//! | the projections' stores (three live, one quarter for a rebuild's) | 8/32 |
//! | the log writer's cache of stream versions | 2/32 |
//! | the key store's cache of unwrapped contact keys | 2/32 |
//! | memory freed and not yet returned by the allocator; the pinned filters of fjall's first levels in randomly keyed keyspaces (bounded by that level's 16 tables); everything else: requests in flight, the runtimes, the segment index | the last 11/32 |
//!
//! The stores hold to their shares (fjall's memtables through the
//! backend's keeper and a commit's wait for room, see
//! `mailledger_fjall::MemoryShare`), and the two caches count entries of
//! a known largest size; the last 11/32 is what is left, not a limit
//! anyone enforces. It is that large because the allocator keeps memory
//! freed by flushed memtables and evicted blocks for a while before it
//! gives it back: under sustained ingest that was 90 to 170 MiB of a
//! 1 GiB process (`benches/RESULTS.md`), and a plan that left it out was
//! over its budget by as much. The first levels' pinned filters took a
//! thirty-second from the log's memtables: with them the peak of a
//! 20-minute run came within 34 MiB of the budget.

use anyhow::{Result, bail};
use mailledger_core::LedgerConfig;
use mailledger_fjall::MemoryShare;

/// The budget when none is given.
pub const DEFAULT_BUDGET: &str = "1GiB";

/// The least budget accepted: below it the stores' shares fall under
/// their minimums.
pub const MIN_BUDGET: u64 = 256 << 20;

/// The most one entry of the stream-version cache takes.
const STREAM_CACHE_ENTRY_BYTES: u64 = LedgerConfig::STREAM_CACHE_ENTRY_BYTES as u64;

/// The most one entry of the key store's cache takes.
const KEY_CACHE_ENTRY_BYTES: u64 = mailledger_core::keys::KEY_CACHE_ENTRY_BYTES as u64;

/// The budget split into the parts' shares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryPlan {
    budget: u64,
    log_cache: u64,
    log_write_buffer: u64,
}

impl MemoryPlan {
    /// Splits `budget` bytes.
    ///
    /// # Errors
    /// When it is below [`MIN_BUDGET`].
    pub fn new(budget: u64) -> Result<Self> {
        if budget < MIN_BUDGET {
            bail!(
                "--memory-budget {budget} bytes is below the least, {} MiB",
                MIN_BUDGET >> 20
            );
        }
        Ok(Self {
            budget,
            log_cache: budget / 32 * 2,
            log_write_buffer: budget / 32 * 7,
        })
    }

    /// Parses and splits a budget such as `1GiB`, `512MiB` or `1073741824`.
    ///
    /// # Errors
    /// When it is not a size, or below [`MIN_BUDGET`].
    pub fn parse(text: &str) -> Result<Self> {
        Self::new(parse_bytes(text)?)
    }

    /// The whole budget, in bytes.
    pub fn budget(&self) -> u64 {
        self.budget
    }

    /// The log's fjall database: its cache and memtables.
    pub fn log_fjall(&self) -> MemoryShare {
        MemoryShare::new(self.log_cache, self.log_write_buffer)
    }

    /// The log's whole share in one cache, for a backend with one: sled's
    /// page cache, the segment store's cache of segments.
    pub fn log_cache_bytes(&self) -> u64 {
        self.log_cache + self.log_write_buffer
    }

    /// The projections' stores, together.
    pub fn projections(&self) -> MemoryShare {
        let share = self.budget / 32 * 8;
        // A fifth of it for caches, the rest for memtables.
        MemoryShare::new(share / 5, share - share / 5)
    }

    /// How many stream versions the log writer may keep.
    pub fn stream_cache_entries(&self) -> usize {
        usize::try_from(self.budget / 16 / STREAM_CACHE_ENTRY_BYTES).unwrap_or(usize::MAX)
    }

    /// How many unwrapped contact keys the key store may keep.
    pub fn key_cache_entries(&self) -> usize {
        usize::try_from(self.budget / 16 / KEY_CACHE_ENTRY_BYTES).unwrap_or(usize::MAX)
    }

    /// This plan with the log's share split between `n` logs open at once
    /// (a migration's source and target).
    pub fn logs(self, n: u64) -> Self {
        let n = n.max(1);
        Self {
            log_cache: self.log_cache / n,
            log_write_buffer: self.log_write_buffer / n,
            ..self
        }
    }
}

/// Parses a size in bytes: digits with an optional unit, `B`, `KiB`,
/// `MiB`, `GiB` or `TiB` (case and a space before the unit do not
/// matter).
///
/// # Errors
/// When it is not such a size, or does not fit in 64 bits.
pub fn parse_bytes(text: &str) -> Result<u64> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    let shift = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "kib" => 10,
        "mib" => 20,
        "gib" => 30,
        "tib" => 40,
        _ => bail!("{text:?} is not a size: use bytes, or a number with KiB, MiB, GiB or TiB"),
    };
    let n: u64 = digits
        .parse()
        .map_err(|_| anyhow::anyhow!("{text:?} is not a size: it starts with no number"))?;
    n.checked_mul(1 << shift)
        .ok_or_else(|| anyhow::anyhow!("{text:?} is too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_with_binary_units_and_bad_ones_are_refused() {
        assert_eq!(parse_bytes("1GiB").unwrap(), 1 << 30);
        assert_eq!(parse_bytes("512 mib").unwrap(), 512 << 20);
        assert_eq!(parse_bytes("4096").unwrap(), 4096);
        assert_eq!(parse_bytes("7B").unwrap(), 7);
        for bad in [
            "",
            "GiB",
            "1GB",
            "1.5GiB",
            "-1",
            "99999999999TiB",
            "1 GiB x",
        ] {
            assert!(parse_bytes(bad).is_err(), "{bad:?} was read");
        }
    }

    #[test]
    fn the_shares_stay_within_the_budget() {
        for budget in [MIN_BUDGET, 1 << 30, 3 << 30, (16 << 30) + 12_345] {
            let plan = MemoryPlan::new(budget).unwrap();
            let log = plan.log_fjall();
            let projections = plan.projections();
            let streams = plan.stream_cache_entries() as u64 * STREAM_CACHE_ENTRY_BYTES;
            let keys = plan.key_cache_entries() as u64 * KEY_CACHE_ENTRY_BYTES;
            let stores = log.cache_bytes()
                + log.write_buffer_bytes()
                + projections.cache_bytes()
                + projections.write_buffer_bytes();
            assert_eq!(
                plan.log_cache_bytes(),
                log.cache_bytes() + log.write_buffer_bytes()
            );
            // 11/32 is left for the allocator's slack, pinned filters and
            // everything else.
            assert!(
                stores + streams + keys <= budget - budget / 32 * 11,
                "{budget}: the stores take {stores}, the stream cache {streams}, the key cache {keys}"
            );
            let two = plan.logs(2);
            assert!(two.log_cache_bytes() * 2 <= plan.log_cache_bytes());
        }
        assert!(MemoryPlan::new(MIN_BUDGET - 1).is_err());
        // The default budget keeps the streams in flight of the traffic model
        // (about 400,000: messages opened up to hours after their send, and
        // their contacts) several times over.
        assert!(MemoryPlan::parse("1GiB").unwrap().stream_cache_entries() > 1_600_000);
        // And the keys of the model's 200,000 contacts, with room to spare.
        assert!(MemoryPlan::parse("1GiB").unwrap().key_cache_entries() > 350_000);
    }
}
