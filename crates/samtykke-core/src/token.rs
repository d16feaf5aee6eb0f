//! Access tokens, in two kinds:
//!
//! * **Sealed** (what both grants issue): the claims themselves, encrypted
//!   and authenticated with AES-256-GCM-SIV (RFC 8452) under a server key
//!   shared by every process: `sc2.` + base64url(key id ‖ nonce ‖
//!   ciphertext ‖ tag).
//!   Nothing in the token is readable without the key (the contract calls
//!   access tokens opaque), and issuing one writes nothing; the database
//!   keeps only what revokes it (a revoked-token row under the token's
//!   SHA-256, the client's own state, and for a token bound to a consent,
//!   the consent's `tokens_revoked` mark), and every use checks that. The
//!   keys rotate (see [`TokenKeys`]). Tokens of the first sealed format,
//!   `sc1.` (readable claims under an HMAC), are still opened for the rest
//!   of their lifetime (see [`legacy`]), never issued.
//! * **Stored**: 256 random bits; the database keeps only their SHA-256, so
//!   a copy of the database yields no usable token. Authorization-code
//!   tokens were stored before they were sealed; those still valid at an
//!   upgrade keep working until they expire.

use std::fmt;

use aes_gcm_siv::aead::AeadInOut;
use aes_gcm_siv::{Aes256GcmSiv, KeyInit, Nonce, Tag};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rand::RngCore;
use sha2::Sha256;
use time::OffsetDateTime;

use crate::consent::ConsentId;
use crate::domain::{ApiAudience, ClientId, ScopeSet};

mod claims;
pub mod legacy;

use claims::Claims;

/// An access token as handed to the client. Debug never prints it.
#[derive(Clone, PartialEq, Eq)]
pub struct AccessToken(String);

impl AccessToken {
    pub fn generate() -> Self {
        Self(crate::opaque::random_value())
    }

    /// Wraps a token presented by a caller.
    pub fn from_presented(token: &str) -> Self {
        Self(token.to_owned())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The key under which the token is stored, or its revocation recorded.
    pub fn hash(&self) -> TokenHash {
        crate::opaque::hash_of(&self.0)
    }

    /// True for a sealed (self-contained) token, of either format.
    pub fn is_sealed(&self) -> bool {
        self.0.starts_with(SEALED_PREFIX) || self.0.starts_with(legacy::PREFIX)
    }
}

/// What every sealed token issued now starts with: the format and its
/// version.
pub const SEALED_PREFIX: &str = "sc2.";

/// Bytes of the nonce: 96 bits, random for every token. AES-GCM-SIV is
/// nonce-misuse resistant: even a repeated nonce reveals no more than that
/// two tokens are identical (RFC 8452 §9), so random nonces from every
/// process, without coordination, are safe for far more tokens than a key
/// will ever seal.
const NONCE_LEN: usize = 12;
/// Bytes of the Poly1305 tag.
const TAG_LEN: usize = 16;
/// Bytes before the ciphertext: the key id and the nonce.
const HEADER_LEN: usize = 1 + NONCE_LEN;
/// Longer presented values are refused before any decoding: far more than
/// any token needs (about 300 characters with a 128-character client id).
const MAX_SEALED_LEN: usize = 512;
/// The HKDF `info` of the access-token keys, so that the stored secret is
/// never used as a key itself.
const KEY_INFO: &[u8] = b"samtykke access token sc2 aes-256-gcm-siv";

/// The server secret that keys the MAC of `sc1.` tokens. The access-token
/// keys are stored under this name, a dot and their number
/// (`access_token_key.1`, …).
pub const LEGACY_KEY_SECRET: &str = "access_token_key";

/// The name of the server secret of access-token key `number`.
pub fn key_secret_name(number: u32) -> String {
    format!("{LEGACY_KEY_SECRET}.{number}")
}

/// The number of the access-token key stored under `secret_name`, if it
/// is the name of one (a number from 1 up, in its canonical decimal form).
pub fn key_number(secret_name: &str) -> Option<u32> {
    let digits = secret_name
        .strip_prefix(LEGACY_KEY_SECRET)?
        .strip_prefix('.')?;
    let number: u32 = digits.parse().ok()?;
    (number > 0 && number.to_string() == digits).then_some(number)
}

/// The secret of a new access-token key: 256 bits from the operating
/// system's CSPRNG.
pub fn new_key_secret() -> [u8; 32] {
    let mut secret = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut secret);
    secret
}

