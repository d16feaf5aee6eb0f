//! The pages an individual sees in the authorization-code flow (SPEC §4, §6):
//! the authorization endpoint, identification (TestID in the sandbox), the
//! consent page, and logout. Plain HTML and CSS served by us, no JavaScript
//! (but for the one hash-pinned line that submits a `form_post` response,
//! which works without it too), Norwegian bokmål by default and English on
//! request.

pub mod authorize;
pub mod consent;
pub mod login;
pub mod login_callback;
pub mod logout;
pub mod portal;
pub mod portal_login;
mod portal_texts;
pub mod sandbox;
mod texts;

use std::sync::OnceLock;

use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use minijinja::Environment;
use samtykke_core::authorize::{AuthorizationRequest, AuthorizeErrorCode, ResponseMode};
use samtykke_core::flow::{self, AuthFlow, FlowSealKey, LoginSession};
use samtykke_core::opaque::OpaqueToken;
use serde::Serialize;

pub use texts::{negotiate, texts_for, Texts, NB};

use crate::AppState;

fn environment() -> &'static Environment<'static> {
    static ENV: OnceLock<Environment<'static>> = OnceLock::new();
    ENV.get_or_init(|| {
        let mut env = Environment::new();
        // Templates are compiled into the binary; a broken one fails the
        // unit test below, never a request.
        for (name, source) in [
            ("base.html", include_str!("../../templates/base.html")),
            ("login.html", include_str!("../../templates/login.html")),
            ("consent.html", include_str!("../../templates/consent.html")),
            ("message.html", include_str!("../../templates/message.html")),
            (
                "form_post.html",
                include_str!("../../templates/form_post.html"),
            ),
            // The individual's portal (`portal`).
            ("portal.html", include_str!("../../templates/portal.html")),
            (
                "portal_consent.html",
                include_str!("../../templates/portal_consent.html"),
            ),
            (
                "portal_withdraw.html",
                include_str!("../../templates/portal_withdraw.html"),
            ),
            (
                "portal_logged_out.html",
                include_str!("../../templates/portal_logged_out.html"),
            ),
            (
                "portal_nav.html",
                include_str!("../../templates/portal_nav.html"),
            ),
            (
                "portal_facts.html",
                include_str!("../../templates/portal_facts.html"),
            ),
            (
                "portal_paging.html",
                include_str!("../../templates/portal_paging.html"),
            ),
            (
                "login_failed.html",
                include_str!("../../templates/login_failed.html"),
            ),
            // The sandbox's landing page and callback (`sandbox`).
            (
                "sandbox_landing.html",
                include_str!("../../templates/sandbox_landing.html"),
            ),
            (
                "sandbox_callback.html",
                include_str!("../../templates/sandbox_callback.html"),
            ),
        ] {
            if let Err(e) = env.add_template(name, source) {
                tracing::error!(template = name, error = %e, "broken template");
            }
        }
        env
    })
}

/// Renders a page, with the operator (`operator[t.lang]`, shown by
/// `base.html`) added to `context`; a rendering failure is logged and
/// answered with a bare 500 page (never a panic).
pub(crate) fn render(state: &AppState, name: &str, context: impl Serialize) -> Result<String, ()> {
    let context = minijinja::context! {
        operator => minijinja::Value::from_serialize(&*state.operator_views),
        ..minijinja::Value::from_serialize(&context)
    };
    environment()
        .get_template(name)
        .and_then(|t| t.render(context))
        .map_err(|e| tracing::error!(template = name, error = %e, "page rendering failed"))
}

/// The security headers of every page (SECURITY.md (c)): no framing, no
/// referrer, no caching; scripts and foreign resources are not allowed.
/// `form_target` is the origin a form may end up redirecting to.
pub(crate) fn page_headers(headers: &mut HeaderMap, form_target: Option<&str>) {
    set_content_security_policy(headers, form_target, None);
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
}

