//! Wire conformance: real responses of every resource endpoint, successes and
//! errors, validated against the schemas the published OpenAPI (the copy in
//! `tests/reference/openapi.json`) declares for that operation and status.

use serde_json::{json, Value};

use crate::debt_api::single_use_consent;
use crate::schema::{assert_conforms, Checker};

const PERSON: &str = "14842249091";
const AGREEMENT: &str = "/v1/consent/agreement";

/// Checks `response` against what the reference declares for `method path`
/// (`path` as templated there, e.g. `/v1/debt/{id}`) at the response's
/// status, and returns its JSON body (`Null` for a declared empty body).
///
/// Statuses the reference lists without a body (401 of the agreement API) or
/// not at all (the feed's errors, 415) must carry the API's error schema:
/// `SpringErrorSchema` for the agreement API, `error` for the others (SPEC
/// §5, §7).
async fn conforming(response: reqwest::Response, method: &str, path: &str) -> Value {
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned());
    let text = response.text().await.unwrap();
    let at = format!("{} {path} → {status}", method.to_uppercase());
    let checker = Checker::reference();
    let schema = match checker.response_schema(path, method, status) {
        Some(Some(schema)) => schema,
        Some(None) if status < 400 => {
            assert!(
                text.is_empty(),
                "{at}: the contract has no body, we sent {text:?}"
            );
            return Value::Null;
        }
        _ => {
            assert!(
                status >= 400,
                "{at}: a success status the contract does not declare"
            );
            checker.schema(if path == AGREEMENT {
                "SpringErrorSchema"
            } else {
                "error"
            })
        }
    };
    assert!(
        content_type
            .as_deref()
            .is_some_and(|c| c.starts_with("application/json")),
        "{at}: content-type {content_type:?}"
    );
    let body: Value =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{at}: not JSON ({e}): {text}"));
    let errors = checker.check(&body, schema);
    assert!(errors.is_empty(), "{at}: {errors:#?}\nin {body:#}");
    body
}

/// The loan's own schema by its `type`; every field of that schema is sent.
fn assert_loan_is_complete(loan: &Value) {
    let name = match loan["type"].as_str() {
        Some("creditFacility") => "credit_facility",
        Some("repaymentLoan") => "repayment_loan",
        Some("chargeCard") => "charge_cards",
        other => panic!("unknown loan type {other:?} in {loan}"),
    };
    assert_conforms(loan, name);
    let schema = Checker::reference().schema(name);
    let mut wanted: Vec<&String> = schema["properties"].as_object().unwrap().keys().collect();
    let mut sent: Vec<&String> = loan.as_object().unwrap().keys().collect();
    wanted.sort();
    sent.sort();
    assert_eq!(sent, wanted, "{name}: {loan}");
}

