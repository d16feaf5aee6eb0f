//! `POST /oauth2/introspect` (RFC 7662). Client-authenticated; a client sees
//! only its own tokens, everything else is `{"active": false}`.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use samtykke_core::introspection::{introspect, Introspection};
use serde::Serialize;

use crate::client_auth::authenticate_client;
use crate::error::{no_store_json, OAuthErrorResponse};
use crate::form::Form;
use crate::AppState;

#[derive(Debug, Serialize)]
struct IntrospectionResponse {
    active: bool,
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    details: Option<ActiveDetails>,
}

#[derive(Debug, Serialize)]
struct ActiveDetails {
    scope: String,
    client_id: String,
    token_type: &'static str,
    exp: i64,
    iat: i64,
    aud: String,
    iss: String,
    sub: String,
}

pub async fn post_introspect(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let body = match body {
        Ok(body) => body,
        Err(rejection) => return crate::form::body_rejected(&rejection),
    };
    match introspect_token(&state, &headers, &body).await {
        Ok(response) => no_store_json(&response),
        Err(error) => error.into_response(),
    }
}

async fn introspect_token(
    state: &AppState,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<IntrospectionResponse, OAuthErrorResponse> {
    let form = Form::parse(headers, body)?;
    let client = authenticate_client(state, headers, &form).await?;
    let record = crate::access_token::resolve(state, form.require("token")?).await?;
    Ok(match introspect(record, &client.id, state.clock.now()) {
        Introspection::Inactive => IntrospectionResponse {
            active: false,
            details: None,
        },
        Introspection::Active {
            client_id,
            audience,
            scopes,
            issued_at,
            expires_at,
        } => IntrospectionResponse {
            active: true,
            details: Some(ActiveDetails {
                scope: scopes.to_string(),
                sub: client_id.to_string(),
                client_id: client_id.to_string(),
                token_type: "bearer",
                exp: expires_at.unix_timestamp(),
                iat: issued_at.unix_timestamp(),
                aud: state.audiences.url(audience),
                iss: state.settings.issuer.clone(),
            }),
        },
    })
}
