//! Opaque access tokens. The client gets 256 random bits; the database keeps
//! only their SHA-256, so a copy of the database yields no usable token.

use std::fmt;

use time::OffsetDateTime;

use crate::consent::ConsentId;
use crate::domain::{ApiAudience, ClientId, ScopeSet};

/// An access token as handed to the client. Debug never prints it.
#[derive(Clone, PartialEq, Eq)]
pub struct AccessToken(String);

impl AccessToken {
    pub fn generate() -> Self {
        Self(crate::opaque::random_value())
    }

    /// Wraps a token presented by a caller.
    pub fn from_presented(token: &str) -> Self {
        Self(token.to_owned())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The key under which the token is stored.
    pub fn hash(&self) -> TokenHash {
        crate::opaque::hash_of(&self.0)
    }
}

impl fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AccessToken(***)")
    }
}

/// SHA-256 of an access token: the primary key of the token table.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TokenHash([u8; 32]);

impl TokenHash {
    pub fn from_array(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        Some(Self(bytes.try_into().ok()?))
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

/// What the server remembers about an issued access token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessTokenRecord {
    pub hash: TokenHash,
    pub client_id: ClientId,
    pub audience: ApiAudience,
    pub scopes: ScopeSet,
    pub issued_at: OffsetDateTime,
    pub expires_at: OffsetDateTime,
    pub revoked: bool,
    /// The consent an authorization-code token is bound to; None for
    /// client-credentials tokens.
    pub consent_id: Option<ConsentId>,
}

impl AccessTokenRecord {
    /// Active = not revoked and not yet expired.
    pub fn is_active(&self, now: OffsetDateTime) -> bool {
        !self.revoked && now < self.expires_at
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_random_and_hash_stably() {
        let a = AccessToken::generate();
        let b = AccessToken::generate();
        assert_ne!(a, b);
        assert_eq!(a.expose().len(), 43);
        assert_eq!(a.hash(), AccessToken::from_presented(a.expose()).hash());
        assert_ne!(a.hash(), b.hash());
        assert_eq!(format!("{a:?}"), "AccessToken(***)");
    }
}
