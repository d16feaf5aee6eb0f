//! What a client registers for request objects (RFC 9101, OpenID Connect
//! Core §6): its public keys (inline or at a `jwks_uri`), the `request_uri`
//! values it may send, and whether unsigned (`alg=none`) request objects
//! are accepted from it.

use std::fmt;

use jsonwebtoken::jwk::{
    AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm, KeyOperations, PublicKeyUse,
};
use serde::Serialize;
use url::Url;

/// Longest JWK set or request object read or fetched, in bytes.
pub const MAX_REMOTE_DOCUMENT: usize = 64 * 1024;

/// The signature algorithms a request object may use (besides `none`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignatureAlg {
    Rs256,
    Es256,
}

impl SignatureAlg {
    pub fn parse(alg: &str) -> Option<Self> {
        match alg {
            "RS256" => Some(Self::Rs256),
            "ES256" => Some(Self::Es256),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Rs256 => "RS256",
            Self::Es256 => "ES256",
        }
    }

    /// The JWK `alg` member of a key for this algorithm.
    pub fn key_algorithm(self) -> KeyAlgorithm {
        match self {
            Self::Rs256 => KeyAlgorithm::RS256,
            Self::Es256 => KeyAlgorithm::ES256,
        }
    }

    pub fn jsonwebtoken(self) -> jsonwebtoken::Algorithm {
        match self {
            Self::Rs256 => jsonwebtoken::Algorithm::RS256,
            Self::Es256 => jsonwebtoken::Algorithm::ES256,
        }
    }
}

/// A URI the server fetches on a client's behalf (`jwks_uri`,
/// `request_uri`): an absolute `https` URI, or `http` on a loopback host
/// (usable only in sandbox mode, for local tests). Kept exactly as
/// registered: a presented `request_uri` must equal it byte for byte.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FetchUri(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FetchUriError {
    #[error("not an absolute URI")]
    NotAbsolute,
    #[error("must use https (http only on a loopback host: 127.0.0.1, [::1] or localhost)")]
    Scheme,
    #[error("must not contain user information")]
    UserInfo,
    #[error("must be written in its normal form ({0})")]
    NotNormalised(String),
    #[error("is longer than 2000 characters")]
    TooLong,
}

