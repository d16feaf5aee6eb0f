//! Request objects (RFC 9101, OpenID Connect Core §6): signed by a key the
//! client registered (inline or at its `jwks_uri`), or unsigned where the
//! client is registered for it; by value (`request`) or fetched from a
//! `request_uri` registered for the client. The object's values are the
//! request; every failure has its RFC 9101 §7 code.

use std::collections::HashMap;

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use samtykke_core::keys::SigningKey;
use serde_json::{json, Value};

use crate::helpers::{
    browser, decide_on_consent_page, location, query_of, run_cli, testid_login, StubServer, TestApp,
};

const NIN: &str = "14842249091";
const CALLBACK: &str = "http://127.0.0.1:9999/callback";
const OTHER: &str = "http://127.0.0.1:9999/other";

fn rsa_key() -> SigningKey {
    SigningKey::generate(time::OffsetDateTime::UNIX_EPOCH).unwrap()
}

/// A JWK set of the public halves of `keys`.
fn jwks(keys: &[&SigningKey]) -> String {
    let keys: Vec<Value> = keys
        .iter()
        .map(|k| serde_json::to_value(k.public_jwk().unwrap()).unwrap())
        .collect();
    json!({ "keys": keys }).to_string()
}

/// `claims` signed RS256 by `key` (its `kid` in the header when `kid`).
fn sign(key: &SigningKey, claims: &Value, kid: bool) -> String {
    let mut header = Header::new(Algorithm::RS256);
    if kid {
        header.kid = Some(key.kid.clone());
    }
    jsonwebtoken::encode(
        &header,
        claims,
        &EncodingKey::from_rsa_pem(key.private_key_pem.as_bytes()).unwrap(),
    )
    .unwrap()
}

/// `claims` as an unsigned (`alg=none`) JWT.
fn unsigned(claims: &Value) -> String {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(br#"{"alg":"none"}"#),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    )
}

/// A request object's claims for `client_id`, with `changes` applied
/// (`Value::Null` removes a claim).
fn claims(app: &TestApp, client_id: &str, changes: &[(&str, Value)]) -> Value {
    let mut c = json!({
        "iss": client_id,
        "aud": app.base,
        "client_id": client_id,
        "response_type": "code",
        "scope": "debt.unsecured.presentation.30 openid",
        "state": "object-state",
        "nonce": "object-nonce",
        "redirect_uri": OTHER,
        "exp": app.clock_now() + 300,
    });
    for (k, v) in changes {
        match v {
            Value::Null => {
                c.as_object_mut().unwrap().remove(*k);
            }
            v => c[*k] = v.clone(),
        }
    }
    c
}

/// An authorization URL with exactly these query parameters.
fn url(app: &TestApp, params: &[(&str, &str)]) -> String {
    let query: String = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(params)
        .finish();
    app.url(&format!("/oauth2/auth?{query}"))
}

/// The query a client sends with a request object: its own values for
/// the OAuth parameters, which the object's must override.
fn with_object<'a>(client_id: &'a str, name: &'a str, value: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("client_id", client_id),
        ("response_type", "code"),
        ("scope", "debt.unsecured.processing"),
        ("state", "query-state"),
        ("redirect_uri", CALLBACK),
        ("response_mode", "fragment"),
        (name, value),
    ]
}

/// A client for the code flow with both callbacks and `args`.
fn jar_client(app: &TestApp, args: &[&str]) -> (String, String) {
    app.create_client(
        &[
            &[
                "--name",
                "JAR Bank",
                "--org",
                "923609016",
                "--purpose",
                "presentation",
                "--redirect-uri",
                CALLBACK,
                "--redirect-uri",
                OTHER,
            ],
            args,
        ]
        .concat(),
    )
}

/// Drives the pages from `auth_url` and accepts; returns the consent
/// page's text and where the browser is sent at the end.
async fn accept(app: &TestApp, auth_url: &str) -> (String, String) {
    let b = browser();
    let start = b.get(auth_url).send().await.unwrap();
    let login_url = location(&start);
    assert!(login_url.contains("/oauth2/login"), "{login_url}");
    let login = testid_login(app, &b, &login_url, NIN).await;
    let (page, decided) = decide_on_consent_page(app, &b, &location(&login), "accept").await;
    (page, location(&decided))
}

