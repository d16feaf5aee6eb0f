//! The claims of an `sc2.` token in a fixed binary layout (before
//! encryption), big-endian:
//!
//! | bytes | what |
//! |---|---|
//! | 1 | audience: 1 `debt`, 2 `consent_agreement`, 3 `consent_feed` |
//! | 1 | flags: bit 0 a consent id follows; bit 1 the client id is a UUID in 16 bytes |
//! | 8 | `iat`, Unix seconds (i64) |
//! | 8 | `exp`, Unix seconds (i64) |
//! | 8 | the client's token generation at issue (i64) |
//! | 1 + n | n scopes, one code each, in the order granted: 1 `debt.unsecured.presentation`, 2 `debt.unsecured.processing`, 3 `consent.create`, 4 `client.access.consent.events`, 5 `openid` |
//! | 16 | the consent id, if flagged |
//! | 16 or 1 + n | the client id: a lower-case hyphenated UUID as its 16 bytes, else its length and its ASCII characters |
//!
//! Nothing may follow. The codes are part of the format: new audiences and
//! scopes get new codes, existing ones never change.

use crate::consent::ConsentId;
use crate::domain::{ApiAudience, ClientId, Scope, ScopeSet};

const HAS_CONSENT: u8 = 1;
const UUID_CLIENT: u8 = 2;

/// The claims as sealed; times in Unix seconds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Claims {
    pub client_id: ClientId,
    pub audience: ApiAudience,
    pub scopes: ScopeSet,
    pub iat: i64,
    pub exp: i64,
    pub generation: i64,
    pub consent_id: Option<ConsentId>,
}

fn audience_code(audience: ApiAudience) -> u8 {
    match audience {
        ApiAudience::Debt => 1,
        ApiAudience::ConsentAgreement => 2,
        ApiAudience::ConsentFeed => 3,
    }
}

fn audience_of(code: u8) -> Option<ApiAudience> {
    Some(match code {
        1 => ApiAudience::Debt,
        2 => ApiAudience::ConsentAgreement,
        3 => ApiAudience::ConsentFeed,
        _ => return None,
    })
}

fn scope_code(scope: Scope) -> u8 {
    match scope {
        Scope::DebtPresentation => 1,
        Scope::DebtProcessing => 2,
        Scope::ConsentCreate => 3,
        Scope::ConsentEvents => 4,
        Scope::OpenId => 5,
    }
}

fn scope_of(code: u8) -> Option<Scope> {
    Some(match code {
        1 => Scope::DebtPresentation,
        2 => Scope::DebtProcessing,
        3 => Scope::ConsentCreate,
        4 => Scope::ConsentEvents,
        5 => Scope::OpenId,
        _ => return None,
    })
}

/// The client id as a UUID, if it is one in the canonical form (so that
/// it comes back as the very same text).
fn client_uuid(id: &ClientId) -> Option<uuid::Uuid> {
    let s = id.as_str();
    let uuid = uuid::Uuid::try_parse(s).ok()?;
    let mut buf = uuid::Uuid::encode_buffer();
    (uuid.hyphenated().encode_lower(&mut buf) == s).then_some(uuid)
}

