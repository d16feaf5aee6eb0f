//! The creditors' delivery parser (`samtykke debt import`, SPEC's delivery
//! format): any text, never a panic; an error names a place inside the
//! text; an accepted delivery holds only valid numbers and no repeated
//! account.
#![no_main]

use libfuzzer_sys::fuzz_target;
use samtykke_core::debt::parse_delivery;
use samtykke_core::domain::NinPolicy;

fuzz_target!(|input: &str| {
    for policy in [NinPolicy::RealOnly, NinPolicy::AllowSynthetic] {
        match parse_delivery(input, policy) {
            Ok(delivery) => {
                for entry in &delivery.entries {
                    let _ = format!("{entry:?}");
                }
                let _ = delivery.provider_id.as_str();
            }
            Err(e) => {
                let lines = input.split('\n').count();
                assert!(e.line >= 1 && e.line <= lines.max(1), "line {} of {lines}", e.line);
                assert!(e.column >= 1, "column {}", e.column);
                let _ = e.to_string();
            }
        }
    }
});
