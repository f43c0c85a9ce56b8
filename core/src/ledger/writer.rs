//! The writer thread: takes every append waiting, prepares them as one
//! group on top of the group in flight, and hands it to the committer.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::{Arc, mpsc};
use std::thread;

use tokio::sync::oneshot;
use uuid::Uuid;

use super::by_tenant::ByTenant;
use super::commit::{commit_groups, sort_puts};
use super::config::LedgerConfig;
use super::keys::{TenantHead, id_key, stream_key, u64_be};
use super::read::read_stream_version;
use super::versions::StreamVersions;
use super::{Job, Shared};
use crate::error::{Error, Result};
use crate::record::{AppendOutcome, validate_stream, validate_tenant};
use crate::store::{Space, Store, WriteBatch};
use crate::threads::{ThreadHook, ThreadRole};

pub(super) struct Writer<S: Store> {
    pub(super) shared: Arc<Shared<S>>,
    // The head, last recording time and chain heads as the last prepared
    // group leaves them (durable once the committer has written it).
    pub(super) head: u64,
    pub(super) last_recorded: i64,
    pub(super) tenants: HashMap<String, TenantHead>,
    // Stream versions of committed groups (a bounded cache).
    pub(super) versions: StreamVersions,
    // What the group handed to the committer and perhaps not yet written
    // adds: its event ids and stream versions.
    pub(super) inflight_ids: Ids,
    pub(super) inflight_versions: Versions,
    // The group being prepared: the store's answers for its event ids
    // that no group in hand holds, read ahead in key order.
    pub(super) read_ids: ByTenant<EventKey, Option<u64>>,
    pub(super) config: LedgerConfig,
    // Whether the log is new and its first batch must carry the layout
    // stamp.
    pub(super) unstamped: bool,
}

/// Where an append's answer goes.
pub(super) type Reply = oneshot::Sender<Result<Vec<AppendOutcome>>>;
/// An event's identity within its tenant: its time and id.
pub(super) type EventKey = (i64, Uuid);
/// Positions by tenant and event time and id.
pub(super) type Ids = ByTenant<EventKey, u64>;
/// Stream versions by tenant and stream (`None`: no such stream).
pub(super) type Versions = ByTenant<String, Option<u64>>;

/// A prepared group, for the committer: the batch, the head it leads to,
/// and each caller's answer once the batch is durable.
pub(super) struct Prepared {
    pub(super) batch: WriteBatch,
    pub(super) head: u64,
    pub(super) replies: Vec<(Reply, Result<Vec<AppendOutcome>>)>,
}

#[derive(Default)]
pub(super) struct Group {
    pub(super) batch: WriteBatch,
    pub(super) head: u64,
    pub(super) recorded_at: i64,
    pub(super) tenants: HashMap<String, TenantHead>,
    pub(super) versions: Versions,
    pub(super) ids: Ids,
    // How many events the group's jobs hold: the size its maps are made
    // with. Grown by doubling instead, each step would hash every key again
    // (SipHash over tenant and stream names).
    pub(super) events: usize,
}

#[derive(Clone, Copy)]
pub(super) enum Slot {
    Existing(u64),
    SameAs(usize, usize),
    New,
}

impl<S: Store> Writer<S> {
    pub(super) fn new(
        shared: Arc<Shared<S>>,
        head: u64,
        last_recorded: i64,
        tenants: HashMap<String, TenantHead>,
        config: LedgerConfig,
    ) -> Self {
        Self {
            shared,
            head,
            last_recorded,
            tenants,
            versions: StreamVersions::new(config.stream_cache()),
            inflight_ids: Ids::default(),
            inflight_versions: Versions::default(),
            read_ids: ByTenant::default(),
            config,
            unstamped: false,
        }
    }

    /// The caller's hook for the threads the log starts.
    pub(super) fn thread_hook(&self) -> &ThreadHook {
        self.config.hook()
    }

