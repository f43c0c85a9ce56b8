//! Postal: `{event, timestamp, uuid, payload}` signed with the server's RSA
//! key (`X-Postal-Signature-256`, legacy `X-Postal-Signature`).

use http::HeaderMap;
use mailledger_core::email::{BounceClass, CanonicalEvent};
use ring::signature;

use super::json::{self, Node};
use super::util::{self, clear, personal};
use super::verify;
use super::{
    Authentication, EventSource, Provider, ProviderSecrets, RawPolicy, Skipped, WebhookError,
    WebhookOutcome, unsigned,
};

const P: Provider = Provider::Postal;
const SIG_256: &str = "x-postal-signature-256";
const SIG_1: &str = "x-postal-signature";

/// Postal events with no place in the canonical taxonomy.
const SKIPPED: &[&str] = &[
    "MessageHeld",
    "DomainDNSError",
    "SendLimitApproaching",
    "SendLimitExceeded",
];

/// The Postal events that give a canonical event.
const EVENTS: &[&str] = &[
    "MessageSent",
    "MessageDelayed",
    "MessageDeliveryFailed",
    "MessageBounced",
    "MessageLinkClicked",
    "MessageLoaded",
];

/// Where a Postal payload (the whole body, kept as `raw`) has what
/// [`util::scrub`] removes besides recipient headers (`message.to`,
/// `bounce.to`) and subjects, which it finds by name.
const RAW: util::RawFields = util::RawFields {
    recipients: &[],
    engagement: &["payload.ip_address", "payload.user_agent"],
};

fn authenticate(
    headers: &HeaderMap,
    body: &[u8],
    secrets: &ProviderSecrets,
) -> Result<Authentication, WebhookError> {
    let Some(key_text) = secrets.postal_public_key.as_deref() else {
        return unsigned(secrets, P);
    };
    let key = verify::rsa_public_key(P, key_text)?;
    // The SHA-256 signature when present, and then only it (no downgrade to
    // SHA-1 when it fails); the SHA-1 one only from Postal versions that
    // send nothing else. Postal's default key has 1024 bits.
    let (header, algorithm): (&'static str, &'static signature::RsaParameters) =
        if verify::header(headers, SIG_256)?.is_some() {
            (
                SIG_256,
                &signature::RSA_PKCS1_1024_8192_SHA256_FOR_LEGACY_USE_ONLY,
            )
        } else if verify::header(headers, SIG_1)?.is_some() {
            if secrets.postal_require_sha256 {
                return Err(WebhookError::WeakSignature {
                    what: "header X-Postal-Signature",
                    setting: "postal_require_sha256",
                });
            }
            (
                SIG_1,
                &signature::RSA_PKCS1_1024_8192_SHA1_FOR_LEGACY_USE_ONLY,
            )
        } else {
            return Err(WebhookError::MissingSignature {
                what: "header X-Postal-Signature-256",
            });
        };
    let what = if header == SIG_256 {
        "header X-Postal-Signature-256"
    } else {
        "header X-Postal-Signature"
    };
    let sig = verify::header(headers, header)?
        .and_then(verify::base64)
        .ok_or(WebhookError::BadSignature { what })?;
    if verify::rsa_verifies(algorithm, &key, body, &sig) {
        Ok(Authentication::Verified)
    } else {
        Err(WebhookError::BadSignature { what })
    }
}

