//! Integration tests: the real server over real HTTP on an ephemeral port,
//! each test run against SQLite and, when it answers, PostgreSQL.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[macro_use]
mod helpers;

mod agreement_api;
mod cli;
mod debt_api;
mod discovery;
mod feed;
mod introspect_revoke;
mod metrics;
mod operations;
mod store_contract;
mod token;
