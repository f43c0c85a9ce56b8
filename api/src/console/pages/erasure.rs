//! Erasure: the request form (address and request id, after a
//! confirmation), its receipt, and the erasure register; and the audit's
//! access records and signed checkpoints. Runs the handlers of `POST` and
//! `GET /v1/erasures`, `GET /v1/audit/access` and `GET
//! /v1/audit/checkpoints`.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::response::Response;
use mailledger_access::Scope;
use mailledger_core::crypto::Personal;
use maud::{Markup, html};
use serde::Deserialize;
use serde_json::Value;

use crate::auth::scope;
use crate::console::csrf::Posted;
use crate::console::layout::{csrf_input, notice, page, query, time, value};
use crate::console::session::Session;
use crate::console::{PageResult, bad_input};
use crate::json::ApiJson;
use crate::routes::audit::{self, AccessQuery, CheckpointsQuery};
use crate::routes::erasure::{self, ErasureRequest, Receipt, RegisterQuery};
use crate::state::AppState;

use super::{auth, st};

const HERE: &str = "/console/erasure";

/// A page cursor.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cursor {
    cursor: Option<String>,
}

fn receipt_fields(r: &Receipt) -> Markup {
    html! {
        dl.fields #receipt {
            dt { "Request id" } dd { (r.request_id) }
            dt { "Contact (pseudonym)" } dd { code { (r.contact) } }
            dt { "Erased at" } dd { (time(&r.erased_at)) }
            dt { "Position" } dd { (r.position) }
            dt { "Events made unreadable" } dd { (r.events_unreadable) }
            dt { "Key found" } dd { (if r.key_found { "yes" } else { "no: the ledger held no data of this address" }) }
        }
    }
}

/// The form of an erasure request.
fn request_form(s: &Session) -> Markup {
    html! {
        section {
            h2 { "Erase a contact" }
            p { "Destroys the contact's key: every personal field of its events reads as erased from then on. Suppressions stay." }
            form.filters method="post" action=(HERE) {
                (csrf_input(s))
                label { "Address" input type="email" name="address" required autocomplete="off" size="36"; }
                label { "Request id (your reference)" input name="request_id" required size="24" pattern="[^@]+"; }
                button.danger type="submit" { "Erase…" }
            }
        }
    }
}

/// The form (scope erase) and the register (erase or audit), with `top`
/// above them.
async fn render(
    state: &AppState,
    s: &Session,
    cursor: Option<String>,
    top: Option<Markup>,
) -> PageResult {
    let auth = auth::<scope::EraseOrAudit>(state, s)?;
    let ApiJson(reg) = erasure::register(
        st(state),
        auth,
        Ok(Query(RegisterQuery {
            cursor: cursor.clone(),
            limit: None,
        })),
    )
    .await?;
    let body = html! {
        @if let Some(t) = top { (t) }
        @if s.has(Scope::Erase) { (request_form(s)) }
        h2 { "Erasure register" }
        @if reg.items.is_empty() { p { "No erasures yet." } } @else {
            div.scroll { table #register {
                thead { tr { th scope="col" { "Request id" } th scope="col" { "Contact (pseudonym)" } th scope="col" { "Erased at" } th.num { "Position" } th.num { "Events unreadable" } th { "Key found" } } }
                tbody { @for r in &reg.items { tr {
                    td { (r.request_id) } td { code { (r.contact) } } td { (time(&r.erased_at)) }
                    td.num { (r.position) } td.num { (r.events_unreadable) } td { (if r.key_found { "yes" } else { "no" }) }
                } } }
            } }
        }
        div.pager {
            @if cursor.is_some() { a href=(HERE) { "First page" } }
            @if let Some(n) = &reg.next { a rel="next" href=(format!("{HERE}{}", query(&[("cursor", Some(n))]))) { "Next page" } }
        }
    };
    Ok(page(s, HERE, "Erasure", &body))
}

/// `GET /console/erasure`.
pub async fn show(
    State(state): State<AppState>,
    s: Session,
    q: Result<Query<Cursor>, QueryRejection>,
) -> PageResult {
    let Query(c) = q.map_err(|_| bad_input("a parameter of the page is not one it knows"))?;
    render(&state, &s, c.cursor.filter(|c| !c.is_empty()), None).await
}

/// An erasure request.
#[derive(Debug, Deserialize)]
pub struct EraseForm {
    address: String,
    request_id: String,
    confirm: Option<String>,
}

fn confirm(s: &Session, f: &EraseForm) -> Response {
    let body = html! {
        p.problem { "Erase this contact? This cannot be undone: the contact's key is destroyed." }
        form method="post" action=(HERE) {
            (csrf_input(s))
            input type="hidden" name="address" value=(f.address);
            input type="hidden" name="request_id" value=(f.request_id);
            input type="hidden" name="confirm" value="yes";
            dl.fields { dt { "Address" } dd { (f.address) } dt { "Request id" } dd { (f.request_id) } }
            p { button.danger type="submit" { "Erase" } " " a href=(HERE) { "Cancel" } }
        }
    };
    crate::console::layout::page(s, HERE, "Confirm the erasure", &body)
}

