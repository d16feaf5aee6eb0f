//! `kill -9` under load (issue 5 §3, SECURITY.md (d)5): whatever the server
//! acknowledged — consents, revocations, tokens, usage records, issued codes
//! — exists after a restart, and nothing revoked works again.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The real binary; standard error is discarded so that a busy log can
/// never block it.
struct Server {
    child: Child,
    base: String,
    id: String,
    secret: String,
}

fn start(database_url: &str) -> Server {
    let mut child = Command::new(env!("CARGO_BIN_EXE_samtykke"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "off",
            "--sandbox",
        ])
        .env("SAMTYKKE_DATABASE_URL", database_url)
        .env_remove("SAMTYKKE_CONFIG")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start samtykke serve");
    let mut reader = BufReader::new(child.stdout.take().unwrap());
    let (mut base, mut id, mut secret) = (None, None, None);
    loop {
        let mut line = String::new();
        assert!(
            reader.read_line(&mut line).unwrap() > 0,
            "server exited early"
        );
        if let Some(rest) = line.strip_prefix("Samtykke listening on ") {
            base = Some(rest.trim().to_owned());
        }
        let mut cols = line.split_whitespace();
        match (cols.next(), cols.next()) {
            (Some("client_id"), Some(v)) => id = Some(v.to_owned()),
            (Some("client_secret"), Some(v)) => secret = Some(v.to_owned()),
            _ => {}
        }
        if line.starts_with("  curl ") {
            break;
        }
    }
    Server {
        child,
        base: base.unwrap(),
        id: id.unwrap(),
        secret: secret.unwrap(),
    }
}

