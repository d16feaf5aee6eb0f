//! `spawn_app` and friends.

use std::sync::Arc;

use samtykke::config::{SandboxSetting, ServeConfig};
use samtykke::startup::Application;
use samtykke::storage::open_store;
use samtykke_core::store::{SandboxCredentials, Store};
use samtykke_core::{Clock, FixedClock, SystemClock};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    Sqlite,
    Postgres,
}

const DEFAULT_POSTGRES_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

fn postgres_base_url() -> String {
    std::env::var("SAMTYKKE_TEST_POSTGRES_URL").unwrap_or_else(|_| DEFAULT_POSTGRES_URL.to_owned())
}

/// Test databases are named with their creation time (Unix seconds) and
/// left behind by the test that made them; the first test of a later run
/// removes those older than this (a whole run takes minutes, so a run
/// going on beside this one is never touched).
const STALE_TEST_DATABASE_SECS: u64 = 3600;

fn unix_now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The creation time in a test database's name (`PREFIX{secs}_{uuid}…`),
/// or None for a name of another form.
fn created_secs(name: &str, prefix: &str) -> Option<u64> {
    name.strip_prefix(prefix)?.split('_').next()?.parse().ok()
}

fn is_stale(created: u64) -> bool {
    created + STALE_TEST_DATABASE_SECS < unix_now_secs()
}

/// Removes stale SQLite test files (with their `-wal` and `-shm`), once
/// per test process.
fn sweep_stale_sqlite_files() {
    static SWEPT: std::sync::Once = std::sync::Once::new();
    SWEPT.call_once(|| {
        let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            if created_secs(&name.to_string_lossy(), "samtykke-test-").is_some_and(is_stale) {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    });
}

/// Drops stale PostgreSQL test schemas, once per test process.
async fn sweep_stale_schemas(conn: &mut sqlx::PgConnection) {
    static SWEPT: tokio::sync::OnceCell<()> = tokio::sync::OnceCell::const_new();
    SWEPT
        .get_or_init(|| async {
            let names: Vec<String> = sqlx::query_scalar(
                "SELECT nspname::text FROM pg_namespace WHERE nspname LIKE 'samtykke\\_test\\_%'",
            )
            .fetch_all(&mut *conn)
            .await
            .unwrap_or_default();
            for name in names {
                if created_secs(&name, "samtykke_test_").is_some_and(is_stale) {
                    let _ = sqlx::query(&format!("DROP SCHEMA IF EXISTS {name} CASCADE"))
                        .execute(&mut *conn)
                        .await;
                }
            }
        })
        .await;
}

/// A fresh, empty database of the given engine, or None (with a clear SKIP
/// line) when PostgreSQL is not reachable. The guard removes it (the SQLite
/// file with its `-wal` and `-shm`, the PostgreSQL schema) when dropped,
/// also when the test fails or panics; it reads as its URL (`&db`, `{db}`).
pub async fn fresh_database_url(engine: Engine) -> Option<TestDatabase> {
    match engine {
        Engine::Sqlite => {
            sweep_stale_sqlite_files();
            let path = std::env::temp_dir().join(format!(
                "samtykke-test-{}_{}.db",
                unix_now_secs(),
                uuid::Uuid::new_v4().simple()
            ));
            // An empty file is an empty database; it exists, so the
            // operator commands (which create a file only with `--create`)
            // may be run on it first.
            std::fs::File::create(&path).expect("create the SQLite test file");
            Some(TestDatabase {
                url: format!("sqlite://{}", path.display()),
                cleanup: Cleanup::SqliteFile(path),
            })
        }
        Engine::Postgres => {
            use sqlx::Connection;
            let base = postgres_base_url();
            let connect = tokio::time::timeout(
                std::time::Duration::from_secs(5),
                sqlx::PgConnection::connect(&base),
            )
            .await;
            let mut conn = match connect {
                Ok(Ok(conn)) => conn,
                other => {
                    let why = match other {
                        Ok(Err(e)) => e.to_string(),
                        _ => "timed out".to_owned(),
                    };
                    if std::env::var("SAMTYKKE_REQUIRE_POSTGRES").as_deref() == Ok("1") {
                        panic!("PostgreSQL at {base} is required but not reachable: {why}");
                    }
                    eprintln!("SKIP postgres: PostgreSQL at {base} is not reachable ({why}); ran on SQLite only");
                    return None;
                }
            };
            sweep_stale_schemas(&mut conn).await;
            let schema = format!(
                "samtykke_test_{}_{}",
                unix_now_secs(),
                uuid::Uuid::new_v4().simple()
            );
            sqlx::query(&format!("CREATE SCHEMA {schema}"))
                .execute(&mut conn)
                .await
                .expect("create test schema");
            let sep = if base.contains('?') { '&' } else { '?' };
            Some(TestDatabase {
                url: format!(
                    "{base}{sep}options=-c%20search_path%3D{schema}&application_name={schema}"
                ),
                cleanup: Cleanup::PostgresSchema { base, schema },
            })
        }
    }
}

/// What dropping a [`TestDatabase`] removes.
#[derive(Debug)]
enum Cleanup {
    SqliteFile(std::path::PathBuf),
    PostgresSchema { base: String, schema: String },
}

/// A test's own database: its URL, and a guard that removes the database
/// when dropped (also while a failed test unwinds). A run that is killed
/// leaves it to `scripts/test.sh`, which removes `samtykke-test-*.db*` and
/// the `samtykke_test_%` schemas at its start and exit, and to the sweep of
/// stale ones at the next run's first test.
#[derive(Debug)]
pub struct TestDatabase {
    url: String,
    cleanup: Cleanup,
}

impl std::ops::Deref for TestDatabase {
    type Target = str;

    fn deref(&self) -> &str {
        &self.url
    }
}

impl AsRef<str> for TestDatabase {
    fn as_ref(&self) -> &str {
        &self.url
    }
}

impl AsRef<std::ffi::OsStr> for TestDatabase {
    fn as_ref(&self) -> &std::ffi::OsStr {
        self.url.as_ref()
    }
}

impl std::fmt::Display for TestDatabase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.url)
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        match &self.cleanup {
            Cleanup::SqliteFile(path) => {
                for suffix in ["", "-wal", "-shm", "-journal"] {
                    let mut file = path.clone().into_os_string();
                    file.push(suffix);
                    let _ = std::fs::remove_file(file);
                }
            }
            Cleanup::PostgresSchema { base, schema } => drop_schema(base, schema),
        }
    }
}

