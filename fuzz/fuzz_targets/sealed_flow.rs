//! The sealed flow, login-session and pending-login decoders (the pages'
//! `flow` parameter and the two cookies): any presented string, and any
//! plaintext behind a valid tag, never a panic; what opens seals again to
//! a value that opens to the same.
#![no_main]

use libfuzzer_sys::fuzz_target;
use samtykke_core::flow::{AuthFlow, FlowSealKey, LoginSession, PendingLogin, SealedKind};

fuzz_target!(|input: (u8, &[u8])| {
    let (mode, data) = input;
    let key = FlowSealKey::derive(b"fuzz flow secret");
    let kind = match mode % 3 {
        0 => SealedKind::Flow,
        1 => SealedKind::Session,
        _ => SealedKind::Pending,
    };
    let value = if mode & 0x80 == 0 {
        key.seal_plaintext_for_fuzzing(kind, data)
    } else {
        String::from_utf8_lossy(data).into_owned()
    };
    match kind {
        SealedKind::Flow => {
            if let Some(flow) = AuthFlow::unseal(&key, &value) {
                assert_eq!(AuthFlow::unseal(&key, &flow.seal(&key)), Some(flow));
            }
        }
        SealedKind::Session => {
            if let Some(session) = LoginSession::unseal(&key, &value) {
                assert_eq!(LoginSession::unseal(&key, &session.seal(&key)), Some(session));
            }
        }
        SealedKind::Pending => {
            if let Some(pending) = PendingLogin::unseal(&key, &value) {
                assert_eq!(PendingLogin::unseal(&key, &pending.seal(&key)), Some(pending));
            }
        }
    }
});
