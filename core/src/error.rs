//! Errors: a coarse [`ErrorKind`] for callers that branch, over a rich
//! [`Error`] for people who read. No error carries payload bytes.

use crate::record::ExpectedVersion;

/// The result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What kind of failure an [`Error`] is, for callers that map errors to
/// exit codes or status codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// An expected version did not match; retry after reading the stream.
    Conflict,
    /// The request was malformed; retrying it unchanged fails again.
    InvalidInput,
    /// Stored data failed a check; the error names the position.
    Corruption,
    /// The storage engine failed; the log may need to be reopened.
    Storage,
    /// The log was closed, or stopped after a storage failure.
    Unavailable,
    /// The setup is wrong (a key-encryption key that does not fit, a key
    /// file others can read); fix the configuration and start again.
    Configuration,
}

/// An error from the log.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A stream was not at the version the append expected. Nothing was written.
    #[error("wrong expected version for stream {stream}: expected {expected}, actual {}", fmt_version(*.actual))]
    WrongExpectedVersion {
        /// The stream.
        stream: String,
        /// What the append expected.
        expected: ExpectedVersion,
        /// The stream's last version, `None` for no stream.
        actual: Option<u64>,
    },
    /// Bad input: names the rule it broke. Nothing was written.
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// A stored record failed a check.
    #[error("corrupt log at position {position}: {reason}")]
    Corrupt {
        /// The first position found bad.
        position: u64,
        /// What was wrong, without record contents.
        reason: String,
    },
    /// The storage engine failed.
    #[error(transparent)]
    Storage(#[from] StoreError),
    /// The log was closed.
    #[error("the log is closed")]
    Closed,
    /// A storage failure stopped the writer; nothing after it was acknowledged.
    #[error("the log stopped accepting appends after a storage failure; reopen it")]
    Poisoned,
    /// The configuration is wrong: names what to fix.
    #[error("configuration: {0}")]
    Config(String),
    /// An erasure request id already names the erasure of another contact.
    /// Nothing was destroyed.
    #[error("this request id was used for the erasure of another contact")]
    RequestIdConflict,
}

fn fmt_version(v: Option<u64>) -> String {
    v.map_or_else(|| "no stream".to_owned(), |n| n.to_string())
}

impl Error {
    /// The coarse kind of this error.
    #[must_use]
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::WrongExpectedVersion { .. } | Self::RequestIdConflict => ErrorKind::Conflict,
            Self::InvalidInput(_) => ErrorKind::InvalidInput,
            Self::Corrupt { .. } => ErrorKind::Corruption,
            Self::Storage(_) => ErrorKind::Storage,
            Self::Closed | Self::Poisoned => ErrorKind::Unavailable,
            Self::Config(_) => ErrorKind::Configuration,
        }
    }

    pub(crate) fn invalid(reason: impl Into<String>) -> Self {
        Self::InvalidInput(reason.into())
    }

    pub(crate) fn config(reason: impl Into<String>) -> Self {
        Self::Config(reason.into())
    }

    pub(crate) fn corrupt(position: u64, reason: impl Into<String>) -> Self {
        Self::Corrupt {
            position,
            reason: reason.into(),
        }
    }
}

/// A failure of a storage engine, as its backend reports it.
#[derive(Debug, thiserror::Error)]
#[error("{backend} storage: {message}")]
pub struct StoreError {
    backend: &'static str,
    message: String,
}

impl StoreError {
    /// An error of `backend`, described by `cause`.
    pub fn new(backend: &'static str, cause: impl std::fmt::Display) -> Self {
        Self {
            backend,
            message: cause.to_string(),
        }
    }

    /// The backend that failed.
    #[must_use]
    pub fn backend(&self) -> &'static str {
        self.backend
    }
}
