//! The state of one authorization request between the pages (identify,
//! consent) and the individual's login session.
//!
//! A flow's state travels with the browser, sealed: encrypted and
//! authenticated (ChaCha20-Poly1305) under a key derived from a server secret
//! that every process shares, in the pages' `flow` parameter. The database
//! holds only what must be decided once: which flows have finished
//! (accepted, denied, cancelled), so that a flow can be decided only once.
//! A flow is bound to the browser that started it (the hash of its cookie is
//! sealed in) and lives [`FLOW_LIFETIME`].

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use rand::RngCore;
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, CHACHA20_POLY1305, NONCE_LEN};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use time::{Duration, OffsetDateTime};

use crate::authorize::{AuthorizationRequest, ResponseMode};
use crate::consent::{ConsentDuration, ConsentScope};
use crate::domain::{ClientId, Nin, NinPolicy, Purpose};
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
    /// How the response (or an error) goes back to the redirect URI.
    pub response_mode: ResponseMode,
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
        response_mode: request.response_mode,
        locale: locale.to_owned(),
        stage: FlowStage::Login,
        nin: None,
        created_at: now,
        expires_at: now + FLOW_LIFETIME,
    }
}

/// What every sealed flow value starts with: the format and its version.
pub const SEALED_FLOW_PREFIX: &str = "f1.";

/// The key that seals flow values. Debug never prints it.
pub struct FlowSealKey(LessSafeKey);

impl std::fmt::Debug for FlowSealKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FlowSealKey(…)")
    }
}

impl FlowSealKey {
    /// The sealing key derived from a server secret (HMAC-SHA256 of a
    /// fixed label, so that this key is never the secret itself).
    pub fn derive(secret: &[u8]) -> Self {
        let mut mac = keyed_hmac(secret);
        mac.update(b"samtykke flow seal v1");
        let bytes = mac.finalize().into_bytes();
        // A 32-byte key always fits ChaCha20-Poly1305.
        let key = UnboundKey::new(&CHACHA20_POLY1305, &bytes)
            .unwrap_or_else(|_| unreachable!("ChaCha20-Poly1305 takes 32-byte keys"));
        Self(LessSafeKey::new(key))
    }
}

impl FlowSealKey {
    /// `fields` as JSON, sealed: `prefix` + base64url(nonce ‖ ciphertext ‖
    /// tag), with a fresh random nonce each time. `aad` names what it is.
    fn seal(&self, prefix: &str, aad: &'static [u8], fields: &impl Serialize) -> String {
        self.seal_bytes(prefix, aad, serde_json::to_vec(fields).unwrap_or_default())
    }

    /// `data` sealed: `prefix` + base64url(nonce ‖ ciphertext ‖ tag).
    fn seal_bytes(&self, prefix: &str, aad: &'static [u8], mut data: Vec<u8>) -> String {
        let mut nonce = [0u8; NONCE_LEN];
        rand::thread_rng().fill_bytes(&mut nonce);
        // Sealing fails only for inputs over 256 GiB.
        let tag = self
            .0
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad),
                &mut data,
            )
            .unwrap_or_else(|_| unreachable!("far below the AEAD's size limit"));
        let mut out = Vec::with_capacity(NONCE_LEN + data.len() + tag.as_ref().len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&data);
        out.extend_from_slice(tag.as_ref());
        format!("{prefix}{}", URL_SAFE_NO_PAD.encode(out))
    }

    /// Opens what [`FlowSealKey::seal`] sealed with the same prefix and
    /// associated data; None for anything else (tampered, truncated,
    /// another key, another kind of value).
    fn open<T: serde::de::DeserializeOwned>(
        &self,
        prefix: &str,
        aad: &'static [u8],
        value: &str,
    ) -> Option<T> {
        // Far more than any sealed value needs; bounds the work on garbage.
        if value.len() > 8192 {
            return None;
        }
        let body = value.strip_prefix(prefix)?;
        let mut bytes = URL_SAFE_NO_PAD.decode(body).ok()?;
        if bytes.len() < NONCE_LEN {
            return None;
        }
        let mut sealed = bytes.split_off(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(&bytes).ok()?;
        let plain = self
            .0
            .open_in_place(nonce, Aad::from(aad), &mut sealed)
            .ok()?;
        serde_json::from_slice(plain).ok()
    }
}

/// Fuzzing only (feature `fuzzing`): the kinds of sealed values.
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SealedKind {
    Flow,
    Session,
    Pending,
}

