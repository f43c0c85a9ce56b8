//! The web console in a real browser: headless Chromium, driven through
//! chromedriver (WebDriver) against the real `mailledger serve`. It signs
//! in, finds a message by recipient, opens its timeline, sees a
//! hard-bounced address suppressed, erases it (the erased marker and the
//! receipt in the register), reads an analytics chart's table, and creates
//! and revokes a key. On every page: no request to another origin (the
//! Resource Timing API) and no address in a page URL; at the end no
//! server log line holds an address, and a POST without the CSRF token is
//! refused. Screenshots of every page go to `target/console-screenshots/`.
//!
//! Skipped, saying why, when chromedriver is absent, unless
//! `MAILLEDGER_REQUIRE_BROWSER=1` (as CI sets), when it fails.

#![allow(clippy::unwrap_used)]

mod common;

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::Server;
use common::http::{Http as _, http, poll};
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};

const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const CHROMIUM: &str = "/usr/bin/chromium";
const ANN: &str = "ann.browser@example.org";
const BOB: &str = "bob.browser@example.org";

/// chromedriver, stopped on drop.
struct Driver(Child);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts chromedriver, or says why not (None).
fn start_driver() -> Option<(Driver, u16)> {
    let required = std::env::var("MAILLEDGER_REQUIRE_BROWSER").as_deref() == Ok("1");
    for (path, what) in [(CHROMEDRIVER, "chromedriver"), (CHROMIUM, "chromium")] {
        if !Path::new(path).exists() {
            assert!(
                !required,
                "MAILLEDGER_REQUIRE_BROWSER=1 but {path} is absent"
            );
            eprintln!(
                "skipped: {what} is not installed at {path} (apt-get install chromium chromium-driver)"
            );
            return None;
        }
    }
    let port = free_port();
    let child = Command::new(CHROMEDRIVER)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let driver = Driver(child);
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "chromedriver did not listen");
        std::thread::sleep(Duration::from_millis(50));
    }
    Some((driver, port))
}

async fn browser(port: u16, profile: &Path) -> Client {
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": CHROMIUM,
            "args": [
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync",
                "--window-size=1280,1000",
                format!("--user-data-dir={}", profile.display()),
            ],
        }),
    );
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&format!("http://127.0.0.1:{port}"))
        .await
        .unwrap()
}

fn screenshots() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"),
        PathBuf::from,
    );
    let dir = target.join("console-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// What each page is checked for, and its screenshot.
struct Pages {
    origin: String,
    dir: PathBuf,
    urls: Vec<String>,
}

impl Pages {
    /// Checks the page now shown: its URL and every resource it loaded are
    /// of the server's origin, none holds an address; then a screenshot.
    async fn check(&mut self, c: &Client, name: &str) {
        let url = c.current_url().await.unwrap().to_string();
        let resources = c
            .execute(
                "return performance.getEntriesByType('resource').map(function (e) { return e.name; });",
                vec![],
            )
            .await
            .unwrap();
        let mut all = vec![url.clone()];
        all.extend(
            resources
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_str().unwrap().to_owned()),
        );
        for u in &all {
            assert!(
                u.starts_with(&self.origin),
                "{name}: a request to another origin: {u}"
            );
            assert!(
                !u.contains('@') && !u.to_lowercase().contains("%40"),
                "{name}: an address in {u}"
            );
        }
        self.urls.extend(all);
        let png = c.screenshot().await.unwrap();
        std::fs::write(self.dir.join(format!("{name}.png")), png).unwrap();
    }
}

async fn fill(c: &Client, css: &str, text: &str) {
    let e = find(c, Locator::Css(css)).await;
    e.clear().await.unwrap();
    e.send_keys(text).await.unwrap();
}

/// The element `search` finds, waiting for it (a click's navigation may
/// still be under way); the page's source in the panic when it never shows.
async fn find(c: &Client, search: Locator<'_>) -> fantoccini::elements::Element {
    match c
        .wait()
        .at_most(Duration::from_secs(10))
        .for_element(search)
        .await
    {
        Ok(e) => e,
        Err(e) => panic!("{e:?}: {}", c.source().await.unwrap_or_default()),
    }
}

async fn click(c: &Client, css: &str) {
    find(c, Locator::Css(css)).await.click().await.unwrap();
}

async fn text(c: &Client, css: &str) -> String {
    find(c, Locator::Css(css)).await.text().await.unwrap()
}

/// The events of the test: a delivered and opened message to Ann, and a
/// hard bounce for Bob.
fn events() -> Value {
    let now = mailledger_core::email::rfc3339(mailledger_core::now_micros());
    let e = |t: &str, m: &str, to: &str| {
        let mut v = json!({"id": uuid::Uuid::new_v4().to_string(), "type": t, "message_id": m,
            "recipient": to, "occurred_at": now, "sending_domain": "mail.example.com",
            "tags": ["welcome"], "campaign": "december"});
        if t == "bounced" {
            v["class"] = "hard".into();
            v["diagnostic"] = "550 5.1.1 user unknown".into();
        }
        v
    };
    json!({"events": [
        e("sent", "m-ann-1", ANN), e("delivered", "m-ann-1", ANN), e("opened", "m-ann-1", ANN),
        e("sent", "m-bob-1", BOB), e("bounced", "m-bob-1", BOB),
    ]})
}

