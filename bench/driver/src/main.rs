//! Samtykke's load driver: closed-loop virtual users on keep-alive HTTP/1.1
//! connections, one request in flight per connection, for a bounded time.
//!
//! ```text
//! samtykke-bench run --scenario debt --base http://127.0.0.1:8080 \
//!     --client-id ID --client-secret SECRET [--api URL] \
//!     [--connections 64] [--duration 10] [--warmup 2] [--threads 2]
//! samtykke-bench wait-ready --base URL [--timeout 10]
//! samtykke-bench attack --base URL --pid PID --client-id ID --client-secret S \
//!     [--mode slow-headers|idle] [--sockets 5000] [--sources 25] [--interval 3] \
//!     [--duration 60] [--before 10] [--after 20]
//! samtykke-bench creditor --fi 923456783 [--listen 127.0.0.1:0] [--latency-ms 20] [--hang]
//! samtykke-bench table RESULTS.jsonl
//! samtykke-bench splice BENCHMARKS.md KEY BLOCK.md
//! ```
//!
//! `run` prints one JSON line. `--base` may list several servers separated by
//! commas (two-process mode): connection i talks to server i mod n. Only
//! loopback addresses are accepted.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE, HOST};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

type Error = Box<dyn std::error::Error + Send + Sync>;
type Sender = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

/// The sandbox's synthetic person with debt.
const PERSON: &str = "14842249091";

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("run") => Options::parse(&args[1..]).and_then(run_command),
        Some("wait-ready") => Options::parse(&args[1..]).and_then(wait_ready_command),
        Some("attack") => AttackOptions::parse(&args[1..]).and_then(attack_command),
        Some("creditor") => creditor_command(&args[1..]),
        Some("table") => args
            .get(1)
            .ok_or_else(|| "table needs a results file".into())
            .and_then(|path| table_command(path)),
        Some("splice") if args.len() == 4 => splice_command(&args[1], &args[2], &args[3]),
        _ => Err(
            "usage: samtykke-bench run|wait-ready|attack|table|splice … (see the source header)"
                .into(),
        ),
    };
    if let Err(e) = result {
        eprintln!("samtykke-bench: {e}");
        std::process::exit(1);
    }
}

// --------------------------------------------------------------- creditor --

/// A live creditor for the lookup benchmarks (bench/lookup.sh): plain HTTP
/// `getDataForSSN` for institution `--fi`, answering every customer with one
/// repayment loan after `--latency-ms`, or never (`--hang`: the headers never
/// come). Prints `listening on ADDR`, then serves until killed.
fn creditor_command(args: &[String]) -> Result<(), Error> {
    let (mut listen, mut fi, mut latency_ms, mut hang) =
        ("127.0.0.1:0".to_owned(), String::new(), 20u64, false);
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let mut value = || {
            it.next()
                .cloned()
                .ok_or_else(|| Error::from(format!("{flag} needs a value")))
        };
        match flag.as_str() {
            "--listen" => listen = value()?,
            "--fi" => fi = value()?,
            "--latency-ms" => latency_ms = value()?.parse()?,
            "--hang" => hang = true,
            other => return Err(format!("unknown option {other}").into()),
        }
    }
    if fi.is_empty() {
        return Err("--fi is required".into());
    }
    let addr: SocketAddr = listen.parse()?;
    if !addr.ip().is_loopback() {
        return Err("the creditor listens on loopback only".into());
    }
    runtime(1)?.block_on(async move {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        println!("listening on {}", listener.local_addr()?);
        let fi: Arc<str> = Arc::from(fi.as_str());
        loop {
            let (stream, _) = listener.accept().await?;
            let _ = stream.set_nodelay(true);
            let fi = fi.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                    let fi = fi.clone();
                    async move {
                        if hang {
                            std::future::pending::<()>().await;
                        }
                        tokio::time::sleep(Duration::from_millis(latency_ms)).await;
                        let customer = req
                            .headers()
                            .get("customerID")
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or("")
                            .to_owned();
                        let body = serde_json::json!({
                            "customerID": customer,
                            "financialInstitutionID": &*fi,
                            "loans": [{
                                "type": "repaymentLoan", "accountID": format!("{fi}-1"),
                                "timestamp": "2026-12-01T10:00:00Z", "coBorrower": 0,
                                "originalBalance": 10000000, "balance": 5000000, "terms": 120,
                                "nominalInterestRate": 450, "installmentCharges": 5000,
                                "installmentChargePeriod": "MONTHLY"
                            }]
                        });
                        Ok::<_, std::convert::Infallible>(
                            hyper::Response::builder()
                                .header(CONTENT_TYPE, "application/json")
                                .body(Full::new(Bytes::from(body.to_string())))
                                .unwrap_or_default(),
                        )
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    })
}

// ---------------------------------------------------------------- options --

#[derive(Debug, Clone)]
struct Options {
    scenario: String,
    bases: Vec<String>,
    api: Option<String>,
    client_id: String,
    client_secret: String,
    connections: usize,
    duration: f64,
    warmup: f64,
    threads: usize,
    timeout: f64,
}

impl Options {
    fn parse(args: &[String]) -> Result<Self, Error> {
        let mut o = Options {
            scenario: String::new(),
            bases: vec![],
            api: None,
            client_id: String::new(),
            client_secret: String::new(),
            connections: 64,
            duration: 10.0,
            warmup: 2.0,
            threads: 2,
            timeout: 10.0,
        };
        let mut it = args.iter();
        while let Some(flag) = it.next() {
            let mut value = || {
                it.next()
                    .cloned()
                    .ok_or_else(|| Error::from(format!("{flag} needs a value")))
            };
            match flag.as_str() {
                "--scenario" => o.scenario = value()?,
                "--base" => {
                    o.bases = value()?
                        .split(',')
                        .map(|b| b.trim_end_matches('/').to_owned())
                        .collect()
                }
                "--api" => o.api = Some(value()?.trim_end_matches('/').to_owned()),
                "--client-id" => o.client_id = value()?,
                "--client-secret" => o.client_secret = value()?,
                "--connections" => o.connections = value()?.parse()?,
                "--duration" => o.duration = value()?.parse()?,
                "--warmup" => o.warmup = value()?.parse()?,
                "--threads" => o.threads = value()?.parse()?,
                "--timeout" => o.timeout = value()?.parse()?,
                other => return Err(format!("unknown option {other}").into()),
            }
        }
        if o.bases.is_empty() {
            return Err("--base is required".into());
        }
        // Load tests go to this machine only.
        for base in &o.bases {
            let addr = socket_addr(base)?;
            if !addr.ip().is_loopback() {
                return Err(format!("{base}: only loopback targets are allowed").into());
            }
        }
        if !(0.5..=60.0).contains(&o.duration) {
            return Err("--duration must be between 0.5 and 60 seconds".into());
        }
        Ok(o)
    }

    /// The API base the audiences derive from (the first server's, unless given).
    fn api(&self) -> &str {
        self.api.as_deref().unwrap_or(&self.bases[0])
    }

    fn basic(&self) -> String {
        let pair = format!("{}:{}", self.client_id, self.client_secret);
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(pair)
        )
    }
}

