//! The resource APIs' error body `{error, error_description, trace_id,
//! timestamp}` (the OpenAPI `error` schema; SPEC §7).

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use samtykke_core::store::StoreError;

use super::bearer::BearerError;
use super::dto::ApiErrorBody;
use super::iso;

#[derive(Debug)]
pub enum ApiErrorKind {
    /// 401: no token (RFC 6750 §3.1: no error code in the challenge).
    MissingToken,
    /// 401: malformed, unknown, expired or revoked token.
    InvalidToken,
    /// 403: the token's audience or scope does not cover the request.
    InsufficientScope,
    /// 403: unknown, another client's, expired, consumed or revoked — one
    /// answer for all so that ids cannot be probed.
    InvalidConsent,
    /// 403 on `GET /v1/debt`: the consent bound to the token is no longer
    /// valid. The reference OpenAPI's example for that operation says
    /// `no valid consent` where SPEC §7 says `invalid consent`; the reference
    /// wins.
    NoValidConsent,
    /// 400
    BadRequest(String),
    /// 503: the database is unreachable; nothing was done.
    Unavailable,
    /// 500
    Internal,
}

#[derive(Debug)]
pub struct ApiError {
    pub kind: ApiErrorKind,
    pub trace_id: String,
    pub now: time::OffsetDateTime,
}

impl ApiError {
    pub fn new(kind: ApiErrorKind, trace_id: &str, now: time::OffsetDateTime) -> Self {
        Self {
            kind,
            trace_id: trace_id.to_owned(),
            now,
        }
    }

    pub fn from_bearer(e: BearerError, trace_id: &str, now: time::OffsetDateTime) -> Self {
        let kind = match e {
            BearerError::Missing => ApiErrorKind::MissingToken,
            BearerError::Invalid => ApiErrorKind::InvalidToken,
            BearerError::Store(e) => return Self::from_store(e, trace_id, now),
        };
        Self::new(kind, trace_id, now)
    }

    pub fn from_store(e: StoreError, trace_id: &str, now: time::OffsetDateTime) -> Self {
        let kind = match e {
            StoreError::Unavailable(_) => ApiErrorKind::Unavailable,
            _ => ApiErrorKind::Internal,
        };
        tracing::error!(error = %e, trace_id, "storage failure in a resource API");
        Self::new(kind, trace_id, now)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, error, description, challenge): (StatusCode, &str, String, Option<&str>) =
            match self.kind {
                ApiErrorKind::MissingToken => (
                    StatusCode::UNAUTHORIZED,
                    "invalid_token",
                    "an access token is required".into(),
                    Some("Bearer realm=\"samtykke\""),
                ),
                ApiErrorKind::InvalidToken => (
                    StatusCode::UNAUTHORIZED,
                    "invalid_token",
                    "the access token is invalid, expired or revoked".into(),
                    Some("Bearer realm=\"samtykke\", error=\"invalid_token\""),
                ),
                ApiErrorKind::InsufficientScope => (
                    StatusCode::FORBIDDEN,
                    "insufficient_scope",
                    "the access token's audience or scope does not allow this request".into(),
                    Some("Bearer realm=\"samtykke\", error=\"insufficient_scope\""),
                ),
                ApiErrorKind::InvalidConsent => (
                    StatusCode::FORBIDDEN,
                    "invalid consent",
                    "no valid consent with this id".into(),
                    None,
                ),
                ApiErrorKind::NoValidConsent => (
                    StatusCode::FORBIDDEN,
                    "no valid consent",
                    "the consent of this access token is no longer valid".into(),
                    None,
                ),
                ApiErrorKind::BadRequest(message) => {
                    (StatusCode::BAD_REQUEST, "invalid_request", message, None)
                }
                ApiErrorKind::Unavailable => (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "temporarily_unavailable",
                    "the service is temporarily unavailable; nothing was done".into(),
                    None,
                ),
                ApiErrorKind::Internal => (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "server error",
                    "An unexpected server error occurred".into(),
                    None,
                ),
            };
        let body = ApiErrorBody {
            error: error.to_owned(),
            error_description: description,
            timestamp: iso(self.now),
            trace_id: self.trace_id.clone(),
        };
        let mut response = (status, Json(body)).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if let Some(challenge) = challenge {
            headers.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(challenge),
            );
        }
        if let Ok(v) = HeaderValue::from_str(&self.trace_id) {
            headers.insert("x-trace-id", v);
        }
        response
    }
}
