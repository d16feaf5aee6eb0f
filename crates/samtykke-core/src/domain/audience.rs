//! Token audiences, derived from the API base URL (SPEC §1).

use super::scope::Scope;

/// The resource APIs a client-credentials token can be issued for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ApiAudience {
    /// `{api}/v1/debt`
    Debt,
    /// `{api}/v1/consent/agreement`
    ConsentAgreement,
    /// `{api}/feed/v1/consent`
    ConsentFeed,
}

impl ApiAudience {
    pub const ALL: [ApiAudience; 3] = [Self::Debt, Self::ConsentAgreement, Self::ConsentFeed];

    fn path(self) -> &'static str {
        match self {
            Self::Debt => "/v1/debt",
            Self::ConsentAgreement => "/v1/consent/agreement",
            Self::ConsentFeed => "/feed/v1/consent",
        }
    }

    /// Whether `scope` may be asked for together with this audience (SPEC §3 table).
    pub fn allows_scope(self, scope: Scope) -> bool {
        matches!(
            (self, scope),
            (Self::Debt, Scope::DebtPresentation | Scope::DebtProcessing)
                | (Self::ConsentAgreement, Scope::ConsentCreate)
                | (Self::ConsentFeed, Scope::ConsentEvents)
        )
    }

    pub fn as_key(self) -> &'static str {
        match self {
            Self::Debt => "debt",
            Self::ConsentAgreement => "consent_agreement",
            Self::ConsentFeed => "consent_feed",
        }
    }

    pub fn from_key(key: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.as_key() == key)
    }
}

/// The audience URLs of one deployment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiAudiences {
    base: String,
}

impl ApiAudiences {
    /// `api_base` is the API base URL, e.g. `https://api.example.no`; a trailing
    /// slash is ignored.
    pub fn new(api_base: &str) -> Self {
        Self {
            base: api_base.trim_end_matches('/').to_owned(),
        }
    }

    pub fn url(&self, audience: ApiAudience) -> String {
        format!("{}{}", self.base, audience.path())
    }

    /// Exact match of a requested `audience` against the known URLs.
    pub fn parse(&self, requested: &str) -> Option<ApiAudience> {
        let path = requested.strip_prefix(self.base.as_str())?;
        ApiAudience::ALL.into_iter().find(|a| a.path() == path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn audiences_are_matched_exactly() {
        let apis = ApiAudiences::new("http://127.0.0.1:8080/");
        assert_eq!(
            apis.parse("http://127.0.0.1:8080/v1/debt"),
            Some(ApiAudience::Debt)
        );
        assert_eq!(
            apis.parse("http://127.0.0.1:8080/feed/v1/consent"),
            Some(ApiAudience::ConsentFeed)
        );
        for other in [
            "http://127.0.0.1:8080/v1/debt/",
            "http://127.0.0.1:8080/v1/debt/x",
            "http://127.0.0.1:8080/v1/DEBT",
            "http://127.0.0.1:8080",
            "https://127.0.0.1:8080/v1/debt",
            "",
        ] {
            assert_eq!(apis.parse(other), None, "{other}");
        }
    }
}
