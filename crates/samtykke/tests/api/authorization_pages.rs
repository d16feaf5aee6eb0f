//! The authorization endpoint and the pages (SPEC §4, SECURITY.md (a) 1–3,
//! (c)): error pages that never redirect, error redirects with `state` and
//! `iss`, flow state bound to the browser, CSRF, page headers, sessions and
//! logout.

use crate::helpers::{
    auth_url, browser, hidden, location, open_page, query_of, run_flow, serve_config, TestApp,
};

const NIN: &str = "14842249091";
const CALLBACK: &str = "http://127.0.0.1:9999/callback";

/// Asserts an HTML error page: the status, no `Location`, and the page
/// security headers.
async fn assert_error_page(response: reqwest::Response, status: u16) -> String {
    assert_eq!(response.status(), status);
    assert!(
        response.headers().get("location").is_none(),
        "an error page never redirects"
    );
    assert_page_headers(&response);
    response.text().await.unwrap()
}

fn assert_page_headers(response: &reqwest::Response) {
    let h = response.headers();
    let csp = h["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    assert!(csp.contains("default-src 'none'"), "{csp}");
    assert_eq!(h["x-frame-options"], "DENY");
    assert_eq!(h["referrer-policy"], "no-referrer");
    assert_eq!(h["cache-control"], "no-store");
}

/// The error redirect's parameters.
async fn redirected_error(
    app: &TestApp,
    extra: &[(&str, &str)],
) -> std::collections::HashMap<String, String> {
    let response = browser().get(auth_url(app, extra)).send().await.unwrap();
    let to = location(&response);
    assert!(to.starts_with(CALLBACK), "{to}");
    let params = query_of(&to);
    assert!(params.contains_key("error_description"));
    assert_eq!(params["iss"], app.base);
    params
}

/// Starts a flow and identifies; returns the browser, the login page's
/// flow value and CSRF token, the consent page's flow value, and the
/// consent page's URL.
async fn at_consent_page(app: &TestApp) -> (reqwest::Client, (String, String), String, String) {
    let b = browser();
    let start = b.get(auth_url(app, &[])).send().await.unwrap();
    let login_url = location(&start);
    let (flow, csrf, _) = open_page(&b, &login_url).await;
    let login = b
        .post(app.url("/oauth2/login"))
        .form(&[
            ("flow", flow.as_str()),
            ("csrf", csrf.as_str()),
            ("nin", NIN),
            ("action", "login"),
        ])
        .send()
        .await
        .unwrap();
    let consent_url = location(&login);
    let (consent_flow, _, _) = open_page(&b, &consent_url).await;
    (b, (flow, csrf), consent_flow, consent_url)
}

engine_tests! {
    async fn unregistered_redirect_uris_get_an_error_page_and_never_a_redirect(app) {
        for uri in [
            "https://evil.example/callback",
            "http://127.0.0.1:9999/callback/",
            "http://127.0.0.1:9999/callback?x=1",
            "http://127.0.0.1:9999/Callback",
            "http://127.0.0.1:9999/callback#f",
            "HTTP://127.0.0.1:9999/callback",
            "http://127.0.0.1:9999/callback/../callback",
            "http://127.0.0.1:9999/%2E%2E/callback",
            "http://127.0.0.1:9999/callback%252E%252E",
            "http://127.0.0.1:9999/callback..;/",
            "http://127.0.0.1:9999/callback.evil",
            "http://good@127.0.0.1:9999/callback",
            "http://127.0.0.1.evil.example/callback",
            "http://localhost:9999/callback",
            // No URL has these ports (the `redirect_uri` fuzz target, issue 22 item 5).
            "http://127.0.0.1:99999/callback",
            "http://[::1]:65536/callback",
            "javascript:alert(1)",
            "",
        ] {
            let response = browser().get(auth_url(&app, &[("redirect_uri", uri)])).send().await.unwrap();
            assert_error_page(response, 400).await;
        }
        let page = assert_error_page(browser().get(auth_url(&app, &[("client_id", "nobody")])).send().await.unwrap(), 400).await;
        assert!(page.contains("ukjent"), "a Norwegian page by default");
        assert_error_page(browser().get(app.url("/oauth2/auth?response_type=code")).send().await.unwrap(), 400).await;
        let twice = format!("{}&client_id=x", auth_url(&app, &[]));
        assert_error_page(browser().get(twice).send().await.unwrap(), 400).await;
        // A disabled client is unknown.
        let (id, _) = app.create_client(&["--name", "Gone", "--org", "923609016", "--purpose", "presentation", "--redirect-uri", CALLBACK]);
        assert!(crate::helpers::run_cli(&app.database_url, &["client", "disable", &id]).status.success());
        assert_error_page(browser().get(auth_url(&app, &[("client_id", &id)])).send().await.unwrap(), 400).await;
    }

    async fn request_errors_redirect_with_the_contract_codes_state_and_iss(app) {
        for scope in ["openid", "debt.unsecured.presentation debt.unsecured.processing", "debt.unsecured.presentation.0", "debt.unsecured.presentation.x", "consent.create", "debt.unsecured.presentation.-5", "email debt.unsecured.presentation"] {
            let params = redirected_error(&app, &[("scope", scope)]).await;
            assert_eq!(params["error"], "invalid_scopes", "{scope}");
            assert_eq!(params["state"], "state-123");
        }
        assert_eq!(redirected_error(&app, &[("scope", "")]).await["error"], "invalid_scopes");
        assert_eq!(redirected_error(&app, &[("response_type", "token")]).await["error"], "unsupported_response_type");
        assert_eq!(redirected_error(&app, &[("response_type", "")]).await["error"], "invalid_request");
        let no_state = redirected_error(&app, &[("state", "")]).await;
        assert_eq!(no_state["error"], "invalid_request");
        assert!(!no_state.contains_key("state"));
        let pkce_plain = redirected_error(&app, &[("code_challenge", "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"), ("code_challenge_method", "plain")]).await;
        assert_eq!(pkce_plain["error"], "invalid_request");
        let repeated = format!("{}&scope=debt.unsecured.processing", auth_url(&app, &[]));
        let to = location(&browser().get(repeated).send().await.unwrap());
        assert_eq!(query_of(&to)["error"], "invalid_request");
        // A long state comes back byte for byte; odd characters too.
        let long_state = format!("{}&=?/ æøå %", "s".repeat(1500));
        let params = redirected_error(&app, &[("state", &long_state), ("scope", "nope")]).await;
        assert_eq!(params["state"], long_state);
        // Unknown parameters are ignored.
        let ok = browser().get(format!("{}&foo=bar", auth_url(&app, &[]))).send().await.unwrap();
        assert!(location(&ok).contains("/oauth2/login"));
    }

    async fn cancelling_the_login_and_denying_consent_redirect_with_their_codes(app) {
        let b = browser();
        let start = b.get(auth_url(&app, &[])).send().await.unwrap();
        let (flow, csrf, page) = open_page(&b, &location(&start)).await;
        assert!(page.contains("TestID") && page.contains("Testmilj"), "the TestID page with the test banner");
        let cancel = b.post(app.url("/oauth2/login")).form(&[("flow", flow.as_str()), ("csrf", csrf.as_str()), ("action", "cancel")]).send().await.unwrap();
        let params = query_of(&location(&cancel));
        assert_eq!(params["error"], "login_cancelled");
        assert_eq!(params["state"], "state-123");
        assert_eq!(params["iss"], app.base);

        let denied = run_flow(&app, &browser(), &auth_url(&app, &[]), NIN, "deny").await;
        let params = query_of(&denied);
        assert_eq!(params["error"], "consent_denied");
        assert_eq!(params["state"], "state-123");
        assert!(!params.contains_key("code"));
    }

    async fn a_bad_identity_number_is_shown_again_with_an_error_and_nothing_is_decided(app) {
        let b = browser();
        let start = b.get(auth_url(&app, &[("ui_locales", "en")])).send().await.unwrap();
        let (flow, csrf, _) = open_page(&b, &location(&start)).await;
        // 11 digits failing the checksum (a typo) say "wrong check digit";
        // anything else, including 11 digits with a right checksum but no
        // valid birth date, the general text.
        const CHECK_DIGIT: &str = "Wrong check digit: the number has 11 digits, but its check digits do not match.";
        const GENERAL: &str = "Enter a valid 11-digit national identity number";
        for (bad, expected, not) in [
            ("12345678901", CHECK_DIGIT, GENERAL),
            ("14842249092", CHECK_DIGIT, GENERAL),
            ("148 422 490 92", CHECK_DIGIT, GENERAL),
            ("00000000000", GENERAL, CHECK_DIGIT),
            ("abc", GENERAL, CHECK_DIGIT),
            ("", GENERAL, CHECK_DIGIT),
            (&"9".repeat(5000), GENERAL, CHECK_DIGIT),
        ] {
            let response = b.post(app.url("/oauth2/login")).form(&[("flow", flow.as_str()), ("csrf", csrf.as_str()), ("nin", bad), ("action", "login")]).send().await.unwrap();
            assert_eq!(response.status(), 400, "{bad}");
            let page = response.text().await.unwrap();
            assert!(page.contains(expected) && !page.contains(not), "{bad}: English error text");
        }
        // The flow still works after the mistakes.
        let ok = b.post(app.url("/oauth2/login")).form(&[("flow", flow.as_str()), ("csrf", csrf.as_str()), ("nin", NIN), ("action", "login")]).send().await.unwrap();
        let (_, _, consent) = open_page(&b, &location(&ok)).await;
        assert!(consent.contains("Do you consent?") && consent.contains("Sandkasse Bank") && consent.contains("999999999") && consent.contains("100 days"));
        // Plain form actions, for clients that fill forms without an HTML parser.
        assert!(consent.contains(&format!("action=\"{}/oauth2/consent\"", app.base)), "{consent}");
    }

    async fn flow_state_is_bound_to_the_browser_and_forms_need_the_csrf_token(app) {
        let (owner, (login_flow, login_csrf), flow, consent_url) = at_consent_page(&app).await;
        // The flow travels sealed: its state moved on with the login.
        assert_ne!(login_flow, flow);
        assert!(flow.starts_with("f1.") && !flow.contains(NIN), "{flow}");
        let response = owner.get(&consent_url).send().await.unwrap();
        assert_page_headers(&response);
        let page = response.text().await.unwrap();
        let csrf = hidden(&page, "csrf");

        // Another browser cannot use the flow, even with its id and token.
        let stranger = browser();
        assert_error_page(stranger.get(&consent_url).send().await.unwrap(), 400).await;
        let hijack = stranger.post(app.url("/oauth2/consent")).form(&[("flow", flow.as_str()), ("csrf", csrf.as_str()), ("decision", "accept")]).send().await.unwrap();
        assert_error_page(hijack, 400).await;
        // A tampered or unknown flow id.
        let mut tampered = flow.clone();
        tampered.replace_range(0..1, if flow.starts_with('A') { "B" } else { "A" });
        assert_error_page(owner.get(app.url(&format!("/oauth2/consent?flow={tampered}"))).send().await.unwrap(), 400).await;
        assert_error_page(owner.get(app.url("/oauth2/consent")).send().await.unwrap(), 400).await;
        // A form post without, or with a wrong, CSRF token.
        let no_csrf = owner.post(app.url("/oauth2/consent")).form(&[("flow", flow.as_str()), ("decision", "accept")]).send().await.unwrap();
        assert_error_page(no_csrf, 403).await;
        let wrong = owner.post(app.url("/oauth2/consent")).form(&[("flow", flow.as_str()), ("csrf", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"), ("decision", "accept")]).send().await.unwrap();
        assert_error_page(wrong, 403).await;
        // Not a form, or a repeated field.
        let json = owner.post(app.url("/oauth2/consent")).json(&serde_json::json!({"flow": flow, "csrf": csrf, "decision": "accept"})).send().await.unwrap();
        assert_error_page(json, 400).await;
        let body = format!("flow={flow}&csrf={csrf}&decision=deny&decision=accept");
        let repeated = owner.post(app.url("/oauth2/consent")).header("content-type", "application/x-www-form-urlencoded").body(body).send().await.unwrap();
        assert_error_page(repeated, 400).await;
        // GET with the decision in the query decides nothing.
        let get = owner.get(app.url(&format!("/oauth2/consent?flow={flow}&csrf={csrf}&decision=accept"))).send().await.unwrap();
        assert_eq!(get.status(), 200);

        // The real decision works once; a replay of the same post gets no second code.
        let form = [("flow", flow.as_str()), ("csrf", csrf.as_str()), ("decision", "accept")];
        let accepted = owner.post(app.url("/oauth2/consent")).form(&form).send().await.unwrap();
        assert!(query_of(&location(&accepted)).contains_key("code"));
        let replay = owner.post(app.url("/oauth2/consent")).form(&form).send().await.unwrap();
        assert_error_page(replay, 400).await;
        // Nor can the finished flow be denied, or identified again from its
        // login page's form.
        let deny = owner.post(app.url("/oauth2/consent")).form(&[("flow", flow.as_str()), ("csrf", csrf.as_str()), ("decision", "deny")]).send().await.unwrap();
        assert_error_page(deny, 400).await;
        // Its login page's form still identifies (identifying writes
        // nothing), but what it leads to cannot be decided again.
        let login_again = owner.post(app.url("/oauth2/login")).form(&[("flow", login_flow.as_str()), ("csrf", login_csrf.as_str()), ("nin", NIN), ("action", "login")]).send().await.unwrap();
        let (again_flow, again_csrf, _) = open_page(&owner, &location(&login_again)).await;
        let again = owner.post(app.url("/oauth2/consent")).form(&[("flow", again_flow.as_str()), ("csrf", again_csrf.as_str()), ("decision", "accept")]).send().await.unwrap();
        assert_error_page(again, 400).await;
    }

    async fn concurrent_decisions_each_finish_their_own_flow_once(app) {
        // Sent all at once, so that on PostgreSQL they share batched
        // statements: each flow gets exactly one code, whoever else is in
        // the batch, and each code redeems.
        let mut posts = Vec::new();
        for _ in 0..8 {
            let (b, _, flow, consent_url) = at_consent_page(&app).await;
            let csrf = hidden(&b.get(&consent_url).send().await.unwrap().text().await.unwrap(), "csrf");
            for _ in 0..3 {
                let post = b.post(app.url("/oauth2/consent")).form(&[("flow", flow.as_str()), ("csrf", csrf.as_str()), ("decision", "accept")]);
                posts.push(post);
            }
        }
        let answers = futures::future::join_all(posts.into_iter().map(|p| p.send())).await;
        let mut codes = Vec::new();
        for (k, per_flow) in answers.chunks(3).enumerate() {
            let mut won = 0;
            for answer in per_flow {
                let answer = answer.as_ref().unwrap();
                match answer.status().as_u16() {
                    303 => {
                        won += 1;
                        codes.push(query_of(&location(answer))["code"].clone());
                    }
                    400 => {}
                    other => panic!("flow {k}: {other}"),
                }
            }
            assert_eq!(won, 1, "flow {k}: exactly one decision counts");
        }
        for code in &codes {
            assert_eq!(crate::helpers::redeem(&app, code, &[]).await.status(), 200);
        }
    }

    async fn sealed_flow_values_refuse_tampering_expiry_and_a_changed_or_ended_login(app) {
        // Tampering anywhere in the sealed value (not only its prefix).
        let (owner, _, flow, _) = at_consent_page(&app).await;
        let csrf = hidden(&owner.get(app.url(&format!("/oauth2/consent?flow={flow}"))).send().await.unwrap().text().await.unwrap(), "csrf");
        let middle = flow.len() / 2;
        let mut tampered = flow.clone();
        let swapped = if &flow[middle..=middle] == "A" { "B" } else { "A" };
        tampered.replace_range(middle..=middle, swapped);
        assert_error_page(owner.get(app.url(&format!("/oauth2/consent?flow={tampered}"))).send().await.unwrap(), 400).await;
        let forged = owner.post(app.url("/oauth2/consent")).form(&[("flow", tampered.as_str()), ("csrf", csrf.as_str()), ("decision", "accept")]).send().await.unwrap();
        assert_error_page(forged, 400).await;
        // A login-stage value cannot be used as a consent-stage one.
        let (login_owner, (login_flow, login_csrf), _, _) = at_consent_page(&app).await;
        let early = login_owner.post(app.url("/oauth2/consent")).form(&[("flow", login_flow.as_str()), ("csrf", login_csrf.as_str()), ("decision", "accept")]).send().await.unwrap();
        assert_error_page(early, 400).await;

        // Another individual logs in in the same browser: the first
        // individual's flow can no longer be accepted.
        let switched = owner.get(auth_url(&app, &[("prompt", "login")])).send().await.unwrap();
        let (other_flow, other_csrf, _) = open_page(&owner, &location(&switched)).await;
        let other_login = owner.post(app.url("/oauth2/login")).form(&[("flow", other_flow.as_str()), ("csrf", other_csrf.as_str()), ("nin", "29868099311"), ("action", "login")]).send().await.unwrap();
        assert!(location(&other_login).contains("/oauth2/consent"));
        let stale = owner.post(app.url("/oauth2/consent")).form(&[("flow", flow.as_str()), ("csrf", csrf.as_str()), ("decision", "accept")]).send().await.unwrap();
        assert_error_page(stale, 400).await;

        // A logout (here from another client carrying the browser's
        // cookies) ends the flows at the consent step of that browser, and
        // the sealed session cookie no longer counts anywhere.
        let first_cookie = |r: &reqwest::Response| r.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_owned();
        let b = browser();
        let start = b.get(auth_url(&app, &[])).send().await.unwrap();
        let cookie = first_cookie(&start);
        let (flow, csrf, _) = open_page(&b, &location(&start)).await;
        let login = b.post(app.url("/oauth2/login")).form(&[("flow", flow.as_str()), ("csrf", csrf.as_str()), ("nin", NIN), ("action", "login")]).send().await.unwrap();
        let cookies = format!("{cookie}; {}", first_cookie(&login));
        let (flow, csrf, _) = open_page(&b, &location(&login)).await;
        let sso = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
        let before = sso.get(auth_url(&app, &[])).header("cookie", &cookies).send().await.unwrap();
        assert!(location(&before).contains("/oauth2/consent"), "the copied cookies are a live session");
        let logout = reqwest::Client::new().get(app.url("/oauth2/sessions/logout")).header("cookie", &cookies).send().await.unwrap();
        assert_eq!(logout.status(), 200);
        let ended = b.post(app.url("/oauth2/consent")).form(&[("flow", flow.as_str()), ("csrf", csrf.as_str()), ("decision", "accept")]).send().await.unwrap();
        assert_error_page(ended, 400).await;
        let after = sso.get(auth_url(&app, &[])).header("cookie", &cookies).send().await.unwrap();
        assert!(location(&after).contains("/oauth2/login"), "the ended session skips nothing");
        // Logging in again in that browser (later: the test clock stands
        // still otherwise) starts a new session.
        app.clock.advance(time::Duration::seconds(1));
        let again = b.get(auth_url(&app, &[])).send().await.unwrap();
        assert!(location(&again).contains("/oauth2/login"));
        let (flow, csrf, _) = open_page(&b, &location(&again)).await;
        let login = b.post(app.url("/oauth2/login")).form(&[("flow", flow.as_str()), ("csrf", csrf.as_str()), ("nin", NIN), ("action", "login")]).send().await.unwrap();
        let (flow, csrf, _) = open_page(&b, &location(&login)).await;
        let accepted = b.post(app.url("/oauth2/consent")).form(&[("flow", flow.as_str()), ("csrf", csrf.as_str()), ("decision", "accept")]).send().await.unwrap();
        assert!(query_of(&location(&accepted)).contains_key("code"));

        // A flow value expires with the flow (15 minutes).
        let b = browser();
        let start = b.get(auth_url(&app, &[])).send().await.unwrap();
        let login_url = location(&start);
        assert_eq!(b.get(&login_url).send().await.unwrap().status(), 200);
        app.clock.advance(time::Duration::minutes(16));
        assert_error_page(b.get(&login_url).send().await.unwrap(), 400).await;
    }

    async fn a_login_session_skips_identification_until_logout(app) {
        let b = browser();
        let first = run_flow(&app, &b, &auth_url(&app, &[]), NIN, "accept").await;
        assert!(query_of(&first).contains_key("code"));
        // Same browser: straight to the consent page.
        let again = b.get(auth_url(&app, &[])).send().await.unwrap();
        assert!(location(&again).contains("/oauth2/consent"));
        // prompt=login forces identification; prompt=none cannot show a page.
        let forced = b.get(auth_url(&app, &[("prompt", "login")])).send().await.unwrap();
        assert!(location(&forced).contains("/oauth2/login"));
        assert_eq!(query_of(&location(&b.get(auth_url(&app, &[("prompt", "none")])).send().await.unwrap()))["error"], "consent_required");
        assert_eq!(query_of(&location(&browser().get(auth_url(&app, &[("prompt", "none")])).send().await.unwrap()))["error"], "login_required");

        // Logout to a registered URI with state, then the session is gone.
        let logout = b.get(app.url(&format!(
            "/oauth2/sessions/logout?client_id={}&post_logout_redirect_uri={}&state=bye",
            app.sandbox.client_id, url::form_urlencoded::byte_serialize(CALLBACK.as_bytes()).collect::<String>()
        ))).send().await.unwrap();
        assert_eq!(location(&logout), format!("{CALLBACK}?state=bye"));
        assert!(logout.headers()["set-cookie"].to_str().unwrap().contains("Max-Age=0"));
        let after = b.get(auth_url(&app, &[])).send().await.unwrap();
        assert!(location(&after).contains("/oauth2/login"));

        // An unregistered post-logout URI is refused; a plain logout shows a page.
        let bad = b.get(app.url("/oauth2/sessions/logout?client_id=x&post_logout_redirect_uri=https%3A%2F%2Fevil.example%2F")).send().await.unwrap();
        assert_error_page(bad, 400).await;
        let plain = b.get(app.url("/oauth2/sessions/logout")).send().await.unwrap();
        assert_eq!(plain.status(), 200);
        assert_page_headers(&plain);
    }

    async fn logout_accepts_an_id_token_hint_to_identify_the_client(app) {
        let b = browser();
        let done = run_flow(&app, &b, &auth_url(&app, &[]), NIN, "accept").await;
        let code = query_of(&done)["code"].clone();
        let tokens: serde_json::Value = crate::helpers::redeem(&app, &code, &[]).await.json().await.unwrap();
        let hint = tokens["id_token"].as_str().unwrap();
        let logout = b.post(app.url("/oauth2/sessions/logout"))
            .form(&[("id_token_hint", hint), ("post_logout_redirect_uri", CALLBACK), ("state", "s1")])
            .send().await.unwrap();
        assert_eq!(location(&logout), format!("{CALLBACK}?state=s1"));
        let forged = format!("{hint}x");
        let refused = b.post(app.url("/oauth2/sessions/logout"))
            .form(&[("id_token_hint", forged.as_str()), ("post_logout_redirect_uri", CALLBACK)])
            .send().await.unwrap();
        assert_error_page(refused, 400).await;
    }

    async fn a_request_under_another_host_name_is_sent_to_the_issuers_host_first(app) {
        let port = app.base.rsplit(':').next().unwrap().to_owned();
        let other = auth_url(&app, &[]).replacen("127.0.0.1", "localhost", 1);
        let response = browser().get(&other).send().await.unwrap();
        let to = location(&response);
        assert!(response.headers().get("set-cookie").is_none(), "no cookie for the wrong host");
        assert_eq!(to, auth_url(&app, &[]), "same request on {port}, under the issuer's host");
    }

    async fn the_browser_cookie_is_http_only_and_same_site_lax(app) {
        let start = browser().get(auth_url(&app, &[])).send().await.unwrap();
        let cookie = start.headers()["set-cookie"].to_str().unwrap().to_owned();
        assert!(cookie.starts_with("samtykke_browser="), "{cookie}");
        assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Lax") && cookie.contains("Path=/"), "{cookie}");
        assert!(!cookie.contains("Secure"), "plain http in the sandbox");
        let css = app.http.get(app.url("/assets/samtykke.css")).send().await.unwrap();
        assert_eq!(css.status(), 200);
        assert!(css.headers()["content-type"].to_str().unwrap().starts_with("text/css"));
    }

    async fn userinfo_wants_a_live_openid_token(app) {
        let none = app.http.get(app.url("/userinfo")).send().await.unwrap();
        assert_eq!(none.status(), 401);
        assert!(none.headers()["www-authenticate"].to_str().unwrap().starts_with("Bearer"));
        let bad = app.get_bearer("/userinfo", "nonsense").await;
        assert_eq!(bad.status(), 401);
        assert!(bad.headers()["www-authenticate"].to_str().unwrap().contains("invalid_token"));
        let cc = app.sandbox_token("/v1/debt", "debt.unsecured.presentation").await;
        // A token without the `Bearer ` scheme: a bare challenge, and the
        // description says what is wrong.
        let bare = app.http.get(app.url("/userinfo")).header("authorization", cc.as_str()).send().await.unwrap();
        assert_eq!(bare.status(), 401);
        assert_eq!(bare.headers()["www-authenticate"], "Bearer realm=\"samtykke\"");
        let body: serde_json::Value = bare.json().await.unwrap();
        assert_eq!(body["error_description"], crate::debt_api::NOT_BEARER, "{body}");
        assert_eq!(app.get_bearer("/userinfo", &cc).await.status(), 403);
    }
}

#[tokio::test]
async fn an_https_issuer_gets_a_host_prefixed_secure_cookie() {
    use samtykke::config::SandboxSetting;
    use samtykke::startup::Application;
    let url = crate::helpers::fresh_database_url(crate::helpers::Engine::Sqlite)
        .await
        .unwrap();
    let mut config = serve_config(&url, SandboxSetting::On);
    config.issuer = Some("https://access.example.test".into());
    let store = samtykke::storage::open_store(&url).await.unwrap();
    let app = Application::build_with(
        config,
        store,
        std::sync::Arc::new(samtykke_core::SystemClock),
    )
    .await
    .unwrap();
    let addr = app.local_addr().unwrap();
    let creds = app.sandbox_credentials().cloned().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(app.run_until(async {
        let _ = rx.await;
    }));
    let url = format!(
        "http://{addr}/oauth2/auth?client_id={}&response_type=code&scope=debt.unsecured.presentation&state=s&redirect_uri=http%3A%2F%2F127.0.0.1%2Fcallback",
        creds.client_id
    );
    let response = browser().get(url).send().await.unwrap();
    let cookie = response.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(cookie.starts_with("__Host-samtykke="), "{cookie}");
    assert!(
        cookie.contains("; Secure")
            && cookie.contains("HttpOnly")
            && cookie.contains("SameSite=Lax"),
        "{cookie}"
    );
    assert!(location(&response).starts_with("https://access.example.test/oauth2/login?flow="));
    let _ = tx.send(());
}

#[tokio::test]
async fn production_mode_has_no_testid_and_answers_server_error() {
    let url = crate::helpers::fresh_database_url(crate::helpers::Engine::Sqlite)
        .await
        .unwrap();
    let (addr, tx) = crate::helpers::spawn_production_server(&url).await;
    let out = crate::helpers::run_cli(
        &url,
        &[
            "client",
            "create",
            "--json",
            "--name",
            "Bank",
            "--org",
            "923609016",
            "--purpose",
            "presentation",
            "--redirect-uri",
            "https://bank.example/cb",
        ],
    );
    let created: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let client_id = created["client_id"].as_str().unwrap();
    let response = browser().get(format!(
        "http://{addr}/oauth2/auth?client_id={client_id}&response_type=code&scope=debt.unsecured.presentation&state=s&redirect_uri=https%3A%2F%2Fbank.example%2Fcb"
    )).send().await.unwrap();
    let params = query_of(&location(&response));
    assert_eq!(params["error"], "server_error");
    assert_eq!(params["state"], "s");
    let login = browser()
        .get(format!("http://{addr}/oauth2/login?flow=whatever"))
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), 400);
    let _ = tx.send(());
}

engine_tests! {
    async fn malformed_input_to_the_pages_is_never_a_server_error(app) {
        let b = browser();
        let huge = "x".repeat(20_000);
        let gets = [
            "/oauth2/auth?%ff%fe=%ff".to_owned(),
            format!("/oauth2/auth?client_id={huge}"),
            format!("{}&scope={huge}", auth_url(&app, &[])),
            format!("{}&ui_locales={huge}", auth_url(&app, &[])),
            format!("{}&nonce={huge}", auth_url(&app, &[])),
            "/oauth2/login?flow=%00%01".to_owned(),
            format!("/oauth2/login?flow={huge}"),
            "/oauth2/consent?flow=../../etc/passwd".to_owned(),
            "/oauth2/sessions/logout?post_logout_redirect_uri=%ff&id_token_hint=a.b.c".to_owned(),
            format!("/oauth2/sessions/logout?id_token_hint={huge}&post_logout_redirect_uri=http://x/"),
        ];
        for path in gets {
            let url = if path.starts_with("http") { path.clone() } else { app.url(&path) };
            let status = b.get(&url).send().await.unwrap().status().as_u16();
            assert!(status < 500, "{status} for {}", &path[..path.len().min(80)]);
        }
        for (path, body) in [
            ("/oauth2/login", b"flow=%ff&csrf=%ff&nin=%ff".to_vec()),
            ("/oauth2/login", vec![0xff, 0xfe, 0x00]),
            ("/oauth2/consent", b"decision=accept".to_vec()),
            ("/oauth2/consent", vec![b'a'; 70_000]),
            ("/oauth2/sessions/logout", b"post_logout_redirect_uri=javascript:alert(1)&client_id=x".to_vec()),
        ] {
            let status = b.post(app.url(path)).header("content-type", "application/x-www-form-urlencoded").body(body).send().await.unwrap().status().as_u16();
            assert!(status < 500, "{status} for POST {path}");
        }
        let odd = reqwest::header::HeaderValue::from_bytes(b"Bearer \xff\xfe").unwrap();
        let bearer = app.http.get(app.url("/userinfo")).header("authorization", odd).send().await.unwrap().status().as_u16();
        assert_eq!(bearer, 401);
        for bad in ["%00", "a%0Ab", "%7F"] {
            let to = location(&b.get(format!("{}&state={bad}", auth_url(&app, &[("state", "")]))).send().await.unwrap());
            let params = query_of(&to);
            assert_eq!(params["error"], "invalid_request", "state {bad}");
            assert!(!params.contains_key("state"));
            let to = location(&b.get(format!("{}&nonce={bad}", auth_url(&app, &[]))).send().await.unwrap());
            assert_eq!(query_of(&to)["error"], "invalid_request", "nonce {bad}");
        }
    }
}
