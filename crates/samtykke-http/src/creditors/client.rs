//! The outbound client of the creditor protocol: `getDataForSSN` and the
//! pages of `getalldata`, over rustls with Samtykke's client certificate
//! (mutual TLS), keep-alive pooling, and HTTP/2 where the creditor offers it
//! by ALPN.

use std::path::Path;
use std::time::Duration;

use samtykke_core::creditor::{Creditor, CustomerLoans};
use samtykke_core::domain::{Nin, NinPolicy};

/// Largest `getDataForSSN` body read (one person's loans at one creditor).
pub const MAX_CUSTOMER_BODY: usize = 1024 * 1024;
/// The header that carries the person's number in `getDataForSSN`.
pub const CUSTOMER_ID_HEADER: &str = "customerID";
/// The header every outgoing call carries, echoed in error bodies.
pub const TRACE_ID_HEADER: &str = "X-Trace-ID";

/// Samtykke's TLS material for outgoing calls, as PEM.
#[derive(Debug, Clone, Default)]
pub struct CreditorTls {
    /// Client certificate (chain) and its private key (mutual TLS).
    pub client_cert_pem: Option<Vec<u8>>,
    pub client_key_pem: Option<Vec<u8>>,
    /// The CA bundle trusted for creditors' servers. When given, it
    /// replaces the built-in (Mozilla) roots.
    pub ca_pem: Option<Vec<u8>>,
}

impl CreditorTls {
    /// Reads the PEM files; a certificate needs its key and vice versa.
    pub fn from_files(
        client_cert: Option<&Path>,
        client_key: Option<&Path>,
        ca: Option<&Path>,
    ) -> Result<Self, CreditorClientError> {
        let read = |path: Option<&Path>, what: &'static str| {
            path.map(|p| {
                std::fs::read(p).map_err(|e| CreditorClientError::File {
                    what,
                    path: p.display().to_string(),
                    reason: e.to_string(),
                })
            })
            .transpose()
        };
        Ok(Self {
            client_cert_pem: read(client_cert, "client certificate")?,
            client_key_pem: read(client_key, "client key")?,
            ca_pem: read(ca, "CA bundle")?,
        })
    }
}

/// Why the client could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CreditorClientError {
    #[error("cannot read the {what} {path}: {reason}")]
    File {
        what: &'static str,
        path: String,
        reason: String,
    },
    #[error("a creditor client certificate needs its key, and a key its certificate (--creditor-client-cert with --creditor-client-key)")]
    HalfIdentity,
    #[error("the creditor client certificate or key is not usable PEM: {0}")]
    Identity(String),
    #[error("the creditor CA bundle holds no usable PEM certificate: {0}")]
    Ca(String),
    #[error("cannot build the creditor HTTP client: {0}")]
    Build(String),
}

/// Why a call to a creditor failed. No variant carries the person's number
/// or loan data.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CreditorCallError {
    /// 429: back off (`Retry-After` in seconds, if given).
    #[error("the creditor asks us to back off (429)")]
    TooManyRequests { retry_after: Option<Duration> },
    /// 5xx: retry later.
    #[error("the creditor failed with status {0}")]
    ServerError(u16),
    /// Any other status but 200.
    #[error("the creditor answered status {0}")]
    Status(u16),
    /// A 200 whose body is not a valid answer (or not for this person and
    /// institution).
    #[error("the creditor's answer is malformed: {0}")]
    Malformed(String),
    /// No whole answer within the creditor's timeout.
    #[error("the creditor did not answer within {} ms", .0.as_millis())]
    Timeout(Duration),
    /// Connection refused, reset, TLS handshake failed, DNS.
    #[error("cannot reach the creditor: {0}")]
    Connect(String),
}

impl CreditorCallError {
    /// A short label for logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::TooManyRequests { .. } => "throttled",
            Self::ServerError(_) => "server_error",
            Self::Status(_) => "status",
            Self::Malformed(_) => "malformed",
            Self::Timeout(_) => "timeout",
            Self::Connect(_) => "connect",
        }
    }
}

/// The client. Cheap to clone (one connection pool).
#[derive(Debug, Clone)]
pub struct CreditorClient {
    http: reqwest::Client,
    policy: NinPolicy,
    allow_http: bool,
}