impl FetchUri {
    pub fn parse(input: &str) -> Result<Self, FetchUriError> {
        if input.len() > 2000 {
            return Err(FetchUriError::TooLong);
        }
        let url = Url::parse(input).map_err(|_| FetchUriError::NotAbsolute)?;
        let host = url.host_str().ok_or(FetchUriError::NotAbsolute)?;
        match url.scheme() {
            "https" => {}
            "http" if is_loopback_host(host) => {}
            _ => return Err(FetchUriError::Scheme),
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(FetchUriError::UserInfo);
        }
        if url.as_str() != input {
            return Err(FetchUriError::NotNormalised(url.to_string()));
        }
        Ok(Self(input.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether it is `https` (else it is `http` on a loopback host).
    pub fn is_https(&self) -> bool {
        self.0.starts_with("https://")
    }

    /// What to fetch: the URI without its fragment (a `request_uri` may
    /// carry a hash of the content there, OpenID Connect Core §6.2).
    pub fn without_fragment(&self) -> &str {
        self.0.split_once('#').map_or(self.0.as_str(), |(u, _)| u)
    }
}

impl fmt::Display for FetchUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn is_loopback_host(host: &str) -> bool {
    matches!(host, "127.0.0.1" | "[::1]" | "localhost")
}

/// A set of a client's public keys (RFC 7517 §5), as far as they can
/// verify request objects: RSA keys (RS256) and P-256 keys (ES256).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientKeySet {
    keys: Vec<Jwk>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeySetError {
    #[error("a JWK set is a JSON object with a \"keys\" array")]
    NotAKeySet,
    #[error("the JWK set is larger than 64 KiB")]
    TooLarge,
    #[error("the JWK set has no keys")]
    Empty,
    #[error("key {0} holds private key material; register the public keys only")]
    Private(usize),
    #[error("key {0} is not an RSA or P-256 (EC) public key for signatures")]
    Unusable(usize),
}

/// Members of a JWK that only a private (or symmetric) key has.
const PRIVATE_MEMBERS: [&str; 7] = ["d", "p", "q", "dp", "dq", "qi", "k"];

#[derive(Serialize)]
struct KeysDocument<'a> {
    keys: &'a [Jwk],
}

impl ClientKeySet {
    /// A key set an operator registers (`--jwks`): every key must be a
    /// public RSA or P-256 key for signatures.
    pub fn parse_registered(json: &str) -> Result<Self, KeySetError> {
        let raw = raw_keys(json)?;
        if raw.is_empty() {
            return Err(KeySetError::Empty);
        }
        let mut keys = Vec::with_capacity(raw.len());
        for (i, value) in raw.into_iter().enumerate() {
            let private = value
                .as_object()
                .is_some_and(|o| PRIVATE_MEMBERS.iter().any(|m| o.contains_key(*m)));
            if private {
                return Err(KeySetError::Private(i));
            }
            let jwk: Jwk = serde_json::from_value(value).map_err(|_| KeySetError::Unusable(i))?;
            if !for_signatures(&jwk) || key_alg(&jwk).is_none() {
                return Err(KeySetError::Unusable(i));
            }
            keys.push(jwk);
        }
        Ok(Self { keys })
    }

    /// A key set as fetched from a `jwks_uri` or read back from storage:
    /// keys this server cannot use (other types, curves, purposes) are
    /// left out rather than failing the whole set.
    pub fn parse_lenient(json: &str) -> Result<Self, KeySetError> {
        let keys = raw_keys(json)?
            .into_iter()
            .filter_map(|v| serde_json::from_value::<Jwk>(v).ok())
            .filter(|k| for_signatures(k) && key_alg(k).is_some())
            .collect();
        Ok(Self { keys })
    }

    /// The set as JSON (`{"keys": [...]}`), public members only.
    pub fn to_json(&self) -> String {
        serde_json::to_string(&KeysDocument { keys: &self.keys }).unwrap_or_default()
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Whether a key has this `kid`.
    pub fn has_kid(&self, kid: &str) -> bool {
        self.keys
            .iter()
            .any(|k| k.common.key_id.as_deref() == Some(kid))
    }

    /// The keys that may verify a signature by `alg`, limited to those
    /// with the `kid` when one is given.
    pub fn candidates<'a>(
        &'a self,
        alg: SignatureAlg,
        kid: Option<&'a str>,
    ) -> impl Iterator<Item = &'a Jwk> + 'a {
        self.keys.iter().filter(move |k| {
            kid.is_none_or(|kid| k.common.key_id.as_deref() == Some(kid))
                && key_alg(k) == Some(alg)
                && k.common
                    .key_algorithm
                    .is_none_or(|a| a == alg.key_algorithm())
        })
    }
}

fn raw_keys(json: &str) -> Result<Vec<serde_json::Value>, KeySetError> {
    if json.len() > MAX_REMOTE_DOCUMENT {
        return Err(KeySetError::TooLarge);
    }
    let mut doc: serde_json::Value =
        serde_json::from_str(json).map_err(|_| KeySetError::NotAKeySet)?;
    match doc.get_mut("keys").map(serde_json::Value::take) {
        Some(serde_json::Value::Array(keys)) => Ok(keys),
        _ => Err(KeySetError::NotAKeySet),
    }
}

/// Whether a key is meant for signatures (or does not say).
fn for_signatures(k: &Jwk) -> bool {
    let use_ok = match &k.common.public_key_use {
        None | Some(PublicKeyUse::Signature) => true,
        Some(_) => false,
    };
    let ops_ok = k
        .common
        .key_operations
        .as_ref()
        .is_none_or(|ops| ops.contains(&KeyOperations::Verify));
    use_ok && ops_ok
}

/// The one algorithm a key can verify here, by its type and curve.
fn key_alg(k: &Jwk) -> Option<SignatureAlg> {
    match &k.algorithm {
        AlgorithmParameters::RSA(_) => Some(SignatureAlg::Rs256),
        AlgorithmParameters::EllipticCurve(ec) if ec.curve == EllipticCurve::P256 => {
            Some(SignatureAlg::Es256)
        }
        _ => None,
    }
}

/// Where a client's keys are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientKeys {
    /// Registered with the client (`--jwks`).
    Inline(ClientKeySet),
    /// Fetched (and cached briefly) from the client's `jwks_uri`.
    Remote(FetchUri),
}

/// A client's registration for request objects. The default: none accepted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestObjectPolicy {
    /// The keys signed request objects are verified with.
    pub keys: Option<ClientKeys>,
    /// The only `request_uri` values the client may send (exact match).
    pub request_uris: Vec<FetchUri>,
    /// Whether unsigned request objects (`alg=none`) are accepted.
    pub allow_unsigned: bool,
}

