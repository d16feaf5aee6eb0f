//! The accept loop: HTTP/1.1 on hyper, with connection-level limits so that
//! a slow or idle client cannot hold the server's sockets (issue 24).
//!
//! Per listener:
//! * at most [`ConnectionLimits::max_connections`] open connections, and at
//!   most [`ConnectionLimits::max_connections_per_ip`] from one source
//!   address; a connection past either cap is closed at once, before a byte
//!   is read, so accepted connections never wait for it;
//! * a connection's first request must have its headers complete within
//!   [`ConnectionLimits::header_read_timeout`] of the connection opening,
//!   and a later request within that time of its first byte;
//! * a keep-alive connection with no request in progress is closed once it
//!   has sent nothing for [`ConnectionLimits::idle_timeout`];
//! * a request body must have arrived within
//!   [`ConnectionLimits::body_read_timeout`] of its headers; a handler that
//!   was reading it is answered `408 Request Timeout` and the connection is
//!   closed.
//!
//! A watchdog in each connection's task enforces the two connection timers
//! by dropping the connection (the socket is closed); hyper's own header
//! timer is off, because it also counts the wait for a keep-alive
//! connection's next request.
//!
//! The delivery listener (`serve --delivery-listen`, pushUpdates) has the
//! same limits, with mutual TLS in front: the handshake must complete within
//! the header read timeout (its bytes count as the first request's), and
//! HTTP/2 is served when the client asks for it by ALPN (every stream of an
//! HTTP/2 connection has its own body deadline).
//!
//! Graceful shutdown: when the shutdown future completes the listeners stop
//! accepting, every connection finishes the request it is serving (idle
//! ones close at once), and [`serve`] returns when the last has closed.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes, HttpBody};
use axum::http::{header, HeaderValue, Request, Response, StatusCode};
use axum::response::IntoResponse;
use axum::{Json, Router};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use prometheus::{IntCounter, IntGauge};
use serde_json::json;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::time::Instant;
use tower::ServiceExt;

use crate::delivery::PeerCertificates;
use crate::metrics::Metrics;

/// Connection-level limits of a listener. Every field is configurable
/// (`samtykke serve --header-read-timeout …`, docs/configuration.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// A request's headers complete within this of the connection opening
    /// (first request) or of the request's first byte (later requests).
    pub header_read_timeout: Duration,
    /// A connection with no request in progress that sends nothing for this
    /// long is closed.
    pub idle_timeout: Duration,
    /// A request body arrives completely within this of its headers.
    pub body_read_timeout: Duration,
    /// Open connections on the listener, from all addresses together.
    pub max_connections: usize,
    /// Open connections on the listener from one source IP address.
    pub max_connections_per_ip: usize,
}

impl ConnectionLimits {
    /// Safe for a server facing the internet directly.
    pub const DEFAULT: Self = Self {
        header_read_timeout: Duration::from_secs(10),
        idle_timeout: Duration::from_secs(30),
        body_read_timeout: Duration::from_secs(10),
        max_connections: 10_000,
        max_connections_per_ip: 256,
    };

    /// The operator listener's limits: the same timeouts, and room for a
    /// few scrapers and probes (it is never a client's way in).
    pub fn for_admin(&self) -> Self {
        Self {
            max_connections: ADMIN_MAX_CONNECTIONS,
            max_connections_per_ip: ADMIN_MAX_CONNECTIONS,
            ..*self
        }
    }
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// The operator listener's connection cap (per process and per address).
pub const ADMIN_MAX_CONNECTIONS: usize = 64;

/// How [`crate::serve`] serves.
#[derive(Debug)]
pub struct ServeOptions {
    /// Limits of the public listener (the admin listener takes
    /// [`ConnectionLimits::for_admin`]).
    pub limits: ConnectionLimits,
    /// The operator listener (`/metrics`, `/healthz`, `/readyz`), if any.
    pub admin: Option<TcpListener>,
    /// Whether the public listener also answers `GET /metrics`.
    pub metrics_on_public_listener: bool,
    /// The delivery listener (pushUpdates over mutual TLS), if any; it has
    /// the public listener's limits.
    pub delivery: Option<DeliveryListener>,
}

impl Default for ServeOptions {
    fn default() -> Self {
        Self {
            limits: ConnectionLimits::DEFAULT,
            admin: None,
            metrics_on_public_listener: false,
            delivery: None,
        }
    }
}

/// The delivery listener: its socket and its TLS configuration (see
/// [`crate::delivery::server_config`]).
pub struct DeliveryListener {
    pub listener: TcpListener,
    pub tls: Arc<rustls::ServerConfig>,
}

impl std::fmt::Debug for DeliveryListener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeliveryListener")
            .field("listener", &self.listener)
            .finish_non_exhaustive()
    }
}

