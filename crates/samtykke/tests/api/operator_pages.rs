//! Who runs the service, on every page (issue 23 item 8): `serve
//! --operator-name --operator-logo --operator-privacy-url
//! --operator-contact` (also environment and TOML), the sandbox's
//! test-service defaults, production's neutral text and start-up warning,
//! and the errors of bad settings.

use samtykke::config::{OperatorInput, SandboxSetting};

use crate::helpers::{
    auth_url, browser, fresh_database_url, location, run_cli, serve_config, spawn_app_configured,
    testid_login, Engine, TestApp,
};
use crate::operations::ServerProcess;

const NAME: &str = "Eksempel Bank ASA";
const PRIVACY: &str = "https://eksempel.no/personvern";
const CONTACT: &str = "personvern@eksempel.no";
/// The smallest PNG: one transparent pixel.
const PNG: &[u8] = &[
    0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x48, 0x44, 0x52,
    0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x08, 0x06, 0x00, 0x00, 0x00, 0x1f, 0x15, 0xc4,
    0x89, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x44, 0x41, 0x54, 0x78, 0x9c, 0x63, 0x00, 0x01, 0x00, 0x00,
    0x05, 0x00, 0x01, 0x0d, 0x0a, 0x2d, 0xb4, 0x00, 0x00, 0x00, 0x00, 0x49, 0x45, 0x4e, 0x44, 0xae,
    0x42, 0x60, 0x82,
];

/// A file in the temporary directory, removed on drop.
pub(crate) struct TempFile(pub(crate) std::path::PathBuf);

impl TempFile {
    pub(crate) fn new(name: &str, bytes: &[u8]) -> Self {
        let path = std::env::temp_dir().join(format!(
            "samtykke-test-{}-{name}",
            uuid::Uuid::new_v4().simple()
        ));
        std::fs::write(&path, bytes).unwrap();
        Self(path)
    }

