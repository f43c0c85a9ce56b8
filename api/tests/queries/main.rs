//! The projection-backed routes: messages, suppressions, sends/check,
//! analytics; readiness and metrics of the projections; tenant isolation.

#![allow(clippy::unwrap_used)]

mod analytics;
#[path = "../common/mod.rs"]
mod common;
mod isolation;
mod messages;
mod readiness;
mod suppressions;

use std::time::Duration;

use axum::http::{Method, StatusCode};
use common::{Env, env, env_without_projections, event, uuid};
use mailledger_api::Scope;
use serde_json::{Value, json};

const PROBLEM: &str = "application/problem+json";

/// An event at a given time, with tags and a campaign.
fn at(id: &str, t: &str, address: &str, message: &str, time: &str) -> Value {
    let mut e = event(id, t, address, message);
    e["occurred_at"] = time.into();
    e
}

async fn ingest(e: &Env, key: &str, events: Vec<Value>) -> Value {
    e.ok(
        Method::POST,
        "/v1/events",
        key,
        Some(&json!({ "events": events })),
    )
    .await
}

fn ids(page: &Value) -> Vec<String> {
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["message_id"].as_str().unwrap().to_owned())
        .collect()
}
