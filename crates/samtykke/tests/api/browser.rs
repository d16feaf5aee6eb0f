//! Browser tests of the authorization-code flow (issue 4): headless Chromium
//! (Debian's `chromium` and `chromium-driver`) driven through chromedriver
//! with `fantoccini`, against the real server, with the test's own small
//! callback server standing in for the integrator's redirect URI.
//!
//! Without Chromium or chromedriver the tests print `SKIP browser: …` and
//! pass, unless `SAMTYKKE_REQUIRE_BROWSER=1` (set by `scripts/test.sh`).
//! With `SAMTYKKE_UPDATE_SCREENSHOTS=1` they write the screenshots of
//! `docs/images/` used by `docs/regular-consent.md`.
//!
//! `SAMTYKKE_CHROMIUM` and `SAMTYKKE_CHROMEDRIVER` override the binaries'
//! paths (default `/usr/bin/chromium` and `/usr/bin/chromedriver`).

use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

use crate::helpers::TestApp;

const PERSON: &str = "14842249091";
const CLIENT_NAME: &str = "Sandkasse Bank (test)";
const ORG_NUMBER: &str = "999999999";
const COOKIE: &str = "samtykke_browser";
/// A state with characters that need encoding, to check it comes back
/// byte for byte.
const STATE: &str = "st@te/ø+æ &=%20~x";
const WAIT: Duration = Duration::from_secs(15);

fn binary(var: &str, default: &str) -> PathBuf {
    std::env::var_os(var)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(default))
}

fn screenshots_wanted(app: &TestApp) -> bool {
    // One engine writes them: both would render the same pages.
    std::env::var("SAMTYKKE_UPDATE_SCREENSHOTS").as_deref() == Ok("1")
        && app.database_url.starts_with("sqlite:")
}

/// A chromedriver we started (in its own process group, with the Chromium
/// it starts) and a WebDriver session in it. Dropping it kills the group
/// and removes the profile directory, also when a test fails.
struct Browser {
    client: Client,
    driver: Child,
    profile: PathBuf,
}

impl Drop for Browser {
    fn drop(&mut self) {
        // The group id is chromedriver's pid (`process_group(0)`); only
        // processes we started are in it.
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.driver.id())])
            .stderr(Stdio::null())
            .status();
        let _ = self.driver.kill();
        let _ = self.driver.wait();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

impl Browser {
    /// Starts chromedriver and a headless Chromium session, or None (with a
    /// `SKIP browser:` line) when they are not installed and not required.
    async fn start() -> Option<Browser> {
        let chromium = binary("SAMTYKKE_CHROMIUM", "/usr/bin/chromium");
        let chromedriver = binary("SAMTYKKE_CHROMEDRIVER", "/usr/bin/chromedriver");
        let missing: Vec<String> = [&chromium, &chromedriver]
            .into_iter()
            .filter(|p| !p.exists())
            .map(|p| p.display().to_string())
            .collect();
        if !missing.is_empty() {
            let why = format!(
                "{} not found (apt-get install chromium chromium-driver)",
                missing.join(" and ")
            );
            if std::env::var("SAMTYKKE_REQUIRE_BROWSER").as_deref() == Ok("1") {
                panic!("the browser tests are required (SAMTYKKE_REQUIRE_BROWSER=1): {why}");
            }
            eprintln!("SKIP browser: {why}");
            return None;
        }

        let port = free_port();
        let driver = Command::new(&chromedriver)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .expect("start chromedriver");
        let profile = std::env::temp_dir().join(format!(
            "samtykke-chromium-{}",
            uuid::Uuid::new_v4().simple()
        ));
        // From here on the guard cleans up, whatever happens.
        let mut guard = PartialBrowser {
            driver: Some(driver),
            profile: profile.clone(),
        };

        let webdriver = format!("http://127.0.0.1:{port}");
        let status = reqwest::Client::new();
        let deadline = Instant::now() + WAIT;
        loop {
            let ready = status
                .get(format!("{webdriver}/status"))
                .send()
                .await
                .ok()
                .filter(|r| r.status().is_success());
            if ready.is_some() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "chromedriver did not answer on port {port}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }

        let capabilities = json!({
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium.display().to_string(),
                "args": [
                    "--headless",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-quic",
                    "--no-first-run",
                    "--disable-background-networking",
                    "--disable-component-update",
                    "--disable-sync",
                    "--disable-dev-shm-usage",
                    "--hide-scrollbars",
                    "--window-size=1000,900",
                    "--lang=nb-NO",
                    format!("--user-data-dir={}", profile.display()),
                ],
                // A Norwegian person's browser: the pages' default language
                // and `Accept-Language` agree; `ui_locales` must win.
                "prefs": {"intl.accept_languages": "nb-NO,nb,no"},
            },
        });
        let capabilities = match capabilities {
            Value::Object(map) => map,
            _ => unreachable!(),
        };
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let client = ClientBuilder::new(connector)
            .capabilities(capabilities)
            .connect(&webdriver)
            .await
            .expect("WebDriver session in headless Chromium");
        let driver = guard.driver.take().expect("driver");
        let browser = Browser {
            client,
            driver,
            profile,
        };
        browser.fit_viewport(1000, 900).await;
        Some(browser)
    }

    /// Sizes the window so that the page area (what a screenshot shows) is
    /// `width`×`height`.
    async fn fit_viewport(&self, width: u32, height: u32) {
        let inner = self
            .client
            .execute("return [window.innerWidth, window.innerHeight];", vec![])
            .await
            .expect("script");
        let inner_w = inner[0].as_i64().expect("innerWidth");
        let inner_h = inner[1].as_i64().expect("innerHeight");
        let (outer_w, outer_h) = self.client.get_window_size().await.expect("window size");
        let target_w = outer_w as i64 + i64::from(width) - inner_w;
        let target_h = outer_h as i64 + i64::from(height) - inner_h;
        self.client
            .set_window_size(target_w as u32, target_h as u32)
            .await
            .expect("resize window");
    }

