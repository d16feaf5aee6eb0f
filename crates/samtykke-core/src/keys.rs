//! RS256 signing keys and their public JWK form (RFC 7517, RFC 7518 §6.3).

use std::fmt;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rsa::pkcs8::{DecodePrivateKey, EncodePrivateKey, LineEnding};
use rsa::traits::PublicKeyParts;
use rsa::RsaPrivateKey;
use serde::Serialize;
use time::OffsetDateTime;

/// How many of the newest keys the JWKS publishes: the active one and its
/// predecessor, so tokens signed before a rotation still verify.
pub const PUBLISHED_KEYS: usize = 2;

/// A signing key as stored. Debug never prints the private key.
#[derive(Clone, PartialEq, Eq)]
pub struct SigningKey {
    pub kid: String,
    /// PKCS#8 PEM of the RSA private key.
    pub private_key_pem: String,
    pub created_at: OffsetDateTime,
}

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("could not generate an RSA key: {0}")]
    Generate(String),
    #[error("the stored private key is not a valid PKCS#8 RSA key")]
    Decode,
}

impl SigningKey {
    /// A new 2048-bit RSA key with a random key id.
    pub fn generate(now: OffsetDateTime) -> Result<Self, KeyError> {
        let key = RsaPrivateKey::new(&mut rand::rngs::OsRng, 2048)
            .map_err(|e| KeyError::Generate(e.to_string()))?;
        let pem = key
            .to_pkcs8_pem(LineEnding::LF)
            .map_err(|e| KeyError::Generate(e.to_string()))?;
        Ok(Self {
            kid: uuid::Uuid::new_v4().simple().to_string(),
            private_key_pem: pem.to_string(),
            created_at: now,
        })
    }

    /// The public half as a JWK.
    pub fn public_jwk(&self) -> Result<Jwk, KeyError> {
        let key =
            RsaPrivateKey::from_pkcs8_pem(&self.private_key_pem).map_err(|_| KeyError::Decode)?;
        Ok(Jwk {
            kty: "RSA",
            key_use: "sig",
            alg: "RS256",
            kid: self.kid.clone(),
            n: URL_SAFE_NO_PAD.encode(key.n().to_bytes_be()),
            e: URL_SAFE_NO_PAD.encode(key.e().to_bytes_be()),
        })
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .field("created_at", &self.created_at)
            .finish_non_exhaustive()
    }
}

/// A public RSA signing key in JWK form.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Jwk {
    pub kty: &'static str,
    #[serde(rename = "use")]
    pub key_use: &'static str,
    pub alg: &'static str,
    pub kid: String,
    pub n: String,
    pub e: String,
}

/// The key set published at the JWKS URI, given all keys newest first (as
/// [`crate::store::Store::list_signing_keys`] returns them).
pub fn published(newest_first: &[SigningKey]) -> &[SigningKey] {
    &newest_first[..newest_first.len().min(PUBLISHED_KEYS)]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_key_has_a_public_jwk() {
        let key = SigningKey::generate(OffsetDateTime::UNIX_EPOCH).unwrap();
        let jwk = key.public_jwk().unwrap();
        assert_eq!(jwk.kid, key.kid);
        assert_eq!(jwk.e, "AQAB");
        assert_eq!(URL_SAFE_NO_PAD.decode(&jwk.n).unwrap().len(), 256);
        assert!(!format!("{key:?}").contains("PRIVATE"));
    }
}
