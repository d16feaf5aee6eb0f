//! The individual's portal (SPEC §9): `/min-side` in bokmål and
//! `/en/my-page` in English. A person who is logged in (the login-session
//! cookie of the consent flow) sees every consent they gave, newest first
//! and a page at a time, each consent's uses on its own page, withdraws an
//! active consent after a confirmation, and logs out.
//!
//! Every form is a POST with a CSRF token bound to the browser and the login
//! session. A consent is looked up only among the person's own: another
//! person's consent, an unknown id and a malformed one get one identical
//! "not found" page.

use std::sync::OnceLock;

use axum::body::Bytes;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use samtykke_core::consent::{Consent, ConsentId, ConsentKind, ConsentStatus, RevokedBy};
use samtykke_core::creditor_lookup::{CreditorUsage, Served};
use samtykke_core::flow::{self, LoginSession};
use samtykke_core::store::{PersonConsentUsage, RevokeOutcome};
use serde::Serialize;
use time::OffsetDateTime;

use super::portal_texts::{PortalTexts, PORTAL_EN, PORTAL_NB};
use super::{
    browser_cookie, browser_session, field, html_page, message_page, origin_of, page_form, render,
    see_other, set_browser_cookie, set_session_cookie, texts_for, Texts,
};
use crate::AppState;

/// Consents on one page of the list.
pub const CONSENTS_PER_PAGE: u32 = 20;
/// Uses on one page of a consent's usage log.
pub const USES_PER_PAGE: u32 = 50;

/// One language of the portal: its texts and its paths.
pub struct Lang {
    locale: &'static str,
    p: &'static PortalTexts,
    /// The list: `/min-side`.
    root: &'static str,
    /// The segment before a consent's id.
    consent: &'static str,
    /// The segment after a consent's id for withdrawing it.
    withdraw: &'static str,
    /// The query parameter of the page number.
    page: &'static str,
    /// The "logged out" page, under `root`.
    logged_out: &'static str,
    other: &'static Lang,
}

pub static NB_PORTAL: Lang = Lang {
    locale: "nb",
    p: &PORTAL_NB,
    root: "/min-side",
    consent: "samtykke",
    withdraw: "trekk-tilbake",
    page: "side",
    logged_out: "logget-ut",
    other: &EN_PORTAL,
};

pub static EN_PORTAL: Lang = Lang {
    locale: "en",
    p: &PORTAL_EN,
    root: "/en/my-page",
    consent: "consent",
    withdraw: "withdraw",
    page: "page",
    logged_out: "logged-out",
    other: &NB_PORTAL,
};

impl Lang {
    fn t(&self) -> &'static Texts {
        texts_for(self.locale)
    }

    fn list(&self, base: &str, page: u64) -> String {
        match page {
            0 | 1 => format!("{base}{}", self.root),
            n => format!("{base}{}?{}={n}", self.root, self.page),
        }
    }

    fn detail(&self, base: &str, id: &ConsentId) -> String {
        format!("{base}{}/{}/{id}", self.root, self.consent)
    }

    fn detail_page(&self, base: &str, id: &ConsentId, page: u64) -> String {
        match page {
            0 | 1 => self.detail(base, id),
            n => format!("{}?{}={n}", self.detail(base, id), self.page),
        }
    }

    fn withdrawal(&self, base: &str, id: &ConsentId) -> String {
        format!("{}/{}", self.detail(base, id), self.withdraw)
    }

    fn logout(&self, base: &str) -> String {
        format!("{base}{}/logout", self.root)
    }

    fn logged_out_page(&self, base: &str) -> String {
        format!("{base}{}/{}", self.root, self.logged_out)
    }

    /// Identification for the portal (the identity provider's login route),
    /// coming back to this language's list.
    fn login(&self, base: &str) -> String {
        format!("{base}/min-side/login?return={}", self.root)
    }
}

/// A logged-in person at the portal.
struct Person {
    session: LoginSession,
    /// The CSRF token of this browser and session's forms.
    csrf: String,
}

