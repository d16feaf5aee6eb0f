//! The authorization-code grant, token-endpoint half (RFC 6749 §4.1.3,
//! RFC 7636 §4.6): a code is short-lived, single use, and bound to its
//! client, redirect URI, PKCE challenge and nonce.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use time::{Duration, OffsetDateTime};

use crate::consent::{Consent, ConsentId};
use crate::domain::{ApiAudience, Client, ClientId, ScopeSet};
use crate::error::{OAuthError, OAuthErrorCode};
use crate::flow::AuthFlow;
use crate::opaque::OpaqueToken;
use crate::token::{AccessToken, AccessTokenRecord, TokenGrant, TokenHash};

/// How long a code can be redeemed (RFC 6749 §4.1.2 recommends ≤ 10 min;
/// FAPI and our contract: 60 s).
pub const CODE_LIFETIME: Duration = Duration::seconds(60);

/// What the server remembers of an issued code (only its hash).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthorizationCodeRecord {
    pub hash: TokenHash,
    pub client_id: ClientId,
    pub redirect_uri: String,
    pub consent_id: ConsentId,
    /// The purpose scope, plus `openid` when it was asked for.
    pub scopes: ScopeSet,
    pub nonce: Option<String>,
    pub code_challenge: Option<String>,
    pub issued_at: OffsetDateTime,
    pub expires_at: OffsetDateTime,
    pub used: bool,
}

/// A new code for the consent a flow just created.
pub fn issue(
    flow: &AuthFlow,
    consent: &Consent,
    now: OffsetDateTime,
) -> (OpaqueToken, AuthorizationCodeRecord) {
    let code = OpaqueToken::generate();
    let record = AuthorizationCodeRecord {
        hash: code.hash(),
        client_id: flow.client_id.clone(),
        redirect_uri: flow.redirect_uri.clone(),
        consent_id: consent.id,
        scopes: ScopeSet::for_purpose(consent.purpose, flow.openid),
        nonce: flow.nonce.clone(),
        code_challenge: flow.code_challenge.clone(),
        issued_at: now,
        expires_at: now + CODE_LIFETIME,
        used: false,
    };
    (code, record)
}

/// The grant-specific parameters of a code redemption.
#[derive(Debug, Clone, Default)]
pub struct CodeRedemptionRequest<'a> {
    pub redirect_uri: Option<&'a str>,
    pub code_verifier: Option<&'a str>,
}

fn invalid_grant(description: &'static str) -> OAuthError {
    OAuthError::new(OAuthErrorCode::InvalidGrant, description)
}

/// Checks an unused code against the redeeming client and request.
/// Every failure is `invalid_grant` (RFC 6749 §5.2).
pub fn check(
    code: &AuthorizationCodeRecord,
    client: &Client,
    request: &CodeRedemptionRequest<'_>,
    now: OffsetDateTime,
) -> Result<(), OAuthError> {
    if code.client_id != client.id {
        return Err(invalid_grant("the code was issued to another client"));
    }
    if code.used {
        return Err(invalid_grant("the code has already been used"));
    }
    if now >= code.expires_at {
        return Err(invalid_grant("the code has expired"));
    }
    match request.redirect_uri {
        None => {
            return Err(invalid_grant(
                "redirect_uri is required and must equal the one of the authorization request",
            ))
        }
        Some(uri) if uri != code.redirect_uri => {
            return Err(invalid_grant(
                "redirect_uri does not match the authorization request",
            ))
        }
        Some(_) => {}
    }
    match (&code.code_challenge, request.code_verifier) {
        (None, None) => Ok(()),
        (None, Some(_)) => Err(invalid_grant(
            "code_verifier sent, but the authorization request had no code_challenge",
        )),
        (Some(_), None) => Err(invalid_grant("code_verifier is required")),
        (Some(challenge), Some(verifier)) => {
            if !is_code_verifier(verifier) {
                return Err(invalid_grant(
                    "code_verifier must be 43 to 128 characters of A-Z a-z 0-9 - . _ ~",
                ));
            }
            let computed = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
            if bool::from(computed.as_bytes().ct_eq(challenge.as_bytes())) {
                Ok(())
            } else {
                Err(invalid_grant(
                    "code_verifier does not match the code_challenge",
                ))
            }
        }
    }
}

/// How long an authorization-code token lives from `now`: the configured
/// lifetime, but never past its consent's expiry. A single-use consent
/// expires 10 minutes after it was given, so its token lives what is left
/// of those 10 minutes (`expires_in` 599 when the code is redeemed within
/// the second the consent was given, 569 thirty seconds later; see
/// [`super::expires_in`]).
pub fn token_lifetime(consent: &Consent, now: OffsetDateTime, lifetime: Duration) -> Duration {
    lifetime.min(consent.expires_at - now)
}

