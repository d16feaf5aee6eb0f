//! The consent event feed, the janitor, and sequence numbers across
//! processes.

use serde_json::Value;

use crate::debt_api::{
    assert_api_error, assert_invalid_access_token, send, BARE_CHALLENGE, INVALID_TOKEN_CHALLENGE,
    NOT_BEARER,
};
use crate::helpers::{spawn_app_on, TestApp};

/// The feed's operations: path, and the path as the OpenAPI templates it.
const FEED_OPERATIONS: [(&str, &str); 3] = [
    (
        "/feed/v1/consent?fromSequenceNr=1&limit=10",
        "/feed/v1/consent",
    ),
    (
        "/feed/v1/consent/firstSequenceNr",
        "/feed/v1/consent/firstSequenceNr",
    ),
    (
        "/feed/v1/consent/lastSequenceNr",
        "/feed/v1/consent/lastSequenceNr",
    ),
];

const PERSON: &str = "29868099311";

async fn feed(app: &TestApp, query: &str) -> Value {
    let token = app
        .sandbox_token("/feed/v1/consent", "client.access.consent.events")
        .await;
    let response = app
        .get_bearer(&format!("/feed/v1/consent?{query}"), &token)
        .await;
    assert_eq!(response.status(), 200, "{query}");
    response.json().await.unwrap()
}

