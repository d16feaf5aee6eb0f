//! Who a client certificate speaks for: its subject's
//! `organizationIdentifier` (OID 2.5.4.97), which ETSI EN 319 412-1 §5.1.4
//! writes as a three-letter registration scheme, a two-letter country code,
//! `-`, and the identifier: `NTRNO-923456783` is the Norwegian national trade
//! register (Enhetsregisteret) number 923456783. Norwegian enterprise
//! certificates (Buypass, Commfides) carry it.
//!
//! The certificate has already been verified by the TLS handshake (chain to
//! the configured client CA, validity, signature); this only reads it.

use samtykke_core::domain::OrgNumber;
use x509_cert::der::asn1::ObjectIdentifier;
use x509_cert::der::{Decode, Tag, Tagged};
use x509_cert::Certificate;

/// `organizationIdentifier` (X.520, ETSI EN 319 412-1).
pub const ORGANIZATION_IDENTIFIER: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.4.97");

/// The semantics identifier of a Norwegian organisation number.
pub const NORWEGIAN_TRADE_REGISTER: &str = "NTRNO-";

/// Why a client certificate names no organisation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CertificateOrgError {
    #[error("the client certificate could not be read")]
    Unreadable,
    #[error("the client certificate's subject has no organizationIdentifier (OID 2.5.4.97)")]
    Missing,
    #[error("the client certificate's subject has more than one organizationIdentifier")]
    Ambiguous,
    #[error("the client certificate's organizationIdentifier is not a text string")]
    NotText,
    #[error("the client certificate's organizationIdentifier {0:?} is not of the form NTRNO-<organisation number>")]
    NotNorwegian(String),
    #[error(
        "the client certificate's organizationIdentifier {0:?} holds no valid organisation number"
    )]
    BadOrgNumber(String),
}

/// The organisation a (DER) client certificate was issued to, from its
/// subject's `organizationIdentifier` `NTRNO-<organisation number>`.
pub fn organisation_of(der: &[u8]) -> Result<OrgNumber, CertificateOrgError> {
    let certificate = Certificate::from_der(der).map_err(|_| CertificateOrgError::Unreadable)?;
    let mut found = None;
    for rdn in certificate.tbs_certificate.subject.0.iter() {
        for attribute in rdn.0.iter() {
            if attribute.oid != ORGANIZATION_IDENTIFIER {
                continue;
            }
            if found.is_some() {
                return Err(CertificateOrgError::Ambiguous);
            }
            // A DirectoryString; the CAs use UTF8String or PrintableString.
            let text = match attribute.value.tag() {
                Tag::Utf8String | Tag::PrintableString | Tag::Ia5String => {
                    std::str::from_utf8(attribute.value.value())
                        .map_err(|_| CertificateOrgError::NotText)?
                }
                _ => return Err(CertificateOrgError::NotText),
            };
            found = Some(text.trim().to_owned());
        }
    }
    let identifier = found.ok_or(CertificateOrgError::Missing)?;
    parse_organization_identifier(&identifier)
}

/// `NTRNO-923456783` → 923456783 (mod-11 checked).
pub fn parse_organization_identifier(identifier: &str) -> Result<OrgNumber, CertificateOrgError> {
    // Printed (it is no secret), but bounded.
    let shown = || identifier.chars().take(64).collect::<String>();
    let number = identifier
        .strip_prefix(NORWEGIAN_TRADE_REGISTER)
        .ok_or_else(|| CertificateOrgError::NotNorwegian(shown()))?;
    OrgNumber::parse(number).map_err(|_| CertificateOrgError::BadOrgNumber(shown()))
}

#[cfg(test)]
mod tests {
    use rcgen::{CertificateParams, DnType, DnValue, KeyPair};

    use super::*;

    /// A self-signed certificate whose subject has `attributes`.
    fn certificate(attributes: &[(DnType, DnValue)]) -> Vec<u8> {
        let mut params = CertificateParams::new(vec!["client.example".to_owned()]).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, "Nordlys Bank ASA");
        for (kind, value) in attributes {
            params.distinguished_name.push(kind.clone(), value.clone());
        }
        let key = KeyPair::generate().unwrap();
        params.self_signed(&key).unwrap().der().to_vec()
    }

    fn org_id() -> DnType {
        DnType::CustomDnType(vec![2, 5, 4, 97])
    }

    #[test]
    fn the_organisation_number_is_read_from_the_organization_identifier() {
        for value in [
            DnValue::Utf8String("NTRNO-923456783".into()),
            DnValue::PrintableString("NTRNO-923456783".try_into().unwrap()),
        ] {
            let der = certificate(&[(org_id(), value)]);
            assert_eq!(
                organisation_of(&der).unwrap(),
                OrgNumber::parse("923456783").unwrap()
            );
        }
    }

    #[test]
    fn a_certificate_without_one_names_no_organisation() {
        let der = certificate(&[(DnType::OrganizationName, "Nordlys Bank ASA".into())]);
        assert_eq!(organisation_of(&der), Err(CertificateOrgError::Missing));
        assert_eq!(
            organisation_of(b"not a certificate"),
            Err(CertificateOrgError::Unreadable)
        );
    }

    #[test]
    fn only_a_valid_norwegian_organisation_number_is_accepted() {
        let of = |v: &str| organisation_of(&certificate(&[(org_id(), v.into())]));
        assert!(matches!(
            of("VATSE-5560000000"),
            Err(CertificateOrgError::NotNorwegian(_))
        ));
        assert!(matches!(
            of("923456783"),
            Err(CertificateOrgError::NotNorwegian(_))
        ));
        assert!(matches!(
            of("NTRNO-923456784"),
            Err(CertificateOrgError::BadOrgNumber(_))
        ));
        assert!(matches!(
            of("NTRNO-92345678"),
            Err(CertificateOrgError::BadOrgNumber(_))
        ));
    }
}
