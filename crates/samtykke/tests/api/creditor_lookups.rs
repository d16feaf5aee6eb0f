//! Debt lookups at live creditors (issue 21), over real HTTPS: the server
//! calls creditors that the test starts ([`CreditorPeer`], with server
//! certificates of the suite's test CA, which the server is configured to
//! trust) and the answers are compared with what each creditor did, and
//! validated against the published schema.

use std::time::Duration;

use samtykke::config::SandboxSetting;
use samtykke_core::creditor::{Creditor, CreditorEndpoint, FinancialInstitutionId};
use samtykke_core::creditor_breaker::BreakerPolicy;
use samtykke_core::debt::parse_delivery;
use samtykke_core::domain::NinPolicy;
use samtykke_core::Clock;
use samtykke_http::creditor_fanout::LookupSettings;
use serde_json::{json, Value};

use crate::creditor_peer::{refusing_endpoint, Behaviour, CreditorPeer};
use crate::helpers::{fresh_database_url, serve_config, spawn_app_configured, Engine, TestApp};
use crate::schema::assert_conforms;
use crate::test_ca::TestCa;

/// A synthetic person with no sandbox data.
const PERSON: &str = "01818510078";
const SCOPE: &str = "debt.unsecured.presentation";

/// Creditors' ids (valid organisation numbers) and names, in name order.
const ALFA: (&str, &str) = ("923456783", "Alfa Bank ASA");
const BETA: (&str, &str) = ("912345688", "Beta Kreditt AS");
const GAMMA: (&str, &str) = ("987654325", "Gamma Finans AS");

/// A server on a fresh database that trusts `ca` for creditors.
async fn live_app(engine: Engine, ca: &TestCa, lookup: LookupSettings) -> Option<TestApp> {
    let url = fresh_database_url(engine).await?;
    Some(live_app_on(&url, ca, lookup).await.owning(url))
}

async fn live_app_on(url: &str, ca: &TestCa, lookup: LookupSettings) -> TestApp {
    let mut config = serve_config(url, SandboxSetting::On);
    config.creditors.ca = Some(ca.ca_path.clone());
    config.creditors.sandbox_simulators = false;
    config.creditor_lookup = lookup;
    spawn_app_configured(url, config).await
}

/// Small breaker settings: opens after 2 failures, 300 ms cool-down.
fn quick_breaker() -> LookupSettings {
    LookupSettings {
        breaker: BreakerPolicy {
            failure_threshold: 2,
            cool_down: Duration::from_millis(300),
            max_back_off: Duration::from_secs(5),
        },
        ..LookupSettings::default()
    }
}

fn loan(account: &str, balance: i64) -> Value {
    json!({
        "type": "repaymentLoan", "accountID": account, "timestamp": "2026-12-01T10:00:00Z",
        "coBorrower": 0, "originalBalance": 10_000_000, "balance": balance, "terms": 120,
        "nominalInterestRate": 450, "installmentCharges": 5000, "installmentChargePeriod": "MONTHLY",
    })
}

/// Registers creditor `(fi, name)` at `endpoint`.
async fn register(
    app: &TestApp,
    (fi, name): (&str, &str),
    endpoint: &str,
    edit: impl FnOnce(&mut Creditor),
) {
    let mut creditor = Creditor {
        id: FinancialInstitutionId::parse(fi).unwrap(),
        name: name.to_owned(),
        endpoint: CreditorEndpoint::parse(endpoint, false).unwrap(),
        timeout: Duration::from_millis(400),
        max_concurrent: None,
        certificate_org: None,
        always_ask: false,
        enabled: true,
        page_size: None,
        created_at: app.clock.now(),
    };
    edit(&mut creditor);
    app.store.insert_creditor(&creditor).await.unwrap();
}

/// Stores `loans` of `PERSON` at `(fi, name)` as a delivery, now.
async fn store_loans(app: &TestApp, (fi, name): (&str, &str), loans: Vec<Value>) {
    let delivery = json!({
        "providerID": format!("9908:{fi}"),
        "customers": [{"customerID": PERSON, "financialInstitutionID": fi, "financialInstitutionName": name, "loans": loans}],
    });
    let delivery = parse_delivery(&delivery.to_string(), NinPolicy::AllowSynthetic).unwrap();
    app.store
        .import_delivery(&delivery, app.clock.now())
        .await
        .unwrap();
}

