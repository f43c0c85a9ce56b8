//! The HTTP API through `router(state)`, one request at a time.

#![allow(clippy::unwrap_used)]
#[path = "../common/mod.rs"]
mod common;
mod erasure;
mod fuzz;
mod ingest;
mod keys_and_tenants;
mod operations;
mod webhook_ingest;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use base64::Engine as _;
use common::{Env, env, env_with, env_with_ingest_runtime, event, uuid};
use mailledger_api::{Limits, Scope};
use serde_json::{Value, json};

const PROBLEM: &str = "application/problem+json";