/// Serves the public router on `listener` (and the operator router on
/// `options.admin`) until `shutdown` completes, then finishes the requests
/// in flight.
pub async fn serve(
    listener: TcpListener,
    state: crate::AppState,
    options: ServeOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let metrics = state.metrics.clone();
    let public = crate::router::router_with(state.clone(), options.metrics_on_public_listener);
    // Dropping the sender tells every loop and connection to stop.
    let (signal_tx, signal_rx) = watch::channel(());
    // Every connection task holds a receiver; `closed` completes when the
    // last is gone.
    let (close_tx, close_rx) = watch::channel(());

    let mut loops = tokio::task::JoinSet::new();
    loops.spawn(accept_loop(
        listener,
        public,
        options.limits,
        Listener::new("public", &metrics),
        None,
        signal_rx.clone(),
        close_rx.clone(),
    ));
    if let Some(delivery) = options.delivery {
        loops.spawn(accept_loop(
            delivery.listener,
            crate::delivery::router(state.clone()),
            options.limits,
            Listener::new("delivery", &metrics),
            Some(tokio_rustls::TlsAcceptor::from(delivery.tls)),
            signal_rx.clone(),
            close_rx.clone(),
        ));
    }
    if let Some(admin) = options.admin {
        loops.spawn(accept_loop(
            admin,
            crate::router::admin_router(state),
            options.limits.for_admin(),
            Listener::new("admin", &metrics),
            None,
            signal_rx.clone(),
            close_rx.clone(),
        ));
    }
    drop((signal_rx, close_rx));

    shutdown.await;
    drop(signal_tx);
    while loops.join_next().await.is_some() {}
    close_tx.closed().await;
    Ok(())
}

/// A listener's name (the `listener` label) and its metrics.
struct Listener {
    name: &'static str,
    open: IntGauge,
    refused_total: IntCounter,
    refused_per_ip: IntCounter,
    header_timeouts: IntCounter,
    idle_timeouts: IntCounter,
    /// TLS listeners: failed handshakes, by reason.
    handshake_failures: crate::metrics::HandshakeFailures,
}

impl Listener {
    fn new(name: &'static str, metrics: &Metrics) -> Self {
        let m = metrics.connections(name);
        Self {
            name,
            open: m.open,
            refused_total: m.refused_max_connections,
            refused_per_ip: m.refused_max_connections_per_ip,
            header_timeouts: m.closed_header_timeout,
            idle_timeouts: m.closed_idle_timeout,
            handshake_failures: metrics.handshake_failures(name),
        }
    }
}

async fn accept_loop(
    listener: TcpListener,
    router: Router,
    limits: ConnectionLimits,
    metrics: Listener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    mut signal: watch::Receiver<()>,
    close: watch::Receiver<()>,
) {
    let metrics = Arc::new(metrics);
    let admission = Arc::new(Admission::default());
    let mut http1 = hyper::server::conn::http1::Builder::new();
    // Our watchdog keeps the header timer (hyper's counts the keep-alive wait).
    http1.header_read_timeout(None).keep_alive(true);
    let http = Arc::new(Protocols {
        http1,
        http2: hyper::server::conn::http2::Builder::new(TokioExecutor::new()),
    });
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    accept_error(e).await;
                    continue;
                }
            },
            _ = signal.changed() => break,
        };
        let slot = match admission.admit(peer.ip(), &limits) {
            Ok(slot) => slot,
            Err(refusal) => {
                match refusal {
                    Refusal::MaxConnections => metrics.refused_total.inc(),
                    Refusal::MaxConnectionsPerIp => metrics.refused_per_ip.inc(),
                }
                tracing::debug!(listener = metrics.name, %peer, ?refusal, "connection refused");
                // Closed at once: no byte of it is read.
                drop(stream);
                continue;
            }
        };
        metrics.open.inc();
        tokio::spawn(serve_connection(
            stream,
            peer,
            router.clone(),
            http.clone(),
            limits,
            Arc::clone(&metrics),
            slot,
            tls.clone(),
            signal.clone(),
            close.clone(),
        ));
    }
}

