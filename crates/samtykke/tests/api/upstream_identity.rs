//! Identification through an upstream OpenID provider (issue 20): a real,
//! independent provider (npm `oidc-provider`, tests/oidc-provider) started on
//! loopback, and Samtykke as its relying party, over real HTTP.

use std::io::BufRead;
use std::sync::Arc;

use samtykke::config::{SandboxSetting, ServeConfig, UpstreamSettings};
use samtykke::startup::Application;
use samtykke::storage::open_store;
use samtykke_core::consent::ConsentId;
use samtykke_core::store::Store;
use samtykke_core::{Clock, SystemClock};
use samtykke_http::identity::upstream::ClientAuth;
use serde_json::{json, Value};

use crate::helpers::{free_loopback_addr, location, open_page, query_of, run_cli, serve_config};

/// A real-form national identity number (production accepts no synthetic
/// ones), and a synthetic one with sandbox debt.
const REAL_PID: &str = "01010100050";
const SYNTHETIC_PID: &str = "14842249091";
const CALLBACK: &str = "http://127.0.0.1:9999/callback";
const CLIENT_SECRET: &str = "test-provider-client-secret-0123456789";

/// The test provider, a node process on a loopback port.
pub struct TestProvider {
    pub issuer: String,
    config_path: std::path::PathBuf,
    child: std::process::Child,
}

impl TestProvider {
    fn project_dir() -> std::path::PathBuf {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/oidc-provider")
    }

    /// Whether the provider is installed (`npm ci` in tests/oidc-provider);
    /// with `SAMTYKKE_REQUIRE_OIDC_PROVIDER` set (scripts/test.sh) a missing
    /// one fails the test instead of skipping it.
    pub fn available() -> bool {
        let installed = Self::project_dir()
            .join("node_modules/oidc-provider")
            .is_dir();
        if !installed {
            if std::env::var_os("SAMTYKKE_REQUIRE_OIDC_PROVIDER").is_some() {
                panic!("the test OpenID provider is not installed: run `npm ci` in crates/samtykke/tests/oidc-provider (scripts/test.sh does)");
            }
            eprintln!("SKIP upstream: the test OpenID provider is not installed (npm ci in crates/samtykke/tests/oidc-provider)");
        }
        installed
    }

    /// Starts the provider on `port` with `config` (see provider.mjs) and
    /// waits until it listens.
    pub fn start(port: u16, mut config: Value) -> Self {
        config["port"] = json!(port);
        let config_path = std::env::temp_dir().join(format!(
            "samtykke-test-oidc-{port}-{}.json",
            std::process::id()
        ));
        std::fs::write(&config_path, config.to_string()).unwrap();
        let child = Self::spawn(&config_path);
        Self {
            issuer: format!("http://127.0.0.1:{port}"),
            config_path,
            child,
        }
    }

    /// Starts node and waits (at most 30 s) for its "listening" line; a
    /// provider that neither listens nor fails in that time (seen once on a
    /// loaded machine) is killed and started again, up to three times.
    fn spawn(config_path: &std::path::Path) -> std::process::Child {
        let mut last = String::new();
        for _ in 0..3 {
            let mut child = std::process::Command::new("node")
                .arg(Self::project_dir().join("provider.mjs"))
                .arg(config_path)
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::null())
                .spawn()
                .expect("start node");
            let stdout = child.stdout.take().unwrap();
            let (tx, rx) = std::sync::mpsc::channel();
            std::thread::spawn(move || {
                let mut reader = std::io::BufReader::new(stdout);
                let mut line = String::new();
                let _ = reader.read_line(&mut line);
                let _ = tx.send(line);
                // Keep reading its notices: a closed pipe would end it.
                let _ = std::io::copy(&mut reader, &mut std::io::sink());
            });
            match rx.recv_timeout(std::time::Duration::from_secs(30)) {
                Ok(line) if line.starts_with("listening") => return child,
                Ok(line) => last = line,
                Err(_) => last = "nothing within 30 s".to_owned(),
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("the provider did not start: {last:?}");
    }

    /// Restarts the provider on the same port: it makes a new signing key
    /// (a new `kid`), as a provider's key rotation.
    pub fn restart(&mut self) {
        self.stop();
        self.child = Self::spawn(&self.config_path);
    }

    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for TestProvider {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_file(&self.config_path);
    }
}

/// Samtykke with an upstream provider, and the provider.
pub struct Upstreamed {
    pub base: String,
    pub store: Arc<dyn Store>,
    pub provider: TestProvider,
    pub client: (String, String),
    _shutdown: tokio::sync::oneshot::Sender<()>,
    /// Removed when the test ends (after the server is told to stop).
    _database: Option<crate::helpers::TestDatabase>,
}

fn accounts() -> Value {
    json!({
        "real": {"pid": REAL_PID, "acr": "idporten-loa-high"},
        "synthetic": {"pid": SYNTHETIC_PID, "acr": "idporten-loa-high"},
        "substantial": {"pid": REAL_PID, "acr": "idporten-loa-substantial"},
        "nopid": {},
        "badpid": {"pid": "12345678901"},
    })
}

fn settings(issuer: &str) -> UpstreamSettings {
    UpstreamSettings {
        issuer: issuer.to_owned(),
        client_id: "samtykke".to_owned(),
        auth: ClientAuth::Secret(CLIENT_SECRET.to_owned()),
        pid_claim: "pid".to_owned(),
        scope: "openid".to_owned(),
        acr_values: None,
    }
}

fn provider_client(addr: std::net::SocketAddr) -> Value {
    json!({
        "client_id": "samtykke",
        "client_secret": CLIENT_SECRET,
        "redirect_uris": [format!("http://{addr}/login/callback")],
        "post_logout_redirect_uris": [
            format!("http://{addr}/min-side"),
            format!("http://{addr}/min-side/logget-ut"),
        ],
    })
}

fn free_port() -> u16 {
    free_loopback_addr().port()
}

/// Starts the provider and then Samtykke (`mode`) with it as upstream;
/// `tweak` changes the upstream settings and the provider's client.
async fn start_with(
    database_url: crate::helpers::TestDatabase,
    mode: SandboxSetting,
    tweak: impl FnOnce(&mut UpstreamSettings, &mut Value),
) -> Option<Upstreamed> {
    if !TestProvider::available() {
        return None;
    }
    let addr = free_loopback_addr();
    let port = free_port();
    let mut upstream = settings(&format!("http://127.0.0.1:{port}"));
    let mut client = provider_client(addr);
    tweak(&mut upstream, &mut client);
    let provider = TestProvider::start(port, json!({"clients": [client], "accounts": accounts()}));
    let config = ServeConfig {
        listen: addr,
        upstream: Some(upstream),
        ..serve_config(&database_url, mode)
    };
    let store = open_store(&database_url).await.unwrap();
    let app = Application::build_with(config, store.clone(), Arc::new(SystemClock))
        .await
        .expect("build app");
    let base = format!("http://{}", app.local_addr().unwrap());
    assert_eq!(
        app.upstream_callback(),
        Some(format!("{base}/login/callback").as_str())
    );
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(app.run_until(async {
        let _ = rx.await;
    }));
    let client = create_client(&database_url);
    Some(Upstreamed {
        base,
        store,
        provider,
        client,
        _shutdown: tx,
        _database: Some(database_url),
    })
}

async fn start(database_url: crate::helpers::TestDatabase) -> Option<Upstreamed> {
    start_with(database_url, SandboxSetting::Off, |_, _| {}).await
}

fn create_client(database_url: &str) -> (String, String) {
    let output = run_cli(
        database_url,
        &[
            "client",
            "create",
            "--json",
            "--name",
            "Eksempelbank",
            "--org",
            "974760673",
            "--purpose",
            "presentation",
            "--events",
            "--redirect-uri",
            CALLBACK,
        ],
    );
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let created: Value = serde_json::from_slice(&output.stdout).unwrap();
    (
        created["client_id"].as_str().unwrap().to_owned(),
        created["client_secret"].as_str().unwrap().to_owned(),
    )
}

fn browser() -> reqwest::Client {
    crate::helpers::browser()
}

impl Upstreamed {
    fn auth_url(&self) -> String {
        let query: String = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs([
                ("client_id", self.client.0.as_str()),
                ("response_type", "code"),
                ("scope", "debt.unsecured.presentation openid"),
                ("state", "state-123"),
                ("redirect_uri", CALLBACK),
            ])
            .finish();
        format!("{}/oauth2/auth?{query}", self.base)
    }

