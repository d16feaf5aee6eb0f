//! Page texts in Norwegian bokmål (the default) and English.

use samtykke_core::consent::{ConsentDuration, SINGLE_USE_WINDOW};
use samtykke_core::domain::Purpose;
use serde::Serialize;

/// Every sentence the pages show, in one language.
#[derive(Debug, Serialize)]
pub struct Texts {
    pub lang: &'static str,
    pub tagline: &'static str,
    pub footer: &'static str,
    pub sandbox_title: &'static str,
    pub sandbox_text: &'static str,
    pub login_title: &'static str,
    pub login_heading: &'static str,
    pub login_lead: &'static str,
    pub nin_label: &'static str,
    pub nin_hint: &'static str,
    pub login_button: &'static str,
    pub cancel_button: &'static str,
    pub testid_people: &'static str,
    pub consent_title: &'static str,
    pub consent_heading: &'static str,
    pub org_number: &'static str,
    pub consent_asks: &'static str,
    pub purpose_label: &'static str,
    pub duration_label: &'static str,
    pub about_label: &'static str,
    pub about_you: &'static str,
    pub consent_what: &'static str,
    pub consent_revoke: &'static str,
    /// The person's portal, where a consent is withdrawn, and its link text.
    pub portal_path: &'static str,
    pub consent_revoke_link: &'static str,
    pub accept_button: &'static str,
    pub deny_button: &'static str,
    pub purpose_presentation: &'static str,
    pub purpose_processing: &'static str,
    pub single_use: &'static str,
    pub days_one: &'static str,
    pub days_many: &'static str,
    pub error_heading: &'static str,
    pub error_detail: &'static str,
    pub bad_nin: &'static str,
    pub unknown_client: &'static str,
    pub bad_redirect_uri: &'static str,
    pub missing_redirect_uri: &'static str,
    pub repeated_parameter: &'static str,
    pub bad_request_object: &'static str,
    pub form_post_title: &'static str,
    pub form_post_heading: &'static str,
    pub form_post_text: &'static str,
    pub form_post_button: &'static str,
    pub flow_not_found: &'static str,
    pub flow_forged: &'static str,
    pub flow_finished: &'static str,
    pub bad_form: &'static str,
    pub testid_unavailable: &'static str,
    pub logged_out_heading: &'static str,
    pub logged_out_text: &'static str,
    pub bad_logout: &'static str,
    // Upstream identification and the portal's login (issue 20).
    pub upstream_failed: &'static str,
    pub upstream_unacceptable: &'static str,
    pub back_to_service: &'static str,
    pub portal_login_lead: &'static str,
    pub login_cancelled_text: &'static str,
    // TestID: an 11-digit number whose check digits are wrong (issue 23).
    pub bad_nin_check_digit: &'static str,
}

impl Texts {
    /// What the TestID form says about a number it refused: "wrong check
    /// digit" for 11 digits that fail the checksum (a typo), otherwise
    /// the general text.
    pub fn bad_nin_for(&self, why: &samtykke_core::domain::NinError) -> &'static str {
        match why {
            samtykke_core::domain::NinError::ControlDigits => self.bad_nin_check_digit,
            _ => self.bad_nin,
        }
    }
}