/// What binds a portal form's CSRF token to the login session (the
/// browser is bound by [`flow::csrf_token`] itself).
fn csrf_subject(session: &LoginSession) -> String {
    format!(
        "portal\0{}\0{}",
        session.created_at_micros(),
        session.nin.as_str()
    )
}

/// The person behind the browser's login session: the session cookie
/// sealed by this server for this browser's cookie, not expired, and not
/// ended by a logout. `Ok(None)` when nobody is logged in.
async fn person(state: &AppState, headers: &HeaderMap) -> Result<Option<Person>, StoreFailure> {
    let Some(browser) = browser_cookie(state, headers) else {
        return Ok(None);
    };
    let secrets = state.secrets().await.map_err(|e| {
        tracing::error!(error = %e, "server secrets unavailable");
        StoreFailure
    })?;
    let Some(session) = browser_session(state, headers, &browser, &secrets.flow_key)
        .filter(|s| s.is_active(state.clock.now()))
    else {
        return Ok(None);
    };
    let ended = state
        .store
        .login_session_ended(&session)
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "could not read the login session's state");
            StoreFailure
        })?;
    if ended {
        return Ok(None);
    }
    let csrf = flow::csrf_token(&secrets.csrf_key, &csrf_subject(&session), &browser);
    Ok(Some(Person { session, csrf }))
}

/// The store or the server secrets could not be read.
struct StoreFailure;

/// Whether `presented` is the CSRF token of this browser and session.
async fn csrf_ok(
    state: &AppState,
    headers: &HeaderMap,
    person: &Person,
    presented: Option<&str>,
) -> bool {
    let (Some(browser), Ok(secrets), Some(presented)) = (
        browser_cookie(state, headers),
        state.secrets().await,
        presented,
    ) else {
        return false;
    };
    flow::csrf_valid(
        &secrets.csrf_key,
        &csrf_subject(&person.session),
        &browser,
        presented,
    )
}

/// The person, or the answer for a request without one: to identification
/// when nobody is logged in (nothing else is shown), an error page when the
/// store fails.
async fn gate(
    state: &AppState,
    headers: &HeaderMap,
    lang: &'static Lang,
) -> Result<Person, Response> {
    match person(state, headers).await {
        Ok(Some(person)) => Ok(person),
        Ok(None) => Err(see_other(&lang.login(state.settings.base_url()))),
        Err(StoreFailure) => Err(unavailable(state, lang)),
    }
}

fn unavailable(state: &AppState, lang: &'static Lang) -> Response {
    let t = lang.t();
    super::error_page(state, t, StatusCode::SERVICE_UNAVAILABLE, t.error_detail)
}

/// The one answer for a consent that is not the person's, does not exist,
/// or whose id is malformed.
fn not_found(state: &AppState, lang: &'static Lang) -> Response {
    let t = lang.t();
    message_page(
        state,
        t,
        StatusCode::NOT_FOUND,
        t.error_heading,
        lang.p.not_found,
        None,
    )
}

fn render_page(
    state: &AppState,
    lang: &'static Lang,
    template: &str,
    context: impl Serialize,
) -> Response {
    match render(state, template, context) {
        Ok(body) => html_page(
            StatusCode::OK,
            body,
            end_session_url(state, lang)
                .as_deref()
                .and_then(origin_of)
                .as_deref(),
        ),
        Err(()) => {
            let t = lang.t();
            super::error_page(state, t, StatusCode::INTERNAL_SERVER_ERROR, t.error_detail)
        }
    }
}

/// The page number in `query` (`side=` or `page=`), from 1; anything else
/// is page 1.
fn page_number(query: Option<&str>, lang: &Lang) -> u64 {
    form_urlencoded::parse(query.unwrap_or_default().as_bytes())
        .find(|(k, _)| k == lang.page)
        .and_then(|(_, v)| v.parse::<u64>().ok())
        .filter(|n| (1..=1_000_000).contains(n))
        .unwrap_or(1)
}

/// How many pages `total` items fill, at least one.
fn page_count(total: u64, per_page: u32) -> u64 {
    total.div_ceil(u64::from(per_page)).max(1)
}

