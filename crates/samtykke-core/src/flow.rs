//! The state of one authorization request between the pages (identify,
//! consent), kept server-side under an unguessable id and bound to the
//! browser that started it; and the individual's login session.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use time::{Duration, OffsetDateTime};

use crate::authorize::AuthorizationRequest;
use crate::consent::ConsentScope;
use crate::domain::{ClientId, Nin};
use crate::opaque::OpaqueToken;
use crate::token::TokenHash;

/// How long an individual has to finish identifying and consenting.
pub const FLOW_LIFETIME: Duration = Duration::minutes(15);

/// How long a login is remembered for further authorization requests from
/// the same browser.
pub const LOGIN_SESSION_LIFETIME: Duration = Duration::minutes(30);

/// Where a flow stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlowStage {
    /// Waiting for the individual to identify.
    Login,
    /// Identified; waiting for the consent decision.
    Consent,
    /// Finished (accepted, denied, cancelled): it cannot be used again.
    Done,
}

impl FlowStage {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Login => "login",
            Self::Consent => "consent",
            Self::Done => "done",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "login" => Some(Self::Login),
            "consent" => Some(Self::Consent),
            "done" => Some(Self::Done),
            _ => None,
        }
    }
}

/// One authorization request in progress.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthFlow {
    /// Public id, used in page URLs and forms. Useless without the browser
    /// cookie whose hash is `browser_hash`.
    pub id: String,
    pub browser_hash: TokenHash,
    pub client_id: ClientId,
    pub redirect_uri: String,
    pub scope: ConsentScope,
    pub openid: bool,
    pub state: String,
    pub nonce: Option<String>,
    pub code_challenge: Option<String>,
    /// `nb` or `en`.
    pub locale: String,
    pub stage: FlowStage,
    pub nin: Option<Nin>,
    pub created_at: OffsetDateTime,
    pub expires_at: OffsetDateTime,
}

/// A new flow for `request`, bound to the browser holding `browser`.
pub fn start(
    request: &AuthorizationRequest,
    browser: &OpaqueToken,
    locale: &str,
    now: OffsetDateTime,
) -> AuthFlow {
    let now = now.replace_nanosecond(0).unwrap_or(now);
    AuthFlow {
        id: OpaqueToken::generate().expose().to_owned(),
        browser_hash: browser.hash(),
        client_id: request.client_id.clone(),
        redirect_uri: request.redirect_uri.clone(),
        scope: request.scope,
        openid: request.openid,
        state: request.state.clone(),
        nonce: request.nonce.clone(),
        code_challenge: request.code_challenge.clone(),
        locale: locale.to_owned(),
        stage: FlowStage::Login,
        nin: None,
        created_at: now,
        expires_at: now + FLOW_LIFETIME,
    }
}

/// The CSRF token of a flow's forms (RFC 6749 §10.12): an HMAC under a
/// server secret of the flow id and the browser's cookie, so it is bound to
/// this browser and this request and never stored.
pub fn csrf_token(key: &[u8], flow_id: &str, browser: &OpaqueToken) -> String {
    URL_SAFE_NO_PAD.encode(csrf_mac(key, flow_id, browser).finalize().into_bytes())
}

/// Constant-time check of a presented CSRF token.
pub fn csrf_valid(key: &[u8], flow_id: &str, browser: &OpaqueToken, presented: &str) -> bool {
    match URL_SAFE_NO_PAD.decode(presented) {
        Ok(bytes) => csrf_mac(key, flow_id, browser).verify_slice(&bytes).is_ok(),
        Err(_) => false,
    }
}

fn csrf_mac(key: &[u8], flow_id: &str, browser: &OpaqueToken) -> Hmac<Sha256> {
    // HMAC takes keys of any length; the fallback is never used.
    let mut mac = Hmac::<Sha256>::new_from_slice(key)
        .unwrap_or_else(|_| Hmac::<Sha256>::new(&Default::default()));
    mac.update(b"csrf\0");
    mac.update(flow_id.as_bytes());
    mac.update(b"\0");
    mac.update(browser.expose().as_bytes());
    mac
}

/// Why a page request cannot continue a flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlowRefusal {
    /// Unknown id, another browser's flow, or expired.
    NotFound,
    /// The form's CSRF token is missing or wrong.
    Forged,
    /// The flow is not at this step (already finished, or not yet here).
    WrongStage,
}