    pub(super) fn run(mut self, rx: &mpsc::Receiver<Job>) {
        let shared = Arc::clone(&self.shared);
        // A rendezvous: handing a group over waits until the committer has
        // written the one before, so at most one group is in flight.
        let (commits, committed) = mpsc::sync_channel::<Prepared>(0);
        let hook = self.config.hook().clone();
        thread::scope(|scope| {
            let committer = thread::Builder::new()
                .name("mailledger-commit".into())
                .spawn_scoped(scope, move || {
                    hook.run(ThreadRole::LogCommitter);
                    commit_groups(&shared, &committed);
                });
            if let Err(e) = committer {
                tracing::error!(error = %e, "cannot start the committer; the log stops accepting appends");
                self.shared.poisoned.store(true, Ordering::SeqCst);
            }
            while let Ok(first) = rx.recv() {
                let mut records: usize = first.streams.iter().map(|s| s.events.len()).sum();
                let mut jobs = vec![first];
                while records < self.config.max_group() {
                    match rx.try_recv() {
                        Ok(job) => {
                            records += job.streams.iter().map(|s| s.events.len()).sum::<usize>();
                            jobs.push(job);
                        }
                        Err(_) => break,
                    }
                }
                let Some((prepared, ids, versions)) = self.prepare(jobs) else {
                    continue;
                };
                if let Err(mpsc::SendError(p)) = commits.send(prepared) {
                    // The committer is gone (it could not start, or it
                    // panicked): nothing more can be written.
                    self.shared.poisoned.store(true, Ordering::SeqCst);
                    for (reply, _) in p.replies {
                        let _ = reply.send(Err(Error::Poisoned));
                    }
                }
                self.settle(ids, versions);
            }
            drop(commits);
        });
    }

    /// Prepares a group on top of the one in flight; `None` when the log
    /// is poisoned (the callers are answered here). Returns the group's
    /// event ids and stream versions beside it, for [`Writer::settle`].
    fn prepare(&mut self, jobs: Vec<Job>) -> Option<(Prepared, Ids, Versions)> {
        if self.shared.poisoned.load(Ordering::SeqCst) {
            for job in jobs {
                let _ = job.reply.send(Err(Error::Poisoned));
            }
            return None;
        }
        let events: usize = jobs
            .iter()
            .flat_map(|j| &j.streams)
            .map(|s| s.events.len())
            .sum();
        let mut g = Group {
            head: self.head,
            recorded_at: crate::now_micros().max(self.last_recorded),
            events,
            ..Group::default()
        };
        self.read_ahead(&jobs, events);
        let mut replies = Vec::with_capacity(jobs.len());
        for job in jobs {
            let result = self.stage(&mut g, &job.tenant, &job.streams);
            replies.push((job.reply, result));
        }
        if !g.batch.is_empty() {
            for (tenant, th) in &g.tenants {
                g.batch
                    .put(Space::Tenants, tenant.as_bytes().to_vec(), th.encode());
            }
            if std::mem::take(&mut self.unstamped) {
                super::recover::stamp(&mut g.batch);
            }
            sort_puts(&mut g.batch.puts);
        }
        // The next group is prepared on top of this one.
        self.head = g.head;
        self.last_recorded = g.recorded_at;
        self.tenants.extend(g.tenants);
        let prepared = Prepared {
            batch: g.batch,
            head: g.head,
            replies,
        };
        Some((prepared, g.ids, g.versions))
    }