engine_tests! {
    async fn every_success_response_of_the_journey_matches_the_reference(app) {
        let request = json!({"nin": PERSON, "scope_of_consent": "debt.unsecured.presentation", "consent_duration_days": 30, "client_consent_id": "conformance-1"});
        let registered = conforming(app.register(request.clone()).await, "put", AGREEMENT).await;
        assert_eq!(conforming(app.register(request).await, "put", AGREEMENT).await, registered, "idempotent repeat");
        // A request with the older name is answered with it too
        // (drop_in.rs); the schema's own properties conform.
        let legacy = app.register(json!({"nin": PERSON, "scope_of_consent": "debt.unsecured.processing", "consent_duration_days": 5, "our_consent_id": "conformance-2"})).await;
        assert_eq!(legacy.status(), 200);
        let mut legacy: Value = legacy.json().await.unwrap();
        assert_eq!(legacy.as_object_mut().unwrap().remove("our_consent_id"), Some(json!("conformance-2")));
        assert_conforms(&legacy, "CreateConsentResponseDTO");
        let id = registered["consent"]["id"].as_str().unwrap().to_owned();

        let token = app.sandbox_token("/v1/debt", "debt.unsecured.presentation debt.unsecured.processing").await;
        let debt = conforming(app.get_bearer(&format!("/v1/debt/{id}"), &token).await, "get", "/v1/debt/{id}").await;
        let loans = debt["loans"].as_array().unwrap();
        let mut types: Vec<&str> = loans.iter().map(|l| l["loan"]["type"].as_str().unwrap()).collect();
        types.sort_unstable();
        types.dedup();
        assert_eq!(types, ["chargeCard", "creditFacility", "repaymentLoan"], "the sandbox person has every loan type");
        loans.iter().for_each(|l| assert_loan_is_complete(&l["loan"]));

        let nobody = app.agreement_consent("12829499914", "debt.unsecured.presentation", 30).await;
        let empty = conforming(app.get_bearer(&format!("/v1/debt/{nobody}"), &token).await, "get", "/v1/debt/{id}").await;
        assert_eq!(empty["loans"], json!([]));

        let (_, bound) = single_use_consent(&app).await;
        let bound_debt = conforming(app.get_bearer("/v1/debt", &bound).await, "get", "/v1/debt").await;
        bound_debt["loans"].as_array().unwrap().iter().for_each(|l| assert_loan_is_complete(&l["loan"]));

        let status = conforming(app.get_bearer(&format!("/v1/debt/{id}/status"), &token).await, "get", "/v1/debt/{id}/status").await;
        assert_eq!(status["active"], true);
        let deleted = app.http.delete(app.url(&format!("/v1/debt/{id}"))).bearer_auth(&token).send().await.unwrap();
        assert_eq!(deleted.status(), 204);
        conforming(deleted, "delete", "/v1/debt/{id}").await;
        let again = app.http.delete(app.url(&format!("/v1/debt/{id}"))).bearer_auth(&token).send().await.unwrap();
        assert_eq!(again.status(), 403, "already revoked");
        let again = conforming(again, "delete", "/v1/debt/{id}").await;
        assert!(again["error_description"].as_str().unwrap().starts_with("Consent revoked at "), "{again}");
        let status = conforming(app.get_bearer(&format!("/v1/debt/{id}/status"), &token).await, "get", "/v1/debt/{id}/status").await;
        assert_eq!(status["active"], false);

        let feed_token = app.sandbox_token("/feed/v1/consent", "client.access.consent.events").await;
        for query in ["fromSequenceNr=1&limit=100", "fromSequenceNr=0&limit=100", "fromSequenceNr=2&limit=1"] {
            let page = conforming(app.get_bearer(&format!("/feed/v1/consent?{query}"), &feed_token).await, "get", "/feed/v1/consent").await;
            assert!(!page["result"].as_array().unwrap().is_empty(), "{query}");
        }
        let all = conforming(app.get_bearer("/feed/v1/consent?fromSequenceNr=1&limit=100", &feed_token).await, "get", "/feed/v1/consent").await;
        let kinds: Vec<(&str, bool, bool)> = all["result"].as_array().unwrap().iter().map(|e| (
            e["eventType"].as_str().unwrap(),
            e["samtykkeOpprettetEvent"].is_object(),
            e["samtykkeArkivertEvent"].is_object(),
        )).collect();
        assert!(kinds.contains(&("SAMTYKKE_OPPRETTET", true, false)), "{kinds:?}");
        assert!(kinds.contains(&("SAMTYKKE_ARKIVERT", false, true)), "{kinds:?}");
        assert!(kinds.iter().all(|k| *k == ("SAMTYKKE_OPPRETTET", true, false) || *k == ("SAMTYKKE_ARKIVERT", false, true)), "{kinds:?}");
        let first = conforming(app.get_bearer("/feed/v1/consent/firstSequenceNr", &feed_token).await, "get", "/feed/v1/consent/firstSequenceNr").await;
        let last = conforming(app.get_bearer("/feed/v1/consent/lastSequenceNr", &feed_token).await, "get", "/feed/v1/consent/lastSequenceNr").await;
        assert_eq!(first["firstSequenceNr"], all["startSequenceNr"].as_i64().unwrap().max(all["result"][0]["sequenceNr"].as_i64().unwrap()));
        assert_eq!(last["lastSequenceNr"], all["endSequenceNr"]);
    }

    async fn every_error_response_matches_the_reference_error_schemas(app) {
        let body = json!({"nin": PERSON, "scope_of_consent": "debt.unsecured.presentation", "consent_duration_days": 30, "client_consent_id": "errors-1"});
        let put = |token: Option<String>, body: Value| {
            let request = app.http.put(app.url(AGREEMENT)).json(&body);
            let request = match token { Some(t) => request.bearer_auth(t), None => request };
            async move { request.send().await.unwrap() }
        };
        let agreement_token = app.sandbox_token(AGREEMENT, "consent.create").await;
        let debt_token = app.sandbox_token("/v1/debt", "debt.unsecured.presentation").await;
        let feed_token = app.sandbox_token("/feed/v1/consent", "client.access.consent.events").await;

        // Agreement API: SpringErrorSchema.
        let mut statuses = Vec::new();
        for response in [
            put(None, body.clone()).await,
            put(Some("bogus".into()), body.clone()).await,
            put(Some(debt_token.clone()), body.clone()).await,
            put(Some(agreement_token.clone()), json!({"nin": "14842249092", "scope_of_consent": "debt.unsecured.presentation", "consent_duration_days": 30, "client_consent_id": "x"})).await,
            put(Some(agreement_token.clone()), json!({"scope_of_consent": "debt.unsecured.presentation"})).await,
            app.http.put(app.url(AGREEMENT)).bearer_auth(&agreement_token).header("content-type", "application/json").body("{not json").send().await.unwrap(),
            app.http.put(app.url(AGREEMENT)).bearer_auth(&agreement_token).form(&[("nin", PERSON)]).send().await.unwrap(),
        ] {
            statuses.push(response.status().as_u16());
            let error = conforming(response, "put", AGREEMENT).await;
            assert_eq!(error["status"], *statuses.last().unwrap());
            assert_eq!(error["path"], AGREEMENT);
        }
        assert_eq!(statuses, [401, 401, 403, 400, 400, 400, 415]);
        // Without X-Trace-ID, requestId is the request id of the logs and the
        // response header.
        let response = put(Some(debt_token.clone()), body.clone()).await;
        let request_id = response.headers()["x-request-id"].to_str().unwrap().to_owned();
        assert_eq!(conforming(response, "put", AGREEMENT).await["requestId"], request_id.as_str());
        assert_eq!(app.register(body.clone()).await.status(), 200);
        let mut conflicting = body.clone();
        conflicting["consent_duration_days"] = json!(31);
        let conflict = app.register(conflicting).await;
        assert_eq!(conflict.status(), 409);
        conforming(conflict, "put", AGREEMENT).await;
        let (no_agreements, _) = app.create_client(&["--name", "Bank", "--org", "974760673", "--purpose", "presentation"]);
        let forbidden = crate::helpers::insert_token(&app, &no_agreements, samtykke_core::domain::ApiAudience::ConsentAgreement, "consent.create", None).await;
        let refused = put(Some(forbidden), body.clone()).await;
        assert_eq!(refused.status(), 403);
        conforming(refused, "put", AGREEMENT).await;

        // Debt API: error.
        let id = app.agreement_consent(PERSON, "debt.unsecured.processing", 5).await;
        let unknown = uuid::Uuid::new_v4().to_string();
        let get = |path: String, token: Option<String>| {
            let request = app.http.get(app.url(&path)).header("x-trace-id", "conformance-trace");
            let request = match token { Some(t) => request.bearer_auth(t), None => request };
            async move { request.send().await.unwrap() }
        };
        for (method, response, template, status, error) in [
            ("get", get(format!("/v1/debt/{id}"), None).await, "/v1/debt/{id}", 403, "Invalid access token"),
            ("get", get(format!("/v1/debt/{id}"), Some("bogus".into())).await, "/v1/debt/{id}", 403, "Invalid access token"),
            ("get", get(format!("/v1/debt/{id}"), Some(agreement_token.clone())).await, "/v1/debt/{id}", 403, "insufficient_scope"),
            ("get", get(format!("/v1/debt/{id}"), Some(debt_token.clone())).await, "/v1/debt/{id}", 403, "insufficient_scope"),
            ("get", get(format!("/v1/debt/{unknown}"), Some(debt_token.clone())).await, "/v1/debt/{id}", 403, "invalid consent"),
            ("get", get("/v1/debt/not-a-uuid".into(), Some(debt_token.clone())).await, "/v1/debt/{id}", 403, "invalid consent"),
            ("get", get("/v1/debt".into(), None).await, "/v1/debt", 403, "Invalid access token"),
            ("get", get("/v1/debt".into(), Some(debt_token.clone())).await, "/v1/debt", 400, "invalid_request"),
            ("get", get(format!("/v1/debt/{unknown}/status"), Some(debt_token.clone())).await, "/v1/debt/{id}/status", 403, "invalid consent"),
            ("get", get(format!("/v1/debt/{id}/status"), Some(feed_token.clone())).await, "/v1/debt/{id}/status", 403, "insufficient_scope"),
            ("get", get(format!("/v1/debt/{id}/status"), None).await, "/v1/debt/{id}/status", 403, "Invalid access token"),
            ("get", get(format!("/v1/debt/{id}/status"), Some("bogus".into())).await, "/v1/debt/{id}/status", 403, "Invalid access token"),
            ("delete", app.http.delete(app.url(&format!("/v1/debt/{unknown}"))).bearer_auth(&debt_token).send().await.unwrap(), "/v1/debt/{id}", 403, "invalid consent"),
            ("delete", app.http.delete(app.url(&format!("/v1/debt/{id}"))).send().await.unwrap(), "/v1/debt/{id}", 403, "Invalid access token"),
        ] {
            assert_eq!(response.status(), status, "{method} {template} {error}");
            let body = conforming(response, method, template).await;
            assert_eq!(body["error"], error);
        }

        let response = app.http.get(app.url(&format!("/v1/debt/{unknown}"))).bearer_auth(&debt_token).send().await.unwrap();
        let request_id = response.headers()["x-request-id"].to_str().unwrap().to_owned();
        assert_eq!(response.headers()["x-trace-id"], request_id.as_str());
        assert_eq!(conforming(response, "get", "/v1/debt/{id}").await["trace_id"], request_id.as_str());

        // A consumed consent behind GET /v1/debt: the error the reference's
        // example for that operation shows; by id it is "invalid consent",
        // as that operation's example shows.
        let (single, bound) = single_use_consent(&app).await;
        assert_eq!(app.get_bearer("/v1/debt", &bound).await.status(), 200);
        let examples = |path: &str| &crate::schema::reference()["paths"][path]["get"]["responses"]["403"]["content"]["application/json"]["examples"];
        let consumed = conforming(app.get_bearer("/v1/debt", &bound).await, "get", "/v1/debt").await;
        assert_eq!(consumed["error"], examples("/v1/debt")["ForbiddenError"]["value"]["error"]);
        let by_id = conforming(app.get_bearer(&format!("/v1/debt/{single}"), &debt_token).await, "get", "/v1/debt/{id}").await;
        assert_eq!(by_id["error"], examples("/v1/debt/{id}")["invalidConsent"]["value"]["error"]);
        // The caller's own consent: the reason, in the example's form
        // (`Consent expired at 2021-02-26T09:31:07.265053Z`).
        let example = examples("/v1/debt/{id}")["invalidConsent"]["value"]["error_description"].as_str().unwrap();
        let reason = by_id["error_description"].as_str().unwrap();
        let shape = |d: &str| d.rsplit_once(" at ").map(|(how, at)| (how.split(' ').next().unwrap().to_owned(), at.len(), at.ends_with('Z')));
        assert_eq!(shape(reason), shape(example), "{reason} vs {example}");
        assert!(reason.starts_with("Consent consumed at "), "{reason}");
        // A bad token: the error of the example for the status operation.
        let bad = conforming(get(format!("/v1/debt/{id}/status"), Some("bogus".into())).await, "get", "/v1/debt/{id}/status").await;
        assert_eq!(bad["error"], examples("/v1/debt/{id}/status")["UnauthorizedError"]["value"]["error"]);

        // Feed API: error.
        for (path, token, status) in [
            ("/feed/v1/consent?limit=10", Some(feed_token.clone()), 400),
            ("/feed/v1/consent?fromSequenceNr=1&limit=0", Some(feed_token.clone()), 400),
            ("/feed/v1/consent?fromSequenceNr=1&limit=10", None, 403),
            ("/feed/v1/consent?fromSequenceNr=1&limit=10", Some("bogus".to_owned()), 403),
            ("/feed/v1/consent?fromSequenceNr=1&limit=10", Some(debt_token.clone()), 403),
            ("/feed/v1/consent/firstSequenceNr", Some(debt_token.clone()), 403),
            ("/feed/v1/consent/lastSequenceNr", None, 403),
        ] {
            let response = get(path.to_owned(), token).await;
            assert_eq!(response.status(), status, "{path}");
            let template = path.split('?').next().unwrap();
            let body = conforming(response, "get", template).await;
            assert_eq!(body["trace_id"], "conformance-trace");
        }
    }

    async fn an_empty_feed_page_at_the_start_conforms_to_the_reference(app) {
        let token = app.sandbox_token("/feed/v1/consent", "client.access.consent.events").await;
        for from in [0, 1] {
            let path = format!("/feed/v1/consent?fromSequenceNr={from}&limit=10");
            let page = conforming(app.get_bearer(&path, &token).await, "get", "/feed/v1/consent").await;
            // Both bounds at least 1, as the schema says; no event is ever
            // number 1, so the next poll (endSequenceNr + 1) skips nothing.
            assert_eq!(page["startSequenceNr"], 1, "{page}");
            assert_eq!(page["endSequenceNr"], 1, "{page}");
            assert_eq!(page["result"], json!([]));
        }
        for path in ["/feed/v1/consent/firstSequenceNr", "/feed/v1/consent/lastSequenceNr"] {
            let bound = conforming(app.get_bearer(path, &token).await, "get", path).await;
            assert_eq!(bound.as_object().unwrap().values().next().unwrap(), 0, "{path}: 0 when there are no events");
        }
        // Once there are events, an empty page past the end conforms fully.
        app.agreement_consent(PERSON, "debt.unsecured.presentation", 30).await;
        let last = conforming(app.get_bearer("/feed/v1/consent/lastSequenceNr", &token).await, "get", "/feed/v1/consent/lastSequenceNr").await;
        let next = last["lastSequenceNr"].as_i64().unwrap() + 1;
        let page = conforming(app.get_bearer(&format!("/feed/v1/consent?fromSequenceNr={next}&limit=10"), &token).await, "get", "/feed/v1/consent").await;
        assert_eq!(page["result"], json!([]));
        assert_eq!(page["endSequenceNr"], next - 1);
    }
}