/// One access-token key: its number (the server secret
/// `access_token_key.{number}`) and the cipher derived from the secret.
/// Debug never prints the key.
#[derive(Clone)]
pub struct TokenKey {
    number: u32,
    cipher: Aes256GcmSiv,
}

impl TokenKey {
    /// The key numbered `number`, derived from its stored `secret` with
    /// HKDF-SHA256.
    pub fn derive(number: u32, secret: &[u8]) -> Self {
        let mut key = [0u8; 32];
        // 32 bytes is far below HKDF-SHA256's limit of 8160.
        let _ = hkdf::Hkdf::<Sha256>::new(None, secret).expand(KEY_INFO, &mut key);
        Self {
            number,
            cipher: Aes256GcmSiv::new(&key.into()),
        }
    }

    pub fn number(&self) -> u32 {
        self.number
    }

    /// The byte that names the key in its tokens: the low byte of its
    /// number. The keys a server opens with have consecutive numbers (see
    /// [`TokenKeys`]), so it tells them apart.
    fn id(&self) -> u8 {
        self.number.to_be_bytes()[3]
    }
}

impl fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TokenKey({}, ***)", self.number)
    }
}

/// The keys of the access tokens: the newest seals, it and the one before
/// it open (so that a rotation never ends a token early, provided keys are
/// rotated at most once per token lifetime), and the `sc1.` MAC key, if
/// the database has one, verifies the tokens of the first format.
#[derive(Debug, Clone)]
pub struct TokenKeys {
    active: TokenKey,
    previous: Option<TokenKey>,
    legacy_mac_key: Option<Vec<u8>>,
}

/// Why a sealed token did not open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnsealError {
    /// Forged, tampered with, truncated, or not a sealed token at all.
    Invalid,
    /// Well-formed, but under a key that is neither the active nor the
    /// previous one: possibly a key that another process has started to use
    /// since this one last read the keys.
    UnknownKey,
}

impl TokenKeys {
    /// The key set of `keys` (numbered keys, in any order; the newest two
    /// count) and the MAC key of the `sc1.` format. None without a key.
    pub fn new(keys: Vec<TokenKey>, legacy_mac_key: Option<Vec<u8>>) -> Option<Self> {
        let mut keys = keys;
        keys.sort_by_key(|k| std::cmp::Reverse(k.number));
        let mut keys = keys.into_iter();
        let active = keys.next()?;
        // A key older than the one before the active one is retired.
        let previous = keys.next();
        Some(Self {
            active,
            previous,
            legacy_mac_key,
        })
    }

    /// The key set of the server secrets `secrets` (name, value): the
    /// access-token keys among them, and the `sc1.` MAC key if there is
    /// one. None without an access-token key.
    pub fn from_secrets(secrets: &[(String, Vec<u8>)]) -> Option<Self> {
        let keys = secrets
            .iter()
            .filter_map(|(name, value)| Some(TokenKey::derive(key_number(name)?, value)))
            .collect();
        let legacy = secrets
            .iter()
            .find(|(name, _)| name == LEGACY_KEY_SECRET)
            .map(|(_, value)| value.clone());
        Self::new(keys, legacy)
    }

    /// The number of the key that seals.
    pub fn active_number(&self) -> u32 {
        self.active.number
    }

