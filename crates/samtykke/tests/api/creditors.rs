//! Live creditors (issue 21): `samtykke creditor …` through the real binary
//! against a running server's database, `getalldata` from simulated
//! creditors over real HTTP and TLS (the suite's test CA), the simulator's
//! options, the daily claim, and the sandbox's live creditors.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use samtykke_core::creditor::{
    Creditor, CreditorEndpoint, FinancialInstitutionId, SyncOutcome, DEFAULT_TIMEOUT,
};
use samtykke_core::debt::parse_delivery;
use samtykke_core::domain::{Nin, NinPolicy};
use samtykke_http::creditors::scheduler::{claim_due, DailySchedule};
use samtykke_http::creditors::simulator::{
    synthetic_numbers, Simulator, SimulatorData, SimulatorOptions,
};
use samtykke_http::creditors::{CreditorCallError, CreditorClient, CreditorTls};
use serde_json::{json, Value};

use crate::helpers::{run_cli, TestApp};
use crate::test_ca::TestCa;

/// Not one of the sandbox's creditors.
const BANK: &str = "971526920";
const OTHER: &str = "974760673";
const UNKNOWN: &str = "923609016";
const ANNE: &str = "14842249091";

/// A delivery of `count` customers of `fi` (synthetic people), each with
/// one charge card `<prefix>-<i>`; the sandbox person Anne first.
fn delivery_json(fi: &str, count: usize, prefix: &str) -> String {
    let people = std::iter::once(ANNE.to_owned())
        .chain(synthetic_numbers().skip(7))
        .take(count);
    let customers: Vec<Value> = people
        .enumerate()
        .map(|(i, nin)| {
            json!({"customerID": nin, "financialInstitutionID": fi, "financialInstitutionName": "Nordlys Bank ASA",
                   "loans": [{"type": "chargeCard", "accountID": format!("{prefix}-{i}"), "timestamp": "2026-11-01T08:00:00Z",
                              "coBorrower": 0, "interestBearingBalance": 100 * i, "nonInterestBearingBalance": 5}]})
        })
        .collect();
    json!({"providerID": "9908:999888777", "customers": customers}).to_string()
}

fn quick(page_size: u32) -> SimulatorOptions {
    SimulatorOptions {
        latency: Duration::ZERO,
        jitter: Duration::ZERO,
        page_size,
        ..SimulatorOptions::default()
    }
}

/// Serves `json` (its institution `fi`) on a loopback port; HTTPS with `tls`.
async fn simulator(
    json: &str,
    options: SimulatorOptions,
    tls: Option<rustls::ServerConfig>,
) -> SocketAddr {
    let delivery = parse_delivery(json, NinPolicy::AllowSynthetic).unwrap();
    let data = SimulatorData::from_delivery(&delivery, None).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let sim = Simulator::new(Arc::new(data), options);
    tokio::spawn(sim.serve(listener, tls.map(Arc::new), std::future::pending()));
    addr
}

/// The binary, off the runtime's thread (the simulators run on it).
async fn cli(app: &TestApp, args: &[&str]) -> (bool, String, String) {
    let url = app.database_url.clone();
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    let output = tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        run_cli(&url, &args)
    })
    .await
    .unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

async fn refused(app: &TestApp, args: &[&str], message: &str) {
    let (ok, out, err) = cli(app, args).await;
    assert!(!ok, "{args:?} succeeded: {out}");
    assert!(
        err.contains(message),
        "{args:?}: expected {message:?} in {err}"
    );
}

fn fi(s: &str) -> FinancialInstitutionId {
    FinancialInstitutionId::parse(s).unwrap()
}

fn creditor(id: &str, endpoint: &str) -> Creditor {
    Creditor {
        id: fi(id),
        name: "Nordlys Bank ASA".into(),
        endpoint: CreditorEndpoint::parse(endpoint, true).unwrap(),
        timeout: DEFAULT_TIMEOUT,
        max_concurrent: None,
        certificate_org: None,
        always_ask: false,
        enabled: true,
        page_size: None,
        created_at: time::OffsetDateTime::UNIX_EPOCH,
    }
}