/// Drops a test schema from a thread of its own with a runtime of its own:
/// `Drop` runs inside the test's runtime, which must not be blocked on. It
/// tries for about 30 seconds: while other tests (and other suites on the
/// same PostgreSQL) run, a connection may be refused for a moment (`too
/// many clients`), and a lock timeout keeps a connection that holds a lock
/// (a request cut off mid-transaction) from hanging the test. What is still
/// left is `scripts/test.sh`'s to remove, and its check reports it.
fn drop_schema(base: &str, schema: &str) {
    let base = base.to_owned();
    let statement = format!("DROP SCHEMA IF EXISTS {schema} CASCADE");
    let schema_name = schema.to_owned();
    let dropped = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        runtime.block_on(async {
            use sqlx::Connection;
            let mut last = String::new();
            let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
            while tokio::time::Instant::now() < deadline {
                let attempt = async {
                    let mut conn = sqlx::PgConnection::connect(&base).await?;
                    sqlx::query("SET lock_timeout = '5s'")
                        .execute(&mut conn)
                        .await?;
                    // The test is over: a connection of its own still open
                    // (a server cut off mid-transaction, a leaked pool) is
                    // ended first, so that it cannot hold the schema's locks.
                    sqlx::query(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                         WHERE application_name = $1 AND pid <> pg_backend_pid()",
                    )
                    .bind(&schema_name)
                    .execute(&mut conn)
                    .await?;
                    sqlx::query(&statement).execute(&mut conn).await?;
                    let _ = conn.close().await;
                    Ok::<(), sqlx::Error>(())
                };
                match attempt.await {
                    Ok(()) => return Ok(()),
                    Err(e) => last = e.to_string(),
                }
                tokio::time::sleep(std::time::Duration::from_millis(500)).await;
            }
            Err(last)
        })
    })
    .join();
    if let Ok(Err(why)) = dropped {
        // The test's output is captured: a note beside the test files says
        // why, and `scripts/test.sh`'s check shows it.
        eprintln!("could not drop the test schema {schema}: {why}");
        let _ = std::fs::write(
            std::env::temp_dir().join(format!("samtykke-test-schema-left-{schema}.txt")),
            format!("could not drop the test schema {schema}: {why}\n"),
        );
    }
}

