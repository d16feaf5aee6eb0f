//! Request objects (RFC 9101, OpenID Connect Core §6): an authorization
//! request's parameters as the claims of a JWT, signed with a key the
//! client registered (RS256 or ES256), or unsigned (`alg=none`) where the
//! client's registration allows it.
//!
//! Pure: the caller hands in the JWT (from `request`, or fetched from the
//! `request_uri`), the client's keys (inline, or fetched from its
//! `jwks_uri`), the issuer and the time. The signature itself is checked by
//! `jsonwebtoken` (ring); nothing of JOSE is implemented here beyond
//! reading the header and the claims.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::DecodingKey;
use serde_json::{Map, Value};
use time::OffsetDateTime;

use crate::domain::client_keys::MAX_REMOTE_DOCUMENT;
use crate::domain::{ClientId, ClientKeySet, SignatureAlg};

/// The `alg` values accepted, as discovery lists them.
pub const SUPPORTED_ALGS: [&str; 3] = ["RS256", "ES256", "none"];

/// How far in the future a request object's `nbf` may be (clock skew).
const NBF_LEEWAY_SECS: i64 = 60;

/// Why a request object is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestObjectError {
    /// The header names a `kid` the key set does not have. With a
    /// `jwks_uri`, the set may have changed: fetch it again and retry once.
    #[error("no key of the client has the kid of the request object")]
    UnknownKey,
    /// Anything else: `invalid_request_object`, with this description.
    #[error("{0}")]
    Invalid(String),
}

fn invalid(description: impl Into<String>) -> RequestObjectError {
    RequestObjectError::Invalid(description.into())
}

/// What a request object is checked against.
#[derive(Debug, Clone, Copy)]
pub struct Expected<'a> {
    /// The `client_id` of the query: the object's must equal it.
    pub client_id: &'a ClientId,
    /// This server's issuer: a signed object's `aud` must contain it.
    pub issuer: &'a str,
    /// The client's keys, if it has any (fetched when at a `jwks_uri`).
    pub keys: Option<&'a ClientKeySet>,
    /// Whether the client may send unsigned (`alg=none`) objects.
    pub allow_unsigned: bool,
    pub now: OffsetDateTime,
}

/// A verified request object's authorization parameters (string claims),
/// `client_id` among them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestObject {
    pub params: Vec<(String, String)>,
    /// Whether it was signed (else `alg=none`).
    pub signed: bool,
}

/// The `alg` and `kid` of a compact JWS's header, if it is one at all.
fn header(encoded: &str) -> Result<(String, Option<String>), RequestObjectError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(encoded)
        .map_err(|_| invalid("the request object's header is not base64url"))?;
    let header: Map<String, Value> = serde_json::from_slice(&bytes)
        .map_err(|_| invalid("the request object's header is not a JSON object"))?;
    if header.contains_key("crit") {
        return Err(invalid(
            "the request object's header has crit parameters, which are not supported",
        ));
    }
    let alg = match header.get("alg") {
        Some(Value::String(alg)) => alg.clone(),
        _ => return Err(invalid("the request object's header has no alg")),
    };
    let kid = match header.get("kid") {
        None => None,
        Some(Value::String(kid)) => Some(kid.clone()),
        Some(_) => return Err(invalid("the request object's kid must be a string")),
    };
    Ok((alg, kid))
}

/// Whether `jwt` claims to be signed (its header's `alg` is not `none`;
/// true for anything unreadable, which verification then refuses). Tells
/// whether the client's keys are needed before they are fetched.
pub fn is_signed(jwt: &str) -> bool {
    jwt.trim()
        .split('.')
        .next()
        .and_then(|h| header(h).ok())
        .is_none_or(|(alg, _)| alg != "none")
}

