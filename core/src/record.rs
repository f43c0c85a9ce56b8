//! The records of the log and the requests that create them.

use std::fmt;

use uuid::Uuid;

use crate::error::{Error, Result};

/// The hash of a record: blake3 over its frame, chained to the previous
/// record of the same tenant.
pub type Hash = [u8; 32];

/// The `prev_hash` of the first record of every tenant.
pub const GENESIS_HASH: Hash = [0; 32];

/// The longest tenant name accepted.
pub const MAX_TENANT_LEN: usize = 64;
/// The longest stream name accepted, in bytes.
pub const MAX_STREAM_LEN: usize = 256;
/// The longest event type name accepted, in bytes.
pub const MAX_EVENT_TYPE_LEN: usize = 128;
/// The largest payload plus metadata of one event, in bytes.
pub const MAX_EVENT_BYTES: usize = 4 * 1024 * 1024;

/// The version a writer expects a stream to be at; a mismatch is a
/// [`Error::WrongExpectedVersion`] and nothing is written.
///
/// Stream versions count from 0: the first event of a stream has version 0,
/// so `Exact(n)` means "the stream's last event has version n".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ExpectedVersion {
    /// Append whatever the stream's version.
    Any,
    /// The stream must hold no event yet.
    NoStream,
    /// The stream's last event must have exactly this version.
    Exact(u64),
}

impl ExpectedVersion {
    /// Whether a stream whose last version is `actual` (`None`: empty)
    /// satisfies this expectation.
    #[must_use]
    pub fn matches(self, actual: Option<u64>) -> bool {
        match self {
            Self::Any => true,
            Self::NoStream => actual.is_none(),
            Self::Exact(n) => actual == Some(n),
        }
    }
}

impl fmt::Display for ExpectedVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Any => f.write_str("any"),
            Self::NoStream => f.write_str("no stream"),
            Self::Exact(n) => write!(f, "{n}"),
        }
    }
}

/// The most streams one event may link to.
pub const MAX_LINKS: usize = 4;

/// An event to append: the log assigns its position, version, time and hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEvent {
    /// The idempotency key, with [`NewEvent::time`]: appending an event
    /// whose id and time the tenant's log already holds appends nothing and
    /// returns the original position.
    pub id: Uuid,
    /// The event's own time, microseconds since the Unix epoch (an email
    /// event's `occurred_at`; not the time the log records it). With the id
    /// it is the event's identity: the event-id index is ordered by it, so
    /// the index grows at its recent end, and an id reused with another
    /// time is another event. [`NewEvent::new`] takes it from a UUIDv7 id,
    /// and 0 for other ids; [`NewEvent::at`] sets it.
    pub time: i64,
    /// The event type name, such as `bounced`.
    pub event_type: String,
    /// Opaque bytes, the event itself.
    pub payload: Vec<u8>,
    /// Opaque bytes about the event.
    pub metadata: Vec<u8>,
    /// Further streams of the same tenant that index this event, after the
    /// stream it is appended to (like a link in KurrentDB): the event gets
    /// the next version of each and is read back from each by
    /// [`EventLog::read_stream`](crate::EventLog::read_stream), with its own
    /// stream name unchanged. Links are index entries written atomically with
    /// the record; they are not part of the record's bytes or hash. At most
    /// [`MAX_LINKS`].
    pub links: Vec<String>,
}

impl NewEvent {
    /// An event with the given id, type and payload and no metadata.
    pub fn new(id: Uuid, event_type: impl Into<String>, payload: impl Into<Vec<u8>>) -> Self {
        Self {
            id,
            time: time_of_id(id),
            event_type: event_type.into(),
            payload: payload.into(),
            metadata: Vec::new(),
            links: Vec::new(),
        }
    }

    /// The same event with its own time set (see [`NewEvent::time`]).
    #[must_use]
    pub fn at(mut self, micros: i64) -> Self {
        self.time = micros;
        self
    }

    /// The same event, also indexed under `stream` (see [`NewEvent::links`]).
    #[must_use]
    pub fn with_link(mut self, stream: impl Into<String>) -> Self {
        self.links.push(stream.into());
        self
    }

    /// The same event with `metadata` attached.
    #[must_use]
    pub fn with_metadata(mut self, metadata: impl Into<Vec<u8>>) -> Self {
        self.metadata = metadata.into();
        self
    }
}

/// The time a UUIDv7 carries, in microseconds; 0 for any other id.
#[must_use]
pub fn time_of_id(id: Uuid) -> i64 {
    id.get_timestamp()
        .filter(|_| id.get_version_num() == 7)
        .map_or(0, |ts| {
            let (secs, nanos) = ts.to_unix();
            i64::try_from(secs)
                .unwrap_or(i64::MAX / 1_000_000)
                .saturating_mul(1_000_000)
                .saturating_add(i64::from(nanos / 1_000))
        })
}

/// The events for one stream within an append.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamAppend {
    /// The stream, unique within its tenant.
    pub stream: String,
    /// The version the stream must be at before these events.
    pub expected: ExpectedVersion,
    /// The events, in order; they get consecutive versions and positions.
    pub events: Vec<NewEvent>,
}

