//! Strict decoding of `application/x-www-form-urlencoded` bodies
//! (RFC 6749 §3.1, §3.2): a repeated parameter is `invalid_request`, a
//! parameter without a value counts as absent, unknown ones are ignored.

use std::collections::HashMap;

use axum::extract::rejection::BytesRejection;
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
use samtykke_core::OAuthError;

/// A body that could not be read (too large, broken stream) is an RFC 6749
/// `invalid_request` in JSON like every other error, with the rejection's status.
pub fn body_rejected(rejection: &BytesRejection) -> Response {
    let mut response = crate::error::OAuthErrorResponse(OAuthError::invalid_request(
        "the request body is too large or could not be read",
    ))
    .into_response();
    *response.status_mut() = rejection.status();
    response
}

/// The decoded parameters of one form body.
#[derive(Debug, Default)]
pub struct Form {
    params: HashMap<String, String>,
}

impl Form {
    /// Checks the content type and decodes the body.
    pub fn parse(headers: &HeaderMap, body: &[u8]) -> Result<Self, OAuthError> {
        let content_type = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let media_type = content_type.split(';').next().unwrap_or("").trim();
        if !media_type.eq_ignore_ascii_case("application/x-www-form-urlencoded") {
            return Err(OAuthError::invalid_request(
                "the request body must be application/x-www-form-urlencoded",
            ));
        }
        if std::str::from_utf8(body).is_err() {
            return Err(OAuthError::invalid_request(
                "the request body is not valid UTF-8",
            ));
        }
        let mut params = HashMap::new();
        for (name, value) in form_urlencoded::parse(body) {
            if params.insert(name.to_string(), value.to_string()).is_some() {
                let shown: String = name.chars().take(40).collect();
                return Err(OAuthError::invalid_request(format!(
                    "parameter '{shown}' is repeated"
                )));
            }
        }
        Ok(Self { params })
    }

    /// The value of `name`, or None when absent or empty.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.params
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }

    /// The value of `name`, or `invalid_request` naming it.
    pub fn require(&self, name: &str) -> Result<&str, OAuthError> {
        self.get(name)
            .ok_or_else(|| OAuthError::invalid_request(format!("the {name} parameter is required")))
    }
}
