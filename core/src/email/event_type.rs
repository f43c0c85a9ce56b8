//! The names of the taxonomy's event types, in one place.

use crate::error::Error;

/// An email event's canonical JSON `type` (and its record's type name).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EventType {
    /// `sent`: the MTA accepted a message for a recipient.
    Sent,
    /// `rejected`: the message was refused before sending.
    Rejected,
    /// `deferred`: a delivery attempt failed for now.
    Deferred,
    /// `delivered`: the receiving server accepted the message.
    Delivered,
    /// `bounced`: the message will not be delivered.
    Bounced,
    /// `complained`: the recipient reported the message as spam.
    Complained,
    /// `opened`: the message was opened.
    Opened,
    /// `clicked`: a link was followed.
    Clicked,
    /// `unsubscribed`: the recipient left a scope.
    Unsubscribed,
    /// `resubscribed`: the recipient rejoined a scope.
    Resubscribed,
    /// `suppressed`: an entry was added to the suppression list.
    Suppressed,
    /// `unsuppressed`: an entry was removed from it.
    Unsuppressed,
    /// `erased`: the contact's key was destroyed (written by the ledger
    /// only).
    Erased,
}

impl EventType {
    /// Every type, in the taxonomy's order.
    pub const ALL: [Self; 13] = [
        Self::Sent,
        Self::Rejected,
        Self::Deferred,
        Self::Delivered,
        Self::Bounced,
        Self::Complained,
        Self::Opened,
        Self::Clicked,
        Self::Unsubscribed,
        Self::Resubscribed,
        Self::Suppressed,
        Self::Unsuppressed,
        Self::Erased,
    ];

    /// The name in canonical JSON and in the log.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Sent => "sent",
            Self::Rejected => "rejected",
            Self::Deferred => "deferred",
            Self::Delivered => "delivered",
            Self::Bounced => "bounced",
            Self::Complained => "complained",
            Self::Opened => "opened",
            Self::Clicked => "clicked",
            Self::Unsubscribed => "unsubscribed",
            Self::Resubscribed => "resubscribed",
            Self::Suppressed => "suppressed",
            Self::Unsuppressed => "unsuppressed",
            Self::Erased => "erased",
        }
    }

    /// Whether an ingest may write it: every type but `erased`.
    #[must_use]
    pub const fn ingestible(self) -> bool {
        !matches!(self, Self::Erased)
    }

    /// The canonical JSON fields of this type beyond the common envelope.
    #[must_use]
    pub const fn own_fields(self) -> &'static [&'static str] {
        match self {
            Self::Sent => &["subject", "size"],
            Self::Rejected => &["reason", "detail"],
            Self::Deferred => &[
                "attempt",
                "smtp_code",
                "enhanced_status",
                "mx_host",
                "next_retry_at",
            ],
            Self::Delivered => &["smtp_response", "mx_host", "tls"],
            Self::Bounced => &["class", "sub_type", "status", "diagnostic"],
            Self::Complained => &["feedback_type"],
            Self::Opened => &["ip", "user_agent", "machine"],
            Self::Clicked => &["url", "ip", "user_agent", "bot"],
            Self::Unsubscribed | Self::Resubscribed => &["scope"],
            Self::Suppressed => &["reason", "scope", "expires_at"],
            Self::Unsuppressed => &["reason", "scope"],
            Self::Erased => &["request_id"],
        }
    }

    /// The names an ingest accepts, comma-separated, for error messages.
    #[must_use]
    pub fn ingestible_names() -> String {
        let names: Vec<&str> = Self::ALL
            .iter()
            .filter(|t| t.ingestible())
            .map(|t| t.as_str())
            .collect();
        names.join(", ")
    }
}

impl std::fmt::Display for EventType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for EventType {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        Self::ALL
            .into_iter()
            .find(|t| t.as_str() == s)
            .ok_or_else(|| Error::invalid("unknown event type"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_type_parses_from_its_own_name_and_nothing_else_parses() {
        for t in EventType::ALL {
            assert_eq!(t.as_str().parse::<EventType>().unwrap(), t);
            assert_eq!(t.to_string(), t.as_str());
        }
        for bad in ["", "Sent", "bounce", "sent "] {
            assert!(bad.parse::<EventType>().is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn only_the_ledger_writes_erasures() {
        let names = EventType::ingestible_names();
        assert!(!names.contains("erased"));
        assert_eq!(names.split(", ").count(), EventType::ALL.len() - 1);
    }
}