impl StreamAppend {
    /// Events for `stream` under the `expected` version.
    pub fn new(
        stream: impl Into<String>,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Self {
        Self {
            stream: stream.into(),
            expected,
            events,
        }
    }
}

/// What an append did for one stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppendOutcome {
    /// The global position of each event, in the order given; a duplicate
    /// gets its original position.
    pub positions: Vec<u64>,
    /// The stream's version after the append (`None` only for an empty batch
    /// on an empty stream).
    pub stream_version: Option<u64>,
    /// How many of the events were already in the log and were not appended again.
    pub duplicates: usize,
}

/// One record of the log, as read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Global position, dense from 0 across all tenants.
    pub position: u64,
    /// The tenant that owns the record.
    pub tenant: String,
    /// The stream within the tenant.
    pub stream: String,
    /// The version within the stream, dense from 0.
    pub stream_version: u64,
    /// The event id given at append.
    pub event_id: Uuid,
    /// When the ledger wrote the record, in microseconds since the Unix epoch.
    pub recorded_at_micros: i64,
    /// The event type name.
    pub event_type: String,
    /// Opaque event bytes.
    pub payload: Vec<u8>,
    /// Opaque metadata bytes.
    pub metadata: Vec<u8>,
    /// The hash of the tenant's previous record, or [`GENESIS_HASH`].
    pub prev_hash: Hash,
    /// The jurisdiction the node that wrote the record declared
    /// ([`crate::LedgerConfig::jurisdiction`]); `None` for a record written
    /// before records carried it (frame format 1).
    pub jurisdiction: Option<crate::residency::Jurisdiction>,
    /// The blake3 hash of this record's frame.
    pub hash: Hash,
}

/// Which records a read or subscription returns.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum TenantFilter {
    /// Every tenant's records.
    #[default]
    All,
    /// One tenant's records only.
    Only(String),
}

impl TenantFilter {
    /// Whether a record of `tenant` passes.
    #[must_use]
    pub fn admits(&self, tenant: &str) -> bool {
        match self {
            Self::All => true,
            Self::Only(t) => t == tenant,
        }
    }
}

/// The direction of a read over the whole log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// From a position towards the head.
    Forward,
    /// From a position towards position 0.
    Backward,
}

/// Checks a tenant name: 1 to 64 of `a-z`, `0-9`, `-` and `_`.
///
/// # Errors
/// [`Error::InvalidInput`] naming the rule that failed.
pub fn validate_tenant(tenant: &str) -> Result<()> {
    if tenant.is_empty() || tenant.len() > MAX_TENANT_LEN {
        return Err(Error::invalid(format!(
            "tenant name must be 1 to {MAX_TENANT_LEN} characters"
        )));
    }
    if !tenant
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
    {
        return Err(Error::invalid(
            "tenant name may hold only a-z, 0-9, '-' and '_'",
        ));
    }
    Ok(())
}

/// Checks a stream name: 1 to 256 bytes of printable ASCII without spaces.
///
/// Stream names appear in index keys, so the rule keeps them printable and
/// free of the NUL separator.
///
/// # Errors
/// [`Error::InvalidInput`] naming the rule that failed.
pub fn validate_stream(stream: &str) -> Result<()> {
    if stream.is_empty() || stream.len() > MAX_STREAM_LEN {
        return Err(Error::invalid(format!(
            "stream name must be 1 to {MAX_STREAM_LEN} bytes"
        )));
    }
    if !stream.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(Error::invalid(
            "stream name may hold only printable ASCII without spaces",
        ));
    }
    Ok(())
}

/// Checks an event before it is appended.
///
/// # Errors
/// [`Error::InvalidInput`] naming the rule that failed.
pub fn validate_event(event: &NewEvent) -> Result<()> {
    if event.event_type.is_empty() || event.event_type.len() > MAX_EVENT_TYPE_LEN {
        return Err(Error::invalid(format!(
            "event type must be 1 to {MAX_EVENT_TYPE_LEN} bytes"
        )));
    }
    if !event.event_type.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(Error::invalid(
            "event type may hold only printable ASCII without spaces",
        ));
    }
    if event.payload.len() + event.metadata.len() > MAX_EVENT_BYTES {
        return Err(Error::invalid(format!(
            "event payload and metadata exceed {MAX_EVENT_BYTES} bytes"
        )));
    }
    if event.links.len() > MAX_LINKS {
        return Err(Error::invalid(format!(
            "an event may link to at most {MAX_LINKS} streams"
        )));
    }
    for link in &event.links {
        validate_stream(link)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expected_version_matches_as_documented() {
        assert!(ExpectedVersion::Any.matches(None));
        assert!(ExpectedVersion::Any.matches(Some(3)));
        assert!(ExpectedVersion::NoStream.matches(None));
        assert!(!ExpectedVersion::NoStream.matches(Some(0)));
        assert!(ExpectedVersion::Exact(0).matches(Some(0)));
        assert!(!ExpectedVersion::Exact(0).matches(None));
        assert!(!ExpectedVersion::Exact(1).matches(Some(2)));
    }

    #[test]
    fn names_are_validated() {
        assert!(validate_tenant("acme-eu_1").is_ok());
        assert!(validate_tenant("").is_err());
        assert!(validate_tenant("Acme").is_err());
        assert!(validate_tenant(&"a".repeat(65)).is_err());
        assert!(validate_stream("message-42").is_ok());
        assert!(validate_stream("has space").is_err());
        assert!(validate_stream("nul\0").is_err());
        assert!(validate_stream("").is_err());
    }
}
