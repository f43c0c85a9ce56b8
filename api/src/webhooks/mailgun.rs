//! Mailgun: `{signature: {timestamp, token, signature}, event-data: {...}}`,
//! one event per request, signed with HMAC-SHA256 under the HTTP webhook
//! signing key.

use mailledger_core::email::BounceClass;
use time::Duration;

use super::json::{self, Node};
use super::util::{self, clear, personal};
use super::verify;
use super::{
    Authentication, EventSource, Provider, ProviderSecrets, RawPolicy, Skipped, WebhookError,
    WebhookOutcome, unsigned,
};

const P: Provider = Provider::Mailgun;

/// Mailgun events with no place in the canonical taxonomy (inbound storage
/// and mailing list uploads).
const SKIPPED: &[&str] = &[
    "stored",
    "list_member_uploaded",
    "list_member_upload_error",
    "list_uploaded",
];

/// The Mailgun events that give a canonical event.
const EVENTS: &[&str] = &[
    "accepted",
    "rejected",
    "delivered",
    "failed",
    "opened",
    "clicked",
    "unsubscribed",
    "complained",
];

/// Where Mailgun's `event-data` (kept as `raw`) has what [`util::scrub`]
/// removes besides recipient headers (`message.headers.to`, `cc`, `bcc`)
/// and `message.headers.subject`, which it finds by name: the SMTP
/// recipients (`envelope.targets`, `message.recipients`) always; the
/// opener's or clicker's `ip`, `client-info` (user agent, client, device)
/// and `geolocation` (from the IP) unless engagement details are kept.
const RAW: util::RawFields = util::RawFields {
    recipients: &["envelope.targets", "message.recipients"],
    engagement: &["ip", "client-info", "geolocation"],
};

fn authenticate(
    root: &Node<'_>,
    secrets: &ProviderSecrets,
    now_unix_secs: i64,
) -> Result<Authentication, WebhookError> {
    let Some(key) = secrets.mailgun_signing_key.as_deref() else {
        return unsigned(secrets, P);
    };
    let missing = |what| WebhookError::MissingSignature { what };
    let sig = root.get("signature")?.ok_or(missing("field signature"))?;
    let timestamp = sig
        .opt_scalar("timestamp")?
        .ok_or(missing("field signature.timestamp"))?;
    let token = sig
        .opt_str("token")?
        .ok_or(missing("field signature.token"))?;
    let signature = sig
        .opt_str("signature")?
        .ok_or(missing("field signature.signature"))?;
    let mut signed = timestamp.clone().into_bytes();
    signed.extend_from_slice(token.as_bytes());
    if !verify::hmac_sha256_hex_matches(key.as_bytes(), &signed, signature) {
        return Err(WebhookError::BadSignature {
            what: "field signature.signature",
        });
    }
    let ts: i64 = timestamp.parse().map_err(|_| WebhookError::BadSignature {
        what: "field signature.timestamp",
    })?;
    verify::check_fresh(
        "signature.timestamp",
        ts,
        now_unix_secs,
        secrets.max_signature_age_secs,
    )?;
    Ok(Authentication::Verified)
}

/// The token and timestamp of a webhook's signature, when a signing key is
/// configured (so that a parsed webhook was verified): what the replay
/// guard ([`super::replay`]) remembers.
pub(crate) fn signature_token(body: &[u8], secrets: &ProviderSecrets) -> Option<(String, i64)> {
    secrets.mailgun_signing_key.as_ref()?;
    let value = json::parse(body).ok()?;
    let root = Node::root(&value, "");
    let sig = root.get("signature").ok()??;
    let timestamp = sig.opt_scalar("timestamp").ok()??.parse().ok()?;
    let token = sig.opt_str("token").ok()??.to_owned();
    Some((token, timestamp))
}

