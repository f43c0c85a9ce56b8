//! Helpers shared by the provider adapters: event ids, times, clear-text
//! sanitising, SMTP status parsing and the canonical event skeleton.

use mailledger_core::crypto::Personal;
use mailledger_core::email::{
    BounceClass, CanonicalEvent, MAX_PERSONAL_LEN, MAX_TAGS, MAX_TEXT_LEN,
};
use serde_json::Value;
use time::format_description::well_known::Rfc3339;
use time::{OffsetDateTime, UtcOffset};
use uuid::Uuid;

use super::json::{EMPTY, INVALID, Node, TOO_LONG};
use super::{Provider, RawPolicy, WebhookError};

/// The blake3 `derive_key` context of webhook event ids. Changing it changes
/// every derived id, so it never changes.
pub const EVENT_ID_CONTEXT: &str = "mailledger 2026-11 provider webhook event id v1";

/// The canonical event id of a provider event: blake3 `derive_key` under
/// [`EVENT_ID_CONTEXT`] of `provider name ‖ 0x00 ‖ id source`, first 16
/// bytes, as a UUID version 8 (moved out of the erasures' id space, which it
/// meets once in 2^32). The same provider event always yields the same id,
/// so a retried webhook is deduplicated by the ledger.
#[must_use]
pub fn derive_event_id(provider: Provider, id_source: &str) -> Uuid {
    let mut input = Vec::with_capacity(provider.as_str().len() + 1 + id_source.len());
    input.extend_from_slice(provider.as_str().as_bytes());
    input.push(0);
    input.extend_from_slice(id_source.as_bytes());
    let key = blake3::derive_key(EVENT_ID_CONTEXT, &input);
    let mut bytes = [0u8; 16];
    for (b, k) in bytes.iter_mut().zip(key.iter()) {
        *b = *k;
    }
    // Out of the erasures' id space, which ingest refuses.
    mailledger_core::email::unreserved_id(uuid::Builder::from_custom_bytes(bytes).into_uuid())
}

/// The blake3 `derive_key` context of [`scope_to_recipient`]. Never changes.
pub const RECIPIENT_ID_CONTEXT: &str =
    "mailledger 2026-11 provider webhook event id per recipient v1";

/// A derived event id made specific to one recipient: blake3 `derive_key`
/// under `RECIPIENT_ID_CONTEXT` of the id's 16 bytes ‖ the recipient's
/// pseudonym (keyed by the tenant's secret, so the id reveals nothing of
/// the address), first 16 bytes, as a UUID version 8. The same provider
/// event for the same recipient always gives the same id.
#[must_use]
pub fn scope_to_recipient(id: Uuid, contact: &mailledger_core::pseudonym::Pseudonym) -> Uuid {
    let mut input = Vec::with_capacity(16 + contact.as_bytes().len());
    input.extend_from_slice(id.as_bytes());
    input.extend_from_slice(contact.as_bytes());
    let key = blake3::derive_key(RECIPIENT_ID_CONTEXT, &input);
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&key[..16]);
    // Out of the erasures' id space, which ingest refuses.
    mailledger_core::email::unreserved_id(uuid::Builder::from_custom_bytes(bytes).into_uuid())
}

/// The latest instant accepted (the end of year 9999).
const MAX_UNIX: f64 = 253_402_300_799.0;

/// A time given as (fractional) seconds since the epoch.
pub(crate) fn unix_time(node: &Node<'_>) -> Result<OffsetDateTime, WebhookError> {
    let secs = node.as_f64()?;
    if !secs.is_finite() || !(0.0..=MAX_UNIX).contains(&secs) {
        return Err(node.error(INVALID));
    }
    // Bounded above, so the product fits an i128 exactly enough; the
    // conversion saturates rather than panicking in any case.
    let nanos = (secs * 1e9).round() as i128;
    OffsetDateTime::from_unix_timestamp_nanos(nanos).map_err(|_| node.error(INVALID))
}

/// A time given as RFC 3339 / ISO 8601 text, in UTC.
pub(crate) fn rfc3339_time(node: &Node<'_>) -> Result<OffsetDateTime, WebhookError> {
    let text = node.as_text()?;
    OffsetDateTime::parse(text, &Rfc3339)
        .map(|t| t.to_offset(UtcOffset::UTC))
        .map_err(|_| node.error("is not an RFC 3339 time"))
}

