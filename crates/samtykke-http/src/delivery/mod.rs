//! The delivery listener: `pushUpdates`, the creditors' way to tell the
//! registry about a new loan, a changed credit limit or a closed loan
//! without waiting for the daily `getalldata` (docs/creditors.md).
//!
//! `POST /push/rest/v1/debt/loans` on a listener of its own
//! (`serve --delivery-listen`) with mutual TLS required ([`tls`]): the
//! client certificate's `organizationIdentifier` (`NTRNO-<org>`,
//! [`certificate`]) names the organisation pushing, which must be a
//! registered, enabled creditor or the IT provider (`certificate_org`) of
//! one; it may push only the `financialInstitutionID`s it serves. The body is
//! the delivery shape (`providerID`, `customers[]`), validated like an import
//! (any violation rejects the whole push), and replaces, in one transaction,
//! the loans of every pushed customer at its institution: a customer pushed
//! with `"loans": []` has none left there. The next lookup serves it.
//!
//! Answers: `200` with what was stored; errors
//! `{error, error_description, timestamp, trace_id}` (`trace_id` echoes
//! `X-Trace-ID`): `400` invalid body, `401` a certificate that names no
//! registered creditor, `403` a disabled creditor or another institution's
//! `financialInstitutionID`, `413` a body over [`MAX_PUSH_BODY_BYTES`],
//! `503` database unreachable (nothing stored), `500`.

