//! Activity (messages newest first, filtered, a page at a time) and search
//! by recipient (the address in a POST body only). Both run the handlers
//! of `GET /v1/messages` and `POST /v1/messages/search`.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::response::Response;
use mailledger_core::crypto::Personal;
use maud::{Markup, html};
use serde::Deserialize;
use serde_json::Value;

use crate::auth::scope;
use crate::console::csrf::Posted;
use crate::console::layout::{self, csrf_input, enc, erased, is_erased, page, query, time};
use crate::console::session::Session;
use crate::console::{PageResult, bad_input};
use crate::json::ApiJson;
use crate::routes::messages::{self, MessagesQuery, SearchRequest};
use crate::state::AppState;

use super::{auth, given, rfc3339, st};

/// The filters of the activity page (and of a search).
#[derive(Debug, Default, Deserialize)]
pub struct Filters {
    status: Option<String>,
    tag: Option<String>,
    campaign: Option<String>,
    sending_domain: Option<String>,
    recipient_domain: Option<String>,
    /// From, a `datetime-local` value (UTC) or RFC 3339.
    from: Option<String>,
    /// To, likewise.
    to: Option<String>,
    cursor: Option<String>,
}

impl Filters {
    fn cleaned(self) -> Self {
        Self {
            status: given(self.status),
            tag: given(self.tag),
            campaign: given(self.campaign),
            sending_domain: given(self.sending_domain),
            recipient_domain: given(self.recipient_domain),
            from: given(self.from),
            to: given(self.to),
            cursor: given(self.cursor),
        }
    }

    fn any(&self) -> bool {
        self.status.is_some()
            || self.tag.is_some()
            || self.campaign.is_some()
            || self.sending_domain.is_some()
            || self.recipient_domain.is_some()
            || self.from.is_some()
            || self.to.is_some()
    }

    /// The query string of these filters with `cursor`.
    fn link(&self, cursor: &str) -> String {
        query(&[
            ("status", self.status.as_deref()),
            ("tag", self.tag.as_deref()),
            ("campaign", self.campaign.as_deref()),
            ("sending_domain", self.sending_domain.as_deref()),
            ("recipient_domain", self.recipient_domain.as_deref()),
            ("from", self.from.as_deref()),
            ("to", self.to.as_deref()),
            ("cursor", Some(cursor)),
        ])
    }
}

/// The filter inputs, filled with `f`.
fn filter_inputs(f: &Filters) -> Markup {
    let statuses = [
        "sent",
        "deferred",
        "delivered",
        "bounced",
        "rejected",
        "complained",
    ];
    html! {
        label { "Status"
            select name="status" {
                option value="" { "any" }
                @for s in statuses {
                    option value=(s) selected[f.status.as_deref() == Some(s)] { (s) }
                }
            }
        }
        label { "Tag" input name="tag" value=[f.tag.as_deref()] size="12"; }
        label { "Campaign" input name="campaign" value=[f.campaign.as_deref()] size="12"; }
        label { "Sending domain" input name="sending_domain" value=[f.sending_domain.as_deref()] size="16"; }
        label { "Recipient domain" input name="recipient_domain" value=[f.recipient_domain.as_deref()] size="16"; }
        label { "From (UTC)" input type="datetime-local" name="from" value=[f.from.as_deref().map(|t| t.trim_end_matches('Z').get(..16).unwrap_or(t))]; }
        label { "To (UTC)" input type="datetime-local" name="to" value=[f.to.as_deref().map(|t| t.trim_end_matches('Z').get(..16).unwrap_or(t))]; }
    }
}

/// A page of messages as a table.
pub(crate) fn messages_table(items: &[Value]) -> Markup {
    html! {
        div.scroll {
            table {
                caption.visually-hidden { "Messages, newest first" }
                thead { tr {
                    th scope="col" { "First event" } th scope="col" { "Status" }
                    th scope="col" { "Recipient" } th scope="col" { "Message" }
                    th scope="col" { "Sending domain" } th scope="col" { "Recipient domain" }
                    th scope="col" { "Tags" } th scope="col" { "Campaign" } th.num scope="col" { "Events" }
                } }
                tbody {
                    @for m in items {
                        @let id = m["message_id"].as_str().unwrap_or_default();
                        @let status = m["status"].as_str().unwrap_or("—");
                        tr {
                            td { @if let Some(t) = m["first_event_at"].as_str() { (time(t)) } }
                            td class=(format!("status-{status}")) { (status) }
                            td { @if is_erased(&m["recipient"]) { (erased()) } @else { (layout::value("recipient", &m["recipient"])) } }
                            td { a href=(format!("/console/messages/{}", enc(id))) { (id) } }
                            td { (layout::value("sending_domain", &m["sending_domain"])) }
                            td { (layout::value("recipient_domain", &m["recipient_domain"])) }
                            td { (layout::value("tags", &m["tags"])) }
                            td { (layout::value("campaign", &m["campaign"])) }
                            td.num { (layout::value("events", &m["events"])) }
                        }
                    }
                }
            }
        }
    }
}

