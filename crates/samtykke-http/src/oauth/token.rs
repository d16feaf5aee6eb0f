//! `POST /oauth2/token` (RFC 6749 §3.2). Asks each grant whether it takes the
//! `grant_type`; if none does, `unsupported_grant_type`.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use samtykke_core::consent::ConsentStatus;
use samtykke_core::domain::{Client, Scope};
use samtykke_core::grant;
use samtykke_core::grant::authorization_code::{self, CodeRedemptionRequest};
use samtykke_core::grant::client_credentials::{self, ClientCredentialsRequest};
use samtykke_core::id_token::{IdTokenClaims, IdTokenSubject};
use samtykke_core::opaque::OpaqueToken;
use samtykke_core::store::CodeClaim;
use samtykke_core::{OAuthError, OAuthErrorCode};
use serde::Serialize;

use crate::client_auth::authenticate_client;
use crate::error::{no_store_json, OAuthErrorResponse};
use crate::form::Form;
use crate::AppState;

/// The successful token response (RFC 6749 §5.1), as the seed documents show it.
#[derive(Debug, Serialize)]
pub struct TokenResponse {
    pub access_token: String,
    pub expires_in: i64,
    pub scope: String,
    pub token_type: &'static str,
    /// OpenID Connect Core §3.1.3.3, when `openid` was asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id_token: Option<String>,
}

pub async fn post_token(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let body = match body {
        Ok(body) => body,
        Err(rejection) => return crate::form::body_rejected(&rejection),
    };
    match issue_token(&state, &headers, &body).await {
        Ok(response) => no_store_json(&response),
        Err(error) => error.into_response(),
    }
}

async fn issue_token(
    state: &AppState,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<TokenResponse, OAuthErrorResponse> {
    let form = Form::parse(headers, body)?;
    let grant_type = form.require("grant_type")?;
    let client = authenticate_client(state, headers, &form).await?;
    match grant_type {
        "client_credentials" => {
            let request = ClientCredentialsRequest {
                audience: form.get("audience"),
                scope: form.get("scope"),
            };
            let grant = client_credentials::decide(&client, &request, &state.audiences)
                .inspect_err(|e| tracing::info!(client_id = %client.id, error = e.code.as_str(), "token refused"))?;
            let now = state.clock.now();
            let scope = grant.scope_names.clone();
            let keys = state.token_keys().await?;
            let (token, record) = grant.mint(&keys, &client, now, state.settings.access_token_ttl);
            state
                .metrics
                .token_issued("client_credentials", record.audience);
            tracing::info!(client_id = %client.id, audience = record.audience.as_key(), "access token issued");
            Ok(TokenResponse {
                access_token: token.expose().to_owned(),
                expires_in: grant::expires_in(state.settings.access_token_ttl),
                scope,
                token_type: "bearer",
                id_token: None,
            })
        }
        "authorization_code" => redeem_code(state, &client, &form).await,
        _ => Err(OAuthError::new(
            OAuthErrorCode::UnsupportedGrantType,
            "the grant_type is not supported",
        )
        .into()),
    }
}

fn invalid_grant(description: &'static str) -> OAuthErrorResponse {
    OAuthError::new(OAuthErrorCode::InvalidGrant, description).into()
}

/// The authorization-code grant (RFC 6749 §4.1.3): claims the code for
/// the client (one store step), checks its bindings, and answers with a
/// sealed token bound to the consent and, for `openid`, an ID token. A code
/// is used up by its client's first redemption, even one that fails its
/// checks (a wrong PKCE verifier or redirect URI); a replayed code revokes
/// what it issued.
async fn redeem_code(
    state: &AppState,
    client: &Client,
    form: &Form,
) -> Result<TokenResponse, OAuthErrorResponse> {
    let presented = form.require("code")?;
    let code = OpaqueToken::from_presented(presented)
        .ok_or_else(|| invalid_grant("the code is invalid, expired or already used"))?;
    let now = state.clock.now();
    let CodeClaim {
        code: record,
        consent,
        claimed,
    } = state
        .store
        .claim_authorization_code(&code.hash(), &client.id, now)
        .await?
        .ok_or_else(|| invalid_grant("the code is invalid, expired or already used"))?;
    let request = CodeRedemptionRequest {
        redirect_uri: form.get("redirect_uri"),
        code_verifier: form.get("code_verifier"),
    };
    if record.client_id == client.id && !claimed {
        // Used before, or by a concurrent redemption that claimed it first.
        let revoked = state
            .store
            .revoke_consent_tokens(&record.consent_id)
            .await?;
        tracing::warn!(client_id = %client.id, consent_id = %record.consent_id, revoked, "authorization code replayed; its tokens are revoked");
        return Err(invalid_grant(
            "the code is invalid, expired or already used",
        ));
    }
    authorization_code::check(&record, client, &request, now)
        .inspect_err(|e| tracing::info!(client_id = %client.id, reason = %e.description, "code redemption refused"))?;
    if consent.status_at(now) != ConsentStatus::Active {
        return Err(invalid_grant(
            "the consent behind the code is no longer active",
        ));
    }
    let keys = state.token_keys().await?;
    let (token, token_record) = authorization_code::mint(
        &record,
        &consent,
        &keys,
        client,
        now,
        state.settings.access_token_ttl,
    );
    let id_token = if record.scopes.contains(Scope::OpenId) {
        let secrets = state.secrets().await?;
        let signer = state.id_token_signer().await?;
        let claims = IdTokenClaims::new(
            &IdTokenSubject {
                issuer: &state.settings.issuer,
                client_id: &client.id,
                nin: &consent.nin,
                consent_id: consent.id,
                nonce: record.nonce.as_deref(),
                auth_time: consent.created_at,
            },
            &secrets.pairwise_salt,
            now,
        );
        Some(signer.sign(&claims).map_err(|e| {
            tracing::error!(error = %e, "could not sign the ID token");
            OAuthErrorResponse(OAuthError::server_error())
        })?)
    } else {
        None
    };
    state
        .metrics
        .token_issued("authorization_code", token_record.audience);
    tracing::info!(client_id = %client.id, consent_id = %consent.id, "authorization code redeemed");
    Ok(TokenResponse {
        access_token: token.expose().to_owned(),
        // From the exact lifetime, not the token's expiry (kept to the
        // second), which would make it 3598 instead of 3599.
        expires_in: grant::expires_in(authorization_code::token_lifetime(
            &consent,
            now,
            state.settings.access_token_ttl,
        )),
        scope: record.scopes.to_string(),
        token_type: "bearer",
        id_token,
    })
}