fn socket_addr(base: &str) -> Result<SocketAddr, Error> {
    let rest = base
        .strip_prefix("http://")
        .ok_or_else(|| format!("{base}: only http:// bases are supported"))?;
    let authority = rest.split('/').next().unwrap_or(rest);
    let authority = authority.replace("localhost", "127.0.0.1");
    Ok(authority.parse()?)
}

fn runtime(threads: usize) -> Result<tokio::runtime::Runtime, Error> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads.max(1))
        .enable_all()
        .build()?)
}

// ------------------------------------------------------------ connections --

/// One keep-alive HTTP/1.1 connection.
async fn connect(addr: SocketAddr) -> Result<Sender, Error> {
    let stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(sender)
}

async fn send(
    sender: &mut Sender,
    request: Request<Full<Bytes>>,
) -> Result<(StatusCode, Bytes), Error> {
    sender.ready().await?;
    let response = sender.send_request(request).await?;
    let status = response.status();
    let body = response.into_body().collect().await?.to_bytes();
    Ok((status, body))
}

fn request(
    method: Method,
    host: &HeaderValue,
    path: &str,
    auth: Option<&str>,
    content_type: Option<&'static str>,
    body: Bytes,
) -> Request<Full<Bytes>> {
    let mut builder = Request::builder()
        .method(method)
        .uri(path)
        .header(HOST, host.clone());
    if let Some(auth) = auth {
        builder = builder.header(AUTHORIZATION, auth);
    }
    if let Some(ct) = content_type {
        builder = builder.header(CONTENT_TYPE, ct);
    }
    builder
        .body(Full::new(body))
        .unwrap_or_else(|e| panic!("a request built from valid parts: {e}"))
}

fn host_header(base: &str) -> Result<HeaderValue, Error> {
    let authority = base.trim_start_matches("http://");
    Ok(HeaderValue::from_str(
        authority.split('/').next().unwrap_or(authority),
    )?)
}

/// A one-off request for setup; fails unless the status is 200.
async fn setup_request(
    base: &str,
    request: Request<Full<Bytes>>,
) -> Result<serde_json::Value, Error> {
    let mut sender = connect(socket_addr(base)?).await?;
    let path = request.uri().to_string();
    let (status, body) = send(&mut sender, request).await?;
    if status != StatusCode::OK {
        return Err(format!("setup {path}: {status}: {}", String::from_utf8_lossy(&body)).into());
    }
    Ok(serde_json::from_slice(&body)?)
}

fn token_form(api: &str, audience_path: &str, scope: &str) -> String {
    form_urlencoded::Serializer::new(String::new())
        .append_pair("grant_type", "client_credentials")
        .append_pair("audience", &format!("{api}{audience_path}"))
        .append_pair("scope", scope)
        .finish()
}

async fn get_token(o: &Options, audience_path: &str, scope: &str) -> Result<String, Error> {
    let base = &o.bases[0];
    let req = request(
        Method::POST,
        &host_header(base)?,
        "/oauth2/token",
        Some(&o.basic()),
        Some("application/x-www-form-urlencoded"),
        Bytes::from(token_form(o.api(), audience_path, scope)),
    );
    let body = setup_request(base, req).await?;
    body["access_token"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| "no access_token in the token response".into())
}

fn agreement_body(client_consent_id: &str) -> Bytes {
    Bytes::from(
        serde_json::json!({
            "nin": PERSON,
            "scope_of_consent": "debt.unsecured.presentation",
            "consent_duration_days": 30,
            "client_consent_id": client_consent_id,
        })
        .to_string(),
    )
}

fn unique_prefix() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("bench-{nanos:x}")
}

// --------------------------------------------------------------- scenarios --

/// What each virtual user sends; everything a request needs was prepared
/// before the clock starts.
enum Work {
    Healthz,
    Token {
        auth: String,
        body: Bytes,
    },
    Debt {
        bearer: String,
        paths: Vec<String>,
    },
    Agreement {
        bearer: String,
        prefix: String,
    },
    Feed {
        bearer: String,
    },
    /// The complete regular-consent flow (see `flow_user`).
    Flow(Arc<FlowParams>),
}

impl Work {
    fn request(&self, host: &HeaderValue, conn: usize, seq: u64) -> Request<Full<Bytes>> {
        match self {
            Work::Healthz => request(Method::GET, host, "/healthz", None, None, Bytes::new()),
            Work::Token { auth, body } => request(
                Method::POST,
                host,
                "/oauth2/token",
                Some(auth),
                Some("application/x-www-form-urlencoded"),
                body.clone(),
            ),
            Work::Debt { bearer, paths } => request(
                Method::GET,
                host,
                &paths[conn % paths.len()],
                Some(bearer),
                None,
                Bytes::new(),
            ),
            Work::Agreement { bearer, prefix } => request(
                Method::PUT,
                host,
                "/v1/consent/agreement",
                Some(bearer),
                Some("application/json"),
                agreement_body(&format!("{prefix}-{conn}-{seq}")),
            ),
            Work::Feed { bearer } => request(
                Method::GET,
                host,
                "/feed/v1/consent?fromSequenceNr=1&limit=100",
                Some(bearer),
                None,
                Bytes::new(),
            ),
            Work::Flow(_) => unreachable!("the flow scenario runs in flow_user"),
        }
    }
}

