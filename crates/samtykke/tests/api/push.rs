//! pushUpdates (issue 21): `POST /push/rest/v1/debt/loans` on the delivery
//! listener, over real mutual TLS with certificates of the suite's test CA.
//! Who may push is decided by the client certificate's
//! `organizationIdentifier` (`NTRNO-<org>`); what is pushed is served by the
//! next `GET /v1/debt/{id}`; a refused push changes nothing.

use std::time::Duration;

use reqwest::StatusCode;
use samtykke::config::{DeliverySettings, SandboxSetting, ServeConfig};
use samtykke_core::creditor::{Creditor, CreditorEndpoint, FinancialInstitutionId};
use samtykke_core::domain::OrgNumber;
use samtykke_core::Clock;
use serde_json::{json, Value};

use crate::helpers::{
    fresh_database_url, run_cli, serve_config, spawn_app_configured, Engine, TestApp,
};
use crate::schema::assert_conforms;
use crate::test_ca::{Issued, TestCa};

const PUSH_PATH: &str = "/push/rest/v1/debt/loans";

/// Nordlys Bank (not the sandbox's): its own certificate.
const NORDLYS: &str = "916000049";
/// An IT provider running the integration of Fjordkreditt and Vestkyst.
const PROVIDER: &str = "920013015";
const FJORDKREDITT: &str = "916000006";
const VESTKYST: &str = "916000014";
/// Registered, disabled.
const DORMANT: &str = "916000022";
/// Not registered.
const STRANGER: &str = "916000030";

const PERSON: &str = "15038510190";
const OTHER_PERSON: &str = "02079110046";

/// A sandbox server with the delivery listener on, its test CA, and the
/// creditors above registered.
struct PushApp {
    app: TestApp,
    ca: TestCa,
    delivery: String,
}

async fn spawn_push_app(engine: Engine) -> Option<PushApp> {
    let url = fresh_database_url(engine).await?;
    let ca = TestCa::new();
    let server = ca.server_cert("samtykke-delivery");
    let config = ServeConfig {
        delivery: Some(DeliverySettings {
            listen: "127.0.0.1:0".parse().unwrap(),
            tls_cert: server.cert_path.clone(),
            tls_key: server.key_path.clone(),
            client_ca: ca.ca_path.clone(),
        }),
        ..serve_config(&url, SandboxSetting::On)
    };
    let app = spawn_app_configured(&url, config).await.owning(url);
    let delivery = app.delivery_base.clone().expect("the delivery listener");
    let now = app.clock.now();
    for (org, name, certificate_org, enabled) in [
        (NORDLYS, "Nordlys Sparebank", None, true),
        (FJORDKREDITT, "Fjordkreditt AS", Some(PROVIDER), true),
        (VESTKYST, "Vestkyst Sparebank", Some(PROVIDER), true),
        (DORMANT, "Sovende Finans AS", None, false),
    ] {
        let creditor = Creditor {
            id: FinancialInstitutionId::parse(org).unwrap(),
            name: name.to_owned(),
            // Nothing answers there: lookups serve the stored data.
            endpoint: CreditorEndpoint::parse("https://127.0.0.1:9/", false).unwrap(),
            timeout: Duration::from_millis(500),
            max_concurrent: None,
            certificate_org: certificate_org.map(|o| OrgNumber::parse(o).unwrap()),
            always_ask: false,
            enabled,
            page_size: None,
            created_at: now,
        };
        app.store.insert_creditor(&creditor).await.unwrap();
    }
    Some(PushApp { app, ca, delivery })
}

/// Like `engine_tests!`, with a [`PushApp`].
macro_rules! push_tests {
    ($(async fn $name:ident($app:ident) $body:block)*) => {
        $(
            mod $name {
                #[allow(unused_imports)]
                use super::*;

                #[tokio::test]
                async fn sqlite() {
                    if let Some($app) = spawn_push_app(Engine::Sqlite).await $body
                }

                #[tokio::test]
                async fn postgres() {
                    if let Some($app) = spawn_push_app(Engine::Postgres).await $body
                }
            }
        )*
    };
}