    /// Seals a token under the active key: the token and the record it
    /// stands for (never stored; `hash` is where a revocation would be
    /// recorded). `generation` is the client's token generation at issue.
    pub fn seal(&self, grant: TokenGrant, generation: i64) -> (AccessToken, AccessTokenRecord) {
        let claims = Claims {
            client_id: grant.client_id.clone(),
            audience: grant.audience,
            scopes: grant.scopes.clone(),
            iat: grant.issued_at.unix_timestamp(),
            exp: grant.expires_at.unix_timestamp(),
            generation,
            consent_id: grant.consent_id,
        };
        let token = self.seal_message(|out| claims.encode(out));
        let record = record_of(&token, grant);
        (token, record)
    }

    /// `sc2.` + base64url(key id ‖ nonce ‖ the message `write` appends,
    /// encrypted ‖ tag), under the active key.
    fn seal_message(&self, write: impl FnOnce(&mut Vec<u8>)) -> AccessToken {
        let mut bytes = Vec::with_capacity(HEADER_LEN + 96 + TAG_LEN);
        bytes.push(self.active.id());
        // 96 bits from the thread's CSPRNG (seeded from the OS) save a
        // system call per token. Being random, the nonce also makes every
        // token unique (they used to carry a random id for that).
        let mut nonce = [0u8; NONCE_LEN];
        rand::thread_rng().fill_bytes(&mut nonce);
        bytes.extend_from_slice(&nonce);
        write(&mut bytes);
        let aad = associated_data(self.active.id());
        // Encryption fails only for messages over 256 GiB.
        let tag = self
            .active
            .cipher
            .encrypt_inout_detached(&Nonce::from(nonce), &aad, (&mut bytes[HEADER_LEN..]).into())
            .unwrap_or_default();
        bytes.extend_from_slice(&tag);
        let mut text = String::with_capacity(SEALED_PREFIX.len() + bytes.len() * 4 / 3 + 3);
        text.push_str(SEALED_PREFIX);
        URL_SAFE_NO_PAD.encode_string(&bytes, &mut text);
        AccessToken(text)
    }

    /// Fuzzing only (feature `fuzzing`): `plaintext` sealed under the active
    /// key as an `sc2.` token's claims would be, so that a fuzzer reaches
    /// the claims decoder behind the tag.
    #[cfg(feature = "fuzzing")]
    #[doc(hidden)]
    pub fn seal_plaintext_for_fuzzing(&self, plaintext: &[u8]) -> AccessToken {
        self.seal_message(|out| out.extend_from_slice(plaintext))
    }

    /// Opens a sealed token of either format: its record (not revoked, as
    /// far as the seal can tell) and its client's token generation. The
    /// tag (or the `sc1.` MAC) is checked, in constant time, before any
    /// claim is read. Expiry is left to the caller.
    pub fn unseal(&self, token: &AccessToken) -> Result<(AccessTokenRecord, i64), UnsealError> {
        let Some(body) = token.0.strip_prefix(SEALED_PREFIX) else {
            let key = self.legacy_mac_key.as_deref().ok_or(UnsealError::Invalid)?;
            return legacy::unseal(key, token).ok_or(UnsealError::Invalid);
        };
        if body.len() > MAX_SEALED_LEN {
            return Err(UnsealError::Invalid);
        }
        let mut bytes = URL_SAFE_NO_PAD
            .decode(body)
            .map_err(|_| UnsealError::Invalid)?;
        if bytes.len() < HEADER_LEN + TAG_LEN {
            return Err(UnsealError::Invalid);
        }
        let id = bytes[0];
        let key = [Some(&self.active), self.previous.as_ref()]
            .into_iter()
            .flatten()
            .find(|k| k.id() == id)
            .ok_or(UnsealError::UnknownKey)?;
        let nonce = Nonce::try_from(&bytes[1..HEADER_LEN]).map_err(|_| UnsealError::Invalid)?;
        let tag_at = bytes.len() - TAG_LEN;
        let tag = Tag::try_from(&bytes[tag_at..]).map_err(|_| UnsealError::Invalid)?;
        let message = &mut bytes[HEADER_LEN..tag_at];
        key.cipher
            .decrypt_inout_detached(&nonce, &associated_data(id), message.into(), &tag)
            .map_err(|_| UnsealError::Invalid)?;
        let claims = Claims::decode(message).ok_or(UnsealError::Invalid)?;
        let record = AccessTokenRecord {
            hash: token.hash(),
            client_id: claims.client_id,
            audience: claims.audience,
            scopes: claims.scopes,
            issued_at: OffsetDateTime::from_unix_timestamp(claims.iat)
                .map_err(|_| UnsealError::Invalid)?,
            expires_at: OffsetDateTime::from_unix_timestamp(claims.exp)
                .map_err(|_| UnsealError::Invalid)?,
            revoked: false,
            consent_id: claims.consent_id,
        };
        Ok((record, claims.generation))
    }
}

