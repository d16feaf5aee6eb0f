//! Sealing and opening an access token, the `sc2.` format (binary claims
//! under AES-256-GCM-SIV) against the `sc1.` format it replaced (JSON
//! claims under HMAC-SHA256), in one process, rounds interleaved:
//!
//! ```sh
//! cargo bench -p samtykke-core --bench token_seal
//! ```
//!
//! Each operation is what a request does: sealing includes the token's
//! SHA-256 (its revocation key), opening includes decoding the claims and
//! the SHA-256. Prints the median of 7 rounds of about 0.2 s each.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use samtykke_core::consent::ConsentId;
use samtykke_core::domain::{ApiAudience, ClientId, ScopeSet};
use samtykke_core::token::{legacy, AccessToken, TokenGrant, TokenKey, TokenKeys};
use time::OffsetDateTime;

const ROUNDS: usize = 7;
const ROUND: Duration = Duration::from_millis(200);

/// Nanoseconds per call of `op`, over about [`ROUND`].
fn round(op: &mut dyn FnMut()) -> f64 {
    let mut calls = 0u64;
    let start = Instant::now();
    loop {
        for _ in 0..1000 {
            op();
        }
        calls += 1000;
        let elapsed = start.elapsed();
        if elapsed >= ROUND {
            return elapsed.as_nanos() as f64 / calls as f64;
        }
    }
}

fn grant(consent: bool) -> TokenGrant {
    let now = OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap();
    TokenGrant {
        client_id: ClientId::parse("d8d34434-8030-4271-8189-381c2edb5c18").unwrap(),
        audience: ApiAudience::Debt,
        scopes: ScopeSet::parse("debt.unsecured.presentation").unwrap(),
        issued_at: now,
        expires_at: now + time::Duration::hours(1),
        consent_id: consent
            .then(|| ConsentId::parse("0b0d4a7e-41c5-4c39-9a5e-7cc0c4b8f1a2").unwrap()),
    }
}

fn main() {
    let legacy_key = b"Kq7tq1v2m1yYV1m0eH0m3nR0bWk2Q0V4b1N0cG9uZ2U".to_vec();
    let keys = TokenKeys::new(
        vec![TokenKey::derive(1, &[7u8; 32])],
        Some(legacy_key.clone()),
    )
    .unwrap();
    let mut cases: Vec<(String, Box<dyn FnMut()>)> = Vec::new();
    for consent in [false, true] {
        let kind = if consent {
            "code"
        } else {
            "client credentials"
        };
        let (sc1, _) = legacy::seal(&legacy_key, grant(consent), 7);
        let (sc2, _) = keys.seal(grant(consent), 7);
        println!(
            "{kind}: sc1 {} characters, sc2 {} characters",
            sc1.expose().len(),
            sc2.expose().len()
        );
        let g = grant(consent);
        let k = legacy_key.clone();
        cases.push((
            format!("sc1 seal ({kind})"),
            Box::new(move || {
                black_box(legacy::seal(&k, black_box(g.clone()), 7));
            }),
        ));
        let g = grant(consent);
        let ks = keys.clone();
        cases.push((
            format!("sc2 seal ({kind})"),
            Box::new(move || {
                black_box(ks.seal(black_box(g.clone()), 7));
            }),
        ));
        let ks = keys.clone();
        let t = AccessToken::from_presented(sc1.expose());
        cases.push((
            format!("sc1 open ({kind})"),
            Box::new(move || {
                black_box(ks.unseal(black_box(&t)).unwrap());
            }),
        ));
        let ks = keys.clone();
        let t = AccessToken::from_presented(sc2.expose());
        cases.push((
            format!("sc2 open ({kind})"),
            Box::new(move || {
                black_box(ks.unseal(black_box(&t)).unwrap());
            }),
        ));
    }
    let mut samples: Vec<Vec<f64>> = vec![Vec::new(); cases.len()];
    for _ in 0..ROUNDS {
        for (i, (_, op)) in cases.iter_mut().enumerate() {
            samples[i].push(round(op.as_mut()));
        }
    }
    println!("| operation | ns/op (median of {ROUNDS}) | min | max |");
    println!("|---|---:|---:|---:|");
    for ((name, _), mut s) in cases.iter().zip(samples) {
        s.sort_by(f64::total_cmp);
        println!(
            "| {name} | {:.0} | {:.0} | {:.0} |",
            s[ROUNDS / 2],
            s[0],
            s[ROUNDS - 1]
        );
    }
}
