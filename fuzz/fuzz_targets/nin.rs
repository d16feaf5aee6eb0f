//! The national-identity-number parser: any string, never a panic; what it
//! accepts is 11 ASCII digits, its kind agrees with the policy, and its
//! Debug output never shows the number.
#![no_main]

use libfuzzer_sys::fuzz_target;
use samtykke_core::domain::{Nin, NinError, NinKind, NinPolicy};

fuzz_target!(|input: &str| {
    let real = Nin::parse(input, NinPolicy::RealOnly);
    let any = Nin::parse(input, NinPolicy::AllowSynthetic);
    match (&real, &any) {
        (Ok(a), Ok(b)) => {
            assert_eq!(a, b);
            assert_ne!(a.kind(), NinKind::Synthetic, "a synthetic number passed RealOnly");
        }
        (Err(NinError::SyntheticNotAllowed), Ok(b)) => {
            assert_eq!(b.kind(), NinKind::Synthetic);
        }
        (Err(e), Err(f)) => assert_eq!(e, f, "the policy changes nothing but synthetic numbers"),
        (r, a) => panic!("inconsistent: real-only {r:?}, any {a:?}"),
    }
    if let Ok(nin) = any {
        assert_eq!(nin.as_str(), input);
        assert_eq!(input.len(), 11);
        assert!(input.bytes().all(|b| b.is_ascii_digit()));
        let debug = format!("{nin:?}");
        assert!(!debug.contains(input), "Debug leaks the number: {debug}");
    }
});
