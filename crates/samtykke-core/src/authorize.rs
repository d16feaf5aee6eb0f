//! The authorization endpoint's decision (RFC 6749 §4.1.1, §4.1.2.1; SPEC §4):
//! a request either becomes a typed [`AuthorizationRequest`], or is refused
//! with an error page (never a redirect: unknown client, unregistered
//! redirect URI) or with an error redirect that carries `state`.
//!
//! A request may carry its parameters in a request object (RFC 9101):
//! [`request_source`] says where to read them, the caller obtains and
//! verifies the object (see [`crate::request_object`]), and
//! [`decide_request_object`] decides on the object's parameters alone.

use crate::consent::ConsentScope;
use crate::domain::{Client, ClientId, FetchUri};
use crate::request_object::RequestObject;

/// Longest `state` and `nonce` accepted (they are echoed and stored).
pub const MAX_STATE_LEN: usize = 2048;
pub const MAX_NONCE_LEN: usize = 512;

/// The `error` codes of an authorization error redirect: RFC 6749 §4.1.2.1,
/// OpenID Connect Core §3.1.2.6, and the published contract's own
/// (`invalid_scopes`, `login_cancelled`, `consent_denied`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthorizeErrorCode {
    InvalidRequest,
    UnauthorizedClient,
    UnsupportedResponseType,
    InvalidScopes,
    ServerError,
    /// RFC 6749 §4.1.2.1: the identity the provider gave cannot be accepted
    /// (no or a malformed national identity number, too low an `acr`).
    AccessDenied,
    LoginCancelled,
    ConsentDenied,
    LoginRequired,
    ConsentRequired,
    /// RFC 9101 §7 / OpenID Connect Core §3.1.2.6.
    InvalidRequestObject,
    InvalidRequestUri,
    RequestNotSupported,
    RequestUriNotSupported,
}

impl AuthorizeErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidRequest => "invalid_request",
            Self::UnauthorizedClient => "unauthorized_client",
            Self::UnsupportedResponseType => "unsupported_response_type",
            Self::InvalidScopes => "invalid_scopes",
            Self::ServerError => "server_error",
            Self::AccessDenied => "access_denied",
            Self::LoginCancelled => "login_cancelled",
            Self::ConsentDenied => "consent_denied",
            Self::LoginRequired => "login_required",
            Self::ConsentRequired => "consent_required",
            Self::InvalidRequestObject => "invalid_request_object",
            Self::InvalidRequestUri => "invalid_request_uri",
            Self::RequestNotSupported => "request_not_supported",
            Self::RequestUriNotSupported => "request_uri_not_supported",
        }
    }
}

/// Why an authorization request is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthorizeRejection {
    /// The client or redirect URI cannot be trusted: show an error page and
    /// never redirect (RFC 6749 §4.1.2.1, RFC 9700 §4.11.2).
    ErrorPage(ErrorPageReason),
    /// Redirect to the (verified) redirect URI with the error.
    Redirect(ErrorRedirect),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorPageReason {
    MissingClientId,
    UnknownClient,
    MissingRedirectUri,
    UnregisteredRedirectUri,
    RepeatedParameter,
    /// A request object (or `request_uri`) was refused and the query names
    /// no registered redirect URI to send the error to.
    InvalidRequestObject,
}

impl ErrorPageReason {
    /// A sentence for the individual (English; the page translates by key).
    pub fn key(self) -> &'static str {
        match self {
            Self::MissingClientId => "missing_client_id",
            Self::UnknownClient => "unknown_client",
            Self::MissingRedirectUri => "missing_redirect_uri",
            Self::UnregisteredRedirectUri => "unregistered_redirect_uri",
            Self::RepeatedParameter => "repeated_parameter",
            Self::InvalidRequestObject => "invalid_request_object",
        }
    }
}

/// How the authorization response (and every error response) reaches the
/// redirect URI: OAuth 2.0 Multiple Response Type Encoding Practices §2.1
/// and OAuth 2.0 Form Post Response Mode.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ResponseMode {
    /// Parameters in the query (the default for `code`).
    #[default]
    Query,
    /// Parameters in the fragment.
    Fragment,
    /// An HTML form, posted by the browser to the redirect URI.
    FormPost,
}