pub(crate) fn parse(
    body: &[u8],
    secrets: &ProviderSecrets,
    keep: RawPolicy,
    now_unix_secs: i64,
) -> Result<WebhookOutcome, WebhookError> {
    let value = json::parse(body)?;
    let root = Node::root(&value, "");
    root.object()?;
    let authentication = authenticate(&root, secrets, now_unix_secs)?;
    let data = root.req("event-data")?;
    let name = data.req_str("event")?;
    if let Some(known) = SKIPPED.iter().copied().find(|s| *s == name) {
        return Ok(WebhookOutcome::Events {
            events: Vec::new(),
            skipped: vec![Skipped::unmapped(data.child_path("event"), known)],
            authentication,
            recipient_scoped: Vec::new(),
            sources: Vec::new(),
        });
    }
    let severity = data.opt_str("severity")?;
    let reason = data.opt_str("reason")?;
    let event_type = match (name, severity, reason) {
        ("accepted", _, _) => "sent",
        ("rejected", _, _) => "rejected",
        ("delivered", _, _) => "delivered",
        ("failed", Some("temporary"), _) => "deferred",
        ("failed", _, Some("suppress-bounce" | "suppress-unsubscribe" | "suppress-complaint")) => {
            "rejected"
        }
        ("failed", _, _) => "bounced",
        ("opened", _, _) => "opened",
        ("clicked", _, _) => "clicked",
        ("unsubscribed", _, _) => "unsubscribed",
        ("complained", _, _) => "complained",
        _ => {
            return Err(WebhookError::UnknownEvent {
                field: data.child_path("event"),
            });
        }
    };
    // Mailgun's event id is unique only within a day: the id is derived from
    // the event name, the id and the event's timestamp (as sent).
    let id_node = data.req("id")?;
    let mailgun_id = util::provider_event_id(&id_node, id_node.as_text()?.to_owned())?;
    let time_node = data.req("timestamp")?;
    let occurred_at = util::unix_time(&time_node)?;
    let timestamp_text = data
        .opt_scalar("timestamp")?
        .ok_or_else(|| time_node.error(json::MISSING))?;
    let id_source = format!("{name}:{mailgun_id}:{timestamp_text}");

    let mut ev = util::event(
        P,
        event_type,
        &id_source,
        mailgun_id,
        util::recipient(&data.req("recipient")?)?,
        occurred_at,
    );
    let message = data.get("message")?;
    let headers = match &message {
        Some(m) => m.get("headers")?,
        None => None,
    };
    if let Some(h) = &headers {
        ev.message_id = h.opt_str("message-id")?.and_then(util::message_id);
    }
    let tag_nodes = data.opt_items("tags")?;
    let mut tag_texts = Vec::new();
    for t in &tag_nodes {
        tag_texts.push(t.as_str()?);
    }
    ev.tags = util::tags(tag_texts);
    ev.campaign = match data.opt_items("campaigns")?.first() {
        Some(c) => match c.get("name")? {
            Some(n) => clear(n.as_str()?),
            None => None,
        },
        None => None,
    };
    let domain = match data.get("domain")? {
        Some(d) => d.opt_str("name")?.and_then(util::host),
        None => None,
    };
    ev.sending_domain = match domain {
        Some(d) => Some(d),
        None => match data.get("envelope")? {
            Some(e) => e.opt_str("sender")?.and_then(util::domain_of),
            None => None,
        },
    };
    ev.raw = util::raw(data.value(), &RAW, keep);

    let status = data.get("delivery-status")?;
    let status_text = |key: &'static str| -> Result<Option<&str>, WebhookError> {
        match &status {
            Some(s) => s.opt_str(key),
            None => Ok(None),
        }
    };
    let code = match &status {
        Some(s) => s
            .opt_u64("code")?
            .and_then(|c| u16::try_from(c).ok())
            .filter(|c| (200..600).contains(c)),
        None => None,
    };
    let message_text = status_text("message")?;
    let description = status_text("description")?;
    let enhanced = status_text("enhanced-code")?
        .filter(|s| util::is_enhanced_status(s))
        .map(str::to_owned)
        .or_else(|| message_text.and_then(util::enhanced_status))
        .or_else(|| description.and_then(util::enhanced_status));
    let client = data.get("client-info")?;
    let user_agent = match &client {
        Some(c) => c.opt_str("user-agent")?.and_then(personal),
        None => None,
    };
    // Mailgun marks machine opens and clicks (Apple Mail Privacy
    // Protection, Gmail's image proxy, link scanners) in `client-info.bot`.
    let machine = match &client {
        Some(c) => c.opt_str("bot")?.is_some(),
        None => false,
    };

    match event_type {
        "sent" => {
            if let Some(m) = &message {
                ev.size = m.opt_u64("size")?;
            }
            if let Some(h) = &headers {
                ev.subject = h.opt_str("subject")?.and_then(personal);
            }
        }
        "rejected" => {
            ev.reason = Some(if name == "failed" {
                "suppressed".to_owned()
            } else {
                "policy".to_owned()
            });
            ev.detail = match name {
                "failed" => reason.and_then(util::snake),
                _ => match data.get("reject")? {
                    Some(r) => r.opt_str("reason")?.and_then(clear),
                    None => None,
                },
            };
        }
        "delivered" => {
            ev.smtp_response = match (code, message_text.and_then(clear)) {
                (Some(c), Some(m)) => clear(&format!("{c} {m}")),
                (Some(c), None) => Some(c.to_string()),
                (None, m) => m,
            };
            ev.mx_host = status_text("mx-host")?.and_then(util::host);
            ev.tls = match &status {
                Some(s) => s.opt_bool("tls")?,
                None => None,
            };
        }
        "deferred" => {
            ev.smtp_code = code;
            ev.enhanced_status = enhanced;
            ev.mx_host = status_text("mx-host")?.and_then(util::host);
            if let Some(s) = &status {
                ev.attempt = s.opt_u64("attempt-no")?.and_then(|a| u32::try_from(a).ok());
                if let Some(retry) = s.opt_u64("retry-seconds")? {
                    let retry = i64::try_from(retry).unwrap_or(i64::MAX);
                    ev.next_retry_at = occurred_at.checked_add(Duration::seconds(retry));
                }
            }
        }
        "bounced" => {
            let class = match (reason, status_text("bounce-type")?) {
                (Some("espblock"), _) => BounceClass::Block,
                (_, Some("hard")) => BounceClass::Hard,
                (_, Some("soft")) => BounceClass::Soft,
                // A permanent failure: hard unless the codes say otherwise.
                _ => util::bounce_class(enhanced.as_deref(), code, BounceClass::Hard),
            };
            ev.class = Some(class);
            ev.sub_type = reason.and_then(util::snake);
            ev.status = enhanced;
            ev.diagnostic = match (message_text, description) {
                (Some(m), _) => personal(m),
                (None, Some(d)) => personal(d),
                (None, None) => None,
            };
        }
        "opened" => {
            ev.ip = data.opt_str("ip")?.and_then(personal);
            ev.user_agent = user_agent;
            ev.machine = Some(machine);
        }
        "clicked" => {
            let url = data.req("url")?;
            ev.url = Some(personal(url.as_text()?).ok_or_else(|| url.error(json::TOO_LONG))?);
            ev.ip = data.opt_str("ip")?.and_then(personal);
            ev.user_agent = user_agent;
            ev.bot = Some(machine);
        }
        "unsubscribed" => ev.scope = Some("all".to_owned()),
        _ => {}
    }
    Ok(WebhookOutcome::Events {
        events: vec![util::checked(ev)?],
        skipped: Vec::new(),
        authentication,
        recipient_scoped: Vec::new(),
        sources: vec![EventSource::single("event-data", util::known(EVENTS, name))],
    })
}