async fn prepare(o: &Options) -> Result<Work, Error> {
    Ok(match o.scenario.as_str() {
        "healthz" => Work::Healthz,
        "token" => Work::Token {
            auth: o.basic(),
            body: Bytes::from(token_form(
                o.api(),
                "/v1/debt",
                "debt.unsecured.presentation",
            )),
        },
        "debt" => {
            // One duration consent per connection, as many institutions'
            // customers would be looked up at once; one shared token.
            let create = get_token(o, "/v1/consent/agreement", "consent.create").await?;
            let bearer = format!("Bearer {create}");
            let base = &o.bases[0];
            let host = host_header(base)?;
            let prefix = unique_prefix();
            let mut sender = connect(socket_addr(base)?).await?;
            let mut paths = Vec::with_capacity(o.connections);
            for i in 0..o.connections.max(1) {
                let req = request(
                    Method::PUT,
                    &host,
                    "/v1/consent/agreement",
                    Some(&bearer),
                    Some("application/json"),
                    agreement_body(&format!("{prefix}-setup-{i}")),
                );
                let (status, body) = send(&mut sender, req).await?;
                if status != StatusCode::OK {
                    return Err(format!(
                        "setup consent: {status}: {}",
                        String::from_utf8_lossy(&body)
                    )
                    .into());
                }
                let body: serde_json::Value = serde_json::from_slice(&body)?;
                let id = body["consent"]["id"].as_str().ok_or("no consent id")?;
                paths.push(format!("/v1/debt/{id}"));
            }
            let token = get_token(o, "/v1/debt", "debt.unsecured.presentation").await?;
            Work::Debt {
                bearer: format!("Bearer {token}"),
                paths,
            }
        }
        "agreement" => {
            let token = get_token(o, "/v1/consent/agreement", "consent.create").await?;
            Work::Agreement {
                bearer: format!("Bearer {token}"),
                prefix: unique_prefix(),
            }
        }
        "feed" => {
            let token = get_token(o, "/feed/v1/consent", "client.access.consent.events").await?;
            Work::Feed {
                bearer: format!("Bearer {token}"),
            }
        }
        // The complete regular-consent flow; driven by `flow_user`, not by
        // `Work::request`.
        "flow" => Work::Flow(Arc::new(FlowParams::new(o))),
        other => return Err(format!("unknown scenario {other}").into()),
    })
}

// ------------------------------------------------------------------- flow --

/// The sandbox client's registered redirect URI matches on any port; port 9
/// (discard) is never contacted: the driver reads the code off the
/// `Location` of the consent answer, as a browser's address bar would hold it.
const FLOW_REDIRECT_URI: &str = "http://127.0.0.1:9/callback";
const FLOW_SCOPE: &str = "debt.unsecured.presentation";
/// HTTP requests to the server in one complete flow: auth, login page,
/// login, consent page, consent, token, debt. (The browser's eighth hop, to
/// the callback, goes to the client, not to Samtykke.)
const FLOW_REQUESTS: u64 = 7;

/// What every flow shares.
struct FlowParams {
    client_id: String,
    basic: String,
}

impl FlowParams {
    fn new(o: &Options) -> Self {
        FlowParams {
            client_id: o.client_id.clone(),
            basic: o.basic(),
        }
    }

    fn auth_path(&self, state: &str) -> String {
        let query = form_urlencoded::Serializer::new(String::new())
            .append_pair("client_id", &self.client_id)
            .append_pair("response_type", "code")
            .append_pair("scope", FLOW_SCOPE)
            .append_pair("state", state)
            .append_pair("redirect_uri", FLOW_REDIRECT_URI)
            .finish();
        format!("/oauth2/auth?{query}")
    }
}

/// One answer with the headers a browser acts on.
struct Answer {
    status: StatusCode,
    location: Option<String>,
    set_cookie: Vec<String>,
    body: Bytes,
}

