//! Operator commands that work on the server's database.

pub mod client;
pub mod creditor;
pub mod debt;
pub mod keys;
