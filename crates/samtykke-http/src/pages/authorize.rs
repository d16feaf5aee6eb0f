//! `GET /oauth2/auth` (RFC 6749 §4.1.1, SPEC §4): validates the request
//! (read from its request object when it has one, RFC 9101), starts a flow
//! bound to this browser, and sends the individual to identification, or
//! straight to the consent page when the browser has a live login session.

use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::Response;
use samtykke_core::authorize::{
    self, AuthorizationRequest, AuthorizeErrorCode, AuthorizeRejection, ErrorPageReason, Params,
    Prompt, RequestSource,
};
use samtykke_core::domain::{Client, ClientKeys};
use samtykke_core::flow;
use samtykke_core::opaque::OpaqueToken;
use samtykke_core::request_object::{self, Expected, RequestObjectError};

use super::{
    browser_cookie, browser_session, error_page, error_redirect, negotiate, see_other,
    set_browser_cookie, texts_for, ReplyTo, Texts,
};
use crate::AppState;

fn page_reason_text(t: &'static Texts, reason: ErrorPageReason) -> &'static str {
    match reason {
        ErrorPageReason::MissingClientId | ErrorPageReason::UnknownClient => t.unknown_client,
        ErrorPageReason::MissingRedirectUri => t.missing_redirect_uri,
        ErrorPageReason::UnregisteredRedirectUri => t.bad_redirect_uri,
        ErrorPageReason::RepeatedParameter => t.repeated_parameter,
        ErrorPageReason::InvalidRequestObject => t.bad_request_object,
    }
}

/// The answer to a refused request: an error page, or an error response to
/// the verified redirect URI.
fn refuse(state: &AppState, t: &'static Texts, rejection: AuthorizeRejection) -> Response {
    match rejection {
        AuthorizeRejection::ErrorPage(reason) => {
            tracing::info!(
                reason = reason.key(),
                "authorization request refused with an error page"
            );
            error_page(
                state,
                t,
                StatusCode::BAD_REQUEST,
                page_reason_text(t, reason),
            )
        }
        AuthorizeRejection::Redirect(r) => error_redirect(
            state,
            ReplyTo {
                redirect_uri: &r.redirect_uri,
                state: r.state.as_deref(),
                mode: r.response_mode,
                t,
            },
            r.error,
            &r.description,
        ),
    }
}

/// Decides a request that came with a request object (by value, or fetched
/// from its registered `request_uri`): verified against the client's keys
/// (fetched from its `jwks_uri` when it has one), then decided on the
/// object's parameters alone.
async fn decide_by_request_object(
    state: &AppState,
    params: &Params,
    client: &Client,
    jwt: &str,
) -> Result<AuthorizationRequest, AuthorizeRejection> {
    let refuse = |description: &str| {
        tracing::info!(
            client_id = %client.id,
            reason = description,
            "request object refused"
        );
        authorize::request_object_rejection(
            params,
            client,
            AuthorizeErrorCode::InvalidRequestObject,
            description,
        )
    };
    let now = state.clock.now();
    let sandbox = state.settings.sandbox;
    let policy = &client.request_objects;
    let remote = match &policy.keys {
        Some(ClientKeys::Remote(uri)) if request_object::is_signed(jwt) => Some(uri),
        _ => None,
    };
    let mut fetched = match remote {
        Some(uri) => Some(
            state
                .remote
                .client_keys(uri, sandbox, now, false)
                .await
                .map_err(|e| {
                    tracing::warn!(client_id = %client.id, error = %e, "client jwks_uri failed");
                    refuse("the client's keys could not be fetched from its jwks_uri")
                })?,
        ),
        None => None,
    };
    let mut retried = false;
    let object = loop {
        let keys = match (&policy.keys, &fetched) {
            (Some(ClientKeys::Inline(set)), _) => Some(set),
            (_, Some(set)) => Some(&**set),
            _ => None,
        };
        let expected = Expected {
            client_id: &client.id,
            issuer: &state.settings.issuer,
            keys,
            allow_unsigned: policy.allow_unsigned,
            now,
        };
        match request_object::verify(jwt, &expected) {
            Ok(object) => break object,
            Err(RequestObjectError::UnknownKey) => match remote {
                // The client may have rotated its keys: fetch them once more.
                Some(uri) if !retried => {
                    retried = true;
                    fetched = Some(
                        state
                            .remote
                            .client_keys(uri, sandbox, now, true)
                            .await
                            .map_err(|_| {
                                refuse("the client's keys could not be fetched from its jwks_uri")
                            })?,
                    );
                }
                _ => return Err(refuse("no key of the client has the request object's kid")),
            },
            Err(RequestObjectError::Invalid(description)) => return Err(refuse(&description)),
        }
    };
    authorize::decide_request_object(&object, client)
}

pub async fn get_authorize(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    if let Some(there) = issuer_host_redirect(&state, &headers, query.as_deref()) {
        return there;
    }
    let params: Vec<(String, String)> =
        form_urlencoded::parse(query.unwrap_or_default().as_bytes())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
    let accept_language = headers
        .get(header::ACCEPT_LANGUAGE)
        .and_then(|v| v.to_str().ok());
    let ui_locales = params
        .iter()
        .find(|(k, _)| k == "ui_locales")
        .map(|(_, v)| v.as_str());
    let locale = negotiate(ui_locales, accept_language);
    let t = texts_for(locale);

    let client = match authorize::client_id_of(&params) {
        Ok(id) => match state.client(&id).await {
            Ok(client) => client,
            Err(e) => {
                tracing::error!(error = %e, "authorization request: storage failed");
                return error_page(&state, t, StatusCode::SERVICE_UNAVAILABLE, t.error_detail);
            }
        },
        Err(_) => None,
    };
    let decided = match authorize::request_source(&params, client.as_deref()) {
        Err(rejection) => Err(rejection),
        Ok(RequestSource::Query) => authorize::decide(&params, client.as_deref()),
        Ok(RequestSource::Value { client, jwt }) => {
            decide_by_request_object(&state, &params, client, jwt).await
        }
        Ok(RequestSource::Reference { client, uri }) => {
            match state.remote.fetch(uri, state.settings.sandbox).await {
                Ok(jwt) => decide_by_request_object(&state, &params, client, &jwt).await,
                Err(e) => {
                    tracing::info!(client_id = %client.id, error = %e, "request_uri fetch failed");
                    Err(authorize::request_object_rejection(
                        &params,
                        client,
                        AuthorizeErrorCode::InvalidRequestUri,
                        "the request_uri could not be fetched",
                    ))
                }
            }
        }
    };
    let request = match decided {
        Ok(request) => request,
        Err(rejection) => return refuse(&state, t, rejection),
    };
    // A request object's ui_locales count, not the query's.
    let locale = negotiate(request.ui_locales.as_deref(), accept_language);
    let t = texts_for(locale);
    let fail = |code: AuthorizeErrorCode, description: &str| {
        error_redirect(&state, ReplyTo::request(&request, t), code, description)
    };
    if state.identity.is_none() {
        // Production without an upstream OpenID Connect provider: there is
        // no way to identify the individual.
        tracing::error!("authorization request in production mode without an identity provider");
        return fail(
            AuthorizeErrorCode::ServerError,
            "no identity provider is configured",
        );
    }

    let existing = browser_cookie(&state, &headers);
    let browser = existing.clone().unwrap_or_else(OpaqueToken::generate);
    let now = state.clock.now();
    let secrets = match state.secrets().await {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "server secrets unavailable");
            return fail(AuthorizeErrorCode::ServerError, "");
        }
    };
    // The browser's sealed login session, unless it has expired or a
    // logout ended it (one read, only for a browser that presents one).
    let presented = match &existing {
        Some(b) if request.prompt != Prompt::Login => {
            browser_session(&state, &headers, b, &secrets.flow_key).filter(|s| s.is_active(now))
        }
        _ => None,
    };
    let session = match presented {
        Some(s) => match state.store.login_session_ended(&s).await {
            Ok(ended) => (!ended).then_some(s),
            Err(e) => {
                tracing::error!(error = %e, "login session check failed");
                return fail(AuthorizeErrorCode::ServerError, "");
            }
        },
        None => None,
    };
    if request.prompt == Prompt::None {
        // Every authorization creates a new consent, which needs the
        // individual's decision.
        return match session {
            Some(_) => fail(
                AuthorizeErrorCode::ConsentRequired,
                "the individual must consent",
            ),
            None => fail(
                AuthorizeErrorCode::LoginRequired,
                "the individual must log in",
            ),
        };
    }

    // The flow's state travels sealed in the page URLs; nothing is stored.
    let flow = flow::start(&request, &browser, locale, now);
    let base = state.settings.base_url();
    let next = match session {
        Some(session) => format!(
            "{base}/oauth2/consent?flow={}",
            flow.identified(session.nin).seal(&secrets.flow_key)
        ),
        None => format!("{base}/oauth2/login?flow={}", flow.seal(&secrets.flow_key)),
    };
    tracing::info!(client_id = %request.client_id, "authorization flow started");
    let mut response = see_other(&next);
    if existing.is_none() {
        set_browser_cookie(&state, response.headers_mut(), Some(&browser));
    }
    response
}

