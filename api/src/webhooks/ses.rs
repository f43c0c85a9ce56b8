//! Amazon SES notifications and event publishing records, delivered by SNS
//! to an HTTPS subscription: the SNS envelope (`Type`, `MessageId`,
//! `TopicArn`, `Message`, `Signature`, ...) around the SES record in
//! `Message`.

use mailledger_core::email::{BounceClass, CanonicalEvent};
use ring::signature;
use serde_json::Value;
use time::OffsetDateTime;

use super::json::{self, Node};
use super::util::{self, clear, personal};
use super::verify;
use super::{
    Authentication, Provider, ProviderSecrets, Skipped, SnsConfirmation, SnsConfirmationKind,
    WebhookError, WebhookOutcome, unsigned,
};

const P: Provider = Provider::Ses;

/// SES record types with no place in the canonical taxonomy.
const SKIPPED: &[&str] = &[
    "AmazonSnsSubscriptionSucceeded",
    "Received",
    "Rendering Failure",
    "Subscription",
];

pub(crate) fn parse(
    body: &[u8],
    secrets: &ProviderSecrets,
    now_unix_secs: i64,
) -> Result<WebhookOutcome, WebhookError> {
    let value = json::parse(body)?;
    let root = Node::root(&value, "");
    root.object()?;
    if root.get("Type")?.is_none() {
        return raw_delivery(&root, body, secrets);
    }
    let kind = root.req_str("Type")?;
    let confirmation = match kind {
        "Notification" => None,
        "SubscriptionConfirmation" => Some(SnsConfirmationKind::Subscribe),
        "UnsubscribeConfirmation" => Some(SnsConfirmationKind::Unsubscribe),
        _ => {
            return Err(WebhookError::UnknownEvent {
                field: "Type".to_owned(),
            });
        }
    };
    let topic_arn = root.req_str("TopicArn")?;
    let message_id = root.req_str("MessageId")?;
    let timestamp = util::rfc3339_time(&root.req("Timestamp")?)?;
    if !secrets.sns_topic_arns.is_empty() && !secrets.sns_topic_arns.iter().any(|t| t == topic_arn)
    {
        return Err(WebhookError::TopicNotAllowed);
    }
    let authentication = authenticate(&root, confirmation.is_some(), secrets, now_unix_secs)?;

    if let Some(kind) = confirmation {
        return Ok(WebhookOutcome::SubscriptionConfirmation(SnsConfirmation {
            kind,
            topic_arn: topic_arn.to_owned(),
            message_id: message_id.to_owned(),
            timestamp,
            subscribe_url: root.opt_str("SubscribeURL")?.map(str::to_owned),
            authentication,
        }));
    }
    let message_node = root.req("Message")?;
    let message = json::parse_nested(&message_node)?;
    let record = Node::root(&message, "Message");
    let notification_id = util::provider_event_id(&root.req("MessageId")?, message_id.to_owned())?;
    let (events, skipped) = ses_events(&record, &notification_id)?;
    Ok(WebhookOutcome::Events {
        events,
        skipped,
        authentication,
        recipient_scoped: Vec::new(),
    })
}

/// An SES record POSTed without the SNS envelope (SNS "raw message
/// delivery"): nothing signs it, so it is accepted only when the tenant's
/// secrets allow unsigned webhooks and configure no SNS certificate. Its
/// notification id is the blake3 hash of the body.
fn raw_delivery(
    root: &Node<'_>,
    body: &[u8],
    secrets: &ProviderSecrets,
) -> Result<WebhookOutcome, WebhookError> {
    if root.get("eventType")?.is_none() && root.get("notificationType")?.is_none() {
        return Err(root.child_error("Type", json::MISSING));
    }
    if secrets.require_signatures || !secrets.sns_certificates.is_empty() {
        return Err(WebhookError::MissingSignature {
            what: "SNS envelope (raw message delivery cannot be verified)",
        });
    }
    let hash = blake3::hash(body).to_hex();
    let notification_id = format!("raw-{}", hash.as_str().get(..32).unwrap_or_default());
    let (events, skipped) = ses_events(root, &notification_id)?;
    Ok(WebhookOutcome::Events {
        events,
        skipped,
        authentication: Authentication::Unverified,
        recipient_scoped: Vec::new(),
    })
}

