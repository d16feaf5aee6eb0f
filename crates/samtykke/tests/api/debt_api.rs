//! The debt API: lookups, the usage log, single use, status, revocation and
//! every error rule of SPEC §7.

use reqwest::Method;
use samtykke_core::consent::{Consent, ConsentKind, ConsentScope};
use samtykke_core::domain::{ApiAudience, ClientId, Nin, NinPolicy};
use samtykke_core::Clock;
use serde_json::{json, Value};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::helpers::{insert_token, TestApp};
use crate::schema::Checker;

const PERSON: &str = "14842249091";

/// The description of an `Authorization` header of another scheme than
/// `Bearer` (issue 23: it says so rather than "invalid, expired or revoked").
pub const NOT_BEARER: &str =
    "the Authorization header does not use the Bearer scheme: send `Authorization: Bearer <access token>`";

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
    let mut keys: Vec<&str> = body
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        ["error", "error_description", "timestamp", "trace_id"],
        "{body}"
    );
    assert!(body["error_description"].is_string());
    assert!(body["trace_id"].as_str().is_some_and(|t| !t.is_empty()));
    assert!(time::OffsetDateTime::parse(
        body["timestamp"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339
    )
    .is_ok());
    body
}

/// The challenge of a request without bearer credentials (RFC 6750 §3.1:
/// no error code).
pub(crate) const BARE_CHALLENGE: &str = "Bearer realm=\"samtykke\"";
/// The challenge of a request with a bad bearer token.
pub(crate) const INVALID_TOKEN_CHALLENGE: &str =
    "Bearer realm=\"samtykke\", error=\"invalid_token\"";

/// Checks an error body against the schema the published OpenAPI declares
/// for `method template` at `status`, or against its `error` schema where
/// it declares none (the feed declares no errors).
#[track_caller]
pub(crate) fn assert_documented_error(body: &Value, method: &str, template: &str, status: u16) {
    let checker = Checker::reference();
    let schema = match checker.response_schema(template, method, status) {
        Some(Some(schema)) => schema,
        _ => checker.schema("error"),
    };
    let errors = checker.check(body, schema);
    assert!(
        errors.is_empty(),
        "{method} {template} {status}: {errors:#?}\nin {body:#}"
    );
}

/// A 403 `Invalid access token` in the API's error shape, with the
/// `WWW-Authenticate` challenge `challenge`, as the published OpenAPI
/// documents it for `method template`.
pub(crate) async fn assert_invalid_access_token(
    response: reqwest::Response,
    challenge: &str,
    method: &str,
    template: &str,
) -> Value {
    let at = format!("{method} {template}");
    assert_eq!(
        response
            .headers()
            .get("www-authenticate")
            .map(|v| v.to_str().unwrap()),
        Some(challenge),
        "{at}"
    );
    assert_eq!(response.headers()["cache-control"], "no-store", "{at}");
    let body = assert_api_error(response, 403, "Invalid access token").await;
    assert_documented_error(&body, method, template, 403);
    body
}

/// Every operation of the debt API on consent `id`: method, path, and the
/// path as the OpenAPI templates it.
pub(crate) fn debt_operations(id: &str) -> Vec<(Method, String, &'static str)> {
    vec![
        (Method::GET, "/v1/debt".to_owned(), "/v1/debt"),
        (Method::GET, format!("/v1/debt/{id}"), "/v1/debt/{id}"),
        (
            Method::GET,
            format!("/v1/debt/{id}/status"),
            "/v1/debt/{id}/status",
        ),
        (Method::DELETE, format!("/v1/debt/{id}"), "/v1/debt/{id}"),
    ]
}

/// A request with the `Authorization` header `authorization`, if any.
pub(crate) async fn send(
    app: &TestApp,
    method: &Method,
    path: &str,
    authorization: Option<&str>,
) -> reqwest::Response {
    let request = app.http.request(method.clone(), app.url(path));
    let request = match authorization {
        Some(value) => request.header("authorization", value),
        None => request,
    };
    request.send().await.unwrap()
}

/// The lower-case method name, as the OpenAPI keys operations.
pub(crate) fn key(method: &Method) -> String {
    method.as_str().to_ascii_lowercase()
}