    /// From a Samtykke URL that sends the browser to the provider, through
    /// the provider's interaction as `choice` (`account=…` or `abort=1`),
    /// to Samtykke's callback: the callback's answer (not followed).
    async fn through_provider(
        &self,
        browser: &reqwest::Client,
        start: &str,
        choice: &str,
    ) -> reqwest::Response {
        let mut url = start.to_owned();
        let mut chosen = false;
        for _ in 0..10 {
            let response = browser.get(&url).send().await.unwrap();
            if url.starts_with(&format!("{}/login/callback", self.base)) {
                return response;
            }
            assert_eq!(response.status(), 303, "GET {url}: {}", response.status());
            let next = location(&response);
            url = if next.starts_with('/') {
                format!("{}{next}", self.provider.issuer)
            } else {
                next
            };
            if url.contains("/interaction/") && !chosen {
                url = format!("{url}?{choice}");
                chosen = true;
            }
        }
        panic!("never came back to the callback");
    }

    /// The regular flow up to the consent page's URL, identified at the
    /// provider as `account`.
    async fn identify(&self, browser: &reqwest::Client, choice: &str) -> reqwest::Response {
        let start = browser.get(self.auth_url()).send().await.unwrap();
        let login = location(&start);
        assert!(login.contains("/oauth2/login"), "{login}");
        self.through_provider(browser, &login, choice).await
    }

