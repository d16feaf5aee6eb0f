//! `GET|POST /oauth2/sessions/logout` (OpenID Connect RP-Initiated Logout
//! 1.0): ends the browser's login session and its unfinished flows, then
//! returns to the client's `post_logout_redirect_uri` when that is one of the
//! client's registered redirect URIs, or shows a "logged out" page.

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::response::Response;
use samtykke_core::domain::ClientId;
use samtykke_core::id_token;

use super::{
    browser_cookie, browser_session, error_page, message_page, negotiate, page_form, see_other,
    set_browser_cookie, set_session_cookie, texts_for, with_query,
};
use crate::AppState;

pub async fn logout(
    State(state): State<AppState>,
    method: Method,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Response {
    let params: Vec<(String, String)> = if method == Method::POST {
        page_form(&headers, &body).unwrap_or_default()
    } else {
        form_urlencoded::parse(query.unwrap_or_default().as_bytes())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect()
    };
    let get = |name: &str| {
        params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty())
    };
    let accept_language = headers
        .get(header::ACCEPT_LANGUAGE)
        .and_then(|v| v.to_str().ok());
    let t = texts_for(negotiate(get("ui_locales"), accept_language));

    // Where to go afterwards, decided before anything is ended so that a bad
    // request changes nothing.
    let mut target = None;
    if let Some(uri) = get("post_logout_redirect_uri") {
        let mut client_id = get("client_id").and_then(|c| ClientId::parse(c).ok());
        if let Some(hint) = get("id_token_hint") {
            let keys = state.store.list_signing_keys().await.unwrap_or_default();
            let aud = id_token::verify_hint(&keys, &state.settings.issuer, hint)
                .and_then(|claims| ClientId::parse(&claims.aud).ok());
            match (&client_id, aud) {
                (Some(given), Some(aud)) if *given != aud => client_id = None,
                (_, Some(aud)) => client_id = Some(aud),
                (_, None) => client_id = None,
            }
        }
        let client = match &client_id {
            Some(id) => state.client(id).await.ok().flatten(),
            None => None,
        };
        match client.filter(|c| !c.disabled && c.registered_redirect_uri(uri).is_some()) {
            Some(_) => target = Some(uri.to_owned()),
            None => return error_page(&state, t, StatusCode::BAD_REQUEST, t.bad_logout),
        }
    }

    // A logout is recorded only for a browser that presents a login
    // session this server sealed for it: garbage cookies write nothing.
    if let Some(browser) = browser_cookie(&state, &headers) {
        let session = match state.secrets().await {
            Ok(secrets) => browser_session(&state, &headers, &browser, &secrets.flow_key),
            Err(e) => {
                tracing::error!(error = %e, "server secrets unavailable");
                return error_page(&state, t, StatusCode::SERVICE_UNAVAILABLE, t.error_detail);
            }
        };
        if let Some(session) = session {
            let ended = state.store.end_login_sessions(&session).await;
            if let Err(e) = ended {
                tracing::error!(error = %e, "could not end the login session");
                return error_page(&state, t, StatusCode::SERVICE_UNAVAILABLE, t.error_detail);
            }
            tracing::info!("login session ended");
        }
    }
    let mut response = match target {
        Some(uri) => {
            let params: Vec<(&str, &str)> =
                get("state").map(|s| vec![("state", s)]).unwrap_or_default();
            see_other(&with_query(&uri, &params))
        }
        None => message_page(
            &state,
            t,
            StatusCode::OK,
            t.logged_out_heading,
            t.logged_out_text,
            None,
        ),
    };
    set_browser_cookie(&state, response.headers_mut(), None);
    set_session_cookie(&state, response.headers_mut(), None);
    response
}