/// How a listener's connections speak HTTP: HTTP/1.1, or HTTP/2 when a TLS
/// client chose it by ALPN.
struct Protocols {
    http1: hyper::server::conn::http1::Builder,
    http2: hyper::server::conn::http2::Builder<TokioExecutor>,
}

/// Errors of `accept` that concern one connection are skipped; others (out
/// of descriptors) are logged and retried after a pause.
async fn accept_error(e: io::Error) {
    if matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    ) {
        return;
    }
    tracing::error!(error = %e, "accept failed");
    tokio::time::sleep(Duration::from_millis(100)).await;
}

/// Why a connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refusal {
    MaxConnections,
    MaxConnectionsPerIp,
}

/// The listener's open connections, in all and by source address.
#[derive(Default)]
struct Admission {
    open: Mutex<OpenConnections>,
}

#[derive(Default)]
struct OpenConnections {
    total: usize,
    by_ip: HashMap<IpAddr, usize>,
}

impl Admission {
    fn admit(self: &Arc<Self>, ip: IpAddr, limits: &ConnectionLimits) -> Result<Slot, Refusal> {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        if open.total >= limits.max_connections {
            return Err(Refusal::MaxConnections);
        }
        let from_ip = open.by_ip.entry(ip).or_insert(0);
        if *from_ip >= limits.max_connections_per_ip {
            return Err(Refusal::MaxConnectionsPerIp);
        }
        *from_ip += 1;
        open.total += 1;
        Ok(Slot {
            admission: Arc::clone(self),
            ip,
        })
    }
}

/// An admitted connection's place; given back when dropped.
struct Slot {
    admission: Arc<Admission>,
    ip: IpAddr,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = self
            .admission
            .open
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        open.total = open.total.saturating_sub(1);
        if let Some(n) = open.by_ip.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                open.by_ip.remove(&self.ip);
            }
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    router: Router,
    http: Arc<Protocols>,
    limits: ConnectionLimits,
    metrics: Arc<Listener>,
    slot: Slot,
    tls: Option<tokio_rustls::TlsAcceptor>,
    signal: watch::Receiver<()>,
    close: watch::Receiver<()>,
) {
    let activity = Arc::new(Activity::new());
    let io = Watched {
        inner: stream,
        activity: Arc::clone(&activity),
    };
    let connection = ConnectionParts {
        peer,
        router,
        limits,
        metrics: Arc::clone(&metrics),
        activity,
    };
    match tls {
        None => {
            let service = connection.service(None, false);
            let served = http.http1.serve_connection(TokioIo::new(io), service);
            connection
                .drive(Served::Http1(Box::pin(served)), signal)
                .await;
        }
        Some(acceptor) => {
            // The handshake's bytes are the first request's: it is due
            // within the header read timeout of the connection opening.
            let handshake = tokio::time::timeout(limits.header_read_timeout, acceptor.accept(io));
            let mut stopping = signal.clone();
            let handshake = tokio::select! {
                result = handshake => Some(result),
                // Shutting down: a connection still in its handshake goes.
                _ = stopping.changed() => None,
            };
            match handshake {
                None => {}
                Some(Ok(Ok(stream))) => {
                    let (_, tls) = stream.get_ref();
                    let certificates = tls.peer_certificates().map(PeerCertificates::new);
                    let h2 = tls.alpn_protocol() == Some(crate::delivery::ALPN_H2);
                    let io = TokioIo::new(stream);
                    let served = if h2 {
                        let service = connection.service(certificates, true);
                        Served::Http2(Box::pin(http.http2.serve_connection(io, service)))
                    } else {
                        let service = connection.service(certificates, false);
                        Served::Http1(Box::pin(http.http1.serve_connection(io, service)))
                    };
                    connection.drive(served, signal).await;
                }
                Some(Ok(Err(e))) => {
                    let reason = crate::metrics::HandshakeFailures::reason(&e);
                    metrics.handshake_failures.failed(reason);
                    tracing::debug!(listener = metrics.name, %peer, reason, error = %e, "TLS handshake failed");
                }
                Some(Err(_)) => {
                    metrics.handshake_failures.failed("timeout");
                    metrics.header_timeouts.inc();
                    tracing::debug!(listener = metrics.name, %peer, "TLS handshake timed out");
                }
            }
        }
    }
    metrics.open.dec();
    drop((slot, close));
}