/// What the tag also covers: the format and the key id.
fn associated_data(key_id: u8) -> [u8; 5] {
    let mut aad = [0u8; 5];
    aad[..4].copy_from_slice(SEALED_PREFIX.as_bytes());
    aad[4] = key_id;
    aad
}

/// The record a sealed token stands for, its times in whole seconds as
/// sealed.
fn record_of(token: &AccessToken, grant: TokenGrant) -> AccessTokenRecord {
    let whole =
        |t: OffsetDateTime| OffsetDateTime::from_unix_timestamp(t.unix_timestamp()).unwrap_or(t);
    AccessTokenRecord {
        hash: token.hash(),
        client_id: grant.client_id,
        audience: grant.audience,
        scopes: grant.scopes,
        issued_at: whole(grant.issued_at),
        expires_at: whole(grant.expires_at),
        revoked: false,
        consent_id: grant.consent_id,
    }
}

/// What a sealed token stands for: everything of its record but the hash
/// and the revocation state.
#[derive(Debug, Clone)]
pub struct TokenGrant {
    pub client_id: ClientId,
    pub audience: ApiAudience,
    pub scopes: ScopeSet,
    pub issued_at: OffsetDateTime,
    pub expires_at: OffsetDateTime,
    /// The consent an authorization-code token is bound to.
    pub consent_id: Option<ConsentId>,
}

impl fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AccessToken(***)")
    }
}

/// SHA-256 of an access token: the primary key of the token table.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TokenHash([u8; 32]);

