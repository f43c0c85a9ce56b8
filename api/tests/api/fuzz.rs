//! Random bodies and paths: every answer is a status the API documents, never a panic.

use super::*;
use proptest::prelude::*;

fn bodies() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[\\[\\]{}\",:a-z0-9@ .-]{0,200}",
        Just(r#"{"events": [{}]}"#.to_owned()),
        Just(r#"{"events": null}"#.to_owned()),
        Just(r#"{"address": 7}"#.to_owned()),
        Just(r#"{"name": "", "scopes": ["x"]}"#.to_owned()),
        Just(r#"{"name": "t", "jurisdictions": ["mars"]}"#.to_owned()),
        Just(r#"{"name": "t", "jurisdictions": []}"#.to_owned()),
        Just(r#"{"address": "a@b.example"}"#.to_owned()),
        Just(r#"{"address": "a@b.example", "reason": ""}"#.to_owned()),
        Just(r#"{"address": "a@b.example", "reason": "r", "id": "x"}"#.to_owned()),
        Just(r#"{"address": "a@b.example", "reason": "r", "expires_at": 1}"#.to_owned()),
        Just(r#"{"address": "a@b.example", "scope": "", "reason": "r"}"#.to_owned()),
        Just(r#"{"recipient": "a@b.example", "limit": 0}"#.to_owned()),
        Just(r#"{"status": "x", "cursor": "zz"}"#.to_owned()),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bodies_never_get_a_5xx_and_refused_ones_never_append(body in bodies(), truncate in 0usize..40) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let e = env();
            let admin = e.admin.clone();
            let cut = body.char_indices().nth(truncate).map_or(body.len(), |(i, _)| i);
            for uri in [
                "/v1/events",
                "/v1/erasures",
                "/v1/contacts/export",
                "/v1/admin/tenants",
                "/v1/admin/keys",
                "/v1/messages/search",
                "/v1/suppressions/lookup",
                "/v1/suppressions",
                "/v1/suppressions/remove",
                "/v1/sends/check",
            ] {
                for b in [body.clone(), body[..cut].to_owned()] {
                    // The server's runner would keep the projections
                    // at the head; here they are fed by hand.
                    e.project().await;
                    let before = e.state.email.log().head();
                    let r = e
                        .send(
                            Request::post(uri)
                                .header(header::AUTHORIZATION, format!("Bearer {admin}"))
                                .header(header::CONTENT_TYPE, "application/json")
                                .body(Body::from(b))
                                .unwrap(),
                        )
                        .await;
                    prop_assert!(r.status.as_u16() < 500, "{uri}: {}", r.text());
                    if !r.status.is_success() {
                        prop_assert_eq!(r.content_type(), PROBLEM);
                        // A refused body changes nothing.
                        prop_assert_eq!(e.state.email.log().head(), before, "{}", uri);
                    }
                }
            }
            Ok(())
        })?;
    }
}
