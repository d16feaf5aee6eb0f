//! Samtykke protocol core.
//!
//! Everything here is free of HTTP and SQL: requests arrive as typed values,
//! decisions are pure functions, and persistence goes through [`store::Store`].

pub mod agreement;
pub mod authorize;
pub mod clock;
pub mod consent;
pub mod creditor;
pub mod creditor_breaker;
pub mod creditor_lookup;
pub mod debt;
pub mod debt_lookup;
pub mod domain;
pub mod error;
pub mod flow;
pub mod grant;
pub mod id_token;
pub mod introspection;
pub mod keys;
pub mod opaque;
pub mod request_object;
pub mod store;
pub mod token;

pub use clock::{Clock, FixedClock, SystemClock};
pub use error::{OAuthError, OAuthErrorCode};