/// A connection being served, HTTP/1.1 or HTTP/2.
enum Served<I>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    Http1(Pin<Box<hyper::server::conn::http1::Connection<I, ConnectionService>>>),
    Http2(Pin<Box<hyper::server::conn::http2::Connection<I, ConnectionService, TokioExecutor>>>),
}

impl<I> Served<I>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), hyper::Error>> {
        match self {
            Self::Http1(c) => c.as_mut().poll(cx),
            Self::Http2(c) => c.as_mut().poll(cx),
        }
    }

    fn graceful_shutdown(&mut self) {
        match self {
            Self::Http1(c) => c.as_mut().graceful_shutdown(),
            Self::Http2(c) => c.as_mut().graceful_shutdown(),
        }
    }
}

/// What serving one connection needs once it is accepted.
struct ConnectionParts {
    peer: SocketAddr,
    router: Router,
    limits: ConnectionLimits,
    metrics: Arc<Listener>,
    activity: Arc<Activity>,
}

impl ConnectionParts {
    /// The connection's request handler. `streams`: HTTP/2 (requests run
    /// side by side, each with its own body deadline flag).
    fn service(&self, certificates: Option<PeerCertificates>, streams: bool) -> ConnectionService {
        ConnectionService {
            router: self.router.clone(),
            activity: Arc::clone(&self.activity),
            body_read_timeout: self.limits.body_read_timeout,
            certificates,
            streams,
        }
    }

    /// Serves the connection until it ends, its watchdog closes it, or the
    /// server shuts down (then the request in progress is finished).
    async fn drive<I>(&self, mut connection: Served<I>, mut signal: watch::Receiver<()>)
    where
        I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    {
        let (activity, limits, metrics, peer) =
            (&self.activity, &self.limits, &self.metrics, self.peer);
        let mut shutting_down = false;
        loop {
            let check = match activity.close_at(limits) {
                Some((at, _)) => at,
                // A request is in progress: look again once it may have ended.
                None => Instant::now() + limits.header_read_timeout.min(limits.idle_timeout),
            };
            tokio::select! {
                result = std::future::poll_fn(|cx| connection.poll(cx)) => {
                    if let Err(e) = result {
                        tracing::debug!(listener = metrics.name, %peer, error = %e, "connection ended with an error");
                    }
                    break;
                }
                () = tokio::time::sleep_until(check) => {
                    if let Some((at, why)) = activity.close_at(limits) {
                        if at <= Instant::now() {
                            match why {
                                Expiry::HeaderTimeout => metrics.header_timeouts.inc(),
                                Expiry::IdleTimeout => metrics.idle_timeouts.inc(),
                            }
                            tracing::debug!(listener = metrics.name, %peer, ?why, "connection closed");
                            break;
                        }
                    }
                }
                _ = signal.changed(), if !shutting_down => {
                    shutting_down = true;
                    connection.graceful_shutdown();
                }
            }
        }
    }
}

/// Serves one connection's requests.
#[derive(Clone)]
struct ConnectionService {
    router: Router,
    activity: Arc<Activity>,
    body_read_timeout: Duration,
    /// The client's certificates (TLS listeners), given to every request.
    certificates: Option<PeerCertificates>,
    /// HTTP/2: requests run side by side, each with its own body flag.
    streams: bool,
}