/// A request that reached a loopback issuer under another loopback name
/// (`localhost` for `127.0.0.1`) is sent to the issuer's name first: the
/// browser cookie that binds the flow is kept per host name, and every later
/// page lives under the issuer. Anything else (proxies that rewrite `Host`)
/// is left alone.
fn issuer_host_redirect(
    state: &AppState,
    headers: &HeaderMap,
    query: Option<&str>,
) -> Option<Response> {
    const LOOPBACK: [&str; 3] = ["localhost", "127.0.0.1", "[::1]"];
    let host = headers
        .get(header::HOST)?
        .to_str()
        .ok()?
        .to_ascii_lowercase();
    let issuer = url::Url::parse(&state.settings.issuer).ok()?;
    let issuer_host = issuer.host_str()?.to_ascii_lowercase();
    let port = issuer.port_or_known_default()?;
    let (name, request_port) = match host.rsplit_once(':') {
        Some((name, p)) if !name.is_empty() && !p.contains(']') => {
            (name.to_owned(), p.parse::<u16>().ok()?)
        }
        _ => (host.clone(), port),
    };
    let both_loopback =
        LOOPBACK.contains(&name.as_str()) && LOOPBACK.contains(&issuer_host.as_str());
    if !both_loopback || name == issuer_host || request_port != port {
        return None;
    }
    let target = match query {
        Some(q) => format!("{}/oauth2/auth?{q}", state.settings.base_url()),
        None => format!("{}/oauth2/auth", state.settings.base_url()),
    };
    Some(see_other(&target))
}