/// The `Content-Security-Policy` of a page: nothing foreign, forms only to
/// ourselves and `form_target`, and scripts only the one whose
/// `'sha256-…'` source is given (the `form_post` page's).
fn set_content_security_policy(
    headers: &mut HeaderMap,
    form_target: Option<&str>,
    script: Option<&str>,
) {
    let form_action = match form_target {
        Some(origin) => format!("'self' {origin}"),
        None => "'self'".to_owned(),
    };
    let script_src = match script {
        Some(source) => format!("script-src {source}; "),
        None => String::new(),
    };
    let csp = format!(
        "default-src 'none'; {script_src}style-src 'self'; img-src 'self'; form-action {form_action}; frame-ancestors 'none'; base-uri 'none'"
    );
    if let Ok(v) = HeaderValue::from_str(&csp) {
        headers.insert(header::CONTENT_SECURITY_POLICY, v);
    }
}

/// An HTML page with the page security headers.
pub(crate) fn html_page(status: StatusCode, body: String, form_target: Option<&str>) -> Response {
    let mut response = (status, Html(body)).into_response();
    page_headers(response.headers_mut(), form_target);
    response
}

#[derive(Serialize)]
struct MessageContext<'a> {
    t: &'static Texts,
    title: &'a str,
    heading: &'a str,
    message: &'a str,
    detail: Option<&'a str>,
    is_error: bool,
    sandbox: bool,
    base: &'a str,
}

/// A page with a heading and a message (errors, "logged out").
pub(crate) fn message_page(
    state: &AppState,
    t: &'static Texts,
    status: StatusCode,
    heading: &str,
    message: &str,
    detail: Option<&str>,
) -> Response {
    let context = MessageContext {
        t,
        title: heading,
        heading,
        message,
        detail,
        is_error: status.is_client_error() || status.is_server_error(),
        sandbox: state.settings.sandbox,
        base: state.settings.base_url(),
    };
    match render(state, "message.html", context) {
        Ok(body) => html_page(status, body, None),
        Err(()) => html_page(
            StatusCode::INTERNAL_SERVER_ERROR,
            "<!doctype html><title>Error</title><h1>Internal error</h1>".to_owned(),
            None,
        ),
    }
}

/// An error page: the individual is not sent anywhere.
pub(crate) fn error_page(
    state: &AppState,
    t: &'static Texts,
    status: StatusCode,
    message: &str,
) -> Response {
    message_page(
        state,
        t,
        status,
        t.error_heading,
        message,
        Some(t.error_detail),
    )
}

/// `303 See Other` (SECURITY.md (c)6: never 307 after a credential POST).
pub(crate) fn see_other(location: &str) -> Response {
    let mut response = StatusCode::SEE_OTHER.into_response();
    if let Ok(v) = HeaderValue::from_str(location) {
        response.headers_mut().insert(header::LOCATION, v);
    }
    page_headers(response.headers_mut(), None);
    response
}

/// `redirect_uri` with `params` appended to its query (RFC 6749 §4.1.2).
/// Registered redirect URIs always parse (`RedirectUri::parse` checks it).
pub(crate) fn with_query(redirect_uri: &str, params: &[(&str, &str)]) -> String {
    let Ok(mut url) = url::Url::parse(redirect_uri) else {
        return redirect_uri.to_owned();
    };
    if params.is_empty() {
        return url.to_string();
    }
    url.query_pairs_mut().extend_pairs(params);
    url.to_string()
}

/// `redirect_uri` with `params` as its fragment (response_mode=fragment).
/// Registered redirect URIs never have a fragment of their own.
pub(crate) fn with_fragment(redirect_uri: &str, params: &[(&str, &str)]) -> String {
    let Ok(mut url) = url::Url::parse(redirect_uri) else {
        return redirect_uri.to_owned();
    };
    let fragment = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(params)
        .finish();
    url.set_fragment(Some(&fragment));
    url.to_string()
}

/// Where, and how, an authorization response goes: the verified redirect
/// URI, the request's `state` (if usable), the response mode, and the
/// language of a `form_post` page.
#[derive(Clone, Copy)]
pub(crate) struct ReplyTo<'a> {
    pub redirect_uri: &'a str,
    pub state: Option<&'a str>,
    pub mode: ResponseMode,
    pub t: &'static Texts,
}