impl TokenHash {
    pub fn from_array(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        Some(Self(bytes.try_into().ok()?))
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

/// What the server remembers about an issued access token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessTokenRecord {
    pub hash: TokenHash,
    pub client_id: ClientId,
    pub audience: ApiAudience,
    pub scopes: ScopeSet,
    pub issued_at: OffsetDateTime,
    pub expires_at: OffsetDateTime,
    pub revoked: bool,
    /// The consent an authorization-code token is bound to; None for
    /// client-credentials tokens.
    pub consent_id: Option<ConsentId>,
}

impl AccessTokenRecord {
    /// Active = not revoked and not yet expired.
    pub fn is_active(&self, now: OffsetDateTime) -> bool {
        !self.revoked && now < self.expires_at
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_random_and_hash_stably() {
        let a = AccessToken::generate();
        let b = AccessToken::generate();
        assert_ne!(a, b);
        assert_eq!(a.expose().len(), 43);
        assert_eq!(a.hash(), AccessToken::from_presented(a.expose()).hash());
        assert_ne!(a.hash(), b.hash());
        assert_eq!(format!("{a:?}"), "AccessToken(***)");
    }

    const CLIENT: &str = "d8d34434-8030-4271-8189-381c2edb5c18";
    const CONSENT: &str = "0b0d4a7e-41c5-4c39-9a5e-7cc0c4b8f1a2";
    const SCOPE: &str = "debt.unsecured.presentation openid";

    fn keys(numbers: &[u32]) -> TokenKeys {
        let keys = numbers
            .iter()
            .map(|&n| TokenKey::derive(n, format!("secret {n}").as_bytes()))
            .collect();
        TokenKeys::new(keys, Some(b"the sc1 key".to_vec())).unwrap()
    }

    fn grant(client: &str, consent: Option<&str>) -> TokenGrant {
        let now = OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap();
        TokenGrant {
            client_id: ClientId::parse(client).unwrap(),
            audience: ApiAudience::Debt,
            scopes: ScopeSet::parse(SCOPE).unwrap(),
            issued_at: now,
            expires_at: now + time::Duration::seconds(3600),
            consent_id: consent.map(|c| ConsentId::parse(c).unwrap()),
        }
    }

    fn sealed(keys: &TokenKeys) -> (AccessToken, AccessTokenRecord) {
        keys.seal(grant(CLIENT, Some(CONSENT)), 7)
    }

    /// Every way the token's text could show a value: the text itself, and
    /// the decoding of every substring of each dot-separated part (in
    /// either base64 alphabet, whatever the offset or framing).
    fn readable_forms(token: &str) -> Vec<Vec<u8>> {
        use base64::engine::general_purpose::{STANDARD_NO_PAD, URL_SAFE_NO_PAD};
        let mut forms = vec![token.as_bytes().to_vec()];
        for part in token.split('.') {
            for start in 0..part.len() {
                for end in (start + 2..=part.len()).rev().take(4) {
                    for engine in [URL_SAFE_NO_PAD, STANDARD_NO_PAD] {
                        if let Ok(bytes) = engine.decode(&part[start..end]) {
                            forms.push(bytes);
                        }
                    }
                }
            }
        }
        forms
    }

    fn contains(haystack: &[u8], needle: &[u8]) -> bool {
        haystack.windows(needle.len()).any(|w| w == needle)
    }

    /// The first of `secrets` that some readable form of `token` shows,
    /// or JSON if one is a JSON object.
    fn revealed(token: &str, secrets: &[Vec<u8>]) -> Option<String> {
        for form in readable_forms(token) {
            for secret in secrets {
                if contains(&form, secret) {
                    return Some(String::from_utf8_lossy(secret).into_owned());
                }
            }
            // Short forms are left out: two random bytes can be `{}`.
            if form.len() >= 16
                && serde_json::from_slice::<serde_json::Value>(&form).is_ok_and(|v| v.is_object())
            {
                return Some("JSON".to_owned());
            }
        }
        None
    }

    #[test]
    fn a_sealed_token_reveals_none_of_its_claims() {
        let keys = keys(&[1]);
        let uuid_bytes = |s: &str| uuid::Uuid::parse_str(s).map(|u| u.as_bytes().to_vec());
        for (client, consent) in [(CLIENT, Some(CONSENT)), ("bank-1", None)] {
            let mut secrets: Vec<Vec<u8>> = vec![
                client.as_bytes().to_vec(),
                b"debt.unsecured".to_vec(),
                b"openid".to_vec(),
                CONSENT.as_bytes().to_vec(),
                CONSENT.replace('-', "").into_bytes(),
                uuid_bytes(CONSENT).unwrap(),
                // The times and the generation, as text and as bytes.
                b"1800000000".to_vec(),
                1_800_000_000_i64.to_be_bytes().to_vec(),
                1_800_003_600_i64.to_be_bytes().to_vec(),
                7_i64.to_be_bytes().to_vec(),
            ];
            if let Ok(uuid) = uuid_bytes(client) {
                secrets.push(uuid);
            }
            let (token, _) = keys.seal(grant(client, consent), 7);
            assert!(token.expose().starts_with("sc2."), "{token:?}");
            assert_eq!(
                revealed(token.expose(), &secrets),
                None,
                "{}",
                token.expose()
            );
            // The same check reads the claims of an sc1 token.
            let (sc1, _) = legacy::seal(b"k", grant(client, consent), 7);
            assert!(revealed(sc1.expose(), &secrets).is_some());
            // And the claims encoded but not encrypted.
            let mut plain = Vec::new();
            let (_, record) = keys.seal(grant(client, consent), 7);
            Claims {
                client_id: record.client_id,
                audience: record.audience,
                scopes: record.scopes,
                iat: 1_800_000_000,
                exp: 1_800_003_600,
                generation: 7,
                consent_id: record.consent_id,
            }
            .encode(&mut plain);
            let exposed = format!("sc2.{}", URL_SAFE_NO_PAD.encode(&plain));
            assert!(revealed(&exposed, &secrets).is_some());
        }
    }

    #[test]
    fn a_sealed_token_opens_with_its_keys_only_and_is_compact() {
        let keys = keys(&[1]);
        let (token, record) = sealed(&keys);
        assert!(token.is_sealed());
        assert_eq!(keys.unseal(&token), Ok((record.clone(), 7)));
        assert_eq!(record.hash, token.hash());
        assert_eq!(record.consent_id, ConsentId::parse(CONSENT));
        assert_eq!(
            record.scopes.to_string(),
            SCOPE,
            "the scopes keep their order"
        );
        assert_eq!(
            self::keys(&[2]).unseal(&token),
            Err(UnsealError::UnknownKey)
        );
        let other_secret = TokenKeys::new(vec![TokenKey::derive(1, b"another")], None).unwrap();
        assert_eq!(other_secret.unseal(&token), Err(UnsealError::Invalid));
        let (other, _) = sealed(&keys);
        assert_ne!(token, other, "every token has its own random nonce");
        assert_ne!(record.hash, other.hash());
        // 4 + base64(1 + 12 + 26 + 3 + 16 + 16 + 16) = 4 + 120.
        assert_eq!(token.expose().len(), 124);
        assert!(format!("{keys:?}").contains("***"));
        assert!(!format!("{keys:?}").contains("secret"));
    }

    #[test]
    fn tampering_with_any_byte_or_character_fails_to_open() {
        let keys = keys(&[1]);
        let (token, _) = sealed(&keys);
        let text = token.expose();
        let mut bytes = URL_SAFE_NO_PAD.decode(&text[4..]).unwrap();
        for i in 0..bytes.len() {
            for bit in [0x01, 0x80] {
                bytes[i] ^= bit;
                let bad = format!("sc2.{}", URL_SAFE_NO_PAD.encode(&bytes));
                bytes[i] ^= bit;
                let opened = keys.unseal(&AccessToken::from_presented(&bad));
                // Byte 0 names the key: another id is an unknown key.
                assert!(opened.is_err(), "byte {i} ^ {bit:#x}");
            }
        }
        for i in 0..text.len() {
            let mut chars: Vec<char> = text.chars().collect();
            chars[i] = if chars[i] == 'A' { 'B' } else { 'A' };
            let bad: String = chars.into_iter().collect();
            assert!(
                keys.unseal(&AccessToken::from_presented(&bad)).is_err(),
                "char {i}"
            );
        }
        let body = &text[4..];
        for bad in [
            format!("sc2.{}", &body[..body.len() - 1]),
            format!("sc2.{}", &body[..body.len() - 4]),
            format!("sc2.{body}A"),
            format!("sc2.{body}AAAA"),
            format!("sc3.{body}"),
            format!("sc1.{body}"),
            body.to_owned(),
            "sc2.".to_owned(),
            "sc2.!!!".to_owned(),
            format!("sc2.{}", "A".repeat(600)),
        ] {
            assert_eq!(
                keys.unseal(&AccessToken::from_presented(&bad)),
                Err(UnsealError::Invalid),
                "{bad}"
            );
        }
    }

    #[test]
    fn after_a_rotation_the_previous_key_still_opens_and_the_one_before_does_not() {
        let one = keys(&[1]);
        let (old, old_record) = sealed(&one);
        let two = keys(&[2, 1]);
        assert_eq!(two.active_number(), 2);
        let (new, new_record) = sealed(&two);
        assert_eq!(
            two.unseal(&old),
            Ok((old_record.clone(), 7)),
            "under the previous key"
        );
        assert_eq!(two.unseal(&new), Ok((new_record, 7)));
        assert_eq!(
            one.unseal(&new),
            Err(UnsealError::UnknownKey),
            "a newer key"
        );
        let three = keys(&[1, 3, 2]);
        assert_eq!(three.active_number(), 3, "the highest number seals");
        assert_eq!(three.unseal(&old), Err(UnsealError::UnknownKey), "retired");
        assert!(three.unseal(&new).is_ok());
        // Key 257 has key 1's id byte; it is another key all the same.
        let wrapped = keys(&[257, 256]);
        assert_eq!(wrapped.unseal(&old), Err(UnsealError::Invalid));
        assert!(TokenKeys::new(Vec::new(), None).is_none());
    }

    #[test]
    fn keys_come_from_their_server_secrets() {
        assert_eq!(key_secret_name(12), "access_token_key.12");
        for (name, number) in [
            ("access_token_key.1", Some(1)),
            ("access_token_key.300", Some(300)),
            ("access_token_key", None),
            ("access_token_key.0", None),
            ("access_token_key.01", None),
            ("access_token_key.+1", None),
            ("access_token_key.1x", None),
            ("access_token_keys.1", None),
            ("csrf_key", None),
        ] {
            assert_eq!(key_number(name), number, "{name}");
        }
        let secret = |name: &str, value: &[u8]| (name.to_owned(), value.to_vec());
        let keys = TokenKeys::from_secrets(&[
            secret("access_token_key.1", b"secret 1"),
            secret("access_token_key", b"the sc1 key"),
            secret("access_token_key.2", b"secret 2"),
        ])
        .unwrap();
        assert_eq!(keys.active_number(), 2);
        let (token, record) = keys.seal(grant(CLIENT, None), 0);
        assert_eq!(
            self::keys(&[2]).unseal(&token),
            Ok((record, 0)),
            "key 2, derived from its secret"
        );
        let (old, _) = self::keys(&[1]).seal(grant(CLIENT, None), 0);
        assert!(keys.unseal(&old).is_ok());
        let (sc1, _) = legacy::seal(b"the sc1 key", grant(CLIENT, None), 0);
        assert!(keys.unseal(&sc1).is_ok());
        assert!(TokenKeys::from_secrets(&[secret("access_token_key", b"k")]).is_none());
        assert_ne!(new_key_secret(), new_key_secret());
    }

    #[test]
    fn sc1_tokens_open_with_the_legacy_key_only() {
        let keys = keys(&[1]);
        let (token, record) = legacy::seal(b"the sc1 key", grant("bank-1", Some(CONSENT)), 7);
        assert!(token.expose().starts_with("sc1.") && token.is_sealed());
        assert_eq!(keys.unseal(&token), Ok((record, 7)));
        let without = TokenKeys::new(vec![TokenKey::derive(1, b"secret 1")], None).unwrap();
        assert_eq!(without.unseal(&token), Err(UnsealError::Invalid));
        let (other, _) = legacy::seal(b"another", grant("bank-1", None), 7);
        assert_eq!(keys.unseal(&other), Err(UnsealError::Invalid));
        let text = token.expose();
        let (payload, tag) = text.rsplit_once('.').unwrap();
        // Claims swapped for other, well-formed claims under the old MAC.
        let forged = URL_SAFE_NO_PAD.encode(
            br#"{"c":"bank-1","a":"debt","s":"debt.unsecured.processing","iat":1800000000,"exp":1900000000,"g":7,"j":"x"}"#,
        );
        for bad in [
            format!("sc1.{forged}.{tag}"),
            format!("{payload}.{}", &tag[1..]),
            format!("{payload}x.{tag}"),
            payload.to_owned(),
            "sc1.".to_owned(),
            "sc1..".to_owned(),
            "sc1.!!!.???".to_owned(),
        ] {
            assert_eq!(
                keys.unseal(&AccessToken::from_presented(&bad)),
                Err(UnsealError::Invalid),
                "{bad}"
            );
        }
    }
}