impl RequestObjectPolicy {
    /// Whether the client can send any request object at all.
    pub fn accepts_request_objects(&self) -> bool {
        self.keys.is_some() || self.allow_unsigned
    }

    /// The registered `request_uri` equal to `presented` byte for byte.
    pub fn registered_request_uri(&self, presented: &str) -> Option<&FetchUri> {
        self.request_uris.iter().find(|u| u.as_str() == presented)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RSA: &str = r#"{"kty":"RSA","kid":"r1","use":"sig","alg":"RS256","n":"sXch","e":"AQAB"}"#;
    const EC: &str = r#"{"kty":"EC","kid":"e1","crv":"P-256","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}"#;

    #[test]
    fn fetch_uris_are_https_or_loopback_http_in_normal_form() {
        for ok in [
            "https://bank.example/jwks.json",
            "https://bank.example/req#abc",
            "http://127.0.0.1:8123/request.jwt",
            "http://localhost:1/x",
        ] {
            assert!(FetchUri::parse(ok).is_ok(), "{ok}");
        }
        for bad in [
            "http://bank.example/jwks.json",
            "http://10.0.0.1/x",
            "ftp://bank.example/x",
            "https://user@bank.example/x",
            "https://BANK.example/x",
            "/relative",
            "",
        ] {
            assert!(FetchUri::parse(bad).is_err(), "{bad}");
        }
        let u = FetchUri::parse("https://bank.example/req#h").unwrap();
        assert_eq!(u.without_fragment(), "https://bank.example/req");
        assert!(u.is_https());
    }

    #[test]
    fn a_registered_key_set_holds_public_signature_keys_only() {
        let set = ClientKeySet::parse_registered(&format!(r#"{{"keys":[{RSA},{EC}]}}"#)).unwrap();
        assert_eq!(set.len(), 2);
        assert_eq!(set.candidates(SignatureAlg::Rs256, None).count(), 1);
        assert_eq!(set.candidates(SignatureAlg::Es256, Some("e1")).count(), 1);
        assert_eq!(set.candidates(SignatureAlg::Es256, Some("r1")).count(), 0);
        assert!(set.has_kid("r1") && !set.has_kid("x"));
        let again = ClientKeySet::parse_registered(&set.to_json()).unwrap();
        assert_eq!(again, set);

        let private = RSA.replace("\"e\"", "\"d\":\"AQAB\",\"e\"");
        assert_eq!(
            ClientKeySet::parse_registered(&format!(r#"{{"keys":[{private}]}}"#)),
            Err(KeySetError::Private(0))
        );
        let oct = r#"{"kty":"oct","k":"c2VjcmV0"}"#;
        assert_eq!(
            ClientKeySet::parse_registered(&format!(r#"{{"keys":[{oct}]}}"#)),
            Err(KeySetError::Private(0))
        );
        let enc = RSA.replace("\"sig\"", "\"enc\"");
        assert_eq!(
            ClientKeySet::parse_registered(&format!(r#"{{"keys":[{enc}]}}"#)),
            Err(KeySetError::Unusable(0))
        );
        let p384 = EC.replace("P-256", "P-384");
        assert_eq!(
            ClientKeySet::parse_registered(&format!(r#"{{"keys":[{p384}]}}"#)),
            Err(KeySetError::Unusable(0))
        );
        assert_eq!(
            ClientKeySet::parse_registered(r#"{"keys":[]}"#),
            Err(KeySetError::Empty)
        );
        assert_eq!(
            ClientKeySet::parse_registered("[1]"),
            Err(KeySetError::NotAKeySet)
        );
        // Fetched sets keep what is usable.
        let lenient =
            ClientKeySet::parse_lenient(&format!(r#"{{"keys":[{enc},{RSA},{{"kty":"X"}}]}}"#))
                .unwrap();
        assert_eq!(lenient.len(), 1);
    }

    #[test]
    fn a_key_with_another_alg_is_no_candidate() {
        let rs384 = RSA.replace("RS256", "RS384");
        let set = ClientKeySet::parse_lenient(&format!(r#"{{"keys":[{rs384}]}}"#)).unwrap();
        assert_eq!(set.candidates(SignatureAlg::Rs256, None).count(), 0);
    }
}
