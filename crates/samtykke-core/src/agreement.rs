//! Agreement (integrated) consents: `PUT /v1/consent/agreement` decided as a
//! pure function (SPEC §5).

use time::OffsetDateTime;

use crate::consent::{Consent, ConsentDuration, ConsentKind, ConsentScope};
use crate::domain::{Client, Nin, NinPolicy, Purpose};

/// The request's fields as they arrived (already checked for JSON type).
#[derive(Debug, Clone, Default)]
pub struct AgreementRequest<'a> {
    pub nin: Option<&'a str>,
    pub scope_of_consent: Option<&'a str>,
    pub consent_duration_days: Option<i64>,
    /// `client_consent_id`, or its older name `our_consent_id`.
    pub client_consent_id: Option<&'a str>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AgreementError {
    /// 400: the request is malformed.
    #[error("{0}")]
    Invalid(String),
    /// 403: the client may not register this consent.
    #[error("{0}")]
    Forbidden(String),
}

fn required<T>(value: Option<T>, name: &str) -> Result<T, AgreementError> {
    value.ok_or_else(|| AgreementError::Invalid(format!("{name} is required")))
}

/// Decides a registration by an authenticated client holding a
/// `consent.create` token. The duration is clamped to the purpose's maximum.
pub fn decide(
    client: &Client,
    request: &AgreementRequest<'_>,
    policy: NinPolicy,
    now: OffsetDateTime,
) -> Result<Consent, AgreementError> {
    if !client.may_create_agreements {
        return Err(AgreementError::Forbidden(
            "the client may not register agreement consents".into(),
        ));
    }
    let nin = Nin::parse(required(request.nin, "nin")?, policy)
        .map_err(|e| AgreementError::Invalid(format!("nin: {e}")))?;
    let scope = required(request.scope_of_consent, "scope_of_consent")?;
    let purpose = Purpose::from_scope_name(scope).ok_or_else(|| {
        AgreementError::Invalid(
            "scope_of_consent must be debt.unsecured.presentation or debt.unsecured.processing"
                .into(),
        )
    })?;
    if !client.allows_purpose(purpose) {
        return Err(AgreementError::Forbidden(format!(
            "the client may not use the purpose {scope}"
        )));
    }
    let days = required(request.consent_duration_days, "consent_duration_days")?;
    let duration = ConsentDuration::days_for(purpose, days).ok_or_else(|| {
        AgreementError::Invalid("consent_duration_days must be a positive number of days".into())
    })?;
    let client_consent_id = required(request.client_consent_id, "client_consent_id")?;
    if client_consent_id.trim().is_empty()
        || client_consent_id.chars().count() > 255
        || client_consent_id.chars().any(char::is_control)
    {
        return Err(AgreementError::Invalid(
            "client_consent_id must have 1 to 255 printable characters".into(),
        ));
    }
    Ok(Consent::new(
        client.id.clone(),
        nin,
        ConsentScope { purpose, duration },
        ConsentKind::Agreement,
        Some(client_consent_id.to_owned()),
        now,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{ClientId, ClientName, ClientSecret, OrgNumber};

    fn client(agreements: bool, purposes: Vec<Purpose>) -> Client {
        Client {
            id: ClientId::parse("c").unwrap(),
            secret_hash: ClientSecret::generate().hash(),
            name: ClientName::parse("Bank").unwrap(),
            org_number: OrgNumber::parse("974760673").unwrap(),
            redirect_uris: vec![],
            purposes,
            may_create_agreements: agreements,
            may_read_events: false,
            require_pkce: false,
            disabled: false,
            created_at: OffsetDateTime::UNIX_EPOCH,
            token_generation: 0,
            request_objects: Default::default(),
        }
    }

    fn request(days: i64) -> AgreementRequest<'static> {
        AgreementRequest {
            nin: Some("14842249091"),
            scope_of_consent: Some("debt.unsecured.processing"),
            consent_duration_days: Some(days),
            client_consent_id: Some("my-id-001"),
        }
    }

    #[test]
    fn a_valid_registration_becomes_an_agreement_consent_with_clamped_duration() {
        let c = client(true, vec![Purpose::Processing]);
        let t0 = OffsetDateTime::UNIX_EPOCH;
        let consent = decide(&c, &request(100), NinPolicy::AllowSynthetic, t0).unwrap();
        assert_eq!(consent.kind, ConsentKind::Agreement);
        assert_eq!(consent.duration, ConsentDuration::Days(28));
        assert_eq!(consent.expires_at, t0 + time::Duration::days(28));
        assert_eq!(consent.client_consent_id.as_deref(), Some("my-id-001"));
    }

    #[test]
    fn permission_and_validation_errors_are_distinguished() {
        let t0 = OffsetDateTime::UNIX_EPOCH;
        let forbidden = |c: &Client| {
            matches!(
                decide(c, &request(10), NinPolicy::AllowSynthetic, t0),
                Err(AgreementError::Forbidden(_))
            )
        };
        assert!(forbidden(&client(false, vec![Purpose::Processing])));
        assert!(forbidden(&client(true, vec![Purpose::Presentation])));
        let c = client(true, vec![Purpose::Processing]);
        let invalid = |r: AgreementRequest<'_>, p| {
            matches!(decide(&c, &r, p, t0), Err(AgreementError::Invalid(_)))
        };
        assert!(invalid(request(0), NinPolicy::AllowSynthetic));
        assert!(invalid(request(-5), NinPolicy::AllowSynthetic));
        assert!(
            invalid(request(10), NinPolicy::RealOnly),
            "synthetic outside sandbox"
        );
        assert!(invalid(
            AgreementRequest {
                nin: Some("12345678901"),
                ..request(10)
            },
            NinPolicy::AllowSynthetic
        ));
        assert!(invalid(
            AgreementRequest {
                scope_of_consent: Some("debt.unsecured.processing.10"),
                ..request(10)
            },
            NinPolicy::AllowSynthetic
        ));
        assert!(invalid(
            AgreementRequest {
                client_consent_id: Some(" "),
                ..request(10)
            },
            NinPolicy::AllowSynthetic
        ));
        assert!(invalid(
            AgreementRequest {
                nin: None,
                ..request(10)
            },
            NinPolicy::AllowSynthetic
        ));
    }
}
