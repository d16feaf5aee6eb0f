//! The trace id of a resource-API request: the caller's `X-Trace-ID` when it
//! sent a sensible one, else the request's `x-request-id` (so that the id in
//! an error body is the one in the logs and in the response header), else a
//! new UUID.

use std::convert::Infallible;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;

#[derive(Debug, Clone)]
pub struct TraceId(pub String);

impl<S: Send + Sync> FromRequestParts<S> for TraceId {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Infallible> {
        let sensible = |name: &str| {
            parts
                .headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::trim)
                .filter(|v| {
                    !v.is_empty() && v.len() <= 128 && v.bytes().all(|b| b.is_ascii_graphic())
                })
                .map(str::to_owned)
        };
        Ok(Self(
            sensible("x-trace-id")
                .or_else(|| sensible("x-request-id"))
                .unwrap_or_else(|| uuid::Uuid::new_v4().to_string()),
        ))
    }
}