/// A 30-day agreement consent of `PERSON` and a debt token; the consent id.
async fn consent(app: &TestApp) -> (String, String) {
    let id = app.agreement_consent(PERSON, SCOPE, 30).await;
    let token = app.sandbox_token("/v1/debt", SCOPE).await;
    (id, token)
}

/// `GET /v1/debt/{id}`: 200 and a body that conforms to the contract.
async fn look_up(app: &TestApp, id: &str, token: &str, trace: &str) -> Value {
    let response = app
        .http
        .get(app.url(&format!("/v1/debt/{id}")))
        .bearer_auth(token)
        .header("X-Trace-ID", trace)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_conforms(&body, "debt_information");
    body
}

/// `(creditorName, balance or None for a null loan)` of each item.
fn items(body: &Value) -> Vec<(String, Option<i64>)> {
    body["loans"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            (
                l["creditorName"].as_str().unwrap().to_owned(),
                l["loan"]["balance"].as_i64(),
            )
        })
        .collect()
}

fn counts(body: &Value) -> (u64, u64) {
    (
        body["numberOfCreditorsAnswered"].as_u64().unwrap(),
        body["numberOfcreditorsMissing"].as_u64().unwrap(),
    )
}

/// The newest use's per-creditor report as `(id, asked, served, failure)`.
async fn last_report(app: &TestApp, id: &str) -> Vec<(String, bool, String, Option<String>)> {
    let id = samtykke_core::consent::ConsentId::parse(id).unwrap();
    let uses = app.store.consent_usage(&id).await.unwrap();
    uses.last()
        .unwrap()
        .creditors
        .clone()
        .unwrap()
        .into_iter()
        .map(|c| {
            (
                c.id,
                c.asked,
                c.served.as_str().to_owned(),
                c.failure.map(|f| f.as_str().to_owned()),
            )
        })
        .collect()
}

fn row(
    fi: &str,
    asked: bool,
    served: &str,
    failure: Option<&str>,
) -> (String, bool, String, Option<String>) {
    (
        fi.to_owned(),
        asked,
        served.to_owned(),
        failure.map(str::to_owned),
    )
}

macro_rules! on_both_engines {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[tokio::test]
                async fn sqlite() {
                    super::$name(crate::helpers::Engine::Sqlite).await
                }

                #[tokio::test]
                async fn postgres() {
                    super::$name(crate::helpers::Engine::Postgres).await
                }
            }
        )*
    };
}

on_both_engines!(
    every_creditor_answers_and_their_fresh_loans_are_served,
    each_kind_of_silence_falls_back_to_young_stored_data,
    old_stored_data_and_no_answer_is_a_null_loan_counted_missing,
    a_zero_max_age_never_serves_stored_data,
    a_hanging_creditor_still_yields_an_answer_within_the_deadline,
    a_refused_lookup_calls_no_creditor,
    the_breaker_opens_after_failures_and_a_trial_closes_it,
    a_429_backs_off_for_its_retry_after,
    always_ask_creditors_are_asked_and_others_without_data_are_not,
    a_creditor_at_its_concurrency_limit_falls_back_at_once,
    a_single_use_consent_is_consumed_once_with_creditors_racing,
    the_creditor_metrics_count_outcomes_and_breaker_state,
);