async fn send_full(sender: &mut Sender, request: Request<Full<Bytes>>) -> Result<Answer, Error> {
    sender.ready().await?;
    let response = sender.send_request(request).await?;
    let status = response.status();
    let headers = response.headers();
    let location = headers
        .get(hyper::header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let set_cookie = headers
        .get_all(hyper::header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .map(str::to_owned)
        .collect();
    let body = response.into_body().collect().await?.to_bytes();
    Ok(Answer {
        status,
        location,
        set_cookie,
        body,
    })
}

/// A virtual user's cookie jar: name → value, sent on every request of its
/// flows (cookies are all `Path=/` on the one host).
#[derive(Default)]
struct Jar(BTreeMap<String, String>);

impl Jar {
    fn take(&mut self, set_cookie: &[String]) {
        for line in set_cookie {
            let pair = line.split(';').next().unwrap_or("");
            let Some((name, value)) = pair.trim().split_once('=') else {
                continue;
            };
            let cleared = line
                .split(';')
                .any(|a| a.trim().eq_ignore_ascii_case("max-age=0"));
            if value.is_empty() || cleared {
                self.0.remove(name);
            } else {
                self.0.insert(name.to_owned(), value.to_owned());
            }
        }
    }

    fn header(&self) -> Option<String> {
        (!self.0.is_empty()).then(|| {
            self.0
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join("; ")
        })
    }
}

/// Why a flow stopped: the step and what it got.
struct FlowError {
    step: &'static str,
    what: String,
    /// An I/O error: the connection must be replaced.
    io: bool,
}

impl FlowError {
    fn status(step: &'static str, answer: &Answer) -> Self {
        FlowError {
            step,
            what: answer.status.as_str().to_owned(),
            io: false,
        }
    }
    fn other(step: &'static str, what: impl Into<String>) -> Self {
        FlowError {
            step,
            what: what.into(),
            io: false,
        }
    }
}

/// The path and query of an absolute or relative URL.
fn path_of(url: &str) -> &str {
    match url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
    {
        Some(rest) => rest.find('/').map_or("/", |i| &rest[i..]),
        None => url,
    }
}

/// The value of the hidden form field `name` in a page.
fn hidden(page: &str, name: &str) -> Option<String> {
    let marker = format!("name=\"{name}\" value=\"");
    let start = page.find(&marker)? + marker.len();
    let len = page[start..].find('"')?;
    Some(page[start..start + len].to_owned())
}

fn query_param(url: &str, name: &str) -> Option<String> {
    let query = url.split_once('?')?.1;
    form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// One browser session of one virtual user on one keep-alive connection.
struct Browser<'a> {
    sender: &'a mut Sender,
    host: &'a HeaderValue,
    jar: Jar,
    /// Requests answered (any status), for the server's CPU per request.
    answered: u64,
}

impl Browser<'_> {
    async fn go(
        &mut self,
        step: &'static str,
        method: Method,
        path: &str,
        auth: Option<&str>,
        form: Option<String>,
    ) -> Result<Answer, FlowError> {
        let mut builder = Request::builder()
            .method(method)
            .uri(path)
            .header(HOST, self.host.clone());
        if let Some(cookie) = self.jar.header() {
            builder = builder.header(hyper::header::COOKIE, cookie);
        }
        if let Some(auth) = auth {
            builder = builder.header(AUTHORIZATION, auth);
        }
        let body = match form {
            Some(form) => {
                builder = builder.header(CONTENT_TYPE, "application/x-www-form-urlencoded");
                Bytes::from(form)
            }
            None => Bytes::new(),
        };
        let req = builder
            .body(Full::new(body))
            .map_err(|e| FlowError::other(step, format!("request: {e}")))?;
        let answer = send_full(self.sender, req).await.map_err(|e| FlowError {
            step,
            what: format!("io: {e}"),
            io: true,
        })?;
        self.answered += 1;
        self.jar.take(&answer.set_cookie);
        Ok(answer)
    }

    /// A 303 answer's `Location`, or the error.
    fn see_other(step: &'static str, answer: &Answer) -> Result<String, FlowError> {
        if answer.status != StatusCode::SEE_OTHER {
            return Err(FlowError::status(step, answer));
        }
        answer
            .location
            .clone()
            .ok_or_else(|| FlowError::other(step, "303 without Location"))
    }

    /// GET a page (200), returns its flow and csrf fields.
    async fn page(&mut self, step: &'static str, url: &str) -> Result<(String, String), FlowError> {
        let answer = self.go(step, Method::GET, path_of(url), None, None).await?;
        if answer.status != StatusCode::OK {
            return Err(FlowError::status(step, &answer));
        }
        let page = String::from_utf8_lossy(&answer.body);
        match (hidden(&page, "flow"), hidden(&page, "csrf")) {
            (Some(flow), Some(csrf)) => Ok((flow, csrf)),
            _ => Err(FlowError::other(step, "no flow/csrf field")),
        }
    }

    /// The whole flow, as a browser and the client's back end do it:
    /// `FLOW_REQUESTS` (7) requests to the server.
    async fn flow(&mut self, p: &FlowParams, state: &str) -> Result<(), FlowError> {
        // 1. The authorization request: a new browser (no cookie yet) gets
        //    its cookie and is sent to TestID.
        let answer = self
            .go("auth", Method::GET, &p.auth_path(state), None, None)
            .await?;
        let next = Self::see_other("auth", &answer)?;
        if !next.contains("/oauth2/login?") {
            return Err(FlowError::other("auth", "not sent to the login page"));
        }
        // 2–3. TestID: the page, then the login.
        let (flow, csrf) = self.page("login-page", &next).await?;
        let form = form_urlencoded::Serializer::new(String::new())
            .append_pair("flow", &flow)
            .append_pair("csrf", &csrf)
            .append_pair("nin", PERSON)
            .append_pair("action", "login")
            .finish();
        let answer = self
            .go("login", Method::POST, "/oauth2/login", None, Some(form))
            .await?;
        let next = Self::see_other("login", &answer)?;
        if !next.contains("/oauth2/consent?") {
            return Err(FlowError::other("login", "not sent to the consent page"));
        }
        // 4–5. The consent page, then accept.
        let (flow, csrf) = self.page("consent-page", &next).await?;
        let form = form_urlencoded::Serializer::new(String::new())
            .append_pair("flow", &flow)
            .append_pair("csrf", &csrf)
            .append_pair("decision", "accept")
            .finish();
        let answer = self
            .go("consent", Method::POST, "/oauth2/consent", None, Some(form))
            .await?;
        let callback = Self::see_other("consent", &answer)?;
        if !callback.starts_with(FLOW_REDIRECT_URI) {
            return Err(FlowError::other("consent", "not sent to the callback"));
        }
        if query_param(&callback, "state").as_deref() != Some(state) {
            return Err(FlowError::other("consent", "state lost"));
        }
        let code = query_param(&callback, "code")
            .ok_or_else(|| FlowError::other("consent", "no code in the callback"))?;
        // 6. The client's back end redeems the code (no browser cookie).
        let form = form_urlencoded::Serializer::new(String::new())
            .append_pair("grant_type", "authorization_code")
            .append_pair("code", &code)
            .append_pair("redirect_uri", FLOW_REDIRECT_URI)
            .finish();
        let jar = std::mem::take(&mut self.jar);
        let answer = self
            .go(
                "token",
                Method::POST,
                "/oauth2/token",
                Some(&p.basic),
                Some(form),
            )
            .await;
        self.jar = jar;
        let answer = answer?;
        if answer.status != StatusCode::OK {
            return Err(FlowError::status("token", &answer));
        }
        let token: serde_json::Value = serde_json::from_slice(&answer.body)
            .map_err(|e| FlowError::other("token", format!("json: {e}")))?;
        let access = token["access_token"]
            .as_str()
            .ok_or_else(|| FlowError::other("token", "no access_token"))?;
        // 7. The debt of the person who consented, with that token.
        let bearer = format!("Bearer {access}");
        let jar = std::mem::take(&mut self.jar);
        let answer = self
            .go("debt", Method::GET, "/v1/debt", Some(&bearer), None)
            .await;
        self.jar = jar;
        let answer = answer?;
        if answer.status != StatusCode::OK {
            return Err(FlowError::status("debt", &answer));
        }
        if !answer.body.starts_with(b"{") {
            return Err(FlowError::other("debt", "not JSON"));
        }
        Ok(())
    }
}

/// A virtual user of the `flow` scenario: complete flows one after another
/// on one keep-alive connection; every flow starts as a new browser (an
/// empty cookie jar), so each one goes through TestID. Latencies are of
/// whole flows.
async fn flow_user(
    addr: SocketAddr,
    host: HeaderValue,
    params: Arc<FlowParams>,
    conn: usize,
    measure_from: Instant,
    until: Instant,
) -> ConnStats {
    let mut stats = ConnStats {
        latencies_us: Vec::with_capacity(1 << 12),
        ..ConnStats::default()
    };
    let mut n: u64 = 0;
    'connect: while Instant::now() < until {
        let mut sender = match connect(addr).await {
            Ok(s) => s,
            Err(e) => {
                if Instant::now() >= measure_from {
                    stats.errors += 1;
                    *stats
                        .error_statuses
                        .entry(format!("connect: {e}"))
                        .or_default() += 1;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        loop {
            let start = Instant::now();
            if start >= until {
                break 'connect;
            }
            n += 1;
            let state = format!("vu{conn}-{n}");
            let mut browser = Browser {
                sender: &mut sender,
                host: &host,
                jar: Jar::default(),
                answered: 0,
            };
            let result = browser.flow(&params, &state).await;
            stats.answered += browser.answered;
            let counted = start >= measure_from;
            match result {
                Ok(()) => {
                    if counted && Instant::now() <= until {
                        let us = start.elapsed().as_micros();
                        stats
                            .latencies_us
                            .push(u32::try_from(us).unwrap_or(u32::MAX));
                    }
                }
                Err(e) => {
                    if counted {
                        stats.errors += 1;
                        *stats
                            .error_statuses
                            .entry(format!("{}: {}", e.step, e.what))
                            .or_default() += 1;
                    }
                    if e.io {
                        continue 'connect;
                    }
                }
            }
        }
    }
    stats
}

/// What one connection measured.
#[derive(Default)]
struct ConnStats {
    latencies_us: Vec<u32>,
    /// Every answer, warm-up included (for the server's CPU per request).
    answered: u64,
    errors: u64,
    error_statuses: BTreeMap<String, u64>,
}

async fn virtual_user(
    addr: SocketAddr,
    host: HeaderValue,
    work: Arc<Work>,
    conn: usize,
    measure_from: Instant,
    until: Instant,
    seq: Arc<AtomicU64>,
) -> ConnStats {
    let mut stats = ConnStats {
        latencies_us: Vec::with_capacity(1 << 16),
        ..ConnStats::default()
    };
    let error = |stats: &mut ConnStats, what: String, counted: bool| {
        if counted {
            stats.errors += 1;
            *stats.error_statuses.entry(what).or_default() += 1;
        }
    };
    'connect: while Instant::now() < until {
        let mut sender = match connect(addr).await {
            Ok(s) => s,
            Err(e) => {
                error(
                    &mut stats,
                    format!("connect: {e}"),
                    Instant::now() >= measure_from,
                );
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        loop {
            let start = Instant::now();
            if start >= until {
                break 'connect;
            }
            let n = seq.fetch_add(1, Ordering::Relaxed);
            let req = work.request(&host, conn, n);
            let counted = start >= measure_from;
            let sent = send(&mut sender, req).await;
            if sent.is_ok() {
                stats.answered += 1;
            }
            match sent {
                Ok((status, _)) if status.is_success() => {
                    if counted && Instant::now() <= until {
                        let us = start.elapsed().as_micros();
                        stats
                            .latencies_us
                            .push(u32::try_from(us).unwrap_or(u32::MAX));
                    }
                }
                Ok((status, _)) => error(&mut stats, status.as_str().to_owned(), counted),
                Err(e) => {
                    error(&mut stats, format!("io: {e}"), counted);
                    continue 'connect;
                }
            }
        }
    }
    stats
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    f64::from(sorted[rank.clamp(1, sorted.len()) - 1]) / 1000.0
}

fn run_command(o: Options) -> Result<(), Error> {
    let rt = runtime(o.threads)?;
    rt.block_on(async {
        let work = Arc::new(prepare(&o).await?);
        let servers: Vec<(SocketAddr, HeaderValue)> = o
            .bases
            .iter()
            .map(|b| Ok((socket_addr(b)?, host_header(b)?)))
            .collect::<Result<_, Error>>()?;
        let start = Instant::now();
        let measure_from = start + Duration::from_secs_f64(o.warmup);
        let until = measure_from + Duration::from_secs_f64(o.duration);
        let seq = Arc::new(AtomicU64::new(0));
        let tasks: Vec<_> = (0..o.connections)
            .map(|conn| {
                let (addr, host) = servers[conn % servers.len()].clone();
                match &*work {
                    Work::Flow(params) => tokio::spawn(flow_user(
                        addr,
                        host,
                        params.clone(),
                        conn,
                        measure_from,
                        until,
                    )),
                    _ => tokio::spawn(virtual_user(
                        addr,
                        host,
                        work.clone(),
                        conn,
                        measure_from,
                        until,
                        seq.clone(),
                    )),
                }
            })
            .collect();
        let mut all = Vec::new();
        let mut errors = 0;
        let mut answered = 0;
        let mut statuses: BTreeMap<String, u64> = BTreeMap::new();
        for task in tasks {
            let s = task.await?;
            all.extend_from_slice(&s.latencies_us);
            errors += s.errors;
            answered += s.answered;
            for (k, v) in s.error_statuses {
                *statuses.entry(k).or_default() += v;
            }
        }
        all.sort_unstable();
        let ok = all.len() as f64;
        let flow = matches!(&*work, Work::Flow(_));
        let mut line = serde_json::json!({
            "kind": "scenario",
            "scenario": o.scenario,
            "servers": o.bases.len(),
            "connections": o.connections,
            "threads": o.threads,
            "duration_s": o.duration,
            "requests": all.len(),
            "answered_all": answered,
            "errors": errors,
            "error_statuses": statuses,
            "rps": (ok / o.duration).round(),
            "p50_ms": percentile(&all, 50.0),
            "p90_ms": percentile(&all, 90.0),
            "p99_ms": percentile(&all, 99.0),
            "max_ms": percentile(&all, 100.0),
        });
        if flow {
            // `requests` and `rps` count whole flows; p50/p99 are of whole
            // flows. Each flow is FLOW_REQUESTS HTTP requests.
            line["unit"] = "flows".into();
            line["requests_per_flow"] = FLOW_REQUESTS.into();
            line["http_rps"] = (ok * FLOW_REQUESTS as f64 / o.duration).round().into();
        }
        println!("{line}");
        Ok(())
    })
}

// ------------------------------------------------------------ wait-ready --

/// Polls `GET /readyz` every millisecond; prints the Unix time in
/// nanoseconds at which it first answered 200.
fn wait_ready_command(o: Options) -> Result<(), Error> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let addr = socket_addr(&o.bases[0])?;
        let host = host_header(&o.bases[0])?;
        let give_up = Instant::now() + Duration::from_secs_f64(o.timeout);
        while Instant::now() < give_up {
            if let Ok(mut sender) = connect(addr).await {
                let req = request(Method::GET, &host, "/readyz", None, None, Bytes::new());
                if let Ok((StatusCode::OK, _)) = send(&mut sender, req).await {
                    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_nanos();
                    println!("{now}");
                    return Ok(());
                }
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        Err("the server did not become ready in time".into())
    })
}

// ----------------------------------------------------------------- table --

/// A Markdown table of a results file (JSON lines from `run`, plus
/// `{"kind":"rss","scenario":…,"vmhwm_kb":…}` lines from run.sh).
fn table_command(path: &str) -> Result<(), Error> {
    let text = std::fs::read_to_string(path)?;
    let mut rows = vec![];
    let mut rss: BTreeMap<String, u64> = BTreeMap::new();
    let mut cpu: BTreeMap<String, f64> = BTreeMap::new();
    let mut db_cpu: BTreeMap<String, f64> = BTreeMap::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let v: serde_json::Value = serde_json::from_str(line)?;
        match v["kind"].as_str() {
            Some("scenario") => rows.push(v),
            Some("cpu") => {
                let scenario = v["scenario"].as_str().unwrap_or("").to_owned();
                if let Some(us) = v["db_cpu_us_per_request"].as_f64() {
                    db_cpu.insert(scenario.clone(), us);
                }
                cpu.insert(scenario, v["cpu_us_per_request"].as_f64().unwrap_or(0.0));
            }
            Some("rss") => {
                let kb = v["vmhwm_kb"].as_u64().unwrap_or(0);
                let entry = rss
                    .entry(v["scenario"].as_str().unwrap_or("").to_owned())
                    .or_default();
                *entry = (*entry).max(kb);
            }
            _ => {}
        }
    }
    let ceiling = rows
        .iter()
        .find(|r| r["scenario"] == "healthz")
        .and_then(|r| r["rps"].as_f64())
        .filter(|c| *c > 0.0);
    let with_db = !db_cpu.is_empty();
    let (db_head, db_rule) = if with_db {
        (" PostgreSQL CPU µs/req |", "---:|")
    } else {
        ("", "")
    };
    println!("| scenario | conns | requests/s | p50 ms | p99 ms | max ms | errors | vs /healthz | server CPU µs/req |{db_head} peak RSS MB |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|{db_rule}---:|");
    for r in &rows {
        let scenario = r["scenario"].as_str().unwrap_or("?");
        let rps = r["rps"].as_f64().unwrap_or(0.0);
        let mut ratio = ceiling.map_or("–".to_owned(), |c| format!("{:.0}%", 100.0 * rps / c));
        // The flow counts whole flows: flows/s, with the HTTP requests they
        // make (7 per flow) beside it.
        let http_rps = r["http_rps"].as_f64();
        let rate = match http_rps {
            Some(h) => {
                if let Some(c) = ceiling {
                    ratio = format!("{ratio} ({:.0}% in requests)", 100.0 * h / c);
                }
                format!("**{rps} flows/s** = {h} req/s")
            }
            None => format!("{rps}"),
        };
        let errors = r["errors"].as_u64().unwrap_or(0);
        let errors = if errors == 0 {
            "0".to_owned()
        } else {
            format!("{errors} {}", r["error_statuses"])
        };
        let mem = rss
            .get(scenario)
            .map_or("–".to_owned(), |kb| format!("{:.1}", *kb as f64 / 1024.0));
        let mut cpu = cpu
            .get(scenario)
            .map_or("–".to_owned(), |us| format!("{us:.0}"));
        if with_db {
            let db = db_cpu
                .get(scenario)
                .map_or("–".to_owned(), |us| format!("{us:.0}"));
            cpu = format!("{cpu} | {db}");
        }
        println!(
            "| {} | {} | {} | {:.2} | {:.2} | {:.1} | {} | {} | {} | {} |",
            label(scenario),
            r["connections"],
            rate,
            r["p50_ms"].as_f64().unwrap_or(0.0),
            r["p99_ms"].as_f64().unwrap_or(0.0),
            r["max_ms"].as_f64().unwrap_or(0.0),
            errors,
            ratio,
            cpu,
            mem
        );
    }
    Ok(())
}

fn label(scenario: &str) -> &str {
    match scenario {
        "healthz" => "`GET /healthz` (ceiling)",
        "token" => "`POST /oauth2/token` client credentials",
        "debt" => "`GET /v1/debt/{id}` (duration consent)",
        "agreement" => "`PUT /v1/consent/agreement` (new consents)",
        "feed" => "`GET /feed/v1/consent` (100 events/page)",
        "flow" => "complete regular-consent flow (auth → TestID → consent → code → token → `GET /v1/debt`); p50/p99 of a whole flow",
        other => other,
    }
}

// ---------------------------------------------------------------- splice --

/// Replaces the text between `<!-- results:KEY:begin -->` and
/// `<!-- results:KEY:end -->` in `doc` with the contents of `block`, or
/// appends a new marked section; everything else in `doc` is kept.
fn splice_command(doc: &str, key: &str, block: &str) -> Result<(), Error> {
    let begin = format!("<!-- results:{key}:begin -->");
    let end = format!("<!-- results:{key}:end -->");
    let block = std::fs::read_to_string(block)?;
    let current = match std::fs::read_to_string(doc) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            "# Benchmarks\n\nWritten by `bench/run.sh` (see bench/README.md).\n".to_owned()
        }
        Err(e) => return Err(e.into()),
    };
    let marked = format!("{begin}\n{}\n{end}", block.trim_end());
    let updated = match (current.find(&begin), current.find(&end)) {
        (Some(b), Some(e)) if b < e => {
            format!("{}{marked}{}", &current[..b], &current[e + end.len()..])
        }
        _ => format!(
            "{}\n{marked}\n",
            current.trim_end_matches('\n').to_owned() + "\n"
        ),
    };
    std::fs::write(doc, updated)?;
    Ok(())
}

