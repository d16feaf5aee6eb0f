//! Discovery (OpenID Connect Discovery 1.0 §3, RFC 8414 §2) and the JWKS
//! (RFC 7517). The metadata lists exactly what the server implements.

use axum::extract::State;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Json;
use samtykke_core::authorize::ResponseMode;
use samtykke_core::domain::Scope;
use samtykke_core::keys::{self, Jwk};
use serde::Serialize;
use serde_json::{json, Value};

use crate::error::OAuthErrorResponse;
use crate::AppState;

fn metadata(state: &AppState) -> serde_json::Map<String, Value> {
    let issuer = &state.settings.issuer;
    let base = state.settings.base_url();
    let scopes: Vec<&str> = Scope::ALL.iter().map(|s| s.as_str()).collect();
    let basic = ["client_secret_basic"];
    let value = json!({
        "issuer": issuer,
        "authorization_endpoint": format!("{base}/oauth2/auth"),
        "token_endpoint": format!("{base}/oauth2/token"),
        "jwks_uri": format!("{base}/.well-known/jwks.json"),
        "revocation_endpoint": format!("{base}/oauth2/revoke"),
        "introspection_endpoint": format!("{base}/oauth2/introspect"),
        "userinfo_endpoint": format!("{base}/userinfo"),
        "end_session_endpoint": format!("{base}/oauth2/sessions/logout"),
        "grant_types_supported": ["authorization_code", "client_credentials"],
        "response_types_supported": ["code"],
        "response_modes_supported": ResponseMode::ALL.map(ResponseMode::as_str),
        "code_challenge_methods_supported": ["S256"],
        "authorization_response_iss_parameter_supported": true,
        "prompt_values_supported": ["none", "login", "consent"],
        "ui_locales_supported": ["nb", "en"],
        "scopes_supported": scopes,
        "token_endpoint_auth_methods_supported": basic,
        "revocation_endpoint_auth_methods_supported": basic,
        "introspection_endpoint_auth_methods_supported": basic,
    });
    match value {
        Value::Object(map) => map,
        _ => serde_json::Map::new(),
    }
}

fn cached_json(value: &impl Serialize) -> Response {
    let mut response = Json(value).into_response();
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=60"),
    );
    response
}

/// `GET /.well-known/oauth-authorization-server` (RFC 8414).
pub async fn get_authorization_server_metadata(State(state): State<AppState>) -> Response {
    cached_json(&metadata(&state))
}

/// `GET /.well-known/openid-configuration`: the same metadata plus what
/// OpenID Connect Discovery requires of a provider's signing keys.
pub async fn get_openid_configuration(State(state): State<AppState>) -> Response {
    let mut map = metadata(&state);
    map.insert("subject_types_supported".into(), json!(["pairwise"]));
    map.insert(
        "claims_supported".into(),
        json!([
            "iss",
            "sub",
            "aud",
            "exp",
            "iat",
            "auth_time",
            "nonce",
            "pid",
            "consent_id"
        ]),
    );
    map.insert("claims_parameter_supported".into(), json!(false));
    // Request objects (RFC 9101): by value and by a request_uri registered
    // for the client, signed by one of its keys or, where its registration
    // allows, unsigned.
    map.insert("request_parameter_supported".into(), json!(true));
    map.insert("request_uri_parameter_supported".into(), json!(true));
    map.insert("require_request_uri_registration".into(), json!(true));
    map.insert(
        "request_object_signing_alg_values_supported".into(),
        json!(samtykke_core::request_object::SUPPORTED_ALGS),
    );
    // /userinfo answers plain JSON and never signs: "none" (which OpenID
    // Connect Discovery 1.0 §3 allows here) says exactly that.
    map.insert(
        "userinfo_signing_alg_values_supported".into(),
        json!(["none"]),
    );
    map.insert(
        "id_token_signing_alg_values_supported".into(),
        json!(["RS256"]),
    );
    cached_json(&map)
}

#[derive(Serialize)]
struct JwkSet {
    keys: Vec<Jwk>,
}

/// `GET /.well-known/jwks.json`: the active key and its predecessor.
pub async fn get_jwks(State(state): State<AppState>) -> Result<Response, OAuthErrorResponse> {
    let all = state.store.list_signing_keys().await?;
    let keys = keys::published(&all)
        .iter()
        .filter_map(|k| {
            k.public_jwk()
                .inspect_err(|e| tracing::error!(kid = %k.kid, error = %e, "unusable signing key"))
                .ok()
        })
        .collect();
    Ok(cached_json(&JwkSet { keys }))
}