#[cfg(feature = "fuzzing")]
impl FlowSealKey {
    /// Fuzzing only: `plaintext` sealed as a value of `kind` would be, so
    /// that a fuzzer reaches the decoding behind the tag.
    #[doc(hidden)]
    pub fn seal_plaintext_for_fuzzing(&self, kind: SealedKind, plaintext: &[u8]) -> String {
        let (prefix, aad) = match kind {
            SealedKind::Flow => (SEALED_FLOW_PREFIX, SEALED_FLOW_AAD),
            SealedKind::Session => (SEALED_SESSION_PREFIX, SEALED_SESSION_AAD),
            SealedKind::Pending => (SEALED_PENDING_PREFIX, SEALED_PENDING_AAD),
        };
        self.seal_bytes(prefix, aad, plaintext.to_vec())
    }
}

/// The sealed fields. Short names: the value travels in every page URL.
#[derive(Serialize, Deserialize)]
struct SealedFlow {
    i: String,
    b: String,
    c: String,
    r: String,
    p: String,
    d: u32,
    o: bool,
    s: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    n: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    x: Option<String>,
    /// The response mode, left out for `query` (flows sealed before it
    /// existed open as `query`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    m: Option<String>,
    l: String,
    g: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    u: Option<String>,
    t: i64,
    e: i64,
}

/// Associated data of every sealed flow: a value sealed for anything else
/// under the same key never opens as a flow.
const SEALED_FLOW_AAD: &[u8] = b"samtykke flow";

impl AuthFlow {
    /// The flow as a sealed value for the pages' `flow` parameter:
    /// `f1.` + base64url(nonce ‖ ciphertext ‖ tag), with a fresh random
    /// nonce each time.
    pub fn seal(&self, key: &FlowSealKey) -> String {
        let fields = SealedFlow {
            i: self.id.clone(),
            b: URL_SAFE_NO_PAD.encode(self.browser_hash.as_bytes()),
            c: self.client_id.as_str().to_owned(),
            r: self.redirect_uri.clone(),
            p: self.scope.purpose.as_str().to_owned(),
            d: self.scope.duration.as_days(),
            o: self.openid,
            s: self.state.clone(),
            n: self.nonce.clone(),
            x: self.code_challenge.clone(),
            m: (self.response_mode != ResponseMode::Query)
                .then(|| self.response_mode.as_str().to_owned()),
            l: self.locale.clone(),
            g: self.stage.as_str().to_owned(),
            u: self.nin.as_ref().map(|n| n.as_str().to_owned()),
            t: self.created_at.unix_timestamp(),
            e: self.expires_at.unix_timestamp(),
        };
        key.seal(SEALED_FLOW_PREFIX, SEALED_FLOW_AAD, &fields)
    }

    /// Opens a sealed flow value; None for anything this server did not seal
    /// (tampered, truncated, another key) or that does not hold a flow.
    /// Expiry and the browser binding are checked by [`AuthFlow::admit`].
    pub fn unseal(key: &FlowSealKey, value: &str) -> Option<AuthFlow> {
        let f: SealedFlow = key.open(SEALED_FLOW_PREFIX, SEALED_FLOW_AAD, value)?;
        let browser_hash = URL_SAFE_NO_PAD.decode(&f.b).ok()?;
        Some(AuthFlow {
            id: f.i,
            browser_hash: TokenHash::from_bytes(&browser_hash)?,
            client_id: ClientId::parse(&f.c).ok()?,
            redirect_uri: f.r,
            scope: ConsentScope {
                purpose: Purpose::parse(&f.p)?,
                duration: ConsentDuration::from_days(f.d),
            },
            openid: f.o,
            state: f.s,
            nonce: f.n,
            code_challenge: f.x,
            response_mode: match f.m {
                Some(m) => ResponseMode::parse(&m)?,
                None => ResponseMode::Query,
            },
            locale: f.l,
            stage: FlowStage::parse(&f.g)?,
            nin: match f.u {
                Some(n) => Some(Nin::parse(&n, NinPolicy::AllowSynthetic).ok()?),
                None => None,
            },
            created_at: OffsetDateTime::from_unix_timestamp(f.t).ok()?,
            expires_at: OffsetDateTime::from_unix_timestamp(f.e).ok()?,
        })
    }

