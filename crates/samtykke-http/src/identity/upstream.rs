//! Identification through an upstream OpenID Connect provider (ID-porten or
//! any other), as its relying party: discovery at start-up, the
//! authorization-code flow with PKCE S256, `state` and `nonce`, ID-token
//! verification against the provider's JWKS (fetched again when a token
//! names a key it does not hold: the provider's key rotation), the `acr`
//! when a level is required, and the national identity number from a claim
//! (`pid` by default). All JOSE is the `openidconnect` crate's (and, for
//! `private_key_jwt`, `jsonwebtoken`'s).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::RwLock;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use openidconnect::core::{
    CoreAuthenticationFlow, CoreClient, CoreClientAuthMethod, CoreGenderClaim, CoreJsonWebKeySet,
    CoreJweContentEncryptionAlgorithm, CoreJwsSigningAlgorithm,
};
use openidconnect::{
    AdditionalClaims, AuthType, AuthenticationContextClass, AuthorizationCode,
    ClaimsVerificationError, ClientId, ClientSecret, CsrfToken, EndpointMaybeSet, EndpointNotSet,
    EndpointSet, IdToken, IdTokenVerifier, IssuerUrl, Nonce, PkceCodeChallenge, PkceCodeVerifier,
    ProviderMetadataWithLogout, RedirectUrl, Scope, SignatureVerificationError, TokenResponse,
};
use samtykke_core::domain::{Nin, NinPolicy};
use samtykke_core::Clock;
use serde::{Deserialize, Serialize};

use super::{IdentityProvider, LoginFailure, LoginStart, Pending};

/// Samtykke's callback path under its issuer: what operators register at
/// the provider as redirect URI (`{issuer}/login/callback`).
pub const CALLBACK_PATH: &str = "/login/callback";

/// How far the provider's clock may be from ours (ID-token `exp`, `iat`).
pub const CLOCK_SKEW: Duration = Duration::from_secs(120);

/// How long the discovered metadata is used before it is fetched again
/// (on the next login; a failed refresh keeps the old one).
pub const METADATA_REFRESH: Duration = Duration::from_secs(3600);

/// Time limit of every request to the provider.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// How Samtykke authenticates to the provider's token endpoint.
#[derive(Clone)]
pub enum ClientAuth {
    /// `client_secret_basic` (or `client_secret_post` when the provider
    /// supports only that).
    Secret(String),
    /// `private_key_jwt` (RFC 7523) with an RSA key (PEM) and its `kid`.
    PrivateKey { pem: String, kid: Option<String> },
}

impl std::fmt::Debug for ClientAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Secret(_) => f.write_str("Secret(…)"),
            Self::PrivateKey { kid, .. } => write!(f, "PrivateKey {{ kid: {kid:?}, pem: … }}"),
        }
    }
}

/// The upstream provider as configured.
#[derive(Debug, Clone)]
pub struct UpstreamConfig {
    /// The provider's issuer identifier.
    pub issuer: String,
    pub client_id: String,
    pub auth: ClientAuth,
    /// The ID-token claim holding the national identity number.
    pub pid_claim: String,
    /// Scopes asked for, space-separated (`openid` is always among them).
    pub scope: String,
    /// Levels of assurance asked for (`acr_values`), space-separated; when
    /// set, the ID token's `acr` must be one of them or above.
    pub acr_values: Option<String>,
    /// Samtykke's callback: `{issuer}/login/callback`.
    pub redirect_uri: String,
}

/// Why the provider could not be used at start-up.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("the upstream issuer is not a valid URL: {0}")]
    Issuer(String),
    #[error("the callback URL is not valid: {0}")]
    Callback(String),
    #[error("the upstream private key is not a usable RSA private key in PEM: {0}")]
    PrivateKey(String),
    #[error("could not discover the upstream OpenID provider at {issuer}: {reason}")]
    Discovery { issuer: String, reason: String },
    #[error("the upstream OpenID provider at {issuer} is not usable: {reason}")]
    Unusable { issuer: String, reason: String },
}

/// Every claim of the ID token beyond the standard ones, so that the
/// configured number claim can be read by name.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OtherClaims(HashMap<String, serde_json::Value>);
impl AdditionalClaims for OtherClaims {}

type UpstreamIdToken = IdToken<
    OtherClaims,
    CoreGenderClaim,
    CoreJweContentEncryptionAlgorithm,
    CoreJwsSigningAlgorithm,
