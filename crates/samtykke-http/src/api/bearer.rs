//! Bearer-token authentication of resource-API calls (RFC 6750 §2.1).

use axum::http::{header, HeaderMap};
use samtykke_core::store::StoreError;
use samtykke_core::token::AccessTokenRecord;

use crate::access_token::Resolved;
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
    let record = authenticate_unchecked(state, headers)
        .await?
        .checked(state)
        .await
        .map_err(BearerError::Store)?;
    if record.is_active(state.clock.now()) {
        Ok(record)
    } else {
        Err(BearerError::Invalid)
    }
}

/// The request's unexpired access token, leaving a sealed token's
/// revocation check to the caller (see [`Resolved`]): a stored token that
/// is revoked is refused here already.
pub(crate) async fn authenticate_unchecked(
    state: &AppState,
    headers: &HeaderMap,
) -> Result<Resolved, BearerError> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Err(BearerError::Missing);
    };
    let value = value.to_str().map_err(|_| BearerError::Invalid)?;
    let (scheme, token) = value.split_once(' ').ok_or(BearerError::Invalid)?;
    let token = token.trim();
    if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() || token.len() > 512 {
        return Err(BearerError::Invalid);
    }
    let resolved = crate::access_token::resolve_unchecked(state, token)
        .await
        .map_err(BearerError::Store)?
        .ok_or(BearerError::Invalid)?;
    if resolved.record().is_active(state.clock.now()) {
        Ok(resolved)
    } else {
        Err(BearerError::Invalid)
    }
}
