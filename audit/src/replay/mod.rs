//! Replay: a tenant's events in log order, filtered, each opened (or shown
//! erased, or raw), with the tenant's hash chain verified as it is read.
//!
//! Replay always reads the tenant's whole range of the log in order, so
//! every record's hash is recomputed and every link checked, whatever the
//! filters keep; the filters decide only what is shown. Starting past
//! position 0, the chain is followed from the first record read. The
//! audit's own records (checkpoints, access records) are verified but
//! shown only when their type is asked for.
//!
//! Each page is read while the one before is shown, and its records are
//! shown on as many threads as the caller gives ([`Replay::workers`]);
//! the chain is then checked in order, and nothing past a bad record is
//! shown. On more than one thread, the replay reads and shows the next
//! pages on threads of its own while its caller takes one.

use std::collections::HashSet;
use std::num::NonZeroUsize;
use std::ops::Range;
use std::sync::Arc;

use mailledger_core::email::{EmailLedger, message_stream};
use mailledger_core::pseudonym::Pseudonym;
use mailledger_core::{FrameBatch, GENESIS_HASH, Hash, TenantFilter, hex};
use tokio::task::JoinHandle;

use crate::{AuditError, Result};

mod show;
mod threads;
use show::{Done, Link, Show, Showing};
use threads::Threads;

/// Records read per page. Large enough that each of a page's threads has
/// a few milliseconds of work, small enough to hold.
const PAGE: usize = 4000;

/// Which events a replay shows. Every filter given must hold.
#[derive(Debug, Clone, Default)]
pub struct ReplayFilter {
    /// Positions (default: all).
    pub positions: Option<Range<u64>>,
    /// When the events occurred, µs since the epoch, end excluded.
    pub time: Option<Range<i64>>,
    /// One message's events.
    pub message_id: Option<String>,
    /// These event types only (`sent`, `bounced`, …).
    pub types: Option<Vec<String>>,
    /// One contact's events.
    pub contact: Option<Pseudonym>,
}

/// How a replayed event's personal fields are shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shown {
    /// Opened: plaintext where the contact's key exists, the erased
    /// marker where it was destroyed.
    Opened,
    /// As stored: the record with its sealed payload (hex), nothing opened.
    Raw,
}

/// What a replay read, at its end.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct ReplaySummary {
    /// Events shown.
    pub events: u64,
    /// Records of the tenant read (and verified).
    pub records: u64,
    /// Distinct erased contacts whose events were shown.
    pub erased_contacts: u64,
    /// The position of the last record read.
    pub head_position: Option<u64>,
    /// Its hash: the chain head the replay reached.
    pub head_hash: Option<String>,
    /// Whether every record read had its hash and its link.
    pub verified: bool,
    /// The first record that did not (position), when one did not.
    pub first_bad_position: Option<u64>,
    /// Why it did not.
    pub problem: Option<String>,
}

/// How replayed events are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Format {
    /// One JSON object per line.
    #[default]
    Json,
    /// CSV: position, recorded_at, type, stream, id, message_id, contact,
    /// occurred_at, then the event's JSON (quoted); see [`Format::header`].
    Csv,
}

impl Format {
    /// The line that starts the output: CSV's header, none for JSON.
    #[must_use]
    pub fn header(self) -> Option<&'static str> {
        match self {
            Self::Json => None,
            Self::Csv => Some(show::CSV_HEADER),
        }
    }
}

/// A page of a replay: the lines of the events it shows, each ending in
/// a newline.
#[derive(Debug, Default)]
pub struct Page {
    /// The lines, in log order.
    pub lines: Vec<u8>,
    /// How many events they show.
    pub events: u64,
}

/// A run of consecutive records of a page, as one thread showed them.
struct Run {
    out: Vec<u8>,
    done: Vec<Done>,
}

/// Checks and shows the records of `frames[part]` on this thread.
fn run(show: &Show, frames: &FrameBatch, part: Range<usize>) -> Run {
    let records = part.len();
    let mut out = Vec::with_capacity(records * show.line_len());
    let done = show.chunk(frames, part, &mut out);
    show.note_lines(out.len(), records);
    Run { out, done }
}