/// A provider's event id as the canonical `provider_event_id`: not empty and
/// at most [`MAX_TEXT_LEN`] bytes.
pub(crate) fn provider_event_id(node: &Node<'_>, id: String) -> Result<String, WebhookError> {
    if id.trim().is_empty() {
        return Err(node.error(EMPTY));
    }
    if id.len() > MAX_TEXT_LEN {
        return Err(node.error(TOO_LONG));
    }
    Ok(id)
}

/// Truncates to at most `max` bytes on a character boundary.
fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while end > 0 && !s.is_char_boundary(end) {
        end -= 1;
    }
    s.get(..end).unwrap_or_default()
}

/// A provider text for a clear (unsealed) canonical field. Clear fields may
/// never hold personal data: text with an `@` (an address, most likely) is
/// dropped, control characters become spaces, the rest is trimmed and cut
/// to [`MAX_TEXT_LEN`] bytes. `None` when nothing is left.
pub(crate) fn clear(text: &str) -> Option<String> {
    if text.contains('@') {
        return None;
    }
    let flat: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let t = truncate(flat.trim(), MAX_TEXT_LEN).trim();
    (!t.is_empty()).then(|| t.to_owned())
}

/// A provider's name for something (`HardBounce`, `Invalid Address`,
/// `suppress-bounce`) in snake case (`hard_bounce`, `invalid_address`,
/// `suppress_bounce`), for `sub_type`, `reason` and the like.
pub(crate) fn snake(name: &str) -> Option<String> {
    let mut out = String::with_capacity(name.len() + 4);
    let mut prev_lower = false;
    for c in name.trim().chars() {
        if c.is_ascii_uppercase() {
            if prev_lower && !out.ends_with('_') {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
            prev_lower = false;
        } else if c.is_ascii_alphanumeric() {
            out.push(c);
            prev_lower = true;
        } else if !out.is_empty() && !out.ends_with('_') {
            out.push('_');
            prev_lower = false;
        }
    }
    clear(out.trim_end_matches('_'))
}

/// A personal value to be sealed, when not empty and not over the canonical
/// limit (an oversized optional value is dropped, never cut: a cut value
/// would be a different value).
pub(crate) fn personal(text: &str) -> Option<Personal> {
    let t = text.trim();
    (!t.is_empty() && t.len() <= MAX_PERSONAL_LEN).then(|| Personal::new(t))
}

/// Where one provider's payload holds what [`scrub`] removes besides the
/// fields it finds by their standard names: paths from the root of the
/// event's `raw` (the keys separated by dots, `client-info`,
/// `payload.ip_address`). Each adapter has one, next to its mapping.
pub(crate) struct RawFields {
    /// Fields that list or hold recipients under the provider's own names
    /// (Mailgun `envelope.targets`, the Postmark bounce dump `Content`):
    /// always removed.
    pub(crate) recipients: &'static [&'static str],
    /// IP addresses and user agents of opens, clicks and complaints, and
    /// what the provider derives from them (geolocation, client and device
    /// names): removed unless the policy keeps engagement details.
    pub(crate) engagement: &'static [&'static str],
}

/// Header names that list recipients (compared in lower case, `_` read as
/// `-`): removed from `raw` wherever they occur, as an object key (SES
/// `commonHeaders.to`, Mailgun `message.headers.cc`, Postal `message.to`)
/// or as the name of a `{name, value}` header (SES `mail.headers`). The
/// event's own recipient is in its `recipient` field; anyone else's address
/// sealed under this contact's key would outlive that person's erasure.
const RECIPIENT_HEADERS: &[&str] = &[
    "to",
    "cc",
    "bcc",
    "resent-to",
    "resent-cc",
    "resent-bcc",
    "delivered-to",
    "x-original-to",
    "x-forwarded-to",
    "envelope-to",
    "x-envelope-to",
    "apparently-to",
    "tofull",
    "ccfull",
    "bccfull",
];

/// Whether a key or header name is dropped from `raw`: a recipient header
/// always, `subject` unless subjects are kept.
fn dropped_name(name: &str, keep_subjects: bool) -> bool {
    let n = name.trim().to_ascii_lowercase().replace('_', "-");
    RECIPIENT_HEADERS.contains(&n.as_str()) || (!keep_subjects && n == "subject")
}

