//! Postmark: one JSON object per request, told apart by `RecordType`.
//! Postmark does not sign webhooks; the endpoint is protected by HTTP basic
//! authentication (or a custom header) that the API checks.

use mailledger_core::email::BounceClass;

use super::json::{self, Node};
use super::util::{self, clear, personal};
use super::{
    Authentication, EventSource, Provider, RawPolicy, Skipped, WebhookError, WebhookOutcome,
};

const P: Provider = Provider::Postmark;

/// Bounce `Type`s that are not delivery failures of the message (auto
/// replies, list commands, inbound errors): skipped.
const NOT_BOUNCES: &[&str] = &[
    "AutoResponder",
    "AddressChange",
    "Subscribe",
    "Unsubscribe",
    "ChallengeVerification",
    "OpenRelayTest",
    "InboundError",
    "SMTPApiError",
    "Unconfirmed",
];

/// Record types with no place in the canonical taxonomy.
const SKIPPED: &[&str] = &["SMTPApiError", "Inbound"];

/// Record types that give a canonical event.
const RECORD_TYPES: &[&str] = &[
    "Delivery",
    "Open",
    "Click",
    "Bounce",
    "SpamComplaint",
    "SubscriptionChange",
];

/// Where a Postmark record (the whole body, kept as `raw`) has what
/// [`util::scrub`] removes besides recipient headers and `Subject`, which it
/// finds by name: the bounce dump `Content` (the bounce message, whose
/// headers list the message's recipients and its subject) always;
/// `Geo` (the IP and where it is), `UserAgent` and what Postmark reads from
/// it (`Client`, `OS`, `Platform`) unless engagement details are kept.
const RAW: util::RawFields = util::RawFields {
    recipients: &["Content"],
    engagement: &["Geo", "UserAgent", "Client", "OS", "Platform"],
};

