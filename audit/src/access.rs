//! Access records: every read that opens personal data leaves an
//! `accessed` record in its tenant's [`ACCESS_STREAM`], naming who read
//! (an API key's id, or `operator` for the command line), through which
//! route, which contacts (pseudonyms) and messages, how many events, and
//! when. Never an address.
//!
//! Reads do not wait for their record: [`AccessLog::record`] hands it to a
//! task that appends what has gathered, one append per tenant, every
//! [`FLUSH_EVERY`] (group commit shares the sync with ingest). A process
//! killed outright loses at most the records of that last moment;
//! [`AccessLog::flush`] writes what is pending (a graceful stop calls it).

use std::collections::BTreeMap;
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use mailledger_core::email::rfc3339;
use mailledger_core::{EventLog, ExpectedVersion, NewEvent};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use crate::Result;

/// The stream of a tenant's log that holds its access records.
pub const ACCESS_STREAM: &str = "audit-access";
/// The event type of an access record.
pub const ACCESS_EVENT: &str = "accessed";
/// How often gathered records are appended.
pub const FLUSH_EVERY: Duration = Duration::from_millis(200);
/// The most pseudonyms, and the most message ids, one record lists; a
/// read of more still counts them all in `count`.
pub const MAX_LISTED: usize = 1000;
/// The who of reads made on the command line.
pub const OPERATOR: &str = "operator";

/// One read of personal data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AccessRecord {
    /// The API key's id, or `operator` for the command line.
    pub key_id: String,
    /// The route or command, such as `GET /v1/messages/{id}`.
    pub route: String,
    /// The pseudonyms of the contacts whose data was opened (at most 1,000).
    pub contacts: Vec<String>,
    /// The messages read (at most 1,000).
    pub message_ids: Vec<String>,
    /// How many events or entries were read.
    pub count: u64,
    /// When (RFC 3339).
    pub at: String,
    /// When, in microseconds since the Unix epoch.
    pub at_micros: i64,
}

impl AccessRecord {
    /// A record of a read by `key_id` through `route` now, listing
    /// `contacts` and `message_ids` (each deduplicated, the first
    /// [`MAX_LISTED`] kept).
    #[must_use]
    pub fn now(
        key_id: &str,
        route: &str,
        contacts: impl IntoIterator<Item = String>,
        message_ids: impl IntoIterator<Item = String>,
        count: u64,
    ) -> Self {
        let at_micros = mailledger_core::now_micros();
        Self {
            key_id: key_id.to_owned(),
            route: route.to_owned(),
            contacts: listed(contacts),
            message_ids: listed(message_ids),
            count,
            at: rfc3339(at_micros),
            at_micros,
        }
    }
}

fn listed(items: impl IntoIterator<Item = String>) -> Vec<String> {
    let mut seen = std::collections::HashSet::new();
    items
        .into_iter()
        .filter(|i| seen.insert(i.clone()))
        .take(MAX_LISTED)
        .collect()
}

enum Command {
    Record(String, AccessRecord),
    Flush(oneshot::Sender<()>),
}

/// The handle reads record through; cheap to clone.
#[derive(Clone, Debug)]
pub struct AccessLog {
    tx: mpsc::UnboundedSender<Command>,
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Command")
    }
}

impl AccessLog {
    /// Starts the task that appends records to `log`, on the current tokio
    /// runtime. It ends once every handle is dropped, after a last append.
    #[must_use]
    pub fn start(log: Arc<dyn EventLog>) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(run(log, rx));
        Self { tx }
    }

    /// Records a read of `tenant`'s data; returns at once.
    pub fn record(&self, tenant: &str, record: AccessRecord) {
        // The task ends only when every handle is gone; a send that fails
        // means the runtime is shutting down.
        let _ = self.tx.send(Command::Record(tenant.to_owned(), record));
    }

    /// Waits until every record handed over so far is appended (or its
    /// append failed and was logged).
    pub async fn flush(&self) {
        let (done, wait) = oneshot::channel();
        if self.tx.send(Command::Flush(done)).is_ok() {
            let _ = wait.await;
        }
    }
}