/// A replay in progress: call [`Replay::next_page`] until it gives `None`,
/// then read [`Replay::summary`].
pub struct Replay {
    show: Arc<Show>,
    tenant: String,
    workers: usize,
    next: Option<u64>,
    end: u64,
    // The next page, being read while this one is shown (on one thread).
    ahead: Option<JoinHandle<mailledger_core::Result<FrameBatch>>>,
    // The replay's own threads, reading and showing ahead (on more).
    threads: Option<Threads>,
    last_hash: Option<Hash>,
    anchored: bool,
    erased: HashSet<Pseudonym>,
    opened_contacts: HashSet<Pseudonym>,
    opened_messages: HashSet<String>,
    summary: ReplaySummary,
}

impl Replay {
    /// A replay of `tenant`'s log, written as JSON lines on the calling
    /// thread alone.
    ///
    /// # Errors
    /// A bad tenant name.
    pub fn new(
        email: Arc<EmailLedger>,
        tenant: &str,
        filter: ReplayFilter,
        shown: Shown,
    ) -> Result<Self> {
        mailledger_core::validate_tenant(tenant)?;
        let head = email.log().head();
        let range = filter.positions.clone().unwrap_or(0..u64::MAX);
        Ok(Self {
            show: Arc::new(Show {
                email,
                message_stream: filter.message_id.as_deref().map(message_stream),
                filter,
                shown,
                format: Format::Json,
                line_len: std::sync::atomic::AtomicUsize::new(512),
            }),
            tenant: tenant.to_owned(),
            next: Some(range.start),
            end: range.end.min(head),
            ahead: None,
            threads: None,
            workers: 1,
            last_hash: None,
            anchored: range.start == 0,
            erased: HashSet::new(),
            opened_contacts: HashSet::new(),
            opened_messages: HashSet::new(),
            summary: ReplaySummary {
                verified: true,
                ..ReplaySummary::default()
            },
        })
    }

    /// How the events are written. Default: [`Format::Json`].
    #[must_use]
    pub fn format(mut self, format: Format) -> Self {
        if let Some(show) = Arc::get_mut(&mut self.show) {
            show.format = format;
        }
        self
    }

    /// On how many threads each page's records are opened and written.
    /// With 1 (the default) they are written on the task calling
    /// [`Replay::next_page`]; with more, in that many runs of consecutive
    /// records on threads the replay starts (and one more that reads the
    /// pages), which last until it is dropped. How many cores an audit may
    /// take is the caller's choice: the command line gives it every core,
    /// a server sharing its cores with ingest may not.
    #[must_use]
    pub fn workers(mut self, workers: NonZeroUsize) -> Self {
        self.workers = workers.get();
        self
    }

    /// Starts reading the page at `from`, unless the range is read.
    fn read_ahead(&mut self, from: Option<u64>) {
        self.ahead = from.filter(|n| *n < self.end).map(|from| {
            let log = Arc::clone(self.show.email.log());
            let filter = TenantFilter::Only(self.tenant.clone());
            tokio::spawn(async move { log.read_frames(&filter, from, PAGE).await })
        });
    }

    /// The next events shown; `None` once the range is read (or the chain
    /// broke: see the summary).
    ///
    /// # Errors
    /// A log error, or a record that does not decode or open.
    pub async fn next_page(&mut self) -> Result<Option<Page>> {
        if !self.summary.verified {
            return Ok(None);
        }
        if self.workers > 1 {
            return self.next_threaded().await;
        }
        if self.ahead.is_none() {
            let from = self.next;
            self.read_ahead(from);
        }
        let Some(reading) = self.ahead.take() else {
            return Ok(None);
        };
        let mut batch = reading
            .await
            .map_err(|e| AuditError::Replay(format!("the read of a page stopped: {e}")))??;
        let from = self.next.unwrap_or(0);
        self.next = batch.next.filter(|n| *n > from);
        self.read_ahead(self.next);
        batch.truncate_at(self.end);
        let runs = vec![run(&self.show, &batch, 0..batch.len())];
        self.merge(runs).map(Some)
    }

