//! The frame codec's vectors and round trips.

use super::*;
use proptest::prelude::*;

fn sample(payload: &[u8]) -> RecordFields<'_> {
    RecordFields {
        position: 41,
        tenant: "acme",
        stream: "message-m-42",
        stream_version: 3,
        event_id: Uuid::from_u128(0x0193_a0c4_7b1e_7d2a_9c3f_2f6a_1c9e_0b11),
        recorded_at_micros: 1_795_860_000_000_000,
        event_type: "bounced",
        payload,
        metadata: b"{\"source\":\"test\"}",
        prev_hash: [7; 32],
        jurisdiction: Jurisdiction::EU,
    }
}

fn vector_path(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("testdata")
        .join(name)
}

type Encoder = fn(&RecordFields<'_>) -> Result<(Vec<u8>, Hash), FrameError>;

// Frozen vectors: regenerate only with MAILLEDGER_BLESS=1 and a new
// format version, never to make a change pass.
fn check_vector(name: &str, encoder: Encoder, fields: &RecordFields<'_>) {
    let (frame, hash) = encoder(fields).unwrap();
    let path = vector_path(name);
    if std::env::var_os("MAILLEDGER_BLESS").is_some() {
        std::fs::write(&path, &frame).unwrap();
    }
    let frozen = std::fs::read(&path).unwrap();
    assert_eq!(frame, frozen, "encoding of {name} changed");
    let back = decode_verified(&frozen).unwrap();
    assert_eq!(back.hash, hash);
    assert_eq!(back.position, fields.position);
    assert_eq!(back.tenant, fields.tenant);
    assert_eq!(back.stream, fields.stream);
    assert_eq!(back.stream_version, fields.stream_version);
    assert_eq!(back.event_id, fields.event_id);
    assert_eq!(back.recorded_at_micros, fields.recorded_at_micros);
    assert_eq!(back.event_type, fields.event_type);
    assert_eq!(back.payload, fields.payload);
    assert_eq!(back.metadata, fields.metadata);
    assert_eq!(back.prev_hash, fields.prev_hash);
    let expected = (frame[0] >= 2).then_some(fields.jurisdiction);
    assert_eq!(back.jurisdiction, expected);
}

fn de() -> Jurisdiction {
    "DE".parse().unwrap()
}

fn large(big: &[u8]) -> RecordFields<'_> {
    let mut f = sample(big);
    f.position = u64::MAX;
    f.stream_version = 70_000;
    f.recorded_at_micros = -5;
    f.prev_hash = crate::GENESIS_HASH;
    f.jurisdiction = de();
    f
}

#[test]
fn format_v1_vectors_still_read_without_a_jurisdiction() {
    let small = sample(b"{\"class\":\"hard\"}");
    check_vector("frame-v1-small.bin", encode_v1, &small);
    check_vector("frame-v1-large.bin", encode_v1, &large(&[0xAB; 300]));
}

#[test]
fn format_v2_vectors_are_frozen() {
    let small = sample(b"{\"class\":\"hard\"}");
    check_vector("frame-v2-small.bin", encode, &small);
    check_vector("frame-v2-large.bin", encode, &large(&[0xAB; 300]));
}

#[test]
fn format_v2_layout_matches_the_docs() {
    let mut fields = sample(b"x");
    fields.jurisdiction = "FR".parse().unwrap();
    let (frame, hash) = encode(&fields).unwrap();
    assert_eq!(frame[0], 2);
    let len = u32::from_le_bytes(frame[1..5].try_into().unwrap()) as usize;
    assert_eq!(frame.len(), HEADER_LEN + len + TRAILER_LEN);
    assert_eq!(&frame[HEADER_LEN + len..], &hash);
    assert_eq!(blake3::hash(&frame[..HEADER_LEN + len]).as_bytes(), &hash);
    assert_eq!(&frame[5..11], &[41, 4, b'a', b'c', b'm', b'e']);
    // prev_hash, then the jurisdiction's two bytes close the body
    assert_eq!(
        &frame[HEADER_LEN + len - 34..HEADER_LEN + len - 2],
        &[7; 32]
    );
    assert_eq!(&frame[HEADER_LEN + len - 2..HEADER_LEN + len], b"FR");
    // format 2 is format 1 with those two bytes added
    let (v1, _) = encode_v1(&fields).unwrap();
    assert_eq!(v1[0], 1);
    assert_eq!(
        &v1[HEADER_LEN..v1.len() - TRAILER_LEN],
        &frame[HEADER_LEN..HEADER_LEN + len - 2]
    );
}