async fn token(http: &reqwest::Client, s: &Server, audience: &str, scope: &str) -> String {
    let body: serde_json::Value = http
        .post(format!("{}/oauth2/token", s.base))
        .basic_auth(&s.id, Some(&s.secret))
        .form(&[
            ("grant_type", "client_credentials"),
            ("audience", &format!("{}{audience}", s.base)),
            ("scope", scope),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    body["access_token"].as_str().unwrap().to_owned()
}

/// What the server acknowledged before it was killed.
#[derive(Default)]
struct Acknowledged {
    consents: Vec<String>,
    revoked: Vec<String>,
    tokens: Vec<String>,
    revoked_tokens: Vec<String>,
    lookups: Vec<(String, String)>,
}

engine_db_tests! {
    async fn everything_acknowledged_survives_kill_9_under_load(url) {
        let http = reqwest::Client::builder().timeout(Duration::from_secs(5)).build().unwrap();
        let server = start(&url);
        let create = token(&http, &server, "/v1/consent/agreement", "consent.create").await;
        let debt = token(&http, &server, "/v1/debt", "debt.unsecured.presentation").await;
        let acked = Arc::new(Mutex::new(Acknowledged::default()));

        // A code issued (and acknowledged by the redirect) before the crash.
        let b = crate::helpers::browser();
        let auth = format!(
            "{}/oauth2/auth?client_id={}&response_type=code&scope=debt.unsecured.presentation.30&state=s&redirect_uri=http%3A%2F%2F127.0.0.1%3A9%2Fcallback",
            server.base, server.id
        );
        let start_flow = b.get(&auth).send().await.unwrap();
        let (flow, csrf, _) = crate::helpers::open_page(&b, &crate::helpers::location(&start_flow)).await;
        let login = b.post(format!("{}/oauth2/login", server.base)).form(&[("flow", flow.as_str()), ("csrf", csrf.as_str()), ("nin", "14842249091"), ("action", "login")]).send().await.unwrap();
        let (flow, csrf, _) = crate::helpers::open_page(&b, &crate::helpers::location(&login)).await;
        let accepted = b.post(format!("{}/oauth2/consent", server.base)).form(&[("flow", flow.as_str()), ("csrf", csrf.as_str()), ("decision", "accept")]).send().await.unwrap();
        let code = crate::helpers::query_of(&crate::helpers::location(&accepted))["code"].clone();

        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut workers = Vec::new();
        for worker in 0..8 {
            let (http, base, id, secret) = (http.clone(), server.base.clone(), server.id.clone(), server.secret.clone());
            let (create, debt, acked, stop) = (create.clone(), debt.clone(), acked.clone(), stop.clone());
            workers.push(tokio::spawn(async move {
                let mut n = 0u32;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    n += 1;
                    let ccid = format!("w{worker}-{n}");
                    let Ok(r) = http.put(format!("{base}/v1/consent/agreement")).bearer_auth(&create)
                        .json(&serde_json::json!({"nin": "14842249091", "scope_of_consent": "debt.unsecured.presentation", "consent_duration_days": 30, "client_consent_id": ccid}))
                        .send().await else { break };
                    if r.status() != 200 { break; }
                    let Ok(body) = r.json::<serde_json::Value>().await else { break };
                    let consent = body["consent"]["id"].as_str().unwrap().to_owned();
                    acked.lock().unwrap().consents.push(consent.clone());
                    let trace = format!("trace-{worker}-{n}");
                    if let Ok(r) = http.get(format!("{base}/v1/debt/{consent}")).bearer_auth(&debt).header("X-Trace-ID", &trace).send().await {
                        if r.status() == 200 && r.bytes().await.is_ok() {
                            acked.lock().unwrap().lookups.push((consent.clone(), trace));
                        }
                    }
                    if n.is_multiple_of(3) {
                        if let Ok(r) = http.delete(format!("{base}/v1/debt/{consent}")).bearer_auth(&debt).send().await {
                            if r.status() == 204 {
                                acked.lock().unwrap().revoked.push(consent.clone());
                            }
                        }
                    }
                    if let Ok(r) = http.post(format!("{base}/oauth2/token")).basic_auth(&id, Some(&secret))
                        .form(&[("grant_type", "client_credentials"), ("audience", &format!("{base}/v1/debt")), ("scope", "debt.unsecured.presentation")])
                        .send().await {
                        if r.status() == 200 {
                            if let Ok(body) = r.json::<serde_json::Value>().await {
                                let token = body["access_token"].as_str().unwrap().to_owned();
                                if n.is_multiple_of(2) {
                                    // Every other token is revoked; only an answered revocation counts.
                                    if let Ok(r) = http.post(format!("{base}/oauth2/revoke")).basic_auth(&id, Some(&secret))
                                        .form(&[("token", token.as_str())]).send().await {
                                        if r.status() == 200 {
                                            acked.lock().unwrap().revoked_tokens.push(token);
                                        }
                                    }
                                } else {
                                    acked.lock().unwrap().tokens.push(token);
                                }
                            }
                        }
                    }
                }
            }));
        }
        tokio::time::sleep(Duration::from_millis(700)).await;
        let mut server = server;
        server.child.kill().expect("kill -9");
        server.child.wait().unwrap();
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for w in workers {
            w.await.unwrap();
        }
        let acked = std::mem::take(&mut *acked.lock().unwrap());
        eprintln!("kill -9 after {} consents, {} revocations, {} lookups, {} tokens, {} token revocations acknowledged", acked.consents.len(), acked.revoked.len(), acked.lookups.len(), acked.tokens.len(), acked.revoked_tokens.len());
        assert!(!acked.revoked_tokens.is_empty(), "token revocations ran before the kill");
        assert!(acked.consents.len() >= 8, "the load ran before the kill: {}", acked.consents.len());

        let restarted = start(&url);
        assert_eq!(restarted.id, server.id, "the sandbox client survives");
        let store = samtykke::storage::open_store(&url).await.unwrap();
        let debt = token(&http, &restarted, "/v1/debt", "debt.unsecured.presentation").await;
        for consent in &acked.consents {
            let status: serde_json::Value = http.get(format!("{}/v1/debt/{consent}/status", restarted.base)).bearer_auth(&debt).send().await.unwrap().json().await.unwrap();
            let revoked = acked.revoked.contains(consent);
            if revoked {
                assert_eq!(status["active"], false, "revoked {consent} stays revoked");
                let r = http.get(format!("{}/v1/debt/{consent}", restarted.base)).bearer_auth(&debt).send().await.unwrap();
                assert_eq!(r.status(), 403);
            } else {
                assert!(status["active"].is_boolean(), "acknowledged consent {consent} exists: {status}");
            }
        }
        for (consent, trace) in &acked.lookups {
            let id = samtykke_core::consent::ConsentId::parse(consent).unwrap();
            let usage = store.consent_usage(&id).await.unwrap();
            assert!(usage.iter().any(|u| &u.trace_id == trace), "usage record {trace} survives");
        }
        let introspect = |token: String| {
            let (http, base, id, secret) = (http.clone(), restarted.base.clone(), restarted.id.clone(), restarted.secret.clone());
            async move {
                let r = http.post(format!("{base}/oauth2/introspect")).basic_auth(&id, Some(&secret)).form(&[("token", token.as_str())]).send().await.unwrap();
                assert_eq!(r.status(), 200);
                r.json::<serde_json::Value>().await.unwrap()["active"].as_bool().unwrap()
            }
        };
        for issued in &acked.tokens {
            assert!(introspect(issued.clone()).await, "an acknowledged token still works");
        }
        for revoked in &acked.revoked_tokens {
            assert!(!introspect(revoked.clone()).await, "an acknowledged token revocation survives");
        }
        // The code issued before the crash is still redeemable, once.
        let redeemed = http.post(format!("{}/oauth2/token", restarted.base)).basic_auth(&restarted.id, Some(&restarted.secret))
            .form(&[("grant_type", "authorization_code"), ("code", code.as_str()), ("redirect_uri", "http://127.0.0.1:9/callback")])
            .send().await.unwrap();
        assert_eq!(redeemed.status(), 200);
        let mut restarted = restarted;
        let _ = restarted.child.kill();
        let _ = restarted.child.wait();
    }
}