    /// [`Replay::next_page`] on the replay's own threads, started at the
    /// first page.
    async fn next_threaded(&mut self) -> Result<Option<Page>> {
        if self.threads.is_none() {
            let Some(from) = self.next.take().filter(|n| *n < self.end) else {
                return Ok(None);
            };
            let started = Threads::start(&self.show, &self.tenant, from, self.end, self.workers)
                .map_err(|e| {
                    AuditError::Replay(format!("cannot start the replay's threads: {e}"))
                })?;
            self.threads = Some(started);
        }
        let Some(threads) = &mut self.threads else {
            return Ok(None);
        };
        let Some(page) = threads.next().await else {
            return Ok(None);
        };
        let runs = page?.runs().await;
        self.merge(runs).map(Some)
    }

    /// Checks the chain through the records of `runs` in order and joins
    /// what they showed, up to the first bad record.
    fn merge(&mut self, runs: Vec<Run>) -> Result<Page> {
        let mut page = Page {
            lines: Vec::with_capacity(runs.iter().map(|r| r.out.len()).sum()),
            events: 0,
        };
        for Run { mut out, done } in runs {
            let mut kept = out.len();
            let mut stop = false;
            let mut before = 0;
            for d in done {
                // A record without a link did not decode: its showing is
                // the error.
                if let Some(link) = &d.link
                    && let Err(problem) = self.check(link, d.hash_ok)
                {
                    self.summary.verified = false;
                    self.summary.first_bad_position = Some(link.position);
                    self.summary.problem = Some(problem);
                    self.next = None;
                    self.ahead = None;
                    self.threads = None;
                    kept = before;
                    stop = true;
                    break;
                }
                before = d.end;
                match d.showing? {
                    Showing::No => {}
                    Showing::Raw => page.events += 1,
                    Showing::Opened {
                        contact,
                        erased,
                        message,
                    } => {
                        page.events += 1;
                        self.note_opened(contact, erased, message);
                    }
                }
            }
            out.truncate(kept);
            page.lines.extend_from_slice(&out);
            if stop {
                break;
            }
        }
        self.summary.events += page.events;
        self.summary.head_hash = self.last_hash.map(|h| hex(&h));
        Ok(page)
    }

    /// Verifies one record: its hash (`hash_ok`), and its link to the one
    /// before.
    fn check(&mut self, r: &Link, hash_ok: bool) -> std::result::Result<(), String> {
        if !hash_ok {
            return Err("the record's hash does not match its bytes".into());
        }
        // The first record read links to genesis when the replay starts at
        // position 0; past it, the chain is followed from that record.
        let expected = match self.last_hash {
            Some(h) => Some(h),
            None => self.anchored.then_some(GENESIS_HASH),
        };
        if expected.is_some_and(|e| e != r.prev_hash) {
            return Err(
                "the chain is broken: its link is not the hash of the tenant's record before it"
                    .into(),
            );
        }
        self.last_hash = Some(r.hash);
        self.summary.records += 1;
        self.summary.head_position = Some(r.position);
        Ok(())
    }

    /// Notes an opened event for the summary and the access record.
    fn note_opened(&mut self, contact: Pseudonym, erased: bool, message: Option<String>) {
        if erased && self.erased.insert(contact) {
            self.summary.erased_contacts += 1;
        }
        if self.opened_contacts.len() < crate::access::MAX_LISTED {
            self.opened_contacts.insert(contact);
        }
        if let Some(m) = message
            && self.opened_messages.len() < crate::access::MAX_LISTED
        {
            self.opened_messages.insert(m);
        }
    }

    /// What an access record of this replay lists: the contacts and the
    /// messages whose events it opened (at most
    /// [`MAX_LISTED`](crate::access::MAX_LISTED) of each), sorted.
    #[must_use]
    pub fn opened(&self) -> (Vec<String>, Vec<String>) {
        let mut contacts: Vec<String> = self
            .opened_contacts
            .iter()
            .map(ToString::to_string)
            .collect();
        let mut messages: Vec<String> = self.opened_messages.iter().cloned().collect();
        contacts.sort_unstable();
        messages.sort_unstable();
        (contacts, messages)
    }

    /// What the replay read so far (all of it, once `next_page` gave
    /// `None`).
    #[must_use]
    pub fn summary(&self) -> &ReplaySummary {
        &self.summary
    }
}