async fn accounts_of(app: &TestApp, nin: &str) -> Vec<String> {
    let mut accounts: Vec<String> = app
        .store
        .debt_of(&Nin::parse(nin, NinPolicy::AllowSynthetic).unwrap())
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.creditor_org.as_str() == BANK)
        .map(|e| e.account_id)
        .collect();
    accounts.sort();
    accounts
}

fn sandbox_client() -> CreditorClient {
    CreditorClient::new(&CreditorTls::default(), NinPolicy::AllowSynthetic, true).unwrap()
}

engine_tests! {
    async fn creditor_commands_register_show_list_disable_enable_and_remove(app) {
        let addr = simulator(&delivery_json(BANK, 3, "A"), quick(100), None).await;
        let endpoint = format!("http://{addr}/");
        let (ok, out, err) = cli(&app, &["creditor", "add", "--org", BANK, "--name", "Nordlys Bank ASA", "--endpoint", &endpoint,
            "--timeout-ms", "300", "--max-concurrent", "16", "--certificate-org", "920013015", "--always-ask"]).await;
        assert!(ok, "{err}");
        assert!(out.contains(&format!("added creditor {BANK} (Nordlys Bank ASA)")), "{out}");
        assert!(err.contains("samtykke: database"), "names the database: {err}");
        let stored = app.store.find_creditor(&fi(BANK)).await.unwrap().unwrap().creditor;
        assert_eq!((stored.timeout, stored.max_concurrent, stored.always_ask, stored.enabled), (Duration::from_millis(300), Some(16), true, true));
        assert_eq!(stored.certificate_org.unwrap().as_str(), "920013015");

        let (ok, out, _) = cli(&app, &["creditor", "show", BANK]).await;
        assert!(ok && out.contains("timeout                 300 ms") && out.contains("920013015"), "{out}");
        let (ok, out, _) = cli(&app, &["creditor", "show", BANK, "--json"]).await;
        assert!(ok);
        let shown: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(shown["financialInstitutionID"], BANK);
        assert_eq!(shown["sync"]["last_outcome"], Value::Null);
        let (ok, out, _) = cli(&app, &["creditor", "list"]).await;
        assert!(ok && out.lines().any(|l| l.starts_with(BANK) && l.contains("enabled") && l.contains("never")), "{out}");

        let (ok, _, _) = cli(&app, &["creditor", "disable", BANK]).await;
        assert!(ok);
        assert!(!app.store.find_creditor(&fi(BANK)).await.unwrap().unwrap().creditor.enabled);
        let (ok, out, _) = cli(&app, &["creditor", "list", "--json"]).await;
        assert!(ok);
        let listed: Value = serde_json::from_str(&out).unwrap();
        assert!(listed.as_array().unwrap().iter().any(|c| c["financialInstitutionID"] == BANK && c["enabled"] == false));
        let (ok, _, _) = cli(&app, &["creditor", "enable", BANK]).await;
        assert!(ok);
        assert!(app.store.find_creditor(&fi(BANK)).await.unwrap().unwrap().creditor.enabled);

        // Errors, each with its message.
        refused(&app, &["creditor", "add", "--org", BANK, "--name", "Again", "--endpoint", &endpoint], "registered already").await;
        refused(&app, &["creditor", "add", "--org", "923456784", "--name", "X", "--endpoint", &endpoint], "check digit").await;
        refused(&app, &["creditor", "add", "--org", "12345", "--name", "X", "--endpoint", &endpoint], "financialInstitutionID is a 9-digit").await;
        refused(&app, &["creditor", "add", "--org", OTHER, "--name", " ", "--endpoint", &endpoint], "--name").await;
        refused(&app, &["creditor", "add", "--org", OTHER, "--name", "X", "--endpoint", "ftp://x.example/"], "https://").await;
        refused(&app, &["creditor", "add", "--org", OTHER, "--name", "X", "--endpoint", "creditor.example"], "not an absolute URL").await;
        refused(&app, &["creditor", "add", "--org", OTHER, "--name", "X", "--endpoint", &endpoint, "--timeout-ms", "0"], "--timeout-ms").await;
        refused(&app, &["creditor", "add", "--org", OTHER, "--name", "X", "--endpoint", &endpoint, "--max-concurrent", "0"], "--max-concurrent").await;
        refused(&app, &["creditor", "add", "--org", OTHER, "--name", "X", "--endpoint", &endpoint, "--certificate-org", "920013016"], "--certificate-org").await;
        refused(&app, &["creditor", "show", UNKNOWN], &format!("no creditor {UNKNOWN} is registered")).await;
        refused(&app, &["creditor", "disable", UNKNOWN], &format!("no creditor {UNKNOWN}")).await;
        refused(&app, &["creditor", "remove", UNKNOWN], &format!("no creditor {UNKNOWN}")).await;
        refused(&app, &["creditor", "sync", "--org", UNKNOWN], &format!("no creditor {UNKNOWN}")).await;

        let (ok, out, _) = cli(&app, &["creditor", "remove", BANK]).await;
        assert!(ok && out.contains("removed"), "{out}");
        assert!(app.store.find_creditor(&fi(BANK)).await.unwrap().is_none());
    }

    async fn creditor_test_calls_get_data_for_ssn_and_reports_failures(app) {
        let good = simulator(&delivery_json(BANK, 2, "T"), quick(100), None).await;
        app.store.insert_creditor(&creditor(BANK, &format!("http://{good}/"))).await.unwrap();
        let (ok, out, err) = cli(&app, &["creditor", "test", BANK]).await;
        assert!(ok, "{err}");
        assert!(out.contains("answered in") && out.contains("a valid answer with 1 loan(s): chargeCard"), "{out}");
        assert!(!out.contains(ANNE), "the number is not printed: {out}");
        let (ok, out, _) = cli(&app, &["creditor", "test", BANK, "--customer", "29868099311"]).await;
        assert!(ok && out.contains("a valid answer with 0 loan(s)"), "{out}");
        refused(&app, &["creditor", "test", BANK, "--customer", "29868099312"], "--customer").await;

        let garbage = simulator(&delivery_json(BANK, 1, "G"), SimulatorOptions { garbage: true, ..quick(100) }, None).await;
        app.store.update_creditor(&creditor(BANK, &format!("http://{garbage}/"))).await.unwrap();
        refused(&app, &["creditor", "test", BANK], "malformed").await;
        let failing = simulator(&delivery_json(BANK, 1, "F"), SimulatorOptions { fail_rate: 1.0, ..quick(100) }, None).await;
        app.store.update_creditor(&creditor(BANK, &format!("http://{failing}/"))).await.unwrap();
        refused(&app, &["creditor", "test", BANK], "status 500").await;
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
        app.store.update_creditor(&creditor(BANK, &format!("http://{closed}/"))).await.unwrap();
        refused(&app, &["creditor", "test", BANK], "cannot reach the creditor").await;
    }

    async fn creditor_sync_pages_replaces_atomically_and_keeps_the_old_data_when_it_fails(app) {
        // 5 customers, 2 per page: pages 0, 1 full, page 2 short.
        let first = simulator(&delivery_json(BANK, 5, "ONE"), quick(2), None).await;
        let mut c = creditor(BANK, &format!("http://{first}/"));
        c.page_size = Some(2);
        app.store.insert_creditor(&c).await.unwrap();
        let (ok, out, err) = cli(&app, &["creditor", "sync", "--org", BANK]).await;
        assert!(ok, "{err}");
        assert!(out.contains("stored 5 loans of 5 customers from 3 page(s)"), "{out}");
        assert_eq!(accounts_of(&app, ANNE).await, ["ONE-0"]);
        let record = app.store.find_creditor(&fi(BANK)).await.unwrap().unwrap();
        assert_eq!((record.sync.last_outcome, record.sync.last_size, record.sync.consecutive_failures), (Some(SyncOutcome::Ok), Some(5), 0));
        assert!(record.stored_at.is_some());

        // Exactly a page size: one more, empty, page ends it.
        let even = simulator(&delivery_json(BANK, 4, "TWO"), quick(2), None).await;
        app.store.update_creditor(&Creditor { endpoint: CreditorEndpoint::parse(&format!("http://{even}/"), true).unwrap(), ..c.clone() }).await.unwrap();
        let (ok, out, err) = cli(&app, &["creditor", "sync"]).await;
        assert!(ok, "{err}");
        assert!(out.contains("stored 4 loans of 4 customers from 3 page(s)"), "{out}");
        assert_eq!(accounts_of(&app, ANNE).await, ["TWO-0"]);

        // A failing creditor: the stored data stays, the failure is recorded.
        let failing = simulator(&delivery_json(BANK, 3, "BAD"), SimulatorOptions { fail_rate: 1.0, ..quick(2) }, None).await;
        app.store.update_creditor(&Creditor { endpoint: CreditorEndpoint::parse(&format!("http://{failing}/"), true).unwrap(), ..c.clone() }).await.unwrap();
        let (ok, out, err) = cli(&app, &["creditor", "sync", "--org", BANK]).await;
        assert!(!ok && out.contains("getalldata failed (failed), the stored data is kept") && err.contains("1 of 1"), "{out}{err}");
        assert_eq!(accounts_of(&app, ANNE).await, ["TWO-0"]);
        let (_, out, _) = cli(&app, &["creditor", "list"]).await;
        assert!(out.lines().any(|l| l.starts_with(BANK) && l.contains("failed") && l.trim_end().contains("1  Nordlys")), "{out}");

        // Garbage fails; a delivery breaking a rule is invalid: a customer of
        // another institution, the same customer twice, a negative amount.
        // Nothing changes.
        let garbage = simulator(&delivery_json(BANK, 3, "G"), SimulatorOptions { garbage: true, ..quick(2) }, None).await;
        app.store.update_creditor(&Creditor { endpoint: CreditorEndpoint::parse(&format!("http://{garbage}/"), true).unwrap(), ..c.clone() }).await.unwrap();
        let (ok, out, _) = cli(&app, &["creditor", "sync", "--org", BANK]).await;
        assert!(!ok && out.contains("(invalid)"), "{out}");
        let stub = crate::helpers::StubServer::start().await;
        let path = format!("/debt-information/v1/loans/{BANK}");
        let good: Value = serde_json::from_str(&delivery_json(BANK, 1, "NEW")).unwrap();
        let mut foreign = good.clone();
        foreign["customers"][0]["financialInstitutionID"] = json!(OTHER);
        let mut twice = good.clone();
        let mut again = twice["customers"][0].clone();
        again["loans"] = json!([]);
        twice["customers"].as_array_mut().unwrap().push(again);
        let mut negative = good.clone();
        negative["customers"][0]["loans"][0]["interestBearingBalance"] = json!(-1);
        let stubbed = Creditor { endpoint: CreditorEndpoint::parse(&stub.url("/"), true).unwrap(), page_size: Some(100), ..c.clone() };
        app.store.update_creditor(&stubbed).await.unwrap();
        for (body, wanted) in [(&foreign, "financialInstitutionID 974760673"), (&twice, "duplicate customer"), (&negative, "interestBearingBalance")] {
            stub.serve(&path, 200, &body.to_string());
            let (ok, out, _) = cli(&app, &["creditor", "sync", "--org", BANK]).await;
            assert!(!ok && out.contains("(invalid)") && out.contains(wanted), "{out}");
            assert!(!out.contains(ANNE), "no number in the message: {out}");
            assert_eq!(accounts_of(&app, ANNE).await, ["TWO-0"]);
        }
        let record = app.store.find_creditor(&fi(BANK)).await.unwrap().unwrap();
        assert_eq!((record.sync.last_outcome, record.sync.consecutive_failures, record.sync.last_size), (Some(SyncOutcome::Invalid), 5, Some(4)));

        // An empty 200 (a transferring institution) replaces the data with nothing.
        stub.serve(&path, 200, r#"{"providerID": "9908:999888777", "customers": []}"#);
        let (ok, out, err) = cli(&app, &["creditor", "sync", "--org", BANK]).await;
        assert!(ok && out.contains("stored 0 loans"), "{out}{err}");
        assert!(accounts_of(&app, ANNE).await.is_empty());
        assert_eq!(stub.hits(&path), 4);
    }

    async fn getalldata_and_get_data_for_ssn_over_mutual_tls_with_the_test_ca(app) {
        let ca = TestCa::new();
        let server = ca.server_cert("creditor");
        let samtykke = ca.client_cert("Samtykke", UNKNOWN);
        let addr = simulator(&delivery_json(BANK, 3, "TLS"), quick(100), Some(ca.server_config(&server, true))).await;
        app.store.insert_creditor(&creditor(BANK, &format!("https://localhost:{}/", addr.port()))).await.unwrap();
        let tls = ["--creditor-ca", ca.ca_path.to_str().unwrap(), "--creditor-client-cert", samtykke.cert_path.to_str().unwrap(),
                   "--creditor-client-key", samtykke.key_path.to_str().unwrap()];
        let (ok, out, err) = cli(&app, &[&["creditor", "test", BANK][..], &tls].concat()).await;
        assert!(ok && out.contains("a valid answer with 1 loan(s)"), "{out}{err}");
        let (ok, out, err) = cli(&app, &[&["creditor", "sync", "--org", BANK][..], &tls].concat()).await;
        assert!(ok && out.contains("stored 3 loans"), "{out}{err}");
        assert_eq!(accounts_of(&app, ANNE).await, ["TLS-0"]);
        // Without the client certificate the creditor refuses the handshake;
        // without the CA the server is not trusted; half an identity is refused.
        refused(&app, &["creditor", "test", BANK, "--creditor-ca", ca.ca_path.to_str().unwrap()], "cannot reach the creditor").await;
        refused(&app, &["creditor", "test", BANK], "cannot reach the creditor").await;
        refused(&app, &["creditor", "test", BANK, "--creditor-client-cert", samtykke.cert_path.to_str().unwrap()], "needs its key").await;
        refused(&app, &["creditor", "test", BANK, "--creditor-ca", "/nonexistent/ca.pem"], "cannot read the CA bundle").await;
    }

    async fn the_sandbox_runs_its_creditors_as_live_simulated_creditors_registered_automatically(app) {
        let creditors = app.store.list_creditors().await.unwrap();
        let delivery = parse_delivery(samtykke_core::debt::SANDBOX_DELIVERY, NinPolicy::AllowSynthetic).unwrap();
        assert_eq!(creditors.len(), delivery.financial_institutions.len());
        for record in &creditors {
            assert!(record.creditor.enabled);
            assert!(record.creditor.endpoint.as_str().starts_with("http://127.0.0.1:"), "{}", record.creditor.endpoint);
            assert!(!record.creditor.name.starts_with("Org. nr."), "{}", record.creditor.name);
            let answer = sandbox_client().get_data_for_ssn(&record.creditor, &Nin::parse(ANNE, NinPolicy::AllowSynthetic).unwrap(), "trace-1").await.unwrap();
            let stored: Vec<_> = app.store.debt_of(&answer.customer_id).await.unwrap().into_iter().filter(|e| e.creditor_org == record.creditor.id).map(|e| e.loan).collect();
            assert_eq!(answer.loans.iter().map(|(_, l)| l.clone()).collect::<Vec<_>>(), stored, "the same data as stored");
        }
        // A second server on the database keeps one registration per creditor.
        let again = crate::helpers::spawn_app_on(&app.database_url).await;
        assert_eq!(again.store.list_creditors().await.unwrap().len(), creditors.len());
        // And the sync of a sandbox creditor works end to end.
        let (ok, out, err) = cli(&app, &["creditor", "sync"]).await;
        assert!(ok, "{out}{err}");
    }

    async fn the_daily_claim_lets_one_of_two_processes_sync_each_creditor_once_a_day(app) {
        let addr = simulator(&delivery_json(BANK, 2, "DAY"), quick(100), None).await;
        app.store.insert_creditor(&creditor(BANK, &format!("http://{addr}/"))).await.unwrap();
        let other = samtykke::storage::open_store(&app.database_url).await.unwrap();
        let schedule = DailySchedule { at: (5, 30), jitter: Duration::from_secs(600) };
        let before = time::macros::datetime!(2026-12-06 05:29 UTC);
        assert!(claim_due(app.store.as_ref(), &schedule, before).await.iter().all(|c| c.id != fi(BANK)), "not due yet");
        let after = time::macros::datetime!(2026-12-06 05:41 UTC);
        let (a, b) = tokio::join!(claim_due(app.store.as_ref(), &schedule, after), claim_due(other.as_ref(), &schedule, after));
        let claims = a.iter().chain(&b).filter(|c| c.id == fi(BANK)).count();
        assert_eq!(claims, 1, "exactly one process claims it");
        assert!(claim_due(other.as_ref(), &schedule, after + time::Duration::hours(3)).await.iter().all(|c| c.id != fi(BANK)), "once a day");
        let next_day = after + time::Duration::days(1);
        assert!(claim_due(other.as_ref(), &schedule, next_day).await.iter().any(|c| c.id == fi(BANK)));
        // A disabled creditor is not claimed.
        let mut disabled = app.store.find_creditor(&fi(BANK)).await.unwrap().unwrap().creditor;
        disabled.enabled = false;
        app.store.update_creditor(&disabled).await.unwrap();
        assert!(claim_due(other.as_ref(), &schedule, next_day + time::Duration::days(1)).await.iter().all(|c| c.id != fi(BANK)));
    }

    async fn creditor_sync_metrics_show_each_creditors_state(app) {
        let addr = simulator(&delivery_json(BANK, 2, "M"), quick(100), None).await;
        app.store.insert_creditor(&creditor(BANK, &format!("http://{addr}/"))).await.unwrap();
        let (ok, _, err) = cli(&app, &["creditor", "sync", "--org", BANK]).await;
        assert!(ok, "{err}");
        let metrics = app.http.get(app.admin_url("/metrics")).send().await.unwrap().text().await.unwrap();
        assert!(metrics.contains(&format!("samtykke_creditor_sync_loans{{creditor=\"{BANK}\"}} 2")), "{metrics}");
        assert!(metrics.contains(&format!("samtykke_creditor_sync_last_outcome{{creditor=\"{BANK}\",outcome=\"ok\"}} 1")));
        assert!(metrics.contains(&format!("samtykke_creditor_sync_consecutive_failures{{creditor=\"{BANK}\"}} 0")));
    }
}

engine_db_tests! {
    async fn http_endpoints_are_refused_outside_a_sandbox_database(url) {
        let output = tokio::task::spawn_blocking(move || run_cli(&url, &["--create", "creditor", "add", "--org", BANK, "--name", "Nordlys", "--endpoint", "http://127.0.0.1:9/"])).await.unwrap();
        let err = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success());
        assert!(err.contains("creditors are called over https:// only"), "{err}");
    }
}