async fn run(log: Arc<dyn EventLog>, mut rx: mpsc::UnboundedReceiver<Command>) {
    let mut pending: BTreeMap<String, Vec<AccessRecord>> = BTreeMap::new();
    let mut tick = tokio::time::interval(FLUSH_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            command = rx.recv() => match command {
                Some(Command::Record(tenant, r)) => pending.entry(tenant).or_default().push(r),
                Some(Command::Flush(done)) => {
                    // Whatever came before the flush is in the channel's order.
                    while let Ok(Command::Record(tenant, r)) = rx.try_recv() {
                        pending.entry(tenant).or_default().push(r);
                    }
                    append(log.as_ref(), &mut pending).await;
                    let _ = done.send(());
                }
                None => {
                    append(log.as_ref(), &mut pending).await;
                    return;
                }
            },
            _ = tick.tick() => append(log.as_ref(), &mut pending).await,
        }
    }
}

/// Appends each tenant's pending records in one append; a failed append
/// keeps them for the next round (bounded: past 100,000 the oldest go,
/// counted in the log line).
async fn append(log: &dyn EventLog, pending: &mut BTreeMap<String, Vec<AccessRecord>>) {
    const MAX_PENDING: usize = 100_000;
    let tenants: Vec<String> = pending.keys().cloned().collect();
    for tenant in tenants {
        let Some(records) = pending.remove(&tenant) else {
            continue;
        };
        let events: Vec<NewEvent> = records
            .iter()
            .filter_map(|r| {
                let payload = serde_json::to_vec(r).ok()?;
                Some(NewEvent::new(Uuid::new_v4(), ACCESS_EVENT, payload).at(r.at_micros))
            })
            .collect();
        let mut result = Ok(());
        // One append holds at most what the log takes in one batch.
        for chunk in events.chunks(1000) {
            result = log
                .append_to_stream(&tenant, ACCESS_STREAM, ExpectedVersion::Any, chunk.to_vec())
                .await
                .map(drop);
            if result.is_err() {
                break;
            }
        }
        if let Err(e) = result {
            let mut kept = records;
            let dropped = kept.len().saturating_sub(MAX_PENDING);
            kept.drain(..dropped);
            tracing::warn!(error = %e, dropped, "cannot append access records; retrying");
            pending.insert(tenant, kept);
        }
    }
}

/// Which access records to list.
#[derive(Debug, Clone, Default)]
pub struct AccessFilter {
    /// Reads that opened this contact's data (pseudonym, hex).
    pub contact: Option<String>,
    /// Reads by this key (or `operator`).
    pub key_id: Option<String>,
    /// Reads made in this time, µs since the epoch, end excluded.
    pub time: Option<Range<i64>>,
}

impl AccessFilter {
    fn admits(&self, r: &AccessRecord) -> bool {
        self.contact
            .as_ref()
            .is_none_or(|c| r.contacts.iter().any(|x| x.eq_ignore_ascii_case(c)))
            && self.key_id.as_ref().is_none_or(|k| r.key_id == *k)
            && self.time.as_ref().is_none_or(|t| t.contains(&r.at_micros))
    }
}

/// Up to `max` of `tenant`'s access records that pass `filter`, oldest
/// first, from place `from` in its access stream; with the place to go on
/// from (`None` once the stream is read).
///
/// # Errors
/// A log error, or a record that does not decode.
pub async fn access_records(
    log: &dyn EventLog,
    tenant: &str,
    filter: &AccessFilter,
    mut from: u64,
    max: usize,
) -> Result<(Vec<AccessRecord>, Option<u64>)> {
    let mut out = Vec::new();
    loop {
        let records = log.read_stream(tenant, ACCESS_STREAM, from, 1000).await?;
        if records.is_empty() {
            return Ok((out, None));
        }
        for (i, r) in records.iter().enumerate() {
            let a: AccessRecord = serde_json::from_slice(&r.payload).map_err(|_| {
                mailledger_core::Error::Corrupt {
                    position: r.position,
                    reason: "an access record does not decode".into(),
                }
            })?;
            if filter.admits(&a) {
                out.push(a);
                if out.len() == max {
                    return Ok((out, Some(from + i as u64 + 1)));
                }
            }
        }
        from += records.len() as u64;
    }
}