// ---------------------------------------------------------------- attack --

/// `attack`: a bounded slow-headers attack or idle keep-alive flood against
/// one server on loopback, while probes measure its latency and a sampler
/// counts the server process's open descriptors, before, during and after.
///
/// ```text
/// samtykke-bench attack --base URL --pid PID --client-id ID --client-secret S \
///     [--mode slow-headers|idle] [--sockets 5000] [--sources 25] \
///     [--interval 3] [--duration 60] [--before 10] [--after 20]
/// ```
///
/// Attack sockets come from `--sources` loopback addresses 127.0.0.2, …
/// (the probes from 127.0.0.1), so that a per-address cap on the server
/// sees several clients; with `--sources 1` it sees one. `slow-headers`:
/// each socket sends a request line and a partial header, then one byte
/// every `--interval` seconds, never ending the headers. `idle`: each
/// socket sends one complete request, reads the answer, then stays silent.
/// A socket the server closes is opened again a second later, until the
/// attack ends. Prints one JSON line per phase.
#[derive(Debug, Clone)]
struct AttackOptions {
    base: String,
    api: Option<String>,
    pid: u32,
    client_id: String,
    client_secret: String,
    mode: String,
    sockets: usize,
    sources: usize,
    interval: f64,
    duration: f64,
    before: f64,
    after: f64,
}

