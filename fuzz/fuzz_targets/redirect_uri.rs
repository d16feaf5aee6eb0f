//! Redirect-URI registration and matching (RFC 6749 §3.1.2, RFC 8252 §7.3):
//! any text, split at its first newline into the registered and the
//! presented URI, never a panic. A registered URI matches itself; a
//! presented URI that matches is the registered one, or (for a loopback
//! `http` registration) the same URI with a port, which is a valid URL on
//! the same loopback host with the same path and query — so a match can
//! never send the browser anywhere else.
#![no_main]

use libfuzzer_sys::fuzz_target;
use samtykke_core::domain::RedirectUri;

fuzz_target!(|input: &str| {
    let (registered, presented) = input.split_once('\n').unwrap_or((input, ""));
    let Ok(uri) = RedirectUri::parse(registered) else {
        return;
    };
    assert_eq!(uri.as_str(), registered);
    assert!(uri.matches(registered));
    let parsed = url::Url::parse(registered).expect("a registered URI parses");
    assert!(parsed.fragment().is_none() && parsed.username().is_empty());
    if !uri.matches(presented) || presented == registered {
        return;
    }
    let reached = url::Url::parse(presented)
        .unwrap_or_else(|e| panic!("{presented:?} matched {registered:?} but is no URL: {e}"));
    assert_eq!(reached.scheme(), "http");
    assert_eq!(reached.host(), parsed.host(), "{presented:?} vs {registered:?}");
    assert!(
        matches!(reached.host_str(), Some("127.0.0.1" | "[::1]")),
        "only loopback registrations match another port: {presented:?}"
    );
    assert_eq!(reached.path(), parsed.path());
    assert_eq!(reached.query(), parsed.query());
    assert!(reached.fragment().is_none() && reached.username().is_empty());
});
