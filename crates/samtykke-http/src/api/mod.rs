//! The resource APIs: agreement consents, debt, and the consent event feed.

pub mod agreement;
pub mod bearer;
pub mod debt;
pub mod dto;
pub mod error;
pub mod feed;
pub mod openapi;
pub mod trace;

use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// ISO 8601 / RFC 3339, as the contract's timestamps.
pub(crate) fn iso(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_default()
}
