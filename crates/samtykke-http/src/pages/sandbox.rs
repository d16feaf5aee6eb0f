//! The sandbox's own pages (sandbox mode only): the landing page at `/`,
//! which names the sandbox client and the test people and starts a consent
//! flow, and `/sandbox/callback`, a redirect URI of the sandbox client on
//! the server itself that shows what it received and the `curl` exchange to
//! run next. The pages are for integrators and in English. Outside sandbox
//! mode `/sandbox/callback` does not exist and `/` is a minimal page.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use samtykke_core::debt::{parse_delivery, SANDBOX_DELIVERY};
use samtykke_core::domain::NinPolicy;
use samtykke_core::grant::authorization_code::CODE_LIFETIME;
use samtykke_core::opaque::OpaqueToken;
use serde::Serialize;
use time::macros::format_description;

use super::{error_page, html_page, render, set_content_security_policy, texts::EN, Texts};
use crate::AppState;

/// The sandbox client's callback on the server itself.
pub const SANDBOX_CALLBACK_PATH: &str = "/sandbox/callback";

/// The scope the landing page's flow asks for.
const FLOW_SCOPE: &str = "debt.unsecured.presentation.100 openid";

/// The one script of the callback page: counts the code's seconds down.
/// The CSP allows exactly this text (by its hash); without JavaScript the
/// page shows the time the code expires.
const COUNTDOWN_SCRIPT: &str = r#"(function(){var e=document.getElementById("countdown");if(!e)return;var end=Number(e.getAttribute("data-expires"));function tick(){var left=Math.round(end-Date.now()/1000);e.textContent=left>0?left+" seconds left.":"The code has expired: start a new flow.";if(left>0)setTimeout(tick,1000);}tick();})();"#;

fn countdown_script_source() -> &'static str {
    static SOURCE: OnceLock<String> = OnceLock::new();
    SOURCE.get_or_init(|| super::script_source(COUNTDOWN_SCRIPT))
}

/// A test person of the sandbox: a synthetic number with debt.
#[derive(Serialize)]
struct TestPerson {
    nin: String,
    loans: usize,
    creditors: Vec<String>,
}

/// The synthetic people with debt in the built-in sandbox delivery, in
/// file order.
fn test_people() -> &'static [TestPerson] {
    static PEOPLE: OnceLock<Vec<TestPerson>> = OnceLock::new();
    PEOPLE.get_or_init(|| {
        let Ok(delivery) = parse_delivery(SANDBOX_DELIVERY, NinPolicy::AllowSynthetic) else {
            return Vec::new();
        };
        let mut people: Vec<TestPerson> = Vec::new();
        for entry in &delivery.entries {
            let nin = entry.nin.as_str();
            let index = match people.iter().position(|p| p.nin == nin) {
                Some(i) => i,
                None => {
                    people.push(TestPerson {
                        nin: nin.to_owned(),
                        loans: 0,
                        creditors: Vec::new(),
                    });
                    people.len() - 1
                }
            };
            let person = &mut people[index];
            person.loans += 1;
            if !person.creditors.contains(&entry.creditor_name) {
                person.creditors.push(entry.creditor_name.clone());
            }
        }
        people
    })
}

#[derive(Serialize)]
struct LandingContext<'a> {
    t: &'static Texts,
    title: &'static str,
    sandbox: bool,
    base: &'a str,
    issuer: &'a str,
    api_base: &'a str,
    client_id: Option<&'a str>,
    people: &'a [TestPerson],
    callback: String,
    scope: &'static str,
    state: String,
    nonce: String,
    flow_url: String,
}

/// `GET /`: the sandbox's landing page; outside sandbox mode a minimal page
/// that names no client and no secret.
pub async fn get_landing(State(state): State<AppState>) -> Response {
    let t = &EN;
    let settings = &state.settings;
    let base = settings.base_url();
    let callback = format!("{base}{SANDBOX_CALLBACK_PATH}");
    let client_id = if settings.sandbox {
        state.sandbox_client.as_deref()
    } else {
        None
    };
    let flow_state = OpaqueToken::generate().expose().to_owned();
    let nonce = OpaqueToken::generate().expose().to_owned();
    let flow_url = super::with_query(
        &format!("{base}/oauth2/auth"),
        &[
            ("client_id", client_id.unwrap_or("")),
            ("response_type", "code"),
            ("scope", FLOW_SCOPE),
            ("redirect_uri", &callback),
            ("state", &flow_state),
            ("nonce", &nonce),
        ],
    );
    let context = LandingContext {
        t,
        title: if settings.sandbox {
            "Sandbox"
        } else {
            "Authorization server"
        },
        sandbox: settings.sandbox,
        base,
        issuer: &settings.issuer,
        api_base: &settings.api_base,
        client_id,
        people: if settings.sandbox { test_people() } else { &[] },
        callback,
        scope: FLOW_SCOPE,
        state: flow_state,
        nonce,
        flow_url,
    };
    match render(&state, "sandbox_landing.html", context) {
        Ok(body) => html_page(StatusCode::OK, body, None),
        Err(()) => error_page(&state, t, StatusCode::INTERNAL_SERVER_ERROR, t.error_detail),
    }
}