/// `POST /console/erasure`: confirm, then erase; the receipt above the
/// register.
pub async fn erase(State(state): State<AppState>, posted: Posted<EraseForm>) -> PageResult {
    let s = posted.session;
    let f = posted.form;
    let auth = auth::<scope::Erase>(&state, &s)?;
    if f.confirm.as_deref() != Some("yes") {
        return Ok(confirm(&s, &f));
    }
    let ApiJson(receipt) = erasure::erase(
        st(&state),
        auth,
        ApiJson(ErasureRequest {
            address: Personal::new(f.address.trim().to_owned()),
            request_id: Some(f.request_id.trim().to_owned()),
        }),
    )
    .await?;
    let top = html! {
        (notice("Erased. The receipt:"))
        (receipt_fields(&receipt))
    };
    render(&state, &s, None, Some(top)).await
}

/// Filters of the access records.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessFilter {
    contact: Option<String>,
    key_id: Option<String>,
    cursor: Option<String>,
}

/// `GET /console/audit/access`: who read personal data.
pub async fn access(
    State(state): State<AppState>,
    s: Session,
    q: Result<Query<AccessFilter>, QueryRejection>,
) -> PageResult {
    let Query(f) = q.map_err(|_| bad_input("a parameter of the page is not one it knows"))?;
    let nz = |v: Option<String>| v.filter(|v| !v.is_empty());
    let (contact, key_id, cursor) = (nz(f.contact), nz(f.key_id), nz(f.cursor));
    let auth = auth::<scope::Audit>(&state, &s)?;
    let ApiJson(p) = audit::access(
        st(&state),
        auth,
        Ok(Query(AccessQuery {
            contact: contact.clone(),
            key_id: key_id.clone(),
            from: None,
            to: None,
            cursor: cursor.clone(),
            limit: None,
        })),
    )
    .await?;
    let items: Vec<Value> = p
        .items
        .iter()
        .filter_map(|r| serde_json::to_value(r).ok())
        .collect();
    let body = html! {
        form.filters method="get" action="/console/audit/access" {
            label { "Contact (pseudonym)" input name="contact" value=[contact.as_deref()] size="34" pattern="[0-9a-fA-F]{32}"; }
            label { "Key id" input name="key_id" value=[key_id.as_deref()] size="18"; }
            button type="submit" { "Filter" }
        }
        (json_table(&items))
        div.pager { @if let Some(n) = &p.next {
            a rel="next" href=(format!("/console/audit/access{}", query(&[("contact", contact.as_deref()), ("key_id", key_id.as_deref()), ("cursor", Some(n))]))) { "Next page" }
        } }
    };
    Ok(page(&s, "/console/audit/access", "Access records", &body))
}

/// `GET /console/audit/checkpoints`: the tenant's signed checkpoints.
pub async fn checkpoints(
    State(state): State<AppState>,
    s: Session,
    q: Result<Query<Cursor>, QueryRejection>,
) -> PageResult {
    let Query(c) = q.map_err(|_| bad_input("a parameter of the page is not one it knows"))?;
    let auth = auth::<scope::Audit>(&state, &s)?;
    let ApiJson(p) = audit::checkpoints(
        st(&state),
        auth,
        Ok(Query(CheckpointsQuery {
            cursor: c.cursor.filter(|c| !c.is_empty()),
            limit: None,
        })),
    )
    .await?;
    let items: Vec<Value> = p
        .items
        .iter()
        .filter_map(|r| serde_json::to_value(r).ok())
        .collect();
    let body = html! {
        p { "Each signs where the tenant's hash chain stood; check the log against them with " code { "mailledger verify --against FILE --public-key KEY" } "." }
        (json_table(&items))
        div.pager { @if let Some(n) = &p.next {
            a rel="next" href=(format!("/console/audit/checkpoints{}", query(&[("cursor", Some(n))]))) { "Next page" }
        } }
    };
    Ok(page(&s, "/console/audit/checkpoints", "Checkpoints", &body))
}

/// Objects as a table, one column per key of the first.
pub(crate) fn json_table(items: &[Value]) -> Markup {
    let keys: Vec<String> = items
        .first()
        .and_then(Value::as_object)
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_default();
    html! {
        @if items.is_empty() { p { "None yet." } } @else {
            div.scroll { table {
                thead { tr { @for k in &keys { th scope="col" { (k.replace('_', " ")) } } } }
                tbody { @for i in items { tr { @for k in &keys { td { (value(k, &i[k.as_str()])) } } } } }
            } }
        }
    }
}
