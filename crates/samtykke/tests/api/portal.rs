//! The individual's portal (issue 20): `/min-side` and `/en/my-page` over
//! real HTTP. A person logs in through the TestID consent flow (which sets
//! the login-session cookie the portal reads), sees their consents and
//! their uses, withdraws one, and logs out.

use std::sync::Arc;

use reqwest::cookie::{CookieStore, Jar};
use samtykke_core::clock::Clock;
use serde_json::Value;
use time::OffsetDateTime;

use crate::helpers::{auth_url, hidden, location, query_of, redeem, run_flow, TestApp};

const ANNE: &str = "14842249091";
const BO: &str = "29868099311";
const CLIENT_NAME: &str = "Sandkasse Bank (test)";
const ORG_NUMBER: &str = "999999999";

/// A browser (cookie jar, no automatic redirects) whose jar the test can read.
fn browser_with_jar() -> (reqwest::Client, Arc<Jar>) {
    let jar = Arc::new(Jar::default());
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .cookie_provider(jar.clone())
        .build()
        .unwrap();
    (client, jar)
}

/// Logs `nin` in through the TestID consent flow, giving the sandbox client
/// a consent on the way; the code that flow ended with.
async fn log_in(app: &TestApp, browser: &reqwest::Client, nin: &str) -> String {
    let done = run_flow(app, browser, &auth_url(app, &[]), nin, "accept").await;
    query_of(&done)["code"].clone()
}

/// A new browser logged in as `nin`, and the code of the consent given.
async fn person(app: &TestApp, nin: &str) -> (reqwest::Client, String) {
    let browser = crate::helpers::browser();
    let code = log_in(app, &browser, nin).await;
    (browser, code)
}

async fn get(browser: &reqwest::Client, url: &str) -> reqwest::Response {
    browser.get(url).send().await.unwrap()
}

/// A portal page that must be there: its text.
async fn page(browser: &reqwest::Client, url: &str) -> String {
    let response = get(browser, url).await;
    assert_eq!(response.status(), 200, "GET {url}");
    response.text().await.unwrap()
}

/// The ids of the consents a list page shows, in order.
fn listed(page: &str) -> Vec<String> {
    page.split("id=\"samtykke-")
        .skip(1)
        .map(|rest| rest[..36].to_owned())
        .collect()
}

/// The text of the element whose class is `class`, in the article of
/// consent `id` (or the whole page).
fn field_of(page: &str, id: Option<&str>, class: &str) -> String {
    let scope = match id {
        Some(id) => {
            let start = page
                .find(&format!("id=\"samtykke-{id}\""))
                .expect("consent listed");
            &page[start..start + page[start..].find("</article>").unwrap()]
        }
        None => page,
    };
    let marker = format!("class=\"{class}\">");
    let start = scope.find(&marker).unwrap_or_else(|| panic!("no {class}")) + marker.len();
    scope[start..start + scope[start..].find('<').unwrap()]
        .trim()
        .to_owned()
}

/// The instant a page shows as `dd.mm.yyyy hh:mm[:ss] ZONE`.
fn shown_instant(shown: &str) -> OffsetDateTime {
    let parts: Vec<&str> = shown.split_whitespace().collect();
    let date: Vec<i32> = parts[0].split('.').map(|p| p.parse().unwrap()).collect();
    let mut clock: Vec<u8> = parts[1].split(':').map(|p| p.parse().unwrap()).collect();
    clock.resize(3, 0);
    let offset = match parts[2] {
        "CET" => 1,
        "CEST" => 2,
        "UTC" => 0,
        other => panic!("unexpected zone {other}"),
    };
    let month = time::Month::try_from(date[1] as u8).unwrap();
    time::Date::from_calendar_date(date[2], month, date[0] as u8)
        .unwrap()
        .with_hms(clock[0], clock[1], clock[2])
        .unwrap()
        .assume_offset(time::UtcOffset::from_hms(offset, 0, 0).unwrap())
}

fn assert_shows(shown: &str, expected: OffsetDateTime) {
    let diff = (shown_instant(shown) - expected).abs();
    assert!(
        diff < time::Duration::minutes(1),
        "{shown} is not {expected}"
    );
}

