//! SendGrid (Twilio SendGrid Event Webhook): a JSON array of events, signed
//! with ECDSA P-256 over the timestamp header and the raw body.

use http::HeaderMap;
use mailledger_core::email::BounceClass;

use super::json::{self, Node};
use super::util::{self, clear, personal};
use super::verify;
use super::{
    Authentication, EventSource, Provider, ProviderSecrets, RawPolicy, Skipped, WebhookError,
    WebhookOutcome, unsigned,
};

const P: Provider = Provider::Sendgrid;
const SIGNATURE: &str = "x-twilio-email-event-webhook-signature";
const TIMESTAMP: &str = "x-twilio-email-event-webhook-timestamp";

/// Events with no place in the canonical taxonomy.
const SKIPPED: &[&str] = &["account_status_change"];

fn authenticate(
    headers: &HeaderMap,
    body: &[u8],
    secrets: &ProviderSecrets,
    now_unix_secs: i64,
) -> Result<Authentication, WebhookError> {
    let Some(key_text) = secrets.sendgrid_public_key.as_deref() else {
        return unsigned(secrets, P);
    };
    let key = verify::p256_public_key(P, key_text)?;
    let signature = verify::header(headers, SIGNATURE)?.ok_or(WebhookError::MissingSignature {
        what: "header X-Twilio-Email-Event-Webhook-Signature",
    })?;
    let timestamp = verify::header(headers, TIMESTAMP)?.ok_or(WebhookError::MissingSignature {
        what: "header X-Twilio-Email-Event-Webhook-Timestamp",
    })?;
    let bad = WebhookError::BadSignature {
        what: "header X-Twilio-Email-Event-Webhook-Signature",
    };
    let signature = verify::base64(signature).ok_or(bad.clone())?;
    let mut signed = Vec::with_capacity(timestamp.len() + body.len());
    signed.extend_from_slice(timestamp.as_bytes());
    signed.extend_from_slice(body);
    if !verify::p256_verifies(&key, &signed, &signature) {
        return Err(bad);
    }
    let ts: i64 = timestamp.parse().map_err(|_| WebhookError::BadSignature {
        what: "header X-Twilio-Email-Event-Webhook-Timestamp",
    })?;
    verify::check_fresh(
        "header X-Twilio-Email-Event-Webhook-Timestamp",
        ts,
        now_unix_secs,
        secrets.max_signature_age_secs,
    )?;
    Ok(Authentication::Verified)
}

/// The drop reasons SendGrid documents, as a canonical reject reason.
fn reject_reason(reason: Option<&str>) -> &'static str {
    match reason {
        Some("Bounced Address" | "Unsubscribed Address" | "Spam Reporting Address") => "suppressed",
        Some(r) if r.starts_with("Invalid") => "invalid",
        Some("Recipient List over Package Quota") => "quota",
        _ => "policy",
    }
}

/// SendGrid's event names and their canonical types.
const TYPES: &[(&str, &str)] = &[
    ("processed", "sent"),
    ("dropped", "rejected"),
    ("deferred", "deferred"),
    ("delivered", "delivered"),
    ("bounce", "bounced"),
    ("open", "opened"),
    ("click", "clicked"),
    ("spamreport", "complained"),
    ("unsubscribe", "unsubscribed"),
    ("group_unsubscribe", "unsubscribed"),
    ("group_resubscribe", "resubscribed"),
];

/// Where a SendGrid event (the array element, kept as `raw`) has what
/// [`util::scrub`] removes besides recipient headers and subjects (which
/// SendGrid sends only as custom arguments a sender chose), found by name:
/// the opener's or clicker's `ip` and `useragent` unless engagement details
/// are kept.
const RAW: util::RawFields = util::RawFields {
    recipients: &[],
    engagement: &["ip", "useragent"],
};

