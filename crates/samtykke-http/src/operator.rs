//! Who runs this installation, as every page shows it (issue 23 item 8):
//! the operator's name, logo, privacy statement and contact, configured
//! with `serve --operator-…`. In sandbox mode the defaults say that it is a
//! test service; in production without them the pages show neutral text.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::AppState;

/// The path the operator's logo file is served at.
pub const LOGO_PATH: &str = "/assets/operator-logo";

/// The operator's logo: an image file we serve ourselves (no request
/// leaves for another site), or an `https://` URL the browser fetches.
#[derive(Debug, Clone)]
pub enum OperatorLogo {
    File {
        bytes: Arc<[u8]>,
        content_type: &'static str,
    },
    Url(String),
}

/// How the individual reaches the operator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OperatorContact {
    Email(String),
    Url(String),
}

/// The operator as configured; every field optional.
#[derive(Debug, Clone, Default)]
pub struct Operator {
    pub name: Option<String>,
    pub logo: Option<OperatorLogo>,
    pub privacy_url: Option<String>,
    pub contact: Option<OperatorContact>,
}

impl Operator {
    /// Whether nothing identifies the operator (production should not run
    /// like that: the start-up output warns).
    pub fn missing(&self) -> Vec<&'static str> {
        let mut missing = Vec::new();
        if self.name.is_none() {
            missing.push("--operator-name");
        }
        if self.privacy_url.is_none() {
            missing.push("--operator-privacy-url");
        }
        if self.contact.is_none() {
            missing.push("--operator-contact");
        }
        missing
    }

    /// The origin of an external logo (the pages' CSP allows images from it).
    pub(crate) fn logo_origin(&self) -> Option<String> {
        match &self.logo {
            Some(OperatorLogo::Url(url)) => crate::pages::origin_of(url),
            _ => None,
        }
    }
}

/// What the pages show of the operator, in one language.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct OperatorView {
    /// The name in the header, or None for the neutral "Samtykke".
    name: Option<String>,
    logo_src: Option<String>,
    logo_alt: String,
    /// The footer's line about who runs the service.
    about: String,
    privacy_href: Option<String>,
    privacy_text: &'static str,
    contact_href: Option<String>,
    contact_text: Option<String>,
    contact_label: &'static str,
    /// A test service (sandbox): say so beside the name.
    test_service: Option<&'static str>,
}