/// A POST of a console form without its CSRF token, from a plain client
/// with a real session, is refused.
fn post_without_token_is_refused(server: &Server, key: &str) {
    let form = server.request("GET", "/console/signin", &[], b"");
    let token = form
        .body
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_owned();
    let pre = form
        .headers
        .iter()
        .find(|(n, v)| n.eq_ignore_ascii_case("set-cookie") && v.starts_with("mailledger_signin="))
        .map(|(_, v)| v.split(';').next().unwrap().to_owned())
        .unwrap();
    let body = format!("csrf={token}&key={key}");
    let signed = http(
        &server.addr,
        "POST",
        "/console/signin",
        &[
            ("Content-Type", "application/x-www-form-urlencoded"),
            ("Cookie", &pre),
        ],
        body.as_bytes(),
    );
    assert_eq!(signed.status, 303, "{}", signed.body);
    let session = signed
        .headers
        .iter()
        .find(|(n, v)| n.eq_ignore_ascii_case("set-cookie") && v.starts_with("mailledger_session="))
        .map(|(_, v)| v.split(';').next().unwrap().to_owned())
        .unwrap();
    let r = http(
        &server.addr,
        "POST",
        "/console/suppressions/add",
        &[
            ("Content-Type", "application/x-www-form-urlencoded"),
            ("Cookie", &session),
        ],
        b"address=carl%40example.org&reason=manual&confirm=yes",
    );
    assert_eq!(r.status, 403, "{}", r.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_in_headless_chromium() {
    let Some((_driver, port)) = start_driver() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = common::command(dir.path());
    cmd.env("MAILLEDGER_LOG_LEVEL", "debug");
    let server = Server::start_with(cmd, true);
    let admin = server.first_key.clone();
    let created = server.call(
        "POST",
        "/v1/admin/keys",
        &admin,
        &json!({"tenant": "default", "scopes": ["ingest", "read", "erase", "audit", "admin"], "name": "console"}),
    );
    let key = created.expect(201, "key")["key"]
        .as_str()
        .unwrap()
        .to_owned();
    server
        .call("POST", "/v1/events", &key, &events())
        .expect(200, "events");
    poll("the projections", || {
        let r = server.call("GET", "/v1/messages", &key, &Value::Null);
        let n = r.json()["items"].as_array().map_or(0, Vec::len);
        if n == 2 { Ok(()) } else { Err(r.body) }
    });
    poll("the suppression", || {
        let r = server.call("POST", "/v1/sends/check", &key, &json!({"address": BOB}));
        if r.json()["allowed"] == false {
            Ok(())
        } else {
            Err(r.body)
        }
    });

    let profile = tempfile::tempdir().unwrap();
    let c = browser(port, profile.path()).await;
    let origin = format!("http://{}/", server.addr);
    let mut pages = Pages {
        origin: origin.clone(),
        dir: screenshots(),
        urls: Vec::new(),
    };

    // 1. Sign in.
    c.goto(&format!("{origin}console/signin")).await.unwrap();
    pages.check(&c, "signin").await;
    // With the keyboard alone: the key, then Enter.
    fill(&c, "#key", &format!("{key}\u{E007}")).await;
    find(&c, Locator::LinkText("m-bob-1")).await;
    // htmx, vendored, runs under the CSP.
    let version = c
        .execute("return window.htmx ? htmx.version : null;", vec![])
        .await
        .unwrap();
    assert_eq!(version, json!("2.0.4"));
    assert!(
        c.current_url()
            .await
            .unwrap()
            .path()
            .ends_with("/console/activity")
    );
    pages.check(&c, "activity").await;

    // 2. Find a message by recipient.
    c.goto(&format!("{origin}console/search")).await.unwrap();
    fill(&c, "input[name=recipient]", &format!("{BOB}\u{E007}")).await;
    let link = find(&c, Locator::LinkText("m-bob-1")).await;
    assert!(c.find(Locator::LinkText("m-ann-1")).await.is_err());
    pages.check(&c, "search").await;

    // 3. Its timeline.
    link.click().await.unwrap();
    find(&c, Locator::Css("ol.timeline")).await;
    let html = c.source().await.unwrap();
    assert!(html.contains("bounced") && html.contains(BOB), "{html}");
    pages.check(&c, "message").await;

    // 4. The hard-bounced address shows as suppressed.
    c.goto(&format!("{origin}console/suppressions"))
        .await
        .unwrap();
    pages.check(&c, "suppressions").await;
    fill(
        &c,
        "form[action='/console/suppressions/lookup'] input[name=address]",
        BOB,
    )
    .await;
    click(&c, "form[action='/console/suppressions/lookup'] button").await;
    let verdict = text(&c, "#verdict").await;
    assert!(
        verdict.starts_with("Suppressed") && verdict.contains("hard_bounce"),
        "{verdict}"
    );
    pages.check(&c, "suppression-lookup").await;

    // 5. Erase it: the receipt, the register, the erased marker.
    c.goto(&format!("{origin}console/erasure")).await.unwrap();
    fill(
        &c,
        "main form[action='/console/erasure'] input[name=address]",
        BOB,
    )
    .await;
    fill(
        &c,
        "main form[action='/console/erasure'] input[name=request_id]",
        "dsr-browser-1",
    )
    .await;
    click(&c, "main form[action='/console/erasure'] button").await;
    find(&c, Locator::Css("main p.problem")).await;
    pages.check(&c, "erasure-confirm").await;
    click(&c, "main form[action='/console/erasure'] button.danger").await;
    assert!(text(&c, "#receipt").await.contains("dsr-browser-1"));
    assert!(text(&c, "#register").await.contains("dsr-browser-1"));
    pages.check(&c, "erasure").await;
    c.goto(&format!("{origin}console/messages/m-bob-1"))
        .await
        .unwrap();
    let html = c.source().await.unwrap();
    assert!(html.contains("class=\"erased\"") && !html.contains(BOB));
    pages.check(&c, "message-erased").await;

    // 6. An analytics chart's table.
    c.goto(&format!("{origin}console/analytics")).await.unwrap();
    let table = text(&c, "table[data-chart=buckets]").await;
    assert!(table.contains("Sent"), "{table}");
    let sent = text(&c, "table[data-chart=buckets] tbody td:nth-child(2)").await;
    assert_eq!(sent, "2", "{table}");
    assert!(
        c.find(Locator::Css(
            "figure.chart svg polyline, figure.chart svg circle"
        ))
        .await
        .is_ok()
    );
    pages.check(&c, "analytics").await;

    // 7. Create a key, and revoke it.
    c.goto(&format!("{origin}console/admin/keys"))
        .await
        .unwrap();
    click(&c, "input[name=scopes][value=read]").await;
    click(
        &c,
        "main form[action='/console/admin/keys'] button[type=submit]",
    )
    .await;
    let new_key = text(&c, "#new-key").await;
    let new_id = text(&c, "#new-key-id").await;
    assert!(new_key.starts_with("mlk_"), "{new_key}");
    pages.check(&c, "key-created").await;
    server
        .call("GET", "/v1/messages", &new_key, &Value::Null)
        .expect(200, "the new key");
    click(&c, &format!("tr[data-key='{new_id}'] button")).await;
    find(&c, Locator::Css("input[name=confirm]")).await;
    click(&c, "main form button.danger").await;
    assert!(text(&c, "main p.notice").await.contains("revoked"));
    assert!(
        c.find(Locator::Css(&format!("tr[data-key='{new_id}'] button")))
            .await
            .is_err()
    );
    pages.check(&c, "keys").await;
    assert_eq!(
        server
            .call("GET", "/v1/messages", &new_key, &Value::Null)
            .status,
        401
    );

    // At 200% zoom (half the window's width in CSS pixels) no page
    // scrolls sideways: wide tables scroll within themselves.
    c.set_window_size(640, 1000).await.unwrap();
    for p in [
        "activity",
        "analytics",
        "messages/m-ann-1",
        "admin/keys",
        "erasure",
    ] {
        c.goto(&format!("{origin}console/{p}")).await.unwrap();
        let wide = c
            .execute(
                "return document.documentElement.scrollWidth - document.documentElement.clientWidth;",
                vec![],
            )
            .await
            .unwrap();
        assert!(
            wide.as_i64().unwrap() <= 0,
            "{p} scrolls sideways by {wide} px"
        );
    }
    pages.check(&c, "erasure-narrow").await;
    c.set_window_size(1280, 1000).await.unwrap();

    // The operator pages open too.
    for p in ["tenants", "residency", "projections", "webhook-secrets"] {
        c.goto(&format!("{origin}console/admin/{p}")).await.unwrap();
        assert!(
            !c.source().await.unwrap().contains("class=\"problem\""),
            "{p}"
        );
        pages.check(&c, p).await;
    }
    for p in ["audit/access", "audit/checkpoints"] {
        c.goto(&format!("{origin}console/{p}")).await.unwrap();
        pages.check(&c, &p.replace('/', "-")).await;
    }
    c.close().await.unwrap();

    post_without_token_is_refused(&server, &key);
    let log = format!("{}{}", server.banner, server.output());
    for a in [ANN, BOB] {
        assert!(!log.contains(a), "the server's log holds an address");
        assert!(!pages.urls.iter().any(|u| u.contains(a)));
    }
}