/// Verifies the SNS signature against the configured certificates, or
/// accepts the message unsigned when the secrets allow it.
fn authenticate(
    root: &Node<'_>,
    confirmation: bool,
    secrets: &ProviderSecrets,
    now_unix_secs: i64,
) -> Result<Authentication, WebhookError> {
    if secrets.sns_certificates.is_empty() {
        return unsigned(secrets, P);
    }
    let url = root
        .opt_str("SigningCertURL")?
        .ok_or(WebhookError::MissingSignature {
            what: "field SigningCertURL",
        })?;
    if !verify::sns_cert_url_is_trusted(url) {
        return Err(WebhookError::UntrustedCertUrl);
    }
    let signature = root
        .opt_str("Signature")?
        .ok_or(WebhookError::MissingSignature {
            what: "field Signature",
        })?;
    let signature = verify::base64(signature).ok_or(WebhookError::BadSignature {
        what: "field Signature",
    })?;
    let algorithm: &'static signature::RsaParameters =
        match root.opt_scalar("SignatureVersion")?.as_deref() {
            Some("1") => &signature::RSA_PKCS1_2048_8192_SHA1_FOR_LEGACY_USE_ONLY,
            Some("2") => &signature::RSA_PKCS1_2048_8192_SHA256,
            Some(_) => return Err(root.child_error("SignatureVersion", json::INVALID)),
            None => return Err(root.child_error("SignatureVersion", json::MISSING)),
        };
    let signed = string_to_sign(root, confirmation)?;
    let keys = verify::sns_certificate_keys(&secrets.sns_certificates, now_unix_secs)?;
    if keys.is_empty() {
        return Err(WebhookError::BadSecret {
            provider: P,
            reason: "no configured SNS certificate is valid now",
        });
    }
    if keys
        .iter()
        .any(|k| verify::rsa_verifies(algorithm, k, signed.as_bytes(), &signature))
    {
        Ok(Authentication::Verified)
    } else {
        Err(WebhookError::BadSignature {
            what: "field Signature",
        })
    }
}