impl hyper::service::Service<Request<Incoming>> for ConnectionService {
    type Response = Response<TrackedBody>;
    type Error = Infallible;
    type Future = HandleFuture;

    /// One request: the body under its deadline, the router, and `408`
    /// when the body's deadline passed while the handler read it.
    fn call(&self, request: Request<Incoming>) -> HandleFuture {
        let in_flight = InFlight::start(Arc::clone(&self.activity));
        let late_flag = if self.streams {
            Arc::new(AtomicBool::new(false))
        } else {
            // One request at a time on an HTTP/1 connection: the flag is
            // the connection's, cleared for each request.
            self.activity.body_late.store(false, Ordering::Relaxed);
            Arc::clone(&self.activity.body_late)
        };
        let late = BodyLate {
            flag: Arc::clone(&late_flag),
            timeout: self.body_read_timeout,
        };
        let mut request = request.map(|body| BodyDeadline {
            inner: body,
            deadline: Instant::now() + self.body_read_timeout,
            sleep: None,
            late: late_flag,
        });
        // Read by [`LateBodyLayer`], inside the router (so that the
        // metrics count the 408).
        request.extensions_mut().insert(late);
        if let Some(certificates) = &self.certificates {
            request.extensions_mut().insert(certificates.clone());
        }
        HandleFuture {
            inner: self.router.clone().oneshot(request),
            in_flight: Some(in_flight),
        }
    }
}

pin_project_lite::pin_project! {
    /// A request in the router; its response body keeps it in flight.
    struct HandleFuture {
        #[pin]
        inner: tower::util::Oneshot<Router, Request<BodyDeadline>>,
        in_flight: Option<InFlight>,
    }
}

impl Future for HandleFuture {
    type Output = Result<Response<TrackedBody>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let response = match std::task::ready!(this.inner.poll(cx)) {
            Ok(response) => response,
            Err(never) => match never {},
        };
        let Some(in_flight) = this.in_flight.take() else {
            // Polled again after it completed: it never completes again.
            return Poll::Pending;
        };
        Poll::Ready(Ok(response.map(|body| TrackedBody {
            inner: body,
            _in_flight: in_flight,
        })))
    }
}

/// Set when a request's body deadline passed (a request extension).
#[derive(Clone)]
pub(crate) struct BodyLate {
    flag: Arc<AtomicBool>,
    timeout: Duration,
}

/// A request whose body came too late is answered `408`, whatever its
/// handler made of the failed read. A layer of the router (inside the
/// metrics layer, which then counts the 408); it allocates nothing.
#[derive(Debug, Clone, Copy)]
pub(crate) struct LateBodyLayer;

impl<S> tower::Layer<S> for LateBodyLayer {
    type Service = LateBodyService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        LateBodyService { inner }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct LateBodyService<S> {
    inner: S,
}

impl<S, B> tower::Service<Request<B>> for LateBodyService<S>
where
    S: tower::Service<Request<B>, Response = Response<Body>>,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = LateBodyFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let late = request.extensions().get::<BodyLate>().cloned();
        LateBodyFuture {
            inner: self.inner.call(request),
            late,
        }
    }
}

pin_project_lite::pin_project! {
    pub(crate) struct LateBodyFuture<F> {
        #[pin]
        inner: F,
        late: Option<BodyLate>,
    }
}

impl<F, E> Future for LateBodyFuture<F>
where
    F: Future<Output = Result<Response<Body>, E>>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = std::task::ready!(this.inner.poll(cx));
        Poll::Ready(match (result, this.late.as_ref()) {
            (Ok(_), Some(late)) if late.flag.load(Ordering::Relaxed) => {
                Ok(body_timeout_response(late.timeout))
            }
            (result, _) => result,
        })
    }
}