/// Redeems `code` as the client `(id, secret)`.
async fn redeem_as(
    app: &TestApp,
    (id, secret): &(String, String),
    code: &str,
    redirect_uri: &str,
) -> Value {
    let response = app
        .http
        .post(app.url("/oauth2/token"))
        .basic_auth(id, Some(secret))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", redirect_uri),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

fn id_token_claims(jwt: &str) -> Value {
    use base64::Engine;
    let part = jwt.split('.').nth(1).unwrap();
    serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(part)
            .unwrap(),
    )
    .unwrap()
}

/// The error response of a refused request: sent to the query's redirect
/// URI (the object's is not trusted) with the query's `state`, in the
/// query's response mode (`fragment` in [`with_object`]).
async fn refused(app: &TestApp, auth_url: &str) -> HashMap<String, String> {
    let to = location(&browser().get(auth_url).send().await.unwrap());
    assert!(to.starts_with(&format!("{CALLBACK}#")), "{to}");
    let params = crate::helpers::fragment_of(&to);
    assert_eq!(params["state"], "query-state", "{to}");
    assert_eq!(params["iss"], app.base);
    assert!(!params.contains_key("code"));
    params
}

async fn error_page(auth_url: &str) {
    let response = browser().get(auth_url).send().await.unwrap();
    assert_eq!(response.status(), 400);
    assert!(
        response.headers().get("location").is_none(),
        "never a redirect"
    );
}