/// A running server and what a test needs to talk to it.
pub struct TestApp {
    pub base: String,
    pub database_url: String,
    pub store: Arc<dyn Store>,
    pub sandbox: SandboxCredentials,
    pub http: reqwest::Client,
    pub clock: FixedClock,
    /// The operator listener (`/metrics`), when the configuration has one.
    pub admin_base: Option<String>,
    /// The delivery listener (`https://…`, pushUpdates), when it is on.
    pub delivery_base: Option<String>,
    _shutdown: tokio::sync::oneshot::Sender<()>,
    /// The database this app made (dropped last, after the server is told
    /// to stop).
    _database: Option<TestDatabase>,
}

pub fn serve_config(database_url: &str, sandbox: SandboxSetting) -> ServeConfig {
    ServeConfig {
        database_url: database_url.to_owned(),
        listen: "127.0.0.1:0".parse().expect("addr"),
        issuer: None,
        api_url: None,
        sandbox,
        access_token_ttl: time::Duration::hours(1),
        janitor_interval: None,
        upstream: None,
        connection_limits: samtykke_http::ConnectionLimits::DEFAULT,
        admin_listen: Some("127.0.0.1:0".parse().expect("addr")),
        metrics_on_public_listener: false,
        operator: Default::default(),
        sqlite_synchronous: None,
        delivery: None,
        creditors: samtykke::config::CreditorSettings {
            // No daily getalldata in tests unless a test asks for it.
            sync_at: None,
            ..Default::default()
        },
        creditor_lookup: Default::default(),
    }
}

/// Starts a sandbox server on 127.0.0.1:0 with a fresh database; the clock is
/// a [`FixedClock`] at the current time that tests may move.
pub async fn spawn_app(engine: Engine) -> Option<TestApp> {
    let database = fresh_database_url(engine).await?;
    let mut app = spawn_app_on(&database).await;
    app._database = Some(database);
    Some(app)
}

impl TestApp {
    /// Keeps `database` until the app is dropped (a test database dropped
    /// while its server runs is removed under it).
    pub fn owning(mut self, database: TestDatabase) -> Self {
        self._database = Some(database);
        self
    }
}

/// Starts another server on an existing database (as a second process would).
pub async fn spawn_app_on(database_url: &str) -> TestApp {
    spawn_app_configured(database_url, serve_config(database_url, SandboxSetting::On)).await
}

/// A free loopback address to listen on, for a test whose configuration
/// must name the port before the server starts (an issuer URL).
pub fn free_loopback_addr() -> std::net::SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
}

/// Starts a production-mode server (sandbox off, system clock) on
/// `database_url`; its address, and the sender that stops it.
pub async fn spawn_production_server(
    database_url: &str,
) -> (std::net::SocketAddr, tokio::sync::oneshot::Sender<()>) {
    let store = open_store(database_url).await.expect("open store");
    let app = Application::build_with(
        serve_config(database_url, SandboxSetting::Off),
        store,
        Arc::new(SystemClock),
    )
    .await
    .expect("build app");
    let addr = app.local_addr().expect("addr");
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(app.run_until(async {
        let _ = rx.await;
    }));
    (addr, tx)
}