/// Verifies `jwt` as a request object for `expected`: its signature (or
/// `alg=none` where allowed), then its claims (RFC 9101 §6, §10.7):
/// `client_id` equal to the query's, `iss` (if present) the client,
/// `aud` (required when signed) containing the issuer, `exp` not passed,
/// `nbf` reached, and no `request` or `request_uri` inside.
pub fn verify(jwt: &str, expected: &Expected<'_>) -> Result<RequestObject, RequestObjectError> {
    if jwt.len() > MAX_REMOTE_DOCUMENT {
        return Err(invalid("the request object is larger than 64 KiB"));
    }
    let jwt = jwt.trim();
    let parts: Vec<&str> = jwt.split('.').collect();
    let (encoded_header, payload, signature) = match parts.as_slice() {
        [h, p, s] => (*h, *p, *s),
        [_, _, _, _, _] => {
            return Err(invalid("encrypted request objects (JWE) are not supported"));
        }
        _ => return Err(invalid("the request object is not a JWT")),
    };
    let (alg, kid) = header(encoded_header)?;
    let signed = if alg == "none" {
        if !expected.allow_unsigned {
            return Err(invalid(
                "unsigned request objects (alg none) are not accepted from this client",
            ));
        }
        if !signature.is_empty() {
            return Err(invalid("an unsigned request object has an empty signature"));
        }
        false
    } else {
        let Some(alg) = SignatureAlg::parse(&alg) else {
            // Echoed only when it looks like an algorithm name.
            let shown = if alg.len() <= 16 && alg.bytes().all(|b| b.is_ascii_alphanumeric()) {
                alg.as_str()
            } else {
                "of the header"
            };
            return Err(invalid(format!(
                "the request object's alg {shown} is not supported (RS256, ES256)"
            )));
        };
        let Some(keys) = expected.keys else {
            return Err(invalid(
                "the client has no registered keys to verify a signed request object with",
            ));
        };
        if let Some(kid) = kid.as_deref() {
            if !keys.has_kid(kid) {
                return Err(RequestObjectError::UnknownKey);
            }
        }
        let message = &jwt[..encoded_header.len() + 1 + payload.len()];
        let verified = keys
            .candidates(alg, kid.as_deref())
            .filter_map(|jwk| DecodingKey::from_jwk(jwk).ok())
            .any(|key| {
                jsonwebtoken::crypto::verify(
                    signature,
                    message.as_bytes(),
                    &key,
                    alg.jsonwebtoken(),
                )
                .unwrap_or(false)
            });
        if !verified {
            return Err(invalid(
                "the request object's signature does not verify with the client's keys",
            ));
        }
        true
    };
    let bytes = URL_SAFE_NO_PAD
        .decode(payload)
        .map_err(|_| invalid("the request object's claims are not base64url"))?;
    let claims: Map<String, Value> = serde_json::from_slice(&bytes)
        .map_err(|_| invalid("the request object's claims are not a JSON object"))?;
    check_claims(&claims, signed, expected)?;
    let params = claims
        .iter()
        .filter_map(|(name, value)| match value {
            Value::String(v) => Some((name.clone(), v.clone())),
            _ => None,
        })
        .collect();
    Ok(RequestObject { params, signed })
}