pub(crate) fn parse(body: &[u8], keep: RawPolicy) -> Result<WebhookOutcome, WebhookError> {
    let authentication = Authentication::ProviderDoesNotSign;
    let value = json::parse(body)?;
    let root = Node::root(&value, "");
    let record_type = root.req_str("RecordType")?;
    let skip = |event_type: &'static str, field: &str| WebhookOutcome::Events {
        events: Vec::new(),
        skipped: vec![Skipped::unmapped(field, event_type)],
        authentication,
        recipient_scoped: Vec::new(),
        sources: Vec::new(),
    };
    if let Some(known) = SKIPPED.iter().copied().find(|s| *s == record_type) {
        return Ok(skip(known, "RecordType"));
    }
    let message_id = root.opt_str("MessageID")?;
    // Postmark has an event id only for bounces and spam complaints (the
    // bounce `ID`); other events are identified by their record type, the
    // message and the event's own time, which Postmark sends to 100 ns.
    let composite = |time_field: &'static str| -> Result<(String, Node<'_>), WebhookError> {
        let time = root.req(time_field)?;
        let id = format!(
            "{record_type}:{}:{}",
            message_id.unwrap_or("-"),
            time.as_text()?
        );
        Ok((id, time))
    };
    let (event_type, id_source, provider_event_id, recipient_field, time, composite_id) =
        match record_type {
            "Delivery" | "Open" | "Click" => {
                let time_field = if record_type == "Delivery" {
                    "DeliveredAt"
                } else {
                    "ReceivedAt"
                };
                let (id, time) = composite(time_field)?;
                let event_type = match record_type {
                    "Delivery" => "delivered",
                    "Open" => "opened",
                    _ => "clicked",
                };
                (event_type, id.clone(), id, "Recipient", time, true)
            }
            "Bounce" | "SpamComplaint" => {
                let id_node = root.req("ID")?;
                let id = root
                    .opt_scalar("ID")?
                    .ok_or_else(|| id_node.error(json::EMPTY))?;
                let bounce_type = root.opt_str("Type")?.unwrap_or("Unknown");
                if record_type == "Bounce"
                    && let Some(not_bounce) =
                        NOT_BOUNCES.iter().copied().find(|s| *s == bounce_type)
                {
                    return Ok(skip(not_bounce, "Type"));
                }
                let event_type = match (record_type, bounce_type) {
                    ("SpamComplaint", _) | (_, "SpamComplaint") => "complained",
                    (_, "ManuallyDeactivated") => "suppressed",
                    (_, "TemplateRenderingFailed") => "rejected",
                    _ => "bounced",
                };
                let time = root.req("BouncedAt")?;
                (
                    event_type,
                    format!("{record_type}:{id}"),
                    util::provider_event_id(&id_node, id)?,
                    "Email",
                    time,
                    false,
                )
            }
            "SubscriptionChange" => {
                let (mut id, time) = composite("ChangedAt")?;
                let suppress = root.opt_bool("SuppressSending")?.unwrap_or(true);
                id.push_str(if suppress { ":suppress" } else { ":reactivate" });
                let by_recipient = root.opt_str("Origin")? == Some("Recipient")
                    && root.opt_str("SuppressionReason")? == Some("ManualSuppression");
                let event_type = match (suppress, by_recipient) {
                    (true, true) => "unsubscribed",
                    (true, false) => "suppressed",
                    (false, true) => "resubscribed",
                    (false, false) => "unsuppressed",
                };
                (event_type, id.clone(), id, "Recipient", time, true)
            }
            _ => {
                return Err(WebhookError::UnknownEvent {
                    field: "RecordType".to_owned(),
                });
            }
        };
    let provider_event_id = util::provider_event_id(&time, provider_event_id)?;
    let mut ev = util::event(
        P,
        event_type,
        &id_source,
        provider_event_id,
        util::recipient(&root.req(recipient_field)?)?,
        util::rfc3339_time(&time)?,
    );
    ev.message_id = message_id.and_then(util::message_id);
    ev.tags = util::tags(root.opt_str("Tag")?);
    ev.sending_domain = root.opt_str("From")?.and_then(util::domain_of);
    ev.raw = util::raw(&value, &RAW, keep);
    let details = root.opt_str("Details")?;
    let geo_ip = match root.get("Geo")? {
        Some(geo) => geo.opt_str("IP")?.and_then(personal),
        None => None,
    };
    match event_type {
        "delivered" => ev.smtp_response = details.and_then(clear),
        "opened" => {
            ev.ip = geo_ip;
            ev.user_agent = root.opt_str("UserAgent")?.and_then(personal);
            ev.machine = Some(false);
        }
        "clicked" => {
            let link = root.req("OriginalLink")?;
            ev.url = Some(personal(link.as_text()?).ok_or_else(|| link.error(json::TOO_LONG))?);
            ev.ip = geo_ip;
            ev.user_agent = root.opt_str("UserAgent")?.and_then(personal);
            ev.bot = Some(false);
        }
        "bounced" => {
            let bounce_type = root.opt_str("Type")?.unwrap_or("Unknown");
            let enhanced = details.and_then(util::enhanced_status);
            ev.class = Some(match bounce_type {
                "HardBounce" | "BadEmailAddress" => BounceClass::Hard,
                "SoftBounce" | "Transient" | "DnsError" => BounceClass::Soft,
                "Blocked" | "SpamNotification" | "VirusNotification" | "DMARCPolicy" => {
                    BounceClass::Block
                }
                _ => util::bounce_class(enhanced.as_deref(), None, BounceClass::Undetermined),
            });
            ev.sub_type = util::snake(bounce_type);
            ev.status = enhanced;
            ev.diagnostic = details.and_then(personal);
        }
        "rejected" => {
            ev.reason = Some("invalid".to_owned());
            ev.detail = Some("template_rendering_failed".to_owned());
        }
        "suppressed" | "unsuppressed" | "unsubscribed" | "resubscribed" => {
            // Postmark suppresses per message stream: the stream is the
            // scope, so an unsubscribe from a broadcast stream does not stop
            // transactional mail.
            let stream = root.opt_str("MessageStream")?.and_then(clear);
            ev.scope = Some(stream.unwrap_or_else(|| "all".to_owned()));
            if event_type == "suppressed" || event_type == "unsuppressed" {
                ev.reason = match root.opt_str("SuppressionReason")? {
                    Some(r) => util::snake(r),
                    None if record_type == "Bounce" => Some("manually_deactivated".to_owned()),
                    None => None,
                };
            }
        }
        _ => {}
    }
    Ok(WebhookOutcome::Events {
        events: vec![util::checked(ev)?],
        skipped: Vec::new(),
        authentication,
        // A composite id names no recipient: two recipients of one message
        // at the same instant would share it.
        recipient_scoped: if composite_id { vec![0] } else { Vec::new() },
        sources: vec![EventSource::single(
            "",
            util::known(RECORD_TYPES, record_type),
        )],
    })
}