impl<'a> ReplyTo<'a> {
    pub(crate) fn request(request: &'a AuthorizationRequest, t: &'static Texts) -> Self {
        Self {
            redirect_uri: &request.redirect_uri,
            state: Some(&request.state),
            mode: request.response_mode,
            t,
        }
    }

    pub(crate) fn flow(flow: &'a AuthFlow, t: &'static Texts) -> Self {
        Self {
            redirect_uri: &flow.redirect_uri,
            state: Some(&flow.state),
            mode: flow.response_mode,
            t,
        }
    }
}

/// An authorization response (RFC 6749 §4.1.2, §4.1.2.1): `params`, then
/// `state` (when there was one) and `iss` (RFC 9207), in the response
/// mode: a 303 with them in the query or the fragment, or a page that
/// posts them (`form_post`).
pub(crate) fn authorization_response(
    state: &AppState,
    to: ReplyTo<'_>,
    params: &[(&str, &str)],
) -> Response {
    let mut all = params.to_vec();
    if let Some(s) = to.state {
        all.push(("state", s));
    }
    all.push(("iss", state.settings.issuer.as_str()));
    match to.mode {
        ResponseMode::Query => see_other(&with_query(to.redirect_uri, &all)),
        ResponseMode::Fragment => see_other(&with_fragment(to.redirect_uri, &all)),
        ResponseMode::FormPost => form_post(state, to, &all),
    }
}

/// The error response of SPEC §4: `error`, `error_description`, `state`
/// (when there was one) and `iss` (RFC 9207), in the response mode.
pub(crate) fn error_redirect(
    state: &AppState,
    to: ReplyTo<'_>,
    error: AuthorizeErrorCode,
    description: &str,
) -> Response {
    tracing::info!(
        error = error.as_str(),
        response_mode = to.mode.as_str(),
        "authorization error redirect"
    );
    authorization_response(
        state,
        to,
        &[
            ("error", error.as_str()),
            ("error_description", description),
        ],
    )
}

/// The one script of the `form_post` page. The CSP allows exactly this
/// text (by its hash); without JavaScript the visible button submits.
const FORM_POST_SCRIPT: &str = r#"document.getElementById("response").submit();"#;

/// The CSP source (`'sha256-…'`) of [`FORM_POST_SCRIPT`].
fn form_post_script_source() -> &'static str {
    static SOURCE: OnceLock<String> = OnceLock::new();
    SOURCE.get_or_init(|| script_source(FORM_POST_SCRIPT))
}

/// The CSP source (`'sha256-…'`) that allows exactly `script`.
pub(crate) fn script_source(script: &str) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(script.as_bytes());
    format!("'sha256-{}'", STANDARD.encode(digest))
}

#[derive(Serialize)]
struct FormPostContext<'a> {
    t: &'static Texts,
    title: &'static str,
    sandbox: bool,
    base: &'a str,
    action: &'a str,
    fields: &'a [(&'a str, &'a str)],
    script: &'static str,
}

/// OAuth 2.0 Form Post Response Mode: a page whose form posts `params` to
/// the redirect URI, submitted by the browser at once (or by the
/// individual, without JavaScript). Every value is HTML-escaped.
fn form_post(state: &AppState, to: ReplyTo<'_>, params: &[(&str, &str)]) -> Response {
    let t = to.t;
    let context = FormPostContext {
        t,
        title: t.form_post_title,
        sandbox: state.settings.sandbox,
        base: state.settings.base_url(),
        action: to.redirect_uri,
        fields: params,
        script: FORM_POST_SCRIPT,
    };
    match render(state, "form_post.html", context) {
        Ok(body) => {
            let origin = origin_of(to.redirect_uri);
            let mut response = html_page(StatusCode::OK, body, origin.as_deref());
            set_content_security_policy(
                response.headers_mut(),
                origin.as_deref(),
                Some(form_post_script_source()),
            );
            response
        }
        Err(()) => error_page(state, t, StatusCode::INTERNAL_SERVER_ERROR, t.error_detail),
    }
}