#[test]
fn a_jurisdiction_that_is_not_two_capitals_is_neither_read_nor_written() {
    let (frame, _) = encode(&sample(b"x")).unwrap();
    let end = frame.len() - TRAILER_LEN;
    for bad in [*b"eu", *b"E1", *b"\0\0", [b'D', 0xC3]] {
        let mut body = frame[HEADER_LEN..end].to_vec();
        let n = body.len();
        body[n - 2..].copy_from_slice(&bad);
        assert_eq!(
            decode_body(2, &body, [0; 32]).unwrap_err(),
            FrameError::BadJurisdiction,
            "{bad:?} was read"
        );
    }
    // Nor can the encoder be given one: a Jurisdiction is always two
    // capitals (`residency`'s tests), and what it writes reads back.
    for j in ["EU", "DE", "se"] {
        let mut fields = sample(b"x");
        fields.jurisdiction = j.parse().unwrap();
        let (frame, _) = encode(&fields).unwrap();
        assert_eq!(
            decode(&frame).unwrap().jurisdiction,
            Some(fields.jurisdiction)
        );
    }
    for (code, expected) in [(*b"EU", Jurisdiction::EU), (*b"DE", de())] {
        let mut body = frame[HEADER_LEN..end].to_vec();
        let n = body.len();
        body[n - 2..].copy_from_slice(&code);
        let r = decode_body(2, &body, [0; 32]).unwrap();
        assert_eq!(r.jurisdiction, Some(expected));
    }
}

#[test]
fn format_v1_layout_matches_the_docs() {
    let (frame, hash) = encode_v1(&sample(b"x")).unwrap();
    assert_eq!(frame[0], 1);
    let len = u32::from_le_bytes(frame[1..5].try_into().unwrap()) as usize;
    assert_eq!(frame.len(), HEADER_LEN + len + TRAILER_LEN);
    assert_eq!(&frame[HEADER_LEN + len..], &hash);
    assert_eq!(blake3::hash(&frame[..HEADER_LEN + len]).as_bytes(), &hash);
    // position 41 is a single varint byte, then tenant "acme" with its length
    assert_eq!(&frame[5..11], &[41, 4, b'a', b'c', b'm', b'e']);
    // prev_hash closes the body
    assert_eq!(&frame[HEADER_LEN + len - 32..HEADER_LEN + len], &[7; 32]);
}

#[test]
fn every_flipped_byte_is_detected() {
    let (frame, _) = encode(&sample(b"payload")).unwrap();
    for i in 0..frame.len() {
        let mut bad = frame.clone();
        bad[i] ^= 0x01;
        assert!(
            decode_verified(&bad).is_err(),
            "flip at byte {i} went unseen"
        );
    }
}

#[test]
fn a_records_hash_is_recomputed_in_its_own_format() {
    let fields = sample(b"payload");
    for (frame, hash) in [encode(&fields).unwrap(), encode_v1(&fields).unwrap()] {
        let mut r = decode_verified(&frame).unwrap().to_record();
        assert_eq!(recomputed_hash(&r).unwrap(), hash);
        r.payload[0] ^= 1;
        assert_ne!(recomputed_hash(&r).unwrap(), hash, "a changed field");
    }
}

#[test]
fn unknown_version_and_bad_lengths_are_errors() {
    let (frame, _) = encode(&sample(b"p")).unwrap();
    for version in [0, 3, 255] {
        let mut other = frame.clone();
        other[0] = version;
        assert_eq!(
            decode(&other).unwrap_err(),
            FrameError::UnknownVersion(version)
        );
    }
    assert!(matches!(
        decode(&frame[..frame.len() - 1]),
        Err(FrameError::BadLength(_))
    ));
    assert!(matches!(
        decode(&frame[..10]),
        Err(FrameError::Truncated(10))
    ));
    assert!(matches!(decode(&frame[..3]), Err(FrameError::Truncated(3))));
    let mut huge = frame;
    huge[1..5].copy_from_slice(&u32::MAX.to_le_bytes());
    assert!(matches!(decode(&huge), Err(FrameError::BadLength(_))));
}