fn body_timeout_response(timeout: Duration) -> Response<Body> {
    let mut response = (
        StatusCode::REQUEST_TIMEOUT,
        Json(json!({
            "error": "request_timeout",
            "error_description": format!("the request body did not arrive within {} seconds", timeout.as_secs()),
        })),
    )
        .into_response();
    // The rest of the body may still come: the connection cannot be reused.
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

/// Why a connection's watchdog closes it (ordered for ties: headers first).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Expiry {
    HeaderTimeout,
    IdleTimeout,
}

/// What a connection is doing, as its watchdog sees it. Times are
/// milliseconds since `opened`; every field is touched from the
/// connection's own task (atomics only because the task may move between
/// threads).
struct Activity {
    opened: Instant,
    /// Requests whose response has not been written completely.
    in_flight: AtomicU32,
    /// Requests received so far.
    requests: AtomicU32,
    /// When the connection last became idle (opened, or a response was
    /// written).
    idle_since: AtomicU64,
    /// The first byte read since then, plus one (0: none yet).
    first_byte: AtomicU64,
    /// The current request's body missed its deadline (HTTP/1; an HTTP/2
    /// stream has its own flag).
    body_late: Arc<AtomicBool>,
}

impl Activity {
    fn new() -> Self {
        Self {
            opened: Instant::now(),
            in_flight: AtomicU32::new(0),
            requests: AtomicU32::new(0),
            idle_since: AtomicU64::new(0),
            first_byte: AtomicU64::new(0),
            body_late: Arc::new(AtomicBool::new(false)),
        }
    }

