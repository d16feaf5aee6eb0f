//! The sealed access-token decoders (`sc2.` and the legacy `sc1.`): any
//! presented string, and any plaintext behind a valid tag or MAC, never a
//! panic; what opens seals again to a token that opens to the same record.
#![no_main]

use libfuzzer_sys::fuzz_target;
use samtykke_core::token::{legacy, AccessToken, TokenGrant, TokenKey, TokenKeys};

const LEGACY_KEY: &[u8] = b"fuzz legacy mac key";

fn keys() -> TokenKeys {
    TokenKeys::new(
        vec![TokenKey::derive(1, &[1; 32]), TokenKey::derive(2, &[2; 32])],
        Some(LEGACY_KEY.to_vec()),
    )
    .expect("two keys")
}

fn check(keys: &TokenKeys, token: &AccessToken) {
    let Ok((record, generation)) = keys.unseal(token) else {
        return;
    };
    let grant = TokenGrant {
        client_id: record.client_id.clone(),
        audience: record.audience,
        scopes: record.scopes.clone(),
        issued_at: record.issued_at,
        expires_at: record.expires_at,
        consent_id: record.consent_id,
    };
    let (again, sealed) = keys.seal(grant, generation);
    let (reopened, g) = keys.unseal(&again).expect("a token just sealed opens");
    assert_eq!(g, generation);
    assert_eq!(reopened, sealed);
    assert_eq!(
        (reopened.client_id, reopened.scopes, reopened.issued_at, reopened.expires_at),
        (record.client_id, record.scopes, record.issued_at, record.expires_at)
    );
}

fuzz_target!(|input: (u8, &[u8])| {
    let (mode, data) = input;
    let keys = keys();
    let token = match mode % 3 {
        0 => AccessToken::from_presented(&String::from_utf8_lossy(data)),
        1 => keys.seal_plaintext_for_fuzzing(data),
        _ => legacy::seal_payload_for_fuzzing(LEGACY_KEY, data),
    };
    check(&keys, &token);
});