/// The published example's form of a consent's end, written out field by
/// field: `Consent expired at 2021-02-26T09:31:07.265053Z`.
fn end_message(how: &str, at: OffsetDateTime) -> String {
    let at = at.to_offset(time::UtcOffset::UTC);
    format!(
        "Consent {how} at {:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z",
        at.year(),
        u8::from(at.month()),
        at.day(),
        at.hour(),
        at.minute(),
        at.second(),
        at.microsecond()
    )
}

/// The instant in `Consent … at <instant>`, parsed.
fn told_instant(description: &str) -> OffsetDateTime {
    let (_, at) = description
        .rsplit_once(" at ")
        .unwrap_or_else(|| panic!("{description}"));
    OffsetDateTime::parse(at, &Rfc3339).unwrap_or_else(|e| panic!("{description}: {e}"))
}

/// `t` to the microsecond, as the store keeps an end.
fn to_micros(t: OffsetDateTime) -> OffsetDateTime {
    t.replace_nanosecond(t.microsecond() * 1000).unwrap()
}

/// Moves the test clock so that its instant has a non-zero microsecond
/// part: an end told only to the second would then differ.
fn off_the_second(app: &TestApp) -> OffsetDateTime {
    app.clock.advance(time::Duration::microseconds(654_321));
    if app.clock.now().microsecond() == 0 {
        app.clock.advance(time::Duration::microseconds(1));
    }
    app.clock.now()
}

/// A 403 `invalid consent` (or, on `GET /v1/debt`, `no valid consent`)
/// telling that the consent ended `how` at `at`.
async fn assert_ended(
    response: reqwest::Response,
    error: &str,
    how: &str,
    at: OffsetDateTime,
    method: &str,
    template: &str,
) {
    let body = assert_api_error(response, 403, error).await;
    assert_documented_error(&body, method, template, 403);
    let description = body["error_description"].as_str().unwrap();
    assert_eq!(description, end_message(how, at), "{method} {template}");
    assert_eq!(told_instant(description), to_micros(at));
}

/// A client-credentials token of client `(id, secret)`.
async fn client_token(
    app: &TestApp,
    (id, secret): (&str, &str),
    audience: &str,
    scope: &str,
) -> String {
    let audience = app.audience(audience);
    let body: Value = app
        .post_form(
            "/oauth2/token",
            (id, secret),
            &[
                ("grant_type", "client_credentials"),
                ("audience", &audience),
                ("scope", scope),
            ],
        )
        .await
        .json()
        .await
        .unwrap();
    body["access_token"].as_str().unwrap().to_owned()
}

/// The time of the feed's `SAMTYKKE_ARKIVERT` event of consent `id`.
async fn archived_at(app: &TestApp, id: &str) -> OffsetDateTime {
    let token = app
        .sandbox_token("/feed/v1/consent", "client.access.consent.events")
        .await;
    let feed: Value = app
        .get_bearer("/feed/v1/consent?fromSequenceNr=0&limit=1000", &token)
        .await
        .json()
        .await
        .unwrap();
    let events: Vec<&Value> = feed["result"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["consentId"] == id && e["eventType"] == "SAMTYKKE_ARKIVERT")
        .collect();
    assert_eq!(events.len(), 1, "{feed}");
    OffsetDateTime::parse(events[0]["timestamp"].as_str().unwrap(), &Rfc3339).unwrap()
}