fn check_claims(
    claims: &Map<String, Value>,
    signed: bool,
    expected: &Expected<'_>,
) -> Result<(), RequestObjectError> {
    if claims.contains_key("request") || claims.contains_key("request_uri") {
        return Err(invalid(
            "a request object must not contain request or request_uri",
        ));
    }
    for name in crate::authorize::REQUEST_PARAMETERS {
        if claims.get(name).is_some_and(|v| !v.is_string()) {
            return Err(invalid(format!(
                "the request object's {name} must be a string"
            )));
        }
    }
    if claims.get("client_id").and_then(Value::as_str) != Some(expected.client_id.as_str()) {
        return Err(invalid(
            "the request object's client_id must equal the client_id of the request",
        ));
    }
    match claims.get("iss") {
        None => {}
        Some(Value::String(iss)) if iss == expected.client_id.as_str() => {}
        Some(_) => {
            return Err(invalid(
                "the request object's iss must be the client's client_id",
            ))
        }
    }
    let audience_ok = match claims.get("aud") {
        None => !signed,
        Some(Value::String(aud)) => aud == expected.issuer,
        Some(Value::Array(auds)) => auds.iter().any(|a| a.as_str() == Some(expected.issuer)),
        Some(_) => false,
    };
    if !audience_ok {
        return Err(invalid(format!(
            "the request object's aud must contain the issuer {}",
            expected.issuer
        )));
    }
    let now = expected.now.unix_timestamp();
    match claims.get("exp") {
        None => {}
        Some(exp) => match exp.as_f64() {
            Some(exp) if exp > now as f64 => {}
            Some(_) => return Err(invalid("the request object has expired")),
            None => return Err(invalid("the request object's exp must be a number")),
        },
    }
    match claims.get("nbf") {
        None => {}
        Some(nbf) => match nbf.as_f64() {
            Some(nbf) if nbf <= (now + NBF_LEEWAY_SECS) as f64 => {}
            Some(_) => return Err(invalid("the request object is not valid yet (nbf)")),
            None => return Err(invalid("the request object's nbf must be a number")),
        },
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::SigningKey;
    use jsonwebtoken::{EncodingKey, Header};
    use ring::rand::SystemRandom;
    use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
    use serde_json::json;

    const ISSUER: &str = "https://auth.example";

    fn now() -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap()
    }

    struct Rsa {
        kid: String,
        key: SigningKey,
    }

    fn rsa() -> Rsa {
        let key = SigningKey::generate(now()).unwrap();
        Rsa {
            kid: key.kid.clone(),
            key,
        }
    }

    impl Rsa {
        fn set(&self) -> ClientKeySet {
            let jwk = serde_json::to_string(&self.key.public_jwk().unwrap()).unwrap();
            ClientKeySet::parse_registered(&format!(r#"{{"keys":[{jwk}]}}"#)).unwrap()
        }

        fn sign(&self, claims: &Value, kid: bool) -> String {
            let mut header = Header::new(jsonwebtoken::Algorithm::RS256);
            if kid {
                header.kid = Some(self.kid.clone());
            }
            let key = EncodingKey::from_rsa_pem(self.key.private_key_pem.as_bytes()).unwrap();
            jsonwebtoken::encode(&header, claims, &key).unwrap()
        }
    }

    fn client() -> ClientId {
        ClientId::parse("bank").unwrap()
    }

    fn claims() -> Value {
        json!({
            "iss": "bank",
            "aud": ISSUER,
            "client_id": "bank",
            "response_type": "code",
            "scope": "debt.unsecured.presentation openid",
            "redirect_uri": "https://bank.example/cb",
            "state": "s",
            "exp": 1_800_000_300,
            "max_age": 600,
        })
    }

    fn expect<'a>(client: &'a ClientId, keys: Option<&'a ClientKeySet>) -> Expected<'a> {
        Expected {
            client_id: client,
            issuer: ISSUER,
            keys,
            allow_unsigned: false,
            now: now(),
        }
    }

    fn unsigned(claims: &Value) -> String {
        let h = URL_SAFE_NO_PAD.encode(br#"{"alg":"none"}"#);
        let p = URL_SAFE_NO_PAD.encode(claims.to_string());
        format!("{h}.{p}.")
    }

    fn invalid_of(r: Result<RequestObject, RequestObjectError>) -> String {
        match r {
            Err(RequestObjectError::Invalid(d)) => d,
            other => panic!("expected invalid, got {other:?}"),
        }
    }

    #[test]
    fn an_rs256_object_verifies_and_yields_its_string_claims() {
        let key = rsa();
        let set = key.set();
        let id = client();
        for with_kid in [true, false] {
            let object = verify(&key.sign(&claims(), with_kid), &expect(&id, Some(&set))).unwrap();
            assert!(object.signed);
            assert!(object
                .params
                .contains(&("scope".into(), "debt.unsecured.presentation openid".into())));
            assert!(!object.params.iter().any(|(k, _)| k == "max_age"));
        }
    }

    #[test]
    fn an_es256_object_verifies() {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
            .unwrap();
        let point = pair.public_key().as_ref();
        let jwk = json!({"kty": "EC", "crv": "P-256", "kid": "ec",
            "x": URL_SAFE_NO_PAD.encode(&point[1..33]), "y": URL_SAFE_NO_PAD.encode(&point[33..65])});
        let set = ClientKeySet::parse_registered(&json!({ "keys": [jwk] }).to_string()).unwrap();
        let mut header = Header::new(jsonwebtoken::Algorithm::ES256);
        header.kid = Some("ec".into());
        let jwt = jsonwebtoken::encode(
            &header,
            &claims(),
            &EncodingKey::from_ec_der(pkcs8.as_ref()),
        )
        .unwrap();
        let id = client();
        assert!(verify(&jwt, &expect(&id, Some(&set))).unwrap().signed);
        // The EC key never verifies an RS256 header, nor the reverse.
        let rs = rsa();
        assert!(verify(&rs.sign(&claims(), false), &expect(&id, Some(&set))).is_err());
    }

    #[test]
    fn a_bad_signature_another_key_or_an_unknown_kid_is_refused() {
        let key = rsa();
        let other = rsa();
        let id = client();
        let set = key.set();
        let jwt = key.sign(&claims(), true);
        let (head, _) = jwt.rsplit_once('.').unwrap();
        let forged = format!("{head}.{}", URL_SAFE_NO_PAD.encode([7u8; 256]));
        assert!(invalid_of(verify(&forged, &expect(&id, Some(&set)))).contains("signature"));
        assert!(invalid_of(verify(
            &other.sign(&claims(), false),
            &expect(&id, Some(&set))
        ))
        .contains("signature"));
        assert_eq!(
            verify(&other.sign(&claims(), true), &expect(&id, Some(&set))),
            Err(RequestObjectError::UnknownKey)
        );
        // Changed claims under the original signature.
        let mut tampered = claims();
        tampered["scope"] = json!("debt.unsecured.processing");
        let parts: Vec<&str> = jwt.split('.').collect();
        let swapped = format!(
            "{}.{}.{}",
            parts[0],
            URL_SAFE_NO_PAD.encode(tampered.to_string()),
            parts[2]
        );
        assert!(verify(&swapped, &expect(&id, Some(&set))).is_err());
        // No keys at all.
        assert!(invalid_of(verify(&jwt, &expect(&id, None))).contains("no registered keys"));
        // HS256 (even "signed" with the public key) is not an accepted alg.
        let hs = jsonwebtoken::encode(
            &Header::new(jsonwebtoken::Algorithm::HS256),
            &claims(),
            &EncodingKey::from_secret(set.to_json().as_bytes()),
        )
        .unwrap();
        assert!(invalid_of(verify(&hs, &expect(&id, Some(&set)))).contains("HS256"));
    }

    #[test]
    fn alg_none_is_accepted_only_where_allowed_and_with_an_empty_signature() {
        let id = client();
        let mut claims = claims();
        claims.as_object_mut().unwrap().remove("aud");
        let jwt = unsigned(&claims);
        assert!(invalid_of(verify(&jwt, &expect(&id, None))).contains("alg none"));
        let allowed = Expected {
            allow_unsigned: true,
            ..expect(&id, None)
        };
        assert!(!verify(&jwt, &allowed).unwrap().signed);
        assert!(verify(&format!("{jwt}abc"), &allowed).is_err());
    }

    #[test]
    fn the_claims_must_fit_the_client_the_issuer_and_the_time() {
        let key = rsa();
        let set = key.set();
        let id = client();
        let check = |change: &dyn Fn(&mut Map<String, Value>)| {
            let mut c = claims();
            change(c.as_object_mut().unwrap());
            verify(&key.sign(&c, true), &expect(&id, Some(&set)))
        };
        assert!(check(&|c| {
            c.insert("aud".into(), json!(["x", ISSUER]));
        })
        .is_ok());
        for (what, change) in [
            (
                "aud",
                &(|c: &mut Map<String, Value>| {
                    c.insert("aud".into(), json!("https://other.example"));
                }) as &dyn Fn(&mut Map<String, Value>),
            ),
            ("aud", &|c| {
                c.remove("aud");
            }),
            ("expired", &|c| {
                c.insert("exp".into(), json!(1_799_999_999));
            }),
            ("nbf", &|c| {
                c.insert("nbf".into(), json!(1_800_000_100));
            }),
            ("client_id", &|c| {
                c.insert("client_id".into(), json!("other"));
            }),
            ("client_id", &|c| {
                c.remove("client_id");
            }),
            ("iss", &|c| {
                c.insert("iss".into(), json!("other"));
            }),
            ("request_uri", &|c| {
                c.insert("request_uri".into(), json!("https://x.example"));
            }),
            ("scope must be a string", &|c| {
                c.insert("scope".into(), json!(["a"]));
            }),
        ] {
            let d = invalid_of(check(change));
            assert!(d.contains(what), "{what}: {d}");
        }
    }

    #[test]
    fn malformed_objects_are_invalid_and_never_panic() {
        let id = client();
        let set = rsa().set();
        for bad in [
            "",
            "abc",
            "a.b",
            "a.b.c",
            "e30.e30.",
            "eyJhbGciOiJSUzI1NiJ9.!!!.x",
            "a.b.c.d.e",
            &"A".repeat(70_000),
        ] {
            assert!(
                matches!(
                    verify(bad, &expect(&id, Some(&set))),
                    Err(RequestObjectError::Invalid(_))
                ),
                "{bad}"
            );
        }
    }
}