/// RFC 7636 §4.1.
fn is_code_verifier(v: &str) -> bool {
    (43..=128).contains(&v.len())
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
}

/// The access token for a redeemed code: sealed under `keys` like a
/// client-credentials token (see [`crate::token`]), so that issuing it
/// writes nothing; bound to the consent, for the debt API, and never
/// outliving the consent. `client` is the redeeming client (its token
/// generation goes into the seal).
pub fn mint(
    code: &AuthorizationCodeRecord,
    consent: &Consent,
    keys: &crate::token::TokenKeys,
    client: &Client,
    now: OffsetDateTime,
    lifetime: Duration,
) -> (AccessToken, AccessTokenRecord) {
    let grant = TokenGrant {
        client_id: code.client_id.clone(),
        audience: ApiAudience::Debt,
        scopes: code.scopes.clone(),
        issued_at: now,
        expires_at: now + token_lifetime(consent, now, lifetime),
        consent_id: Some(code.consent_id),
    };
    keys.seal(grant, client.token_generation)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{ClientName, ClientSecret, OrgNumber, Purpose, Scope};

    fn client(id: &str) -> Client {
        Client {
            id: ClientId::parse(id).unwrap(),
            secret_hash: ClientSecret::generate().hash(),
            name: ClientName::parse("Bank").unwrap(),
            org_number: OrgNumber::parse("923609016").unwrap(),
            redirect_uris: vec![],
            purposes: vec![Purpose::Presentation],
            may_create_agreements: false,
            may_read_events: false,
            require_pkce: false,
            disabled: false,
            created_at: OffsetDateTime::UNIX_EPOCH,
            token_generation: 0,
            request_objects: Default::default(),
        }
    }

    fn code(challenge: Option<&str>) -> AuthorizationCodeRecord {
        AuthorizationCodeRecord {
            hash: OpaqueToken::generate().hash(),
            client_id: ClientId::parse("a").unwrap(),
            redirect_uri: "https://bank.example/cb".into(),
            consent_id: ConsentId::generate(),
            scopes: ScopeSet::from_scopes(&[Scope::DebtPresentation]).unwrap(),
            nonce: None,
            code_challenge: challenge.map(str::to_owned),
            issued_at: OffsetDateTime::UNIX_EPOCH,
            expires_at: OffsetDateTime::UNIX_EPOCH + CODE_LIFETIME,
            used: false,
        }
    }

    fn req<'a>(uri: Option<&'a str>, verifier: Option<&'a str>) -> CodeRedemptionRequest<'a> {
        CodeRedemptionRequest {
            redirect_uri: uri,
            code_verifier: verifier,
        }
    }

    const URI: Option<&str> = Some("https://bank.example/cb");
    // RFC 7636 appendix B.
    const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
    const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

    #[test]
    fn a_code_binds_client_redirect_uri_time_and_single_use() {
        let t = OffsetDateTime::UNIX_EPOCH;
        assert!(check(&code(None), &client("a"), &req(URI, None), t).is_ok());
        let fails = |c: &AuthorizationCodeRecord, who: &str, r: CodeRedemptionRequest<'_>, at| {
            check(c, &client(who), &r, at).unwrap_err().code == OAuthErrorCode::InvalidGrant
        };
        assert!(fails(&code(None), "b", req(URI, None), t));
        assert!(fails(&code(None), "a", req(None, None), t));
        assert!(fails(
            &code(None),
            "a",
            req(Some("https://bank.example/cb/"), None),
            t
        ));
        assert!(fails(&code(None), "a", req(URI, None), t + CODE_LIFETIME));
        let mut used = code(None);
        used.used = true;
        assert!(fails(&used, "a", req(URI, None), t));
    }

    #[test]
    fn pkce_s256_verifies_and_refuses_mismatch_absence_and_downgrade() {
        let t = OffsetDateTime::UNIX_EPOCH;
        let a = client("a");
        assert!(check(&code(Some(CHALLENGE)), &a, &req(URI, Some(VERIFIER)), t).is_ok());
        for bad in [
            None,
            Some("short"),
            Some(&"x".repeat(43)[..]),
            Some(&"x".repeat(129)[..]),
        ] {
            assert!(
                check(&code(Some(CHALLENGE)), &a, &req(URI, bad), t).is_err(),
                "{bad:?}"
            );
        }
        assert!(check(&code(None), &a, &req(URI, Some(VERIFIER)), t).is_err());
    }
}
