//! The client-credentials grant (RFC 6749 §4.4) with the `audience` parameter
//! and the audience/scope table of SPEC §3.

use time::{Duration, OffsetDateTime};

use crate::domain::scope::ScopeError;
use crate::domain::{ApiAudience, ApiAudiences, Client, Scope, ScopeSet};
use crate::error::OAuthError;
use crate::token::{AccessToken, AccessTokenRecord};

/// The grant-specific parameters of a client-credentials token request.
#[derive(Debug, Clone, Default)]
pub struct ClientCredentialsRequest<'a> {
    pub audience: Option<&'a str>,
    pub scope: Option<&'a str>,
}

/// What the server has decided to issue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientCredentialsGrant {
    pub audience: ApiAudience,
    pub scopes: ScopeSet,
    /// The granted scopes as the response names them: each by the name the
    /// client asked with (a deprecated older name is answered with itself,
    /// so that a client comparing granted with requested scopes is content).
    pub scope_names: String,
}

/// `unknown audience; accepted: …`: the description of an audience that is
/// none of this server's, listing the URLs it accepts (exact matches), so
/// that a wrong host, port or path is seen at once.
fn unknown_audience(audiences: &ApiAudiences) -> String {
    let accepted: Vec<String> = ApiAudience::ALL
        .into_iter()
        .map(|a| audiences.url(a))
        .collect();
    format!("unknown audience; accepted: {}", accepted.join(", "))
}

/// Decides a client-credentials request for an authenticated, enabled client.
/// Never narrows silently: anything not allowed is an error.
pub fn decide(
    client: &Client,
    request: &ClientCredentialsRequest<'_>,
    audiences: &ApiAudiences,
) -> Result<ClientCredentialsGrant, OAuthError> {
    let requested = request
        .audience
        .ok_or_else(|| OAuthError::invalid_request("the audience parameter is required"))?;
    let audience = audiences
        .parse(requested)
        .ok_or_else(|| OAuthError::invalid_request(unknown_audience(audiences)))?;
    let client_may_use = match audience {
        ApiAudience::Debt => !client.purposes.is_empty(),
        ApiAudience::ConsentAgreement => client.may_create_agreements,
        ApiAudience::ConsentFeed => client.may_read_events,
    };
    if !client_may_use {
        return Err(OAuthError::unauthorized_client(
            "the client is not allowed to request tokens for this audience",
        ));
    }

    let scopes = ScopeSet::parse(request.scope.unwrap_or("")).map_err(|e| match e {
        ScopeError::Empty => OAuthError::invalid_scope("the scope parameter is required"),
        ScopeError::Unknown(s) => OAuthError::invalid_scope(format!("unknown scope '{s}'")),
    })?;
    for scope in scopes.iter() {
        if !audience.allows_scope(scope) {
            return Err(OAuthError::invalid_scope(format!(
                "scope '{scope}' is not valid for this audience"
            )));
        }
        if let Some(purpose) = scope.purpose() {
            if !client.allows_purpose(purpose) {
                return Err(OAuthError::invalid_scope(format!(
                    "the client is not allowed scope '{scope}'"
                )));
            }
        }
    }
    let mut scope_names: Vec<&str> = Vec::new();
    let mut named: Vec<Scope> = Vec::new();
    for value in request.scope.unwrap_or("").split(' ') {
        if let Some(scope) = Scope::parse(value).filter(|s| !named.contains(s)) {
            named.push(scope);
            scope_names.push(value);
        }
    }
    Ok(ClientCredentialsGrant {
        audience,
        scopes,
        scope_names: scope_names.join(" "),
    })
}