/// A time as the person reads it, to the minute: Norwegian time
/// (Europe/Oslo), with its zone's abbreviation; in UTC, said so, where the
/// system has no time-zone database.
pub fn shown_time(t: OffsetDateTime) -> String {
    shown(t, "%d.%m.%Y %H:%M %Z")
}

/// [`shown_time`] to the second (uses may come minutes apart).
pub fn shown_time_to_the_second(t: OffsetDateTime) -> String {
    shown(t, "%d.%m.%Y %H:%M:%S %Z")
}

fn shown(t: OffsetDateTime, format: &str) -> String {
    static OSLO: OnceLock<jiff::tz::TimeZone> = OnceLock::new();
    let oslo = OSLO.get_or_init(|| {
        jiff::tz::TimeZone::get("Europe/Oslo").unwrap_or_else(|e| {
            tracing::warn!(error = %e, "no time-zone data for Europe/Oslo: the portal shows UTC");
            jiff::tz::TimeZone::UTC
        })
    });
    match jiff::Timestamp::from_second(t.unix_timestamp()) {
        Ok(ts) => ts
            .to_zoned_datetime(oslo.clone())
            .strftime(format)
            .to_string(),
        Err(_) => String::new(),
    }
}

/// The navigation of every portal page: the language switch and logout.
#[derive(Serialize)]
struct Frame<'a> {
    t: &'static Texts,
    p: &'static PortalTexts,
    title: &'a str,
    sandbox: bool,
    base: &'a str,
    home: String,
    switch_href: String,
    logout_action: String,
    csrf: &'a str,
    /// Masked (see [`super::masked_nin`]).
    nin: String,
}

impl<'a> Frame<'a> {
    fn new(
        state: &'a AppState,
        lang: &'static Lang,
        person: &'a Person,
        title: &'a str,
        switch_href: String,
    ) -> Self {
        let base = state.settings.base_url();
        Frame {
            t: lang.t(),
            p: lang.p,
            title,
            sandbox: state.settings.sandbox,
            base,
            home: lang.list(base, 1),
            switch_href,
            logout_action: lang.logout(base),
            csrf: &person.csrf,
            nin: super::masked_nin(person.session.nin.as_str()),
        }
    }
}

/// One consent as the pages show it.
#[derive(Serialize)]
struct ConsentView {
    id: String,
    detail_href: String,
    withdraw_href: Option<String>,
    client_name: String,
    org_number: String,
    purpose: &'static str,
    duration: String,
    kind: &'static str,
    given: String,
    valid_until: String,
    ended: Option<String>,
    status: &'static str,
    status_class: &'static str,
    uses: u64,
}

/// An institution's name and organisation number.
async fn institution(
    state: &AppState,
    client_id: &samtykke_core::domain::ClientId,
) -> (String, String) {
    match state.client(client_id).await {
        Ok(Some(c)) => (c.name.as_str().to_owned(), c.org_number.as_str().to_owned()),
        _ => (client_id.as_str().to_owned(), String::new()),
    }
}

async fn consent_view(
    state: &AppState,
    lang: &'static Lang,
    consent: &Consent,
    uses: u64,
) -> ConsentView {
    let (t, p, base) = (lang.t(), lang.p, state.settings.base_url());
    let status = consent.status_at(state.clock.now());
    let (status_text, status_class) = match (status, consent.revoked_by) {
        (ConsentStatus::Active, _) => (p.status_active, "active"),
        (ConsentStatus::Expired, _) => (p.status_expired, "ended"),
        (ConsentStatus::Consumed, _) => (p.status_consumed, "ended"),
        (ConsentStatus::Revoked, Some(RevokedBy::Individual)) => {
            (p.status_revoked_by_you, "revoked")
        }
        (ConsentStatus::Revoked, _) => (p.status_revoked_by_institution, "revoked"),
    };
    let ended = match status {
        ConsentStatus::Active => None,
        ConsentStatus::Expired => Some(consent.expires_at),
        _ => consent.ended_at,
    };
    let (client_name, org_number) = institution(state, &consent.client_id).await;
    ConsentView {
        id: consent.id.to_string(),
        detail_href: lang.detail(base, &consent.id),
        withdraw_href: (status == ConsentStatus::Active)
            .then(|| lang.withdrawal(base, &consent.id)),
        client_name,
        org_number,
        purpose: t.purpose(consent.purpose),
        duration: t.duration(consent.duration),
        kind: match consent.kind {
            ConsentKind::Regular => p.kind_regular,
            ConsentKind::Agreement => p.kind_agreement,
        },
        given: shown_time(consent.created_at),
        valid_until: shown_time(consent.expires_at),
        ended: ended.map(shown_time),
        status: status_text,
        status_class,
        uses,
    }
}

