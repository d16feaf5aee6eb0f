//! Registered redirect URIs (RFC 6749 §3.1.2), compared byte for byte.

use std::fmt;
use url::Url;

/// An absolute `http`/`https` URI without fragment or user info, kept exactly as
/// registered so that matching is a byte comparison (RFC 9700 §4.1.3).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RedirectUri(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RedirectUriError {
    #[error("the redirect URI is not an absolute URI")]
    NotAbsolute,
    #[error("the redirect URI must use https (or http)")]
    Scheme,
    #[error("the redirect URI must not contain a fragment")]
    Fragment,
    #[error("the redirect URI must not contain user information")]
    UserInfo,
    #[error("the redirect URI must be written in its normal form ({0})")]
    NotNormalised(String),
    #[error("the redirect URI is longer than 2000 characters")]
    TooLong,
}

impl RedirectUri {
    pub fn parse(input: &str) -> Result<Self, RedirectUriError> {
        if input.len() > 2000 {
            return Err(RedirectUriError::TooLong);
        }
        let url = Url::parse(input).map_err(|_| RedirectUriError::NotAbsolute)?;
        if !matches!(url.scheme(), "https" | "http") {
            return Err(RedirectUriError::Scheme);
        }
        if url.fragment().is_some() || input.contains('#') {
            return Err(RedirectUriError::Fragment);
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(RedirectUriError::UserInfo);
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err(RedirectUriError::NotAbsolute);
        }
        // Byte-exact matching only works when what is registered is what a
        // browser will send back; refuse anything the URL parser would rewrite.
        if url.as_str() != input {
            return Err(RedirectUriError::NotNormalised(url.to_string()));
        }
        Ok(Self(input.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Exact, byte-for-byte comparison with a URI presented in a request.
    pub fn matches(&self, presented: &str) -> bool {
        self.0 == presented
    }
}

impl fmt::Display for RedirectUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_https_and_loopback_http() {
        for uri in [
            "https://bank.example/cb",
            "https://bank.example/v1/callback?x=1",
            "http://127.0.0.1:9000/callback",
            "http://localhost:3000/cb",
        ] {
            assert!(RedirectUri::parse(uri).is_ok(), "{uri}");
        }
    }

    #[test]
    fn refuses_dangerous_or_ambiguous_uris() {
        for uri in [
            "javascript:alert(1)",
            "JAVASCRIPT:alert(1)",
            "data:text/html,hi",
            "https://bank.example/cb#frag",
            "https://good@evil.example/cb",
            "/relative",
            "https://Bank.Example/cb",
            "https://bank.example/a/../cb",
            "ftp://bank.example/cb",
        ] {
            assert!(RedirectUri::parse(uri).is_err(), "{uri}");
        }
    }

    #[test]
    fn matching_is_byte_exact() {
        let registered = RedirectUri::parse("https://bank.example/cb").unwrap();
        assert!(registered.matches("https://bank.example/cb"));
        for other in [
            "https://bank.example/cb/",
            "https://bank.example/cb?x=1",
            "https://BANK.example/cb",
            "https://bank.example/CB",
            "https://bank.example/cb.evil",
        ] {
            assert!(!registered.matches(other), "{other}");
        }
    }
}
