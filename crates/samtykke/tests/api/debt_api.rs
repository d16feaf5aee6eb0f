//! The debt API: lookups, the usage log, single use, status, revocation and
//! every error rule of SPEC §7.

use samtykke_core::consent::{Consent, ConsentKind, ConsentScope};
use samtykke_core::domain::{ApiAudience, ClientId, Nin, NinPolicy};
use samtykke_core::Clock;
use serde_json::{json, Value};

use crate::helpers::{insert_token, TestApp};

const PERSON: &str = "14842249091";

/// A regular single-use consent of the sandbox client, as the
/// authorization-code flow will create it, and a token bound to it.
pub(crate) async fn single_use_consent(app: &TestApp) -> (String, String) {
    let consent = Consent::new(
        app.sandbox.client_id.clone(),
        Nin::parse(PERSON, NinPolicy::AllowSynthetic).unwrap(),
        ConsentScope::parse("debt.unsecured.presentation").unwrap(),
        ConsentKind::Regular,
        None,
        app.clock.now(),
    );
    app.store.insert_consent(&consent).await.unwrap();
    let id = consent.id.to_string();
    let token = insert_token(
        app,
        app.sandbox.client_id.as_str(),
        ApiAudience::Debt,
        "debt.unsecured.presentation",
        Some(&id),
    )
    .await;
    (id, token)
}

