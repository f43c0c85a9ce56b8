//! The log engine: turns any [`Store`] into an [`EventLog`].
//!
//! One writer thread owns sequencing. Appends queue to it; it takes every
//! append waiting (up to [`LedgerConfig::max_group_records`]), checks each
//! against the stream versions and the event-id index, assigns positions,
//! chains hashes per tenant, and hands the whole group to a committer
//! thread, which writes it as one atomic store batch followed by one sync:
//! group commit, where no append waits longer than the sync in flight
//! before it plus its own. Only then does the committer publish the new
//! head and answer the callers, so reads never see a record that is not
//! yet acknowledged.
//!
//! The two threads form a pipeline: the writer prepares the next group
//! while the committer writes the previous one (at most one group is in
//! flight), so preparing and committing overlap instead of adding up. The
//! writer prepares on top of the group in flight: it checks event ids and
//! stream versions against that group's too, and a group that only repeats
//! ids of the group in flight is answered after that group is durable. A
//! failed commit poisons the log, and every group prepared on top of it is
//! answered with an error, never written.
//!
//!
//! The pieces, each in its own module: [`config`] (settings), [`keys`]
//! (the byte layout of the index spaces), [`recover`] (opening: the tail
//! check and the chain heads), [`writer`] and [`stage`] (sequencing a
//! group), [`commit`] (the committer), [`read`] (reads and subscriptions)
//! and [`verify`] (the chain check).

mod by_tenant;
mod commit;
mod config;
mod keys;
#[cfg(test)]
mod layout_tests;
mod read;
mod recover;
mod stage;
#[cfg(test)]
mod tests;
mod verify;
mod versions;
mod writer;

use std::collections::BTreeMap;
use std::ops::Range;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError, mpsc};
use std::thread;

use async_trait::async_trait;
use tokio::sync::{oneshot, watch};
use uuid::Uuid;

use crate::error::{Error, Result};
use crate::log::{
    ChainHead, EventLog, FrameBatch, ProgressFn, ReadBatch, Subscription, VerifyReport,
};
use crate::record::{AppendOutcome, Direction, Record, StreamAppend, TenantFilter};
use crate::store::{Space, Store};
use crate::threads::ThreadRole;

pub use config::{Durability, LedgerConfig};
use keys::{stream_key, stream_position};
use read::{SourceHandle, last_version};
use writer::Writer;

/// An [`EventLog`] over a [`Store`].
pub struct Ledger<S: Store> {
    shared: Arc<Shared<S>>,
    sender: Mutex<Option<mpsc::Sender<Job>>>,
    writer: Mutex<Option<thread::JoinHandle<()>>>,
}

impl<S: Store> std::fmt::Debug for Ledger<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ledger")
            .field("backend", &self.shared.store.backend())
            .field("head", &*self.shared.head.borrow())
            .finish_non_exhaustive()
    }
}

pub(super) struct Shared<S> {
    pub(super) store: S,
    pub(super) head: watch::Sender<u64>,
    pub(super) closed: AtomicBool,
    pub(super) poisoned: AtomicBool,
    pub(super) durability: Durability,
}

pub(super) struct Job {
    pub(super) tenant: String,
    pub(super) streams: Vec<StreamAppend>,
    pub(super) reply: oneshot::Sender<Result<Vec<AppendOutcome>>>,
}

impl<S: Store> Ledger<S> {
    /// Opens the log kept in `store`, checking its tail and its chain heads.
    ///
    /// # Errors
    /// [`Error::Corrupt`] naming the position when the last records or a
    /// chain head fail their checks; a storage error.
    pub fn open(store: S, config: LedgerConfig) -> Result<Self> {
        let (head, last_recorded) = recover::check_tail(&store)?;
        let unstamped = recover::check_layout(&store, head)?;
        let tenants = recover::load_tenants(&store, head)?;
        let shared = Arc::new(Shared {
            store,
            head: watch::Sender::new(head),
            closed: AtomicBool::new(false),
            poisoned: AtomicBool::new(false),
            durability: config.durability_of(),
        });
        let (tx, rx) = mpsc::channel();
        let mut writer = Writer::new(Arc::clone(&shared), head, last_recorded, tenants, config);
        writer.unstamped = unstamped;
        let handle = thread::Builder::new()
            .name("mailledger-writer".into())
            .spawn(move || {
                writer.thread_hook().run(ThreadRole::LogWriter);
                writer.run(&rx);
            })
            .map_err(|e| Error::Storage(crate::StoreError::new("ledger", e)))?;
        Ok(Self {
            shared,
            sender: Mutex::new(Some(tx)),
            writer: Mutex::new(Some(handle)),
        })
    }

    /// The store underneath, for tools and tests that work on it directly.
    pub fn store(&self) -> &S {
        &self.shared.store
    }

    /// Stops accepting appends, lets queued appends finish, and waits for
    /// the writer to stop. Subscriptions then end with [`Error::Closed`].
    /// Dropping the ledger does the same.
    pub fn close(&self) {
        let sender = self
            .sender
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        drop(sender);
        let handle = self
            .writer
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(handle) = handle {
            let _ = handle.join();
        }
        self.shared.closed.store(true, Ordering::SeqCst);
        self.shared.head.send_modify(|_| {});
    }

    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Shared<S>) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let shared = Arc::clone(&self.shared);
        crate::blocking::run(move || f(&shared)).await
    }
}

