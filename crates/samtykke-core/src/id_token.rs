//! ID tokens (OpenID Connect Core §2, §3.1.3.6): RS256 JWTs signed with the
//! active key, with the contract's `pid` and `consent_id` claims and a
//! pairwise `sub` (§8.1).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use time::{Duration, OffsetDateTime};

use crate::consent::ConsentId;
use crate::domain::{ClientId, Nin};
use crate::keys::{KeyError, SigningKey};

/// How long an ID token is valid.
pub const ID_TOKEN_LIFETIME: Duration = Duration::hours(1);

/// The name of the server secret that salts pairwise subjects.
pub const PAIRWISE_SALT: &str = "pairwise_subject_salt";

/// The claims of an ID token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdTokenClaims {
    pub iss: String,
    pub sub: String,
    pub aud: String,
    pub iat: i64,
    pub exp: i64,
    pub auth_time: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nonce: Option<String>,
    /// The individual's national identity number.
    pub pid: String,
    pub consent_id: String,
}

/// What an ID token is about.
pub struct IdTokenSubject<'a> {
    pub issuer: &'a str,
    pub client_id: &'a ClientId,
    pub nin: &'a Nin,
    pub consent_id: ConsentId,
    pub nonce: Option<&'a str>,
    pub auth_time: OffsetDateTime,
}

/// The subject identifier of `nin` as seen by `client_id`: HMAC-SHA256 under
/// a server secret, so that two clients cannot correlate an individual and
/// nobody without the secret can recover the number.
pub fn pairwise_subject(salt: &[u8], client_id: &ClientId, nin: &Nin) -> String {
    // HMAC accepts keys of any length.
    let mut mac = match Hmac::<Sha256>::new_from_slice(salt) {
        Ok(mac) => mac,
        Err(_) => return String::new(),
    };
    mac.update(client_id.as_str().as_bytes());
    mac.update(&[0]);
    mac.update(nin.as_str().as_bytes());
    URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
}

impl IdTokenClaims {
    pub fn new(subject: &IdTokenSubject<'_>, salt: &[u8], now: OffsetDateTime) -> Self {
        Self {
            iss: subject.issuer.to_owned(),
            sub: pairwise_subject(salt, subject.client_id, subject.nin),
            aud: subject.client_id.as_str().to_owned(),
            iat: now.unix_timestamp(),
            exp: (now + ID_TOKEN_LIFETIME).unix_timestamp(),
            auth_time: subject.auth_time.unix_timestamp(),
            nonce: subject.nonce.map(str::to_owned),
            pid: subject.nin.as_str().to_owned(),
            consent_id: subject.consent_id.to_string(),
        }
    }
}

/// The active signing key, decoded once.
#[derive(Clone)]
pub struct IdTokenSigner {
    kid: String,
    key: EncodingKey,
}

impl std::fmt::Debug for IdTokenSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdTokenSigner")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl IdTokenSigner {
    pub fn new(key: &SigningKey) -> Result<Self, KeyError> {
        Ok(Self {
            kid: key.kid.clone(),
            key: EncodingKey::from_rsa_pem(key.private_key_pem.as_bytes())
                .map_err(|_| KeyError::Decode)?,
        })
    }

    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// A compact JWS with `alg=RS256`, `typ=JWT` and the key's `kid`.
    pub fn sign<T: Serialize>(&self, claims: &T) -> Result<String, KeyError> {
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some(self.kid.clone());
        header.typ = Some("JWT".into());
        jsonwebtoken::encode(&header, claims, &self.key).map_err(|_| KeyError::Decode)
    }
}

/// Reads an `id_token_hint` (OpenID Connect RP-Initiated Logout §2): it
/// must be signed by one of `keys` and issued by `issuer`; it may have
/// expired. None if it does not verify.
pub fn verify_hint(keys: &[SigningKey], issuer: &str, jwt: &str) -> Option<IdTokenClaims> {
    if jwt.len() > 8192 {
        return None;
    }
    let header = jsonwebtoken::decode_header(jwt).ok()?;
    if header.alg != Algorithm::RS256 {
        return None;
    }
    let key = keys.iter().find(|k| Some(&k.kid) == header.kid.as_ref())?;
    let jwk = key.public_jwk().ok()?;
    let decoding = jsonwebtoken::DecodingKey::from_rsa_components(&jwk.n, &jwk.e).ok()?;
    let mut validation = jsonwebtoken::Validation::new(Algorithm::RS256);
    validation.validate_exp = false;
    validation.validate_aud = false;
    validation.set_issuer(&[issuer]);
    validation.required_spec_claims.clear();
    jsonwebtoken::decode::<IdTokenClaims>(jwt, &decoding, &validation)
        .ok()
        .map(|d| d.claims)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::NinPolicy;

    #[test]
    fn pairwise_subjects_differ_per_client_and_salt_and_hide_the_number() {
        let nin = Nin::parse("14842249091", NinPolicy::AllowSynthetic).unwrap();
        let a = ClientId::parse("a").unwrap();
        let b = ClientId::parse("b").unwrap();
        let s1 = pairwise_subject(b"salt-1", &a, &nin);
        assert_eq!(s1, pairwise_subject(b"salt-1", &a, &nin));
        assert_ne!(s1, pairwise_subject(b"salt-1", &b, &nin));
        assert_ne!(s1, pairwise_subject(b"salt-2", &a, &nin));
        assert!(!s1.contains("14842249091"));
        assert_eq!(s1.len(), 43);
    }

    #[test]
    fn id_tokens_verify_with_the_public_key_and_carry_the_kid() {
        let key = SigningKey::generate(OffsetDateTime::UNIX_EPOCH).unwrap();
        let signer = IdTokenSigner::new(&key).unwrap();
        let nin = Nin::parse("14842249091", NinPolicy::AllowSynthetic).unwrap();
        let client = ClientId::parse("bank").unwrap();
        let now = OffsetDateTime::UNIX_EPOCH + Duration::days(20_000);
        let claims = IdTokenClaims::new(
            &IdTokenSubject {
                issuer: "http://127.0.0.1:8080",
                client_id: &client,
                nin: &nin,
                consent_id: ConsentId::generate(),
                nonce: Some("n"),
                auth_time: now,
            },
            b"salt",
            now,
        );
        let jwt = signer.sign(&claims).unwrap();
        let header = jsonwebtoken::decode_header(&jwt).unwrap();
        assert_eq!(header.kid.as_deref(), Some(key.kid.as_str()));
        let jwk = key.public_jwk().unwrap();
        let decoding = jsonwebtoken::DecodingKey::from_rsa_components(&jwk.n, &jwk.e).unwrap();
        let mut validation = jsonwebtoken::Validation::new(Algorithm::RS256);
        validation.set_audience(&["bank"]);
        validation.validate_exp = false;
        let decoded = jsonwebtoken::decode::<IdTokenClaims>(&jwt, &decoding, &validation).unwrap();
        assert_eq!(decoded.claims, claims);
        assert_eq!(
            verify_hint(std::slice::from_ref(&key), "http://127.0.0.1:8080", &jwt),
            Some(claims)
        );
        assert_eq!(
            verify_hint(std::slice::from_ref(&key), "http://other", &jwt),
            None
        );
        let other = SigningKey {
            kid: key.kid.clone(),
            ..SigningKey::generate(OffsetDateTime::UNIX_EPOCH).unwrap()
        };
        assert_eq!(verify_hint(&[other], "http://127.0.0.1:8080", &jwt), None);
    }
}