async fn every_creditor_answers_and_their_fresh_loans_are_served(engine: Engine) {
    let ca = TestCa::new();
    let Some(app) = live_app(engine, &ca, LookupSettings::default()).await else {
        return;
    };
    let (alfa, beta) = (
        CreditorPeer::start(&ca, ALFA.0, Behaviour::answer(), false).await,
        CreditorPeer::start(&ca, BETA.0, Behaviour::answer(), false).await,
    );
    register(&app, ALFA, &alfa.endpoint(), |_| {}).await;
    register(&app, BETA, &beta.endpoint(), |_| {}).await;
    store_loans(&app, ALFA, vec![loan("a-1", 1)]).await;
    store_loans(&app, BETA, vec![loan("b-1", 2)]).await;
    alfa.set_loans(PERSON, vec![loan("a-1", 100), loan("a-2", 200)]);
    beta.set_loans(PERSON, vec![]);

    let (id, token) = consent(&app).await;
    let body = look_up(&app, &id, &token, "trace-all-answer").await;
    assert_eq!(
        items(&body),
        [
            (ALFA.1.to_owned(), Some(100)),
            (ALFA.1.to_owned(), Some(200))
        ],
        "fresh loans; Beta has none now"
    );
    assert_eq!(counts(&body), (2, 0));
    for peer in [&alfa, &beta] {
        let calls = peer.calls();
        assert_eq!(calls.len(), 1);
        assert_eq!(calls[0].customer_id.as_deref(), Some(PERSON));
        assert_eq!(
            calls[0].trace_id.as_deref(),
            Some("trace-all-answer"),
            "the lookup's trace id goes along"
        );
    }
    assert_eq!(
        last_report(&app, &id).await,
        [
            row(ALFA.0, true, "answered", None),
            row(BETA.0, true, "answered", None)
        ]
    );
}

async fn each_kind_of_silence_falls_back_to_young_stored_data(engine: Engine) {
    let ca = TestCa::new();
    // A breaker that never opens here: Beta fails on every lookup.
    let settings = LookupSettings {
        breaker: BreakerPolicy {
            failure_threshold: 1000,
            ..BreakerPolicy::default()
        },
        ..LookupSettings::default()
    };
    let Some(app) = live_app(engine, &ca, settings).await else {
        return;
    };
    let silences = [
        (
            Behaviour::Answer {
                delay: Duration::from_secs(5),
            },
            "timeout",
        ),
        (Behaviour::Status(500), "server_error"),
        (Behaviour::Status(403), "status"),
        (Behaviour::Garbage, "malformed"),
        (Behaviour::HangAfterHeaders, "timeout"),
    ];
    let peer = CreditorPeer::start(&ca, ALFA.0, Behaviour::answer(), false).await;
    register(&app, ALFA, &peer.endpoint(), |c| {
        c.timeout = Duration::from_millis(300)
    })
    .await;
    register(&app, BETA, &refusing_endpoint(), |_| {}).await;
    store_loans(&app, ALFA, vec![loan("a-1", 11)]).await;
    store_loans(&app, BETA, vec![loan("b-1", 22)]).await;
    let (id, token) = consent(&app).await;
    for (n, (behaviour, failure)) in silences.into_iter().enumerate() {
        peer.set(behaviour.clone());
        let body = look_up(&app, &id, &token, &format!("silence-{n}")).await;
        assert_eq!(
            items(&body),
            [(ALFA.1.to_owned(), Some(11)), (BETA.1.to_owned(), Some(22))],
            "{behaviour:?}"
        );
        assert_eq!(counts(&body), (2, 0), "stored data counts as answered");
        assert_eq!(
            last_report(&app, &id).await,
            [
                row(ALFA.0, true, "stored", Some(failure)),
                row(BETA.0, true, "stored", Some("unreachable"))
            ],
            "{behaviour:?}"
        );
        // Keep the breaker closed: one good answer between failures.
        peer.set(Behaviour::answer());
        look_up(&app, &id, &token, "between").await;
    }
}

async fn old_stored_data_and_no_answer_is_a_null_loan_counted_missing(engine: Engine) {
    let ca = TestCa::new();
    let Some(app) = live_app(engine, &ca, LookupSettings::default()).await else {
        return;
    };
    let alfa = CreditorPeer::start(&ca, ALFA.0, Behaviour::answer(), false).await;
    alfa.set_loans(PERSON, vec![loan("a-1", 5)]);
    register(&app, ALFA, &alfa.endpoint(), |_| {}).await;
    register(&app, BETA, &refusing_endpoint(), |_| {}).await;
    store_loans(&app, ALFA, vec![loan("a-1", 1)]).await;
    store_loans(&app, BETA, vec![loan("b-1", 2), loan("b-2", 3)]).await;
    // 36 hours and a second later, Beta's stored data is too old.
    app.clock
        .advance(time::Duration::hours(36) + time::Duration::SECOND);
    let (id, token) = consent(&app).await;
    let body = look_up(&app, &id, &token, "old").await;
    assert_eq!(
        items(&body),
        [(ALFA.1.to_owned(), Some(5)), (BETA.1.to_owned(), None)]
    );
    assert!(body["loans"][1]["loan"].is_null());
    assert_eq!(counts(&body), (1, 1));
    assert_eq!(
        last_report(&app, &id).await,
        [
            row(ALFA.0, true, "answered", None),
            row(BETA.0, true, "missing", Some("unreachable"))
        ]
    );
}

