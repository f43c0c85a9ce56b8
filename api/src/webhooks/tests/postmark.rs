//! Postmark: documented payloads and bounce types.

use super::*;

pub(super) fn postmark(file: &str) -> CanonicalEvent {
    let body = testdata(&format!("postmark/{file}"));
    // Postmark signs nothing: accepted even when signatures are required.
    let out = parse(
        Provider::Postmark,
        &HeaderMap::new(),
        &body,
        &ProviderSecrets::default(),
        NOW,
    )
    .unwrap();
    let (events, skipped, auth) = events_of(out);
    assert_eq!(auth, Authentication::ProviderDoesNotSign);
    assert!(skipped.is_empty());
    assert_canonical(Provider::Postmark, &events);
    let [ev] = <[CanonicalEvent; 1]>::try_from(events).unwrap();
    ev
}

#[test]
pub(super) fn postmark_documented_payloads_map_to_canonical_events() {
    let delivery = postmark("delivery.json");
    assert_eq!(delivery.event_type, "delivered");
    assert_eq!(recipient(&delivery), "john@example.org");
    let source = "Delivery:883953f4-6105-42a2-a16a-77a8eac79483:2019-11-05T16:33:54.9070259Z";
    assert_eq!(delivery.provider_event_id.as_deref(), Some(source));
    assert_eq!(delivery.id, derive_event_id(Provider::Postmark, source));
    assert_eq!(
        delivery.smtp_response.as_deref(),
        Some("Test delivery webhook details")
    );
    assert_eq!(delivery.tags, ["welcome-email"]);
    assert_eq!(delivery.occurred_at.nanosecond(), 907_025_900);

    let bounce = postmark("bounce.json");
    assert_eq!(bounce.event_type, "bounced");
    assert_eq!(bounce.class, Some(BounceClass::Hard));
    assert_eq!(bounce.sub_type.as_deref(), Some("hard_bounce"));
    assert_eq!(
        bounce.provider_event_id.as_deref(),
        Some("4323372036854775807")
    );
    assert_eq!(
        bounce.id,
        derive_event_id(Provider::Postmark, "Bounce:4323372036854775807")
    );
    assert_eq!(bounce.sending_domain.as_deref(), Some("example.org"));
    assert_eq!(
        bounce.diagnostic.as_ref().unwrap().expose(),
        "Test bounce details"
    );

    let complaint = postmark("spam-complaint.json");
    assert_eq!(complaint.event_type, "complained");
    assert_eq!(complaint.provider_event_id.as_deref(), Some("42"));

    let open = postmark("open.json");
    assert_eq!(open.event_type, "opened");
    assert_eq!(open.ip.as_ref().unwrap().expose(), "188.2.95.4");
    assert_eq!(open.machine, Some(false));

    let click = postmark("click.json");
    assert_eq!(click.event_type, "clicked");
    assert_eq!(click.url.as_ref().unwrap().expose(), "https://example.org");
    assert_eq!(click.bot, Some(false));

    let suppressed = postmark("subscription-change.json");
    assert_eq!(suppressed.event_type, "suppressed");
    assert_eq!(recipient(&suppressed), "bounced-address@example.org");
    assert_eq!(suppressed.reason.as_deref(), Some("hard_bounce"));
    assert_eq!(suppressed.scope.as_deref(), Some("outbound"));

    let unsubscribed = postmark("subscription-change-unsubscribe.json");
    assert_eq!(unsubscribed.event_type, "unsubscribed");
    assert_eq!(unsubscribed.scope.as_deref(), Some("broadcast"));

    let reactivated = postmark("subscription-change-reactivation.json");
    assert_eq!(reactivated.event_type, "unsuppressed");
    assert_eq!(reactivated.message_id, None);
    assert!(
        reactivated
            .provider_event_id
            .as_deref()
            .unwrap()
            .starts_with("SubscriptionChange:-:")
    );
}

#[test]
pub(super) fn postmark_bounce_types_choose_the_canonical_type_and_class() {
    let base: Value = serde_json::from_slice(&testdata("postmark/bounce.json")).unwrap();
    let cases = [
        ("SoftBounce", Some(("bounced", Some(BounceClass::Soft)))),
        ("Blocked", Some(("bounced", Some(BounceClass::Block)))),
        (
            "Unknown",
            Some(("bounced", Some(BounceClass::Undetermined))),
        ),
        ("SpamComplaint", Some(("complained", None))),
        ("ManuallyDeactivated", Some(("suppressed", None))),
        ("TemplateRenderingFailed", Some(("rejected", None))),
        ("AutoResponder", None),
    ];
    for (ty, expected) in cases {
        let mut v = base.clone();
        v["Type"] = json!(ty);
        let body = serde_json::to_vec(&v).unwrap();
        let (events, skipped, _) = events_of(
            parse(
                Provider::Postmark,
                &HeaderMap::new(),
                &body,
                &unsigned(),
                NOW,
            )
            .unwrap(),
        );
        assert_canonical(Provider::Postmark, &events);
        match expected {
            Some((canonical, class)) => {
                assert_eq!(events[0].event_type, canonical, "{ty}");
                assert_eq!(events[0].class, class, "{ty}");
            }
            None => {
                assert!(events.is_empty(), "{ty}");
                assert_eq!(skipped[0].event_type, ty);
            }
        }
    }
}