    /// Ends the session (Chromium quits), then the guard ends chromedriver.
    async fn close(self) {
        let _ = self.client.clone().close().await;
    }

    async fn goto(&self, url: &str) {
        self.client.goto(url).await.expect("navigate");
    }

    async fn url(&self) -> String {
        self.client.current_url().await.expect("url").to_string()
    }

    /// Waits until the browser's URL starts with `prefix`.
    /// Runs a flow with `response_mode=mode` to the consent page and there
    /// clicks `decision` (accept or deny).
    async fn decide_in_mode(
        &self,
        app: &TestApp,
        callback: &CallbackServer,
        mode: &str,
        decision: &str,
    ) {
        let url = auth_url(app, &callback.redirect_uri(), &[("response_mode", mode)]);
        self.goto(&url).await;
        self.wait_for_url(&app.url("/oauth2/login?flow=")).await;
        self.type_into("#nin", PERSON).await;
        self.click("button[name=action][value=login]").await;
        self.wait_for_url(&app.url("/oauth2/consent?flow=")).await;
        self.click(&format!("button[name=decision][value={decision}]"))
            .await;
    }

    async fn wait_for_url(&self, prefix: &str) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            let url = self.url().await;
            if url.starts_with(prefix) {
                return url;
            }
            assert!(
                Instant::now() < deadline,
                "the browser stayed at {url}, expected {prefix}…"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn text(&self, css: &str) -> String {
        self.client
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("no {css}: {e}"))
            .text()
            .await
            .expect("text")
    }

    async fn attr(&self, css: &str, name: &str) -> Option<String> {
        self.client
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("no {css}: {e}"))
            .attr(name)
            .await
            .expect("attribute")
    }

    /// Waits until an element matching `css` is on the page (a form post
    /// that answers under the same URL gives nothing else to wait for).
    async fn wait_for(&self, css: &str) {
        let deadline = Instant::now() + WAIT;
        while !self.exists(css).await {
            assert!(Instant::now() < deadline, "no {css} appeared");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn exists(&self, css: &str) -> bool {
        !self
            .client
            .find_all(Locator::Css(css))
            .await
            .expect("find")
            .is_empty()
    }

    async fn click(&self, css: &str) {
        self.client
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("no {css}: {e}"))
            .click()
            .await
            .expect("click");
    }

    async fn type_into(&self, css: &str, text: &str) {
        let input = self
            .client
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("no {css}: {e}"));
        input.clear().await.expect("clear");
        input.send_keys(text).await.expect("type");
    }

    /// The test-environment banner and the `lang` of the page, and no
    /// serious accessibility violation (axe-core).
    async fn assert_sandbox_page(&self, lang: &str, banner: &str) {
        assert_eq!(self.attr("html", "lang").await.as_deref(), Some(lang));
        let shown = self.text(".banner").await;
        assert!(shown.contains(banner), "banner: {shown}");
        self.assert_accessible("a sandbox page").await;
    }

    /// The browser cookie is there, `HttpOnly` and `SameSite=Lax`, and
    /// scripts cannot read it.
    async fn assert_cookie_is_http_only(&self) {
        let cookies = self.client.get_all_cookies().await.expect("cookies");
        let cookie = cookies
            .iter()
            .find(|c| c.name() == COOKIE)
            .unwrap_or_else(|| panic!("no {COOKIE} cookie in {cookies:?}"));
        assert_eq!(cookie.http_only(), Some(true), "{cookie:?}");
        assert!(cookie.same_site().is_some_and(|s| s.is_lax()), "{cookie:?}");
        assert_eq!(cookie.path(), Some("/"), "{cookie:?}");
        let visible = self
            .client
            .execute("return document.cookie;", vec![])
            .await
            .expect("script");
        assert!(
            !visible.as_str().unwrap_or("").contains(COOKIE),
            "document.cookie shows the cookie: {visible}"
        );
    }

    /// Writes a PNG of the viewport to `docs/images/{name}.png`.
    async fn screenshot(&self, name: &str) {
        let png = self.client.screenshot().await.expect("screenshot");
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/images");
        std::fs::create_dir_all(&dir).expect("docs/images");
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, png).expect("write screenshot");
        eprintln!("wrote {}", path.display());
    }
}

/// Cleans up a chromedriver whose session was not made yet.
struct PartialBrowser {
    driver: Option<Child>,
    profile: PathBuf,
}

impl Drop for PartialBrowser {
    fn drop(&mut self) {
        if let Some(mut driver) = self.driver.take() {
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{}", driver.id())])
                .stderr(Stdio::null())
                .status();
            let _ = driver.kill();
            let _ = driver.wait();
            let _ = std::fs::remove_dir_all(&self.profile);
        }
    }
}

/// One request that reached the callback server.
#[derive(Debug)]
struct Hit {
    method: String,
    path: String,
    query: String,
    /// The body of a POST (a `form_post` response), as sent.
    body: String,
}

/// The integrator's side: a tiny HTTP server on 127.0.0.1:0 that records
/// every request and answers `GET /callback` with a small page.
struct CallbackServer {
    addr: SocketAddr,
    hits: mpsc::UnboundedReceiver<Hit>,
}

