//! The authorization-code flow end to end: a real OpenID Connect client
//! (the `openidconnect` crate) discovers the server, builds the authorization
//! URL, exchanges the code and verifies the ID token; and every rule of the
//! code grant (SPEC §3, SECURITY.md (a) 4–7).

use openidconnect::core::{CoreAuthenticationFlow, CoreClient, CoreProviderMetadata};
use openidconnect::{
    AuthorizationCode, ClientId, ClientSecret, CsrfToken, IssuerUrl, Nonce, OAuth2TokenResponse,
    PkceCodeChallenge, RedirectUrl, Scope, TokenResponse,
};

use crate::helpers::{assert_oauth_error, auth_url, browser, query_of, redeem, run_flow, TestApp};

const NIN: &str = "14842249091";

/// The claims a relying party reads from our ID token, beyond the standard ones.
fn payload(jwt: &str) -> serde_json::Value {
    use base64::Engine;
    let part = jwt.split('.').nth(1).unwrap();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part)
        .unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

/// Runs a flow with the sandbox client and returns the code.
async fn code_for(app: &TestApp, extra: &[(&str, &str)]) -> String {
    let done = run_flow(app, &browser(), &auth_url(app, extra), NIN, "accept").await;
    let params = query_of(&done);
    params
        .get("code")
        .cloned()
        .unwrap_or_else(|| panic!("no code in {done}"))
}

async fn introspect_active(app: &TestApp, token: &str) -> bool {
    let (id, secret) = app.sandbox_auth();
    let body: serde_json::Value = app
        .http
        .post(app.url("/oauth2/introspect"))
        .basic_auth(id, Some(secret))
        .form(&[("token", token)])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    body["active"] == true
}