proptest! {
    #[test]
    fn decode_never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = decode(&bytes);
        let _ = decode_verified(&bytes);
    }

    #[test]
    fn encode_then_decode_round_trips(
        position in any::<u64>(), version in any::<u64>(), at in any::<i64>(),
        payload in proptest::collection::vec(any::<u8>(), 0..300),
        stream in "[a-z0-9-]{1,40}",
    ) {
        let mut f = sample(&payload);
        f.position = position;
        f.stream_version = version;
        f.recorded_at_micros = at;
        f.stream = &stream;
        let (frame, hash) = encode(&f).unwrap();
        let r = decode_verified(&frame).unwrap();
        prop_assert_eq!(r.hash, hash);
        prop_assert_eq!(r.position, position);
        prop_assert_eq!(r.stream, stream.as_str());
        prop_assert_eq!(r.payload, payload.as_slice());
        prop_assert_eq!(r.recorded_at_micros, at);
    }

    #[test]
    fn the_hand_decoder_reads_exactly_what_bincode_reads(
        position in any::<u64>(), version in any::<u64>(), at in any::<i64>(),
        payload in proptest::collection::vec(any::<u8>(), 0..300),
        stream in "\\PC{0,40}",
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..3),
        cut in proptest::option::of(any::<prop::sample::Index>()),
        format in 1u8..=2,
    ) {
        let mut f = sample(&payload);
        f.position = position;
        f.stream_version = version;
        f.recorded_at_micros = at;
        f.stream = &stream;
        let (frame, _) = if format == 1 { encode_v1(&f) } else { encode(&f) }.unwrap();
        // The body, then changed: bytes overwritten, its end cut off.
        let mut body = frame[HEADER_LEN..frame.len() - TRAILER_LEN].to_vec();
        for (at, byte) in &edits {
            let i = at.index(body.len());
            body[i] = *byte;
        }
        if let Some(cut) = cut {
            body.truncate(cut.index(body.len() + 1));
        }
        agrees_with_bincode(format, &body)?;
    }

    #[test]
    fn the_hand_decoder_refuses_what_bincode_refuses(
        bytes in proptest::collection::vec(any::<u8>(), 0..200),
        format in 1u8..=2,
    ) {
        agrees_with_bincode(format, &bytes)?;
    }
}

#[test]
fn every_varint_form_is_read_or_refused_as_bincode_does() {
    let (frame, _) = encode(&sample(b"payload")).unwrap();
    let body = &frame[HEADER_LEN..frame.len() - TRAILER_LEN];
    // The position (41) comes first, in one byte: each other form of it,
    // then the rest of the body.
    let forms: [&[u8]; 9] = [
        &[41],
        &[250],
        &[251, 41, 0],
        &[252, 41, 0, 0, 0],
        &[253, 41, 0, 0, 0, 0, 0, 0, 0],
        &[254, 41, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
        &[254, 41, 0, 0, 0, 0, 0, 0, 0],
        &[255, 41],
        &[251, 41],
    ];
    for form in forms {
        let changed = [form, &body[1..]].concat();
        agrees_with_bincode(2, &changed).unwrap();
    }
    assert_eq!(
        decode_body(2, &[[251, 41, 0].as_slice(), &body[1..]].concat(), [0; 32])
            .unwrap()
            .position,
        41
    );
    for refused in [[254].as_slice(), &[255]] {
        let changed = [refused, &[41, 0, 0, 0, 0, 0, 0, 0], &body[1..]].concat();
        assert!(decode_body(2, &changed, [0; 32]).is_err());
    }
}

/// The hand-written decoder and bincode's serde decoder (the reference)
/// both refuse `body` of frame format `format`, or both read the same
/// record from it. Bincode reads any two bytes as a jurisdiction; the
/// hand decoder also requires two capitals.
fn agrees_with_bincode(format: u8, body: &[u8]) -> Result<(), TestCaseError> {
    fn whole<'a, B: serde::Deserialize<'a>>(body: &'a [u8]) -> Option<B> {
        bincode::serde::borrow_decode_from_slice::<B, _>(body, codec())
            .ok()
            .filter(|(_, used)| *used == body.len())
            .map(|(b, _)| b)
    }
    let reference = if format == 1 {
        whole::<BodyV1<'_>>(body).map(|b| (b, None))
    } else {
        whole::<BodyV2<'_>>(body)
            .and_then(|b| Some((b.v1, Some(Jurisdiction::from_code(b.jurisdiction)?))))
    };
    let hand = decode_body(format, body, [7; 32]).ok();
    match (reference, hand) {
        (None, None) => {}
        (Some((b, jurisdiction)), Some(r)) => {
            prop_assert_eq!(r.jurisdiction, jurisdiction);
            prop_assert_eq!(r.position, b.position);
            prop_assert_eq!(r.tenant, b.tenant);
            prop_assert_eq!(r.stream, b.stream);
            prop_assert_eq!(r.stream_version, b.stream_version);
            prop_assert_eq!(r.event_id, Uuid::from_bytes(b.event_id));
            prop_assert_eq!(r.recorded_at_micros, b.recorded_at);
            prop_assert_eq!(r.event_type, b.event_type);
            prop_assert_eq!(r.payload, b.payload);
            prop_assert_eq!(r.metadata, b.metadata);
            prop_assert_eq!(r.prev_hash, b.prev_hash);
        }
        (reference, hand) => prop_assert!(
            false,
            "bincode {} the body, the hand decoder {} it",
            if reference.is_some() {
                "reads"
            } else {
                "refuses"
            },
            if hand.is_some() { "reads" } else { "refuses" }
        ),
    }
    Ok(())
}
