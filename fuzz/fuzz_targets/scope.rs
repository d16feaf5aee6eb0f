//! The scope parser (RFC 6749 §3.3): any string, never a panic; what it
//! accepts is non-empty, free of repeats, and reads back the same.
#![no_main]

use libfuzzer_sys::fuzz_target;
use samtykke_core::domain::{Scope, ScopeSet};

fuzz_target!(|input: &str| {
    let Ok(set) = ScopeSet::parse(input) else {
        return;
    };
    let scopes: Vec<Scope> = set.iter().collect();
    assert!(!scopes.is_empty());
    for (i, s) in scopes.iter().enumerate() {
        assert!(!scopes[..i].contains(s), "a repeated scope is kept once");
        assert!(
            input.split(' ').any(|v| Scope::parse(v) == Some(*s)),
            "every scope was asked for"
        );
    }
    let shown = set.to_string();
    assert_eq!(ScopeSet::parse(&shown).as_ref(), Ok(&set), "round trip");
    assert_eq!(ScopeSet::from_scopes(&scopes).as_ref(), Some(&set));
});
