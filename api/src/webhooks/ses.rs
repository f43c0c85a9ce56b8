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
    Authentication, EventSource, Provider, ProviderSecrets, RawPolicy, Skipped, SnsConfirmation,
    SnsConfirmationKind, WebhookError, WebhookOutcome, unsigned,
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
    keep: RawPolicy,
    now_unix_secs: i64,
) -> Result<WebhookOutcome, WebhookError> {
    let value = json::parse(body)?;
    let root = Node::root(&value, "");
    root.object()?;
    if root.get("Type")?.is_none() {
        return raw_delivery(&root, body, secrets, keep);
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
    let (events, skipped) = ses_events(&record, &notification_id, keep)?;
    super::batch(events, skipped, authentication)
}

/// An SES record POSTed without the SNS envelope (SNS "raw message
/// delivery"): nothing signs it, so it is accepted only when the tenant's
/// secrets allow unsigned webhooks and configure no SNS certificate. Its
/// notification id is the blake3 hash of the body.
fn raw_delivery(
    root: &Node<'_>,
    body: &[u8],
    secrets: &ProviderSecrets,
    keep: RawPolicy,
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
    let (events, skipped) = ses_events(root, &notification_id, keep)?;
    super::batch(events, skipped, Authentication::Unverified)
}

/// Verifies the SNS signature against the configured certificates, or
/// accepts the message unsigned when the secrets allow it.
///
/// Certificates without a topic allow-list are refused as a configuration
/// error (SNS signs every account's topics with the same certificates, so
/// such a signature proves nothing about whose topic sent it); the signed
/// `Timestamp` must lie within `max_signature_age_secs` of now; version 1
/// (SHA-1) is refused when `sns_signature_v2_only` is set.
fn authenticate(
    root: &Node<'_>,
    confirmation: bool,
    secrets: &ProviderSecrets,
    now_unix_secs: i64,
) -> Result<Authentication, WebhookError> {
    if secrets.sns_certificates.is_empty() {
        return unsigned(secrets, P);
    }
    if secrets.sns_topic_arns.is_empty() {
        return Err(WebhookError::BadSecret {
            provider: P,
            reason: "sns_certificates are set without sns_topic_arns, so a signature would not tell this tenant's topics from any other AWS account's",
        });
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
            Some("1") if secrets.sns_signature_v2_only => {
                return Err(WebhookError::WeakSignature {
                    what: "field SignatureVersion 1",
                    setting: "sns_signature_v2_only",
                });
            }
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
    if !keys
        .iter()
        .any(|k| verify::rsa_verifies(algorithm, k, signed.as_bytes(), &signature))
    {
        return Err(WebhookError::BadSignature {
            what: "field Signature",
        });
    }
    // Signed, so authentic; now whether it is recent (an old message
    // replayed, or a clock far off).
    let sent_at = util::rfc3339_time(&root.req("Timestamp")?)?.unix_timestamp();
    verify::check_fresh(
        "Timestamp",
        sent_at,
        now_unix_secs,
        secrets.max_signature_age_secs,
    )?;
    Ok(Authentication::Verified)
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

/// Where an SES record (kept as `raw`, one copy per recipient) has what
/// [`util::scrub`] removes besides recipient headers (`mail.headers` To,
/// Cc, Bcc; `mail.commonHeaders.to`, `cc`, `bcc`) and subjects, which it
/// finds by name: the opener's, clicker's or complaint's IP and user agent
/// unless engagement details are kept. The recipient lists are narrowed to
/// the event's own recipient before (see [`Mail::raw_for`]).
const RAW: util::RawFields = util::RawFields {
    recipients: &[],
    engagement: &[
        "open.ipAddress",
        "open.userAgent",
        "click.ipAddress",
        "click.userAgent",
        "complaint.userAgent",
    ],
};

/// The recipient lists of an SES record, as JSON pointers: each event's
/// `raw` keeps only its own recipient's entry of each.
const RECIPIENT_LISTS: &[&str] = &[
    "/mail/destination",
    "/bounce/bouncedRecipients",
    "/complaint/complainedRecipients",
    "/delivery/recipients",
    "/deliveryDelay/delayedRecipients",
];

/// The most bytes of `raw` the events of one SES record may hold together.
/// A record for n recipients gives n copies (each with its own recipient
/// only); a large record with many recipients would multiply the request,
/// so beyond this its events keep no `raw` (SES sends at most 50
/// recipients a message, a few KiB each).
const RAW_BUDGET: usize = 4 * 1024 * 1024;

/// What every event of one SES record shares.
struct Mail {
    message_id: Option<String>,
    sending_domain: Option<String>,
    tags: Vec<String>,
    /// The record with its recipient lists emptied, and its size as JSON;
    /// `None` when even that is over the core's limit.
    base: Option<(serde_json::Value, usize)>,
    /// `mail.destination` as given.
    destination: Vec<String>,
    keep: RawPolicy,
}

impl Mail {
    /// The record as kept (sealed) with the event of the recipient
    /// `address`, one of `count` recipients: only this recipient's `entry`
    /// of the list at `list` (a pointer of [`RECIPIENT_LISTS`]) and its own
    /// `mail.destination` entries, then scrubbed. A copy naming the other
    /// recipients would sit under this contact's key and outlive their
    /// erasure.
    fn raw_for(
        &self,
        list: Option<(&'static str, &Value)>,
        address: &str,
        count: usize,
    ) -> Option<mailledger_core::crypto::Personal> {
        let (base, len) = self.base.as_ref()?;
        if len.saturating_mul(count) > RAW_BUDGET {
            return None;
        }
        let mut copy = base.clone();
        if let Some((pointer, entry)) = list
            && let Some(Value::Array(items)) = copy.pointer_mut(pointer)
        {
            items.push(entry.clone());
        }
        if let Some(Value::Array(items)) = copy.pointer_mut("/mail/destination") {
            items.extend(
                self.destination
                    .iter()
                    .filter(|d| d.trim().eq_ignore_ascii_case(address.trim()))
                    .map(|d| Value::String(d.clone())),
            );
        }
        util::scrub(&mut copy, &RAW, self.keep);
        util::raw_text(&copy).map(mailledger_core::crypto::Personal::new)
    }
}

fn mail_of(record: &Node<'_>, mail: &Node<'_>, keep: RawPolicy) -> Result<Mail, WebhookError> {
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
    let destination = record
        .value()
        .pointer("/mail/destination")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    let mut base = record.value().clone();
    for pointer in RECIPIENT_LISTS {
        if let Some(Value::Array(items)) = base.pointer_mut(pointer) {
            items.clear();
        }
    }
    let base = util::raw_text(&base).map(|text| (base, text.len()));
    Ok(Mail {
        message_id: mail.opt_str("messageId")?.and_then(util::message_id),
        sending_domain,
        tags: util::tags(custom.iter().map(String::as_str)),
        base,
        destination,
        keep,
    })
}

/// Which recipient of its record an event is about.
struct Slot<'v> {
    /// Its index in the record's recipient list.
    index: usize,
    /// The list's length.
    count: usize,
    /// Its entry in the list at the given pointer (`None` when the list is
    /// `mail.destination`, which is narrowed in any case).
    entry: Option<(&'static str, &'v Value)>,
}

/// A canonical event of an SES record for the recipient at `slot`.
fn ses_event(
    notification_id: &str,
    slot: Slot<'_>,
    event_type: &str,
    recipient: &Node<'_>,
    occurred_at: OffsetDateTime,
    mail: &Mail,
) -> Result<CanonicalEvent, WebhookError> {
    let id = format!("{notification_id}:{}", slot.index);
    let address = util::recipient(recipient)?;
    let raw = mail.raw_for(slot.entry, address.expose(), slot.count);
    let mut ev = util::event(
        P,
        event_type,
        &id,
        util::provider_event_id(recipient, id.clone())?,
        address,
        occurred_at,
    );
    ev.message_id.clone_from(&mail.message_id);
    ev.sending_domain.clone_from(&mail.sending_domain);
    ev.tags.clone_from(&mail.tags);
    ev.raw = raw;
    Ok(ev)
}

type Mapped = (Vec<(CanonicalEvent, EventSource)>, Vec<Skipped>);

/// Maps each recipient of a list with `f`; a recipient whose entry is bad is
/// skipped (with its index and what is wrong), the others are kept.
fn each_recipient<'a>(
    list: &Node<'a>,
    kind: &'static str,
    out: &mut Mapped,
    mut f: impl FnMut(usize, &Node<'a>, usize) -> Result<CanonicalEvent, WebhookError>,
) -> Result<(), WebhookError> {
    let items = list.items()?;
    let count = items.len();
    for (i, r) in items.iter().enumerate() {
        match f(i, r, count).and_then(util::checked) {
            Ok(ev) => out.0.push((
                ev,
                EventSource {
                    field: r.path().to_owned(),
                    index: Some(i),
                    event_type: kind,
                },
            )),
            Err(e) => out.1.push(Skipped::bad(r.path(), i, kind, e)),
        }
    }
    Ok(())
}

fn ses_events(
    record: &Node<'_>,
    notification_id: &str,
    keep: RawPolicy,
) -> Result<Mapped, WebhookError> {
    let (type_field, kind) = match record.opt_str("eventType")? {
        Some(k) => ("eventType", k),
        None => ("notificationType", record.req_str("notificationType")?),
    };
    if let Some(known) = SKIPPED.iter().copied().find(|s| *s == kind) {
        return Ok((
            Vec::new(),
            vec![Skipped::unmapped(record.child_path(type_field), known)],
        ));
    }
    let mail_node = record.req("mail")?;
    let mail = mail_of(record, &mail_node, keep)?;
    let mut out: Mapped = (Vec::new(), Vec::new());
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
            let list = b.req("bouncedRecipients")?;
            each_recipient(&list, "Bounce", &mut out, |i, r, count| {
                let mut ev = ses_event(
                    notification_id,
                    Slot {
                        index: i,
                        count,
                        entry: Some(("/bounce/bouncedRecipients", r.value())),
                    },
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
                Ok(ev)
            })?;
        }
        "Complaint" => {
            let c = record.req("complaint")?;
            let occurred_at = util::rfc3339_time(&c.req("timestamp")?)?;
            let feedback_type = c.opt_str("complaintFeedbackType")?.and_then(clear);
            let list = c.req("complainedRecipients")?;
            each_recipient(&list, "Complaint", &mut out, |i, r, count| {
                let mut ev = ses_event(
                    notification_id,
                    Slot {
                        index: i,
                        count,
                        entry: Some(("/complaint/complainedRecipients", r.value())),
                    },
                    "complained",
                    &r.req("emailAddress")?,
                    occurred_at,
                    &mail,
                )?;
                ev.feedback_type.clone_from(&feedback_type);
                Ok(ev)
            })?;
        }
        "Delivery" => {
            let d = record.req("delivery")?;
            let occurred_at = util::rfc3339_time(&d.req("timestamp")?)?;
            let response = d.opt_str("smtpResponse")?.and_then(clear);
            let list = d.req("recipients")?;
            each_recipient(&list, "Delivery", &mut out, |i, r, count| {
                let mut ev = ses_event(
                    notification_id,
                    Slot {
                        index: i,
                        count,
                        entry: Some(("/delivery/recipients", r.value())),
                    },
                    "delivered",
                    r,
                    occurred_at,
                    &mail,
                )?;
                ev.smtp_response.clone_from(&response);
                Ok(ev)
            })?;
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
            let list = mail_node.req("destination")?;
            let (name, event_type) = if kind == "Send" {
                ("Send", "sent")
            } else {
                ("Reject", "rejected")
            };
            each_recipient(&list, name, &mut out, |i, r, count| {
                let mut ev = ses_event(
                    notification_id,
                    Slot {
                        index: i,
                        count,
                        entry: None,
                    },
                    event_type,
                    r,
                    occurred_at,
                    &mail,
                )?;
                if kind == "Send" {
                    ev.subject.clone_from(&subject);
                } else {
                    // SES rejects a message for its content (a virus).
                    ev.reason = Some("policy".to_owned());
                    ev.detail.clone_from(&detail);
                }
                Ok(ev)
            })?;
        }
        "Open" | "Click" => {
            let detail = record.req(if kind == "Open" { "open" } else { "click" })?;
            let occurred_at = util::rfc3339_time(&detail.req("timestamp")?)?;
            let destination = mail_node.req("destination")?.items()?;
            // The record does not say which of several recipients opened or
            // clicked: such a record cannot be attributed, so it is skipped.
            let [only] = destination.as_slice() else {
                out.1.push(Skipped::unmapped(
                    record.child_path(type_field),
                    if kind == "Open" {
                        "Open of a message with several recipients"
                    } else {
                        "Click of a message with several recipients"
                    },
                ));
                return Ok(out);
            };
            let mut ev = ses_event(
                notification_id,
                Slot {
                    index: 0,
                    count: 1,
                    entry: None,
                },
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
            let source =
                EventSource::single(record.path(), if kind == "Open" { "Open" } else { "Click" });
            out.0.push((util::checked(ev)?, source));
        }
        "DeliveryDelay" => {
            let d = record.req("deliveryDelay")?;
            let occurred_at = util::rfc3339_time(&d.req("timestamp")?)?;
            let list = d.req("delayedRecipients")?;
            each_recipient(&list, "DeliveryDelay", &mut out, |i, r, count| {
                let mut ev = ses_event(
                    notification_id,
                    Slot {
                        index: i,
                        count,
                        entry: Some(("/deliveryDelay/delayedRecipients", r.value())),
                    },
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
                Ok(ev)
            })?;
        }
        _ => {
            return Err(WebhookError::UnknownEvent {
                field: record.child_path(type_field),
            });
        }
    }
    Ok(out)
}