/// The consent id of a code: the token's consent, as the debt API tells it.
async fn consent_of_code(app: &TestApp, code: &str) -> (String, String) {
    let tokens: Value = redeem(app, code, &[]).await.json().await.unwrap();
    let token = tokens["access_token"].as_str().unwrap().to_owned();
    let debt = app.get_bearer("/v1/debt", &token).await;
    assert_eq!(debt.status(), 200);
    let body: Value = debt.json().await.unwrap();
    (body["consent"]["id"].as_str().unwrap().to_owned(), token)
}

/// `GET /v1/debt/{id}` as the sandbox client.
async fn look_up(app: &TestApp, token: &str, id: &str) -> reqwest::Response {
    app.get_bearer(&format!("/v1/debt/{id}"), token).await
}

async fn debt_token(app: &TestApp) -> String {
    app.sandbox_token(
        "/v1/debt",
        "debt.unsecured.presentation debt.unsecured.processing",
    )
    .await
}

/// How many `SAMTYKKE_ARKIVERT` events the sandbox client's feed has for `id`.
async fn archived_events(app: &TestApp, id: &str) -> usize {
    let token = app
        .sandbox_token("/feed/v1/consent", "client.access.consent.events")
        .await;
    let feed: Value = app
        .get_bearer("/feed/v1/consent?fromSequenceNr=0&limit=10000", &token)
        .await
        .json()
        .await
        .unwrap();
    feed["result"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["consentId"] == id && e["eventType"] == "SAMTYKKE_ARKIVERT")
        .count()
}

async fn post_form(
    browser: &reqwest::Client,
    url: &str,
    form: &[(&str, &str)],
) -> reqwest::Response {
    browser.post(url).form(form).send().await.unwrap()
}

fn assert_page_headers(response: &reqwest::Response) {
    let h = response.headers();
    let csp = h["content-security-policy"].to_str().unwrap();
    assert!(
        csp.contains("default-src 'none'")
            && csp.contains("frame-ancestors 'none'")
            && csp.contains("form-action 'self'"),
        "{csp}"
    );
    assert!(!csp.contains("script-src"), "no script at all: {csp}");
    assert_eq!(h["x-frame-options"], "DENY");
    assert_eq!(h["cache-control"], "no-store");
    assert_eq!(h["referrer-policy"], "no-referrer");
    assert_eq!(h["x-content-type-options"], "nosniff");
}