#[tokio::test]
async fn the_simulator_answers_as_the_protocol_documents_with_its_options() {
    let json = delivery_json(BANK, 3, "S");
    let addr = simulator(&json, quick(2), None).await;
    let http = reqwest::Client::new();
    let base = format!("http://{addr}/debt-information/v1/loans/{BANK}");
    // getalldata pages.
    let page: Value = http
        .get(format!("{base}?page=0"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(page["providerID"], "9908:999888777");
    assert_eq!(page["customers"].as_array().unwrap().len(), 2);
    let page: Value = http
        .get(format!("{base}?page=1"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(page["customers"].as_array().unwrap().len(), 1);
    // getDataForSSN: the person's loans; none is 200 with an empty list; no header is 400 with the error shape.
    let answer: Value = http
        .get(format!("{base}/customer"))
        .header("customerID", ANNE)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(answer["loans"][0]["accountID"], "S-0");
    let nobody = synthetic_numbers().nth(1000).unwrap();
    let response = http
        .get(format!("{base}/customer"))
        .header("customerID", &nobody)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.json::<Value>().await.unwrap()["loans"], json!([]));
    let response = http
        .get(format!("{base}/customer"))
        .header("X-Trace-ID", "t-42")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let error: Value = response.json().await.unwrap();
    assert_eq!(error["trace_id"], "t-42");
    assert!(
        error["error"].is_string()
            && error["error_description"].is_string()
            && error["timestamp"].is_string()
    );
    let response = http
        .get(format!(
            "http://{addr}/debt-information/v1/loans/{OTHER}/customer"
        ))
        .header("customerID", ANNE)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);

    // --fail-rate 1: 500 with the error shape; --garbage: 200 that is not JSON; --hang: headers, then nothing.
    let client = sandbox_client();
    let anne = Nin::parse(ANNE, NinPolicy::AllowSynthetic).unwrap();
    let failing = simulator(
        &json,
        SimulatorOptions {
            fail_rate: 1.0,
            ..quick(2)
        },
        None,
    )
    .await;
    let response = http
        .get(format!(
            "http://{failing}/debt-information/v1/loans/{BANK}/customer"
        ))
        .header("customerID", ANNE)
        .header("X-Trace-ID", "t-1")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 500);
    assert_eq!(response.json::<Value>().await.unwrap()["trace_id"], "t-1");
    let garbage = simulator(
        &json,
        SimulatorOptions {
            garbage: true,
            ..quick(2)
        },
        None,
    )
    .await;
    let err = client
        .get_data_for_ssn(&creditor(BANK, &format!("http://{garbage}/")), &anne, "t")
        .await
        .unwrap_err();
    assert!(matches!(err, CreditorCallError::Malformed(_)), "{err}");
    let hanging = simulator(
        &json,
        SimulatorOptions {
            hang: true,
            ..quick(2)
        },
        None,
    )
    .await;
    let mut slow_creditor = creditor(BANK, &format!("http://{hanging}/"));
    slow_creditor.timeout = Duration::from_millis(200);
    let response = http
        .get(format!(
            "http://{hanging}/debt-information/v1/loans/{BANK}/customer"
        ))
        .header("customerID", ANNE)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "the headers come");
    let err = client
        .get_data_for_ssn(&slow_creditor, &anne, "t")
        .await
        .unwrap_err();
    assert_eq!(err, CreditorCallError::Timeout(Duration::from_millis(200)));
    // --latency-ms: never faster than asked (the upper bound is not a test's business).
    let slow = simulator(
        &json,
        SimulatorOptions {
            latency: Duration::from_millis(120),
            ..quick(2)
        },
        None,
    )
    .await;
    let started = std::time::Instant::now();
    client
        .get_data_for_ssn(&creditor(BANK, &format!("http://{slow}/")), &anne, "t")
        .await
        .unwrap();
    assert!(started.elapsed() >= Duration::from_millis(120));
    // An http:// endpoint outside sandbox mode is not called.
    let production =
        CreditorClient::new(&CreditorTls::default(), NinPolicy::AllowSynthetic, false).unwrap();
    let err = production
        .get_data_for_ssn(&creditor(BANK, &format!("http://{addr}/")), &anne, "t")
        .await
        .unwrap_err();
    assert!(err.to_string().contains("sandbox mode only"), "{err}");
}