impl PushApp {
    /// A client presenting `identity` (or no certificate), trusting the CA.
    fn client(&self, identity: Option<&Issued>) -> reqwest::Client {
        self.ca.client(identity)
    }

    fn url(&self) -> String {
        format!("{}{PUSH_PATH}", self.delivery)
    }

    /// Pushes `body` with the certificate of organisation `org`.
    async fn push_as(&self, org: &str, body: &Value) -> reqwest::Response {
        let identity = self.ca.client_cert(&format!("creditor {org}"), org);
        self.client(Some(&identity))
            .post(self.url())
            .header("X-Trace-ID", format!("push-{org}"))
            .json(body)
            .send()
            .await
            .expect("push")
    }

    /// The person's loans through the debt API, as `(creditorName, accountless loan)`.
    async fn debt(&self, nin: &str) -> Value {
        let app = &self.app;
        let id = app
            .agreement_consent(nin, "debt.unsecured.presentation", 30)
            .await;
        let token = app
            .sandbox_token("/v1/debt", "debt.unsecured.presentation")
            .await;
        let response = app.get_bearer(&format!("/v1/debt/{id}"), &token).await;
        assert_eq!(response.status(), 200);
        let mut debt: Value = response.json().await.unwrap();
        assert_conforms(&debt, "debt_information");
        debt["loans"]
            .as_array_mut()
            .unwrap()
            .sort_by_key(|l| (l["creditorName"].to_string(), l["loan"].to_string()));
        debt["loans"].clone()
    }