/// Links to the previous and next page, if there are such.
#[derive(Serialize)]
struct Paging {
    label: String,
    previous: Option<String>,
    next: Option<String>,
}

impl Paging {
    fn new(p: &PortalTexts, page: u64, pages: u64, href: impl Fn(u64) -> String) -> Option<Paging> {
        (pages > 1 || page > 1).then(|| Paging {
            label: p
                .page_of
                .replace("{page}", &page.to_string())
                .replace("{pages}", &pages.to_string()),
            previous: (page > 1).then(|| href(page.min(pages + 1) - 1)),
            next: (page < pages).then(|| href(page + 1)),
        })
    }
}

#[derive(Serialize)]
struct ListContext<'a> {
    #[serde(flatten)]
    frame: Frame<'a>,
    count: String,
    consents: Vec<ConsentView>,
    paging: Option<Paging>,
}

async fn list(
    state: AppState,
    headers: HeaderMap,
    query: Option<String>,
    lang: &'static Lang,
) -> Response {
    let person = match gate(&state, &headers, lang).await {
        Ok(p) => p,
        Err(answer) => return answer,
    };
    let page = page_number(query.as_deref(), lang);
    let found = state
        .store
        .consents_of_person(
            &person.session.nin,
            (page - 1) * u64::from(CONSENTS_PER_PAGE),
            CONSENTS_PER_PAGE,
        )
        .await;
    let found = match found {
        Ok(f) => f,
        Err(e) => {
            tracing::error!(error = %e, "could not list the person's consents");
            return unavailable(&state, lang);
        }
    };
    let mut consents = Vec::with_capacity(found.consents.len());
    for (consent, uses) in &found.consents {
        consents.push(consent_view(&state, lang, consent, *uses).await);
    }
    let p = lang.p;
    let base = state.settings.base_url();
    let count = match found.total {
        0 => p.none.to_owned(),
        1 => p.count_one.to_owned(),
        n => p.count_many.replace("{n}", &n.to_string()),
    };
    let pages = page_count(found.total, CONSENTS_PER_PAGE);
    let context = ListContext {
        frame: Frame::new(&state, lang, &person, p.title, lang.other.list(base, page)),
        count,
        consents,
        paging: Paging::new(p, page, pages, |n| lang.list(base, n)),
    };
    render_page(&state, lang, "portal.html", context)
}

#[derive(Serialize)]
struct UseView {
    when: String,
    by: String,
    /// Whether the use has a per-creditor report (uses from before it
    /// existed have none).
    recorded: bool,
    creditors: Vec<CreditorUseView>,
}

/// What one creditor did in one use: its name, `answered`, `stored` or
/// `missing`, and that in words.
#[derive(Serialize)]
struct CreditorUseView {
    name: String,
    served: &'static str,
    text: &'static str,
}

fn creditor_uses(lang: &'static Lang, report: &[CreditorUsage]) -> Vec<CreditorUseView> {
    report
        .iter()
        .map(|c| CreditorUseView {
            name: c.name.clone(),
            served: c.served.as_str(),
            text: match c.served {
                Served::Answered => lang.p.creditor_answered,
                // Not asked live (not a live creditor): its stored data.
                Served::Stored if c.failure.is_none() => lang.p.creditor_stored_only,
                Served::Stored => lang.p.creditor_stored,
                Served::Missing => lang.p.creditor_missing,
            },
        })
        .collect()
}

#[derive(Serialize)]
struct DetailContext<'a> {
    #[serde(flatten)]
    frame: Frame<'a>,
    consent: ConsentView,
    uses: Vec<UseView>,
    paging: Option<Paging>,
}