engine_tests! {
    async fn a_call_without_a_bearer_token_is_403_invalid_access_token_with_a_bare_challenge(app) {
        let id = app.agreement_consent(PERSON, "debt.unsecured.presentation", 30).await;
        for (method, path, template) in debt_operations(&id) {
            // No header, or credentials of another scheme (RFC 6750 §3.1):
            // the same bare challenge, and a description that says which.
            for authorization in [None, Some("Basic YmFuazpzZWNyZXQ="), Some("Token abc"), Some("sc1.e30.AAAA")] {
                let response = send(&app, &method, &path, authorization).await;
                let body = assert_invalid_access_token(response, BARE_CHALLENGE, &key(&method), template).await;
                let expected = if authorization.is_some() { NOT_BEARER } else { "an access token is required" };
                assert_eq!(body["error_description"], expected, "{authorization:?}");
            }
        }
        let status: Value = app.get_bearer(&format!("/v1/debt/{id}/status"), &app.sandbox_token("/v1/debt", "debt.unsecured.presentation").await).await.json().await.unwrap();
        assert_eq!(status["active"], true, "the refused DELETEs revoked nothing");
    }

    async fn a_malformed_or_unknown_token_is_403_invalid_access_token(app) {
        let id = app.agreement_consent(PERSON, "debt.unsecured.presentation", 30).await;
        let long = format!("Bearer {}", "a".repeat(600));
        for (method, path, template) in debt_operations(&id) {
            for authorization in ["Bearer nonsense", "Bearer", "bearer  ", "Bearer a b", long.as_str(), "Bearer sc1.e30.AAAA"] {
                let response = send(&app, &method, &path, Some(authorization)).await;
                let body = assert_invalid_access_token(response, INVALID_TOKEN_CHALLENGE, &key(&method), template).await;
                assert_eq!(body["error_description"], "the access token is invalid, expired or revoked");
            }
        }
        // Non-ASCII bytes in the header are refused the same way, not a 5xx.
        let odd = reqwest::header::HeaderValue::from_bytes(b"Bearer \xff\xfe").unwrap();
        let response = app.http.get(app.url(&format!("/v1/debt/{id}"))).header("authorization", odd).send().await.unwrap();
        assert_invalid_access_token(response, INVALID_TOKEN_CHALLENGE, "get", "/v1/debt/{id}").await;
    }

    async fn an_expired_token_is_403_invalid_access_token(app) {
        let id = app.agreement_consent(PERSON, "debt.unsecured.presentation", 30).await;
        let token = app.sandbox_token("/v1/debt", "debt.unsecured.presentation").await;
        let (_, bound) = single_use_consent(&app).await;
        assert_eq!(app.get_bearer(&format!("/v1/debt/{id}/status"), &token).await.status(), 200);
        app.clock.advance(time::Duration::hours(1));
        for (method, path, template) in debt_operations(&id) {
            let response = send(&app, &method, &path, Some(&format!("Bearer {token}"))).await;
            assert_invalid_access_token(response, INVALID_TOKEN_CHALLENGE, &key(&method), template).await;
        }
        assert_invalid_access_token(app.get_bearer("/v1/debt", &bound).await, INVALID_TOKEN_CHALLENGE, "get", "/v1/debt").await;
        // Nothing was logged or revoked for the refused calls.
        let consent_id = samtykke_core::consent::ConsentId::parse(&id).unwrap();
        assert!(app.store.consent_usage(&consent_id).await.unwrap().is_empty());
        let fresh = app.sandbox_token("/v1/debt", "debt.unsecured.presentation").await;
        let status: Value = app.get_bearer(&format!("/v1/debt/{id}/status"), &fresh).await.json().await.unwrap();
        assert_eq!(status["active"], true);
    }

    async fn a_revoked_token_is_403_invalid_access_token_before_anything_else_is_judged(app) {
        let id = app.agreement_consent(PERSON, "debt.unsecured.presentation", 30).await;
        let token = app.sandbox_token("/v1/debt", "debt.unsecured.presentation").await;
        let (client, secret) = app.sandbox_auth();
        assert_eq!(app.post_form("/oauth2/revoke", (&client, &secret), &[("token", &token)]).await.status(), 200);
        for (method, path, template) in debt_operations(&id) {
            let response = send(&app, &method, &path, Some(&format!("Bearer {token}"))).await;
            assert_invalid_access_token(response, INVALID_TOKEN_CHALLENGE, &key(&method), template).await;
        }
        // The token is refused first, whatever else is wrong with the call.
        for path in ["/v1/debt/not-a-consent-id".to_owned(), format!("/v1/debt/{}", uuid::Uuid::new_v4())] {
            assert_invalid_access_token(app.get_bearer(&path, &token).await, INVALID_TOKEN_CHALLENGE, "get", "/v1/debt/{id}").await;
        }
        // A revoked token of another audience too.
        let agreement_token = app.sandbox_token("/v1/consent/agreement", "consent.create").await;
        app.post_form("/oauth2/revoke", (&client, &secret), &[("token", &agreement_token)]).await;
        assert_invalid_access_token(app.get_bearer(&format!("/v1/debt/{id}"), &agreement_token).await, INVALID_TOKEN_CHALLENGE, "get", "/v1/debt/{id}").await;
        // Nothing was logged or revoked for the refused calls.
        let consent_id = samtykke_core::consent::ConsentId::parse(&id).unwrap();
        assert!(app.store.consent_usage(&consent_id).await.unwrap().is_empty());
        let fresh = app.sandbox_token("/v1/debt", "debt.unsecured.presentation").await;
        let status: Value = app.get_bearer(&format!("/v1/debt/{id}/status"), &fresh).await.json().await.unwrap();
        assert_eq!(status["active"], true);
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

    async fn unknown_ids_and_other_clients_consents_in_any_state_get_one_identical_403(app) {
        // Another client's consents: active, revoked (by that client),
        // expired and consumed.
        let (other, other_secret) = app.create_client(&["--name", "Other", "--org", "974760673", "--agreement", "--purpose", "presentation"]);
        let other = (other.as_str(), other_secret.as_str());
        let register = client_token(&app, other, "/v1/consent/agreement", "consent.create").await;
        let theirs = |days: i64, ccid: &'static str| {
            let request = app.http.put(app.url("/v1/consent/agreement")).bearer_auth(&register)
                .json(&json!({"nin": PERSON, "scope_of_consent": "debt.unsecured.presentation", "consent_duration_days": days, "client_consent_id": ccid}));
            async move {
                let body: Value = request.send().await.unwrap().json().await.unwrap();
                body["consent"]["id"].as_str().unwrap().to_owned()
            }
        };
        let active = theirs(5, "theirs-active").await;
        let revoked = theirs(5, "theirs-revoked").await;
        let their_debt_token = client_token(&app, other, "/v1/debt", "debt.unsecured.presentation").await;
        let deleted = app.http.delete(app.url(&format!("/v1/debt/{revoked}"))).bearer_auth(&their_debt_token).send().await.unwrap();
        assert_eq!(deleted.status(), 204);
        let expiring = theirs(1, "theirs-expiring").await;
        let mut consumed = Consent::new(
            ClientId::parse(other.0).unwrap(),
            Nin::parse(PERSON, NinPolicy::AllowSynthetic).unwrap(),
            ConsentScope::parse("debt.unsecured.presentation").unwrap(),
            ConsentKind::Regular,
            None,
            app.clock.now(),
        );
        consumed.status = samtykke_core::consent::ConsentStatus::Consumed;
        consumed.ended_at = Some(app.clock.now());
        app.store.insert_consent(&consumed).await.unwrap();
        app.clock.advance(time::Duration::days(1));
        let token_after = app.sandbox_token("/v1/debt", "debt.unsecured.presentation debt.unsecured.processing").await;

        let ids = [
            uuid::Uuid::new_v4().to_string(),
            "not-a-uuid".to_owned(),
            active.clone(),
            revoked,
            expiring,
            consumed.id.to_string(),
        ];
        let mut answers = Vec::new();
        for id in &ids {
            for method in [Method::GET, Method::DELETE] {
                let response = send(&app, &method, &format!("/v1/debt/{id}"), Some(&format!("Bearer {token_after}"))).await;
                assert!(response.headers().get("www-authenticate").is_none(), "{method} {id}");
                let mut body = assert_api_error(response, 403, "invalid consent").await;
                assert_documented_error(&body, &key(&method), "/v1/debt/{id}", 403);
                body.as_object_mut().unwrap().remove("trace_id");
                body.as_object_mut().unwrap().remove("timestamp");
                answers.push((format!("{method} {id}"), body));
            }
        }
        assert_eq!(answers[0].1, json!({"error": "invalid consent", "error_description": "no valid consent with this id"}));
        for (call, body) in &answers {
            assert_eq!(body, &answers[0].1, "{call}: {answers:?}");
        }
        // The status of an unknown and of another client's consent: one answer too.
        let status_of = |id: String| {
            let request = app.http.get(app.url(&format!("/v1/debt/{id}/status"))).bearer_auth(&token_after);
            async move {
                let mut body = assert_api_error(request.send().await.unwrap(), 403, "invalid consent").await;
                body.as_object_mut().unwrap().remove("trace_id");
                body.as_object_mut().unwrap().remove("timestamp");
                body
            }
        };
        assert_eq!(status_of(active.clone()).await, answers[0].1);
        assert_eq!(status_of(uuid::Uuid::new_v4().to_string()).await, answers[0].1);
        // The other client's DELETE attempts changed nothing.
        let their_debt_token = client_token(&app, other, "/v1/debt", "debt.unsecured.presentation").await;
        let theirs_status: Value = app.get_bearer(&format!("/v1/debt/{active}/status"), &their_debt_token).await.json().await.unwrap();
        assert_eq!(theirs_status["active"], true);
    }

    async fn the_callers_own_expired_consent_is_refused_with_its_expiry_time(app) {
        let id = app.agreement_consent(PERSON, "debt.unsecured.processing", 1).await;
        let token = app.sandbox_token("/v1/debt", "debt.unsecured.processing").await;
        let status: Value = app.get_bearer(&format!("/v1/debt/{id}/status"), &token).await.json().await.unwrap();
        let expires_at = OffsetDateTime::from_unix_timestamp(status["expires_at"].as_i64().unwrap()).unwrap();
        app.clock.advance(time::Duration::days(1));
        let token = app.sandbox_token("/v1/debt", "debt.unsecured.processing").await;
        // Before and after the janitor has marked it expired.
        for janitor in [false, true] {
            if janitor {
                assert_eq!(samtykke::janitor::run_once(app.store.as_ref(), &app.clock).await.unwrap().consents_expired, 1);
            }
            app.clock.advance(time::Duration::seconds(7));
            assert_ended(app.get_bearer(&format!("/v1/debt/{id}"), &token).await, "invalid consent", "expired", expires_at, "get", "/v1/debt/{id}").await;
            let delete = app.http.delete(app.url(&format!("/v1/debt/{id}"))).bearer_auth(&token).send().await.unwrap();
            assert_ended(delete, "invalid consent", "expired", expires_at, "delete", "/v1/debt/{id}").await;
            // The status stays 200 {active: false}, as the OpenAPI documents.
            let status: Value = app.get_bearer(&format!("/v1/debt/{id}/status"), &token).await.json().await.unwrap();
            assert_eq!(status, json!({"active": false, "expires_at": expires_at.unix_timestamp()}));
        }
        let consent_id = samtykke_core::consent::ConsentId::parse(&id).unwrap();
        let stored = app.store.find_consent(&consent_id).await.unwrap().unwrap();
        assert_eq!(stored.status, samtykke_core::consent::ConsentStatus::Expired, "the DELETE did not revoke it");
    }

    async fn the_callers_own_consumed_consent_is_refused_with_the_time_of_its_use(app) {
        let (id, bound) = single_use_consent(&app).await;
        let used_at = off_the_second(&app);
        assert_eq!(app.get_bearer("/v1/debt", &bound).await.status(), 200);
        assert_eq!(archived_at(&app, &id).await, to_micros(used_at), "the feed's event of the consumption");
        app.clock.advance(time::Duration::seconds(3));
        let cc = app.sandbox_token("/v1/debt", "debt.unsecured.presentation").await;
        assert_ended(app.get_bearer(&format!("/v1/debt/{id}"), &cc).await, "invalid consent", "consumed", used_at, "get", "/v1/debt/{id}").await;
        // GET /v1/debt keeps the error of the reference's example for that
        // operation, and tells the reason too.
        assert_ended(app.get_bearer("/v1/debt", &bound).await, "no valid consent", "consumed", used_at, "get", "/v1/debt").await;
        let delete = app.http.delete(app.url(&format!("/v1/debt/{id}"))).bearer_auth(&cc).send().await.unwrap();
        assert_ended(delete, "invalid consent", "consumed", used_at, "delete", "/v1/debt/{id}").await;
        let status: Value = app.get_bearer(&format!("/v1/debt/{id}/status"), &cc).await.json().await.unwrap();
        assert_eq!(status["active"], false);
        let consent_id = samtykke_core::consent::ConsentId::parse(&id).unwrap();
        assert_eq!(app.store.consent_usage(&consent_id).await.unwrap().len(), 1);
    }

    async fn revoking_is_204_once_and_then_403_with_the_time_of_the_revocation(app) {
        let id = app.agreement_consent(PERSON, "debt.unsecured.presentation", 30).await;
        let token = app.sandbox_token("/v1/debt", "debt.unsecured.presentation").await;
        let revoked_at = off_the_second(&app);
        let first = app.http.delete(app.url(&format!("/v1/debt/{id}"))).bearer_auth(&token).send().await.unwrap();
        assert_eq!(first.status(), 204);
        assert_eq!(archived_at(&app, &id).await, to_micros(revoked_at), "the feed's event of the revocation");
        // Right after, and later: the time of the revocation, not of the call.
        for later in [0, 90] {
            app.clock.advance(time::Duration::seconds(later));
            let again = app.http.delete(app.url(&format!("/v1/debt/{id}"))).bearer_auth(&token).send().await.unwrap();
            assert_ended(again, "invalid consent", "revoked", revoked_at, "delete", "/v1/debt/{id}").await;
            assert_ended(app.get_bearer(&format!("/v1/debt/{id}"), &token).await, "invalid consent", "revoked", revoked_at, "get", "/v1/debt/{id}").await;
        }
        let status: Value = app.get_bearer(&format!("/v1/debt/{id}/status"), &token).await.json().await.unwrap();
        assert_eq!(status["active"], false);
    }

    async fn of_concurrent_deletes_of_one_active_consent_one_revokes_and_the_others_are_told_it_is_revoked(app) {
        let token = app.sandbox_token("/v1/debt", "debt.unsecured.presentation").await;
        for _ in 0..3 {
            let id = app.agreement_consent(PERSON, "debt.unsecured.presentation", 30).await;
            let revoked_at = off_the_second(&app);
            let requests: Vec<_> = (0..8).map(|_| {
                let request = app.http.delete(app.url(&format!("/v1/debt/{id}"))).bearer_auth(&token);
                tokio::spawn(async move { request.send().await.unwrap() })
            }).collect();
            let mut revoked = 0;
            for request in requests {
                let response = request.await.unwrap();
                if response.status() == 204 {
                    revoked += 1;
                } else {
                    assert_ended(response, "invalid consent", "revoked", revoked_at, "delete", "/v1/debt/{id}").await;
                }
            }
            assert_eq!(revoked, 1);
            archived_at(&app, &id).await;
        }
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
            let used_at = off_the_second(&app);
            let requests: Vec<_> = (0..16).map(|_| {
                let http = app.http.clone();
                let url = app.url("/v1/debt");
                let bound = bound.clone();
                tokio::spawn(async move { http.get(url).bearer_auth(bound).send().await.unwrap() })
            }).collect();
            let mut statuses = Vec::new();
            for r in requests {
                let response = r.await.unwrap();
                statuses.push(response.status().as_u16());
                // The losers, also those that read the consent while it was
                // still active, are told when the winner consumed it.
                if response.status() != 200 {
                    assert_ended(response, "no valid consent", "consumed", used_at, "get", "/v1/debt").await;
                }
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
        let deleted = app.http.delete(app.url(&format!("/v1/debt/{id}"))).bearer_auth(&mine).send().await.unwrap();
        assert_eq!(deleted.status(), 204);
        let again = app.http.delete(app.url(&format!("/v1/debt/{id}"))).bearer_auth(&mine).send().await.unwrap();
        assert_ended(again, "invalid consent", "revoked", app.clock.now(), "delete", "/v1/debt/{id}").await;
    }

    async fn revoking_a_consent_revokes_the_tokens_bound_to_it(app) {
        let (id, bound) = single_use_consent(&app).await;
        let cc = app.sandbox_token("/v1/debt", "debt.unsecured.presentation").await;
        assert_eq!(app.http.delete(app.url(&format!("/v1/debt/{id}"))).bearer_auth(&cc).send().await.unwrap().status(), 204);
        assert_invalid_access_token(app.get_bearer("/v1/debt", &bound).await, INVALID_TOKEN_CHALLENGE, "get", "/v1/debt").await;
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
        assert_invalid_access_token(app.get_bearer(&format!("/v1/debt/{}", uuid::Uuid::new_v4()), token).await, INVALID_TOKEN_CHALLENGE, "get", "/v1/debt/{id}").await;
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
            cases.push((served, revoked.clone(), Expect::Refused(403, "Invalid access token")));
            cases.push((uuid::Uuid::new_v4().to_string(), revoked.clone(), Expect::Refused(403, "Invalid access token")));
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