#[derive(Serialize)]
struct CallbackContext<'a> {
    t: &'static Texts,
    title: &'static str,
    sandbox: bool,
    base: &'a str,
    api_base: &'a str,
    /// Every parameter received, in name order (shown as received).
    received: Vec<(&'a str, &'a str)>,
    code: Option<&'a str>,
    /// The code holds characters a code of ours never has: no command.
    code_unusable: bool,
    error: Option<&'a str>,
    error_description: Option<&'a str>,
    state: Option<&'a str>,
    iss: Option<&'a str>,
    iss_matches: bool,
    issuer: &'a str,
    client_id: &'a str,
    callback: String,
    expires_at: String,
    expires_unix: i64,
    script: &'static str,
}

/// Whether `value` is safe inside single quotes on a shell command line
/// and could be a code of ours (URL-safe base64 and the like).
fn shell_safe(value: &str) -> bool {
    !value.is_empty()
        && value.len() <= 512
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~'))
}

/// `GET /sandbox/callback` (sandbox mode only): what the authorization
/// response brought, and the token request to run next.
pub async fn get_callback(
    State(state): State<AppState>,
    Query(params): Query<Vec<(String, String)>>,
) -> Response {
    let settings = &state.settings;
    if !settings.sandbox {
        return crate::health::not_found().await.into_response();
    }
    let t = &EN;
    let base = settings.base_url();
    // The last value of a repeated parameter counts, as shown.
    let map: BTreeMap<&str, &str> = params
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let code = map.get("code").copied();
    let iss = map.get("iss").copied();
    let expires = state.clock.now() + CODE_LIFETIME;
    let context = CallbackContext {
        t,
        title: "Sandbox callback",
        sandbox: true,
        base,
        api_base: &settings.api_base,
        received: map.iter().map(|(k, v)| (*k, *v)).collect(),
        code: code.filter(|c| shell_safe(c)),
        code_unusable: code.is_some_and(|c| !shell_safe(c)),
        error: map.get("error").copied(),
        error_description: map.get("error_description").copied(),
        state: map.get("state").copied(),
        iss,
        iss_matches: iss == Some(settings.issuer.as_str()),
        issuer: &settings.issuer,
        client_id: state.sandbox_client.as_deref().unwrap_or("…"),
        callback: format!("{base}{SANDBOX_CALLBACK_PATH}"),
        expires_at: expires
            .format(format_description!("[hour]:[minute]:[second] UTC"))
            .unwrap_or_default(),
        expires_unix: expires.unix_timestamp(),
        script: COUNTDOWN_SCRIPT,
    };
    match render(&state, "sandbox_callback.html", context) {
        Ok(body) => {
            let mut response = html_page(StatusCode::OK, body, None);
            set_content_security_policy(
                response.headers_mut(),
                None,
                Some(countdown_script_source()),
            );
            response
        }
        Err(()) => error_page(&state, t, StatusCode::INTERNAL_SERVER_ERROR, t.error_detail),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_test_people_are_the_sandbox_delivery_s_customers() {
        let people = test_people();
        let nins: Vec<&str> = people.iter().map(|p| p.nin.as_str()).collect();
        assert_eq!(nins, ["14842249091", "29868099311"]);
        assert_eq!(people[0].loans, 4);
        assert!(people[0].creditors.contains(&"Fjordkreditt ASA".to_owned()));
    }

    #[test]
    fn only_token_characters_go_on_a_command_line() {
        assert!(shell_safe("AbC-_.~09"));
        assert!(!shell_safe(""));
        assert!(!shell_safe("a'; rm -rf ~; '"));
        assert!(!shell_safe("a b"));
        assert!(!shell_safe(&"a".repeat(513)));
    }
}
