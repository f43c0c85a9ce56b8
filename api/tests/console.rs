//! The web console through the router: sign-in and its session cookie,
//! CSRF refusal, security headers, scopes, tenant isolation, no address in
//! a URL, bad input, and the empty ledger's first-event help.

#![allow(clippy::unwrap_used)]

mod common;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use common::{Env, Reply, env, event, uuid};
use mailledger_api::Scope;
use mailledger_api::console::CSP;

const ADDRESS: &str = "zoe.console@example.org";

/// A signed-in browser: its session cookie and CSRF token.
struct Browser {
    cookie: String,
    csrf: String,
}

/// The value of `name="csrf" value="…"` in a page.
fn csrf_of(html: &str) -> String {
    html.split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .unwrap()
        .to_owned()
}

/// `name=value` of a `Set-Cookie` header named `name`.
fn set_cookie<'a>(r: &'a Reply, name: &str) -> &'a str {
    r.headers
        .get_all(header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with(&format!("{name}=")))
        .unwrap_or_else(|| panic!("no {name} cookie"))
}

async fn get(env: &Env, uri: &str, cookie: Option<&str>) -> Reply {
    let mut req = Request::get(uri);
    if let Some(c) = cookie {
        req = req.header(header::COOKIE, c);
    }
    env.send(req.body(Body::empty()).unwrap()).await
}