async fn a_zero_max_age_never_serves_stored_data(engine: Engine) {
    let ca = TestCa::new();
    let settings = LookupSettings {
        fallback_max_age: time::Duration::ZERO,
        ..LookupSettings::default()
    };
    let Some(app) = live_app(engine, &ca, settings).await else {
        return;
    };
    register(&app, BETA, &refusing_endpoint(), |_| {}).await;
    store_loans(&app, BETA, vec![loan("b-1", 2)]).await;
    let (id, token) = consent(&app).await;
    let body = look_up(&app, &id, &token, "zero").await;
    assert_eq!(items(&body), [(BETA.1.to_owned(), None)]);
    assert_eq!(counts(&body), (0, 1));
}

async fn a_hanging_creditor_still_yields_an_answer_within_the_deadline(engine: Engine) {
    let ca = TestCa::new();
    // The deadline is shorter than the hanging creditor's own timeout: the
    // lookup answers by the deadline, not by the timeout.
    let settings = LookupSettings {
        deadline: Some(Duration::from_millis(300)),
        ..LookupSettings::default()
    };
    let Some(app) = live_app(engine, &ca, settings).await else {
        return;
    };
    let hanging = CreditorPeer::start(&ca, ALFA.0, Behaviour::Hang, false).await;
    let answering = CreditorPeer::start(&ca, BETA.0, Behaviour::answer(), false).await;
    answering.set_loans(PERSON, vec![loan("b-1", 7)]);
    register(&app, ALFA, &hanging.endpoint(), |c| {
        c.timeout = Duration::from_secs(30)
    })
    .await;
    register(&app, BETA, &answering.endpoint(), |_| {}).await;
    store_loans(&app, ALFA, vec![loan("a-1", 1)]).await;
    store_loans(&app, BETA, vec![loan("b-1", 2)]).await;
    let (id, token) = consent(&app).await;
    // Were the deadline not kept, this would wait 30 s and the test's own
    // bound below would fail it.
    let body = tokio::time::timeout(Duration::from_secs(10), look_up(&app, &id, &token, "hang"))
        .await
        .expect("the lookup answers although a creditor hangs");
    assert_eq!(
        items(&body),
        [(ALFA.1.to_owned(), Some(1)), (BETA.1.to_owned(), Some(7))]
    );
    assert_eq!(hanging.calls().len(), 1, "the hanging creditor was asked");
    assert_eq!(
        last_report(&app, &id).await,
        [
            row(ALFA.0, true, "stored", Some("timeout")),
            row(BETA.0, true, "answered", None)
        ]
    );
}

async fn a_refused_lookup_calls_no_creditor(engine: Engine) {
    let ca = TestCa::new();
    let Some(app) = live_app(engine, &ca, LookupSettings::default()).await else {
        return;
    };
    let peer = CreditorPeer::start(&ca, ALFA.0, Behaviour::answer(), false).await;
    register(&app, ALFA, &peer.endpoint(), |c| c.always_ask = true).await;
    let (id, token) = consent(&app).await;
    // Revoked by the client: refused.
    let revoked = app
        .http
        .delete(app.url(&format!("/v1/debt/{id}")))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(revoked.status(), 204);
    let refused = app.get_bearer(&format!("/v1/debt/{id}"), &token).await;
    assert_eq!(refused.status(), 403);
    // Unknown consent, and a token of the wrong purpose.
    let unknown = app
        .get_bearer(&format!("/v1/debt/{}", uuid::Uuid::new_v4()), &token)
        .await;
    assert_eq!(unknown.status(), 403);
    let other = app
        .agreement_consent(PERSON, "debt.unsecured.processing", 30)
        .await;
    let wrong_purpose = app.get_bearer(&format!("/v1/debt/{other}"), &token).await;
    assert_eq!(wrong_purpose.status(), 403);
    assert!(
        peer.calls().is_empty(),
        "no creditor is called for a refused lookup"
    );
}

