//! Opaque random values handed to someone else (authorization codes, browser
//! cookies, CSRF tokens, flow ids). Only their SHA-256 is stored.

use std::fmt;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::token::TokenHash;

/// 256 random bits, base64url-encoded (43 characters). Debug never prints it.
#[derive(Clone, PartialEq, Eq)]
pub struct OpaqueToken(String);

impl OpaqueToken {
    pub fn generate() -> Self {
        Self(random_value())
    }

    /// Wraps a value presented by a caller; None unless it has the shape of a
    /// generated one, so that nothing else is ever hashed or looked up.
    pub fn from_presented(value: &str) -> Option<Self> {
        let well_formed = value.len() == 43
            && value
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        well_formed.then(|| Self(value.to_owned()))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn hash(&self) -> TokenHash {
        hash_of(&self.0)
    }

    /// Constant-time check that this value hashes to `expected`.
    pub fn verifies(&self, expected: &TokenHash) -> bool {
        bool::from(self.hash().as_bytes().ct_eq(expected.as_bytes()))
    }
}

/// 256 bits from the operating system's CSPRNG, base64url-encoded.
pub(crate) fn random_value() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// SHA-256 of a value handed out: the key it is stored under.
pub(crate) fn hash_of(value: &str) -> TokenHash {
    let digest: [u8; 32] = Sha256::digest(value.as_bytes()).into();
    TokenHash::from_array(digest)
}

impl fmt::Debug for OpaqueToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("OpaqueToken(***)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_values_round_trip_and_others_are_refused() {
        let a = OpaqueToken::generate();
        let again = OpaqueToken::from_presented(a.expose()).unwrap();
        assert!(again.verifies(&a.hash()));
        assert!(!OpaqueToken::generate().verifies(&a.hash()));
        for bad in [
            "",
            "short",
            &"x".repeat(44),
            &format!("{}!", &"x".repeat(42)),
        ] {
            assert!(OpaqueToken::from_presented(bad).is_none(), "{bad}");
        }
        assert_eq!(format!("{a:?}"), "OpaqueToken(***)");
    }
}