pub mod certificate;
pub mod tls;

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Extension, State};
use axum::http::{header, HeaderValue, Request, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use prometheus::core::Collector;
use prometheus::{IntCounter, IntCounterVec};
use rustls::pki_types::CertificateDer;
use samtykke_core::creditor::{Creditor, FinancialInstitutionId};
use samtykke_core::debt::{parse_delivery, ProviderId};
use samtykke_core::domain::OrgNumber;
use samtykke_core::store::StoreError;
use serde_json::json;

use crate::api::dto::ApiErrorBody;
use crate::api::iso;
use crate::api::trace::TraceId;
use crate::metrics::{counter, fixed};
use crate::AppState;

pub use certificate::{organisation_of, CertificateOrgError};
pub use tls::{server_config, DeliveryTlsError, DeliveryTlsFiles, ALPN_H2};

/// The pushUpdates path.
pub const PUSH_PATH: &str = "/push/rest/v1/debt/loans";

/// The largest push body: a push carries the customers whose loans changed
/// (a whole dataset goes by `getalldata`).
pub const MAX_PUSH_BODY_BYTES: usize = 16 * 1024 * 1024;

/// The client's certificate chain (leaf first), as the TLS handshake
/// verified it; a request extension on the delivery listener.
#[derive(Clone)]
pub struct PeerCertificates(Arc<[CertificateDer<'static>]>);

impl PeerCertificates {
    pub(crate) fn new(chain: &[CertificateDer<'_>]) -> Self {
        Self(chain.iter().map(|c| c.clone().into_owned()).collect())
    }

    /// The client's own certificate.
    fn leaf(&self) -> Option<&CertificateDer<'static>> {
        self.0.first()
    }
}

/// The delivery listener's routes: pushUpdates only.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route(PUSH_PATH, post(post_push))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(tower_http::set_header::SetResponseHeaderLayer::if_not_present(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .layer(
            // Method and path only: never a header or the body.
            tower_http::trace::TraceLayer::new_for_http().make_span_with(|req: &Request<_>| {
                tracing::info_span!("delivery", method = %req.method(), path = %req.uri().path())
            }),
        )
        .layer(crate::server::LateBodyLayer)
        .layer(crate::metrics::MetricsLayer::new(&state))
        .with_state(state)
}

async fn not_found(trace: TraceId, State(state): State<AppState>) -> PushError {
    PushError::new(PushErrorKind::NotFound, trace, &state)
}

async fn method_not_allowed(trace: TraceId, State(state): State<AppState>) -> PushError {
    PushError::new(PushErrorKind::MethodNotAllowed, trace, &state)
}

/// `POST /push/rest/v1/debt/loans`.
async fn post_push(
    State(state): State<AppState>,
    trace: TraceId,
    certificates: Option<Extension<PeerCertificates>>,
    body: Body,
) -> Response {
    let metrics = &state.metrics.push;
    match push(&state, &trace, certificates.map(|Extension(c)| c), body).await {
        Ok(stored) => {
            metrics.accepted(&stored);
            tracing::info!(
                trace_id = %trace.0,
                certificate_org = %stored.certificate_org,
                institutions = %stored.institutions.iter().map(FinancialInstitutionId::as_str).collect::<Vec<_>>().join(","),
                customers = stored.customers,
                loans = stored.loans,
                "push stored"
            );
            let mut response = (
                StatusCode::OK,
                Json(json!({
                    "providerID": stored.provider_id,
                    "financialInstitutionIDs": stored.institutions.iter().map(FinancialInstitutionId::as_str).collect::<Vec<_>>(),
                    "customers": stored.customers,
                    "loans": stored.loans,
                    "timestamp": iso(state.clock.now()),
                    "trace_id": trace.0,
                })),
            )
                .into_response();
            no_store_and_trace(&mut response, &trace.0);
            response
        }
        Err(kind) => {
            metrics.refused(kind.outcome());
            if matches!(
                kind,
                PushErrorKind::Unauthorized(_) | PushErrorKind::Forbidden(_)
            ) {
                tracing::warn!(trace_id = %trace.0, reason = %kind.description(), "push refused");
            } else {
                tracing::info!(trace_id = %trace.0, outcome = kind.outcome(), "push rejected");
            }
            PushError::new(kind, trace, &state).into_response()
        }
    }
}

/// What an accepted push stored.
struct Stored {
    certificate_org: OrgNumber,
    provider_id: String,
    /// In the order of the body.
    institutions: Vec<FinancialInstitutionId>,
    customers: u64,
    loans: u64,
}

async fn push(
    state: &AppState,
    trace: &TraceId,
    certificates: Option<PeerCertificates>,
    body: Body,
) -> Result<Stored, PushErrorKind> {
    // Who: before a byte of the body is read.
    let leaf = certificates
        .as_ref()
        .and_then(PeerCertificates::leaf)
        // The listener requires one; a router served without TLS has none.
        .ok_or_else(|| PushErrorKind::Unauthorized("a client certificate is required".into()))?;
    let certificate_org =
        organisation_of(leaf).map_err(|e| PushErrorKind::Unauthorized(e.to_string()))?;
    let creditors = state
        .store
        .find_creditors_by_certificate_org(&certificate_org)
        .await
        .map_err(|e| store_failure(e, trace))?;
    let allowed = Allowed::of(&certificate_org, &creditors)?;

    let body = read_body(body).await?;
    let text = std::str::from_utf8(&body)
        .map_err(|_| PushErrorKind::Invalid("the body is not UTF-8 JSON".into()))?;
    let mut delivery = parse_delivery(text, state.nin_policy())
        .map_err(|e| PushErrorKind::Invalid(e.to_string()))?;
    allowed.check_provider(&delivery.provider_id)?;
    let institutions = delivery.financial_institutions.clone();
    for fi in &institutions {
        allowed.check_institution(fi)?;
    }
    // The registered name is the one shown, whatever the body says.
    for entry in &mut delivery.entries {
        if let Some(creditor) = allowed.enabled.iter().find(|c| c.id == entry.creditor_org) {
            entry.creditor_name.clone_from(&creditor.name);
        }
    }
    let loans = state
        .store
        .apply_push(&delivery, state.clock.now())
        .await
        .map_err(|e| store_failure(e, trace))?;
    Ok(Stored {
        certificate_org,
        provider_id: delivery.provider_id.iso6523(),
        institutions,
        customers: delivery.customers.len() as u64,
        loans,
    })
}

/// The institutions a certificate may push for.
struct Allowed<'a> {
    certificate_org: &'a OrgNumber,
    enabled: Vec<&'a Creditor>,
    disabled: Vec<&'a Creditor>,
}

