//! Identification at an upstream OpenID Connect provider: sending the
//! browser there (with the `state`, `nonce` and PKCE verifier sealed in a
//! cookie bound to the browser), and `GET /login/callback`, the provider's
//! redirect back, which continues an authorization flow to the consent page
//! or the portal to the page it came from.

use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::Response;
use samtykke_core::authorize::{AuthorizeErrorCode, ResponseMode};
use samtykke_core::flow::{FlowStage, LoginTarget, PendingLogin};
use samtykke_core::opaque::OpaqueToken;
use serde::Serialize;

use super::login::{admit, cancel_flow, continue_identified, Admitted};
use super::portal_login::{logged_in, return_path};
use super::{
    browser_cookie, error_page, error_redirect, html_page, message_page, negotiate, pending_cookie,
    render, see_other, set_pending_cookie, texts_for, with_fragment, with_query, ReplyTo, Texts,
};
use crate::identity::{LoginFailure, Pending};
use crate::AppState;

pub use crate::identity::upstream::CALLBACK_PATH;

/// Sends the browser to the provider's authorization `url`, keeping
/// `pending` (and where to continue) sealed in the pending-login cookie.
pub(crate) async fn redirect_upstream(
    state: &AppState,
    browser: &OpaqueToken,
    pending: &Pending,
    target: LoginTarget,
    url: &str,
    t: &'static Texts,
) -> Response {
    let secrets = match state.secrets().await {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "server secrets unavailable");
            return error_page(state, t, StatusCode::SERVICE_UNAVAILABLE, t.error_detail);
        }
    };
    let sealed = PendingLogin::new(
        browser,
        pending.state.clone(),
        pending.nonce.clone(),
        pending.pkce_verifier.clone(),
        target,
        state.clock.now(),
    )
    .seal(&secrets.flow_key);
    let mut response = see_other(url);
    set_pending_cookie(state, response.headers_mut(), Some(&sealed));
    response
}

#[derive(Serialize)]
struct FailedContext<'a> {
    t: &'static Texts,
    title: &'static str,
    sandbox: bool,
    base: &'a str,
    message: &'static str,
    back: String,
}

/// `GET /login/callback?code=…&state=…` (or `?error=…`).
pub async fn get_callback(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let params: Vec<(String, String)> =
        form_urlencoded::parse(query.unwrap_or_default().as_bytes())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
    let accept_language = headers
        .get(header::ACCEPT_LANGUAGE)
        .and_then(|v| v.to_str().ok());
    let t = texts_for(negotiate(None, accept_language));
    let mut response = callback(&state, &headers, &params, t).await;
    // The pending login is used once, whatever came of it.
    set_pending_cookie(&state, response.headers_mut(), None);
    response
}

