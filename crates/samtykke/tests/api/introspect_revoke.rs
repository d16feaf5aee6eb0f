//! `POST /oauth2/introspect` (RFC 7662) and `POST /oauth2/revoke` (RFC 7009).

use crate::helpers::{assert_oauth_error, TestApp};

async fn introspect(app: &TestApp, auth: (&str, &str), token: &str) -> serde_json::Value {
    let response = app
        .post_form("/oauth2/introspect", auth, &[("token", token)])
        .await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["cache-control"], "no-store");
    response.json().await.unwrap()
}

fn inactive() -> serde_json::Value {
    serde_json::json!({"active": false})
}

engine_tests! {
    async fn introspection_describes_an_active_token(app) {
        let token = app.sandbox_token("/v1/consent/agreement", "consent.create").await;
        let (id, secret) = app.sandbox_auth();
        let info = introspect(&app, (&id, &secret), &token).await;
        let now = app.clock_now();
        assert_eq!(info["active"], true);
        assert_eq!(info["scope"], "consent.create");
        assert_eq!(info["client_id"], id);
        assert_eq!(info["sub"], id);
        assert_eq!(info["token_type"], "bearer");
        assert_eq!(info["aud"], app.audience("/v1/consent/agreement"));
        assert_eq!(info["iss"], app.base);
        assert_eq!(info["iat"], now);
        assert_eq!(info["exp"], now + 3600);
    }

    async fn introspection_says_inactive_for_unknown_expired_revoked_and_foreign_tokens(app) {
        let (id, secret) = app.sandbox_auth();
        let auth = (id.as_str(), secret.as_str());
        assert_eq!(introspect(&app, auth, "no-such-token").await, inactive());

        let other = app.create_client(&["--name", "Other", "--org", "974760673", "--purpose", "presentation"]);
        let token = app.sandbox_token("/v1/debt", "debt.unsecured.presentation").await;
        assert_eq!(introspect(&app, (&other.0, &other.1), &token).await, inactive(), "another client's token");

        assert_eq!(app.post_form("/oauth2/revoke", auth, &[("token", &token)]).await.status(), 200);
        assert_eq!(introspect(&app, auth, &token).await, inactive(), "revoked");

        let token = app.sandbox_token("/v1/debt", "debt.unsecured.presentation").await;
        app.clock.advance(time::Duration::seconds(3599));
        assert_eq!(introspect(&app, auth, &token).await["active"], true, "one second before expiry");
        app.clock.advance(time::Duration::seconds(1));
        assert_eq!(introspect(&app, auth, &token).await, inactive(), "expired");
    }

    async fn introspection_requires_client_authentication_and_a_token(app) {
        let token = app.sandbox_token("/v1/debt", "debt.unsecured.presentation").await;
        let anonymous = app.http.post(app.url("/oauth2/introspect")).form(&[("token", token.as_str())]).send().await.unwrap();
        assert_oauth_error(anonymous, 401, "invalid_client").await;
        let wrong = app.post_form("/oauth2/introspect", (&app.sandbox.client_id.to_string(), "bad"), &[("token", &token)]).await;
        assert_oauth_error(wrong, 401, "invalid_client").await;
        let (id, secret) = app.sandbox_auth();
        let missing = app.post_form("/oauth2/introspect", (&id, &secret), &[]).await;
        assert_oauth_error(missing, 400, "invalid_request").await;
    }

    async fn revocation_is_idempotent_and_unknown_tokens_answer_200(app) {
        let (id, secret) = app.sandbox_auth();
        let auth = (id.as_str(), secret.as_str());
        let token = app.sandbox_token("/feed/v1/consent", "client.access.consent.events").await;
        for _ in 0..2 {
            let response = app.post_form("/oauth2/revoke", auth, &[("token", &token), ("token_type_hint", "access_token")]).await;
            assert_eq!(response.status(), 200);
            assert_eq!(response.headers()["cache-control"], "no-store");
        }
        assert_eq!(introspect(&app, auth, &token).await, inactive());
        assert_eq!(app.post_form("/oauth2/revoke", auth, &[("token", "never-issued")]).await.status(), 200);
    }

    async fn a_client_cannot_revoke_another_clients_token(app) {
        let (id, secret) = app.sandbox_auth();
        let token = app.sandbox_token("/v1/debt", "debt.unsecured.presentation").await;
        let other = app.create_client(&["--name", "Other", "--org", "974760673", "--purpose", "presentation"]);
        let response = app.post_form("/oauth2/revoke", (&other.0, &other.1), &[("token", &token)]).await;
        assert_oauth_error(response, 400, "unauthorized_client").await;
        assert_eq!(introspect(&app, (&id, &secret), &token).await["active"], true, "still active");
    }

    async fn revocation_requires_client_authentication_and_a_token(app) {
        let token = app.sandbox_token("/v1/debt", "debt.unsecured.presentation").await;
        let anonymous = app.http.post(app.url("/oauth2/revoke")).form(&[("token", token.as_str())]).send().await.unwrap();
        assert_oauth_error(anonymous, 401, "invalid_client").await;
        let (id, secret) = app.sandbox_auth();
        assert_oauth_error(app.post_form("/oauth2/revoke", (&id, &secret), &[]).await, 400, "invalid_request").await;
        assert_oauth_error(
            app.post_form("/oauth2/revoke", (&id, &secret), &[("token", &token), ("token", &token)]).await,
            400,
            "invalid_request",
        ).await;
        assert_eq!(introspect(&app, (&id, &secret), &token).await["active"], true);
    }

    async fn deleting_a_client_removes_its_tokens(app) {
        let (id, secret) = app.create_client(&["--name", "Gone", "--org", "974760673", "--events"]);
        let audience = app.audience("/feed/v1/consent");
        let body: serde_json::Value = app.post_form("/oauth2/token", (&id, &secret), &[
            ("grant_type", "client_credentials"), ("audience", &audience), ("scope", "client.access.consent.events"),
        ]).await.json().await.unwrap();
        let token = body["access_token"].as_str().unwrap();
        let feed = || app.http.get(app.url("/feed/v1/consent?fromSequenceNr=1&limit=10")).bearer_auth(token).send();
        assert_eq!(feed().await.unwrap().status(), 200);
        assert!(crate::helpers::run_cli(&app.database_url, &["client", "delete", &id]).status.success());
        assert_eq!(feed().await.unwrap().status(), 403, "the deleted client's token no longer counts");
        let again = app.post_form("/oauth2/token", (&id, &secret), &[
            ("grant_type", "client_credentials"), ("audience", &audience), ("scope", "client.access.consent.events"),
        ]).await;
        assert_oauth_error(again, 401, "invalid_client").await;
    }

    async fn disabling_a_client_ends_its_tokens_and_enabling_does_not_revive_them(app) {
        let (id, secret) = app.create_client(&["--name", "Paused", "--org", "974760673", "--events"]);
        let audience = app.audience("/feed/v1/consent");
        let params = [("grant_type", "client_credentials"), ("audience", audience.as_str()), ("scope", "client.access.consent.events")];
        let issue = || async {
            let body: serde_json::Value = app.post_form("/oauth2/token", (&id, &secret), &params).await.json().await.unwrap();
            body["access_token"].as_str().unwrap().to_owned()
        };
        let old = issue().await;
        let app = &app;
        let feed = |token: String| async move { app.http.get(app.url("/feed/v1/consent?fromSequenceNr=1&limit=10")).bearer_auth(token).send().await.unwrap().status() };
        assert_eq!(feed(old.clone()).await, 200);
        assert!(crate::helpers::run_cli(&app.database_url, &["client", "disable", &id]).status.success());
        assert_eq!(feed(old.clone()).await, 403);
        assert!(crate::helpers::run_cli(&app.database_url, &["client", "enable", &id]).status.success());
        assert_eq!(feed(old.clone()).await, 403, "a token from before the disable stays dead");
        assert_eq!(introspect(app, (&id, &secret), &old).await, inactive());
        let new = issue().await;
        assert_eq!(feed(new.clone()).await, 200);
        assert_eq!(introspect(app, (&id, &secret), &new).await["active"], true);
    }

    async fn a_forged_or_truncated_sealed_token_is_refused(app) {
        let token = app.sandbox_token("/v1/debt", "debt.unsecured.presentation").await;
        assert!(token.starts_with("sc2."), "client-credentials tokens are sealed: {token}");
        use base64::Engine;
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let mut bytes = b64.decode(&token[4..]).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        let tampered = format!("sc2.{}", b64.encode(&bytes));
        // Claims of the earlier format under a MAC of no server key.
        let claims = serde_json::json!({"c": app.sandbox.client_id.to_string(), "a": "debt", "s": "debt.unsecured.presentation debt.unsecured.processing", "iat": app.clock_now(), "exp": app.clock_now() + 86_400, "g": 0, "j": "x"});
        let forged = format!("sc1.{}.{}", b64.encode(serde_json::to_vec(&claims).unwrap()), b64.encode([0u8; 32]));
        let (id, secret) = app.sandbox_auth();
        for bad in [tampered, forged, token[..token.len() - 2].to_owned(), format!("{token}AA"), token[4..].to_owned()] {
            let r = app.http.get(app.url("/v1/debt")).bearer_auth(&bad).send().await.unwrap();
            crate::debt_api::assert_api_error(r, 403, "Invalid access token").await;
            assert_eq!(introspect(&app, (&id, &secret), &bad).await, inactive(), "{bad}");
        }
        assert_eq!(introspect(&app, (&id, &secret), &token).await["active"], true);
    }
}