/// The name of a `{"name": ..., "value": ...}` header entry.
fn header_name(item: &Value) -> Option<&str> {
    let map = item.as_object()?;
    let name = map.get("name").or_else(|| map.get("Name"))?.as_str()?;
    (map.contains_key("value") || map.contains_key("Value")).then_some(name)
}

/// Removes the recipient headers and, unless kept, the subject, at any
/// depth. Depth is bounded by the JSON parser's recursion limit.
fn strip_names(value: &mut Value, keep_subjects: bool) {
    match value {
        Value::Object(map) => {
            map.retain(|k, _| !dropped_name(k, keep_subjects));
            for child in map.values_mut() {
                strip_names(child, keep_subjects);
            }
        }
        Value::Array(items) => {
            items.retain(|item| !header_name(item).is_some_and(|n| dropped_name(n, keep_subjects)));
            for child in items {
                strip_names(child, keep_subjects);
            }
        }
        _ => {}
    }
}

/// Removes the field at a dotted path, when there.
fn remove_path(value: &mut Value, path: &str) {
    let (parent, last) = match path.rsplit_once('.') {
        Some((parent, last)) => (Some(parent), last),
        None => (None, path),
    };
    let mut at = value;
    if let Some(parent) = parent {
        for key in parent.split('.') {
            match at.get_mut(key) {
                Some(next) => at = next,
                None => return,
            }
        }
    }
    if let Value::Object(map) = at {
        map.remove(last);
    }
}

/// Scrubs a provider payload by the same rules as the event's fields:
/// recipient headers (anywhere) and the provider's `recipients` fields
/// always go; subjects (anywhere) unless `keep.keep_subjects`; the
/// provider's `engagement` fields unless `keep.keep_engagement_details`.
/// The one place these rules are; the adapters only say where their
/// provider puts things.
pub(crate) fn scrub(value: &mut Value, fields: &RawFields, keep: RawPolicy) {
    for path in fields.recipients {
        remove_path(value, path);
    }
    if !keep.keep_engagement_details {
        for path in fields.engagement {
            remove_path(value, path);
        }
    }
    strip_names(value, keep.keep_subjects);
}

/// The scrubbed payload as text, when it fits the core's limit (a payload
/// too large is left out rather than cut).
pub(crate) fn raw_text(value: &Value) -> Option<String> {
    serde_json::to_string(value)
        .ok()
        .filter(|s| s.len() <= MAX_PERSONAL_LEN)
}

/// The raw provider payload of an event (sealed by the core), scrubbed
/// ([`scrub`]), when it fits.
pub(crate) fn raw(value: &Value, fields: &RawFields, keep: RawPolicy) -> Option<Personal> {
    let mut copy = value.clone();
    scrub(&mut copy, fields, keep);
    raw_text(&copy).map(Personal::new)
}

/// The recipient address: a string with an `@`, at most 998 bytes (the
/// longest line SMTP allows).
pub(crate) fn recipient(node: &Node<'_>) -> Result<Personal, WebhookError> {
    let s = node.as_text()?;
    if !s.contains('@') || s.len() > 998 {
        return Err(node.error("is not an email address"));
    }
    Ok(Personal::new(s))
}

/// A message id as the canonical `message_id`: angle brackets removed,
/// dropped when empty or longer than [`MAX_TEXT_LEN`].
pub(crate) fn message_id(text: &str) -> Option<String> {
    let t = text
        .trim()
        .trim_start_matches('<')
        .trim_end_matches('>')
        .trim();
    (!t.is_empty() && t.len() <= MAX_TEXT_LEN && !t.chars().any(char::is_control))
        .then(|| t.to_owned())
}

/// The domain of an address such as `Sender <bob@mail.example.com>`, in
/// lower case, when it looks like a host name.
pub(crate) fn domain_of(address: &str) -> Option<String> {
    let (_, rest) = address.rsplit_once('@')?;
    host(rest.trim().trim_end_matches(['>', '"', '\'', ')']))
}

/// A host name in lower case, when it looks like one.
pub(crate) fn host(text: &str) -> Option<String> {
    let h = text.trim().trim_end_matches('.').to_ascii_lowercase();
    let ok = !h.is_empty()
        && h.len() <= 253
        && h.contains('.')
        && h.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')
        && !h.starts_with(['.', '-']);
    ok.then_some(h)
}

