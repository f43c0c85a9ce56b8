//! The decoder of format 1 payloads (see the module documentation of
//! [`crate::email`]), written against the layout with [`crate::wire`]
//! rather than through bincode's serde decoder; `decode_payload` uses it,
//! and property tests hold it to bincode's, byte for byte. Unlike bincode's
//! (without a limit), it never allocates a length a corrupt payload claims
//! before checking it against the bytes there are.

use crate::crypto::{NONCE_LEN, Sealed};
use crate::email::model::{
    BounceClass, EmailEventOf, Envelope, EventBody, RejectReason, SealedEvent,
};
use crate::pseudonym::Pseudonym;
use crate::wire::{Reader, WireError};

type Result<T> = std::result::Result<T, WireError>;

/// Reads a whole `SealedEvent` from `body` (the payload after its format
/// byte); `None` when the bytes are not one, or are followed by more.
pub(crate) fn decode(body: &[u8]) -> Option<SealedEvent> {
    let mut r = Reader::new(body, usize::MAX);
    let event = event(&mut r).ok()?;
    (r.remaining() == 0).then_some(event)
}

/// The contact of `body` (the payload after its format byte), read
/// without decoding the rest: the envelope's first field, the message id,
/// is skipped without being copied. `None` when the bytes are not the
/// start of an event.
pub(crate) fn contact(body: &[u8]) -> Option<Pseudonym> {
    let mut r = Reader::new(body, usize::MAX);
    r.opt(Reader::str).ok()?;
    r.array().ok().map(Pseudonym::from_array)
}

fn event(r: &mut Reader<'_>) -> Result<SealedEvent> {
    Ok(EmailEventOf {
        envelope: envelope(r)?,
        body: body(r)?,
    })
}

fn sealed(r: &mut Reader<'_>) -> Result<Sealed> {
    let nonce: [u8; NONCE_LEN] = r.array()?;
    Ok(Sealed::from_parts(nonce, r.bytes()?.to_vec()))
}

fn opt_sealed(r: &mut Reader<'_>) -> Result<Option<Sealed>> {
    r.opt(sealed)
}

fn envelope(r: &mut Reader<'_>) -> Result<Envelope<Sealed>> {
    let message_id = r.opt_string()?;
    let contact = Pseudonym::from_array(r.array()?);
    let key_generation = r.u32()?;
    let occurred_at = r.i64()?;
    let provider = r.opt_string()?;
    let provider_event_id = r.opt_string()?;
    let count = r.len()?;
    // Never more room than the bytes left could fill.
    let mut tags = Vec::with_capacity(count.min(r.remaining()));
    for _ in 0..count {
        tags.push(r.string()?);
    }
    Ok(Envelope {
        message_id,
        contact,
        key_generation,
        occurred_at,
        provider,
        provider_event_id,
        tags,
        campaign: r.opt_string()?,
        sending_domain: r.opt_string()?,
        recipient_domain: r.opt_string()?,
        recipient: opt_sealed(r)?,
        raw: opt_sealed(r)?,
    })
}

/// [`RejectReason`]'s variants in declaration order: bincode writes a
/// variant as its index in that order.
const REJECT_REASONS: [RejectReason; 4] = [
    RejectReason::Suppressed,
    RejectReason::Invalid,
    RejectReason::Policy,
    RejectReason::Quota,
];

/// [`BounceClass`]'s variants in declaration order.
const BOUNCE_CLASSES: [BounceClass; 4] = [
    BounceClass::Hard,
    BounceClass::Soft,
    BounceClass::Block,
    BounceClass::Undetermined,
];

/// A field-less enum, as bincode writes one: its variant index (a u32)
/// into `variants`, its variants in declaration order.
fn unit_variant<T: Copy, const N: usize>(r: &mut Reader<'_>, variants: [T; N]) -> Result<T> {
    usize::try_from(r.u32()?)
        .ok()
        .and_then(|i| variants.get(i).copied())
        .ok_or(WireError::Malformed)
}

