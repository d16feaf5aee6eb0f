//! `GET /metrics`: Prometheus text with per-route-template request counts and
//! latency histograms, the business counters and the pool gauges, on the
//! operator listener.

use samtykke_core::consent::{Consent, ConsentKind, ConsentScope};
use samtykke_core::domain::{Nin, NinPolicy};
use samtykke_core::Clock;

use crate::helpers::TestApp;

const PERSON: &str = "14842249091";

/// The value of the sample whose name and labels are exactly `series`.
fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no sample {series} in:\n{text}"))
        .parse()
        .unwrap()
}

fn http(route: &str, method: &str, status: u16) -> String {
    format!(r#"{{method="{method}",route="{route}",status="{status}"}}"#)
}

async fn scrape(app: &TestApp) -> String {
    let response = app
        .http
        .get(app.admin_url("/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["content-type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    response.text().await.unwrap()
}

/// A regular single-use consent of the sandbox client, stored directly (as
/// the authorization-code flow will create it).
async fn single_use_consent(app: &TestApp) -> String {
    let consent = Consent::new(
        app.sandbox.client_id.clone(),
        Nin::parse(PERSON, NinPolicy::AllowSynthetic).unwrap(),
        ConsentScope::parse("debt.unsecured.processing").unwrap(),
        ConsentKind::Regular,
        None,
        app.clock.now(),
    );
    app.store.insert_consent(&consent).await.unwrap();
    consent.id.to_string()
}

engine_tests! {
    async fn metrics_count_requests_by_route_template_status_and_business_event(app) {
        // Before any traffic the known series exist at 0.
        let text = scrape(&app).await;
        assert_eq!(sample(&text, r#"samtykke_tokens_issued_total{audience="debt",grant_type="client_credentials"}"#), 0.0);
        assert_eq!(sample(&text, r#"samtykke_consents_created_total{kind="agreement",purpose="debt.unsecured.presentation"}"#), 0.0);
        assert_eq!(sample(&text, &format!(r#"samtykke_build_info{{version="{}"}}"#, env!("CARGO_PKG_VERSION"))), 1.0);

        assert_eq!(app.http.get(app.url("/healthz")).send().await.unwrap().status(), 200);
        assert_eq!(app.http.post(app.url("/healthz")).send().await.unwrap().status(), 405);
        assert_eq!(app.http.get(app.url("/no/such/path")).send().await.unwrap().status(), 404);

        // Two agreement consents (a token each), one debt token.
        let duration = app.agreement_consent(PERSON, "debt.unsecured.presentation", 30).await;
        let other = app.agreement_consent(PERSON, "debt.unsecured.presentation", 30).await;
        let single = single_use_consent(&app).await;
        let debt = app
            .sandbox_token("/v1/debt", "debt.unsecured.presentation debt.unsecured.processing")
            .await;

        for _ in 0..2 {
            let r = app.get_bearer(&format!("/v1/debt/{duration}"), &debt).await;
            assert_eq!(r.status(), 200);
        }
        // The single-use consent serves once, then is consumed.
        assert_eq!(app.get_bearer(&format!("/v1/debt/{single}"), &debt).await.status(), 200);
        assert_eq!(app.get_bearer(&format!("/v1/debt/{single}"), &debt).await.status(), 403);
        let unknown = uuid::Uuid::new_v4().to_string();
        assert_eq!(app.get_bearer(&format!("/v1/debt/{unknown}"), &debt).await.status(), 403);

        // Revoking twice counts one revocation: the second is refused.
        for status in [204, 403] {
            let r = app.http.delete(app.url(&format!("/v1/debt/{other}"))).bearer_auth(&debt).send().await.unwrap();
            assert_eq!(r.status(), status);
        }

        let feed = app.sandbox_token("/feed/v1/consent", "client.access.consent.events").await;
        let r = app.get_bearer("/feed/v1/consent?fromSequenceNr=1&limit=100", &feed).await;
        assert_eq!(r.status(), 200);

        let text = scrape(&app).await;
        let count = |series: String| sample(&text, &format!("samtykke_http_requests_total{series}"));
        assert_eq!(count(http("/healthz", "GET", 200)), 1.0);
        assert_eq!(count(http("/healthz", "POST", 405)), 1.0);
        assert_eq!(count(http("unmatched", "GET", 404)), 1.0);
        assert_eq!(count(http("/oauth2/token", "POST", 200)), 4.0);
        assert_eq!(count(http("/v1/consent/agreement", "PUT", 200)), 2.0);
        assert_eq!(count(http("/v1/debt/{id}", "GET", 200)), 3.0);
        assert_eq!(count(http("/v1/debt/{id}", "GET", 403)), 2.0);
        assert_eq!(count(http("/v1/debt/{id}", "DELETE", 204)), 1.0);
        assert_eq!(count(http("/v1/debt/{id}", "DELETE", 403)), 1.0);
        assert_eq!(count(http("/feed/v1/consent", "GET", 200)), 1.0);
        // The first scrape is counted once it has answered.
        assert_eq!(count(http("/metrics", "GET", 200)), 1.0);

        // Raw paths never become labels.
        for raw in [duration.as_str(), single.as_str(), unknown.as_str(), "/no/such/path"] {
            assert!(!text.contains(raw), "{raw} leaked into the metrics");
        }

        // The latency histogram of the same series.
        let debt_ok = r#"method="GET",route="/v1/debt/{id}",status="200""#;
        assert_eq!(sample(&text, &format!("samtykke_http_request_duration_seconds_count{{{debt_ok}}}")), 3.0);
        assert_eq!(sample(&text, &format!(r#"samtykke_http_request_duration_seconds_bucket{{{debt_ok},le="+Inf"}}"#)), 3.0);
        assert_eq!(sample(&text, &format!(r#"samtykke_http_request_duration_seconds_bucket{{{debt_ok},le="5"}}"#)), 3.0);
        assert!(sample(&text, &format!("samtykke_http_request_duration_seconds_sum{{{debt_ok}}}")) > 0.0);
        assert!(text.contains("# TYPE samtykke_http_request_duration_seconds histogram"));
        assert!(text.contains("# TYPE samtykke_http_requests_total counter"));

        // Business counters.
        assert_eq!(sample(&text, r#"samtykke_tokens_issued_total{audience="consent_agreement",grant_type="client_credentials"}"#), 2.0);
        assert_eq!(sample(&text, r#"samtykke_tokens_issued_total{audience="debt",grant_type="client_credentials"}"#), 1.0);
        assert_eq!(sample(&text, r#"samtykke_tokens_issued_total{audience="consent_feed",grant_type="client_credentials"}"#), 1.0);
        assert_eq!(sample(&text, r#"samtykke_consents_created_total{kind="agreement",purpose="debt.unsecured.presentation"}"#), 2.0);
        assert_eq!(sample(&text, r#"samtykke_consents_revoked_total{by="client"}"#), 1.0);
        assert_eq!(sample(&text, r#"samtykke_consents_revoked_total{by="individual"}"#), 0.0);
        assert_eq!(sample(&text, r#"samtykke_consents_consumed_total{purpose="debt.unsecured.processing"}"#), 1.0);
        assert_eq!(sample(&text, r#"samtykke_consents_consumed_total{purpose="debt.unsecured.presentation"}"#), 0.0);
        assert_eq!(sample(&text, r#"samtykke_debt_lookups_total{purpose="debt.unsecured.presentation"}"#), 2.0);
        assert_eq!(sample(&text, r#"samtykke_debt_lookups_total{purpose="debt.unsecured.processing"}"#), 1.0);

        // Pool gauges.
        let size = sample(&text, "samtykke_db_pool_connections");
        let idle = sample(&text, "samtykke_db_pool_idle_connections");
        let max = sample(&text, "samtykke_db_pool_max_connections");
        assert!(size >= 1.0 && idle <= size && size <= max, "size {size} idle {idle} max {max}");
    }
}
