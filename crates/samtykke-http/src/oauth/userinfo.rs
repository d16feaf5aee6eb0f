//! `GET|POST /userinfo` (OpenID Connect Core §5.3): the claims of the ID
//! token for an access token from an `openid` authorization.

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use samtykke_core::domain::Scope;
use samtykke_core::id_token::pairwise_subject;
use serde_json::json;

use crate::api::bearer::{authenticate, BearerError};
use crate::error::OAuthErrorResponse;
use crate::AppState;

/// An RFC 6750 §3 error: JSON body and a `WWW-Authenticate: Bearer` header.
fn bearer_error(
    status: StatusCode,
    error: Option<&'static str>,
    description: &'static str,
) -> Response {
    let body = match error {
        Some(e) => json!({"error": e, "error_description": description}),
        None => json!({"error": "invalid_request", "error_description": description}),
    };
    let mut response = (status, Json(body)).into_response();
    let challenge = match error {
        Some(e) => format!("Bearer realm=\"samtykke\", error=\"{e}\""),
        None => "Bearer realm=\"samtykke\"".to_owned(),
    };
    if let Ok(v) = HeaderValue::from_str(&challenge) {
        response.headers_mut().insert(header::WWW_AUTHENTICATE, v);
    }
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

pub async fn userinfo(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let token = match authenticate(&state, &headers).await {
        Ok(t) => t,
        Err(BearerError::Missing) => {
            return bearer_error(
                StatusCode::UNAUTHORIZED,
                None,
                "an access token is required",
            )
        }
        Err(BearerError::NotBearer) => {
            return bearer_error(
                StatusCode::UNAUTHORIZED,
                None,
                crate::api::bearer::NOT_BEARER,
            )
        }
        Err(BearerError::Invalid) => {
            return bearer_error(
                StatusCode::UNAUTHORIZED,
                Some("invalid_token"),
                "the access token is invalid, expired or revoked",
            )
        }
        Err(BearerError::Store(e)) => return OAuthErrorResponse::from(e).into_response(),
    };
    let Some(consent_id) = token
        .consent_id
        .filter(|_| token.scopes.contains(Scope::OpenId))
    else {
        return bearer_error(
            StatusCode::FORBIDDEN,
            Some("insufficient_scope"),
            "the access token was not issued for openid",
        );
    };
    let consent = match state.store.find_consent(&consent_id).await {
        Ok(Some(c)) => c,
        Ok(None) => {
            return bearer_error(
                StatusCode::UNAUTHORIZED,
                Some("invalid_token"),
                "the consent no longer exists",
            )
        }
        Err(e) => return OAuthErrorResponse::from(e).into_response(),
    };
    let salt = match state.secrets().await {
        Ok(s) => &s.pairwise_salt,
        Err(e) => return OAuthErrorResponse::from(e).into_response(),
    };
    let mut response = Json(json!({
        "sub": pairwise_subject(salt, &token.client_id, &consent.nin),
        "pid": consent.nin.as_str(),
        "consent_id": consent.id.to_string(),
    }))
    .into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}
