//! Amazon SES through SNS: event-publishing samples, one event per recipient, what raw payloads keep.

use super::*;

pub(super) const TOPIC: &str = "arn:aws:sns:eu-west-1:123456789012:ses-events";
pub(super) const CERT_URL: &str =
    "https://sns.eu-west-1.amazonaws.com/SimpleNotificationService-0000000000000000000000.pem";

/// The topic of the SNS documentation's subscription confirmation.
pub(super) const CONFIRMATION_TOPIC: &str = "arn:aws:sns:us-west-2:123456789012:MyTopic";
/// An SNS `Timestamp` a minute before [`NOW`] (2027-01-15T08:00:00Z).
pub(super) const SNS_TIMESTAMP: &str = "2027-01-15T07:59:00.000Z";

pub(super) fn sns_secrets() -> ProviderSecrets {
    ProviderSecrets {
        sns_certificates: vec![testdata_text("keys/sns-cert.pem")],
        sns_topic_arns: vec![TOPIC.to_owned(), CONFIRMATION_TOPIC.to_owned()],
        ..ProviderSecrets::default()
    }
}

/// Signs an SNS message (SignatureVersion 2) with the test key.
pub(super) fn sns_sign(message: &mut Value) {
    let confirmation = message["Type"] != "Notification";
    let names: &[&str] = if confirmation {
        &[
            "Message",
            "MessageId",
            "SubscribeURL",
            "Timestamp",
            "Token",
            "TopicArn",
            "Type",
        ]
    } else {
        &[
            "Message",
            "MessageId",
            "Subject",
            "Timestamp",
            "TopicArn",
            "Type",
        ]
    };
    let mut canonical = String::new();
    for name in names {
        if let Some(v) = message.get(*name).and_then(Value::as_str) {
            canonical.push_str(&format!("{name}\n{v}\n"));
        }
    }
    message["SignatureVersion"] = json!("2");
    message["Signature"] = json!(rsa_sign("keys/sns-2048.pk8", canonical.as_bytes()));
}

pub(super) fn sns_notification(ses_record: &str, message_id: &str) -> Value {
    let mut n = json!({
        "Type": "Notification",
        "MessageId": message_id,
        "TopicArn": TOPIC,
        "Message": ses_record,
        "Timestamp": SNS_TIMESTAMP,
        "SigningCertURL": CERT_URL,
        "UnsubscribeURL": "https://sns.eu-west-1.amazonaws.com/?Action=Unsubscribe&SubscriptionArn=x",
    });
    sns_sign(&mut n);
    n
}

pub(super) fn ses(file: &str, message_id: &str) -> (Vec<CanonicalEvent>, Vec<Skipped>) {
    let body = serde_json::to_vec(&sns_notification(
        &testdata_text(&format!("ses/{file}")),
        message_id,
    ))
    .unwrap();
    let out = parse(Provider::Ses, &HeaderMap::new(), &body, &sns_secrets(), NOW).unwrap();
    let (events, skipped, auth) = events_of(out);
    assert_eq!(auth, Authentication::Verified);
    assert_canonical(Provider::Ses, &events);
    (events, skipped)
}

