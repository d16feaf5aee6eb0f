//! Prometheus metrics (`GET /metrics`): per-route request counts and latency
//! histograms, recorded by [`MetricsLayer`], and the counters the handlers
//! bump (tokens issued, consents created/revoked/consumed, debt lookups).
//! The database-pool gauges are read when the metrics are scraped.
//!
//! Every server ([`crate::AppState`]) has its own registry, so two servers in
//! one process (as in the tests) never mix their figures. Every metric is
//! documented in `docs/operations.md` ("Metrics").

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, State};
use axum::http::{header, HeaderValue, Method, Request, Response, StatusCode};
use axum::response::IntoResponse;
use prometheus::core::Collector;
use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    TextEncoder,
};
use samtykke_core::consent::{Consent, ConsentDuration, ConsentKind, RevokedBy};
use samtykke_core::domain::{ApiAudience, Purpose};
use samtykke_core::store::PoolStats;

use crate::AppState;

/// Latency buckets in seconds: fine below 10 ms, where a healthy server
/// answers, coarse above.
const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

/// The `route` label of a request that matched no route (the raw path is
/// never a label: it would let any caller create series).
const UNMATCHED: &str = "unmatched";

/// The server's metrics.
pub struct Metrics {
    http_requests: IntCounterVec,
    http_duration: HistogramVec,
    tokens_issued: IntCounterVec,
    consents_created: IntCounterVec,
    consents_revoked: IntCounterVec,
    consents_consumed: IntCounterVec,
    debt_lookups: IntCounterVec,
    pool_connections: IntGauge,
    pool_idle: IntGauge,
    pool_max: IntGauge,
    build_info: IntGaugeVec,
    connections_open: IntGaugeVec,
    connections_refused: IntCounterVec,
    connections_timed_out: IntCounterVec,
    /// The delivery listener's (pushUpdates).
    pub(crate) push: crate::delivery::PushMetrics,
}

/// One listener's connection metrics (see `crate::server`).
pub(crate) struct ConnectionMetrics {
    pub open: IntGauge,
    pub refused_max_connections: IntCounter,
    pub refused_max_connections_per_ip: IntCounter,
    pub closed_header_timeout: IntCounter,
    pub closed_idle_timeout: IntCounter,
}

/// Failed TLS handshakes, by reason (`samtykke_push_handshake_failures_total`:
/// the delivery listener is the only TLS listener).
pub(crate) struct HandshakeFailures(IntCounterVec);

impl HandshakeFailures {
    /// Every reason [`Self::reason`] gives, and `timeout`.
    pub const REASONS: [&'static str; 4] =
        ["no_certificate", "bad_certificate", "timeout", "other"];

    pub fn failed(&self, reason: &str) {
        self.0.with_label_values(&[reason]).inc();
    }

    /// Why a handshake failed: the client sent no certificate, or one that
    /// was not accepted (another CA, expired, not for client
    /// authentication), or anything else (not TLS, a protocol error).
    pub fn reason(e: &std::io::Error) -> &'static str {
        use rustls::Error;
        match e.get_ref().and_then(|inner| inner.downcast_ref::<Error>()) {
            Some(Error::NoCertificatesPresented) => "no_certificate",
            Some(Error::InvalidCertificate(_)) => "bad_certificate",
            _ => "other",
        }
    }
}

/// Metric construction fails only for an invalid name or label, which are
/// constants here (and `metrics_render` in the tests below builds them all).
#[allow(clippy::expect_used)]
pub(crate) fn fixed<T>(metric: prometheus::Result<T>) -> T {
    metric.expect("metric names and labels are valid constants")
}

pub(crate) fn counter(name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    fixed(IntCounterVec::new(Opts::new(name, help), labels))
}