impl CallbackServer {
    async fn start() -> CallbackServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (tx, hits) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let tx = tx.clone();
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 4096];
                    while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < 65536 {
                        match stream.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    let head_end = buf
                        .windows(4)
                        .position(|w| w == b"\r\n\r\n")
                        .map_or(buf.len(), |p| p + 4);
                    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
                    let length: usize = head
                        .lines()
                        .filter_map(|l| l.split_once(':'))
                        .find(|(name, _)| name.eq_ignore_ascii_case("content-length"))
                        .and_then(|(_, v)| v.trim().parse().ok())
                        .unwrap_or(0)
                        .min(65536);
                    let mut body = buf[head_end..].to_vec();
                    while body.len() < length {
                        match stream.read(&mut chunk).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => body.extend_from_slice(&chunk[..n]),
                        }
                    }
                    let mut request_line = head.lines().next().unwrap_or("").split(' ');
                    let method = request_line.next().unwrap_or("").to_owned();
                    let target = request_line.next().unwrap_or("").to_owned();
                    let (path, query) = match target.split_once('?') {
                        Some((p, q)) => (p.to_owned(), q.to_owned()),
                        None => (target.clone(), String::new()),
                    };
                    let found = path == "/callback";
                    let body = String::from_utf8_lossy(&body).into_owned();
                    let _ = tx.send(Hit {
                        method,
                        path,
                        query,
                        body,
                    });
                    let (status, body) = if found {
                        ("200 OK", "<!doctype html><html lang=\"en\"><title>Bank</title><h1 id=\"received\">Callback received</h1></html>")
                    } else {
                        ("404 Not Found", "<!doctype html><title>Not found</title>")
                    };
                    let response = format!(
                        "HTTP/1.1 {status}\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = stream.write_all(response.as_bytes()).await;
                    let _ = stream.shutdown().await;
                });
            }
        });
        CallbackServer { addr, hits }
    }

    fn redirect_uri(&self) -> String {
        format!("http://{}/callback", self.addr)
    }

    /// The decoded query of the next `GET /callback` (other requests, such
    /// as a favicon, are skipped).
    async fn next_callback(&mut self) -> Vec<(String, String)> {
        let hit = self.next_hit_at_callback().await;
        assert_eq!(hit.method, "GET", "{hit:?}");
        url::form_urlencoded::parse(hit.query.as_bytes())
            .into_owned()
            .collect()
    }

    /// The decoded form body of the next `POST /callback` (a `form_post`
    /// response), which must have no query.
    async fn next_posted_callback(&mut self) -> Vec<(String, String)> {
        let hit = self.next_hit_at_callback().await;
        assert_eq!(
            (hit.method.as_str(), hit.query.as_str()),
            ("POST", ""),
            "{hit:?}"
        );
        url::form_urlencoded::parse(hit.body.as_bytes())
            .into_owned()
            .collect()
    }

    async fn next_hit_at_callback(&mut self) -> Hit {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let hit = tokio::time::timeout_at(deadline, self.hits.recv())
                .await
                .expect("no request reached the callback server")
                .expect("callback server");
            if hit.path == "/callback" {
                return hit;
            }
        }
    }
}

fn param<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    let mut values = pairs.iter().filter(|(k, _)| k == name);
    let first = values.next().map(|(_, v)| v.as_str());
    assert!(values.next().is_none(), "{name} is repeated in {pairs:?}");
    first
}

/// The authorization URL of the sandbox client with `extra` parameters.
fn auth_url(app: &TestApp, redirect_uri: &str, extra: &[(&str, &str)]) -> String {
    let mut query = url::form_urlencoded::Serializer::new(String::new());
    query
        .append_pair("client_id", app.sandbox.client_id.as_str())
        .append_pair("response_type", "code")
        .append_pair("scope", "debt.unsecured.presentation.100 openid")
        .append_pair("state", STATE)
        .append_pair("redirect_uri", redirect_uri);
    for (k, v) in extra {
        query.append_pair(k, v);
    }
    // Spaces as %20, as the brief's URLs show them (the server takes `+`
    // as well).
    let query = query.finish().replace('+', "%20");
    app.url(&format!("/oauth2/auth?{query}"))
}

/// An error redirect of SPEC §4: `error`, `state` byte for byte, `iss`,
/// `error_description`, and no code.
fn assert_error_callback(app: &TestApp, pairs: &[(String, String)], error: &str) {
    assert_eq!(param(pairs, "error"), Some(error), "{pairs:?}");
    assert_eq!(param(pairs, "state"), Some(STATE), "{pairs:?}");
    assert_eq!(param(pairs, "iss"), Some(app.base.as_str()), "{pairs:?}");
    assert!(param(pairs, "error_description").is_some(), "{pairs:?}");
    assert_eq!(param(pairs, "code"), None, "{pairs:?}");
}

