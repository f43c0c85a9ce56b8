//! The web console's pages with 100,000 messages in the ledger (fjall log
//! and projections, as `serve` keeps them): each page
//! answered through the router (tower's `oneshot`), timed 200 times after a
//! warm-up; prints p50 and p99 per page, and the bytes the vendored assets
//! add to the binary. The bound: p99 under 50 ms.
//!
//! `cargo bench -p mailledger-benches --bench console` (set
//! `CONSOLE_BENCH_MESSAGES` for another count).
#![allow(missing_docs)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use mailledger_api::{AccessStore, AppState, Scope, router};
use mailledger_core::crypto::SecretKey;
use mailledger_core::email::EmailLedger;
use mailledger_core::keys::FileKeyStore;
use mailledger_core::residency::Jurisdiction;
use mailledger_core::{Ledger, LedgerConfig};
use mailledger_projections::Projections;
use serde_json::json;
use tower::ServiceExt;

const RUNS: usize = 200;
const CONTACTS: u64 = 5_000;

async fn send(app: &Router, req: Request<Body>) -> (StatusCode, Vec<(String, String)>, String) {
    let res = app.clone().oneshot(req).await.expect("answer");
    let status = res.status();
    let headers = res
        .headers()
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or_default().to_owned()))
        .collect();
    let body = axum::body::to_bytes(res.into_body(), usize::MAX)
        .await
        .expect("body");
    (status, headers, String::from_utf8_lossy(&body).into_owned())
}

fn csrf_of(html: &str) -> String {
    html.split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .expect("a csrf field")
        .to_owned()
}

fn cookie(headers: &[(String, String)], name: &str) -> String {
    headers
        .iter()
        .find(|(k, v)| k == "set-cookie" && v.starts_with(name))
        .and_then(|(_, v)| v.split(';').next())
        .expect("cookie")
        .to_owned()
}

fn form(uri: &str, cookie: &str, body: String) -> Request<Body> {
    Request::post(uri)
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .header(header::COOKIE, cookie)
        .body(Body::from(body))
        .expect("request")
}

