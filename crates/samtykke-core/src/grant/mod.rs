//! Grants of the token endpoint, one module each.

pub mod authorization_code;
pub mod client_credentials;