impl<'a> Allowed<'a> {
    /// `creditors`: those whose own number or `certificate_org` is the
    /// certificate's organisation.
    fn of(
        certificate_org: &'a OrgNumber,
        creditors: &'a [Creditor],
    ) -> Result<Self, PushErrorKind> {
        let (enabled, disabled): (Vec<_>, Vec<_>) = creditors.iter().partition(|c| c.enabled);
        if creditors.is_empty() {
            return Err(PushErrorKind::Unauthorized(format!(
                "organisation {certificate_org} (the client certificate's organizationIdentifier) is not a registered creditor or the IT provider of one"
            )));
        }
        if enabled.is_empty() {
            return Err(PushErrorKind::Forbidden(format!(
                "the creditors of organisation {certificate_org} are disabled"
            )));
        }
        Ok(Self {
            certificate_org,
            enabled,
            disabled,
        })
    }

    /// `providerID`: the certificate's organisation or one of the
    /// institutions it serves.
    fn check_provider(&self, provider: &ProviderId) -> Result<(), PushErrorKind> {
        let provider = provider.as_str();
        let served = |c: &&Creditor| c.id.as_str() == provider;
        if provider == self.certificate_org.as_str() || self.enabled.iter().any(served) {
            return Ok(());
        }
        Err(PushErrorKind::Forbidden(format!(
            "providerID {provider} is neither the client certificate's organisation ({}) nor an institution it serves",
            self.certificate_org
        )))
    }

    fn check_institution(&self, fi: &FinancialInstitutionId) -> Result<(), PushErrorKind> {
        if self.enabled.iter().any(|c| &c.id == fi) {
            return Ok(());
        }
        if self.disabled.iter().any(|c| &c.id == fi) {
            return Err(PushErrorKind::Forbidden(format!(
                "creditor {fi} is disabled; nothing was stored"
            )));
        }
        Err(PushErrorKind::Forbidden(format!(
            "organisation {} may not push for financialInstitutionID {fi}; nothing was stored",
            self.certificate_org
        )))
    }
}

