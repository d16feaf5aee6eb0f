//! Token introspection (RFC 7662) as a pure decision.

use time::OffsetDateTime;

use crate::domain::{ApiAudience, ClientId, ScopeSet};
use crate::token::AccessTokenRecord;

/// What introspection reveals to the calling client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Introspection {
    /// Unknown, expired, revoked, or another client's token (RFC 7662 §2.2:
    /// the server need not say why).
    Inactive,
    Active {
        client_id: ClientId,
        audience: ApiAudience,
        scopes: ScopeSet,
        issued_at: OffsetDateTime,
        expires_at: OffsetDateTime,
    },
}

/// A client sees only its own tokens.
pub fn introspect(
    record: Option<AccessTokenRecord>,
    caller: &ClientId,
    now: OffsetDateTime,
) -> Introspection {
    match record {
        Some(r) if r.client_id == *caller && r.is_active(now) => Introspection::Active {
            client_id: r.client_id,
            audience: r.audience,
            scopes: r.scopes,
            issued_at: r.issued_at,
            expires_at: r.expires_at,
        },
        _ => Introspection::Inactive,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::token::AccessToken;
    use time::Duration;

    fn record(owner: &str, revoked: bool) -> AccessTokenRecord {
        AccessTokenRecord {
            hash: AccessToken::generate().hash(),
            client_id: ClientId::parse(owner).unwrap(),
            audience: ApiAudience::Debt,
            scopes: ScopeSet::parse("debt.unsecured.presentation").unwrap(),
            issued_at: OffsetDateTime::UNIX_EPOCH,
            expires_at: OffsetDateTime::UNIX_EPOCH + Duration::hours(1),
            revoked,
            consent_id: None,
        }
    }

    #[test]
    fn only_the_owner_sees_a_live_token() {
        let a = ClientId::parse("a").unwrap();
        let t0 = OffsetDateTime::UNIX_EPOCH;
        assert!(matches!(
            introspect(Some(record("a", false)), &a, t0),
            Introspection::Active { .. }
        ));
        assert_eq!(
            introspect(Some(record("b", false)), &a, t0),
            Introspection::Inactive
        );
        assert_eq!(
            introspect(Some(record("a", true)), &a, t0),
            Introspection::Inactive
        );
        assert_eq!(
            introspect(Some(record("a", false)), &a, t0 + Duration::hours(1)),
            Introspection::Inactive
        );
        assert_eq!(introspect(None, &a, t0), Introspection::Inactive);
    }
}
