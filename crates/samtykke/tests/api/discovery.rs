//! Discovery documents and the JWKS, checked with standard parsers.

use jsonwebtoken::jwk::{AlgorithmParameters, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};

use crate::helpers::{run_cli, TestApp};

pub async fn get_json(app: &TestApp, path: &str) -> serde_json::Value {
    let response = app.http.get(app.url(path)).send().await.unwrap();
    assert_eq!(response.status(), 200, "{path}");
    assert_eq!(response.headers()["content-type"], "application/json");
    response.json().await.unwrap()
}

async fn jwks(app: &TestApp) -> JwkSet {
    let response = app
        .http
        .get(app.url("/.well-known/jwks.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    serde_json::from_str(&response.text().await.unwrap()).expect("a JWK set")
}

fn kids(set: &JwkSet) -> Vec<String> {
    set.keys
        .iter()
        .map(|k| k.common.key_id.clone().unwrap())
        .collect()
}

/// Signs with the stored private key and verifies with the published JWK.
async fn signature_verifies_with_jwks(app: &TestApp, kid: &str) -> bool {
    let keys = app.store.list_signing_keys().await.unwrap();
    let key = keys.iter().find(|k| k.kid == kid).expect("stored key");
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some(kid.to_owned());
    let claims =
        serde_json::json!({"iss": app.base, "sub": "x", "aud": "y", "exp": 4_000_000_000u64});
    let jwt = jsonwebtoken::encode(
        &header,
        &claims,
        &EncodingKey::from_rsa_pem(key.private_key_pem.as_bytes()).unwrap(),
    )
    .unwrap();
    let set = jwks(app).await;
    let Some(jwk) = set.find(kid) else {
        return false;
    };
    assert!(matches!(jwk.algorithm, AlgorithmParameters::RSA(_)));
    let mut validation = Validation::new(Algorithm::RS256);
    validation.set_audience(&["y"]);
    jsonwebtoken::decode::<serde_json::Value>(
        &jwt,
        &DecodingKey::from_jwk(jwk).unwrap(),
        &validation,
    )
    .is_ok()
}

engine_tests! {
    async fn both_metadata_documents_list_exactly_what_is_implemented(app) {
        for path in ["/.well-known/openid-configuration", "/.well-known/oauth-authorization-server"] {
            let doc = get_json(&app, path).await;
            assert_eq!(doc["issuer"], app.base);
            assert_eq!(doc["token_endpoint"], app.url("/oauth2/token"));
            assert_eq!(doc["jwks_uri"], app.url("/.well-known/jwks.json"));
            assert_eq!(doc["revocation_endpoint"], app.url("/oauth2/revoke"));
            assert_eq!(doc["introspection_endpoint"], app.url("/oauth2/introspect"));
            assert_eq!(doc["grant_types_supported"], serde_json::json!(["authorization_code", "client_credentials"]));
            assert_eq!(doc["authorization_endpoint"], app.url("/oauth2/auth"));
            assert_eq!(doc["userinfo_endpoint"], app.url("/userinfo"));
            assert_eq!(doc["end_session_endpoint"], app.url("/oauth2/sessions/logout"));
            assert_eq!(doc["response_types_supported"], serde_json::json!(["code"]));
            assert_eq!(doc["response_modes_supported"], serde_json::json!(["query", "fragment", "form_post"]));
            assert_eq!(doc["code_challenge_methods_supported"], serde_json::json!(["S256"]));
            assert_eq!(doc["authorization_response_iss_parameter_supported"], true);
            assert_eq!(doc["token_endpoint_auth_methods_supported"], serde_json::json!(["client_secret_basic"]));
            assert_eq!(
                doc["scopes_supported"],
                serde_json::json!(["debt.unsecured.presentation", "debt.unsecured.processing", "consent.create", "client.access.consent.events", "openid"])
            );
            // Every advertised endpoint answers (not 404).
            for key in ["token_endpoint", "revocation_endpoint", "introspection_endpoint", "userinfo_endpoint", "end_session_endpoint"] {
                let url = doc[key].as_str().unwrap();
                let status = app.http.post(url).form(&[("x", "y")]).send().await.unwrap().status();
                assert_ne!(status, 404, "{key}");
            }
            let status = app.http.get(doc["authorization_endpoint"].as_str().unwrap()).send().await.unwrap().status();
            assert_eq!(status, 400, "the authorization endpoint answers an empty request with an error page");
        }
        let oidc = get_json(&app, "/.well-known/openid-configuration").await;
        assert_eq!(oidc["id_token_signing_alg_values_supported"], serde_json::json!(["RS256"]));
        assert_eq!(oidc["subject_types_supported"], serde_json::json!(["pairwise"]));
        // Request objects (tests/api/request_objects.rs): by value, by a
        // registered request_uri, RS256, ES256, and none where the client is
        // registered for it.
        assert_eq!(oidc["request_parameter_supported"], true);
        assert_eq!(oidc["request_uri_parameter_supported"], true);
        assert_eq!(oidc["require_request_uri_registration"], true);
        assert_eq!(oidc["request_object_signing_alg_values_supported"], serde_json::json!(["RS256", "ES256", "none"]));
        // /userinfo answers plain JSON, never a signed JWT.
        assert_eq!(oidc["userinfo_signing_alg_values_supported"], serde_json::json!(["none"]));
        assert_eq!(oidc["claims_parameter_supported"], false);
        for claim in ["pid", "consent_id", "nonce", "sub"] {
            assert!(oidc["claims_supported"].as_array().unwrap().iter().any(|c| c == claim), "{claim}");
        }
    }

    async fn the_jwks_publishes_an_rs256_key_that_verifies_signatures(app) {
        let set = jwks(&app).await;
        assert_eq!(set.keys.len(), 1);
        let kid = kids(&set).remove(0);
        assert!(signature_verifies_with_jwks(&app, &kid).await);
        let raw = get_json(&app, "/.well-known/jwks.json").await;
        let key = &raw["keys"][0];
        assert_eq!(key["kty"], "RSA");
        assert_eq!(key["alg"], "RS256");
        assert_eq!(key["use"], "sig");
        assert!(key.get("d").is_none() && key.get("p").is_none(), "no private parts");
    }

    async fn key_rotation_adds_an_active_key_and_keeps_the_previous_one_published(app) {
        let first = kids(&jwks(&app).await);
        let output = run_cli(&app.database_url, &["keys", "rotate"]);
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        let second = kids(&jwks(&app).await);
        assert_eq!(second.len(), 2);
        assert_eq!(second[1], first[0], "the previous key stays published");
        assert!(String::from_utf8_lossy(&output.stdout).contains(&second[0]));
        for kid in &second {
            assert!(signature_verifies_with_jwks(&app, kid).await);
        }
        assert!(run_cli(&app.database_url, &["keys", "rotate"]).status.success());
        let third = kids(&jwks(&app).await);
        assert_eq!(third.len(), 2);
        assert_eq!(third[1], second[0]);
        assert!(!third.contains(&first[0]), "the oldest key is retired");

        let list = String::from_utf8(run_cli(&app.database_url, &["keys", "list"]).stdout).unwrap();
        let statuses: Vec<(&str, &str)> = list.lines().skip(1).map(|l| {
            let mut cols = l.split_whitespace();
            (cols.next().unwrap(), cols.next().unwrap())
        }).collect();
        assert_eq!(statuses, [(third[0].as_str(), "active"), (third[1].as_str(), "published"), (first[0].as_str(), "retired")]);
    }
}
