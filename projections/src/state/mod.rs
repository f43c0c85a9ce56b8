//! Where a projection keeps its state: an ordered key-value store with
//! atomic batches ([`StateStore`]), in fjall ([`FjallState`], the default)
//! or in memory ([`MemoryState`], for tests), and the write overlay a batch
//! of events is applied through ([`Tx`]).
//!
//! A projection's checkpoint is a key of the same store ([`CHECKPOINT_KEY`]:
//! the position of the first event not yet applied, 8 big-endian bytes) and
//! is written in the same atomic batch as the state it covers, so after any
//! crash the state is exactly that of the events before the checkpoint. So
//! is the version of the state's layout ([`FORMAT_KEY`]: 4 big-endian
//! bytes).

mod checkpoint;
mod fjall;
mod memory;
mod sort;
mod tx;

pub use checkpoint::{CHECKPOINT_KEY, FORMAT_KEY, checkpoint, stamp_format};
pub use fjall::FjallState;
pub use memory::MemoryState;
pub use tx::{Frozen, Tx};

use mailledger_core::Visit;

use crate::error::Result;

/// One write of a batch: a value, or `None` to delete the key.
pub type Write = (Vec<u8>, Option<Vec<u8>>);

/// One write of a batch, borrowed: a value, or `None` to delete the key.
pub type WriteRef<'a> = (&'a [u8], Option<&'a [u8]>);

/// An ordered key-value store with atomic batches.
pub trait StateStore: Send + Sync + 'static {
    /// The value of `key`, if any.
    ///
    /// # Errors
    /// A storage failure.
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>>;

    /// Visits the pairs with `start <= key < end` in key order (descending
    /// when `reverse`), until `visit` returns false.
    ///
    /// # Errors
    /// A storage failure.
    fn scan(
        &self,
        start: &[u8],
        end: &[u8],
        reverse: bool,
        visit: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<()>;

    /// Applies every write at once: after a crash either all of them are
    /// visible or none is. Not synced: projection state is derived data, and
    /// a lost tail is re-applied from the log.
    ///
    /// # Errors
    /// A storage failure; then none of the writes happened.
    fn commit(&self, writes: Vec<Write>) -> Result<()>;

    /// [`StateStore::commit`] for a large batch, as a rebuild writes: the
    /// same atomicity, by whatever path loads many keys fastest (fjall:
    /// sorted ingestion into new tables, bypassing the memtable).
    ///
    /// `writes` are sorted by key, one per key ([`Frozen::sorted`]).
    ///
    /// # Errors
    /// A storage failure; then none of the writes happened.
    fn commit_bulk(&self, writes: &[WriteRef<'_>]) -> Result<()> {
        self.commit(
            writes
                .iter()
                .map(|(k, v)| (k.to_vec(), v.map(<[u8]>::to_vec)))
                .collect(),
        )
    }

    /// Makes committed writes durable.
    ///
    /// # Errors
    /// A storage failure.
    fn flush(&self) -> Result<()>;
}

/// Feeds `visit` the pairs of `iter`, backwards when `reverse`, until it
/// returns false.
fn drive<K: AsRef<[u8]>, V: AsRef<[u8]>>(
    iter: impl DoubleEndedIterator<Item = Result<(K, V)>>,
    reverse: bool,
    visit: &mut dyn FnMut(&[u8], &[u8]) -> bool,
) -> Result<()> {
    mailledger_core::scan_iter(iter, reverse, |item: Result<(K, V)>| {
        let (k, v) = item?;
        Ok(if visit(k.as_ref(), v.as_ref()) {
            Visit::Continue
        } else {
            Visit::Stop
        })
    })
}
