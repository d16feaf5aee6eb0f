//! `samtykke debt import FILE` through the real binary, against the database
//! of a running server: what a valid delivery imports is what the debt API
//! serves; a broken file fails with exit status 1, names the line, and
//! imports nothing.

use samtykke_core::domain::{Nin, NinPolicy};
use serde_json::{json, Value};

use crate::helpers::{run_cli, TestApp};
use crate::schema::assert_conforms;

/// Two people, two creditors, every loan type. Values that the broken
/// variants below edit are unique in the file.
const DELIVERY: &str = r#"{
  "providerID": "912000001",
  "customers": [
    {
      "customerID": "15038510190",
      "financialInstitutionID": "912000028",
      "financialInstitutionName": "Testbanken ASA",
      "loans": [
        {
          "type": "repaymentLoan",
          "accountID": "TB-1",
          "timestamp": "2026-11-20T06:00:00Z",
          "coBorrower": 2,
          "originalBalance": 20000000,
          "balance": 15000050,
          "terms": 120,
          "nominalInterestRate": 1190,
          "installmentCharges": 5000,
          "installmentChargePeriod": "MONTHLY"
        },
        {
          "type": "creditFacility",
          "accountID": "TB-2",
          "timestamp": "2026-11-20T06:00:00Z",
          "coBorrower": 0,
          "creditLimit": 4000000,
          "interestBearingBalance": 1234500,
          "nonInterestBearingBalance": 6700,
          "nominalInterestRate": 2250,
          "installmentCharges": 3500,
          "installmentChargePeriod": "QUARTERLY"
        }
      ]
    },
    {
      "customerID": "15038510190",
      "financialInstitutionID": "912000036",
      "financialInstitutionName": "Kortselskapet AS",
      "loans": [
        {
          "type": "chargeCard",
          "accountID": "KS-1",
          "timestamp": "2026-11-20T07:30:00Z",
          "coBorrower": 0,
          "interestBearingBalance": 0,
          "nonInterestBearingBalance": 870000
        }
      ]
    },
    {
      "customerID": "02079110046",
      "financialInstitutionID": "912000036",
      "financialInstitutionName": "Kortselskapet AS",
      "loans": [
        {
          "type": "chargeCard",
          "accountID": "KS-2",
          "timestamp": "2026-11-20T07:30:00Z",
          "coBorrower": 1,
          "interestBearingBalance": 250001,
          "nonInterestBearingBalance": 99000
        }
      ]
    }
  ]
}
"#;

const FIRST: &str = "15038510190";
const SECOND: &str = "02079110046";

/// The 1-based line of the first occurrence of `needle`.
fn line_of(text: &str, needle: &str) -> usize {
    text.lines()
        .position(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("{needle:?} not in the file"))
        + 1
}

/// The 1-based line of the first `}` after the line holding `needle`: where
/// the object around `needle` ends.
fn end_of_object_with(text: &str, needle: &str) -> usize {
    let start = line_of(text, needle);
    start
        + text
            .lines()
            .skip(start)
            .position(|l| l.trim_start().starts_with('}'))
            .unwrap()
        + 1
}

fn write(text: &str) -> std::path::PathBuf {
    let path = std::env::temp_dir().join(format!(
        "samtykke-delivery-{}.json",
        uuid::Uuid::new_v4().simple()
    ));
    std::fs::write(&path, text).unwrap();
    path
}

fn import(app: &TestApp, text: &str, extra: &[&str]) -> std::process::Output {
    let path = write(text);
    let output = run_cli(
        &app.database_url,
        &[&["debt", "import", path.to_str().unwrap()], extra].concat(),
    );
    let _ = std::fs::remove_file(&path);
    output
}

/// The loans of a person through the debt API, sorted for comparison.
async fn debt_via_api(app: &TestApp, nin: &str) -> Value {
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
        .sort_by_key(|l| (l["creditorName"].to_string(), l["loan"]["type"].to_string()));
    debt
}

async fn stored_loans(app: &TestApp, nin: &str) -> usize {
    app.store
        .debt_of(&Nin::parse(nin, NinPolicy::AllowSynthetic).unwrap())
        .await
        .unwrap()
        .len()
}

/// The file's loan as the API serves it: the same fields without `accountID`.
fn served(loan: &Value) -> Value {
    let mut loan = loan.clone();
    loan.as_object_mut().unwrap().remove("accountID");
    loan
}

fn assert_refused(output: &std::process::Output, line: usize, message: &str) {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("line {line},")),
        "expected line {line}: {stderr}"
    );
    assert!(stderr.contains(message), "expected {message:?}: {stderr}");
    assert!(stderr.contains("nothing was imported"), "{stderr}");
    assert!(
        output.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&output.stdout)
    );
}