fn gauge(name: &str, help: &str) -> IntGauge {
    fixed(IntGauge::new(name, help))
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let metrics = Self {
            http_requests: counter(
                "samtykke_http_requests_total",
                "HTTP requests answered, by route template, method and status.",
                &["route", "method", "status"],
            ),
            http_duration: fixed(HistogramVec::new(
                HistogramOpts::new(
                    "samtykke_http_request_duration_seconds",
                    "Time from receiving a request to its response headers, by route template, method and status.",
                )
                .buckets(LATENCY_BUCKETS.to_vec()),
                &["route", "method", "status"],
            )),
            tokens_issued: counter(
                "samtykke_tokens_issued_total",
                "Access tokens issued, by grant type and audience.",
                &["grant_type", "audience"],
            ),
            consents_created: counter(
                "samtykke_consents_created_total",
                "Consents created (committed), by kind and purpose scope.",
                &["kind", "purpose"],
            ),
            consents_revoked: counter(
                "samtykke_consents_revoked_total",
                "Active consents revoked, by who revoked them.",
                &["by"],
            ),
            consents_consumed: counter(
                "samtykke_consents_consumed_total",
                "Single-use consents consumed by their one debt fetch, by purpose scope.",
                &["purpose"],
            ),
            debt_lookups: counter(
                "samtykke_debt_lookups_total",
                "Successful debt fetches (each with its usage record committed), by purpose scope.",
                &["purpose"],
            ),
            pool_connections: gauge(
                "samtykke_db_pool_connections",
                "Open database connections in the pool, idle or in use (at scrape time).",
            ),
            pool_idle: gauge(
                "samtykke_db_pool_idle_connections",
                "Open database connections not in use (at scrape time).",
            ),
            pool_max: gauge(
                "samtykke_db_pool_max_connections",
                "The most connections the pool opens.",
            ),
            build_info: fixed(IntGaugeVec::new(
                Opts::new("samtykke_build_info", "Always 1; the label names the version."),
                &["version"],
            )),
            connections_open: fixed(IntGaugeVec::new(
                Opts::new(
                    "samtykke_connections_open",
                    "Open client connections, by listener (public, admin).",
                ),
                &["listener"],
            )),
            connections_refused: counter(
                "samtykke_connections_refused_total",
                "Connections closed at once because a cap was reached, by listener and cap (max_connections, max_connections_per_ip).",
                &["listener", "reason"],
            ),
            connections_timed_out: counter(
                "samtykke_connections_timed_out_total",
                "Connections closed by the server because a request's headers came too slowly or the connection sat idle, by listener and reason (header_timeout, idle_timeout).",
                &["listener", "reason"],
            ),
            push: crate::delivery::PushMetrics::new(),
        };
        metrics.connections("public");
        // Series known in advance exist from the start, at 0.
        for audience in ApiAudience::ALL {
            metrics
                .tokens_issued
                .with_label_values(&["client_credentials", audience.as_key()]);
        }
        for purpose in [Purpose::Presentation, Purpose::Processing] {
            let scope = purpose.scope_name();
            metrics
                .consents_created
                .with_label_values(&[ConsentKind::Agreement.as_str(), scope]);
            metrics.consents_consumed.with_label_values(&[scope]);
            metrics.debt_lookups.with_label_values(&[scope]);
        }
        for by in [RevokedBy::Client, RevokedBy::Individual] {
            metrics.consents_revoked.with_label_values(&[by.as_str()]);
        }
        metrics
            .build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);
        metrics
    }

    /// One answered request.
    fn observe_request(&self, route: &str, method: &str, status: StatusCode, elapsed: Duration) {
        let labels = [route, method, status.as_str()];
        self.http_requests.with_label_values(&labels).inc();
        self.http_duration
            .with_label_values(&labels)
            .observe(elapsed.as_secs_f64());
    }

    /// An access token was stored and is about to be returned.
    pub(crate) fn token_issued(&self, grant_type: &str, audience: ApiAudience) {
        self.tokens_issued
            .with_label_values(&[grant_type, audience.as_key()])
            .inc();
    }

    /// A new consent was committed.
    pub(crate) fn consent_created(&self, consent: &Consent) {
        self.consents_created
            .with_label_values(&[consent.kind.as_str(), consent.purpose.scope_name()])
            .inc();
    }

    /// An active consent was revoked.
    pub(crate) fn consent_revoked(&self, by: RevokedBy) {
        self.consents_revoked
            .with_label_values(&[by.as_str()])
            .inc();
    }

    /// A debt fetch was recorded in the usage log of `consent` (as it was
    /// before that use): a single-use consent is now consumed.
    pub(crate) fn debt_fetched(&self, consent: &Consent) {
        let scope = [consent.purpose.scope_name()];
        self.debt_lookups.with_label_values(&scope).inc();
        if consent.duration == ConsentDuration::SingleUse {
            self.consents_consumed.with_label_values(&scope).inc();
        }
    }

    /// The connection metrics of the listener `listener` (its series exist
    /// from this call on, at 0).
    pub(crate) fn connections(&self, listener: &str) -> ConnectionMetrics {
        ConnectionMetrics {
            open: self.connections_open.with_label_values(&[listener]),
            refused_max_connections: self
                .connections_refused
                .with_label_values(&[listener, "max_connections"]),
            refused_max_connections_per_ip: self
                .connections_refused
                .with_label_values(&[listener, "max_connections_per_ip"]),
            closed_header_timeout: self
                .connections_timed_out
                .with_label_values(&[listener, "header_timeout"]),
            closed_idle_timeout: self
                .connections_timed_out
                .with_label_values(&[listener, "idle_timeout"]),
        }
    }

    /// A TLS listener's failed handshakes.
    pub(crate) fn handshake_failures(&self, _listener: &str) -> HandshakeFailures {
        HandshakeFailures(self.push.handshake_failures.clone())
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self, pool: Option<PoolStats>) -> Vec<u8> {
        let collectors: [&dyn Collector; 11] = [
            &self.http_requests,
            &self.http_duration,
            &self.tokens_issued,
            &self.consents_created,
            &self.consents_revoked,
            &self.consents_consumed,
            &self.debt_lookups,
            &self.build_info,
            &self.connections_open,
            &self.connections_refused,
            &self.connections_timed_out,
        ];
        let mut families: Vec<_> = collectors.iter().flat_map(|c| c.collect()).collect();
        families.extend(self.push.collect());
        if let Some(pool) = pool {
            self.pool_connections.set(i64::from(pool.size));
            self.pool_idle.set(i64::from(pool.idle));
            self.pool_max.set(i64::from(pool.max));
            for gauge in [&self.pool_connections, &self.pool_idle, &self.pool_max] {
                families.extend(gauge.collect());
            }
        }
        // The encoder refuses a family without series (a vector nobody has
        // used yet): leave those out, as a registry would.
        families.retain(|family| !family.get_metric().is_empty());
        let mut out = Vec::with_capacity(16 * 1024);
        if let Err(e) = TextEncoder::new().encode(&families, &mut out) {
            tracing::error!(error = %e, "could not render the metrics");
        }
        out
    }
}

