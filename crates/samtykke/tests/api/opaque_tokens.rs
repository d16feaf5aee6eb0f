//! Access tokens are opaque (issue 19 item 12): both grants issue `sc2.`
//! tokens, whose claims are encrypted and authenticated (AES-256-GCM-SIV)
//! under a key that rotates; nothing of them is readable, and they work at
//! the APIs, introspection and revocation as before, across a key rotation
//! and across processes. `sc1.` tokens issued before the upgrade keep
//! working for the rest of their lifetime.

use base64::engine::general_purpose::{STANDARD_NO_PAD, URL_SAFE_NO_PAD};
use base64::Engine;
use sha2::Digest;

use crate::helpers::{
    auth_url, browser, query_of, redeem, run_cli, run_flow, spawn_app_on, TestApp,
};

const NIN: &str = "14842249091";

/// Every byte string a reader could get out of `token`: its text, and the
/// base64 decoding (either alphabet) of every part of it.
fn readable_forms(token: &str) -> Vec<Vec<u8>> {
    let mut forms = vec![token.as_bytes().to_vec()];
    for part in token.split('.') {
        for start in 0..part.len() {
            for end in (start + 2..=part.len()).rev().take(4) {
                for engine in [URL_SAFE_NO_PAD, STANDARD_NO_PAD] {
                    if let Ok(bytes) = engine.decode(&part[start..end]) {
                        forms.push(bytes);
                    }
                }
            }
        }
    }
    forms
}

/// The first of `hidden` that `token` shows (as text, or as the 16 bytes
/// or the 32 hex digits of a UUID), or "JSON" if it holds JSON.
fn shows(token: &str, hidden: &[&str]) -> Option<String> {
    let mut needles: Vec<Vec<u8>> = Vec::new();
    for value in hidden {
        needles.push(value.as_bytes().to_vec());
        if let Ok(uuid) = uuid::Uuid::parse_str(value) {
            needles.push(uuid.as_bytes().to_vec());
            needles.push(uuid.simple().to_string().into_bytes());
        }
    }
    for form in readable_forms(token) {
        for needle in &needles {
            if form.windows(needle.len()).any(|w| w == needle.as_slice()) {
                return Some(String::from_utf8_lossy(needle).into_owned());
            }
        }
        // (Short forms are left out: two random bytes can be `{}`.)
        let json = serde_json::from_slice::<serde_json::Value>(&form);
        if form.len() >= 16 && json.is_ok_and(|v| v.is_object() || v.is_array()) {
            return Some("JSON".to_owned());
        }
    }
    None
}

/// Asserts that `token` is an `sc2.` token that shows none of `hidden`
/// and holds no JSON.
fn assert_opaque(token: &str, hidden: &[&str]) {
    assert!(token.starts_with("sc2."), "an sc2 token: {token}");
    assert_eq!(shows(token, hidden), None, "{token}");
}

/// The number of the key a token is sealed under: the low byte of it is
/// the token's first byte (the key id, the only thing in clear).
fn key_id(token: &str) -> u8 {
    URL_SAFE_NO_PAD.decode(&token[4..]).unwrap()[0]
}

