//! `PUT /v1/consent/agreement` and the integrated-consent journey.

use serde_json::{json, Value};

use crate::helpers::TestApp;

const PERSON: &str = "14842249091";

fn body(ccid: &str) -> Value {
    json!({"nin": PERSON, "scope_of_consent": "debt.unsecured.presentation", "consent_duration_days": 30, "client_consent_id": ccid})
}

/// Asserts the OpenAPI `SpringErrorSchema` shape.
async fn assert_spring_error(
    response: reqwest::Response,
    status: u16,
    message_part: &str,
) -> Value {
    assert_eq!(response.status(), status);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["status"], status, "{body}");
    assert_eq!(body["path"], "/v1/consent/agreement");
    assert!(body["timestamp"].as_str().unwrap().ends_with('Z'));
    assert!(body["error"].as_str().is_some_and(|e| !e.is_empty()));
    assert!(body["requestId"].as_str().is_some_and(|e| !e.is_empty()));
    let message = body["message"].as_str().unwrap();
    assert!(
        message.contains(message_part),
        "{message:?} lacks {message_part:?}"
    );
    body
}

async fn put_with(app: &TestApp, token: &str, body: &Value) -> reqwest::Response {
    app.http
        .put(app.url("/v1/consent/agreement"))
        .bearer_auth(token)
        .json(body)
        .send()
        .await
        .unwrap()
}

