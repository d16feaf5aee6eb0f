//! Health, shutdown, logs, configuration and several processes on one database.

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};

use crate::helpers::{fresh_database_url, spawn_app_on, Engine};

/// The real binary, started as an operator would.
pub(crate) struct ServerProcess {
    child: Child,
    pub(crate) base: String,
    pub(crate) stdout: String,
    /// Reads standard error while the server runs: a verbose log must not
    /// fill the pipe and block the server's writes (it would never exit).
    stderr: std::thread::JoinHandle<String>,
}

impl ServerProcess {
    pub(crate) fn start(database_url: &str, args: &[&str], envs: &[(&str, &str)]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_samtykke"))
            .arg("serve")
            .args(["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"])
            .args(args)
            .env("SAMTYKKE_DATABASE_URL", database_url)
            .env_remove("SAMTYKKE_SQLITE_SYNCHRONOUS")
            .envs(envs.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start samtykke serve");
        // Standard error is read from the start: a verbose log (the
        // migrations at trace level alone exceed a pipe's 64 KiB) must never
        // block the server's writes, before the banner or after it.
        let mut pipe = child.stderr.take().unwrap();
        let stderr = std::thread::spawn(move || {
            let mut err = String::new();
            let _ = pipe.read_to_string(&mut err);
            err
        });
        let mut reader = BufReader::new(child.stdout.take().unwrap());
        let mut stdout = String::new();
        let mut base = None;
        // The banner ends with either the curl hint or the production line.
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap() == 0 {
                let _ = child.wait();
                let err = stderr.join().unwrap_or_default();
                panic!("server exited early: {stdout}\n{err}");
            }
            stdout.push_str(&line);
            if let Some(rest) = line.strip_prefix("Samtykke listening on ") {
                base = Some(rest.trim().to_owned());
            }
            if line.starts_with("  curl ") || line.starts_with("production mode") {
                break;
            }
        }
        // Whatever the server prints later is drained too.
        std::thread::spawn(move || std::io::copy(&mut reader, &mut std::io::sink()));
        Self {
            child,
            base: base.expect("listening line"),
            stdout,
            stderr,
        }
    }

    fn banner_value(&self, key: &str) -> Option<String> {
        self.stdout.lines().find_map(|l| {
            let mut cols = l.split_whitespace();
            (cols.next() == Some(key)).then(|| cols.next().unwrap_or("").to_owned())
        })
    }

    /// SIGTERM, then the exit status and everything logged.
    pub(crate) fn terminate(mut self) -> (std::process::ExitStatus, String) {
        let pid = self.child.id().to_string();
        assert!(Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success());
        let status = self.child.wait().unwrap();
        (status, self.stderr.join().unwrap())
    }
}

async fn token(http: &reqwest::Client, base: &str, id: &str, secret: &str) -> reqwest::Response {
    http.post(format!("{base}/oauth2/token"))
        .basic_auth(id, Some(secret))
        .form(&[
            ("grant_type", "client_credentials"),
            ("audience", &format!("{base}/v1/debt")),
            (
                "scope",
                "debt.unsecured.presentation debt.unsecured.processing",
            ),
        ])
        .send()
        .await
        .unwrap()
}

engine_tests! {
    async fn health_and_readiness_answer(app) {
        let health = app.http.get(app.url("/healthz")).send().await.unwrap();
        assert_eq!(health.status(), 200);
        let ready = app.http.get(app.url("/readyz")).send().await.unwrap();
        assert_eq!(ready.status(), 200);
        assert_eq!(ready.json::<serde_json::Value>().await.unwrap()["status"], "ready");
        let missing = app.http.get(app.url("/nope")).send().await.unwrap();
        assert_eq!(missing.status(), 404);
    }
}