fn main() {
    let messages: u64 = std::env::var("CONSOLE_BENCH_MESSAGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    // The access log's writer is a task of this runtime.
    let _runtime = rt.enter();
    let dir = tempfile::tempdir().expect("tempdir");
    let kek = SecretKey::generate().expect("kek");
    let keys = FileKeyStore::open(&dir.path().join("keys"), &kek).expect("keys");
    // The stores `serve` runs on: fjall for the log and the projections.
    let store = mailledger_fjall::FjallStore::open(&dir.path().join("log")).expect("fjall");
    let log = Ledger::open(store, LedgerConfig::new()).expect("log");
    let email = Arc::new(EmailLedger::new(Arc::new(log), Arc::new(keys)));
    let access = AccessStore::open(&dir.path().join("data"), &kek).expect("access");
    access.bootstrap(&[Jurisdiction::EU]).expect("bootstrap");
    let (_, key) = access
        .create_key(
            "default",
            &[
                Scope::Ingest,
                Scope::Read,
                Scope::Erase,
                Scope::Audit,
                Scope::Admin,
            ],
            None,
        )
        .expect("key");
    let key = key.as_str().to_owned();
    let projections =
        Arc::new(Projections::open(&dir.path().join("projections")).expect("projections"));
    let access_log = mailledger_audit::AccessLog::start(Arc::clone(email.log()));
    let state = AppState::new(Arc::clone(&email), Arc::new(access))
        .with_access_log(access_log)
        .with_projections(Arc::clone(&projections))
        .with_limits(mailledger_api::Limits {
            rate_limit_per_second: 0.0,
            ..mailledger_api::Limits::default()
        });
    state.ready.set(true);
    let app = router(state);

    rt.block_on(async {
        let started = Instant::now();
        let now = mailledger_core::now_micros();
        let day = 86_400_000_000_i64;
        for chunk in 0..messages.div_ceil(500) {
            let events: Vec<_> = (chunk * 500..((chunk + 1) * 500).min(messages))
                .flat_map(|i| {
                    let at = now - (i as i64 % 29) * day - (i as i64 % 86_400) * 1_000_000;
                    let at = mailledger_core::email::rfc3339(at);
                    let base = json!({
                        "message_id": format!("m-{i}"),
                        "recipient": format!("contact{}@example.org", i % CONTACTS),
                        "occurred_at": at,
                        "sending_domain": "mail.example.com",
                        "tags": [format!("tag{}", i % 7)],
                        "campaign": format!("c{}", i % 5),
                    });
                    let mut sent = base.clone();
                    sent["id"] = uuid::Uuid::new_v4().to_string().into();
                    sent["type"] = "sent".into();
                    let mut second = base;
                    second["id"] = uuid::Uuid::new_v4().to_string().into();
                    if i % 20 == 0 {
                        second["type"] = "bounced".into();
                        second["class"] = "hard".into();
                    } else {
                        second["type"] = "delivered".into();
                    }
                    [sent, second]
                })
                .collect();
            let req = Request::post("/v1/events")
                .header(header::AUTHORIZATION, format!("Bearer {key}"))
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(
                    serde_json::to_vec(&json!({ "events": events })).expect("json"),
                ))
                .expect("request");
            let (status, _, body) = send(&app, req).await;
            assert_eq!(status, StatusCode::OK, "{body}");
        }
        projections
            .catch_up(email.log().as_ref())
            .await
            .expect("catch up");
        eprintln!(
            "filled {messages} messages ({} events) in {:.1?}",
            messages * 2,
            started.elapsed()
        );

        // Sign in.
        let (_, h, page) = send(
            &app,
            Request::get("/console/signin")
                .body(Body::empty())
                .expect("req"),
        )
        .await;
        let pre = cookie(&h, "mailledger_signin");
        let (status, h, _) = send(
            &app,
            form(
                "/console/signin",
                &pre,
                format!("csrf={}&key={key}", csrf_of(&page)),
            ),
        )
        .await;
        assert_eq!(status, StatusCode::SEE_OTHER);
        let session = cookie(&h, "mailledger_session");
        let (_, _, page) = send(
            &app,
            Request::get("/console/activity")
                .header(header::COOKIE, &session)
                .body(Body::empty())
                .expect("req"),
        )
        .await;
        let csrf = csrf_of(&page);

        let gets = [
            ("activity", "/console/activity".to_owned()),
            (
                "activity-filtered",
                "/console/activity?status=bounced&tag=tag3".to_owned(),
            ),
            ("message", format!("/console/messages/m-{}", messages / 2)),
            ("suppressions", "/console/suppressions".to_owned()),
            ("analytics-day", "/console/analytics".to_owned()),
            (
                "analytics-day-by-tag",
                "/console/analytics?group_by=tag".to_owned(),
            ),
            (
                "analytics-hour-by-tag",
                "/console/analytics?granularity=hour&group_by=tag".to_owned(),
            ),
            ("erasure-register", "/console/erasure".to_owned()),
            ("access-records", "/console/audit/access".to_owned()),
            ("keys", "/console/admin/keys".to_owned()),
            ("projections", "/console/admin/projections".to_owned()),
        ];
        let posts = [
            (
                "search",
                "/console/search",
                format!("csrf={csrf}&recipient=contact42%40example.org"),
            ),
            (
                "suppression-lookup",
                "/console/suppressions/lookup",
                format!("csrf={csrf}&address=contact40%40example.org"),
            ),
        ];
        println!("page                      p50 ms   p99 ms   bytes");
        let mut worst = Duration::ZERO;
        for (name, uri, body) in gets.iter().map(|(n, u)| (*n, u.clone(), None)).chain(
            posts
                .iter()
                .map(|(n, u, b)| (*n, (*u).to_owned(), Some(b.clone()))),
        ) {
            let make = || match &body {
                None => Request::get(&uri)
                    .header(header::COOKIE, &session)
                    .body(Body::empty())
                    .expect("req"),
                Some(b) => form(&uri, &session, b.clone()),
            };
            let mut times = Vec::with_capacity(RUNS);
            let mut size = 0;
            for run in 0..RUNS + 20 {
                let t = Instant::now();
                let (status, _, text) = send(&app, make()).await;
                let took = t.elapsed();
                assert_eq!(status, StatusCode::OK, "{name}: {text}");
                size = text.len();
                if run >= 20 {
                    times.push(took);
                }
            }
            times.sort();
            let p = |q: f64| times[((times.len() as f64 * q).ceil() as usize).min(times.len()) - 1];
            worst = worst.max(p(0.99));
            println!(
                "{name:<24} {:>7.2} {:>8.2} {size:>7}",
                p(0.5).as_secs_f64() * 1e3,
                p(0.99).as_secs_f64() * 1e3
            );
        }
        println!(
            "worst p99 {:.2} ms (bound 50 ms); vendored assets {} bytes",
            worst.as_secs_f64() * 1e3,
            mailledger_api::console::assets::total_bytes()
        );
    });
}