/// How to send the first event, for an empty ledger.
pub(crate) fn first_event_help() -> Markup {
    html! {
        section.notice {
            h2 { "No messages yet" }
            p { "Send the first event with an API key of the " code { "ingest" } " scope:" }
            code.block { r#"curl -X POST http://127.0.0.1:8080/v1/events \
    -H "Authorization: Bearer $MAILLEDGER_KEY" \
    -H "Content-Type: application/json" \
  -d '{"id": "0193a0c4-7b1e-7d2a-9c3f-2f6a1c9e0b11", "type": "sent",
       "message_id": "m-1", "recipient": "ann@example.org",
       "occurred_at": "2026-11-22T10:00:00Z",
       "sending_domain": "mail.example.com", "tags": ["welcome"]}'"# }
            p { "It shows here once the projections have applied it (a moment later)." }
        }
    }
}

/// `GET /console/activity`: messages newest first, filtered.
pub async fn activity(
    State(state): State<AppState>,
    s: Session,
    q: Result<Query<Filters>, QueryRejection>,
) -> PageResult {
    let Query(f) = q.map_err(|_| bad_input("a filter of the page is not one it knows"))?;
    let f = f.cleaned();
    let auth = auth::<scope::Read>(&state, &s)?;
    let ApiJson(body) = messages::list(
        st(&state),
        auth,
        Ok(Query(MessagesQuery {
            status: f.status.clone(),
            tag: f.tag.clone(),
            campaign: f.campaign.clone(),
            sending_domain: f.sending_domain.clone(),
            recipient_domain: f.recipient_domain.clone(),
            from: rfc3339(f.from.clone()),
            to: rfc3339(f.to.clone()),
            cursor: f.cursor.clone(),
            limit: None,
        })),
    )
    .await?;
    let items = body["items"].as_array().cloned().unwrap_or_default();
    let next = body["next"].as_str();
    let body = html! {
        form.filters method="get" action="/console/activity" {
            (filter_inputs(&f))
            button type="submit" { "Filter" }
            a href="/console/activity" { "Clear" }
        }
        @if items.is_empty() && !f.any() && f.cursor.is_none() {
            (first_event_help())
        } @else if items.is_empty() {
            p { "No message matches these filters." }
        } @else {
            (messages_table(&items))
        }
        div.pager {
            @if f.cursor.is_some() { a href="/console/activity" { "Newest" } }
            @if let Some(n) = next { a href=(format!("/console/activity{}", f.link(n))) rel="next" { "Older messages" } }
        }
    };
    Ok(page(&s, "/console/activity", "Activity", &body))
}

/// The search form, with `f` and (when searched) its results.
fn search_page(
    s: &Session,
    f: &Filters,
    results: Option<(&[Value], Option<&str>)>,
    address: Option<&str>,
) -> Response {
    let body = html! {
        form method="post" action="/console/search" {
            (csrf_input(s))
            p {
                label { "Recipient address"
                    input type="email" name="recipient" autocomplete="off" required value=[address] size="40";
                }
            }
            details { summary { "More filters" } div.filters { (filter_inputs(f)) } }
            p { button type="submit" { "Search" } }
        }
        @if let Some((items, next)) = results {
            h2 { "Messages to this address" }
            @if items.is_empty() { p { "No message to this address." } }
            @else { (messages_table(items)) }
            @if let Some(n) = next {
                form method="post" action="/console/search" {
                    (csrf_input(s))
                    input type="hidden" name="recipient" value=[address];
                    input type="hidden" name="cursor" value=(n);
                    button.secondary type="submit" { "Older messages" }
                }
            }
        }
    };
    page(s, "/console/search", "Search by recipient", &body)
}

/// `GET /console/search`: the form.
pub async fn search_form(s: Session) -> Response {
    search_page(&s, &Filters::default(), None, None)
}

/// A search: the recipient and the filters.
#[derive(Debug, Deserialize)]
pub struct SearchForm {
    recipient: String,
    #[serde(flatten)]
    filters: Filters,
}

/// `POST /console/search`: messages to an address.
pub async fn search(State(state): State<AppState>, posted: Posted<SearchForm>) -> PageResult {
    let s = posted.session;
    let f = posted.form.filters.cleaned();
    let address = posted.form.recipient.trim().to_owned();
    let auth = auth::<scope::Read>(&state, &s)?;
    let ApiJson(body) = messages::search(
        st(&state),
        auth,
        ApiJson(SearchRequest {
            recipient: Some(Personal::new(address.clone())),
            status: f.status.clone(),
            tag: f.tag.clone(),
            campaign: f.campaign.clone(),
            sending_domain: f.sending_domain.clone(),
            recipient_domain: f.recipient_domain.clone(),
            from: rfc3339(f.from.clone()),
            to: rfc3339(f.to.clone()),
            cursor: f.cursor.clone(),
            limit: None,
        }),
    )
    .await?;
    let items = body["items"].as_array().cloned().unwrap_or_default();
    Ok(search_page(
        &s,
        &f,
        Some((&items, body["next"].as_str())),
        Some(&address),
    ))
}
