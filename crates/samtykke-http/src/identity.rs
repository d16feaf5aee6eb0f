//! How individuals identify (SPEC §6), behind one interface chosen by
//! configuration. The sandbox uses [`TestId`]: a form where one types a
//! national identity number. Production identification through an upstream
//! OpenID Connect provider (code flow + PKCE, `pid` claim) implements the same
//! trait: `begin` answers with a redirect to the provider, and `complete`
//! exchanges the provider's code from its callback.

pub mod upstream;

use async_trait::async_trait;
use samtykke_core::domain::{Nin, NinError, NinPolicy};

/// What to do to start identification (for a flow or for the portal).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoginStart {
    /// Show our own TestID form.
    TestIdForm,
    /// Send the browser to an upstream provider: `url` is its authorization
    /// request; `pending` what its callback must be checked against (the
    /// pages seal it in a cookie bound to the browser).
    Redirect { url: String, pending: Pending },
}

/// What an upstream authorization request was sent with, kept (sealed, in
/// the browser) until the provider's callback.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pending {
    pub state: String,
    pub nonce: String,
    pub pkce_verifier: String,
}

/// Why identification did not give a number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoginFailure {
    /// The individual cancelled (`error=login_cancelled`).
    Cancelled,
    /// The input was not acceptable, and why; the page tells the
    /// individual (see [`crate::pages::texts::Texts::bad_nin_for`]).
    Rejected(NinError),
    /// The provider failed, or its answer did not verify (`error=server_error`);
    /// the reason is for the log (never a secret).
    Failed(String),
    /// The provider identified someone Samtykke cannot accept: no or a
    /// malformed national identity number, or a lower level of assurance
    /// than required (`error=access_denied`); the reason is for the log.
    Unacceptable(String),
}

#[async_trait]
pub trait IdentityProvider: Send + Sync + 'static {
    /// A short name for logs.
    fn name(&self) -> &'static str;
    /// Starts identification (for a flow or for the portal).
    fn begin(&self) -> LoginStart;
    /// Finishes identification from the submitted form or callback
    /// parameters; `pending` is what [`LoginStart::Redirect`] gave, checked
    /// by the caller to belong to this browser and callback (`state`).
    async fn complete(
        &self,
        params: &[(String, String)],
        pending: Option<&Pending>,
        policy: NinPolicy,
    ) -> Result<Nin, LoginFailure>;
    /// Where to send the browser to end its session at the provider too, coming back to `return_to`
    /// afterwards; `None` when the provider has no end-session endpoint (TestID has none).
    fn end_session_url(&self, return_to: &str) -> Option<String> {
        let _ = return_to;
        None
    }
}

/// The sandbox's TestID: anyone may claim any (valid) number. Only ever
/// configured in sandbox mode.
#[derive(Debug, Default, Clone, Copy)]
pub struct TestId;

#[async_trait]
impl IdentityProvider for TestId {
    fn name(&self) -> &'static str {
        "testid"
    }

    fn begin(&self) -> LoginStart {
        LoginStart::TestIdForm
    }

    async fn complete(
        &self,
        params: &[(String, String)],
        _pending: Option<&Pending>,
        policy: NinPolicy,
    ) -> Result<Nin, LoginFailure> {
        let field = |name: &str| crate::pages::field(params, name).map(str::trim);
        if field("action") == Some("cancel") {
            return Err(LoginFailure::Cancelled);
        }
        let typed: String = field("nin")
            .unwrap_or("")
            .chars()
            .filter(|c| !c.is_whitespace())
            .collect();
        Nin::parse(&typed, policy).map_err(LoginFailure::Rejected)
    }
}
