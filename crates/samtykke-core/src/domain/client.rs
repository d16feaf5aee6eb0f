//! Clients: one institution's integration (SPEC §2).

use std::fmt;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use time::OffsetDateTime;

use super::{OrgNumber, RedirectUri, RequestObjectPolicy};

/// A client identifier: 1–128 characters of `A-Z a-z 0-9 - . _ ~`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClientId(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a client id has 1 to 128 characters of A-Z a-z 0-9 - . _ ~")]
pub struct ClientIdError;

impl ClientId {
    pub fn parse(input: &str) -> Result<Self, ClientIdError> {
        let ok = !input.is_empty()
            && input.len() <= 128
            && input
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'));
        if ok {
            Ok(Self(input.to_owned()))
        } else {
            Err(ClientIdError)
        }
    }

    /// A new random client id (a UUID).
    pub fn generate() -> Self {
        Self(uuid::Uuid::new_v4().to_string())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ClientId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A client secret in clear text. It exists only between generation and the
/// moment it is shown once; Debug never prints it.
#[derive(Clone, PartialEq, Eq)]
pub struct ClientSecret(String);

impl ClientSecret {
    /// 256 bits from the operating system's CSPRNG, base64url encoded.
    pub fn generate() -> Self {
        let mut bytes = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        Self(URL_SAFE_NO_PAD.encode(bytes))
    }

    /// Wraps a secret presented by a client (or kept for the sandbox).
    pub fn from_presented(secret: String) -> Self {
        Self(secret)
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn hash(&self) -> SecretHash {
        SecretHash(Sha256::digest(self.0.as_bytes()).into())
    }
}

impl fmt::Debug for ClientSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ClientSecret(***)")
    }
}

/// SHA-256 of a client secret. Generated secrets carry 256 bits of entropy, so
/// a fast hash is enough: there is nothing to brute-force.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretHash([u8; 32]);

impl SecretHash {
    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        Some(Self(bytes.try_into().ok()?))
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// Constant-time comparison with a presented secret.
    pub fn verify(&self, presented: &ClientSecret) -> bool {
        self.0.ct_eq(&presented.hash().0).into()
    }
}

impl fmt::Debug for SecretHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretHash(***)")
    }
}

/// The display name shown to individuals on the consent page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientName(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a client name has 1 to 200 printable characters")]
pub struct ClientNameError;

impl ClientName {
    pub fn parse(input: &str) -> Result<Self, ClientNameError> {
        let trimmed = input.trim();
        let len = trimmed.chars().count();
        if (1..=200).contains(&len) && !trimmed.chars().any(char::is_control) {
            Ok(Self(trimmed.to_owned()))
        } else {
            Err(ClientNameError)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// What a client may look at debt for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Purpose {
    /// Show the debt to the individual (`debt.unsecured.presentation`).
    Presentation,
    /// Credit assessment (`debt.unsecured.processing`).
    Processing,
}

impl Purpose {
    pub fn parse(input: &str) -> Option<Self> {
        match input {
            "presentation" => Some(Self::Presentation),
            "processing" => Some(Self::Processing),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Presentation => "presentation",
            Self::Processing => "processing",
        }
    }
}

/// A registered client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Client {
    pub id: ClientId,
    pub secret_hash: SecretHash,
    pub name: ClientName,
    pub org_number: OrgNumber,
    pub redirect_uris: Vec<RedirectUri>,
    pub purposes: Vec<Purpose>,
    /// May register agreement consents (`consent.create`).
    pub may_create_agreements: bool,
    /// May read the consent event feed (`client.access.consent.events`).
    pub may_read_events: bool,
    /// Must send a PKCE S256 `code_challenge` in the authorization-code flow
    /// (RFC 7636). Off by default: the published flow sends none.
    pub require_pkce: bool,
    pub disabled: bool,
    pub created_at: OffsetDateTime,
    /// Sealed access tokens carry the generation they were issued in;
    /// disabling the client moves it on, which ends every earlier token.
    pub token_generation: i64,
    /// Keys, `request_uri`s and `alg=none` for request objects (RFC 9101).
    pub request_objects: RequestObjectPolicy,
}

impl Client {
    pub fn allows_purpose(&self, purpose: Purpose) -> bool {
        self.purposes.contains(&purpose)
    }

    /// The registered redirect URI that equals `presented` byte for byte.
    pub fn registered_redirect_uri(&self, presented: &str) -> Option<&RedirectUri> {
        self.redirect_uris.iter().find(|r| r.matches(presented))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_secrets_are_long_distinct_and_verify_only_themselves() {
        let a = ClientSecret::generate();
        let b = ClientSecret::generate();
        assert_eq!(a.expose().len(), 43);
        assert_ne!(a, b);
        assert!(a.hash().verify(&a));
        assert!(!a.hash().verify(&b));
        assert_eq!(format!("{a:?}"), "ClientSecret(***)");
    }

    #[test]
    fn client_ids_are_restricted_to_unreserved_characters() {
        assert!(ClientId::parse("my-client_1.0~x").is_ok());
        for bad in ["", "a b", "a:b", "æøå", &"x".repeat(129)] {
            assert!(ClientId::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn client_names_are_trimmed_and_bounded() {
        assert_eq!(
            ClientName::parse("  Eksempelbank ").unwrap().as_str(),
            "Eksempelbank"
        );
        assert!(ClientName::parse("").is_err());
        assert!(ClientName::parse("a\nb").is_err());
        assert!(ClientName::parse(&"x".repeat(201)).is_err());
    }
}
