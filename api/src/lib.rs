//! The mailledger HTTP API.

pub mod webhooks;
