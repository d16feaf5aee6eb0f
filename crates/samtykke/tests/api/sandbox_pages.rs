//! The sandbox's own pages (issue 23 items 1 and 2): `/sandbox/callback`, a
//! redirect URI of the sandbox client on the server itself, and the landing
//! page at `/` that starts a flow to it. Outside sandbox mode the callback
//! does not exist and `/` names no client.

use std::process::{Command, Output};

use samtykke_core::domain::RedirectUri;

use crate::helpers::*;

const NIN: &str = "14842249091";

/// The text of the element with `id` (an HTML-escaped `<code>`/`<dd>`),
/// unescaped as a browser shows it.
fn text_of(page: &str, id: &str) -> String {
    let marker = format!("id=\"{id}\"");
    let start = page
        .find(&marker)
        .unwrap_or_else(|| panic!("no #{id} in {page}"));
    let from = start + page[start..].find('>').unwrap() + 1;
    let to = from + page[from..].find('<').unwrap();
    unescape(&page[from..to])
}

fn unescape(html: &str) -> String {
    html.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#x27;", "'")
        .replace("&#39;", "'")
        .replace("&#x2f;", "/")
        .replace("&amp;", "&")
}

/// The authorization URL of the landing page's "start a consent flow"
/// form, from its hidden fields.
fn landing_flow_url(app: &TestApp, landing: &str) -> String {
    let query: String = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(
            [
                "client_id",
                "response_type",
                "scope",
                "redirect_uri",
                "state",
                "nonce",
            ]
            .map(|name| (name, unescape(&hidden(landing, name)))),
        )
        .finish();
    assert!(landing.contains(&format!("action=\"{}\"", app.url("/oauth2/auth"))));
    format!("{}?{query}", app.url("/oauth2/auth"))
}

/// Runs `script` with `sh` off the test's runtime thread (the server runs
/// on it), with `env` set and `SECRET` removed unless given; at most 30 s.
async fn shell(script: &str, env: &[(&str, &str)]) -> Output {
    let mut command = Command::new("sh");
    command
        .args(["-c", script])
        .env_remove("SECRET")
        .env_remove("TOKEN");
    for (k, v) in env {
        command.env(k, v);
    }
    let run = tokio::task::spawn_blocking(move || command.output().expect("sh"));
    tokio::time::timeout(std::time::Duration::from_secs(30), run)
        .await
        .expect("the shell command finished in time")
        .unwrap()
}

async fn get_text(
    app: &TestApp,
    client: &reqwest::Client,
    url: &str,
) -> (u16, reqwest::header::HeaderMap, String) {
    let response = client.get(url).send().await.unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let _ = app;
    (status, headers, response.text().await.unwrap())
}

