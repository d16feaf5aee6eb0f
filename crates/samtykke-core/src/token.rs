//! Access tokens, in two kinds:
//!
//! * **Sealed** (what both grants issue): the claims themselves, under an
//!   HMAC-SHA256 with a server key shared by every process (`sc1.` +
//!   base64url(claims) + `.` + base64url(MAC)). Issuing one writes nothing;
//!   the database keeps only what revokes it (a revoked-token row under the
//!   same SHA-256, the client's own state, and for a token bound to a
//!   consent, the consent's `tokens_revoked` mark), and every use checks
//!   that.
//! * **Stored**: 256 random bits; the database keeps only their SHA-256, so
//!   a copy of the database yields no usable token. Authorization-code
//!   tokens were stored before they were sealed; those still valid at an
//!   upgrade keep working until they expire.

use std::fmt;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::Sha256;
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

    /// True for a sealed (self-contained) token.
    pub fn is_sealed(&self) -> bool {
        self.0.starts_with(SEALED_PREFIX)
    }
}

/// What every sealed token starts with: the format and its version.
pub const SEALED_PREFIX: &str = "sc1.";

/// The sealed claims. Short names: the token travels in every request.
#[derive(Serialize, Deserialize)]
struct SealedClaims {
    /// Client id.
    c: String,
    /// Audience key.
    a: String,
    /// Scopes, space-separated.
    s: String,
    iat: i64,
    exp: i64,
    /// The client's token generation at issue.
    g: i64,
    /// 128 random bits, so that no two tokens are equal.
    j: String,
    /// The consent an authorization-code token is bound to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    k: Option<String>,
}

fn token_mac(key: &[u8], payload: &str) -> Hmac<Sha256> {
    // HMAC takes a key of any length; the fallback is never reached.
    let mut mac = Hmac::<Sha256>::new_from_slice(key)
        .unwrap_or_else(|_| Hmac::<Sha256>::new(&Default::default()));
    mac.update(SEALED_PREFIX.as_bytes());
    mac.update(payload.as_bytes());
    mac
}

/// What a sealed token stands for: everything of its record but the hash
/// and the revocation state.
#[derive(Debug, Clone)]
pub struct TokenGrant {
    pub client_id: ClientId,
    pub audience: ApiAudience,
    pub scopes: ScopeSet,
    pub issued_at: OffsetDateTime,
    pub expires_at: OffsetDateTime,
    /// The consent an authorization-code token is bound to.
    pub consent_id: Option<ConsentId>,
}

/// Seals a token: the token and the record it stands for (never stored;
/// `hash` is where a revocation would be recorded). `generation` is the
/// client's token generation at issue.
pub fn seal(key: &[u8], grant: TokenGrant, generation: i64) -> (AccessToken, AccessTokenRecord) {
    // The jti only has to be unique (it keeps two tokens minted in the same
    // second apart); the thread's CSPRNG, seeded from the OS, saves a
    // system call per token.
    let mut jti = [0u8; 16];
    rand::thread_rng().fill_bytes(&mut jti);
    let claims = SealedClaims {
        c: grant.client_id.as_str().to_owned(),
        a: grant.audience.as_key().to_owned(),
        s: grant.scopes.to_string(),
        iat: grant.issued_at.unix_timestamp(),
        exp: grant.expires_at.unix_timestamp(),
        g: generation,
        j: URL_SAFE_NO_PAD.encode(jti),
        k: grant.consent_id.map(|id| id.to_string()),
    };
    // Serializing plain strings and integers cannot fail.
    let json = serde_json::to_vec(&claims).unwrap_or_default();
    let payload = URL_SAFE_NO_PAD.encode(json);
    let tag = token_mac(key, &payload).finalize().into_bytes();
    let token = AccessToken(format!(
        "{SEALED_PREFIX}{payload}.{}",
        URL_SAFE_NO_PAD.encode(tag)
    ));
    let record = AccessTokenRecord {
        hash: token.hash(),
        client_id: grant.client_id,
        audience: grant.audience,
        scopes: grant.scopes,
        issued_at: OffsetDateTime::from_unix_timestamp(claims.iat).unwrap_or(grant.issued_at),
        expires_at: OffsetDateTime::from_unix_timestamp(claims.exp).unwrap_or(grant.expires_at),
        revoked: false,
        consent_id: grant.consent_id,
    };
    (token, record)
}

/// Opens a sealed token: its record (not revoked, as far as the seal can
/// tell) and its client's token generation, if the MAC is right and the
/// claims are well-formed, else None. The MAC is checked in constant time
/// before anything else is read.
pub fn unseal(key: &[u8], token: &AccessToken) -> Option<(AccessTokenRecord, i64)> {
    let rest = token.0.strip_prefix(SEALED_PREFIX)?;
    let (payload, tag) = rest.split_once('.')?;
    let tag = URL_SAFE_NO_PAD.decode(tag).ok()?;
    token_mac(key, payload).verify_slice(&tag).ok()?;
    let claims: SealedClaims =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).ok()?).ok()?;
    let record = AccessTokenRecord {
        hash: token.hash(),
        client_id: ClientId::parse(&claims.c).ok()?,
        audience: ApiAudience::from_key(&claims.a)?,
        scopes: ScopeSet::parse(&claims.s).ok()?,
        issued_at: OffsetDateTime::from_unix_timestamp(claims.iat).ok()?,
        expires_at: OffsetDateTime::from_unix_timestamp(claims.exp).ok()?,
        revoked: false,
        consent_id: match claims.k {
            Some(id) => Some(ConsentId::parse(&id)?),
            None => None,
        },
    };
    Some((record, claims.g))
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

    fn sealed(key: &[u8]) -> (AccessToken, AccessTokenRecord) {
        let now = OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap();
        seal(
            key,
            TokenGrant {
                client_id: ClientId::parse("bank-1").unwrap(),
                audience: ApiAudience::Debt,
                scopes: ScopeSet::parse("debt.unsecured.presentation").unwrap(),
                issued_at: now,
                expires_at: now + time::Duration::seconds(300),
                consent_id: None,
            },
            7,
        )
    }

    #[test]
    fn a_sealed_token_opens_with_its_key_only() {
        let (token, record) = sealed(b"key one");
        assert!(token.is_sealed());
        assert!(token.expose().len() > 100);
        assert_eq!(unseal(b"key one", &token), Some((record.clone(), 7)));
        assert_eq!(record.hash, token.hash());
        assert_eq!(unseal(b"key two", &token), None);
        let (other, _) = sealed(b"key one");
        assert_ne!(token, other, "every token has its own random id");
        assert_ne!(record.hash, other.hash());
    }

    #[test]
    fn a_tampered_or_malformed_sealed_token_does_not_open() {
        let (token, _) = sealed(b"k");
        let text = token.expose();
        let (payload, tag) = text.rsplit_once('.').unwrap();
        // Claims swapped for other, well-formed claims under the old MAC.
        let forged = URL_SAFE_NO_PAD.encode(
            br#"{"c":"bank-1","a":"debt","s":"debt.unsecured.processing","iat":1800000000,"exp":1900000000,"g":7,"j":"x"}"#,
        );
        for bad in [
            format!("sc1.{forged}.{tag}"),
            format!("{payload}.{}", &tag[1..]),
            format!("{payload}x.{tag}"),
            payload.to_owned(),
            format!("sc2.{}", &text[4..]),
            "sc1.".to_owned(),
            "sc1..".to_owned(),
            "sc1.!!!.???".to_owned(),
        ] {
            assert_eq!(
                unseal(b"k", &AccessToken::from_presented(&bad)),
                None,
                "{bad}"
            );
        }
    }
}