/// Verifies an ID token against the JWKS and returns its claims.
async fn verify_id_token(app: &TestApp, id_token: &str, nonce: &str) -> Value {
    use jsonwebtoken::{decode, decode_header, Algorithm, DecodingKey, Validation};
    let header = decode_header(id_token).expect("JWT header");
    assert_eq!(header.alg, Algorithm::RS256);
    let kid = header.kid.expect("kid");
    let jwks: Value = app
        .http
        .get(app.url("/.well-known/jwks.json"))
        .send()
        .await
        .expect("jwks")
        .json()
        .await
        .expect("jwks json");
    let jwk = jwks["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .find(|k| k["kid"] == kid.as_str())
        .expect("the token's kid is in the JWKS");
    let key = DecodingKey::from_rsa_components(
        jwk["n"].as_str().expect("n"),
        jwk["e"].as_str().expect("e"),
    )
    .expect("RSA key");
    let mut validation = Validation::new(Algorithm::RS256);
    validation.set_audience(&[app.sandbox.client_id.as_str()]);
    validation.set_issuer(&[app.base.as_str()]);
    let claims = decode::<Value>(id_token, &key, &validation)
        .expect("a valid ID token")
        .claims;
    assert_eq!(claims["nonce"], nonce, "{claims}");
    assert_eq!(claims["pid"], PERSON, "{claims}");
    assert!(
        claims["sub"]
            .as_str()
            .is_some_and(|s| !s.is_empty() && s != PERSON),
        "{claims}"
    );
    claims
}

engine_tests! {
    async fn browser_journey_login_consent_callback_token_and_debt(app) {
        let Some(browser) = Browser::start().await else { return };
        let mut callback = CallbackServer::start().await;
        let shots = screenshots_wanted(&app);
        let redirect_uri = callback.redirect_uri();
        let nonce = uuid::Uuid::new_v4().to_string();

        // The TestID page, in Norwegian.
        browser.goto(&auth_url(&app, &redirect_uri, &[("nonce", &nonce)])).await;
        browser.wait_for_url(&app.url("/oauth2/login?flow=")).await;
        browser.assert_sandbox_page("nb", "Testmiljø.").await;
        assert_eq!(browser.text("h1").await, "Logg inn med TestID");
        assert!(browser.text(".lead").await.contains(CLIENT_NAME));
        assert_eq!(browser.text("label[for=nin]").await, "Fødselsnummer");
        browser.assert_cookie_is_http_only().await;
        if shots {
            browser.screenshot("testid-login").await;
        }

        // A bad number: the same page with an error, nothing sent anywhere.
        browser.type_into("#nin", "14842249092").await;
        browser.click("button[name=action][value=login]").await;
        browser.wait_for_url(&app.url("/oauth2/login")).await;
        browser.wait_for("#nin-error").await;
        assert_eq!(browser.text("#nin-error").await, "Feil kontrollsiffer: fødselsnummeret har 11 siffer, men kontrollsifrene stemmer ikke. Sjekk at det er skrevet riktig.");
        assert_eq!(browser.attr("#nin", "aria-invalid").await.as_deref(), Some("true"));
        assert_eq!(browser.attr("#nin", "value").await.as_deref(), Some("14842249092"));
        if shots {
            browser.screenshot("testid-login-invalid").await;
        }

        // A good number: the consent page.
        browser.type_into("#nin", PERSON).await;
        browser.click("button[name=action][value=login]").await;
        browser.wait_for_url(&app.url("/oauth2/consent?flow=")).await;
        browser.assert_sandbox_page("nb", "Testmiljø.").await;
        assert_eq!(browser.text("h1").await, "Vil du gi samtykke?");
        let lead = browser.text(".lead").await;
        assert!(lead.contains(CLIENT_NAME), "{lead}");
        assert!(lead.contains(&format!("org.nr. {ORG_NUMBER}")), "{lead}");
        let facts = browser.text(".facts").await;
        assert!(facts.contains("Vise deg en oversikt over gjelden din"), "{facts}");
        assert!(facts.contains("100 dager"), "{facts}");
        // The number masked (issue 23 item 8).
        assert!(facts.contains(&format!("******* {}", &PERSON[7..])), "{facts}");
        assert!(!facts.contains(PERSON), "{facts}");
        browser.assert_cookie_is_http_only().await;
        if shots {
            browser.screenshot("consent-nb").await;
        }

        // Accept: the callback gets the code.
        browser.click("button[name=decision][value=accept]").await;
        let pairs = callback.next_callback().await;
        let code = param(&pairs, "code").expect("code").to_owned();
        assert!(!code.is_empty());
        assert_eq!(param(&pairs, "state"), Some(STATE), "{pairs:?}");
        assert_eq!(param(&pairs, "scope"), Some("debt.unsecured.presentation"), "{pairs:?}");
        assert_eq!(param(&pairs, "iss"), Some(app.base.as_str()), "{pairs:?}");
        assert_eq!(param(&pairs, "error"), None, "{pairs:?}");
        browser.wait_for_url(&format!("{redirect_uri}?")).await;
        assert_eq!(browser.text("#received").await, "Callback received");
        browser.close().await;

        // The integrator exchanges the code and fetches the debt.
        let (id, secret) = app.sandbox_auth();
        let response = app
            .post_form(
                "/oauth2/token",
                (&id, &secret),
                &[("grant_type", "authorization_code"), ("code", &code), ("redirect_uri", &redirect_uri)],
            )
            .await;
        assert_eq!(response.status(), 200);
        let tokens: Value = response.json().await.unwrap();
        assert_eq!(tokens["token_type"], "bearer", "{tokens}");
        let claims = verify_id_token(&app, tokens["id_token"].as_str().expect("id_token"), &nonce).await;
        let consent_id = claims["consent_id"].as_str().expect("consent_id").to_owned();

        let access_token = tokens["access_token"].as_str().expect("access_token");
        let debt = app.get_bearer("/v1/debt", access_token).await;
        assert_eq!(debt.status(), 200);
        let debt: Value = debt.json().await.unwrap();
        assert_eq!(debt["ssn"], PERSON, "{debt}");
        assert_eq!(debt["consent"]["id"], consent_id.as_str(), "{debt}");
        assert!(debt["loans"].as_array().is_some_and(|l| !l.is_empty()), "{debt}");

        // Later: the 100-day consent with a client-credentials token.
        let cc = app.sandbox_token("/v1/debt", "debt.unsecured.presentation").await;
        let later = app.get_bearer(&format!("/v1/debt/{consent_id}"), &cc).await;
        assert_eq!(later.status(), 200);
        let later: Value = later.json().await.unwrap();
        assert_eq!(later["ssn"], PERSON, "{later}");
    }

    async fn browser_cancel_on_testid_redirects_login_cancelled(app) {
        let Some(browser) = Browser::start().await else { return };
        let mut callback = CallbackServer::start().await;
        browser.goto(&auth_url(&app, &callback.redirect_uri(), &[])).await;
        browser.wait_for_url(&app.url("/oauth2/login?flow=")).await;
        browser.assert_sandbox_page("nb", "Testmiljø.").await;
        browser.click("button[name=action][value=cancel]").await;
        let pairs = callback.next_callback().await;
        assert_error_callback(&app, &pairs, "login_cancelled");
        browser.wait_for_url(&format!("{}?", callback.redirect_uri())).await;
        browser.close().await;
    }

    async fn browser_form_post_mode_posts_the_code_to_the_callback_by_itself(app) {
        let Some(browser) = Browser::start().await else { return };
        let mut callback = CallbackServer::start().await;
        browser.decide_in_mode(&app, &callback, "form_post", "accept").await;
        // The page's script (allowed by its CSP hash) submits the form: no
        // click, and the browser ends on the bank's page.
        let pairs = callback.next_posted_callback().await;
        assert_eq!(param(&pairs, "state"), Some(STATE), "{pairs:?}");
        assert_eq!(param(&pairs, "iss"), Some(app.base.as_str()), "{pairs:?}");
        let code = param(&pairs, "code").expect("code").to_owned();
        browser.wait_for("#received").await;
        assert_eq!(browser.url().await, callback.redirect_uri());
        let token = crate::helpers::redeem(&app, &code, &[("redirect_uri", &callback.redirect_uri())]).await;
        assert_eq!(token.status(), 200);
        browser.close().await;
    }

    async fn browser_fragment_mode_returns_the_code_in_the_fragment(app) {
        let Some(browser) = Browser::start().await else { return };
        let mut callback = CallbackServer::start().await;
        browser.decide_in_mode(&app, &callback, "fragment", "deny").await;
        // The fragment stays in the browser: the bank's server sees none of it.
        assert_eq!(callback.next_callback().await, Vec::<(String, String)>::new());
        let url = browser.wait_for_url(&format!("{}#", callback.redirect_uri())).await;
        let fragment = url.split_once('#').unwrap().1;
        let pairs: Vec<(String, String)> = url::form_urlencoded::parse(fragment.as_bytes()).into_owned().collect();
        assert_error_callback(&app, &pairs, "consent_denied");
        browser.close().await;
    }

    async fn browser_deny_on_consent_redirects_consent_denied(app) {
        let Some(browser) = Browser::start().await else { return };
        let mut callback = CallbackServer::start().await;
        browser.goto(&auth_url(&app, &callback.redirect_uri(), &[])).await;
        browser.wait_for_url(&app.url("/oauth2/login?flow=")).await;
        browser.type_into("#nin", PERSON).await;
        browser.click("button[name=action][value=login]").await;
        browser.wait_for_url(&app.url("/oauth2/consent?flow=")).await;
        browser.click("button[name=decision][value=deny]").await;
        let pairs = callback.next_callback().await;
        assert_error_callback(&app, &pairs, "consent_denied");
        browser.wait_for_url(&format!("{}?", callback.redirect_uri())).await;
        browser.close().await;
    }

    async fn browser_unregistered_redirect_uri_stays_on_the_error_page(app) {
        let Some(browser) = Browser::start().await else { return };
        let mut callback = CallbackServer::start().await;
        let port = callback.addr.port();
        // Not registered: another path, another host name for the same
        // address, a prefix of the registered URI with more after it.
        for redirect_uri in [
            format!("http://127.0.0.1:{port}/evil"),
            format!("http://localhost:{port}/callback"),
            format!("http://127.0.0.1:{port}/callback/more"),
        ] {
            let url = auth_url(&app, &redirect_uri, &[]);
            browser.goto(&url).await;
            let at = browser.url().await;
            assert!(at.starts_with(&app.url("/oauth2/auth?")), "the browser was sent to {at}");
            browser.assert_sandbox_page("nb", "Testmiljø.").await;
            assert_eq!(browser.text("h1").await, "Noe gikk galt");
            assert!(browser.text(".lead").await.contains("adresse den ikke har registrert"));
            assert!(!browser.exists("form").await);
            if screenshots_wanted(&app) && redirect_uri.ends_with("/evil") {
                browser.screenshot("error-unregistered-redirect-uri").await;
            }
        }
        browser.close().await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(
            callback.hits.try_recv().is_err(),
            "a request reached the callback server"
        );
    }

    async fn browser_pages_are_english_with_ui_locales_en(app) {
        let Some(browser) = Browser::start().await else { return };
        let mut callback = CallbackServer::start().await;
        browser.goto(&auth_url(&app, &callback.redirect_uri(), &[("ui_locales", "en")])).await;
        browser.wait_for_url(&app.url("/oauth2/login?flow=")).await;
        browser.assert_sandbox_page("en", "Test environment.").await;
        assert_eq!(browser.text("h1").await, "Log in with TestID");
        assert_eq!(browser.text("label[for=nin]").await, "National identity number");
        assert_eq!(browser.text("button[value=login]").await, "Log in");
        assert_eq!(browser.text("button[value=cancel]").await, "Cancel");

        browser.type_into("#nin", "123").await;
        browser.click("button[name=action][value=login]").await;
        browser.wait_for_url(&app.url("/oauth2/login")).await;
        browser.wait_for("#nin-error").await;
        assert_eq!(browser.text("#nin-error").await, "Enter a valid 11-digit national identity number.");

        browser.type_into("#nin", PERSON).await;
        browser.click("button[name=action][value=login]").await;
        browser.wait_for_url(&app.url("/oauth2/consent?flow=")).await;
        browser.assert_sandbox_page("en", "Test environment.").await;
        assert_eq!(browser.text("h1").await, "Do you consent?");
        let lead = browser.text(".lead").await;
        assert!(lead.contains(&format!("{CLIENT_NAME} (org. no. {ORG_NUMBER})")), "{lead}");
        let facts = browser.text(".facts").await;
        assert!(facts.contains("Show you an overview of your debt"), "{facts}");
        assert!(facts.contains("100 days"), "{facts}");
        assert_eq!(browser.text("button[value=accept]").await, "I consent");
        assert_eq!(browser.text("button[value=deny]").await, "No, I do not consent");
        if screenshots_wanted(&app) {
            browser.screenshot("consent-en").await;
        }
        browser.click("button[name=decision][value=accept]").await;
        let pairs = callback.next_callback().await;
        assert!(param(&pairs, "code").is_some_and(|c| !c.is_empty()), "{pairs:?}");
        assert_eq!(param(&pairs, "state"), Some(STATE), "{pairs:?}");
        browser.close().await;
    }
}

// --- the individual's portal (issue 20) ----------------------------------

impl Browser {
    /// How many elements match `css`.
    async fn count(&self, css: &str) -> usize {
        self.client
            .find_all(Locator::Css(css))
            .await
            .expect("find")
            .len()
    }

    /// Presses and releases `key` on the keyboard.
    async fn press(&self, key: fantoccini::key::Key) {
        use fantoccini::actions::{InputSource, KeyAction, KeyActions};
        let value: char = key.into();
        let keys = KeyActions::new("keyboard".into())
            .then(KeyAction::Down { value })
            .then(KeyAction::Up { value });
        self.client.perform_actions(keys).await.expect("keys");
    }

    /// Moves the focus with Tab, as a keyboard user would, until it is on
    /// the element matching `css`.
    async fn tab_to(&self, css: &str) {
        for _ in 0..40 {
            self.press(fantoccini::key::Key::Tab).await;
            let focused = self
                .client
                .execute(
                    "return document.activeElement.matches(arguments[0]);",
                    vec![json!(css)],
                )
                .await
                .expect("script");
            if focused == Value::Bool(true) {
                return;
            }
        }
        panic!("Tab never reached {css}");
    }

    /// Scrolls the element matching `css` to the top of the window.
    async fn scroll_to(&self, css: &str) {
        let element = self
            .client
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("no {css}: {e}"));
        let element = serde_json::to_value(element).expect("element");
        self.client
            .execute("arguments[0].scrollIntoView(true);", vec![element])
            .await
            .expect("scroll");
    }

    /// Whether the page is wider than the window (it would scroll sideways).
    async fn scrolls_sideways(&self) -> bool {
        let widths = self
            .client
            .execute(
                "return [document.documentElement.scrollWidth, window.innerWidth];",
                vec![],
            )
            .await
            .expect("script");
        widths[0].as_i64() > widths[1].as_i64()
    }
}

