//! Integration tests: the real server over real HTTP on an ephemeral port,
//! each test run against SQLite and, when it answers, PostgreSQL.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[macro_use]
mod helpers;
mod schema;

mod agreement_api;
mod authorization_code;
mod authorization_pages;
mod browser;
mod cli;
mod conformance;
mod connection_limits;
mod creditor_lookups;
mod creditor_peer;
mod creditors;
mod debt_api;
mod debt_import;
mod discovery;
mod docs;
mod drop_in;
mod durability;
mod feed;
mod introspect_revoke;
mod metrics;
mod opaque_tokens;
mod openapi;
mod operations;
mod operator_pages;
mod push;
mod request_objects;
mod response_modes;
mod store_contract;
pub mod test_ca;
mod token;

mod portal;
mod upstream_identity;

mod sandbox_pages;
