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

    /// Byte-for-byte comparison with a URI presented in a request. The one
    /// exception (RFC 8252 §7.3, RFC 9700 §2.1): for a registered `http`
    /// loopback IP literal (`127.0.0.1`, `[::1]`) any port is accepted, since
    /// native apps get an ephemeral port; everything else must still be equal.
    pub fn matches(&self, presented: &str) -> bool {
        if self.0 == presented {
            return true;
        }
        match (
            loopback_without_port(&self.0),
            loopback_without_port(presented),
        ) {
            (Some(a), Some(b)) => a == b,
            _ => false,
        }
    }
}

/// For `http://127.0.0.1[:port]/rest` or `http://[::1][:port]/rest`: the URI
/// with the port removed, else None.
fn loopback_without_port(uri: &str) -> Option<String> {
    let rest = uri.strip_prefix("http://")?;
    let (host, after_host) = if let Some(r) = rest.strip_prefix("[::1]") {
        ("[::1]", r)
    } else if let Some(r) = rest.strip_prefix("127.0.0.1") {
        ("127.0.0.1", r)
    } else {
        return None;
    };
    let path = match after_host.strip_prefix(':') {
        Some(port_and_path) => {
            let end = port_and_path
                .find(['/', '?'])
                .unwrap_or(port_and_path.len());
            let port = &port_and_path[..end];
            // A port a URL can have (0–65535): `:99999` is no URL, and the
            // browser would be sent to a broken address (found by the
            // `redirect_uri` fuzz target).
            if port.is_empty()
                || port.len() > 5
                || !port.bytes().all(|b| b.is_ascii_digit())
                || port.parse::<u16>().is_err()
            {
                return None;
            }
            &port_and_path[end..]
        }
        None => after_host,
    };
    if !(path.starts_with('/') || path.starts_with('?') || path.is_empty()) {
        return None;
    }
    Some(format!("http://{host}{path}"))
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

    #[test]
    fn a_loopback_ip_redirect_uri_matches_on_any_port_but_nothing_else_differs() {
        let registered = RedirectUri::parse("http://127.0.0.1/callback").unwrap();
        assert!(registered.matches("http://127.0.0.1/callback"));
        assert!(registered.matches("http://127.0.0.1:51234/callback"));
        for other in [
            "http://127.0.0.1:51234/callback/",
            "http://127.0.0.1:51234/callback?x=1",
            "http://127.0.0.1:51234/Callback",
            "http://127.0.0.1:abc/callback",
            "http://127.0.0.1.evil.example/callback",
            "http://127.0.0.1@evil.example/callback",
            "https://127.0.0.1:51234/callback",
            "http://localhost:51234/callback",
        ] {
            assert!(!registered.matches(other), "{other}");
        }
        let named = RedirectUri::parse("http://localhost:3000/cb").unwrap();
        assert!(!named.matches("http://localhost:3001/cb"));
    }

    /// Found by the `redirect_uri` fuzz target (issue 22 item 5): a
    /// presented loopback URI with a port past 65535 matched, though it is
    /// no URL at all.
    #[test]
    fn a_loopback_port_that_no_url_can_have_never_matches() {
        for registered in ["http://127.0.0.1/cb", "http://[::1]/cb"] {
            let uri = RedirectUri::parse(registered).unwrap();
            let with_port = |port: &str| registered.replacen("/cb", &format!(":{port}/cb"), 1);
            assert!(uri.matches(&with_port("65535")), "{}", with_port("65535"));
            for port in ["65536", "99999", "70000"] {
                let presented = with_port(port);
                assert!(url::Url::parse(&presented).is_err(), "{presented}");
                assert!(!uri.matches(&presented), "{presented}");
            }
        }
    }
}