async fn callback(
    state: &AppState,
    headers: &HeaderMap,
    params: &[(String, String)],
    t: &'static Texts,
) -> Response {
    let Some(identity) = state.identity.as_deref() else {
        return error_page(state, t, StatusCode::NOT_FOUND, t.flow_not_found);
    };
    let secrets = match state.secrets().await {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "server secrets unavailable");
            return error_page(state, t, StatusCode::SERVICE_UNAVAILABLE, t.error_detail);
        }
    };
    let browser = browser_cookie(state, headers);
    let returned_state = params
        .iter()
        .find(|(k, _)| k == "state")
        .map(|(_, v)| v.as_str())
        .unwrap_or("");
    let pending = pending_cookie(state, headers)
        .and_then(|sealed| PendingLogin::unseal(&secrets.flow_key, sealed))
        .filter(|p| p.answers(browser.as_ref(), returned_state, state.clock.now()));
    let (Some(pending), Some(browser)) = (pending, browser) else {
        tracing::warn!(
            "login callback without a matching login in progress (state, browser or expiry)"
        );
        return error_page(state, t, StatusCode::BAD_REQUEST, t.flow_not_found);
    };
    let check = Pending {
        state: pending.state.clone(),
        nonce: pending.nonce.clone(),
        pkce_verifier: pending.pkce_verifier.clone(),
    };
    let outcome = identity
        .complete(params, Some(&check), state.nin_policy())
        .await;
    if let Err(LoginFailure::Failed(reason) | LoginFailure::Unacceptable(reason)) = &outcome {
        tracing::warn!(
            provider = identity.name(),
            reason,
            "upstream identification failed"
        );
    }
    match &pending.target {
        LoginTarget::Flow(sealed) => {
            let admitted = match admit(state, headers, Some(sealed), None, FlowStage::Login).await {
                Ok(a) => a,
                Err(page) => return page,
            };
            match outcome {
                Ok(nin) => continue_identified(state, &admitted, nin, identity.name()).await,
                Err(LoginFailure::Cancelled) => cancel_flow(state, &admitted).await,
                Err(LoginFailure::Unacceptable(_)) => {
                    flow_failed(state, &admitted, AuthorizeErrorCode::AccessDenied).await
                }
                Err(LoginFailure::Failed(_) | LoginFailure::Rejected(_)) => {
                    flow_failed(state, &admitted, AuthorizeErrorCode::ServerError).await
                }
            }
        }
        LoginTarget::Portal(path) => {
            let t = texts_for(if path.starts_with("/en/") { "en" } else { "nb" });
            match outcome {
                Ok(nin) => match return_path(Some(path)) {
                    Some(path) => logged_in(state, &browser, nin, path, identity.name()).await,
                    None => error_page(state, t, StatusCode::BAD_REQUEST, t.bad_form),
                },
                Err(LoginFailure::Cancelled) => message_page(
                    state,
                    t,
                    StatusCode::OK,
                    t.error_heading,
                    t.login_cancelled_text,
                    None,
                ),
                Err(LoginFailure::Unacceptable(_)) => {
                    error_page(state, t, StatusCode::FORBIDDEN, t.upstream_unacceptable)
                }
                Err(LoginFailure::Failed(_) | LoginFailure::Rejected(_)) => {
                    error_page(state, t, StatusCode::BAD_GATEWAY, t.upstream_failed)
                }
            }
        }
    }
}

/// Identification failed for a flow: the flow ends, and the individual sees
/// why, with a link that takes the error (`code`) back to the institution.
/// (A `form_post` flow is answered with its posting page at once.)
async fn flow_failed(state: &AppState, admitted: &Admitted, code: AuthorizeErrorCode) -> Response {
    let t = admitted.t;
    let flow = &admitted.flow;
    let reply = ReplyTo::flow(flow, t);
    match state.store.end_auth_flow(flow).await {
        Ok(true) => {}
        Ok(false) => return error_page(state, t, StatusCode::BAD_REQUEST, t.flow_finished),
        Err(e) => {
            tracing::error!(error = %e, "could not end the flow");
            return error_redirect(state, reply, AuthorizeErrorCode::ServerError, "");
        }
    }
    let params = [
        ("error", code.as_str()),
        ("error_description", ""),
        ("state", flow.state.as_str()),
        ("iss", state.settings.issuer.as_str()),
    ];
    let back = match flow.response_mode {
        ResponseMode::Query => with_query(&flow.redirect_uri, &params),
        ResponseMode::Fragment => with_fragment(&flow.redirect_uri, &params),
        ResponseMode::FormPost => return error_redirect(state, reply, code, ""),
    };
    let (status, message) = match code {
        AuthorizeErrorCode::AccessDenied => (StatusCode::FORBIDDEN, t.upstream_unacceptable),
        _ => (StatusCode::BAD_GATEWAY, t.upstream_failed),
    };
    tracing::info!(
        error = code.as_str(),
        "identification failed; the flow ended"
    );
    let context = FailedContext {
        t,
        title: t.error_heading,
        sandbox: state.settings.sandbox,
        base: state.settings.base_url(),
        message,
        back,
    };
    match render(state, "login_failed.html", context) {
        Ok(body) => html_page(status, body, None),
        Err(()) => error_page(state, t, StatusCode::INTERNAL_SERVER_ERROR, t.error_detail),
    }
}