impl AuthFlow {
    /// Checks that `browser` (the cookie) started this flow, that it is still
    /// alive and at `stage`, and, for a form post (`csrf` is the presented
    /// token, if any), that the CSRF token is this flow's.
    pub fn admit(
        &self,
        browser: Option<&OpaqueToken>,
        csrf: Option<(&[u8], Option<&str>)>,
        stage: FlowStage,
        now: OffsetDateTime,
    ) -> Result<(), FlowRefusal> {
        let Some(browser) = browser.filter(|b| b.verifies(&self.browser_hash)) else {
            return Err(FlowRefusal::NotFound);
        };
        if now >= self.expires_at {
            return Err(FlowRefusal::NotFound);
        }
        if let Some((key, presented)) = csrf {
            if !presented.is_some_and(|p| csrf_valid(key, &self.id, browser, p)) {
                return Err(FlowRefusal::Forged);
            }
        }
        if self.stage != stage {
            return Err(FlowRefusal::WrongStage);
        }
        Ok(())
    }
}

/// An individual's login in one browser.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginSession {
    pub browser_hash: TokenHash,
    pub nin: Nin,
    pub created_at: OffsetDateTime,
    pub expires_at: OffsetDateTime,
}

impl LoginSession {
    pub fn new(browser: &OpaqueToken, nin: Nin, now: OffsetDateTime) -> Self {
        let now = now.replace_nanosecond(0).unwrap_or(now);
        Self {
            browser_hash: browser.hash(),
            nin,
            created_at: now,
            expires_at: now + LOGIN_SESSION_LIFETIME,
        }
    }

    pub fn is_active(&self, now: OffsetDateTime) -> bool {
        now < self.expires_at
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::authorize::Prompt;
    use crate::consent::ConsentDuration;
    use crate::domain::Purpose;

    fn request() -> AuthorizationRequest {
        AuthorizationRequest {
            client_id: ClientId::parse("bank").unwrap(),
            redirect_uri: "https://bank.example/cb".into(),
            scope: ConsentScope {
                purpose: Purpose::Presentation,
                duration: ConsentDuration::SingleUse,
            },
            openid: false,
            state: "s".into(),
            nonce: None,
            code_challenge: None,
            prompt: Prompt::Default,
            ui_locales: None,
        }
    }

    #[test]
    fn a_flow_admits_only_its_browser_its_csrf_token_its_stage_and_its_time() {
        let now = OffsetDateTime::UNIX_EPOCH + Duration::days(1);
        let browser = OpaqueToken::generate();
        let flow = start(&request(), &browser, "nb", now);
        let key: &[u8] = b"key";
        let csrf = csrf_token(key, &flow.id, &browser);
        assert_eq!(
            flow.admit(Some(&browser), None, FlowStage::Login, now),
            Ok(())
        );
        assert_eq!(
            flow.admit(
                Some(&browser),
                Some((key, Some(&csrf))),
                FlowStage::Login,
                now
            ),
            Ok(())
        );
        let other = OpaqueToken::generate();
        let foreign = csrf_token(key, &flow.id, &other);
        assert_eq!(
            flow.admit(Some(&other), None, FlowStage::Login, now),
            Err(FlowRefusal::NotFound)
        );
        assert_eq!(
            flow.admit(None, None, FlowStage::Login, now),
            Err(FlowRefusal::NotFound)
        );
        assert_eq!(
            flow.admit(
                Some(&browser),
                Some((key, Some(&foreign))),
                FlowStage::Login,
                now
            ),
            Err(FlowRefusal::Forged)
        );
        assert_eq!(
            flow.admit(
                Some(&browser),
                Some((b"other key", Some(&csrf))),
                FlowStage::Login,
                now
            ),
            Err(FlowRefusal::Forged)
        );
        assert_eq!(
            flow.admit(Some(&browser), Some((key, None)), FlowStage::Login, now),
            Err(FlowRefusal::Forged)
        );
        assert_eq!(
            flow.admit(Some(&browser), None, FlowStage::Consent, now),
            Err(FlowRefusal::WrongStage)
        );
        assert_eq!(
            flow.admit(Some(&browser), None, FlowStage::Login, now + FLOW_LIFETIME),
            Err(FlowRefusal::NotFound)
        );
    }
}