/// Tags for the canonical `tags`: each made a clear text, duplicates and
/// empty ones dropped, at most [`MAX_TAGS`].
pub(crate) fn tags<'s>(items: impl IntoIterator<Item = &'s str>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for t in items {
        if out.len() == MAX_TAGS {
            break;
        }
        if let Some(t) = clear(t)
            && !out.contains(&t)
        {
            out.push(t);
        }
    }
    out
}

/// The three-digit SMTP reply code at the start of a reply (after an
/// optional `smtp;` as in DSN diagnostic codes).
pub(crate) fn smtp_code(reply: &str) -> Option<u16> {
    let t = reply.trim();
    let t = t
        .strip_prefix("smtp;")
        .or_else(|| t.strip_prefix("SMTP;"))
        .unwrap_or(t)
        .trim_start();
    let digits: String = t.chars().take_while(char::is_ascii_digit).collect();
    let code: u16 = (digits.len() == 3).then(|| digits.parse().ok())??;
    (200..600).contains(&code).then_some(code)
}

/// The first enhanced status code (RFC 3463, `5.1.1`) in a text.
pub(crate) fn enhanced_status(text: &str) -> Option<String> {
    text.split(|c: char| c.is_whitespace() || matches!(c, ';' | ',' | '(' | ')' | '[' | ']'))
        .map(|w| w.trim_matches(|c: char| !c.is_ascii_digit()))
        .find(|w| is_enhanced_status(w))
        .map(str::to_owned)
}

/// Whether a text is an enhanced status code: class 2, 4 or 5, subject and
/// detail of one to three digits.
pub(crate) fn is_enhanced_status(w: &str) -> bool {
    let mut parts = w.split('.');
    let (Some(class), Some(subject), Some(detail), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    matches!(class, "2" | "4" | "5")
        && [subject, detail]
            .iter()
            .all(|p| (1..=3).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_digit()))
}

/// The bounce class an enhanced status code or SMTP reply code implies,
/// `default` when neither says: `5.1.x` (bad address) and other `5.x.x`
/// hard, `5.2.2` (mailbox full) soft, `5.7.x` (policy, reputation) block,
/// `4.x.x` soft; likewise `5xx` hard and `4xx` soft.
pub(crate) fn bounce_class(
    enhanced: Option<&str>,
    code: Option<u16>,
    default: BounceClass,
) -> BounceClass {
    if let Some(e) = enhanced {
        if e.starts_with("5.7.") {
            return BounceClass::Block;
        }
        if e == "5.2.2" || e.starts_with("4.") {
            return BounceClass::Soft;
        }
        if e.starts_with("5.") {
            return BounceClass::Hard;
        }
    }
    match code {
        Some(500..=599) => BounceClass::Hard,
        Some(400..=499) => BounceClass::Soft,
        _ => default,
    }
}

/// A canonical event with only the envelope set; the adapter fills in its
/// type's own fields.
pub(crate) fn event(
    provider: Provider,
    event_type: &str,
    id_source: &str,
    provider_event_id: String,
    recipient: Personal,
    occurred_at: OffsetDateTime,
) -> CanonicalEvent {
    CanonicalEvent {
        provider: Some(provider.as_str().to_owned()),
        provider_event_id: Some(provider_event_id),
        ..CanonicalEvent::new(
            derive_event_id(provider, id_source),
            event_type,
            recipient,
            occurred_at,
        )
    }
}

