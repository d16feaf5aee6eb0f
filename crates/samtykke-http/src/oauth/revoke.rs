//! `POST /oauth2/revoke` (RFC 7009). Client-authenticated. Unknown tokens
//! answer 200 (§2.2); a token issued to another client is refused with
//! `unauthorized_client` (§2.1) and left alone.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use samtykke_core::OAuthError;

use crate::client_auth::authenticate_client;
use crate::error::{no_store, OAuthErrorResponse};
use crate::form::Form;
use crate::AppState;

pub async fn post_revoke(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let body = match body {
        Ok(body) => body,
        Err(rejection) => return crate::form::body_rejected(&rejection),
    };
    match revoke_token(&state, &headers, &body).await {
        Ok(()) => {
            let mut response = StatusCode::OK.into_response();
            no_store(response.headers_mut());
            response
        }
        Err(error) => error.into_response(),
    }
}

async fn revoke_token(
    state: &AppState,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(), OAuthErrorResponse> {
    let form = Form::parse(headers, body)?;
    let client = authenticate_client(state, headers, &form).await?;
    // token_type_hint is optional and may be ignored (§2.1): there is one
    // kind of revocable token.
    let Some(record) = crate::access_token::resolve(state, form.require("token")?).await? else {
        return Ok(());
    };
    if record.client_id != client.id {
        return Err(
            OAuthError::unauthorized_client("the token was not issued to this client").into(),
        );
    }
    state.store.revoke_access_token(&record).await?;
    tracing::info!(client_id = %client.id, "access token revoked");
    Ok(())
}