async fn the_breaker_opens_after_failures_and_a_trial_closes_it(engine: Engine) {
    let ca = TestCa::new();
    let Some(app) = live_app(engine, &ca, quick_breaker()).await else {
        return;
    };
    let peer = CreditorPeer::start(&ca, ALFA.0, Behaviour::Status(503), false).await;
    peer.set_loans(PERSON, vec![loan("a-1", 9)]);
    register(&app, ALFA, &peer.endpoint(), |_| {}).await;
    store_loans(&app, ALFA, vec![loan("a-1", 1)]).await;
    let (id, token) = consent(&app).await;
    for _ in 0..2 {
        look_up(&app, &id, &token, "failing").await;
    }
    assert_eq!(peer.calls().len(), 2);
    // Open: served from stored data without a call.
    let body = look_up(&app, &id, &token, "open").await;
    assert_eq!(items(&body), [(ALFA.1.to_owned(), Some(1))]);
    assert_eq!(
        last_report(&app, &id).await,
        [row(ALFA.0, false, "stored", Some("circuit_open"))]
    );
    assert_eq!(peer.calls().len(), 2, "an open breaker makes no call");

    // The creditor recovers; after the cool-down one trial call closes the
    // breaker. Until then every lookup is served without a call.
    peer.set(Behaviour::answer());
    let recovered = async {
        loop {
            let body = look_up(&app, &id, &token, "recovering").await;
            match last_report(&app, &id).await[0].2.as_str() {
                "answered" => return body,
                "stored" => assert_eq!(
                    last_report(&app, &id).await[0].3.as_deref(),
                    Some("circuit_open")
                ),
                other => panic!("{other}"),
            }
            tokio::task::yield_now().await;
        }
    };
    let body = tokio::time::timeout(Duration::from_secs(10), recovered)
        .await
        .expect("the breaker closes");
    assert_eq!(items(&body), [(ALFA.1.to_owned(), Some(9))]);
    assert_eq!(peer.calls().len(), 3, "exactly one trial call");
    look_up(&app, &id, &token, "closed").await;
    assert_eq!(peer.calls().len(), 4, "closed again: every lookup calls");
}

async fn a_429_backs_off_for_its_retry_after(engine: Engine) {
    let ca = TestCa::new();
    let Some(app) = live_app(engine, &ca, quick_breaker()).await else {
        return;
    };
    let peer = CreditorPeer::start(
        &ca,
        ALFA.0,
        Behaviour::TooManyRequests {
            retry_after: Some(1),
        },
        false,
    )
    .await;
    register(&app, ALFA, &peer.endpoint(), |_| {}).await;
    store_loans(&app, ALFA, vec![loan("a-1", 1)]).await;
    let (id, token) = consent(&app).await;
    look_up(&app, &id, &token, "throttled").await;
    assert_eq!(
        last_report(&app, &id).await,
        [row(ALFA.0, true, "stored", Some("throttled"))]
    );
    // One 429 is enough (the threshold is 2): backing off, no call.
    look_up(&app, &id, &token, "backing-off").await;
    assert_eq!(
        last_report(&app, &id).await,
        [row(ALFA.0, false, "stored", Some("circuit_open"))]
    );
    assert_eq!(peer.calls().len(), 1);
    peer.set(Behaviour::answer());
    let resumed = async {
        loop {
            look_up(&app, &id, &token, "after").await;
            if last_report(&app, &id).await[0].2 == "answered" {
                return;
            }
            tokio::task::yield_now().await;
        }
    };
    tokio::time::timeout(Duration::from_secs(10), resumed)
        .await
        .expect("calls resume after Retry-After");
    assert_eq!(peer.calls().len(), 2, "no call while backing off");
}

