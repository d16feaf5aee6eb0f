//! `POST /oauth2/token` (RFC 6749 §3.2). Asks each grant whether it takes the
//! `grant_type`; if none does, `unsupported_grant_type`.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use samtykke_core::grant::client_credentials::{self, ClientCredentialsRequest};
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
            let scope = grant.scopes.to_string();
            let (token, record) = grant.mint(&client, now, state.settings.access_token_ttl);
            state.store.insert_access_token(&record).await?;
            state
                .metrics
                .token_issued("client_credentials", record.audience);
            tracing::info!(client_id = %client.id, audience = record.audience.as_key(), "access token issued");
            Ok(TokenResponse {
                access_token: token.expose().to_owned(),
                // One second less than the real lifetime, so that a client
                // never holds a token it believes valid after it expired.
                expires_in: (state.settings.access_token_ttl.whole_seconds() - 1).max(1),
                scope,
                token_type: "bearer",
            })
        }
        _ => Err(OAuthError::new(
            OAuthErrorCode::UnsupportedGrantType,
            "the grant_type is not supported",
        )
        .into()),
    }
}