    pub(crate) fn path(&self) -> &str {
        self.0.to_str().unwrap()
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// The operator settings of the tests, with the logo file `logo`.
pub(crate) fn operator(logo: &TempFile) -> samtykke_http::operator::Operator {
    OperatorInput {
        name: Some(NAME.to_owned()),
        logo: Some(logo.path().to_owned()),
        privacy_url: Some(PRIVACY.to_owned()),
        contact: Some(CONTACT.to_owned()),
    }
    .resolve()
    .unwrap()
}

pub(crate) fn logo_file() -> TempFile {
    TempFile::new("logo.png", PNG)
}

/// A sandbox server whose operator is configured.
async fn spawn_with_operator(url: &str, logo: &TempFile) -> TestApp {
    let config = samtykke::config::ServeConfig {
        operator: operator(logo),
        ..serve_config(url, SandboxSetting::On)
    };
    spawn_app_configured(url, config).await
}

async fn page(client: &reqwest::Client, url: &str, status: u16) -> String {
    let response = client.get(url).send().await.unwrap();
    assert_eq!(response.status(), status, "GET {url}");
    response.text().await.unwrap()
}

/// The operator as the page in `lang` shows it.
fn assert_operator_shown(body: &str, lang: &str, what: &str) {
    assert!(
        body.contains(&format!("<html lang=\"{lang}\">")),
        "{what}: {body}"
    );
    assert!(
        body.contains(&format!("<span class=\"brand\">{NAME}</span>")),
        "{what}: {body}"
    );
    assert!(
        body.contains(&format!("href=\"{PRIVACY}\" class=\"privacy\"")),
        "{what}: {body}"
    );
    assert!(
        body.contains(&format!(
            "href=\"mailto:{CONTACT}\" class=\"contact\">{CONTACT}</a>"
        )),
        "{what}: {body}"
    );
    assert!(
        body.contains("/assets/operator-logo\" alt="),
        "{what}: {body}"
    );
    let (privacy, run_by) = if lang == "en" {
        ("Privacy statement", "This test service is run by")
    } else {
        ("Personvernerklæring", "Testtjenesten drives av")
    };
    assert!(body.contains(privacy), "{what}: {body}");
    assert!(body.contains(&format!("{run_by} {NAME}")), "{what}: {body}");
}

engine_db_tests! {
    async fn every_page_shows_the_configured_operator_in_both_languages(url) {
        let logo = logo_file();
        let app = spawn_with_operator(&url, &logo).await;
        let b = browser();

        // The logo is ours: served from our origin.
        let served = app.http.get(app.url("/assets/operator-logo")).send().await.unwrap();
        assert_eq!(served.status(), 200);
        assert_eq!(served.headers()["content-type"], "image/png");
        assert_eq!(served.bytes().await.unwrap().as_ref(), PNG);

        // The sandbox's pages (English).
        assert_operator_shown(&page(&b, &app.url("/"), 200).await, "en", "landing");
        assert_operator_shown(&page(&b, &app.url("/sandbox/callback?code=abc&state=s"), 200).await, "en", "callback");

        // The consent flow in both languages: login, a refused number, consent.
        for (lang, extra) in [("nb", vec![]), ("en", vec![("ui_locales", "en")])] {
            // A browser of its own: the login page again.
            let b = browser();
            let login = location(&b.get(auth_url(&app, &extra)).send().await.unwrap());
            let body = page(&b, &login, 200).await;
            assert_operator_shown(&body, lang, "login");
            let refused = testid_login(&app, &b, &login, "123").await;
            assert_eq!(refused.status(), 400);
            assert_operator_shown(&refused.text().await.unwrap(), lang, "login error");
            let consent = location(&testid_login(&app, &b, &login, "14842249091").await);
            assert_operator_shown(&page(&b, &consent, 200).await, lang, "consent");
            // An error page.
            let bad = auth_url(&app, &[("redirect_uri", "https://evil.example/cb"), extra.first().copied().unwrap_or(("x", ""))]);
            assert_operator_shown(&page(&b, &bad, 400).await, lang, "error page");
        }

        // The portal (logged in by a flow) and its logged-out pages.
        let login = location(&b.get(auth_url(&app, &[])).send().await.unwrap());
        let _ = location(&testid_login(&app, &b, &login, "14842249091").await);
        assert_operator_shown(&page(&b, &app.url("/min-side"), 200).await, "nb", "portal");
        assert_operator_shown(&page(&b, &app.url("/en/my-page"), 200).await, "en", "portal en");
        assert_operator_shown(&page(&b, &app.url("/min-side/logget-ut"), 200).await, "nb", "logged out");
        assert_operator_shown(&page(&b, &app.url("/en/my-page/logged-out"), 200).await, "en", "logged out en");
    }
}

engine_tests! {
    async fn a_sandbox_without_operator_settings_says_it_is_a_test_service(app) {
        let landing = app.http.get(app.url("/")).send().await.unwrap().text().await.unwrap();
        assert!(landing.contains("<span class=\"test-service\">test service</span>"), "{landing}");
        assert!(landing.contains("This is a test service for developers, not a real service."), "{landing}");
        let b = browser();
        let login = location(&b.get(auth_url(&app, &[])).send().await.unwrap());
        let body = b.get(&login).send().await.unwrap().text().await.unwrap();
        assert!(body.contains("<span class=\"test-service\">testtjeneste</span>"), "{body}");
        assert!(body.contains("Dette er en testtjeneste for utviklere, ikke en ekte tjeneste."), "{body}");
        assert!(!body.contains("class=\"privacy\""), "{body}");
        assert_eq!(app.http.get(app.url("/assets/operator-logo")).send().await.unwrap().status(), 404);
    }
}

#[tokio::test]
async fn production_without_operator_settings_is_neutral_and_an_external_logo_is_allowed_by_the_csp(
) {
    let url = fresh_database_url(Engine::Sqlite).await.unwrap();
    let (addr, _stop) = crate::helpers::spawn_production_server(&url).await;
    let base = format!("http://{addr}");
    let http = reqwest::Client::new();
    let body = http
        .get(format!("{base}/min-side/logget-ut"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        body.contains("<span class=\"brand\">Samtykke</span>"),
        "{body}"
    );
    assert!(
        body.contains("Samtykketjeneste for deling av gjeldsopplysninger."),
        "{body}"
    );
    assert!(
        !body.contains("test-service") && !body.contains("testtjeneste"),
        "{body}"
    );

    // An https:// logo: the browser may load it, and nothing else foreign.
    let other = fresh_database_url(Engine::Sqlite).await.unwrap();
    let config = samtykke::config::ServeConfig {
        operator: OperatorInput {
            name: Some(NAME.to_owned()),
            logo: Some("https://cdn.eksempel.no/logo.svg".to_owned()),
            ..OperatorInput::default()
        }
        .resolve()
        .unwrap(),
        ..serve_config(&other, SandboxSetting::On)
    };
    let app = spawn_app_configured(&other, config).await;
    let landing = app.http.get(app.url("/")).send().await.unwrap();
    let csp = landing.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        csp.contains("img-src 'self' https://cdn.eksempel.no;"),
        "{csp}"
    );
    let body = landing.text().await.unwrap();
    assert!(
        body.contains("src=\"https://cdn.eksempel.no/logo.svg\""),
        "{body}"
    );
    assert_eq!(
        app.http
            .get(app.url("/assets/operator-logo"))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
}

#[tokio::test]
async fn production_start_up_warns_without_operator_settings() {
    let url = fresh_database_url(Engine::Sqlite).await.unwrap();
    let production = ServerProcess::start(&url, &["--production"], &[]);
    assert!(
        production.stdout.contains(
            "WARNING: the pages do not say who runs this service: set --operator-name, --operator-privacy-url, --operator-contact"
        ),
        "{}",
        production.stdout
    );
    production.terminate();
    let logo = logo_file();
    let named = ServerProcess::start(
        &url,
        &[
            "--production",
            "--operator-name",
            NAME,
            "--operator-logo",
            logo.path(),
            "--operator-privacy-url",
            PRIVACY,
        ],
        &[("SAMTYKKE_OPERATOR_CONTACT", CONTACT)],
    );
    assert!(
        !named.stdout.contains("who runs this service"),
        "{}",
        named.stdout
    );
    let body = reqwest::get(format!("{}/min-side/logget-ut", named.base))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        body.contains("Tjenesten drives av Eksempel Bank ASA."),
        "{body}"
    );
    assert!(body.contains(&format!("mailto:{CONTACT}")), "{body}");
    named.terminate();
    let sandbox = ServerProcess::start(&url, &[], &[]);
    assert!(
        !sandbox.stdout.contains("who runs this service"),
        "{}",
        sandbox.stdout
    );
    sandbox.terminate();
}

#[test]
fn bad_operator_settings_are_refused_with_the_setting_named() {
    let logo = logo_file();
    let bmp = TempFile::new("logo.bmp", b"BM");
    let big = TempFile::new("big.png", &vec![0u8; 600 * 1024]);
    let long_name = "x".repeat(101);
    // (flags, environment, what the error says)
    type Case<'a> = (Vec<&'a str>, Vec<(&'a str, &'a str)>, &'a str);
    let cases: Vec<Case> = vec![
        (
            vec!["--operator-contact", "not an address"],
            vec![],
            "operator-contact must be an email address or an https:// URL",
        ),
        (
            vec![],
            vec![("SAMTYKKE_OPERATOR_CONTACT", "ftp://eksempel.no")],
            "operator-contact must be an email address or an https:// URL",
        ),
        (
            vec!["--operator-privacy-url", "http://eksempel.no/personvern"],
            vec![],
            "operator-privacy-url must be an https:// URL",
        ),
        (
            vec!["--operator-privacy-url", "personvern"],
            vec![],
            "operator-privacy-url is not a URL",
        ),
        (
            vec!["--operator-logo", "/no/such/logo.png"],
            vec![],
            "could not read operator-logo /no/such/logo.png",
        ),
        (
            vec!["--operator-logo", bmp.path()],
            vec![],
            "operator-logo must be an https:// URL or a .png, .svg, .jpg, .webp or .gif file",
        ),
        (
            vec!["--operator-logo", big.path()],
            vec![],
            "at most 524288 are served",
        ),
        (
            vec!["--operator-name", &long_name],
            vec![],
            "operator-name must be at most 100 characters",
        ),
    ];
    for (args, env, expected) in cases {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_samtykke"))
            .args(["serve", "--listen", "127.0.0.1:0", "--admin-listen", "off"])
            .args(&args)
            .envs(env.iter().copied())
            .env("SAMTYKKE_DATABASE_URL", "sqlite::memory:")
            .env_remove("SAMTYKKE_CONFIG")
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} {env:?}");
        assert!(err.contains(expected), "{args:?} {env:?}: {err}");
    }

    // The same keys in the TOML file.
    let toml = TempFile::new(
        "operator.toml",
        format!(
            "operator_name = \"{NAME}\"\noperator_logo = \"{}\"\noperator_privacy_url = \"http://eksempel.no\"\n",
            logo.path()
        )
        .as_bytes(),
    );
    let out = run_cli(
        "sqlite::memory:",
        &[
            "--config",
            toml.path(),
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "off",
        ],
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr)
        .contains("operator-privacy-url must be an https:// URL"));
}