impl AttackOptions {
    fn parse(args: &[String]) -> Result<Self, Error> {
        let mut o = AttackOptions {
            base: String::new(),
            api: None,
            pid: 0,
            client_id: String::new(),
            client_secret: String::new(),
            mode: "slow-headers".to_owned(),
            sockets: 5000,
            sources: 25,
            interval: 3.0,
            duration: 60.0,
            before: 10.0,
            after: 20.0,
        };
        let mut it = args.iter();
        while let Some(flag) = it.next() {
            let mut value = || {
                it.next()
                    .cloned()
                    .ok_or_else(|| Error::from(format!("{flag} needs a value")))
            };
            match flag.as_str() {
                "--base" => o.base = value()?.trim_end_matches('/').to_owned(),
                "--api" => o.api = Some(value()?.trim_end_matches('/').to_owned()),
                "--pid" => o.pid = value()?.parse()?,
                "--client-id" => o.client_id = value()?,
                "--client-secret" => o.client_secret = value()?,
                "--mode" => o.mode = value()?,
                "--sockets" => o.sockets = value()?.parse()?,
                "--sources" => o.sources = value()?.parse()?,
                "--interval" => o.interval = value()?.parse()?,
                "--duration" => o.duration = value()?.parse()?,
                "--before" => o.before = value()?.parse()?,
                "--after" => o.after = value()?.parse()?,
                other => return Err(format!("unknown option {other}").into()),
            }
        }
        if !socket_addr(&o.base)?.ip().is_loopback() {
            return Err("only loopback targets are allowed".into());
        }
        if !matches!(o.mode.as_str(), "slow-headers" | "idle") {
            return Err("--mode is slow-headers or idle".into());
        }
        // Bounded: at most 10,000 sockets for at most 120 s.
        if !(1..=10_000).contains(&o.sockets) || !(1..=200).contains(&o.sources) {
            return Err("--sockets 1..=10000, --sources 1..=200".into());
        }
        if !(1.0..=120.0).contains(&o.duration)
            || !(0.1..=30.0).contains(&o.interval)
            || !(1.0..=60.0).contains(&o.before)
            || !(1.0..=120.0).contains(&o.after)
        {
            return Err(
                "--duration 1..=120, --interval 0.1..=30, --before 1..=60, --after 1..=120 seconds"
                    .into(),
            );
        }
        Ok(o)
    }
}