/// The person's consent `id` with page `page` (from 1) of its uses,
/// `per_page` to a page; or the answer when there is none: the one "not
/// found" for another person's, an unknown and a malformed id.
async fn own_consent(
    state: &AppState,
    lang: &'static Lang,
    person: &Person,
    id: &str,
    page: u64,
    per_page: u32,
) -> Result<(ConsentId, PersonConsentUsage), Response> {
    let Some(id) = ConsentId::parse(id) else {
        return Err(not_found(state, lang));
    };
    let offset = (page - 1) * u64::from(per_page);
    match state
        .store
        .person_consent_usage(&person.session.nin, &id, offset, per_page)
        .await
    {
        Ok(Some(found)) => Ok((id, found)),
        Ok(None) => Err(not_found(state, lang)),
        Err(e) => {
            tracing::error!(error = %e, "could not read the consent");
            Err(unavailable(state, lang))
        }
    }
}

async fn detail(
    state: AppState,
    headers: HeaderMap,
    id: String,
    query: Option<String>,
    lang: &'static Lang,
) -> Response {
    let person = match gate(&state, &headers, lang).await {
        Ok(p) => p,
        Err(answer) => return answer,
    };
    let page = page_number(query.as_deref(), lang);
    let (id, found) = match own_consent(&state, lang, &person, &id, page, USES_PER_PAGE).await {
        Ok(found) => found,
        Err(answer) => return answer,
    };
    let mut uses = Vec::with_capacity(found.uses.len());
    for used in &found.uses {
        let (name, org) = institution(&state, &used.client_id).await;
        uses.push(UseView {
            when: shown_time_to_the_second(used.used_at),
            by: if org.is_empty() {
                name
            } else {
                format!("{name} ({} {org})", lang.p.org_number)
            },
            recorded: used.creditors.is_some(),
            creditors: creditor_uses(lang, used.creditors.as_deref().unwrap_or_default()),
        });
    }
    let base = state.settings.base_url();
    let pages = page_count(found.total, USES_PER_PAGE);
    let context = DetailContext {
        frame: Frame::new(
            &state,
            lang,
            &person,
            lang.p.detail_title,
            lang.other.detail_page(base, &id, page),
        ),
        consent: consent_view(&state, lang, &found.consent, found.total).await,
        uses,
        paging: Paging::new(lang.p, page, pages, |n| lang.detail_page(base, &id, n)),
    };
    render_page(&state, lang, "portal_consent.html", context)
}

#[derive(Serialize)]
struct WithdrawContext<'a> {
    #[serde(flatten)]
    frame: Frame<'a>,
    consent: ConsentView,
    action: String,
}

/// The confirmation page; a consent that is no longer active sends the
/// person to its page.
async fn confirm_withdrawal(
    state: AppState,
    headers: HeaderMap,
    id: String,
    lang: &'static Lang,
) -> Response {
    let person = match gate(&state, &headers, lang).await {
        Ok(p) => p,
        Err(answer) => return answer,
    };
    let (id, found) = match own_consent(&state, lang, &person, &id, 1, 0).await {
        Ok(found) => found,
        Err(answer) => return answer,
    };
    let base = state.settings.base_url();
    if found.consent.status_at(state.clock.now()) != ConsentStatus::Active {
        return see_other(&lang.detail(base, &id));
    }
    let context = WithdrawContext {
        frame: Frame::new(
            &state,
            lang,
            &person,
            lang.p.withdraw_title,
            lang.other.withdrawal(base, &id),
        ),
        consent: consent_view(&state, lang, &found.consent, found.total).await,
        action: lang.withdrawal(base, &id),
    };
    render_page(&state, lang, "portal_withdraw.html", context)
}

