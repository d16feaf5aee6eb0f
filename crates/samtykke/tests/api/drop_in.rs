//! Drop-in compatibility with the published contract (issue 19): requests
//! shaped exactly as the published example scripts and documents send them,
//! and the answers a bank's code written from those documents expects.

use serde_json::{json, Value};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::helpers::{
    auth_url, browser, free_loopback_addr, query_of, redeem, run_flow, serve_config,
    spawn_app_configured, Engine, TestApp,
};

const PERSON: &str = "14842249091";
const AGREEMENT: &str = "/v1/consent/agreement";

/// The token request of the published `create-agreementbased.py`: HTTP
/// Basic with the client's id and secret, a form body.
async fn script_token(app: &TestApp, audience_path: &str, scope: &str) -> reqwest::Response {
    let (id, secret) = app.sandbox_auth();
    app.http
        .post(app.url("/oauth2/token"))
        .basic_auth(id, Some(secret))
        .form(&[
            ("grant_type", "client_credentials"),
            ("audience", &app.audience(audience_path)),
            ("scope", scope),
        ])
        .send()
        .await
        .unwrap()
}

/// A PUT of a raw JSON text, as a script's `json.dumps` would send it.
async fn put_raw(app: &TestApp, token: &str, body: &str) -> reqwest::Response {
    app.http
        .put(app.url(AGREEMENT))
        .bearer_auth(token)
        .header("Content-Type", "application/json")
        .body(body.to_owned())
        .send()
        .await
        .unwrap()
}

async fn agreement_token(app: &TestApp) -> String {
    app.sandbox_token(AGREEMENT, "consent.create").await
}

fn expiry(body: &Value) -> i64 {
    OffsetDateTime::parse(body["consent"]["expires_at"].as_str().unwrap(), &Rfc3339)
        .unwrap()
        .unix_timestamp()
}

async fn spring_message(response: reqwest::Response, status: u16) -> String {
    assert_eq!(response.status(), status);
    let body: Value = response.json().await.unwrap();
    crate::schema::assert_conforms(&body, "SpringErrorSchema");
    assert_eq!(body["status"], status, "{body}");
    assert_eq!(body["path"], AGREEMENT);
    body["message"].as_str().unwrap().to_owned()
}