engine_db_tests! {
    async fn the_binary_prints_what_a_newcomer_needs_stops_on_sigterm_and_logs_no_secret(url) {
        let server = ServerProcess::start(&url, &[], &[("SAMTYKKE_LOG", "trace")]);
        assert!(server.stdout.contains("SANDBOX MODE"));
        assert_eq!(server.banner_value("issuer").as_deref(), Some(server.base.as_str()));
        let id = server.banner_value("client_id").expect("client id printed");
        let secret = server.banner_value("client_secret").expect("client secret printed");
        let http = reqwest::Client::new();
        let response = token(&http, &server.base, &id, &secret).await;
        assert_eq!(response.status(), 200);
        let body: serde_json::Value = response.json().await.unwrap();
        let access_token = body["access_token"].as_str().unwrap().to_owned();
        let introspected = http.post(format!("{}/oauth2/introspect", server.base))
            .basic_auth(&id, Some(&secret)).form(&[("token", access_token.as_str())]).send().await.unwrap();
        assert_eq!(introspected.status(), 200);
        let revoked = http.post(format!("{}/oauth2/revoke", server.base))
            .basic_auth(&id, Some(&secret)).form(&[("token", access_token.as_str())]).send().await.unwrap();
        assert_eq!(revoked.status(), 200);
        assert_eq!(token(&http, &server.base, &id, "wrong").await.status(), 401);

        // A whole authorization-code flow, to see that none of its secrets
        // (cookie, CSRF token, code, tokens, the number) reach the log.
        let b = crate::helpers::browser();
        let auth = format!(
            "{}/oauth2/auth?client_id={id}&response_type=code&scope=debt.unsecured.presentation%20openid&state=st&nonce=nn&redirect_uri=http%3A%2F%2F127.0.0.1%3A9%2Fcallback",
            server.base
        );
        let start = b.get(&auth).send().await.unwrap();
        let cookie = start.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().split_once('=').unwrap().1.to_owned();
        let (flow, csrf, _) = crate::helpers::open_page(&b, &crate::helpers::location(&start)).await;
        let login = b.post(format!("{}/oauth2/login", server.base)).form(&[("flow", flow.as_str()), ("csrf", csrf.as_str()), ("nin", "29868099311"), ("action", "login")]).send().await.unwrap();
        let (flow, csrf2, _) = crate::helpers::open_page(&b, &crate::helpers::location(&login)).await;
        let accepted = b.post(format!("{}/oauth2/consent", server.base)).form(&[("flow", flow.as_str()), ("csrf", csrf2.as_str()), ("decision", "accept")]).send().await.unwrap();
        let code = crate::helpers::query_of(&crate::helpers::location(&accepted))["code"].clone();
        let exchanged: serde_json::Value = http.post(format!("{}/oauth2/token", server.base)).basic_auth(&id, Some(&secret))
            .form(&[("grant_type", "authorization_code"), ("code", code.as_str()), ("redirect_uri", "http://127.0.0.1:9/callback")])
            .send().await.unwrap().json().await.unwrap();
        let code_token = exchanged["access_token"].as_str().unwrap().to_owned();
        let id_token = exchanged["id_token"].as_str().unwrap().to_owned();
        assert_eq!(http.get(format!("{}/v1/debt", server.base)).bearer_auth(&code_token).send().await.unwrap().status(), 200);

        let (status, logs) = server.terminate();
        assert!(status.success(), "graceful exit on SIGTERM: {status:?}\n{logs}");
        assert!(logs.contains("shutting down"), "{logs}");
        assert!(logs.contains("samtykke stopped"), "{logs}");
        assert!(logs.contains("access token issued"), "the trace level log saw the requests: {logs}");
        assert!(logs.contains("authorization code redeemed"), "{logs}");
        for secret_value in [secret.as_str(), access_token.as_str(), cookie.as_str(), csrf.as_str(), csrf2.as_str(), flow.as_str(), code.as_str(), code_token.as_str(), id_token.as_str(), "29868099311"] {
            assert!(!logs.contains(secret_value), "a secret, token or identity number reached the log: {secret_value}");
        }
        assert!(!logs.to_lowercase().contains("authorization: basic"));
    }

    async fn the_binary_exits_promptly_after_it_logs_that_it_stopped(url) {
        // Issue 23: the process must exit right after "samtykke stopped",
        // not seconds later; with requests served and a keep-alive
        // connection still open when SIGTERM arrives.
        let server = ServerProcess::start(&url, &[], &[]);
        let id = server.banner_value("client_id").expect("client id printed");
        let secret = server.banner_value("client_secret").expect("client secret printed");
        let http = reqwest::Client::new();
        for _ in 0..3 {
            assert_eq!(token(&http, &server.base, &id, &secret).await.status(), 200);
        }
        let ServerProcess { mut child, stderr, .. } = server;
        let pid = child.id().to_string();
        let signalled = std::time::Instant::now();
        assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
        let waited = tokio::time::timeout(
            std::time::Duration::from_secs(10),
            tokio::task::spawn_blocking(move || {
                let status = child.wait().unwrap();
                let took = signalled.elapsed();
                (status, stderr.join().unwrap(), took)
            }),
        )
        .await;
        let Ok(joined) = waited else {
            let _ = Command::new("kill").args(["-KILL", &pid]).status();
            panic!("still running 10 s after SIGTERM");
        };
        let (status, logs, took) = joined.unwrap();
        assert!(status.success(), "{status:?}\n{logs}");
        assert!(logs.contains("samtykke stopped"), "{logs}");
        assert!(took < std::time::Duration::from_secs(1), "exited {took:?} after SIGTERM\n{logs}");
        drop(http);
    }

    async fn a_restart_keeps_the_sandbox_client_and_the_signing_key(url) {
        let first = ServerProcess::start(&url, &[], &[]);
        let id = first.banner_value("client_id").unwrap();
        let secret = first.banner_value("client_secret").unwrap();
        let jwks: serde_json::Value = reqwest::get(format!("{}/.well-known/jwks.json", first.base)).await.unwrap().json().await.unwrap();
        let (status, logs) = first.terminate();
        assert!(status.success(), "{status:?}\n{logs}");
        let second = ServerProcess::start(&url, &[], &[]);
        assert_eq!(second.banner_value("client_id").unwrap(), id);
        assert_eq!(second.banner_value("client_secret").unwrap(), secret);
        let again: serde_json::Value = reqwest::get(format!("{}/.well-known/jwks.json", second.base)).await.unwrap().json().await.unwrap();
        assert_eq!(again, jwks);
        assert_eq!(token(&reqwest::Client::new(), &second.base, &id, &secret).await.status(), 200);
        second.terminate();
    }

    async fn production_mode_prints_no_sandbox_client_and_disables_a_leftover_one(url) {
        let sandbox = ServerProcess::start(&url, &[], &[]);
        let id = sandbox.banner_value("client_id").unwrap();
        let secret = sandbox.banner_value("client_secret").unwrap();
        sandbox.terminate();
        let production = ServerProcess::start(&url, &["--production"], &[]);
        assert!(!production.stdout.contains("client_secret"));
        assert!(production.stdout.contains("production mode"));
        let response = token(&reqwest::Client::new(), &production.base, &id, &secret).await;
        assert_eq!(response.status(), 401);
        production.terminate();
    }

    async fn flags_beat_environment_which_beats_the_config_file(url) {
        // Removed when the test ends, also when it fails.
        let file = crate::operator_pages::TempFile::new("samtykke.toml", b"access_token_ttl = 600\nlog_format = \"json\"\n");
        let config = file.path();
        for (args, env, expected) in [
            (vec!["--config", config], vec![], 599),
            (vec!["--config", config], vec![("SAMTYKKE_ACCESS_TOKEN_TTL", "900")], 899),
            (vec!["--config", config, "--access-token-ttl", "1200"], vec![("SAMTYKKE_ACCESS_TOKEN_TTL", "900")], 1199),
        ] {
            let server = ServerProcess::start(&url, &args, &env);
            let id = server.banner_value("client_id").unwrap();
            let secret = server.banner_value("client_secret").unwrap();
            let body: serde_json::Value = token(&reqwest::Client::new(), &server.base, &id, &secret).await.json().await.unwrap();
            assert_eq!(body["expires_in"], expected, "{args:?} {env:?}");
            let (_, logs) = server.terminate();
            let first = logs.lines().next().unwrap_or("");
            assert!(serde_json::from_str::<serde_json::Value>(first).is_ok(), "json logs from the file: {first}");
        }
    }

    async fn two_servers_on_one_database_behave_as_one(url) {
        // Started together on an empty database: one key, one sandbox client.
        let (a, b) = tokio::join!(spawn_app_on(&url), spawn_app_on(&url));
        assert_eq!(a.sandbox, b.sandbox);
        assert_eq!(a.store.list_signing_keys().await.unwrap().len(), 1);
        assert_eq!(a.store.list_clients().await.unwrap().len(), 1);
        let (id, secret) = a.sandbox_auth();
        let token = a.sandbox_token("/v1/debt", "debt.unsecured.presentation").await;
        let seen_by_b: serde_json::Value = b.post_form("/oauth2/introspect", (&id, &secret), &[("token", &token)]).await.json().await.unwrap();
        assert_eq!(seen_by_b["active"], true);
        assert_eq!(b.post_form("/oauth2/revoke", (&id, &secret), &[("token", &token)]).await.status(), 200);
        let seen_by_a: serde_json::Value = a.post_form("/oauth2/introspect", (&id, &secret), &[("token", &token)]).await.json().await.unwrap();
        assert_eq!(seen_by_a["active"], false);
        let jwks_a = a.http.get(a.url("/.well-known/jwks.json")).send().await.unwrap().text().await.unwrap();
        let jwks_b = b.http.get(b.url("/.well-known/jwks.json")).send().await.unwrap().text().await.unwrap();
        assert_eq!(jwks_a, jwks_b);
    }
}

