//! Operator pages (scope admin): tenants, webhook secrets, the residency
//! report, and projection status with rebuild progress. Runs the handlers
//! of `/v1/admin/...`. (API keys have a page of their own: [`super::keys`].)

use axum::extract::{Path, State};
use maud::{Markup, html};
use serde::Deserialize;
use serde_json::Value;
use zeroize::Zeroizing;

use crate::auth::scope;
use crate::console::csrf::Posted;
use crate::console::layout::{csrf_input, fields, notice, page, time, value};
use crate::console::session::Session;
use crate::console::{PageResult, bad_input};
use crate::json::ApiJson;
use crate::routes::admin::{self, CreateTenant, RebuildRequest};
use crate::state::AppState;

use super::erasure::json_table;
use super::{auth, st};

/// The tenants, with `top` above them.
async fn tenants_page(state: &AppState, s: &Session, top: Option<Markup>) -> PageResult {
    let ApiJson(list) = admin::list_tenants(st(state), auth::<scope::Admin>(state, s)?).await?;
    let body = html! {
        @if let Some(t) = top { (t) }
        div.scroll { table #tenants {
            thead { tr { th scope="col" { "Name" } th { "Created" } th { "Jurisdictions" } th { "Webhook providers" } th { "Signatures required" } } }
            tbody { @for t in &list.tenants { tr {
                td { (t.name) } td { (time(&t.created_at)) }
                td { (t.jurisdictions.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")) }
                td { (if t.webhook_providers.is_empty() { "—".to_owned() } else { t.webhook_providers.join(", ") }) }
                td { (if t.require_signatures { "yes" } else { "no" }) }
            } } }
        } }
        h2 { "Create a tenant" }
        form.filters method="post" action="/console/admin/tenants" {
            (csrf_input(s))
            label { "Name (a-z 0-9 _ -)" input name="name" required pattern="[a-z0-9_-]{1,64}" size="20"; }
            label { "Jurisdictions (comma-separated; default: this node's)" input name="jurisdictions" size="12"; }
            button type="submit" { "Create" }
        }
    };
    Ok(page(s, "/console/admin/tenants", "Tenants", &body))
}

/// `GET /console/admin/tenants`.
pub async fn tenants(State(state): State<AppState>, s: Session) -> PageResult {
    tenants_page(&state, &s, None).await
}

/// A new tenant.
#[derive(Debug, Deserialize)]
pub struct NewTenant {
    name: String,
    jurisdictions: Option<String>,
}

/// `POST /console/admin/tenants`.
pub async fn create_tenant(State(state): State<AppState>, posted: Posted<NewTenant>) -> PageResult {
    let s = posted.session;
    let f = posted.form;
    let jurisdictions = f.jurisdictions.map(|j| {
        j.split(',')
            .map(|c| c.trim().to_owned())
            .filter(|c| !c.is_empty())
            .collect()
    });
    admin::create_tenant(
        st(&state),
        auth::<scope::Admin>(&state, &s)?,
        ApiJson(CreateTenant {
            name: f.name,
            jurisdictions,
        }),
    )
    .await?;
    tenants_page(&state, &s, Some(notice("Tenant created."))).await
}

/// The webhook secrets form.
fn webhook_page(s: &Session, top: Option<Markup>) -> axum::response::Response {
    let body = html! {
        @if let Some(t) = top { (t) }
        p { "Secrets are checked, sealed, and never shown again; the tenants page shows which providers are set." }
        form method="post" action="/console/admin/webhook-secrets" {
            (csrf_input(s))
            div.filters {
                label { "Tenant" input name="tenant" required pattern="[a-z0-9_-]{1,64}" size="20"; }
                label { "Action" select name="action" {
                    option value="set" { "set (replacing any set before)" }
                    option value="remove" { "remove every secret" }
                } }
            }
            label { "Secrets document (JSON; see the README's provider setup)"
                textarea name="document" spellcheck="false" autocomplete="off" {}
            }
            p { button type="submit" { "Save" } }
        }
    };
    page(
        s,
        "/console/admin/webhook-secrets",
        "Webhook secrets",
        &body,
    )
}

/// `GET /console/admin/webhook-secrets`.
pub async fn webhook_form(State(state): State<AppState>, s: Session) -> PageResult {
    auth::<scope::Admin>(&state, &s)?;
    Ok(webhook_page(&s, None))
}

/// A webhook secrets change.
#[derive(Debug, Deserialize)]
pub struct SecretsForm {
    tenant: String,
    action: String,
    document: Option<String>,
}

/// `POST /console/admin/webhook-secrets`: sets or removes a tenant's.
pub async fn set_webhook_secrets(
    State(state): State<AppState>,
    posted: Posted<SecretsForm>,
) -> PageResult {
    let s = posted.session;
    let f = posted.form;
    let auth = auth::<scope::Admin>(&state, &s)?;
    let done = if f.action == "remove" {
        admin::remove_webhook_secrets(st(&state), auth, Path(f.tenant)).await?;
        "Webhook secrets removed."
    } else {
        let text = f
            .document
            .map(Zeroizing::new)
            .ok_or_else(|| bad_input("the secrets document is empty"))?;
        let doc: Value = serde_json::from_str(text.as_str())
            .map_err(|_| bad_input("the secrets document is not a JSON object"))?;
        admin::set_webhook_secrets(st(&state), auth, Path(f.tenant), ApiJson(doc)).await?;
        "Webhook secrets set."
    };
    Ok(webhook_page(&s, Some(notice(done))))
}

/// `GET /console/admin/residency`: the report from the running
/// configuration.
pub async fn residency(State(state): State<AppState>, s: Session) -> PageResult {
    let ApiJson(report) = admin::residency(st(&state), auth::<scope::Admin>(&state, &s)?).await?;
    let v = serde_json::to_value(&report).unwrap_or(Value::Null);
    let list = |k: &str| v[k].as_array().cloned().unwrap_or_default();
    let scalars: serde_json::Map<String, Value> = v
        .as_object()
        .map(|o| {
            o.iter()
                .filter(|(_, x)| !x.is_array())
                .map(|(k, x)| (k.clone(), x.clone()))
                .collect()
        })
        .unwrap_or_default();
    let body = html! {
        (fields(&Value::Object(scalars)))
        @for k in ["stores", "tenants", "violations"] {
            h2 { (k) }
            (json_table(&list(k)))
        }
    };
    Ok(page(
        &s,
        "/console/admin/residency",
        "Residency report",
        &body,
    ))
}

/// `GET /console/admin/projections`: checkpoints, lag, rebuild progress.
pub async fn projections(State(state): State<AppState>, s: Session) -> PageResult {
    projections_page(&state, &s, None).await
}

/// A rebuild's progress.
fn rebuild_state(r: &admin::RebuildState) -> Markup {
    html! {
        p { (if r.running { "Running: " } else { "Last rebuild: " }) (r.projections.join(", ")) }
        progress.progress max=(r.total.max(1)) value=(r.done) { (r.done) " of " (r.total) }
        p { (r.done) " of " (r.total) " events" }
        @if let Some(e) = &r.error { p.problem { (value("error", &Value::String(e.clone()))) } }
    }
}

async fn projections_page(state: &AppState, s: &Session, top: Option<Markup>) -> PageResult {
    let ApiJson(p) = admin::projections(st(state), auth::<scope::Admin>(state, s)?).await?;
    let body = html! {
        @if let Some(t) = top { (t) }
        p { "The log's head: " (p.head) }
        table { thead { tr { th scope="col" { "Projection" } th.num { "Checkpoint" } th.num { "Lag" } } }
            tbody { @for x in &p.projections { tr { td { (x.name) } td.num { (x.checkpoint) } td.num { (x.lag) } } } } }
        h2 { "Rebuild" }
        @if let Some(r) = &p.rebuild {
            // While it runs, htmx refreshes this part every 2 seconds.
            @if r.running {
                section #rebuild hx-get="/console/admin/projections" hx-trigger="every 2s"
                    hx-select="#rebuild" hx-target="#rebuild" hx-swap="outerHTML" {
                    (rebuild_state(r))
                }
            } @else {
                section #rebuild { (rebuild_state(r)) }
            }
        } @else { p { "No rebuild since the server started." } }
        form.filters method="post" action="/console/admin/projections" {
            (csrf_input(s))
            label { "Projection" select name="projection" {
                @for n in ["all", "delivery-log", "suppressions", "analytics"] { option value=(n) { (n) } }
            } }
            button.danger type="submit" { "Rebuild" }
        }
        p { "Queries go on reading the old stores until each rebuilt one is swapped in. While one runs, its progress refreshes by itself (or reload the page)." }
    };
    Ok(page(s, "/console/admin/projections", "Projections", &body))
}

/// Which projection to rebuild.
#[derive(Debug, Deserialize)]
pub struct RebuildForm {
    projection: Option<String>,
}

/// `POST /console/admin/projections`: starts a rebuild.
pub async fn rebuild(State(state): State<AppState>, posted: Posted<RebuildForm>) -> PageResult {
    let s = posted.session;
    admin::rebuild_projections(
        st(&state),
        auth::<scope::Admin>(&state, &s)?,
        ApiJson(RebuildRequest {
            projection: posted.form.projection,
        }),
    )
    .await?;
    projections_page(&state, &s, Some(notice("Rebuild started."))).await
}
