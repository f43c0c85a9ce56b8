//! Operator page: API keys, of every tenant (scope admin). Create (the key
//! shown once), list, and revoke after a confirmation. Runs the handlers
//! of `GET` and `POST /v1/admin/keys` and `POST
//! /v1/admin/keys/{id}/revoke`.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use maud::{Markup, html};
use serde::Deserialize;

use crate::auth::scope;
use crate::console::csrf::Posted;
use crate::console::layout::{csrf_input, enc, notice, opt_time, page, time};
use crate::console::session::Session;
use crate::console::{PageResult, bad_input};
use crate::json::ApiJson;
use crate::routes::access_bodies::Scope;
use crate::routes::admin::{self, CreateKey, KeysQuery};
use crate::state::AppState;

use super::{auth, st};

const HERE: &str = "/console/admin/keys";

/// The scopes a new key may be given in the form.
const SCOPES: [&str; 6] = ["ingest", "read", "erase", "audit", "admin", "webhook"];

/// The list of keys, with `top` above it.
async fn render(
    state: &AppState,
    s: &Session,
    tenant: Option<String>,
    top: Option<Markup>,
) -> PageResult {
    let ApiJson(keys) = admin::list_keys(
        st(state),
        auth::<scope::Admin>(state, s)?,
        Ok(Query(KeysQuery {
            tenant: tenant.clone(),
        })),
    )
    .await?;
    let ApiJson(tenants) = admin::list_tenants(st(state), auth::<scope::Admin>(state, s)?).await?;
    let body = html! {
        @if let Some(t) = top { (t) }
        section {
            h2 { "Create a key" }
            form method="post" action=(HERE) {
                (csrf_input(s))
                div.filters {
                    label { "Tenant" select name="tenant" required {
                        @for t in &tenants.tenants { option value=(t.name) selected[tenant.as_deref() == Some(t.name.as_str())] { (t.name) } }
                    } }
                    label { "Name (optional, no @)" input name="name" size="24"; }
                }
                fieldset {
                    legend { "Scopes" }
                    @for sc in SCOPES {
                        label.check { input type="checkbox" name="scopes" value=(sc); (sc) }
                    }
                }
                button type="submit" { "Create key" }
            }
        }
        h2 { "Keys" }
        form.filters method="get" action=(HERE) {
            label { "Tenant" select name="tenant" {
                option value="" { "every tenant" }
                @for t in &tenants.tenants { option value=(t.name) selected[tenant.as_deref() == Some(t.name.as_str())] { (t.name) } }
            } }
            button.secondary type="submit" { "Show" }
        }
        div.scroll { table #keys {
            thead { tr { th scope="col" { "Id" } th { "Tenant" } th { "Name" } th { "Scopes" } th { "Created" } th { "Revoked" } th { span.visually-hidden { "Action" } } } }
            tbody { @for k in &keys.keys { tr data-key=(k.id) {
                td { code { (k.id) } } td { (k.tenant) } td { (k.name.as_deref().unwrap_or("—")) }
                td { (k.scopes.iter().map(|s| s.name()).collect::<Vec<_>>().join(", ")) }
                td { (time(&k.created_at)) } td { (opt_time(k.revoked_at.as_deref())) }
                td { @if k.revoked_at.is_none() {
                    form.inline method="post" action=(format!("{HERE}/{}/revoke", enc(&k.id))) {
                        (csrf_input(s))
                        button.danger type="submit" { "Revoke…" }
                    }
                } }
            } } }
        } }
    };
    Ok(page(s, HERE, "API keys", &body))
}

/// Which tenant's keys.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantFilter {
    tenant: Option<String>,
}

/// `GET /console/admin/keys`.
pub async fn list(
    State(state): State<AppState>,
    s: Session,
    q: Result<Query<TenantFilter>, QueryRejection>,
) -> PageResult {
    let Query(q) = q.map_err(|_| bad_input("a parameter of the page is not one it knows"))?;
    render(&state, &s, q.tenant.filter(|t| !t.is_empty()), None).await
}

/// A new key's tenant and name (its scopes are read from every checked box).
#[derive(Debug, Deserialize)]
pub struct NewKey {
    tenant: String,
    name: Option<String>,
}

/// `POST /console/admin/keys`: creates a key and shows it this once.
pub async fn create(State(state): State<AppState>, posted: Posted<NewKey>) -> PageResult {
    let s = posted.session;
    let scopes = posted
        .fields
        .values("scopes")
        .iter()
        .map(|v| v.parse::<mailledger_access::Scope>().map(Scope::from))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| bad_input("a scope of the form is not one the API knows"))?;
    let auth = auth::<scope::Admin>(&state, &s)?;
    let (_, ApiJson(created)) = admin::create_key(
        st(&state),
        auth,
        ApiJson(CreateKey {
            tenant: posted.form.tenant.clone(),
            scopes,
            name: posted.form.name,
        }),
    )
    .await?;
    let top = html! {
        (notice("Key created. Copy it now: it is shown this once and never again."))
        p.secret #new-key { (created.key) }
        dl.fields { dt { "Id" } dd { code #new-key-id { (created.info.id) } } dt { "Tenant" } dd { (created.info.tenant) } }
    };
    render(&state, &s, Some(posted.form.tenant), Some(top)).await
}

/// A revocation, confirmed or not yet.
#[derive(Debug, Deserialize)]
pub struct Revoke {
    confirm: Option<String>,
}

/// `POST /console/admin/keys/{id}/revoke`: confirm, then revoke.
pub async fn revoke(
    State(state): State<AppState>,
    Path(id): Path<String>,
    posted: Posted<Revoke>,
) -> PageResult {
    let s = posted.session;
    let auth = auth::<scope::Admin>(&state, &s)?;
    if posted.form.confirm.as_deref() != Some("yes") {
        let body = html! {
            p.problem { "Revoke key " code { (id) } "? Every request with it fails from then on." }
            form method="post" action=(format!("{HERE}/{}/revoke", enc(&id))) {
                (csrf_input(&s))
                input type="hidden" name="confirm" value="yes";
                button.danger type="submit" { "Revoke" } " " a href=(HERE) { "Cancel" }
            }
        };
        return Ok(page(&s, HERE, "Confirm the revocation", &body));
    }
    let ApiJson(info) = admin::revoke_key(st(&state), auth, Path(id)).await?;
    let top = notice(&format!("Key {} revoked.", info.id));
    render(&state, &s, None, Some(top)).await
}