engine_tests! {
    async fn a_valid_delivery_is_imported_and_served_by_the_debt_api(app) {
        assert_eq!(debt_via_api(&app, FIRST).await["loans"], json!([]), "no debt before the import");
        let output = import(&app, DELIVERY, &[]);
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        assert_eq!(
            String::from_utf8_lossy(&output.stdout).trim(),
            "imported 4 loans of 2 people from 2 financial institution(s) (provider 912000001)"
        );

        let file: Value = serde_json::from_str(DELIVERY).unwrap();
        let loan = |customer: usize, index: usize| served(&file["customers"][customer]["loans"][index]);
        let first = debt_via_api(&app, FIRST).await;
        assert_eq!(first["ssn"], FIRST);
        assert_eq!(first["loans"], json!([
            {"creditorName": "Kortselskapet AS", "loan": loan(1, 0)},
            {"creditorName": "Testbanken ASA", "loan": loan(0, 1)},
            {"creditorName": "Testbanken ASA", "loan": loan(0, 0)},
        ]));
        assert_eq!(first["numberOfCreditorsAnswered"], 2);
        assert_eq!(first["numberOfcreditorsMissing"], 0);
        let second = debt_via_api(&app, SECOND).await;
        assert_eq!(second["loans"], json!([{"creditorName": "Kortselskapet AS", "loan": loan(2, 0)}]));
        assert_eq!(second["numberOfCreditorsAnswered"], 1);

        // A new delivery from one creditor replaces that creditor's loans only.
        let update = json!({"providerID": "912000001", "customers": [{
            "customerID": SECOND, "financialInstitutionID": "912000036", "financialInstitutionName": "Kortselskapet AS",
            "loans": [{"type": "chargeCard", "accountID": "KS-9", "timestamp": "2026-11-21T07:30:00Z", "coBorrower": 0,
                       "interestBearingBalance": 100, "nonInterestBearingBalance": 200}]}]});
        let output = import(&app, &serde_json::to_string_pretty(&update).unwrap(), &[]);
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        let first = debt_via_api(&app, FIRST).await;
        let creditors: Vec<&str> = first["loans"].as_array().unwrap().iter().map(|l| l["creditorName"].as_str().unwrap()).collect();
        assert_eq!(creditors, ["Testbanken ASA", "Testbanken ASA"], "Kortselskapet's old loans of the first person are gone");
        assert_eq!(debt_via_api(&app, SECOND).await["loans"], json!([{"creditorName": "Kortselskapet AS", "loan": served(&update["customers"][0]["loans"][0])}]));
        // The sandbox people's debt from other creditors is untouched.
        assert!(debt_via_api(&app, "14842249091").await["loans"].as_array().unwrap().len() >= 3);
    }

    async fn loans_are_served_by_creditor_name_and_within_a_creditor_in_delivery_order(app) {
        let output = import(&app, DELIVERY, &[]);
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        let id = app.agreement_consent(FIRST, "debt.unsecured.presentation", 30).await;
        let token = app.sandbox_token("/v1/debt", "debt.unsecured.presentation").await;
        let file: Value = serde_json::from_str(DELIVERY).unwrap();
        let loan = |customer: usize, index: usize| served(&file["customers"][customer]["loans"][index]);
        let expected = json!([
            {"creditorName": "Kortselskapet AS", "loan": loan(1, 0)},
            {"creditorName": "Testbanken ASA", "loan": loan(0, 0)},
            {"creditorName": "Testbanken ASA", "loan": loan(0, 1)},
        ]);
        let response = app.get_bearer(&format!("/v1/debt/{id}"), &token).await;
        assert_eq!(response.status(), 200);
        let debt: Value = response.json().await.unwrap();
        assert_eq!(debt["loans"], expected, "not sorted by the test: as served");
    }

    async fn a_broken_delivery_fails_naming_the_line_and_imports_nothing(app) {
        // On an empty registry: nothing of the valid customers before the error appears.
        let broken = DELIVERY.replace("\"02079110046\"", "\"02079110047\"");
        assert_refused(&import(&app, &broken, &[]), line_of(&broken, "02079110047"), "control digits");
        assert_eq!(stored_loans(&app, FIRST).await, 0);
        assert_eq!(debt_via_api(&app, FIRST).await["loans"], json!([]));

        // Over an earlier import: every broken variant leaves it as it was,
        // although its valid part changes a loan and drops another.
        let output = import(&app, DELIVERY, &[]);
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        let before = (debt_via_api(&app, FIRST).await["loans"].clone(), debt_via_api(&app, SECOND).await["loans"].clone());
        let changed = DELIVERY.replace("\"balance\": 15000050", "\"balance\": 1");
        let missing_field = changed.replace("          \"interestBearingBalance\": 250001,\n", "");
        let wrong_type = changed.replace("\"terms\": 120", "\"terms\": \"120\"");
        let unknown_type = changed.replace("\"type\": \"creditFacility\"", "\"type\": \"mortgage\"");
        let bad_json = changed.replace("\"nonInterestBearingBalance\": 99000", "\"nonInterestBearingBalance\": 99000,");
        let truncated = changed[..changed.find("\"KS-2\"").unwrap()].to_owned();
        let negative = changed.replace("\"creditLimit\": 4000000", "\"creditLimit\": -4000000");
        let synthetic = changed.replace("\"02079110046\"", "\"11887510050\"");
        let short_nin = changed.replace("\"02079110046\"", "\"0207911004\"");
        let bad_provider = changed.replace("\"912000001\"", "\"9908:91200000\"");
        let no_customers = "{\n  \"providerID\": \"912000001\"\n}\n".to_owned();
        for (text, line, message) in [
            (&missing_field, end_of_object_with(&missing_field, "\"KS-2\""), "missing field `interestBearingBalance`, which a chargeCard requires"),
            (&wrong_type, line_of(&wrong_type, "\"terms\""), "terms"),
            (&unknown_type, line_of(&unknown_type, "mortgage"), "creditFacility, repaymentLoan, chargeCard"),
            (&bad_json, line_of(&bad_json, "\"nonInterestBearingBalance\": 99000,") + 1, "trailing comma"),
            (&truncated, truncated.lines().count(), "EOF"),
            (&negative, line_of(&negative, "-4000000"), "øre"),
            (&synthetic, line_of(&synthetic, "11887510050"), "synthetic test numbers"),
            (&short_nin, line_of(&short_nin, "0207911004"), "11 digits"),
            (&bad_provider, line_of(&bad_provider, "9908:91200000"), "providerID"),
            (&no_customers, 3, "missing field `customers`"),
        ] {
            let output = import(&app, text, &[]);
            assert_refused(&output, line, message);
            assert_eq!(debt_via_api(&app, FIRST).await["loans"], before.0, "{message}: the first person's debt changed");
            assert_eq!(debt_via_api(&app, SECOND).await["loans"], before.1, "{message}: the second person's debt changed");
        }
        // The synthetic-number error names the flag that accepts them; no
        // other error does.
        let stderr = String::from_utf8_lossy(&import(&app, &synthetic, &[]).stderr).into_owned();
        assert!(stderr.contains("add --allow-synthetic"), "{stderr}");
        let stderr = String::from_utf8_lossy(&import(&app, &short_nin, &[]).stderr).into_owned();
        assert!(!stderr.contains("--allow-synthetic"), "{stderr}");

        // The error never repeats an identity number it refused.
        let output = import(&app, &short_nin, &[]);
        assert!(!String::from_utf8_lossy(&output.stderr).contains("0207911004"));

        // Synthetic numbers are accepted when asked for (a sandbox's data).
        let output = import(&app, &synthetic, &["--allow-synthetic"]);
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        assert_eq!(stored_loans(&app, "11887510050").await, 1);
    }

    async fn an_unreadable_file_is_refused_with_its_name(app) {
        let missing = std::env::temp_dir().join("samtykke-no-such-delivery.json");
        let output = run_cli(&app.database_url, &["debt", "import", missing.to_str().unwrap()]);
        assert_eq!(output.status.code(), Some(1));
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains("could not read") && stderr.contains("samtykke-no-such-delivery.json"), "{stderr}");
    }

    async fn a_banks_real_file_with_an_iso_6523_provider_and_a_foreign_institution_imports_unchanged(app) {
        // The published example's providerID (its check digit fails mod 11)
        // and a 10-digit Swedish financialInstitutionID.
        let real = json!({"providerID": "9908:999888777", "customers": [
            {"customerID": FIRST, "financialInstitutionID": "5560001234", "financialInstitutionName": "Svensk Kredit AB",
             "loans": [{"type": "chargeCard", "accountID": "SE-1", "timestamp": "2026-11-21T07:30:00Z", "coBorrower": 1,
                        "interestBearingBalance": 100, "nonInterestBearingBalance": 200}]},
            {"customerID": SECOND, "financialInstitutionID": "5560001234", "loans": []}
        ]});
        let text = serde_json::to_string_pretty(&real).unwrap();
        let output = import(&app, &text, &[]);
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        assert_eq!(
            String::from_utf8_lossy(&output.stdout).trim(),
            "imported 1 loans of 1 people from 1 financial institution(s) (provider 999888777)"
        );
        let debt = debt_via_api(&app, FIRST).await;
        assert_eq!(debt["loans"], json!([{"creditorName": "Svensk Kredit AB", "loan": served(&real["customers"][0]["loans"][0])}]));
        assert_eq!(debt["numberOfCreditorsAnswered"], 1);
    }

    async fn a_duplicate_customer_or_a_missing_or_invalid_co_borrower_rejects_the_whole_file(app) {
        let file: Value = serde_json::from_str(DELIVERY).unwrap();
        // The first customer again, at the same institution, at the end.
        let mut duplicate = file.clone();
        let again = duplicate["customers"][0].clone();
        let mut again = again;
        again["loans"] = json!([]);
        duplicate["customers"].as_array_mut().unwrap().push(again);
        let text = serde_json::to_string_pretty(&duplicate).unwrap();
        let output = import(&app, &text, &[]);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{stderr}");
        assert!(stderr.contains("duplicate customer"), "{stderr}");
        assert!(stderr.contains("nothing was imported"), "{stderr}");
        assert!(!stderr.contains(FIRST), "the number is never echoed: {stderr}");

        let missing = DELIVERY.replace("          \"coBorrower\": 2,\n", "");
        assert_ne!(missing, DELIVERY);
        let output = import(&app, &missing, &[]);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{stderr}");
        assert!(stderr.contains("missing field `coBorrower`"), "{stderr}");
        for bad in ["3", "null", "\"2\"", "-1"] {
            let invalid = DELIVERY.replace("\"coBorrower\": 2,", &format!("\"coBorrower\": {bad},"));
            let output = import(&app, &invalid, &[]);
            let stderr = String::from_utf8_lossy(&output.stderr);
            assert_eq!(output.status.code(), Some(1), "{bad}: {stderr}");
            assert!(stderr.contains("coBorrower: expected 0 (no co-borrower), 1 (is co-borrower) or 2 (has co-borrower)"), "{bad}: {stderr}");
        }
        // Nothing of any of them was imported.
        assert_eq!(stored_loans(&app, FIRST).await, 0);
    }
}