impl ResponseMode {
    /// Every supported mode, as discovery lists them.
    pub const ALL: [ResponseMode; 3] = [Self::Query, Self::Fragment, Self::FormPost];

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "query" => Some(Self::Query),
            "fragment" => Some(Self::Fragment),
            "form_post" => Some(Self::FormPost),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Query => "query",
            Self::Fragment => "fragment",
            Self::FormPost => "form_post",
        }
    }
}

/// An error to send back to the client's redirect URI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorRedirect {
    pub redirect_uri: String,
    pub error: AuthorizeErrorCode,
    pub description: String,
    pub state: Option<String>,
    pub response_mode: ResponseMode,
}

/// `prompt` (OpenID Connect Core §3.1.2.1), as far as it matters here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prompt {
    /// Reuse a login session when there is one.
    Default,
    /// Always identify again.
    Login,
    /// Show nothing: fail with `login_required` / `consent_required`.
    None,
}

/// A valid authorization request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthorizationRequest {
    pub client_id: ClientId,
    /// As presented; it matched a registered redirect URI.
    pub redirect_uri: String,
    pub scope: ConsentScope,
    pub openid: bool,
    pub state: String,
    pub nonce: Option<String>,
    /// PKCE S256 challenge (RFC 7636 §4.2), if sent.
    pub code_challenge: Option<String>,
    pub prompt: Prompt,
    pub ui_locales: Option<String>,
    pub response_mode: ResponseMode,
}

/// The parameters of an authorization request this server reads, each
/// at most once (`client_id` and `redirect_uri` first); a request object's
/// claims of these names must be strings.
pub const REQUEST_PARAMETERS: [&str; 11] = [
    "client_id",
    "redirect_uri",
    "response_type",
    "scope",
    "state",
    "nonce",
    "code_challenge",
    "code_challenge_method",
    "prompt",
    "ui_locales",
    "response_mode",
];

/// The query parameters of a request, in order, possibly repeated.
pub type Params = [(String, String)];

fn single<'a>(params: &'a Params, name: &str) -> Result<Option<&'a str>, ()> {
    let mut found = params.iter().filter(|(k, _)| k == name);
    let first = found.next().map(|(_, v)| v.as_str());
    if found.next().is_some() {
        return Err(());
    }
    Ok(first.filter(|v| !v.is_empty()))
}

/// The `client_id` of the request, if it can be read at all.
pub fn client_id_of(params: &Params) -> Result<ClientId, AuthorizeRejection> {
    let page = |r| AuthorizeRejection::ErrorPage(r);
    let raw = single(params, "client_id")
        .map_err(|()| page(ErrorPageReason::RepeatedParameter))?
        .ok_or(page(ErrorPageReason::MissingClientId))?;
    ClientId::parse(raw).map_err(|_| page(ErrorPageReason::UnknownClient))
}

/// The client the request names, if it is known and enabled.
fn known_client<'a>(
    params: &Params,
    client: Option<&'a Client>,
) -> Result<&'a Client, AuthorizeRejection> {
    let client_id = client_id_of(params)?;
    client
        .filter(|c| c.id == client_id && !c.disabled)
        .ok_or(AuthorizeRejection::ErrorPage(
            ErrorPageReason::UnknownClient,
        ))
}

/// The `response_mode` errors are sent with: the requested one when it is
/// given once and supported, else the default (so an unknown or repeated
/// `response_mode` is answered in the query).
fn response_mode_of(params: &Params) -> ResponseMode {
    single(params, "response_mode")
        .ok()
        .flatten()
        .and_then(ResponseMode::parse)
        .unwrap_or_default()
}

/// Where a request's parameters are to be read from (RFC 9101 §5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestSource<'a> {
    /// The query itself: no `request` or `request_uri`.
    Query,
    /// A request object by value (`request`), of this client.
    Value { client: &'a Client, jwt: &'a str },
    /// A request object at a `request_uri` registered for this client: the
    /// caller fetches it.
    Reference {
        client: &'a Client,
        uri: &'a FetchUri,
    },
}