#[tokio::test]
async fn the_simulate_command_serves_a_file_and_refuses_bad_options() {
    let path = std::env::temp_dir().join(format!(
        "samtykke-sim-{}.json",
        uuid::Uuid::new_v4().simple()
    ));
    std::fs::write(&path, delivery_json(BANK, 3, "CLI")).unwrap();
    let port = crate::helpers::free_loopback_addr().port();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_samtykke"))
        .args([
            "creditor",
            "simulate",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--data",
            path.to_str().unwrap(),
            "--org",
            BANK,
            "--latency-ms",
            "1",
            "--jitter-ms",
            "1",
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let first_line = tokio::task::spawn_blocking(move || {
        let mut reader = std::io::BufReader::new(stdout);
        let mut line = String::new();
        std::io::BufRead::read_line(&mut reader, &mut line).unwrap();
        // Keep reading what it prints, until it exits.
        std::thread::spawn(move || std::io::copy(&mut reader, &mut std::io::sink()));
        line
    })
    .await
    .unwrap();
    assert!(
        first_line.contains(&format!("listening on http://127.0.0.1:{port}/")),
        "{first_line}"
    );
    let answer: Value = reqwest::Client::new()
        .get(format!(
            "http://127.0.0.1:{port}/debt-information/v1/loans/{BANK}/customer"
        ))
        .header("customerID", ANNE)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(answer["loans"][0]["accountID"], "CLI-0");
    let _ = child.kill();
    let _ = child.wait();

    for (args, message) in [
        (vec!["--fail-rate", "1.5"], "--fail-rate"),
        (vec!["--org", OTHER], "no customers of 974760673"),
        (vec!["--listen", "nowhere"], "--listen"),
    ] {
        let mut all = vec![
            "creditor",
            "simulate",
            "--listen",
            "127.0.0.1:0",
            "--data",
            path.to_str().unwrap(),
        ];
        all.extend(args);
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_samtykke"))
            .args(&all)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&output.stderr);
        assert!(
            !output.status.success() && err.contains(message),
            "{all:?}: {err}"
        );
    }
    let _ = std::fs::remove_file(&path);
}