engine_tests! {
    async fn browser_portal_lists_shows_uses_withdraws_after_confirmation_switches_language_and_fits_a_phone(app) {
        let Some(browser) = Browser::start().await else { return };
        let mut callback = CallbackServer::start().await;
        let shots = screenshots_wanted(&app);

        // Log in through the consent flow, giving the sandbox client a consent.
        browser.goto(&auth_url(&app, &callback.redirect_uri(), &[])).await;
        browser.wait_for_url(&app.url("/oauth2/login?flow=")).await;
        browser.type_into("#nin", PERSON).await;
        browser.click("button[name=action][value=login]").await;
        browser.wait_for_url(&app.url("/oauth2/consent?flow=")).await;
        browser.click("button[name=decision][value=accept]").await;
        let pairs = callback.next_callback().await;
        let code = param(&pairs, "code").expect("code").to_owned();
        let tokens: Value = crate::helpers::redeem(&app, &code, &[("redirect_uri", &callback.redirect_uri())]).await.json().await.unwrap();
        let debt: Value = app.get_bearer("/v1/debt", tokens["access_token"].as_str().unwrap()).await.json().await.unwrap();
        let id = debt["consent"]["id"].as_str().expect("consent id").to_owned();
        let cc = app.sandbox_token("/v1/debt", "debt.unsecured.presentation").await;
        for _ in 0..2 {
            app.clock.advance(time::Duration::minutes(2));
            assert_eq!(app.get_bearer(&format!("/v1/debt/{id}"), &cc).await.status(), 200);
        }
        // The institution also registered two agreements with this person.
        app.clock.advance(time::Duration::minutes(5));
        app.agreement_consent(PERSON, "debt.unsecured.processing", 28).await;
        app.agreement_consent(PERSON, "debt.unsecured.presentation", 365).await;

        // The list, in Norwegian.
        browser.goto(&app.url("/min-side")).await;
        browser.assert_sandbox_page("nb", "Testmiljø.").await;
        assert_eq!(browser.text("h1").await, "Dine samtykker");
        assert_eq!(browser.count("article.consent").await, 3);
        let ours = format!("#samtykke-{id}");
        assert_eq!(browser.text(&format!("{ours} h2")).await, CLIENT_NAME);
        let facts = browser.text(&format!("{ours} .facts")).await;
        for expected in [ORG_NUMBER, "Vise deg en oversikt over gjelden din", "Gitt av deg på samtykkesiden", "Aktivt", "100 dager"] {
            assert!(facts.contains(expected), "{expected} in {facts}");
        }
        assert_eq!(browser.text(&format!("{ours} .uses")).await, "3");
        assert_eq!(browser.attr("a.lang-switch", "lang").await.as_deref(), Some("en"));
        if shots {
            browser.screenshot("portal-list").await;
        }

        // Its uses.
        browser.click(&format!("{ours} a.button.secondary")).await;
        let detail = app.url(&format!("/min-side/samtykke/{id}"));
        browser.wait_for_url(&detail).await;
        assert_eq!(browser.count("table.uses tbody tr").await, 3);
        assert!(browser.text("table.uses tbody tr").await.contains(&format!("{CLIENT_NAME} (org.nr. {ORG_NUMBER})")));
        assert_eq!(browser.text("table.uses th").await, "Tidspunkt");
        if shots {
            browser.scroll_to(".usage").await;
            browser.screenshot("portal-usage").await;
        }

        // Withdraw, with the keyboard alone: first the confirmation, then
        // the withdrawal.
        browser.tab_to("a.button.danger").await;
        browser.press(fantoccini::key::Key::Enter).await;
        browser.wait_for_url(&format!("{detail}/trekk-tilbake")).await;
        assert_eq!(browser.text("h1").await, "Vil du trekke tilbake samtykket?");
        assert!(browser.text(".lead").await.contains(CLIENT_NAME));
        assert_eq!(app.get_bearer(&format!("/v1/debt/{id}"), &cc).await.status(), 200, "not yet withdrawn");
        if shots {
            browser.screenshot("portal-withdraw-confirm").await;
        }
        browser.tab_to("button.danger").await;
        browser.press(fantoccini::key::Key::Enter).await;
        browser.wait_for_url(&detail).await;
        browser.wait_for(".notice").await;
        assert_eq!(browser.text(".status").await, "Trukket tilbake av deg");
        assert!(!browser.exists("a.button.danger").await, "nothing left to withdraw");
        assert_eq!(app.get_bearer(&format!("/v1/debt/{id}"), &cc).await.status(), 403, "the institution is refused at once");

        // The language switch keeps the page.
        browser.click("a.lang-switch").await;
        browser.wait_for_url(&app.url(&format!("/en/my-page/consent/{id}"))).await;
        assert_eq!(browser.attr("html", "lang").await.as_deref(), Some("en"));
        assert_eq!(browser.text(".status").await, "Withdrawn by you");
        assert_eq!(browser.text("table.uses th").await, "When");
        browser.click("a.home").await;
        browser.wait_for_url(&app.url("/en/my-page")).await;
        assert_eq!(browser.text("h1").await, "Your consents");
        browser.click("a.lang-switch").await;
        browser.wait_for_url(&app.url("/min-side")).await;
        assert_eq!(browser.text("h1").await, "Dine samtykker");

        // A phone-sized window: everything fits its width.
        browser.fit_viewport(390, 844).await;
        browser.goto(&app.url("/min-side")).await;
        assert_eq!(browser.count("article.consent").await, 3);
        assert!(!browser.scrolls_sideways().await, "the list scrolls sideways on a phone");
        if shots {
            browser.screenshot("portal-phone").await;
        }
        browser.goto(&detail).await;
        assert!(!browser.scrolls_sideways().await, "the consent's page scrolls sideways on a phone");

        // Log out: the portal asks for identification again.
        browser.click(".logout button").await;
        browser.wait_for_url(&app.url("/min-side/logout")).await;
        assert_eq!(browser.text("h1").await, "Du er logget ut");
        browser.goto(&app.url("/min-side")).await;
        browser.wait_for_url(&app.url("/min-side/login?return=/min-side")).await;
        browser.close().await;
    }
}

