//! `GET /min-side/login?return=/min-side|/en/my-page`: identification for the
//! individual's portal. With an upstream provider the browser is sent there
//! (and comes back through `/login/callback`); in the sandbox without one,
//! TestID's form, posted to `POST /min-side/login`. On success the login
//! session cookie is set and the browser goes to the return path.

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use samtykke_core::domain::Nin;
use samtykke_core::flow::{self, LoginSession, LoginTarget};
use samtykke_core::opaque::OpaqueToken;
use serde::{Deserialize, Serialize};

use super::{
    browser_cookie, error_page, field, html_page, message_page, page_form, render, see_other,
    set_browser_cookie, set_session_cookie, texts_for, Texts, NB,
};
use crate::identity::{LoginFailure, LoginStart};
use crate::AppState;

/// The only pages a portal login may return to.
pub const RETURN_PATHS: [&str; 2] = ["/min-side", "/en/my-page"];

#[derive(Deserialize)]
pub struct ReturnQuery {
    #[serde(rename = "return")]
    return_to: Option<String>,
}

/// The return path if it is one of [`RETURN_PATHS`] (default `/min-side`).
pub(crate) fn return_path(value: Option<&str>) -> Option<&'static str> {
    match value {
        None | Some("") => Some(RETURN_PATHS[0]),
        Some(v) => RETURN_PATHS.iter().copied().find(|p| *p == v),
    }
}

/// The portal's language follows its return path (`/en/my-page` is
/// English, `/min-side` bokmål).
fn texts_of(path: &str) -> &'static Texts {
    texts_for(if path.starts_with("/en/") { "en" } else { "nb" })
}

/// The CSRF token of the portal's TestID form, bound to this browser.
fn csrf_token(key: &[u8], browser: &OpaqueToken) -> String {
    flow::csrf_token(key, "portal-login", browser)
}

#[derive(Serialize)]
struct PortalLoginContext<'a> {
    t: &'static Texts,
    title: &'static str,
    sandbox: bool,
    base: &'a str,
    return_to: &'a str,
    csrf: String,
    error: Option<&'static str>,
    nin: &'a str,
}

fn form_page(
    state: &AppState,
    t: &'static Texts,
    status: StatusCode,
    return_to: &str,
    csrf: String,
    error: Option<&'static str>,
    typed: &str,
) -> Response {
    let context = PortalLoginContext {
        t,
        title: t.login_title,
        sandbox: state.settings.sandbox,
        base: state.settings.base_url(),
        return_to,
        csrf,
        error,
        nin: typed,
    };
    match render(state, "login.html", context) {
        Ok(body) => html_page(status, body, None),
        Err(()) => error_page(state, t, StatusCode::INTERNAL_SERVER_ERROR, t.error_detail),
    }
}

/// The individual identified as `nin` for the portal: the login session
/// cookie, and back to the portal page `return_to`.
pub(crate) async fn logged_in(
    state: &AppState,
    browser: &OpaqueToken,
    nin: Nin,
    return_to: &str,
    provider: &'static str,
) -> Response {
    let t = texts_of(return_to);
    let Ok(secrets) = state.secrets().await else {
        return error_page(state, t, StatusCode::SERVICE_UNAVAILABLE, t.error_detail);
    };
    let session = LoginSession::new(browser, nin, state.clock.now());
    tracing::info!(provider, "individual identified for the portal");
    let mut response = see_other(&format!("{}{return_to}", state.settings.base_url()));
    set_session_cookie(
        state,
        response.headers_mut(),
        Some(&session.seal(&secrets.flow_key)),
    );
    response
}