/// Reads `request` and `request_uri`. Only a known client may send them,
/// only one of them, `request` only when the client registered keys (or
/// may send unsigned objects), and `request_uri` only with a value
/// registered for the client, byte for byte (so the server fetches nothing
/// else). Errors go back as [`request_object_rejection`] says.
pub fn request_source<'a>(
    params: &'a Params,
    client: Option<&'a Client>,
) -> Result<RequestSource<'a>, AuthorizeRejection> {
    let request = single(params, "request");
    let request_uri = single(params, "request_uri");
    if let (Ok(None), Ok(None)) = (request, request_uri) {
        return Ok(RequestSource::Query);
    }
    let client = known_client(params, client)?;
    let fail =
        |code, description: &str| request_object_rejection(params, client, code, description);
    let (Ok(request), Ok(request_uri)) = (request, request_uri) else {
        return Err(fail(
            AuthorizeErrorCode::InvalidRequest,
            "the parameter request or request_uri is repeated",
        ));
    };
    let policy = &client.request_objects;
    match (request, request_uri) {
        (None, None) => Ok(RequestSource::Query),
        (Some(_), Some(_)) => Err(fail(
            AuthorizeErrorCode::InvalidRequest,
            "request and request_uri cannot both be sent",
        )),
        (Some(jwt), None) => {
            if policy.accepts_request_objects() {
                Ok(RequestSource::Value { client, jwt })
            } else {
                Err(fail(
                    AuthorizeErrorCode::RequestNotSupported,
                    "this client has no keys registered for request objects",
                ))
            }
        }
        (None, Some(presented)) => {
            if policy.request_uris.is_empty() || !policy.accepts_request_objects() {
                return Err(fail(
                    AuthorizeErrorCode::RequestUriNotSupported,
                    "this client has no request_uri registered",
                ));
            }
            match policy.registered_request_uri(presented) {
                Some(uri) => Ok(RequestSource::Reference { client, uri }),
                None => Err(fail(
                    AuthorizeErrorCode::InvalidRequestUri,
                    "the request_uri is not registered for this client",
                )),
            }
        }
    }
}

/// The answer to a request whose request object (or `request_uri`) is
/// refused: an error redirect to the query's `redirect_uri` (with the
/// query's `state` and `response_mode`) when it is registered for the
/// client, else an error page. The object's own redirect URI is never
/// used: it has not been verified.
pub fn request_object_rejection(
    params: &Params,
    client: &Client,
    error: AuthorizeErrorCode,
    description: &str,
) -> AuthorizeRejection {
    let redirect_uri = single(params, "redirect_uri")
        .ok()
        .flatten()
        .filter(|uri| client.registered_redirect_uri(uri).is_some());
    match redirect_uri {
        Some(redirect_uri) => AuthorizeRejection::Redirect(ErrorRedirect {
            redirect_uri: redirect_uri.to_owned(),
            error,
            description: description.to_owned(),
            state: usable_state(params),
            response_mode: response_mode_of(params),
        }),
        None => AuthorizeRejection::ErrorPage(ErrorPageReason::InvalidRequestObject),
    }
}

/// Decides a request by its verified request object: only the object's
/// parameters count (RFC 9101 §6.3; the query's others are ignored), and
/// its `client_id` was checked against the query's by the verification.
pub fn decide_request_object(
    object: &RequestObject,
    client: &Client,
) -> Result<AuthorizationRequest, AuthorizeRejection> {
    decide(&object.params, Some(client))
}

/// The request's `state` if it can be echoed back.
fn usable_state(params: &Params) -> Option<String> {
    single(params, "state")
        .ok()
        .flatten()
        .filter(|s| echoed_value_problem("state", s, MAX_STATE_LEN).is_none())
        .map(str::to_owned)
}