/// `name` as the `'static` entry of an adapter's list of names, `unknown`
/// when it is not one (a provider's type is never copied from a payload
/// into what reports it).
pub(crate) fn known(names: &[&'static str], name: &str) -> &'static str {
    names
        .iter()
        .copied()
        .find(|n| *n == name)
        .unwrap_or("unknown")
}

/// Checks a built event with the core's own rules, so that the caller only
/// ever receives events that the ledger accepts. The core's messages name
/// the field, never its value.
pub(crate) fn checked(event: CanonicalEvent) -> Result<CanonicalEvent, WebhookError> {
    match event.clone().validate() {
        Ok(_) => Ok(event),
        Err(e) => Err(WebhookError::Rejected {
            detail: e.to_string(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn provider_names_become_snake_case() {
        assert_eq!(snake("HardBounce").as_deref(), Some("hard_bounce"));
        assert_eq!(snake("Invalid Address").as_deref(), Some("invalid_address"));
        assert_eq!(snake("suppress-bounce").as_deref(), Some("suppress_bounce"));
        assert_eq!(
            snake("OnAccountSuppressionList").as_deref(),
            Some("on_account_suppression_list")
        );
        assert_eq!(snake("  "), None);
    }

    #[test]
    fn clear_text_never_keeps_an_address() {
        assert_eq!(clear("250 OK <ann@example.org>"), None);
        assert_eq!(clear(" 250\r\n OK ").as_deref(), Some("250   OK"));
        let long = "é".repeat(200);
        let cut = clear(&long).unwrap();
        assert!(cut.len() <= MAX_TEXT_LEN);
    }

    #[test]
    fn smtp_codes_and_enhanced_status_are_found() {
        assert_eq!(smtp_code("smtp; 550 5.1.1 user unknown"), Some(550));
        assert_eq!(smtp_code("250 2.0.0 OK"), Some(250));
        assert_eq!(smtp_code("OK"), None);
        assert_eq!(smtp_code("1234 x"), None);
        assert_eq!(
            enhanced_status("smtp; 550 5.1.1 user unknown").as_deref(),
            Some("5.1.1")
        );
        assert_eq!(enhanced_status("400 try again later"), None);
        assert_eq!(enhanced_status("(4.7.1)").as_deref(), Some("4.7.1"));
    }

    #[test]
    fn bounce_classes_follow_the_status_codes() {
        use BounceClass::*;
        assert_eq!(bounce_class(Some("5.1.1"), None, Undetermined), Hard);
        assert_eq!(bounce_class(Some("5.7.1"), Some(550), Undetermined), Block);
        assert_eq!(bounce_class(Some("5.2.2"), None, Hard), Soft);
        assert_eq!(bounce_class(None, Some(421), Undetermined), Soft);
        assert_eq!(bounce_class(None, None, Undetermined), Undetermined);
    }

    #[test]
    fn domains_are_taken_from_addresses() {
        assert_eq!(
            domain_of("Sender Name <sender@Mail.Example.org>").as_deref(),
            Some("mail.example.org")
        );
        assert_eq!(domain_of("no address"), None);
        assert_eq!(domain_of("x@bad_host!"), None);
    }

    #[test]
    fn scrub_removes_recipient_headers_anywhere_and_policy_fields_unless_kept() {
        let payload = serde_json::json!({
            "To": "a@x.example",
            "m": {"headers": {"cc": "b@x.example", "Resent_To": "c@x.example",
                              "subject": "S", "from": "f@x.example"}},
            "list": [{"name": "BCC", "value": "d@x.example"},
                     {"Name": "Subject", "Value": "S"},
                     {"name": "X-Other", "value": "kept"}],
            "geo": {"ip": "198.51.100.1", "city": "C"},
            "ua": "Agent",
            "own": {"targets": "e@x.example"},
        });
        const FIELDS: RawFields = RawFields {
            recipients: &["own.targets", "no.such.path"],
            engagement: &["geo.ip", "ua"],
        };
        let mut v = payload.clone();
        scrub(&mut v, &FIELDS, RawPolicy::default());
        assert_eq!(
            v,
            serde_json::json!({
                "m": {"headers": {"from": "f@x.example"}},
                "list": [{"name": "X-Other", "value": "kept"}],
                "geo": {"city": "C"},
                "own": {},
            })
        );
        let mut v = payload.clone();
        let keep = RawPolicy {
            keep_subjects: true,
            keep_engagement_details: true,
        };
        scrub(&mut v, &FIELDS, keep);
        let text = v.to_string();
        for gone in ["a@", "b@", "c@", "d@", "e@"] {
            assert!(!text.contains(gone), "{text}");
        }
        assert_eq!(v["m"]["headers"]["subject"], "S");
        assert_eq!(v["list"][0]["Name"], "Subject");
        assert_eq!(v["geo"]["ip"], "198.51.100.1");
        assert_eq!(v["ua"], "Agent");
    }

    #[test]
    fn event_ids_depend_on_provider_and_source_only() {
        let a = derive_event_id(Provider::Sendgrid, "abc");
        assert_eq!(a, derive_event_id(Provider::Sendgrid, "abc"));
        assert_ne!(a, derive_event_id(Provider::Mailgun, "abc"));
        assert_ne!(a, derive_event_id(Provider::Sendgrid, "abd"));
        assert_eq!(a.get_version_num(), 8);
    }
}