impl Claims {
    /// Appends the encoded claims to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let uuid = client_uuid(&self.client_id);
        let mut flags = 0;
        if self.consent_id.is_some() {
            flags |= HAS_CONSENT;
        }
        if uuid.is_some() {
            flags |= UUID_CLIENT;
        }
        out.push(audience_code(self.audience));
        out.push(flags);
        out.extend_from_slice(&self.iat.to_be_bytes());
        out.extend_from_slice(&self.exp.to_be_bytes());
        out.extend_from_slice(&self.generation.to_be_bytes());
        let count = out.len();
        out.push(0);
        for scope in self.scopes.iter() {
            out.push(scope_code(scope));
            out[count] += 1;
        }
        if let Some(consent) = self.consent_id {
            out.extend_from_slice(consent.as_bytes());
        }
        match uuid {
            Some(uuid) => out.extend_from_slice(uuid.as_bytes()),
            None => {
                // A client id has at most 128 characters (`ClientId::parse`).
                let id = self.client_id.as_str().as_bytes();
                out.push(u8::try_from(id.len()).unwrap_or(u8::MAX));
                out.extend_from_slice(id);
            }
        }
    }

    /// The claims in `bytes`, if they are exactly one well-formed encoding.
    pub fn decode(bytes: &[u8]) -> Option<Self> {
        let mut r = Reader(bytes);
        let audience = audience_of(r.byte()?)?;
        let flags = r.byte()?;
        if flags & !(HAS_CONSENT | UUID_CLIENT) != 0 {
            return None;
        }
        let iat = i64::from_be_bytes(r.array()?);
        let exp = i64::from_be_bytes(r.array()?);
        let generation = i64::from_be_bytes(r.array()?);
        let count = usize::from(r.byte()?);
        let mut scopes = Vec::with_capacity(count);
        for &code in r.take(count)? {
            scopes.push(scope_of(code)?);
        }
        let scopes = ScopeSet::from_scopes(&scopes)?;
        let consent_id = match flags & HAS_CONSENT {
            0 => None,
            _ => Some(ConsentId::from_bytes(r.array()?)),
        };
        let client_id = if flags & UUID_CLIENT != 0 {
            let uuid = uuid::Uuid::from_bytes(r.array()?);
            let mut buf = uuid::Uuid::encode_buffer();
            ClientId::parse(uuid.hyphenated().encode_lower(&mut buf)).ok()?
        } else {
            let len = usize::from(r.byte()?);
            ClientId::parse(std::str::from_utf8(r.take(len)?).ok()?).ok()?
        };
        if !r.0.is_empty() {
            return None;
        }
        Some(Self {
            client_id,
            audience,
            scopes,
            iat,
            exp,
            generation,
            consent_id,
        })
    }
}

/// Reads from the front of a byte slice.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }

    fn byte(&mut self) -> Option<u8> {
        Some(self.take(1)?[0])
    }

    fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        self.take(N)?.try_into().ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(client: &str, scope: &str, consent: Option<&str>) -> Claims {
        Claims {
            client_id: ClientId::parse(client).unwrap(),
            audience: ApiAudience::Debt,
            scopes: ScopeSet::parse(scope).unwrap(),
            iat: 1_800_000_000,
            exp: 1_800_003_600,
            generation: 3,
            consent_id: consent.map(|c| ConsentId::parse(c).unwrap()),
        }
    }

    #[test]
    fn every_shape_of_claims_round_trips() {
        for c in [
            claims("bank-1", "debt.unsecured.presentation", None),
            claims(
                "d8d34434-8030-4271-8189-381c2edb5c18",
                "debt.unsecured.processing openid",
                Some("0b0d4a7e-41c5-4c39-9a5e-7cc0c4b8f1a2"),
            ),
            // Upper case is a valid client id but not the canonical UUID
            // text: it is kept as text, so that it comes back unchanged.
            claims(
                "D8D34434-8030-4271-8189-381C2EDB5C18",
                "openid debt.unsecured.presentation",
                None,
            ),
            claims(&"x".repeat(128), "consent.create", None),
        ] {
            let mut bytes = Vec::new();
            c.encode(&mut bytes);
            assert_eq!(Claims::decode(&bytes), Some(c.clone()));
        }
        let mut uuid_client = Vec::new();
        claims(
            "d8d34434-8030-4271-8189-381c2edb5c18",
            "debt.unsecured.presentation",
            None,
        )
        .encode(&mut uuid_client);
        assert_eq!(
            uuid_client.len(),
            2 + 24 + 2 + 16,
            "a UUID client id takes 16 bytes"
        );
    }

    #[test]
    fn anything_but_one_exact_encoding_is_refused() {
        let mut good = Vec::new();
        claims("bank-1", "debt.unsecured.presentation", None).encode(&mut good);
        for n in 0..good.len() {
            assert_eq!(Claims::decode(&good[..n]), None, "truncated to {n}");
        }
        let mut longer = good.clone();
        longer.push(0);
        assert_eq!(Claims::decode(&longer), None, "trailing byte");
        for (at, value) in [(0, 9), (1, 4), (26, 0), (27, 6)] {
            let mut bad = good.clone();
            bad[at] = value;
            assert_eq!(Claims::decode(&bad), None, "byte {at} = {value}");
        }
    }
}