// --- samtykke debt usage: the auditor's view of a consent's uses -----------

engine_tests! {
    async fn debt_usage_shows_each_use_with_what_every_creditor_did(app) {
        use samtykke_core::creditor_lookup::{CreditorFailure, CreditorUsage, Served};
        use samtykke_core::debt_lookup::{DebtLookup, DebtLookupOutcome};
        use samtykke_core::Clock;
        let id = app.agreement_consent("14842249091", "debt.unsecured.presentation", 30).await;
        let consent = samtykke_core::consent::ConsentId::parse(&id).unwrap();
        let unused = run_cli(&app.database_url, &["debt", "usage", &id]);
        assert!(unused.status.success());
        assert_eq!(String::from_utf8_lossy(&unused.stdout), format!("consent {id} has not been used\n"));

        let report = vec![
            CreditorUsage { id: "923456783".into(), name: "Alfa Bank ASA".into(), asked: true, served: Served::Answered, failure: None },
            CreditorUsage { id: "912345688".into(), name: "Beta Kreditt AS".into(), asked: true, served: Served::Stored, failure: Some(CreditorFailure::Timeout) },
            CreditorUsage { id: "987654325".into(), name: "Gamma Finans AS".into(), asked: false, served: Served::Missing, failure: Some(CreditorFailure::CircuitOpen) },
        ];
        let lookup = DebtLookup {
            consent_id: consent,
            client_id: app.sandbox.client_id.clone(),
            purposes: vec![samtykke_core::domain::Purpose::Presentation],
            at: app.clock.now(),
            trace_id: "audit-1".into(),
            creditors: report,
        };
        assert!(matches!(app.store.look_up_debt(&lookup).await.unwrap(), DebtLookupOutcome::Served { .. }));

        let output = run_cli(&app.database_url, &["debt", "usage", &id]);
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        let text = String::from_utf8_lossy(&output.stdout);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 4, "{text}");
        assert!(lines[0].ends_with(&format!("client {} purpose debt.unsecured.presentation trace audit-1", app.sandbox.client_id)), "{text}");
        assert_eq!(lines[1], "  Alfa Bank ASA (923456783): answered");
        assert_eq!(lines[2], "  Beta Kreditt AS (912345688): stored (did not answer: timeout)");
        assert_eq!(lines[3], "  Gamma Finans AS (987654325): missing (not called: circuit_open)");
        assert!(!text.contains("14842249091"), "no person's number");

        let json = run_cli(&app.database_url, &["debt", "usage", &id, "--json"]);
        let line: Value = serde_json::from_slice(&json.stdout).unwrap();
        assert_eq!(line["trace_id"], "audit-1");
        assert_eq!(line["creditors"][1], json!({"id": "912345688", "name": "Beta Kreditt AS", "asked": true, "served": "stored", "failure": "timeout"}));

        let unknown = run_cli(&app.database_url, &["debt", "usage", &uuid::Uuid::new_v4().to_string()]);
        assert!(!unknown.status.success());
        assert!(String::from_utf8_lossy(&unknown.stderr).contains("no consent"));
    }
}