#[tokio::test]
async fn contradictory_modes_are_refused_at_start() {
    let url = fresh_database_url(Engine::Sqlite).await.unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_samtykke"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--production",
            "--sandbox",
        ])
        .env("SAMTYKKE_DATABASE_URL", &url)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("contradict"));
}

#[tokio::test]
async fn sandbox_is_off_by_default_when_the_issuer_is_https() {
    let url = fresh_database_url(Engine::Sqlite).await.unwrap();
    let server = ServerProcess::start(&url, &["--issuer", "https://access.example.no"], &[]);
    assert!(server.stdout.contains("production mode"));
    assert!(!server.stdout.contains("client_secret"));
    let meta: serde_json::Value = reqwest::get(format!(
        "{}/.well-known/oauth-authorization-server",
        server.base
    ))
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    assert_eq!(meta["issuer"], "https://access.example.no");
    assert_eq!(
        meta["token_endpoint"],
        "https://access.example.no/oauth2/token"
    );
    server.terminate();
}

#[tokio::test]
async fn a_wrong_method_is_answered_with_json_405() {
    let app = crate::helpers::spawn_app(Engine::Sqlite).await.unwrap();
    let response = app
        .http
        .get(app.url("/oauth2/revoke"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 405);
    assert_eq!(response.headers()["allow"], "POST");
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["error"], "method_not_allowed");
}