// --- trust and accessibility (issue 23 item 8) ----------------------------

/// axe-core's script (`npm ci` in `crates/samtykke/tests/axe`, done by
/// `scripts/test.sh`), or None when it is not installed.
fn axe_source() -> Option<&'static str> {
    static SOURCE: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    SOURCE
        .get_or_init(|| {
            let path = Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/axe/node_modules/axe-core/axe.min.js");
            std::fs::read_to_string(path).ok()
        })
        .as_deref()
}

/// Runs axe-core on the page in the browser; the serious and critical
/// violations, one line each (rule, impact, help, the elements).
const AXE_RUN: &str = r#"
const done = arguments[arguments.length - 1];
axe.run(document, { resultTypes: ["violations"] })
  .then((r) => done(r.violations
    .filter((v) => v.impact === "serious" || v.impact === "critical")
    .map((v) => v.id + " (" + v.impact + "): " + v.help + " at "
      + v.nodes.map((n) => n.target.join(" ") + " [" + (n.failureSummary || "").replace(/\s+/g, " ") + "]").join("; "))))
  .catch((e) => done(["axe failed: " + e]));
"#;

impl Browser {
    /// axe-core finds no serious or critical accessibility violation on the
    /// page shown (`what` names it in the failure).
    async fn assert_accessible(&self, what: &str) {
        let Some(axe) = axe_source() else {
            if std::env::var("SAMTYKKE_REQUIRE_BROWSER").as_deref() == Ok("1") {
                panic!("axe-core is not installed: run `npm ci` in crates/samtykke/tests/axe (scripts/test.sh does)");
            }
            eprintln!("SKIP axe: crates/samtykke/tests/axe/node_modules is missing (npm ci there)");
            return;
        };
        let violations = self.axe_violations(axe).await;
        assert!(
            violations.is_empty(),
            "accessibility violations on {what} ({}):\n{}",
            self.url().await,
            violations.join("\n")
        );
    }