/// Starts a sandbox server on an existing database with `config`.
pub async fn spawn_app_configured(database_url: &str, config: ServeConfig) -> TestApp {
    let clock = FixedClock::at(SystemClock.now());
    let store = open_store(database_url).await.expect("open store");
    let app = Application::build_with(config, store.clone(), Arc::new(clock.clone()))
        .await
        .expect("build app");
    let addr = app.local_addr().expect("addr");
    let admin_base = app.admin_addr().map(|a| format!("http://{a}"));
    let delivery_base = app.delivery_addr().map(|a| format!("https://{a}"));
    let sandbox = app
        .sandbox_credentials()
        .cloned()
        .expect("sandbox credentials");
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(app.run_until(async {
        let _ = rx.await;
    }));
    TestApp {
        base: format!("http://{addr}"),
        database_url: database_url.to_owned(),
        store,
        sandbox,
        http: reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("client"),
        clock,
        admin_base,
        delivery_base,
        _shutdown: tx,
        _database: None,
    }
}

impl TestApp {
    /// The test clock's time in Unix seconds.
    pub fn clock_now(&self) -> i64 {
        self.clock.now().unix_timestamp()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// A URL on the operator listener.
    pub fn admin_url(&self, path: &str) -> String {
        let admin = self.admin_base.as_deref().expect("an admin listener");
        format!("{admin}{path}")
    }

    pub fn audience(&self, path: &str) -> String {
        self.url(path)
    }

    /// A form POST with HTTP Basic client authentication.
    pub async fn post_form(
        &self,
        path: &str,
        (id, secret): (&str, &str),
        params: &[(&str, &str)],
    ) -> reqwest::Response {
        self.http
            .post(self.url(path))
            .basic_auth(id, Some(secret))
            .form(params)
            .send()
            .await
            .expect("request")
    }

    pub fn sandbox_auth(&self) -> (String, String) {
        (
            self.sandbox.client_id.to_string(),
            self.sandbox.client_secret.expose().to_owned(),
        )
    }

    /// A client-credentials token for the sandbox client.
    pub async fn sandbox_token(&self, audience_path: &str, scope: &str) -> String {
        let (id, secret) = self.sandbox_auth();
        let audience = self.audience(audience_path);
        let response = self
            .post_form(
                "/oauth2/token",
                (&id, &secret),
                &[
                    ("grant_type", "client_credentials"),
                    ("audience", &audience),
                    ("scope", scope),
                ],
            )
            .await;
        assert_eq!(response.status(), 200);
        let body: serde_json::Value = response.json().await.expect("json");
        body["access_token"].as_str().expect("token").to_owned()
    }

    /// `PUT /v1/consent/agreement` with a fresh `consent.create` token of the
    /// sandbox client.
    pub async fn register(&self, body: serde_json::Value) -> reqwest::Response {
        let token = self
            .sandbox_token("/v1/consent/agreement", "consent.create")
            .await;
        self.http
            .put(self.url("/v1/consent/agreement"))
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
            .expect("request")
    }

    /// Registers an agreement consent for the sandbox client; its id.
    pub async fn agreement_consent(&self, nin: &str, scope: &str, days: i64) -> String {
        let ccid = uuid::Uuid::new_v4().to_string();
        let response = self
            .register(serde_json::json!({"nin": nin, "scope_of_consent": scope, "consent_duration_days": days, "client_consent_id": ccid}))
            .await;
        assert_eq!(response.status(), 200);
        let body: serde_json::Value = response.json().await.expect("json");
        body["consent"]["id"].as_str().expect("id").to_owned()
    }

    /// A GET with a bearer token.
    pub async fn get_bearer(&self, path: &str, token: &str) -> reqwest::Response {
        self.http
            .get(self.url(path))
            .bearer_auth(token)
            .send()
            .await
            .expect("request")
    }

    /// Creates a client through the real `samtykke client create --json`.
    pub fn create_client(&self, args: &[&str]) -> (String, String) {
        let output = run_cli(
            &self.database_url,
            &[&["client", "create", "--json"], args].concat(),
        );
        assert!(
            output.status.success(),
            "client create failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let created: serde_json::Value =
            serde_json::from_slice(&output.stdout).expect("json output");
        (
            created["client_id"].as_str().expect("id").to_owned(),
            created["client_secret"]
                .as_str()
                .expect("secret")
                .to_owned(),
        )
    }
}

/// Runs the real `samtykke` binary against `database_url`.
pub fn run_cli(database_url: &str, args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_samtykke"))
        .args(args)
        .env("SAMTYKKE_DATABASE_URL", database_url)
        .env_remove("SAMTYKKE_CONFIG")
        .output()
        .expect("run samtykke")
}

/// Asserts an RFC 6749 §5.2 error response.
pub async fn assert_oauth_error(
    response: reqwest::Response,
    status: u16,
    code: &str,
) -> serde_json::Value {
    assert_eq!(response.status(), status, "status for {code}");
    assert_eq!(
        response
            .headers()
            .get("cache-control")
            .map(|v| v.to_str().unwrap()),
        Some("no-store")
    );
    if code == "invalid_client" {
        let challenge = response
            .headers()
            .get("www-authenticate")
            .expect("WWW-Authenticate");
        assert!(challenge.to_str().unwrap().starts_with("Basic"));
    }
    let body: serde_json::Value = response.json().await.expect("json error body");
    assert_eq!(body["error"], code, "body: {body}");
    assert!(body["error_description"].is_string(), "body: {body}");
    body
}

/// Defines one test per engine for each body: `mod name { sqlite, postgres }`.
macro_rules! engine_tests {
    ($(async fn $name:ident($app:ident) $body:block)*) => {
        $(
            mod $name {
                #[allow(unused_imports)]
                use super::*;

                #[tokio::test]
                async fn sqlite() {
                    if let Some($app) = $crate::helpers::spawn_app($crate::helpers::Engine::Sqlite).await $body
                }

                #[tokio::test]
                async fn postgres() {
                    if let Some($app) = $crate::helpers::spawn_app($crate::helpers::Engine::Postgres).await $body
                }
            }
        )*
    };
}

/// Like `engine_tests!` but the body gets a fresh database URL, no server.
macro_rules! engine_db_tests {
    ($(async fn $name:ident($url:ident) $body:block)*) => {
        $(
            mod $name {
                #[allow(unused_imports)]
                use super::*;

                #[tokio::test]
                async fn sqlite() {
                    if let Some($url) = $crate::helpers::fresh_database_url($crate::helpers::Engine::Sqlite).await $body
                }

                #[tokio::test]
                async fn postgres() {
                    if let Some($url) = $crate::helpers::fresh_database_url($crate::helpers::Engine::Postgres).await $body
                }
            }
        )*
    };
}

/// Stores an access token directly (as a grant would) and returns its value.
pub async fn insert_token(
    app: &TestApp,
    client_id: &str,
    audience: samtykke_core::domain::ApiAudience,
    scope: &str,
    consent_id: Option<&str>,
) -> String {
    use samtykke_core::token::{AccessToken, AccessTokenRecord};
    let token = AccessToken::generate();
    let now = app.clock.now();
    let record = AccessTokenRecord {
        hash: token.hash(),
        client_id: samtykke_core::domain::ClientId::parse(client_id).unwrap(),
        audience,
        scopes: samtykke_core::domain::ScopeSet::parse(scope).unwrap(),
        issued_at: now,
        expires_at: now + time::Duration::hours(1),
        revoked: false,
        consent_id: consent_id.map(|c| samtykke_core::consent::ConsentId::parse(c).unwrap()),
    };
    app.store.insert_access_token(&record).await.unwrap();
    token.expose().to_owned()
}

/// A browser as far as the pages care: a cookie jar, no automatic redirects.
pub fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .cookie_store(true)
        .build()
        .expect("client")
}

/// The `Location` of a 303 answer.
pub fn location(response: &reqwest::Response) -> String {
    assert_eq!(response.status(), 303, "expected 303 See Other");
    response.headers()["location"].to_str().unwrap().to_owned()
}

/// The query parameters of a URL.
pub fn query_of(url: &str) -> std::collections::HashMap<String, String> {
    url::Url::parse(url)
        .expect("absolute URL")
        .query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

/// The value of the hidden form field `name` in a page.
pub fn hidden(page: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let start = page
        .find(&marker)
        .unwrap_or_else(|| panic!("no field {name}"))
        + marker.len();
    page[start..start + page[start..].find('"').unwrap()].to_owned()
}

/// A page step: GET `url` in `browser`, returns (flow, csrf, body).
pub async fn open_page(browser: &reqwest::Client, url: &str) -> (String, String, String) {
    let response = browser.get(url).send().await.unwrap();
    assert_eq!(response.status(), 200, "GET {url}");
    let body = response.text().await.unwrap();
    (hidden(&body, "flow"), hidden(&body, "csrf"), body)
}

/// Drives the pages like a browser: the authorization URL, TestID with
/// `nin`, and the consent decision. Returns the final redirect (to the
/// client's redirect URI).
pub async fn run_flow(
    app: &TestApp,
    browser: &reqwest::Client,
    auth_url: &str,
    nin: &str,
    decision: &str,
) -> String {
    let start = browser.get(auth_url).send().await.unwrap();
    let mut next = location(&start);
    if next.contains("/oauth2/login") {
        next = location(&testid_login(app, browser, &next, nin).await);
    }
    assert!(
        next.contains("/oauth2/consent"),
        "expected the consent page, got {next}"
    );
    let (_, decided) = decide_on_consent_page(app, browser, &next, decision).await;
    location(&decided)
}

/// TestID: opens the login page at `login_url` and identifies as `nin`;
/// the answer (not followed).
pub async fn testid_login(
    app: &TestApp,
    browser: &reqwest::Client,
    login_url: &str,
    nin: &str,
) -> reqwest::Response {
    let (flow, csrf, _) = open_page(browser, login_url).await;
    browser
        .post(app.url("/oauth2/login"))
        .form(&[
            ("flow", flow.as_str()),
            ("csrf", csrf.as_str()),
            ("nin", nin),
            ("action", "login"),
        ])
        .send()
        .await
        .unwrap()
}

/// Opens the consent page at `consent_url` and posts `decision`; the
/// page's text and the answer (not followed).
pub async fn decide_on_consent_page(
    app: &TestApp,
    browser: &reqwest::Client,
    consent_url: &str,
    decision: &str,
) -> (String, reqwest::Response) {
    let (flow, csrf, page) = open_page(browser, consent_url).await;
    let decided = browser
        .post(app.url("/oauth2/consent"))
        .form(&[
            ("flow", flow.as_str()),
            ("csrf", csrf.as_str()),
            ("decision", decision),
        ])
        .send()
        .await
        .unwrap();
    (page, decided)
}

/// An authorization URL for the sandbox client.
pub fn auth_url(app: &TestApp, extra: &[(&str, &str)]) -> String {
    let mut params: Vec<(&str, &str)> = vec![
        ("client_id", app.sandbox.client_id.as_str()),
        ("response_type", "code"),
        ("scope", "debt.unsecured.presentation.100 openid"),
        ("state", "state-123"),
        ("redirect_uri", "http://127.0.0.1:9999/callback"),
    ];
    for (k, v) in extra {
        params.retain(|(name, _)| name != k);
        if !v.is_empty() {
            params.push((k, v));
        }
    }
    let query: String = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(params)
        .finish();
    app.url(&format!("/oauth2/auth?{query}"))
}

/// Redeems a code with the sandbox client.
pub async fn redeem(app: &TestApp, code: &str, extra: &[(&str, &str)]) -> reqwest::Response {
    let (id, secret) = app.sandbox_auth();
    let mut form: Vec<(&str, &str)> = vec![
        ("grant_type", "authorization_code"),
        ("code", code),
        ("redirect_uri", "http://127.0.0.1:9999/callback"),
    ];
    for (k, v) in extra {
        form.retain(|(name, _)| name != k);
        if !v.is_empty() {
            form.push((k, v));
        }
    }
    app.http
        .post(app.url("/oauth2/token"))
        .basic_auth(id, Some(secret))
        .form(&form)
        .send()
        .await
        .unwrap()
}

/// What a [`StubServer`] answers on a path.
#[derive(Clone)]
struct StubAnswer {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

#[derive(Default)]
struct StubState {
    answers: std::collections::HashMap<String, StubAnswer>,
    hits: std::collections::HashMap<String, usize>,
    posts: Vec<(String, Vec<(String, String)>)>,
}

/// A client's own web server on loopback, as far as Samtykke talks to it or
/// sends a browser there: it serves what the test sets per path (a JWK set,
/// a request object), counts the requests per path, and keeps every form
/// posted to it (a `form_post` response).
pub struct StubServer {
    pub base: String,
    state: Arc<std::sync::Mutex<StubState>>,
    _shutdown: tokio::sync::oneshot::Sender<()>,
}

impl StubServer {
    pub async fn start() -> Self {
        use axum::body::Bytes;
        use axum::extract::State;
        use axum::http::{Method, StatusCode, Uri};
        use axum::response::IntoResponse;

        async fn answer(
            State(state): State<Arc<std::sync::Mutex<StubState>>>,
            method: Method,
            uri: Uri,
            body: Bytes,
        ) -> axum::response::Response {
            let path = uri.path().to_owned();
            let mut s = state.lock().unwrap();
            *s.hits.entry(path.clone()).or_default() += 1;
            if method == Method::POST {
                let form = url::form_urlencoded::parse(&body)
                    .map(|(k, v)| (k.into_owned(), v.into_owned()))
                    .collect();
                s.posts.push((path.clone(), form));
            }
            match s.answers.get(&path).cloned() {
                Some(a) => {
                    let mut response =
                        (StatusCode::from_u16(a.status).unwrap(), a.body).into_response();
                    for (k, v) in a.headers {
                        response.headers_mut().insert(
                            axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                            v.parse().unwrap(),
                        );
                    }
                    response
                }
                None if method == Method::POST => (StatusCode::OK, "received").into_response(),
                None => StatusCode::NOT_FOUND.into_response(),
            }
        }

        let state = Arc::new(std::sync::Mutex::new(StubState::default()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let router = axum::Router::new()
            .fallback(answer)
            .with_state(Arc::clone(&state));
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            let _ = axum::serve(listener, router)
                .with_graceful_shutdown(async {
                    let _ = rx.await;
                })
                .await;
        });
        Self {
            base,
            state,
            _shutdown: tx,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// Answers GET `path` with `status` and `body`.
    pub fn serve(&self, path: &str, status: u16, body: &str) {
        self.serve_with(path, status, &[], body);
    }

    pub fn serve_with(&self, path: &str, status: u16, headers: &[(&str, &str)], body: &str) {
        self.state.lock().unwrap().answers.insert(
            path.to_owned(),
            StubAnswer {
                status,
                headers: headers
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                    .collect(),
                body: body.to_owned(),
            },
        );
    }

    /// How many requests reached `path`.
    pub fn hits(&self, path: &str) -> usize {
        self.state
            .lock()
            .unwrap()
            .hits
            .get(path)
            .copied()
            .unwrap_or(0)
    }

    /// Every form posted so far: (path, fields).
    pub fn posts(&self) -> Vec<(String, Vec<(String, String)>)> {
        self.state.lock().unwrap().posts.clone()
    }
}

/// The parameters of a URL's fragment.
pub fn fragment_of(url: &str) -> std::collections::HashMap<String, String> {
    let parsed = url::Url::parse(url).expect("absolute URL");
    url::form_urlencoded::parse(parsed.fragment().unwrap_or("").as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}