fn body(r: &mut Reader<'_>) -> Result<EventBody<Sealed>> {
    Ok(match r.u32()? {
        0 => EventBody::MessageSent {
            subject: opt_sealed(r)?,
            size: r.opt(Reader::u64)?,
        },
        1 => EventBody::MessageRejected {
            reason: unit_variant(r, REJECT_REASONS)?,
            detail: r.opt_string()?,
        },
        2 => EventBody::DeliveryDeferred {
            attempt: r.opt(Reader::u32)?,
            smtp_code: r.opt(Reader::u16)?,
            enhanced_status: r.opt_string()?,
            mx_host: r.opt_string()?,
            next_retry_at: r.opt(Reader::i64)?,
        },
        3 => EventBody::Delivered {
            smtp_response: r.opt_string()?,
            mx_host: r.opt_string()?,
            tls: r.opt(Reader::bool)?,
        },
        4 => EventBody::Bounced {
            class: unit_variant(r, BOUNCE_CLASSES)?,
            sub_type: r.opt_string()?,
            status: r.opt_string()?,
            diagnostic: opt_sealed(r)?,
        },
        5 => EventBody::ComplaintReceived {
            feedback_type: r.opt_string()?,
        },
        6 => EventBody::Opened {
            ip: opt_sealed(r)?,
            user_agent: opt_sealed(r)?,
            machine: r.bool()?,
        },
        7 => EventBody::LinkClicked {
            url: sealed(r)?,
            ip: opt_sealed(r)?,
            user_agent: opt_sealed(r)?,
            bot: r.bool()?,
        },
        8 => EventBody::SubscriptionChanged {
            subscribed: r.bool()?,
            scope: r.string()?,
        },
        9 => EventBody::SuppressionAdded {
            reason: r.opt_string()?,
            scope: r.string()?,
            expires_at: r.opt(Reader::i64)?,
        },
        10 => EventBody::SuppressionRemoved {
            reason: r.opt_string()?,
            scope: r.string()?,
        },
        11 => EventBody::ContactErased {
            request_id: r.string()?,
            events_unreadable: r.u64()?,
            key_found: r.bool()?,
        },
        _ => return Err(WireError::Malformed),
    })
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// bincode's own serde decoder: the reference. With a limit, since
    /// without one it allocates whatever length the bytes claim first (and
    /// aborts the process on a claim of exabytes), which the hand decoder
    /// never does: it checks a length against the bytes left.
    fn reference(body: &[u8]) -> Option<SealedEvent> {
        let config = bincode::config::standard().with_limit::<{ 1 << 20 }>();
        bincode::serde::decode_from_slice::<SealedEvent, _>(body, config)
            .ok()
            .filter(|(_, used)| *used == body.len())
            .map(|(e, _)| e)
    }

    fn encode(event: &SealedEvent) -> Vec<u8> {
        bincode::serde::encode_to_vec(event, bincode::config::standard()).unwrap_or_default()
    }

    fn sealed_value() -> impl Strategy<Value = Sealed> {
        (
            any::<[u8; NONCE_LEN]>(),
            prop::collection::vec(any::<u8>(), 0..40),
        )
            .prop_map(|(n, c)| Sealed::from_parts(n, c))
    }

    fn text() -> impl Strategy<Value = Option<String>> {
        prop::option::of("\\PC{0,12}")
    }

    fn envelope_value() -> impl Strategy<Value = Envelope<Sealed>> {
        (
            (
                text(),
                any::<[u8; 16]>(),
                any::<u32>(),
                any::<i64>(),
                text(),
                text(),
            ),
            (
                prop::collection::vec("\\PC{0,8}", 0..4),
                text(),
                text(),
                text(),
                prop::option::of(sealed_value()),
                prop::option::of(sealed_value()),
            ),
        )
            .prop_map(
                |(
                    (message_id, contact, key_generation, occurred_at, provider, provider_event_id),
                    (tags, campaign, sending_domain, recipient_domain, recipient, raw),
                )| Envelope {
                    message_id,
                    contact: Pseudonym::from_array(contact),
                    key_generation,
                    occurred_at,
                    provider,
                    provider_event_id,
                    tags,
                    campaign,
                    sending_domain,
                    recipient_domain,
                    recipient,
                    raw,
                },
            )
    }

    fn body_value() -> impl Strategy<Value = EventBody<Sealed>> {
        let s = || prop::option::of(sealed_value());
        prop_oneof![
            (s(), any::<Option<u64>>())
                .prop_map(|(subject, size)| EventBody::MessageSent { subject, size }),
            (0..4u8, text()).prop_map(|(r, detail)| EventBody::MessageRejected {
                reason: [
                    RejectReason::Suppressed,
                    RejectReason::Invalid,
                    RejectReason::Policy,
                    RejectReason::Quota
                ][usize::from(r)],
                detail
            }),
            (
                any::<Option<u32>>(),
                any::<Option<u16>>(),
                text(),
                text(),
                any::<Option<i64>>()
            )
                .prop_map(
                    |(attempt, smtp_code, enhanced_status, mx_host, next_retry_at)| {
                        EventBody::DeliveryDeferred {
                            attempt,
                            smtp_code,
                            enhanced_status,
                            mx_host,
                            next_retry_at,
                        }
                    }
                ),
            (text(), text(), any::<Option<bool>>()).prop_map(|(smtp_response, mx_host, tls)| {
                EventBody::Delivered {
                    smtp_response,
                    mx_host,
                    tls,
                }
            }),
            (0..4u8, text(), text(), s()).prop_map(|(c, sub_type, status, diagnostic)| {
                EventBody::Bounced {
                    class: [
                        BounceClass::Hard,
                        BounceClass::Soft,
                        BounceClass::Block,
                        BounceClass::Undetermined,
                    ][usize::from(c)],
                    sub_type,
                    status,
                    diagnostic,
                }
            }),
            text().prop_map(|feedback_type| EventBody::ComplaintReceived { feedback_type }),
            (s(), s(), any::<bool>()).prop_map(|(ip, user_agent, machine)| EventBody::Opened {
                ip,
                user_agent,
                machine
            }),
            (sealed_value(), s(), s(), any::<bool>()).prop_map(|(url, ip, user_agent, bot)| {
                EventBody::LinkClicked {
                    url,
                    ip,
                    user_agent,
                    bot,
                }
            }),
            (any::<bool>(), "\\PC{0,8}").prop_map(|(subscribed, scope)| {
                EventBody::SubscriptionChanged { subscribed, scope }
            }),
            (text(), "\\PC{0,8}", any::<Option<i64>>()).prop_map(|(reason, scope, expires_at)| {
                EventBody::SuppressionAdded {
                    reason,
                    scope,
                    expires_at,
                }
            }),
            (text(), "\\PC{0,8}")
                .prop_map(|(reason, scope)| EventBody::SuppressionRemoved { reason, scope }),
            ("\\PC{0,8}", any::<u64>(), any::<bool>()).prop_map(
                |(request_id, events_unreadable, key_found)| EventBody::ContactErased {
                    request_id,
                    events_unreadable,
                    key_found,
                }
            ),
        ]
    }

    fn event_value() -> impl Strategy<Value = SealedEvent> {
        (envelope_value(), body_value())
            .prop_map(|(envelope, body)| EmailEventOf { envelope, body })
    }

    #[test]
    fn a_payload_claiming_exabytes_is_refused_without_allocating_them() {
        // message_id: Some, then a string of 2^60 bytes that is not there.
        let mut body = vec![1, 253];
        body.extend_from_slice(&(1u64 << 60).to_le_bytes());
        body.extend_from_slice(b"short");
        assert_eq!(decode(&body), None);
    }

    #[test]
    fn every_varint_form_of_a_u32_and_a_u16_is_read_or_refused_as_bincode_does() {
        let envelope = Envelope {
            message_id: None,
            contact: Pseudonym::from_array([7; 16]),
            key_generation: 5,
            occurred_at: 0,
            provider: None,
            provider_event_id: None,
            tags: Vec::new(),
            campaign: None,
            sending_domain: None,
            recipient_domain: None,
            recipient: None,
            raw: None,
        };
        let at_body = bincode::serde::encode_to_vec(&envelope, bincode::config::standard())
            .unwrap_or_default()
            .len();
        let event = EmailEventOf {
            envelope,
            body: EventBody::DeliveryDeferred {
                attempt: None,
                smtp_code: Some(5),
                enhanced_status: None,
                mx_host: None,
                next_retry_at: None,
            },
        };
        let body = encode(&event);
        // key_generation (a u32) follows the message id's None tag and the
        // 16 bytes of the contact; smtp_code (a u16) follows the variant
        // index, attempt's None tag and its own Some tag.
        for at in [17, at_body + 3] {
            assert_eq!(body[at], 5);
            let forms: [&[u8]; 8] = [
                &[5],
                &[251, 5, 0],
                &[252, 5, 0, 0, 0],
                &[253, 5, 0, 0, 0, 0, 0, 0, 0],
                &[254, 5, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
                &[255, 5],
                &[251, 5],
                &[250],
            ];
            for form in forms {
                let changed = [&body[..at], form, &body[at + 1..]].concat();
                assert_eq!(decode(&changed), reference(&changed), "{form:?} at {at}");
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 1024, ..ProptestConfig::default() })]

        #[test]
        fn the_hand_decoder_reads_every_event_bincode_writes(event in event_value()) {
            let body = encode(&event);
            prop_assert_eq!(decode(&body), Some(event));
        }

        #[test]
        fn the_contact_read_alone_is_the_decoded_events(event in event_value()) {
            let body = encode(&event);
            prop_assert_eq!(contact(&body), Some(event.envelope.contact));
        }

        #[test]
        fn the_hand_decoder_reads_exactly_what_bincode_reads(
            event in event_value(),
            edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..3),
            cut in prop::option::of(any::<prop::sample::Index>()),
        ) {
            let mut body = encode(&event);
            for (at, byte) in &edits {
                let i = at.index(body.len());
                body[i] = *byte;
            }
            if let Some(cut) = cut {
                body.truncate(cut.index(body.len() + 1));
            }
            prop_assert_eq!(decode(&body), reference(&body));
        }

        #[test]
        fn the_hand_decoder_refuses_what_bincode_refuses(bytes in prop::collection::vec(any::<u8>(), 0..160)) {
            prop_assert_eq!(decode(&bytes), reference(&bytes));
        }
    }
}