pub(crate) async fn assert_api_error(
    response: reqwest::Response,
    status: u16,
    error: &str,
) -> Value {
    assert_eq!(response.status(), status);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"], error, "{body}");
    assert!(body["error_description"].is_string());
    assert!(body["trace_id"].as_str().is_some_and(|t| !t.is_empty()));
    assert!(time::OffsetDateTime::parse(
        body["timestamp"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339
    )
    .is_ok());
    body
}

engine_tests! {
    async fn bad_tokens_are_401_with_a_bearer_challenge(app) {
        let id = app.agreement_consent(PERSON, "debt.unsecured.presentation", 30).await;
        let path = format!("/v1/debt/{id}");
        let none = app.http.get(app.url(&path)).send().await.unwrap();
        assert_eq!(none.headers()["www-authenticate"], "Bearer realm=\"samtykke\"");
        assert_api_error(none, 401, "invalid_token").await;
        for header in ["Bearer nonsense", "Basic abc", "Bearer", "bearer  "] {
            let response = app.http.get(app.url(&path)).header("authorization", header).send().await.unwrap();
            assert!(response.headers()["www-authenticate"].to_str().unwrap().starts_with("Bearer"));
            assert_api_error(response, 401, "invalid_token").await;
        }
        let token = app.sandbox_token("/v1/debt", "debt.unsecured.presentation").await;
        let (client, secret) = app.sandbox_auth();
        app.post_form("/oauth2/revoke", (&client, &secret), &[("token", &token)]).await;
        let revoked = app.get_bearer(&path, &token).await;
        assert_eq!(revoked.headers()["www-authenticate"], "Bearer realm=\"samtykke\", error=\"invalid_token\"");
        assert_api_error(revoked, 401, "invalid_token").await;
        // The token is refused first, whatever else is wrong with the call.
        assert_api_error(app.get_bearer("/v1/debt/not-a-consent-id", &token).await, 401, "invalid_token").await;
        assert_api_error(app.get_bearer(&format!("/v1/debt/{}", uuid::Uuid::new_v4()), &token).await, 401, "invalid_token").await;
        assert_api_error(app.get_bearer("/v1/debt", &token).await, 401, "invalid_token").await;
        let agreement_token = app.sandbox_token("/v1/consent/agreement", "consent.create").await;
        app.post_form("/oauth2/revoke", (&client, &secret), &[("token", &agreement_token)]).await;
        assert_api_error(app.get_bearer(&path, &agreement_token).await, 401, "invalid_token").await;
        // Nothing was logged for the refused calls.
        let consent_id = samtykke_core::consent::ConsentId::parse(&id).unwrap();
        assert!(app.store.consent_usage(&consent_id).await.unwrap().is_empty());
        let token = app.sandbox_token("/v1/debt", "debt.unsecured.presentation").await;
        app.clock.advance(time::Duration::hours(1));
        assert_api_error(app.get_bearer(&path, &token).await, 401, "invalid_token").await;
    }

    async fn a_wrong_audience_or_purpose_is_403_insufficient_scope(app) {
        let id = app.agreement_consent(PERSON, "debt.unsecured.presentation", 30).await;
        let path = format!("/v1/debt/{id}");
        let agreement_token = app.sandbox_token("/v1/consent/agreement", "consent.create").await;
        assert_api_error(app.get_bearer(&path, &agreement_token).await, 403, "insufficient_scope").await;
        assert_api_error(app.get_bearer(&format!("{path}/status"), &agreement_token).await, 403, "insufficient_scope").await;
        let processing_only = app.sandbox_token("/v1/debt", "debt.unsecured.processing").await;
        let response = app.get_bearer(&path, &processing_only).await;
        assert!(response.headers()["www-authenticate"].to_str().unwrap().contains("insufficient_scope"));
        assert_api_error(response, 403, "insufficient_scope").await;
        // Nothing was logged for refused calls.
        let consent_id = samtykke_core::consent::ConsentId::parse(&id).unwrap();
        assert!(app.store.consent_usage(&consent_id).await.unwrap().is_empty());
    }

    async fn unknown_foreign_expired_consumed_and_revoked_consents_get_one_identical_403(app) {
        let token = app.sandbox_token("/v1/debt", "debt.unsecured.presentation debt.unsecured.processing").await;
        let mut answers = Vec::new();
        let check = |response: reqwest::Response| async move {
            let mut body = assert_api_error(response, 403, "invalid consent").await;
            body.as_object_mut().unwrap().remove("trace_id");
            body.as_object_mut().unwrap().remove("timestamp");
            body
        };
        // Unknown (well-formed and malformed ids).
        answers.push(check(app.get_bearer(&format!("/v1/debt/{}", uuid::Uuid::new_v4()), &token).await).await);
        answers.push(check(app.get_bearer("/v1/debt/not-a-uuid", &token).await).await);
        // Another client's.
        let (other, other_secret) = app.create_client(&["--name", "Other", "--org", "974760673", "--agreement", "--purpose", "presentation"]);
        let audience = app.audience("/v1/consent/agreement");
        let other_token: Value = app.post_form("/oauth2/token", (&other, &other_secret), &[("grant_type", "client_credentials"), ("audience", &audience), ("scope", "consent.create")]).await.json().await.unwrap();
        let foreign: Value = app.http.put(app.url("/v1/consent/agreement")).bearer_auth(other_token["access_token"].as_str().unwrap())
            .json(&json!({"nin": PERSON, "scope_of_consent": "debt.unsecured.presentation", "consent_duration_days": 5, "client_consent_id": "theirs"}))
            .send().await.unwrap().json().await.unwrap();
        answers.push(check(app.get_bearer(&format!("/v1/debt/{}", foreign["consent"]["id"].as_str().unwrap()), &token).await).await);
        // Consumed.
        let (single, bound) = single_use_consent(&app).await;
        assert_eq!(app.get_bearer("/v1/debt", &bound).await.status(), 200);
        answers.push(check(app.get_bearer(&format!("/v1/debt/{single}"), &token).await).await);
        // Revoked.
        let revoked = app.agreement_consent(PERSON, "debt.unsecured.processing", 5).await;
        app.http.delete(app.url(&format!("/v1/debt/{revoked}"))).bearer_auth(&token).send().await.unwrap();
        answers.push(check(app.get_bearer(&format!("/v1/debt/{revoked}"), &token).await).await);
        // Expired.
        let expiring = app.agreement_consent(PERSON, "debt.unsecured.processing", 1).await;
        app.clock.advance(time::Duration::days(1));
        let fresh = app.sandbox_token("/v1/debt", "debt.unsecured.processing").await;
        answers.push(check(app.get_bearer(&format!("/v1/debt/{expiring}"), &fresh).await).await);

        assert!(answers.windows(2).all(|w| w[0] == w[1]), "{answers:?}");
    }

    async fn the_trace_id_echoes_x_trace_id_and_the_usage_log_records_each_fetch(app) {
        let id = app.agreement_consent(PERSON, "debt.unsecured.presentation", 30).await;
        let token = app.sandbox_token("/v1/debt", "debt.unsecured.presentation").await;
        for trace in ["trace-aaa", "trace-bbb"] {
            let response = app.http.get(app.url(&format!("/v1/debt/{id}"))).bearer_auth(&token).header("x-trace-id", trace).send().await.unwrap();
            assert_eq!(response.status(), 200);
            assert_eq!(response.headers()["x-trace-id"], trace);
        }
        let refused = app.http.get(app.url(&format!("/v1/debt/{}", uuid::Uuid::new_v4()))).bearer_auth(&token).header("x-trace-id", "trace-ccc").send().await.unwrap();
        assert_eq!(assert_api_error(refused, 403, "invalid consent").await["trace_id"], "trace-ccc");
        let usage = app.store.consent_usage(&samtykke_core::consent::ConsentId::parse(&id).unwrap()).await.unwrap();
        let traces: Vec<&str> = usage.iter().map(|u| u.trace_id.as_str()).collect();
        assert_eq!(traces, ["trace-aaa", "trace-bbb"]);
        assert!(usage.iter().all(|u| u.client_id == app.sandbox.client_id && u.purpose == samtykke_core::domain::Purpose::Presentation));
    }

    async fn a_person_without_debt_gets_an_empty_loans_array(app) {
        let id = app.agreement_consent("12829499914", "debt.unsecured.presentation", 30).await;
        let token = app.sandbox_token("/v1/debt", "debt.unsecured.presentation").await;
        let debt: Value = app.get_bearer(&format!("/v1/debt/{id}"), &token).await.json().await.unwrap();
        assert_eq!(debt["loans"], json!([]));
        assert_eq!(debt["numberOfCreditorsAnswered"], 0);
        assert_eq!(debt["ssn"], "12829499914");
    }

    async fn a_bound_token_serves_get_v1_debt_and_a_single_use_consent_only_once(app) {
        let (id, bound) = single_use_consent(&app).await;
        let first = app.get_bearer("/v1/debt", &bound).await;
        assert_eq!(first.status(), 200);
        let debt: Value = first.json().await.unwrap();
        assert_eq!(debt["consent"]["id"], id.as_str());
        assert_eq!(debt["ssn"], PERSON);
        // The reference's example for GET /v1/debt says "no valid consent"
        // (GET /v1/debt/{id} says "invalid consent").
        assert_api_error(app.get_bearer("/v1/debt", &bound).await, 403, "no valid consent").await;
        let cc = app.sandbox_token("/v1/debt", "debt.unsecured.presentation").await;
        assert_api_error(app.get_bearer("/v1/debt", &cc).await, 400, "invalid_request").await;
        let status: Value = app.get_bearer(&format!("/v1/debt/{id}/status"), &cc).await.json().await.unwrap();
        assert_eq!(status["active"], false);
        // Consuming it archived it in the feed, once; the use was logged once.
        let feed_token = app.sandbox_token("/feed/v1/consent", "client.access.consent.events").await;
        let feed: Value = app.get_bearer("/feed/v1/consent?fromSequenceNr=1&limit=100", &feed_token).await.json().await.unwrap();
        let archived = feed["result"].as_array().unwrap().iter()
            .filter(|e| e["consentId"] == id.as_str() && e["eventType"] == "SAMTYKKE_ARKIVERT").count();
        assert_eq!(archived, 1, "{feed}");
        let consent_id = samtykke_core::consent::ConsentId::parse(&id).unwrap();
        assert_eq!(app.store.consent_usage(&consent_id).await.unwrap().len(), 1);
    }

    async fn concurrent_fetches_of_a_single_use_consent_serve_the_debt_exactly_once(app) {
        for _ in 0..3 {
            let (id, bound) = single_use_consent(&app).await;
            let requests = (0..16).map(|_| {
                let http = app.http.clone();
                let url = app.url("/v1/debt");
                let bound = bound.clone();
                tokio::spawn(async move { http.get(url).bearer_auth(bound).send().await.unwrap().status().as_u16() })
            });
            let mut statuses = Vec::new();
            for r in requests {
                statuses.push(r.await.unwrap());
            }
            statuses.sort_unstable();
            assert_eq!(statuses.iter().filter(|s| **s == 200).count(), 1, "{statuses:?}");
            assert!(statuses.iter().all(|s| *s == 200 || *s == 403), "{statuses:?}");
            let usage = app.store.consent_usage(&samtykke_core::consent::ConsentId::parse(&id).unwrap()).await.unwrap();
            assert_eq!(usage.len(), 1);
        }
    }

    async fn status_and_revocation_only_see_the_callers_consents(app) {
        let id = app.agreement_consent(PERSON, "debt.unsecured.presentation", 30).await;
        let (other, other_secret) = app.create_client(&["--name", "Other", "--org", "974760673", "--purpose", "presentation"]);
        let audience = app.audience("/v1/debt");
        let theirs: Value = app.post_form("/oauth2/token", (&other, &other_secret), &[("grant_type", "client_credentials"), ("audience", &audience), ("scope", "debt.unsecured.presentation")]).await.json().await.unwrap();
        let theirs = theirs["access_token"].as_str().unwrap();
        assert_api_error(app.get_bearer(&format!("/v1/debt/{id}/status"), theirs).await, 403, "invalid consent").await;
        let delete = app.http.delete(app.url(&format!("/v1/debt/{id}"))).bearer_auth(theirs).send().await.unwrap();
        assert_api_error(delete, 403, "invalid consent").await;
        let unknown = app.http.delete(app.url(&format!("/v1/debt/{}", uuid::Uuid::new_v4()))).bearer_auth(theirs).send().await.unwrap();
        assert_api_error(unknown, 403, "invalid consent").await;
        let mine = app.sandbox_token("/v1/debt", "debt.unsecured.presentation").await;
        let status: Value = app.get_bearer(&format!("/v1/debt/{id}/status"), &mine).await.json().await.unwrap();
        assert_eq!(status["active"], true, "the other client's attempt changed nothing");
        for _ in 0..2 {
            let deleted = app.http.delete(app.url(&format!("/v1/debt/{id}"))).bearer_auth(&mine).send().await.unwrap();
            assert_eq!(deleted.status(), 204, "revoking twice is harmless");
        }
    }

    async fn revoking_a_consent_revokes_the_tokens_bound_to_it(app) {
        let (id, bound) = single_use_consent(&app).await;
        let cc = app.sandbox_token("/v1/debt", "debt.unsecured.presentation").await;
        assert_eq!(app.http.delete(app.url(&format!("/v1/debt/{id}"))).bearer_auth(&cc).send().await.unwrap().status(), 204);
        assert_api_error(app.get_bearer("/v1/debt", &bound).await, 401, "invalid_token").await;
        let (client, secret) = app.sandbox_auth();
        let info: Value = app.post_form("/oauth2/introspect", (&client, &secret), &[("token", &bound)]).await.json().await.unwrap();
        assert_eq!(info["active"], false);
    }

    async fn disabling_a_client_revokes_its_tokens(app) {
        let (id, secret) = app.create_client(&["--name", "Bank", "--org", "974760673", "--purpose", "presentation"]);
        let audience = app.audience("/v1/debt");
        let token: Value = app.post_form("/oauth2/token", (&id, &secret), &[("grant_type", "client_credentials"), ("audience", &audience), ("scope", "debt.unsecured.presentation")]).await.json().await.unwrap();
        let token = token["access_token"].as_str().unwrap();
        app.store.set_client_disabled(&ClientId::parse(&id).unwrap(), true).await.unwrap();
        assert_api_error(app.get_bearer(&format!("/v1/debt/{}", uuid::Uuid::new_v4()), token).await, 401, "invalid_token").await;
    }

    async fn many_lookups_at_once_each_get_the_answer_of_their_own_consent_and_token(app) {
        // Sent all at once, so that on PostgreSQL they share batched
        // statements: each answer, and each usage record, must still be the
        // one its own consent and token decide.
        let presentation = app.sandbox_token("/v1/debt", "debt.unsecured.presentation").await;
        let revoked = app.sandbox_token("/v1/debt", "debt.unsecured.presentation").await;
        let (client, secret) = app.sandbox_auth();
        app.post_form("/oauth2/revoke", (&client, &secret), &[("token", &revoked)]).await;
        enum Expect { Served(&'static str), Refused(u16, &'static str) }
        let mut cases = Vec::new();
        for i in 0..16 {
            let nin = if i % 2 == 0 { PERSON } else { "12829499914" };
            let id = app.agreement_consent(nin, "debt.unsecured.presentation", 30).await;
            cases.push((id, presentation.clone(), Expect::Served(nin)));
        }
        for _ in 0..6 {
            let id = app.agreement_consent(PERSON, "debt.unsecured.processing", 30).await;
            cases.push((id, presentation.clone(), Expect::Refused(403, "insufficient_scope")));
            cases.push((uuid::Uuid::new_v4().to_string(), presentation.clone(), Expect::Refused(403, "invalid consent")));
            let served = cases[0].0.clone();
            cases.push((served, revoked.clone(), Expect::Refused(401, "invalid_token")));
            cases.push((uuid::Uuid::new_v4().to_string(), revoked.clone(), Expect::Refused(401, "invalid_token")));
        }
        let requests: Vec<_> = cases.iter().enumerate().map(|(k, (id, token, _))| {
            let request = app.http.get(app.url(&format!("/v1/debt/{id}"))).bearer_auth(token).header("x-trace-id", format!("many-{k}"));
            tokio::spawn(async move {
                let response = request.send().await.unwrap();
                (response.status().as_u16(), response.json::<Value>().await.unwrap())
            })
        }).collect();
        for (k, (request, (id, _, expect))) in requests.into_iter().zip(&cases).enumerate() {
            let (status, body) = request.await.unwrap();
            match expect {
                Expect::Served(nin) => {
                    assert_eq!(status, 200, "{k}: {body}");
                    assert_eq!(body["consent"]["id"], id.as_str(), "{k}: {body}");
                    assert_eq!(body["ssn"], *nin, "{k}: {body}");
                    assert_eq!(body["loans"].as_array().unwrap().is_empty(), *nin != PERSON, "{k}: {body}");
                }
                Expect::Refused(code, error) => {
                    assert_eq!(status, *code, "{k}: {body}");
                    assert_eq!(body["error"], *error, "{k}: {body}");
                    assert_eq!(body["trace_id"], format!("many-{k}"), "{k}: {body}");
                }
            }
        }
        // One usage record per served lookup, with its own trace id; none
        // for the refused ones.
        for (k, (id, _, expect)) in cases.iter().enumerate() {
            let consent_id = samtykke_core::consent::ConsentId::parse(id).unwrap();
            let usage = app.store.consent_usage(&consent_id).await.unwrap();
            let traces: Vec<&str> = usage.iter().map(|u| u.trace_id.as_str()).collect();
            match expect {
                Expect::Served(_) => assert_eq!(traces, [format!("many-{k}")], "{k}"),
                Expect::Refused(403, "insufficient_scope") => assert!(traces.is_empty(), "{k}: {traces:?}"),
                Expect::Refused(..) => {}
            }
        }
    }
}