/// `GET /metrics`: the Prometheus text format (version 0.0.4).
pub async fn get_metrics(State(state): State<AppState>) -> impl IntoResponse {
    let mut body = state.metrics.render(state.store.pool_stats());
    // The lookups' per-creditor figures (see `crate::creditor_fanout`).
    body.extend(state.fanout.metrics.render());
    // The creditors' getalldata state, as the store has it.
    if let Ok(creditors) = state.store.list_creditors().await {
        body.extend_from_slice(
            crate::creditors::metrics::render_sync_metrics(&creditors).as_bytes(),
        );
    }
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
        ],
        body,
    )
}

/// Records every request's route template, method, status and latency.
/// Added with `Router::layer`, so it runs after routing and sees
/// [`MatchedPath`]. Per request it costs a clock read, two label look-ups
/// and atomic additions; nothing is allocated once a series exists.
#[derive(Clone)]
pub struct MetricsLayer {
    metrics: Arc<Metrics>,
}

impl MetricsLayer {
    pub fn new(state: &AppState) -> Self {
        Self {
            metrics: state.metrics.clone(),
        }
    }
}

impl<S> tower::Layer<S> for MetricsLayer {
    type Service = MetricsService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        MetricsService {
            inner,
            metrics: self.metrics.clone(),
        }
    }
}