/// The withdrawal itself (`csrf`): revokes the person's consent, then
/// shows its page. Withdrawing an ended consent changes nothing and shows
/// its page too.
async fn withdraw(
    state: AppState,
    headers: HeaderMap,
    id: String,
    body: Bytes,
    lang: &'static Lang,
) -> Response {
    let person = match gate(&state, &headers, lang).await {
        Ok(p) => p,
        Err(answer) => return answer,
    };
    let form = page_form(&headers, &body);
    let presented = form.as_deref().and_then(|f| field(f, "csrf"));
    if !csrf_ok(&state, &headers, &person, presented).await {
        tracing::warn!("portal form post with a missing or wrong CSRF token");
        return forged(&state, lang);
    }
    let Some(id) = ConsentId::parse(&id) else {
        return not_found(&state, lang);
    };
    let outcome = state
        .store
        .revoke_consent_of_person(&id, &person.session.nin, state.clock.now())
        .await;
    let base = state.settings.base_url();
    match outcome {
        Ok(RevokeOutcome::Revoked) => {
            state.metrics.consent_revoked(RevokedBy::Individual);
            tracing::info!(consent_id = %id, "consent withdrawn by the individual");
            see_other(&lang.detail(base, &id))
        }
        Ok(RevokeOutcome::AlreadyEnded) => see_other(&lang.detail(base, &id)),
        Ok(RevokeOutcome::NotFound) => not_found(&state, lang),
        Err(e) => {
            tracing::error!(error = %e, "could not withdraw the consent");
            unavailable(&state, lang)
        }
    }
}

fn forged(state: &AppState, lang: &'static Lang) -> Response {
    let t = lang.t();
    super::error_page(state, t, StatusCode::FORBIDDEN, lang.p.forged)
}

/// `POST …/logout` (`csrf`): ends the login session (and every earlier one
/// of the browser) and clears the cookies; then on to the identity
/// provider's end of session when it has one, else the "logged out" page.
async fn logout(state: AppState, headers: HeaderMap, body: Bytes, lang: &'static Lang) -> Response {
    let person = match person(&state, &headers).await {
        Ok(p) => p,
        Err(StoreFailure) => return unavailable(&state, lang),
    };
    if let Some(person) = person {
        let form = page_form(&headers, &body);
        let presented = form.as_deref().and_then(|f| field(f, "csrf"));
        if !csrf_ok(&state, &headers, &person, presented).await {
            tracing::warn!("portal logout with a missing or wrong CSRF token");
            return forged(&state, lang);
        }
        if let Err(e) = state.store.end_login_sessions(&person.session).await {
            tracing::error!(error = %e, "could not end the login session");
            return unavailable(&state, lang);
        }
        tracing::info!("portal login session ended");
    }
    let mut response = match end_session_url(&state, lang) {
        Some(url) => see_other(&url),
        None => logged_out_page(&state, lang),
    };
    set_browser_cookie(&state, response.headers_mut(), None);
    set_session_cookie(&state, response.headers_mut(), None);
    response
}

/// Where logging out continues at the identity provider, if it has an
/// end-session endpoint. The pages' logout form may end up there, so their
/// CSP's `form-action` allows its origin.
fn end_session_url(state: &AppState, lang: &Lang) -> Option<String> {
    let return_to = lang.logged_out_page(state.settings.base_url());
    state.identity.as_deref()?.end_session_url(&return_to)
}

#[derive(Serialize)]
struct LoggedOutContext<'a> {
    t: &'static Texts,
    p: &'static PortalTexts,
    title: &'a str,
    sandbox: bool,
    base: &'a str,
    home: String,
}

fn logged_out_page(state: &AppState, lang: &'static Lang) -> Response {
    let base = state.settings.base_url();
    let context = LoggedOutContext {
        t: lang.t(),
        p: lang.p,
        title: lang.p.logged_out_heading,
        sandbox: state.settings.sandbox,
        base,
        home: lang.list(base, 1),
    };
    render_page(state, lang, "portal_logged_out.html", context)
}

// --- routes ---------------------------------------------------------------
//
// Each handler serves both languages: `EN = false` the bokmål paths under
// `/min-side`, `EN = true` the English ones under `/en/my-page`.

/// The id in the path; an undecodable one (`%FF`) is as unknown as any
/// other malformed id, so it gets the same answer.
fn id_of(id: Result<Path<String>, PathRejection>) -> String {
    id.map(|Path(id)| id).unwrap_or_default()
}