engine_tests! {
    async fn the_landing_page_starts_a_flow_that_ends_on_the_sandbox_callback(app) {
        let b = browser();
        let (status, headers, landing) = get_text(&app, &b, &app.url("/")).await;
        assert_eq!(status, 200);
        assert!(headers["content-security-policy"].to_str().unwrap().contains("default-src 'none'"));
        // What it is, the client's id (never its secret), the test people, the links.
        assert!(landing.contains("Samtykke sandbox"));
        assert_eq!(text_of(&landing, "client-id"), app.sandbox.client_id.as_str());
        assert!(!landing.contains(app.sandbox.client_secret.expose()));
        for person in ["14842249091", "29868099311"] {
            assert!(landing.contains(&format!("<code class=\"test-person\">{person}</code>")), "{person}");
        }
        for path in ["/.well-known/openid-configuration", "/openapi.json"] {
            let href = format!("href=\"{}\"", app.url(path));
            assert!(landing.contains(&href), "{href}");
            assert_eq!(b.get(app.url(path)).send().await.unwrap().status(), 200, "{path}");
        }
        // The button's request is the URL shown under it.
        let flow = landing_flow_url(&app, &landing);
        assert_eq!(query_of(&flow), query_of(&text_of(&landing, "flow-url")));
        let sent_state = query_of(&flow)["state"].clone();

        let callback = run_flow(&app, &b, &flow, NIN, "accept").await;
        assert!(callback.starts_with(&app.url("/sandbox/callback?")), "{callback}");
        let received = query_of(&callback);

        let (status, headers, page) = get_text(&app, &b, &callback).await;
        assert_eq!(status, 200);
        assert_eq!(text_of(&page, "code"), received["code"]);
        assert_eq!(text_of(&page, "state"), sent_state);
        assert_eq!(text_of(&page, "iss"), app.base);
        assert!(page.contains("(this server's issuer)"), "{page}");
        // The expiry without JavaScript: 60 s after the page (the test clock
        // stands still), and the countdown script allowed by its hash only.
        let expires = time::OffsetDateTime::from_unix_timestamp(app.clock_now() + 60).unwrap();
        let shown = format!("{:02}:{:02}:{:02} UTC", expires.hour(), expires.minute(), expires.second());
        assert_eq!(text_of(&page, "expires-at"), shown);
        assert!(page.contains(&format!("data-expires=\"{}\"", app.clock_now() + 60)));
        let csp = headers["content-security-policy"].to_str().unwrap();
        assert!(csp.contains("script-src 'sha256-"), "{csp}");
        assert!(!csp.contains("unsafe-inline"), "{csp}");
        assert!(!page.contains(app.sandbox.client_secret.expose()));

        // The exchange exactly as shown, run by a shell with curl, and the
        // secret only in the environment.
        let exchange = text_of(&page, "exchange");
        assert!(exchange.contains(&format!("ID={}", app.sandbox.client_id.as_str())), "{exchange}");
        assert!(exchange.contains(&format!("code='{}'", received["code"])), "{exchange}");
        let output = shell(&exchange, &[("SECRET", app.sandbox.client_secret.expose())]).await;
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        let token: serde_json::Value = serde_json::from_slice(&output.stdout).expect("token json");
        let access_token = token["access_token"].as_str().unwrap_or_else(|| panic!("{token}"));
        assert!(token["id_token"].is_string(), "{token}");

        // The debt call as shown, with the new token.
        let debt_call = text_of(&page, "debt-call");
        let output = shell(&debt_call, &[("TOKEN", access_token)]).await;
        let debt: serde_json::Value = serde_json::from_slice(&output.stdout)
            .unwrap_or_else(|_| panic!("{}", String::from_utf8_lossy(&output.stdout)));
        assert!(debt.to_string().contains("Fjordkreditt ASA"), "{debt}");

        // Without the secret the shell says what is missing, and sends nothing.
        let output = shell(&exchange, &[]).await;
        assert!(!output.status.success());
        assert!(String::from_utf8_lossy(&output.stderr).contains("set SECRET to the client_secret"));
    }

    async fn the_sandbox_callback_shows_an_error_response(app) {
        let b = browser();
        let redirect_uri = app.url("/sandbox/callback");
        let flow = auth_url(&app, &[("redirect_uri", &redirect_uri), ("state", "s-42")]);
        let callback = run_flow(&app, &b, &flow, NIN, "deny").await;
        assert!(callback.starts_with(&redirect_uri), "{callback}");
        let (status, _, page) = get_text(&app, &b, &callback).await;
        assert_eq!(status, 200);
        assert_eq!(text_of(&page, "error"), "consent_denied");
        assert_eq!(text_of(&page, "state"), "s-42");
        assert_eq!(text_of(&page, "iss"), app.base);
        // A description, when the response has one, is shown as received.
        let url = format!(
            "{}?error=invalid_scopes&error_description=unknown+scope+%3Cx%3E&state=s-43&iss={}",
            redirect_uri,
            url::form_urlencoded::byte_serialize(app.base.as_bytes()).collect::<String>()
        );
        let (status, _, page) = get_text(&app, &b, &url).await;
        assert_eq!(status, 200);
        assert_eq!(text_of(&page, "error"), "invalid_scopes");
        assert_eq!(text_of(&page, "error-description"), "unknown scope <x>");
        assert!(!page.contains("id=\"exchange\""), "no command after an error");
        assert!(!page.contains("id=\"exchange\""), "no command after an error");
    }

    async fn the_sandbox_callback_never_puts_a_foreign_value_on_a_command_line(app) {
        let b = browser();
        let hostile = "x'; touch /tmp/owned; '<script>";
        let url = format!(
            "{}?code={}&state=%3Cb%3E&iss=https%3A%2F%2Fevil.example",
            app.url("/sandbox/callback"),
            url::form_urlencoded::byte_serialize(hostile.as_bytes()).collect::<String>()
        );
        let (status, _, page) = get_text(&app, &b, &url).await;
        assert_eq!(status, 200);
        assert!(!page.contains("id=\"exchange\""), "{page}");
        assert!(page.contains("never has"), "{page}");
        assert!(!page.contains("<script>alert") && !page.contains("'<script>"), "escaped");
        assert!(!page.contains("<b>"), "escaped");
        // A well-formed code from another issuer: shown with a warning.
        let url = format!("{}?code=abc&state=s&iss=https%3A%2F%2Fevil.example", app.url("/sandbox/callback"));
        let (_, _, page) = get_text(&app, &b, &url).await;
        assert!(page.contains("not this server's issuer"), "{page}");
        // Nothing at all.
        let (status, _, page) = get_text(&app, &b, &app.url("/sandbox/callback")).await;
        assert_eq!(status, 200);
        assert!(page.contains("neither a <code>code</code> nor an <code>error</code>"), "{page}");
    }

    async fn an_existing_sandbox_database_gets_the_callback_of_each_start(app) {
        // A database from before this callback existed: loopback ones only.
        let loopback = [
            RedirectUri::parse("http://127.0.0.1/callback").unwrap(),
            RedirectUri::parse("http://[::1]/callback").unwrap(),
        ];
        let client = app.store.find_client(&app.sandbox.client_id).await.unwrap().unwrap();
        assert_eq!(
            client.redirect_uris.iter().map(|u| u.as_str().to_owned()).collect::<Vec<_>>(),
            [loopback[0].as_str().to_owned(), loopback[1].as_str().to_owned(), app.url("/sandbox/callback")]
        );
        app.store.set_client_redirect_uris(&app.sandbox.client_id, &loopback).await.unwrap();

        let again = spawn_app_on(&app.database_url).await;
        assert_eq!(again.sandbox.client_id, app.sandbox.client_id);
        assert_ne!(again.base, app.base);
        let client = again.store.find_client(&again.sandbox.client_id).await.unwrap().unwrap();
        assert_eq!(
            client.redirect_uris.iter().map(|u| u.as_str().to_owned()).collect::<Vec<_>>(),
            [loopback[0].as_str().to_owned(), loopback[1].as_str().to_owned(), again.url("/sandbox/callback")],
            "the loopback callbacks kept, this start's own callback added, no other"
        );
        // And the flow to it works on the restarted server.
        let redirect_uri = again.url("/sandbox/callback");
        let flow = auth_url(&again, &[("redirect_uri", &redirect_uri)]);
        let callback = run_flow(&again, &browser(), &flow, NIN, "accept").await;
        assert!(callback.starts_with(&redirect_uri), "{callback}");
    }

    async fn outside_sandbox_mode_there_is_no_callback_and_the_landing_page_names_no_client(app) {
        let (addr, _stop) = spawn_production_server(&app.database_url).await;
        let base = format!("http://{addr}");
        let b = browser();
        let response = b.get(format!("{base}/sandbox/callback?code=abc&state=s")).send().await.unwrap();
        assert_eq!(response.status(), 404);
        let response = b.get(format!("{base}/")).send().await.unwrap();
        assert_eq!(response.status(), 200);
        let page = response.text().await.unwrap();
        assert!(!page.contains(app.sandbox.client_id.as_str()), "{page}");
        assert!(!page.contains(app.sandbox.client_secret.expose()), "{page}");
        assert!(!page.contains("14842249091"), "{page}");
        assert!(!page.contains("sandbox"), "{page}");
        assert!(!page.contains("oauth2/auth"), "{page}");
    }

    async fn the_consent_page_says_where_to_withdraw_the_consent(app) {
        for (lang, portal, text) in [
            ("nb", "/min-side", "Det gjør du på Min side."),
            ("en", "/en/my-page", "You do so on My page."),
        ] {
            let b = browser();
            let flow = auth_url(&app, &[("ui_locales", lang)]);
            let start = b.get(&flow).send().await.unwrap();
            let login = location(&start);
            let consent = location(&testid_login(&app, &b, &login, NIN).await);
            let (_, _, page) = open_page(&b, &consent).await;
            // The title names the service once ("Samtykke", not
            // "Samtykke – Samtykke").
            let title = &page[page.find("<title>").unwrap() + 7..page.find("</title>").unwrap()];
            assert_eq!(title.matches("Samtykke").count(), 1, "{lang}: {title}");
            // The identity number masked: the birth date hidden.
            assert!(page.contains("<span class=\"nin\">******* 9091</span>"), "{lang}");
            assert!(!page.contains(NIN) && !page.contains("148422"), "{lang}");
            let link = format!("<a href=\"{}\">{text}</a>", app.url(portal));
            assert!(page.contains(&link), "{lang}: {page}");
            // The portal's "logged in with" line, masked too (the same
            // browser's login session).
            let portal_page = b.get(app.url(portal)).send().await.unwrap();
            assert_eq!(portal_page.status(), 200, "{portal}");
            let portal_page = portal_page.text().await.unwrap();
            assert!(portal_page.contains("<span class=\"nin\">******* 9091</span>"), "{portal_page}");
            assert!(!portal_page.contains(NIN), "{portal}");
        }
    }
}