engine_tests! {
    async fn an_openid_connect_library_completes_the_flow_and_verifies_the_id_token(app) {
        let http = openidconnect::reqwest::ClientBuilder::new()
            .redirect(openidconnect::reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        let metadata = CoreProviderMetadata::discover_async(IssuerUrl::new(app.base.clone()).unwrap(), &http)
            .await
            .expect("discovery parses");
        let (id, secret) = app.sandbox_auth();
        let redirect = "http://127.0.0.1:41234/callback";
        let client = CoreClient::from_provider_metadata(metadata, ClientId::new(id.clone()), Some(ClientSecret::new(secret.clone())))
            .set_redirect_uri(RedirectUrl::new(redirect.to_owned()).unwrap());
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let (url, csrf, nonce) = client
            .authorize_url(CoreAuthenticationFlow::AuthorizationCode, CsrfToken::new_random, Nonce::new_random)
            .add_scope(Scope::new("debt.unsecured.presentation.100".into()))
            .set_pkce_challenge(challenge)
            .url();

        let done = run_flow(&app, &browser(), url.as_str(), NIN, "accept").await;
        assert!(done.starts_with(redirect), "{done}");
        let params = query_of(&done);
        assert_eq!(params["state"], *csrf.secret(), "state comes back byte for byte");
        assert_eq!(params["scope"], "debt.unsecured.presentation", "scope without its duration suffix");
        assert_eq!(params["iss"], app.base, "RFC 9207 iss");

        let tokens = client
            .exchange_code(AuthorizationCode::new(params["code"].clone()))
            .unwrap()
            .set_pkce_verifier(verifier)
            .request_async(&http)
            .await
            .expect("code exchange");
        let id_token = tokens.id_token().expect("an ID token for openid");
        let claims = id_token.claims(&client.id_token_verifier(), &nonce).expect("the ID token verifies against the JWKS");
        assert_eq!(claims.issuer().as_str(), app.base);
        assert_eq!(claims.audiences()[0].as_str(), id);
        let kid = jsonwebtoken::decode_header(&id_token.to_string()).unwrap().kid.unwrap();
        let active_kid = app.store.list_signing_keys().await.unwrap()[0].kid.clone();
        assert_eq!(kid, active_kid);
        let raw = payload(&id_token.to_string());
        assert_eq!(raw["pid"], NIN);
        let consent_id = raw["consent_id"].as_str().unwrap().to_owned();
        assert_ne!(raw["sub"], NIN, "the subject is pairwise, not the number");
        assert_eq!(tokens.scopes().unwrap().len(), 2);

        // The access token is bound to the consent: GET /v1/debt serves it.
        let access = tokens.access_token().secret().clone();
        let debt = app.get_bearer("/v1/debt", &access).await;
        assert_eq!(debt.status(), 200);
        let debt: serde_json::Value = debt.json().await.unwrap();
        assert_eq!(debt["ssn"], NIN);
        assert_eq!(debt["consent"]["id"], consent_id);
        assert!(!debt["loans"].as_array().unwrap().is_empty());

        // /userinfo serves the same claims.
        let info: serde_json::Value = app.get_bearer("/userinfo", &access).await.json().await.unwrap();
        assert_eq!(info["pid"], NIN);
        assert_eq!(info["consent_id"], consent_id);
        assert_eq!(info["sub"], raw["sub"]);

        // Later, the 100-day consent serves client-credentials lookups.
        let cc = app.sandbox_token("/v1/debt", "debt.unsecured.presentation").await;
        let again = app.get_bearer(&format!("/v1/debt/{consent_id}"), &cc).await;
        assert_eq!(again.status(), 200);
        let status: serde_json::Value = app.get_bearer(&format!("/v1/debt/{consent_id}/status"), &cc).await.json().await.unwrap();
        assert_eq!(status["active"], true);
        let consent = app.store.find_consent(&samtykke_core::consent::ConsentId::parse(&consent_id).unwrap()).await.unwrap().unwrap();
        assert_eq!(consent.kind, samtykke_core::consent::ConsentKind::Regular);
        assert_eq!(consent.expires_at - consent.created_at, time::Duration::days(100));

        // The consent's creation reached the event feed.
        let feed_token = app.sandbox_token("/feed/v1/consent", "client.access.consent.events").await;
        let feed: serde_json::Value = app.get_bearer("/feed/v1/consent?fromSequenceNr=1&limit=100", &feed_token).await.json().await.unwrap();
        assert!(feed["result"].as_array().unwrap().iter().any(|e| e["consentId"] == consent_id && e["eventType"] == "SAMTYKKE_OPPRETTET"));
    }

    async fn without_openid_there_is_no_id_token_and_a_single_use_consent_serves_once(app) {
        let code = code_for(&app, &[("scope", "debt.unsecured.presentation")]).await;
        let response = redeem(&app, &code, &[]).await;
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["cache-control"], "no-store");
        let body: serde_json::Value = response.json().await.unwrap();
        assert!(body.get("id_token").is_none());
        assert_eq!(body["scope"], "debt.unsecured.presentation");
        assert_eq!(body["token_type"], "bearer");
        // The test clock stands still: the consent was given at this very
        // instant and lasts 10 minutes, which the token may not outlive.
        assert_eq!(body["expires_in"], 599, "a token never outlives its 10-minute consent");
        let token = body["access_token"].as_str().unwrap();
        assert!(token.starts_with("sc2."), "a sealed token: issuing it stores nothing");
        assert_eq!(app.get_bearer("/v1/debt", token).await.status(), 200);
        assert_eq!(app.get_bearer("/v1/debt", token).await.status(), 403, "single use");
        let userinfo = app.get_bearer("/userinfo", token).await;
        assert_eq!(userinfo.status(), 403);
        assert!(userinfo.headers()["www-authenticate"].to_str().unwrap().contains("insufficient_scope"));
    }

    async fn a_replayed_code_is_invalid_grant_and_revokes_what_the_first_use_issued(app) {
        let code = code_for(&app, &[]).await;
        let first: serde_json::Value = redeem(&app, &code, &[]).await.json().await.unwrap();
        let token = first["access_token"].as_str().unwrap().to_owned();
        assert!(introspect_active(&app, &token).await);
        assert_oauth_error(redeem(&app, &code, &[]).await, 400, "invalid_grant").await;
        assert!(!introspect_active(&app, &token).await, "the first redemption's token is revoked");
        crate::debt_api::assert_api_error(app.get_bearer("/v1/debt", &token).await, 403, "Invalid access token").await;
        app.clock.advance(time::Duration::seconds(30));
        assert_oauth_error(redeem(&app, &code, &[]).await, 400, "invalid_grant").await;
    }

    async fn a_code_token_revoked_or_of_a_disabled_client_no_longer_counts(app) {
        let (client, secret) = app.sandbox_auth();
        let code = code_for(&app, &[]).await;
        let body: serde_json::Value = redeem(&app, &code, &[]).await.json().await.unwrap();
        let revoked = body["access_token"].as_str().unwrap().to_owned();
        assert_eq!(app.post_form("/oauth2/revoke", (&client, &secret), &[("token", &revoked)]).await.status(), 200);
        assert!(!introspect_active(&app, &revoked).await);
        crate::debt_api::assert_api_error(app.get_bearer("/v1/debt", &revoked).await, 403, "Invalid access token").await;

        let code = code_for(&app, &[]).await;
        let body: serde_json::Value = redeem(&app, &code, &[]).await.json().await.unwrap();
        let token = body["access_token"].as_str().unwrap().to_owned();
        let id = samtykke_core::domain::ClientId::parse(&client).unwrap();
        app.store.set_client_disabled(&id, true).await.unwrap();
        app.store.set_client_disabled(&id, false).await.unwrap();
        crate::debt_api::assert_api_error(app.get_bearer("/v1/debt", &token).await, 403, "Invalid access token").await;
    }

    async fn fifty_parallel_redemptions_of_one_code_give_exactly_one_token(app) {
        let code = code_for(&app, &[]).await;
        let attempts = (0..50).map(|_| redeem(&app, &code, &[]));
        let statuses: Vec<u16> = futures::future::join_all(attempts).await.iter().map(|r| r.status().as_u16()).collect();
        assert_eq!(statuses.iter().filter(|s| **s == 200).count(), 1, "{statuses:?}");
        assert!(statuses.iter().all(|s| *s == 200 || *s == 400), "{statuses:?}");
    }

    async fn many_redemptions_at_once_each_get_the_answer_of_their_own_code(app) {
        // Sent all at once, so that on PostgreSQL they share batched claims:
        // another client's attempt on a code does not use it up even when
        // it comes first in a batch, and each token serves its own code's
        // consent.
        let (other_id, other_secret) = app.create_client(&["--name", "Other", "--org", "923609016", "--purpose", "presentation", "--redirect-uri", "http://127.0.0.1:9999/callback"]);
        let mut codes = Vec::new();
        for _ in 0..8 {
            codes.push(code_for(&app, &[]).await);
        }
        let foreign = codes.iter().map(|code| {
            app.http.post(app.url("/oauth2/token")).basic_auth(&other_id, Some(&other_secret))
                .form(&[("grant_type", "authorization_code"), ("code", code.as_str()), ("redirect_uri", "http://127.0.0.1:9999/callback")])
                .send()
        });
        let own = codes.iter().map(|code| redeem(&app, code, &[]));
        let (foreign, own) = tokio::join!(futures::future::join_all(foreign), futures::future::join_all(own));
        for response in foreign {
            assert_oauth_error(response.unwrap(), 400, "invalid_grant").await;
        }
        let mut consents = std::collections::HashSet::new();
        for response in own {
            assert_eq!(response.status(), 200);
            let body: serde_json::Value = response.json().await.unwrap();
            let debt: serde_json::Value = app.get_bearer("/v1/debt", body["access_token"].as_str().unwrap()).await.json().await.unwrap();
            assert!(consents.insert(debt["consent"]["id"].as_str().unwrap().to_owned()), "{debt}");
        }
        assert_eq!(consents.len(), codes.len());
    }

    async fn a_code_is_bound_to_its_client_redirect_uri_and_sixty_seconds(app) {
        let code = code_for(&app, &[]).await;
        let (other_id, other_secret) = app.create_client(&["--name", "Other", "--org", "923609016", "--purpose", "presentation", "--redirect-uri", "http://127.0.0.1:9999/callback"]);
        let foreign = app.http.post(app.url("/oauth2/token")).basic_auth(&other_id, Some(&other_secret))
            .form(&[("grant_type", "authorization_code"), ("code", code.as_str()), ("redirect_uri", "http://127.0.0.1:9999/callback")])
            .send().await.unwrap();
        assert_oauth_error(foreign, 400, "invalid_grant").await;
        assert_oauth_error(redeem(&app, &code, &[("code", "not-a-code")]).await, 400, "invalid_grant").await;
        assert_oauth_error(redeem(&app, &code, &[("code", "")]).await, 400, "invalid_request").await;
        assert_oauth_error(redeem(&app, &code, &[("client_id", "someone-else")]).await, 400, "invalid_request").await;
        // Another client's attempt and malformed requests do not use the code up.
        assert_eq!(redeem(&app, &code, &[]).await.status(), 200);

        // Its own client's redemption with a wrong redirect URI does: the
        // right one afterwards is a replay.
        for wrong in ["", "http://127.0.0.1:9999/callback/"] {
            let code = code_for(&app, &[]).await;
            assert_oauth_error(redeem(&app, &code, &[("redirect_uri", wrong)]).await, 400, "invalid_grant").await;
            let body = assert_oauth_error(redeem(&app, &code, &[]).await, 400, "invalid_grant").await;
            assert_eq!(body["error_description"], "the code is invalid, expired or already used", "{body}");
        }

        let late = code_for(&app, &[]).await;
        app.clock.advance(time::Duration::seconds(61));
        assert_oauth_error(redeem(&app, &late, &[]).await, 400, "invalid_grant").await;
    }

    async fn pkce_s256_is_verified_and_a_downgrade_is_refused(app) {
        let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
        let challenge = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
        let pkce = [("code_challenge", challenge), ("code_challenge_method", "S256")];
        let code = code_for(&app, &pkce).await;
        assert_eq!(redeem(&app, &code, &[("code_verifier", verifier)]).await.status(), 200);
        // A missing, wrong or malformed verifier is refused and uses the
        // code up (RFC 7636 §4.6): the right verifier afterwards is refused.
        for wrong in [None, Some("wrong-wrong-wrong-wrong-wrong-wrong-wrong-wrong"), Some("short")] {
            let code = code_for(&app, &pkce).await;
            let attempt: Vec<(&str, &str)> = wrong.map(|w| ("code_verifier", w)).into_iter().collect();
            assert_oauth_error(redeem(&app, &code, &attempt).await, 400, "invalid_grant").await;
            assert_oauth_error(redeem(&app, &code, &[("code_verifier", verifier)]).await, 400, "invalid_grant").await;
        }

        let plain_code = code_for(&app, &[]).await;
        assert_oauth_error(redeem(&app, &plain_code, &[("code_verifier", verifier)]).await, 400, "invalid_grant").await;
    }

    async fn a_client_that_requires_pkce_cannot_start_a_flow_without_it(app) {
        let (id, _) = app.create_client(&["--name", "Strict", "--org", "923609016", "--purpose", "presentation", "--redirect-uri", "https://strict.example/cb", "--require-pkce"]);
        let url = auth_url(&app, &[("client_id", &id), ("redirect_uri", "https://strict.example/cb")]);
        let response = browser().get(&url).send().await.unwrap();
        let params = query_of(&crate::helpers::location(&response));
        assert_eq!(params["error"], "invalid_request");
        assert_eq!(params["state"], "state-123");
        let url = auth_url(&app, &[("client_id", &id), ("redirect_uri", "https://strict.example/cb"), ("code_challenge", "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"), ("code_challenge_method", "S256")]);
        let response = browser().get(&url).send().await.unwrap();
        assert!(crate::helpers::location(&response).contains("/oauth2/login"));
    }

    async fn revoking_the_consent_revokes_its_tokens_and_a_revoked_consent_cannot_be_redeemed(app) {
        let code = code_for(&app, &[]).await;
        let body: serde_json::Value = redeem(&app, &code, &[]).await.json().await.unwrap();
        let token = body["access_token"].as_str().unwrap();
        let consent_id = crate::authorization_code::payload(body["id_token"].as_str().unwrap())["consent_id"].as_str().unwrap().to_owned();
        let cc = app.sandbox_token("/v1/debt", "debt.unsecured.presentation").await;
        let deleted = app.http.delete(app.url(&format!("/v1/debt/{consent_id}"))).bearer_auth(&cc).send().await.unwrap();
        assert_eq!(deleted.status(), 204);
        crate::debt_api::assert_api_error(app.get_bearer("/v1/debt", token).await, 403, "Invalid access token").await;

        let unused = code_for(&app, &[]).await;
        // The newest event is the creation of the consent behind `unused`.
        let consent = app.store.consent_events(&app.sandbox.client_id, 0, 1000).await.unwrap().last().unwrap().consent_id;
        let deleted = app.http.delete(app.url(&format!("/v1/debt/{consent}"))).bearer_auth(&cc).send().await.unwrap();
        assert_eq!(deleted.status(), 204);
        assert_oauth_error(redeem(&app, &unused, &[]).await, 400, "invalid_grant").await;
    }
}
