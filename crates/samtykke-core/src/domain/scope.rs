//! The scopes of the token endpoint (SPEC §3).

use std::fmt;

use super::client::Purpose;

/// One scope value the server knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scope {
    /// `debt.unsecured.presentation`: show the debt to the individual.
    DebtPresentation,
    /// `debt.unsecured.processing`: credit assessment.
    DebtProcessing,
    /// `consent.create`: register agreement consents.
    ConsentCreate,
    /// `client.access.consent.events`: read the consent event feed.
    ConsentEvents,
    /// `openid`: an ID token and `/userinfo` (authorization-code flow only).
    OpenId,
}

impl Scope {
    pub const ALL: [Scope; 5] = [
        Scope::DebtPresentation,
        Scope::DebtProcessing,
        Scope::ConsentCreate,
        Scope::ConsentEvents,
        Scope::OpenId,
    ];

    /// Older names that the published contract's history renamed, still
    /// accepted (deprecated) so that an integration written against the
    /// earlier version keeps working.
    pub const DEPRECATED_NAMES: [(&'static str, Scope); 1] =
        [("consent.events", Scope::ConsentEvents)];

    /// A scope by its name or by a deprecated older name.
    pub fn parse(value: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|s| s.as_str() == value)
            .or_else(|| {
                Self::DEPRECATED_NAMES
                    .iter()
                    .find(|(name, _)| *name == value)
                    .map(|(_, scope)| *scope)
            })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::DebtPresentation => "debt.unsecured.presentation",
            Self::DebtProcessing => "debt.unsecured.processing",
            Self::ConsentCreate => "consent.create",
            Self::ConsentEvents => "client.access.consent.events",
            Self::OpenId => "openid",
        }
    }

    /// The purpose a debt scope stands for.
    pub fn purpose(self) -> Option<Purpose> {
        match self {
            Self::DebtPresentation => Some(Purpose::Presentation),
            Self::DebtProcessing => Some(Purpose::Processing),
            _ => None,
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A non-empty list of distinct scopes, in the order they were asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScopeSet(Vec<Scope>);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScopeError {
    #[error("scope is required")]
    Empty,
    #[error("unknown scope '{0}'")]
    Unknown(String),
}

impl ScopeSet {
    /// Parses a space-separated scope string (RFC 6749 §3.3). Repeated values
    /// are kept once.
    pub fn parse(input: &str) -> Result<Self, ScopeError> {
        let mut scopes = Vec::new();
        for value in input.split(' ').filter(|v| !v.is_empty()) {
            let scope = Scope::parse(value).ok_or_else(|| {
                let shown: String = value.chars().take(64).collect();
                ScopeError::Unknown(shown)
            })?;
            if !scopes.contains(&scope) {
                scopes.push(scope);
            }
        }
        if scopes.is_empty() {
            return Err(ScopeError::Empty);
        }
        Ok(Self(scopes))
    }

    /// A set of scopes from already-validated parts (at least one).
    pub fn from_scopes(scopes: &[Scope]) -> Option<ScopeSet> {
        let mut set = Vec::new();
        for s in scopes {
            if !set.contains(s) {
                set.push(*s);
            }
        }
        (!set.is_empty()).then_some(ScopeSet(set))
    }

    /// The scopes of an authorization-code token: the purpose's scope, and
    /// `openid` when it was asked for.
    pub fn for_purpose(purpose: Purpose, openid: bool) -> ScopeSet {
        let debt = match purpose {
            Purpose::Presentation => Scope::DebtPresentation,
            Purpose::Processing => Scope::DebtProcessing,
        };
        if openid {
            ScopeSet(vec![debt, Scope::OpenId])
        } else {
            ScopeSet(vec![debt])
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = Scope> + '_ {
        self.0.iter().copied()
    }

    pub fn contains(&self, scope: Scope) -> bool {
        self.0.contains(&scope)
    }
}

impl fmt::Display for ScopeSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, scope) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            f.write_str(scope.as_str())?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_space_separated_scopes_and_drops_repeats() {
        let set = ScopeSet::parse(
            "debt.unsecured.presentation  debt.unsecured.processing debt.unsecured.presentation",
        )
        .unwrap();
        assert_eq!(
            set.to_string(),
            "debt.unsecured.presentation debt.unsecured.processing"
        );
    }

    #[test]
    fn refuses_empty_and_unknown() {
        assert_eq!(ScopeSet::parse(""), Err(ScopeError::Empty));
        assert_eq!(ScopeSet::parse("   "), Err(ScopeError::Empty));
        assert_eq!(
            ScopeSet::parse("debt.unsecured.presentation email"),
            Err(ScopeError::Unknown("email".into()))
        );
    }
}