    /// The serious and critical violations axe-core finds on the page.
    async fn axe_violations(&self, axe: &str) -> Vec<String> {
        self.client
            .execute(
                &format!("if (!window.axe) {{ {axe}\n }} return !!window.axe;"),
                vec![],
            )
            .await
            .expect("inject axe-core");
        let found = self
            .client
            .execute_async(AXE_RUN, vec![])
            .await
            .expect("run axe-core");
        serde_json::from_value(found).expect("axe result")
    }

    /// The element matching `css` is wholly inside the window, without
    /// scrolling.
    async fn assert_in_viewport(&self, css: &str) {
        let rect = self
            .client
            .execute(
                "const r = document.querySelector(arguments[0]).getBoundingClientRect(); \
                 return [r.top, r.bottom, r.left, r.right, window.innerHeight, window.innerWidth, window.scrollY];",
                vec![json!(css)],
            )
            .await
            .expect("script");
        let v: Vec<f64> = serde_json::from_value(rect).expect("numbers");
        assert_eq!(v[6], 0.0, "the page is scrolled");
        assert!(
            v[0] >= 0.0 && v[1] <= v[4] && v[2] >= 0.0 && v[3] <= v[5],
            "{css} is outside the {}×{} window: top {}, bottom {}, left {}, right {}",
            v[5],
            v[4],
            v[0],
            v[1],
            v[2],
            v[3]
        );
    }

    /// The operator of `operator_pages::operator` in the header and footer,
    /// its logo loaded from our own origin.
    async fn assert_operator_shown(&self, app: &TestApp) {
        assert_eq!(self.text(".top .brand").await, "Eksempel Bank ASA");
        assert!(self.exists("footer a.privacy").await);
        assert!(self.exists("footer a.contact").await);
        let logo = self
            .client
            .execute(
                "const i = document.querySelector('img.logo'); return [i.src, i.complete && i.naturalWidth > 0];",
                vec![],
            )
            .await
            .expect("script");
        assert_eq!(logo[0], json!(app.url("/assets/operator-logo")));
        assert_eq!(logo[1], json!(true), "the logo did not load");
    }