async fn always_ask_creditors_are_asked_and_others_without_data_are_not(engine: Engine) {
    let ca = TestCa::new();
    let Some(app) = live_app(engine, &ca, LookupSettings::default()).await else {
        return;
    };
    let always = CreditorPeer::start(&ca, ALFA.0, Behaviour::answer(), false).await;
    always.set_loans(PERSON, vec![loan("a-1", 3)]);
    let stranger = CreditorPeer::start(&ca, BETA.0, Behaviour::answer(), false).await;
    let disabled = CreditorPeer::start(&ca, GAMMA.0, Behaviour::answer(), false).await;
    register(&app, ALFA, &always.endpoint(), |c| c.always_ask = true).await;
    register(&app, BETA, &stranger.endpoint(), |_| {}).await;
    register(&app, GAMMA, &disabled.endpoint(), |c| c.enabled = false).await;
    store_loans(&app, GAMMA, vec![loan("g-1", 4)]).await;
    let (id, token) = consent(&app).await;
    let body = look_up(&app, &id, &token, "always").await;
    assert_eq!(
        items(&body),
        [(ALFA.1.to_owned(), Some(3)), (GAMMA.1.to_owned(), Some(4))]
    );
    assert_eq!(counts(&body), (2, 0));
    assert!(
        stranger.calls().is_empty(),
        "the number is never sent to a creditor without a relationship"
    );
    assert!(
        disabled.calls().is_empty(),
        "a disabled creditor is not called; its stored data is served"
    );
    assert_eq!(
        last_report(&app, &id).await,
        [
            row(ALFA.0, true, "answered", None),
            row(GAMMA.0, false, "stored", None)
        ]
    );
}

async fn a_creditor_at_its_concurrency_limit_falls_back_at_once(engine: Engine) {
    let ca = TestCa::new();
    let settings = LookupSettings {
        deadline: Some(Duration::from_secs(20)),
        ..LookupSettings::default()
    };
    let Some(app) = live_app(engine, &ca, settings).await else {
        return;
    };
    let peer = CreditorPeer::start(&ca, ALFA.0, Behaviour::Hang, false).await;
    register(&app, ALFA, &peer.endpoint(), |c| {
        c.max_concurrent = Some(1);
        c.timeout = Duration::from_secs(15);
    })
    .await;
    store_loans(&app, ALFA, vec![loan("a-1", 1)]).await;
    let (first, token) = consent(&app).await;
    let (second, _) = consent(&app).await;
    // The first lookup's call hangs and holds the one slot.
    let app = std::sync::Arc::new(app);
    let hanging = tokio::spawn({
        let (app, first, token) = (app.clone(), first.clone(), token.clone());
        async move { look_up(&app, &first, &token, "holder").await }
    });
    peer.await_calls(1).await;
    let body = tokio::time::timeout(
        Duration::from_secs(10),
        look_up(&app, &second, &token, "busy"),
    )
    .await
    .expect("a busy creditor does not make the lookup wait");
    assert_eq!(items(&body), [(ALFA.1.to_owned(), Some(1))]);
    assert_eq!(
        last_report(&app, &second).await,
        [row(ALFA.0, false, "stored", Some("busy"))]
    );
    assert_eq!(peer.calls().len(), 1);
    hanging.abort();
}

async fn a_single_use_consent_is_consumed_once_with_creditors_racing(engine: Engine) {
    let ca = TestCa::new();
    let Some(app) = live_app(engine, &ca, LookupSettings::default()).await else {
        return;
    };
    let peer = CreditorPeer::start(
        &ca,
        ALFA.0,
        Behaviour::Answer {
            delay: Duration::from_millis(50),
        },
        false,
    )
    .await;
    peer.set_loans(PERSON, vec![loan("a-1", 3)]);
    register(&app, ALFA, &peer.endpoint(), |c| c.always_ask = true).await;
    let consent = samtykke_core::consent::Consent::new(
        app.sandbox.client_id.clone(),
        samtykke_core::domain::Nin::parse(PERSON, NinPolicy::AllowSynthetic).unwrap(),
        samtykke_core::consent::ConsentScope::parse(SCOPE).unwrap(),
        samtykke_core::consent::ConsentKind::Regular,
        None,
        app.clock.now(),
    );
    app.store.insert_consent(&consent).await.unwrap();
    let id = consent.id.to_string();
    let token = crate::helpers::insert_token(
        &app,
        app.sandbox.client_id.as_str(),
        samtykke_core::domain::ApiAudience::Debt,
        SCOPE,
        Some(&id),
    )
    .await;
    let lookups = (0..6).map(|_| app.get_bearer("/v1/debt", &token));
    let statuses: Vec<u16> = futures::future::join_all(lookups)
        .await
        .iter()
        .map(|r| r.status().as_u16())
        .collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 403).count(),
        5,
        "{statuses:?}"
    );
    let uses = app.store.consent_usage(&consent.id).await.unwrap();
    assert_eq!(uses.len(), 1, "one use recorded");
}

