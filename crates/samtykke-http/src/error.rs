//! Wire form of errors.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use samtykke_core::store::StoreError;
use samtykke_core::{OAuthError, OAuthErrorCode};
use serde::Serialize;

/// An RFC 6749 §5.2 error response: JSON `{error, error_description}`,
/// `Cache-Control: no-store`, and for `invalid_client` 401 with
/// `WWW-Authenticate: Basic`.
#[derive(Debug)]
pub struct OAuthErrorResponse(pub OAuthError);

impl From<OAuthError> for OAuthErrorResponse {
    fn from(e: OAuthError) -> Self {
        Self(e)
    }
}

impl From<StoreError> for OAuthErrorResponse {
    /// Storage failures are logged with their cause and answered generically:
    /// 503 when the database is unreachable (fail closed), 500 otherwise.
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Unavailable(_) => {
                tracing::error!(error = %e, "storage unavailable");
                Self(OAuthError::temporarily_unavailable())
            }
            _ => {
                tracing::error!(error = %e, "storage error");
                Self(OAuthError::server_error())
            }
        }
    }
}

#[derive(Serialize)]
struct Body<'a> {
    error: &'a str,
    error_description: &'a str,
}

impl IntoResponse for OAuthErrorResponse {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.0.code.http_status())
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut response = (
            status,
            Json(Body {
                error: self.0.code.as_str(),
                error_description: &self.0.description,
            }),
        )
            .into_response();
        let headers = response.headers_mut();
        no_store(headers);
        if self.0.code == OAuthErrorCode::InvalidClient {
            headers.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"samtykke\", charset=\"UTF-8\""),
            );
        }
        if self.0.code == OAuthErrorCode::TemporarilyUnavailable {
            headers.insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
        }
        response
    }
}

/// `Cache-Control: no-store` and `Pragma: no-cache` (RFC 6749 §5.1).
pub fn no_store(headers: &mut axum::http::HeaderMap) {
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
}

/// A JSON body with `Cache-Control: no-store`.
pub fn no_store_json<T: Serialize>(body: &T) -> Response {
    let mut response = Json(body).into_response();
    no_store(response.headers_mut());
    response
}
