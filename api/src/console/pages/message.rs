//! A message: its summary and timeline, each event's fields, erased fields
//! marked, raw payloads folded away. Runs the handler of
//! `GET /v1/messages/{id}`.

use axum::extract::{Path, State};
use maud::html;
use serde_json::Value;

use crate::auth::scope;
use crate::console::PageResult;
use crate::console::layout::{erased, fields, is_erased, page, time, value};
use crate::console::session::Session;
use crate::json::ApiJson;
use crate::routes::messages;
use crate::state::AppState;

use super::{auth, st};

/// The summary fields shown above the timeline, in order.
const SUMMARY: [&str; 11] = [
    "recipient",
    "subject",
    "status",
    "contact",
    "sending_domain",
    "recipient_domain",
    "tags",
    "campaign",
    "first_event_at",
    "last_event_at",
    "events",
];

/// An event's fields that its heading shows already, or that are folded.
const SHOWN: [&str; 3] = ["type", "occurred_at", "raw"];

/// An event's fields but those its heading shows or that are folded.
fn rest_of(e: &Value) -> Value {
    let rest: serde_json::Map<String, Value> = e
        .as_object()
        .map(|o| {
            o.iter()
                .filter(|(k, _)| !SHOWN.contains(&k.as_str()))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        })
        .unwrap_or_default();
    Value::Object(rest)
}

/// `GET /console/messages/{id}`.
pub async fn message(
    State(state): State<AppState>,
    s: Session,
    Path(id): Path<String>,
) -> PageResult {
    let auth = auth::<scope::Read>(&state, &s)?;
    let ApiJson(m) = messages::message(st(&state), auth, Path(id.clone())).await?;
    let timeline = m["timeline"].as_array().cloned().unwrap_or_default();
    let body = html! {
        dl.fields {
            @for k in SUMMARY {
                dt { (k.replace('_', " ")) }
                dd { (value(k, &m[k])) }
            }
        }
        h2 { "Timeline" }
        ol.timeline {
            @for e in &timeline {
                li {
                    h3 {
                        (e["type"].as_str().unwrap_or("event")) " · "
                        @if let Some(t) = e["occurred_at"].as_str() { (time(t)) }
                    }
                    (fields(&rest_of(e)))
                    @match e.get("raw") {
                        None | Some(Value::Null) => {}
                        Some(r) if is_erased(r) => { p { "Raw payload: " (erased()) } }
                        Some(r) => {
                            details {
                                summary { "Raw payload" }
                                pre { (r.as_str().map_or_else(|| r.to_string(), str::to_owned)) }
                            }
                        }
                    }
                }
            }
        }
        p { a href="/console/activity" { "Back to activity" } }
    };
    Ok(page(
        &s,
        "/console/activity",
        &format!("Message {id}"),
        &body,
    ))
}