/// Decides an authorization request given the client it names (None when
/// unknown). Pure: no I/O, no clock.
pub fn decide(
    params: &Params,
    client: Option<&Client>,
) -> Result<AuthorizationRequest, AuthorizeRejection> {
    let page = AuthorizeRejection::ErrorPage;
    let client = known_client(params, client)?;
    let presented = single(params, "redirect_uri")
        .map_err(|()| page(ErrorPageReason::RepeatedParameter))?
        .ok_or(page(ErrorPageReason::MissingRedirectUri))?;
    if client.registered_redirect_uri(presented).is_none() {
        return Err(page(ErrorPageReason::UnregisteredRedirectUri));
    }
    let redirect_uri = presented.to_owned();

    // From here on the redirect URI is trusted: errors go back to it, in
    // the requested response mode when it is a supported one.
    let state_param = single(params, "state");
    let state = usable_state(params);
    let response_mode = response_mode_of(params);
    let fail = |error: AuthorizeErrorCode, description: &str| {
        AuthorizeRejection::Redirect(ErrorRedirect {
            redirect_uri: redirect_uri.clone(),
            error,
            description: description.to_owned(),
            state: state.clone(),
            response_mode,
        })
    };
    let invalid = |d: &str| fail(AuthorizeErrorCode::InvalidRequest, d);

    // client_id and redirect_uri were read (once) above.
    for name in &REQUEST_PARAMETERS[2..] {
        if single(params, name).is_err() {
            return Err(invalid(&format!("the parameter {name} is repeated")));
        }
    }
    let get = |name: &str| single(params, name).ok().flatten();

    match state_param {
        Ok(Some(s)) => {
            if let Some(problem) = echoed_value_problem("state", s, MAX_STATE_LEN) {
                return Err(invalid(&problem));
            }
        }
        _ => return Err(invalid("the state parameter is required")),
    }
    match get("response_type") {
        None => return Err(invalid("the response_type parameter is required")),
        Some("code") => {}
        Some(_) => {
            return Err(fail(
                AuthorizeErrorCode::UnsupportedResponseType,
                "only response_type=code is supported",
            ))
        }
    }
    if get("response_mode").is_some_and(|m| ResponseMode::parse(m).is_none()) {
        return Err(invalid(
            "unsupported response_mode; use query, fragment or form_post",
        ));
    }
    let (scope, openid) =
        parse_scope(get("scope")).map_err(|d| fail(AuthorizeErrorCode::InvalidScopes, d))?;
    if !client.allows_purpose(scope.purpose) {
        return Err(fail(
            AuthorizeErrorCode::InvalidScopes,
            "the client is not allowed this purpose",
        ));
    }

    let nonce = get("nonce").map(str::to_owned);
    if let Some(problem) = nonce
        .as_deref()
        .and_then(|n| echoed_value_problem("nonce", n, MAX_NONCE_LEN))
    {
        return Err(invalid(&problem));
    }

    let code_challenge = match (get("code_challenge"), get("code_challenge_method")) {
        (None, None) if client.require_pkce => return Err(invalid(
            "this client must use PKCE: code_challenge with code_challenge_method=S256 is required",
        )),
        (None, None) => None,
        (None, Some(_)) => return Err(invalid("code_challenge_method without code_challenge")),
        (Some(_), None) | (Some(_), Some("plain")) => {
            return Err(invalid(
                "PKCE method plain is not supported; use code_challenge_method=S256",
            ))
        }
        (Some(challenge), Some("S256")) => {
            if !is_s256_challenge(challenge) {
                return Err(invalid(
                    "code_challenge must be 43 base64url characters (S256)",
                ));
            }
            Some(challenge.to_owned())
        }
        (Some(_), Some(_)) => return Err(invalid("unsupported code_challenge_method; use S256")),
    };

    let prompt = match get("prompt") {
        None => Prompt::Default,
        Some(p) => {
            let values: Vec<&str> = p.split(' ').filter(|v| !v.is_empty()).collect();
            if values.contains(&"none") && values.len() > 1 {
                return Err(invalid("prompt=none cannot be combined with other values"));
            }
            if values.contains(&"none") {
                Prompt::None
            } else if values.contains(&"login") {
                Prompt::Login
            } else {
                Prompt::Default
            }
        }
    };

    Ok(AuthorizationRequest {
        client_id: client.id.clone(),
        redirect_uri,
        scope,
        openid,
        state: state.unwrap_or_default(),
        nonce,
        code_challenge,
        prompt,
        ui_locales: get("ui_locales").map(|l| l.chars().take(100).collect()),
        response_mode,
    })
}

/// Why a value that is stored and echoed back (`state`, `nonce`) is refused.
fn echoed_value_problem(name: &str, value: &str, max: usize) -> Option<String> {
    if value.len() > max {
        Some(format!("{name} is longer than {max} characters"))
    } else if value.chars().any(char::is_control) {
        Some(format!("{name} must not contain control characters"))
    } else {
        None
    }
}