/// The string SNS signs: `name\nvalue\n` for each signed field, in this
/// order, with the exact (unescaped) JSON string values.
fn string_to_sign(root: &Node<'_>, confirmation: bool) -> Result<String, WebhookError> {
    let fields: &[(&'static str, bool)] = if confirmation {
        &[
            ("Message", true),
            ("MessageId", true),
            ("SubscribeURL", true),
            ("Timestamp", true),
            ("Token", true),
            ("TopicArn", true),
            ("Type", true),
        ]
    } else {
        &[
            ("Message", true),
            ("MessageId", true),
            ("Subject", false),
            ("Timestamp", true),
            ("TopicArn", true),
            ("Type", true),
        ]
    };
    let mut out = String::new();
    for (name, required) in fields {
        let value = match root.get(name)? {
            Some(n) => n.as_str()?,
            None if *required => return Err(root.child_error(name, json::MISSING)),
            None => continue,
        };
        out.push_str(name);
        out.push('\n');
        out.push_str(value);
        out.push('\n');
    }
    Ok(out)
}

/// What every event of one SES record shares.
struct Mail {
    message_id: Option<String>,
    sending_domain: Option<String>,
    tags: Vec<String>,
    raw: Option<mailledger_core::crypto::Personal>,
}

fn mail_of(record: &Node<'_>, mail: &Node<'_>) -> Result<Mail, WebhookError> {
    let tags_value = mail.get("tags")?;
    let mut custom: Vec<String> = Vec::new();
    let mut from_domain = None;
    if let Some(Value::Object(map)) = tags_value.as_ref().map(Node::value) {
        for (name, values) in map {
            let values: Vec<&str> = values
                .as_array()
                .map(|a| a.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            if name == "ses:from-domain" {
                from_domain = values.first().and_then(|d| util::host(d));
            } else if !name.starts_with("ses:") && !name.starts_with("aws:") {
                custom.extend(values.iter().map(|v| format!("{name}={v}")));
            }
        }
    }
    let sending_domain = match from_domain {
        Some(d) => Some(d),
        None => mail.opt_str("source")?.and_then(util::domain_of),
    };
    Ok(Mail {
        message_id: mail.opt_str("messageId")?.and_then(util::message_id),
        sending_domain,
        tags: util::tags(custom.iter().map(String::as_str)),
        raw: own_raw(record.value()),
    })
}

/// The record as kept (sealed) with each recipient's event: only when it
/// names that recipient alone. A record for several recipients lists them
/// all, and a copy sealed under one contact's key would outlive another's
/// erasure; the message headers (To, Cc, From) are dropped for the same
/// reason.
fn own_raw(record: &Value) -> Option<mailledger_core::crypto::Personal> {
    let destinations = record
        .pointer("/mail/destination")
        .and_then(Value::as_array)
        .map_or(0, Vec::len);
    if destinations > 1 {
        return None;
    }
    let mut copy = record.clone();
    if let Some(Value::Object(mail)) = copy.get_mut("mail") {
        mail.remove("headers");
        mail.remove("commonHeaders");
    }
    util::raw(&copy)
}

/// A canonical event of an SES record for the recipient at `index` of its
/// recipient list.
fn ses_event(
    notification_id: &str,
    index: usize,
    event_type: &str,
    recipient: &Node<'_>,
    occurred_at: OffsetDateTime,
    mail: &Mail,
) -> Result<CanonicalEvent, WebhookError> {
    let id = format!("{notification_id}:{index}");
    let mut ev = util::event(
        P,
        event_type,
        &id,
        util::provider_event_id(recipient, id.clone())?,
        util::recipient(recipient)?,
        occurred_at,
    );
    ev.message_id.clone_from(&mail.message_id);
    ev.sending_domain.clone_from(&mail.sending_domain);
    ev.tags.clone_from(&mail.tags);
    ev.raw.clone_from(&mail.raw);
    Ok(ev)
}

type Mapped = (Vec<CanonicalEvent>, Vec<Skipped>);

fn ses_events(record: &Node<'_>, notification_id: &str) -> Result<Mapped, WebhookError> {
    let (type_field, kind) = match record.opt_str("eventType")? {
        Some(k) => ("eventType", k),
        None => ("notificationType", record.req_str("notificationType")?),
    };
    if let Some(known) = SKIPPED.iter().copied().find(|s| *s == kind) {
        return Ok((
            Vec::new(),
            vec![Skipped {
                field: record.child_path(type_field),
                event_type: known,
            }],
        ));
    }
    let mail_node = record.req("mail")?;
    let mail = mail_of(record, &mail_node)?;
    let mut events = Vec::new();
    let mut skipped = Vec::new();
    match kind {
        "Bounce" => {
            let b = record.req("bounce")?;
            let occurred_at = util::rfc3339_time(&b.req("timestamp")?)?;
            let bounce_type = b.req_str("bounceType")?;
            let sub_type = b.opt_str("bounceSubType")?;
            let class = match (bounce_type, sub_type) {
                ("Permanent", _) => BounceClass::Hard,
                ("Transient", Some("ContentRejected" | "AttachmentRejected")) => BounceClass::Block,
                ("Transient", _) => BounceClass::Soft,
                ("Undetermined", _) => BounceClass::Undetermined,
                _ => return Err(b.child_error("bounceType", json::INVALID)),
            };
            for (i, r) in b.req("bouncedRecipients")?.items()?.iter().enumerate() {
                let mut ev = ses_event(
                    notification_id,
                    i,
                    "bounced",
                    &r.req("emailAddress")?,
                    occurred_at,
                    &mail,
                )?;
                ev.class = Some(class);
                ev.sub_type = sub_type.and_then(util::snake);
                ev.status = r
                    .opt_str("status")?
                    .filter(|s| util::is_enhanced_status(s))
                    .map(str::to_owned);
                ev.diagnostic = r.opt_str("diagnosticCode")?.and_then(personal);
                events.push(util::checked(ev)?);
            }
        }
        "Complaint" => {
            let c = record.req("complaint")?;
            let occurred_at = util::rfc3339_time(&c.req("timestamp")?)?;
            let feedback_type = c.opt_str("complaintFeedbackType")?.and_then(clear);
            for (i, r) in c.req("complainedRecipients")?.items()?.iter().enumerate() {
                let mut ev = ses_event(
                    notification_id,
                    i,
                    "complained",
                    &r.req("emailAddress")?,
                    occurred_at,
                    &mail,
                )?;
                ev.feedback_type.clone_from(&feedback_type);
                events.push(util::checked(ev)?);
            }
        }
        "Delivery" => {
            let d = record.req("delivery")?;
            let occurred_at = util::rfc3339_time(&d.req("timestamp")?)?;
            let response = d.opt_str("smtpResponse")?.and_then(clear);
            for (i, r) in d.req("recipients")?.items()?.iter().enumerate() {
                let mut ev = ses_event(notification_id, i, "delivered", r, occurred_at, &mail)?;
                ev.smtp_response.clone_from(&response);
                events.push(util::checked(ev)?);
            }
        }
        "Send" | "Reject" => {
            let occurred_at = util::rfc3339_time(&mail_node.req("timestamp")?)?;
            let subject = match mail_node.get("commonHeaders")? {
                Some(h) => h.opt_str("subject")?.and_then(personal),
                None => None,
            };
            let detail = match record.get("reject")? {
                Some(r) => r.opt_str("reason")?.and_then(clear),
                None => None,
            };
            for (i, r) in mail_node.req("destination")?.items()?.iter().enumerate() {
                let ev = if kind == "Send" {
                    let mut ev = ses_event(notification_id, i, "sent", r, occurred_at, &mail)?;
                    ev.subject.clone_from(&subject);
                    ev
                } else {
                    let mut ev = ses_event(notification_id, i, "rejected", r, occurred_at, &mail)?;
                    // SES rejects a message for its content (a virus).
                    ev.reason = Some("policy".to_owned());
                    ev.detail.clone_from(&detail);
                    ev
                };
                events.push(util::checked(ev)?);
            }
        }
        "Open" | "Click" => {
            let detail = record.req(if kind == "Open" { "open" } else { "click" })?;
            let occurred_at = util::rfc3339_time(&detail.req("timestamp")?)?;
            let destination = mail_node.req("destination")?.items()?;
            // The record does not say which of several recipients opened or
            // clicked: such a record cannot be attributed, so it is skipped.
            let [only] = destination.as_slice() else {
                skipped.push(Skipped {
                    field: record.child_path(type_field),
                    event_type: if kind == "Open" {
                        "Open of a message with several recipients"
                    } else {
                        "Click of a message with several recipients"
                    },
                });
                return Ok((events, skipped));
            };
            let mut ev = ses_event(
                notification_id,
                0,
                if kind == "Open" { "opened" } else { "clicked" },
                only,
                occurred_at,
                &mail,
            )?;
            ev.ip = detail.opt_str("ipAddress")?.and_then(personal);
            ev.user_agent = detail.opt_str("userAgent")?.and_then(personal);
            if kind == "Open" {
                ev.machine = Some(false);
            } else {
                let link = detail.req("link")?;
                ev.url = Some(personal(link.as_text()?).ok_or_else(|| link.error(json::TOO_LONG))?);
                ev.bot = Some(false);
            }
            events.push(util::checked(ev)?);
        }
        "DeliveryDelay" => {
            let d = record.req("deliveryDelay")?;
            let occurred_at = util::rfc3339_time(&d.req("timestamp")?)?;
            for (i, r) in d.req("delayedRecipients")?.items()?.iter().enumerate() {
                let mut ev = ses_event(
                    notification_id,
                    i,
                    "deferred",
                    &r.req("emailAddress")?,
                    occurred_at,
                    &mail,
                )?;
                let diagnostic = r.opt_str("diagnosticCode")?.unwrap_or_default();
                ev.smtp_code = util::smtp_code(diagnostic);
                ev.enhanced_status = r
                    .opt_str("status")?
                    .filter(|s| util::is_enhanced_status(s))
                    .map(str::to_owned)
                    .or_else(|| util::enhanced_status(diagnostic));
                events.push(util::checked(ev)?);
            }
        }
        _ => {
            return Err(WebhookError::UnknownEvent {
                field: record.child_path(type_field),
            });
        }
    }
    Ok((events, skipped))
}
