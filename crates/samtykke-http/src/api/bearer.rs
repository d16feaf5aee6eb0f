//! Bearer-token authentication of resource-API calls (RFC 6750 §2.1).

use axum::http::{header, HeaderMap};
use samtykke_core::store::StoreError;
use samtykke_core::token::AccessTokenRecord;

use crate::AppState;

/// Why a request carries no usable token.
#[derive(Debug)]
pub enum BearerError {
    /// No `Authorization: Bearer` header at all.
    Missing,
    /// Malformed, unknown, expired or revoked.
    Invalid,
    Store(StoreError),
}

/// The live access token of the request.
pub async fn authenticate(
    state: &AppState,
    headers: &HeaderMap,
) -> Result<AccessTokenRecord, BearerError> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Err(BearerError::Missing);
    };
    let value = value.to_str().map_err(|_| BearerError::Invalid)?;
    let (scheme, token) = value.split_once(' ').ok_or(BearerError::Invalid)?;
    let token = token.trim();
    if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() || token.len() > 512 {
        return Err(BearerError::Invalid);
    }
    let record = crate::access_token::resolve(state, token)
        .await
        .map_err(BearerError::Store)?
        .ok_or(BearerError::Invalid)?;
    if record.is_active(state.clock.now()) {
        Ok(record)
    } else {
        Err(BearerError::Invalid)
    }
}
