//! The pages an individual sees in the authorization-code flow (SPEC §4, §6):
//! the authorization endpoint, identification (TestID in the sandbox), the
//! consent page, and logout. Plain HTML and CSS served by us, no JavaScript,
//! Norwegian bokmål by default and English on request.

pub mod authorize;
pub mod consent;
pub mod login;
pub mod logout;
mod texts;

use std::sync::OnceLock;

use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use minijinja::Environment;
use samtykke_core::authorize::AuthorizeErrorCode;
use samtykke_core::flow::{self, FlowSealKey, LoginSession};
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
        ] {
            if let Err(e) = env.add_template(name, source) {
                tracing::error!(template = name, error = %e, "broken template");
            }
        }
        env
    })
}

/// Renders a page; a rendering failure is logged and answered with a bare
/// 500 page (never a panic).
pub(crate) fn render(name: &str, context: impl Serialize) -> Result<String, ()> {
    environment()
        .get_template(name)
        .and_then(|t| t.render(context))
        .map_err(|e| tracing::error!(template = name, error = %e, "page rendering failed"))
}

/// The security headers of every page (SECURITY.md (c)): no framing, no
/// referrer, no caching; scripts and foreign resources are not allowed.
/// `form_target` is the origin a form may end up redirecting to.
pub(crate) fn page_headers(headers: &mut HeaderMap, form_target: Option<&str>) {
    let form_action = match form_target {
        Some(origin) => format!("'self' {origin}"),
        None => "'self'".to_owned(),
    };
    let csp = format!(
        "default-src 'none'; style-src 'self'; img-src 'self'; form-action {form_action}; frame-ancestors 'none'; base-uri 'none'"
    );
    if let Ok(v) = HeaderValue::from_str(&csp) {
        headers.insert(header::CONTENT_SECURITY_POLICY, v);
    }
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
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
    match render("message.html", context) {
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

/// The error redirect of SPEC §4: `error`, `error_description`, `state`
/// (when there was one) and `iss` (RFC 9207).
pub(crate) fn error_redirect(
    state: &AppState,
    redirect_uri: &str,
    error: AuthorizeErrorCode,
    description: &str,
    request_state: Option<&str>,
) -> Response {
    let mut params = vec![
        ("error", error.as_str()),
        ("error_description", description),
    ];
    if let Some(s) = request_state {
        params.push(("state", s));
    }
    params.push(("iss", state.settings.issuer.as_str()));
    tracing::info!(error = error.as_str(), "authorization error redirect");
    see_other(&with_query(redirect_uri, &params))
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
        for name in ["base.html", "login.html", "consent.html", "message.html"] {
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
    }
}