pub static NB: Texts = Texts {
    lang: "nb",
    tagline: "Samtykke til deling av gjeldsopplysninger",
    footer: "Du bestemmer hvem som får se gjelden din. Et samtykke kan trekkes tilbake når som helst.",
    sandbox_title: "Testmiljø.",
    sandbox_text: "Bare syntetiske testpersoner – aldri ekte personopplysninger.",
    login_title: "Logg inn",
    login_heading: "Logg inn med TestID",
    login_lead: "Identifiser deg for å gi samtykke til",
    nin_label: "Fødselsnummer",
    nin_hint: "11 siffer. I testmiljøet kan du bruke et syntetisk testnummer.",
    login_button: "Logg inn",
    cancel_button: "Avbryt",
    testid_people: "Testpersoner med gjeld:",
    consent_title: "Samtykke",
    consent_heading: "Vil du gi samtykke?",
    org_number: "org.nr.",
    consent_asks: "ber om å få se opplysninger om din usikrede gjeld.",
    purpose_label: "Formål",
    duration_label: "Varighet",
    about_label: "Gjelder",
    about_you: "deg, fødselsnummer",
    consent_what: "Opplysningene gjelder forbrukslån, rammekreditter og kredittkort registrert hos Gjeldsregisteret.",
    consent_revoke: "Du kan når som helst trekke samtykket tilbake.",
    portal_path: "/min-side",
    consent_revoke_link: "Det gjør du på Min side.",
    accept_button: "Jeg samtykker",
    deny_button: "Nei, jeg samtykker ikke",
    purpose_presentation: "Vise deg en oversikt over gjelden din",
    purpose_processing: "Vurdere en søknad om kreditt fra deg (kredittvurdering)",
    single_use: "Én gangs bruk, innen {minutes} minutter",
    days_one: "1 dag",
    days_many: "{days} dager",
    error_heading: "Noe gikk galt",
    error_detail: "Gå tilbake til tjenesten du kom fra og prøv igjen.",
    bad_nin: "Skriv et gyldig fødselsnummer med 11 siffer.",
    unknown_client: "Tjenesten som sendte deg hit er ukjent.",
    bad_redirect_uri: "Tjenesten som sendte deg hit oppga en adresse den ikke har registrert. Av sikkerhetshensyn sender vi deg ikke videre.",
    missing_redirect_uri: "Forespørselen mangler adressen du skal sendes tilbake til.",
    repeated_parameter: "Forespørselen inneholder en parameter flere ganger.",
    bad_request_object: "Forespørselen fra tjenesten som sendte deg hit kunne ikke bekreftes. Av sikkerhetshensyn sender vi deg ikke videre.",
    form_post_title: "Videre",
    form_post_heading: "Sender deg tilbake",
    form_post_text: "Du sendes nå tilbake til tjenesten. Skjer det ikke av seg selv, trykk på knappen.",
    form_post_button: "Fortsett",
    flow_not_found: "Innloggingen er utløpt eller ble startet i en annen nettleser.",
    flow_forged: "Skjemaet kunne ikke bekreftes. Start på nytt fra tjenesten du kom fra.",
    flow_finished: "Denne forespørselen er allerede fullført.",
    bad_form: "Skjemaet var ugyldig.",
    testid_unavailable: "TestID finnes bare i testmiljøet.",
    logged_out_heading: "Du er logget ut",
    logged_out_text: "Innloggingen din hos Samtykke er avsluttet.",
    bad_logout: "Adressen du skulle sendes til etter utlogging er ikke registrert.",
    upstream_failed: "Innloggingen hos identitetsleverandøren mislyktes. Prøv igjen senere.",
    upstream_unacceptable: "Innloggingen ga ikke et fødselsnummer vi kan bruke, eller ikke et høyt nok sikkerhetsnivå.",
    back_to_service: "Tilbake til tjenesten",
    portal_login_lead: "Logg inn for å se og administrere samtykkene dine.",
    login_cancelled_text: "Du avbrøt innloggingen.",
    bad_nin_check_digit: "Feil kontrollsiffer: fødselsnummeret har 11 siffer, men kontrollsifrene stemmer ikke. Sjekk at det er skrevet riktig.",
};