engine_tests! {
    async fn a_signed_request_object_is_the_request_and_overrides_the_query(app) {
        let key = rsa_key();
        let client = jar_client(&app, &["--jwks", &jwks(&[&key])]);
        let id = client.0.as_str();
        let jwt = sign(&key, &claims(&app, id, &[("response_mode", Value::Null)]), true);
        let (consent_page, done) = accept(&app, &url(&app, &with_object(id, "request", &jwt))).await;
        assert!(consent_page.contains("30 dager"), "the object's scope: {consent_page}");
        // The object's redirect URI, state and (default) response mode, not
        // the query's.
        assert!(done.starts_with(&format!("{OTHER}?")), "{done}");
        let params = query_of(&done);
        assert_eq!(params["state"], "object-state");
        assert_eq!(params["scope"], "debt.unsecured.presentation");
        let tokens = redeem_as(&app, &client, &params["code"], OTHER).await;
        assert_eq!(id_token_claims(tokens["id_token"].as_str().unwrap())["nonce"], "object-nonce");

        // Without a kid the client's keys are tried; only client_id and the
        // object are needed in the query (RFC 9101 §5).
        let jwt = sign(&key, &claims(&app, id, &[("response_mode", json!("fragment"))]), false);
        let (_, done) = accept(&app, &url(&app, &[("client_id", id), ("request", &jwt)])).await;
        assert!(done.starts_with(&format!("{OTHER}#")), "the object's response mode: {done}");
        assert_eq!(crate::helpers::fragment_of(&done)["state"], "object-state");
    }

    async fn an_es256_request_object_verifies_with_the_clients_p256_key(app) {
        use base64::engine::general_purpose::URL_SAFE_NO_PAD;
        use base64::Engine;
        use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng).unwrap();
        let point = pair.public_key().as_ref();
        let set = json!({"keys": [{"kty": "EC", "crv": "P-256", "kid": "ec-1", "use": "sig",
            "x": URL_SAFE_NO_PAD.encode(&point[1..33]), "y": URL_SAFE_NO_PAD.encode(&point[33..65])}]});
        let (id, _) = jar_client(&app, &["--jwks", &set.to_string()]);
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some("ec-1".into());
        let jwt = jsonwebtoken::encode(&header, &claims(&app, &id, &[]), &EncodingKey::from_ec_der(pkcs8.as_ref())).unwrap();
        let (_, done) = accept(&app, &url(&app, &with_object(&id, "request", &jwt))).await;
        assert_eq!(query_of(&done)["state"], "object-state");
        // An RS256 object of another key under the EC key's kid is refused.
        let mut forged = Header::new(Algorithm::RS256);
        forged.kid = Some("ec-1".into());
        let key = rsa_key();
        let jwt = jsonwebtoken::encode(&forged, &claims(&app, &id, &[]), &EncodingKey::from_rsa_pem(key.private_key_pem.as_bytes()).unwrap()).unwrap();
        assert_eq!(refused(&app, &url(&app, &with_object(&id, "request", &jwt))).await["error"], "invalid_request_object");
    }

    async fn keys_at_the_jwks_uri_are_fetched_cached_and_fetched_again_for_a_new_kid(app) {
        let server = StubServer::start().await;
        let first = rsa_key();
        let second = rsa_key();
        server.serve("/jwks.json", 200, &jwks(&[&first]));
        let (id, _) = jar_client(&app, &["--jwks-uri", &server.url("/jwks.json")]);
        let go = |key: &SigningKey| url(&app, &with_object(&id, "request", &sign(key, &claims(&app, &id, &[]), true)));

        let started = browser().get(go(&first)).send().await.unwrap();
        assert!(location(&started).contains("/oauth2/login"));
        browser().get(go(&first)).send().await.unwrap();
        assert_eq!(server.hits("/jwks.json"), 1, "the set is cached");

        // The client adds a key. Right after the last fetch, an unknown kid
        // does not make the server fetch again...
        server.serve("/jwks.json", 200, &jwks(&[&first, &second]));
        let params = refused(&app, &go(&second)).await;
        assert_eq!(params["error"], "invalid_request_object");
        assert_eq!(server.hits("/jwks.json"), 1);
        // ...a little later it does, once, and the new key verifies.
        app.clock.advance(time::Duration::seconds(11));
        let started = browser().get(go(&second)).send().await.unwrap();
        assert!(location(&started).contains("/oauth2/login"));
        assert_eq!(server.hits("/jwks.json"), 2);
        // A kid the fresh set lacks is refused without another fetch.
        let params = refused(&app, &go(&rsa_key())).await;
        assert_eq!(params["error"], "invalid_request_object");
        assert_eq!(server.hits("/jwks.json"), 2);

        // A jwks_uri that fails: invalid_request_object.
        let broken = StubServer::start().await;
        let (broken_id, _) = jar_client(&app, &["--jwks-uri", &broken.url("/jwks.json")]);
        let jwt = sign(&first, &claims(&app, &broken_id, &[]), true);
        let params = refused(&app, &url(&app, &with_object(&broken_id, "request", &jwt))).await;
        assert_eq!(params["error"], "invalid_request_object");
        assert_eq!(broken.hits("/jwks.json"), 1);
        // A failed fetch is not tried again at once, and then it is.
        broken.serve("/jwks.json", 200, &jwks(&[&first]));
        let params = refused(&app, &url(&app, &with_object(&broken_id, "request", &jwt))).await;
        assert_eq!(params["error"], "invalid_request_object");
        assert_eq!(broken.hits("/jwks.json"), 1);
        app.clock.advance(time::Duration::seconds(11));
        let jwt = sign(&first, &claims(&app, &broken_id, &[]), true);
        let started = browser().get(url(&app, &with_object(&broken_id, "request", &jwt))).send().await.unwrap();
        assert!(location(&started).contains("/oauth2/login"));
        assert_eq!(broken.hits("/jwks.json"), 2);
    }

    async fn a_registered_request_uri_is_fetched_and_its_object_is_the_request(app) {
        let server = StubServer::start().await;
        let key = rsa_key();
        let request_uri = server.url("/requests/1.jwt");
        let client = jar_client(&app, &["--jwks", &jwks(&[&key]), "--request-uri", &request_uri]);
        let id = client.0.as_str();
        server.serve_with("/requests/1.jwt", 200, &[("content-type", "application/oauth-authz-req+jwt")], &sign(&key, &claims(&app, id, &[]), true));
        let (_, done) = accept(&app, &url(&app, &[("client_id", id), ("request_uri", &request_uri)])).await;
        let params = query_of(&done);
        assert!(done.starts_with(OTHER), "{done}");
        assert_eq!(params["state"], "object-state");
        assert_eq!(server.hits("/requests/1.jwt"), 1);
        redeem_as(&app, &client, &params["code"], OTHER).await;
    }

    async fn request_object_failures_answer_with_the_rfc_9101_codes(app) {
        let server = StubServer::start().await;
        let key = rsa_key();
        let stranger = rsa_key();
        let registered = server.url("/r.jwt");
        let (id, _) = jar_client(&app, &[
            "--jwks", &jwks(&[&key]),
            "--request-uri", &registered,
            "--request-uri", &server.url("/garbage"),
            "--request-uri", &server.url("/missing"),
            "--request-uri", &server.url("/moved"),
            "--request-uri", &server.url("/huge"),
        ]);
        let id = id.as_str();
        let by_value = |jwt: &str| url(&app, &with_object(id, "request", jwt));
        let code = |params: HashMap<String, String>| params["error"].clone();

        // Signature and claims: invalid_request_object.
        let cases: Vec<(&str, String)> = vec![
            ("another key", sign(&stranger, &claims(&app, id, &[]), false)),
            ("tampered", {
                let jwt = sign(&key, &claims(&app, id, &[]), true);
                let mut parts: Vec<String> = jwt.split('.').map(str::to_owned).collect();
                let other = sign(&key, &claims(&app, id, &[("scope", json!("debt.unsecured.presentation.365"))]), true);
                parts[1] = other.split('.').nth(1).unwrap().to_owned();
                parts.join(".")
            }),
            ("wrong aud", sign(&key, &claims(&app, id, &[("aud", json!("https://other.example"))]), true)),
            ("no aud", sign(&key, &claims(&app, id, &[("aud", Value::Null)]), true)),
            ("expired", sign(&key, &claims(&app, id, &[("exp", json!(app.clock_now() - 1))]), true)),
            ("another client_id", sign(&key, &claims(&app, id, &[("client_id", json!("someone-else"))]), true)),
            ("no client_id", sign(&key, &claims(&app, id, &[("client_id", Value::Null)]), true)),
            ("iss not the client", sign(&key, &claims(&app, id, &[("iss", json!("someone-else"))]), true)),
            ("unsigned", unsigned(&claims(&app, id, &[]))),
            ("nested request_uri", sign(&key, &claims(&app, id, &[("request_uri", json!(registered))]), true)),
            ("not a JWT", "hello".to_owned()),
        ];
        for (what, jwt) in cases {
            assert_eq!(code(refused(&app, &by_value(&jwt)).await), "invalid_request_object", "{what}");
        }

        // request_uri: registered exactly, fetched, or invalid_request_uri.
        for unregistered in [server.url("/other.jwt"), format!("{registered}?x=1"), format!("{registered}/"), "http://169.254.169.254/latest/meta-data/".to_owned()] {
            let params = refused(&app, &url(&app, &with_object(id, "request_uri", &unregistered))).await;
            assert_eq!(code(params), "invalid_request_uri", "{unregistered}");
        }
        assert_eq!(server.hits("/other.jwt"), 0, "an unregistered URI is never fetched");
        server.serve("/garbage", 200, "<html>not a request object</html>");
        assert_eq!(code(refused(&app, &url(&app, &with_object(id, "request_uri", &server.url("/garbage")))).await), "invalid_request_object");
        assert_eq!(code(refused(&app, &url(&app, &with_object(id, "request_uri", &server.url("/missing")))).await), "invalid_request_uri");
        server.serve_with("/moved", 302, &[("location", &registered)], "");
        server.serve("/r.jwt", 200, &sign(&key, &claims(&app, id, &[]), true));
        assert_eq!(code(refused(&app, &url(&app, &with_object(id, "request_uri", &server.url("/moved")))).await), "invalid_request_uri");
        assert_eq!(server.hits("/r.jwt"), 0, "redirects are not followed");
        server.serve("/huge", 200, &format!("{}.{}.x", "a".repeat(40_000), "b".repeat(40_000)));
        assert_eq!(code(refused(&app, &url(&app, &with_object(id, "request_uri", &server.url("/huge")))).await), "invalid_request_uri");

        // Both at once.
        let mut both = with_object(id, "request_uri", &registered);
        let jwt = sign(&key, &claims(&app, id, &[]), true);
        both.push(("request", &jwt));
        assert_eq!(code(refused(&app, &url(&app, &both)).await), "invalid_request");
        assert_eq!(server.hits("/r.jwt"), 0);

        // A client registered for none of it.
        let sandbox = app.sandbox.client_id.to_string();
        assert_eq!(code(refused(&app, &url(&app, &with_object(&sandbox, "request", &jwt))).await), "request_not_supported");
        assert_eq!(code(refused(&app, &url(&app, &with_object(&sandbox, "request_uri", &registered))).await), "request_uri_not_supported");

        // The object's redirect URI must be registered too; and without a
        // registered redirect URI in the query an error cannot be sent.
        error_page(&by_value(&sign(&key, &claims(&app, id, &[("redirect_uri", json!("https://evil.example/cb"))]), true))).await;
        error_page(&url(&app, &[("client_id", id), ("request", &sign(&stranger, &claims(&app, id, &[]), true))])).await;
        error_page(&url(&app, &[("client_id", id), ("redirect_uri", "https://evil.example/cb"), ("request", "x.y.z")])).await;
        error_page(&url(&app, &[("client_id", "nobody"), ("request", &jwt)])).await;
    }

    async fn unsigned_request_objects_are_accepted_only_from_clients_registered_for_them(app) {
        let key = rsa_key();
        let (signing, _) = jar_client(&app, &["--jwks", &jwks(&[&key])]);
        let (open, _) = jar_client(&app, &["--allow-unsigned-request-objects"]);
        let params = refused(&app, &url(&app, &with_object(&signing, "request", &unsigned(&claims(&app, &signing, &[]))))).await;
        assert_eq!(params["error"], "invalid_request_object");

        let jwt = unsigned(&claims(&app, &open, &[("aud", Value::Null), ("iss", Value::Null)]));
        let (_, done) = accept(&app, &url(&app, &with_object(&open, "request", &jwt))).await;
        assert_eq!(query_of(&done)["state"], "object-state");
        // Unsigned objects still carry the right client_id; a signed one
        // cannot be verified without keys.
        let other = unsigned(&claims(&app, "someone-else", &[]));
        assert_eq!(refused(&app, &url(&app, &with_object(&open, "request", &other))).await["error"], "invalid_request_object");
        let signed = sign(&key, &claims(&app, &open, &[]), true);
        assert_eq!(refused(&app, &url(&app, &with_object(&open, "request", &signed))).await["error"], "invalid_request_object");
    }

    async fn client_create_checks_what_it_registers_for_request_objects(app) {
        let key = rsa_key();
        let create = |extra: &[&str]| {
            run_cli(&app.database_url, &[&["client", "create", "--json", "--name", "X", "--org", "923609016", "--purpose", "presentation", "--redirect-uri", CALLBACK], extra].concat())
        };
        let private = jwks(&[&key]).replace("\"e\":", "\"d\":\"AQAB\",\"e\":");
        for (bad, why) in [
            (vec!["--jwks", private.as_str()], "private"),
            (vec!["--jwks", "{\"keys\":[]}"], "no keys"),
            (vec!["--jwks", "not json"], "JSON"),
            (vec!["--jwks-uri", "http://bank.example/jwks.json"], "https"),
            (vec!["--request-uri", "https://bank.example/r.jwt"], "--jwks"),
            (vec!["--jwks-uri", "https://bank.example/jwks.json", "--jwks", "{}"], "cannot be used with"),
        ] {
            let out = create(&bad);
            assert!(!out.status.success(), "{bad:?}");
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(stderr.contains(why), "{bad:?}: {stderr}");
        }
        let file = std::env::temp_dir().join(format!("samtykke-test-jwks-{}.json", uuid::Uuid::new_v4().simple()));
        std::fs::write(&file, jwks(&[&key])).unwrap();
        let at_file = format!("@{}", file.display());
        let out = create(&["--jwks", &at_file, "--request-uri", "https://bank.example/r/1.jwt", "--request-uri", "https://bank.example/r/2.jwt"]);
        std::fs::remove_file(&file).unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let id = serde_json::from_slice::<Value>(&out.stdout).unwrap()["client_id"].as_str().unwrap().to_owned();
        let shown: Value = serde_json::from_slice(&run_cli(&app.database_url, &["client", "show", &id, "--json"]).stdout).unwrap();
        assert_eq!(shown["request_uris"], json!(["https://bank.example/r/1.jwt", "https://bank.example/r/2.jwt"]));
        assert_eq!(shown["jwks"]["keys"][0]["kid"], key.kid);
        assert_eq!(shown["jwks_uri"], Value::Null);
        assert_eq!(shown["allow_unsigned_request_objects"], false);
    }
}