/// The origin (`scheme://host[:port]`) of a URI, for the CSP `form-action`.
pub(crate) fn origin_of(uri: &str) -> Option<String> {
    let url = url::Url::parse(uri).ok()?;
    let origin = url.origin();
    origin.is_tuple().then(|| origin.ascii_serialization())
}

/// The browser cookie that binds flows and the login session to one
/// browser. `__Host-` prefixed and `Secure` when the issuer is https.
pub(crate) fn cookie_name(state: &AppState) -> &'static str {
    if state.settings.issuer.starts_with("https://") {
        "__Host-samtykke"
    } else {
        "samtykke_browser"
    }
}

/// The cookie that carries the browser's login session, sealed (see
/// [`LoginSession::seal`]). `__Host-` prefixed when the issuer is https.
pub(crate) fn session_cookie_name(state: &AppState) -> &'static str {
    if state.settings.issuer.starts_with("https://") {
        "__Host-samtykke-session"
    } else {
        "samtykke_session"
    }
}

/// The value of the request's cookie `name`.
fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// The browser's cookie value, if it carries a well-formed one.
pub(crate) fn browser_cookie(state: &AppState, headers: &HeaderMap) -> Option<OpaqueToken> {
    cookie(headers, cookie_name(state)).and_then(OpaqueToken::from_presented)
}

/// The login session the browser presents, if its cookie holds one this
/// server sealed for this very browser cookie. Expiry, and whether a logout
/// ended it, are the caller's to check.
pub(crate) fn browser_session(
    state: &AppState,
    headers: &HeaderMap,
    browser: &OpaqueToken,
    key: &FlowSealKey,
) -> Option<LoginSession> {
    let session = LoginSession::unseal(key, cookie(headers, session_cookie_name(state))?)?;
    (session.browser_hash == browser.hash()).then_some(session)
}

/// `Set-Cookie` for the browser cookie (`None` clears it).
pub(crate) fn set_browser_cookie(
    state: &AppState,
    headers: &mut HeaderMap,
    value: Option<&OpaqueToken>,
) {
    set_cookie(
        state,
        headers,
        cookie_name(state),
        value.map(|v| (v.expose(), None)),
    );
}

/// `Set-Cookie` for the sealed login session (`None` clears it); it lasts
/// as long as the session.
pub(crate) fn set_session_cookie(state: &AppState, headers: &mut HeaderMap, sealed: Option<&str>) {
    let lifetime = flow::LOGIN_SESSION_LIFETIME.whole_seconds();
    set_cookie(
        state,
        headers,
        session_cookie_name(state),
        sealed.map(|v| (v, Some(lifetime))),
    );
}

/// `Set-Cookie` for `name`: the value and its `Max-Age` (none: a browser
/// session cookie), or `None` to clear it.
fn set_cookie(
    state: &AppState,
    headers: &mut HeaderMap,
    name: &str,
    value: Option<(&str, Option<i64>)>,
) {
    let secure = if state.settings.issuer.starts_with("https://") {
        "; Secure"
    } else {
        ""
    };
    let cookie = match value {
        Some((v, None)) => format!("{name}={v}; Path=/; HttpOnly; SameSite=Lax{secure}"),
        Some((v, Some(max_age))) => {
            format!("{name}={v}; Path=/; Max-Age={max_age}; HttpOnly; SameSite=Lax{secure}")
        }
        None => format!("{name}=; Path=/; Max-Age=0; HttpOnly; SameSite=Lax{secure}"),
    };
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        headers.append(header::SET_COOKIE, v);
    }
}

/// The cookie that carries an identification in progress at an upstream
/// provider, sealed (see [`samtykke_core::flow::PendingLogin`]).
pub(crate) fn pending_cookie_name(state: &AppState) -> &'static str {
    if state.settings.issuer.starts_with("https://") {
        "__Host-samtykke-login"
    } else {
        "samtykke_login"
    }
}