async fn introspect(app: &TestApp, token: &str) -> serde_json::Value {
    let (id, secret) = app.sandbox_auth();
    let response = app
        .post_form("/oauth2/introspect", (&id, &secret), &[("token", token)])
        .await;
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

async fn revoke(app: &TestApp, token: &str) {
    let (id, secret) = app.sandbox_auth();
    let response = app
        .post_form("/oauth2/revoke", (&id, &secret), &[("token", token)])
        .await;
    assert_eq!(response.status(), 200);
}

/// The debt API's status for a token: 200 when it works. (A refused token
/// is 401 or 403, depending on the version of the API's error answers.)
async fn debt_status(app: &TestApp, path: &str, token: &str) -> u16 {
    app.get_bearer(path, token).await.status().as_u16()
}

fn assert_refused(status: u16) {
    assert!(status == 401 || status == 403, "refused, got {status}");
}

/// An authorization-code token of the sandbox client (100-day consent,
/// with `openid`), and the consent id from its ID token.
async fn code_token(app: &TestApp) -> (String, String) {
    let done = run_flow(app, &browser(), &auth_url(app, &[]), NIN, "accept").await;
    let code = query_of(&done)["code"].clone();
    let response = redeem(app, &code, &[]).await;
    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await.unwrap();
    let id_token = body["id_token"].as_str().unwrap();
    let claims: serde_json::Value = serde_json::from_slice(
        &URL_SAFE_NO_PAD
            .decode(id_token.split('.').nth(1).unwrap())
            .unwrap(),
    )
    .unwrap();
    (
        body["access_token"].as_str().unwrap().to_owned(),
        claims["consent_id"].as_str().unwrap().to_owned(),
    )
}

/// A client-credentials token for the debt API, and an agreement consent
/// to read with it.
async fn debt_token(app: &TestApp) -> (String, String) {
    let consent = app
        .agreement_consent(NIN, "debt.unsecured.presentation", 30)
        .await;
    (
        app.sandbox_token("/v1/debt", "debt.unsecured.presentation")
            .await,
        consent,
    )
}

engine_tests! {
    async fn client_credentials_and_code_tokens_are_opaque_and_work_as_before(app) {
        let client_id = app.sandbox.client_id.to_string();
        let (cc, consent) = debt_token(&app).await;
        assert_opaque(&cc, &[&client_id, "debt.unsecured.presentation", &app.audience("/v1/debt"), "/v1/debt"]);
        let agreement = app.sandbox_token("/v1/consent/agreement", "consent.create").await;
        assert_opaque(&agreement, &[&client_id, "consent.create", "consent_agreement"]);
        let (code_token, code_consent) = code_token(&app).await;
        assert_opaque(&code_token, &[&client_id, &code_consent, "debt.unsecured.presentation", "openid"]);
        assert!(cc.len() < 150 && code_token.len() < 150, "compact: {} and {}", cc.len(), code_token.len());

        assert_eq!(debt_status(&app, &format!("/v1/debt/{consent}"), &cc).await, 200);
        assert_eq!(debt_status(&app, "/v1/debt", &code_token).await, 200);

        // Introspection reports everything it did.
        let now = app.clock_now();
        let info = introspect(&app, &cc).await;
        assert_eq!(
            info,
            serde_json::json!({
                "active": true, "scope": "debt.unsecured.presentation", "client_id": client_id,
                "sub": client_id, "token_type": "bearer", "aud": app.audience("/v1/debt"),
                "iss": app.base, "iat": now, "exp": now + 3600,
            })
        );
        let info = introspect(&app, &code_token).await;
        assert_eq!(info["active"], true);
        assert_eq!(info["scope"], "debt.unsecured.presentation openid");
        assert_eq!(info["client_id"], client_id.as_str());
        assert_eq!(info["aud"], app.audience("/v1/debt"));
        assert_eq!(info["iat"], now);

        // Revocation: recorded under the token's SHA-256, as before.
        for token in [&cc, &code_token] {
            let hash: [u8; 32] = sha2::Sha256::digest(token.as_bytes()).into();
            let hash = samtykke_core::token::TokenHash::from_array(hash);
            assert!(app.store.find_access_token(&hash).await.unwrap().is_none(), "issuing stores nothing");
            revoke(&app, token).await;
            let row = app.store.find_access_token(&hash).await.unwrap().expect("a revocation row under the SHA-256");
            assert!(row.revoked);
            assert_eq!(introspect(&app, token).await, serde_json::json!({"active": false}));
        }
        assert_refused(debt_status(&app, &format!("/v1/debt/{consent}"), &cc).await);
        assert_refused(debt_status(&app, "/v1/debt", &code_token).await);
    }

    async fn tokens_outlive_a_key_rotation_in_every_process(app) {
        let (cc, consent) = debt_token(&app).await;
        let (code, _) = code_token(&app).await;
        assert_eq!((key_id(&cc), key_id(&code)), (1, 1), "the first key");

        let output = run_cli(&app.database_url, &["keys", "rotate", "--only", "access-token"]);
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        assert_eq!(String::from_utf8_lossy(&output.stdout), "new active access-token key 2\n");
        // A running process seals with the keys it has read, for a minute.
        assert_eq!(key_id(&app.sandbox_token("/v1/debt", "debt.unsecured.presentation").await), 1);

        // A process started after the rotation seals with the new key and
        // opens the tokens of the previous one.
        let other = spawn_app_on(&app.database_url).await;
        let (new_cc, _) = debt_token(&other).await;
        let (new_code, _) = code_token(&other).await;
        assert_eq!((key_id(&new_cc), key_id(&new_code)), (2, 2));
        let debt = format!("/v1/debt/{consent}");
        for server in [&app, &other] {
            // The first process meets a key it has not read yet: it reads
            // the keys again (at most once a second).
            server.clock.advance(time::Duration::seconds(2));
            for (path, token) in [(debt.as_str(), &cc), (debt.as_str(), &new_cc), ("/v1/debt", &code), ("/v1/debt", &new_code)] {
                assert_eq!(debt_status(server, path, token).await, 200, "{path} at {}", server.base);
                assert_eq!(introspect(server, token).await["active"], true);
            }
        }
        assert_eq!(key_id(&app.sandbox_token("/v1/debt", "debt.unsecured.presentation").await), 2, "read again");

        // A revocation counts in every process, whatever the key.
        revoke(&other, &cc).await;
        revoke(&app, &new_code).await;
        for server in [&app, &other] {
            assert_refused(debt_status(server, &debt, &cc).await);
            assert_refused(debt_status(server, "/v1/debt", &new_code).await);
            assert_eq!(introspect(server, &new_code).await["active"], false);
        }

        // `keys rotate` rotates both keys. A process reads the keys again
        // every minute: then it seals with the new key, and the first key
        // is retired: its tokens no longer open; the previous key's still do.
        let output = run_cli(&app.database_url, &["keys", "rotate"]);
        assert!(output.status.success());
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(stdout.contains("new active signing key ") && stdout.contains("new active access-token key 3"), "{stdout}");
        assert_eq!(debt_status(&other, "/v1/debt", &code).await, 200, "until the keys are read again");
        other.clock.advance(time::Duration::seconds(60));
        assert_eq!(key_id(&other.sandbox_token("/v1/debt", "debt.unsecured.presentation").await), 3);
        assert_refused(debt_status(&other, "/v1/debt", &code).await);
        assert_eq!(introspect(&other, &code).await, serde_json::json!({"active": false}));
        assert_eq!(debt_status(&other, &debt, &new_cc).await, 200);

        let list = String::from_utf8(run_cli(&app.database_url, &["keys", "list", "--access-token"]).stdout).unwrap();
        let statuses: Vec<&str> = list.lines().skip(1).map(|l| l.split_whitespace().nth(1).unwrap()).collect();
        assert_eq!(statuses, ["active", "previous", "retired"], "{list}");
    }

    async fn sc1_tokens_issued_before_the_upgrade_work_until_they_expire(app) {
        // The database of an earlier version: its MAC key, and an sc1 token
        // made as that version made them.
        let legacy_key = b"the earlier version's access_token_key".to_vec();
        app.store.server_secret("access_token_key", &legacy_key).await.unwrap();
        let upgraded = spawn_app_on(&app.database_url).await;
        let consent = upgraded.agreement_consent(NIN, "debt.unsecured.presentation", 30).await;
        let client_id = app.sandbox.client_id.to_string();
        let now = upgraded.clock_now();
        let sc1 = |exp: i64, key: &[u8]| {
            use hmac::Mac;
            let claims = serde_json::json!({"c": client_id, "a": "debt", "s": "debt.unsecured.presentation", "iat": now, "exp": exp, "g": 0, "j": "AAAAAAAAAAAAAAAAAAAAAA"});
            let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims).unwrap());
            let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(key).unwrap();
            mac.update(format!("sc1.{payload}").as_bytes());
            format!("sc1.{payload}.{}", URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes()))
        };
        let token = sc1(now + 3600, &legacy_key);
        assert_eq!(shows(&token, &[&client_id]).as_deref(), Some(client_id.as_str()), "what the check would find");
        let path = format!("/v1/debt/{consent}");
        assert_eq!(debt_status(&upgraded, &path, &token).await, 200);
        let info = introspect(&upgraded, &token).await;
        assert_eq!((info["active"].as_bool(), info["exp"].as_i64()), (Some(true), Some(now + 3600)));
        for bad in [sc1(now + 3600, b"another key"), sc1(now - 1, &legacy_key)] {
            assert_refused(debt_status(&upgraded, &path, &bad).await);
            assert_eq!(introspect(&upgraded, &bad).await["active"], false);
        }
        // New tokens are sc2 all the same; and the sc1 token revokes.
        assert!(upgraded.sandbox_token("/v1/debt", "debt.unsecured.presentation").await.starts_with("sc2."));
        revoke(&upgraded, &token).await;
        assert_refused(debt_status(&upgraded, &path, &token).await);
        assert_eq!(introspect(&upgraded, &token).await["active"], false);
    }
}
