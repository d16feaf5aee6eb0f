//! `POST /oauth2/token`, client credentials: the happy paths through the
//! `oauth2` crate, and every error rule with hand-built requests.

use oauth2::basic::{BasicClient, BasicErrorResponseType};
use oauth2::{ClientId, ClientSecret, RequestTokenError, Scope, TokenResponse, TokenUrl};

use crate::helpers::{assert_oauth_error, run_cli, TestApp};

const BOTH_DEBT_SCOPES: &str = "debt.unsecured.presentation debt.unsecured.processing";

async fn oauth2_token(
    app: &TestApp,
    (id, secret): (&str, &str),
    audience: &str,
    scopes: &[&str],
) -> Result<oauth2::basic::BasicTokenResponse, BasicErrorResponseType> {
    let client = BasicClient::new(ClientId::new(id.to_owned()))
        .set_client_secret(ClientSecret::new(secret.to_owned()))
        .set_token_uri(TokenUrl::new(app.url("/oauth2/token")).unwrap());
    let mut request = client
        .exchange_client_credentials()
        .add_extra_param("audience", audience.to_owned());
    for scope in scopes {
        request = request.add_scope(Scope::new((*scope).to_owned()));
    }
    match request.request_async(&app.http).await {
        Ok(token) => Ok(token),
        Err(RequestTokenError::ServerResponse(e)) => Err(e.error().clone()),
        Err(other) => panic!("unexpected oauth2 error: {other:?}"),
    }
}

