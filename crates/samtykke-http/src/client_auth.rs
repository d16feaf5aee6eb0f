//! Client authentication with HTTP Basic (`client_secret_basic`,
//! RFC 6749 §2.3.1): the only method this server advertises.

use std::sync::Arc;

use axum::http::{header, HeaderMap};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use percent_encoding::percent_decode_str;
use samtykke_core::domain::{Client, ClientId, ClientSecret};
use samtykke_core::OAuthError;

use crate::error::OAuthErrorResponse;
use crate::form::Form;
use crate::AppState;

/// Credentials as presented, before they are checked.
struct Presented {
    client_id: String,
    secret: ClientSecret,
}

/// Decodes `Authorization: Basic …`. Id and secret are form-urlencoded
/// before base64 (RFC 6749 §2.3.1), so they are decoded here.
fn basic_credentials(headers: &HeaderMap) -> Result<Option<Presented>, OAuthError> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    let value = value.to_str().map_err(|_| OAuthError::invalid_client())?;
    let (scheme, encoded) = value
        .split_once(' ')
        .ok_or_else(OAuthError::invalid_client)?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err(OAuthError::invalid_client());
    }
    let decoded = STANDARD
        .decode(encoded.trim())
        .map_err(|_| OAuthError::invalid_client())?;
    let decoded = String::from_utf8(decoded).map_err(|_| OAuthError::invalid_client())?;
    let (id, secret) = decoded
        .split_once(':')
        .ok_or_else(OAuthError::invalid_client)?;
    Ok(Some(Presented {
        client_id: form_decode(id)?,
        secret: ClientSecret::from_presented(form_decode(secret)?),
    }))
}

fn form_decode(s: &str) -> Result<String, OAuthError> {
    let plus_as_space = s.replace('+', " ");
    percent_decode_str(&plus_as_space)
        .decode_utf8()
        .map(|c| c.into_owned())
        .map_err(|_| OAuthError::invalid_client())
}

/// Authenticates the calling client. Unknown client, wrong secret and
/// disabled client all answer the same `invalid_client`, at the same cost.
/// The client comes from the process's client cache (see `client_cache`).
pub async fn authenticate_client(
    state: &AppState,
    headers: &HeaderMap,
    form: &Form,
) -> Result<Arc<Client>, OAuthErrorResponse> {
    let presented = basic_credentials(headers)?;
    if form.get("client_secret").is_some() || form.get("client_assertion").is_some() {
        return Err(OAuthError::invalid_request(
            "only client_secret_basic client authentication is supported",
        )
        .into());
    }
    let presented = presented.ok_or_else(OAuthError::invalid_client)?;
    if let Some(form_id) = form.get("client_id") {
        if form_id != presented.client_id {
            return Err(OAuthError::invalid_request(
                "client_id does not match the authenticated client",
            )
            .into());
        }
    }
    let client = match ClientId::parse(&presented.client_id) {
        Ok(id) => state.client(&id).await?,
        Err(_) => None,
    };
    match client {
        Some(client) if client.secret_hash.verify(&presented.secret) && !client.disabled => {
            Ok(client)
        }
        Some(_) => Err(OAuthError::invalid_client().into()),
        None => {
            // Same work as a real comparison.
            let _ = state.dummy_secret_hash.verify(&presented.secret);
            Err(OAuthError::invalid_client().into())
        }
    }
}