engine_tests! {
    async fn the_published_example_script_registers_a_consent_with_a_numeric_string(app) {
        // Exactly the script's steps: a consent.create token, then a PUT
        // whose consent_duration_days is the string "100".
        let token = script_token(&app, AGREEMENT, "consent.create").await;
        assert_eq!(token.status(), 200);
        let token: Value = token.json().await.unwrap();
        let token = token["access_token"].as_str().unwrap();
        let ccid = uuid::Uuid::new_v4().to_string();
        let body = format!(
            r#"{{"nin": "{PERSON}", "scope_of_consent": "debt.unsecured.presentation", "consent_duration_days": "100", "client_consent_id": "{ccid}"}}"#
        );
        let response = put_raw(&app, token, &body).await;
        assert_eq!(response.status(), 200);
        let registered: Value = response.json().await.unwrap();
        crate::schema::assert_conforms(&registered, "CreateConsentResponseDTO");
        assert_eq!(registered["client_consent_id"], ccid.as_str());
        assert_eq!(expiry(&registered), app.clock_now() + 100 * 86400);
        // The same request again is the same consent (the string and the
        // number are one value).
        let again: Value = put_raw(&app, token, &body).await.json().await.unwrap();
        assert_eq!(again["consent"]["id"], registered["consent"]["id"]);
        let as_number = body.replace(r#""100""#, "100");
        let same: Value = put_raw(&app, token, &as_number).await.json().await.unwrap();
        assert_eq!(same["consent"]["id"], registered["consent"]["id"]);
    }

    async fn a_numeric_field_that_is_not_a_whole_number_is_a_clear_400(app) {
        let token = agreement_token(&app).await;
        for (i, value) in [
            r#""1e2""#, r#""12abc""#, r#"" 12""#, r#""12 ""#, r#""+12""#, r#""12.5""#, r#""""#, r#""-""#,
            "12.5", "1e2", "1.0", "true", "[12]", r#"{"days": 12}"#,
        ].iter().enumerate() {
            let body = format!(r#"{{"nin": "{PERSON}", "scope_of_consent": "debt.unsecured.presentation", "consent_duration_days": {value}, "client_consent_id": "bad-{i}"}}"#);
            let message = spring_message(put_raw(&app, &token, &body).await, 400).await;
            assert_eq!(message, r#"consent_duration_days must be a whole number: a JSON number such as 100, or a string of digits such as "100""#, "{value}");
        }
        for (i, value) in [r#""2147483648""#, "2147483648", r#""99999999999999999999""#, "99999999999999999999"].iter().enumerate() {
            let body = format!(r#"{{"nin": "{PERSON}", "scope_of_consent": "debt.unsecured.presentation", "consent_duration_days": {value}, "client_consent_id": "big-{i}"}}"#);
            let message = spring_message(put_raw(&app, &token, &body).await, 400).await;
            assert_eq!(message, "consent_duration_days is too large", "{value}");
        }
        for (i, value) in [r#""-5""#, "-5", r#""0""#, "0"].iter().enumerate() {
            let body = format!(r#"{{"nin": "{PERSON}", "scope_of_consent": "debt.unsecured.presentation", "consent_duration_days": {value}, "client_consent_id": "neg-{i}"}}"#);
            let message = spring_message(put_raw(&app, &token, &body).await, 400).await;
            assert_eq!(message, "consent_duration_days must be a positive number of days", "{value}");
        }
        let body = format!(r#"{{"nin": "{PERSON}", "scope_of_consent": "debt.unsecured.presentation", "consent_duration_days": "-2147483649", "client_consent_id": "small"}}"#);
        assert_eq!(spring_message(put_raw(&app, &token, &body).await, 400).await, "consent_duration_days is too small");
        // Nothing was registered by any of them.
        let feed = app.sandbox_token("/feed/v1/consent", "client.access.consent.events").await;
        let page: Value = app.get_bearer("/feed/v1/consent?fromSequenceNr=0&limit=100", &feed).await.json().await.unwrap();
        assert_eq!(page["result"], json!([]));
    }

    async fn the_older_name_our_consent_id_is_echoed_under_the_name_it_was_sent_with(app) {
        let token = agreement_token(&app).await;
        let legacy = format!(r#"{{"nin": "{PERSON}", "scope_of_consent": "debt.unsecured.processing", "consent_duration_days": "10", "our_consent_id": "legacy-7"}}"#);
        let response = put_raw(&app, &token, &legacy).await;
        assert_eq!(response.status(), 200);
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["our_consent_id"], "legacy-7", "{body}");
        assert_eq!(body["client_consent_id"], "legacy-7", "the published schema requires it: {body}");
        // Beside the deprecated echo, the published schema holds.
        let mut current_shape = body.clone();
        current_shape.as_object_mut().unwrap().remove("our_consent_id");
        crate::schema::assert_conforms(&current_shape, "CreateConsentResponseDTO");
        // Under the new name, the same consent, and no older name echoed.
        let current = legacy.replace("our_consent_id", "client_consent_id");
        let body2: Value = put_raw(&app, &token, &current).await.json().await.unwrap();
        assert_eq!(body2["consent"]["id"], body["consent"]["id"]);
        assert!(body2.get("our_consent_id").is_none(), "{body2}");
    }

    async fn a_post_to_the_agreement_endpoint_is_405_with_allow_put(app) {
        let token = agreement_token(&app).await;
        for method in [reqwest::Method::POST, reqwest::Method::GET, reqwest::Method::DELETE, reqwest::Method::PATCH] {
            let response = app.http.request(method.clone(), app.url(AGREEMENT))
                .bearer_auth(&token)
                .json(&json!({"nin": PERSON, "scope_of_consent": "debt.unsecured.presentation", "consent_duration_days": 10, "client_consent_id": "post-1"}))
                .send().await.unwrap();
            assert_eq!(response.headers().get("allow").map(|v| v.to_str().unwrap()), Some("PUT"), "{method}");
            let message = spring_message(response, 405).await;
            assert!(message.contains("PUT"), "{method}: {message}");
        }
        // And nothing was registered.
        let again = app.register(json!({"nin": PERSON, "scope_of_consent": "debt.unsecured.presentation", "consent_duration_days": 20, "client_consent_id": "post-1"})).await;
        assert_eq!(again.status(), 200, "post-1 was never registered with other data");
    }

    async fn the_feed_scope_s_older_name_gets_a_working_feed_token(app) {
        let response = script_token(&app, "/feed/v1/consent", "consent.events").await;
        assert_eq!(response.status(), 200);
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["scope"], "consent.events", "answered by the name asked for: {body}");
        let token = body["access_token"].as_str().unwrap();
        app.agreement_consent(PERSON, "debt.unsecured.presentation", 30).await;
        let page = app.get_bearer("/feed/v1/consent?fromSequenceNr=0&limit=10", token).await;
        assert_eq!(page.status(), 200);
        let page: Value = page.json().await.unwrap();
        assert_eq!(page["result"].as_array().unwrap().len(), 1, "{page}");
        // Introspection names the scope by its current name.
        let (id, secret) = app.sandbox_auth();
        let info: Value = app.post_form("/oauth2/introspect", (&id, &secret), &[("token", token)]).await.json().await.unwrap();
        assert_eq!(info["scope"], "client.access.consent.events");
        // The older name is no scope of the other audiences, and discovery
        // lists only the current names.
        let wrong = script_token(&app, "/v1/debt", "consent.events").await;
        crate::helpers::assert_oauth_error(wrong, 400, "invalid_scope").await;
        let discovery = crate::discovery::get_json(&app, "/.well-known/openid-configuration").await;
        let scopes = discovery["scopes_supported"].as_array().unwrap();
        assert!(scopes.contains(&json!("client.access.consent.events")));
        assert!(!scopes.contains(&json!("consent.events")));
    }

    async fn expires_in_is_3599_for_both_grants_and_a_single_use_token_ends_with_its_consent(app) {
        let cc: Value = script_token(&app, "/v1/debt", "debt.unsecured.presentation").await.json().await.unwrap();
        assert_eq!(cc["expires_in"], 3599, "{cc}");
        // A duration consent outlives the hour: the token has its full hour.
        let done = run_flow(&app, &browser(), &auth_url(&app, &[("scope", "debt.unsecured.presentation.30")]), PERSON, "accept").await;
        let code = query_of(&done)["code"].clone();
        let body: Value = redeem(&app, &code, &[]).await.json().await.unwrap();
        assert_eq!(body["expires_in"], 3599, "{body}");
        // A single-use consent lasts 10 minutes from the consent page; its
        // code redeemed 30 s later has 570 s left, so 569.
        let done = run_flow(&app, &browser(), &auth_url(&app, &[("scope", "debt.unsecured.presentation")]), PERSON, "accept").await;
        let code = query_of(&done)["code"].clone();
        app.clock.advance(time::Duration::seconds(30));
        let body: Value = redeem(&app, &code, &[]).await.json().await.unwrap();
        assert_eq!(body["expires_in"], 569, "{body}");
        let (id, secret) = app.sandbox_auth();
        let info: Value = app.post_form("/oauth2/introspect", (&id, &secret), &[("token", body["access_token"].as_str().unwrap())]).await.json().await.unwrap();
        let exp = info["exp"].as_i64().unwrap();
        assert!(exp <= app.clock_now() + 570 && exp >= app.clock_now() + 569, "the token ends with its consent: {info}");
    }

    async fn an_empty_feed_page_never_reports_a_bound_below_1_and_polling_on_skips_nothing(app) {
        let token = app.sandbox_token("/feed/v1/consent", "client.access.consent.events").await;
        let empty: Value = app.get_bearer("/feed/v1/consent?fromSequenceNr=0&limit=10", &token).await.json().await.unwrap();
        crate::schema::assert_conforms(&empty, "SamtykkeFeedResponseDTO");
        assert_eq!((empty["startSequenceNr"].as_i64(), empty["endSequenceNr"].as_i64()), (Some(1), Some(1)));
        // The next poll, from endSequenceNr + 1, sees the first event.
        let id = app.agreement_consent(PERSON, "debt.unsecured.presentation", 30).await;
        let next = empty["endSequenceNr"].as_i64().unwrap() + 1;
        let page: Value = app.get_bearer(&format!("/feed/v1/consent?fromSequenceNr={next}&limit=10"), &token).await.json().await.unwrap();
        crate::schema::assert_conforms(&page, "SamtykkeFeedResponseDTO");
        assert_eq!(page["result"][0]["consentId"], id.as_str(), "{page}");
        assert!(page["result"][0]["sequenceNr"].as_i64().unwrap() >= 2);
        // Past the end: the page ends just before where it starts.
        let after = page["endSequenceNr"].as_i64().unwrap() + 1;
        let past: Value = app.get_bearer(&format!("/feed/v1/consent?fromSequenceNr={after}&limit=10"), &token).await.json().await.unwrap();
        crate::schema::assert_conforms(&past, "SamtykkeFeedResponseDTO");
        assert_eq!(past["endSequenceNr"].as_i64(), Some(after - 1));
    }
}

mod an_issuer_with_a_trailing_slash_is_kept_byte_for_byte {
    use super::*;

    #[tokio::test]
    async fn sqlite() {
        issuer_with_trailing_slash(Engine::Sqlite).await;
    }

    #[tokio::test]
    async fn postgres() {
        issuer_with_trailing_slash(Engine::Postgres).await;
    }
}

/// A server whose issuer is configured with a trailing slash, as the real
/// service's is.
async fn issuer_with_trailing_slash(engine: Engine) {
    let Some(url) = crate::helpers::fresh_database_url(engine).await else {
        return;
    };
    let addr = free_loopback_addr();
    let issuer = format!("http://{addr}/");
    let mut config = serve_config(&url, samtykke::config::SandboxSetting::On);
    config.listen = addr;
    config.issuer = Some(issuer.clone());
    let app = spawn_app_configured(&url, config).await;
    let base = issuer.trim_end_matches('/');

    for path in [
        "/.well-known/openid-configuration",
        "/.well-known/oauth-authorization-server",
    ] {
        let doc = crate::discovery::get_json(&app, path).await;
        assert_eq!(doc["issuer"], issuer.as_str(), "{path}");
        for (key, value) in doc.as_object().unwrap() {
            if let Some(url) = value.as_str().filter(|v| v.starts_with("http")) {
                if key != "issuer" {
                    assert!(
                        url.starts_with(&format!("{base}/")) && !url[7..].contains("//"),
                        "{key}: {url}"
                    );
                }
            }
        }
        assert_eq!(doc["token_endpoint"], format!("{base}/oauth2/token"));
    }

    // An OpenID Connect library that compares the issuer exactly.
    let http = openidconnect::reqwest::ClientBuilder::new()
        .redirect(openidconnect::reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    openidconnect::core::CoreProviderMetadata::discover_async(
        openidconnect::IssuerUrl::new(issuer.clone()).unwrap(),
        &http,
    )
    .await
    .expect("discovery with the issuer as configured");

    // The authorization response's iss, the ID token's iss, introspection.
    let done = run_flow(&app, &browser(), &auth_url(&app, &[]), PERSON, "accept").await;
    let params = query_of(&done);
    assert_eq!(params["iss"], issuer, "{done}");
    let body: Value = redeem(&app, &params["code"], &[])
        .await
        .json()
        .await
        .unwrap();
    let id_token = body["id_token"].as_str().unwrap();
    let claims = {
        use base64::Engine as _;
        let part = id_token.split('.').nth(1).unwrap();
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(part)
            .unwrap();
        serde_json::from_slice::<Value>(&bytes).unwrap()
    };
    assert_eq!(claims["iss"], issuer.as_str());
    let (id, secret) = app.sandbox_auth();
    let info: Value = app
        .post_form(
            "/oauth2/introspect",
            (&id, &secret),
            &[("token", body["access_token"].as_str().unwrap())],
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(info["iss"], issuer.as_str());
    // The audiences (from the issuer when no API URL is set) have one slash.
    let cc: Value = app
        .post_form(
            "/oauth2/token",
            (&id, &secret),
            &[
                ("grant_type", "client_credentials"),
                ("audience", &format!("{base}/v1/debt")),
                ("scope", "debt.unsecured.presentation"),
            ],
        )
        .await
        .json()
        .await
        .unwrap();
    assert!(cc["access_token"].is_string(), "{cc}");
    // The pages' own links and form targets have no double slash.
    let b = browser();
    let start = b.get(auth_url(&app, &[])).send().await.unwrap();
    let login = crate::helpers::location(&start);
    assert!(
        login.starts_with(&format!("{base}/oauth2/login?")),
        "{login}"
    );
    let page = b.get(&login).send().await.unwrap().text().await.unwrap();
    assert!(page.contains(&format!("{base}/oauth2/login")), "{page}");
    assert!(
        !page.contains(&format!("{base}//")),
        "a double slash in the page"
    );
}