/// What one array element gives.
enum Item {
    Event(Box<mailledger_core::email::CanonicalEvent>, &'static str),
    Unmapped(&'static str),
}

/// Maps a batch: each bad element is skipped with its index and what is
/// wrong with it, and the others are kept; refused only when no element is
/// usable.
pub(crate) fn parse(
    headers: &HeaderMap,
    body: &[u8],
    secrets: &ProviderSecrets,
    keep: RawPolicy,
    now_unix_secs: i64,
) -> Result<WebhookOutcome, WebhookError> {
    let authentication = authenticate(headers, body, secrets, now_unix_secs)?;
    let value = json::parse(body)?;
    let root = Node::root(&value, "");
    let mut events = Vec::new();
    let mut skipped = Vec::new();
    for (index, item) in root.items()?.iter().enumerate() {
        match map_item(item, keep) {
            Ok(Item::Event(ev, name)) => events.push((
                *ev,
                EventSource {
                    field: item.path().to_owned(),
                    index: Some(index),
                    event_type: name,
                },
            )),
            Ok(Item::Unmapped(known)) => skipped.push(Skipped::unmapped(item.path(), known)),
            Err((name, e)) => skipped.push(Skipped::bad(item.path(), index, name, e)),
        }
    }
    super::batch(events, skipped, authentication)
}

/// Maps one array element; an error comes with the element's event name
/// (from [`TYPES`], `unknown` when it is not one).
fn map_item(item: &Node<'_>, keep: RawPolicy) -> Result<Item, (&'static str, WebhookError)> {
    let name = item.req_str("event").map_err(|e| ("unknown", e))?;
    if let Some(known) = SKIPPED.iter().copied().find(|s| *s == name) {
        return Ok(Item::Unmapped(known));
    }
    let Some(&(known, event_type)) = TYPES.iter().find(|(n, _)| *n == name) else {
        return Err((
            "unknown",
            WebhookError::UnknownEvent {
                field: item.child_path("event"),
            },
        ));
    };
    map_event(item, known, event_type, keep)
        .map(|ev| Item::Event(Box::new(ev), known))
        .map_err(|e| (known, e))
}

/// Maps one element of a known event type.
fn map_event(
    item: &Node<'_>,
    name: &'static str,
    event_type: &'static str,
    keep: RawPolicy,
) -> Result<mailledger_core::email::CanonicalEvent, WebhookError> {
    let id_node = item.req("sg_event_id")?;
    let sg_event_id = util::provider_event_id(&id_node, id_node.as_text()?.to_owned())?;
    let mut ev = util::event(
        P,
        event_type,
        &sg_event_id,
        sg_event_id.clone(),
        util::recipient(&item.req("email")?)?,
        util::unix_time(&item.req("timestamp")?)?,
    );
    // The X-Message-Id the send API returned is the part of
    // `sg_message_id` before `.filter`; `smtp-id` when it is absent.
    ev.message_id = match item.opt_str("sg_message_id")? {
        Some(m) => util::message_id(m.split(".filter").next().unwrap_or(m)),
        None => item.opt_str("smtp-id")?.and_then(util::message_id),
    };
    ev.tags = match item.get("category")? {
        None => Vec::new(),
        Some(c) => match c.value() {
            serde_json::Value::String(s) => util::tags([s.as_str()]),
            _ => {
                let mut texts = Vec::new();
                for t in c.items()? {
                    texts.push(t.as_str()?);
                }
                util::tags(texts)
            }
        },
    };
    ev.campaign = match item.opt_scalar("marketing_campaign_name")? {
        Some(name) => clear(&name),
        None => item
            .opt_scalar("marketing_campaign_id")?
            .and_then(|id| clear(&id)),
    };
    ev.raw = util::raw(item.value(), &RAW, keep);
    let response = item.opt_str("response")?;
    let reason = item.opt_str("reason")?;
    let status = item
        .opt_str("status")?
        .filter(|s| util::is_enhanced_status(s))
        .map(str::to_owned);
    match name {
        "dropped" => {
            ev.reason = Some(reject_reason(reason).to_owned());
            ev.detail = reason.and_then(util::snake);
        }
        "deferred" => {
            ev.attempt = item.opt_u64("attempt")?.and_then(|a| u32::try_from(a).ok());
            ev.smtp_code = response.and_then(util::smtp_code);
            ev.enhanced_status = status.or_else(|| response.and_then(util::enhanced_status));
        }
        "delivered" => {
            ev.smtp_response = response.and_then(clear);
            ev.tls = item.opt_bool("tls")?;
        }
        "bounce" => {
            let classification = item.opt_str("bounce_classification")?;
            let code = reason.and_then(util::smtp_code);
            ev.class = Some(match (item.opt_str("type")?, classification) {
                (Some("blocked"), _) => BounceClass::Block,
                (_, Some("Invalid Address" | "Mailbox Unavailable")) => BounceClass::Hard,
                (_, Some("Technical")) => BounceClass::Soft,
                (_, Some("Content" | "Reputation" | "Frequency or Volume")) => BounceClass::Block,
                (_, Some("Unclassified")) => BounceClass::Undetermined,
                // SendGrid's `bounce` is permanent.
                _ => util::bounce_class(status.as_deref(), code, BounceClass::Hard),
            });
            ev.sub_type = classification
                .or(item.opt_str("type")?)
                .and_then(util::snake);
            ev.status = status;
            ev.diagnostic = reason.and_then(personal);
        }
        "open" => {
            ev.ip = item.opt_str("ip")?.and_then(personal);
            ev.user_agent = item.opt_str("useragent")?.and_then(personal);
            // Apple Mail Privacy Protection and other prefetching.
            ev.machine = Some(item.opt_bool("sg_machine_open")?.unwrap_or(false));
        }
        "click" => {
            let url = item.req("url")?;
            ev.url = Some(personal(url.as_text()?).ok_or_else(|| url.error(json::TOO_LONG))?);
            ev.ip = item.opt_str("ip")?.and_then(personal);
            ev.user_agent = item.opt_str("useragent")?.and_then(personal);
            ev.bot = Some(false);
        }
        "unsubscribe" => ev.scope = Some("all".to_owned()),
        "group_unsubscribe" | "group_resubscribe" => {
            let group = item.req("asm_group_id")?;
            let id = item
                .opt_u64("asm_group_id")?
                .ok_or_else(|| group.error(json::INVALID))?;
            ev.scope = Some(format!("group-{id}"));
        }
        _ => {}
    }
    util::checked(ev)
}
