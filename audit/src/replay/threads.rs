//! The threads of a replay on more than one: one reads the pages, in
//! order, and hands each page's runs of records to the showing threads as
//! soon as it is read; the replay's caller takes the pages in order, with
//! their runs, and joins them.
//!
//! Why threads of its own rather than tokio's blocking pool: a pool that
//! grew under ingest holds many idle threads, and a page's work went to
//! whichever woke, so each page's buffers were made in another thread's
//! heap and freed from yet another; the allocator kept asking the kernel
//! for fresh (zeroed) memory instead of reusing what the last page freed.
//! On its own few threads each page reuses the last one's memory. And the
//! next pages are read and shown while the caller joins and writes one.

use std::ops::Range;
use std::sync::Arc;
use std::sync::mpsc;

use mailledger_core::{EventLog, FrameBatch, TenantFilter};
use tokio::sync::oneshot;

use super::show::{Done, Show};
use super::{PAGE, Run, run};
use crate::AuditError;

/// Pages read and being shown ahead of the one the caller joins: enough to
/// keep every thread busy while the caller writes one, few enough to hold.
const PAGES_AHEAD: usize = 2;

/// A page read, its runs being shown.
pub(super) struct Ahead {
    runs: Vec<oneshot::Receiver<Run>>,
}

impl Ahead {
    /// Waits for the page's runs, in order. A run whose thread stopped
    /// shows nothing: its first record reports it, as an error of the
    /// replay.
    pub(super) async fn runs(self) -> Vec<Run> {
        let mut runs = Vec::with_capacity(self.runs.len());
        for done in self.runs {
            runs.push(done.await.unwrap_or_else(|_| Run {
                out: Vec::new(),
                done: vec![Done {
                    link: None,
                    hash_ok: true,
                    end: 0,
                    showing: Err(AuditError::Replay("a run of a page stopped".into())),
                }],
            }));
        }
        runs
    }
}

/// A run of a page for a showing thread.
struct Job {
    frames: Arc<FrameBatch>,
    part: Range<usize>,
    done: oneshot::Sender<Run>,
}

/// The reading thread and the showing threads of a replay. Dropping it
/// stops them: the reader at its next page, each shower once its queue is
/// empty.
pub(super) struct Threads {
    pages: tokio::sync::mpsc::Receiver<mailledger_core::Result<Ahead>>,
}

impl Threads {
    /// Starts reading `tenant`'s records at `from`, up to position `end`,
    /// shown on `workers` threads. Call it inside a tokio runtime: the
    /// reader reads through it.
    ///
    /// # Errors
    /// Outside a tokio runtime, or when a thread could not be started.
    pub(super) fn start(
        show: &Arc<Show>,
        tenant: &str,
        from: u64,
        end: u64,
        workers: usize,
    ) -> std::io::Result<Self> {
        let handle = tokio::runtime::Handle::try_current().map_err(std::io::Error::other)?;
        let mut showers = Vec::with_capacity(workers);
        for _ in 0..workers {
            let (jobs, queue) = mpsc::channel::<Job>();
            let show = Arc::clone(show);
            // Detached: it ends once its queue closes.
            let _shower = std::thread::Builder::new()
                .name("replay-show".into())
                .spawn(move || {
                    while let Ok(job) = queue.recv() {
                        // A caller that went away takes no run.
                        let _ = job.done.send(run(&show, &job.frames, job.part));
                    }
                })?;
            showers.push(jobs);
        }
        let (pages, taken) = tokio::sync::mpsc::channel(PAGES_AHEAD);
        let reader = Reader {
            log: Arc::clone(show.email.log()),
            filter: TenantFilter::Only(tenant.to_owned()),
            end,
            showers,
            pages,
        };
        // Detached: it ends after the last page, or once the replay drops
        // the pages it has not taken.
        let _reader = std::thread::Builder::new()
            .name("replay-read".into())
            .spawn(move || {
                mailledger_core::on_blocking_thread(|| reader.read_from(&handle, from));
            })?;
        Ok(Self { pages: taken })
    }

    /// The next page read, its runs being shown; `None` after the last.
    pub(super) async fn next(&mut self) -> Option<mailledger_core::Result<Ahead>> {
        self.pages.recv().await
    }
}

/// What the reading thread holds.
struct Reader {
    log: Arc<dyn EventLog>,
    filter: TenantFilter,
    end: u64,
    showers: Vec<mpsc::Sender<Job>>,
    pages: tokio::sync::mpsc::Sender<mailledger_core::Result<Ahead>>,
}

impl Reader {
    /// Reads every page from `from` and hands each on, until the range is
    /// read, a read fails or the replay is dropped.
    fn read_from(&self, handle: &tokio::runtime::Handle, from: u64) {
        let mut next = Some(from);
        while let Some(from) = next.filter(|n| *n < self.end) {
            let read: mailledger_core::Result<FrameBatch> =
                handle.block_on(self.log.read_frames(&self.filter, from, PAGE));
            let page = read.map(|mut batch| {
                next = batch.next.filter(|n| *n > from);
                batch.truncate_at(self.end);
                self.show(Arc::new(batch))
            });
            let failed = page.is_err();
            if self.pages.blocking_send(page).is_err() || failed {
                return;
            }
        }
    }

    /// Hands the records of `frames` to the showing threads in runs of
    /// consecutive records, one run each.
    fn show(&self, frames: Arc<FrameBatch>) -> Ahead {
        let size = frames.len().div_ceil(self.showers.len()).max(1);
        let runs = (0..frames.len())
            .step_by(size)
            .zip(&self.showers)
            .map(|(start, shower)| {
                let part = start..(start + size).min(frames.len());
                let (done, taken) = oneshot::channel();
                // A thread that stopped leaves its run's sender dropped:
                // the run reports it.
                let _ = shower.send(Job {
                    frames: Arc::clone(&frames),
                    part,
                    done,
                });
                taken
            })
            .collect();
        Ahead { runs }
    }
}