const PHASES: [&str; 3] = ["before", "during", "after"];

/// What the probes and the sampler saw in one phase.
#[derive(Default)]
struct PhaseStats {
    /// Latencies in µs by probe.
    latencies: BTreeMap<&'static str, Vec<u32>>,
    errors: BTreeMap<&'static str, u64>,
    fds: Vec<usize>,
    /// Attack sockets open (client side), sampled with the descriptors.
    attack_open: Vec<u64>,
}

struct AttackShared {
    phase: std::sync::atomic::AtomicUsize,
    stats: std::sync::Mutex<[PhaseStats; 3]>,
    stop_attack: std::sync::atomic::AtomicBool,
    done: std::sync::atomic::AtomicBool,
    open: AtomicU64,
    opened: AtomicU64,
    closed_by_server: AtomicU64,
    closed_within_1s: AtomicU64,
    connect_errors: AtomicU64,
    /// Lifetimes in ms of attack sockets the server closed.
    lifetimes_ms: std::sync::Mutex<Vec<u32>>,
}

impl AttackShared {
    fn record(&self, probe: &'static str, result: Result<Duration, ()>) {
        let phase = self.phase.load(Ordering::Relaxed);
        if phase >= PHASES.len() {
            return;
        }
        let mut stats = self.stats.lock().unwrap_or_else(|p| p.into_inner());
        match result {
            Ok(elapsed) => stats[phase]
                .latencies
                .entry(probe)
                .or_default()
                .push(u32::try_from(elapsed.as_micros()).unwrap_or(u32::MAX)),
            Err(()) => *stats[phase].errors.entry(probe).or_default() += 1,
        }
    }
}

fn count_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