    /// The flow after the individual identified as `nin`: at the consent
    /// stage.
    pub fn identified(&self, nin: Nin) -> AuthFlow {
        AuthFlow {
            stage: FlowStage::Consent,
            nin: Some(nin),
            ..self.clone()
        }
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

/// HMAC-SHA256 under `key`. HMAC takes keys of any length, so the
/// fallback is never used.
fn keyed_hmac(key: &[u8]) -> Hmac<Sha256> {
    Hmac::<Sha256>::new_from_slice(key).unwrap_or_else(|_| Hmac::<Sha256>::new(&Default::default()))
}

fn csrf_mac(key: &[u8], flow_id: &str, browser: &OpaqueToken) -> Hmac<Sha256> {
    let mut mac = keyed_hmac(key);
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
    /// When the individual identified, to the microsecond: a logout ends
    /// the sessions begun up to its own time.
    pub created_at: OffsetDateTime,
    pub expires_at: OffsetDateTime,
}

/// What every sealed login session starts with: the format and its version.
pub const SEALED_SESSION_PREFIX: &str = "s1.";

/// Associated data of every sealed login session.
const SEALED_SESSION_AAD: &[u8] = b"samtykke login session";

/// The sealed fields of a login session (it travels in a cookie).
#[derive(Serialize, Deserialize)]
struct SealedSession {
    b: String,
    u: String,
    /// Unix microseconds, as is `e`.
    t: i64,
    e: i64,
}

impl LoginSession {
    pub fn new(browser: &OpaqueToken, nin: Nin, now: OffsetDateTime) -> Self {
        let now = now
            .replace_nanosecond(now.microsecond() * 1000)
            .unwrap_or(now);
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

    /// Whether this session may carry `flow` to a consent at `now`: the
    /// same browser, the individual the flow identified, and not expired.
    /// (Whether a logout ended it is for the store to tell.)
    pub fn vouches_for(&self, flow: &AuthFlow, now: OffsetDateTime) -> bool {
        self.browser_hash == flow.browser_hash
            && flow.nin.as_ref() == Some(&self.nin)
            && self.is_active(now)
    }

    /// The session as a sealed cookie value (`s1.` + base64url(nonce ‖
    /// ciphertext ‖ tag)): the browser can neither read the number in it
    /// nor change it. Nothing of it is stored.
    pub fn seal(&self, key: &FlowSealKey) -> String {
        let fields = SealedSession {
            b: URL_SAFE_NO_PAD.encode(self.browser_hash.as_bytes()),
            u: self.nin.as_str().to_owned(),
            t: crate::store::unix_micros(self.created_at),
            e: crate::store::unix_micros(self.expires_at),
        };
        key.seal(SEALED_SESSION_PREFIX, SEALED_SESSION_AAD, &fields)
    }

    /// Opens a sealed session; None for anything this server did not seal
    /// as a session. Expiry is the caller's to check.
    pub fn unseal(key: &FlowSealKey, value: &str) -> Option<LoginSession> {
        let f: SealedSession = key.open(SEALED_SESSION_PREFIX, SEALED_SESSION_AAD, value)?;
        let browser_hash = URL_SAFE_NO_PAD.decode(&f.b).ok()?;
        Some(LoginSession {
            browser_hash: TokenHash::from_bytes(&browser_hash)?,
            nin: Nin::parse(&f.u, NinPolicy::AllowSynthetic).ok()?,
            created_at: crate::store::from_unix_micros(f.t).ok()?,
            expires_at: crate::store::from_unix_micros(f.e).ok()?,
        })
    }

    /// When the session began, in Unix microseconds (as stores compare it).
    pub fn created_at_micros(&self) -> i64 {
        crate::store::unix_micros(self.created_at)
    }
}

/// How long an individual has to come back from an upstream identity
/// provider.
pub const PENDING_LOGIN_LIFETIME: Duration = Duration::minutes(15);

/// Where an identification continues once the individual has identified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoginTarget {
    /// An authorization flow: its sealed `flow` value.
    Flow(String),
    /// The individual's portal: the local path to return to.
    Portal(String),
}

/// An identification in progress at an upstream OpenID Connect provider:
/// what the callback needs to check the provider's answer (`state`, `nonce`,
/// the PKCE verifier) and where to continue. It travels sealed in a cookie
/// bound to the browser, never in a URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingLogin {
    pub browser_hash: TokenHash,
    pub state: String,
    pub nonce: String,
    pub pkce_verifier: String,
    pub target: LoginTarget,
    pub expires_at: OffsetDateTime,
}

/// What every sealed pending login starts with: the format and its version.
pub const SEALED_PENDING_PREFIX: &str = "p1.";

/// Associated data of every sealed pending login.
const SEALED_PENDING_AAD: &[u8] = b"samtykke upstream login";

#[derive(Serialize, Deserialize)]
struct SealedPending {
    b: String,
    s: String,
    n: String,
    v: String,
    /// `f` (flow) or `p` (portal), and its value in `w`.
    k: String,
    w: String,
    e: i64,
}

impl PendingLogin {
    /// A pending login for `browser` until [`PENDING_LOGIN_LIFETIME`] from
    /// `now`.
    pub fn new(
        browser: &OpaqueToken,
        state: String,
        nonce: String,
        pkce_verifier: String,
        target: LoginTarget,
        now: OffsetDateTime,
    ) -> Self {
        Self {
            browser_hash: browser.hash(),
            state,
            nonce,
            pkce_verifier,
            target,
            expires_at: now + PENDING_LOGIN_LIFETIME,
        }
    }