#[derive(Clone)]
pub struct MetricsService<S> {
    inner: S,
    metrics: Arc<Metrics>,
}

/// A fixed label for the method: an unusual method cannot create series.
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::PATCH => "PATCH",
        _ => "other",
    }
}

impl<S, B, ResBody> tower::Service<Request<B>> for MetricsService<S>
where
    S: tower::Service<Request<B>, Response = Response<ResBody>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        // MatchedPath holds an Arc<str>: cloning it does not allocate.
        let route = request.extensions().get::<MatchedPath>().cloned();
        let method = method_label(request.method());
        ResponseFuture {
            inner: self.inner.call(request),
            metrics: self.metrics.clone(),
            route,
            method,
            start: Instant::now(),
        }
    }
}

pin_project_lite::pin_project! {
    /// The inner response future, timed.
    pub struct ResponseFuture<F> {
        #[pin]
        inner: F,
        metrics: Arc<Metrics>,
        route: Option<MatchedPath>,
        method: &'static str,
        start: Instant,
    }
}

impl<F, ResBody, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<ResBody>, E>>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = ready!(this.inner.poll(cx));
        if let Ok(response) = &result {
            let route = this.route.as_ref().map_or(UNMATCHED, MatchedPath::as_str);
            this.metrics.observe_request(
                route,
                this.method,
                response.status(),
                this.start.elapsed(),
            );
        }
        Poll::Ready(result)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_render() {
        let metrics = Metrics::new();
        // Before any request: the HTTP families have no series yet.
        let text = String::from_utf8(metrics.render(None)).unwrap();
        assert!(text.contains("samtykke_build_info"), "{text}");
        assert!(!text.contains("samtykke_http_requests_total"), "{text}");
        metrics.observe_request(
            "/v1/debt/{id}",
            "GET",
            StatusCode::FORBIDDEN,
            Duration::from_micros(700),
        );
        metrics.token_issued("client_credentials", ApiAudience::Debt);
        let text = String::from_utf8(metrics.render(Some(PoolStats {
            size: 3,
            idle: 2,
            max: 8,
        })))
        .unwrap();
        assert!(text.contains(
            r#"samtykke_http_requests_total{method="GET",route="/v1/debt/{id}",status="403"} 1"#
        ));
        assert!(text.contains(
            r#"samtykke_http_request_duration_seconds_bucket{method="GET",route="/v1/debt/{id}",status="403",le="0.001"} 1"#
        ));
        assert!(text.contains(
            r#"samtykke_http_request_duration_seconds_bucket{method="GET",route="/v1/debt/{id}",status="403",le="0.0005"} 0"#
        ));
        assert!(text.contains(
            r#"samtykke_tokens_issued_total{audience="debt",grant_type="client_credentials"} 1"#
        ));
        assert!(text.contains(r#"samtykke_tokens_issued_total{audience="consent_feed",grant_type="client_credentials"} 0"#));
        assert!(text.contains("samtykke_db_pool_connections 3"));
        assert!(text.contains("samtykke_db_pool_idle_connections 2"));
        assert!(text.contains("samtykke_db_pool_max_connections 8"));
        assert!(text.contains("# TYPE samtykke_http_request_duration_seconds histogram"));
    }

    #[test]
    fn unusual_methods_share_one_label() {
        assert_eq!(method_label(&Method::from_bytes(b"BREW").unwrap()), "other");
    }
}