async fn introspect(app: &TestApp, auth: (&str, &str), token: &str) -> serde_json::Value {
    let response = app
        .post_form("/oauth2/introspect", auth, &[("token", token)])
        .await;
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

engine_tests! {
    async fn the_sandbox_client_gets_a_token_for_every_audience_with_the_oauth2_crate(app) {
        let (id, secret) = app.sandbox_auth();
        for (path, scopes) in [
            ("/v1/debt", vec!["debt.unsecured.presentation", "debt.unsecured.processing"]),
            ("/v1/debt", vec!["debt.unsecured.processing"]),
            ("/v1/consent/agreement", vec!["consent.create"]),
            ("/feed/v1/consent", vec!["client.access.consent.events"]),
        ] {
            let audience = app.audience(path);
            let token = oauth2_token(&app, (&id, &secret), &audience, &scopes).await.unwrap();
            assert_eq!(token.expires_in(), Some(std::time::Duration::from_secs(3599)));
            assert_eq!(*token.token_type(), oauth2::basic::BasicTokenType::Bearer);
            let granted: Vec<String> = token.scopes().unwrap().iter().map(|s| s.to_string()).collect();
            assert_eq!(granted, scopes);
            let info = introspect(&app, (&id, &secret), token.access_token().secret()).await;
            assert_eq!(info["active"], true);
            assert_eq!(info["aud"], audience);
            assert_eq!(info["client_id"], id);
            assert_eq!(info["scope"], scopes.join(" "));
        }
    }

    async fn the_token_response_has_exactly_the_documented_shape(app) {
        let (id, secret) = app.sandbox_auth();
        let audience = app.audience("/v1/debt");
        let response = app
            .post_form("/oauth2/token", (&id, &secret), &[
                ("grant_type", "client_credentials"),
                ("audience", &audience),
                ("scope", BOTH_DEBT_SCOPES),
            ])
            .await;
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["cache-control"], "no-store");
        assert_eq!(response.headers()["content-type"], "application/json");
        let body: serde_json::Value = response.json().await.unwrap();
        let keys: Vec<&String> = body.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["access_token", "expires_in", "scope", "token_type"]);
        assert_eq!(body["expires_in"], 3599);
        assert_eq!(body["scope"], BOTH_DEBT_SCOPES);
        assert_eq!(body["token_type"], "bearer");
        let token = body["access_token"].as_str().unwrap();
        assert!(token.len() >= 43, "a token carries at least 256 bits");
    }

    async fn a_client_made_by_the_cli_gets_a_token_with_the_oauth2_crate(app) {
        let (id, secret) = app.create_client(&["--name", "Eksempelbank", "--org", "974760673", "--purpose", "processing"]);
        let token = oauth2_token(&app, (&id, &secret), &app.audience("/v1/debt"), &["debt.unsecured.processing"]).await.unwrap();
        assert_eq!(token.scopes().unwrap()[0].as_str(), "debt.unsecured.processing");
        // …and nothing it was not given.
        assert_eq!(
            oauth2_token(&app, (&id, &secret), &app.audience("/v1/debt"), &["debt.unsecured.presentation"]).await.unwrap_err(),
            BasicErrorResponseType::InvalidScope
        );
        assert_eq!(
            oauth2_token(&app, (&id, &secret), &app.audience("/v1/consent/agreement"), &["consent.create"]).await.unwrap_err(),
            BasicErrorResponseType::UnauthorizedClient
        );
        assert_eq!(
            oauth2_token(&app, (&id, &secret), &app.audience("/feed/v1/consent"), &["client.access.consent.events"]).await.unwrap_err(),
            BasicErrorResponseType::UnauthorizedClient
        );
    }

    async fn an_unknown_client_is_invalid_client_401(app) {
        let audience = app.audience("/v1/debt");
        let response = app
            .post_form("/oauth2/token", ("no-such-client", "whatever"), &[
                ("grant_type", "client_credentials"), ("audience", &audience), ("scope", BOTH_DEBT_SCOPES),
            ])
            .await;
        assert_oauth_error(response, 401, "invalid_client").await;
    }

    async fn a_wrong_secret_is_invalid_client_401(app) {
        let (id, _) = app.sandbox_auth();
        let audience = app.audience("/v1/debt");
        let response = app
            .post_form("/oauth2/token", (&id, "wrong-secret"), &[
                ("grant_type", "client_credentials"), ("audience", &audience), ("scope", BOTH_DEBT_SCOPES),
            ])
            .await;
        assert_oauth_error(response, 401, "invalid_client").await;
    }

    async fn a_disabled_client_is_invalid_client_until_enabled(app) {
        let (id, secret) = app.create_client(&["--name", "Bank", "--org", "974760673", "--purpose", "presentation"]);
        let audience = app.audience("/v1/debt");
        let params = [("grant_type", "client_credentials"), ("audience", audience.as_str()), ("scope", "debt.unsecured.presentation")];
        // The server now holds the client in its cache; the command's change
        // must be in force once the command has returned.
        assert_eq!(app.post_form("/oauth2/token", (&id, &secret), &params).await.status(), 200);
        assert!(run_cli(&app.database_url, &["client", "disable", &id]).status.success());
        assert_oauth_error(app.post_form("/oauth2/token", (&id, &secret), &params).await, 401, "invalid_client").await;
        assert!(run_cli(&app.database_url, &["client", "enable", &id]).status.success());
        assert_eq!(app.post_form("/oauth2/token", (&id, &secret), &params).await.status(), 200);
    }

    async fn no_credentials_or_a_malformed_authorization_header_is_invalid_client(app) {
        let audience = app.audience("/v1/debt");
        let params = [("grant_type", "client_credentials"), ("audience", audience.as_str()), ("scope", BOTH_DEBT_SCOPES)];
        let none = app.http.post(app.url("/oauth2/token")).form(&params).send().await.unwrap();
        assert_oauth_error(none, 401, "invalid_client").await;
        for header in ["Basic !!!notbase64", "Bearer abc", "Basic", "Basic bm9jb2xvbg=="] {
            let response = app.http.post(app.url("/oauth2/token"))
                .header("authorization", header).form(&params).send().await.unwrap();
            assert_oauth_error(response, 401, "invalid_client").await;
        }
    }

    async fn client_secret_post_is_not_accepted(app) {
        let (id, secret) = app.sandbox_auth();
        let audience = app.audience("/v1/debt");
        let response = app.http.post(app.url("/oauth2/token")).form(&[
            ("grant_type", "client_credentials"), ("audience", audience.as_str()), ("scope", BOTH_DEBT_SCOPES),
            ("client_id", id.as_str()), ("client_secret", secret.as_str()),
        ]).send().await.unwrap();
        assert_oauth_error(response, 400, "invalid_request").await;
    }

    async fn a_missing_or_unknown_audience_is_invalid_request(app) {
        let auth = app.sandbox_auth();
        let auth = (auth.0.as_str(), auth.1.as_str());
        let missing = app.post_form("/oauth2/token", auth, &[("grant_type", "client_credentials"), ("scope", BOTH_DEBT_SCOPES)]).await;
        assert_oauth_error(missing, 400, "invalid_request").await;
        for audience in [
            app.audience("/v1/debt/"),
            app.audience("/v1/debtx"),
            app.audience("/v2/debt"),
            "https://evil.example/v1/debt".to_owned(),
            app.base.clone(),
        ] {
            let response = app.post_form("/oauth2/token", auth, &[
                ("grant_type", "client_credentials"), ("audience", &audience), ("scope", BOTH_DEBT_SCOPES),
            ]).await;
            let body = assert_oauth_error(response, 400, "invalid_request").await;
            let accepted = ["/v1/debt", "/v1/consent/agreement", "/feed/v1/consent"].map(|p| app.audience(p)).join(", ");
            assert_eq!(body["error_description"], format!("unknown audience; accepted: {accepted}"));
        }
    }

    async fn a_scope_that_does_not_belong_to_the_audience_is_invalid_scope(app) {
        let auth = app.sandbox_auth();
        let auth = (auth.0.as_str(), auth.1.as_str());
        for (path, scope) in [
            ("/v1/debt", "consent.create"),
            ("/v1/debt", "debt.unsecured.presentation consent.create"),
            ("/v1/consent/agreement", "debt.unsecured.presentation"),
            ("/feed/v1/consent", "consent.create"),
            ("/v1/debt", "debt.unsecured.presentation.100"),
            ("/v1/debt", "openid"),
            ("/v1/debt", "DEBT.UNSECURED.PRESENTATION"),
        ] {
            let audience = app.audience(path);
            let response = app.post_form("/oauth2/token", auth, &[
                ("grant_type", "client_credentials"), ("audience", &audience), ("scope", scope),
            ]).await;
            assert_oauth_error(response, 400, "invalid_scope").await;
        }
    }

    async fn an_empty_or_missing_scope_is_invalid_scope(app) {
        let auth = app.sandbox_auth();
        let auth = (auth.0.as_str(), auth.1.as_str());
        let audience = app.audience("/v1/debt");
        for params in [
            vec![("grant_type", "client_credentials"), ("audience", audience.as_str())],
            vec![("grant_type", "client_credentials"), ("audience", audience.as_str()), ("scope", "")],
            vec![("grant_type", "client_credentials"), ("audience", audience.as_str()), ("scope", "   ")],
        ] {
            assert_oauth_error(app.post_form("/oauth2/token", auth, &params).await, 400, "invalid_scope").await;
        }
    }

    async fn an_unsupported_or_missing_grant_type_is_refused(app) {
        let auth = app.sandbox_auth();
        let auth = (auth.0.as_str(), auth.1.as_str());
        for grant in ["password", "refresh_token", "implicit", "urn:ietf:params:oauth:grant-type:jwt-bearer"] {
            let response = app.post_form("/oauth2/token", auth, &[("grant_type", grant)]).await;
            assert_oauth_error(response, 400, "unsupported_grant_type").await;
        }
        let missing = app.post_form("/oauth2/token", auth, &[("scope", "consent.create")]).await;
        assert_oauth_error(missing, 400, "invalid_request").await;
    }

    async fn a_repeated_parameter_is_invalid_request(app) {
        let auth = app.sandbox_auth();
        let auth = (auth.0.as_str(), auth.1.as_str());
        let audience = app.audience("/v1/debt");
        for params in [
            vec![("grant_type", "client_credentials"), ("grant_type", "client_credentials"), ("audience", audience.as_str()), ("scope", BOTH_DEBT_SCOPES)],
            vec![("grant_type", "client_credentials"), ("audience", audience.as_str()), ("audience", audience.as_str()), ("scope", BOTH_DEBT_SCOPES)],
            vec![("grant_type", "client_credentials"), ("audience", audience.as_str()), ("scope", "debt.unsecured.presentation"), ("scope", "debt.unsecured.processing")],
        ] {
            let body = assert_oauth_error(app.post_form("/oauth2/token", auth, &params).await, 400, "invalid_request").await;
            assert!(body["error_description"].as_str().unwrap().contains("repeated"), "{body}");
        }
    }

    async fn a_body_that_is_not_form_encoded_is_invalid_request(app) {
        let (id, secret) = app.sandbox_auth();
        let audience = app.audience("/v1/debt");
        let json = serde_json::json!({"grant_type": "client_credentials", "audience": audience, "scope": BOTH_DEBT_SCOPES});
        let as_json = app.http.post(app.url("/oauth2/token")).basic_auth(&id, Some(&secret)).json(&json).send().await.unwrap();
        assert_oauth_error(as_json, 400, "invalid_request").await;
        let no_type = app.http.post(app.url("/oauth2/token")).basic_auth(&id, Some(&secret))
            .body(format!("grant_type=client_credentials&audience={audience}")).send().await.unwrap();
        assert_oauth_error(no_type, 400, "invalid_request").await;
        let bad_utf8 = app.http.post(app.url("/oauth2/token")).basic_auth(&id, Some(&secret))
            .header("content-type", "application/x-www-form-urlencoded").body(vec![0xff, 0xfe, b'=']).send().await.unwrap();
        assert_oauth_error(bad_utf8, 400, "invalid_request").await;
    }

    async fn an_oversized_body_is_refused_with_a_json_error(app) {
        let (id, secret) = app.sandbox_auth();
        let huge = "a".repeat(100 * 1024);
        let response = app.post_form("/oauth2/token", (&id, &secret), &[("grant_type", "client_credentials"), ("scope", &huge)]).await;
        assert_eq!(response.status(), 413);
        let body: serde_json::Value = response.json().await.unwrap();
        assert_eq!(body["error"], "invalid_request");
    }

    async fn unknown_parameters_are_ignored(app) {
        let auth = app.sandbox_auth();
        let audience = app.audience("/v1/debt");
        let response = app.post_form("/oauth2/token", (&auth.0, &auth.1), &[
            ("grant_type", "client_credentials"), ("audience", &audience), ("scope", BOTH_DEBT_SCOPES), ("resource", "x"), ("foo", "bar"),
        ]).await;
        assert_eq!(response.status(), 200);
    }

    async fn the_token_endpoint_only_accepts_post(app) {
        let response = app.http.get(app.url("/oauth2/token")).send().await.unwrap();
        assert_eq!(response.status(), 405);
    }

    async fn a_rotated_secret_replaces_the_old_one(app) {
        let (id, old) = app.create_client(&["--name", "Bank", "--org", "974760673", "--purpose", "presentation"]);
        let audience = app.audience("/v1/debt");
        let params = [("grant_type", "client_credentials"), ("audience", audience.as_str()), ("scope", "debt.unsecured.presentation")];
        // Cached with the old secret; the rotation must be in force once the
        // command has returned.
        assert_eq!(app.post_form("/oauth2/token", (&id, &old), &params).await.status(), 200);
        let output = run_cli(&app.database_url, &["client", "rotate-secret", &id, "--json"]);
        assert!(output.status.success());
        let rotated: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
        let new = rotated["client_secret"].as_str().unwrap();
        assert_ne!(new, old);
        assert_oauth_error(app.post_form("/oauth2/token", (&id, &old), &params).await, 401, "invalid_client").await;
        assert_eq!(app.post_form("/oauth2/token", (&id, new), &params).await.status(), 200);
    }

    async fn tokens_and_client_secrets_are_stored_only_as_hashes(app) {
        let (id, secret) = app.create_client(&["--name", "Bank", "--org", "974760673", "--purpose", "presentation"]);
        let audience = app.audience("/v1/debt");
        let response = app.post_form("/oauth2/token", (&id, &secret), &[
            ("grant_type", "client_credentials"), ("audience", &audience), ("scope", "debt.unsecured.presentation"),
        ]).await;
        let body: serde_json::Value = response.json().await.unwrap();
        let token = body["access_token"].as_str().unwrap();
        let dump = dump_database(&app.database_url).await;
        assert!(dump.contains(&id), "the dump sees the client table");
        assert!(!dump.contains(token), "the token is stored in clear text");
        assert!(!dump.contains(&secret), "the client secret is stored in clear text");
    }
}

/// The clients and access-token tables, every column as text (blobs raw).
async fn dump_database(url: &str) -> String {
    use sqlx::Row;
    const SQL: [&str; 2] = [
        "SELECT id AS a, secret_hash AS b, name AS c FROM clients",
        "SELECT client_id AS a, hash AS b, scopes AS c FROM access_tokens",
    ];
    let mut dump = String::new();
    for sql in SQL {
        let rows: Vec<(String, Vec<u8>, String)> = if url.starts_with("sqlite:") {
            let pool = sqlx::SqlitePool::connect(url).await.unwrap();
            sqlx::query(sql)
                .fetch_all(&pool)
                .await
                .unwrap()
                .iter()
                .map(|r| (r.get("a"), r.get("b"), r.get("c")))
                .collect()
        } else {
            let pool = sqlx::PgPool::connect(url).await.unwrap();
            sqlx::query(sql)
                .fetch_all(&pool)
                .await
                .unwrap()
                .iter()
                .map(|r| (r.get("a"), r.get("b"), r.get("c")))
                .collect()
        };
        for (a, b, c) in rows {
            dump.push_str(&format!("{a} {} {c}\n", String::from_utf8_lossy(&b)));
        }
    }
    dump
}