    pub fn seal(&self, key: &FlowSealKey) -> String {
        let (k, w) = match &self.target {
            LoginTarget::Flow(f) => ("f", f.clone()),
            LoginTarget::Portal(p) => ("p", p.clone()),
        };
        let fields = SealedPending {
            b: URL_SAFE_NO_PAD.encode(self.browser_hash.as_bytes()),
            s: self.state.clone(),
            n: self.nonce.clone(),
            v: self.pkce_verifier.clone(),
            k: k.to_owned(),
            w,
            e: self.expires_at.unix_timestamp(),
        };
        key.seal(SEALED_PENDING_PREFIX, SEALED_PENDING_AAD, &fields)
    }

    /// Opens a sealed pending login; None for anything this server did not
    /// seal as one. Expiry and the browser are the caller's to check (see
    /// [`PendingLogin::answers`]).
    pub fn unseal(key: &FlowSealKey, value: &str) -> Option<PendingLogin> {
        let f: SealedPending = key.open(SEALED_PENDING_PREFIX, SEALED_PENDING_AAD, value)?;
        let browser_hash = URL_SAFE_NO_PAD.decode(&f.b).ok()?;
        Some(PendingLogin {
            browser_hash: TokenHash::from_bytes(&browser_hash)?,
            state: f.s,
            nonce: f.n,
            pkce_verifier: f.v,
            target: match f.k.as_str() {
                "f" => LoginTarget::Flow(f.w),
                "p" => LoginTarget::Portal(f.w),
                _ => return None,
            },
            expires_at: OffsetDateTime::from_unix_timestamp(f.e).ok()?,
        })
    }