const fn language(en: bool) -> &'static Lang {
    if en {
        &EN_PORTAL
    } else {
        &NB_PORTAL
    }
}

/// `GET /min-side`, `GET /en/my-page`
pub async fn get_list<const EN: bool>(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Response {
    list(state, headers, q, language(EN)).await
}

/// `GET /min-side/samtykke/{id}`, `GET /en/my-page/consent/{id}`
pub async fn get_consent<const EN: bool>(
    State(state): State<AppState>,
    headers: HeaderMap,
    id: Result<Path<String>, PathRejection>,
    RawQuery(q): RawQuery,
) -> Response {
    detail(state, headers, id_of(id), q, language(EN)).await
}

/// `GET /min-side/samtykke/{id}/trekk-tilbake`,
/// `GET /en/my-page/consent/{id}/withdraw`
pub async fn get_withdraw<const EN: bool>(
    State(state): State<AppState>,
    headers: HeaderMap,
    id: Result<Path<String>, PathRejection>,
) -> Response {
    confirm_withdrawal(state, headers, id_of(id), language(EN)).await
}

/// `POST /min-side/samtykke/{id}/trekk-tilbake`,
/// `POST /en/my-page/consent/{id}/withdraw`
pub async fn post_withdraw<const EN: bool>(
    State(state): State<AppState>,
    headers: HeaderMap,
    id: Result<Path<String>, PathRejection>,
    body: Bytes,
) -> Response {
    withdraw(state, headers, id_of(id), body, language(EN)).await
}

/// `POST /min-side/logout`, `POST /en/my-page/logout`
pub async fn post_logout<const EN: bool>(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    logout(state, headers, body, language(EN)).await
}

/// `GET /min-side/logget-ut`, `GET /en/my-page/logged-out`: where the
/// identity provider sends the browser back after its own logout.
pub async fn get_logged_out<const EN: bool>(State(state): State<AppState>) -> Response {
    logged_out_page(&state, language(EN))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_shown_in_norwegian_time_with_their_zone() {
        let winter = OffsetDateTime::from_unix_timestamp(1_796_000_000).unwrap();
        let summer = OffsetDateTime::from_unix_timestamp(1_782_000_000).unwrap();
        if jiff::tz::TimeZone::get("Europe/Oslo").is_ok() {
            // 2026-11-30 00:53:20 UTC and 2026-06-21 00:00:00 UTC.
            assert_eq!(shown_time(winter), "30.11.2026 01:53 CET");
            assert_eq!(shown_time_to_the_second(winter), "30.11.2026 01:53:20 CET");
            assert_eq!(shown_time(summer), "21.06.2026 02:00 CEST");
        } else {
            assert_eq!(shown_time(winter), "30.11.2026 00:53 UTC");
        }
    }

    #[test]
    fn page_numbers_are_read_in_the_language_and_bounded() {
        assert_eq!(page_number(Some("side=3"), &NB_PORTAL), 3);
        assert_eq!(page_number(Some("page=3"), &NB_PORTAL), 1);
        assert_eq!(page_number(Some("page=2"), &EN_PORTAL), 2);
        assert_eq!(page_number(Some("side=0"), &NB_PORTAL), 1);
        assert_eq!(page_number(Some("side=x"), &NB_PORTAL), 1);
        assert_eq!(page_number(None, &NB_PORTAL), 1);
        assert_eq!(page_count(0, 20), 1);
        assert_eq!(page_count(20, 20), 1);
        assert_eq!(page_count(21, 20), 2);
    }

    #[test]
    fn the_two_languages_link_to_each_other() {
        let id = ConsentId::generate();
        assert_eq!(
            NB_PORTAL.other.detail("", &id),
            format!("/en/my-page/consent/{id}")
        );
        assert_eq!(
            EN_PORTAL.other.withdrawal("", &id),
            format!("/min-side/samtykke/{id}/trekk-tilbake")
        );
        assert_eq!(NB_PORTAL.list("", 2), "/min-side?side=2");
        assert_eq!(
            EN_PORTAL.login("http://x"),
            "http://x/min-side/login?return=/en/my-page"
        );
    }
}