/// SECURITY.md (d)5, power loss (issue 22 §7): production mode commits to
/// SQLite with `synchronous=FULL`, sandbox mode with `NORMAL`, and
/// `--sqlite-synchronous` (flag, environment, file) overrides either. The
/// banner shows what SQLite's writer connection answers to `PRAGMA
/// synchronous`, read back after it was set.
#[tokio::test]
async fn sqlite_synchronous_is_full_in_production_normal_in_sandbox_and_configurable() {
    let url = fresh_database_url(Engine::Sqlite).await.unwrap();
    let dir = std::env::temp_dir().join(format!("samtykke-sync-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("samtykke.toml");
    std::fs::write(&file, "sqlite_synchronous = \"full\"\n").unwrap();
    let config = file.to_str().unwrap();
    // (flags, environment, the mode expected, what the case shows)
    type Case<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)], &'a str, &'a str);
    let cases: [Case; 7] = [
        (&["--production"], &[], "FULL", "production default"),
        (&[], &[], "NORMAL", "sandbox default"),
        (
            &["--production", "--sqlite-synchronous", "normal"],
            &[],
            "NORMAL",
            "flag",
        ),
        (
            &["--sqlite-synchronous", "FULL"],
            &[],
            "FULL",
            "flag, any case",
        ),
        (
            &["--production"],
            &[("SAMTYKKE_SQLITE_SYNCHRONOUS", "normal")],
            "NORMAL",
            "environment",
        ),
        (&["--config", config], &[], "FULL", "file"),
        (
            &["--config", config, "--sqlite-synchronous", "normal"],
            &[("SAMTYKKE_SQLITE_SYNCHRONOUS", "full")],
            "NORMAL",
            "the flag beats the environment and the file",
        ),
    ];
    for (args, envs, expected, case) in cases {
        let server = ServerProcess::start(&url, args, envs);
        assert_eq!(
            server.banner_value("synchronous").as_deref(),
            Some(expected),
            "{case}: {}",
            server.stdout
        );
        let (status, logs) = server.terminate();
        assert!(status.success(), "{case}: {logs}");
        assert!(
            logs.contains(&format!("sqlite_synchronous=\"{expected}\""))
                || logs.contains(&format!("sqlite_synchronous={expected}")),
            "{case}: the start-up log names the mode: {logs}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn an_unknown_sqlite_synchronous_value_is_refused_at_start() {
    let url = fresh_database_url(Engine::Sqlite).await.unwrap();
    for (args, envs) in [
        (vec!["--sqlite-synchronous", "off"], vec![]),
        (vec![], vec![("SAMTYKKE_SQLITE_SYNCHRONOUS", "extra")]),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_samtykke"))
            .args(["serve", "--listen", "127.0.0.1:0", "--admin-listen", "off"])
            .args(&args)
            .env("SAMTYKKE_DATABASE_URL", &url)
            .env_remove("SAMTYKKE_CONFIG")
            .envs(envs)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("--sqlite-synchronous") && stderr.contains("full"),
            "{stderr}"
        );
    }
}

#[tokio::test]
async fn postgres_has_no_sqlite_synchronous_line() {
    let Some(url) = fresh_database_url(Engine::Postgres).await else {
        return;
    };
    let server = ServerProcess::start(
        &url,
        &["--production", "--sqlite-synchronous", "normal"],
        &[],
    );
    assert_eq!(
        server.banner_value("synchronous"),
        None,
        "{}",
        server.stdout
    );
    let (status, logs) = server.terminate();
    assert!(status.success(), "{logs}");
}