impl CreditorClient {
    /// `policy` checks the `customerID`s in answers (synthetic people only
    /// in sandbox mode); `allow_http` lets it call `http://` endpoints
    /// (sandbox mode only).
    pub fn new(
        tls: &CreditorTls,
        policy: NinPolicy,
        allow_http: bool,
    ) -> Result<Self, CreditorClientError> {
        let mut builder = reqwest::Client::builder()
            .use_rustls_tls()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(5))
            .pool_idle_timeout(Duration::from_secs(90))
            .pool_max_idle_per_host(256)
            .tcp_nodelay(true)
            .user_agent(concat!("samtykke/", env!("CARGO_PKG_VERSION")));
        match (&tls.client_cert_pem, &tls.client_key_pem) {
            (Some(cert), Some(key)) => {
                let mut pem = cert.clone();
                if !pem.ends_with(b"\n") {
                    pem.push(b'\n');
                }
                pem.extend_from_slice(key);
                let identity = reqwest::Identity::from_pem(&pem)
                    .map_err(|e| CreditorClientError::Identity(e.to_string()))?;
                builder = builder.identity(identity);
            }
            (None, None) => {}
            _ => return Err(CreditorClientError::HalfIdentity),
        }
        if let Some(ca) = &tls.ca_pem {
            let certs = reqwest::Certificate::from_pem_bundle(ca)
                .map_err(|e| CreditorClientError::Ca(e.to_string()))?;
            if certs.is_empty() {
                return Err(CreditorClientError::Ca("no certificate in it".to_owned()));
            }
            builder = builder.tls_built_in_root_certs(false);
            for cert in certs {
                builder = builder.add_root_certificate(cert);
            }
        }
        let http = builder
            .build()
            .map_err(|e| CreditorClientError::Build(e.to_string()))?;
        Ok(Self {
            http,
            policy,
            allow_http,
        })
    }

    pub fn policy(&self) -> NinPolicy {
        self.policy
    }

    /// Refuses an `http://` endpoint outside sandbox mode.
    fn check_scheme(&self, creditor: &Creditor) -> Result<(), CreditorCallError> {
        if creditor.endpoint.is_https() || self.allow_http {
            Ok(())
        } else {
            Err(CreditorCallError::Connect(
                "http:// endpoints are called in sandbox mode only".to_owned(),
            ))
        }
    }

    /// `getDataForSSN`: `GET {endpoint}debt-information/v1/loans/{fi}/customer`
    /// with headers `customerID` and `X-Trace-ID`. The creditor's timeout
    /// bounds the whole call, body included. The answer must be about `nin`
    /// at the creditor's institution.
    pub async fn get_data_for_ssn(
        &self,
        creditor: &Creditor,
        nin: &Nin,
        trace_id: &str,
    ) -> Result<CustomerLoans, CreditorCallError> {
        self.check_scheme(creditor)?;
        let call = async {
            let response = self
                .http
                .get(creditor.endpoint.customer_url(&creditor.id))
                .header(CUSTOMER_ID_HEADER, nin.as_str())
                .header(TRACE_ID_HEADER, trace_id)
                .header(reqwest::header::ACCEPT, "application/json")
                .send()
                .await
                .map_err(transport_error)?;
            let response = check_status(response)?;
            let body = read_limited(response, MAX_CUSTOMER_BODY).await?;
            let answer = CustomerLoans::parse(&body, self.policy)
                .map_err(|e| CreditorCallError::Malformed(e.to_string()))?;
            if !answer.answers(nin, &creditor.id) {
                return Err(CreditorCallError::Malformed(
                    "the answer is about another customer or financialInstitutionID".to_owned(),
                ));
            }
            Ok(answer)
        };
        tokio::time::timeout(creditor.timeout, call)
            .await
            .unwrap_or(Err(CreditorCallError::Timeout(creditor.timeout)))
    }

    /// One page of `getalldata` (`page` 0-based), its status checked; the
    /// body is left to be streamed (see `creditors::sync`). `timeout`
    /// bounds the wait for the headers; `read_timeout` each read of the body.
    pub async fn get_all_data_page(
        &self,
        creditor: &Creditor,
        page: u32,
        trace_id: &str,
        timeout: Duration,
        read_timeout: Duration,
    ) -> Result<reqwest::Response, CreditorCallError> {
        self.check_scheme(creditor)?;
        let send = self
            .http
            .get(creditor.endpoint.all_data_url(&creditor.id, page))
            .header(TRACE_ID_HEADER, trace_id)
            .header(reqwest::header::ACCEPT, "application/json")
            .timeout(read_timeout.max(timeout))
            .send();
        let response = tokio::time::timeout(timeout, send)
            .await
            .map_err(|_| CreditorCallError::Timeout(timeout))?
            .map_err(transport_error)?;
        check_status(response)
    }
}

/// A reqwest error before the status: a timeout or a connection failure.
fn transport_error(e: reqwest::Error) -> CreditorCallError {
    if e.is_timeout() {
        return CreditorCallError::Timeout(Duration::ZERO);
    }
    // The chain says what failed (refused, reset, handshake); the URL is the
    // creditor's, never the person's.
    let e = e.without_url();
    let mut reason = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        reason = format!("{reason}: {s}");
        source = s.source();
    }
    CreditorCallError::Connect(reason)
}

fn check_status(response: reqwest::Response) -> Result<reqwest::Response, CreditorCallError> {
    let status = response.status().as_u16();
    match status {
        200 => Ok(response),
        429 => Err(CreditorCallError::TooManyRequests {
            retry_after: response
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(Duration::from_secs),
        }),
        500..=599 => Err(CreditorCallError::ServerError(status)),
        _ => Err(CreditorCallError::Status(status)),
    }
}

async fn read_limited(
    mut response: reqwest::Response,
    limit: usize,
) -> Result<Vec<u8>, CreditorCallError> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| {
        if e.is_timeout() {
            CreditorCallError::Timeout(Duration::ZERO)
        } else {
            CreditorCallError::Malformed(format!("the body broke off: {}", e.without_url()))
        }
    })? {
        if body.len() + chunk.len() > limit {
            return Err(CreditorCallError::Malformed(format!(
                "the body is larger than {limit} bytes"
            )));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}