pub(crate) fn parse(
    headers: &HeaderMap,
    body: &[u8],
    secrets: &ProviderSecrets,
    keep: RawPolicy,
) -> Result<WebhookOutcome, WebhookError> {
    let authentication = authenticate(headers, body, secrets)?;
    let value = json::parse(body)?;
    let root = Node::root(&value, "");
    let event = root.req("event")?;
    let name = event.as_text()?;
    let uuid_node = root.req("uuid")?;
    let provider_event_id = util::provider_event_id(&uuid_node, uuid_node.as_text()?.to_owned())?;
    let queued_at = util::unix_time(&root.req("timestamp")?)?;
    let payload = root.req("payload")?;
    payload.object()?;

    let skip = |event_type: &'static str| WebhookOutcome::Events {
        events: Vec::new(),
        skipped: vec![Skipped::unmapped("event", event_type)],
        authentication,
        recipient_scoped: Vec::new(),
        sources: Vec::new(),
    };
    if let Some(known) = SKIPPED.iter().copied().find(|s| *s == name) {
        return Ok(skip(known));
    }

    let (message, canonical_type) = match name {
        "MessageSent" => (payload.req("message")?, "delivered"),
        "MessageDelayed" => (payload.req("message")?, "deferred"),
        "MessageDeliveryFailed" => (payload.req("message")?, "bounced"),
        "MessageBounced" => (payload.req("original_message")?, "bounced"),
        "MessageLinkClicked" => (payload.req("message")?, "clicked"),
        "MessageLoaded" => (payload.req("message")?, "opened"),
        _ => {
            return Err(WebhookError::UnknownEvent {
                field: "event".to_owned(),
            });
        }
    };
    // Status events are sent for incoming messages too: not email this
    // ledger sent, so not its events.
    if message.opt_str("direction")? == Some("incoming") {
        return Ok(skip("incoming message"));
    }

    let occurred_at = match name {
        "MessageBounced" => match payload.get("bounce")? {
            Some(b) => match b.get("timestamp")? {
                Some(t) => util::unix_time(&t)?,
                None => queued_at,
            },
            None => queued_at,
        },
        "MessageSent" | "MessageDelayed" | "MessageDeliveryFailed" => {
            match payload.get("timestamp")? {
                Some(t) => util::unix_time(&t)?,
                None => queued_at,
            }
        }
        _ => queued_at,
    };
    let recipient = util::recipient(&message.req("to")?)?;
    let mut ev = util::event(
        P,
        canonical_type,
        &provider_event_id,
        provider_event_id.clone(),
        recipient,
        occurred_at,
    );
    ev.message_id = message.opt_str("message_id")?.and_then(util::message_id);
    ev.tags = util::tags(message.opt_str("tag")?);
    ev.sending_domain = message.opt_str("from")?.and_then(util::domain_of);
    ev.raw = util::raw(&value, &RAW, keep);

    match name {
        "MessageSent" | "MessageDelayed" | "MessageDeliveryFailed" => {
            status_event(&payload, name, &mut ev)?;
        }
        "MessageBounced" => {
            // Postal passes on that a bounce message arrived, not what it
            // says: the class cannot be told.
            ev.class = Some(BounceClass::Undetermined);
        }
        "MessageLinkClicked" => {
            let url = payload.req("url")?;
            ev.url = Some(personal(url.as_text()?).ok_or_else(|| url.error(json::TOO_LONG))?);
            ev.ip = payload.opt_str("ip_address")?.and_then(personal);
            ev.user_agent = payload.opt_str("user_agent")?.and_then(personal);
            ev.bot = Some(false);
        }
        _ => {
            ev.ip = payload.opt_str("ip_address")?.and_then(personal);
            ev.user_agent = payload.opt_str("user_agent")?.and_then(personal);
            ev.machine = Some(false);
        }
    }
    Ok(WebhookOutcome::Events {
        events: vec![util::checked(ev)?],
        skipped: Vec::new(),
        authentication,
        recipient_scoped: Vec::new(),
        sources: vec![EventSource::single("", util::known(EVENTS, name))],
    })
}

/// The receiving host in Postal's `details`: `... by SMTP to <host> (<ip>)`
/// or `... response from <host> (<ip>)`.
fn mx_host(details: &str) -> Option<String> {
    let after = ["SMTP to ", "response from ", "sending to "]
        .iter()
        .find_map(|marker| details.split_once(marker).map(|(_, rest)| rest))?;
    after.split_whitespace().next().and_then(util::host)
}

fn status_event(
    payload: &Node<'_>,
    name: &str,
    ev: &mut CanonicalEvent,
) -> Result<(), WebhookError> {
    let output = payload.opt_str("output")?.unwrap_or_default();
    let details = payload.opt_str("details")?.unwrap_or_default();
    let code = util::smtp_code(output);
    let enhanced = util::enhanced_status(output);
    match name {
        "MessageSent" => {
            ev.smtp_response = clear(output);
            ev.mx_host = mx_host(details);
            ev.tls = payload.opt_bool("sent_with_ssl")?;
        }
        "MessageDelayed" => {
            ev.smtp_code = code;
            ev.enhanced_status = enhanced;
            ev.mx_host = mx_host(details);
        }
        _ => {
            ev.class = Some(util::bounce_class(
                enhanced.as_deref(),
                code,
                BounceClass::Undetermined,
            ));
            ev.sub_type = Some("hard_fail".to_owned());
            ev.status = enhanced;
            ev.diagnostic = personal(output);
        }
    }
    Ok(())
}