    async fn metrics(&self) -> String {
        self.app
            .http
            .get(self.app.admin_url("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }
}

fn card(account: &str, balance: i64) -> Value {
    json!({
        "type": "chargeCard",
        "accountID": account,
        "timestamp": "2026-12-05T08:00:00Z",
        "coBorrower": 0,
        "interestBearingBalance": balance,
        "nonInterestBearingBalance": 0
    })
}

fn served(loan: &Value) -> Value {
    let mut loan = loan.clone();
    loan.as_object_mut().unwrap().remove("accountID");
    loan
}

fn delivery(provider: &str, customers: Value) -> Value {
    json!({"providerID": format!("9908:{provider}"), "customers": customers})
}

fn customer(nin: &str, fi: &str, loans: Value) -> Value {
    json!({"customerID": nin, "financialInstitutionID": fi, "loans": loans})
}

/// Asserts the documented error shape; returns `error_description`.
async fn assert_push_error(
    response: reqwest::Response,
    status: u16,
    error: &str,
    trace_id: &str,
) -> String {
    assert_eq!(response.status().as_u16(), status);
    assert_eq!(response.headers()["cache-control"], "no-store");
    assert_eq!(response.headers()["x-trace-id"], trace_id);
    let body: Value = response.json().await.unwrap();
    let keys: Vec<&str> = body
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        ["error", "error_description", "timestamp", "trace_id"],
        "{body}"
    );
    assert_eq!(body["error"], error, "{body}");
    assert_eq!(body["trace_id"], trace_id);
    time::OffsetDateTime::parse(
        body["timestamp"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    let description = body["error_description"].as_str().unwrap().to_owned();
    assert!(
        !description.contains(PERSON) && !description.contains(OTHER_PERSON),
        "{description}"
    );
    description
}

push_tests! {
    async fn a_push_with_a_good_certificate_is_served_by_the_next_lookup(t) {
        assert_eq!(t.debt(PERSON).await, json!([]));
        let first = card("NB-1", 125_000);
        let response = t
            .push_as(NORDLYS, &delivery(NORDLYS, json!([customer(PERSON, NORDLYS, json!([first]))])))
            .await;
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["x-trace-id"], format!("push-{NORDLYS}"));
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["providerID"], format!("9908:{NORDLYS}"));
        assert_eq!(body["financialInstitutionIDs"], json!([NORDLYS]));
        assert_eq!((body["customers"].as_u64(), body["loans"].as_u64()), (Some(1), Some(1)));
        assert_eq!(body["trace_id"], format!("push-{NORDLYS}"));
        assert_eq!(
            t.debt(PERSON).await,
            json!([{"creditorName": "Nordlys Sparebank", "loan": served(&first)}])
        );

        // A second push replaces that customer's loans there; another
        // customer's are untouched; `"loans": []` closes them all.
        let second = card("NB-2", 9_900);
        let other = card("NB-3", 1);
        let response = t
            .push_as(NORDLYS, &delivery(NORDLYS, json!([
                customer(PERSON, NORDLYS, json!([second])),
                customer(OTHER_PERSON, NORDLYS, json!([other])),
            ])))
            .await;
        assert_eq!(response.status(), 200);
        assert_eq!(
            t.debt(PERSON).await,
            json!([{"creditorName": "Nordlys Sparebank", "loan": served(&second)}])
        );
        let response = t
            .push_as(NORDLYS, &delivery(NORDLYS, json!([customer(PERSON, NORDLYS, json!([]))])))
            .await;
        assert_eq!(response.status(), 200);
        assert_eq!(t.debt(PERSON).await, json!([]));
        assert_eq!(
            t.debt(OTHER_PERSON).await,
            json!([{"creditorName": "Nordlys Sparebank", "loan": served(&other)}])
        );

        let metrics = t.metrics().await;
        assert!(metrics.contains(r#"samtykke_push_requests_total{outcome="accepted"} 3"#), "{metrics}");
        assert!(metrics.contains("samtykke_push_customers_total 4"), "{metrics}");
        assert!(metrics.contains("samtykke_push_loans_total 3"), "{metrics}");
    }

    async fn another_institutions_certificate_may_not_push_its_financial_institution_id(t) {
        // Fjordkreditt's IT provider pushing for Nordlys Bank, alone and
        // beside a customer of its own: refused whole.
        for customers in [
            json!([customer(PERSON, NORDLYS, json!([card("X-1", 100)]))]),
            json!([
                customer(PERSON, FJORDKREDITT, json!([card("FK-1", 100)])),
                customer(PERSON, NORDLYS, json!([card("X-1", 100)])),
            ]),
        ] {
            let response = t.push_as(PROVIDER, &delivery(PROVIDER, customers)).await;
            let description = assert_push_error(response, 403, "forbidden", &format!("push-{PROVIDER}")).await;
            assert!(description.contains(&format!("may not push for financialInstitutionID {NORDLYS}")), "{description}");
        }
        // Nordlys Bank's own certificate, naming the IT provider as providerID.
        let response = t
            .push_as(NORDLYS, &delivery(PROVIDER, json!([customer(PERSON, NORDLYS, json!([card("X-1", 100)]))])))
            .await;
        let description = assert_push_error(response, 403, "forbidden", &format!("push-{NORDLYS}")).await;
        assert!(description.contains("providerID"), "{description}");
        assert_eq!(t.debt(PERSON).await, json!([]), "nothing was stored");
        assert!(t.metrics().await.contains(r#"samtykke_push_requests_total{outcome="forbidden"} 3"#));
    }

    async fn an_unregistered_organisation_or_a_certificate_without_one_is_refused(t) {
        let body = delivery(STRANGER, json!([customer(PERSON, STRANGER, json!([card("S-1", 100)]))]));
        let response = t.push_as(STRANGER, &body).await;
        let description = assert_push_error(response, 401, "unauthorized", &format!("push-{STRANGER}")).await;
        assert!(description.contains(&format!("organisation {STRANGER}")), "{description}");
        assert!(description.contains("not a registered creditor"), "{description}");

        // A certificate of the trusted CA without organizationIdentifier, or
        // with one that is not NTRNO-<valid organisation number>.
        for identifier in [None, Some("VATSE-5560000000"), Some("NTRNO-923456784")] {
            let identity = t.ca.client_cert_with_identifier("no org", identifier);
            let response = t
                .client(Some(&identity))
                .post(t.url())
                .header("X-Trace-ID", "t-1")
                .json(&body)
                .send()
                .await
                .unwrap();
            let description = assert_push_error(response, 401, "unauthorized", "t-1").await;
            assert!(description.contains("organizationIdentifier"), "{description}");
        }
        assert_eq!(t.debt(PERSON).await, json!([]));
    }

    async fn no_certificate_or_one_from_an_unknown_ca_fails_the_handshake(t) {
        let body = delivery(NORDLYS, json!([customer(PERSON, NORDLYS, json!([card("NB-1", 100)]))]));
        let error = t.client(None).post(t.url()).json(&body).send().await.unwrap_err();
        assert!(error.is_connect() || error.is_request(), "{error:?}");
        // Nordlys Bank's organisation number, but issued by another CA.
        let other = TestCa::named("Another CA");
        let impostor = other.client_cert("Nordlys Sparebank", NORDLYS);
        let error = t.client(Some(&impostor)).post(t.url()).json(&body).send().await.unwrap_err();
        assert!(error.is_connect() || error.is_request(), "{error:?}");
        assert_eq!(t.debt(PERSON).await, json!([]));
        let metrics = t.metrics().await;
        assert!(metrics.contains(r#"samtykke_push_handshake_failures_total{reason="no_certificate"} 1"#), "{metrics}");
        assert!(metrics.contains(r#"samtykke_push_handshake_failures_total{reason="bad_certificate"} 1"#), "{metrics}");
    }

    async fn invalid_data_is_rejected_whole(t) {
        let good = customer(PERSON, NORDLYS, json!([card("NB-1", 100)]));
        let mut negative = card("NB-2", 100);
        negative["interestBearingBalance"] = json!(-1);
        let mut no_co_borrower = card("NB-3", 100);
        no_co_borrower.as_object_mut().unwrap().remove("coBorrower");
        let cases = [
            (customer("15038510191", NORDLYS, json!([])), "control digits"),
            (customer(OTHER_PERSON, NORDLYS, json!([negative])), "interestBearingBalance"),
            (customer(OTHER_PERSON, NORDLYS, json!([no_co_borrower])), "coBorrower"),
            (customer(PERSON, NORDLYS, json!([card("NB-9", 5)])), "customer"),
        ];
        for (bad, expected) in cases {
            let body = delivery(NORDLYS, json!([good.clone(), bad]));
            let response = t.push_as(NORDLYS, &body).await;
            let description = assert_push_error(response, 400, "invalid_request", &format!("push-{NORDLYS}")).await;
            assert!(description.contains("nothing was stored"), "{description}");
            assert!(description.contains("line "), "{description}");
            assert!(description.to_lowercase().contains(&expected.to_lowercase()), "{expected}: {description}");
        }
        for body in ["{\"providerID\": ", "[]", "{\"customers\": []}"] {
            let identity = t.ca.client_cert("Nordlys Sparebank", NORDLYS);
            let response = t.client(Some(&identity)).post(t.url()).body(body).send().await.unwrap();
            assert_eq!(response.status(), 400, "{body}");
        }
        assert_eq!(t.debt(PERSON).await, json!([]), "nothing was stored");
        assert!(t.metrics().await.contains(r#"samtykke_push_requests_total{outcome="invalid"} 7"#));
    }

    async fn a_disabled_creditor_may_not_push(t) {
        let response = t
            .push_as(DORMANT, &delivery(DORMANT, json!([customer(PERSON, DORMANT, json!([card("D-1", 100)]))])))
            .await;
        let description = assert_push_error(response, 403, "forbidden", &format!("push-{DORMANT}")).await;
        assert!(description.contains("disabled"), "{description}");
        assert_eq!(t.debt(PERSON).await, json!([]));
    }

    async fn an_it_provider_pushes_for_the_two_institutions_it_serves(t) {
        let fjord = card("FK-1", 4_000);
        let vest = card("VS-1", 7_000);
        let response = t
            .push_as(PROVIDER, &delivery(PROVIDER, json!([
                customer(PERSON, FJORDKREDITT, json!([fjord])),
                customer(PERSON, VESTKYST, json!([vest])),
            ])))
            .await;
        assert_eq!(response.status(), 200);
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["financialInstitutionIDs"], json!([FJORDKREDITT, VESTKYST]));
        assert_eq!(
            t.debt(PERSON).await,
            json!([
                {"creditorName": "Fjordkreditt AS", "loan": served(&fjord)},
                {"creditorName": "Vestkyst Sparebank", "loan": served(&vest)},
            ])
        );
        // An institution's own number as providerID is fine too.
        let response = t
            .push_as(PROVIDER, &delivery(VESTKYST, json!([customer(PERSON, VESTKYST, json!([]))])))
            .await;
        assert_eq!(response.status(), 200);
        assert_eq!(
            t.debt(PERSON).await,
            json!([{"creditorName": "Fjordkreditt AS", "loan": served(&fjord)}])
        );
    }
}

/// One engine is enough for the HTTP details of the listener.
#[tokio::test]
async fn the_listener_speaks_http2_and_http11_and_serves_only_the_push_route() {
    let t = spawn_push_app(Engine::Sqlite).await.unwrap();
    let identity = t.ca.client_cert("Nordlys Sparebank", NORDLYS);
    let body = delivery(
        NORDLYS,
        json!([customer(PERSON, NORDLYS, json!([card("NB-1", 1)]))]),
    );
    // reqwest offers h2 and http/1.1 by ALPN: the server picks HTTP/2.
    let response = t
        .client(Some(&identity))
        .post(t.url())
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(
        (response.status(), response.version()),
        (StatusCode::OK, reqwest::Version::HTTP_2)
    );
    let http1 = reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(t.ca.reqwest_root())
        .identity(identity.reqwest_identity())
        .http1_only()
        .build()
        .unwrap();
    let response = http1.post(t.url()).json(&body).send().await.unwrap();
    assert_eq!(
        (response.status(), response.version()),
        (StatusCode::OK, reqwest::Version::HTTP_11)
    );

    let client = t.client(Some(&identity));
    let response = client
        .get(t.url())
        .header("X-Trace-ID", "t-2")
        .send()
        .await
        .unwrap();
    assert_push_error(response, 405, "method_not_allowed", "t-2").await;
    for path in [
        "/v1/debt",
        "/oauth2/token",
        "/metrics",
        "/push/rest/v1/debt/loans/x",
    ] {
        let response = client
            .post(format!("{}{path}", t.delivery))
            .header("X-Trace-ID", "t-3")
            .send()
            .await
            .unwrap();
        assert_push_error(response, 404, "not_found", "t-3").await;
    }
    // The public listener has no push route.
    let response = t
        .app
        .http
        .post(t.app.url(PUSH_PATH))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);

    // Over the size limit: 413, nothing read further.
    let big = vec![b' '; 16 * 1024 * 1024 + 1];
    let response = http1
        .post(t.url())
        .header("X-Trace-ID", "t-4")
        .body(big)
        .send()
        .await
        .unwrap();
    assert_push_error(response, 413, "payload_too_large", "t-4").await;
}

#[tokio::test]
async fn serve_refuses_a_delivery_listener_without_its_three_files() {
    let url = fresh_database_url(Engine::Sqlite).await.unwrap();
    let output = run_cli(
        &url,
        &[
            "serve",
            "--admin-listen",
            "off",
            "--listen",
            "127.0.0.1:0",
            "--delivery-listen",
            "127.0.0.1:0",
            "--delivery-tls-cert",
            "server.pem",
        ],
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("--delivery-listen needs --delivery-tls-cert, --delivery-tls-key and --delivery-client-ca together (missing: --delivery-tls-key, --delivery-client-ca)"),
        "{stderr}"
    );
    let output = run_cli(
        &url,
        &[
            "serve",
            "--admin-listen",
            "off",
            "--listen",
            "127.0.0.1:0",
            "--delivery-client-ca",
            "ca.pem",
        ],
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("--delivery-client-ca needs --delivery-listen"),
        "{stderr}"
    );

    let ca = TestCa::new();
    let server = ca.server_cert("samtykke-delivery");
    let missing = ca.dir().join("missing.pem");
    let output = run_cli(
        &url,
        &[
            "serve",
            "--admin-listen",
            "off",
            "--listen",
            "127.0.0.1:0",
            "--delivery-listen",
            "127.0.0.1:0",
            "--delivery-tls-cert",
            server.cert_path.to_str().unwrap(),
            "--delivery-tls-key",
            server.key_path.to_str().unwrap(),
            "--delivery-client-ca",
            missing.to_str().unwrap(),
        ],
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("could not read delivery-client-ca"),
        "{stderr}"
    );
}
