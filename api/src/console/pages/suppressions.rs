//! Suppressions: the list (reason and since when), lookup by address (a
//! POST), and adding or removing an entry, each after a confirmation.
//! Runs the handlers of `GET /v1/suppressions`, `POST
//! /v1/suppressions/lookup`, `POST /v1/suppressions` and `POST
//! /v1/suppressions/remove`.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use mailledger_access::Scope;
use mailledger_core::crypto::Personal;
use maud::{Markup, html};
use serde::Deserialize;
use serde_json::Value;

use crate::auth::scope;
use crate::console::csrf::Posted;
use crate::console::layout::{csrf_input, notice, opt_time, page, query, time};
use crate::console::session::Session;
use crate::console::{PageResult, bad_input};
use crate::json::ApiJson;
use crate::routes::suppressions::{
    self, AddSuppression, LookupRequest, RemoveSuppression, SuppressionsQuery,
};
use crate::state::AppState;

use super::{auth, st};

const HERE: &str = "/console/suppressions";

/// Entries as a table.
fn entries_table(items: &[Value], with_contact: bool) -> Markup {
    html! {
        div.scroll { table {
            thead { tr {
                @if with_contact { th scope="col" { "Contact (pseudonym)" } }
                th scope="col" { "Scope" } th scope="col" { "Reason" } th scope="col" { "Note" }
                th scope="col" { "Since" } th scope="col" { "Expires" } th scope="col" { "Applies now" }
            } }
            tbody { @for e in items { tr {
                @if with_contact { td { code { (e["contact"].as_str().unwrap_or_default()) } } }
                td { (e["scope"].as_str().unwrap_or_default()) }
                td { (e["reason"].as_str().unwrap_or_default()) }
                td { (e["note"].as_str().unwrap_or("—")) }
                td { @if let Some(t) = e["since"].as_str() { (time(t)) } }
                td { (opt_time(e["expires_at"].as_str())) }
                td { @if e["active"].as_bool() == Some(true) { span.suppressed { "suppressed" } } @else { "lapsed" } }
            } } }
        } }
    }
}

/// The lookup and add forms.
fn forms(s: &Session) -> Markup {
    html! {
        section {
            h2 { "Look up an address" }
            form.inline method="post" action="/console/suppressions/lookup" {
                (csrf_input(s))
                label { "Address" input type="email" name="address" required autocomplete="off" size="36"; }
                button type="submit" { "Look up" }
            }
        }
        @if s.has(Scope::Ingest) {
            section {
                h2 { "Add an entry" }
                form.filters method="post" action="/console/suppressions/add" {
                    (csrf_input(s))
                    label { "Address" input type="email" name="address" required autocomplete="off" size="36"; }
                    label { "Scope" input name="scope" value="all" size="10"; }
                    label { "Reason (no personal data)" input name="reason" required size="24"; }
                    label { "Expires (UTC, optional)" input type="datetime-local" name="expires_at"; }
                    button type="submit" { "Add…" }
                }
            }
        }
    }
}

/// Paging of the list.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    cursor: Option<String>,
    include_lapsed: Option<String>,
}

/// `GET /console/suppressions`.
pub async fn list(
    State(state): State<AppState>,
    s: Session,
    q: Result<Query<ListQuery>, QueryRejection>,
) -> PageResult {
    let Query(q) = q.map_err(|_| bad_input("a parameter of the page is not one it knows"))?;
    let lapsed = q.include_lapsed.as_deref() == Some("true");
    let auth = auth::<scope::Read>(&state, &s)?;
    let ApiJson(body) = suppressions::list(
        st(&state),
        auth,
        Ok(Query(SuppressionsQuery {
            cursor: q.cursor.clone().filter(|c| !c.is_empty()),
            limit: None,
            include_lapsed: lapsed.then(|| "true".to_owned()),
        })),
    )
    .await?;
    let items = body["items"].as_array().cloned().unwrap_or_default();
    let body = html! {
        (forms(&s))
        h2 { "The list" }
        p {
            @if lapsed { a href=(HERE) { "Live entries only" } }
            @else { a href=(format!("{HERE}?include_lapsed=true")) { "Include lapsed entries" } }
        }
        @if items.is_empty() { p { "No entries." } } @else { (entries_table(&items, true)) }
        div.pager {
            @if q.cursor.is_some() { a href=(HERE) { "First page" } }
            @if let Some(n) = body["next"].as_str() {
                a rel="next" href=(format!("{HERE}{}", query(&[("cursor", Some(n)), ("include_lapsed", lapsed.then_some("true"))]))) { "Next page" }
            }
        }
    };
    Ok(page(&s, HERE, "Suppressions", &body))
}

/// An address in a form.
#[derive(Debug, Deserialize)]
pub struct AddressForm {
    address: String,
}