fn sequence(feed: &Value) -> Vec<i64> {
    feed["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["sequenceNr"].as_i64().unwrap())
        .collect()
}

engine_tests! {
    async fn the_feed_pages_by_sequence_number_and_reports_its_bounds(app) {
        let empty = feed(&app, "fromSequenceNr=1&limit=10").await;
        assert_eq!(empty["result"], serde_json::json!([]));
        assert_eq!(empty["startSequenceNr"], 1);
        assert_eq!(empty["endSequenceNr"], 1, "the schema's minimum; no event is ever number 1, so the next poll (from 2) skips nothing");
        let token = app.sandbox_token("/feed/v1/consent", "client.access.consent.events").await;
        let first: Value = app.get_bearer("/feed/v1/consent/firstSequenceNr", &token).await.json().await.unwrap();
        assert_eq!(first, serde_json::json!({"firstSequenceNr": 0}));

        let mut ids = Vec::new();
        for _ in 0..5 {
            ids.push(app.agreement_consent(PERSON, "debt.unsecured.presentation", 30).await);
        }
        let all = feed(&app, "fromSequenceNr=0&limit=100").await;
        let seqs = sequence(&all);
        assert_eq!(seqs.len(), 5);
        assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
        let page = feed(&app, &format!("fromSequenceNr={}&limit=2", seqs[1])).await;
        assert_eq!(sequence(&page), seqs[1..3]);
        assert_eq!(page["startSequenceNr"], seqs[1]);
        assert_eq!(page["endSequenceNr"], seqs[2]);
        assert!(page["generatedAt"].as_str().unwrap().ends_with('Z'));
        let event = &page["result"][0];
        for key in ["sequenceNr", "eventId", "consentId", "timestamp", "eventType"] {
            assert!(!event[key].is_null(), "{key}");
        }
        let token = app.sandbox_token("/feed/v1/consent", "client.access.consent.events").await;
        let first: Value = app.get_bearer("/feed/v1/consent/firstSequenceNr", &token).await.json().await.unwrap();
        let last: Value = app.get_bearer("/feed/v1/consent/lastSequenceNr", &token).await.json().await.unwrap();
        assert_eq!(first["firstSequenceNr"], seqs[0]);
        assert_eq!(last["lastSequenceNr"], seqs[4]);
        let capped = feed(&app, "fromSequenceNr=0&limit=100000").await;
        assert_eq!(sequence(&capped), seqs, "a huge limit is capped, not refused");
    }

    async fn a_client_sees_only_its_own_events(app) {
        app.agreement_consent(PERSON, "debt.unsecured.presentation", 30).await;
        let (other, secret) = app.create_client(&["--name", "Other", "--org", "974760673", "--events"]);
        let audience = app.audience("/feed/v1/consent");
        let token: Value = app.post_form("/oauth2/token", (&other, &secret), &[("grant_type", "client_credentials"), ("audience", &audience), ("scope", "client.access.consent.events")]).await.json().await.unwrap();
        let theirs: Value = app.get_bearer("/feed/v1/consent?fromSequenceNr=0&limit=100", token["access_token"].as_str().unwrap()).await.json().await.unwrap();
        assert_eq!(theirs["result"], serde_json::json!([]));
        assert_eq!(sequence(&feed(&app, "fromSequenceNr=0&limit=100").await).len(), 1);
    }

    async fn bad_feed_requests_are_refused_in_the_error_shape(app) {
        let token = app.sandbox_token("/feed/v1/consent", "client.access.consent.events").await;
        for query in ["", "limit=10", "fromSequenceNr=1", "fromSequenceNr=x&limit=10", "fromSequenceNr=1&limit=0", "fromSequenceNr=1&limit=-5", "fromSequenceNr=-1&limit=5", "fromSequenceNr=1&fromSequenceNr=2&limit=5"] {
            let response = app.get_bearer(&format!("/feed/v1/consent?{query}"), &token).await;
            assert_eq!(response.status(), 400, "{query}");
            let body: Value = response.json().await.unwrap();
            assert_eq!(body["error"], "invalid_request");
            assert!(body["trace_id"].is_string() && body["timestamp"].is_string());
        }
        // A token of another audience: 403 insufficient_scope, as before.
        let debt_token = app.sandbox_token("/v1/debt", "debt.unsecured.presentation").await;
        for (path, _) in FEED_OPERATIONS {
            let response = app.get_bearer(path, &debt_token).await;
            assert!(response.headers()["www-authenticate"].to_str().unwrap().contains("error=\"insufficient_scope\""), "{path}");
            assert_api_error(response, 403, "insufficient_scope").await;
        }
    }

    async fn a_feed_call_without_a_bearer_token_is_403_invalid_access_token_with_a_bare_challenge(app) {
        for (path, template) in FEED_OPERATIONS {
            for authorization in [None, Some("Basic YmFuazpzZWNyZXQ=")] {
                let response = send(&app, &reqwest::Method::GET, path, authorization).await;
                let body = assert_invalid_access_token(response, BARE_CHALLENGE, "get", template).await;
                let expected = if authorization.is_some() { NOT_BEARER } else { "an access token is required" };
                assert_eq!(body["error_description"], expected);
            }
        }
    }

    async fn a_malformed_or_unknown_feed_token_is_403_invalid_access_token(app) {
        for (path, template) in FEED_OPERATIONS {
            for authorization in ["Bearer nonsense", "Bearer", "Bearer a b", "Bearer sc1.e30.AAAA"] {
                let response = send(&app, &reqwest::Method::GET, path, Some(authorization)).await;
                assert_invalid_access_token(response, INVALID_TOKEN_CHALLENGE, "get", template).await;
            }
        }
    }

    async fn an_expired_feed_token_is_403_invalid_access_token(app) {
        let token = app.sandbox_token("/feed/v1/consent", "client.access.consent.events").await;
        assert_eq!(app.get_bearer(FEED_OPERATIONS[0].0, &token).await.status(), 200);
        app.clock.advance(time::Duration::hours(1));
        for (path, template) in FEED_OPERATIONS {
            assert_invalid_access_token(app.get_bearer(path, &token).await, INVALID_TOKEN_CHALLENGE, "get", template).await;
        }
    }

    async fn a_revoked_feed_token_is_403_invalid_access_token(app) {
        let token = app.sandbox_token("/feed/v1/consent", "client.access.consent.events").await;
        assert_eq!(app.get_bearer(FEED_OPERATIONS[0].0, &token).await.status(), 200);
        let (client, secret) = app.sandbox_auth();
        assert_eq!(app.post_form("/oauth2/revoke", (&client, &secret), &[("token", &token)]).await.status(), 200);
        for (path, template) in FEED_OPERATIONS {
            assert_invalid_access_token(app.get_bearer(path, &token).await, INVALID_TOKEN_CHALLENGE, "get", template).await;
        }
        // The token is refused before the query is judged.
        assert_invalid_access_token(app.get_bearer("/feed/v1/consent?limit=0", &token).await, INVALID_TOKEN_CHALLENGE, "get", "/feed/v1/consent").await;
    }

    async fn the_janitor_expires_consents_with_an_event_and_purges_week_old_events(app) {
        let id = app.agreement_consent(PERSON, "debt.unsecured.processing", 2).await;
        let report = samtykke::janitor::run_once(app.store.as_ref(), &app.clock).await.unwrap();
        assert_eq!(report.consents_expired, 0);
        app.clock.advance(time::Duration::days(2));
        let report = samtykke::janitor::run_once(app.store.as_ref(), &app.clock).await.unwrap();
        assert_eq!(report.consents_expired, 1);
        let consent = app.store.find_consent(&samtykke_core::consent::ConsentId::parse(&id).unwrap()).await.unwrap().unwrap();
        assert_eq!(consent.status, samtykke_core::consent::ConsentStatus::Expired);
        let events = feed(&app, "fromSequenceNr=0&limit=100").await;
        let types: Vec<&str> = events["result"].as_array().unwrap().iter().map(|e| e["eventType"].as_str().unwrap()).collect();
        assert_eq!(types, ["SAMTYKKE_OPPRETTET", "SAMTYKKE_ARKIVERT"]);
        // A second pass finds nothing more to expire.
        assert_eq!(samtykke::janitor::run_once(app.store.as_ref(), &app.clock).await.unwrap().consents_expired, 0);
        // The creation event is 2 days old, the expiry event fresh: after 6
        // more days only the expiry event remains.
        app.clock.advance(time::Duration::days(6));
        let report = samtykke::janitor::run_once(app.store.as_ref(), &app.clock).await.unwrap();
        assert_eq!(report.events_purged, 1);
        let remaining = feed(&app, "fromSequenceNr=0&limit=100").await;
        assert_eq!(remaining["result"].as_array().unwrap().len(), 1);
        assert_eq!(remaining["result"][0]["eventType"], "SAMTYKKE_ARKIVERT");
    }
}

engine_db_tests! {
    async fn two_processes_keep_sequence_numbers_unique_and_growing_and_expire_each_consent_once(url) {
        let a = spawn_app_on(&url).await;
        let b = spawn_app_on(&url).await;
        let registrations = (0..12).map(|i| {
            let app = if i % 2 == 0 { &a } else { &b };
            app.agreement_consent(PERSON, "debt.unsecured.processing", 1)
        });
        futures::future::join_all(registrations).await;
        let seqs = sequence(&feed(&a, "fromSequenceNr=0&limit=1000").await);
        assert_eq!(seqs.len(), 12);
        assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
        a.clock.advance(time::Duration::days(1));
        b.clock.advance(time::Duration::days(1));
        let (ra, rb) = tokio::join!(
            samtykke::janitor::run_once(a.store.as_ref(), &a.clock),
            samtykke::janitor::run_once(b.store.as_ref(), &b.clock),
        );
        assert_eq!(ra.unwrap().consents_expired + rb.unwrap().consents_expired, 12);
        let after = feed(&b, "fromSequenceNr=0&limit=1000").await;
        let archived = after["result"].as_array().unwrap().iter().filter(|e| e["eventType"] == "SAMTYKKE_ARKIVERT").count();
        assert_eq!(archived, 12, "one expiry event per consent");
        let seqs = sequence(&after);
        assert!(seqs.windows(2).all(|w| w[0] < w[1]));
    }

    async fn a_reader_polling_during_registrations_on_two_processes_misses_no_event(url) {
        let a = spawn_app_on(&url).await;
        let b = spawn_app_on(&url).await;
        const TOTAL: usize = 40;
        let writing = futures::future::join_all((0..TOTAL).map(|i| {
            let app = if i % 2 == 0 { &a } else { &b };
            app.agreement_consent(PERSON, "debt.unsecured.processing", 1)
        }));
        // The reader follows the feed as a client would, fromSequenceNr =
        // last seen + 1, while the writers commit in parallel: a number
        // that became visible after a higher one would be skipped for good.
        let reading = async {
            let mut seen = Vec::new();
            let mut from = 0;
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
            while seen.len() < TOTAL && std::time::Instant::now() < deadline {
                let seqs = sequence(&feed(&b, &format!("fromSequenceNr={from}&limit=3")).await);
                if let Some(last) = seqs.last() {
                    from = last + 1;
                }
                seen.extend(seqs);
                tokio::time::sleep(std::time::Duration::from_millis(2)).await;
            }
            seen
        };
        let (_, seen) = tokio::join!(writing, reading);
        assert!(seen.windows(2).all(|w| w[0] < w[1]), "{seen:?}");
        let all = sequence(&feed(&a, "fromSequenceNr=0&limit=1000").await);
        assert_eq!(all.len(), TOTAL);
        assert_eq!(seen, all, "the polling reader saw every event, in order");
    }

    async fn an_event_committed_late_is_not_skipped_by_a_reader_that_saw_a_later_one(url) {
        // Only PostgreSQL runs writers in parallel; SQLite commits one at a time.
        if !url.starts_with("postgres") {
            return;
        }
        let app = spawn_app_on(&url).await;
        let pool = sqlx::PgPool::connect(&url).await.unwrap();
        // A slow writer: its event is written but not yet committed.
        let mut slow = pool.begin().await.unwrap();
        sqlx::query(
            "INSERT INTO consent_events_pending (event_id, event_type, client_id, consent_id, purpose, client_consent_id, created_at_us) \
             VALUES ('00000000-0000-4000-8000-0000000000e1', 'SAMTYKKE_OPPRETTET', $1, '00000000-0000-4000-8000-000000000001', 'processing', NULL, 1)",
        )
        .bind(app.sandbox.client_id.as_str())
        .execute(&mut *slow)
        .await
        .unwrap();
        // A fast writer commits meanwhile, and the reader sees its event.
        app.agreement_consent(PERSON, "debt.unsecured.processing", 1).await;
        let first = sequence(&feed(&app, "fromSequenceNr=0&limit=100").await);
        assert_eq!(first.len(), 1);
        // The slow writer commits: the reader continues after what it saw and
        // still gets the slow event.
        slow.commit().await.unwrap();
        let next = feed(&app, &format!("fromSequenceNr={}&limit=100", first[0] + 1)).await;
        assert_eq!(sequence(&next).len(), 1, "{next}");
        assert_eq!(next["result"][0]["consentId"], "00000000-0000-4000-8000-000000000001");
    }
}
