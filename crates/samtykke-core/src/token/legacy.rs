//! The first sealed format, `sc1.`: the claims as base64url JSON under an
//! HMAC-SHA256 — authenticated, but readable by anyone who sees the token.
//! Versions up to 0.1 issued it; the server now only issues `sc2.` (see
//! [`super`]) and still opens `sc1.` tokens with the server secret
//! `access_token_key`, so that those issued before an upgrade keep working
//! for the rest of their lifetime (an hour by default). This module can go
//! once no server issues `sc1.` tokens any more.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use time::OffsetDateTime;

use super::{AccessToken, AccessTokenRecord, TokenGrant};
use crate::consent::ConsentId;
use crate::domain::{ApiAudience, ClientId, ScopeSet};

/// What every `sc1.` token starts with.
pub const PREFIX: &str = "sc1.";

/// The sealed claims. Short names: the token travels in every request.
#[derive(Serialize, Deserialize)]
struct Claims {
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
    mac.update(PREFIX.as_bytes());
    mac.update(payload.as_bytes());
    mac
}

/// Seals a token in the `sc1.` format, exactly as versions up to 0.1 did.
/// The server never calls it: it is here for the tests of the upgrade
/// path and for the benchmark that compares both formats
/// (`bench/tokens`).
#[doc(hidden)]
pub fn seal(key: &[u8], grant: TokenGrant, generation: i64) -> (AccessToken, AccessTokenRecord) {
    let mut jti = [0u8; 16];
    rand::thread_rng().fill_bytes(&mut jti);
    let claims = Claims {
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
    let token = AccessToken(format!("{PREFIX}{payload}.{}", URL_SAFE_NO_PAD.encode(tag)));
    let record = super::record_of(&token, grant);
    (token, record)
}

/// Fuzzing only (feature `fuzzing`): an `sc1.` token whose payload is
/// `json`, with a valid MAC under `key`, so that a fuzzer reaches the
/// claims behind the MAC.
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub fn seal_payload_for_fuzzing(key: &[u8], json: &[u8]) -> AccessToken {
    let payload = URL_SAFE_NO_PAD.encode(json);
    let tag = token_mac(key, &payload).finalize().into_bytes();
    AccessToken(format!("{PREFIX}{payload}.{}", URL_SAFE_NO_PAD.encode(tag)))
}

/// Opens an `sc1.` token: its record and its client's token generation, if
/// the MAC is right and the claims are well-formed, else None. The MAC is
/// checked in constant time before anything else is read.
pub(super) fn unseal(key: &[u8], token: &AccessToken) -> Option<(AccessTokenRecord, i64)> {
    let rest = token.0.strip_prefix(PREFIX)?;
    let (payload, tag) = rest.split_once('.')?;
    let tag = URL_SAFE_NO_PAD.decode(tag).ok()?;
    token_mac(key, payload).verify_slice(&tag).ok()?;
    let claims: Claims = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).ok()?).ok()?;
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
