//! The page shell (navigation, sign-out) and the small pieces every page
//! uses: times, erased markers, CSRF fields, URL encoding, JSON values.

use axum::response::{Html, IntoResponse, Response};
use mailledger_access::Scope;
use maud::{DOCTYPE, Markup, PreEscaped, html};
use serde_json::Value;

use crate::console::assets::{CSS_PATH, HTMX_PATH, JS_PATH};
use crate::console::session::Session;

/// The navigation: (path, label, the scopes that may open it).
const NAV: [(&str, &str, &[Scope]); 12] = [
    ("/console/activity", "Activity", &[Scope::Read]),
    ("/console/search", "Search", &[Scope::Read]),
    ("/console/suppressions", "Suppressions", &[Scope::Read]),
    ("/console/analytics", "Analytics", &[Scope::Read]),
    ("/console/erasure", "Erasure", &[Scope::Erase, Scope::Audit]),
    ("/console/audit/access", "Access records", &[Scope::Audit]),
    ("/console/audit/checkpoints", "Checkpoints", &[Scope::Audit]),
    ("/console/admin/tenants", "Tenants", &[Scope::Admin]),
    ("/console/admin/keys", "API keys", &[Scope::Admin]),
    (
        "/console/admin/webhook-secrets",
        "Webhook secrets",
        &[Scope::Admin],
    ),
    ("/console/admin/residency", "Residency", &[Scope::Admin]),
    ("/console/admin/projections", "Projections", &[Scope::Admin]),
];

/// htmx's settings (see [`head`]).
const HTMX_CONFIG: &str = r#"{"includeIndicatorStyles":false,"allowEval":false,"allowScriptTags":false,"historyCacheSize":0,"refreshOnHistoryMiss":true,"responseHandling":[{"code":"204","swap":false},{"code":"...","swap":true}]}"#;

/// The `<head>` of every page.
pub(crate) fn head(title: &str) -> Markup {
    html! {
        meta charset="utf-8";
        meta name="viewport" content="width=device-width, initial-scale=1";
        // htmx adds no inline style (the CSP forbids them), evaluates no
        // script, keeps no page in localStorage (pages hold addresses and
        // new keys), and shows error pages as it does the others.
        meta name="htmx-config" content=(HTMX_CONFIG);
        title { (title) " · mailledger console" }
        link rel="stylesheet" href=(CSS_PATH);
        script src=(HTMX_PATH) defer {}
        script src=(JS_PATH) defer {}
    }
}

/// A whole page for a signed-in user: navigation for the key's scopes,
/// the sign-out button, and `body` under an `h1` of `title`.
pub(crate) fn page(s: &Session, current: &str, title: &str, body: &Markup) -> Response {
    let markup = html! {
        (DOCTYPE)
        html lang="en" {
            head { (head(title)) }
            body {
                a.skip href="#main" { "Skip to content" }
                header.top {
                    span.brand { "mailledger" }
                    nav aria-label="Console" {
                        ul {
                            @for (path, label, scopes) in NAV {
                                @if scopes.iter().any(|sc| s.has(*sc)) {
                                    li {
                                        @if path == current {
                                            a href=(path) aria-current="page" { (label) }
                                        } @else {
                                            a href=(path) { (label) }
                                        }
                                    }
                                }
                            }
                        }
                    }
                    form method="post" action="/console/signout" {
                        (csrf_input(s))
                        span.who { "tenant " (s.caller.tenant) " · key " (s.caller.key_id) " " }
                        button.secondary type="submit" { "Sign out" }
                    }
                }
                // With htmx, links and forms in the page swap the page's
                // main part in place; without it they load whole pages.
                main id="main" hx-boost="true" hx-target="#main" hx-select="#main" hx-swap="outerHTML" {
                    h1 { (title) }
                    (body)
                }
            }
        }
    };
    Html(markup.into_string()).into_response()
}

/// The hidden CSRF field of a form.
pub(crate) fn csrf_input(s: &Session) -> Markup {
    html! { input type="hidden" name=(crate::console::csrf::FIELD) value=(s.csrf); }
}

/// A time: UTC in `datetime` and `title`, shown in the browser's zone by
/// the console's script (UTC until it runs).
pub(crate) fn time(t: &str) -> Markup {
    html! { time datetime=(t) title=(format!("{t} (UTC)")) { (t) } }
}

/// An optional time, or a dash.
pub(crate) fn opt_time(t: Option<&str>) -> Markup {
    match t {
        Some(t) => time(t),
        None => html! { "—" },
    }
}

/// The erased marker.
pub(crate) fn erased() -> Markup {
    html! { span.erased title="this contact was erased: its key is destroyed" { "erased" } }
}

/// Whether a JSON value is the `{"erased": true}` marker.
pub(crate) fn is_erased(v: &Value) -> bool {
    v.get("erased").and_then(Value::as_bool) == Some(true)
}

/// A JSON value for a cell: text as is, the erased marker, times as
/// `<time>`, a dash for null, anything else as compact JSON.
pub(crate) fn value(key: &str, v: &Value) -> Markup {
    match v {
        Value::Null => html! { "—" },
        Value::String(t) if key.ends_with("_at") || key == "since" || key == "at" => time(t),
        Value::String(t) => html! { (t) },
        Value::Bool(b) => html! { (if *b { "yes" } else { "no" }) },
        Value::Number(n) => html! { (n.to_string()) },
        Value::Array(items) if items.iter().all(Value::is_string) => {
            let list: Vec<&str> = items.iter().filter_map(Value::as_str).collect();
            html! { (list.join(", ")) }
        }
        v if is_erased(v) => erased(),
        v => html! { code { (v.to_string()) } },
    }
}

/// An object's fields as a definition list (nested objects as JSON).
pub(crate) fn fields(v: &Value) -> Markup {
    html! {
        dl.fields {
            @if let Some(m) = v.as_object() {
                @for (k, val) in m {
                    dt { (k) }
                    dd { (value(k, val)) }
                }
            }
        }
    }
}

/// Percent-encodes `s` for a URL path segment or query value.
pub(crate) fn enc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A query string from (name, value) pairs, empty values left out.
pub(crate) fn query(pairs: &[(&str, Option<&str>)]) -> String {
    let parts: Vec<String> = pairs
        .iter()
        .filter_map(|(k, v)| {
            v.filter(|v| !v.is_empty())
                .map(|v| format!("{k}={}", enc(v)))
        })
        .collect();
    if parts.is_empty() {
        String::new()
    } else {
        format!("?{}", parts.join("&"))
    }
}

/// A notice (not an error).
pub(crate) fn notice(text: &str) -> Markup {
    html! { p.notice role="status" { (text) } }
}

/// Raw HTML known to be safe (a rendered SVG built from numbers and
/// escaped text).
pub(crate) fn raw(s: String) -> Markup {
    PreEscaped(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoding_leaves_only_unreserved_characters() {
        assert_eq!(enc("a b/c?d&e@f"), "a%20b%2Fc%3Fd%26e%40f");
        assert_eq!(
            query(&[("a", Some("1")), ("b", None), ("c", Some(""))]),
            "?a=1"
        );
    }
}
