//! Grants of the token endpoint, one module each.

pub mod authorization_code;
pub mod client_credentials;

use time::Duration;

/// The `expires_in` of a token response (RFC 6749 §5.1) for a token that
/// lives `lifetime` from now: the largest whole number of seconds strictly
/// less than the lifetime, so that a client never holds a token it believes
/// valid after it expired (3599 for the default hour, as the published
/// example shows); at least 1.
pub fn expires_in(lifetime: Duration) -> i64 {
    let started = i64::from(lifetime.subsec_nanoseconds() > 0);
    (lifetime.whole_seconds() + started - 1).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expires_in_is_the_whole_seconds_strictly_within_the_lifetime() {
        assert_eq!(expires_in(Duration::hours(1)), 3599);
        assert_eq!(expires_in(Duration::milliseconds(599_300)), 599);
        assert_eq!(expires_in(Duration::seconds(600)), 599);
        assert_eq!(expires_in(Duration::milliseconds(1_500)), 1);
        assert_eq!(expires_in(Duration::milliseconds(300)), 1);
        assert_eq!(expires_in(Duration::ZERO), 1);
    }
}
