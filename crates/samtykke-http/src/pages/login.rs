//! Identification pages: `GET /oauth2/login` shows the identity provider's
//! first step (the TestID form in the sandbox), `POST /oauth2/login` takes
//! the form.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use samtykke_core::authorize::AuthorizeErrorCode;
use samtykke_core::domain::Client;
use samtykke_core::flow::{self, AuthFlow, FlowRefusal, FlowStage, LoginSession, LoginTarget};
use samtykke_core::opaque::OpaqueToken;
use serde::{Deserialize, Serialize};

use super::{
    browser_cookie, error_page, error_redirect, field, html_page, origin_of, page_form, render,
    see_other, set_session_cookie, texts_for, ReplyTo, Texts, NB,
};
use crate::identity::{IdentityProvider, LoginFailure, LoginStart};
use crate::AppState;

#[derive(Deserialize)]
pub struct FlowQuery {
    pub(crate) flow: Option<String>,
}

/// A flow that a page may continue, with its browser and texts.
pub(crate) struct Admitted {
    pub flow: AuthFlow,
    /// The sealed value it came in, for the page's forms.
    pub sealed: String,
    pub browser: OpaqueToken,
    pub t: &'static Texts,
}

/// Opens the sealed flow value `sealed` and checks it for this browser,
/// step and (for posts) CSRF token. Refusals are error pages: nothing is
/// redirected for a flow we cannot trust. Reads nothing from the database:
/// whether the flow has finished is decided by the step that writes.
pub(crate) async fn admit(
    state: &AppState,
    headers: &HeaderMap,
    sealed: Option<&str>,
    csrf: Option<Option<&str>>,
    stage: FlowStage,
) -> Result<Admitted, Response> {
    let t_default = &NB;
    let browser = browser_cookie(state, headers);
    let secrets = state.secrets().await.map_err(|e| {
        tracing::error!(error = %e, "server secrets unavailable");
        error_page(
            state,
            t_default,
            StatusCode::SERVICE_UNAVAILABLE,
            t_default.error_detail,
        )
    })?;
    let opened = sealed.and_then(|v| AuthFlow::unseal(&secrets.flow_key, v).map(|f| (f, v)));
    let Some((flow, sealed)) = opened else {
        return Err(error_page(
            state,
            t_default,
            StatusCode::BAD_REQUEST,
            t_default.flow_not_found,
        ));
    };
    let t = texts_for(&flow.locale);
    let csrf_check = csrf.map(|presented| (secrets.csrf_key.as_slice(), presented));
    match flow.admit(browser.as_ref(), csrf_check, stage, state.clock.now()) {
        Ok(()) => {}
        Err(FlowRefusal::NotFound) => {
            return Err(error_page(
                state,
                t,
                StatusCode::BAD_REQUEST,
                t.flow_not_found,
            ))
        }
        Err(FlowRefusal::Forged) => {
            tracing::warn!("form post with a missing or wrong CSRF token");
            return Err(error_page(state, t, StatusCode::FORBIDDEN, t.flow_forged));
        }
        Err(FlowRefusal::WrongStage) => {
            if flow.stage == FlowStage::Consent && stage == FlowStage::Login {
                let base = state.settings.base_url();
                return Err(see_other(&format!("{base}/oauth2/consent?flow={sealed}")));
            }
            return Err(error_page(
                state,
                t,
                StatusCode::BAD_REQUEST,
                t.flow_finished,
            ));
        }
    }
    let Some(browser) = browser else {
        return Err(error_page(
            state,
            t,
            StatusCode::BAD_REQUEST,
            t.flow_not_found,
        ));
    };
    Ok(Admitted {
        flow,
        sealed: sealed.to_owned(),
        browser,
        t,
    })
}

/// Decodes a page's form post and admits its flow with its CSRF token.
pub(crate) async fn admit_form(
    state: &AppState,
    headers: &HeaderMap,
    body: &[u8],
    stage: FlowStage,
) -> Result<(Admitted, Vec<(String, String)>), Response> {
    let Some(form) = page_form(headers, body) else {
        return Err(error_page(state, &NB, StatusCode::BAD_REQUEST, NB.bad_form));
    };
    let admitted = admit(
        state,
        headers,
        field(&form, "flow"),
        Some(field(&form, "csrf")),
        stage,
    )
    .await?;
    Ok((admitted, form))
}

/// The flow's client (still enabled) and the CSRF token for a page's form.
pub(crate) async fn client_and_csrf(
    state: &AppState,
    admitted: &Admitted,
) -> Result<(Arc<Client>, String), Response> {
    let t = admitted.t;
    let client = match state.client(&admitted.flow.client_id).await {
        Ok(Some(c)) if !c.disabled => c,
        Ok(_) => {
            return Err(error_page(
                state,
                t,
                StatusCode::BAD_REQUEST,
                t.unknown_client,
            ))
        }
        Err(_) => {
            return Err(error_page(
                state,
                t,
                StatusCode::SERVICE_UNAVAILABLE,
                t.error_detail,
            ))
        }
    };
    match state.secrets().await {
        Ok(s) => Ok((
            client,
            flow::csrf_token(&s.csrf_key, &admitted.flow.id, &admitted.browser),
        )),
        Err(_) => Err(error_page(
            state,
            t,
            StatusCode::SERVICE_UNAVAILABLE,
            t.error_detail,
        )),
    }
}

/// The configured identity provider, or the page that says there is none.
#[allow(clippy::result_large_err)] // the error is the page to answer with
pub(crate) fn identity_provider<'a>(
    state: &'a AppState,
    t: &'static Texts,
) -> Result<&'a dyn IdentityProvider, Response> {
    state
        .identity
        .as_deref()
        .ok_or_else(|| error_page(state, t, StatusCode::FORBIDDEN, t.testid_unavailable))
}