#[test]
pub(super) fn ses_event_publishing_samples_map_to_canonical_events() {
    let cases = [
        ("send.json", "sent"),
        ("reject.json", "rejected"),
        ("delivery.json", "delivered"),
        ("bounce.json", "bounced"),
        ("complaint.json", "complained"),
        ("delivery-delay.json", "deferred"),
        ("open.json", "opened"),
        ("click.json", "clicked"),
    ];
    for (i, (file, ty)) in cases.iter().enumerate() {
        let message_id = format!("00000000-0000-4000-8000-00000000000{i}");
        let (events, skipped) = ses(file, &message_id);
        assert!(skipped.is_empty(), "{file}");
        let [ev] = events.as_slice() else {
            panic!("{file}: one event")
        };
        assert_eq!(ev.event_type, *ty, "{file}");
        let expected_to = if *file == "reject.json" {
            "sender@example.org" // the documented record's destination
        } else {
            "recipient@example.org"
        };
        assert_eq!(recipient(ev), expected_to, "{file}");
        let source = format!("{message_id}:0");
        assert_eq!(ev.provider_event_id.as_deref(), Some(source.as_str()));
        assert_eq!(ev.id, derive_event_id(Provider::Ses, &source));
        assert_eq!(
            ev.message_id.as_deref(),
            Some("EXAMPLE7c191be45-e9aedb9a-02f9-4d12-a87d-dd0099a07f8a-000000")
        );
        assert_eq!(ev.sending_domain.as_deref(), Some("example.org"), "{file}");
    }

    let (bounce, _) = ses("bounce.json", "b");
    assert_eq!(bounce[0].class, Some(BounceClass::Hard));
    assert_eq!(bounce[0].sub_type.as_deref(), Some("general"));
    assert_eq!(bounce[0].status.as_deref(), Some("5.1.1"));
    assert_eq!(
        bounce[0].diagnostic.as_ref().unwrap().expose(),
        "smtp; 550 5.1.1 user unknown"
    );
    assert_eq!(
        bounce[0].occurred_at,
        time::OffsetDateTime::parse(
            "2017-08-05T00:41:02.669Z",
            &time::format_description::well_known::Rfc3339
        )
        .unwrap()
    );

    let (complaint, _) = ses("complaint.json", "c");
    assert_eq!(complaint[0].feedback_type.as_deref(), Some("abuse"));

    let (delivery, _) = ses("delivery.json", "d");
    assert_eq!(
        delivery[0].smtp_response.as_deref(),
        Some("250 2.6.0 Message received")
    );
    assert_eq!(
        delivery[0].tags,
        [
            "myCustomTag1=myCustomTagValue1",
            "myCustomTag2=myCustomTagValue2"
        ]
    );

    let (send, _) = ses("send.json", "s");
    assert_eq!(
        send[0].subject.as_ref().unwrap().expose(),
        "Message sent from Amazon SES"
    );

    let (reject, _) = ses("reject.json", "r");
    assert_eq!(reject[0].reason.as_deref(), Some("policy"));
    assert_eq!(reject[0].detail.as_deref(), Some("Bad content"));

    let (delay, _) = ses("delivery-delay.json", "dd");
    assert_eq!(delay[0].smtp_code, Some(421));
    assert_eq!(delay[0].enhanced_status.as_deref(), Some("4.4.1"));

    let (open, _) = ses("open.json", "o");
    assert_eq!(open[0].ip.as_ref().unwrap().expose(), "192.0.2.1");
    assert_eq!(open[0].machine, Some(false));

    let (click, _) = ses("click.json", "k");
    assert_eq!(
        click[0].url.as_ref().unwrap().expose(),
        "http://docs.aws.amazon.com/ses/latest/DeveloperGuide/send-email-smtp.html"
    );

    let (none, skipped) = ses("rendering-failure.json", "f");
    assert!(none.is_empty());
    assert_eq!(skipped[0].event_type, "Rendering Failure");
    assert_eq!(skipped[0].field, "Message.eventType");
}

#[test]
pub(super) fn ses_notifications_give_one_event_per_recipient_with_distinct_ids() {
    let (events, _) = ses("notification-bounce.json", "n-1");
    assert_eq!(events.len(), 2);
    assert_eq!(recipient(&events[0]), "jane@example.org");
    assert_eq!(recipient(&events[1]), "richard@example.org");
    assert_eq!(events[0].provider_event_id.as_deref(), Some("n-1:0"));
    assert_eq!(events[1].provider_event_id.as_deref(), Some("n-1:1"));
    assert_ne!(events[0].id, events[1].id);
    assert_eq!(events[0].status.as_deref(), Some("5.1.1"));
    assert_eq!(events[1].status, None);
    assert!(events.iter().all(|e| e.class == Some(BounceClass::Hard)));

    // The record names three people: each event's copy names its own
    // recipient only (see `each_ses_event_keeps_only_its_own_recipient_in_raw`).
    assert!(events.iter().all(|e| e.raw.is_some()));

    let (delivered, _) = ses("notification-delivery.json", "n-2");
    assert_eq!(delivered[0].event_type, "delivered");
    assert_eq!(recipient(&delivered[0]), "jane@example.org");
}