/// `POST /console/suppressions/lookup`: every entry of an address.
pub async fn lookup(State(state): State<AppState>, posted: Posted<AddressForm>) -> PageResult {
    let s = posted.session;
    let address = posted.form.address.trim().to_owned();
    let auth = auth::<scope::Read>(&state, &s)?;
    let ApiJson(body) = suppressions::lookup(
        st(&state),
        auth,
        ApiJson(LookupRequest {
            address: Personal::new(address.clone()),
        }),
    )
    .await?;
    let entries = body["entries"].as_array().cloned().unwrap_or_default();
    let live: Vec<&Value> = entries
        .iter()
        .filter(|e| e["active"].as_bool() == Some(true))
        .collect();
    let body = html! {
        h2 { "This address" }
        @if live.is_empty() {
            p.allowed id="verdict" { "Not suppressed" }
        } @else {
            p.suppressed id="verdict" {
                "Suppressed: "
                (live.iter().filter_map(|e| e["reason"].as_str()).collect::<Vec<_>>().join(", "))
            }
        }
        @if !entries.is_empty() { (entries_table(&entries, true)) }
        @if s.has(Scope::Ingest) {
            @for e in &live {
                form.inline method="post" action="/console/suppressions/remove" {
                    (csrf_input(&s))
                    input type="hidden" name="address" value=(address);
                    input type="hidden" name="scope" value=(e["scope"].as_str().unwrap_or("all"));
                    label { "Reason for removing" input name="reason" size="24"; }
                    button.danger type="submit" { "Remove the " (e["scope"].as_str().unwrap_or("all")) " entry…" }
                }
            }
        }
        (forms(&s))
    };
    Ok(page(&s, HERE, "Suppression lookup", &body))
}

/// A change to confirm: add or remove.
#[derive(Debug, Deserialize)]
pub struct ChangeForm {
    address: String,
    scope: Option<String>,
    reason: Option<String>,
    expires_at: Option<String>,
    confirm: Option<String>,
}

/// The confirmation page of a change: the same fields, and `confirm`.
fn confirm_page(
    s: &Session,
    action: &str,
    what: &str,
    form: &ChangeForm,
) -> axum::response::Response {
    let body = html! {
        p { (what) }
        form method="post" action=(action) {
            (csrf_input(s))
            input type="hidden" name="address" value=(form.address);
            input type="hidden" name="scope" value=[form.scope.as_deref()];
            input type="hidden" name="reason" value=[form.reason.as_deref()];
            input type="hidden" name="expires_at" value=[form.expires_at.as_deref()];
            input type="hidden" name="confirm" value="yes";
            dl.fields {
                dt { "Address" } dd { (form.address) }
                dt { "Scope" } dd { (form.scope.as_deref().unwrap_or("all")) }
                dt { "Reason" } dd { (form.reason.as_deref().unwrap_or("—")) }
            }
            p { button.danger type="submit" { "Confirm" } " " a href=(HERE) { "Cancel" } }
        }
    };
    page(s, HERE, "Confirm", &body)
}

/// `POST /console/suppressions/add`: confirm, then append `suppressed`.
pub async fn add(State(state): State<AppState>, posted: Posted<ChangeForm>) -> PageResult {
    let s = posted.session;
    let f = posted.form;
    let auth = auth::<scope::Ingest>(&state, &s)?;
    if f.confirm.as_deref() != Some("yes") {
        return Ok(confirm_page(
            &s,
            "/console/suppressions/add",
            "Suppress this address? Nothing will be sent to it in this scope.",
            &f,
        ));
    }
    let ApiJson(out) = suppressions::add(
        st(&state),
        auth,
        ApiJson(AddSuppression {
            address: Personal::new(f.address.trim().to_owned()),
            scope: f.scope,
            reason: f.reason.unwrap_or_default(),
            expires_at: super::rfc3339(f.expires_at),
            id: None,
        }),
    )
    .await?;
    let body = html! {
        (notice("Added: the entry shows in the list once the suppression projection has applied the event (a moment)."))
        dl.fields { dt { "Event" } dd { (out.id.to_string()) } dt { "Position" } dd { (out.position) } }
        p { a href=(HERE) { "Back to the list" } }
    };
    Ok(page(&s, HERE, "Suppression added", &body))
}

/// `POST /console/suppressions/remove`: confirm, then append `unsuppressed`.
pub async fn remove(State(state): State<AppState>, posted: Posted<ChangeForm>) -> PageResult {
    let s = posted.session;
    let f = posted.form;
    let auth = auth::<scope::Ingest>(&state, &s)?;
    if f.confirm.as_deref() != Some("yes") {
        return Ok(confirm_page(
            &s,
            "/console/suppressions/remove",
            "Remove this entry? The address may be mailed again in this scope.",
            &f,
        ));
    }
    let ApiJson(out) = suppressions::remove(
        st(&state),
        auth,
        ApiJson(RemoveSuppression {
            address: Personal::new(f.address.trim().to_owned()),
            scope: f.scope,
            reason: f.reason,
            id: None,
        }),
    )
    .await?;
    let body = html! {
        (notice("Removed: the list shows it once the suppression projection has applied the event (a moment)."))
        dl.fields { dt { "Event" } dd { (out.id.to_string()) } dt { "Position" } dd { (out.position) } }
        p { a href=(HERE) { "Back to the list" } }
    };
    Ok(page(&s, HERE, "Suppression removed", &body))
}