#[derive(Serialize)]
struct LoginContext<'a> {
    t: &'static Texts,
    title: &'static str,
    sandbox: bool,
    base: &'a str,
    flow: &'a str,
    csrf: String,
    client_name: &'a str,
    error: Option<&'static str>,
    nin: &'a str,
}

async fn login_page(
    state: &AppState,
    admitted: &Admitted,
    status: StatusCode,
    error: Option<&'static str>,
    typed: &str,
) -> Response {
    let t = admitted.t;
    let (client, csrf) = match client_and_csrf(state, admitted).await {
        Ok(found) => found,
        Err(page) => return page,
    };
    let context = LoginContext {
        t,
        title: t.login_title,
        sandbox: state.settings.sandbox,
        base: state.settings.base_url(),
        flow: &admitted.sealed,
        csrf,
        client_name: client.name.as_str(),
        error,
        nin: typed,
    };
    match render(state, "login.html", context) {
        Ok(body) => html_page(
            status,
            body,
            origin_of(&admitted.flow.redirect_uri).as_deref(),
        ),
        Err(()) => error_page(state, t, StatusCode::INTERNAL_SERVER_ERROR, t.error_detail),
    }
}

/// `GET /oauth2/login?flow=…`
pub async fn get_login(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(query): Query<FlowQuery>,
) -> Response {
    let admitted = match admit(
        &state,
        &headers,
        query.flow.as_deref(),
        None,
        FlowStage::Login,
    )
    .await
    {
        Ok(a) => a,
        Err(page) => return page,
    };
    let identity = match identity_provider(&state, admitted.t) {
        Ok(i) => i,
        Err(page) => return page,
    };
    match identity.begin() {
        LoginStart::TestIdForm => login_page(&state, &admitted, StatusCode::OK, None, "").await,
        LoginStart::Redirect { url, pending } => {
            super::login_callback::redirect_upstream(
                &state,
                &admitted.browser,
                &pending,
                LoginTarget::Flow(admitted.sealed.clone()),
                &url,
                admitted.t,
            )
            .await
        }
    }
}

/// The individual identified as `nin` for the admitted flow: the login
/// session cookie, and on to the consent page.
pub(crate) async fn continue_identified(
    state: &AppState,
    admitted: &Admitted,
    nin: samtykke_core::domain::Nin,
    provider: &'static str,
) -> Response {
    let flow = &admitted.flow;
    // Identifying writes nothing: the login session travels sealed in its
    // own cookie, bound to this browser.
    let session = LoginSession::new(&admitted.browser, nin.clone(), state.clock.now());
    let secrets = match state.secrets().await {
        Ok(s) => s,
        Err(_) => {
            return error_redirect(
                state,
                ReplyTo::flow(flow, admitted.t),
                AuthorizeErrorCode::ServerError,
                "",
            )
        }
    };
    let next = flow.identified(nin).seal(&secrets.flow_key);
    tracing::info!(provider, "individual identified");
    let mut response = see_other(&format!(
        "{}/oauth2/consent?flow={next}",
        state.settings.base_url()
    ));
    set_session_cookie(
        state,
        response.headers_mut(),
        Some(&session.seal(&secrets.flow_key)),
    );
    response
}

/// The individual cancelled identification for the admitted flow: the flow
/// ends and the institution gets `error=login_cancelled`.
pub(crate) async fn cancel_flow(state: &AppState, admitted: &Admitted) -> Response {
    let flow = &admitted.flow;
    let reply = ReplyTo::flow(flow, admitted.t);
    match state.store.end_auth_flow(flow).await {
        Ok(true) => error_redirect(state, reply, AuthorizeErrorCode::LoginCancelled, ""),
        Ok(false) => error_page(
            state,
            admitted.t,
            StatusCode::BAD_REQUEST,
            admitted.t.flow_finished,
        ),
        Err(_) => error_redirect(state, reply, AuthorizeErrorCode::ServerError, ""),
    }
}

/// `POST /oauth2/login`: the TestID form (`flow`, `csrf`, `nin`,
/// `action=login|cancel`).
pub async fn post_login(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    // The form is TestID's: in production, or with an upstream provider,
    // it does not exist, whatever the post holds.
    let identity = match state.identity.as_deref() {
        Some(i) if matches!(i.begin(), LoginStart::TestIdForm) => i,
        _ => return error_page(&state, &NB, StatusCode::FORBIDDEN, NB.testid_unavailable),
    };
    let (admitted, form) = match admit_form(&state, &headers, &body, FlowStage::Login).await {
        Ok(found) => found,
        Err(page) => return page,
    };
    let flow = &admitted.flow;
    let redirect_error = |code: AuthorizeErrorCode, description: &str| {
        error_redirect(&state, ReplyTo::flow(flow, admitted.t), code, description)
    };
    match identity.complete(&form, None, state.nin_policy()).await {
        Ok(nin) => continue_identified(&state, &admitted, nin, identity.name()).await,
        Err(LoginFailure::Cancelled) => cancel_flow(&state, &admitted).await,
        Err(LoginFailure::Rejected(why)) => {
            let typed: String = field(&form, "nin").unwrap_or("").chars().take(20).collect();
            login_page(
                &state,
                &admitted,
                StatusCode::BAD_REQUEST,
                Some(admitted.t.bad_nin_for(&why)),
                &typed,
            )
            .await
        }
        Err(LoginFailure::Failed(reason) | LoginFailure::Unacceptable(reason)) => {
            tracing::error!(provider = identity.name(), reason, "identification failed");
            let _ = state.store.end_auth_flow(flow).await;
            redirect_error(AuthorizeErrorCode::ServerError, "")
        }
    }
}
