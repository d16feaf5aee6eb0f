//! OAuth 2.0 endpoints of the authorization server.

pub mod introspect;
pub mod revoke;
pub mod token;
pub mod userinfo;