/// SPEC §4: exactly one debt scope (optionally with a duration suffix),
/// optionally with `openid`. SPEC writes `openid` last; RFC 6749 §3.3 makes
/// scope an unordered set and common OpenID Connect libraries send `openid`
/// first, so either order is accepted.
pub fn parse_scope(scope: Option<&str>) -> Result<(ConsentScope, bool), &'static str> {
    let scope = scope.ok_or("the scope parameter is required")?;
    let values: Vec<&str> = scope.split(' ').filter(|v| !v.is_empty()).collect();
    let (debt, openid) = match values.as_slice() {
        [debt] if *debt != "openid" => (*debt, false),
        [debt, "openid"] | ["openid", debt] if *debt != "openid" => (*debt, true),
        [] => return Err("the scope parameter is required"),
        _ => {
            return Err(
                "scope must be one debt scope (debt.unsecured.presentation or debt.unsecured.processing, optionally with a .N days suffix), optionally with openid",
            )
        }
    };
    let consent = ConsentScope::parse(debt).map_err(|e| match e {
        crate::consent::ConsentScopeError::NotADebtScope => {
            "scope must be debt.unsecured.presentation or debt.unsecured.processing, optionally with a .N days suffix"
        }
        crate::consent::ConsentScopeError::BadDuration => {
            "the duration suffix must be a positive whole number of days"
        }
    })?;
    Ok((consent, openid))
}