    /// Checks the page: axe-core, and the operator shown.
    async fn check_page(&self, app: &TestApp, what: &str) {
        self.assert_operator_shown(app).await;
        self.assert_accessible(what).await;
    }
}

engine_db_tests! {
    async fn browser_every_page_is_accessible_shows_the_operator_and_no_fits_a_phone(url) {
        let Some(browser) = Browser::start().await else { return };
        let logo = crate::operator_pages::logo_file();
        let config = samtykke::config::ServeConfig {
            operator: crate::operator_pages::operator(&logo),
            ..crate::helpers::serve_config(&url, samtykke::config::SandboxSetting::On)
        };
        let app = crate::helpers::spawn_app_configured(&url, config).await;
        let own_callback = app.url("/sandbox/callback");

        // The checker finds what it should: an image without a text.
        if let Some(axe) = axe_source() {
            browser.goto("data:text/html,<html lang=en><title>x</title><main><img src=x.png></main></html>").await;
            let found = browser.axe_violations(axe).await;
            assert!(found.iter().any(|v| v.starts_with("image-alt (critical)")), "{found:?}");
        }

        // The sandbox's landing page, and the flow it starts, in bokmål.
        browser.goto(&app.url("/")).await;
        browser.check_page(&app, "the sandbox landing page").await;
        browser.click("#start-flow").await;
        browser.wait_for_url(&app.url("/oauth2/login?flow=")).await;
        browser.check_page(&app, "the TestID page").await;
        browser.type_into("#nin", "14842249092").await;
        browser.click("button[name=action][value=login]").await;
        browser.wait_for("#nin-error").await;
        browser.check_page(&app, "the TestID page with an error").await;
        browser.type_into("#nin", PERSON).await;
        browser.click("button[name=action][value=login]").await;
        let consent = browser.wait_for_url(&app.url("/oauth2/consent?flow=")).await;
        browser.check_page(&app, "the consent page").await;

        // A phone: "No" is visible without scrolling.
        browser.fit_viewport(390, 844).await;
        browser.goto(&consent).await;
        browser.assert_in_viewport("button[name=decision][value=deny]").await;
        browser.assert_in_viewport("button[name=decision][value=accept]").await;
        browser.check_page(&app, "the consent page on a phone").await;
        browser.fit_viewport(1000, 900).await;
        browser.goto(&consent).await;
        browser.click("button[name=decision][value=accept]").await;
        browser.wait_for_url(&format!("{own_callback}?")).await;
        browser.wait_for("#code").await;
        browser.check_page(&app, "the sandbox callback with a code").await;
        browser.goto(&format!("{own_callback}?error=access_denied&error_description=x&state=s")).await;
        browser.check_page(&app, "the sandbox callback with an error").await;
        browser.goto(&own_callback).await;
        browser.check_page(&app, "the sandbox callback with nothing").await;

        // The same flow in English (a new login), ending in "No".
        browser.client.delete_all_cookies().await.expect("cookies");
        browser.goto(&auth_url(&app, &own_callback, &[("ui_locales", "en")])).await;
        browser.wait_for_url(&app.url("/oauth2/login?flow=")).await;
        browser.check_page(&app, "the TestID page in English").await;
        browser.type_into("#nin", "123").await;
        browser.click("button[name=action][value=login]").await;
        browser.wait_for("#nin-error").await;
        browser.check_page(&app, "the TestID page with an error in English").await;
        browser.type_into("#nin", PERSON).await;
        browser.click("button[name=action][value=login]").await;
        let consent = browser.wait_for_url(&app.url("/oauth2/consent?flow=")).await;
        browser.check_page(&app, "the consent page in English").await;
        browser.fit_viewport(390, 844).await;
        browser.goto(&consent).await;
        browser.assert_in_viewport("button[name=decision][value=deny]").await;
        browser.fit_viewport(1000, 900).await;
        browser.goto(&consent).await;
        browser.click("button[name=decision][value=deny]").await;
        browser.wait_for_url(&format!("{own_callback}?")).await;
        browser.wait_for("#error").await;

        // Error pages, both languages.
        for (lang, extra) in [("nb", vec![]), ("en", vec![("ui_locales", "en")])] {
            browser.goto(&auth_url(&app, "https://evil.example/cb", &extra)).await;
            assert_eq!(browser.attr("html", "lang").await.as_deref(), Some(lang));
            browser.check_page(&app, &format!("the error page ({lang})")).await;
        }

        // The portal in both languages (logged in by the flow above).
        let id = app.agreement_consent(PERSON, "debt.unsecured.processing", 30).await;
        for (list, detail, withdraw) in [
            ("/min-side".to_owned(), format!("/min-side/samtykke/{id}"), format!("/min-side/samtykke/{id}/trekk-tilbake")),
            ("/en/my-page".to_owned(), format!("/en/my-page/consent/{id}"), format!("/en/my-page/consent/{id}/withdraw")),
        ] {
            for path in [list, detail, withdraw] {
                browser.goto(&app.url(&path)).await;
                browser.wait_for_url(&app.url(&path)).await;
                browser.check_page(&app, &path).await;
            }
        }
        browser.click(".logout button").await;
        browser.wait_for_url(&app.url("/en/my-page/logout")).await;
        browser.wait_for("h1").await;
        assert_eq!(browser.text("h1").await, "You are logged out");
        browser.check_page(&app, "the portal's logged-out page in English").await;
        browser.goto(&app.url("/min-side/logget-ut")).await;
        browser.check_page(&app, "the portal's logged-out page").await;
        browser.goto(&app.url("/min-side")).await;
        browser.wait_for_url(&app.url("/min-side/login")).await;
        browser.check_page(&app, "the portal's TestID page").await;
        browser.close().await;
    }
}