    fn millis_now(&self) -> u64 {
        u64::try_from(self.opened.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Bytes were read from the socket.
    fn bytes_read(&self) {
        if self.in_flight.load(Ordering::Relaxed) == 0
            && self.first_byte.load(Ordering::Relaxed) == 0
        {
            self.first_byte
                .store(self.millis_now() + 1, Ordering::Relaxed);
        }
    }

    /// When the watchdog closes the connection unless something happens,
    /// and why; None while a request is in progress.
    fn close_at(&self, limits: &ConnectionLimits) -> Option<(Instant, Expiry)> {
        if self.in_flight.load(Ordering::Relaxed) > 0 {
            return None;
        }
        let first_byte = match self.first_byte.load(Ordering::Relaxed) {
            0 => None,
            plus_one => Some(Duration::from_millis(plus_one - 1)),
        };
        let (at, why) = close_at(
            Duration::from_millis(self.idle_since.load(Ordering::Relaxed)),
            first_byte,
            self.requests.load(Ordering::Relaxed) == 0,
            limits,
        );
        Some((self.opened + at, why))
    }
}

/// When an idle connection (no request in progress) is closed, counted from
/// its opening: `idle_since` is when it became idle, `first_byte` when the
/// next request's first byte came, if it has. The first request's headers
/// are due `header_read_timeout` after the connection opened (so an idle
/// wait never adds to it); a later request's after its first byte.
fn close_at(
    idle_since: Duration,
    first_byte: Option<Duration>,
    first_request: bool,
    limits: &ConnectionLimits,
) -> (Duration, Expiry) {
    let headers_due = |from: Duration| (from + limits.header_read_timeout, Expiry::HeaderTimeout);
    match (first_byte, first_request) {
        (Some(_), true) => headers_due(Duration::ZERO),
        (Some(first), false) => headers_due(first),
        (None, true) => std::cmp::min(
            headers_due(Duration::ZERO),
            (idle_since + limits.idle_timeout, Expiry::IdleTimeout),
        ),
        (None, false) => (idle_since + limits.idle_timeout, Expiry::IdleTimeout),
    }
}

/// A request in progress, from its headers until its response has been
/// written (or abandoned).
struct InFlight(Arc<Activity>);

impl InFlight {
    fn start(activity: Arc<Activity>) -> Self {
        activity.in_flight.fetch_add(1, Ordering::Relaxed);
        activity.requests.fetch_add(1, Ordering::Relaxed);
        Self(activity)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let activity = &self.0;
        activity.first_byte.store(0, Ordering::Relaxed);
        activity
            .idle_since
            .store(activity.millis_now(), Ordering::Relaxed);
        activity.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

pin_project_lite::pin_project! {
    /// The socket, noting when bytes arrive.
    struct Watched {
        #[pin]
        inner: TcpStream,
        activity: Arc<Activity>,
    }
}

impl AsyncRead for Watched {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.project();
        let before = buf.filled().len();
        let result = this.inner.poll_read(cx, buf);
        if matches!(result, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            this.activity.bytes_read();
        }
        result
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.project().inner.poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.project().inner.poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().inner.poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().inner.poll_shutdown(cx)
    }
}

/// The request body did not arrive within the body read timeout.
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive in time")]
struct BodyTimedOut;

pin_project_lite::pin_project! {
    /// A request body that fails once its deadline has passed.
    struct BodyDeadline {
        #[pin]
        inner: Incoming,
        deadline: Instant,
        // Made only when the body has to be waited for.
        sleep: Option<Pin<Box<tokio::time::Sleep>>>,
        late: Arc<AtomicBool>,
    }
}

impl HttpBody for BodyDeadline {
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        let this = self.project();
        if this.late.load(Ordering::Relaxed) {
            return Poll::Ready(Some(Err(BodyTimedOut.into())));
        }
        if let Poll::Ready(frame) = this.inner.poll_frame(cx) {
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        let deadline = *this.deadline;
        let sleep = this
            .sleep
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        if sleep.as_mut().poll(cx).is_ready() {
            this.late.store(true, Ordering::Relaxed);
            return Poll::Ready(Some(Err(BodyTimedOut.into())));
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

pin_project_lite::pin_project! {
    /// A response body; the request counts as in progress until it is
    /// dropped (hyper drops it once written, or when the connection ends).
    struct TrackedBody {
        #[pin]
        inner: Body,
        _in_flight: InFlight,
    }
}

impl HttpBody for TrackedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        self.project().inner.poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: ConnectionLimits = ConnectionLimits {
        header_read_timeout: Duration::from_secs(10),
        idle_timeout: Duration::from_secs(30),
        body_read_timeout: Duration::from_secs(10),
        max_connections: 3,
        max_connections_per_ip: 2,
    };

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn the_first_requests_headers_are_due_from_the_connection_opening() {
        // Silent: the header timeout comes first (it is shorter).
        assert_eq!(
            close_at(secs(0), None, true, &LIMITS),
            (secs(10), Expiry::HeaderTimeout)
        );
        // A byte late does not move it.
        assert_eq!(
            close_at(secs(0), Some(secs(9)), true, &LIMITS),
            (secs(10), Expiry::HeaderTimeout)
        );
        // With a shorter idle timeout, a silent connection goes first for that.
        let short_idle = ConnectionLimits {
            idle_timeout: secs(2),
            ..LIMITS
        };
        assert_eq!(
            close_at(secs(0), None, true, &short_idle),
            (secs(2), Expiry::IdleTimeout)
        );
    }

    #[test]
    fn a_keep_alive_connection_waits_the_idle_timeout_then_its_headers_from_their_first_byte() {
        assert_eq!(
            close_at(secs(5), None, false, &LIMITS),
            (secs(35), Expiry::IdleTimeout)
        );
        assert_eq!(
            close_at(secs(5), Some(secs(25)), false, &LIMITS),
            (secs(35), Expiry::HeaderTimeout)
        );
    }

    #[test]
    fn admission_caps_connections_in_all_and_per_address() {
        let admission = Arc::new(Admission::default());
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let a1 = admission.admit(a, &LIMITS).unwrap();
        let _a2 = admission.admit(a, &LIMITS).unwrap();
        assert_eq!(
            admission.admit(a, &LIMITS).err(),
            Some(Refusal::MaxConnectionsPerIp)
        );
        let _b1 = admission.admit(b, &LIMITS).unwrap();
        assert_eq!(
            admission.admit(b, &LIMITS).err(),
            Some(Refusal::MaxConnections)
        );
        // A closed connection gives its place back.
        drop(a1);
        let _b2 = admission.admit(b, &LIMITS).unwrap();
        assert_eq!(admission.open.lock().unwrap().by_ip.get(&a), Some(&1));
    }
}