>;

type Rp = CoreClient<
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointMaybeSet,
    EndpointMaybeSet,
>;

/// What discovery found.
struct Discovered {
    metadata: ProviderMetadataWithLogout,
    jwks: CoreJsonWebKeySet,
    at: Instant,
}

/// The relying party of one upstream provider.
pub struct Upstream {
    config: UpstreamConfig,
    issuer: IssuerUrl,
    redirect: RedirectUrl,
    signing_key: Option<jsonwebtoken::EncodingKey>,
    http: openidconnect::reqwest::Client,
    /// The server's clock: ID-token times and client assertions.
    clock: Arc<dyn Clock>,
    discovered: RwLock<Arc<Discovered>>,
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstream")
            .field("issuer", &self.config.issuer)
            .finish_non_exhaustive()
    }
}

impl Upstream {
    /// Checks the configuration and discovers the provider (its metadata
    /// and JWKS); an error says clearly what is wrong.
    pub async fn discover(
        config: UpstreamConfig,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, UpstreamError> {
        let issuer = IssuerUrl::new(config.issuer.clone())
            .map_err(|e| UpstreamError::Issuer(e.to_string()))?;
        let redirect = RedirectUrl::new(config.redirect_uri.clone())
            .map_err(|e| UpstreamError::Callback(e.to_string()))?;
        let signing_key = match &config.auth {
            ClientAuth::Secret(_) => None,
            ClientAuth::PrivateKey { pem, .. } => Some(
                jsonwebtoken::EncodingKey::from_rsa_pem(pem.as_bytes())
                    .map_err(|e| UpstreamError::PrivateKey(e.to_string()))?,
            ),
        };
        let http = openidconnect::reqwest::Client::builder()
            // SSRF: never follow a provider's redirect elsewhere.
            .redirect(openidconnect::reqwest::redirect::Policy::none())
            .timeout(REQUEST_TIMEOUT)
            .build()
            .map_err(|e| UpstreamError::Discovery {
                issuer: config.issuer.clone(),
                reason: e.to_string(),
            })?;
        let discovered = fetch_discovery(&issuer, &http).await?;
        Ok(Self {
            config,
            issuer,
            redirect,
            signing_key,
            http,
            clock,
            discovered: RwLock::new(Arc::new(discovered)),
        })
    }

    /// The callback URL to register at the provider.
    pub fn redirect_uri(&self) -> &str {
        &self.config.redirect_uri
    }

    fn current(&self) -> Arc<Discovered> {
        match self.discovered.read() {
            Ok(d) => d.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    fn replace(&self, discovered: Discovered) {
        let fresh = Arc::new(discovered);
        match self.discovered.write() {
            Ok(mut d) => *d = fresh,
            Err(poisoned) => *poisoned.into_inner() = fresh,
        }
    }

    /// Fetches the metadata again when it is older than
    /// [`METADATA_REFRESH`]; a failure keeps what we have.
    async fn refresh_if_old(&self) {
        if self.current().at.elapsed() < METADATA_REFRESH {
            return;
        }
        match fetch_discovery(&self.issuer, &self.http).await {
            Ok(d) => self.replace(d),
            Err(e) => {
                tracing::warn!(error = %e, "upstream discovery refresh failed; keeping the old metadata")
            }
        }
    }

    /// Fetches the JWKS again (a token named a key we do not hold).
    async fn refresh_jwks(&self) -> Result<(), String> {
        let current = self.current();
        let jwks = CoreJsonWebKeySet::fetch_async(current.metadata.jwks_uri(), &self.http)
            .await
            .map_err(|e| format!("JWKS fetch failed: {e}"))?;
        self.replace(Discovered {
            metadata: current.metadata.clone(),
            jwks,
            at: current.at,
        });
        tracing::info!("fetched the upstream provider's JWKS again (key rotation)");
        Ok(())
    }

    fn client(&self, metadata: &ProviderMetadataWithLogout) -> Rp {
        let secret = match &self.config.auth {
            ClientAuth::Secret(s) => Some(ClientSecret::new(s.clone())),
            ClientAuth::PrivateKey { .. } => None,
        };
        let only_post = metadata
            .token_endpoint_auth_methods_supported()
            .is_some_and(|m| {
                m.contains(&CoreClientAuthMethod::ClientSecretPost)
                    && !m.contains(&CoreClientAuthMethod::ClientSecretBasic)
            });
        let client = CoreClient::from_provider_metadata(
            metadata.clone(),
            ClientId::new(self.config.client_id.clone()),
            secret,
        )
        .set_redirect_uri(self.redirect.clone());
        if only_post || self.signing_key.is_some() {
            client.set_auth_type(AuthType::RequestBody)
        } else {
            client
        }
    }

    /// The `private_key_jwt` client assertion (RFC 7523 §2.2): issuer and
    /// subject our client id, audience the provider's issuer.
    fn client_assertion(&self, key: &jsonwebtoken::EncodingKey) -> Result<String, String> {
        #[derive(Serialize)]
        struct Assertion<'a> {
            iss: &'a str,
            sub: &'a str,
            aud: &'a str,
            jti: String,
            iat: u64,
            exp: u64,
        }
        let now = u64::try_from(self.clock.now().unix_timestamp()).map_err(|e| e.to_string())?;
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
        if let ClientAuth::PrivateKey { kid, .. } = &self.config.auth {
            header.kid = kid.clone();
        }
        let claims = Assertion {
            iss: &self.config.client_id,
            sub: &self.config.client_id,
            aud: self.issuer.as_str(),
            jti: uuid::Uuid::new_v4().to_string(),
            iat: now,
            exp: now + 60,
        };
        jsonwebtoken::encode(&header, &claims, key).map_err(|e| e.to_string())
    }

    /// Verifies the ID token against the JWKS we hold.
    fn verify(
        &self,
        discovered: &Discovered,
        id_token: &UpstreamIdToken,
        nonce: &str,
        policy: NinPolicy,
    ) -> Result<Result<Nin, LoginFailure>, ClaimsVerificationError> {
        let skew = chrono::Duration::from_std(CLOCK_SKEW).unwrap_or_default();
        let now = self.clock.now();
        let now = chrono::DateTime::from_timestamp(now.unix_timestamp(), now.nanosecond())
            .unwrap_or_default();
        let verifier = IdTokenVerifier::new_public_client(
            ClientId::new(self.config.client_id.clone()),
            self.issuer.clone(),
            discovered.jwks.clone(),
        )
        .set_allowed_algs(signing_algorithms(&discovered.metadata))
        // `exp` may be up to the skew in our past, `iat` up to it in our future.
        .set_time_fn(move || now - skew)
        .set_issue_time_verifier_fn(move |iat| {
            if iat > now + skew {
                Err("issued in the future".to_owned())
            } else {
                Ok(())
            }
        });
        let claims = id_token.claims(&verifier, &Nonce::new(nonce.to_owned()))?;
        if let Some(required) = &self.config.acr_values {
            let acr = claims.auth_context_ref().map(|a| a.as_str());
            if !acr_satisfies(acr, required) {
                return Ok(Err(LoginFailure::Unacceptable(format!(
                    "the ID token's acr {acr:?} is below the required {required}"
                ))));
            }
        }
        Ok(self.pid_of(claims.additional_claims(), policy))
    }

    /// The national identity number from the configured claim.
    fn pid_of(&self, claims: &OtherClaims, policy: NinPolicy) -> Result<Nin, LoginFailure> {
        let name = &self.config.pid_claim;
        match claims.0.get(name) {
            None | Some(serde_json::Value::Null) => Err(LoginFailure::Unacceptable(format!(
                "the ID token has no {name} claim"
            ))),
            Some(serde_json::Value::String(value)) => Nin::parse(value.trim(), policy)
                .map_err(|e| {
                    LoginFailure::Unacceptable(format!(
                        "the ID token's {name} claim is not an acceptable national identity number: {e}"
                    ))
                }),
            Some(_) => Err(LoginFailure::Unacceptable(format!(
                "the ID token's {name} claim is not a string"
            ))),
        }
    }

    /// Exchanges the code and verifies the ID token (once more after
    /// fetching the JWKS again when the token names an unknown key).
    async fn exchange(
        &self,
        code: &str,
        pending: &Pending,
        policy: NinPolicy,
    ) -> Result<Nin, LoginFailure> {
        self.refresh_if_old().await;
        let current = self.current();
        let client = self.client(&current.metadata);
        let mut request = client
            .exchange_code(AuthorizationCode::new(code.to_owned()))
            .map_err(|e| LoginFailure::Failed(format!("no token endpoint: {e}")))?
            .set_pkce_verifier(PkceCodeVerifier::new(pending.pkce_verifier.clone()));
        if let Some(key) = &self.signing_key {
            let assertion = self.client_assertion(key).map_err(|e| {
                LoginFailure::Failed(format!("could not sign the client assertion: {e}"))
            })?;
            request = request
                .add_extra_param(
                    "client_assertion_type",
                    "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                )
                .add_extra_param("client_assertion", assertion);
        }
        let response = request.request_async(&self.http).await.map_err(|e| {
            LoginFailure::Failed(format!("the token request failed: {}", token_error(&e)))
        })?;
        let raw = response
            .id_token()
            .ok_or_else(|| LoginFailure::Failed("the token response has no ID token".to_owned()))?
            .to_string();
        let id_token: UpstreamIdToken = raw
            .parse()
            .map_err(|e| LoginFailure::Failed(format!("the ID token does not parse: {e}")))?;
        match self.verify(&current, &id_token, &pending.nonce, policy) {
            Ok(result) => result,
            Err(ClaimsVerificationError::SignatureVerification(
                SignatureVerificationError::NoMatchingKey,
            )) => {
                self.refresh_jwks().await.map_err(LoginFailure::Failed)?;
                match self.verify(&self.current(), &id_token, &pending.nonce, policy) {
                    Ok(result) => result,
                    Err(e) => Err(LoginFailure::Failed(format!(
                        "the ID token did not verify: {e}"
                    ))),
                }
            }
            Err(e) => Err(LoginFailure::Failed(format!(
                "the ID token did not verify: {e}"
            ))),
        }
    }
}

/// A token-endpoint failure for the log: the provider's error code and
/// description, or the kind of failure (never the request, which holds the
/// client's credentials).
fn token_error<RE: std::error::Error + 'static>(
    e: &openidconnect::RequestTokenError<
        RE,
        openidconnect::StandardErrorResponse<openidconnect::core::CoreErrorResponseType>,
    >,
) -> String {
    match e {
        openidconnect::RequestTokenError::ServerResponse(r) => r.to_string(),
        openidconnect::RequestTokenError::Request(re) => error_chain(re),
        openidconnect::RequestTokenError::Parse(pe, _) => format!("unparsable answer: {pe}"),
        openidconnect::RequestTokenError::Other(o) => o.clone(),
    }
}

#[async_trait]
impl IdentityProvider for Upstream {
    fn name(&self) -> &'static str {
        "upstream"
    }

    fn begin(&self) -> LoginStart {
        let current = self.current();
        let client = self.client(&current.metadata);
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let mut request = client
            .authorize_url(
                CoreAuthenticationFlow::AuthorizationCode,
                CsrfToken::new_random,
                Nonce::new_random,
            )
            .set_pkce_challenge(challenge);
        for scope in self
            .config
            .scope
            .split_whitespace()
            .filter(|s| *s != "openid")
        {
            request = request.add_scope(Scope::new(scope.to_owned()));
        }
        if let Some(acr) = &self.config.acr_values {
            for value in acr.split_whitespace() {
                request = request
                    .add_auth_context_value(AuthenticationContextClass::new(value.to_owned()));
            }
        }
        let (url, state, nonce) = request.url();
        LoginStart::Redirect {
            url: url.to_string(),
            pending: Pending {
                state: state.secret().clone(),
                nonce: nonce.secret().clone(),
                pkce_verifier: verifier.secret().clone(),
            },
        }
    }

    async fn complete(
        &self,
        params: &[(String, String)],
        pending: Option<&Pending>,
        policy: NinPolicy,
    ) -> Result<Nin, LoginFailure> {
        let field = |name: &str| crate::pages::field(params, name);
        // RFC 9207: an `iss` in the callback must be our provider's.
        if let Some(iss) = field("iss") {
            if iss != self.issuer.as_str() {
                return Err(LoginFailure::Failed(format!(
                    "the callback came with another issuer ({iss})"
                )));
            }
        }
        match field("error") {
            Some("access_denied") => return Err(LoginFailure::Cancelled),
            Some(error) => {
                let error: String = error.chars().take(64).collect();
                return Err(LoginFailure::Failed(format!(
                    "the provider answered error={error}"
                )));
            }
            None => {}
        }
        let pending =
            pending.ok_or_else(|| LoginFailure::Failed("no login in progress".to_owned()))?;
        let code = field("code")
            .filter(|c| !c.is_empty())
            .ok_or_else(|| LoginFailure::Failed("the callback has no code".to_owned()))?;
        self.exchange(code, pending, policy).await
    }

    fn end_session_url(&self, return_to: &str) -> Option<String> {
        let current = self.current();
        let endpoint = current
            .metadata
            .additional_metadata()
            .end_session_endpoint
            .as_ref()?;
        let mut url = url::Url::parse(endpoint.as_str()).ok()?;
        url.query_pairs_mut()
            .append_pair("client_id", &self.config.client_id)
            .append_pair("post_logout_redirect_uri", return_to);
        Some(url.to_string())
    }
}

/// The ID-token signing algorithms to accept: the asymmetric ones the
/// provider lists (never `none`, never a shared-secret HMAC), or RS256 (the
/// OpenID Connect default) when it lists none of them.
fn signing_algorithms(metadata: &ProviderMetadataWithLogout) -> Vec<CoreJwsSigningAlgorithm> {
    let asymmetric: Vec<CoreJwsSigningAlgorithm> = metadata
        .id_token_signing_alg_values_supported()
        .iter()
        .filter(|alg| {
            !matches!(
                alg,
                CoreJwsSigningAlgorithm::None
                    | CoreJwsSigningAlgorithm::HmacSha256
                    | CoreJwsSigningAlgorithm::HmacSha384
                    | CoreJwsSigningAlgorithm::HmacSha512
            )
        })
        .cloned()
        .collect();
    if asymmetric.is_empty() {
        vec![CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256]
    } else {
        asymmetric
    }
}

/// Whether the ID token's `acr` meets one of the `required` levels
/// (space-separated): the same level, or a higher one on a ladder we know
/// (ID-porten's `idporten-loa-substantial` < `idporten-loa-high`, eIDAS
/// `low` < `substantial` < `high`, and the older `Level3` < `Level4`).
pub fn acr_satisfies(acr: Option<&str>, required: &str) -> bool {
    const LADDERS: [&[&str]; 3] = [
        &[
            "idporten-loa-low",
            "idporten-loa-substantial",
            "idporten-loa-high",
        ],
        &[
            "http://eidas.europa.eu/LoA/low",
            "http://eidas.europa.eu/LoA/substantial",
            "http://eidas.europa.eu/LoA/high",
        ],
        &["Level3", "Level4"],
    ];
    let Some(acr) = acr else {
        return false;
    };
    required.split_whitespace().any(|wanted| {
        wanted == acr
            || LADDERS.iter().any(|ladder| {
                match (
                    ladder.iter().position(|l| *l == wanted),
                    ladder.iter().position(|l| *l == acr),
                ) {
                    (Some(w), Some(a)) => a >= w,
                    _ => false,
                }
            })
    })
}

async fn fetch_discovery(
    issuer: &IssuerUrl,
    http: &openidconnect::reqwest::Client,
) -> Result<Discovered, UpstreamError> {
    let metadata = ProviderMetadataWithLogout::discover_async(issuer.clone(), http)
        .await
        .map_err(|e| UpstreamError::Discovery {
            issuer: issuer.to_string(),
            reason: error_chain(&e),
        })?;
    if metadata.token_endpoint().is_none() {
        return Err(UpstreamError::Unusable {
            issuer: issuer.to_string(),
            reason: "its metadata has no token_endpoint".to_owned(),
        });
    }
    let jwks = CoreJsonWebKeySet::fetch_async(metadata.jwks_uri(), http)
        .await
        .map_err(|e| UpstreamError::Discovery {
            issuer: issuer.to_string(),
            reason: format!("its JWKS could not be fetched: {}", error_chain(&e)),
        })?;
    Ok(Discovered {
        metadata,
        jwks,
        at: Instant::now(),
    })
}

/// An error with its sources, for a start-up message or a log line.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acr_meets_the_same_or_a_higher_level() {
        let high = "idporten-loa-high";
        assert!(acr_satisfies(Some("idporten-loa-high"), high));
        assert!(!acr_satisfies(Some("idporten-loa-substantial"), high));
        assert!(acr_satisfies(
            Some("idporten-loa-high"),
            "idporten-loa-substantial"
        ));
        assert!(acr_satisfies(Some("Level4"), "Level3"));
        assert!(!acr_satisfies(Some("Level3"), "Level4"));
        assert!(!acr_satisfies(None, high));
        assert!(!acr_satisfies(Some("something-else"), high));
        assert!(acr_satisfies(Some("custom"), "other custom"));
    }
}