engine_tests! {
    async fn the_portal_lists_the_persons_consents_with_institution_purpose_kind_status_and_dates(app) {
        let (anne, code) = person(&app, ANNE).await;
        let (regular, _) = consent_of_code(&app, &code).await;
        app.clock.advance(time::Duration::seconds(1));
        let agreement = app.agreement_consent(ANNE, "debt.unsecured.processing", 20).await;
        let (bo, bo_code) = person(&app, BO).await;
        let (bos, _) = consent_of_code(&app, &bo_code).await;

        let response = get(&anne, &app.url("/min-side")).await;
        assert_eq!(response.status(), 200);
        assert_page_headers(&response);
        let list = response.text().await.unwrap();
        assert!(list.contains("<html lang=\"nb\">"));
        assert_eq!(listed(&list), vec![agreement.clone(), regular.clone()], "newest first, only Anne's");
        assert!(!list.contains(&bos));
        assert!(list.contains("Du har gitt 2 samtykker."));
        // Logged in as Anne, her number masked (issue 23 item 8).
        assert!(!list.contains(ANNE));
        assert!(list.contains(&format!("******* {}", &ANNE[7..])));
        for id in [&regular, &agreement] {
            assert_eq!(field_of(&list, Some(id), "institution"), CLIENT_NAME);
            assert_eq!(field_of(&list, Some(id), "org"), ORG_NUMBER);
            assert_eq!(field_of(&list, Some(id), "status status-active"), "Aktivt");
            assert_eq!(field_of(&list, Some(id), "uses"), if *id == regular { "1" } else { "Aldri brukt" });
            assert_shows(&field_of(&list, Some(id), "given"), app.clock.now());
            assert!(list.contains(&format!("href=\"{}/min-side/samtykke/{id}/trekk-tilbake\"", app.base)));
        }
        assert_eq!(field_of(&list, Some(&regular), "kind"), "Gitt av deg på samtykkesiden");
        assert_eq!(field_of(&list, Some(&agreement), "kind"), "Registrert av virksomheten (avtale inngått hos dem)");
        assert_eq!(field_of(&list, Some(&regular), "purpose"), "Vise deg en oversikt over gjelden din");
        assert_eq!(field_of(&list, Some(&agreement), "purpose"), "Vurdere en søknad om kreditt fra deg (kredittvurdering)");
        assert_shows(&field_of(&list, Some(&regular), "valid-until"), app.clock.now() + time::Duration::days(100));
        assert_shows(&field_of(&list, Some(&agreement), "valid-until"), app.clock.now() + time::Duration::days(20));
        assert!(list.contains(&format!("href=\"{}/en/my-page\" lang=\"en\" hreflang=\"en\"", app.base)), "the language switch");

        let english = page(&anne, &app.url("/en/my-page")).await;
        assert!(english.contains("<html lang=\"en\">"));
        assert_eq!(listed(&english), vec![agreement.clone(), regular.clone()]);
        assert!(english.contains("You have given 2 consents."));
        assert_eq!(field_of(&english, Some(&regular), "kind"), "Given by you on the consent page");
        assert_eq!(field_of(&english, Some(&agreement), "kind"), "Registered by the institution (agreement made with them)");
        assert_eq!(field_of(&english, Some(&regular), "purpose"), "Show you an overview of your debt");
        assert_eq!(field_of(&english, Some(&regular), "status status-active"), "Active");
        assert!(english.contains(&format!("href=\"{}/min-side\" lang=\"nb\" hreflang=\"nb\"", app.base)));

        let bos_list = page(&bo, &app.url("/min-side")).await;
        assert_eq!(listed(&bos_list), vec![bos]);
        assert!(bos_list.contains("Du har gitt 1 samtykke."));
    }

    async fn every_use_of_a_consent_is_shown_on_its_page_a_page_at_a_time(app) {
        let (anne, code) = person(&app, ANNE).await;
        let (id, _) = consent_of_code(&app, &code).await;
        let token = debt_token(&app).await;
        for _ in 0..54 {
            assert_eq!(look_up(&app, &token, &id).await.status(), 200);
        }
        let list = page(&anne, &app.url("/min-side")).await;
        assert_eq!(field_of(&list, Some(&id), "uses"), "55");

        let detail_url = app.url(&format!("/min-side/samtykke/{id}"));
        let detail = page(&anne, &detail_url).await;
        let rows = |page: &str| page.matches(&format!("<td>{CLIENT_NAME} (org.nr. {ORG_NUMBER})</td>")).count();
        assert_eq!(rows(&detail), 50);
        assert!(detail.contains("Side 1 av 2"));
        assert!(detail.contains(&format!("href=\"{detail_url}?side=2\" rel=\"next\"")));
        let first_row = detail.split("<tbody>").nth(1).unwrap();
        assert_shows(&first_row[first_row.find("<td>").unwrap() + 4..first_row.find("</td>").unwrap()], app.clock.now());
        let second = page(&anne, &format!("{detail_url}?side=2")).await;
        assert_eq!(rows(&second), 5);
        assert!(second.contains(&format!("href=\"{detail_url}\" rel=\"prev\"")));
        assert!(!second.contains("rel=\"next\""));

        let english = page(&anne, &app.url(&format!("/en/my-page/consent/{id}?page=2"))).await;
        assert_eq!(english.matches(&format!("<td>{CLIENT_NAME} (org. no. {ORG_NUMBER})</td>")).count(), 5);
        assert!(english.contains("Page 2 of 2"));

        // A consent without uses says so.
        let unused = app.agreement_consent(ANNE, "debt.unsecured.presentation", 5).await;
        let detail = page(&anne, &app.url(&format!("/min-side/samtykke/{unused}"))).await;
        assert_eq!(rows(&detail), 0);
        assert!(detail.contains("Aldri brukt."));
    }

    async fn each_use_shows_what_every_creditor_did(app) {
        use samtykke_core::creditor_lookup::{CreditorFailure, CreditorUsage, Served};
        let (anne, code) = person(&app, ANNE).await;
        let (id, _) = consent_of_code(&app, &code).await;
        let consent = samtykke_core::consent::ConsentId::parse(&id).unwrap();
        let report = vec![
            CreditorUsage { id: "923456783".into(), name: "Alfa Bank ASA".into(), asked: true, served: Served::Answered, failure: None },
            CreditorUsage { id: "912345688".into(), name: "Beta Kreditt AS".into(), asked: true, served: Served::Stored, failure: Some(CreditorFailure::Timeout) },
            CreditorUsage { id: "987654325".into(), name: "Gamma Finans AS".into(), asked: false, served: Served::Missing, failure: Some(CreditorFailure::CircuitOpen) },
            CreditorUsage { id: "987654333".into(), name: "Delta Lån AS".into(), asked: false, served: Served::Stored, failure: None },
        ];
        let lookup = samtykke_core::debt_lookup::DebtLookup {
            consent_id: consent,
            client_id: app.sandbox.client_id.clone(),
            purposes: vec![samtykke_core::domain::Purpose::Presentation],
            at: app.clock.now() + time::Duration::SECOND,
            trace_id: "portal-report".into(),
            creditors: report,
        };
        assert!(matches!(app.store.look_up_debt(&lookup).await.unwrap(), samtykke_core::debt_lookup::DebtLookupOutcome::Served { .. }));
        let detail = page(&anne, &app.url(&format!("/min-side/samtykke/{id}"))).await;
        let newest = detail.split("<tbody>").nth(1).unwrap().split("</tr>").next().unwrap();
        for item in [
            "<li class=\"answered\">Alfa Bank ASA: svarte</li>",
            "<li class=\"stored\">Beta Kreditt AS: svarte ikke, lagrede opplysninger ble brukt</li>",
            "<li class=\"missing\">Gamma Finans AS: svarte ikke, ikke med i svaret</li>",
            "<li class=\"stored\">Delta Lån AS: lagrede opplysninger</li>",
        ] {
            assert!(newest.contains(item), "{item} in {newest}");
        }
        let english = page(&anne, &app.url(&format!("/en/my-page/consent/{id}"))).await;
        assert!(english.contains("Gamma Finans AS: did not answer, left out of the answer"), "{english}");
        assert!(english.contains("<th scope=\"col\">From the creditors</th>"));
    }

    async fn many_consents_are_listed_twenty_to_a_page(app) {
        let (anne, _) = person(&app, ANNE).await;
        for _ in 0..23 {
            app.agreement_consent(ANNE, "debt.unsecured.presentation", 30).await;
        }
        let first = page(&anne, &app.url("/min-side")).await;
        assert!(first.contains("Du har gitt 24 samtykker."));
        assert_eq!(listed(&first).len(), 20);
        assert!(first.contains("Side 1 av 2"));
        assert!(first.contains(&format!("href=\"{}/min-side?side=2\" rel=\"next\"", app.base)));
        assert!(!first.contains("rel=\"prev\""));
        let second = page(&anne, &app.url("/min-side?side=2")).await;
        assert_eq!(listed(&second).len(), 4);
        assert!(second.contains(&format!("href=\"{}/min-side\" rel=\"prev\"", app.base)));
        let mut all: Vec<String> = listed(&first).into_iter().chain(listed(&second)).collect();
        all.sort();
        all.dedup();
        assert_eq!(all.len(), 24, "no consent on two pages, none left out");
        assert!(second.contains(&format!("href=\"{}/en/my-page?page=2\"", app.base)), "the switch keeps the page");

        let past = page(&anne, &app.url("/min-side?side=9")).await;
        assert!(listed(&past).is_empty());
        assert!(past.contains(&format!("href=\"{}/min-side?side=2\" rel=\"prev\"", app.base)));
        for junk in ["side=0", "side=-1", "side=x", "side=99999999999999999999"] {
            assert_eq!(listed(&page(&anne, &app.url(&format!("/min-side?{junk}"))).await), listed(&first), "{junk}");
        }
    }

    async fn withdrawing_asks_first_then_revokes_once_and_the_institution_is_refused_at_once(app) {
        let (anne, code) = person(&app, ANNE).await;
        let (id, bound_token) = consent_of_code(&app, &code).await;
        let token = debt_token(&app).await;
        assert_eq!(look_up(&app, &token, &id).await.status(), 200);

        let detail_url = app.url(&format!("/min-side/samtykke/{id}"));
        let confirm_url = format!("{detail_url}/trekk-tilbake");
        let confirm = get(&anne, &confirm_url).await;
        assert_eq!(confirm.status(), 200);
        assert_page_headers(&confirm);
        let confirm = confirm.text().await.unwrap();
        assert!(confirm.contains("Vil du trekke tilbake samtykket?"));
        assert!(confirm.contains(&format!("<form method=\"post\" action=\"{confirm_url}\">")));
        assert_eq!(look_up(&app, &token, &id).await.status(), 200, "asking is not withdrawing");
        assert_eq!(archived_events(&app, &id).await, 0);

        let csrf = hidden(&confirm, "csrf");
        let done = post_form(&anne, &confirm_url, &[("csrf", &csrf), ("confirm", "yes")]).await;
        assert_eq!(location(&done), detail_url);
        let refused = look_up(&app, &token, &id).await;
        assert_eq!(refused.status(), 403);
        let body: Value = refused.json().await.unwrap();
        assert_eq!(body["error"], "invalid consent");
        assert!(body["error_description"].as_str().unwrap().starts_with("Consent revoked at "), "{body}");
        assert_eq!(app.get_bearer("/v1/debt", &bound_token).await.status(), 403, "the tokens bound to it are revoked");
        assert_eq!(archived_events(&app, &id).await, 1);

        let detail = page(&anne, &detail_url).await;
        assert_eq!(field_of(&detail, None, "status status-revoked"), "Trukket tilbake av deg");
        assert!(detail.contains("class=\"notice\""));
        assert!(!detail.contains("trekk-tilbake\""), "no withdraw link any more");
        let list = page(&anne, &app.url("/min-side")).await;
        assert_eq!(field_of(&list, Some(&id), "status status-revoked"), "Trukket tilbake av deg");
        assert_shows(&field_of(&list, Some(&id), "ended-at"), app.clock.now());

        // Again: the same answer, nothing more written.
        let again = post_form(&anne, &confirm_url, &[("csrf", &csrf), ("confirm", "yes")]).await;
        assert_eq!(location(&again), detail_url);
        assert_eq!(archived_events(&app, &id).await, 1, "exactly one SAMTYKKE_ARKIVERT");
        assert_eq!(location(&get(&anne, &confirm_url).await), detail_url, "nothing left to confirm");

        // The institution's own revocation is told apart.
        let other = app.agreement_consent(ANNE, "debt.unsecured.presentation", 5).await;
        let deleted = app.http.delete(app.url(&format!("/v1/debt/{other}"))).bearer_auth(&token).send().await.unwrap();
        assert_eq!(deleted.status(), 204);
        let list = page(&anne, &app.url("/min-side")).await;
        assert_eq!(field_of(&list, Some(&other), "status status-revoked"), "Trukket tilbake av virksomheten");

        // In English too.
        let english = app.agreement_consent(ANNE, "debt.unsecured.presentation", 5).await;
        let url = app.url(&format!("/en/my-page/consent/{english}/withdraw"));
        let confirm = page(&anne, &url).await;
        assert!(confirm.contains("Do you want to withdraw this consent?"));
        let done = post_form(&anne, &url, &[("csrf", &hidden(&confirm, "csrf"))]).await;
        assert_eq!(location(&done), app.url(&format!("/en/my-page/consent/{english}")));
        assert_eq!(look_up(&app, &token, &english).await.status(), 403);
        assert_eq!(archived_events(&app, &english).await, 1);
    }

    async fn a_form_without_this_sessions_csrf_token_changes_nothing(app) {
        let (anne, code) = person(&app, ANNE).await;
        let (id, _) = consent_of_code(&app, &code).await;
        let (bo, _) = person(&app, BO).await;
        let bos_csrf = hidden(&page(&bo, &app.url("/min-side")).await, "csrf");
        let url = app.url(&format!("/min-side/samtykke/{id}/trekk-tilbake"));
        let anne_csrf = hidden(&page(&anne, &url).await, "csrf");
        let forms: [&[(&str, &str)]; 4] = [&[], &[("csrf", "")], &[("csrf", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")], &[("csrf", &bos_csrf)]];
        for form in forms {
            let refused = post_form(&anne, &url, form).await;
            assert_eq!(refused.status(), 403, "{form:?}");
            assert_page_headers(&refused);
            let refused = post_form(&anne, &app.url("/min-side/logout"), form).await;
            assert_eq!(refused.status(), 403, "logout {form:?}");
        }
        // A token of this session in another browser (no cookies) is refused
        // too: the person behind it is not logged in there.
        let stranger = crate::helpers::browser();
        let elsewhere = post_form(&stranger, &url, &[("csrf", &anne_csrf)]).await;
        assert_eq!(location(&elsewhere), app.url("/min-side/login?return=/min-side"));
        // A new login of the same person gets a new token.
        app.clock.advance(time::Duration::seconds(1));
        run_flow(&app, &anne, &auth_url(&app, &[("prompt", "login")]), ANNE, "accept").await;
        let renewed = hidden(&page(&anne, &url).await, "csrf");
        assert_ne!(renewed, anne_csrf);
        assert_eq!(post_form(&anne, &url, &[("csrf", &anne_csrf)]).await.status(), 403, "the old session's token");

        assert_eq!(archived_events(&app, &id).await, 0);
        assert_eq!(look_up(&app, &debt_token(&app).await, &id).await.status(), 200);
        assert_eq!(get(&anne, &app.url("/min-side")).await.status(), 200, "still logged in");
    }

    async fn another_persons_consent_an_unknown_id_and_a_malformed_one_get_one_answer(app) {
        let (anne, _) = person(&app, ANNE).await;
        let (_, bo_code) = person(&app, BO).await;
        let (bos, _) = consent_of_code(&app, &bo_code).await;
        let csrf = hidden(&page(&anne, &app.url("/min-side")).await, "csrf");
        let ids = [bos.clone(), uuid::Uuid::new_v4().to_string(), "not-a-consent".to_owned(), "12345".to_owned(), "%FF%FE".to_owned(), bos.to_uppercase().replace('-', "")];
        let gets = ["/min-side/samtykke/{id}", "/min-side/samtykke/{id}?side=2", "/min-side/samtykke/{id}/trekk-tilbake", "/en/my-page/consent/{id}", "/en/my-page/consent/{id}/withdraw"];
        let posts = ["/min-side/samtykke/{id}/trekk-tilbake", "/en/my-page/consent/{id}/withdraw"];
        for (method, templates) in [("GET", &gets[..]), ("POST", &posts[..])] {
            for template in templates {
                let mut answers = Vec::new();
                for id in &ids {
                    let url = app.url(&template.replace("{id}", id));
                    let response = if method == "GET" { get(&anne, &url).await } else { post_form(&anne, &url, &[("csrf", &csrf)]).await };
                    let status = response.status();
                    let body = response.text().await.unwrap();
                    assert!(!body.contains(&bos) && !body.contains(BO), "{method} {url} tells of Bo's consent");
                    answers.push((status, body));
                }
                assert_eq!(answers[0].0, 404, "{method} {template}");
                assert!(answers.windows(2).all(|w| w[0] == w[1]), "{method} {template}: {:?}", answers.iter().map(|a| a.0).collect::<Vec<_>>());
            }
        }
        assert_eq!(archived_events(&app, &bos).await, 0, "Bo's consent is untouched");
        assert_eq!(look_up(&app, &debt_token(&app).await, &bos).await.status(), 200);
    }

    async fn without_a_login_the_portal_sends_to_identification_and_shows_nothing(app) {
        let (_, code) = person(&app, ANNE).await;
        let (id, _) = consent_of_code(&app, &code).await;
        let stranger = crate::helpers::browser();
        let to_login = app.url("/min-side/login?return=/min-side");
        let to_login_en = app.url("/min-side/login?return=/en/my-page");
        for (path, expected) in [
            ("/min-side".to_owned(), &to_login),
            ("/min-side?side=2".to_owned(), &to_login),
            (format!("/min-side/samtykke/{id}"), &to_login),
            (format!("/min-side/samtykke/{id}/trekk-tilbake"), &to_login),
            ("/en/my-page".to_owned(), &to_login_en),
            (format!("/en/my-page/consent/{id}"), &to_login_en),
            (format!("/en/my-page/consent/{id}/withdraw"), &to_login_en),
        ] {
            let response = get(&stranger, &app.url(&path)).await;
            assert_eq!(&location(&response), expected, "{path}");
            assert_eq!(response.headers()["cache-control"], "no-store");
            assert!(response.text().await.unwrap().is_empty(), "{path} shows nothing");
        }
        let posted = post_form(&stranger, &app.url(&format!("/min-side/samtykke/{id}/trekk-tilbake")), &[("csrf", "x")]).await;
        assert_eq!(location(&posted), to_login);

        // Cookies this server did not seal count for nothing.
        let forged = app.http.get(app.url("/min-side"))
            .header("cookie", "samtykke_browser=aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa; samtykke_session=s1.AAAA")
            .send().await.unwrap();
        assert_eq!(location(&forged), to_login);

        // A login session ends with its time (30 minutes).
        let (anne, _) = person(&app, ANNE).await;
        assert_eq!(get(&anne, &app.url("/min-side")).await.status(), 200);
        app.clock.advance(time::Duration::minutes(31));
        assert_eq!(location(&get(&anne, &app.url("/min-side")).await), to_login);
        assert_eq!(archived_events(&app, &id).await, 0);
    }

    async fn logging_out_ends_the_session_here_for_good(app) {
        let (anne, jar) = browser_with_jar();
        log_in(&app, &anne, ANNE).await;
        let list = page(&anne, &app.url("/min-side")).await;
        assert!(list.contains(&format!("<form method=\"post\" action=\"{}/min-side/logout\" class=\"logout\">", app.base)));
        let cookies = jar.cookies(&app.base.parse().unwrap()).expect("cookies");

        let out = post_form(&anne, &app.url("/min-side/logout"), &[("csrf", &hidden(&list, "csrf"))]).await;
        assert_eq!(out.status(), 200, "TestID has no end-session endpoint: our own page");
        assert_page_headers(&out);
        let cleared: Vec<&str> = out.headers().get_all("set-cookie").iter().map(|v| v.to_str().unwrap()).collect();
        assert!(cleared.iter().any(|c| c.starts_with("samtykke_session=;") && c.contains("Max-Age=0")), "{cleared:?}");
        let text = out.text().await.unwrap();
        assert!(text.contains("Du er logget ut"));
        assert_eq!(location(&get(&anne, &app.url("/min-side")).await), app.url("/min-side/login?return=/min-side"));

        // The old cookies, replayed, are no login any more.
        let replayed = app.http.get(app.url("/min-side")).header("cookie", cookies.to_str().unwrap()).send().await.unwrap();
        assert_eq!(location(&replayed), app.url("/min-side/login?return=/min-side"));

        // Logging out without a session just says so; the pages the
        // provider returns to exist in both languages.
        let again = post_form(&anne, &app.url("/en/my-page/logout"), &[]).await;
        assert_eq!(again.status(), 200);
        assert!(again.text().await.unwrap().contains("You are logged out"));
        assert!(page(&anne, &app.url("/min-side/logget-ut")).await.contains("Du er logget ut"));
        assert!(page(&anne, &app.url("/en/my-page/logged-out")).await.contains("You are logged out"));

        // A new login works as before.
        app.clock.advance(time::Duration::seconds(1));
        log_in(&app, &anne, ANNE).await;
        assert_eq!(listed(&page(&anne, &app.url("/min-side")).await).len(), 2);
    }
}

/// An identity provider with an end-session endpoint, standing in for an
/// upstream OpenID provider: identification is TestID's.
struct ProviderWithLogout;

#[async_trait::async_trait]
impl samtykke_http::identity::IdentityProvider for ProviderWithLogout {
    fn name(&self) -> &'static str {
        "provider-with-logout"
    }

    fn begin(&self) -> samtykke_http::identity::LoginStart {
        samtykke_http::identity::TestId.begin()
    }

    async fn complete(
        &self,
        params: &[(String, String)],
        pending: Option<&samtykke_http::identity::Pending>,
        policy: samtykke_core::domain::NinPolicy,
    ) -> Result<samtykke_core::domain::Nin, samtykke_http::identity::LoginFailure> {
        samtykke_http::identity::TestId
            .complete(params, pending, policy)
            .await
    }

    fn end_session_url(&self, return_to: &str) -> Option<String> {
        let query = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("post_logout_redirect_uri", return_to)
            .finish();
        Some(format!("https://provider.example/logout?{query}"))
    }
}

/// A second server on `app`'s database whose identity provider has an
/// end-session endpoint; its base URL and the sender that stops it.
async fn server_with_provider_logout(app: &TestApp) -> (String, tokio::sync::oneshot::Sender<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let settings = samtykke_http::ServerSettings {
        issuer: base.clone(),
        api_base: base.clone(),
        access_token_ttl: time::Duration::hours(1),
        sandbox: true,
    };
    let state =
        samtykke_http::AppState::new(app.store.clone(), Arc::new(app.clock.clone()), settings)
            .with_identity_provider(Arc::new(ProviderWithLogout));
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(samtykke_http::serve(
        listener,
        state,
        samtykke_http::ServeOptions::default(),
        async {
            let _ = rx.await;
        },
    ));
    (base, tx)
}

engine_tests! {
    async fn logging_out_continues_at_the_providers_end_session_endpoint_when_it_has_one(app) {
        let (server, _stop) = server_with_provider_logout(&app).await;
        // Cookies are kept per host, not per port: the login at the first
        // server is the browser's login at the second too (same database,
        // same keys).
        let (anne, _) = person(&app, ANNE).await;
        let response = get(&anne, &format!("{server}/min-side")).await;
        let csp = response.headers()["content-security-policy"].to_str().unwrap().to_owned();
        assert!(csp.contains("form-action 'self' https://provider.example;"), "the logout form may continue at the provider: {csp}");
        let list = response.text().await.unwrap();
        assert_eq!(listed(&list).len(), 1);
        let out = post_form(&anne, &format!("{server}/min-side/logout"), &[("csrf", &hidden(&list, "csrf"))]).await;
        let to = location(&out);
        let expected_return = format!("{server}/min-side/logget-ut");
        assert!(to.starts_with("https://provider.example/logout?"), "{to}");
        assert_eq!(query_of(&to)["post_logout_redirect_uri"], expected_return);
        let cleared: Vec<&str> = out.headers().get_all("set-cookie").iter().map(|v| v.to_str().unwrap()).collect();
        assert!(cleared.iter().any(|c| c.starts_with("samtykke_session=;")), "{cleared:?}");
        assert_eq!(location(&get(&anne, &app.url("/min-side")).await), app.url("/min-side/login?return=/min-side"), "the session ended here first");
        assert!(page(&anne, &expected_return).await.contains("Du er logget ut"));

        let (anne, _) = person(&app, ANNE).await;
        let english = page(&anne, &format!("{server}/en/my-page")).await;
        let out = post_form(&anne, &format!("{server}/en/my-page/logout"), &[("csrf", &hidden(&english, "csrf"))]).await;
        assert_eq!(query_of(&location(&out))["post_logout_redirect_uri"], format!("{server}/en/my-page/logged-out"));
    }
}