/// `GET /min-side/login?return=…`
pub async fn get_portal_login(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(query): Query<ReturnQuery>,
) -> Response {
    let Some(return_to) = return_path(query.return_to.as_deref()) else {
        return error_page(&state, &NB, StatusCode::BAD_REQUEST, NB.bad_form);
    };
    let t = texts_of(return_to);
    let Some(identity) = state.identity.as_deref() else {
        return error_page(&state, t, StatusCode::FORBIDDEN, t.testid_unavailable);
    };
    let existing = browser_cookie(&state, &headers);
    let browser = existing.clone().unwrap_or_else(OpaqueToken::generate);
    let mut response = match identity.begin() {
        LoginStart::TestIdForm => match state.secrets().await {
            Ok(secrets) => form_page(
                &state,
                t,
                StatusCode::OK,
                return_to,
                csrf_token(&secrets.csrf_key, &browser),
                None,
                "",
            ),
            Err(_) => error_page(&state, t, StatusCode::SERVICE_UNAVAILABLE, t.error_detail),
        },
        LoginStart::Redirect { url, pending } => {
            super::login_callback::redirect_upstream(
                &state,
                &browser,
                &pending,
                LoginTarget::Portal(return_to.to_owned()),
                &url,
                t,
            )
            .await
        }
    };
    if existing.is_none() {
        set_browser_cookie(&state, response.headers_mut(), Some(&browser));
    }
    response
}

/// `POST /min-side/login`: TestID's form for the portal (`return`, `csrf`,
/// `nin`, `action=login|cancel`). Only where TestID is the identity provider.
pub async fn post_portal_login(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(form) = page_form(&headers, &body) else {
        return error_page(&state, &NB, StatusCode::BAD_REQUEST, NB.bad_form);
    };
    let Some(return_to) = return_path(field(&form, "return")) else {
        return error_page(&state, &NB, StatusCode::BAD_REQUEST, NB.bad_form);
    };
    let t = texts_of(return_to);
    let identity = match state.identity.as_deref() {
        Some(i) if matches!(i.begin(), LoginStart::TestIdForm) => i,
        _ => return error_page(&state, t, StatusCode::FORBIDDEN, t.testid_unavailable),
    };
    let Ok(secrets) = state.secrets().await else {
        return error_page(&state, t, StatusCode::SERVICE_UNAVAILABLE, t.error_detail);
    };
    let browser = browser_cookie(&state, &headers);
    let csrf_ok = match (&browser, field(&form, "csrf")) {
        (Some(b), Some(presented)) => {
            flow::csrf_valid(&secrets.csrf_key, "portal-login", b, presented)
        }
        _ => false,
    };
    let (Some(browser), true) = (browser, csrf_ok) else {
        tracing::warn!("portal login post with a missing or wrong CSRF token");
        return error_page(&state, t, StatusCode::FORBIDDEN, t.flow_forged);
    };
    match identity.complete(&form, None, state.nin_policy()).await {
        Ok(nin) => logged_in(&state, &browser, nin, return_to, identity.name()).await,
        Err(LoginFailure::Cancelled) => message_page(
            &state,
            t,
            StatusCode::OK,
            t.error_heading,
            t.login_cancelled_text,
            None,
        ),
        Err(LoginFailure::Rejected(why)) => {
            let typed: String = field(&form, "nin").unwrap_or("").chars().take(20).collect();
            form_page(
                &state,
                t,
                StatusCode::BAD_REQUEST,
                return_to,
                csrf_token(&secrets.csrf_key, &browser),
                Some(t.bad_nin_for(&why)),
                &typed,
            )
        }
        Err(LoginFailure::Failed(reason) | LoginFailure::Unacceptable(reason)) => {
            tracing::error!(provider = identity.name(), reason, "identification failed");
            error_page(&state, t, StatusCode::BAD_GATEWAY, t.upstream_failed)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_portal_pages_are_return_paths() {
        assert_eq!(return_path(None), Some("/min-side"));
        assert_eq!(return_path(Some("/en/my-page")), Some("/en/my-page"));
        for bad in [
            "https://evil.example/",
            "//evil.example",
            "/min-side/../x",
            "/oauth2/auth",
        ] {
            assert_eq!(return_path(Some(bad)), None, "{bad}");
        }
    }
}