    /// Whether a callback with `state`, in `browser`, at `now` answers this
    /// login (the state compared in constant time).
    pub fn answers(&self, browser: Option<&OpaqueToken>, state: &str, now: OffsetDateTime) -> bool {
        use subtle::ConstantTimeEq;
        let same_browser = browser.is_some_and(|b| b.hash() == self.browser_hash);
        let same_state: bool = self.state.as_bytes().ct_eq(state.as_bytes()).into();
        same_browser && same_state && now < self.expires_at
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
            response_mode: ResponseMode::Query,
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

    #[test]
    fn a_sealed_flow_opens_only_whole_and_under_its_key_and_hides_the_individual() {
        let now = OffsetDateTime::UNIX_EPOCH + Duration::days(1);
        let browser = OpaqueToken::generate();
        let nin = Nin::parse("14842249091", NinPolicy::AllowSynthetic).unwrap();
        let flow = start(&request(), &browser, "en", now).identified(nin);
        let key = FlowSealKey::derive(b"secret");
        let sealed = flow.seal(&key);
        assert!(sealed.starts_with(SEALED_FLOW_PREFIX));
        assert!(!sealed.contains("14842249091"));
        assert_eq!(AuthFlow::unseal(&key, &sealed), Some(flow.clone()));
        for mode in ResponseMode::ALL {
            let moded = AuthFlow {
                response_mode: mode,
                ..flow.clone()
            };
            assert_eq!(AuthFlow::unseal(&key, &moded.seal(&key)), Some(moded));
        }
        // A fresh nonce each time: two seals of one flow differ.
        assert_ne!(flow.seal(&key), sealed);
        // Another key, any changed character, a cut, or no prefix.
        assert_eq!(
            AuthFlow::unseal(&FlowSealKey::derive(b"other"), &sealed),
            None
        );
        for i in SEALED_FLOW_PREFIX.len()..sealed.len() {
            let mut tampered = sealed.clone().into_bytes();
            tampered[i] = if tampered[i] == b'A' { b'B' } else { b'A' };
            let tampered = String::from_utf8(tampered).unwrap();
            assert_eq!(AuthFlow::unseal(&key, &tampered), None, "position {i}");
        }
        assert_eq!(AuthFlow::unseal(&key, &sealed[..sealed.len() - 1]), None);
        assert_eq!(
            AuthFlow::unseal(&key, &sealed[SEALED_FLOW_PREFIX.len()..]),
            None
        );
        assert_eq!(AuthFlow::unseal(&key, "f1."), None);
        assert_eq!(AuthFlow::unseal(&key, &"A".repeat(10_000)), None);
    }

    #[test]
    fn a_sealed_login_session_opens_whole_and_vouches_only_for_its_browser_individual_and_time() {
        let now =
            OffsetDateTime::UNIX_EPOCH + Duration::days(1) + Duration::microseconds(1_234_567);
        let browser = OpaqueToken::generate();
        let nin = Nin::parse("14842249091", NinPolicy::AllowSynthetic).unwrap();
        let key = FlowSealKey::derive(b"secret");
        let session = LoginSession::new(&browser, nin.clone(), now + Duration::nanoseconds(999));
        assert_eq!(session.created_at, now, "kept to the microsecond");
        let sealed = session.seal(&key);
        assert!(sealed.starts_with(SEALED_SESSION_PREFIX));
        assert!(!sealed.contains("14842249091"));
        assert_eq!(LoginSession::unseal(&key, &sealed), Some(session.clone()));
        assert_eq!(session.created_at_micros(), 86_401_234_567);
        for i in SEALED_SESSION_PREFIX.len()..sealed.len() {
            let mut tampered = sealed.clone().into_bytes();
            tampered[i] = if tampered[i] == b'A' { b'B' } else { b'A' };
            let tampered = String::from_utf8(tampered).unwrap();
            assert_eq!(LoginSession::unseal(&key, &tampered), None, "position {i}");
        }
        assert_eq!(
            LoginSession::unseal(&FlowSealKey::derive(b"other"), &sealed),
            None
        );
        // A flow never opens as a session, nor a session as a flow.
        let flow = start(&request(), &browser, "en", now).identified(nin.clone());
        let as_session = flow
            .seal(&key)
            .replacen(SEALED_FLOW_PREFIX, SEALED_SESSION_PREFIX, 1);
        assert_eq!(LoginSession::unseal(&key, &as_session), None);
        let as_flow = sealed.replacen(SEALED_SESSION_PREFIX, SEALED_FLOW_PREFIX, 1);
        assert_eq!(AuthFlow::unseal(&key, &as_flow), None);

        assert!(session.vouches_for(&flow, now));
        assert!(
            !session.vouches_for(&flow, now + LOGIN_SESSION_LIFETIME),
            "expired"
        );
        let other = Nin::parse("29868099311", NinPolicy::AllowSynthetic).unwrap();
        let someone_else = start(&request(), &browser, "en", now).identified(other);
        assert!(
            !session.vouches_for(&someone_else, now),
            "another individual"
        );
        let elsewhere = start(&request(), &OpaqueToken::generate(), "en", now).identified(nin);
        assert!(!session.vouches_for(&elsewhere, now), "another browser");
        let unidentified = start(&request(), &browser, "en", now);
        assert!(
            !session.vouches_for(&unidentified, now),
            "not identified yet"
        );
    }

    #[test]
    fn a_pending_login_opens_only_sealed_and_answers_only_its_browser_and_state() {
        let key = FlowSealKey::derive(b"secret");
        let browser = OpaqueToken::generate();
        let now = OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap();
        for target in [
            LoginTarget::Flow("f1.abc".to_owned()),
            LoginTarget::Portal("/min-side".to_owned()),
        ] {
            let pending = PendingLogin::new(
                &browser,
                "state-1".to_owned(),
                "nonce-1".to_owned(),
                "verifier-1".to_owned(),
                target,
                now,
            );
            let sealed = pending.seal(&key);
            assert!(sealed.starts_with(SEALED_PENDING_PREFIX));
            assert!(!sealed.contains("nonce-1") && !sealed.contains("verifier-1"));
            let opened = PendingLogin::unseal(&key, &sealed).unwrap();
            assert_eq!(opened, pending);
            assert!(opened.answers(Some(&browser), "state-1", now));
            assert!(
                !opened.answers(Some(&browser), "state-2", now),
                "another state"
            );
            assert!(
                !opened.answers(Some(&OpaqueToken::generate()), "state-1", now),
                "another browser"
            );
            assert!(!opened.answers(None, "state-1", now), "no browser");
            assert!(
                !opened.answers(Some(&browser), "state-1", now + PENDING_LOGIN_LIFETIME),
                "expired"
            );
            assert_eq!(
                PendingLogin::unseal(&FlowSealKey::derive(b"other"), &sealed),
                None
            );
            // Neither a flow nor a session opens as a pending login.
            let as_session = sealed.replacen(SEALED_PENDING_PREFIX, SEALED_SESSION_PREFIX, 1);
            assert_eq!(LoginSession::unseal(&key, &as_session), None);
        }
    }
}
