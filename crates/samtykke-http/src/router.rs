//! The route table.

use axum::extract::DefaultBodyLimit;
use axum::http::{header, HeaderName, HeaderValue, Request};
use axum::routing::{get, post, put};
use axum::Router;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::trace::TraceLayer;

use crate::api::{agreement, debt, feed};
use crate::{discovery, health, oauth, pages, AppState};

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Every public route of the server (`GET /metrics` is on the operator
/// listener: [`admin_router`]).
pub fn router(state: AppState) -> Router {
    router_with(state, false)
}

/// The public routes, with `GET /metrics` too when the operator asked for it
/// (`--metrics-on-public-listener`).
pub fn router_with(state: AppState, metrics_on_public_listener: bool) -> Router {
    Router::new()
        .route("/oauth2/token", post(oauth::token::post_token))
        .route("/oauth2/revoke", post(oauth::revoke::post_revoke))
        .route("/oauth2/introspect", post(oauth::introspect::post_introspect))
        .route("/oauth2/auth", get(pages::authorize::get_authorize))
        .route("/oauth2/login", get(pages::login::get_login).post(pages::login::post_login))
        .route("/oauth2/consent", get(pages::consent::get_consent).post(pages::consent::post_consent))
        .route("/oauth2/sessions/logout", get(pages::logout::logout).post(pages::logout::logout))
        .route("/userinfo", get(oauth::userinfo::userinfo).post(oauth::userinfo::userinfo))
        .route("/assets/samtykke.css", get(pages::get_stylesheet))
        .route(crate::operator::LOGO_PATH, get(crate::operator::get_logo))
        .route("/.well-known/openid-configuration", get(discovery::get_openid_configuration))
        .route("/.well-known/oauth-authorization-server", get(discovery::get_authorization_server_metadata))
        .route("/.well-known/jwks.json", get(discovery::get_jwks))
        .route("/v1/consent/agreement", put(agreement::put_agreement_consent).fallback(agreement::agreement_method_not_allowed))
        .route("/v1/debt", get(debt::get_debt_of_bound_consent))
        .route("/v1/debt/{id}", get(debt::get_debt_by_consent).delete(debt::delete_consent))
        .route("/v1/debt/{id}/status", get(debt::get_consent_status))
        .route("/feed/v1/consent", get(feed::get_feed))
        .route("/feed/v1/consent/firstSequenceNr", get(feed::get_first_sequence_nr))
        .route("/feed/v1/consent/lastSequenceNr", get(feed::get_last_sequence_nr))
        .route("/openapi.json", get(crate::api::openapi::get_openapi))
        .route("/healthz", get(health::get_healthz))
        .route("/readyz", get(health::get_readyz))
        .merge(metrics_route(metrics_on_public_listener))
        // The individual's portal (SPEC §9), bokmål and English.
        .route("/min-side", get(pages::portal::get_list::<false>))
        .route("/min-side/samtykke/{id}", get(pages::portal::get_consent::<false>))
        .route("/min-side/samtykke/{id}/trekk-tilbake", get(pages::portal::get_withdraw::<false>).post(pages::portal::post_withdraw::<false>))
        .route("/min-side/logout", post(pages::portal::post_logout::<false>))
        .route("/min-side/logget-ut", get(pages::portal::get_logged_out::<false>))
        .route("/en/my-page", get(pages::portal::get_list::<true>))
        .route("/en/my-page/consent/{id}", get(pages::portal::get_consent::<true>))
        .route("/en/my-page/consent/{id}/withdraw", get(pages::portal::get_withdraw::<true>).post(pages::portal::post_withdraw::<true>))
        .route("/en/my-page/logout", post(pages::portal::post_logout::<true>))
        .route("/en/my-page/logged-out", get(pages::portal::get_logged_out::<true>))
        // Upstream identification (issue 20).
        .route(pages::login_callback::CALLBACK_PATH, get(pages::login_callback::get_callback))
        .route("/min-side/login", get(pages::portal_login::get_portal_login).post(pages::portal_login::post_portal_login))
        // The sandbox's landing page and its own callback (issue 23).
        .route("/", get(pages::sandbox::get_landing))
        .route(pages::sandbox::SANDBOX_CALLBACK_PATH, get(pages::sandbox::get_callback))
        .fallback(health::not_found)
        .method_not_allowed_fallback(health::method_not_allowed)
        .layer(DefaultBodyLimit::max(64 * 1024))
        .layer(axum::middleware::map_response_with_state(
            state.clone(),
            crate::operator::allow_logo_origin,
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        .layer(
            // Only method, path and request id are logged: never a query,
            // header or body, which may hold credentials.
            TraceLayer::new_for_http().make_span_with(|req: &Request<_>| {
                let id = req
                    .headers()
                    .get(&REQUEST_ID)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("-");
                tracing::info_span!("request", method = %req.method(), path = %req.uri().path(), request_id = %id)
            }),
        )
        .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
        .layer(crate::server::LateBodyLayer)
        .layer(crate::metrics::MetricsLayer::new(&state))
        .with_state(state)
}

/// `GET /metrics` when `enabled`, else no route (the path answers 404 like
/// any unknown path).
fn metrics_route(enabled: bool) -> Router<AppState> {
    let routes = Router::new();
    if enabled {
        routes.route("/metrics", get(crate::metrics::get_metrics))
    } else {
        routes
    }
}

/// The operator listener (`serve --admin-listen`): `GET /metrics`, and the
/// probes `GET /healthz` and `GET /readyz` (also public: load balancers and
/// orchestrators probe the port they send traffic to, and they reveal
/// nothing but liveness and whether the database answers).
pub fn admin_router(state: AppState) -> Router {
    Router::new()
        .route("/metrics", get(crate::metrics::get_metrics))
        .route("/healthz", get(health::get_healthz))
        .route("/readyz", get(health::get_readyz))
        .fallback(health::not_found)
        .method_not_allowed_fallback(health::method_not_allowed)
        .layer(SetResponseHeaderLayer::if_not_present(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .layer(crate::server::LateBodyLayer)
        .layer(crate::metrics::MetricsLayer::new(&state))
        .with_state(state)
}