async fn post(env: &Env, uri: &str, cookie: Option<&str>, form: &[(&str, &str)]) -> Reply {
    let body: Vec<String> = form
        .iter()
        .map(|(k, v)| format!("{k}={}", urlencode(v)))
        .collect();
    let mut req =
        Request::post(uri).header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
    if let Some(c) = cookie {
        req = req.header(header::COOKIE, c);
    }
    env.send(req.body(Body::from(body.join("&"))).unwrap())
        .await
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// The cookie pair (`name=value`) of a `Set-Cookie` value.
fn pair(set_cookie: &str) -> String {
    set_cookie.split(';').next().unwrap().to_owned()
}

/// Signs in with `key`; returns the sign-in answer and the browser.
async fn sign_in_reply(env: &Env, key: &str) -> (Reply, Option<Browser>) {
    let form = get(env, "/console/signin", None).await;
    assert_eq!(form.status, StatusCode::OK);
    let token = csrf_of(&form.text());
    let pre = pair(set_cookie(&form, "mailledger_signin"));
    let r = post(
        env,
        "/console/signin",
        Some(&pre),
        &[("csrf", &token), ("key", key)],
    )
    .await;
    if r.status != StatusCode::SEE_OTHER {
        return (r, None);
    }
    let cookie = pair(set_cookie(&r, "mailledger_session"));
    // The sign-out form of any page the key may open carries the token.
    let page = get(env, "/console/search", Some(&cookie)).await;
    let page = if page.status == StatusCode::OK {
        page
    } else {
        get(env, "/console/admin/keys", Some(&cookie)).await
    };
    let csrf = if page.status == StatusCode::OK {
        csrf_of(&page.text())
    } else {
        String::new()
    };
    (r, Some(Browser { cookie, csrf }))
}

async fn sign_in(env: &Env, key: &str) -> Browser {
    sign_in_reply(env, key).await.1.unwrap()
}

async fn ingest(env: &Env, key: &str, events: &[serde_json::Value]) {
    env.ok(
        Method::POST,
        "/v1/events",
        key,
        Some(&serde_json::json!({ "events": events })),
    )
    .await;
    env.project().await;
}

#[tokio::test]
async fn the_session_cookie_is_http_only_strict_and_holds_no_key() {
    let e = env();
    let (r, _) = sign_in_reply(&e, &e.admin).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    let c = set_cookie(&r, "mailledger_session");
    assert!(c.contains("HttpOnly"), "{c}");
    assert!(c.contains("SameSite=Strict"), "{c}");
    assert!(c.contains("Path=/console"), "{c}");
    assert!(c.contains("Max-Age=28800"), "{c}");
    assert!(!c.contains("Secure"), "plain HTTP: {c}");
    let value = pair(c).split_once('=').unwrap().1.to_owned();
    assert_eq!(value.len(), 64);
    assert!(value.bytes().all(|b| b.is_ascii_hexdigit()));
    assert!(!c.contains(&e.admin) && !e.admin.contains(&value));

    // Behind a TLS proxy the cookie is Secure.
    let form = get(&e, "/console/signin", None).await;
    let token = csrf_of(&form.text());
    let pre = pair(set_cookie(&form, "mailledger_signin"));
    let body = format!("csrf={token}&key={}", urlencode(&e.admin));
    let req = Request::post("/console/signin")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .header(header::COOKIE, pre)
        .header("x-forwarded-proto", "https")
        .body(Body::from(body))
        .unwrap();
    let r = e.send(req).await;
    assert!(set_cookie(&r, "mailledger_session").contains("; Secure"));
}

#[tokio::test]
async fn a_wrong_key_signs_nobody_in_and_pages_need_a_session() {
    let e = env();
    let (r, b) = sign_in_reply(&e, "mlk_0000000000000000_nope").await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(b.is_none());
    let page = get(&e, "/console/activity", None).await;
    assert_eq!(page.status, StatusCode::SEE_OTHER);
    assert_eq!(page.headers[header::LOCATION], "/console/signin");
    let forged = get(&e, "/console/activity", Some("mailledger_session=abcd")).await;
    assert_eq!(forged.status, StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn a_post_without_the_csrf_token_is_refused_and_changes_nothing() {
    let e = env();
    let b = sign_in(
        &e,
        &e.key("default", &[Scope::Ingest, Scope::Read, Scope::Erase]),
    )
    .await;
    let head = e.state.email.log().head();
    // An expiry left empty, as a browser posts a blank datetime field: no
    // expiry, not a bad time.
    let form = [
        ("address", ADDRESS),
        ("reason", "manual"),
        ("expires_at", ""),
        ("confirm", "yes"),
    ];
    let missing = post(&e, "/console/suppressions/add", Some(&b.cookie), &form).await;
    assert_eq!(missing.status, StatusCode::FORBIDDEN);
    assert!(missing.content_type().starts_with("text/html"));
    let mut wrong = form.to_vec();
    let bad = "0".repeat(64);
    wrong.push(("csrf", &bad));
    let r = post(&e, "/console/suppressions/add", Some(&b.cookie), &wrong).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let erase = post(
        &e,
        "/console/erasure",
        Some(&b.cookie),
        &[
            ("address", ADDRESS),
            ("request_id", "r-1"),
            ("confirm", "yes"),
            ("csrf", &bad),
        ],
    )
    .await;
    assert_eq!(erase.status, StatusCode::FORBIDDEN);
    // Without a session at all.
    let mut right = form.to_vec();
    right.push(("csrf", &b.csrf));
    let r = post(&e, "/console/suppressions/add", None, &right).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    // A sign-in without its token.
    let r = post(&e, "/console/signin", None, &[("key", &e.admin)]).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(e.state.email.log().head(), head, "nothing was appended");

    // With the token, the same form works.
    let r = post(&e, "/console/suppressions/add", Some(&b.cookie), &right).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert!(e.state.email.log().head() > head);
}

#[tokio::test]
async fn every_console_answer_carries_the_security_headers() {
    let e = env();
    let b = sign_in(&e, &e.admin).await;
    let key = e.key("default", &[Scope::Read]);
    let reader = sign_in(&e, &key).await;
    let answers = [
        get(&e, "/console/signin", None).await,
        get(&e, "/console/activity", None).await,
        get(&e, "/console/admin/keys", Some(&b.cookie)).await,
        get(&e, "/console/activity", Some(&reader.cookie)).await,
        get(&e, "/console/admin/keys", Some(&reader.cookie)).await,
        get(&e, "/console/assets/console-1.css", None).await,
        get(&e, "/console/no-such-page", None).await,
        get(&e, "/console/activity?from=garbage", Some(&reader.cookie)).await,
        post(&e, "/console/signout", Some(&reader.cookie), &[]).await,
    ];
    for r in &answers {
        assert_eq!(
            r.headers[header::CONTENT_SECURITY_POLICY],
            CSP,
            "{}",
            r.status
        );
        assert_eq!(r.headers[header::X_FRAME_OPTIONS], "DENY");
        assert_eq!(r.headers[header::REFERRER_POLICY], "no-referrer");
    }
    assert!(CSP.starts_with("default-src 'self'"));
    assert!(!CSP.contains("unsafe-inline") && !CSP.contains("unsafe-eval"));
    assert_eq!(answers[6].status, StatusCode::NOT_FOUND);
    assert!(answers[6].content_type().starts_with("text/html"));
    assert_eq!(answers[7].status, StatusCode::BAD_REQUEST);
    // No page has an inline script or style attribute.
    for r in &answers {
        let t = r.text();
        assert!(!t.contains("<script>") && !t.contains(" style="), "{t}");
    }
}

#[tokio::test]
async fn each_page_needs_the_scope_of_its_api_route() {
    let e = env();
    let reader = sign_in(&e, &e.key("default", &[Scope::Read])).await;
    for page in [
        "/console/admin/keys",
        "/console/admin/tenants",
        "/console/admin/residency",
        "/console/admin/projections",
        "/console/erasure",
        "/console/audit/access",
    ] {
        let r = get(&e, page, Some(&reader.cookie)).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{page}");
    }
    for page in [
        "/console/activity",
        "/console/suppressions",
        "/console/analytics",
    ] {
        let r = get(&e, page, Some(&reader.cookie)).await;
        assert_eq!(r.status, StatusCode::OK, "{page}: {}", r.text());
    }
    let r = post(
        &e,
        "/console/erasure",
        Some(&reader.cookie),
        &[
            ("address", ADDRESS),
            ("request_id", "r-1"),
            ("confirm", "yes"),
            ("csrf", &reader.csrf),
        ],
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let ingester = sign_in(&e, &e.key("default", &[Scope::Ingest])).await;
    let r = get(&e, "/console/activity", Some(&ingester.cookie)).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn a_key_of_one_tenant_sees_that_tenant_only() {
    let e = env();
    let a = e.key("alpha", &[Scope::Ingest, Scope::Read]);
    let b = e.key("beta", &[Scope::Read]);
    ingest(&e, &a, &[event(&uuid(), "sent", ADDRESS, "m-alpha-1")]).await;
    let alpha = sign_in(&e, &a).await;
    let beta = sign_in(&e, &b).await;
    let own = get(&e, "/console/activity", Some(&alpha.cookie)).await;
    assert!(own.text().contains("m-alpha-1"));
    let other = get(&e, "/console/activity", Some(&beta.cookie)).await;
    assert_eq!(other.status, StatusCode::OK);
    assert!(!other.text().contains("m-alpha-1"));
    let r = get(&e, "/console/messages/m-alpha-1", Some(&beta.cookie)).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let missing = get(&e, "/console/messages/m-never", Some(&beta.cookie)).await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert_eq!(
        r.text(),
        missing.text(),
        "another tenant's message reads as a missing one"
    );
    let r = post(
        &e,
        "/console/search",
        Some(&beta.cookie),
        &[("recipient", ADDRESS), ("csrf", &beta.csrf)],
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(!r.text().contains("m-alpha-1"));
    let r = post(
        &e,
        "/console/search",
        Some(&alpha.cookie),
        &[("recipient", ADDRESS), ("csrf", &alpha.csrf)],
    )
    .await;
    assert!(r.text().contains("m-alpha-1"));
    // A session's token is its own.
    let r = post(
        &e,
        "/console/search",
        Some(&beta.cookie),
        &[("recipient", ADDRESS), ("csrf", &alpha.csrf)],
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn no_redirect_or_link_carries_an_address() {
    let e = env();
    let k = e.key("default", &[Scope::Ingest, Scope::Read, Scope::Erase]);
    ingest(&e, &k, &[event(&uuid(), "bounced", ADDRESS, "m-b-1")]).await;
    let b = sign_in(&e, &k).await;
    let flows: Vec<(&str, Vec<(&str, &str)>)> = vec![
        ("/console/search", vec![("recipient", ADDRESS)]),
        ("/console/suppressions/lookup", vec![("address", ADDRESS)]),
        (
            "/console/suppressions/add",
            vec![("address", ADDRESS), ("reason", "manual")],
        ),
        (
            "/console/suppressions/add",
            vec![
                ("address", ADDRESS),
                ("reason", "manual"),
                ("confirm", "yes"),
            ],
        ),
        (
            "/console/erasure",
            vec![("address", ADDRESS), ("request_id", "dsr-1")],
        ),
        (
            "/console/erasure",
            vec![
                ("address", ADDRESS),
                ("request_id", "dsr-1"),
                ("confirm", "yes"),
            ],
        ),
        ("/console/signout", vec![]),
    ];
    for (uri, mut form) in flows {
        form.push(("csrf", &b.csrf));
        let r = post(&e, uri, Some(&b.cookie), &form).await;
        assert!(
            r.status.is_success() || r.status.is_redirection(),
            "{uri}: {}",
            r.status
        );
        for (name, v) in &r.headers {
            let v = v.to_str().unwrap_or_default();
            assert!(
                !v.contains('@') && !v.to_lowercase().contains("%40"),
                "{uri}: {name}: {v}"
            );
        }
        // Every link and form target of the page is free of it too.
        for attr in r
            .text()
            .split(" href=\"")
            .skip(1)
            .chain(r.text().split(" action=\"").skip(1))
        {
            let url = attr.split('"').next().unwrap();
            assert!(
                !url.contains('@') && !url.to_lowercase().contains("%40"),
                "{uri}: {url}"
            );
        }
    }
}

#[tokio::test]
async fn the_message_page_marks_erased_fields_and_the_register_holds_the_receipt() {
    let e = env();
    let k = e.key("default", &[Scope::Ingest, Scope::Read, Scope::Erase]);
    ingest(&e, &k, &[event(&uuid(), "sent", ADDRESS, "m-e-1")]).await;
    let b = sign_in(&e, &k).await;
    let before = get(&e, "/console/messages/m-e-1", Some(&b.cookie)).await;
    assert!(before.text().contains(ADDRESS));
    let r = post(
        &e,
        "/console/erasure",
        Some(&b.cookie),
        &[
            ("address", ADDRESS),
            ("request_id", "dsr-42"),
            ("confirm", "yes"),
            ("csrf", &b.csrf),
        ],
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert!(r.text().contains("id=\"receipt\"") && r.text().contains("dsr-42"));
    let after = get(&e, "/console/messages/m-e-1", Some(&b.cookie)).await;
    assert!(!after.text().contains(ADDRESS));
    assert!(after.text().contains("class=\"erased\""));
    let reg = get(&e, "/console/erasure", Some(&b.cookie)).await;
    assert!(reg.text().contains("dsr-42"));
}

#[tokio::test]
async fn an_empty_ledger_shows_how_to_send_the_first_event() {
    let e = env();
    let b = sign_in(&e, &e.key("default", &[Scope::Read])).await;
    let r = get(&e, "/console/activity", Some(&b.cookie)).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.text().contains("curl -X POST"), "{}", r.text());
}

#[tokio::test]
async fn a_revoked_key_ends_its_session() {
    let e = env();
    let k = e.key("default", &[Scope::Read]);
    let b = sign_in(&e, &k).await;
    let id = k.split('_').nth(1).unwrap();
    e.state.access.revoke_key(id).unwrap();
    let r = get(&e, "/console/activity", Some(&b.cookie)).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn console_pages_leave_access_records_like_the_api() {
    let e = env();
    let k = e.key("default", &[Scope::Ingest, Scope::Read]);
    ingest(&e, &k, &[event(&uuid(), "sent", ADDRESS, "m-r-1")]).await;
    let b = sign_in(&e, &k).await;
    let r = get(&e, "/console/messages/m-r-1", Some(&b.cookie)).await;
    assert_eq!(r.status, StatusCode::OK);
    e.project().await;
    let audit = e.key("default", &[Scope::Audit]);
    let recs = e.ok(Method::GET, "/v1/audit/access", &audit, None).await;
    let items = recs["items"].as_array().unwrap();
    assert!(
        items
            .iter()
            .any(|i| i["message_ids"].to_string().contains("m-r-1")),
        "{recs}"
    );
}

#[tokio::test]
async fn activity_filters_by_recipient_domain_as_the_api_does() {
    let e = env();
    let k = e.key("default", &[Scope::Ingest, Scope::Read]);
    ingest(
        &e,
        &k,
        &[
            event(&uuid(), "sent", "ann@one.example", "m-one"),
            event(&uuid(), "sent", "bob@two.example", "m-two"),
        ],
    )
    .await;
    let api = e
        .ok(
            Method::GET,
            "/v1/messages?recipient_domain=TWO.example",
            &k,
            None,
        )
        .await;
    let ids: Vec<&str> = api["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["message_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["m-two"]);
    let b = sign_in(&e, &k).await;
    let r = get(
        &e,
        "/console/activity?recipient_domain=two.example",
        Some(&b.cookie),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.text().contains("m-two") && !r.text().contains("m-one"));
    let bad = get(
        &e,
        "/console/activity?recipient_domain=a%40b",
        Some(&b.cookie),
    )
    .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn operator_pages_change_only_what_a_valid_form_asks() {
    let e = env();
    let b = sign_in(&e, &e.admin).await;
    let bad = post(
        &e,
        "/console/admin/webhook-secrets",
        Some(&b.cookie),
        &[
            ("tenant", "default"),
            ("action", "set"),
            ("document", "{not json"),
            ("csrf", &b.csrf),
        ],
    )
    .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(
        !bad.text().contains("not json"),
        "the document is never quoted"
    );
    let r = post(
        &e,
        "/console/admin/tenants",
        Some(&b.cookie),
        &[("name", "acme"), ("csrf", &b.csrf)],
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert!(e.state.access.tenant("acme").unwrap().is_some());
    let r = post(
        &e,
        "/console/admin/tenants",
        Some(&b.cookie),
        &[("name", "Bad Name"), ("csrf", &b.csrf)],
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let r = post(
        &e,
        "/console/admin/projections",
        Some(&b.cookie),
        &[("projection", "all"), ("csrf", &b.csrf)],
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert!(r.text().contains("id=\"rebuild\""));
    let r = get(&e, "/console/admin/residency", Some(&b.cookie)).await;
    assert_eq!(r.status, StatusCode::OK);
}

#[tokio::test]
async fn signing_out_ends_the_session() {
    let e = env();
    let b = sign_in(&e, &e.key("default", &[Scope::Read])).await;
    let r = post(
        &e,
        "/console/signout",
        Some(&b.cookie),
        &[("csrf", &b.csrf)],
    )
    .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert!(set_cookie(&r, "mailledger_session").contains("Max-Age=0"));
    let after = get(&e, "/console/activity", Some(&b.cookie)).await;
    assert_eq!(after.status, StatusCode::SEE_OTHER);
    assert_eq!(after.headers[header::LOCATION], "/console/signin");
}

#[tokio::test]
async fn a_raw_provider_payload_is_folded_away() {
    let e = env();
    let k = e.key("default", &[Scope::Ingest, Scope::Read]);
    let text = std::fs::read_to_string(format!(
        "{}/testdata/webhooks/postmark/delivery.json",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    let sample: serde_json::Value = serde_json::from_str(&text).unwrap();
    e.ok(Method::POST, "/v1/webhooks/postmark", &k, Some(&sample))
        .await;
    e.project().await;
    let id = sample["MessageID"].as_str().unwrap();
    let b = sign_in(&e, &k).await;
    let r = get(&e, &format!("/console/messages/{id}"), Some(&b.cookie)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let html = r.text();
    let folded = html.split("<details><summary>Raw payload</summary>").nth(1);
    assert!(folded.is_some_and(|f| f.starts_with("<pre>")), "{html}");
}