impl ClientCredentialsGrant {
    /// Mints a sealed token under the active key of `keys` (see
    /// [`crate::token`]): nothing to store.
    pub fn mint(
        self,
        keys: &crate::token::TokenKeys,
        client: &Client,
        now: OffsetDateTime,
        lifetime: Duration,
    ) -> (AccessToken, AccessTokenRecord) {
        let grant = crate::token::TokenGrant {
            client_id: client.id.clone(),
            audience: self.audience,
            scopes: self.scopes,
            issued_at: now,
            expires_at: now + lifetime,
            consent_id: None,
        };
        keys.seal(grant, client.token_generation)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{ClientId, ClientName, ClientSecret, OrgNumber, Purpose};
    use crate::OAuthErrorCode;

    fn client(purposes: Vec<Purpose>, agreements: bool, events: bool) -> Client {
        Client {
            id: ClientId::parse("c1").unwrap(),
            secret_hash: ClientSecret::generate().hash(),
            name: ClientName::parse("Bank").unwrap(),
            org_number: OrgNumber::parse("974760673").unwrap(),
            redirect_uris: vec![],
            purposes,
            may_create_agreements: agreements,
            may_read_events: events,
            require_pkce: false,
            disabled: false,
            created_at: OffsetDateTime::UNIX_EPOCH,
            token_generation: 0,
            request_objects: Default::default(),
        }
    }

    fn ask(
        c: &Client,
        audience: Option<&str>,
        scope: Option<&str>,
    ) -> Result<ClientCredentialsGrant, OAuthErrorCode> {
        let apis = ApiAudiences::new("https://api.test");
        decide(c, &ClientCredentialsRequest { audience, scope }, &apis).map_err(|e| e.code)
    }

    #[test]
    fn an_unknown_audience_lists_the_accepted_ones() {
        let apis = ApiAudiences::new("https://api.test");
        let c = client(vec![Purpose::Presentation], true, true);
        let request = ClientCredentialsRequest {
            audience: Some("https://api.test/v1/debts"),
            scope: Some("debt.unsecured.presentation"),
        };
        let e = decide(&c, &request, &apis).unwrap_err();
        assert_eq!(e.code, OAuthErrorCode::InvalidRequest);
        assert_eq!(
            e.description,
            "unknown audience; accepted: https://api.test/v1/debt, https://api.test/v1/consent/agreement, https://api.test/feed/v1/consent"
        );
    }

    #[test]
    fn grants_exactly_what_the_table_allows() {
        let all = client(vec![Purpose::Presentation, Purpose::Processing], true, true);
        let g = ask(
            &all,
            Some("https://api.test/v1/debt"),
            Some("debt.unsecured.presentation debt.unsecured.processing"),
        )
        .unwrap();
        assert_eq!(g.audience, ApiAudience::Debt);
        assert_eq!(
            g.scopes.to_string(),
            "debt.unsecured.presentation debt.unsecured.processing"
        );
        assert!(ask(
            &all,
            Some("https://api.test/v1/consent/agreement"),
            Some("consent.create")
        )
        .is_ok());
        assert!(ask(
            &all,
            Some("https://api.test/feed/v1/consent"),
            Some("client.access.consent.events")
        )
        .is_ok());
    }

    #[test]
    fn the_feed_scope_s_older_name_is_granted_and_answered_by_that_name() {
        let all = client(vec![Purpose::Presentation], false, true);
        let feed = Some("https://api.test/feed/v1/consent");
        let g = ask(&all, feed, Some("consent.events")).unwrap();
        assert_eq!(g.scopes.to_string(), "client.access.consent.events");
        assert_eq!(g.scope_names, "consent.events");
        let both = ask(
            &all,
            feed,
            Some("client.access.consent.events consent.events"),
        )
        .unwrap();
        assert_eq!(both.scope_names, "client.access.consent.events");
        let plain = ask(&all, feed, Some("client.access.consent.events")).unwrap();
        assert_eq!(plain.scope_names, "client.access.consent.events");
        assert_eq!(
            ask(
                &all,
                Some("https://api.test/v1/debt"),
                Some("consent.events")
            ),
            Err(OAuthErrorCode::InvalidScope)
        );
    }

    #[test]
    fn refuses_what_the_table_or_client_does_not_allow() {
        let all = client(vec![Purpose::Presentation, Purpose::Processing], true, true);
        assert_eq!(
            ask(&all, None, Some("consent.create")),
            Err(OAuthErrorCode::InvalidRequest)
        );
        assert_eq!(
            ask(
                &all,
                Some("https://api.test/v2/debt"),
                Some("consent.create")
            ),
            Err(OAuthErrorCode::InvalidRequest)
        );
        assert_eq!(
            ask(
                &all,
                Some("https://api.test/v1/debt"),
                Some("consent.create")
            ),
            Err(OAuthErrorCode::InvalidScope)
        );
        assert_eq!(
            ask(&all, Some("https://api.test/v1/debt"), None),
            Err(OAuthErrorCode::InvalidScope)
        );
        assert_eq!(
            ask(
                &all,
                Some("https://api.test/v1/debt"),
                Some("debt.unsecured")
            ),
            Err(OAuthErrorCode::InvalidScope)
        );

        let presentation_only = client(vec![Purpose::Presentation], false, false);
        assert_eq!(
            ask(
                &presentation_only,
                Some("https://api.test/v1/debt"),
                Some("debt.unsecured.processing")
            ),
            Err(OAuthErrorCode::InvalidScope)
        );
        assert_eq!(
            ask(
                &presentation_only,
                Some("https://api.test/v1/consent/agreement"),
                Some("consent.create")
            ),
            Err(OAuthErrorCode::UnauthorizedClient)
        );
        assert_eq!(
            ask(
                &presentation_only,
                Some("https://api.test/feed/v1/consent"),
                Some("client.access.consent.events")
            ),
            Err(OAuthErrorCode::UnauthorizedClient)
        );

        let no_purposes = client(vec![], true, false);
        assert_eq!(
            ask(
                &no_purposes,
                Some("https://api.test/v1/debt"),
                Some("debt.unsecured.presentation")
            ),
            Err(OAuthErrorCode::UnauthorizedClient)
        );
    }
}
