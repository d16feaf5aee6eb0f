//! The consent page (SPEC §4): `GET /oauth2/consent` shows who asks, for
//! what and for how long; `POST /oauth2/consent` takes the decision. Only a
//! POST with this flow's CSRF token can accept, and only once.

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use samtykke_core::authorize::AuthorizeErrorCode;
use samtykke_core::consent::{Consent, ConsentKind};
use samtykke_core::flow::FlowStage;
use samtykke_core::grant::authorization_code;
use serde::Serialize;

use super::login::{admit, admit_form, client_and_csrf, Admitted, FlowQuery};
use super::{
    authorization_response, browser_session, error_page, error_redirect, field, html_page,
    origin_of, render, ReplyTo, Texts,
};
use crate::AppState;

#[derive(Serialize)]
struct ConsentContext<'a> {
    t: &'static Texts,
    title: &'static str,
    sandbox: bool,
    base: &'a str,
    flow: &'a str,
    csrf: String,
    client_name: &'a str,
    org_number: &'a str,
    purpose: &'static str,
    duration: String,
    /// Masked (see [`super::masked_nin`]).
    nin: String,
}

/// `GET /oauth2/consent?flow=…`
pub async fn get_consent(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(query): Query<FlowQuery>,
) -> Response {
    let admitted = match admit(
        &state,
        &headers,
        query.flow.as_deref(),
        None,
        FlowStage::Consent,
    )
    .await
    {
        Ok(a) => a,
        Err(page) => return page,
    };
    let (client, csrf) = match client_and_csrf(&state, &admitted).await {
        Ok(found) => found,
        Err(page) => return page,
    };
    let Admitted {
        flow, sealed, t, ..
    } = admitted;
    let context = ConsentContext {
        t,
        title: t.consent_title,
        sandbox: state.settings.sandbox,
        base: state.settings.base_url(),
        flow: &sealed,
        csrf,
        client_name: client.name.as_str(),
        org_number: client.org_number.as_str(),
        purpose: t.purpose(flow.scope.purpose),
        duration: t.duration(flow.scope.duration),
        nin: super::masked_nin(flow.nin.as_ref().map_or("", |n| n.as_str())),
    };
    match render(&state, "consent.html", context) {
        Ok(body) => html_page(
            StatusCode::OK,
            body,
            origin_of(&flow.redirect_uri).as_deref(),
        ),
        Err(()) => error_page(&state, t, StatusCode::INTERNAL_SERVER_ERROR, t.error_detail),
    }
}

/// `POST /oauth2/consent` (`flow`, `csrf`, `decision=accept|deny`).
pub async fn post_consent(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (
        Admitted {
            flow, t, browser, ..
        },
        form,
    ) = match admit_form(&state, &headers, &body, FlowStage::Consent).await {
        Ok(found) => found,
        Err(page) => return page,
    };
    let redirect_error = |code: AuthorizeErrorCode, description: &str| {
        error_redirect(&state, ReplyTo::flow(&flow, t), code, description)
    };
    match field(&form, "decision") {
        Some("accept") => {}
        Some("deny") => {
            return match state.store.end_auth_flow(&flow).await {
                Ok(true) => {
                    tracing::info!(client_id = %flow.client_id, "consent denied");
                    redirect_error(AuthorizeErrorCode::ConsentDenied, "")
                }
                Ok(false) => error_page(&state, t, StatusCode::BAD_REQUEST, t.flow_finished),
                Err(_) => redirect_error(AuthorizeErrorCode::ServerError, ""),
            }
        }
        _ => return error_page(&state, t, StatusCode::BAD_REQUEST, t.bad_form),
    }

    let now = state.clock.now();
    let (Some(nin), Ok(Some(client))) = (flow.nin.clone(), state.client(&flow.client_id).await)
    else {
        let _ = state.store.end_auth_flow(&flow).await;
        return redirect_error(AuthorizeErrorCode::ServerError, "");
    };
    if client.disabled || !client.allows_purpose(flow.scope.purpose) {
        let _ = state.store.end_auth_flow(&flow).await;
        return redirect_error(
            AuthorizeErrorCode::ServerError,
            "the client may no longer ask for this consent",
        );
    }
    let consent = Consent::new(
        client.id.clone(),
        nin,
        flow.scope,
        ConsentKind::Regular,
        None,
        now,
    );
    // The browser's login session must still be this individual's (not
    // replaced by another login, not expired); the store checks that no
    // logout ended it.
    let session = match state.secrets().await {
        Ok(secrets) => browser_session(&state, &headers, &browser, &secrets.flow_key),
        Err(_) => return redirect_error(AuthorizeErrorCode::ServerError, ""),
    };
    let Some(session) = session.filter(|s| s.vouches_for(&flow, now)) else {
        return error_page(&state, t, StatusCode::BAD_REQUEST, t.flow_finished);
    };
    let (code, record) = authorization_code::issue(&flow, &consent, now);
    match state
        .store
        .accept_auth_flow(&flow, &consent, &record, &session)
        .await
    {
        Ok(true) => {
            state.metrics.consent_created(&consent);
            tracing::info!(client_id = %client.id, consent_id = %consent.id, "consent given; code issued");
            authorization_response(
                &state,
                ReplyTo::flow(&flow, t),
                &[
                    ("code", code.expose()),
                    ("scope", consent.purpose.scope_name()),
                ],
            )
        }
        Ok(false) => error_page(&state, t, StatusCode::BAD_REQUEST, t.flow_finished),
        Err(e) => {
            tracing::error!(error = %e, "could not store the consent");
            let _ = state.store.end_auth_flow(&flow).await;
            redirect_error(AuthorizeErrorCode::ServerError, "")
        }
    }
}
