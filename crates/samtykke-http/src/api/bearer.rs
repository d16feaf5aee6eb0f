//! Bearer-token authentication of resource-API calls (RFC 6750 §2.1).

use axum::http::{header, HeaderMap};
use samtykke_core::store::StoreError;
use samtykke_core::token::AccessTokenRecord;

use crate::access_token::Resolved;
use crate::AppState;

/// Why a request carries no usable token.
#[derive(Debug)]
pub enum BearerError {
    /// No `Authorization` header. RFC 6750 §3.1: the challenge then
    /// carries no error code.
    Missing,
    /// An `Authorization` header of another scheme (`Basic …`, or a bare
    /// token without `Bearer `): no bearer credentials either, so the same
    /// bare challenge, but the description says what is wrong.
    NotBearer,
    /// Malformed (`Bearer` without a token, a token that is too long or not
    /// visible ASCII), unknown, expired or revoked.
    Invalid,
    Store(StoreError),
}

/// What a client is told when its `Authorization` header is not of the
/// `Bearer` scheme (the header itself is never echoed: it may be a secret).
pub const NOT_BEARER: &str =
    "the Authorization header does not use the Bearer scheme: send `Authorization: Bearer <access token>`";

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
    let value = value.as_bytes();
    let scheme = value.split(|b| *b == b' ').next().unwrap_or_default();
    if !scheme.eq_ignore_ascii_case(b"bearer") {
        return Err(BearerError::NotBearer);
    }
    let token = std::str::from_utf8(&value[scheme.len()..])
        .map_err(|_| BearerError::Invalid)?
        .trim();
    if token.is_empty() || token.len() > 512 || !token.bytes().all(|b| b.is_ascii_graphic()) {
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
