//! Keys, scopes and tenants: one 401 for every failure, basic auth, 403 without the scope, the admin API, tenants within their jurisdictions.

use super::*;

#[tokio::test]
async fn every_auth_failure_answers_the_same_401() {
    let e = env();
    let key = e.key("acme", &[Scope::Read]);
    let revoked = e.key("acme", &[Scope::Read]);
    let revoked_id = revoked.split('_').nth(1).unwrap().to_owned();
    e.state.access.revoke_key(&revoked_id).unwrap();
    let (id, _) = key.trim_start_matches("mlk_").split_once('_').unwrap();
    let wrong_secret = format!("mlk_{id}_{}", "0".repeat(48));
    let unknown_id = format!("mlk_{}_{}", "1".repeat(16), "2".repeat(48));
    let body = json!({"address": "ann@example.org"});
    let headers: Vec<Option<String>> = vec![
        None,
        Some("Bearer".into()),
        Some("Bearer junk".into()),
        Some(format!("Bearer {wrong_secret}")),
        Some(format!("Bearer {unknown_id}")),
        Some(format!("Bearer {revoked}")),
        Some(format!("Token {key}")),
        Some("Basic !!!".into()),
        Some(format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("api:{wrong_secret}"))
        )),
    ];
    let mut first: Option<(StatusCode, Vec<u8>)> = None;
    for h in headers {
        let mut req =
            Request::post("/v1/contacts/export").header(header::CONTENT_TYPE, "application/json");
        if let Some(h) = &h {
            req = req.header(header::AUTHORIZATION, h);
        }
        let r = e
            .send(req.body(Body::from(body.to_string())).unwrap())
            .await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{h:?}");
        assert_eq!(r.content_type(), PROBLEM);
        assert!(r.headers.contains_key(header::WWW_AUTHENTICATE));
        match &first {
            None => first = Some((r.status, r.body.to_vec())),
            Some((_, b)) => assert_eq!(b, &r.body.to_vec(), "{h:?}"),
        }
    }
    // The valid key works.
    let r = e
        .call(Method::POST, "/v1/contacts/export", Some(&key), Some(&body))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
}

#[tokio::test]
async fn a_key_works_as_the_basic_auth_password() {
    let e = env();
    let key = e.key("acme", &[Scope::Ingest]);
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("postal:{key}"));
    let body = json!({"events": [event(&uuid(), "sent", "ann@example.org", "m-1")]});
    let req = Request::post("/v1/events")
        .header(header::AUTHORIZATION, format!("Basic {basic}"))
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.to_string()))
        .unwrap();
    let r = e.send(req).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.json()["appended"], 1);
}

#[tokio::test]
async fn a_key_without_the_scope_gets_403() {
    let e = env();
    let ingest = e.key("acme", &[Scope::Ingest]);
    let read = e.key("acme", &[Scope::Read]);
    let cases = [
        (
            Method::POST,
            "/v1/contacts/export",
            &ingest,
            Some(json!({"address": "a@b.example"})),
        ),
        (
            Method::POST,
            "/v1/events",
            &read,
            Some(json!({"events": []})),
        ),
        (
            Method::POST,
            "/v1/erasures",
            &read,
            Some(json!({"address": "a@b.example"})),
        ),
        (Method::GET, "/v1/admin/tenants", &read, None),
        (
            Method::POST,
            "/v1/admin/keys",
            &ingest,
            Some(json!({"tenant": "acme", "scopes": ["admin"]})),
        ),
    ];
    for (m, uri, key, body) in cases {
        let r = e.call(m, uri, Some(key), body.as_ref()).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{uri}");
        assert_eq!(r.content_type(), PROBLEM);
        assert_eq!(r.json()["type"], "urn:mailledger:problem:forbidden");
    }
}

#[tokio::test]
async fn only_the_operator_tenant_holds_the_admin_scope() {
    let e = env();
    e.state
        .access
        .create_tenant("acme", &[mailledger_core::residency::Jurisdiction::EU])
        .unwrap();
    // Neither the API nor the store gives another tenant's key the admin
    // scope, which would let it reach every tenant.
    let r = e
        .call(
            Method::POST,
            "/v1/admin/keys",
            Some(&e.admin),
            Some(&json!({"tenant": "acme", "scopes": ["admin"]})),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text());
    assert!(
        e.state
            .access
            .create_key("acme", &[Scope::Admin], None)
            .is_err()
    );
    // And a key that carries it anyway (an edited access file) is refused.
    let forged = mailledger_api::access::Caller {
        tenant: "acme".into(),
        key_id: "k".into(),
        scopes: vec![Scope::Admin, Scope::Read],
        jurisdictions: vec![mailledger_core::residency::Jurisdiction::EU],
    };
    assert!(!forged.has(Scope::Admin));
    assert!(forged.has(Scope::Read));
    let operator = mailledger_api::access::Caller {
        tenant: "default".into(),
        ..forged
    };
    assert!(operator.has(Scope::Admin));
}