/// Outside sandbox mode only `https` request URIs are fetched.
#[tokio::test]
async fn production_mode_fetches_only_https_request_uris() {
    let url = crate::helpers::fresh_database_url(crate::helpers::Engine::Sqlite)
        .await
        .unwrap();
    let (addr, tx) = crate::helpers::spawn_production_server(&url).await;
    let server = StubServer::start().await;
    let request_uri = server.url("/r.jwt");
    server.serve("/r.jwt", 200, "x.y.z");
    let out = run_cli(
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
            "--allow-unsigned-request-objects",
            "--request-uri",
            &request_uri,
        ],
    );
    assert!(out.status.success());
    let created: Value = serde_json::from_slice(&out.stdout).unwrap();
    let client_id = created["client_id"].as_str().unwrap();
    let query: String = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs([
            ("client_id", client_id),
            ("redirect_uri", "https://bank.example/cb"),
            ("state", "s"),
            ("request_uri", &request_uri),
        ])
        .finish();
    let response = browser()
        .get(format!("http://{addr}/oauth2/auth?{query}"))
        .send()
        .await
        .unwrap();
    let params = query_of(&location(&response));
    assert_eq!(params["error"], "invalid_request_uri");
    assert_eq!(params["state"], "s");
    assert_eq!(server.hits("/r.jwt"), 0);
    let _ = tx.send(());
}