pub static EN: Texts = Texts {
    lang: "en",
    tagline: "Consent to sharing debt information",
    footer: "You decide who may see your debt. A consent can be withdrawn at any time.",
    sandbox_title: "Test environment.",
    sandbox_text: "Synthetic test people only – never real personal data.",
    login_title: "Log in",
    login_heading: "Log in with TestID",
    login_lead: "Identify yourself to give consent to",
    nin_label: "National identity number",
    nin_hint: "11 digits. In the test environment you may use a synthetic test number.",
    login_button: "Log in",
    cancel_button: "Cancel",
    testid_people: "Test people with debt:",
    consent_title: "Consent",
    consent_heading: "Do you consent?",
    org_number: "org. no.",
    consent_asks: "asks to see information about your unsecured debt.",
    purpose_label: "Purpose",
    duration_label: "Duration",
    about_label: "About",
    about_you: "you, national identity number",
    consent_what: "The information covers consumer loans, credit facilities and credit cards registered with the debt registry.",
    consent_revoke: "You can withdraw your consent at any time.",
    portal_path: "/en/my-page",
    consent_revoke_link: "You do so on My page.",
    accept_button: "I consent",
    deny_button: "No, I do not consent",
    purpose_presentation: "Show you an overview of your debt",
    purpose_processing: "Assess an application for credit from you (credit assessment)",
    single_use: "Used once, within {minutes} minutes",
    days_one: "1 day",
    days_many: "{days} days",
    error_heading: "Something went wrong",
    error_detail: "Go back to the service you came from and try again.",
    bad_nin: "Enter a valid 11-digit national identity number.",
    unknown_client: "The service that sent you here is unknown.",
    bad_redirect_uri: "The service that sent you here gave an address it has not registered. For your safety we do not send you on.",
    missing_redirect_uri: "The request lacks the address to send you back to.",
    repeated_parameter: "The request contains a parameter more than once.",
    bad_request_object: "The request of the service that sent you here could not be verified. For your safety we do not send you on.",
    form_post_title: "Continue",
    form_post_heading: "Sending you back",
    form_post_text: "You are being sent back to the service. If nothing happens, press the button.",
    form_post_button: "Continue",
    flow_not_found: "The login has expired or was started in another browser.",
    flow_forged: "The form could not be verified. Start again from the service you came from.",
    flow_finished: "This request has already been completed.",
    bad_form: "The form was invalid.",
    testid_unavailable: "TestID exists only in the test environment.",
    logged_out_heading: "You are logged out",
    logged_out_text: "Your login at Samtykke has ended.",
    bad_logout: "The address to send you to after logout is not registered.",
    upstream_failed: "Logging in at the identity provider failed. Please try again later.",
    upstream_unacceptable: "The login did not give a national identity number we can use, or not a high enough level of assurance.",
    back_to_service: "Back to the service",
    portal_login_lead: "Log in to see and manage your consents.",
    login_cancelled_text: "You cancelled the login.",
    bad_nin_check_digit: "Wrong check digit: the number has 11 digits, but its check digits do not match. Check that it is typed correctly.",
};

/// The texts for a stored locale code.
pub fn texts_for(locale: &str) -> &'static Texts {
    if locale == "en" {
        &EN
    } else {
        &NB
    }
}

/// Picks `nb` or `en` from `ui_locales` (OpenID Connect Core §3.1.2.1),
/// else from `Accept-Language`, else `nb`.
pub fn negotiate(ui_locales: Option<&str>, accept_language: Option<&str>) -> &'static str {
    let pick = |tag: &str| {
        let primary = tag
            .split(['-', '_'])
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        match primary.as_str() {
            "nb" | "no" | "nn" => Some("nb"),
            "en" => Some("en"),
            _ => None,
        }
    };
    if let Some(found) = ui_locales.and_then(|l| l.split(' ').find_map(pick)) {
        return found;
    }
    if let Some(header) = accept_language {
        let mut ranked: Vec<(f32, &str)> = header
            .split(',')
            .filter_map(|part| {
                let mut pieces = part.split(';');
                let tag = pieces.next()?.trim();
                let q = pieces
                    .find_map(|p| p.trim().strip_prefix("q="))
                    .and_then(|q| q.parse::<f32>().ok())
                    .unwrap_or(1.0);
                Some((q, tag))
            })
            .collect();
        ranked.sort_by(|a, b| b.0.total_cmp(&a.0));
        if let Some(found) = ranked.iter().find_map(|(_, tag)| pick(tag)) {
            return found;
        }
    }
    "nb"
}

impl Texts {
    pub fn purpose(&self, purpose: Purpose) -> &'static str {
        match purpose {
            Purpose::Presentation => self.purpose_presentation,
            Purpose::Processing => self.purpose_processing,
        }
    }

    pub fn duration(&self, duration: ConsentDuration) -> String {
        match duration {
            ConsentDuration::SingleUse => self
                .single_use
                .replace("{minutes}", &SINGLE_USE_WINDOW.whole_minutes().to_string()),
            ConsentDuration::Days(1) => self.days_one.to_owned(),
            ConsentDuration::Days(n) => self.days_many.replace("{days}", &n.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locale_comes_from_ui_locales_then_accept_language_then_bokmal() {
        assert_eq!(negotiate(Some("en"), Some("nb")), "en");
        assert_eq!(negotiate(Some("de en-GB"), None), "en");
        assert_eq!(negotiate(Some("de"), Some("en-US,en;q=0.9")), "en");
        assert_eq!(negotiate(None, Some("de;q=1, nn;q=0.5, en;q=0.8")), "en");
        assert_eq!(negotiate(None, Some("fr")), "nb");
        assert_eq!(negotiate(None, None), "nb");
    }
}
