//! The `application/x-www-form-urlencoded` decoder of the token,
//! introspection, revocation and page endpoints: any body under any content
//! type, never a panic; an accepted body has no repeated name, and each
//! non-empty value is the one decoded.
#![no_main]

use http::{header, HeaderMap, HeaderValue};
use libfuzzer_sys::fuzz_target;
use samtykke_http::form::Form;

const CONTENT_TYPES: [&str; 6] = [
    "application/x-www-form-urlencoded",
    "application/x-www-form-urlencoded; charset=UTF-8",
    "APPLICATION/X-WWW-FORM-URLENCODED",
    "application/json",
    "multipart/form-data; boundary=x",
    "",
];

fuzz_target!(|input: (u8, &[u8])| {
    let (kind, body) = input;
    let mut headers = HeaderMap::new();
    let content_type = CONTENT_TYPES[usize::from(kind) % CONTENT_TYPES.len()];
    if !content_type.is_empty() {
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    }
    let Ok(form) = Form::parse(&headers, body) else {
        return;
    };
    assert!(content_type.to_ascii_lowercase().starts_with("application/x-www-form-urlencoded"));
    assert!(std::str::from_utf8(body).is_ok());
    let mut seen = std::collections::HashSet::new();
    for (name, value) in form_urlencoded::parse(body) {
        assert!(seen.insert(name.to_string()), "a repeated name was accepted");
        let expected = (!value.is_empty()).then_some(&*value);
        assert_eq!(form.get(&name), expected);
        assert_eq!(form.require(&name).ok(), expected);
    }
});