    /// Reads what staging `jobs` will ask the store, in key order: the
    /// versions of streams no cache holds (into the cache) and the
    /// positions of event ids no group in hand holds (into `read_ids`).
    /// Read one at a time in the order appends name them, each lookup
    /// lands at a random place in the store's ordered structures (fjall's
    /// memtable skiplists); in key order, each finds most of its search
    /// path in cache from the one before. A failed read ends the read
    /// ahead: staging reads again and reports the error to its append.
    /// `events`: how many events the jobs hold.
    fn read_ahead(&mut self, jobs: &[Job], events: usize) {
        self.read_ids.clear();
        let mut streams: Vec<(Vec<u8>, &str, &str)> = Vec::with_capacity(events);
        let mut ids: Vec<(Vec<u8>, &str, EventKey)> = Vec::with_capacity(events);
        // Each name once (a contact's stream is linked from many events),
        // before the caches are asked with owned keys.
        let mut seen_streams: HashSet<(&str, &str)> = HashSet::with_capacity(events);
        let mut seen_ids: HashSet<(&str, EventKey)> = HashSet::with_capacity(events);
        for job in jobs {
            if validate_tenant(&job.tenant).is_err() {
                continue;
            }
            let tenant = job.tenant.as_str();
            for s in &job.streams {
                let linked = s.events.iter().flat_map(|e| &e.links);
                for name in std::iter::once(&s.stream).chain(linked) {
                    if !seen_streams.insert((tenant, name)) || validate_stream(name).is_err() {
                        continue;
                    }
                    if !self.inflight_versions.contains(tenant, name.as_str())
                        && !self.versions.contains(tenant, name.as_str())
                    {
                        streams.push((stream_key(tenant, name, 0), tenant, name));
                    }
                }
                for e in &s.events {
                    let key = (e.time, e.id);
                    if seen_ids.insert((tenant, key)) && !self.inflight_ids.contains(tenant, &key) {
                        ids.push((id_key(tenant, e.time, e.id), tenant, key));
                    }
                }
            }
        }
        ids.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        for (key, tenant, id) in ids {
            let position = match self.shared.store.get(Space::EventIds, &key) {
                Ok(None) => None,
                Ok(Some(v)) => match u64_be(&v) {
                    Some(p) => Some(p),
                    None => break,
                },
                Err(_) => break,
            };
            self.read_ids.insert(tenant, id, position, events);
        }
        streams.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        for (_, tenant, stream) in streams {
            let Ok(v) = read_stream_version(&self.shared.store, tenant, stream) else {
                break;
            };
            self.versions.insert(tenant, stream, v);
        }
    }

    /// Called once the committer has taken the group just prepared (with
    /// its `ids` and `versions`), which means the group before it is
    /// written: that group's ids are in the store and its versions join
    /// the cache of committed ones; the new group is the one in flight.
    fn settle(&mut self, ids: Ids, versions: Versions) {
        self.inflight_ids = ids;
        let written = std::mem::replace(&mut self.inflight_versions, versions);
        self.versions.extend(written);
    }

    pub(super) fn lookup_id(&self, g: &Group, tenant: &str, key: EventKey) -> Result<Option<u64>> {
        if let Some(p) = g
            .ids
            .get(tenant, &key)
            .or_else(|| self.inflight_ids.get(tenant, &key))
        {
            return Ok(Some(p));
        }
        if let Some(p) = self.read_ids.get(tenant, &key) {
            return Ok(p);
        }
        let value = self
            .shared
            .store
            .get(Space::EventIds, &id_key(tenant, key.0, key.1))?;
        match value {
            None => Ok(None),
            Some(v) => u64_be(&v)
                .map(Some)
                .ok_or_else(|| Error::corrupt(self.head, "event id index entry does not decode")),
        }
    }

    pub(super) fn version(&mut self, g: &Group, tenant: &str, stream: &str) -> Result<Option<u64>> {
        if let Some(v) = g
            .versions
            .get(tenant, stream)
            .or_else(|| self.inflight_versions.get(tenant, stream))
        {
            return Ok(v);
        }
        if let Some(v) = self.versions.touch(tenant, stream) {
            return Ok(v);
        }
        let v = read_stream_version(&self.shared.store, tenant, stream)?;
        self.versions.insert(tenant, stream, v);
        Ok(v)
    }
}