engine_tests! {
    async fn the_integrated_consent_journey_works_end_to_end(app) {
        // 1–2: register.
        let response = app.register(body("my-id-001")).await;
        assert_eq!(response.status(), 200);
        let registered: Value = response.json().await.unwrap();
        assert_eq!(registered["client_consent_id"], "my-id-001");
        assert_eq!(registered["consent"]["scope_of_consent"], "debt.unsecured.presentation");
        let id = registered["consent"]["id"].as_str().unwrap().to_owned();
        let expires = time::OffsetDateTime::parse(registered["consent"]["expires_at"].as_str().unwrap(), &time::format_description::well_known::Rfc3339).unwrap();
        assert_eq!(expires.unix_timestamp(), app.clock_now() + 30 * 86400);

        // 3–4: debt.
        let token = app.sandbox_token("/v1/debt", "debt.unsecured.presentation").await;
        let response = app.get_bearer(&format!("/v1/debt/{id}"), &token).await;
        assert_eq!(response.status(), 200);
        let debt: Value = response.json().await.unwrap();
        assert_eq!(debt["ssn"], PERSON);
        let loans = debt["loans"].as_array().unwrap();
        assert!(loans.len() >= 3, "{debt}");
        assert!(loans.iter().all(|l| l["creditorName"].as_str().is_some_and(|n| !n.is_empty()) && l["loan"]["type"].is_string()));
        assert!(debt["numberOfCreditorsAnswered"].as_u64().unwrap() >= 2);
        assert_eq!(debt["numberOfcreditorsMissing"], 0);
        assert_eq!(debt["consent"], json!({"id": id, "exp": expires.unix_timestamp(), "scope": "debt.unsecured.presentation"}));

        // 5: status.
        let status: Value = app.get_bearer(&format!("/v1/debt/{id}/status"), &token).await.json().await.unwrap();
        assert_eq!(status, json!({"active": true, "expires_at": expires.unix_timestamp()}));

        // 6: revoke.
        let deleted = app.http.delete(app.url(&format!("/v1/debt/{id}"))).bearer_auth(&token).send().await.unwrap();
        assert_eq!(deleted.status(), 204);
        assert_eq!(app.get_bearer(&format!("/v1/debt/{id}"), &token).await.status(), 403);
        let status: Value = app.get_bearer(&format!("/v1/debt/{id}/status"), &token).await.json().await.unwrap();
        assert_eq!(status["active"], false);

        // 7: the feed.
        let feed_token = app.sandbox_token("/feed/v1/consent", "client.access.consent.events").await;
        let feed: Value = app.get_bearer("/feed/v1/consent?fromSequenceNr=1&limit=100", &feed_token).await.json().await.unwrap();
        let mine: Vec<&Value> = feed["result"].as_array().unwrap().iter().filter(|e| e["consentId"] == id.as_str()).collect();
        assert_eq!(mine.len(), 2, "{feed}");
        assert_eq!(mine[0]["eventType"], "SAMTYKKE_OPPRETTET");
        assert_eq!(mine[0]["samtykkeOpprettetEvent"]["externalConsentId"], "my-id-001");
        assert_eq!(mine[0]["samtykkeOpprettetEvent"]["scope"], "debt.unsecured.presentation");
        assert_eq!(mine[0]["samtykkeOpprettetEvent"]["clientId"], app.sandbox.client_id.as_str());
        assert!(mine[0]["samtykkeArkivertEvent"].is_null());
        assert_eq!(mine[1]["eventType"], "SAMTYKKE_ARKIVERT");
        assert_eq!(mine[1]["samtykkeArkivertEvent"]["consentId"], id.as_str());
        assert!(mine[0]["sequenceNr"].as_i64() < mine[1]["sequenceNr"].as_i64());
    }

    async fn the_feed_returns_a_client_consent_id_with_spaces_exactly_as_registered(app) {
        // The PostgreSQL feed reads an event packed into one space-separated
        // column; only its last field, this id, may hold spaces.
        let ccid = " sak 17  av 2026 – Ærlig ";
        let registered: Value = app.register(body(ccid)).await.json().await.unwrap();
        assert_eq!(registered["client_consent_id"], ccid);
        let feed_token = app.sandbox_token("/feed/v1/consent", "client.access.consent.events").await;
        let feed: Value = app.get_bearer("/feed/v1/consent?fromSequenceNr=1&limit=100", &feed_token).await.json().await.unwrap();
        let events = feed["result"].as_array().unwrap();
        assert_eq!(events.len(), 1, "{feed}");
        assert_eq!(events[0]["consentId"], registered["consent"]["id"], "{feed}");
        assert_eq!(events[0]["samtykkeOpprettetEvent"]["externalConsentId"], ccid);
        assert_eq!(events[0]["samtykkeOpprettetEvent"]["scope"], "debt.unsecured.presentation");
    }

    async fn registering_the_same_client_consent_id_again_is_idempotent_and_other_data_conflicts(app) {
        let first: Value = app.register(body("dup-1")).await.json().await.unwrap();
        let again = app.register(body("dup-1")).await;
        assert_eq!(again.status(), 200);
        assert_eq!(again.json::<Value>().await.unwrap(), first);
        let mut other = body("dup-1");
        other["consent_duration_days"] = json!(31);
        assert_spring_error(app.register(other).await, 409, "already registered").await;
        let mut other_person = body("dup-1");
        other_person["nin"] = json!("29868099311");
        assert_spring_error(app.register(other_person).await, 409, "already registered").await;
    }

    async fn registrations_sent_at_once_create_each_consent_once(app) {
        // Sent all at once, so that on PostgreSQL they share batched
        // statements: 8 distinct registrations and 8 of one client consent
        // id give 9 consents, each with one creation event.
        let token = app.sandbox_token("/v1/consent/agreement", "consent.create").await;
        let bodies: Vec<Value> = (0..16).map(|i| if i % 2 == 0 { body(&format!("at-once-{i}")) } else { body("at-once-same") }).collect();
        let requests: Vec<_> = bodies.iter().map(|b| {
            let request = app.http.put(app.url("/v1/consent/agreement")).bearer_auth(&token).json(b);
            tokio::spawn(async move {
                let response = request.send().await.unwrap();
                (response.status().as_u16(), response.json::<Value>().await.unwrap())
            })
        }).collect();
        let mut ids = Vec::new();
        for request in requests {
            let (status, answer) = request.await.unwrap();
            assert_eq!(status, 200, "{answer}");
            ids.push(answer["consent"]["id"].as_str().unwrap().to_owned());
        }
        let same: Vec<&String> = ids.iter().skip(1).step_by(2).collect();
        assert!(same.windows(2).all(|w| w[0] == w[1]), "{same:?}");
        let mut distinct = ids.clone();
        distinct.sort_unstable();
        distinct.dedup();
        assert_eq!(distinct.len(), 9, "{ids:?}");
        let feed_token = app.sandbox_token("/feed/v1/consent", "client.access.consent.events").await;
        let feed: Value = app.get_bearer("/feed/v1/consent?fromSequenceNr=1&limit=100", &feed_token).await.json().await.unwrap();
        let mut created: Vec<&str> = feed["result"].as_array().unwrap().iter()
            .filter(|e| e["eventType"] == "SAMTYKKE_OPPRETTET")
            .map(|e| e["consentId"].as_str().unwrap()).collect();
        created.sort_unstable();
        assert_eq!(created, distinct.iter().map(String::as_str).collect::<Vec<_>>(), "{feed}");
    }

    async fn our_consent_id_is_accepted_as_the_older_name(app) {
        let response = app.register(json!({"nin": PERSON, "scope_of_consent": "debt.unsecured.processing", "consent_duration_days": 10, "our_consent_id": "legacy-1"})).await;
        assert_eq!(response.status(), 200);
        let registered: Value = response.json().await.unwrap();
        assert_eq!(registered["client_consent_id"], "legacy-1");
        let both_differ = app.register(json!({"nin": PERSON, "scope_of_consent": "debt.unsecured.processing", "consent_duration_days": 10, "our_consent_id": "a", "client_consent_id": "b"})).await;
        assert_spring_error(both_differ, 400, "differ").await;
    }

    async fn a_duration_above_the_maximum_is_clamped(app) {
        let response = app.register(json!({"nin": PERSON, "scope_of_consent": "debt.unsecured.processing", "consent_duration_days": 100, "client_consent_id": "long"})).await;
        let registered: Value = response.json().await.unwrap();
        let expires = time::OffsetDateTime::parse(registered["consent"]["expires_at"].as_str().unwrap(), &time::format_description::well_known::Rfc3339).unwrap();
        assert_eq!(expires.unix_timestamp(), app.clock_now() + 28 * 86400);
    }

    async fn invalid_registrations_are_400_in_the_spring_error_shape(app) {
        for (request, message) in [
            (json!({"nin": "14842249092", "scope_of_consent": "debt.unsecured.presentation", "consent_duration_days": 30, "client_consent_id": "x"}), "control digits"),
            (json!({"nin": "1484224909", "scope_of_consent": "debt.unsecured.presentation", "consent_duration_days": 30, "client_consent_id": "x"}), "11 digits"),
            (json!({"nin": 14842249091u64, "scope_of_consent": "debt.unsecured.presentation", "consent_duration_days": 30, "client_consent_id": "x"}), "nin must be a string"),
            (json!({"scope_of_consent": "debt.unsecured.presentation", "consent_duration_days": 30, "client_consent_id": "x"}), "nin is required"),
            (json!({"nin": PERSON, "scope_of_consent": "debt.unsecured.presentation.30", "consent_duration_days": 30, "client_consent_id": "x"}), "scope_of_consent"),
            (json!({"nin": PERSON, "scope_of_consent": "consent.create", "consent_duration_days": 30, "client_consent_id": "x"}), "scope_of_consent"),
            (json!({"nin": PERSON, "scope_of_consent": "debt.unsecured.presentation", "consent_duration_days": 0, "client_consent_id": "x"}), "positive"),
            (json!({"nin": PERSON, "scope_of_consent": "debt.unsecured.presentation", "consent_duration_days": "30 days", "client_consent_id": "x"}), "whole number"),
            (json!({"nin": PERSON, "scope_of_consent": "debt.unsecured.presentation", "consent_duration_days": 1.5, "client_consent_id": "x"}), "whole number"),
            (json!({"nin": PERSON, "scope_of_consent": "debt.unsecured.presentation", "consent_duration_days": 30}), "client_consent_id is required"),
            (json!([1, 2]), "JSON object"),
        ] {
            assert_spring_error(app.register(request.clone()).await, 400, message).await;
        }
        let token = app.sandbox_token("/v1/consent/agreement", "consent.create").await;
        let broken = app.http.put(app.url("/v1/consent/agreement")).bearer_auth(&token)
            .header("content-type", "application/json").body("{not json").send().await.unwrap();
        assert_spring_error(broken, 400, "not valid JSON").await;
        let form = app.http.put(app.url("/v1/consent/agreement")).bearer_auth(&token).form(&[("nin", PERSON)]).send().await.unwrap();
        assert_spring_error(form, 415, "application/json").await;
        // Nothing was registered by any of them.
        let feed_token = app.sandbox_token("/feed/v1/consent", "client.access.consent.events").await;
        let feed: Value = app.get_bearer("/feed/v1/consent?fromSequenceNr=0&limit=100", &feed_token).await.json().await.unwrap();
        assert_eq!(feed["result"], json!([]));
    }

    async fn a_missing_or_bad_token_is_401_and_a_wrong_one_403(app) {
        let none = app.http.put(app.url("/v1/consent/agreement")).json(&body("t")).send().await.unwrap();
        assert!(none.headers()["www-authenticate"].to_str().unwrap().starts_with("Bearer"));
        assert_spring_error(none, 401, "access token").await;
        assert_spring_error(put_with(&app, "bogus", &body("t")).await, 401, "invalid").await;
        // A real token sent without the `Bearer ` scheme: the message says so.
        let token = app.sandbox_token("/v1/consent/agreement", "consent.create").await;
        let bare = app.http.put(app.url("/v1/consent/agreement")).header("authorization", token.as_str()).json(&body("t")).send().await.unwrap();
        let refused = assert_spring_error(bare, 401, "does not use the Bearer scheme").await;
        assert!(!refused.to_string().contains(token.as_str()), "the header is not echoed: {refused}");
        let debt_token = app.sandbox_token("/v1/debt", "debt.unsecured.presentation").await;
        assert_spring_error(put_with(&app, &debt_token, &body("t")).await, 403, "not for this API").await;
    }

    async fn a_client_may_register_only_its_own_purposes(app) {
        let (id, secret) = app.create_client(&["--name", "Agreements only", "--org", "974760673", "--agreement", "--purpose", "processing"]);
        let audience = app.audience("/v1/consent/agreement");
        let token: Value = app.post_form("/oauth2/token", (&id, &secret), &[("grant_type", "client_credentials"), ("audience", &audience), ("scope", "consent.create")]).await.json().await.unwrap();
        let token = token["access_token"].as_str().unwrap();
        assert_spring_error(put_with(&app, token, &body("p1")).await, 403, "purpose").await;
        let mut processing = body("p1");
        processing["scope_of_consent"] = json!("debt.unsecured.processing");
        assert_eq!(put_with(&app, token, &processing).await.status(), 200);
    }

    async fn a_client_without_the_agreement_permission_is_refused_with_403(app) {
        // A consent.create token held by a client that may not register
        // agreements (e.g. issued before an operator changed the client).
        let (id, _) = app.create_client(&["--name", "Bank", "--org", "974760673", "--purpose", "presentation"]);
        let token = crate::helpers::insert_token(&app, &id, samtykke_core::domain::ApiAudience::ConsentAgreement, "consent.create", None).await;
        assert_spring_error(put_with(&app, &token, &body("x")).await, 403, "may not register").await;
    }
}