fn is_s256_challenge(challenge: &str) -> bool {
    challenge.len() == 43
        && challenge
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::consent::ConsentDuration;
    use crate::domain::{ClientName, ClientSecret, OrgNumber, Purpose, RedirectUri};

    fn client(require_pkce: bool) -> Client {
        Client {
            id: ClientId::parse("bank").unwrap(),
            secret_hash: ClientSecret::generate().hash(),
            name: ClientName::parse("Bank").unwrap(),
            org_number: OrgNumber::parse("923609016").unwrap(),
            redirect_uris: vec![RedirectUri::parse("https://bank.example/cb").unwrap()],
            purposes: vec![Purpose::Presentation],
            may_create_agreements: false,
            may_read_events: false,
            require_pkce,
            disabled: false,
            created_at: time::OffsetDateTime::UNIX_EPOCH,
            token_generation: 0,
            request_objects: Default::default(),
        }
    }

    fn params(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn good() -> Vec<(&'static str, &'static str)> {
        vec![
            ("client_id", "bank"),
            ("response_type", "code"),
            ("scope", "debt.unsecured.presentation.100 openid"),
            ("state", "xyz"),
            ("redirect_uri", "https://bank.example/cb"),
            ("nonce", "n-1"),
        ]
    }

    fn with(replace: &str, value: Option<&str>) -> Vec<(String, String)> {
        let mut p: Vec<(&str, &str)> = good().into_iter().filter(|(k, _)| *k != replace).collect();
        if let Some(v) = value {
            p.push((replace, v));
        }
        params(&p)
    }

    fn redirect_error(
        result: Result<AuthorizationRequest, AuthorizeRejection>,
    ) -> (&'static str, Option<String>) {
        match result {
            Err(AuthorizeRejection::Redirect(r)) => (r.error.as_str(), r.state),
            other => panic!("expected a redirect, got {other:?}"),
        }
    }

    fn mode_of(result: Result<AuthorizationRequest, AuthorizeRejection>) -> ResponseMode {
        match result {
            Err(AuthorizeRejection::Redirect(r)) => r.response_mode,
            Ok(r) => r.response_mode,
            other => panic!("expected a redirect, got {other:?}"),
        }
    }

    #[test]
    fn the_response_mode_is_kept_for_the_response_and_for_errors() {
        let c = client(false);
        assert_eq!(
            mode_of(decide(&params(&good()), Some(&c))),
            ResponseMode::Query
        );
        for mode in ResponseMode::ALL {
            let mut p = params(&good());
            p.push(("response_mode".into(), mode.as_str().into()));
            assert_eq!(mode_of(decide(&p, Some(&c))), mode);
            // An error of the same request goes back in the same mode.
            p.retain(|(k, _)| k != "scope");
            p.push(("scope".into(), "email".into()));
            assert_eq!(redirect_error(decide(&p, Some(&c))).0, "invalid_scopes");
            assert_eq!(mode_of(decide(&p, Some(&c))), mode);
        }
        // Unknown or repeated: invalid_request, in the query.
        let unknown = with("response_mode", Some("web_message"));
        assert_eq!(
            redirect_error(decide(&unknown, Some(&c))).0,
            "invalid_request"
        );
        assert_eq!(mode_of(decide(&unknown, Some(&c))), ResponseMode::Query);
        let mut twice = with("response_mode", Some("fragment"));
        twice.push(("response_mode".into(), "fragment".into()));
        assert_eq!(
            redirect_error(decide(&twice, Some(&c))).0,
            "invalid_request"
        );
        assert_eq!(mode_of(decide(&twice, Some(&c))), ResponseMode::Query);
    }

    fn jar_client() -> Client {
        let mut c = client(false);
        c.request_objects = crate::domain::RequestObjectPolicy {
            keys: None,
            request_uris: vec![crate::domain::FetchUri::parse("https://bank.example/r/1").unwrap()],
            allow_unsigned: true,
        };
        c
    }

    #[test]
    fn request_and_request_uri_are_read_only_for_clients_registered_for_them() {
        let c = jar_client();
        assert_eq!(
            request_source(&params(&good()), Some(&c)),
            Ok(RequestSource::Query)
        );
        let with_request = with("request", Some("a.b.c"));
        assert!(matches!(
            request_source(&with_request, Some(&c)),
            Ok(RequestSource::Value { jwt: "a.b.c", .. })
        ));
        let by_uri = with("request_uri", Some("https://bank.example/r/1"));
        assert!(matches!(
            request_source(&by_uri, Some(&c)),
            Ok(RequestSource::Reference { .. })
        ));
        let code = |p: &Vec<(String, String)>, c: &Client| match request_source(p, Some(c)) {
            Err(AuthorizeRejection::Redirect(r)) => r.error.as_str(),
            other => panic!("expected a redirect, got {other:?}"),
        };
        let mut both = with_request.clone();
        both.push(("request_uri".into(), "https://bank.example/r/1".into()));
        assert_eq!(code(&both, &c), "invalid_request");
        let mut twice = with_request.clone();
        twice.push(("request".into(), "x.y.z".into()));
        assert_eq!(code(&twice, &c), "invalid_request");
        for other in [
            "https://bank.example/r/2",
            "https://bank.example/r/1/",
            "https://bank.example/r/1?x",
            "https://BANK.example/r/1",
            "http://169.254.169.254/latest/meta-data",
        ] {
            assert_eq!(
                code(&with("request_uri", Some(other)), &c),
                "invalid_request_uri",
                "{other}"
            );
        }
        // A client without keys, unsigned objects or request URIs.
        let plain = client(false);
        assert_eq!(code(&with_request, &plain), "request_not_supported");
        assert_eq!(code(&by_uri, &plain), "request_uri_not_supported");
        // Errors go to the query's redirect URI only when it is registered.
        let mut unregistered = with("redirect_uri", Some("https://evil.example/cb"));
        unregistered.push(("request".into(), "a.b.c".into()));
        assert_eq!(
            request_source(&unregistered, Some(&plain)),
            Err(AuthorizeRejection::ErrorPage(
                ErrorPageReason::InvalidRequestObject
            ))
        );
        // An unknown client gets the unknown-client page.
        assert_eq!(
            request_source(&with_request, None),
            Err(AuthorizeRejection::ErrorPage(
                ErrorPageReason::UnknownClient
            ))
        );
    }

    #[test]
    fn a_request_object_is_decided_on_its_own_parameters() {
        let c = client(false);
        let object = RequestObject {
            params: params(&[
                ("client_id", "bank"),
                ("response_type", "code"),
                ("scope", "debt.unsecured.presentation.7"),
                ("state", "from-object"),
                ("redirect_uri", "https://bank.example/cb"),
                ("response_mode", "fragment"),
            ]),
            signed: true,
        };
        let r = decide_request_object(&object, &c).unwrap();
        assert_eq!(r.state, "from-object");
        assert_eq!(r.scope.duration, ConsentDuration::Days(7));
        assert_eq!(r.response_mode, ResponseMode::Fragment);
        assert!(!r.openid);
        let mut elsewhere = object.clone();
        elsewhere.params.retain(|(k, _)| k != "redirect_uri");
        elsewhere
            .params
            .push(("redirect_uri".into(), "https://evil.example/cb".into()));
        assert_eq!(
            decide_request_object(&elsewhere, &c),
            Err(AuthorizeRejection::ErrorPage(
                ErrorPageReason::UnregisteredRedirectUri
            ))
        );
    }

    #[test]
    fn a_good_request_is_accepted_with_its_duration_and_openid() {
        let r = decide(&params(&good()), Some(&client(false))).unwrap();
        assert_eq!(r.scope.purpose, Purpose::Presentation);
        assert_eq!(r.scope.duration, ConsentDuration::Days(100));
        assert!(r.openid);
        assert_eq!(r.state, "xyz");
        assert_eq!(r.nonce.as_deref(), Some("n-1"));
    }

    #[test]
    fn unknown_clients_and_unregistered_redirect_uris_get_an_error_page() {
        let c = client(false);
        assert_eq!(
            decide(&params(&good()), None),
            Err(AuthorizeRejection::ErrorPage(
                ErrorPageReason::UnknownClient
            ))
        );
        for uri in [
            "https://bank.example/cb/",
            "https://evil.example/cb",
            "https://bank.example/cb?x=1",
        ] {
            assert_eq!(
                decide(&with("redirect_uri", Some(uri)), Some(&c)),
                Err(AuthorizeRejection::ErrorPage(
                    ErrorPageReason::UnregisteredRedirectUri
                ))
            );
        }
        assert_eq!(
            decide(&with("redirect_uri", None), Some(&c)),
            Err(AuthorizeRejection::ErrorPage(
                ErrorPageReason::MissingRedirectUri
            ))
        );
        let mut disabled = c.clone();
        disabled.disabled = true;
        assert_eq!(
            decide(&params(&good()), Some(&disabled)),
            Err(AuthorizeRejection::ErrorPage(
                ErrorPageReason::UnknownClient
            ))
        );
    }

    #[test]
    fn scope_rules_answer_invalid_scopes() {
        let c = client(false);
        let first = decide(
            &with("scope", Some("openid debt.unsecured.presentation")),
            Some(&c),
        )
        .unwrap();
        assert!(first.openid);
        for scope in [
            "openid",
            "openid openid",
            "debt.unsecured.presentation openid openid",
            "debt.unsecured.presentation email",
            "debt.unsecured.presentation debt.unsecured.processing",
            "debt.unsecured.presentation.0",
            "debt.unsecured.presentation.-1",
            "debt.unsecured.presentation.abc",
            "consent.create",
            "debt.unsecured.processing",
        ] {
            let (error, state) = redirect_error(decide(&with("scope", Some(scope)), Some(&c)));
            assert_eq!(error, "invalid_scopes", "{scope}");
            assert_eq!(state.as_deref(), Some("xyz"));
        }
        let r = decide(
            &with("scope", Some("debt.unsecured.presentation.9999")),
            Some(&c),
        )
        .unwrap();
        assert_eq!(r.scope.duration, ConsentDuration::Days(365));
    }

    #[test]
    fn other_request_errors_redirect_with_rfc_6749_codes() {
        let c = client(false);
        assert_eq!(
            redirect_error(decide(&with("response_type", Some("token")), Some(&c))).0,
            "unsupported_response_type"
        );
        assert_eq!(
            redirect_error(decide(&with("response_type", None), Some(&c))).0,
            "invalid_request"
        );
        assert_eq!(
            redirect_error(decide(&with("state", None), Some(&c))),
            ("invalid_request", None)
        );
        let mut repeated = params(&good());
        repeated.push(("scope".into(), "debt.unsecured.presentation".into()));
        assert_eq!(
            redirect_error(decide(&repeated, Some(&c))).0,
            "invalid_request"
        );
    }

    #[test]
    fn pkce_is_s256_only_and_required_when_the_client_says_so() {
        let challenge = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
        let mut p = params(&good());
        p.push(("code_challenge".into(), challenge.into()));
        p.push(("code_challenge_method".into(), "S256".into()));
        assert_eq!(
            decide(&p, Some(&client(true)))
                .unwrap()
                .code_challenge
                .as_deref(),
            Some(challenge)
        );
        assert_eq!(
            redirect_error(decide(&params(&good()), Some(&client(true)))).0,
            "invalid_request"
        );
        let mut plain = params(&good());
        plain.push(("code_challenge".into(), challenge.into()));
        plain.push(("code_challenge_method".into(), "plain".into()));
        assert_eq!(
            redirect_error(decide(&plain, Some(&client(false)))).0,
            "invalid_request"
        );
        let mut no_method = params(&good());
        no_method.push(("code_challenge".into(), challenge.into()));
        assert_eq!(
            redirect_error(decide(&no_method, Some(&client(false)))).0,
            "invalid_request"
        );
    }
}