/// The operator as the pages show it, per language (`nb`, `en`).
#[derive(Debug, Clone, Serialize)]
pub(crate) struct OperatorViews(BTreeMap<&'static str, OperatorView>);

impl OperatorViews {
    pub(crate) fn new(operator: &Operator, sandbox: bool, base: &str) -> Self {
        let mut views = BTreeMap::new();
        for lang in ["nb", "en"] {
            views.insert(lang, view(operator, sandbox, base, lang == "en"));
        }
        Self(views)
    }
}

fn view(operator: &Operator, sandbox: bool, base: &str, en: bool) -> OperatorView {
    let pick = |nb: &'static str, english: &'static str| if en { english } else { nb };
    let name = operator.name.clone();
    let test_service = sandbox.then(|| pick("testtjeneste", "test service"));
    let about = match (&name, sandbox) {
        (Some(name), true) => format!(
            "{} {name}. {}",
            pick("Testtjenesten drives av", "This test service is run by"),
            pick(
                "Den har bare syntetiske testpersoner og ingen ekte personopplysninger.",
                "It holds synthetic test people only, never real personal data."
            )
        ),
        (None, true) => pick(
            "Dette er en testtjeneste for utviklere, ikke en ekte tjeneste. Den har bare syntetiske testpersoner og ingen ekte personopplysninger.",
            "This is a test service for developers, not a real service. It holds synthetic test people only, never real personal data.",
        )
        .to_owned(),
        (Some(name), false) => format!(
            "{} {name}.",
            pick("Tjenesten drives av", "This service is run by")
        ),
        (None, false) => pick(
            "Samtykketjeneste for deling av gjeldsopplysninger.",
            "Consent service for sharing debt information.",
        )
        .to_owned(),
    };
    let logo_src = operator.logo.as_ref().map(|logo| match logo {
        OperatorLogo::File { .. } => format!("{base}{LOGO_PATH}"),
        OperatorLogo::Url(url) => url.clone(),
    });
    let (contact_href, contact_text) = match &operator.contact {
        Some(OperatorContact::Email(address)) => {
            (Some(format!("mailto:{address}")), Some(address.clone()))
        }
        Some(OperatorContact::Url(url)) => (Some(url.clone()), Some(display_url(url))),
        None => (None, None),
    };
    OperatorView {
        logo_alt: match &name {
            Some(name) => format!("{} {name}", pick("Logo for", "Logo of")),
            None => pick("Logo", "Logo").to_owned(),
        },
        name,
        logo_src,
        about,
        privacy_href: operator.privacy_url.clone(),
        privacy_text: pick("Personvernerklæring", "Privacy statement"),
        contact_href,
        contact_text,
        contact_label: pick("Kontakt", "Contact"),
        test_service,
    }
}

/// A URL as a link's text: without the scheme and a lone trailing slash.
fn display_url(url: &str) -> String {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .unwrap_or(url);
    rest.strip_suffix('/').unwrap_or(rest).to_owned()
}

/// `GET /assets/operator-logo`: the configured logo file (404 without one).
pub async fn get_logo(State(state): State<AppState>) -> Response {
    match &state.operator.logo {
        Some(OperatorLogo::File {
            bytes,
            content_type,
        }) => {
            let mut response = (
                [(header::CONTENT_TYPE, *content_type)],
                bytes.as_ref().to_vec(),
            )
                .into_response();
            response.headers_mut().insert(
                header::CACHE_CONTROL,
                HeaderValue::from_static("public, max-age=3600"),
            );
            // An SVG logo opened on its own runs nothing.
            response.headers_mut().insert(
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static("default-src 'none'; style-src 'unsafe-inline'; sandbox"),
            );
            response
        }
        _ => (StatusCode::NOT_FOUND, ()).into_response(),
    }
}

/// Adds an external logo's origin to the `img-src` of a page's CSP (the
/// pages allow only our own images otherwise).
pub(crate) async fn allow_logo_origin(
    State(state): State<AppState>,
    mut response: Response,
) -> Response {
    let Some(origin) = state.operator_logo_origin.as_deref() else {
        return response;
    };
    let headers = response.headers_mut();
    let patched = headers
        .get(header::CONTENT_SECURITY_POLICY)
        .and_then(|v| v.to_str().ok())
        .filter(|csp| csp.contains("img-src 'self'"))
        .map(|csp| csp.replacen("img-src 'self'", &format!("img-src 'self' {origin}"), 1));
    if let Some(value) = patched.and_then(|p| HeaderValue::from_str(&p).ok()) {
        headers.insert(header::CONTENT_SECURITY_POLICY, value);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sandbox_says_it_is_a_test_service_and_production_stays_neutral() {
        let none = Operator::default();
        let sandbox = view(&none, true, "http://x", false);
        assert!(sandbox.about.contains("testtjeneste"), "{}", sandbox.about);
        assert_eq!(sandbox.test_service, Some("testtjeneste"));
        let production = view(&none, false, "http://x", true);
        assert_eq!(production.name, None);
        assert_eq!(production.test_service, None);
        assert!(!production.about.contains("test"), "{}", production.about);
        assert_eq!(
            none.missing(),
            [
                "--operator-name",
                "--operator-privacy-url",
                "--operator-contact"
            ]
        );
        let named = Operator {
            name: Some("Eksempel AS".to_owned()),
            contact: Some(OperatorContact::Url(
                "https://eksempel.no/kontakt/".to_owned(),
            )),
            ..Operator::default()
        };
        let shown = view(&named, false, "http://x", false);
        assert_eq!(shown.about, "Tjenesten drives av Eksempel AS.");
        assert_eq!(shown.contact_text.as_deref(), Some("eksempel.no/kontakt"));
    }
}