impl<S: Store> Drop for Ledger<S> {
    fn drop(&mut self) {
        self.close();
    }
}

#[async_trait]
impl<S: Store> EventLog for Ledger<S> {
    fn backend(&self) -> &'static str {
        self.shared.store.backend()
    }

    async fn append(&self, tenant: &str, streams: Vec<StreamAppend>) -> Result<Vec<AppendOutcome>> {
        let (reply, rx) = oneshot::channel();
        let job = Job {
            tenant: tenant.to_owned(),
            streams,
            reply,
        };
        {
            let sender = self.sender.lock().unwrap_or_else(PoisonError::into_inner);
            let sender = sender.as_ref().ok_or(Error::Closed)?;
            sender.send(job).map_err(|_| Error::Closed)?;
        }
        rx.await.map_err(|_| Error::Closed)?
    }

    async fn read_stream(
        &self,
        tenant: &str,
        stream: &str,
        from_version: u64,
        max: usize,
    ) -> Result<Vec<Record>> {
        let (tenant, stream) = (tenant.to_owned(), stream.to_owned());
        self.blocking(move |s| s.read_stream(&tenant, &stream, from_version, max))
            .await
    }

    async fn read_positions(&self, tenant: &str, positions: Vec<u64>) -> Result<Vec<Record>> {
        let tenant = tenant.to_owned();
        self.blocking(move |s| s.read_positions(&tenant, &positions))
            .await
    }

    async fn first_positions(&self, streams: Vec<(String, String)>) -> Result<Vec<Option<u64>>> {
        self.blocking(move |s| {
            streams
                .iter()
                .map(|(tenant, stream)| s.first_position(tenant, stream))
                .collect()
        })
        .await
    }

    async fn stream_version(&self, tenant: &str, stream: &str) -> Result<Option<u64>> {
        let (tenant, stream) = (tenant.to_owned(), stream.to_owned());
        self.blocking(move |s| {
            let head = s.published_head();
            // An unacknowledged tail is not yet the stream's: step back over it.
            // A name whose hash another stream holds has no events.
            let mut v = last_version(&s.store, &tenant, &stream)?.flatten();
            while let Some(n) = v {
                let p = s
                    .store
                    .get(Space::Streams, &stream_key(&tenant, &stream, n))?;
                if p.as_deref()
                    .and_then(stream_position)
                    .is_some_and(|p| p < head)
                {
                    break;
                }
                v = n.checked_sub(1);
            }
            Ok(v)
        })
        .await
    }

    async fn find_event(&self, tenant: &str, time: i64, id: Uuid) -> Result<Option<Record>> {
        let tenant = tenant.to_owned();
        self.blocking(move |s| s.find_event(&tenant, time, id))
            .await
    }

    async fn read_all(
        &self,
        filter: &TenantFilter,
        from: u64,
        direction: Direction,
        max: usize,
    ) -> Result<ReadBatch> {
        let filter = filter.clone();
        self.blocking(move |s| s.read_all(&filter, from, direction, max))
            .await
    }

    async fn read_frames(
        &self,
        filter: &TenantFilter,
        from: u64,
        max: usize,
    ) -> Result<FrameBatch> {
        let filter = filter.clone();
        self.blocking(move |s| s.read_frames(&filter, from, max))
            .await
    }

    fn head(&self) -> u64 {
        self.shared.published_head()
    }

    async fn chain_heads(&self) -> Result<BTreeMap<String, ChainHead>> {
        let heads = self.blocking(|s| s.chain_heads()).await?;
        // A group is committed before its head is published: wait (briefly)
        // until every head read names an acknowledged record.
        if let Some(last) = heads.values().map(|h| h.last_position).max() {
            let mut watch = self.shared.head.subscribe();
            let published = watch.wait_for(|h| *h > last);
            if !matches!(
                tokio::time::timeout(std::time::Duration::from_secs(10), published).await,
                Ok(Ok(_))
            ) {
                return Err(Error::Closed);
            }
        }
        Ok(heads)
    }

    fn accepts_appends(&self) -> bool {
        !self.shared.poisoned.load(Ordering::SeqCst) && !self.shared.closed.load(Ordering::SeqCst)
    }

    fn watch_head(&self) -> watch::Receiver<u64> {
        self.shared.head.subscribe()
    }

    fn subscribe(&self, filter: TenantFilter, from: u64) -> Subscription {
        Subscription::new(
            Arc::new(SourceHandle(Arc::clone(&self.shared))),
            filter,
            from,
            self.shared.head.subscribe(),
        )
    }

    async fn verify(
        &self,
        filter: &TenantFilter,
        range: Range<u64>,
        progress: Option<ProgressFn>,
    ) -> Result<VerifyReport> {
        let filter = filter.clone();
        self.blocking(move |s| s.verify(&filter, range, progress.as_ref()))
            .await
    }

    async fn sync(&self) -> Result<()> {
        self.blocking(|s| s.store.sync().map_err(Error::from)).await
    }
}