    async fn redeem(&self, code: &str) -> Value {
        reqwest::Client::new()
            .post(format!("{}/oauth2/token", self.base))
            .basic_auth(&self.client.0, Some(&self.client.1))
            .form(&[
                ("grant_type", "authorization_code"),
                ("code", code),
                ("redirect_uri", CALLBACK),
            ])
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// The regular flow through the provider as `account`, accepted: the
    /// consent's national identity number and the debt's `ssn`.
    async fn consent_through_provider(&self, account: &str) -> (String, Value) {
        let browser = browser();
        let callback = self.identify(&browser, &format!("account={account}")).await;
        let consent_url = location(&callback);
        assert!(consent_url.contains("/oauth2/consent"), "{consent_url}");
        let (flow, csrf, page) = open_page(&browser, &consent_url).await;
        assert!(page.contains("Eksempelbank"));
        let decided = browser
            .post(format!("{}/oauth2/consent", self.base))
            .form(&[
                ("flow", flow.as_str()),
                ("csrf", csrf.as_str()),
                ("decision", "accept"),
            ])
            .send()
            .await
            .unwrap();
        let redirect = location(&decided);
        let code = query_of(&redirect)["code"].clone();
        let tokens = self.redeem(&code).await;
        let access = tokens["access_token"]
            .as_str()
            .unwrap_or_else(|| panic!("{tokens}"));
        let debt: Value = reqwest::Client::new()
            .get(format!("{}/v1/debt", self.base))
            .bearer_auth(access)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let consent_id = debt["consent"]["id"]
            .as_str()
            .unwrap_or_else(|| panic!("{debt}"));
        let consent = self
            .store
            .find_consent(&ConsentId::parse(consent_id).unwrap())
            .await
            .unwrap()
            .unwrap();
        (consent.nin.as_str().to_owned(), debt)
    }

    /// The institution's redirect after a login at the provider that failed
    /// or was cancelled: the callback's page and the error it sends back.
    async fn failed_identification(&self, choice: &str) -> (u16, String, String) {
        let browser = browser();
        let callback = self.identify(&browser, choice).await;
        let status = callback.status().as_u16();
        if status == 303 {
            let back = location(&callback);
            return (status, String::new(), query_of(&back)["error"].clone());
        }
        let page = callback.text().await.unwrap();
        let unescaped = page.replace("&amp;", "&").replace("&#x2f;", "/");
        let start = unescaped
            .find("href=\"http://127.0.0.1:9999/callback")
            .unwrap_or_else(|| panic!("a link back: {page}"));
        let href = &unescaped[start + 6..];
        let href = &href[..href.find('"').unwrap()];
        (status, page, query_of(href)["error"].clone())
    }
}

engine_db_tests! {
    async fn the_regular_flow_identifies_through_the_provider_in_production(url) {
        let Some(up) = start(url).await else { return };
        let (nin, debt) = up.consent_through_provider("real").await;
        // The provider's pid, not anything typed into Samtykke.
        assert_eq!(nin, REAL_PID);
        assert_eq!(debt["ssn"], REAL_PID, "{debt}");
    }

    async fn an_upstream_identifies_in_sandbox_mode_too_and_testid_is_gone(url) {
        let Some(up) = start_with(url, SandboxSetting::On, |_, _| {}).await else { return };
        let (nin, debt) = up.consent_through_provider("synthetic").await;
        assert_eq!(nin, SYNTHETIC_PID);
        assert_eq!(debt["ssn"], SYNTHETIC_PID, "{debt}");
        // TestID's form cannot be posted: the login page is the provider's.
        let browser = browser();
        let start = browser.get(up.auth_url()).send().await.unwrap();
        let login = location(&start);
        let to_provider = browser.get(&login).send().await.unwrap();
        assert!(location(&to_provider).starts_with(&up.provider.issuer));
        let posted = browser
            .post(format!("{}/oauth2/login", up.base))
            .form(&[("flow", query_of(&login)["flow"].as_str()), ("csrf", "x"), ("nin", SYNTHETIC_PID), ("action", "login")])
            .send()
            .await
            .unwrap();
        assert_eq!(posted.status(), 403);
        assert!(posted.text().await.unwrap().contains("TestID finnes bare i testmiljøet"));
        let portal_post = browser
            .post(format!("{}/min-side/login", up.base))
            .form(&[("return", "/min-side"), ("csrf", "x"), ("nin", SYNTHETIC_PID), ("action", "login")])
            .send()
            .await
            .unwrap();
        assert_eq!(portal_post.status(), 403);
        assert!(portal_post.text().await.unwrap().contains("TestID finnes bare i testmiljøet"));
    }

    async fn cancelling_at_the_provider_sends_login_cancelled(url) {
        let Some(up) = start(url).await else { return };
        let (status, _, error) = up.failed_identification("abort=1").await;
        assert_eq!((status, error.as_str()), (303, "login_cancelled"));
    }

    async fn a_missing_pid_is_a_clear_page_and_access_denied(url) {
        let Some(up) = start(url).await else { return };
        let (status, page, error) = up.failed_identification("account=nopid").await;
        assert_eq!((status, error.as_str()), (403, "access_denied"));
        assert!(page.contains("fødselsnummer vi kan bruke"), "{page}");
    }

    async fn a_malformed_pid_is_refused(url) {
        let Some(up) = start(url).await else { return };
        let (status, _, error) = up.failed_identification("account=badpid").await;
        assert_eq!((status, error.as_str()), (403, "access_denied"));
    }

    async fn a_synthetic_pid_is_refused_in_production(url) {
        let Some(up) = start(url).await else { return };
        let (status, _, error) = up.failed_identification("account=synthetic").await;
        assert_eq!((status, error.as_str()), (403, "access_denied"));
    }

    async fn an_acr_below_the_required_level_is_refused(url) {
        let Some(up) = start_with(url, SandboxSetting::Off, |s, _| {
            s.acr_values = Some("idporten-loa-high".to_owned());
        })
        .await else { return };
        let (status, _, error) = up.failed_identification("account=substantial").await;
        assert_eq!((status, error.as_str()), (403, "access_denied"));
        // The required level itself passes.
        let (nin, _) = up.consent_through_provider("real").await;
        assert_eq!(nin, REAL_PID);
    }

    async fn the_providers_key_rotation_needs_no_restart_of_samtykke(url) {
        let Some(mut up) = start(url).await else { return };
        let (nin, _) = up.consent_through_provider("real").await;
        assert_eq!(nin, REAL_PID);
        let old_jwks: Value = reqwest::get(format!("{}/jwks", up.provider.issuer)).await.unwrap().json().await.unwrap();
        up.provider.restart();
        let new_jwks: Value = reqwest::get(format!("{}/jwks", up.provider.issuer)).await.unwrap().json().await.unwrap();
        assert_ne!(old_jwks["keys"][0]["kid"], new_jwks["keys"][0]["kid"], "the provider has a new key");
        let (nin, _) = up.consent_through_provider("real").await;
        assert_eq!(nin, REAL_PID);
    }

    async fn the_provider_down_during_login_is_a_clear_page(url) {
        let Some(mut up) = start(url).await else { return };
        let browser = browser();
        // The browser reaches the provider, which then goes away before
        // Samtykke redeems the code.
        let start = browser.get(up.auth_url()).send().await.unwrap();
        let login = location(&start);
        let to_provider = location(&browser.get(&login).send().await.unwrap());
        let interaction = location(&browser.get(&to_provider).send().await.unwrap());
        let resume = location(&browser.get(format!("{}{interaction}?account=real", up.provider.issuer)).send().await.unwrap());
        let callback = location(&browser.get(&resume).send().await.unwrap());
        up.provider.stop();
        let answer = browser.get(&callback).send().await.unwrap();
        assert_eq!(answer.status(), 502);
        let page = answer.text().await.unwrap();
        assert!(page.contains("identitetsleverandøren mislyktes"), "{page}");
        assert!(page.contains("error=server_error"), "{page}");
    }

    async fn the_portal_logs_in_through_the_provider(url) {
        let Some(up) = start(url).await else { return };
        let browser = browser();
        let callback = up
            .through_provider(&browser, &format!("{}/min-side/login?return=/en/my-page", up.base), "account=real")
            .await;
        assert_eq!(location(&callback), format!("{}/en/my-page", up.base));
        let cookies: Vec<String> = callback
            .headers()
            .get_all("set-cookie")
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .collect();
        assert!(cookies.iter().any(|c| c.starts_with("samtykke_session=s1.")), "{cookies:?}");
        assert!(cookies.iter().any(|c| c.starts_with("samtykke_login=;")), "the pending login is cleared: {cookies:?}");
        // Only the portal's pages are return paths.
        let elsewhere = browser
            .get(format!("{}/min-side/login?return=https://evil.example/", up.base))
            .send()
            .await
            .unwrap();
        assert_eq!(elsewhere.status(), 400);
    }

    async fn a_callback_without_its_login_cookie_is_refused(url) {
        let Some(up) = start(url).await else { return };
        let browser = browser();
        let start = browser.get(up.auth_url()).send().await.unwrap();
        let login = location(&start);
        let to_provider = location(&browser.get(&login).send().await.unwrap());
        let interaction = location(&browser.get(&to_provider).send().await.unwrap());
        let resume = location(&browser.get(format!("{}{interaction}?account=real", up.provider.issuer)).send().await.unwrap());
        let callback = location(&browser.get(&resume).send().await.unwrap());
        // Another browser (a stolen callback URL) gets nothing.
        let other = crate::helpers::browser().get(&callback).send().await.unwrap();
        assert_eq!(other.status(), 400);
        // A forged state in the right browser neither.
        let forged = callback.replace("state=", "state=x");
        let answer = browser.get(&forged).send().await.unwrap();
        assert_eq!(answer.status(), 400);
    }
}

engine_db_tests! {
    async fn private_key_jwt_authenticates_samtykke_at_the_provider(url) {
        let key = samtykke_core::keys::SigningKey::generate(SystemClock.now()).unwrap();
        let jwk = serde_json::to_value(key.public_jwk().unwrap()).unwrap();
        let pem_path = std::env::temp_dir().join(format!("samtykke-test-rp-{}.pem", uuid::Uuid::new_v4()));
        std::fs::write(&pem_path, &key.private_key_pem).unwrap();
        let Some(up) = start_with(url, SandboxSetting::Off, |s, client| {
            // Read from the key file, as `--upstream-private-key-file` does.
            let input = samtykke::config::UpstreamInput {
                issuer: Some(s.issuer.clone()),
                client_id: Some(s.client_id.clone()),
                private_key_file: Some(pem_path.display().to_string()),
                private_key_id: Some(key.kid.clone()),
                ..Default::default()
            };
            s.auth = input.resolve().unwrap().unwrap().auth;
            assert!(matches!(&s.auth, ClientAuth::PrivateKey { kid: Some(_), .. }));
            client.as_object_mut().unwrap().remove("client_secret");
            client["token_endpoint_auth_method"] = json!("private_key_jwt");
            client["jwks"] = json!({"keys": [jwk]});
        })
        .await else { return };
        let (nin, _) = up.consent_through_provider("real").await;
        assert_eq!(nin, REAL_PID);
        let _ = std::fs::remove_file(&pem_path);
    }
}

engine_db_tests! {
    async fn a_provider_that_does_not_answer_at_start_up_is_a_clear_error(url) {
        let issuer = format!("http://127.0.0.1:{}", free_port());
        let config = ServeConfig {
            upstream: Some(settings(&issuer)),
            ..serve_config(&url, SandboxSetting::Off)
        };
        let store = open_store(&url).await.unwrap();
        let error = match Application::build_with(config, store, Arc::new(SystemClock)).await {
            Ok(_) => panic!("started without its provider"),
            Err(e) => format!("{e:#}"),
        };
        assert!(error.contains("could not discover the upstream OpenID provider at"), "{error}");
        assert!(error.contains(&issuer), "{error}");
    }
}

#[tokio::test]
async fn an_upstream_without_a_client_id_is_refused_by_the_command_line() {
    let Some(url) = crate::helpers::fresh_database_url(crate::helpers::Engine::Sqlite).await else {
        return;
    };
    let output = run_cli(
        &url,
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--upstream-issuer",
            "https://idporten.example",
        ],
    );
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--upstream-client-id"), "{stderr}");
}

engine_db_tests! {
    async fn testid_is_unreachable_in_production_without_an_upstream(url) {
        let (addr, _stop) = crate::helpers::spawn_production_server(&url).await;
        let portal = reqwest::get(format!("http://{addr}/min-side/login?return=/min-side")).await.unwrap();
        assert_eq!(portal.status(), 403);
        let posted = reqwest::Client::new()
            .post(format!("http://{addr}/min-side/login"))
            .form(&[("return", "/min-side"), ("csrf", "x"), ("nin", REAL_PID), ("action", "login")])
            .send()
            .await
            .unwrap();
        assert_eq!(posted.status(), 403);
        assert!(posted.text().await.unwrap().contains("TestID finnes bare i testmiljøet"));
        let flow_post = reqwest::Client::new()
            .post(format!("http://{addr}/oauth2/login"))
            .form(&[("flow", "f1.x"), ("csrf", "x"), ("nin", REAL_PID), ("action", "login")])
            .send()
            .await
            .unwrap();
        assert_eq!(flow_post.status(), 403);
        assert!(flow_post.text().await.unwrap().contains("TestID finnes bare i testmiljøet"));
        let callback = reqwest::get(format!("http://{addr}/login/callback?code=x&state=y")).await.unwrap();
        assert_eq!(callback.status(), 404);
    }
}

/// A misbehaving provider: discovery, a JWKS and a token endpoint whose ID
/// token the test crafts (signed with the test's own RSA key by
/// `jsonwebtoken`).
struct Misbehaving {
    stub: crate::helpers::StubServer,
    key: samtykke_core::keys::SigningKey,
}

impl Misbehaving {
    async fn start() -> Self {
        let stub = crate::helpers::StubServer::start().await;
        let key = samtykke_core::keys::SigningKey::generate(SystemClock.now()).unwrap();
        let issuer = stub.base.clone();
        let metadata = json!({
            "issuer": issuer,
            "authorization_endpoint": format!("{issuer}/auth"),
            "token_endpoint": format!("{issuer}/token"),
            "jwks_uri": format!("{issuer}/jwks"),
            "response_types_supported": ["code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
        });
        let json_type = [("content-type", "application/json")];
        stub.serve_with(
            "/.well-known/openid-configuration",
            200,
            &json_type,
            &metadata.to_string(),
        );
        let jwks = json!({"keys": [serde_json::to_value(key.public_jwk().unwrap()).unwrap()]});
        stub.serve_with("/jwks", 200, &json_type, &jwks.to_string());
        Self { stub, key }
    }

    /// Serves an ID token with `claims` (over sensible defaults), signed by
    /// `key` under this provider's `kid`.
    fn token(&self, key: &samtykke_core::keys::SigningKey, claims: Value) {
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
        header.kid = Some(self.key.kid.clone());
        let encoding =
            jsonwebtoken::EncodingKey::from_rsa_pem(key.private_key_pem.as_bytes()).unwrap();
        let id_token = jsonwebtoken::encode(&header, &claims, &encoding).unwrap();
        let body = json!({"access_token": "at", "token_type": "Bearer", "expires_in": 60, "id_token": id_token});
        self.stub.serve_with(
            "/token",
            200,
            &[("content-type", "application/json")],
            &body.to_string(),
        );
    }
}

/// Runs one login against the misbehaving provider whose token's claims
/// `claims(issuer, nonce)` makes (signed by the provider's key, or another
/// when `other_key`): the callback's status and the error sent back.
async fn misbehaving_login(
    url: &str,
    claims: impl FnOnce(&str, &str) -> Value,
    other_key: bool,
    extra_callback_query: &str,
) -> (u16, String) {
    let url = url.to_owned();
    let provider = Misbehaving::start().await;
    let config = ServeConfig {
        listen: free_loopback_addr(),
        upstream: Some(settings(&provider.stub.base)),
        ..serve_config(&url, SandboxSetting::Off)
    };
    let store = open_store(&url).await.unwrap();
    let app = Application::build_with(config, store.clone(), Arc::new(SystemClock))
        .await
        .expect("build");
    let base = format!("http://{}", app.local_addr().unwrap());
    let (_tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(app.run_until(async {
        let _ = rx.await;
    }));
    let client = create_client(&url);
    let query: String = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs([
            ("client_id", client.0.as_str()),
            ("response_type", "code"),
            ("scope", "debt.unsecured.presentation"),
            ("state", "s"),
            ("redirect_uri", CALLBACK),
        ])
        .finish();
    let browser = browser();
    let login = location(
        &browser
            .get(format!("{base}/oauth2/auth?{query}"))
            .send()
            .await
            .unwrap(),
    );
    let authorize = location(&browser.get(&login).send().await.unwrap());
    let request = query_of(&authorize);
    assert_eq!(request["code_challenge_method"], "S256");
    let now = SystemClock.now().unix_timestamp();
    let mut token_claims = json!({"iss": provider.stub.base, "aud": "samtykke", "sub": "x", "iat": now, "exp": now + 60, "nonce": request["nonce"], "pid": REAL_PID});
    let changes = claims(&provider.stub.base, &request["nonce"]);
    for (k, v) in changes.as_object().unwrap() {
        token_claims[k] = v.clone();
    }
    let signer = if other_key {
        samtykke_core::keys::SigningKey::generate(SystemClock.now()).unwrap()
    } else {
        provider.key.clone()
    };
    provider.token(&signer, token_claims);
    let callback = browser
        .get(format!(
            "{base}/login/callback?code=c&state={}{extra_callback_query}",
            request["state"]
        ))
        .send()
        .await
        .unwrap();
    let status = callback.status().as_u16();
    let page = callback.text().await.unwrap();
    let error = page
        .find("error=")
        .map(|i| page[i + 6..].split(['&', '"']).next().unwrap().to_owned())
        .unwrap_or_default();
    (status, error)
}

engine_db_tests! {
    async fn a_well_formed_token_from_the_stub_provider_is_accepted(url) {
        // The control for the cases below: the same stub, nothing wrong.
        let (status, _) = misbehaving_login(&url, |_, _| json!({}), false, "").await;
        assert_eq!(status, 303);
    }

    async fn a_bad_id_token_signature_is_refused(url) {
        let answer = misbehaving_login(&url, |_, _| json!({}), true, "").await;
        assert_eq!(answer, (502, "server_error".to_owned()));
    }

    async fn a_wrong_nonce_is_refused(url) {
        let answer = misbehaving_login(&url, |_, _| json!({"nonce": "another"}), false, "").await;
        assert_eq!(answer, (502, "server_error".to_owned()));
    }

    async fn a_wrong_issuer_is_refused(url) {
        let answer = misbehaving_login(&url, |_, _| json!({"iss": "http://127.0.0.1:1"}), false, "").await;
        assert_eq!(answer, (502, "server_error".to_owned()));
    }

    async fn a_callback_naming_another_issuer_is_refused(url) {
        // RFC 9207: the callback's `iss` must be the provider's.
        let answer = misbehaving_login(&url, |_, _| json!({}), false, "&iss=http%3A%2F%2F127.0.0.1%3A1").await;
        assert_eq!(answer, (502, "server_error".to_owned()));
    }

    async fn a_wrong_audience_is_refused(url) {
        let answer = misbehaving_login(&url, |_, _| json!({"aud": "someone-else"}), false, "").await;
        assert_eq!(answer, (502, "server_error".to_owned()));
    }

    async fn an_expired_id_token_is_refused_beyond_the_clock_skew(url) {
        let now = SystemClock.now().unix_timestamp();
        let answer = misbehaving_login(&url, |_, _| json!({"iat": now - 900, "exp": now - 600}), false, "").await;
        assert_eq!(answer, (502, "server_error".to_owned()));
        // Within the skew it passes.
        let (status, _) = misbehaving_login(&url, |_, _| json!({"iat": now - 90, "exp": now - 30}), false, "").await;
        assert_eq!(status, 303);
    }

    async fn something_that_is_not_an_openid_provider_is_a_clear_start_up_error(url) {
        let stub = crate::helpers::StubServer::start().await;
        stub.serve("/.well-known/openid-configuration", 200, "<html>hello</html>");
        let config = ServeConfig {
            upstream: Some(settings(&stub.base)),
            ..serve_config(&url, SandboxSetting::Off)
        };
        let store = open_store(&url).await.unwrap();
        let error = match Application::build_with(config, store, Arc::new(SystemClock)).await {
            Ok(_) => panic!("started with a provider that is none"),
            Err(e) => format!("{e:#}"),
        };
        assert!(error.contains("could not discover the upstream OpenID provider at"), "{error}");
    }
}

engine_db_tests! {
    async fn the_command_line_prints_the_callback_to_register_and_never_the_secret(url) {
        use std::io::Read;
        if !TestProvider::available() {
            return;
        }
        let addr = free_loopback_addr();
        let port = free_port();
        let provider = TestProvider::start(port, json!({"clients": [provider_client(addr)], "accounts": accounts()}));
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_samtykke"))
            .args(["serve", "--production", "--listen", &addr.to_string(), "--admin-listen", "off"])
            .args(["--upstream-issuer", &provider.issuer, "--upstream-client-id", "samtykke"])
            .args(["--upstream-acr-values", "idporten-loa-high"])
            .env("SAMTYKKE_UPSTREAM_CLIENT_SECRET", CLIENT_SECRET)
            .env("SAMTYKKE_DATABASE_URL", &url)
            .env_remove("SAMTYKKE_CONFIG")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut reader = std::io::BufReader::new(child.stdout.take().unwrap());
        let mut stdout = String::new();
        loop {
            let mut line = String::new();
            assert_ne!(reader.read_line(&mut line).unwrap(), 0, "the server ended: {stdout}");
            stdout.push_str(&line);
            if line.starts_with("production mode") {
                break;
            }
        }
        assert!(
            stdout.contains(&format!("register this redirect URI there: http://{addr}/login/callback")),
            "{stdout}"
        );
        // It serves: the authorization flow goes to the provider, asking for the level.
        let up = Upstreamed {
            base: format!("http://{addr}"),
            store: open_store(&url).await.unwrap(),
            provider,
            client: create_client(&url),
            _shutdown: tokio::sync::oneshot::channel().0,
            _database: None,
        };
        let browser = browser();
        let login = location(&browser.get(up.auth_url()).send().await.unwrap());
        let to_provider = location(&browser.get(&login).send().await.unwrap());
        assert!(to_provider.starts_with(&up.provider.issuer), "{to_provider}");
        assert_eq!(query_of(&to_provider)["acr_values"], "idporten-loa-high");
        assert_eq!(query_of(&to_provider)["code_challenge_method"], "S256");
        let callback = up.through_provider(&browser, &login, "account=real").await;
        let consent = location(&callback);
        assert!(consent.contains("/oauth2/consent"), "{consent}");
        let _ = child.kill();
        let _ = child.wait();
        let mut rest = String::new();
        let _ = reader.read_to_string(&mut rest);
        let mut logs = String::new();
        child.stderr.take().unwrap().read_to_string(&mut logs).unwrap();
        assert!(logs.contains("individual identified"), "{logs}");
        for output in [&stdout, &rest, &logs] {
            assert!(!output.contains(CLIENT_SECRET), "the secret was printed: {output}");
            assert!(!output.contains(REAL_PID), "the number was logged: {output}");
            assert!(!output.contains("p1."), "the pending login was logged: {output}");
        }
    }
}

#[tokio::test]
async fn the_providers_end_session_endpoint_is_where_a_logout_goes_too() {
    use samtykke_http::identity::upstream::{Upstream, UpstreamConfig};
    use samtykke_http::identity::{IdentityProvider, TestId};
    if !TestProvider::available() {
        return;
    }
    let addr = free_loopback_addr();
    let provider = TestProvider::start(
        free_port(),
        json!({"clients": [provider_client(addr)], "accounts": accounts()}),
    );
    let upstream = Upstream::discover(
        UpstreamConfig {
            issuer: provider.issuer.clone(),
            client_id: "samtykke".to_owned(),
            auth: ClientAuth::Secret(CLIENT_SECRET.to_owned()),
            pid_claim: "pid".to_owned(),
            scope: "openid".to_owned(),
            acr_values: None,
            redirect_uri: format!("http://{addr}/login/callback"),
        },
        Arc::new(SystemClock),
    )
    .await
    .unwrap();
    let return_to = format!("http://{addr}/min-side");
    let url = upstream
        .end_session_url(&return_to)
        .expect("an end-session URL");
    assert!(
        url.starts_with(&format!("{}/session/end?", provider.issuer)),
        "{url}"
    );
    let query = query_of(&url);
    assert_eq!(query["client_id"], "samtykke");
    assert_eq!(query["post_logout_redirect_uri"], return_to);
    // The provider takes it (its logout confirmation page).
    assert_eq!(reqwest::get(&url).await.unwrap().status(), 200);
    assert_eq!(TestId.end_session_url(&return_to), None);
}

engine_tests! {
    async fn the_portal_logs_in_with_testid_in_the_sandbox(app) {
        let browser = browser();
        let page = browser.get(app.url("/min-side/login?return=/en/my-page")).send().await.unwrap();
        assert_eq!(page.status(), 200);
        let body = page.text().await.unwrap();
        assert!(body.contains("Log in to see and manage your consents"), "English for /en/my-page");
        let csrf = crate::helpers::hidden(&body, "csrf");
        let post = |fields: Vec<(&'static str, String)>| {
            let browser = browser.clone();
            let url = app.url("/min-side/login");
            async move { browser.post(url).form(&fields).send().await.unwrap() }
        };
        // A forged CSRF token, another return path, an invalid number.
        let forged = post(vec![("return", "/en/my-page".into()), ("csrf", "forged".into()), ("nin", SYNTHETIC_PID.into()), ("action", "login".into())]).await;
        assert_eq!(forged.status(), 403);
        let elsewhere = post(vec![("return", "https://evil.example/".into()), ("csrf", csrf.clone()), ("nin", SYNTHETIC_PID.into()), ("action", "login".into())]).await;
        assert_eq!(elsewhere.status(), 400);
        let invalid = post(vec![("return", "/en/my-page".into()), ("csrf", csrf.clone()), ("nin", "12345678901".into()), ("action", "login".into())]).await;
        assert_eq!(invalid.status(), 400);
        assert!(invalid.text().await.unwrap().contains("Wrong check digit"));
        let cancelled = post(vec![("return", "/en/my-page".into()), ("csrf", csrf.clone()), ("nin", "".into()), ("action", "cancel".into())]).await;
        assert_eq!(cancelled.status(), 200);
        assert!(cancelled.text().await.unwrap().contains("You cancelled the login"));
        // The real thing: the session cookie and back to the page.
        let ok = post(vec![("return", "/en/my-page".into()), ("csrf", csrf.clone()), ("nin", SYNTHETIC_PID.into()), ("action", "login".into())]).await;
        assert_eq!(location(&ok), app.url("/en/my-page"));
        let cookie = ok.headers()["set-cookie"].to_str().unwrap().to_owned();
        assert!(cookie.starts_with("samtykke_session=s1.") && cookie.contains("HttpOnly") && cookie.contains("SameSite=Lax"), "{cookie}");
        // The session serves the regular flow too: no second login.
        let start = browser.get(crate::helpers::auth_url(&app, &[])).send().await.unwrap();
        assert!(location(&start).contains("/oauth2/consent"), "logged in already");
        // The CSRF token of another browser is worth nothing.
        let other = crate::helpers::browser();
        let _ = other.get(app.url("/min-side/login")).send().await.unwrap();
        let stolen = other
            .post(app.url("/min-side/login"))
            .form(&[("return", "/min-side"), ("csrf", csrf.as_str()), ("nin", SYNTHETIC_PID), ("action", "login")])
            .send()
            .await
            .unwrap();
        assert_eq!(stolen.status(), 403);
    }
}

engine_db_tests! {
    async fn the_portal_shows_what_went_wrong_at_the_provider(url) {
        let Some(up) = start(url).await else { return };
        let login = format!("{}/min-side/login?return=/en/my-page", up.base);
        let cancelled = up.through_provider(&browser(), &login, "abort=1").await;
        assert_eq!(cancelled.status(), 200);
        assert!(cancelled.text().await.unwrap().contains("You cancelled the login"));
        let nopid = up.through_provider(&browser(), &login, "account=nopid").await;
        assert_eq!(nopid.status(), 403);
        assert!(nopid.text().await.unwrap().contains("did not give a national identity number we can use"));
        let browser = browser();
        let norwegian = up.through_provider(&browser, &format!("{}/min-side/login?return=/min-side", up.base), "account=badpid").await;
        assert_eq!(norwegian.status(), 403);
        let cookies: Vec<String> = norwegian.headers().get_all("set-cookie").iter().map(|v| v.to_str().unwrap().to_owned()).collect();
        assert!(!cookies.iter().any(|c| c.starts_with("samtykke_session=s1.")), "no session: {cookies:?}");
        assert!(norwegian.text().await.unwrap().contains("fødselsnummer vi kan bruke"));
    }
}

/// Follows the portal's login through the provider with a cookie-keeping
/// browser and answers the portal page it lands on.
async fn portal_through_provider(up: &Upstreamed, browser: &reqwest::Client) -> String {
    let first = browser
        .get(format!("{}/min-side", up.base))
        .send()
        .await
        .unwrap();
    assert_eq!(first.status(), 303, "not logged in yet");
    let login = location(&first);
    assert_eq!(
        login,
        format!("{}/min-side/login?return=/min-side", up.base)
    );
    let body = first.text().await.unwrap();
    assert!(body.is_empty(), "nothing is shown before the login: {body}");
    let callback = up.through_provider(browser, &login, "account=real").await;
    assert_eq!(location(&callback), format!("{}/min-side", up.base));
    let list = browser
        .get(format!("{}/min-side", up.base))
        .send()
        .await
        .unwrap();
    assert_eq!(list.status(), 200);
    list.text().await.unwrap()
}

engine_db_tests! {
    // The issue's own check: an institution's regular flow identifies the
    // person at a provider Samtykke has never seen; the person finds that
    // consent in /min-side through the same provider and
    // withdraws it; the institution's next lookup is refused and its feed
    // says SAMTYKKE_ARKIVERT; logging out continues at the provider.
    async fn a_consent_given_through_the_provider_is_found_and_withdrawn_in_the_portal(url) {
        let Some(up) = start(url).await else { return };
        // The institution's flow (one debt lookup included).
        let browser_a = browser();
        let callback = up.identify(&browser_a, "account=real").await;
        let (flow, csrf, _) = open_page(&browser_a, &location(&callback)).await;
        let decided = browser_a
            .post(format!("{}/oauth2/consent", up.base))
            .form(&[("flow", flow.as_str()), ("csrf", csrf.as_str()), ("decision", "accept")])
            .send()
            .await
            .unwrap();
        let code = query_of(&location(&decided))["code"].clone();
        let tokens = up.redeem(&code).await;
        let access = tokens["access_token"].as_str().unwrap().to_owned();
        let lookup = || async {
            reqwest::Client::new()
                .get(format!("{}/v1/debt", up.base))
                .bearer_auth(&access)
                .send()
                .await
                .unwrap()
        };

        // The person, in another browser, logs in to the portal at the
        // same provider and finds the consent (still unused: a regular
        // consent is spent by its one lookup).
        let person = browser();
        let list = portal_through_provider(&up, &person).await;
        assert!(list.contains("Eksempelbank"), "{list}");
        assert!(list.contains("974760673"), "{list}");
        let link = format!("href=\"{}/min-side/samtykke/", up.base);
        let at = list.find(&link).unwrap_or_else(|| panic!("a consent link: {list}")) + link.len();
        let consent_id = list[at..at + 36].to_owned();
        let stored = up.store.find_consent(&ConsentId::parse(&consent_id).unwrap()).await.unwrap().unwrap();
        assert_eq!(stored.nin.as_str(), REAL_PID, "the provider's pid");
        let detail_url = format!("{}/min-side/samtykke/{consent_id}", up.base);
        let detail = person.get(&detail_url).send().await.unwrap().text().await.unwrap();
        assert!(detail.contains("Eksempelbank"));
        assert!(detail.contains("Aktivt"), "{detail}");

        // Withdrawal: the confirmation page, then its form.
        let confirm = person.get(format!("{detail_url}/trekk-tilbake")).send().await.unwrap();
        assert_eq!(confirm.status(), 200);
        let confirm = confirm.text().await.unwrap();
        let csrf = crate::helpers::hidden(&confirm, "csrf");
        let withdrawn = person
            .post(format!("{detail_url}/trekk-tilbake"))
            .form(&[("csrf", csrf.as_str())])
            .send()
            .await
            .unwrap();
        assert_eq!(withdrawn.status(), 303);
        let after = person.get(&detail_url).send().await.unwrap().text().await.unwrap();
        assert!(after.contains("Trukket tilbake"), "{after}");

        // The institution: refused at once, and the feed says so.
        let refused = lookup().await;
        assert_eq!(refused.status(), 403);
        let refusal: Value = refused.json().await.unwrap();
        // Withdrawing revoked the tokens bound to the consent with it.
        assert_eq!(refusal["error"], "Invalid access token", "{refusal}");
        let feed_token: Value = reqwest::Client::new()
            .post(format!("{}/oauth2/token", up.base))
            .basic_auth(&up.client.0, Some(&up.client.1))
            .form(&[
                ("grant_type", "client_credentials"),
                ("scope", "client.access.consent.events"),
                ("audience", &format!("{}/feed/v1/consent", up.base)),
            ])
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let feed: Value = reqwest::Client::new()
            .get(format!("{}/feed/v1/consent?fromSequenceNr=0&limit=100", up.base))
            .bearer_auth(feed_token["access_token"].as_str().unwrap_or_else(|| panic!("{feed_token}")))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let archived = feed["result"]
            .as_array()
            .unwrap_or_else(|| panic!("{feed}"))
            .iter()
            .filter(|e| e["consentId"] == consent_id.as_str() && e["eventType"] == "SAMTYKKE_ARKIVERT")
            .count();
        assert_eq!(archived, 1, "{feed}");

        // Logging out ends the session here and continues at the provider,
        // which accepts the return address.
        let list = person.get(format!("{}/min-side", up.base)).send().await.unwrap().text().await.unwrap();
        let out = person
            .post(format!("{}/min-side/logout", up.base))
            .form(&[("csrf", crate::helpers::hidden(&list, "csrf").as_str())])
            .send()
            .await
            .unwrap();
        let to = location(&out);
        assert!(to.starts_with(&format!("{}/session/end?", up.provider.issuer)), "{to}");
        assert_eq!(query_of(&to)["post_logout_redirect_uri"], format!("{}/min-side/logget-ut", up.base));
        assert_eq!(person.get(&to).send().await.unwrap().status(), 200, "the provider takes the logout");
        let again = person.get(format!("{}/min-side", up.base)).send().await.unwrap();
        assert_eq!(location(&again), format!("{}/min-side/login?return=/min-side", up.base));
    }
}
