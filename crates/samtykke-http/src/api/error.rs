//! The resource APIs' error body `{error, error_description, trace_id,
//! timestamp}` (the OpenAPI `error` schema; SPEC §7).

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use samtykke_core::consent::ConsentEnd;
use samtykke_core::store::StoreError;

use super::bearer::BearerError;
use super::dto::ApiErrorBody;
use super::iso;

#[derive(Debug)]
pub enum ApiErrorKind {
    /// 403 `Invalid access token` (the published OpenAPI's status and error
    /// for the debt API): no bearer token. The challenge is a bare
    /// `Bearer realm` (RFC 6750 §3.1: no error code when the request
    /// carries no credentials for this scheme).
    MissingToken,
    /// 403 `Invalid access token`: an `Authorization` header of another
    /// scheme; the same bare challenge as [`Self::MissingToken`].
    NotBearer,
    /// 403 `Invalid access token`: malformed, unknown, expired or revoked
    /// token, with `WWW-Authenticate: Bearer … error="invalid_token"` so
    /// that RFC 6750 clients understand it too.
    InvalidToken,
    /// 403: the token's audience or scope does not cover the request.
    InsufficientScope,
    /// 403 `invalid consent`. None: unknown or another client's (and a
    /// malformed id) — one answer for all so that ids cannot be probed.
    /// Some: the caller's own consent, no longer active, and why.
    InvalidConsent(Option<ConsentEnd>),
    /// 403 on `GET /v1/debt`: the consent bound to the token is no longer
    /// valid, and why. The reference OpenAPI's example for that operation
    /// says `no valid consent` where SPEC §7 says `invalid consent`; the
    /// reference wins.
    NoValidConsent(Option<ConsentEnd>),
    /// 400
    BadRequest(String),
    /// 503: the database is unreachable; nothing was done.
    Unavailable,
    /// 500
    Internal,
}

/// `Consent expired at 2021-02-26T09:31:07.265053Z`: the published example's
/// form (RFC 3339 in UTC, always six fractional digits).
fn end_description(end: ConsentEnd) -> String {
    let (how, at) = match end {
        ConsentEnd::Expired(at) => ("expired", Some(at)),
        ConsentEnd::Consumed(at) => ("consumed", at),
        ConsentEnd::Revoked(at) => ("revoked", at),
    };
    match at.and_then(|at| at.to_offset(time::UtcOffset::UTC).format(END_FORMAT).ok()) {
        Some(at) => format!("Consent {how} at {at}"),
        None => format!("Consent {how}"),
    }
}

const END_FORMAT: &[time::format_description::FormatItem<'static>] = time::macros::format_description!(
    "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]Z"
);

/// The `error` of a missing or bad token, as the published OpenAPI's
/// example for the debt API has it.
pub const INVALID_ACCESS_TOKEN: &str = "Invalid access token";

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
            BearerError::NotBearer => ApiErrorKind::NotBearer,
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
                    StatusCode::FORBIDDEN,
                    INVALID_ACCESS_TOKEN,
                    "an access token is required".into(),
                    Some("Bearer realm=\"samtykke\""),
                ),
                ApiErrorKind::NotBearer => (
                    StatusCode::FORBIDDEN,
                    INVALID_ACCESS_TOKEN,
                    super::bearer::NOT_BEARER.into(),
                    Some("Bearer realm=\"samtykke\""),
                ),
                ApiErrorKind::InvalidToken => (
                    StatusCode::FORBIDDEN,
                    INVALID_ACCESS_TOKEN,
                    "the access token is invalid, expired or revoked".into(),
                    Some("Bearer realm=\"samtykke\", error=\"invalid_token\""),
                ),
                ApiErrorKind::InsufficientScope => (
                    StatusCode::FORBIDDEN,
                    "insufficient_scope",
                    "the access token's audience or scope does not allow this request".into(),
                    Some("Bearer realm=\"samtykke\", error=\"insufficient_scope\""),
                ),
                ApiErrorKind::InvalidConsent(end) => (
                    StatusCode::FORBIDDEN,
                    "invalid consent",
                    end.map_or_else(|| "no valid consent with this id".into(), end_description),
                    None,
                ),
                ApiErrorKind::NoValidConsent(end) => (
                    StatusCode::FORBIDDEN,
                    "no valid consent",
                    end.map_or_else(
                        || "the consent of this access token is no longer valid".into(),
                        end_description,
                    ),
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

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;

    #[test]
    fn an_end_is_told_in_the_published_examples_form() {
        assert_eq!(
            end_description(ConsentEnd::Expired(
                datetime!(2021-02-26 09:31:07.265053 UTC)
            )),
            "Consent expired at 2021-02-26T09:31:07.265053Z"
        );
        assert_eq!(
            end_description(ConsentEnd::Consumed(Some(
                datetime!(2021-02-26 10:31:07 +01:00)
            ))),
            "Consent consumed at 2021-02-26T09:31:07.000000Z"
        );
        assert_eq!(
            end_description(ConsentEnd::Revoked(Some(
                datetime!(2021-02-26 09:31:07.000000999 UTC)
            ))),
            "Consent revoked at 2021-02-26T09:31:07.000000Z",
            "to the microsecond, truncated"
        );
        assert_eq!(
            end_description(ConsentEnd::Revoked(None)),
            "Consent revoked"
        );
    }
}