/// The sealed pending login the browser presents, if any.
pub(crate) fn pending_cookie<'h>(state: &AppState, headers: &'h HeaderMap) -> Option<&'h str> {
    cookie(headers, pending_cookie_name(state))
}

/// `Set-Cookie` for the sealed pending login (`None` clears it).
pub(crate) fn set_pending_cookie(state: &AppState, headers: &mut HeaderMap, sealed: Option<&str>) {
    let lifetime = flow::PENDING_LOGIN_LIFETIME.whole_seconds();
    set_cookie(
        state,
        headers,
        pending_cookie_name(state),
        sealed.map(|v| (v, Some(lifetime))),
    );
}

/// Decodes a page's form body (`application/x-www-form-urlencoded`). A
/// repeated field makes the whole form invalid.
pub(crate) fn page_form(headers: &HeaderMap, body: &[u8]) -> Option<Vec<(String, String)>> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let media = content_type.split(';').next().unwrap_or("").trim();
    if !media.eq_ignore_ascii_case("application/x-www-form-urlencoded") {
        return None;
    }
    let pairs: Vec<(String, String)> = form_urlencoded::parse(body)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let mut names: Vec<&str> = pairs.iter().map(|(k, _)| k.as_str()).collect();
    names.sort_unstable();
    let before = names.len();
    names.dedup();
    (names.len() == before).then_some(pairs)
}

/// The value of `name` in decoded pairs.
pub(crate) fn field<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// A national identity number as pages show it: the birth date and the
/// first digit of the personal number hidden, the last four shown
/// (`******* 9091`), as Norwegian services do. Anything else is hidden whole.
pub(crate) fn masked_nin(nin: &str) -> String {
    match nin.get(7..) {
        Some(last) if nin.len() == 11 && nin.bytes().all(|b| b.is_ascii_digit()) => {
            format!("******* {last}")
        }
        _ => "*".repeat(nin.chars().count().min(11)),
    }
}

/// `GET /assets/samtykke.css`
pub async fn get_stylesheet() -> Response {
    let mut response = (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        include_str!("../../assets/samtykke.css"),
    )
        .into_response();
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=3600"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_template_parses() {
        let env = environment();
        for name in [
            "base.html",
            "login.html",
            "consent.html",
            "message.html",
            "form_post.html",
            "portal.html",
            "portal_consent.html",
            "portal_withdraw.html",
            "portal_logged_out.html",
            "portal_nav.html",
            "portal_facts.html",
            "portal_paging.html",
            "login_failed.html",
            "sandbox_landing.html",
            "sandbox_callback.html",
        ] {
            assert!(env.get_template(name).is_ok(), "{name}");
        }
    }

    #[test]
    fn redirect_parameters_are_appended_to_an_existing_query() {
        assert_eq!(
            with_query(
                "https://bank.example/cb?a=1",
                &[("code", "x y"), ("state", "s&t")]
            ),
            "https://bank.example/cb?a=1&code=x+y&state=s%26t"
        );
        assert_eq!(
            origin_of("https://bank.example:8443/cb?x").as_deref(),
            Some("https://bank.example:8443")
        );
        assert_eq!(
            with_fragment(
                "https://bank.example/cb?a=1",
                &[("code", "x y"), ("state", "s&t")]
            ),
            "https://bank.example/cb?a=1#code=x+y&state=s%26t"
        );
    }

    #[test]
    fn a_national_identity_number_is_shown_masked() {
        assert_eq!(masked_nin("14842249091"), "******* 9091");
        assert_eq!(masked_nin("1484224909"), "**********");
        assert_eq!(masked_nin(""), "");
    }

    #[test]
    fn the_form_post_script_source_is_the_hash_of_the_script() {
        // printf %s "$FORM_POST_SCRIPT" | openssl dgst -sha256 -binary | base64
        assert_eq!(
            form_post_script_source(),
            "'sha256-mQ2oGECEQvP+Nu+by0UKX2wmZ+b33NETq1RQ2wOEDw0='"
        );
    }
}
