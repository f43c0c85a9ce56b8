//! Errors of the projections.

/// What went wrong in a projection.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The log underneath failed (reading, decoding or opening an event).
    #[error(transparent)]
    Log(#[from] mailledger_core::Error),
    /// The projection's own store failed.
    #[error("projection storage failed: {0}")]
    Storage(String),
    /// The projection's stored state does not decode.
    #[error("projection state is corrupt: {0}")]
    Corrupt(String),
    /// A query or request was malformed; the message names the field.
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// The runner stopped.
    #[error("the projection runner has stopped")]
    Stopped,
}

impl Error {
    /// The coarse kind, as the log layer's errors have it.
    #[must_use]
    pub fn kind(&self) -> mailledger_core::ErrorKind {
        use mailledger_core::ErrorKind;
        match self {
            Self::Log(e) => e.kind(),
            Self::Storage(_) => ErrorKind::Storage,
            Self::Corrupt(_) => ErrorKind::Corruption,
            Self::InvalidInput(_) => ErrorKind::InvalidInput,
            Self::Stopped => ErrorKind::Unavailable,
        }
    }
}

/// The result of projection operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;
