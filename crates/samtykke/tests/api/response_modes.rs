//! `response_mode` (OAuth 2.0 Multiple Response Type Encoding Practices
//! §2.1, OAuth 2.0 Form Post Response Mode): the authorization response and
//! every error response in the query, the fragment, or a form posted by the
//! browser, kept through the login and consent pages.

use std::collections::HashMap;

use crate::helpers::{
    auth_url, browser, decide_on_consent_page, fragment_of, hidden, location, open_page, query_of,
    redeem, testid_login, StubServer, TestApp,
};

const NIN: &str = "14842249091";
const CALLBACK: &str = "http://127.0.0.1:9999/callback";

/// Drives the pages from `auth_url` to the consent decision and returns the
/// answer to the decision (not followed).
pub async fn decide(
    app: &TestApp,
    b: &reqwest::Client,
    auth_url: &str,
    decision: &str,
) -> reqwest::Response {
    let start = b.get(auth_url).send().await.unwrap();
    let login_url = location(&start);
    assert!(login_url.contains("/oauth2/login"), "{login_url}");
    let login = testid_login(app, b, &login_url, NIN).await;
    decide_on_consent_page(app, b, &location(&login), decision)
        .await
        .1
}

/// The text of an HTML attribute value as minijinja escapes it.
fn unescape(s: &str) -> String {
    s.replace("&#x2f;", "/")
        .replace("&#x27;", "'")
        .replace("&quot;", "\"")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

/// A `form_post` page: its form's action and fields, after checking that
/// it is a page the browser posts at once, or the individual by hand.
async fn form_post_page(response: reqwest::Response) -> (String, HashMap<String, String>) {
    assert_eq!(
        response.status(),
        200,
        "form_post answers a page, not a redirect"
    );
    assert!(response.headers().get("location").is_none());
    let csp = response.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(response.headers()["cache-control"], "no-store");
    assert_eq!(response.headers()["x-frame-options"], "DENY");
    let page = response.text().await.unwrap();
    // The stylesheet comes from this server's own base URL, like every page's.
    assert!(
        page.contains("/assets/samtykke.css\"") && !page.contains("href=\"/assets/"),
        "{page}"
    );

    // The one script is allowed by its hash, nothing inline otherwise.
    assert!(!csp.contains("unsafe-inline"), "{csp}");
    assert!(csp.contains("default-src 'none'"), "{csp}");
    let start = page.find("<script>").expect("a script") + "<script>".len();
    let script = &page[start..start + page[start..].find("</script>").unwrap()];
    let digest = ring::digest::digest(&ring::digest::SHA256, script.as_bytes());
    use base64::Engine;
    let source = format!(
        "script-src 'sha256-{}'",
        base64::engine::general_purpose::STANDARD.encode(digest.as_ref())
    );
    assert!(csp.contains(&source), "{csp} must allow {source}");
    assert_eq!(page.matches("<script").count(), 1);
    // Without JavaScript: a visible submit button.
    assert!(page.contains("<button type=\"submit\""), "{page}");
    assert!(page.contains("<form method=\"post\" action=\""), "{page}");

    let marker = "action=\"";
    let at = page.find(marker).unwrap() + marker.len();
    let action = unescape(&page[at..at + page[at..].find('"').unwrap()]);
    let origin = url::Url::parse(&action)
        .unwrap()
        .origin()
        .ascii_serialization();
    assert!(
        csp.contains(&format!("form-action 'self' {origin}")),
        "{csp}"
    );
    let mut fields = HashMap::new();
    for name in [
        "code",
        "scope",
        "state",
        "iss",
        "error",
        "error_description",
    ] {
        if page.contains(&format!("name=\"{name}\"")) {
            fields.insert(name.to_owned(), unescape(&hidden(&page, name)));
        }
    }
    (action, fields)
}

engine_tests! {
    async fn fragment_mode_puts_code_state_and_iss_in_the_fragment_and_the_code_redeems(app) {
        let url = auth_url(&app, &[("response_mode", "fragment")]);
        let done = location(&decide(&app, &browser(), &url, "accept").await);
        assert!(done.starts_with(&format!("{CALLBACK}#")), "{done}");
        assert!(query_of(&done).is_empty(), "nothing in the query: {done}");
        let params = fragment_of(&done);
        assert_eq!(params["state"], "state-123");
        assert_eq!(params["iss"], app.base);
        assert_eq!(params["scope"], "debt.unsecured.presentation");
        let response = redeem(&app, &params["code"], &[]).await;
        assert_eq!(response.status(), 200);
    }

    async fn fragment_mode_sends_every_error_in_the_fragment(app) {
        // An invalid request.
        let bad_scope = browser().get(auth_url(&app, &[("response_mode", "fragment"), ("scope", "email")])).send().await.unwrap();
        let to = location(&bad_scope);
        assert!(to.starts_with(&format!("{CALLBACK}#")), "{to}");
        let params = fragment_of(&to);
        assert_eq!(params["error"], "invalid_scopes");
        assert_eq!(params["state"], "state-123");
        assert_eq!(params["iss"], app.base);
        assert!(params.contains_key("error_description"));

        // prompt=none without a login session.
        let none = browser().get(auth_url(&app, &[("response_mode", "fragment"), ("prompt", "none")])).send().await.unwrap();
        assert_eq!(fragment_of(&location(&none))["error"], "login_required");

        // Consent denied, after the login and consent pages.
        let denied = location(&decide(&app, &browser(), &auth_url(&app, &[("response_mode", "fragment")]), "deny").await);
        assert!(query_of(&denied).is_empty(), "{denied}");
        let params = fragment_of(&denied);
        assert_eq!(params["error"], "consent_denied");
        assert_eq!(params["state"], "state-123");
        assert!(!params.contains_key("code"));

        // Login cancelled.
        let b = browser();
        let start = b.get(auth_url(&app, &[("response_mode", "fragment")])).send().await.unwrap();
        let (flow, csrf, _) = open_page(&b, &location(&start)).await;
        let cancel = b.post(app.url("/oauth2/login")).form(&[("flow", flow.as_str()), ("csrf", csrf.as_str()), ("action", "cancel")]).send().await.unwrap();
        let to = location(&cancel);
        assert!(to.starts_with(&format!("{CALLBACK}#")), "{to}");
        assert_eq!(fragment_of(&to)["error"], "login_cancelled");
    }

    async fn an_unknown_or_repeated_response_mode_is_invalid_request_in_the_query(app) {
        for extra in ["&response_mode=web_message", "&response_mode=fragment&response_mode=fragment", "&response_mode=FRAGMENT"] {
            let url = format!("{}{extra}", auth_url(&app, &[]));
            let to = location(&browser().get(url).send().await.unwrap());
            assert!(to.starts_with(&format!("{CALLBACK}?")), "{to}");
            let params = query_of(&to);
            assert_eq!(params["error"], "invalid_request", "{extra}");
            assert_eq!(params["state"], "state-123");
            assert_eq!(params["iss"], app.base);
            assert!(url::Url::parse(&to).unwrap().fragment().is_none());
        }
        // query is accepted explicitly.
        let ok = browser().get(auth_url(&app, &[("response_mode", "query")])).send().await.unwrap();
        assert!(location(&ok).contains("/oauth2/login"));
    }

    async fn form_post_mode_answers_a_page_that_posts_the_response_to_the_client(app) {
        // The client's callback, on loopback (the sandbox client's redirect
        // URI matches any port there).
        let client = StubServer::start().await;
        let callback = client.url("/callback");
        // A state that needs escaping in HTML.
        let state = "a\"b<c>&d'e/f";
        let url = auth_url(&app, &[("response_mode", "form_post"), ("redirect_uri", &callback), ("state", state)]);
        let (action, fields) = form_post_page(decide(&app, &browser(), &url, "accept").await).await;
        assert_eq!(action, callback);
        assert_eq!(fields["state"], state);
        assert_eq!(fields["iss"], app.base);
        assert_eq!(fields["scope"], "debt.unsecured.presentation");
        assert!(!fields.contains_key("error"));

        // What a browser does with the page: post the form.
        let form: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let posted = browser().post(&action).form(&form).send().await.unwrap();
        assert_eq!(posted.status(), 200);
        let received = client.posts();
        assert_eq!(received.len(), 1);
        assert_eq!(received[0].0, "/callback");
        let received: HashMap<_, _> = received[0].1.iter().cloned().collect();
        assert_eq!(received["state"], state);
        assert_eq!(received["iss"], app.base);
        let response = redeem(&app, &received["code"], &[("redirect_uri", &callback)]).await;
        assert_eq!(response.status(), 200);
    }

    async fn form_post_mode_posts_errors_too(app) {
        let (action, fields) = form_post_page(decide(&app, &browser(), &auth_url(&app, &[("response_mode", "form_post")]), "deny").await).await;
        assert_eq!(action, CALLBACK);
        assert_eq!(fields["error"], "consent_denied");
        assert_eq!(fields["state"], "state-123");
        assert_eq!(fields["iss"], app.base);
        assert!(!fields.contains_key("code"));

        let bad_scope = browser().get(auth_url(&app, &[("response_mode", "form_post"), ("scope", "email"), ("ui_locales", "en")])).send().await.unwrap();
        let (_, fields) = form_post_page(bad_scope).await;
        assert_eq!(fields["error"], "invalid_scopes");
        assert_eq!(fields["state"], "state-123");
    }
}