async fn the_creditor_metrics_count_outcomes_and_breaker_state(engine: Engine) {
    let ca = TestCa::new();
    let Some(app) = live_app(engine, &ca, quick_breaker()).await else {
        return;
    };
    let peer = CreditorPeer::start(&ca, ALFA.0, Behaviour::answer(), false).await;
    register(&app, ALFA, &peer.endpoint(), |_| {}).await;
    store_loans(&app, ALFA, vec![loan("a-1", 1)]).await;
    let (id, token) = consent(&app).await;
    look_up(&app, &id, &token, "m1").await;
    peer.set(Behaviour::Status(500));
    look_up(&app, &id, &token, "m2").await;
    look_up(&app, &id, &token, "m3").await;
    look_up(&app, &id, &token, "m4").await;
    let metrics = app
        .http
        .get(app.admin_url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let fi = ALFA.0;
    for line in [
        format!("samtykke_creditor_calls_total{{creditor=\"{fi}\",outcome=\"answered\"}} 1"),
        format!("samtykke_creditor_calls_total{{creditor=\"{fi}\",outcome=\"server_error\"}} 2"),
        format!("samtykke_creditor_calls_total{{creditor=\"{fi}\",outcome=\"circuit_open\"}} 1"),
        format!("samtykke_creditor_lookups_total{{creditor=\"{fi}\",served=\"stored\"}} 3"),
        format!("samtykke_creditor_breaker_state{{creditor=\"{fi}\"}} 1"),
        format!("samtykke_creditor_request_duration_seconds_count{{creditor=\"{fi}\",outcome=\"answered\"}} 1"),
    ] {
        assert!(metrics.lines().any(|l| l == line), "{line} in\n{metrics}");
    }
    assert!(!metrics.contains(PERSON));
}

#[tokio::test]
async fn two_processes_on_one_postgresql_serve_the_same_data() {
    let Some(url) = fresh_database_url(Engine::Postgres).await else {
        return;
    };
    let ca = TestCa::new();
    let first = live_app_on(&url, &ca, LookupSettings::default()).await;
    let second = live_app_on(&url, &ca, LookupSettings::default()).await;
    let peer = CreditorPeer::start(&ca, ALFA.0, Behaviour::Status(500), false).await;
    register(&first, ALFA, &peer.endpoint(), |_| {}).await;
    register(&first, BETA, &refusing_endpoint(), |_| {}).await;
    store_loans(&first, ALFA, vec![loan("a-1", 1)]).await;
    store_loans(&second, BETA, vec![loan("b-1", 2)]).await;
    let (id, token) = consent(&first).await;
    let one = look_up(&first, &id, &token, "p1").await;
    let two = look_up(&second, &id, &token, "p2").await;
    assert_eq!(one["loans"], two["loans"]);
    assert_eq!(
        items(&one),
        [(ALFA.1.to_owned(), Some(1)), (BETA.1.to_owned(), Some(2))]
    );
    // A new delivery through one process is what both serve next.
    store_loans(&second, ALFA, vec![loan("a-1", 50)]).await;
    let (one, two) = (
        look_up(&first, &id, &token, "p3").await,
        look_up(&second, &id, &token, "p4").await,
    );
    assert_eq!(one["loans"], two["loans"]);
    assert_eq!(items(&one)[0], (ALFA.1.to_owned(), Some(50)));
}