/// A keep-alive probe: `make` builds each request; reconnects after an error.
async fn keep_alive_probe(
    shared: Arc<AttackShared>,
    addr: SocketAddr,
    name: &'static str,
    make: impl Fn() -> Request<Full<Bytes>>,
) {
    let mut sender: Option<Sender> = None;
    while !shared.done.load(Ordering::Relaxed) {
        if sender.is_none() {
            sender = connect(addr).await.ok();
        }
        let start = Instant::now();
        let result = match sender.as_mut() {
            Some(s) => match send(s, make()).await {
                Ok((StatusCode::OK, _)) => Ok(start.elapsed()),
                _ => Err(()),
            },
            None => Err(()),
        };
        if result.is_err() {
            sender = None;
        }
        shared.record(name, result);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `GET /healthz` on a new connection each time (the accept path).
async fn new_connection_probe(shared: Arc<AttackShared>, addr: SocketAddr, host: HeaderValue) {
    while !shared.done.load(Ordering::Relaxed) {
        let start = Instant::now();
        let result = async {
            let mut sender = connect(addr).await.map_err(|_| ())?;
            let req = request(Method::GET, &host, "/healthz", None, None, Bytes::new());
            match send(&mut sender, req).await {
                Ok((StatusCode::OK, _)) => Ok(start.elapsed()),
                _ => Err(()),
            }
        };
        let result = tokio::time::timeout(Duration::from_secs(5), result)
            .await
            .unwrap_or(Err(()));
        shared.record("healthz_new_connection", result);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn attack_socket(
    shared: Arc<AttackShared>,
    o: Arc<AttackOptions>,
    addr: SocketAddr,
    i: usize,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let source: std::net::IpAddr = format!("127.0.0.{}", 2 + i % o.sources)
        .parse()
        .unwrap_or(std::net::IpAddr::from([127, 0, 0, 2]));
    let interval = Duration::from_secs_f64(o.interval);
    // Spread the starts over two seconds and the drips over the interval.
    tokio::time::sleep(Duration::from_micros(
        (i as u64 * 2_000_000) / o.sockets as u64,
    ))
    .await;
    let offset = interval.mul_f64((i % 97) as f64 / 97.0);
    while !shared.stop_attack.load(Ordering::Relaxed) {
        let connected = async {
            let socket = tokio::net::TcpSocket::new_v4()?;
            socket.bind(SocketAddr::new(source, 0))?;
            socket.connect(addr).await
        };
        let mut stream = match connected.await {
            Ok(stream) => stream,
            Err(_) => {
                shared.connect_errors.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        let opened = Instant::now();
        shared.opened.fetch_add(1, Ordering::Relaxed);
        shared.open.fetch_add(1, Ordering::Relaxed);
        let first: &[u8] = if o.mode == "idle" {
            b"GET /healthz HTTP/1.1\r\nHost: samtykke\r\n\r\n"
        } else {
            b"GET /healthz HTTP/1.1\r\nHost: samtykke\r\nX-Slow: "
        };
        let mut closed = stream.write_all(first).await.is_err();
        let mut buf = [0u8; 2048];
        let mut next_drip = tokio::time::Instant::now() + offset;
        while !closed {
            if shared.stop_attack.load(Ordering::Relaxed) {
                break;
            }
            tokio::select! {
                read = stream.read(&mut buf) => {
                    // The idle flood reads its one answer; end-of-file or a
                    // reset is the server closing the socket.
                    if matches!(read, Ok(0) | Err(_)) {
                        closed = true;
                    }
                }
                () = tokio::time::sleep_until(next_drip), if o.mode == "slow-headers" => {
                    next_drip += interval;
                    closed = stream.write_all(b"a").await.is_err();
                }
                // Look at the stop flag now and then.
                () = tokio::time::sleep(Duration::from_millis(500)) => {}
            }
        }
        shared.open.fetch_sub(1, Ordering::Relaxed);
        if closed {
            let lived = opened.elapsed();
            shared.closed_by_server.fetch_add(1, Ordering::Relaxed);
            if lived < Duration::from_secs(1) {
                shared.closed_within_1s.fetch_add(1, Ordering::Relaxed);
            }
            if let Ok(mut l) = shared.lifetimes_ms.lock() {
                l.push(u32::try_from(lived.as_millis()).unwrap_or(u32::MAX));
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
}

fn attack_command(o: AttackOptions) -> Result<(), Error> {
    let rt = runtime(2)?;
    rt.block_on(async {
        let o = Arc::new(o);
        let addr = socket_addr(&o.base)?;
        let host = host_header(&o.base)?;
        let shared = Arc::new(AttackShared {
            phase: std::sync::atomic::AtomicUsize::new(0),
            stats: std::sync::Mutex::new(Default::default()),
            stop_attack: false.into(),
            done: false.into(),
            open: AtomicU64::new(0),
            opened: AtomicU64::new(0),
            closed_by_server: AtomicU64::new(0),
            closed_within_1s: AtomicU64::new(0),
            connect_errors: AtomicU64::new(0),
            lifetimes_ms: std::sync::Mutex::new(Vec::new()),
        });
        let api = o.api.clone().unwrap_or_else(|| o.base.clone());
        let basic = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD
                .encode(format!("{}:{}", o.client_id, o.client_secret))
        );
        let mut probes = tokio::task::JoinSet::new();
        {
            let host = host.clone();
            probes.spawn(keep_alive_probe(
                shared.clone(),
                addr,
                "healthz",
                move || request(Method::GET, &host, "/healthz", None, None, Bytes::new()),
            ));
        }
        {
            let host = host.clone();
            let form = Bytes::from(token_form(&api, "/v1/debt", "debt.unsecured.presentation"));
            probes.spawn(keep_alive_probe(shared.clone(), addr, "token", move || {
                request(
                    Method::POST,
                    &host,
                    "/oauth2/token",
                    Some(&basic),
                    Some("application/x-www-form-urlencoded"),
                    form.clone(),
                )
            }));
        }
        probes.spawn(new_connection_probe(shared.clone(), addr, host.clone()));
        // The descriptor sampler.
        {
            let shared = shared.clone();
            let pid = o.pid;
            probes.spawn(async move {
                while !shared.done.load(Ordering::Relaxed) {
                    let fds = count_fds(pid);
                    let phase = shared.phase.load(Ordering::Relaxed);
                    if phase < PHASES.len() {
                        let mut stats = shared.stats.lock().unwrap_or_else(|p| p.into_inner());
                        stats[phase].fds.push(fds);
                        stats[phase]
                            .attack_open
                            .push(shared.open.load(Ordering::Relaxed));
                    }
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
            });
        }
        tokio::time::sleep(Duration::from_secs_f64(o.before)).await;

        shared.phase.store(1, Ordering::Relaxed);
        let mut attackers = tokio::task::JoinSet::new();
        for i in 0..o.sockets {
            attackers.spawn(attack_socket(shared.clone(), o.clone(), addr, i));
        }
        tokio::time::sleep(Duration::from_secs_f64(o.duration)).await;
        shared.stop_attack.store(true, Ordering::Relaxed);
        shared.phase.store(2, Ordering::Relaxed);
        let after_start = Instant::now();
        while attackers.join_next().await.is_some() {}
        let attack_stopped_after = after_start.elapsed();
        let remaining = Duration::from_secs_f64(o.after).saturating_sub(after_start.elapsed());
        tokio::time::sleep(remaining).await;
        shared.phase.store(3, Ordering::Relaxed);
        shared.done.store(true, Ordering::Relaxed);
        while probes.join_next().await.is_some() {}

        let stats = std::mem::take(&mut *shared.stats.lock().unwrap_or_else(|p| p.into_inner()));
        let mut lifetimes = std::mem::take(
            &mut *shared
                .lifetimes_ms
                .lock()
                .unwrap_or_else(|p| p.into_inner()),
        );
        lifetimes.sort_unstable();
        for (phase, mut s) in PHASES.iter().zip(stats) {
            let mut line = serde_json::json!({
                "kind": "attack",
                "mode": o.mode,
                "phase": phase,
                "sockets": o.sockets,
                "sources": o.sources,
                "interval_s": o.interval,
                "fds_min": s.fds.iter().min(),
                "fds_max": s.fds.iter().max(),
                "fds_last": s.fds.last(),
                "attack_open_max": s.attack_open.iter().max(),
            });
            for (probe, latencies) in &mut s.latencies {
                latencies.sort_unstable();
                line[format!("{probe}_n")] = latencies.len().into();
                line[format!("{probe}_p50_ms")] = percentile(latencies, 50.0).into();
                line[format!("{probe}_p99_ms")] = percentile(latencies, 99.0).into();
                line[format!("{probe}_max_ms")] = percentile(latencies, 100.0).into();
            }
            for (probe, errors) in &s.errors {
                line[format!("{probe}_errors")] = (*errors).into();
            }
            if *phase == "during" {
                line["attack_connections_opened"] = shared.opened.load(Ordering::Relaxed).into();
                line["attack_closed_by_server"] =
                    shared.closed_by_server.load(Ordering::Relaxed).into();
                line["attack_closed_within_1s"] =
                    shared.closed_within_1s.load(Ordering::Relaxed).into();
                line["attack_connect_errors"] =
                    shared.connect_errors.load(Ordering::Relaxed).into();
                let ms = |p: f64| {
                    if lifetimes.is_empty() {
                        0
                    } else {
                        lifetimes[((p / 100.0 * lifetimes.len() as f64).ceil() as usize)
                            .clamp(1, lifetimes.len())
                            - 1]
                    }
                };
                line["closed_lifetime_p50_ms"] = ms(50.0).into();
                line["closed_lifetime_p99_ms"] = ms(99.0).into();
                line["closed_lifetime_max_ms"] = ms(100.0).into();
            }
            if *phase == "after" {
                line["attack_sockets_closed_after_ms"] =
                    (attack_stopped_after.as_millis() as u64).into();
            }
            println!("{line}");
        }
        Ok(())
    })
}