#[test]
pub(super) fn a_single_recipient_ses_record_is_kept_without_its_recipient_headers() {
    let (events, _) = ses("delivery.json", "n-3");
    assert_eq!(events.len(), 1);
    let raw = events[0].raw.as_ref().expect("raw kept for one recipient");
    let raw: Value = serde_json::from_str(raw.expose()).unwrap();
    assert_eq!(raw["mail"]["destination"], json!(["recipient@example.org"]));
    assert_eq!(
        raw["delivery"]["recipients"],
        json!(["recipient@example.org"])
    );
    assert!(raw["mail"]["commonHeaders"].get("to").is_none());
    assert!(raw["mail"]["commonHeaders"].get("subject").is_none());
    assert_eq!(
        raw["mail"]["commonHeaders"]["from"],
        json!(["sender@example.org"])
    );
    let names: Vec<&str> = raw["mail"]["headers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["name"].as_str().unwrap())
        .collect();
    assert!(
        !names.contains(&"To") && !names.contains(&"Subject"),
        "{names:?}"
    );
    assert!(names.contains(&"From"), "{names:?}");
}

/// An SES record in an unsigned SNS envelope, parsed under `keep`.
pub(super) fn ses_unsigned(
    record: &Value,
    message_id: &str,
    keep: RawPolicy,
) -> Result<(Vec<CanonicalEvent>, Vec<Skipped>), WebhookError> {
    let body = serde_json::to_vec(&json!({
        "Type": "Notification", "MessageId": message_id, "TopicArn": TOPIC,
        "Timestamp": "2017-08-05T00:41:03.100Z", "Message": record.to_string()
    }))
    .unwrap();
    let out = parse_with_policy(
        Provider::Ses,
        &HeaderMap::new(),
        &body,
        &unsigned(),
        keep,
        NOW,
    )?;
    let (events, skipped, _) = events_of(out);
    Ok((events, skipped))
}

pub(super) fn raw_of(ev: &CanonicalEvent) -> String {
    ev.raw
        .as_ref()
        .map(|r| r.expose().to_owned())
        .unwrap_or_default()
}

#[test]
pub(super) fn each_ses_event_keeps_only_its_own_recipient_in_raw() {
    let record: Value = serde_json::from_slice(&testdata("ses/notification-bounce.json")).unwrap();
    let (events, _) = ses_unsigned(&record, "n-4", RawPolicy::default()).unwrap();
    let [jane, richard] = events.as_slice() else {
        panic!("two bounces")
    };
    for (ev, own, others) in [
        (jane, "jane@", ["richard@", "mary@"]),
        (richard, "richard@", ["jane@", "mary@"]),
    ] {
        let raw = raw_of(ev);
        for other in others {
            assert!(!raw.contains(other), "{own} raw names {other}: {raw}");
        }
        let v: Value = serde_json::from_str(&raw).unwrap();
        assert_eq!(
            v["bounce"]["bouncedRecipients"].as_array().unwrap().len(),
            1
        );
        assert!(
            v["bounce"]["bouncedRecipients"][0]["emailAddress"]
                .as_str()
                .unwrap()
                .starts_with(own)
        );
        assert_eq!(v["mail"]["destination"].as_array().unwrap().len(), 1);
        // What concerns the bounce itself is kept.
        assert_eq!(v["bounce"]["reportingMTA"], "dns; email.example.org");
    }
    assert!(raw_of(jane).contains("5.1.1"));
    assert!(!raw_of(richard).contains("5.1.1"));

    // A record too large to copy for each of its recipients keeps none.
    let mut big = record.clone();
    big["mail"]["tags"] = json!({"pad": ["x".repeat(60_000)]});
    let many: Vec<Value> = (0..100)
        .map(|i| json!({"emailAddress": format!("r{i}@example.org")}))
        .collect();
    big["bounce"]["bouncedRecipients"] = json!(many);
    let (events, _) = ses_unsigned(&big, "n-5", RawPolicy::default()).unwrap();
    assert_eq!(events.len(), 100);
    assert!(events.iter().all(|e| e.raw.is_none()));
}

#[test]
pub(super) fn raw_payloads_follow_the_policy_and_never_keep_recipient_headers() {
    const SUBJECT: &str = "zq-subject-canary";
    const UA: &str = "ZqCanaryAgent/9";
    const IP: &str = "198.51.100.213";
    const OTHER: &str = "zq-other@canary.example";
    let keep_all = RawPolicy {
        keep_subjects: true,
        keep_engagement_details: true,
    };
    let mut open: Value = serde_json::from_slice(&testdata("ses/open.json")).unwrap();
    open["mail"]["commonHeaders"]["subject"] = json!(SUBJECT);
    open["mail"]["commonHeaders"]["to"] = json!(["recipient@example.org", OTHER]);
    open["mail"]["commonHeaders"]["cc"] = json!([OTHER]);
    open["mail"]["headers"] = json!([
        {"name": "To", "value": format!("recipient@example.org, {OTHER}")},
        {"name": "CC", "value": OTHER},
        {"name": "Subject", "value": SUBJECT},
        {"name": "From", "value": "sender@example.org"},
    ]);
    open["open"]["ipAddress"] = json!(IP);
    open["open"]["userAgent"] = json!(UA);
    let mut complaint: Value = serde_json::from_slice(&testdata("ses/complaint.json")).unwrap();
    complaint["complaint"]["userAgent"] = json!(UA);
    for (record, id) in [(&open, "p-1"), (&complaint, "p-2")] {
        let (events, _) = ses_unsigned(record, id, RawPolicy::default()).unwrap();
        let raw = raw_of(&events[0]);
        assert!(!raw.is_empty());
        for canary in [SUBJECT, UA, IP, OTHER, "Message sent from Amazon SES"] {
            assert!(!raw.contains(canary), "{canary} in {raw}");
        }
        let (kept, _) = ses_unsigned(record, id, keep_all).unwrap();
        let raw = raw_of(&kept[0]);
        assert!(raw.contains(UA), "{raw}");
        assert!(!raw.contains(OTHER), "{raw}");
    }
    let (kept, _) = ses_unsigned(&open, "p-3", keep_all).unwrap();
    let raw = raw_of(&kept[0]);
    assert!(raw.contains(SUBJECT) && raw.contains(IP), "{raw}");
    // Only subjects kept: the IP and user agent still go.
    let subjects = RawPolicy {
        keep_subjects: true,
        keep_engagement_details: false,
    };
    let (kept, _) = ses_unsigned(&open, "p-4", subjects).unwrap();
    let raw = raw_of(&kept[0]);
    assert!(raw.contains(SUBJECT) && !raw.contains(IP) && !raw.contains(UA));

    // Mailgun: `message.headers.to` and `envelope.targets` name recipients.
    let mut v: Value = serde_json::from_slice(&testdata("mailgun/complained.json")).unwrap();
    v["event-data"]["message"]["headers"]["to"] =
        json!(format!("Alice <alice@example.org>, {OTHER}"));
    v["event-data"]["message"]["headers"]["Bcc"] = json!(OTHER);
    v["event-data"]["envelope"]["targets"] = json!(OTHER);
    v["event-data"]["message"]["headers"]["subject"] = json!(SUBJECT);
    let body = serde_json::to_vec(&v).unwrap();
    for keep in [RawPolicy::default(), keep_all] {
        let out = parse_with_policy(
            Provider::Mailgun,
            &HeaderMap::new(),
            &body,
            &unsigned(),
            keep,
            NOW,
        );
        let (events, _, _) = events_of(out.unwrap());
        let raw = raw_of(&events[0]);
        assert!(
            raw.contains("alice@example.org"),
            "own recipient kept: {raw}"
        );
        assert!(!raw.contains(OTHER), "{raw}");
        assert_eq!(raw.contains(SUBJECT), keep.keep_subjects, "{raw}");
    }
}

#[test]
pub(super) fn a_sendgrid_batch_keeps_its_good_items_and_skips_each_bad_one() {
    let mut v: Value = serde_json::from_slice(&testdata("sendgrid/events.json")).unwrap();
    let total = v.as_array().unwrap().len();
    v[1]["event"] = json!(CANARY);
    v[3]["email"] = json!(5);
    v[5]["email"] = json!(CANARY.replace('@', " at "));
    v[7] = json!(CANARY);
    let body = serde_json::to_vec(&v).unwrap();
    let out = parse(
        Provider::Sendgrid,
        &HeaderMap::new(),
        &body,
        &unsigned(),
        NOW,
    )
    .unwrap();
    let (events, skipped, _) = events_of(out);
    // Four bad items and the one with no canonical type.
    assert_eq!(events.len(), total - 5);
    let bad: Vec<(Option<usize>, &str, &str)> = skipped
        .iter()
        .filter(|s| s.error.is_some())
        .map(|s| (s.index, s.field.as_str(), s.event_type))
        .collect();
    assert_eq!(
        bad,
        [
            (Some(1), "[1].event", "unknown"),
            (Some(3), "[3].email", "bounce"),
            (Some(5), "[5].email", "dropped"),
            (Some(7), "[7]", "unknown"),
        ]
    );
    for s in &skipped {
        let text = format!("{s:?}");
        assert!(
            !text.contains("zed") && !text.contains("secret.example"),
            "{text}"
        );
    }
    let unmapped: Vec<_> = skipped.iter().filter(|s| s.error.is_none()).collect();
    assert_eq!(unmapped.len(), 1);
    assert_eq!(unmapped[0].field, format!("[{}]", total - 1));
    assert_eq!(unmapped[0].index, None);
    // The good items' ids are those of the whole batch: a retry with the
    // bad items fixed appends only them.
    let good = ids(
        Provider::Sendgrid,
        &HeaderMap::new(),
        &testdata("sendgrid/events.json"),
        &unsigned(),
    );
    assert!(events.iter().all(|e| good.contains(&e.id)));
}

#[test]
pub(super) fn a_batch_with_no_usable_item_is_refused_with_its_first_error() {
    let body =
        serde_json::to_vec(&json!([{"event": CANARY}, {"event": "open", "email": 5}])).unwrap();
    let err = parse(
        Provider::Sendgrid,
        &HeaderMap::new(),
        &body,
        &unsigned(),
        NOW,
    )
    .unwrap_err();
    assert_eq!(err.field(), Some("[0].event"));
    assert!(!err.to_string().contains("zed"));
    // Only events with no canonical type: nothing bad, nothing refused.
    let body = serde_json::to_vec(&json!([{"event": "account_status_change"}])).unwrap();
    let (events, skipped, _) = events_of(
        parse(
            Provider::Sendgrid,
            &HeaderMap::new(),
            &body,
            &unsigned(),
            NOW,
        )
        .unwrap(),
    );
    assert!(events.is_empty() && skipped.len() == 1);
    // One bad recipient of an SES record does not lose the others; all bad
    // refuses the record.
    let mut record: Value =
        serde_json::from_slice(&testdata("ses/notification-bounce.json")).unwrap();
    record["bounce"]["bouncedRecipients"][0]["emailAddress"] = json!(CANARY.replace('@', " at "));
    let (events, skipped) = ses_unsigned(&record, "b-1", RawPolicy::default()).unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(recipient(&events[0]), "richard@example.org");
    assert_eq!(skipped[0].index, Some(0));
    assert_eq!(
        skipped[0].field,
        "Message.bounce.bouncedRecipients[0].emailAddress"
    );
    assert_eq!(skipped[0].event_type, "Bounce");
    record["bounce"]["bouncedRecipients"][1]["emailAddress"] = json!(7);
    let err = ses_unsigned(&record, "b-2", RawPolicy::default()).unwrap_err();
    assert_eq!(
        err.field(),
        Some("Message.bounce.bouncedRecipients[0].emailAddress")
    );
}