async fn read_body(body: Body) -> Result<Vec<u8>, PushErrorKind> {
    use http_body_util::BodyExt;
    let limited = http_body_util::Limited::new(body, MAX_PUSH_BODY_BYTES);
    match limited.collect().await {
        Ok(collected) => Ok(collected.to_bytes().to_vec()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(PushErrorKind::TooLarge),
        // A body that came too late is answered 408 by the server.
        Err(_) => Err(PushErrorKind::Invalid(
            "the request body could not be read".into(),
        )),
    }
}

fn store_failure(e: StoreError, trace: &TraceId) -> PushErrorKind {
    tracing::error!(error = %e, trace_id = %trace.0, "storage failure on the delivery listener");
    match e {
        StoreError::Unavailable(_) => PushErrorKind::Unavailable,
        _ => PushErrorKind::Internal,
    }
}

fn no_store_and_trace(response: &mut Response, trace_id: &str) {
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Ok(v) = HeaderValue::from_str(trace_id) {
        headers.insert("x-trace-id", v);
    }
}

/// Why a push was refused.
#[derive(Debug)]
enum PushErrorKind {
    /// 400: the body is not a valid delivery; nothing was stored.
    Invalid(String),
    /// 401: the client certificate names no registered creditor.
    Unauthorized(String),
    /// 403: a disabled creditor, or an institution the certificate does not
    /// serve.
    Forbidden(String),
    /// 404
    NotFound,
    /// 405
    MethodNotAllowed,
    /// 413
    TooLarge,
    /// 503: the database is unreachable; nothing was stored.
    Unavailable,
    /// 500
    Internal,
}

impl PushErrorKind {
    /// The `outcome` label of `samtykke_push_requests_total`.
    fn outcome(&self) -> &'static str {
        match self {
            Self::Invalid(_) => "invalid",
            Self::Unauthorized(_) => "unauthorized",
            Self::Forbidden(_) => "forbidden",
            Self::NotFound | Self::MethodNotAllowed => "not_found",
            Self::TooLarge => "too_large",
            Self::Unavailable => "unavailable",
            Self::Internal => "error",
        }
    }

    fn status_and_error(&self) -> (StatusCode, &'static str) {
        match self {
            Self::Invalid(_) => (StatusCode::BAD_REQUEST, "invalid_request"),
            Self::Unauthorized(_) => (StatusCode::UNAUTHORIZED, "unauthorized"),
            Self::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
            Self::NotFound => (StatusCode::NOT_FOUND, "not_found"),
            Self::MethodNotAllowed => (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
            Self::TooLarge => (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"),
            Self::Unavailable => (StatusCode::SERVICE_UNAVAILABLE, "temporarily_unavailable"),
            Self::Internal => (StatusCode::INTERNAL_SERVER_ERROR, "server_error"),
        }
    }

    fn description(&self) -> String {
        match self {
            Self::Invalid(m) => format!("invalid delivery, nothing was stored: {m}"),
            Self::Unauthorized(m) | Self::Forbidden(m) => m.clone(),
            Self::NotFound => format!("no such endpoint; pushUpdates is POST {PUSH_PATH}"),
            Self::MethodNotAllowed => format!("{PUSH_PATH} accepts POST only"),
            Self::TooLarge => format!(
                "the body exceeds {} MiB; send the whole dataset through getalldata",
                MAX_PUSH_BODY_BYTES / (1024 * 1024)
            ),
            Self::Unavailable => {
                "the service is temporarily unavailable; nothing was stored".into()
            }
            Self::Internal => "An unexpected server error occurred".into(),
        }
    }
}

/// An error answer of the delivery listener.
struct PushError {
    kind: PushErrorKind,
    trace_id: String,
    now: time::OffsetDateTime,
}

impl PushError {
    fn new(kind: PushErrorKind, trace: TraceId, state: &AppState) -> Self {
        Self {
            kind,
            trace_id: trace.0,
            now: state.clock.now(),
        }
    }
}

impl IntoResponse for PushError {
    fn into_response(self) -> Response {
        let (status, error) = self.kind.status_and_error();
        let body = ApiErrorBody {
            error: error.to_owned(),
            error_description: self.kind.description(),
            timestamp: iso(self.now),
            trace_id: self.trace_id.clone(),
        };
        let mut response = (status, Json(body)).into_response();
        no_store_and_trace(&mut response, &self.trace_id);
        response
    }
}

/// `samtykke_push_*` (docs/operations.md).
pub(crate) struct PushMetrics {
    requests: IntCounterVec,
    customers: IntCounter,
    loans: IntCounter,
    pub(crate) handshake_failures: IntCounterVec,
}

impl PushMetrics {
    pub(crate) fn new() -> Self {
        let metrics = Self {
            requests: counter(
                "samtykke_push_requests_total",
                "pushUpdates requests answered, by outcome (accepted, invalid, unauthorized, forbidden, too_large, not_found, unavailable, error).",
                &["outcome"],
            ),
            customers: fixed(IntCounter::new(
                "samtykke_push_customers_total",
                "Customers whose loans at an institution were replaced by accepted pushes.",
            )),
            loans: fixed(IntCounter::new(
                "samtykke_push_loans_total",
                "Loans stored by accepted pushes.",
            )),
            handshake_failures: counter(
                "samtykke_push_handshake_failures_total",
                "Failed TLS handshakes on the delivery listener, by reason (no_certificate, bad_certificate, timeout, other).",
                &["reason"],
            ),
        };
        for outcome in [
            "accepted",
            "invalid",
            "unauthorized",
            "forbidden",
            "too_large",
        ] {
            metrics.requests.with_label_values(&[outcome]);
        }
        for reason in crate::metrics::HandshakeFailures::REASONS {
            metrics.handshake_failures.with_label_values(&[reason]);
        }
        metrics
    }

    fn accepted(&self, stored: &Stored) {
        self.requests.with_label_values(&["accepted"]).inc();
        self.customers.inc_by(stored.customers);
        self.loans.inc_by(stored.loans);
    }

    fn refused(&self, outcome: &str) {
        self.requests.with_label_values(&[outcome]).inc();
    }

    pub(crate) fn collect(&self) -> Vec<prometheus::proto::MetricFamily> {
        let mut families = self.requests.collect();
        families.extend(self.customers.collect());
        families.extend(self.loans.collect());
        families.extend(self.handshake_failures.collect());
        families
    }
}