#[tokio::test]
async fn the_admin_api_creates_tenants_and_keys_and_revokes_them() {
    let e = env();
    let admin = e.admin.clone();
    let r = e
        .call(
            Method::POST,
            "/v1/admin/tenants",
            Some(&admin),
            Some(&json!({"name": "acme"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    let r = e
        .call(
            Method::POST,
            "/v1/admin/tenants",
            Some(&admin),
            Some(&json!({"name": "acme"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    let r = e
        .call(
            Method::POST,
            "/v1/admin/tenants",
            Some(&admin),
            Some(&json!({"name": "Bad Name"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let r = e
        .call(
            Method::POST,
            "/v1/admin/keys",
            Some(&admin),
            Some(&json!({"tenant": "acme", "scopes": ["ingest", "read"], "name": "mta"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    let created = r.json();
    let key = created["key"].as_str().unwrap().to_owned();
    let id = created["id"].as_str().unwrap().to_owned();
    assert!(key.starts_with(&format!("mlk_{id}_")));
    let list = e
        .call(
            Method::GET,
            "/v1/admin/keys?tenant=acme",
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(list.status, StatusCode::OK);
    assert_eq!(list.json()["keys"].as_array().unwrap().len(), 1);
    assert!(
        !list.text().contains(&key[21..]),
        "the secret is never listed"
    );
    let bad_query = e
        .call(Method::GET, "/v1/admin/keys?colour=red", Some(&admin), None)
        .await;
    assert_eq!(bad_query.status, StatusCode::BAD_REQUEST);
    let export = json!({"address": "ann@example.org"});
    let ok = e
        .call(
            Method::POST,
            "/v1/contacts/export",
            Some(&key),
            Some(&export),
        )
        .await;
    assert_eq!(ok.status, StatusCode::OK);
    let r = e
        .call(
            Method::POST,
            &format!("/v1/admin/keys/{id}/revoke"),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.json()["revoked_at"].is_string());
    let denied = e
        .call(
            Method::POST,
            "/v1/contacts/export",
            Some(&key),
            Some(&export),
        )
        .await;
    assert_eq!(denied.status, StatusCode::UNAUTHORIZED);
    let r = e
        .call(
            Method::POST,
            "/v1/admin/keys/0000000000000000/revoke",
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = e
        .call(
            Method::PUT,
            "/v1/admin/tenants/acme/webhook-secrets",
            Some(&admin),
            Some(&json!({"mailgun_signing_key": "key-abc"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text());
    let tenants = e
        .call(Method::GET, "/v1/admin/tenants", Some(&admin), None)
        .await;
    assert!(tenants.text().contains("mailgun"));
    assert!(!tenants.text().contains("key-abc"));
    assert_eq!(
        e.state
            .access
            .webhook_secrets("acme")
            .unwrap()
            .mailgun_signing_key
            .as_deref(),
        Some("key-abc")
    );
    let r = e
        .call(
            Method::PUT,
            "/v1/admin/tenants/acme/webhook-secrets",
            Some(&admin),
            Some(&json!({"mailgun_key": "zed-secret"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.text().contains("mailgun_key") && !r.text().contains("zed"));
}

#[tokio::test]
async fn tenants_are_created_and_served_only_within_their_jurisdictions() {
    use mailledger_core::residency::{Jurisdiction, Residency};
    let de: Jurisdiction = "DE".parse().unwrap();
    let e = env();
    let tenants = |e: &common::Env| e.state.access.tenants().unwrap().len();
    let before = tenants(&e);
    let create = |body: Value| {
        let e = &e;
        async move {
            e.call(
                Method::POST,
                "/v1/admin/tenants",
                Some(&e.admin),
                Some(&body),
            )
            .await
        }
    };
    // The node says only "EU", which does not prove Germany: a German-only
    // tenant is refused, and nothing is created.
    let r = create(json!({"name": "acme", "jurisdictions": ["DE"]})).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text());
    assert_eq!(
        r.json()["type"],
        "urn:mailledger:problem:residency-violation"
    );
    let r = create(json!({"name": "acme", "jurisdictions": ["mars"]})).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(
        r.json()["detail"]
            .as_str()
            .unwrap()
            .contains("jurisdictions")
    );
    assert_eq!(tenants(&e), before);
    // Left out, a tenant allows what the node allows.
    let r = create(json!({"name": "beta"})).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    assert_eq!(r.json()["jurisdictions"], json!(["EU"]));
    let report = e
        .ok(Method::GET, "/v1/admin/residency", &e.admin, None)
        .await;
    assert_eq!(report["compliant"], true);
    assert_eq!(report["node_jurisdiction"], "EU");
    assert!(
        report["tenants"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["tenant"] == "beta" && t["allowed"] == json!(["EU"]))
    );
    let read = e.key("beta", &[Scope::Read]);
    let r = e
        .call(Method::GET, "/v1/admin/residency", Some(&read), None)
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    // A German-only tenant made elsewhere (the command line under another
    // configuration) is refused on every request by this EU node...
    e.state.access.create_tenant("gamma", &[de]).unwrap();
    let (_, gamma) = e
        .state
        .access
        .create_key("gamma", &[Scope::Read], None)
        .unwrap();
    let r = e
        .call(Method::GET, "/v1/suppressions", Some(gamma.as_str()), None)
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text());
    assert_eq!(
        r.json()["type"],
        "urn:mailledger:problem:residency-violation"
    );
    let report = e
        .ok(Method::GET, "/v1/admin/residency", &e.admin, None)
        .await;
    assert_eq!(report["compliant"], false);
    assert_eq!(report["violations"][0]["outside_of"], "tenant gamma");
    // ...and served by a node declared, with its store, in Germany.
    let mut e = e;
    e.state = e.state.clone().with_residency(
        Residency::new(de, vec![Jurisdiction::EU]).with_store("log", "memory", "(memory)", de),
    );
    e.ok(Method::GET, "/v1/suppressions", gamma.as_str(), None)
        .await;
}
